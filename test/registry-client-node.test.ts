import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { makeCa, makeServerCert } from './support/pki';
import { FLUNDERS, RegistryServer, flunder } from './support/registry-server';

/**
 * A real client library against the registry: @kubernetes/client-node 1.4 (CustomObjectsApi
 * list and create, and an informer: list + watch). The library is ESM-only and jest runs
 * CommonJS, so the client runs in a child `node` process; the server runs here, over HTTPS
 * with a test CA the client trusts (client-node refuses plain HTTP without skipTLSVerify).
 */

const CLIENT_SCRIPT = `
import * as k8s from '@kubernetes/client-node';
const { SERVER, CA } = process.env;
const kc = new k8s.KubeConfig();
kc.loadFromOptions({
  clusters: [{ name: 'c', server: SERVER, caData: Buffer.from(CA).toString('base64'), skipTLSVerify: false }],
  users: [{ name: 'u', token: 'unused' }],
  contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
  currentContext: 'x',
});
const api = kc.makeApiClient(k8s.CustomObjectsApi);
const target = { group: 'wardle.example.com', version: 'v1alpha1', namespace: 'ns1', plural: 'flunders' };
const out = {};
const listed = await api.listNamespacedCustomObject(target);
out.listed = listed.items.map((i) => i.metadata.name);
out.listKind = listed.kind;

const informer = k8s.makeInformer(kc, '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders', () => api.listNamespacedCustomObject(target));
const seen = [];
informer.on('add', (o) => seen.push('add ' + o.metadata.name));
informer.on('update', (o) => seen.push('update ' + o.metadata.name + ' ' + o.spec.reference));
informer.on('delete', (o) => seen.push('delete ' + o.metadata.name));
informer.on('error', (e) => seen.push('error ' + String(e)));
await informer.start();
const until = async (n) => { for (let i = 0; i < 200 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 25)); };
await until(1);

const created = await api.createNamespacedCustomObject({ ...target, body: { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'from-client' }, spec: { reference: 'r1' } } });
out.created = { name: created.metadata.name, uid: created.metadata.uid, spec: created.spec };
await until(2);
await api.patchNamespacedCustomObject({ ...target, name: 'from-client', body: { spec: { reference: 'r2' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
await until(3);
await api.deleteNamespacedCustomObject({ ...target, name: 'from-client' });
await until(4);
out.cached = informer.list('ns1').map((o) => o.metadata.name).sort();
out.seen = [...seen];
try {
  await api.getNamespacedCustomObject({ ...target, name: 'from-client' });
  out.getAfterDelete = 'found';
} catch (e) {
  out.getAfterDelete = e.code;
}
await informer.stop();
process.stdout.write(JSON.stringify(out));
process.exit(0);
`;

function runClient(env: Record<string, string>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', CLIENT_SCRIPT],
      { cwd: path.join(__dirname, '..'), env: { ...process.env, ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`client failed: ${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as Record<string, unknown>);
      },
    );
  });
}

describe('@kubernetes/client-node 1.4 against the registry', () => {
  let server: RegistryServer;
  let caPem: string;

  beforeAll(async () => {
    const ca = makeCa('registry-test-ca');
    const cert = makeServerCert(ca);
    caPem = ca.certPem;
    server = await RegistryServer.start({ tls: { certPem: cert.certPem, keyPem: cert.keyPem, caPem } });
    await server.post(FLUNDERS, flunder('existing', { reference: 'x' }));
  });

  afterAll(async () => {
    await server.close();
  });

  test('lists, creates, patches and deletes through CustomObjectsApi; an informer sees every change', async () => {
    // WHEN
    const out = await runClient({ SERVER: server.url, CA: caPem });

    // THEN
    expect(out.listed).toEqual(['existing']);
    expect(out.listKind).toBe('FlunderList');
    expect(out.created).toMatchObject({ name: 'from-client', spec: { reference: 'r1', referenceType: 'Flunder' } });
    expect(out.seen).toEqual(['add existing', 'add from-client', 'update from-client r2', 'delete from-client']);
    expect(out.cached).toEqual(['existing']);
    expect(out.getAfterDelete).toBe(404);
  });
});
