import type { Logger } from 'pino';
import { ApiGroupDefinition } from '../apis';
import type { AuditLog } from './audit';
import type { DelegatedAuth } from './auth';
import type { FlowControlOptions } from './flow-control';
import { createHandler } from './handler';
import { Health, HealthCheck, checkOf, log, ping } from './health';
import { Metrics } from './metrics';
import type { ApiServing } from './registry';
import { SecureServing, ServingTimeouts } from './serving';

/**
 * One running server: the handler chain on HTTPS, with the lifecycle of a Go apiserver —
 * ready only once authentication config and storage are, and a graceful shutdown.
 */

export interface ServerOptions {
  readonly api: ApiGroupDefinition;
  readonly auth: DelegatedAuth;
  readonly apiServing: ApiServing;
  readonly logger: Logger;
  readonly bindAddress: string;
  readonly securePort: number;
  readonly tlsCertFile: string;
  readonly tlsPrivateKeyFile: string;
  /** Serve, unready, this long after shutdown begins (endpoints drop the pod meanwhile). */
  readonly shutdownDelayMs: number;
  /** Most time in-flight requests get once the listener is closed. */
  readonly shutdownTimeoutMs: number;
  /** @default 5000 */
  readonly certPollIntervalMs?: number;
  /** Readiness of the storage: `etcd`, or `storage` for memory. @default - a `storage` check on apiServing.isReady() */
  readonly storageChecks?: readonly HealthCheck[];
  /** Readiness checks after the storage's (`informer-sync`). @default - none */
  readonly readyChecks?: readonly HealthCheck[];
  /** Where requests and storage report; read at each scrape. @default - one counting apiServing's watches */
  readonly metrics?: Metrics;
  /** --max-requests-inflight, --max-mutating-requests-inflight, --request-timeout. @default - Go's: 400, 200, 60 s */
  readonly flowControl?: Omit<FlowControlOptions, 'onAdmitted'>;
  /** Handshake, header and idle timeouts. @default - Go's http.Server values in k8s.io/apiserver */
  readonly servingTimeouts?: ServingTimeouts;
  /** Released on shutdown after the listener and auth (the kube clients, then the storage). @default - nothing */
  readonly onClose?: () => void | Promise<void>;
  /** Where each request's audit event goes (--audit-log-path). @default - no audit log */
  readonly auditLog?: AuditLog;
}

function defaultMetrics(apiServing: ApiServing): Metrics {
  const metrics = new Metrics();
  metrics.readFrom({ watchCount: () => apiServing.watchCount() });
  return metrics;
}

export class Server {
  private stopped: Promise<void> | undefined;

  private constructor(
    private readonly options: ServerOptions,
    private readonly lifecycle: { shuttingDown: boolean },
    readonly serving: SecureServing,
  ) {}

  static async start(options: ServerOptions): Promise<Server> {
    const { auth, apiServing, logger } = options;
    const lifecycle = { shuttingDown: false };
    const shutdown: HealthCheck = checkOf('shutdown', () => !lifecycle.shuttingDown, 'process is shutting down');
    const live = [ping, log];
    const health = new Health({
      healthz: live,
      livez: live,
      readyz: [
        ping,
        log,
        checkOf('authentication-config', () => auth.isReady(), 'the authentication configuration is not loaded yet'),
        ...(options.storageChecks ?? [checkOf('storage', () => apiServing.isReady(), 'storage is not ready')]),
        ...(options.readyChecks ?? []),
        shutdown,
      ],
    });
    const metrics = options.metrics ?? defaultMetrics(apiServing);
    const handler = createHandler({ api: options.api, authenticator: auth.authenticator, authorizer: auth.authorizer, apiServing, health, metrics, logger, flowControl: options.flowControl, audit: options.auditLog });
    const serving = await SecureServing.start({
      bindAddress: options.bindAddress,
      securePort: options.securePort,
      tlsCertFile: options.tlsCertFile,
      tlsPrivateKeyFile: options.tlsPrivateKeyFile,
      handler,
      clientCaBundle: () => auth.clientCaBundle(),
      logger,
      certPollIntervalMs: options.certPollIntervalMs,
      timeouts: options.servingTimeouts,
    });
    auth.onClientCaChange(() => serving.reloadClientCa());
    return new Server(options, lifecycle, serving);
  }

  get port(): number {
    return this.serving.port;
  }

  /**
   * Graceful shutdown: readiness fails at once; after the shutdown delay the listener closes and
   * watches end (each client sees its stream finish cleanly and re-lists elsewhere); in-flight
   * requests then get up to the shutdown timeout. Idempotent.
   */
  shutdown(): Promise<void> {
    this.stopped ??= this.runShutdown();
    return this.stopped;
  }

  private async runShutdown(): Promise<void> {
    const { logger, shutdownDelayMs, shutdownTimeoutMs } = this.options;
    this.lifecycle.shuttingDown = true;
    logger.info({ shutdownDelayMs }, 'shutting down: readiness is now failing');
    if (shutdownDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, shutdownDelayMs));
    const stopping = this.serving.stop(shutdownTimeoutMs);
    await this.options.apiServing.close();
    await stopping;
    this.options.auth.close();
    await this.options.onClose?.();
    logger.info('shutdown complete');
  }
}
