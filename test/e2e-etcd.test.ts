import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import { EtcdProcess } from './support/etcd';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf, type TestCa, type TestCertificate } from './support/pki';
import { ServerProcess, freePort } from './support/server-process';

/**
 * The bundled server on a real etcd, as a deployment lives it: replicas that share one etcd,
 * a server killed with SIGKILL under a write load, etcd going away and coming back, and
 * watchers that come back after etcd compacted the history they knew. The informer is
 * @kubernetes/client-node's (in its own process: it is an ES module).
 */

const ROOT = path.resolve(__dirname, '..');
const GROUP = 'wardle.example.com';
const ETCD_PREFIX = '/registry/wardle.example.com';
const CLIENT_NODE = path.join(ROOT, 'node_modules', '@kubernetes', 'client-node', 'dist', 'index.js');
const SERVER_NAME = 'wardle-apiserver.wardle.svc';

/** An informer that restarts after every error, as a controller's does, and prints its cache on "dump". */
const INFORMER_SCRIPT = `
import * as k8s from ${JSON.stringify(CLIENT_NODE)};
import { createInterface } from 'node:readline';
const [kubeconfigFile, namespace] = process.argv.slice(2);
const print = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfigFile);
const api = kc.makeApiClient(k8s.CustomObjectsApi);
const target = { group: ${JSON.stringify(GROUP)}, version: 'v1beta1', namespace, plural: 'flunders' };
const informer = k8s.makeInformer(kc, '/apis/${GROUP}/v1beta1/namespaces/' + namespace + '/flunders', () => api.listNamespacedCustomObject(target));
informer.on(k8s.ERROR, (e) => {
  print({ step: 'error', message: String(e && (e.message ?? e)), code: e && (e.statusCode ?? e.code) });
  setTimeout(() => informer.start().catch((err) => print({ step: 'error', message: String(err) })), 200);
});
informer.on(k8s.CONNECT, () => print({ step: 'connect' }));
await informer.start();
print({ step: 'started' });
createInterface({ input: process.stdin }).on('line', () => print({ step: 'dump', names: informer.list().map((o) => o.metadata.name).sort() }));
`;

interface WatchEvent {
  type: string;
  object: { kind?: string; code?: number; reason?: string; metadata?: { name?: string; resourceVersion?: string } };
  at: number;
}

/** One line the informer program printed. */
interface InformerStep {
  step: string;
  names?: string[];
  message?: string;
}

interface Reply {
  status: number;
  headers: Record<string, unknown>;
  body: string;
}

/** One etcd, kube-apiserver's stand-in, a serving PKI and any number of servers on that etcd. */
class Cluster {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'e2e-etcd-'));
  readonly servingCa: TestCa = makeCa('wardle-serving-ca');
  readonly clientCa: TestCa = makeCa('client-ca');
  readonly admin: TestCertificate = makeLeaf(this.clientCa, { cn: 'e2e-admin', organizations: ['system:masters'] });
  readonly servers: ServerProcess[] = [];
  private kubeconfig = '';

  private constructor(
    readonly etcd: EtcdProcess,
    readonly fake: FakeKubeApiServer,
  ) {}

  static async start(): Promise<Cluster> {
    const etcd = await EtcdProcess.start();
    const fake = await FakeKubeApiServer.start();
    const cluster = new Cluster(etcd, fake);
    const requestheaderCa = makeCa('front-proxy-ca');
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: cluster.clientCa.certPem, requestheaderCaPem: requestheaderCa.certPem }));
    fake.authorize = () => ({ allowed: true, reason: 'allowed by the e2e stand-in' });
    cluster.kubeconfig = fake.writeKubeconfig(cluster.dir);
    const serving = makeLeaf(cluster.servingCa, { cn: SERVER_NAME, dnsNames: [SERVER_NAME], extendedKeyUsages: ['serverAuth'] });
    writeFileSync(path.join(cluster.dir, 'tls.crt'), serving.chainPem);
    writeFileSync(path.join(cluster.dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
    return cluster;
  }

  /** Starts a server on the etcd (on `port`, e.g. to restart one where it was). */
  async startServer(port?: number, extraArgs: readonly string[] = []): Promise<ServerProcess> {
    const server = await ServerProcess.start({
      args: [
        `--secure-port=${port ?? (await freePort())}`,
        '--bind-address=127.0.0.1',
        `--tls-cert-file=${path.join(this.dir, 'tls.crt')}`,
        `--tls-private-key-file=${path.join(this.dir, 'tls.key')}`,
        `--kubeconfig=${this.kubeconfig}`,
        '--shutdown-delay-duration=0s',
        `--etcd-servers=${this.etcd.clientUrl}`,
        `--etcd-prefix=${ETCD_PREFIX}`,
        ...extraArgs,
      ],
      ca: this.servingCa.certPem,
      serverName: SERVER_NAME,
      readyTimeoutMs: 30_000,
    });
    this.servers.push(server);
    return server;
  }

  /** A kubeconfig for an x509 user of `server`. */
  kubeconfigFor(server: ServerProcess, cn: string): string {
    const cert = makeLeaf(this.clientCa, { cn, organizations: ['system:masters'] });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const file = path.join(this.dir, `kubeconfig-${cn}`);
    writeFileSync(
      file,
      `apiVersion: v1\nkind: Config\ncurrent-context: wardle\n` +
        `clusters:\n- name: wardle\n  cluster:\n    server: https://127.0.0.1:${server.port}\n    tls-server-name: ${SERVER_NAME}\n    certificate-authority-data: ${b64(this.servingCa.certPem)}\n` +
        `users:\n- name: ${cn}\n  user:\n    client-certificate-data: ${b64(cert.chainPem)}\n    client-key-data: ${b64(cert.keyPem)}\n` +
        `contexts:\n- name: wardle\n  context:\n    cluster: wardle\n    user: ${cn}\n`,
      { mode: 0o600 },
    );
    return file;
  }

  call(server: ServerProcess, method: string, urlPath: string, body?: unknown, contentType = 'application/json', timeoutMs = 30_000): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = https.request(
        {
          host: '127.0.0.1',
          port: server.port,
          path: urlPath,
          method,
          ca: this.servingCa.certPem,
          servername: SERVER_NAME,
          cert: this.admin.chainPem,
          key: this.admin.keyPem,
          agent: false,
          timeout: timeoutMs,
          headers: text !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(text) } : {},
        },
        (res) => {
          let data = '';
          res.on('data', (c: Buffer) => (data += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} got no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(text);
    });
  }

  /** A watch stream: its parsed events as they arrive. */
  watch(server: ServerProcess, urlPath: string): { events: WatchEvent[]; status: Promise<number>; close(): void } {
    const events: WatchEvent[] = [];
    let partial = '';
    const req = https.get({ host: '127.0.0.1', port: server.port, path: urlPath, ca: this.servingCa.certPem, servername: SERVER_NAME, cert: this.admin.chainPem, key: this.admin.keyPem, agent: false });
    const status = new Promise<number>((resolve) => {
      req.on('response', (res) => {
        resolve(res.statusCode ?? 0);
        res.on('data', (c: Buffer) => {
          const lines = (partial + c.toString()).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines.filter(Boolean)) events.push({ ...(JSON.parse(line) as Omit<WatchEvent, 'at'>), at: performance.now() });
        });
        res.on('error', () => undefined);
      });
      req.on('error', () => resolve(0));
    });
    return { events, status, close: () => req.destroy() };
  }

  /** The flunders of a namespace as etcd holds them (names), read with a client of our own. */
  async namesInEtcd(namespace: string): Promise<string[]> {
    const client = new Etcd3({ hosts: this.etcd.clientUrl });
    try {
      const keys = await client.getAll().prefix(`${ETCD_PREFIX}/${GROUP}/flunders/${namespace}/`).keys();
      return keys.map((key) => key.slice(key.lastIndexOf('/') + 1)).sort();
    } finally {
      client.close();
    }
  }

  async stop(): Promise<void> {
    for (const server of this.servers) await server.stop(2000);
    await this.fake.stop();
    await this.etcd.remove();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The informer program, its printed steps, and a way to read its cache. */
class Informer {
  readonly steps: InformerStep[] = [];
  stderr = '';
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    let partial = '';
    child.stdout.on('data', (c: Buffer) => {
      const lines = (partial + c.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines.filter(Boolean)) this.steps.push(JSON.parse(line) as InformerStep);
    });
    child.stderr.on('data', (c: Buffer) => (this.stderr += c.toString()));
  }

  static async start(cluster: Cluster, kubeconfig: string, namespace: string): Promise<Informer> {
    const script = path.join(cluster.dir, 'informer.mjs');
    writeFileSync(script, INFORMER_SCRIPT);
    const informer = new Informer(spawn(process.execPath, [script, kubeconfig, namespace]));
    await until(() => informer.steps.some((s) => s.step === 'started'), 20_000, () => `the informer did not start: ${JSON.stringify(informer.steps)} ${informer.stderr}`);
    return informer;
  }

  /** Polls the informer's cache until it equals `expected` (names, sorted). */
  async waitForCache(expected: readonly string[], timeoutMs = 30_000): Promise<void> {
    let last: string[] = [];
    await until(
      async () => {
        const before = this.steps.length;
        this.child.stdin.write('dump\n');
        await until(() => this.steps.slice(before).some((s) => s.step === 'dump'), 5000, () => 'the informer did not dump its cache');
        last = this.steps.slice(before).find((s) => s.step === 'dump')!.names ?? [];
        return JSON.stringify(last) === JSON.stringify(expected);
      },
      timeoutMs,
      () => `the informer's cache is ${JSON.stringify(last)} (${last.length}), etcd holds ${JSON.stringify(expected)} (${expected.length}); steps: ${JSON.stringify(this.steps.filter((s) => s.step !== 'dump').slice(-10))}`,
    );
  }

  stop(): void {
    this.child.kill();
  }
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const flunder = (name: string) => ({ apiVersion: `${GROUP}/v1beta1`, kind: 'Flunder', metadata: { name }, spec: {} });
const flunders = (namespace: string) => `/apis/${GROUP}/v1beta1/namespaces/${namespace}/flunders`;

describe('two replicas on one etcd', () => {
  let cluster: Cluster;
  let a: ServerProcess;
  let b: ServerProcess;

  beforeAll(async () => {
    cluster = await Cluster.start();
    cluster.fake.setNamespace('shared', 'Active');
    a = await cluster.startServer();
    b = await cluster.startServer();
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  test('a write through A reaches a watcher on B, and both hand out the same resourceVersions', async () => {
    // GIVEN a watcher on B from the current resourceVersion
    const listed = JSON.parse((await cluster.call(b, 'GET', flunders('shared'))).body);
    const watch = cluster.watch(b, `${flunders('shared')}?watch=1&resourceVersion=${listed.metadata.resourceVersion}`);
    expect(await watch.status).toBe(200);

    // WHEN a Flunder is created through A
    const startedAt = performance.now();
    const created = await cluster.call(a, 'POST', flunders('shared'), flunder('from-a'));
    expect(created.status).toBe(201);
    const resourceVersion = JSON.parse(created.body).metadata.resourceVersion as string;

    // THEN B's watcher sees it, at the resourceVersion A gave out, and B reads the same
    await until(() => watch.events.some((e) => e.object.metadata?.name === 'from-a'), 10_000, () => `B's watcher saw ${JSON.stringify(watch.events)}`);
    const event = watch.events.find((e) => e.object.metadata?.name === 'from-a')!;
    expect(event.type).toBe('ADDED');
    expect(event.object.metadata?.resourceVersion).toBe(resourceVersion);
    const readOnB = JSON.parse((await cluster.call(b, 'GET', `${flunders('shared')}/from-a`)).body);
    expect(readOnB.metadata.resourceVersion).toBe(resourceVersion);
    expect(readOnB.metadata.uid).toBe(JSON.parse(created.body).metadata.uid);
    // (the latency from A's write to B's watcher, for the record; the benchmark measures it properly)
    process.stdout.write(`write through A → watcher on B: ${(event.at - startedAt).toFixed(1)} ms (including the create's round trip)\n`);
    watch.close();
  });

  test('concurrent updates through A and B of one object: exactly one succeeds, the other gets 409 Conflict', async () => {
    for (let round = 0; round < 5; round++) {
      // GIVEN an object both replicas read at one resourceVersion
      const name = `contended-${round}`;
      expect((await cluster.call(a, 'POST', flunders('shared'), flunder(name))).status).toBe(201);
      const current = JSON.parse((await cluster.call(b, 'GET', `${flunders('shared')}/${name}`)).body);

      // WHEN both replicas are sent an update from that version at once
      const update = (server: ServerProcess, by: string) =>
        cluster.call(server, 'PUT', `${flunders('shared')}/${name}`, { ...current, metadata: { ...current.metadata, labels: { by } } });
      const replies = await Promise.all([update(a, 'a'), update(b, 'b')]);

      // THEN exactly one wins; the loser is told to retry with a Conflict Status
      expect(replies.map((r) => r.status).sort()).toEqual([200, 409]);
      const loser = JSON.parse(replies.find((r) => r.status === 409)!.body);
      expect(loser).toMatchObject({ kind: 'Status', reason: 'Conflict', code: 409 });
      expect(loser.message).toContain('the object has been modified; please apply your changes to the latest version and try again');
      const winner = JSON.parse(replies.find((r) => r.status === 200)!.body);
      const stored = JSON.parse((await cluster.call(a, 'GET', `${flunders('shared')}/${name}`)).body);
      expect(stored.metadata.labels).toEqual(winner.metadata.labels);
    }
  });
});

describe('a server killed with SIGKILL under a write load', () => {
  let cluster: Cluster;
  let informer: Informer | undefined;

  beforeAll(async () => {
    cluster = await Cluster.start();
    cluster.fake.setNamespace('load', 'Active');
  }, 60_000);

  afterAll(async () => {
    informer?.stop();
    await cluster?.stop();
  });

  test('every acknowledged write survives the restart, none twice, and an informer that lived through it ends with what etcd holds', async () => {
    // GIVEN a server, an informer watching through it, and eight writers creating Flunders
    const first = await cluster.startServer();
    informer = await Informer.start(cluster, cluster.kubeconfigFor(first, 'informer'), 'load');
    const attempted = new Set<string>();
    const acknowledged = new Set<string>();
    let writing = true;
    let counter = 0;
    const writer = async (server: () => ServerProcess) => {
      while (writing) {
        const name = `load-${counter++}`;
        attempted.add(name);
        try {
          const reply = await cluster.call(server(), 'POST', flunders('load'), flunder(name), 'application/json', 15_000);
          if (reply.status === 201) acknowledged.add(name);
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 50)); // the server is down: try again soon
        }
      }
    };
    let target = first;
    const writers = Array.from({ length: 8 }, () => writer(() => target));
    await until(() => acknowledged.size >= 100, 30_000, () => `only ${acknowledged.size} writes acknowledged`);

    // WHEN the server is killed mid-load and started again on the same port
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    const acknowledgedBeforeKill = acknowledged.size;
    target = await cluster.startServer(first.port);
    await until(() => acknowledged.size >= acknowledgedBeforeKill + 50, 30_000, () => `writes did not resume after the restart (${acknowledged.size})`);
    writing = false;
    await Promise.all(writers);

    // THEN every acknowledged write is in etcd, nothing is there that was not attempted, and each name once
    const inEtcd = await cluster.namesInEtcd('load');
    expect(new Set(inEtcd).size).toBe(inEtcd.length);
    expect([...acknowledged].filter((name) => !inEtcd.includes(name))).toEqual([]);
    expect(inEtcd.filter((name) => !attempted.has(name))).toEqual([]);
    // AND the server lists exactly what etcd holds
    const listed = JSON.parse((await cluster.call(target, 'GET', flunders('load'))).body);
    expect(listed.items.map((i: { metadata: { name: string } }) => i.metadata.name).sort()).toEqual(inEtcd);
    // AND the informer, which lost its watch with the killed server, ends with exactly those objects
    await informer.waitForCache(inEtcd);
  });
});

describe('etcd going away and coming back', () => {
  let cluster: Cluster;
  let server: ServerProcess;
  let informer: Informer | undefined;

  beforeAll(async () => {
    cluster = await Cluster.start();
    cluster.fake.setNamespace('outage', 'Active');
    server = await cluster.startServer();
  }, 60_000);

  afterAll(async () => {
    informer?.stop();
    await cluster?.stop();
  });

  test('requests fail with a Status, never hang; /readyz names etcd; the server recovers without a restart', async () => {
    // GIVEN objects and an informer
    for (const name of ['before-1', 'before-2']) expect((await cluster.call(server, 'POST', flunders('outage'), flunder(name))).status).toBe(201);
    informer = await Informer.start(cluster, cluster.kubeconfigFor(server, 'informer'), 'outage');
    await informer.waitForCache(['before-1', 'before-2']);

    // WHEN etcd stops
    await cluster.etcd.stop();
    const stoppedAt = Date.now();

    // THEN /readyz fails within 10 s, and /readyz/etcd says why
    await until(async () => (await server.probe('/readyz')).status !== 200, 10_000, () => `/readyz still answers 200 ${Date.now() - stoppedAt} ms after etcd stopped`);
    const etcdCheck = await server.probe('/readyz/etcd');
    expect(etcdCheck.status).toBe(500);
    expect(etcdCheck.body).toMatch(/etcd/);

    // AND reads and writes get a metav1.Status (503 or 504) within the request timeout, and no write is acknowledged
    for (const [method, body, name] of [
      ['GET', undefined, ''],
      ['POST', flunder('during-outage'), ''],
      ['GET', undefined, '/before-1'],
    ] as const) {
      const started = Date.now();
      const reply = await cluster.call(server, method, `${flunders('outage')}${name}`, body);
      expect(Date.now() - started).toBeLessThan(60_000);
      expect([503, 504]).toContain(reply.status);
      expect(JSON.parse(reply.body)).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: reply.status });
    }

    // WHEN etcd comes back
    await cluster.etcd.restart();

    // THEN the server is ready again without a restart, and serves writes
    await until(async () => (await server.probe('/readyz')).status === 200, 30_000, () => '/readyz did not recover after etcd came back');
    let created: Reply | undefined;
    await until(
      async () => {
        created = await cluster.call(server, 'POST', flunders('outage'), flunder('after'));
        return created.status === 201;
      },
      15_000,
      () => `writes did not recover: ${created?.status} ${created?.body}`,
    );
    // AND the informer ends with exactly what etcd holds (the create refused during the outage is not there
    // unless etcd has it: a 504 may have been stored)
    const inEtcd = await cluster.namesInEtcd('outage');
    expect(inEtcd).toEqual(expect.arrayContaining(['before-1', 'before-2', 'after']));
    await informer.waitForCache(inEtcd);
  });
});

describe('a watcher whose resourceVersion etcd compacted away', () => {
  let cluster: Cluster;
  let informer: Informer | undefined;

  beforeAll(async () => {
    cluster = await Cluster.start();
    cluster.fake.setNamespace('compacted', 'Active');
  }, 60_000);

  afterAll(async () => {
    informer?.stop();
    await cluster?.stop();
  });

  test('gets 410 Expired, relists, and ends with what etcd holds', async () => {
    // GIVEN two replicas, and an informer and a raw watcher on the first at a known resourceVersion
    const a = await cluster.startServer();
    const b = await cluster.startServer();
    expect((await cluster.call(a, 'POST', flunders('compacted'), flunder('old'))).status).toBe(201);
    const listed = JSON.parse((await cluster.call(a, 'GET', flunders('compacted'))).body);
    const oldVersion = listed.metadata.resourceVersion as string;
    informer = await Informer.start(cluster, cluster.kubeconfigFor(a, 'informer'), 'compacted');
    await informer.waitForCache(['old']);

    // WHEN the first replica goes away, writes go on through the second, etcd compacts, and the first comes back
    a.child.kill('SIGKILL');
    await new Promise((resolve) => a.child.once('exit', resolve));
    for (let i = 0; i < 20; i++) expect((await cluster.call(b, 'POST', flunders('compacted'), flunder(`new-${i}`))).status).toBe(201);
    expect((await cluster.call(b, 'DELETE', `${flunders('compacted')}/old`)).status).toBe(200);
    const client = new Etcd3({ hosts: cluster.etcd.clientUrl });
    try {
      const { header } = await client.kv.range({ key: Buffer.from(`${ETCD_PREFIX}/`), count_only: true });
      await client.kv.compact({ revision: header.revision, physical: true });
    } finally {
      client.close();
    }
    const restarted = await cluster.startServer(a.port);

    // THEN a watch from the old resourceVersion is answered 410 Expired
    const watch = cluster.watch(restarted, `${flunders('compacted')}?watch=1&resourceVersion=${oldVersion}`);
    const status = await watch.status;
    if (status === 200) {
      await until(() => watch.events.length > 0, 10_000, () => 'no event on a watch from a compacted resourceVersion');
      expect(watch.events[0]).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
    } else {
      expect(status).toBe(410);
    }
    watch.close();
    // AND the informer, which resumes from that version, relists and ends with exactly what etcd holds
    const inEtcd = await cluster.namesInEtcd('compacted');
    expect(inEtcd).toHaveLength(20);
    await informer.waitForCache(inEtcd);
  });
});
