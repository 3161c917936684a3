/**
 * A minimal JSON client of kube-apiserver over node:https with a keep-alive agent: enough for the
 * server's own calls (the authentication ConfigMap, TokenReview, SubjectAccessReview, namespaces).
 *
 * Configuration is a kubeconfig file (current-context → cluster + user) or the in-cluster
 * ServiceAccount (token, ca.crt, KUBERNETES_SERVICE_HOST/PORT), as client-go resolves them.
 * TLS is always verified: `insecure-skip-tls-verify` is refused.
 */
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';

/** The in-cluster ServiceAccount mount of every pod (unless automountServiceAccountToken is false). */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeWatchEvent {
  /** ADDED, MODIFIED, DELETED, or SYNC: a full list (`object` is the List) that replaces everything known before. */
  readonly type: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly object: any;
}

export interface KubeWatchOptions {
  /**
   * Start watching from this resourceVersion (taken from an earlier GET or LIST) instead of
   * listing first.
   * @default - list first and emit a SYNC event
   */
  readonly resourceVersion?: string;
  /** Told about every failed list or watch attempt (the watch retries with backoff on its own). @default - ignored */
  readonly onError?: (error: Error) => void;
}

export interface KubeWatch {
  /** Ends the watch; `done` then resolves. */
  stop(): void;
  readonly done: Promise<void>;
}

export interface KubeClient {
  /** `https://host:port` of the API server. */
  readonly server: string;
  /**
   * One JSON request. Resolves with any HTTP status (the caller decides what a 403 or 404 means);
   * rejects only when no answer came (connection refused, TLS failure, timeout).
   */
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /**
   * A reflector on a collection path (query allowed, e.g. a fieldSelector): LIST, emit SYNC, then
   * stream watch events, resuming from the last resourceVersion seen (bookmarks keep it fresh);
   * on 410 Gone it lists again and emits SYNC. Retries with backoff until stopped.
   */
  watch(path: string, onEvent: (event: KubeWatchEvent) => void, options?: KubeWatchOptions): KubeWatch;
  /** Closes the keep-alive connections and stops every watch. */
  close(): void;
}

/** The resolved connection settings of a KubeClient. */
export interface KubeClientConfig {
  /** `https://host:port`. */
  readonly server: string;
  /** PEM bundle of the API server's CA. @default - the system roots */
  readonly caPem?: string;
  /** TLS server name to verify instead of the server's host. @default - the server's host */
  readonly tlsServerName?: string;
  /** Client certificate (chain) and key, PEM. @default - none */
  readonly clientCertPem?: string;
  readonly clientKeyPem?: string;
  /** A fixed bearer token. @default - none */
  readonly token?: string;
  /** A file holding the bearer token, re-read every `tokenRefreshMs` (bound ServiceAccount tokens rotate). @default - none */
  readonly tokenFile?: string;
}

export interface KubeClientTuning {
  /** Per-request timeout. @default 10000 */
  readonly requestTimeoutMs?: number;
  /** How often a token file is re-read. @default 60000 (client-go re-reads every minute) */
  readonly tokenRefreshMs?: number;
  /** First retry delay of a failing watch, doubled up to `maxWatchBackoffMs`. @default 250 */
  readonly watchBackoffMs?: number;
  /** @default 10000 */
  readonly maxWatchBackoffMs?: number;
}

/** An answer other than the one expected (a List for a LIST, 200 for a watch). */
export class KubeApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    const message = typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string' ? (body as { message: string }).message : String(body).slice(0, 200);
    super(`${method} ${path}: HTTP ${status}: ${message}`);
    this.name = 'KubeApiError';
  }
}

export interface LoadKubeClientOptions extends KubeClientTuning {
  /** A kubeconfig file. @default - the in-cluster ServiceAccount configuration */
  readonly kubeconfig?: string;
  /** Where the ServiceAccount files are. @default SERVICE_ACCOUNT_DIR */
  readonly serviceAccountDir?: string;
  /** Environment to read KUBERNETES_SERVICE_HOST/PORT from. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

/** A client from a kubeconfig file, or from the in-cluster ServiceAccount when `kubeconfig` is not given. */
export function loadKubeClient(options: LoadKubeClientOptions): KubeClient {
  const config = options.kubeconfig ? configFromKubeconfig(options.kubeconfig) : inClusterConfig(options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR, options.env ?? process.env);
  return createKubeClient(config, options);
}

/** The in-cluster configuration, as client-go's rest.InClusterConfig. */
export function inClusterConfig(serviceAccountDir: string, env: NodeJS.ProcessEnv): KubeClientConfig {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new Error(
      'unable to load in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined; outside a cluster pass a kubeconfig (--kubeconfig, --authentication-kubeconfig, --authorization-kubeconfig)',
    );
  }
  const tokenFile = path.join(serviceAccountDir, 'token');
  const caFile = path.join(serviceAccountDir, 'ca.crt');
  const caPem = readRequired(caFile, 'the in-cluster CA (is the ServiceAccount token mounted? automountServiceAccountToken must not be false)');
  readRequired(tokenFile, 'the in-cluster ServiceAccount token (is automountServiceAccountToken false?)');
  return { server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`, caPem, tokenFile };
}

function readRequired(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${what} from "${file}": ${(error as Error).message}`);
  }
}

interface NamedEntry<T> {
  name?: string;
  cluster?: T;
  user?: T;
  context?: T;
}

/** Resolves a kubeconfig's current-context into connection settings; relative paths are relative to the file, as in client-go. */
export function configFromKubeconfig(file: string): KubeClientConfig {
  const text = readRequired(file, 'the kubeconfig');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let doc: any;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw new Error(`kubeconfig "${file}" is not valid YAML: ${(error as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null) throw new Error(`kubeconfig "${file}" is empty or not a mapping`);
  const dir = path.dirname(path.resolve(file));
  const find = <T>(list: unknown, name: string, field: 'cluster' | 'user' | 'context'): T => {
    const entry = (Array.isArray(list) ? (list as NamedEntry<T>[]) : []).find((e) => e?.name === name);
    if (!entry || !entry[field]) throw new Error(`kubeconfig "${file}": ${field} "${name}" not found (expected an entry of ${field}s with that name)`);
    return entry[field] as T;
  };

  const contextName = doc['current-context'];
  if (typeof contextName !== 'string' || contextName === '') throw new Error(`kubeconfig "${file}" has no current-context (expected the name of one of its contexts)`);
  const context = find<{ cluster?: string; user?: string }>(doc.contexts, contextName, 'context');
  if (!context.cluster) throw new Error(`kubeconfig "${file}": context "${contextName}" names no cluster`);
  const cluster = find<Record<string, unknown>>(doc.clusters, context.cluster, 'cluster');
  const user = context.user ? find<Record<string, unknown>>(doc.users, context.user, 'user') : {};

  const server = cluster.server;
  if (typeof server !== 'string' || !server.startsWith('https://')) {
    throw new Error(`kubeconfig "${file}": cluster "${context.cluster}" server ${JSON.stringify(server)} is not an https:// URL`);
  }
  if (cluster['insecure-skip-tls-verify'] === true) {
    throw new Error(
      `kubeconfig "${file}": cluster "${context.cluster}" sets insecure-skip-tls-verify: true, which this server refuses (it would send tokens and user identities to anyone); set certificate-authority-data or certificate-authority instead`,
    );
  }
  for (const unsupported of ['exec', 'auth-provider', 'username', 'password']) {
    if (user[unsupported] !== undefined) {
      throw new Error(`kubeconfig "${file}": user "${context.user}" uses "${unsupported}", which this server does not support; use a client certificate, token or tokenFile`);
    }
  }

  const dataOrFile = (dataKey: string, fileKey: string, owner: Record<string, unknown>): string | undefined => {
    const data = owner[dataKey];
    if (typeof data === 'string' && data !== '') return Buffer.from(data, 'base64').toString('utf8');
    const ref = owner[fileKey];
    if (typeof ref === 'string' && ref !== '') return readRequired(path.resolve(dir, ref), `${fileKey} of kubeconfig "${file}"`);
    return undefined;
  };
  const clientCertPem = dataOrFile('client-certificate-data', 'client-certificate', user);
  const clientKeyPem = dataOrFile('client-key-data', 'client-key', user);
  if ((clientCertPem === undefined) !== (clientKeyPem === undefined)) {
    throw new Error(`kubeconfig "${file}": user "${context.user}" has a client certificate without a key or a key without a certificate (expected both)`);
  }
  const token = typeof user.token === 'string' && user.token !== '' ? user.token : undefined;
  const tokenFile = typeof user.tokenFile === 'string' && user.tokenFile !== '' ? path.resolve(dir, user.tokenFile) : undefined;
  const tlsServerName = typeof cluster['tls-server-name'] === 'string' && cluster['tls-server-name'] !== '' ? (cluster['tls-server-name'] as string) : undefined;
  return {
    server: server.replace(/\/+$/, ''),
    caPem: dataOrFile('certificate-authority-data', 'certificate-authority', cluster),
    ...(tlsServerName ? { tlsServerName } : {}),
    ...(clientCertPem ? { clientCertPem, clientKeyPem } : {}),
    ...(token ? { token } : {}),
    ...(tokenFile && !token ? { tokenFile } : {}),
  };
}

/** A client over explicit settings. */
export function createKubeClient(config: KubeClientConfig, tuning: KubeClientTuning = {}): KubeClient {
  return new HttpsKubeClient(config, tuning);
}

class HttpsKubeClient implements KubeClient {
  readonly server: string;
  private readonly url: URL;
  private readonly agent: https.Agent;
  private readonly requestTimeoutMs: number;
  private readonly tokenRefreshMs: number;
  private readonly watchBackoffMs: number;
  private readonly maxWatchBackoffMs: number;
  private token: string | undefined;
  private tokenReadAt = 0;
  private readonly watches = new Set<KubeWatch>();

  constructor(
    private readonly config: KubeClientConfig,
    tuning: KubeClientTuning,
  ) {
    this.server = config.server;
    this.url = new URL(config.server);
    this.requestTimeoutMs = tuning.requestTimeoutMs ?? 10_000;
    this.tokenRefreshMs = tuning.tokenRefreshMs ?? 60_000;
    this.watchBackoffMs = tuning.watchBackoffMs ?? 250;
    this.maxWatchBackoffMs = tuning.maxWatchBackoffMs ?? 10_000;
    this.token = config.token;
    if (config.tokenFile) this.currentToken();
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: 32,
      ...(config.caPem ? { ca: config.caPem } : {}),
      ...(config.clientCertPem ? { cert: config.clientCertPem, key: config.clientKeyPem } : {}),
      ...(config.tlsServerName ? { servername: config.tlsServerName } : {}),
      rejectUnauthorized: true,
    });
  }

  /** The bearer token, re-read from the token file when it is older than tokenRefreshMs; the last good one is kept if a read fails. */
  private currentToken(): string | undefined {
    const file = this.config.tokenFile;
    if (file && Date.now() - this.tokenReadAt >= this.tokenRefreshMs) {
      try {
        const value = readFileSync(file, 'utf8').trim();
        if (value !== '') this.token = value;
      } catch {
        // Keep the previous token: the kubelet replaces the file atomically, a read can race it.
      }
      this.tokenReadAt = Date.now();
    }
    return this.token;
  }

  private open(method: string, requestPath: string, headers: Record<string, string>, timeoutMs: number | undefined): ReturnType<typeof https.request> {
    const token = this.currentToken();
    const req = https.request({
      agent: this.agent,
      protocol: 'https:',
      hostname: this.url.hostname.replace(/^\[|\]$/g, ''),
      port: this.url.port || 443,
      method,
      path: this.url.pathname.replace(/\/+$/, '') + requestPath,
      headers: {
        Accept: 'application/json',
        'User-Agent': 'cdk8s-api-extension-server',
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      ...(this.config.tlsServerName ? { servername: this.config.tlsServerName } : {}),
    });
    if (timeoutMs !== undefined) {
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${requestPath}: no answer within ${timeoutMs} ms`)));
    }
    return req;
  }

  request<T = unknown>(method: string, requestPath: string, body?: unknown): Promise<{ status: number; body: T }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = this.open(method, requestPath, payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}, this.requestTimeoutMs);
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            // Not JSON (a proxy's HTML error page): hand the text over as it is.
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T });
        });
      });
      req.end(payload);
    });
  }

  watch(collectionPath: string, onEvent: (event: KubeWatchEvent) => void, options: KubeWatchOptions = {}): KubeWatch {
    let stopped = false;
    let current: ReturnType<typeof https.request> | undefined;
    let wake: (() => void) | undefined;
    const separator = collectionPath.includes('?') ? '&' : '?';

    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });

    const deliver = (event: KubeWatchEvent) => {
      try {
        onEvent(event);
      } catch (error) {
        options.onError?.(error as Error);
      }
    };

    /** One watch connection; resolves with the last resourceVersion, or undefined when the server said 410 (relist). */
    const stream = (resourceVersion: string) =>
      new Promise<string | undefined>((resolve, reject) => {
        // A server-side timeout between 5 and 10 minutes, as client-go's reflector picks.
        const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
        const query = `watch=1&allowWatchBookmarks=true&timeoutSeconds=${timeoutSeconds}&resourceVersion=${encodeURIComponent(resourceVersion)}`;
        const req = this.open('GET', `${collectionPath}${separator}${query}`, {}, undefined);
        current = req;
        let rv: string | undefined = resourceVersion;
        // The answer must start within the request timeout; the stream itself may then idle for minutes.
        const headerTimer = setTimeout(() => req.destroy(new Error(`WATCH ${collectionPath}: no answer within ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
        req.on('error', (error) => {
          clearTimeout(headerTimer);
          if (stopped) resolve(rv);
          else reject(error);
        });
        // Destroyed before an answer (stop(), the header timeout) without an 'error': settle anyway.
        req.on('close', () => {
          clearTimeout(headerTimer);
          resolve(rv);
        });
        req.on('response', (res) => {
          clearTimeout(headerTimer);
          if (res.statusCode !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              if (res.statusCode === 410) return resolve(undefined);
              let body: unknown = Buffer.concat(chunks).toString('utf8');
              try {
                body = JSON.parse(body as string);
              } catch {
                // keep the text
              }
              reject(new KubeApiError('WATCH', collectionPath, res.statusCode ?? 0, body));
            });
            return;
          }
          res.setEncoding('utf8');
          let buffered = '';
          res.on('data', (chunk: string) => {
            buffered += chunk;
            let newline: number;
            while ((newline = buffered.indexOf('\n')) >= 0) {
              const line = buffered.slice(0, newline).trim();
              buffered = buffered.slice(newline + 1);
              if (line === '' || rv === undefined) continue;
              let event: KubeWatchEvent;
              try {
                event = JSON.parse(line) as KubeWatchEvent;
              } catch {
                req.destroy(new Error(`WATCH ${collectionPath}: malformed event line`));
                return;
              }
              if (event.type === 'ERROR') {
                // 410 Expired/Gone: our resourceVersion was compacted away: relist. Other errors: reconnect.
                if (event.object?.code === 410) rv = undefined;
                req.destroy();
                return;
              }
              const eventRv = event.object?.metadata?.resourceVersion;
              if (typeof eventRv === 'string' && eventRv !== '') rv = eventRv;
              if (event.type !== 'BOOKMARK' && !stopped) deliver(event);
            }
          });
          res.on('error', () => resolve(rv));
          res.on('close', () => resolve(rv));
        });
        req.end();
      });

    const run = async (): Promise<void> => {
      let resourceVersion = options.resourceVersion;
      let backoff = this.watchBackoffMs;
      while (!stopped) {
        try {
          if (resourceVersion === undefined) {
            const list = await this.request<{ metadata?: { resourceVersion?: string } }>('GET', collectionPath);
            if (list.status !== 200) throw new KubeApiError('LIST', collectionPath, list.status, list.body);
            if (stopped) break;
            resourceVersion = list.body?.metadata?.resourceVersion ?? '';
            deliver({ type: 'SYNC', object: list.body });
          }
          const started = Date.now();
          resourceVersion = await stream(resourceVersion);
          // A watch that lasted was healthy: reconnect at once, and the next failure starts from the
          // first delay again. One that ended at once (a flapping server) waits like a failure.
          if (Date.now() - started > 1000) {
            backoff = this.watchBackoffMs;
            continue;
          }
        } catch (error) {
          if (stopped) break;
          options.onError?.(error as Error);
        }
        await sleep(backoff * (0.8 + Math.random() * 0.4));
        backoff = Math.min(backoff * 2, this.maxWatchBackoffMs);
      }
    };

    const handle: KubeWatch = {
      stop: () => {
        stopped = true;
        current?.destroy();
        wake?.();
        this.watches.delete(handle);
      },
      done: run(),
    };
    this.watches.add(handle);
    return handle;
  }

  close(): void {
    for (const w of [...this.watches]) w.stop();
    this.agent.destroy();
  }
}
