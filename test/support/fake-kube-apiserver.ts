/**
 * A local stand-in of kube-apiserver for the extension server's own calls, speaking the real
 * wire format: the authentication ConfigMap (GET, LIST with fieldSelector, WATCH), TokenReview
 * (authentication.k8s.io/v1), SubjectAccessReview (authorization.k8s.io/v1), SelfSubjectReview,
 * namespaces (GET, LIST, WATCH) and admission webhook configurations (LIST, WATCH). Everything is
 * programmable from tests, it counts calls, and it can go down and come back on the same port.
 *
 * It authenticates its callers like the real one: a client certificate signed by its CA (user =
 * CN, groups = O) or the ServiceAccount bearer token it hands out; anything else is 401.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { makeCa, makeLeaf, makeServerCert, type TestCa, type TestCertificate } from './pki';

export const AUTH_CONFIGMAP_NAMESPACE = 'kube-system';
export const AUTH_CONFIGMAP_NAME = 'extension-apiserver-authentication';

export interface FakeUser {
  readonly username: string;
  readonly uid?: string;
  readonly groups?: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

/** What the stand-in answers for a token: a user (optionally only for some audiences) or an error. */
export type FakeTokenEntry = { readonly user: FakeUser; readonly audiences?: readonly string[] } | { readonly error: string };

/** A SubjectAccessReview spec as kube-apiserver receives it. */
export interface SubjectAccessReviewSpec {
  readonly user?: string;
  readonly uid?: string;
  readonly groups?: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
  readonly resourceAttributes?: Readonly<Record<string, string>>;
  readonly nonResourceAttributes?: { readonly path?: string; readonly verb?: string };
}

export interface SubjectAccessReviewStatus {
  readonly allowed: boolean;
  readonly denied?: boolean;
  readonly reason?: string;
  readonly evaluationError?: string;
}

export interface FakeCalls {
  configMapGets: number;
  configMapLists: number;
  configMapWatches: number;
  namespaceGets: number;
  namespaceLists: number;
  namespaceWatches: number;
  tokenReviews: number;
  subjectAccessReviews: number;
  selfSubjectReviews: number;
  unauthenticated: number;
}

export interface FakeKubeApiServerOptions {
  /** The ServiceAccount the server under test runs as. @default { namespace: 'wardle', name: 'wardle-apiserver' } */
  readonly serviceAccount?: { readonly namespace: string; readonly name: string };
}

interface StoredObject {
  metadata: { name: string; resourceVersion: string; uid: string; creationTimestamp: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

interface WatchEvent {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: StoredObject;
}

interface Watcher {
  readonly res: ServerResponse;
  readonly matches: (o: StoredObject) => boolean;
}

/** The admissionregistration.k8s.io/v1 collections the fake holds. */
export type AdmissionConfigurationKind = 'mutating' | 'validating' | 'policy' | 'policyBinding';

/** One collection of objects with a watch history, like a resource in etcd behind the watch cache. */
class Collection {
  readonly objects = new Map<string, StoredObject>();
  readonly history: WatchEvent[] = [];
  /** Events at or below this revision were compacted: watching from older gets 410. */
  compactedRv = 0;
  readonly watchers = new Set<Watcher>();

  constructor(
    private readonly fake: FakeKubeApiServer,
    readonly kind: string,
    readonly listKind: string,
    readonly apiVersion: string,
  ) {}

  put(name: string, body: Record<string, unknown>, namespace?: string): void {
    const previous = this.objects.get(name);
    const rv = this.fake.nextRv();
    const object: StoredObject = {
      kind: this.kind,
      apiVersion: this.apiVersion,
      ...body,
      metadata: {
        name,
        ...(namespace ? { namespace } : {}),
        uid: previous?.metadata.uid ?? randomUid(),
        creationTimestamp: previous?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        resourceVersion: String(rv),
      },
    };
    this.objects.set(name, object);
    this.emit({ rv, type: previous ? 'MODIFIED' : 'ADDED', object });
  }

  remove(name: string): void {
    const previous = this.objects.get(name);
    if (!previous) return;
    const rv = this.fake.nextRv();
    this.objects.delete(name);
    this.emit({ rv, type: 'DELETED', object: { ...previous, metadata: { ...previous.metadata, resourceVersion: String(rv) } } });
  }

  private emit(event: WatchEvent): void {
    this.history.push(event);
    for (const w of this.watchers) {
      if (w.matches(event.object)) w.res.write(JSON.stringify({ type: event.type, object: event.object }) + '\n');
    }
  }

  compact(): void {
    this.compactedRv = this.fake.currentRv();
    this.history.length = 0;
  }

  list(matches: (o: StoredObject) => boolean): Record<string, unknown> {
    return {
      kind: this.listKind,
      apiVersion: this.apiVersion,
      metadata: { resourceVersion: String(this.fake.currentRv()) },
      items: [...this.objects.values()].filter(matches),
    };
  }

  /** Serves `?watch=1` as kube-apiserver does: 200, one JSON line per event, ERROR 410 for a compacted resourceVersion. */
  watch(req: IncomingMessage, res: ServerResponse, query: URLSearchParams, matches: (o: StoredObject) => boolean): void {
    const rvParam = query.get('resourceVersion') ?? '';
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    const send = (type: string, object: unknown) => res.write(JSON.stringify({ type, object }) + '\n');
    if (rvParam === '' || rvParam === '0') {
      for (const o of this.objects.values()) if (matches(o)) send('ADDED', o);
    } else {
      const from = Number(rvParam);
      if (!Number.isInteger(from) || from < this.compactedRv) {
        send('ERROR', statusBody(410, 'Expired', `too old resource version: ${rvParam} (${this.fake.currentRv()})`));
        res.end();
        return;
      }
      for (const e of this.history) if (e.rv > from && matches(e.object)) send(e.type, e.object);
    }
    const watcher: Watcher = { res, matches };
    this.watchers.add(watcher);
    const timeoutSeconds = Number(query.get('timeoutSeconds') ?? '0');
    const timer = timeoutSeconds > 0 ? setTimeout(() => res.end(), timeoutSeconds * 1000) : undefined;
    const done = () => {
      clearTimeout(timer);
      this.watchers.delete(watcher);
    };
    res.on('close', done);
    req.on('close', done);
  }
}

function randomUid(): string {
  const h = randomBytes(16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function statusBody(code: number, reason: string, message: string, details?: Record<string, unknown>) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Matches the `metadata.name=<x>` / `metadata.name==<x>` fieldSelector the server's clients send; other selectors are not supported here. */
function fieldSelectorMatcher(query: URLSearchParams): (o: StoredObject) => boolean {
  const selector = query.get('fieldSelector');
  if (!selector) return () => true;
  const match = /^metadata\.name==?(.+)$/.exec(selector);
  if (!match) throw new Error(`the stand-in supports only fieldSelector=metadata.name=<name>, got ${selector}`);
  return (o) => o.metadata.name === match[1];
}

export class FakeKubeApiServer {
  /** Starts on 127.0.0.1 with a new CA and serving certificate. */
  static async start(options: FakeKubeApiServerOptions = {}): Promise<FakeKubeApiServer> {
    const fake = new FakeKubeApiServer(options);
    await fake.up();
    return fake;
  }

  /** The CA that signs the serving certificate and the client certificates the stand-in trusts. */
  readonly ca: TestCa;
  readonly serviceAccount: { readonly namespace: string; readonly name: string };
  /** `system:serviceaccount:<ns>:<name>`: who the server under test is when it uses the token or the client certificate. */
  readonly serviceAccountUser: FakeUser;
  /** A bearer token (JWT-shaped, with the ServiceAccount claims) that authenticates as serviceAccountUser. */
  readonly serviceAccountToken: string;
  /** A client certificate (CN = serviceAccountUser.username) that authenticates as serviceAccountUser. */
  readonly clientCert: TestCertificate;

  readonly calls: FakeCalls = {
    configMapGets: 0,
    configMapLists: 0,
    configMapWatches: 0,
    namespaceGets: 0,
    namespaceLists: 0,
    namespaceWatches: 0,
    tokenReviews: 0,
    subjectAccessReviews: 0,
    selfSubjectReviews: 0,
    unauthenticated: 0,
  };
  /** Every TokenReview and SubjectAccessReview spec received, in order. */
  readonly tokenReviewSpecs: { token: string; audiences?: string[] }[] = [];
  readonly subjectAccessReviewSpecs: SubjectAccessReviewSpec[] = [];

  /** Decides SubjectAccessReviews. @default - no opinion for everything (allowed: false) */
  authorize: (spec: SubjectAccessReviewSpec) => SubjectAccessReviewStatus = () => ({ allowed: false });
  /** Answer 403 to every read of the auth ConfigMap, as without the auth-reader RoleBinding. */
  configMapForbidden = false;
  /** Answer 403 to lists and watches of these admissionregistration collections, as without the ClusterRole's grant. */
  readonly admissionForbidden = new Set<AdmissionConfigurationKind>();

  private readonly tokens = new Map<string, FakeTokenEntry>();
  private readonly configMaps: Collection;
  private readonly namespaces: Collection;
  /** admissionregistration.k8s.io/v1 Mutating/ValidatingWebhookConfigurations, ValidatingAdmissionPolicies and their bindings (LIST, WATCH), read by the admission plugins. */
  private readonly webhookConfigurations: Readonly<Record<AdmissionConfigurationKind, Collection>>;
  private readonly server: https.Server;
  private readonly sockets = new Set<Socket>();
  private rv = 100;
  private boundPort = 0;

  private constructor(options: FakeKubeApiServerOptions) {
    this.ca = makeCa('fake-kube-apiserver-ca');
    const serving = makeServerCert(this.ca, ['kubernetes.default.svc']);
    this.serviceAccount = options.serviceAccount ?? { namespace: 'wardle', name: 'wardle-apiserver' };
    const { namespace, name } = this.serviceAccount;
    this.serviceAccountUser = {
      username: `system:serviceaccount:${namespace}:${name}`,
      uid: randomUid(),
      groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
    };
    const claims = {
      iss: 'https://kubernetes.default.svc.cluster.local',
      sub: this.serviceAccountUser.username,
      aud: ['https://kubernetes.default.svc.cluster.local'],
      'kubernetes.io': { namespace, serviceaccount: { name, uid: this.serviceAccountUser.uid } },
    };
    this.serviceAccountToken = `${base64url({ alg: 'RS256', kid: 'fake' })}.${base64url(claims)}.${randomBytes(32).toString('base64url')}`;
    this.tokens.set(this.serviceAccountToken, { user: this.serviceAccountUser });
    this.clientCert = makeLeaf(this.ca, { cn: this.serviceAccountUser.username, organizations: ['system:serviceaccounts'] });

    this.configMaps = new Collection(this, 'ConfigMap', 'ConfigMapList', 'v1');
    this.namespaces = new Collection(this, 'Namespace', 'NamespaceList', 'v1');
    for (const ns of ['default', 'kube-system', 'kube-public', namespace]) this.setNamespace(ns, 'Active');
    this.webhookConfigurations = {
      mutating: new Collection(this, 'MutatingWebhookConfiguration', 'MutatingWebhookConfigurationList', 'admissionregistration.k8s.io/v1'),
      validating: new Collection(this, 'ValidatingWebhookConfiguration', 'ValidatingWebhookConfigurationList', 'admissionregistration.k8s.io/v1'),
      policy: new Collection(this, 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyList', 'admissionregistration.k8s.io/v1'),
      policyBinding: new Collection(this, 'ValidatingAdmissionPolicyBinding', 'ValidatingAdmissionPolicyBindingList', 'admissionregistration.k8s.io/v1'),
    };

    this.server = https.createServer({ cert: serving.certPem, key: serving.keyPem, ca: this.ca.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      this.handle(req, res).catch((error: Error) => {
        if (!res.headersSent) this.reply(res, 500, statusBody(500, 'InternalError', `Internal error occurred: ${error.message}`));
        else res.destroy();
      });
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** Watches open now on every collection: the server under test holds one per reflector once it has started them all. */
  openWatches(): number {
    return [this.configMaps, this.namespaces, ...Object.values(this.webhookConfigurations)].reduce((n, c) => n + c.watchers.size, 0);
  }

  /** `https://127.0.0.1:<port>`. */
  get url(): string {
    return `https://127.0.0.1:${this.boundPort}`;
  }

  get port(): number {
    return this.boundPort;
  }

  nextRv(): number {
    return ++this.rv;
  }

  currentRv(): number {
    return this.rv;
  }

  // ---- programming -----------------------------------------------------------------------

  /** Sets (creates or updates) the data of kube-system/extension-apiserver-authentication; `undefined` deletes it. */
  setAuthConfigMap(data: Record<string, string> | undefined): void {
    if (data === undefined) this.configMaps.remove(AUTH_CONFIGMAP_NAME);
    else this.configMaps.put(AUTH_CONFIGMAP_NAME, { data }, AUTH_CONFIGMAP_NAMESPACE);
  }

  /** The ConfigMap data kube-apiserver publishes for a client CA and a front-proxy (requestheader) CA. */
  static authConfigMapData(options: {
    clientCaPem?: string;
    requestheaderCaPem?: string;
    allowedNames?: readonly string[];
    usernameHeaders?: readonly string[];
    uidHeaders?: readonly string[];
    groupHeaders?: readonly string[];
    extraHeadersPrefix?: readonly string[];
  }): Record<string, string> {
    const data: Record<string, string> = {};
    if (options.clientCaPem) data['client-ca-file'] = options.clientCaPem;
    if (options.requestheaderCaPem) {
      data['requestheader-client-ca-file'] = options.requestheaderCaPem;
      data['requestheader-allowed-names'] = JSON.stringify(options.allowedNames ?? ['front-proxy-client']);
      data['requestheader-username-headers'] = JSON.stringify(options.usernameHeaders ?? ['X-Remote-User']);
      data['requestheader-uid-headers'] = JSON.stringify(options.uidHeaders ?? ['X-Remote-Uid']);
      data['requestheader-group-headers'] = JSON.stringify(options.groupHeaders ?? ['X-Remote-Group']);
      data['requestheader-extra-headers-prefix'] = JSON.stringify(options.extraHeadersPrefix ?? ['X-Remote-Extra-']);
    }
    return data;
  }

  /** TokenReview answers for `token`; `undefined` forgets it (then it is not authenticated, with no error). */
  setToken(token: string, entry: FakeTokenEntry | undefined): void {
    if (entry === undefined) this.tokens.delete(token);
    else this.tokens.set(token, entry);
  }

  setNamespace(name: string, phase: 'Active' | 'Terminating'): void {
    this.namespaces.put(name, { spec: { finalizers: ['kubernetes'] }, status: { phase } });
  }

  deleteNamespace(name: string): void {
    this.namespaces.remove(name);
  }

  /** Stores a Mutating/ValidatingWebhookConfiguration (`{ webhooks: [...] }`) or a ValidatingAdmissionPolicy/Binding (`{ spec }`); `undefined` deletes it. */
  setWebhookConfiguration(kind: AdmissionConfigurationKind, name: string, body: Record<string, unknown> | undefined): void {
    if (body === undefined) this.webhookConfigurations[kind].remove(name);
    else this.webhookConfigurations[kind].put(name, body);
  }

  /** Drops the watch history: watches resuming from an older resourceVersion get 410 Expired. */
  compact(): void {
    this.configMaps.compact();
    this.namespaces.compact();
    for (const collection of Object.values(this.webhookConfigurations)) collection.compact();
  }

  /** Stops listening and cuts every open connection (watches included), as a crashed API server. */
  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Listens again, on the same port once it has one. */
  async up(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.boundPort, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.boundPort = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    if (this.server.listening) await this.down();
  }

  /**
   * Writes a kubeconfig for the stand-in into `dir` and returns its path: the CA as
   * certificate-authority-data, and the client certificate (`auth: 'cert'`), the token
   * (`'token'`) or a tokenFile (`'tokenFile'`) as credentials.
   */
  writeKubeconfig(dir: string, auth: 'cert' | 'token' | 'tokenFile' = 'cert', fileName = 'kubeconfig'): string {
    mkdirSync(dir, { recursive: true });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    let user: string;
    if (auth === 'cert') {
      user = `    client-certificate-data: ${b64(this.clientCert.certPem)}\n    client-key-data: ${b64(this.clientCert.keyPem)}\n`;
    } else if (auth === 'token') {
      user = `    token: ${this.serviceAccountToken}\n`;
    } else {
      writeFileSync(path.join(dir, 'token'), this.serviceAccountToken, { mode: 0o600 });
      user = `    tokenFile: token\n`;
    }
    const text =
      `apiVersion: v1\nkind: Config\ncurrent-context: fake\n` +
      `clusters:\n- name: fake\n  cluster:\n    server: ${this.url}\n    certificate-authority-data: ${b64(this.ca.certPem)}\n` +
      `users:\n- name: fake-user\n  user:\n${user}` +
      `contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake-user\n`;
    const file = path.join(dir, fileName);
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  }

  /** Writes the in-cluster ServiceAccount files (token, ca.crt, namespace) into `dir` and returns the env that points at the stand-in. */
  writeInClusterFiles(dir: string): { serviceAccountDir: string; env: NodeJS.ProcessEnv } {
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'token'), this.serviceAccountToken, { mode: 0o600 });
    writeFileSync(path.join(dir, 'ca.crt'), this.ca.certPem);
    writeFileSync(path.join(dir, 'namespace'), this.serviceAccount.namespace);
    return { serviceAccountDir: dir, env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(this.boundPort) } };
  }

  // ---- serving ---------------------------------------------------------------------------

  private reply(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private caller(req: IncomingMessage): FakeUser | undefined {
    const socket = req.socket as TLSSocket;
    // A resumed TLS session may carry no peer certificate details: then the token decides.
    const peer = socket.authorized ? socket.getPeerCertificate() : undefined;
    if (peer?.subject?.CN) {
      const o = peer.subject.O;
      return { username: String(peer.subject.CN), groups: [...(o === undefined ? [] : Array.isArray(o) ? o : [o]), 'system:authenticated'] };
    }
    const match = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
    const entry = match ? this.tokens.get(match[1]) : undefined;
    return entry && 'user' in entry ? entry.user : undefined;
  }

  private async readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://localhost');
    const query = url.searchParams;
    const isWatch = ['1', 'true'].includes(query.get('watch') ?? '');
    const user = this.caller(req);
    if (!user) {
      this.calls.unauthenticated++;
      return this.reply(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized'));
    }
    const route = `${req.method} ${url.pathname}`;

    const cmPath = `/api/v1/namespaces/${AUTH_CONFIGMAP_NAMESPACE}/configmaps`;
    if (route === `GET ${cmPath}/${AUTH_CONFIGMAP_NAME}` || route === `GET ${cmPath}`) {
      const verb = url.pathname.endsWith(AUTH_CONFIGMAP_NAME) ? 'get' : isWatch ? 'watch' : 'list';
      if (verb === 'get') this.calls.configMapGets++;
      else if (verb === 'list') this.calls.configMapLists++;
      else this.calls.configMapWatches++;
      if (this.configMapForbidden) {
        return this.reply(
          res,
          403,
          statusBody(
            403,
            'Forbidden',
            `configmaps${verb === 'get' ? ` "${AUTH_CONFIGMAP_NAME}"` : ''} is forbidden: User "${user.username}" cannot ${verb} resource "configmaps" in API group "" in the namespace "${AUTH_CONFIGMAP_NAMESPACE}"`,
            { ...(verb === 'get' ? { name: AUTH_CONFIGMAP_NAME } : {}), kind: 'configmaps' },
          ),
        );
      }
      if (verb === 'get') {
        const cm = this.configMaps.objects.get(AUTH_CONFIGMAP_NAME);
        if (!cm) return this.reply(res, 404, statusBody(404, 'NotFound', `configmaps "${AUTH_CONFIGMAP_NAME}" not found`, { name: AUTH_CONFIGMAP_NAME, kind: 'configmaps' }));
        return this.reply(res, 200, cm);
      }
      const matches = fieldSelectorMatcher(query);
      if (verb === 'watch') return this.configMaps.watch(req, res, query, matches);
      return this.reply(res, 200, this.configMaps.list(matches));
    }

    if (route === 'GET /api/v1/namespaces') {
      const matches = fieldSelectorMatcher(query);
      if (isWatch) {
        this.calls.namespaceWatches++;
        return this.namespaces.watch(req, res, query, matches);
      }
      this.calls.namespaceLists++;
      return this.reply(res, 200, this.namespaces.list(matches));
    }
    const nsMatch = /^GET \/api\/v1\/namespaces\/([^/]+)$/.exec(route);
    if (nsMatch) {
      this.calls.namespaceGets++;
      const ns = this.namespaces.objects.get(nsMatch[1]);
      if (!ns) return this.reply(res, 404, statusBody(404, 'NotFound', `namespaces "${nsMatch[1]}" not found`, { name: nsMatch[1], kind: 'namespaces' }));
      return this.reply(res, 200, ns);
    }

    const admissionPaths: Record<string, AdmissionConfigurationKind> = {
      mutatingwebhookconfigurations: 'mutating',
      validatingwebhookconfigurations: 'validating',
      validatingadmissionpolicies: 'policy',
      validatingadmissionpolicybindings: 'policyBinding',
    };
    const webhookMatch = /^GET \/apis\/admissionregistration\.k8s\.io\/v1\/([a-z]+)$/.exec(route);
    if (webhookMatch && Object.prototype.hasOwnProperty.call(admissionPaths, webhookMatch[1])) {
      const kind = admissionPaths[webhookMatch[1]];
      if (this.admissionForbidden.has(kind)) {
        const resource = webhookMatch[1];
        const message = `${resource}.admissionregistration.k8s.io is forbidden: User "${user.username}" cannot ${isWatch ? 'watch' : 'list'} resource "${resource}" in API group "admissionregistration.k8s.io" at the cluster scope`;
        return this.reply(res, 403, statusBody(403, 'Forbidden', message, { group: 'admissionregistration.k8s.io', kind: resource }));
      }
      const collection = this.webhookConfigurations[kind];
      if (isWatch) return collection.watch(req, res, query, () => true);
      return this.reply(res, 200, collection.list(() => true));
    }

    if (route === 'POST /apis/authentication.k8s.io/v1/tokenreviews') {
      this.calls.tokenReviews++;
      const review = await this.readJson(req);
      const spec = (review.spec ?? {}) as { token?: string; audiences?: string[] };
      this.tokenReviewSpecs.push({ token: String(spec.token ?? ''), ...(spec.audiences ? { audiences: spec.audiences } : {}) });
      const entry = this.tokens.get(String(spec.token ?? ''));
      let status: Record<string, unknown> = { user: {} };
      if (entry && 'error' in entry) {
        status = { user: {}, error: entry.error };
      } else if (entry) {
        const wanted = spec.audiences ?? [];
        const tokenAudiences = entry.audiences ?? wanted;
        const audiences = wanted.length === 0 ? tokenAudiences : wanted.filter((a) => tokenAudiences.includes(a));
        status =
          wanted.length > 0 && audiences.length === 0
            ? { user: {}, error: '[invalid bearer token, token audiences is invalid for the target audiences]' }
            : { authenticated: true, user: { ...entry.user }, ...(audiences.length > 0 ? { audiences } : {}) };
      }
      return this.reply(res, 201, { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status });
    }

    if (route === 'POST /apis/authorization.k8s.io/v1/subjectaccessreviews') {
      this.calls.subjectAccessReviews++;
      const review = await this.readJson(req);
      const spec = (review.spec ?? {}) as SubjectAccessReviewSpec;
      this.subjectAccessReviewSpecs.push(spec);
      // The validation kube-apiserver applies (pkg/apis/authorization/validation).
      const invalid: string[] = [];
      if (!spec.resourceAttributes === !spec.nonResourceAttributes) invalid.push('spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified');
      if (!spec.user && (spec.groups ?? []).length === 0) invalid.push('spec.user: Invalid value: "": at least one of user or group must be specified');
      if (invalid.length > 0) {
        return this.reply(res, 422, statusBody(422, 'Invalid', `SubjectAccessReview.authorization.k8s.io "" is invalid: ${invalid.join(', ')}`));
      }
      const status = this.authorize(spec);
      return this.reply(res, 201, { kind: 'SubjectAccessReview', apiVersion: 'authorization.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status });
    }

    if (route === 'POST /apis/authentication.k8s.io/v1/selfsubjectreviews') {
      this.calls.selfSubjectReviews++;
      return this.reply(res, 201, { kind: 'SelfSubjectReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, status: { userInfo: user } });
    }

    return this.reply(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
  }
}
