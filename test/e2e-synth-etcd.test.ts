import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import * as YAML from 'yaml';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf } from './support/pki';
import { freePort, ServerProcess } from './support/server-process';
import { startSynthesizedEtcd, SynthesizedEtcd } from './support/synthesized-etcd';

/**
 * Run what was synthesized: the default synth's etcd StatefulSet as real etcd processes (3
 * members, their flags and certificates as the StatefulSet gives them), and the bundled server
 * with exactly the Deployment's args and the Secrets' files where the Deployment mounts them.
 * Only what the cluster would answer is stood in for: the mount prefix (a temporary root), the
 * server's port, and the etcd client Service's address, which DNS answers with a ClusterIP that
 * kube-proxy forwards to a live member (here a TCP forwarder on 127.0.0.1 does that). Then
 * Flunders are created, listed and watched through the server, one etcd member is killed, and
 * writes still succeed.
 */

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'build', 'main.js');
const GROUP = 'wardle.example.com';
const ETCD_PREFIX = '/registry/wardle.example.com';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML of any kind
  [key: string]: any;
}

interface Reply {
  status: number;
  body: string;
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

/**
 * What kube-proxy does for a Service: each connection goes to one of the endpoints, round robin,
 * skipping one that refuses (a dead pod leaves the Endpoints; here the connection attempt fails).
 */
class ServiceForwarder {
  static async start(endpoints: readonly { host: string; port: number }[]): Promise<ServiceForwarder> {
    const forwarder = new ServiceForwarder(endpoints);
    await new Promise<void>((resolve, reject) => {
      forwarder.server.once('error', reject);
      forwarder.server.listen(0, '127.0.0.1', resolve);
    });
    return forwarder;
  }

  /** Open connections per endpoint index. */
  readonly connections = new Map<number, Set<net.Socket>>();
  private next = 0;
  private readonly server = net.createServer((client) => this.forward(client, 0));

  private constructor(private readonly endpoints: readonly { host: string; port: number }[]) {}

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  private forward(client: net.Socket, attempt: number): void {
    if (attempt >= this.endpoints.length) {
      client.destroy();
      return;
    }
    const index = this.next++ % this.endpoints.length;
    const upstream = net.connect(this.endpoints[index]);
    upstream.once('error', () => {
      if (!upstream.readableEnded && client.bytesWritten === 0 && upstream.bytesRead === 0) this.forward(client, attempt + 1);
      else client.destroy();
    });
    upstream.once('connect', () => {
      const open = this.connections.get(index) ?? new Set<net.Socket>();
      this.connections.set(index, open);
      open.add(upstream);
      upstream.on('close', () => open.delete(upstream));
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      upstream.on('close', () => client.destroy());
    });
  }

  /** The endpoint that carries the most open connections now. */
  busiest(): number {
    let best = -1;
    let most = 0;
    for (const [index, open] of this.connections) {
      if (open.size > most) {
        best = index;
        most = open.size;
      }
    }
    return best;
  }

  stop(): Promise<void> {
    for (const open of this.connections.values()) for (const socket of open) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function waitFor<T>(what: string, deadlineMs: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} did not happen within ${deadlineMs} ms${last ? `: ${(last as Error).message}` : ''}`);
}

describe('the default synth runs: etcd from its StatefulSet, the server from its Deployment', () => {
  let work: string;
  let objects: K8sObject[];
  let etcd: SynthesizedEtcd;
  let forwarder: ServiceForwarder;
  let fake: FakeKubeApiServer;
  let server: ServerProcess;
  let serverArgs: string[];
  let containerArgs: string[];
  let caBundle: string;
  let serverName: string;
  const clientCa = makeCa('kubernetes-client-ca');
  const admin = makeLeaf(clientCa, { cn: 'e2e-admin', organizations: ['system:masters'] });

  beforeAll(async () => {
    if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" (npm test does) before jest`);
    // GIVEN the default synth
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-synth-etcd-'));
    const synth = spawnSync(process.execPath, [MAIN, '--output', path.join(work, 'dist'), '--pki-dir', path.join(work, 'pki')], {
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

    // AND its etcd members running with the StatefulSet's flags and Secrets
    etcd = await startSynthesizedEtcd({ objects, directory: path.join(work, 'etcd') });
    // AND the client Service's address answered as the cluster would: a forwarder to the live members
    forwarder = await ServiceForwarder.start(etcd.members.map((member) => ({ host: '127.0.0.1', port: member.clientPort })));

    const deployment = objects.find((o) => o.kind === 'Deployment')!;
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    containerArgs = container.args;
    // AND the Deployment's volumes laid out in a temporary root as the kubelet would mount them
    const root = path.join(work, 'pod');
    const mountOf = (p: string) => path.join(root, p);
    for (const mount of container.volumeMounts as { name: string; mountPath: string }[]) {
      const volume = (pod.volumes as { name: string; secret?: { secretName: string; defaultMode?: number } }[]).find((v) => v.name === mount.name)!;
      if (volume.secret) {
        const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === volume.secret!.secretName && o.metadata.namespace === deployment.metadata.namespace);
        expect(secret).toBeDefined();
        writeSecretVolume(mountOf(mount.mountPath), secret!.data, volume.secret.defaultMode ?? 0o644);
      } else {
        fs.mkdirSync(mountOf(mount.mountPath), { recursive: true });
      }
    }

    // AND kube-apiserver's stand-in publishing the client CA
    fake = await FakeKubeApiServer.start({ serviceAccount: { namespace: deployment.metadata.namespace!, name: pod.serviceAccountName as string } });
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: clientCa.certPem, requestheaderCaPem: makeCa('front-proxy-ca').certPem }));
    fake.authorize = () => ({ allowed: true, reason: 'allowed by the e2e stand-in' });
    const kubeconfig = fake.writeKubeconfig(path.join(work, 'kube'));

    // WHEN the server starts with the container's args: only the mount prefix, the port and the etcd Service's address rewritten
    const port = await freePort();
    const containerPort = String(container.ports[0].containerPort);
    const mountPaths = (container.volumeMounts as { mountPath: string }[]).map((m) => m.mountPath);
    serverArgs = containerArgs.map((arg) => {
      if (arg === `--secure-port=${containerPort}`) return `--secure-port=${port}`;
      if (arg.startsWith('--etcd-servers=')) {
        const url = new URL(arg.slice('--etcd-servers='.length));
        url.host = `127.0.0.1:${forwarder.port}`;
        return `--etcd-servers=${url.origin}`;
      }
      const eq = arg.indexOf('=');
      const value = arg.slice(eq + 1);
      const mount = mountPaths.filter((m) => value.startsWith(`${m}/`)).sort((a, b) => b.length - a.length)[0];
      return eq > 0 && mount ? `${arg.slice(0, eq + 1)}${mountOf(mount)}${value.slice(mount.length)}` : arg;
    });
    const apiService = objects.find((o) => o.kind === 'APIService')!;
    serverName = `${apiService.spec.service.name}.${apiService.spec.service.namespace}.svc`;
    caBundle = Buffer.from(apiService.spec.caBundle, 'base64').toString('utf8');
    server = await ServerProcess.start({
      args: [...serverArgs, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`, `--kubeconfig=${kubeconfig}`, '--shutdown-delay-duration=0s'],
      env: Object.fromEntries(((container.env ?? []) as { name: string; value?: string }[]).map((e) => [e.name, e.value ?? ''])),
      ca: caBundle,
      serverName,
      readyTimeoutMs: 60_000,
    });
  }, 180_000);

  afterAll(async () => {
    await server?.stop(5000);
    await fake?.stop();
    await forwarder?.stop();
    await etcd?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  function call(method: string, urlPath: string, body?: unknown): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = https.request(
        {
          host: '127.0.0.1',
          port: server.port,
          path: urlPath,
          method,
          ca: caBundle,
          servername: serverName,
          cert: admin.chainPem,
          key: admin.keyPem,
          agent: false,
          timeout: 30_000,
          headers: text !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } : {},
        },
        (res) => {
          let data = '';
          res.on('data', (c: Buffer) => (data += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} got no answer in time`)));
      req.on('error', reject);
      req.end(text);
    });
  }

  const flunders = (namespace: string) => `/apis/${GROUP}/v1beta1/namespaces/${namespace}/flunders`;
  const flunder = (name: string) => ({ apiVersion: `${GROUP}/v1beta1`, kind: 'Flunder', metadata: { name }, spec: {} });

  function watch(urlPath: string): { events: { type: string; object: { metadata?: { name?: string } } }[]; close(): void } {
    const events: { type: string; object: { metadata?: { name?: string } } }[] = [];
    let partial = '';
    const req = https.get({ host: '127.0.0.1', port: server.port, path: urlPath, ca: caBundle, servername: serverName, cert: admin.chainPem, key: admin.keyPem, agent: false });
    req.on('response', (res) => {
      res.on('data', (c: Buffer) => {
        const lines = (partial + c.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines.filter(Boolean)) events.push(JSON.parse(line));
      });
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    return { events, close: () => req.destroy() };
  }

  /** The flunders of a namespace as a surviving etcd member holds them, read with the server's own client certificate. */
  async function namesInEtcd(namespace: string): Promise<string[]> {
    const live = etcd.members.filter((m) => m.running);
    const client = new Etcd3({
      hosts: live.map((m) => `https://127.0.0.1:${m.clientPort}`),
      credentials: { rootCertificate: fs.readFileSync(etcd.caFile), certChain: fs.readFileSync(etcd.certFile), privateKey: fs.readFileSync(etcd.keyFile) },
    });
    try {
      const keys = await client.getAll().prefix(`${ETCD_PREFIX}/${GROUP}/flunders/${namespace}/`).keys();
      return keys.map((key) => key.slice(key.lastIndexOf('/') + 1)).sort();
    } finally {
      client.close();
    }
  }

  test('the server runs with the Deployment\'s args, only the mount prefix, its port and the etcd Service\'s address rewritten', () => {
    expect(serverArgs).toHaveLength(containerArgs.length);
    expect(containerArgs).toContain('--storage=etcd');
    const etcdServers = containerArgs.find((a) => a.startsWith('--etcd-servers='))!;
    const clientService = objects.find((o) => o.kind === 'Service' && `https://${o.metadata.name}.${o.metadata.namespace}.svc:${o.spec.ports[0].port}` === etcdServers.slice('--etcd-servers='.length));
    expect(clientService).toBeDefined();
    for (const flag of ['--etcd-cafile', '--etcd-certfile', '--etcd-keyfile']) {
      const value = serverArgs.find((a) => a.startsWith(`${flag}=`))!.split('=')[1];
      expect(value.startsWith(path.join(work, 'pod'))).toBe(true);
      expect(fs.existsSync(value)).toBe(true);
    }
    expect(etcd.members).toHaveLength(3);
  });

  test('create, list and watch Flunders, stored in etcd', async () => {
    // GIVEN a watch from the list's resourceVersion
    const listed = await call('GET', flunders('default'));
    expect(listed.status).toBe(200);
    const stream = watch(`${flunders('default')}?watch=1&resourceVersion=${JSON.parse(listed.body).metadata.resourceVersion}`);
    try {
      // WHEN two Flunders are created
      for (const name of ['alpha', 'beta']) {
        const created = await call('POST', flunders('default'), flunder(name));
        expect({ name, status: created.status }).toEqual({ name, status: 201 });
      }
      // THEN the list has them, the watch saw them added, and etcd holds them
      const list = JSON.parse((await call('GET', flunders('default'))).body);
      expect(list.items.map((i: { metadata: { name: string } }) => i.metadata.name).sort()).toEqual(['alpha', 'beta']);
      await waitFor('two ADDED events', 15_000, async () => (stream.events.filter((e) => e.type === 'ADDED').length >= 2 ? true : undefined));
      expect(stream.events.filter((e) => e.type === 'ADDED').map((e) => e.object.metadata?.name)).toEqual(['alpha', 'beta']);
      expect(await namesInEtcd('default')).toEqual(['alpha', 'beta']);
    } finally {
      stream.close();
    }
  });

  test('kill the etcd member the server is connected to: writes still succeed, on the two left', async () => {
    // GIVEN the member carrying the server's connection
    const victim = forwarder.busiest();
    expect(victim).toBeGreaterThanOrEqual(0);
    // WHEN it is killed (SIGKILL)
    await etcd.members[victim].kill();
    expect(etcd.members.map((m) => m.running)).toEqual(etcd.members.map((_, i) => i !== victim));
    // THEN a write succeeds once the server has reconnected through the Service to a live member
    const created = await waitFor('a write after the kill', 60_000, async () => {
      const reply = await call('POST', flunders('default'), flunder('after-the-kill'));
      if (reply.status === 201 || reply.status === 409) return reply;
      return undefined;
    });
    expect([201, 409]).toContain(created.status);
    const got = await call('GET', `${flunders('default')}/after-the-kill`);
    expect(got.status).toBe(200);
    // AND the quorum of the two left holds it, and a further write and read go through at once
    expect(await namesInEtcd('default')).toEqual(['after-the-kill', 'alpha', 'beta']);
    expect((await call('POST', flunders('default'), flunder('and-another'))).status).toBe(201);
    expect((await call('DELETE', `${flunders('default')}/alpha`)).status).toBe(200);
    expect(await namesInEtcd('default')).toEqual(['after-the-kill', 'and-another', 'beta']);
    // AND the server's connection now goes to a live member
    expect(forwarder.connections.get(victim)?.size ?? 0).toBe(0);
    expect(forwarder.busiest()).not.toBe(victim);
    expect(forwarder.busiest()).toBeGreaterThanOrEqual(0);
  }, 120_000);
});
