/**
 * The bundled server as it ships: the esbuild bundle started as a process with real flags, the
 * real delegated auth against the kube-apiserver stand-in, the real registry and storage, and
 * kubectl 1.28 and 1.33 pointed straight at it with an x509 client certificate.
 */
import { ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf, makeServerCert, TestCa, TestCertificate } from './support/pki';

const ROOT = join(__dirname, '..');
const GROUP = 'wardle.example.com';
const KUBECTL_DIR = '/usr/lib/google-cloud-sdk/bin';

let dir: string;
let bundle: string;
let fake: FakeKubeApiServer;
let servingCa: TestCa;
let admin: TestCertificate;
let frontProxyCa: TestCa;
let frontProxy: TestCertificate;
let server: ChildProcess;
let port: number;
const logs: Record<string, unknown>[] = [];

function startServer(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [bundle, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 20_000);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === 'serving HTTPS') {
        clearTimeout(timer);
        resolve({ child, port: entry.port as number });
      }
    });
  });
}

function kubectl(version: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      join(KUBECTL_DIR, `kubectl.${version}`),
      [`--kubeconfig=${join(dir, 'kubectl.kubeconfig')}`, `--cache-dir=${join(dir, `cache-${version}`)}`, ...args],
      { timeout: 30_000 },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'server-e2e-'));
  bundle = join(dir, 'server.js');
  const built = spawnSync(process.execPath, [join(ROOT, 'server', 'build.mjs'), '--outfile', bundle], { encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`bundle failed: ${built.stderr}`);

  servingCa = makeCa('serving-ca');
  const clientCa = makeCa('client-ca');
  admin = makeLeaf(clientCa, { cn: 'kubernetes-admin', organizations: ['system:masters'] });
  const serving = makeServerCert(servingCa, ['wardle-apiserver.wardle.svc']);
  writeFileSync(join(dir, 'tls.crt'), serving.chainPem);
  writeFileSync(join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });

  fake = await FakeKubeApiServer.start();
  frontProxyCa = makeCa('front-proxy-ca');
  frontProxy = makeLeaf(frontProxyCa, { cn: 'front-proxy-client' });
  fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: clientCa.certPem, requestheaderCaPem: frontProxyCa.certPem }));
  for (const ns of ['default', 'ns-128', 'ns-133']) fake.setNamespace(ns, 'Active');
  const kubeconfig = fake.writeKubeconfig(dir);

  ({ child: server, port } = await startServer([
    '--secure-port=0',
    '--bind-address=127.0.0.1',
    `--tls-cert-file=${join(dir, 'tls.crt')}`,
    `--tls-private-key-file=${join(dir, 'tls.key')}`,
    `--kubeconfig=${kubeconfig}`,
    '--shutdown-delay-duration=0s',
  ]));

  const b64 = (s: string) => Buffer.from(s).toString('base64');
  writeFileSync(
    join(dir, 'kubectl.kubeconfig'),
    [
      'apiVersion: v1',
      'kind: Config',
      'current-context: wardle',
      'clusters:',
      '- name: wardle',
      `  cluster: {server: "https://127.0.0.1:${port}", certificate-authority-data: ${b64(servingCa.certPem)}}`,
      'users:',
      `- name: admin`,
      `  user: {client-certificate-data: ${b64(admin.chainPem)}, client-key-data: ${b64(admin.keyPem)}}`,
      'contexts:',
      '- name: wardle',
      '  context: {cluster: wardle, user: admin}',
      '',
    ].join('\n'),
  );
}, 60_000);

afterAll(async () => {
  if (server.exitCode === null) server.kill('SIGKILL');
  await fake?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the bundle', () => {
  test('--help lists the flags and exits 0', () => {
    const run = spawnSync(process.execPath, [bundle, '--help'], { encoding: 'utf8' });
    expect(run.status).toBe(0);
    for (const flag of ['--secure-port', '--tls-cert-file', '--authentication-kubeconfig', '--requestheader-allowed-names', '--shutdown-delay-duration']) expect(run.stdout).toContain(flag);
  });

  test('fails with exit 1 and a message naming the flag for a bad value', () => {
    const run = spawnSync(process.execPath, [bundle, '--secure-port=99999', '--tls-cert-file=/x', '--tls-private-key-file=/y'], { encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('--secure-port=99999 is not a port');
  });

  test('fails at start with exit 1 naming the missing RoleBinding when the auth ConfigMap is forbidden', async () => {
    // GIVEN a kube-apiserver where the server's ServiceAccount cannot read the ConfigMap
    const forbidding = await FakeKubeApiServer.start();
    forbidding.configMapForbidden = true;
    try {
      // WHEN
      const child = spawn(process.execPath, [bundle, '--secure-port=0', `--tls-cert-file=${join(dir, 'tls.crt')}`, `--tls-private-key-file=${join(dir, 'tls.key')}`, `--kubeconfig=${forbidding.writeKubeconfig(join(dir, 'forbidding'))}`]);
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.stdout.resume();
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));

      // THEN
      expect(code).toBe(1);
      expect(stderr).toContain('extension-apiserver-authentication-reader');
      expect(stderr).toContain('kubectl create rolebinding');
    } finally {
      await forbidding.stop();
    }
  });

  test('/version carries the build\'s git commit', async () => {
    const info = await new Promise<Record<string, string>>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/version', ca: servingCa.certPem, cert: admin.chainPem, key: admin.keyPem, servername: 'localhost' }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve(JSON.parse(body)));
        })
        .on('error', reject);
    });
    expect(info.gitCommit).toMatch(/^([0-9a-f]{40}|unknown)$/);
    expect(info.gitVersion).toMatch(/^v\d+\.\d+\.\d+$/);
  });
});

describe.each(['1.28', '1.33'])('kubectl %s straight at the server', (version) => {
  const ns = `ns-${version.replace('.', '')}`;
  const flunder = (name: string, reference: string) =>
    `apiVersion: ${GROUP}/v1alpha1\nkind: Flunder\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec:\n  reference: ${reference}\n`;

  test('api-resources lists the group', async () => {
    const run = await kubectl(version, ['api-resources', `--api-group=${GROUP}`]);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(new RegExp(`^flunders\\s+${GROUP}/v1beta1\\s+true\\s+Flunder$`, 'm'));
    expect(run.stdout).toMatch(new RegExp(`^fischers\\s+${GROUP}/v1alpha1\\s+false\\s+Fischer$`, 'm'));
  });

  test('explain flunders.spec reads the published schema', async () => {
    const run = await kubectl(version, ['explain', 'flunders.spec']);
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain('FlunderSpec is the desired state of a Flunder.');
    expect(run.stdout).toMatch(/flunderReference\s+<string>/);
    const v2 = await kubectl(version, ['explain', 'flunders.spec', '--output=plaintext-openapiv2']);
    expect(v2.stdout).toMatch(/referenceType\s+<string>/);
  });

  test('create, get (table and yaml), apply twice, patch, label, get -w, delete', async () => {
    // create -f
    const created = await kubectl(version, ['create', '-f', '-'], flunder('f1', 'other'));
    expect([created.code, created.stdout.trim(), created.stderr]).toEqual([0, `flunder.${GROUP}/f1 created`, '']);

    // get: the server's Table, with the printer columns
    const table = await kubectl(version, ['get', 'flunders', '-n', ns]);
    expect(table.stdout).toMatch(/^NAME\s+REFERENCE-TYPE\s+AGE$/m);
    expect(table.stdout).toMatch(/^f1\s+Flunder\s+\d+s$/m);

    // get -o yaml: the preferred version, converted from storage
    const yaml = await kubectl(version, ['get', 'flunder', 'f1', '-n', ns, '-o', 'yaml']);
    expect(yaml.stdout).toContain(`apiVersion: ${GROUP}/v1beta1`);
    expect(yaml.stdout).toContain('flunderReference: other');
    expect(yaml.stdout).toMatch(/resourceVersion: "\d+"/);

    // apply twice: created, then unchanged
    const applied = await kubectl(version, ['apply', '-f', '-'], flunder('f2', 'x'));
    expect([applied.code, applied.stdout.trim()]).toEqual([0, `flunder.${GROUP}/f2 created`]);
    const again = await kubectl(version, ['apply', '-f', '-'], flunder('f2', 'x'));
    expect([again.code, again.stdout.trim()]).toEqual([0, `flunder.${GROUP}/f2 unchanged`]);
    const changed = await kubectl(version, ['apply', '-f', '-'], flunder('f2', 'zed'));
    expect([changed.code, changed.stdout.trim(), changed.stderr]).toEqual([0, `flunder.${GROUP}/f2 configured`, ""]);

    // get -w sees a change made meanwhile
    const watch = spawn(join(KUBECTL_DIR, `kubectl.${version}`), [`--kubeconfig=${join(dir, 'kubectl.kubeconfig')}`, `--cache-dir=${join(dir, `cache-${version}`)}`, 'get', 'flunders', '-n', ns, '-w', '--output-watch-events', '-L', 'color']);
    let watched = '';
    watch.stdout.on('data', (c: Buffer) => (watched += c.toString()));
    for (let i = 0; i < 100 && !/f2/.test(watched); i++) await new Promise((r) => setTimeout(r, 100));

    // patch and label
    const patched = await kubectl(version, ['patch', 'flunder', 'f1', '-n', ns, '--type=merge', '-p', '{"spec":{"flunderReference":"patched"}}']);
    expect([patched.code, patched.stdout.trim(), patched.stderr]).toEqual([0, `flunder.${GROUP}/f1 patched`, '']);
    const labeled = await kubectl(version, ['label', 'flunder', 'f1', '-n', ns, 'color=blue']);
    expect([labeled.code, labeled.stdout.trim(), labeled.stderr]).toEqual([0, `flunder.${GROUP}/f1 labeled`, '']);
    for (let i = 0; i < 100 && !/MODIFIED\s+f1\s.*blue/.test(watched); i++) await new Promise((r) => setTimeout(r, 100));
    watch.kill();
    expect(watched).toMatch(/ADDED\s+f1/);
    expect(watched).toMatch(/^EVENT\s+NAME\s+REFERENCE-TYPE\s+AGE\s+COLOR$/m);
    expect(watched).toMatch(/MODIFIED\s+f1\s.*blue/);

    // delete
    const deleted = await kubectl(version, ['delete', 'flunder', 'f1', 'f2', '-n', ns]);
    expect(deleted.stdout.trim().split('\n')).toEqual([`flunder.${GROUP} "f1" deleted`, `flunder.${GROUP} "f2" deleted`]);
    const gone = await kubectl(version, ['get', 'flunders', '-n', ns]);
    expect([gone.code, gone.stdout, gone.stderr.trim()]).toEqual([0, '', `No resources found in ${ns} namespace.`]);
  });
});

/** A request as kube-apiserver's proxy sends it: its front-proxy client certificate, the caBundle, ServerName <svc>.<ns>.svc. */
function proxied(path: string, headers: Record<string, string | string[]>, cert: TestCertificate | null = frontProxy): Promise<{ status: number; body: ReturnType<typeof JSON.parse> }> {
  return new Promise((resolve, reject) => {
    https
      .get(
        { host: '127.0.0.1', port, path, ca: servingCa.certPem, servername: 'wardle-apiserver.wardle.svc', ...(cert ? { cert: cert.chainPem, key: cert.keyPem } : {}), headers },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
        },
      )
      .on('error', reject);
  });
}

describe('through the aggregator stand-in', () => {
  test('the availability check (system:kube-aggregator in system:masters) gets the APIResourceList', async () => {
    const res = await proxied(`/apis/${GROUP}/v1alpha1`, { 'X-Remote-User': 'system:kube-aggregator', 'X-Remote-Group': 'system:masters' });
    expect(res.status).toBe(200);
    expect(res.body.kind).toBe('APIResourceList');
  });

  test('a proxied user with several X-Remote-Group headers is authorized by SubjectAccessReview with every group', async () => {
    // GIVEN kube-apiserver allows bob to list flunders when he is in team-b
    fake.authorize = (spec) => ({ allowed: spec.user === 'bob' && (spec.groups ?? []).includes('team-b') && spec.resourceAttributes?.verb === 'list' });

    // WHEN
    const res = await proxied(`/apis/${GROUP}/v1alpha1/namespaces/default/flunders`, { 'X-Remote-User': 'bob', 'X-Remote-Group': ['team-a', 'team-b'], 'X-Remote-Extra-Scopes': 'read' });

    // THEN
    expect(res.status).toBe(200);
    expect(res.body.kind).toBe('FlunderList');
    const spec = fake.subjectAccessReviewSpecs.at(-1)!;
    expect(spec).toMatchObject({ user: 'bob', groups: expect.arrayContaining(['team-a', 'team-b', 'system:authenticated']), resourceAttributes: { namespace: 'default', verb: 'list', group: GROUP, version: 'v1alpha1', resource: 'flunders' } });
  });

  test('a denied SubjectAccessReview is a 403 with the upstream message', async () => {
    const res = await proxied(`/apis/${GROUP}/v1alpha1/namespaces/default/flunders`, { 'X-Remote-User': 'carol', 'X-Remote-Group': 'team-c' });
    expect(res.status).toBe(403);
    expect(res.body.message).toBe(`flunders.${GROUP} is forbidden: User "carol" cannot list resource "flunders" in API group "${GROUP}" in the namespace "default"`);
  });

  test('a forged X-Remote-User without the front-proxy certificate is not trusted', async () => {
    const forged = { 'X-Remote-User': 'bob', 'X-Remote-Group': ['team-b', 'system:masters'] };
    const path = `/apis/${GROUP}/v1alpha1/namespaces/default/flunders`;

    // WHEN no client certificate: the headers are ignored, the request is anonymous and denied
    const anonymous = await proxied(path, forged, null);
    expect(anonymous.status).toBe(403);
    expect(anonymous.body.message).toContain('User "system:anonymous"');

    // WHEN a certificate from another CA: a credential that does not verify is 401, as upstream's x509 authenticator answers
    const stranger = await proxied(path, forged, makeLeaf(makeCa('stranger-ca'), { cn: 'front-proxy-client' }));
    expect(stranger.status).toBe(401);
    expect(stranger.body.reason).toBe('Unauthorized');
  });
});

test('SIGTERM: a watch in progress ends cleanly and the process exits 0', async () => {
  // GIVEN a watch in progress
  const ended = new Promise<boolean>((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: `/apis/${GROUP}/v1alpha1/namespaces/default/flunders?watch=1`, ca: servingCa.certPem, cert: admin.chainPem, key: admin.keyPem, servername: 'localhost' }, (res) => {
        expect(res.statusCode).toBe(200);
        let aborted = false;
        res.on('aborted', () => (aborted = true));
        res.on('close', () => resolve(!aborted));
        res.resume();
      })
      .on('error', reject);
  });
  await new Promise((r) => setTimeout(r, 300));
  const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));

  // WHEN
  server.kill('SIGTERM');

  // THEN
  expect(await ended).toBe(true);
  expect(await exited).toBe(0);
  expect(logs.some((l) => l.msg === 'shutdown complete')).toBe(true);
});
