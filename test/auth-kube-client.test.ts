import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { configFromKubeconfig, inClusterConfig, loadKubeClient, type KubeClient, type KubeWatchEvent } from '../server/kube-client';
import { AUTH_CONFIGMAP_NAME, FakeKubeApiServer } from './support/fake-kube-apiserver';
import { until } from './support/until';

let fake: FakeKubeApiServer;
let dir: string;
const clients: KubeClient[] = [];

function track(client: KubeClient): KubeClient {
  clients.push(client);
  return client;
}

beforeAll(async () => {
  fake = await FakeKubeApiServer.start();
});

afterAll(async () => {
  await fake.stop();
});

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'kube-client-'));
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('kubeconfig', () => {
  test('a client certificate kubeconfig authenticates as its CN', async () => {
    // GIVEN a kubeconfig with certificate-authority-data and client-certificate-data
    const client = track(loadKubeClient({ kubeconfig: fake.writeKubeconfig(dir, 'cert') }));

    // WHEN the client asks who it is
    const res = await client.request<{ status: { userInfo: { username: string } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'SelfSubjectReview',
    });

    // THEN the stand-in saw the client certificate's CN
    expect(res.status).toBe(201);
    expect(res.body.status.userInfo.username).toBe('system:serviceaccount:wardle:wardle-apiserver');
  });

  test('a token kubeconfig and a tokenFile kubeconfig authenticate with the bearer token', async () => {
    // GIVEN kubeconfigs with token and with tokenFile (relative to the kubeconfig's directory)
    for (const auth of ['token', 'tokenFile'] as const) {
      const client = track(loadKubeClient({ kubeconfig: fake.writeKubeconfig(path.join(dir, auth), auth) }));

      // WHEN it reads a namespace
      const res = await client.request<{ status: { phase: string } }>('GET', '/api/v1/namespaces/default');

      // THEN it is authenticated
      expect(res.status).toBe(200);
      expect(res.body.status.phase).toBe('Active');
    }
  });

  test('relative certificate files are resolved against the kubeconfig directory', () => {
    // GIVEN a kubeconfig that names its CA, certificate and key by relative paths
    writeFileSync(path.join(dir, 'ca.crt'), fake.ca.certPem);
    writeFileSync(path.join(dir, 'client.crt'), fake.clientCert.certPem);
    writeFileSync(path.join(dir, 'client.key'), fake.clientCert.keyPem);
    const file = path.join(dir, 'config');
    writeFileSync(
      file,
      `apiVersion: v1
kind: Config
current-context: b
clusters:
- name: a
  cluster: {server: "https://a.example:6443"}
- name: b
  cluster: {server: "${fake.url}/", certificate-authority: ca.crt, tls-server-name: kubernetes.default.svc}
users:
- name: u
  user: {client-certificate: client.crt, client-key: client.key}
contexts:
- name: a
  context: {cluster: a, user: u}
- name: b
  context: {cluster: b, user: u}
`,
    );

    // WHEN it is resolved
    const config = configFromKubeconfig(file);

    // THEN the current context's cluster is used, with the files' contents
    expect(config.server).toBe(fake.url);
    expect(config.caPem).toBe(fake.ca.certPem);
    expect(config.clientCertPem).toBe(fake.clientCert.certPem);
    expect(config.clientKeyPem).toBe(fake.clientCert.keyPem);
    expect(config.tlsServerName).toBe('kubernetes.default.svc');
  });

  test('fails on insecure-skip-tls-verify', () => {
    // GIVEN a kubeconfig that skips TLS verification
    const file = path.join(dir, 'config');
    writeFileSync(
      file,
      `current-context: c
clusters: [{name: k, cluster: {server: "https://10.0.0.1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
`,
    );

    // WHEN / THEN it is refused, naming the cluster and what to set instead
    expect(() => configFromKubeconfig(file)).toThrow(/cluster "k" sets insecure-skip-tls-verify: true.*set certificate-authority-data/);
  });

  test('fails on an exec plugin without a supported apiVersion, an unknown auth-provider, basic auth, a missing context and a missing current-context', () => {
    const write = (text: string) => {
      const file = path.join(dir, `config-${Math.random()}`);
      writeFileSync(file, text);
      return file;
    };
    const cluster = `clusters: [{name: k, cluster: {server: "https://10.0.0.1"}}]\n`;
    const withUser = (user: string) => write(`current-context: c\n${cluster}users: [{name: u, user: ${user}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n`);
    expect(() => configFromKubeconfig(withUser('{exec: {command: aws}}'))).toThrow(/user "u" exec has no apiVersion \(expected client.authentication.k8s.io\/v1 or client.authentication.k8s.io\/v1beta1\)/);
    expect(() => configFromKubeconfig(withUser('{exec: {command: aws, apiVersion: client.authentication.k8s.io/v1alpha1}}'))).toThrow(/exec apiVersion "client.authentication.k8s.io\/v1alpha1" is not supported/);
    expect(() => configFromKubeconfig(withUser('{exec: {apiVersion: client.authentication.k8s.io/v1}}'))).toThrow(/user "u" exec has no command/);
    expect(() => configFromKubeconfig(withUser('{auth-provider: {name: openstack}}'))).toThrow(/user "u" auth-provider "openstack" is not supported \(expected one of oidc, gcp, azure, or an exec plugin\)/);
    expect(() => configFromKubeconfig(withUser('{username: admin, password: secret}'))).toThrow(/user "u" uses "username" \(basic authentication, which kube-apiserver removed in 1.19\)/);
    expect(() => configFromKubeconfig(write(`current-context: nope\n${cluster}contexts: []\n`))).toThrow(/context "nope" not found \(expected one of: none\)/);
    expect(() => configFromKubeconfig(write(cluster))).toThrow(/has no current-context/);
    expect(() => configFromKubeconfig(write(`current-context: c\nclusters: [{name: k, cluster: {server: "http://10.0.0.1"}}]\ncontexts: [{name: c, context: {cluster: k}}]\n`))).toThrow(
      /server "http:\/\/10.0.0.1" is not an https:\/\/ URL/,
    );
  });
});

describe('in-cluster', () => {
  test('reads the ServiceAccount token and CA and reaches KUBERNETES_SERVICE_HOST:PORT', async () => {
    // GIVEN the ServiceAccount files of a pod and the service environment
    const { serviceAccountDir, env } = fake.writeInClusterFiles(path.join(dir, 'sa'));

    // WHEN a client is loaded without a kubeconfig
    const client = track(loadKubeClient({ serviceAccountDir, env }));
    const res = await client.request<{ items: unknown[] }>('GET', '/api/v1/namespaces');

    // THEN it is authenticated by the token and verified the server with ca.crt
    expect(res.status).toBe(200);
    expect(res.body.items.length).toBeGreaterThan(0);
  });

  test('re-reads a rotated token file', async () => {
    // GIVEN an in-cluster client that re-reads its token at once
    const { serviceAccountDir, env } = fake.writeInClusterFiles(path.join(dir, 'sa'));
    const client = track(loadKubeClient({ serviceAccountDir, env, tokenRefreshMs: 0 }));
    expect((await client.request('GET', '/api/v1/namespaces/default')).status).toBe(200);

    // WHEN the kubelet rotates the token to one the API server does not know, then to a valid one
    writeFileSync(path.join(serviceAccountDir, 'token'), 'rotated-unknown-token');
    const withUnknown = await client.request('GET', '/api/v1/namespaces/default');
    fake.setToken('rotated-valid-token', { user: fake.serviceAccountUser });
    writeFileSync(path.join(serviceAccountDir, 'token'), 'rotated-valid-token\n');
    const withValid = await client.request('GET', '/api/v1/namespaces/default');

    // THEN each request used the file's current token
    expect(withUnknown.status).toBe(401);
    expect(withValid.status).toBe(200);
  });

  test('fails outside a cluster, naming the variables and the kubeconfig flags', () => {
    expect(() => inClusterConfig(dir, {})).toThrow(/KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined.*--kubeconfig/);
  });

  test('fails without the mounted ServiceAccount files', () => {
    expect(() => inClusterConfig(dir, { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' })).toThrow(/cannot read the in-cluster CA .*automountServiceAccountToken/);
  });

  test('brackets an IPv6 service host', () => {
    const { serviceAccountDir } = fake.writeInClusterFiles(path.join(dir, 'sa'));
    expect(inClusterConfig(serviceAccountDir, { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }).server).toBe('https://[fd00::1]:443');
  });
});

describe('TLS', () => {
  test('fails against a server whose certificate another CA signed', async () => {
    // GIVEN a kubeconfig trusting a different CA than the stand-in's
    const other = await FakeKubeApiServer.start();
    try {
      const file = fake.writeKubeconfig(dir, 'token');
      const text = (await import('node:fs')).readFileSync(file, 'utf8').replace(fake.url, other.url);
      writeFileSync(file, text);
      const client = track(loadKubeClient({ kubeconfig: file }));

      // WHEN / THEN the request fails verification instead of being sent
      await expect(client.request('GET', '/api/v1/namespaces')).rejects.toThrow(/self.signed|unable to verify|certificate/i);
      expect(other.calls.namespaceLists).toBe(0);
    } finally {
      await other.stop();
    }
  });
});

describe('watch', () => {
  const cmPath = `/api/v1/namespaces/kube-system/configmaps?fieldSelector=${encodeURIComponent(`metadata.name=${AUTH_CONFIGMAP_NAME}`)}`;

  test('lists (SYNC) then streams changes', async () => {
    // GIVEN the ConfigMap exists
    fake.setAuthConfigMap({ a: '1' });
    const client = track(loadKubeClient({ kubeconfig: fake.writeKubeconfig(dir) }));
    const events: KubeWatchEvent[] = [];

    // WHEN a watch starts and the ConfigMap changes twice and is deleted
    const watchesAtStart = fake.calls.configMapWatches;
    const w = client.watch(cmPath, (e) => events.push(e));
    await until(() => events.length === 1, 'the SYNC');
    await until(() => fake.calls.configMapWatches > watchesAtStart, 'the watch to connect');
    fake.setAuthConfigMap({ a: '2' });
    fake.setAuthConfigMap({ a: '3' });
    fake.setAuthConfigMap(undefined);
    await until(() => events.length === 4, 'three events');
    w.stop();
    await w.done;

    // THEN the list came first, then each change in order
    expect(events.map((e) => e.type)).toEqual(['SYNC', 'MODIFIED', 'MODIFIED', 'DELETED']);
    expect(events[0].object.items[0].data).toEqual({ a: '1' });
    expect(events[2].object.data).toEqual({ a: '3' });
  });

  test('resumes from the last resourceVersion after the API server restarts, and relists after 410', async () => {
    // GIVEN a running watch
    fake.setAuthConfigMap({ v: 'before' });
    const client = track(loadKubeClient({ kubeconfig: fake.writeKubeconfig(dir), watchBackoffMs: 20, maxWatchBackoffMs: 100 }));
    const events: KubeWatchEvent[] = [];
    const errors: Error[] = [];
    const w = client.watch(cmPath, (e) => events.push(e), { onError: (e) => errors.push(e) });
    const watchesAtStart = fake.calls.configMapWatches;
    await until(() => events.length === 1, 'the SYNC');
    await until(() => fake.calls.configMapWatches > watchesAtStart, 'the watch to connect');
    const watchesBefore = fake.calls.configMapWatches;

    // WHEN the API server goes down, a change happens meanwhile, and it comes back
    await fake.down();
    await new Promise((r) => setTimeout(r, 100));
    fake.setAuthConfigMap({ v: 'while-down' });
    await fake.up();

    // THEN the watch reconnects from its resourceVersion and sees the change without a relist
    await until(() => events.length === 2, 'the change made while down');
    expect(events[1]).toMatchObject({ type: 'MODIFIED', object: { data: { v: 'while-down' } } });
    expect(errors.length).toBeGreaterThan(0);
    expect(fake.calls.configMapWatches).toBeGreaterThan(watchesBefore);

    // WHEN history is compacted while the watch is cut, and a change happens
    const listsBefore = fake.calls.configMapLists;
    await fake.down();
    fake.setAuthConfigMap({ v: 'after-compaction' });
    fake.compact();
    await fake.up();

    // THEN the watch gets 410, lists again and reports the state as a SYNC
    await until(() => events.length === 3, 'the relist');
    expect(events[2].type).toBe('SYNC');
    expect(events[2].object.items[0].data).toEqual({ v: 'after-compaction' });
    expect(fake.calls.configMapLists).toBe(listsBefore + 1);
    w.stop();
    await w.done;
  });

  test('stop() ends a watch that is waiting for an API server that does not answer', async () => {
    // GIVEN a TCP server that accepts connections and never answers
    const net = await import('node:net');
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const file = fake.writeKubeconfig(dir);
    writeFileSync(file, (await import('node:fs')).readFileSync(file, 'utf8').replace(fake.url, `https://127.0.0.1:${(silent.address() as import('node:net').AddressInfo).port}`));
    const client = track(loadKubeClient({ kubeconfig: file, requestTimeoutMs: 200, watchBackoffMs: 10 }));
    const errors: Error[] = [];

    // WHEN a watch starts, times out at least once, and is stopped
    const w = client.watch('/api/v1/namespaces', () => undefined, { onError: (e) => errors.push(e) });
    await until(() => errors.length > 0, 'a timeout');
    w.stop();

    // THEN it ends
    await w.done;
    expect(errors[0].message).toMatch(/no answer within 200 ms/);
    silent.close();
  });

  test('keeps retrying a forbidden list and reports each failure', async () => {
    // GIVEN the ConfigMap is forbidden
    fake.configMapForbidden = true;
    try {
      const client = track(loadKubeClient({ kubeconfig: fake.writeKubeconfig(dir), watchBackoffMs: 10, maxWatchBackoffMs: 20 }));
      const errors: Error[] = [];
      const events: KubeWatchEvent[] = [];

      // WHEN a watch runs for a while
      const w = client.watch(cmPath, (e) => events.push(e), { onError: (e) => errors.push(e) });
      await until(() => errors.length >= 3, 'three failures');
      fake.configMapForbidden = false;
      await until(() => events.length === 1, 'the SYNC once allowed');
      w.stop();
      await w.done;

      // THEN each failure named the status, and it recovered once allowed
      expect(errors[0].message).toMatch(/HTTP 403: configmaps is forbidden/);
    } finally {
      fake.configMapForbidden = false;
    }
  });
});
