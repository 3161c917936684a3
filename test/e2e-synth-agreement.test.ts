import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { Aggregator, ApiServiceRef } from './support/aggregator';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf } from './support/pki';
import { freePort, ServerProcess } from './support/server-process';

/**
 * The synthesized manifests and the server agree (on memory storage): the server runs with exactly the container's
 * args and env from the synthesized Deployment and the Secret's files laid out as the kubelet
 * mounts them, and the aggregator's stand-in reaches it with the synthesized APIService caBundle
 * and ServerName `<service>.<namespace>.svc`.
 */

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'build', 'main.js');
const GROUP = 'wardle.example.com';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML of any kind
  [key: string]: any;
}

/** Writes a Secret volume as the kubelet's atomic writer does: `..<timestamp>/` with the files, `..data` → it, `<key>` → `..data/<key>`. */
function writeSecretVolume(dir: string, data: Record<string, string>, mode: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[-:]/g, '_').replace('T', '_').replace(/\..*$/, '')}.${process.pid}`;
  fs.mkdirSync(path.join(dir, stamp));
  for (const [key, value] of Object.entries(data)) fs.writeFileSync(path.join(dir, stamp, key), Buffer.from(value, 'base64'), { mode });
  fs.symlinkSync(stamp, path.join(dir, '..data'));
  for (const key of Object.keys(data)) fs.symlinkSync(path.join('..data', key), path.join(dir, key));
}

describe('the synthesized Deployment runs the server, reached through the aggregator with the synthesized caBundle', () => {
  let work: string;
  let objects: K8sObject[];
  let fake: FakeKubeApiServer;
  let server: ServerProcess;
  let aggregator: Aggregator;
  let apiServices: ApiServiceRef[];
  let serverArgs: string[];
  const frontProxyCa = makeCa('front-proxy-ca');
  const clientCa = makeCa('kubernetes-client-ca');

  beforeAll(async () => {
    if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" (npm test does) before jest`);
    // GIVEN the default synth, storing in memory (test/e2e-synth-etcd.test.ts runs the default, etcd, with its etcd)
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-synth-'));
    const synth = spawnSync(process.execPath, [MAIN, '--output', path.join(work, 'dist'), '--pki-dir', path.join(work, 'pki'), '--storage', 'memory'], {
      cwd: work,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, CDK8S_CHECK_UPGRADE: 'false' },
      encoding: 'utf8',
    });
    expect(synth.stderr).toBe('');
    expect(synth.status).toBe(0);
    const dist = path.join(work, 'dist');
    objects = fs
      .readdirSync(dist)
      .flatMap((f) => YAML.parseAllDocuments(fs.readFileSync(path.join(dist, f), 'utf8')).map((d) => d.toJS() as K8sObject))
      .filter((o) => o);

    const deployment = objects.find((o) => o.kind === 'Deployment')!;
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    // AND its volumes laid out in a temporary root as the kubelet would mount them
    const root = path.join(work, 'pod');
    const mountOf = (p: string) => path.join(root, p);
    for (const mount of container.volumeMounts as { name: string; mountPath: string }[]) {
      const volume = (pod.volumes as { name: string; secret?: { secretName: string; defaultMode?: number }; emptyDir?: object }[]).find((v) => v.name === mount.name)!;
      if (volume.secret) {
        const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === volume.secret!.secretName && o.metadata.namespace === deployment.metadata.namespace);
        expect(secret).toBeDefined();
        writeSecretVolume(mountOf(mount.mountPath), secret!.data, volume.secret.defaultMode ?? 0o644);
      } else {
        fs.mkdirSync(mountOf(mount.mountPath), { recursive: true });
      }
    }

    // AND kube-apiserver's stand-in publishing a client CA and the front-proxy CA
    fake = await FakeKubeApiServer.start({ serviceAccount: { namespace: deployment.metadata.namespace!, name: pod.serviceAccountName as string } });
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: clientCa.certPem, requestheaderCaPem: frontProxyCa.certPem }));
    fake.authorize = (spec) => (spec.user === 'alice' ? { allowed: true, reason: 'RBAC: allowed by ClusterRoleBinding "alice-edit"' } : { allowed: false });
    const kubeconfig = fake.writeKubeconfig(path.join(work, 'kube'));

    // WHEN the server starts with the container's args and env, only the mount prefix and the port rewritten
    const port = await freePort();
    const containerPort = String(container.ports[0].containerPort);
    const mountPaths = (container.volumeMounts as { mountPath: string }[]).map((m) => m.mountPath);
    serverArgs = (container.args as string[]).map((arg) => {
      if (arg === `--secure-port=${containerPort}`) return `--secure-port=${port}`;
      const eq = arg.indexOf('=');
      const value = arg.slice(eq + 1);
      // The longest mount path that holds the value: one rewrite per argument.
      const mount = mountPaths.filter((m) => value.startsWith(`${m}/`)).sort((a, b) => b.length - a.length)[0];
      return eq > 0 && mount ? `${arg.slice(0, eq + 1)}${mountOf(mount)}${value.slice(mount.length)}` : arg;
    });
    expect(serverArgs).toContain(`--secure-port=${port}`);
    const env = Object.fromEntries(((container.env ?? []) as { name: string; value?: string }[]).map((e) => [e.name, e.value ?? '']));
    const service = objects.find((o) => o.kind === 'Service' && o.metadata.name === objects.find((a) => a.kind === 'APIService')!.spec.service.name)!;
    const serverName = `${service.metadata.name}.${service.metadata.namespace}.svc`;
    apiServices = objects
      .filter((o) => o.kind === 'APIService')
      .map((o) => ({
        group: o.spec.group,
        version: o.spec.version,
        service: { namespace: o.spec.service.namespace, name: o.spec.service.name },
        caBundle: Buffer.from(o.spec.caBundle, 'base64').toString('utf8'),
      }));
    server = await ServerProcess.start({
      args: [...serverArgs, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`, `--kubeconfig=${kubeconfig}`],
      env,
      ca: apiServices[0].caBundle,
      serverName,
    });
    aggregator = await Aggregator.start({
      apiServices,
      endpoint: { host: '127.0.0.1', port },
      proxyClientCert: makeLeaf(frontProxyCa, { cn: 'front-proxy-client' }),
      users: { 'alice-token': { name: 'alice', uid: 'alice-uid', groups: ['team-a', 'team-b', 'system:authenticated'], extra: { 'scopes.example.com/Team': ['x', 'y'] } } },
    });
  }, 60_000);

  afterAll(async () => {
    await aggregator?.stop();
    const code = await server?.stop();
    await fake?.stop();
    // THEN the server also shut down cleanly on SIGTERM
    expect(code).toBe(0);
  });

  function front(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
      const url = new URL(urlPath, aggregator.url);
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = https.request(
        url,
        { method, ca: aggregator.ca.certPem, headers: { authorization: 'Bearer alice-token', 'impersonate-user': 'system:admin', 'x-remote-user': 'mallory', ...(text ? { 'content-type': 'application/json' } : {}) } },
        (res) => {
          let data = '';
          res.on('data', (c: Buffer) => (data += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end(text);
    });
  }

  test('the args come from the Deployment: the mounted serving certificate and key, and the container port', () => {
    expect(serverArgs.some((a) => a.startsWith('--tls-cert-file=') && a.endsWith('/tls.crt'))).toBe(true);
    expect(serverArgs.some((a) => a.startsWith('--tls-private-key-file=') && a.endsWith('/tls.key'))).toBe(true);
  });

  test('the kubelet-style probes answer on the Deployment paths, anonymously', async () => {
    const deployment = objects.find((o) => o.kind === 'Deployment')!;
    const container = deployment.spec.template.spec.containers[0];
    for (const probe of [container.livenessProbe, container.readinessProbe]) {
      expect(probe.httpGet.scheme).toBe('HTTPS');
      const res = await server.probe(probe.httpGet.path);
      expect(res).toEqual({ status: 200, body: 'ok' });
    }
  });

  test('the availability check passes for every synthesized APIService, as system:kube-aggregator', async () => {
    expect(apiServices.map((a) => a.version).sort()).toEqual(['v1alpha1', 'v1beta1']);
    for (const apiService of apiServices) {
      expect(await aggregator.checkAvailability(apiService)).toEqual({ available: true, reason: 'Passed', message: 'all checks passed' });
    }
  });

  test('the serving certificate is checked: another ServerName or another caBundle fails the availability check', async () => {
    const [apiService] = apiServices;
    const wrongName = { ...apiService, service: { ...apiService.service, name: 'other' } };
    const wrongCa = { ...apiService, caBundle: makeCa('someone-else').certPem };
    for (const bad of [wrongName, wrongCa]) {
      const other = await Aggregator.start({ apiServices: [bad], endpoint: { host: '127.0.0.1', port: server.port }, proxyClientCert: makeLeaf(frontProxyCa, { cn: 'front-proxy-client' }) });
      try {
        const result = await other.checkAvailability(bad);
        expect(result.available).toBe(false);
        expect(result.reason).toBe('FailedDiscoveryCheck');
        expect(result.message).toMatch(bad === wrongName ? /Hostname\/IP does not match certificate's altnames|other\.wardle\.svc/ : /unable to verify|self.signed|certificate/);
      } finally {
        await other.stop();
      }
    }
  });

  test('aggregated discovery as kube-apiserver 1.28 (v2beta1) and 1.33 (v2) asks for it publishes flunders', async () => {
    for (const kubeVersion of ['1.28', '1.33'] as const) {
      const agg = await Aggregator.start({ apiServices, endpoint: { host: '127.0.0.1', port: server.port }, proxyClientCert: makeLeaf(frontProxyCa, { cn: 'front-proxy-client' }), kubeVersion });
      try {
        for (const apiService of apiServices) {
          const discovered = await agg.discover(apiService);
          expect(discovered.source).toBe('aggregated');
          expect(discovered.resources.map((r) => r.resource)).toContain('flunders');
        }
        const alpha = await agg.discover(apiServices.find((a) => a.version === 'v1alpha1')!);
        expect(alpha.detail).toContain(`v=${kubeVersion === '1.28' ? 'v2beta1' : 'v2'}`);
      } finally {
        await agg.stop();
      }
    }
  });

  test('through the proxy: list flunders, create one, and the server authorized the X-Remote-* user, not the forged headers', async () => {
    for (const apiService of apiServices) await aggregator.checkAvailability(apiService);
    // WHEN alice lists and creates through the aggregator's front
    const list = await front('GET', `/apis/${GROUP}/v1alpha1/namespaces/default/flunders`);
    expect(list.status).toBe(200);
    expect(JSON.parse(list.body)).toMatchObject({ kind: 'FlunderList', apiVersion: `${GROUP}/v1alpha1`, items: [] });
    const before = fake.subjectAccessReviewSpecs.length;
    const created = await front('POST', `/apis/${GROUP}/v1alpha1/namespaces/default/flunders`, { apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name: 'through-the-proxy' }, spec: {} });
    expect(created.status).toBe(201);
    expect(JSON.parse(created.body)).toMatchObject({ kind: 'Flunder', metadata: { name: 'through-the-proxy', namespace: 'default' } });

    // THEN the SubjectAccessReview names alice with every group and extra, and the audit ID was echoed
    const sar = fake.subjectAccessReviewSpecs.slice(before).find((s) => s.resourceAttributes?.verb === 'create');
    expect(sar).toMatchObject({
      user: 'alice',
      uid: 'alice-uid',
      groups: expect.arrayContaining(['team-a', 'team-b', 'system:authenticated']),
      extra: { 'scopes.example.com/team': ['x', 'y'] },
      resourceAttributes: { namespace: 'default', verb: 'create', group: GROUP, version: 'v1alpha1', resource: 'flunders' },
    });
    expect(fake.subjectAccessReviewSpecs.some((s) => s.user === 'mallory' || s.user === 'system:admin')).toBe(false);
    expect(aggregator.auditIds).toContain(created.headers['audit-id']);

    // AND the same object reads through the other APIService's version
    const beta = await front('GET', `/apis/${GROUP}/v1beta1/namespaces/default/flunders/through-the-proxy`);
    expect(beta.status).toBe(200);
    expect(JSON.parse(beta.body)).toMatchObject({ apiVersion: `${GROUP}/v1beta1`, kind: 'Flunder', metadata: { name: 'through-the-proxy' } });
  });

  test('the front proxies only /apis/<group>/<version>: other paths are kube-apiserver\'s own', async () => {
    expect((await front('GET', '/apis')).status).toBe(404);
    expect((await front('GET', '/openapi/v2')).status).toBe(404);
  });

  test('the synthesized RBAC lets the ServiceAccount do what the server did at kube-apiserver', () => {
    // The server read the ConfigMap and reviewed tokens/access as the stand-in's ServiceAccount user:
    // the synth binds that ServiceAccount to auth-delegator and the auth-reader Role in kube-system.
    const sa = objects.find((o) => o.kind === 'ServiceAccount')!;
    const bindings = objects.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding');
    const boundTo = (role: string) => bindings.filter((b) => b.roleRef.name === role && b.subjects.some((s: { name: string; namespace: string }) => s.name === sa.metadata.name && s.namespace === sa.metadata.namespace));
    expect(boundTo('system:auth-delegator')).toHaveLength(1);
    expect(boundTo('extension-apiserver-authentication-reader')).toMatchObject([{ kind: 'RoleBinding', metadata: { namespace: 'kube-system' } }]);
    expect(fake.calls.configMapGets + fake.calls.configMapLists).toBeGreaterThan(0);
  });
});
