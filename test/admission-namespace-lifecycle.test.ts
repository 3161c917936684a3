import pino from 'pino';
import { KubeNamespaceLister } from '../server/admission/namespace-lifecycle';
import { KubeClient, createKubeClient } from '../server/kube-client';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { FISCHERS, FLUNDERS, RegistryServer, flunder } from './support/registry-server';

describe('NamespaceLifecycle in the registry', () => {
  let server: RegistryServer;

  beforeEach(async () => {
    server = await RegistryServer.start({ namespaces: { ns1: 'Active', dying: 'Terminating' } });
  });

  afterEach(async () => {
    await server.close();
  });

  test('fails a create in a missing namespace with 404 namespaces "x" not found', async () => {
    const reply = await server.post('/apis/wardle.example.com/v1alpha1/namespaces/nowhere/flunders', flunder('f'));
    expect(reply.status).toBe(404);
    expect(reply.body).toMatchObject({
      kind: 'Status',
      reason: 'NotFound',
      code: 404,
      message: 'namespaces "nowhere" not found',
      details: { name: 'nowhere', kind: 'namespaces' },
    });
  });

  test('fails a create in a terminating namespace with 403 and the NamespaceTerminating cause', async () => {
    const reply = await server.post('/apis/wardle.example.com/v1alpha1/namespaces/dying/flunders', flunder('f'));
    expect(reply.status).toBe(403);
    expect(reply.body).toMatchObject({
      reason: 'Forbidden',
      code: 403,
      message: 'flunders.wardle.example.com "f" is forbidden: unable to create new content in namespace dying because it is being terminated',
      details: {
        name: 'f',
        group: 'wardle.example.com',
        kind: 'flunders',
        causes: [{ reason: 'NamespaceTerminating', message: 'namespace dying is being terminated', field: 'metadata.namespace' }],
      },
    });
  });

  test('a generateName create quotes the prefix, as upstream (the name is not generated yet)', async () => {
    const reply = await server.post('/apis/wardle.example.com/v1alpha1/namespaces/dying/flunders', { metadata: { generateName: 'gen-' } });
    expect(reply.status).toBe(403);
    expect(reply.body.message).toMatch(/^flunders.wardle.example.com "gen-" is forbidden/);
  });

  test('a terminating namespace still allows updates and deletes, so it can be emptied', async () => {
    // GIVEN an object created while the namespace was active
    server.namespaces.set('late', 'Active');
    const path = '/apis/wardle.example.com/v1alpha1/namespaces/late/flunders';
    await server.post(path, flunder('f', {}, { finalizers: ['example.com/x'] }));
    server.namespaces.set('late', 'Terminating');

    // THEN
    expect((await server.patch(`${path}/f`, { metadata: { finalizers: null } })).status).toBe(200);
    await server.post(`${path}`, flunder('g')).then((r) => expect(r.status).toBe(403));
    server.namespaces.set('late', 'Active');
    await server.post(path, flunder('g'));
    server.namespaces.set('late', 'Terminating');
    expect((await server.delete(`${path}/g`)).status).toBe(200);
  });

  test('an update in a namespace that no longer exists fails with 404', async () => {
    server.namespaces.set('gone', 'Active');
    const path = '/apis/wardle.example.com/v1alpha1/namespaces/gone/flunders';
    await server.post(path, flunder('f'));
    server.namespaces.set('gone', undefined);
    const reply = await server.patch(`${path}/f`, { metadata: { labels: { a: 'b' } } });
    expect(reply.status).toBe(404);
    expect(reply.body.message).toBe('namespaces "gone" not found');
  });

  test('cluster-scoped kinds are not subject to it', async () => {
    expect((await server.post(FISCHERS, { metadata: { name: 'fi' } })).status).toBe(201);
    expect((await server.post(FLUNDERS, flunder('ok'))).status).toBe(201);
  });
});

describe('KubeNamespaceLister over kube-apiserver', () => {
  let fake: FakeKubeApiServer;
  let client: KubeClient;
  let lister: KubeNamespaceLister;

  beforeEach(async () => {
    fake = await FakeKubeApiServer.start();
    fake.setNamespace('default', 'Active');
    fake.setNamespace('dying', 'Terminating');
    client = createKubeClient({ server: fake.url, caPem: fake.ca.certPem, token: fake.serviceAccountToken });
    lister = new KubeNamespaceLister(client, pino({ level: 'silent' }));
  });

  afterEach(async () => {
    lister.close();
    client.close();
    await fake.stop();
  });

  async function synced(): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!lister.hasSynced()) {
      if (Date.now() > deadline) throw new Error('namespace lister did not sync');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  test('answers from its list+watch cache without further requests', async () => {
    // GIVEN
    await synced();
    const gets = fake.calls.namespaceGets;

    // THEN
    expect(await lister.phase('default')).toBe('Active');
    expect(await lister.phase('dying')).toBe('Terminating');
    expect(fake.calls.namespaceGets).toBe(gets);
    expect(fake.calls.namespaceLists).toBe(1);
  });

  test('follows changes through the watch', async () => {
    await synced();
    fake.setNamespace('fresh', 'Active');
    await waitFor(async () => (await lister.phase('fresh')) === 'Active');
    fake.setNamespace('fresh', 'Terminating');
    await waitFor(async () => (await lister.phase('fresh')) === 'Terminating');
    fake.deleteNamespace('fresh');
    await waitFor(async () => (await lister.phase('fresh')) === undefined);
  });

  test('a namespace unknown to the cache is looked up live: missing → undefined', async () => {
    await synced();
    const gets = fake.calls.namespaceGets;
    expect(await lister.phase('nowhere')).toBeUndefined();
    expect(fake.calls.namespaceGets).toBe(gets + 1);
  });

  test('before the first list, answers with a live lookup', async () => {
    // GIVEN a lister that has not synced yet (asked at once)
    const early = new KubeNamespaceLister(client, pino({ level: 'silent' }));
    try {
      expect(await early.phase('dying')).toBe('Terminating');
    } finally {
      early.close();
    }
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
