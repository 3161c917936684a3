/**
 * A local stand-in of kube-apiserver's aggregation layer (kube-aggregator), for end-to-end tests:
 * what it does to a request on its way to an extension API server, following
 * pkg/apiserver/handler_proxy.go, pkg/controllers/status/remote/remote_available_controller.go
 * and pkg/apiserver/handler_discovery.go.
 *
 * - It dials the Service's endpoint with ServerName `<service>.<namespace>.svc` and the
 *   APIService's `caBundle` as the only roots, presenting the front-proxy client certificate.
 * - Its own HTTPS front authenticates callers by bearer token (as kube-apiserver would have), then
 *   proxies only `/apis/<group>/<version>[/…]` of a registered APIService: `Authorization`,
 *   `Impersonate-*` and any incoming `X-Remote-*` are dropped; `X-Remote-User`, one
 *   `X-Remote-Group` per group, `X-Remote-Extra-<escaped key>` per value and `Audit-ID` are set.
 *   Until an availability check passed, proxied requests get 503. A 3xx from the server is a 502.
 * - `checkAvailability()` is the controller's `GET /apis/<g>/<v>` within 5 s as
 *   `system:kube-aggregator` in `system:masters`; `discover()` is the aggregated discovery fetch
 *   of kube-apiserver 1.28 (v2beta1) or later (v2), falling back to legacy discovery only on 406.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { makeCa, makeServerCert, type TestCa } from './pki';

/** The user kube-apiserver authenticated and authorized, as the proxy forwards it. */
export interface AggregatedUser {
  readonly name: string;
  readonly uid?: string;
  readonly groups?: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

/** The parts of an APIService the proxy uses. */
export interface ApiServiceRef {
  readonly group: string;
  readonly version: string;
  readonly service: { readonly namespace: string; readonly name: string };
  /** PEM: the roots the serving certificate is checked against (spec.caBundle, decoded). */
  readonly caBundle: string;
}

export interface AggregatorOptions {
  readonly apiServices: readonly ApiServiceRef[];
  /** Where the Service's ready endpoint is: the extension server under test. */
  readonly endpoint: { readonly host: string; readonly port: number };
  /** The front-proxy client certificate (`--proxy-client-cert-file`/`--proxy-client-key-file`). */
  readonly proxyClientCert: { readonly certPem: string; readonly keyPem: string };
  /** Bearer tokens the front accepts, and who they are. @default - none (only `proxy()` calls) */
  readonly users?: Readonly<Record<string, AggregatedUser>>;
  /** kube-apiserver's version decides the aggregated discovery version asked for. @default '1.33' */
  readonly kubeVersion?: '1.28' | '1.33';
  /** Whether X-Remote-Uid is sent (kube-apiserver 1.33+). @default - true for 1.33 */
  readonly sendUid?: boolean;
}

export interface ProxyResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface Availability {
  readonly available: boolean;
  /** As in APIService status: Passed, FailedDiscoveryCheck. */
  readonly reason: string;
  readonly message: string;
}

/** One group version of an APIGroupDiscoveryList as kube-apiserver would merge it. */
export interface DiscoveredVersion {
  readonly version: string;
  readonly resources: readonly Record<string, unknown>[];
  /** How it was obtained: aggregated (with the version), legacy fallback, or failed (no resources). */
  readonly source: 'aggregated' | 'legacy' | 'failed';
  readonly detail: string;
}

const AGGREGATOR_USER: AggregatedUser = { name: 'system:kube-aggregator', groups: ['system:masters'] };
const AVAILABILITY_TIMEOUT_MS = 5000;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host']);

/** net/http's token characters: what may stay unescaped in a header name. */
const TOKEN_CHAR = /^[!#$&'*+\-.^_`|~0-9A-Za-z]$/;

/** client-go transport's headerKeyEscape: %-encodes every byte not legal in a header name, and '%'. */
export function headerKeyEscape(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += byte < 0x80 && TOKEN_CHAR.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The headers SetAuthProxyHeaders puts on a proxied request, as raw [name, value] pairs (repeats kept). */
export function authProxyHeaders(user: AggregatedUser, sendUid: boolean): [string, string][] {
  const headers: [string, string][] = [['X-Remote-User', user.name]];
  if (sendUid && user.uid) headers.push(['X-Remote-Uid', user.uid]);
  for (const group of user.groups ?? []) headers.push(['X-Remote-Group', group]);
  for (const [key, values] of Object.entries(user.extra ?? {})) {
    for (const value of values) headers.push([`X-Remote-Extra-${headerKeyEscape(key)}`, value]);
  }
  return headers;
}

/** Whether a client header must not reach the extension server. */
function dropped(name: string): boolean {
  const n = name.toLowerCase();
  return HOP_BY_HOP.has(n) || n === 'authorization' || n.startsWith('impersonate-') || n.startsWith('x-remote-') || n === 'audit-id';
}

export class Aggregator {
  static async start(options: AggregatorOptions): Promise<Aggregator> {
    const aggregator = new Aggregator(options);
    await new Promise<void>((resolve) => aggregator.front.listen(0, '127.0.0.1', resolve));
    return aggregator;
  }

  /** The CA of the front's serving certificate (what a client of the aggregator trusts). */
  readonly ca: TestCa;
  /** Audit IDs sent, newest last. */
  readonly auditIds: string[] = [];
  private readonly available = new Map<string, boolean>();
  private readonly agents = new Map<string, https.Agent>();
  private readonly front: https.Server;
  private readonly sockets = new Set<Socket>();
  private readonly kubeVersion: '1.28' | '1.33';
  private readonly sendUid: boolean;

  private constructor(private readonly options: AggregatorOptions) {
    this.kubeVersion = options.kubeVersion ?? '1.33';
    this.sendUid = options.sendUid ?? this.kubeVersion === '1.33';
    this.ca = makeCa('aggregator-front-ca');
    const serving = makeServerCert(this.ca);
    this.front = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => this.serveFront(req, res));
    this.front.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  /** `https://127.0.0.1:<port>` of the front. */
  get url(): string {
    return `https://127.0.0.1:${(this.front.address() as AddressInfo).port}`;
  }

  /** The registered APIService serving a path `/apis/<g>/<v>[/…]`, if any. */
  apiServiceFor(path: string): ApiServiceRef | undefined {
    const match = /^\/apis\/([^/?]+)\/([^/?]+)(?:[/?]|$)/.exec(path);
    if (!match) return undefined;
    return this.options.apiServices.find((a) => a.group === match[1] && a.version === match[2]);
  }

  /**
   * Sends one request to the extension server as the proxy would, for `user`, and buffers the
   * answer. No availability gate: the availability and discovery controllers use this too.
   */
  async proxy(
    apiService: ApiServiceRef,
    user: AggregatedUser,
    request: { method?: string; path: string; headers?: OutgoingHttpHeaders; body?: string | Buffer; timeoutMs?: number },
  ): Promise<ProxyResponse> {
    const req = this.upstreamRequest(apiService, user, request.method ?? 'GET', request.path, request.headers ?? {});
    return new Promise<ProxyResponse>((resolve, reject) => {
      const timer = request.timeoutMs ? setTimeout(() => req.destroy(new Error(`no answer within ${request.timeoutMs} ms`)), request.timeoutMs) : undefined;
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          // handler_proxy.go: a redirect from a backend is never followed nor passed on.
          if (status >= 300 && status < 400) resolve({ status: 502, headers: {}, body: `the backend attempted to redirect this request, which is not permitted` });
          else resolve({ status, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      });
      req.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      req.end(request.body);
    });
  }

  /**
   * The availability controller's check of one APIService: `GET /apis/<g>/<v>` as
   * system:kube-aggregator within 5 s, 2xx required. Marks the APIService available (or not)
   * for the front.
   */
  async checkAvailability(apiService: ApiServiceRef = this.options.apiServices[0]): Promise<Availability> {
    const key = `${apiService.group}/${apiService.version}`;
    let result: Availability;
    try {
      const res = await this.proxy(apiService, AGGREGATOR_USER, { path: `/apis/${key}`, timeoutMs: AVAILABILITY_TIMEOUT_MS });
      result =
        res.status >= 200 && res.status < 300
          ? { available: true, reason: 'Passed', message: 'all checks passed' }
          : { available: false, reason: 'FailedDiscoveryCheck', message: `failing or missing response from https://${this.endpoint()}/apis/${key}: bad status from https://${this.endpoint()}/apis/${key}: ${res.status}` };
    } catch (error) {
      result = { available: false, reason: 'FailedDiscoveryCheck', message: `failing or missing response from https://${this.endpoint()}/apis/${key}: ${(error as Error).message}` };
    }
    this.available.set(key, result.available);
    return result;
  }

  /**
   * The discovery manager's fetch for one APIService (handler_discovery.go): `GET /apis` asking
   * for APIGroupDiscoveryList in the version this kube-apiserver speaks; on 406 only, the legacy
   * `GET /apis/<g>/<v>`; any other answer publishes the group version with no resources.
   */
  async discover(apiService: ApiServiceRef = this.options.apiServices[0]): Promise<DiscoveredVersion> {
    const v = this.kubeVersion === '1.28' ? 'v2beta1' : 'v2';
    const accept = `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList`;
    const none = (detail: string): DiscoveredVersion => ({ version: apiService.version, resources: [], source: 'failed', detail });
    const res = await this.proxy(apiService, AGGREGATOR_USER, { path: '/apis', headers: { accept } });
    if (res.status === 406) {
      const legacy = await this.proxy(apiService, { name: AGGREGATOR_USER.name }, { path: `/apis/${apiService.group}/${apiService.version}`, headers: { accept: 'application/json' } });
      if (legacy.status !== 200) return none(`legacy discovery answered ${legacy.status}`);
      const list = JSON.parse(legacy.body) as { resources?: Record<string, unknown>[] };
      return { version: apiService.version, resources: list.resources ?? [], source: 'legacy', detail: 'aggregated discovery answered 406' };
    }
    if (res.status !== 200) return none(`aggregated discovery answered ${res.status}`);
    let body: { kind?: string; apiVersion?: string; items?: { metadata?: { name?: string }; versions?: { version: string; resources?: Record<string, unknown>[] }[] }[] };
    try {
      body = JSON.parse(res.body) as typeof body;
    } catch {
      return none('aggregated discovery is not JSON');
    }
    // The universal decoder goes by the body's own kind and apiVersion.
    if (body.kind !== 'APIGroupDiscoveryList' || body.apiVersion !== `apidiscovery.k8s.io/${v}`) {
      return none(`asked for apidiscovery.k8s.io/${v} APIGroupDiscoveryList, got ${body.apiVersion}/${body.kind} (Content-Type ${res.headers['content-type']})`);
    }
    const group = (body.items ?? []).find((g) => g.metadata?.name === apiService.group);
    const version = group?.versions?.find((gv) => gv.version === apiService.version);
    if (!version) return none(`the document has no ${apiService.group}/${apiService.version}`);
    return { version: apiService.version, resources: version.resources ?? [], source: 'aggregated', detail: `Content-Type ${res.headers['content-type']}` };
  }

  /** A kubeconfig for a client of the front with `token`. */
  kubeconfig(token: string): string {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    return (
      `apiVersion: v1\nkind: Config\ncurrent-context: aggregator\n` +
      `clusters:\n- name: aggregator\n  cluster:\n    server: ${this.url}\n    certificate-authority-data: ${b64(this.ca.certPem)}\n` +
      `users:\n- name: user\n  user:\n    token: ${token}\n` +
      `contexts:\n- name: aggregator\n  context:\n    cluster: aggregator\n    user: user\n    namespace: default\n`
    );
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.front.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    for (const agent of this.agents.values()) agent.destroy();
    await closed;
  }

  // ---- internals ---------------------------------------------------------------------------

  private endpoint(): string {
    return `${this.options.endpoint.host}:${this.options.endpoint.port}`;
  }

  /** One keep-alive transport per APIService's TLS config, as the proxy's cached transports. */
  private agentFor(apiService: ApiServiceRef): https.Agent {
    const key = `${apiService.service.namespace}/${apiService.service.name}/${apiService.caBundle}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new https.Agent({
        keepAlive: true,
        ca: apiService.caBundle,
        cert: this.options.proxyClientCert.certPem,
        key: this.options.proxyClientCert.keyPem,
        servername: `${apiService.service.name}.${apiService.service.namespace}.svc`,
      });
      this.agents.set(key, agent);
    }
    return agent;
  }

  private upstreamRequest(apiService: ApiServiceRef, user: AggregatedUser, method: string, path: string, incoming: OutgoingHttpHeaders | IncomingHttpHeaders) {
    const headers: [string, string][] = [];
    for (const [name, value] of Object.entries(incoming)) {
      if (value === undefined || dropped(name)) continue;
      for (const v of Array.isArray(value) ? value : [value]) headers.push([name, String(v)]);
    }
    headers.push(...authProxyHeaders(user, this.sendUid));
    const auditId = randomUUID();
    this.auditIds.push(auditId);
    headers.push(['Audit-ID', auditId]);
    const serverName = `${apiService.service.name}.${apiService.service.namespace}.svc`;
    headers.push(['Host', serverName]);
    return https.request({
      host: this.options.endpoint.host,
      port: this.options.endpoint.port,
      method,
      path,
      // Node sends raw [name, value] pairs as given: one line per group, per extra value.
      headers: headers.flat() as unknown as OutgoingHttpHeaders,
      agent: this.agentFor(apiService),
      // The serving certificate is checked for exactly this name against the caBundle only.
      servername: serverName,
      ca: apiService.caBundle,
      cert: this.options.proxyClientCert.certPem,
      key: this.options.proxyClientCert.keyPem,
      rejectUnauthorized: true,
    });
  }

  private serveFront(req: IncomingMessage, res: ServerResponse): void {
    const fail = (code: number, reason: string, message: string) => {
      const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
      res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    const token = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const user = token ? this.options.users?.[token] : undefined;
    if (!user) return fail(401, 'Unauthorized', 'Unauthorized');
    const path = req.url ?? '/';
    const apiService = this.apiServiceFor(path);
    if (!apiService) return fail(404, 'NotFound', 'the server could not find the requested resource');
    if (this.available.get(`${apiService.group}/${apiService.version}`) !== true) return fail(503, 'ServiceUnavailable', 'service unavailable');

    const upstream = this.upstreamRequest(apiService, user, req.method ?? 'GET', path, req.headers);
    upstream.on('response', (up) => {
      const status = up.statusCode ?? 502;
      if (status >= 300 && status < 400) {
        up.resume();
        return fail(502, 'InternalError', 'the backend attempted to redirect this request, which is not permitted');
      }
      const headers: OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(up.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
      res.writeHead(status, headers);
      // Streamed as it comes: watches flow through event by event.
      up.pipe(res);
      res.on('close', () => up.destroy());
    });
    upstream.on('error', (error) => {
      if (!res.headersSent) fail(503, 'ServiceUnavailable', `error trying to reach service: ${error.message}`);
      else res.destroy();
    });
    req.on('aborted', () => upstream.destroy());
    req.pipe(upstream);
  }
}
