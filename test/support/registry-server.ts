import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import type { ApiGroupDefinition } from '../../apis/types';
import { WARDLE } from '../../apis/wardle';
import { AuditAnnotations } from '../../server/admission/audit-annotations';
import { FixedNamespaceLister, NamespacePhase } from '../../server/admission/namespace-lifecycle';
import type { AdmissionPlugin } from '../../server/admission/types';
import type { UserInfo } from '../../server/auth/types';
import { ApiServing, ApiRules, createApiServing } from '../../server/registry';
import { wardleAdmission, wardleRules } from '../../server/registry/wardle';
import { parseRequestInfo } from '../../server/request-info';
import { StatusError, errors } from '../../server/status';
import { MemoryStorage, MemoryStorageOptions } from '../../server/storage/memory';
import type { Storage } from '../../server/storage/types';

/**
 * The registry (`createApiServing().handle`) behind a real local HTTP server — plain HTTP, as
 * authentication is not what these tests are about — with a fixed user. Requests are real HTTP
 * requests over loopback.
 */

export const TEST_USER: UserInfo = { name: 'alice', groups: ['system:authenticated'], extra: {} };

export interface RegistryServerOptions {
  readonly api?: ApiGroupDefinition;
  readonly rules?: ApiRules;
  readonly admission?: readonly AdmissionPlugin[];
  readonly namespaces?: Readonly<Record<string, NamespacePhase>>;
  readonly storage?: MemoryStorageOptions;
  /** The storage the registry is given, from the memory store (e.g. one that fails on purpose). @default - the memory store itself */
  readonly wrapStorage?: (storage: MemoryStorage) => Storage;
  readonly bookmarkIntervalMs?: number;
  /** Serve HTTPS with this certificate; the helpers then trust `caPem`. @default - plain HTTP */
  readonly tls?: { readonly certPem: string; readonly keyPem: string; readonly caPem: string };
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
}

export interface RequestOptions {
  readonly body?: unknown;
  /** Sent as is (no JSON encoding). */
  readonly raw?: string | Buffer;
  readonly headers?: Record<string, string | string[]>;
  readonly contentType?: string;
  readonly accept?: string;
}

export interface WatchStream {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly events: { type: string; object: any }[];
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** Resolves once `count` events have arrived (rejects after `timeoutMs`). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  waitFor(count: number, timeoutMs?: number): Promise<{ type: string; object: any }[]>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

export class RegistryServer {
  static async start(options: RegistryServerOptions = {}): Promise<RegistryServer> {
    const server = new RegistryServer(options);
    await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', resolve));
    return server;
  }

  readonly storage: MemoryStorage;
  readonly namespaces: FixedNamespaceLister;
  readonly serving: ApiServing;
  user: UserInfo = TEST_USER;
  /** The audit annotations admission added to each request, in arrival order. */
  readonly auditAnnotations: AuditAnnotations[] = [];
  private readonly server: http.Server;
  private readonly agent: http.Agent;
  private readonly tls: RegistryServerOptions['tls'];

  private constructor(options: RegistryServerOptions) {
    this.storage = new MemoryStorage(options.storage);
    this.namespaces = new FixedNamespaceLister(options.namespaces ?? { default: 'Active', ns1: 'Active', ns2: 'Active' });
    const api = options.api ?? WARDLE;
    this.serving = createApiServing({
      api,
      storage: options.wrapStorage ? options.wrapStorage(this.storage) : this.storage,
      namespaces: this.namespaces,
      admission: options.admission ?? (api === WARDLE ? wardleAdmission() : []),
      rules: options.rules ?? (api === WARDLE ? wardleRules : {}),
      logger: pino({ level: 'silent' }),
      ...(options.bookmarkIntervalMs ? { bookmarkIntervalMs: options.bookmarkIntervalMs } : {}),
    });
    this.tls = options.tls;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      void this.route(req, res);
    };
    this.server = this.tls ? https.createServer({ cert: this.tls.certPem, key: this.tls.keyPem }, handler) : http.createServer(handler);
    this.agent = this.tls ? new https.Agent({ keepAlive: true, maxSockets: 64, ca: this.tls.caPem }) : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private get client(): typeof http {
    return (this.tls ? https : http) as typeof http;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const info = parseRequestInfo(req.method ?? 'GET', req.url ?? '/');
      if (!info.isResourceRequest) throw errors.pathNotFound();
      const annotations = new AuditAnnotations();
      this.auditAnnotations.push(annotations);
      await this.serving.handle(req, res, info, this.user, annotations);
    } catch (error) {
      const status = error instanceof StatusError ? error.status : errors.internal(String(error)).status;
      if (!(error instanceof StatusError)) console.error(error);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const text = JSON.stringify(status);
      res.writeHead(status.code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    }
  }

  request(method: string, path: string, options: RequestOptions = {}): Promise<Reply> {
    const payload = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
    const headers: Record<string, string | string[] | number> = { ...(options.headers ?? {}) };
    if (payload !== undefined) {
      headers['Content-Type'] = options.contentType ?? (method === 'PATCH' ? 'application/merge-patch+json' : 'application/json');
      headers['Content-Length'] = Buffer.byteLength(payload);
    }
    if (options.accept) headers.Accept = options.accept;
    return new Promise((resolve, reject) => {
      const req = this.client.request(`${this.url}${path}`, { method, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
        });
      });
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  get(path: string, accept?: string): Promise<Reply> {
    return this.request('GET', path, accept ? { accept } : {});
  }

  post(path: string, body: unknown, options: RequestOptions = {}): Promise<Reply> {
    return this.request('POST', path, { ...options, body });
  }

  put(path: string, body: unknown, options: RequestOptions = {}): Promise<Reply> {
    return this.request('PUT', path, { ...options, body });
  }

  patch(path: string, body: unknown, contentType = 'application/merge-patch+json'): Promise<Reply> {
    return this.request('PATCH', path, { body, contentType });
  }

  delete(path: string, body?: unknown): Promise<Reply> {
    return this.request('DELETE', path, body === undefined ? {} : { body });
  }

  /** Opens a watch and collects its events as they arrive. */
  watch(path: string, accept?: string): Promise<WatchStream> {
    return new Promise((resolve, reject) => {
      const req = this.client.request(`${this.url}${path}`, { method: 'GET', headers: accept ? { Accept: accept } : {}, ...(this.tls ? { ca: this.tls.caPem } : {}) }, (res) => {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        const events: { type: string; object: any }[] = [];
        const waiters: { count: number; resolve: () => void }[] = [];
        let buffer = '';
        let endResolve!: () => void;
        const ended = new Promise<void>((r) => (endResolve = r));
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let newline: number;
          while ((newline = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, newline);
            buffer = buffer.slice(newline + 1);
            if (line.trim()) events.push(JSON.parse(line));
          }
          for (const waiter of [...waiters]) {
            if (events.length >= waiter.count) {
              waiters.splice(waiters.indexOf(waiter), 1);
              waiter.resolve();
            }
          }
        });
        res.on('end', () => endResolve());
        res.on('close', () => endResolve());
        resolve({
          events,
          status: res.statusCode ?? 0,
          headers: res.headers,
          ended,
          waitFor(count, timeoutMs = 5000) {
            if (events.length >= count) return Promise.resolve(events.slice(0, count));
            return new Promise((ok, fail) => {
              const timer = setTimeout(() => fail(new Error(`timed out waiting for ${count} watch events; got ${JSON.stringify(events)}`)), timeoutMs);
              waiters.push({
                count,
                resolve: () => {
                  clearTimeout(timer);
                  ok(events.slice(0, count));
                },
              });
            });
          },
          close() {
            req.destroy();
          },
        });
      });
      req.on('error', (error) => {
        if ((error as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(error);
      });
      req.end();
    });
  }

  async close(): Promise<void> {
    await this.serving.close();
    this.agent.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.storage.close();
  }
}

export const FLUNDERS = '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders';
export const FLUNDERS_BETA = '/apis/wardle.example.com/v1beta1/namespaces/ns1/flunders';
export const FISCHERS = '/apis/wardle.example.com/v1alpha1/fischers';

export function flunder(name: string, spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name, ...extra }, spec };
}
