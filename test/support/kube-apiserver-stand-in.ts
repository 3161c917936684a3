/**
 * A local HTTPS stand-in of kube-apiserver holding a whole installation, for tools that read a
 * cluster (doctor) or watch it (admission webhooks): GET of any stored object, lists with
 * labelSelector, watches from a resourceVersion, pod logs, /version,
 * aggregated discovery documents, and SubjectAccessReviews decided by evaluating the stored RBAC
 * objects as the RBAC authorizer does (bindings → roles → rules, resourceNames). Callers
 * authenticate with a bearer token it knows; anything else is 401. Every request is recorded, so
 * a test can prove the tool only read.
 *
 * Shapes follow the real API: metav1.Status errors, List kinds with metadata.resourceVersion,
 * server-set metadata (uid, resourceVersion, creationTimestamp, managedFields), empty lists
 * dropped as omitempty does.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import * as path from 'node:path';
import { makeCa, makeServerCert, type TestCa, type TestCertificate } from './pki';

/** An object as the API holds it; tests build and mutate these freely. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StoredObject = Record<string, any> & { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [key: string]: unknown } };

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
}

/** The resource of each kind the stand-in holds (the real API's plural names). */
const RESOURCES: Record<string, string> = {
  Namespace: 'namespaces',
  ServiceAccount: 'serviceaccounts',
  Secret: 'secrets',
  ConfigMap: 'configmaps',
  Service: 'services',
  Pod: 'pods',
  ClusterRole: 'clusterroles',
  ClusterRoleBinding: 'clusterrolebindings',
  Role: 'roles',
  RoleBinding: 'rolebindings',
  Deployment: 'deployments',
  StatefulSet: 'statefulsets',
  PodDisruptionBudget: 'poddisruptionbudgets',
  NetworkPolicy: 'networkpolicies',
  APIService: 'apiservices',
  EndpointSlice: 'endpointslices',
  CronJob: 'cronjobs',
  MutatingWebhookConfiguration: 'mutatingwebhookconfigurations',
  ValidatingWebhookConfiguration: 'validatingwebhookconfigurations',
  ValidatingAdmissionPolicy: 'validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: 'validatingadmissionpolicybindings',
};

const KINDS_OF_RESOURCES = new Map(Object.entries(RESOURCES).map(([kind, resource]) => [resource, kind]));

function key(apiVersion: string, resource: string, namespace: string | undefined, name: string): string {
  return `${apiVersion}|${resource}|${namespace ?? ''}|${name}`;
}

function statusBody(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** Drops empty lists, as the API's omitempty JSON does. */
function dropEmptyLists(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropEmptyLists);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (Array.isArray(v) && v.length === 0) continue;
    out[k] = dropEmptyLists(v);
  }
  return out;
}

interface Rule {
  readonly apiGroups?: string[];
  readonly resources?: string[];
  readonly verbs?: string[];
  readonly resourceNames?: string[];
}

let sharedPki: { ca: TestCa; serving: TestCertificate } | undefined;

export class KubeApiServerStandIn {
  static async start(): Promise<KubeApiServerStandIn> {
    const standIn = new KubeApiServerStandIn();
    await new Promise<void>((resolve) => standIn.server.listen(0, '127.0.0.1', resolve));
    return standIn;
  }

  /** The CA of the stand-in's serving certificate: the kubeconfig's certificate-authority-data. */
  readonly ca: TestCa;
  /** Bearer tokens it accepts (an admin's: it may read everything and ask any review). */
  readonly tokens = new Set<string>();
  readonly adminToken = randomBytes(24).toString('base64url');
  readonly requests: RecordedRequest[] = [];
  /** Answers of `/apis/<group>/<version>` for aggregated groups (what the aggregator would proxy). */
  readonly discovery = new Map<string, { status: number; body: object }>();
  /** Pod logs by `<namespace>/<pod>`; `previous` is the log of the last terminated container. */
  readonly logs = new Map<string, { current: string; previous?: string }>();

  private readonly objects = new Map<string, StoredObject>();
  /** Every change, for watches that start from a resourceVersion. */
  private readonly changes: { readonly rv: number; readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'; readonly object: StoredObject }[] = [];
  private readonly watchers = new Set<{ readonly matches: (object: StoredObject) => boolean; readonly res: ServerResponse }>();
  private readonly server: https.Server;
  private readonly sockets = new Set<Socket>();
  private rv = 1000;

  private constructor() {
    // Made once per test file: RSA key generation is most of a start on a loaded machine.
    sharedPki ??= (() => {
      const ca = makeCa('kube-apiserver-stand-in-ca');
      return { ca, serving: makeServerCert(ca, ['kubernetes.default.svc']) };
    })();
    this.ca = sharedPki.ca;
    const serving = sharedPki.serving;
    this.tokens.add(this.adminToken);
    this.server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => this.handle(req, res));
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    // The roles kube-apiserver bootstraps that the constructs bind to.
    this.put({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'system:auth-delegator' },
      rules: [
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
      ],
    });
    this.put({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'extension-apiserver-authentication-reader', namespace: 'kube-system' },
      rules: [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['extension-apiserver-authentication'], verbs: ['get', 'list', 'watch'] }],
    });
  }

  get url(): string {
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  // ---- programming -----------------------------------------------------------------------

  /** Stores (creates or replaces) an object, with the metadata the server sets. */
  put(object: StoredObject): StoredObject {
    const resource = RESOURCES[object.kind];
    if (!resource) throw new Error(`the stand-in holds no ${object.kind}`);
    const stored = dropEmptyLists(structuredClone(object)) as StoredObject;
    stored.metadata = {
      ...stored.metadata,
      uid: (stored.metadata.uid as string | undefined) ?? randomUUID(),
      resourceVersion: String(++this.rv),
      creationTimestamp: (stored.metadata.creationTimestamp as string | undefined) ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      managedFields: [{ manager: 'kubectl', operation: 'Apply', apiVersion: object.apiVersion, time: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }],
    };
    const objectKey = key(object.apiVersion, resource, object.metadata.namespace, object.metadata.name);
    this.changed(this.objects.has(objectKey) ? 'MODIFIED' : 'ADDED', stored);
    this.objects.set(objectKey, stored);
    return stored;
  }

  /** The stored object (to mutate and put back), or undefined. */
  find(kind: string, name: string, namespace?: string): StoredObject | undefined {
    return [...this.objects.values()].find((o) => o.kind === kind && o.metadata.name === name && o.metadata.namespace === namespace);
  }

  /** Like find, but throws when absent. */
  get(kind: string, name: string, namespace?: string): StoredObject {
    const found = this.find(kind, name, namespace);
    if (!found) throw new Error(`the stand-in holds no ${kind} ${namespace ? `${namespace}/` : ''}${name}`);
    return found;
  }

  remove(kind: string, name: string, namespace?: string): void {
    const found = this.get(kind, name, namespace);
    this.objects.delete(key(found.apiVersion, RESOURCES[kind], namespace, name));
    this.changed('DELETED', { ...found, metadata: { ...found.metadata, resourceVersion: String(++this.rv) } });
  }

  /** Records a change and sends it to the watches it matches. */
  private changed(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: StoredObject): void {
    this.changes.push({ rv: Number(object.metadata.resourceVersion), type, object });
    for (const watcher of this.watchers) if (watcher.matches(object)) watcher.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  /** Writes a kubeconfig for the stand-in: a bearer token, or an exec credential plugin; its cluster and user are named after the context, so that files merge. */
  writeKubeconfig(file: string, user: { token: string } | { exec: { command: string; args?: string[] } }, contextName = 'stand-in'): string {
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: `${contextName}-cluster`, cluster: { server: this.url, 'certificate-authority-data': Buffer.from(this.ca.certPem).toString('base64') } }],
      users: [
        {
          name: `${contextName}-user`,
          user: 'token' in user ? { token: user.token } : { exec: { apiVersion: 'client.authentication.k8s.io/v1beta1', command: user.exec.command, args: user.exec.args ?? [], interactiveMode: 'Never' } },
        },
      ],
      contexts: [{ name: contextName, context: { cluster: `${contextName}-cluster`, user: `${contextName}-user` } }],
      'current-context': contextName,
    };
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
    return file;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- serving ---------------------------------------------------------------------------

  private reply(res: ServerResponse, code: number, body: object | string): void {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(code, { 'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json' });
    res.end(text);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://stand-in');
      this.requests.push({ method: req.method ?? '', path: url.pathname + url.search });
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!token || !this.tokens.has(token)) {
        this.reply(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized'));
        return;
      }
      if (req.method === 'POST' && url.pathname === '/apis/authorization.k8s.io/v1/subjectaccessreviews') {
        const review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        this.reply(res, 201, { ...review, metadata: { creationTimestamp: null }, status: this.authorize(review.spec) });
        return;
      }
      if (req.method !== 'GET') {
        this.reply(res, 405, statusBody(405, 'MethodNotAllowed', `the stand-in only reads: ${req.method} is not supported`));
        return;
      }
      this.get_(url, res);
    });
  }

  private get_(url: URL, res: ServerResponse): void {
    const p = url.pathname;
    if (p === '/version') {
      this.reply(res, 200, { major: '1', minor: '31', gitVersion: 'v1.31.0', platform: 'linux/amd64' });
      return;
    }
    const aggregated = this.discovery.get(p);
    if (aggregated) {
      this.reply(res, aggregated.status, aggregated.body);
      return;
    }
    const parts = p.split('/').filter(Boolean).map(decodeURIComponent);
    let apiVersion: string;
    let rest: string[];
    if (parts[0] === 'api' && parts.length >= 2) {
      apiVersion = parts[1];
      rest = parts.slice(2);
    } else if (parts[0] === 'apis' && parts.length >= 3) {
      apiVersion = `${parts[1]}/${parts[2]}`;
      rest = parts.slice(3);
    } else {
      this.reply(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [resource, name, subresource] = rest;
    const kind = KINDS_OF_RESOURCES.get(resource);
    if (!kind) {
      this.reply(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    if (name === undefined && (url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true')) {
      // A watch: the changes after the resourceVersion asked for, then each change as it happens.
      const from = Number(url.searchParams.get('resourceVersion') || String(this.rv));
      const matches = (o: StoredObject) => o.apiVersion === apiVersion && o.kind === kind && (namespace === undefined || o.metadata.namespace === namespace);
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      for (const change of this.changes) if (change.rv > from && matches(change.object)) res.write(`${JSON.stringify({ type: change.type, object: change.object })}\n`);
      const watcher = { matches, res };
      this.watchers.add(watcher);
      res.on('close', () => this.watchers.delete(watcher));
      return;
    }
    if (name === undefined) {
      const selector = (url.searchParams.get('labelSelector') ?? '').split(',').filter(Boolean).map((term) => term.split('='));
      const items = [...this.objects.values()].filter(
        (o) =>
          o.apiVersion === apiVersion &&
          o.kind === kind &&
          (namespace === undefined || o.metadata.namespace === namespace) &&
          selector.every(([k, v]) => (o.metadata.labels as Record<string, string> | undefined)?.[k] === v),
      );
      this.reply(res, 200, { kind: `${kind}List`, apiVersion, metadata: { resourceVersion: String(this.rv) }, items });
      return;
    }
    const object = this.objects.get(key(apiVersion, resource, namespace, name));
    const group = apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
    if (!object) {
      this.reply(res, 404, { ...statusBody(404, 'NotFound', `${resource}${group ? `.${group}` : ''} "${name}" not found`), details: { name, group, kind: resource } });
      return;
    }
    if (subresource === 'log' && kind === 'Pod') {
      const log = this.logs.get(`${namespace}/${name}`);
      const text = url.searchParams.get('previous') === 'true' ? log?.previous : log?.current;
      if (text === undefined) {
        const container = url.searchParams.get('container') ?? '';
        const message = url.searchParams.get('previous') === 'true' ? `previous terminated container "${container}" in pod "${name}" not found` : `container "${container}" in pod "${name}" is waiting to start: trying and failing to pull image`;
        this.reply(res, 400, statusBody(400, 'BadRequest', message));
        return;
      }
      const tail = Number(url.searchParams.get('tailLines') ?? '0');
      const lines = text.split('\n').filter(Boolean);
      this.reply(res, 200, `${(tail > 0 ? lines.slice(-tail) : lines).join('\n')}\n`);
      return;
    }
    this.reply(res, 200, object);
  }

  /** The RBAC authorizer: allowed when a binding of the user (or one of its groups) grants a role with a matching rule. */
  private authorize(spec: { user?: string; groups?: string[]; resourceAttributes?: Record<string, string> }): { allowed: boolean; reason?: string } {
    const attributes = spec.resourceAttributes ?? {};
    const matchesSubject = (subject: { kind: string; name: string; namespace?: string }): boolean =>
      (subject.kind === 'ServiceAccount' && spec.user === `system:serviceaccount:${subject.namespace}:${subject.name}`) ||
      (subject.kind === 'User' && spec.user === subject.name) ||
      (subject.kind === 'Group' && (spec.groups ?? []).includes(subject.name));
    const matchesRule = (rule: Rule): boolean =>
      (rule.apiGroups ?? []).some((g) => g === '*' || g === (attributes.group ?? '')) &&
      (rule.resources ?? []).some((r) => r === '*' || r === attributes.resource) &&
      (rule.verbs ?? []).some((v) => v === '*' || v === attributes.verb) &&
      ((rule.resourceNames ?? []).length === 0 || (attributes.name !== undefined && rule.resourceNames!.includes(attributes.name)));
    const bindings = [...this.objects.values()].filter(
      (o) => o.kind === 'ClusterRoleBinding' || (o.kind === 'RoleBinding' && attributes.namespace !== undefined && o.metadata.namespace === attributes.namespace),
    );
    for (const binding of bindings) {
      if (!(binding.subjects ?? []).some(matchesSubject)) continue;
      const role = this.find(binding.roleRef.kind, binding.roleRef.name, binding.roleRef.kind === 'Role' ? binding.metadata.namespace : undefined);
      if (role && (role.rules ?? []).some(matchesRule)) {
        return { allowed: true, reason: `RBAC: allowed by ${binding.kind} "${binding.metadata.name}" of ${binding.roleRef.kind} "${binding.roleRef.name}" to ${spec.user}` };
      }
    }
    return { allowed: false };
  }
}
