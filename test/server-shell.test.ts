import { X509Certificate } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WARDLE } from '../apis';
import { Server } from '../server/server';
import { makeCa, makeLeaf, makeServerCert, TestCa, TestCertificate } from './support/pki';
import { FakeApiServing, FakeAuth, memoryLogger, request } from './support/shell-fakes';

const GROUP = 'wardle.example.com';
const V2 = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList';
const V2BETA1 = 'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList';

let dir: string;
let servingCa: TestCa;
let clientCa: TestCa;
let admin: TestCertificate;
let alice: TestCertificate;
let auth: FakeAuth;
let apiServing: FakeApiServing;
let logLines: Record<string, unknown>[];
let server: Server;

/** Writes a key pair the way the kubelet lays out a Secret volume: `..data` → a timestamped dir. */
function writeSecretVolume(root: string, cert: TestCertificate, generation: number): void {
  const data = join(root, `..2024_01_0${generation}`);
  mkdirSync(data);
  writeFileSync(join(data, 'tls.crt'), cert.chainPem);
  writeFileSync(join(data, 'tls.key'), cert.keyPem, { mode: 0o600 });
  symlinkSync(`..2024_01_0${generation}`, join(root, '..data_tmp'));
  renameSync(join(root, '..data_tmp'), join(root, '..data'));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'server-shell-'));
  servingCa = makeCa('serving-ca');
  clientCa = makeCa('client-ca');
  admin = makeLeaf(clientCa, { cn: 'admin', organizations: ['system:masters'] });
  alice = makeLeaf(clientCa, { cn: 'alice', organizations: ['developers'] });
  writeSecretVolume(dir, makeServerCert(servingCa), 1);
  symlinkSync('..data/tls.crt', join(dir, 'tls.crt'));
  symlinkSync('..data/tls.key', join(dir, 'tls.key'));
  auth = new FakeAuth([clientCa.certPem]);
  apiServing = new FakeApiServing();
  logLines = [];
  server = await Server.start({
    api: WARDLE,
    auth,
    apiServing: apiServing as never,
    logger: memoryLogger(logLines),
    bindAddress: '127.0.0.1',
    securePort: 0,
    tlsCertFile: join(dir, 'tls.crt'),
    tlsPrivateKeyFile: join(dir, 'tls.key'),
    shutdownDelayMs: 0,
    shutdownTimeoutMs: 2000,
    certPollIntervalMs: 200,
  });
});

afterAll(async () => {
  await server.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

const asAdmin = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
  request(server.port, path, { ca: servingCa.certPem, cert: admin.chainPem, key: admin.keyPem, headers, method });

describe('discovery', () => {
  test('legacy /apis, /apis/<g> and /apis/<g>/<v>', async () => {
    // WHEN
    const groups = await asAdmin('/apis', { Accept: 'application/json' });
    const group = await asAdmin(`/apis/${GROUP}`);
    const resources = await asAdmin(`/apis/${GROUP}/v1alpha1`, { Accept: 'application/vnd.kubernetes.protobuf, application/json' });

    // THEN
    expect(groups.status).toBe(200);
    expect(groups.headers['content-type']).toBe('application/json');
    expect(groups.json()).toEqual({
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: [
        {
          name: GROUP,
          versions: [
            { groupVersion: `${GROUP}/v1beta1`, version: 'v1beta1' },
            { groupVersion: `${GROUP}/v1alpha1`, version: 'v1alpha1' },
          ],
          preferredVersion: { groupVersion: `${GROUP}/v1beta1`, version: 'v1beta1' },
        },
      ],
    });
    expect(group.json()).toMatchObject({ kind: 'APIGroup', apiVersion: 'v1', name: GROUP, preferredVersion: { version: 'v1beta1' } });
    const list = resources.json();
    expect(list).toMatchObject({ kind: 'APIResourceList', apiVersion: 'v1', groupVersion: `${GROUP}/v1alpha1` });
    expect(list.resources.map((r: { name: string }) => r.name)).toEqual(['flunders', 'flunders/status', 'fischers']);
    expect(list.resources[0]).toEqual({
      name: 'flunders',
      singularName: 'flunder',
      namespaced: true,
      kind: 'Flunder',
      verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
      storageVersionHash: expect.stringMatching(/^[A-Za-z0-9+/]{11}=$/),
    });
    expect(list.resources[1]).toEqual({ name: 'flunders/status', singularName: '', namespaced: true, kind: 'Flunder', verbs: ['get', 'patch', 'update'] });
    expect(list.resources[2]).toMatchObject({ name: 'fischers', namespaced: false, kind: 'Fischer' });
  });

  test.each([
    ['v2', V2],
    ['v2beta1', V2BETA1],
  ])('aggregated discovery %s answers in the version asked for, echoing g, v and as', async (version, accept) => {
    // WHEN: the exact Accept kube-apiserver sends (1.28: v2beta1; current: v2)
    const res = await asAdmin('/apis', { Accept: accept });

    // THEN
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe(accept);
    expect(res.headers.etag).toMatch(/^"[0-9a-f]{64}"$/);
    const body = res.json();
    expect(body).toMatchObject({ kind: 'APIGroupDiscoveryList', apiVersion: `apidiscovery.k8s.io/${version}` });
    expect(body.items).toHaveLength(1);
    const [item] = body.items;
    expect(item.metadata.name).toBe(GROUP);
    expect(item.versions.map((v: { version: string }) => v.version)).toEqual(['v1beta1', 'v1alpha1']);
    const alpha = item.versions[1];
    expect(alpha.freshness).toBe('Current');
    expect(alpha.resources[0]).toEqual({
      resource: 'flunders',
      responseKind: { group: GROUP, version: 'v1alpha1', kind: 'Flunder' },
      scope: 'Namespaced',
      singularResource: 'flunder',
      verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
      subresources: [{ subresource: 'status', responseKind: { group: GROUP, version: 'v1alpha1', kind: 'Flunder' }, verbs: ['get', 'patch', 'update'] }],
    });
    expect(alpha.resources[1]).toMatchObject({ resource: 'fischers', scope: 'Cluster' });
  });

  test('the Accept list client-go sends (v2, v2beta1, then JSON) gets v2', async () => {
    const res = await asAdmin('/apis', { Accept: `${V2},${V2BETA1},application/json` });
    expect(res.headers['content-type']).toBe(V2);
  });

  test('ETag and If-None-Match give 304', async () => {
    // GIVEN
    const first = await asAdmin('/apis', { Accept: V2 });

    // WHEN
    const again = await asAdmin('/apis', { Accept: V2, 'If-None-Match': first.headers.etag as string });
    const other = await asAdmin('/apis', { Accept: V2BETA1, 'If-None-Match': first.headers.etag as string });

    // THEN
    expect(again.status).toBe(304);
    expect(again.body).toBe('');
    expect(other.status).toBe(200);
  });

  test.each([
    ['an unknown aggregated version', 'application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList'],
    ['protobuf only', 'application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList'],
    ['text/html', 'text/html'],
  ])('fails with 406 for %s', async (_what, accept) => {
    const res = await asAdmin('/apis', { Accept: accept });
    expect(res.status).toBe(406);
    expect(res.json()).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'NotAcceptable', code: 406 });
  });

  test('*/* and a missing Accept get the legacy list', async () => {
    expect((await asAdmin('/apis', { Accept: '*/*' })).json().kind).toBe('APIGroupList');
    expect((await asAdmin('/apis')).json().kind).toBe('APIGroupList');
  });
});

describe('openapi', () => {
  test('/openapi/v2 publishes every served resource with GVKs and the meta definitions', async () => {
    // WHEN
    const res = await asAdmin('/openapi/v2', { Accept: 'application/json' });

    // THEN
    expect(res.status).toBe(200);
    const spec = res.json();
    expect(spec.swagger).toBe('2.0');
    expect(spec.definitions['com.example.wardle.v1alpha1.Flunder']['x-kubernetes-group-version-kind']).toEqual([{ group: GROUP, version: 'v1alpha1', kind: 'Flunder' }]);
    expect(spec.definitions['com.example.wardle.v1beta1.Flunder'].properties.spec.properties.flunderReference.type).toBe('string');
    expect(spec.definitions['com.example.wardle.v1alpha1.FlunderList'].properties.items.items).toEqual({ $ref: '#/definitions/com.example.wardle.v1alpha1.Flunder' });
    expect(spec.definitions['com.example.wardle.v1alpha1.Flunder'].properties.metadata.$ref).toBe('#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta');
    for (const name of ['ObjectMeta', 'ListMeta', 'Time', 'ManagedFieldsEntry', 'OwnerReference', 'FieldsV1', 'Status', 'StatusDetails', 'StatusCause', 'DeleteOptions', 'Preconditions', 'WatchEvent', 'APIResourceList']) {
      expect(spec.definitions).toHaveProperty([`io.k8s.apimachinery.pkg.apis.meta.v1.${name}`]);
    }
    // every $ref resolves
    for (const [, ref] of res.body.matchAll(/"\$ref":"#\/definitions\/([^"]+)"/g)) expect(spec.definitions).toHaveProperty([ref]);
    expect(Object.keys(spec.paths).every((p) => p.startsWith(`/apis/${GROUP}/`))).toBe(true);
    const flunder = spec.paths[`/apis/${GROUP}/v1alpha1/namespaces/{namespace}/flunders/{name}`];
    expect(flunder.patch.consumes).toEqual(['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml']);
    expect(flunder.patch.parameters.filter((p: { in: string }) => p.in === 'query').map((p: { name: string }) => p.name)).toEqual(['dryRun', 'fieldManager', 'fieldValidation', 'force']);
    expect(res.body).not.toContain('strategic-merge-patch');
    expect(flunder.get['x-kubernetes-group-version-kind']).toEqual({ group: GROUP, version: 'v1alpha1', kind: 'Flunder' });
    expect(spec.paths[`/apis/${GROUP}/v1alpha1/fischers/{name}`].delete).toBeDefined();
    expect(spec.paths[`/apis/${GROUP}/v1alpha1/namespaces/{namespace}/flunders/{name}/status`].put).toBeDefined();
  });

  test('/openapi/v2 answers 304 to its ETag', async () => {
    const first = await asAdmin('/openapi/v2');
    expect(first.headers.etag).toMatch(/^"[0-9A-F]{128}"$/);
    const again = await asAdmin('/openapi/v2', { 'If-None-Match': first.headers.etag as string });
    expect(again.status).toBe(304);
  });

  test('/openapi/v3 indexes each group version with its hash, and the documents are OpenAPI 3.0', async () => {
    // WHEN
    const index = (await asAdmin('/openapi/v3')).json();

    // THEN
    expect(Object.keys(index.paths).sort()).toEqual([`apis/${GROUP}/v1alpha1`, `apis/${GROUP}/v1beta1`]);
    const url: string = index.paths[`apis/${GROUP}/v1beta1`].serverRelativeURL;
    expect(url).toMatch(new RegExp(`^/openapi/v3/apis/${GROUP}/v1beta1\\?hash=[0-9A-F]{128}$`));
    const doc = await asAdmin(url);
    expect(doc.status).toBe(200);
    expect(doc.headers.etag).toBe(`"${url.split('hash=')[1]}"`);
    expect(doc.headers['cache-control']).toBe('public, immutable');
    const spec = doc.json();
    expect(spec.openapi).toBe('3.0.0');
    const flunder = spec.components.schemas['com.example.wardle.v1beta1.Flunder'];
    expect(flunder['x-kubernetes-group-version-kind']).toEqual([{ group: GROUP, version: 'v1beta1', kind: 'Flunder' }]);
    expect(flunder.properties.metadata.allOf).toEqual([{ $ref: '#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta' }]);
    expect(spec.components.schemas).toHaveProperty(['io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta']);
    for (const [, ref] of doc.body.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)) expect(spec.components.schemas).toHaveProperty([ref]);
    expect(doc.body).not.toContain('#/definitions/');
    // a stale hash is answered with the current document, never a redirect
    const stale = await asAdmin(`/openapi/v3/apis/${GROUP}/v1beta1?hash=0000`);
    expect(stale.status).toBe(200);
    expect(stale.headers['cache-control']).toBe('no-cache, private');
    expect((await asAdmin(url, { 'If-None-Match': doc.headers.etag as string })).status).toBe(304);
  });
});

describe('health', () => {
  test('/healthz, /livez and /readyz answer ok, and verbose lists the checks', async () => {
    for (const path of ['/healthz', '/livez', '/readyz']) {
      const res = await request(server.port, path, { ca: servingCa.certPem });
      expect([path, res.status, res.body]).toEqual([path, 200, 'ok']);
    }
    const verbose = await request(server.port, '/readyz?verbose', { ca: servingCa.certPem });
    expect(verbose.body).toBe('[+]ping ok\n[+]log ok\n[+]authentication-config ok\n[+]storage ok\n[+]shutdown ok\nreadyz check passed\n');
    expect(verbose.headers['content-type']).toBe('text/plain; charset=utf-8');
    const one = await request(server.port, '/readyz/storage', { ca: servingCa.certPem });
    expect([one.status, one.body]).toEqual([200, 'ok']);
  });

  test('readiness fails while authentication config or storage is not ready', async () => {
    // GIVEN
    auth.ready = false;
    apiServing.ready = false;
    try {
      // WHEN
      const res = await request(server.port, '/readyz', { ca: servingCa.certPem });
      const one = await request(server.port, '/readyz/authentication-config', { ca: servingCa.certPem });
      const live = await request(server.port, '/livez', { ca: servingCa.certPem });

      // THEN
      expect(res.status).toBe(500);
      expect(res.body).toBe(
        '[+]ping ok\n[+]log ok\n[-]authentication-config failed: reason withheld\n[-]storage failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n',
      );
      expect(one.status).toBe(500);
      expect(one.body).toBe('internal server error: the authentication configuration is not loaded yet\n');
      expect(live.status).toBe(200);
    } finally {
      auth.ready = true;
      apiServing.ready = true;
    }
  });

  test('an unknown check is 404', async () => {
    expect((await request(server.port, '/readyz/nope', { ca: servingCa.certPem })).status).toBe(404);
  });
});

describe('authentication and authorization', () => {
  test('fails with 401 when a presented credential is invalid', async () => {
    const res = await request(server.port, `/apis/${GROUP}/v1alpha1/flunders`, { ca: servingCa.certPem, headers: { Authorization: 'Bearer bad' } });
    expect(res.status).toBe(401);
    expect(res.json()).toEqual({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
  });

  test('fails with 403 and the upstream message, namespace scope', async () => {
    // WHEN
    const res = await request(server.port, `/apis/${GROUP}/v1alpha1/namespaces/ns/flunders`, { ca: servingCa.certPem, cert: alice.chainPem, key: alice.keyPem });

    // THEN
    expect(res.status).toBe(403);
    expect(res.json()).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `flunders.${GROUP} is forbidden: User "alice" cannot list resource "flunders" in API group "${GROUP}" in the namespace "ns": RBAC: no binding for alice`,
      reason: 'Forbidden',
      details: { group: GROUP, kind: 'flunders' },
      code: 403,
    });
  });

  test('fails with 403 and the upstream message, cluster scope, named subresource and path', async () => {
    const opts = { ca: servingCa.certPem, cert: alice.chainPem, key: alice.keyPem };
    const cluster = await request(server.port, `/apis/${GROUP}/v1alpha1/fischers/f1`, opts);
    expect(cluster.json().message).toBe(`fischers.${GROUP} "f1" is forbidden: User "alice" cannot get resource "fischers" in API group "${GROUP}" at the cluster scope: RBAC: no binding for alice`);
    expect(cluster.json().details).toEqual({ name: 'f1', group: GROUP, kind: 'fischers' });
    const status = await request(server.port, `/apis/${GROUP}/v1alpha1/namespaces/ns/flunders/x/status`, { ...opts, method: 'PUT' });
    expect(status.json().message).toContain(`User "alice" cannot update resource "flunders/status" in API group "${GROUP}" in the namespace "ns"`);
    const path = await request(server.port, '/metrics', { ca: servingCa.certPem });
    expect(path.status).toBe(403);
    expect(path.json().message).toBe('forbidden: User "system:anonymous" cannot get path "/metrics"');
  });

  test('the client certificate is requested with the CAs of the auth config', async () => {
    // GIVEN a client certificate from a CA the server does not trust
    const stranger = makeLeaf(makeCa('other-ca'), { cn: 'admin', organizations: ['system:masters'] });

    // WHEN
    const res = await request(server.port, `/apis/${GROUP}/v1alpha1/flunders`, { ca: servingCa.certPem, cert: stranger.chainPem, key: stranger.keyPem });

    // THEN the TLS layer does not verify it: the request is anonymous and denied
    expect(res.status).toBe(403);
    expect(res.json().message).toContain('User "system:anonymous"');
  });
});

describe('routing, version, metrics and logs', () => {
  test('resource requests reach the registry with the parsed request info', async () => {
    const res = await asAdmin(`/apis/${GROUP}/v1alpha1/namespaces/ns/flunders?limit=5`);
    expect(res.status).toBe(200);
    expect(res.json().kind).toBe('FlunderList');
    expect(apiServing.handled.at(-1)).toMatchObject({ verb: 'list', namespace: 'ns', resource: 'flunders' });
  });

  test('fails with a 404 Status for unknown paths, groups and versions', async () => {
    for (const path of ['/nope', '/api/v1/pods', `/apis/${GROUP}/v9`, `/apis/${GROUP}/v9/flunders`, '/apis/other.example.com/v1/things', '/openapi/v3/apis/other/v1']) {
      const res = await asAdmin(path);
      expect([path, res.status, res.json().reason]).toEqual([path, 404, 'NotFound']);
    }
  });

  test('fails with 405 for writes to discovery', async () => {
    const res = await asAdmin('/apis', {}, 'POST');
    expect(res.status).toBe(405);
    expect(res.json().reason).toBe('MethodNotAllowed');
  });

  test('/version has the fields of version.Info', async () => {
    const info = (await asAdmin('/version')).json();
    expect(Object.keys(info).sort()).toEqual(['buildDate', 'compiler', 'gitCommit', 'gitTreeState', 'gitVersion', 'major', 'minor', 'platform']);
    expect(info.gitVersion).toMatch(/^v\d+\.\d+\.\d+/);
  });

  test('/metrics exposes request counts by verb, resource and code, latency and watchers', async () => {
    // GIVEN
    await asAdmin(`/apis/${GROUP}/v1alpha1/namespaces/ns/flunders`);
    await asAdmin(`/apis/${GROUP}/v1alpha1/namespaces/ns/flunders/missing`);

    // WHEN
    const res = await asAdmin('/metrics');

    // THEN
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.body).toMatch(new RegExp(`apiserver_request_total\\{verb="LIST",group="${GROUP}",version="v1alpha1",resource="flunders",subresource="",scope="namespace",code="200"\\} \\d+`));
    expect(res.body).toMatch(new RegExp(`apiserver_request_total\\{verb="GET",group="${GROUP}",version="v1alpha1",resource="flunders",subresource="",scope="resource",code="404"\\} 1`));
    expect(res.body).toMatch(/apiserver_request_duration_seconds_bucket\{le="0.005",verb="LIST",/);
    expect(res.body).toMatch(/^apiserver_registered_watchers 0$/m);
    expect(res.body).toMatch(/^process_resident_memory_bytes \d+/m);
    // unknown groups do not create label values
    await asAdmin('/apis/random.example.com/v1/things');
    expect((await asAdmin('/metrics')).body).not.toContain('random.example.com');
  });

  test('one JSON log line per request, with the user, verb, resource, code and latency, and no credentials', async () => {
    // GIVEN
    logLines.length = 0;

    // WHEN
    await request(server.port, `/apis/${GROUP}/v1alpha1/namespaces/ns/flunders/x`, {
      ca: servingCa.certPem,
      cert: admin.chainPem,
      key: admin.keyPem,
      headers: { 'Audit-ID': 'audit-123', Authorization: 'Bearer secret-token-value' },
    });
    await new Promise((resolve) => setTimeout(resolve, 50));

    // THEN
    const line = logLines.find((l) => l.auditID === 'audit-123');
    expect(line).toMatchObject({ msg: 'request', user: 'admin', verb: 'get', group: GROUP, version: 'v1alpha1', resource: 'flunders', namespace: 'ns', name: 'x', code: 404 });
    expect(typeof line?.latencyMs).toBe('number');
    expect(JSON.stringify(logLines)).not.toContain('secret-token-value');
    expect(JSON.stringify(logLines)).not.toContain('BEGIN');
  });
});

describe('serving certificate reload', () => {
  test('new connections get the new certificate; an open keep-alive connection keeps working', async () => {
    // GIVEN a keep-alive connection made with the first certificate
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const opts = { ca: servingCa.certPem, cert: admin.chainPem, key: admin.keyPem, agent };
    const before = await request(server.port, '/version', opts);
    const oldFingerprint = new X509Certificate(server.serving.certificate).fingerprint256;
    expect(before.peerCertificate).toBe(oldFingerprint);

    // WHEN the kubelet swaps the Secret volume (a new dir, `..data` renamed over)
    const next = makeServerCert(servingCa);
    writeSecretVolume(dir, next, 2);
    const newFingerprint = new X509Certificate(next.certPem).fingerprint256;
    for (let i = 0; i < 50 && new X509Certificate(server.serving.certificate).fingerprint256 !== newFingerprint; i++) await new Promise((r) => setTimeout(r, 50));

    // THEN
    const fresh = await request(server.port, '/version', { ca: servingCa.certPem });
    expect(fresh.peerCertificate).toBe(newFingerprint);
    const reused = await request(server.port, '/version', opts);
    expect(reused.status).toBe(200);
    expect(reused.socketId).toBe(before.socketId);
    agent.destroy();
  });

  test('a key that does not match the certificate is refused and the current pair kept', async () => {
    // GIVEN
    const current = server.serving.certificate;
    const a = makeServerCert(servingCa);
    const b = makeServerCert(servingCa);
    logLines.length = 0;

    // WHEN
    writeSecretVolume(dir, { ...a, keyPem: b.keyPem }, 3);
    await new Promise((r) => setTimeout(r, 600));

    // THEN
    expect(server.serving.certificate).toBe(current);
    expect(logLines.some((l) => String(l.err).includes('does not match the certificate'))).toBe(true);
    expect((await request(server.port, '/healthz', { ca: servingCa.certPem })).status).toBe(200);
  });

  test('a client CA change from the auth config applies to new handshakes', async () => {
    // GIVEN a client from a second CA, not yet trusted
    const secondCa = makeCa('client-ca-2');
    const bob = makeLeaf(secondCa, { cn: 'bob' });
    const url = `/apis/${GROUP}/v1alpha1/namespaces/ns/flunders`;
    expect((await request(server.port, url, { ca: servingCa.certPem, cert: bob.chainPem, key: bob.keyPem })).status).toBe(403);

    // WHEN the ConfigMap reload adds the CA
    auth.caBundle = [clientCa.certPem, secondCa.certPem];
    for (const listener of auth.listeners) listener();

    // THEN
    expect((await request(server.port, url, { ca: servingCa.certPem, cert: bob.chainPem, key: bob.keyPem })).status).toBe(200);
  });
});
