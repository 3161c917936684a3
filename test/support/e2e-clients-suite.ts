import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { startServerEnvironment, ServerEnvironment } from './server-process';

/**
 * Real client libraries and the controllers' request shapes against the server:
 * - @kubernetes/client-node 1.4 (an ES module, so it runs in its own node process): a
 *   CustomObjectsApi list and create, and an informer (makeInformer) that sees ADDED, MODIFIED
 *   and DELETED, through a KubeConfig with an x509 client certificate;
 * - the namespace controller and the garbage collector: discovery, then PartialObjectMetadataList
 *   lists and PartialObjectMetadata watches asked for protobuf first, and deletecollection,
 *   emptying a terminating namespace of its flunders.
 * Run once per store (test/e2e-clients.test.ts, test/e2e-clients-etcd.test.ts).
 */

const ROOT = path.resolve(__dirname, '..', '..');
const GROUP = 'wardle.example.com';
const CLIENT_NODE = path.join(ROOT, 'node_modules', '@kubernetes', 'client-node', 'dist', 'index.js');

/** The client-node program: lists, creates, then runs an informer and prints one JSON line per thing it sees. */
const CLIENT_SCRIPT = `
import * as k8s from ${JSON.stringify(CLIENT_NODE)};
const [kubeconfigFile, namespace] = process.argv.slice(2);
const print = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfigFile);
const api = kc.makeApiClient(k8s.CustomObjectsApi);
const target = { group: ${JSON.stringify(GROUP)}, version: 'v1alpha1', namespace, plural: 'flunders' };
try {
  const before = await api.listNamespacedCustomObject(target);
  print({ step: 'list', kind: before.kind, items: before.items.length, resourceVersion: before.metadata.resourceVersion });
  const created = await api.createNamespacedCustomObject({ ...target, body: { apiVersion: ${JSON.stringify(GROUP)} + '/v1alpha1', kind: 'Flunder', metadata: { name: 'from-client-node' }, spec: {} } });
  print({ step: 'create', name: created.metadata.name, uid: created.metadata.uid });
  const informer = k8s.makeInformer(kc, '/apis/${GROUP}/v1alpha1/namespaces/' + namespace + '/flunders', () => api.listNamespacedCustomObject(target));
  for (const verb of [k8s.ADD, k8s.UPDATE, k8s.DELETE]) informer.on(verb, (o) => print({ step: verb, name: o.metadata.name, labels: o.metadata.labels ?? {} }));
  informer.on(k8s.ERROR, (e) => print({ step: 'error', message: String(e && (e.message ?? e)) }));
  await informer.start();
  print({ step: 'started' });
} catch (e) {
  print({ step: 'failed', message: String(e && (e.message ?? e)), body: e && e.body });
  process.exit(1);
}
`;

/** Registers the client suites against a server that stores in `storage` (etcd: a real etcd started for it). */
export function describeClientsSuite(storage: 'memory' | 'etcd'): void {
  describe(`clients against the server on ${storage} storage`, () => {
    let env: ServerEnvironment;
    let admin: { cert: string; key: string };

    beforeAll(async () => {
      env = await startServerEnvironment({ storage });
      // The test's own requests go as an x509 user in system:masters (no SubjectAccessReview).
      const kubeconfig = fs.readFileSync(env.kubeconfigFor({ cn: 'e2e-admin', organizations: ['system:masters'] }), 'utf8');
      const field = (name: string) => Buffer.from(new RegExp(`${name}: (\\S+)`).exec(kubeconfig)![1], 'base64').toString('utf8');
      admin = { cert: field('client-certificate-data'), key: field('client-key-data') };
    }, 60_000);

    afterAll(async () => {
      await env?.stop();
    });

    test(`the server stores in ${storage}: /readyz names its storage check`, async () => {
      // GIVEN the server started for this suite; WHEN its readiness is asked; THEN the check is its store's
      const ready = await env.server.probe('/readyz?verbose');
      expect(ready.status).toBe(200);
      expect(ready.body).toContain(storage === 'etcd' ? '[+]etcd ok' : '[+]storage ok');
    });

    function call(method: string, urlPath: string, options: { body?: unknown; accept?: string; contentType?: string } = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
      return new Promise((resolve, reject) => {
        const text = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
        const req = https.request(
          {
            host: '127.0.0.1',
            port: env.server.port,
            path: urlPath,
            method,
            ca: env.servingCa.certPem,
            servername: env.serverName,
            cert: admin.cert,
            key: admin.key,
            headers: { ...(options.accept ? { accept: options.accept } : {}), ...(text !== undefined ? { 'content-type': options.contentType ?? 'application/json', 'content-length': Buffer.byteLength(text) } : {}) },
          },
          (res) => {
            let data = '';
            res.on('data', (c: Buffer) => (data += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
          },
        );
        req.on('error', reject);
        req.end(text);
      });
    }

    const flunder = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name, labels }, spec: {} });

    describe('@kubernetes/client-node 1.4', () => {
      let child: ChildProcessWithoutNullStreams | undefined;
      afterEach(() => child?.kill());

      test('CustomObjectsApi lists and creates, and an informer sees ADDED, MODIFIED and DELETED', async () => {
        // GIVEN the client-node program with a KubeConfig holding an x509 client certificate
        const namespace = 'client-node';
        env.fake.setNamespace(namespace, 'Active');
        await call('POST', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders`, { body: flunder('existing') });
        const script = path.join(env.dir, 'client-node.mjs');
        fs.writeFileSync(script, CLIENT_SCRIPT);
        child = spawn(process.execPath, [script, env.kubeconfigFor({ cn: 'client-node-user', organizations: ['developers'] }), namespace]);
        const events: Record<string, unknown>[] = [];
        let partial = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => {
          const lines = (partial + c.toString()).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) events.push(JSON.parse(line) as Record<string, unknown>);
        });
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        const until = async (predicate: (e: Record<string, unknown>) => boolean, what: string) => {
          const deadline = Date.now() + 10_000;
          while (!events.some(predicate)) {
            if (Date.now() > deadline || events.some((e) => e.step === 'failed')) throw new Error(`client-node did not report ${what}: ${JSON.stringify(events)} ${stderr}`);
            await new Promise((r) => setTimeout(r, 25));
          }
        };

        // WHEN it lists, creates and starts its informer
        await until((e) => e.step === 'started', 'its informer starting');
        // THEN the list and the create worked, and the informer saw both objects as ADDED
        expect(events[0]).toMatchObject({ step: 'list', kind: 'FlunderList', items: 1, resourceVersion: expect.stringMatching(/^\d+$/) });
        expect(events[1]).toMatchObject({ step: 'create', name: 'from-client-node', uid: expect.stringMatching(/^[0-9a-f-]{36}$/) });
        await until((e) => e.step === 'add' && e.name === 'existing', 'ADDED existing');
        await until((e) => e.step === 'add' && e.name === 'from-client-node', 'ADDED from-client-node');

        // WHEN another client changes the objects
        const patched = await call('PATCH', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders/existing`, { body: { metadata: { labels: { seen: 'yes' } } }, contentType: 'application/merge-patch+json' });
        expect(patched.status).toBe(200);
        await until((e) => e.step === 'update' && e.name === 'existing', 'MODIFIED existing');
        const created = await call('POST', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders`, { body: flunder('added-later') });
        expect(created.status).toBe(201);
        await until((e) => e.step === 'add' && e.name === 'added-later', 'ADDED added-later');
        expect((await call('DELETE', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders/from-client-node`)).status).toBe(200);

        // THEN the informer saw each change
        await until((e) => e.step === 'delete' && e.name === 'from-client-node', 'DELETED from-client-node');
        expect(events.find((e) => e.step === 'update' && e.name === 'existing')).toMatchObject({ labels: { seen: 'yes' } });
        expect(events.filter((e) => e.step === 'error')).toEqual([]);
      });
    });

    describe('namespace deletion, as the namespace controller and the garbage collector do it', () => {
      const namespace = 'doomed';
      const PROTOBUF_FIRST_LIST = 'application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';
      const PROTOBUF_FIRST_OBJECT = 'application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';

      test('a terminating namespace holding flunders is emptied: metadata lists and watches as JSON, deletecollection, no new content', async () => {
        // GIVEN a namespace with three flunders, and one elsewhere
        env.fake.setNamespace(namespace, 'Active');
        env.fake.setNamespace('survivor', 'Active');
        for (const name of ['a', 'b', 'c']) expect((await call('POST', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders`, { body: flunder(name, { app: 'x' }) })).status).toBe(201);
        expect((await call('POST', `/apis/${GROUP}/v1alpha1/namespaces/survivor/flunders`, { body: flunder('kept') })).status).toBe(201);

        // AND the garbage collector's metadata watch (protobuf first, one PartialObjectMetadata per event)
        const list0 = await call('GET', `/apis/${GROUP}/v1alpha1/flunders`, { accept: PROTOBUF_FIRST_LIST });
        const rv = JSON.parse(list0.body).metadata.resourceVersion as string;
        const watchLines: string[] = [];
        const watch = https.get({
          host: '127.0.0.1',
          port: env.server.port,
          path: `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`,
          ca: env.servingCa.certPem,
          servername: env.serverName,
          cert: admin.cert,
          key: admin.key,
          headers: { accept: PROTOBUF_FIRST_OBJECT },
        });
        const watchResponse = new Promise<{ status: number; contentType: string }>((resolve) =>
          watch.on('response', (res) => {
            res.on('data', (c: Buffer) => watchLines.push(...c.toString().split('\n').filter(Boolean)));
            resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']) });
          }),
        );
        expect(await watchResponse).toEqual({ status: 200, contentType: expect.stringMatching(/^application\/json/) });

        // WHEN the namespace starts terminating
        env.fake.setNamespace(namespace, 'Terminating');
        // THEN new content is refused, as NamespaceLifecycle does (the lister sees the change through its watch)
        let refused = { status: 0, body: '' };
        for (let i = 0; i < 50 && refused.status !== 403; i++) {
          refused = await call('POST', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders`, { body: flunder(`late-${i}`) });
          if (refused.status !== 403) await new Promise((r) => setTimeout(r, 20));
        }
        expect(refused.status).toBe(403);
        expect(JSON.parse(refused.body).message).toContain(`unable to create new content in namespace ${namespace} because it is being terminated`);
        const late = await call('GET', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders?labelSelector=!app`, { accept: PROTOBUF_FIRST_LIST });
        for (const item of JSON.parse(late.body).items as { metadata: { name: string } }[]) await call('DELETE', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders/${item.metadata.name}`);

        // WHEN the namespace controller lists what is left as metadata (protobuf first)
        const listed = await call('GET', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders`, { accept: PROTOBUF_FIRST_LIST });
        // THEN it gets a PartialObjectMetadataList as JSON, without spec
        expect(listed.status).toBe(200);
        // (kube-apiserver names the serializer, not the transformation: plain application/json.)
        expect(listed.headers['content-type']).toMatch(/^application\/json/);
        const metaList = JSON.parse(listed.body);
        expect(metaList).toMatchObject({ kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1' });
        expect(metaList.items.map((i: { metadata: { name: string } }) => i.metadata.name).sort()).toEqual(['a', 'b', 'c']);
        expect(metaList.items[0]).toMatchObject({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1' });
        expect(metaList.items[0].spec).toBeUndefined();

        // WHEN it deletes the collection with background propagation, as the metadata client sends it
        const deleted = await call('DELETE', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders`, {
          accept: 'application/vnd.kubernetes.protobuf,application/json',
          body: { kind: 'DeleteOptions', apiVersion: 'meta.k8s.io/v1', propagationPolicy: 'Background' },
        });
        expect(deleted.status).toBe(200);

        // THEN the namespace is empty, the other namespace untouched, and the GC's watch saw each deletion as metadata
        const after = JSON.parse((await call('GET', `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders`, { accept: PROTOBUF_FIRST_LIST })).body);
        expect(after.items).toEqual([]);
        const kept = JSON.parse((await call('GET', `/apis/${GROUP}/v1alpha1/namespaces/survivor/flunders`)).body);
        expect(kept.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(['kept']);
        const deadline = Date.now() + 5000;
        const deletedNames = () =>
          watchLines
            .map((l) => JSON.parse(l) as { type: string; object: { kind: string; metadata: { name: string } } })
            .filter((e) => e.type === 'DELETED' && /^[abc]$/.test(e.object.metadata.name));
        while (deletedNames().length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        expect(deletedNames().map((e) => e.object.metadata.name).sort()).toEqual(['a', 'b', 'c']);
        expect(deletedNames().every((e) => e.object.kind === 'PartialObjectMetadata')).toBe(true);
        watch.destroy();
      });
    });
  });
}
