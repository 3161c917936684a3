import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { App, Chart } from 'cdk8s';
import { Etcd3 } from 'etcd3';
import * as YAML from 'yaml';
import { EtcdCertificates, EtcdCluster } from '../lib';
import { makeCa, makeLeaf } from './support/pki';
import { ManifestObject, startSynthesizedEtcd, SynthesizedEtcd } from './support/synthesized-etcd';

/**
 * Run what was synthesized: an EtcdCluster of 3 members written to a dist directory, read back,
 * and started as 3 real etcd processes with exactly the StatefulSet container's args and env and
 * the Secrets' files where the pod mounts them (test/support/synthesized-etcd.ts: member DNS
 * names and 0.0.0.0 become 127.0.0.1 with ports of each member's own, mount paths temporary
 * directories). Then the API server's client certificate writes and reads through TLS, one
 * member is killed and writes go on, and clients without the right certificate are refused.
 */

jest.setTimeout(180_000);

describe('a synthesized 3-member EtcdCluster runs as real etcd', () => {
  let work: string;
  let objects: ManifestObject[];
  let etcd: SynthesizedEtcd;
  const clients: Etcd3[] = [];

  function client(hosts: readonly string[], credentials = { ca: etcd.caFile, cert: etcd.certFile, key: etcd.keyFile }): Etcd3 {
    const c = new Etcd3({
      hosts: [...hosts],
      credentials: { rootCertificate: readFileSync(credentials.ca), certChain: readFileSync(credentials.cert), privateKey: readFileSync(credentials.key) },
      dialTimeout: 5_000,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + 10_000 }),
    });
    clients.push(c);
    return c;
  }

  /** Retries `attempt` until it succeeds or `timeoutMs` passes (leader elections take a few seconds on a loaded machine). */
  async function eventually<T>(attempt: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await attempt();
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }

  beforeAll(async () => {
    // GIVEN an EtcdCluster synthesized into dist/
    work = mkdtempSync(path.join(tmpdir(), 'e2e-etcd-cluster-'));
    const app = new App({ outdir: path.join(work, 'dist') });
    const chart = new Chart(app, 'etcd');
    new EtcdCluster(chart, 'etcd', {
      namespace: 'wardle',
      name: 'wardle-apiserver-etcd',
      clientPodLabels: { 'app.kubernetes.io/name': 'wardle-apiserver' },
      clientCommonName: 'wardle-apiserver',
      certificates: EtcdCertificates.selfSigned({ pkiDirectory: path.join(work, 'pki') }),
    });
    app.synth();
    const dist = path.join(work, 'dist');
    objects = readdirSync(dist).flatMap((file) => YAML.parseAllDocuments(readFileSync(path.join(dist, file), 'utf8')).map((d) => d.toJS() as ManifestObject));

    // WHEN its members start with the StatefulSet's args and the Secrets' files
    etcd = await startSynthesizedEtcd({ objects, directory: path.join(work, 'members') });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await etcd?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test('the members run the StatefulSet\'s flags, only addresses and mount paths rewritten', () => {
    // THEN each process got the container's args, one for one
    const sts = objects.find((o) => o.kind === 'StatefulSet')!;
    const containerArgs: string[] = sts.spec.template.spec.containers[0].args;
    expect(etcd.members).toHaveLength(3);
    for (const member of etcd.members) {
      expect(member.args).toHaveLength(containerArgs.length);
      expect(member.podArgs).toEqual(containerArgs.map((arg) => arg.replace(/\$\(POD_NAME\)/g, member.name)));
      // The flags that make the cluster secure are passed through unchanged.
      for (const flag of ['--client-cert-auth=true', '--peer-client-cert-auth=true', '--initial-cluster-state=new']) expect(member.args).toContain(flag);
      expect(member.args.find((arg) => arg.startsWith('--name='))).toBe(`--name=${member.name}`);
    }
  });

  test('every member answers its startup, liveness and readiness probes', async () => {
    for (const member of etcd.members) {
      for (const kind of ['startup', 'liveness', 'readiness'] as const) expect(await member.probe(kind)).toBe(200);
    }
  });

  test('the client certificate writes and reads over TLS, and the cluster has the 3 members by their pod names', async () => {
    // WHEN the API server's client certificate (the client Secret's files) is used
    const c = client(etcd.clientUrls);
    await eventually(async () => {
      await c.put('/registry/e2e/first').value('one');
    });
    // THEN every member serves the value
    for (const member of etcd.members) expect(await client([member.clientUrl]).get('/registry/e2e/first').string()).toBe('one');
    const { members } = await c.cluster.memberList({});
    expect(members.map((m) => m.name).sort()).toEqual(['wardle-apiserver-etcd-0', 'wardle-apiserver-etcd-1', 'wardle-apiserver-etcd-2']);
  });

  test('fails a client without a certificate, and one whose certificate another CA signed', async () => {
    // GIVEN the etcd CA to verify the member, with and without the client certificate
    const ca = readFileSync(etcd.caFile);
    const version = (certificate: { cert?: Buffer; key?: Buffer }) =>
      new Promise<string>((resolve) => {
        const req = https.get(`${etcd.members[1].clientUrl}/version`, { ca, ...certificate, timeout: 10_000 }, (res) => {
          res.resume();
          resolve(`answered ${res.statusCode}`);
        });
        req.on('error', (e) => resolve(`refused: ${e.message}`));
      });
    // THEN the member answers the client certificate and refuses the handshake without one
    expect(await version({ cert: readFileSync(etcd.certFile), key: readFileSync(etcd.keyFile) })).toBe('answered 200');
    expect(await version({})).toMatch(/^refused/);

    // GIVEN a client certificate from another CA
    const otherCa = makeCa('not the etcd CA');
    const stranger = makeLeaf(otherCa, { cn: 'wardle-apiserver', extendedKeyUsages: ['clientAuth'] });
    const strangerClient = new Etcd3({
      hosts: [etcd.members[1].clientUrl],
      credentials: { rootCertificate: ca, certChain: Buffer.from(stranger.chainPem), privateKey: Buffer.from(stranger.keyPem) },
      dialTimeout: 5_000,
      defaultCallOptions: () => ({ deadline: Date.now() + 10_000 }),
    });
    clients.push(strangerClient);
    // THEN its request fails
    await expect(strangerClient.get('/registry/e2e/first').string()).rejects.toThrow();
  });

  test('kill one member: writes still succeed, and the member rejoins with its data when restarted', async () => {
    // GIVEN a value written by all
    const c = client(etcd.clientUrls);
    await eventually(async () => {
      await c.put('/registry/e2e/before').value('1');
    });
    // WHEN member 0 is killed (SIGKILL)
    const victim = etcd.members[0];
    await victim.kill();
    expect(victim.running).toBe(false);
    // THEN the two left still take writes (once a leader is elected, if the victim led)
    const survivors = client(etcd.members.slice(1).map((m) => m.clientUrl));
    await eventually(async () => {
      await survivors.put('/registry/e2e/during').value('2');
    });
    expect(await survivors.get('/registry/e2e/during').string()).toBe('2');

    // WHEN it starts again with the same args and data
    await victim.restart();
    // THEN it has caught up with the write made while it was down
    const alone = client([victim.clientUrl]);
    expect(await eventually(async () => {
      const value = await alone.get('/registry/e2e/during').string();
      if (value !== '2') throw new Error(`member 0 has ${value}`);
      return value;
    })).toBe('2');
  });
});
