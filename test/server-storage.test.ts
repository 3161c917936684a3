/**
 * The bundled server on each storage, as it ships: the esbuild bundle started with real flags
 * against a real etcd (test/support/etcd.ts) and kube-apiserver's stand-in. Serving on etcd,
 * /readyz/etcd through an etcd outage and back, /metrics, and the start-up failures a bad
 * --etcd-* flag gives.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { EtcdProcess } from './support/etcd';
import { makeCa, makeLeaf, makeServerCert, type TestCertificate } from './support/pki';
import { freePort, serverBundle, startServerEnvironment, type ServerEnvironment } from './support/server-process';

jest.setTimeout(120_000);

const FLUNDERS = '/apis/wardle.example.com/v1alpha1/namespaces/default/flunders';

interface Reply {
  readonly status: number;
  readonly body: string;
}

/** One request as a system:masters x509 user of the environment's client CA. */
function request(env: ServerEnvironment, admin: TestCertificate, method: string, pathName: string, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      {
        host: '127.0.0.1',
        port: env.server.port,
        path: pathName,
        method,
        ca: env.servingCa.certPem,
        servername: env.serverName,
        cert: admin.chainPem,
        key: admin.keyPem,
        agent: false,
        timeout: 15_000,
        headers: { Accept: 'application/json', ...(payload ? { 'Content-Type': 'application/json' } : {}) },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${pathName} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Polls `probe` until `done` holds for its answer; fails with the last answer after `timeoutMs`. */
async function waitFor(what: string, timeoutMs: number, probe: () => Promise<Reply>, done: (reply: Reply) => boolean): Promise<Reply> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      const reply = await probe();
      if (done(reply)) return reply;
      last = `${reply.status} ${reply.body}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms; last answer: ${last}`);
}

function adminOf(env: ServerEnvironment): TestCertificate {
  return makeLeaf(env.clientCa, { cn: 'storage-admin', organizations: ['system:masters'] });
}

function flunder(name: string) {
  return { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name }, spec: { reference: 'ref' } };
}

/** Runs the bundle with `args` (serving certificate given) and resolves its exit code and output once it exits. */
async function runUntilExit(args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'server-storage-exit-'));
  try {
    const serving = makeServerCert(makeCa('serving-ca'), ['localhost']);
    writeFileSync(path.join(dir, 'tls.crt'), serving.chainPem);
    writeFileSync(path.join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
    const child = spawn(
      process.execPath,
      [serverBundle(), `--secure-port=${await freePort()}`, '--bind-address=127.0.0.1', `--tls-cert-file=${path.join(dir, 'tls.crt')}`, `--tls-private-key-file=${path.join(dir, 'tls.key')}`, ...args],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(timer);
    return { code, stderr, stdout };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('on etcd', () => {
  let etcd: EtcdProcess;
  let env: ServerEnvironment;
  let admin: TestCertificate;

  beforeAll(async () => {
    etcd = await EtcdProcess.start();
    env = await startServerEnvironment({ extraArgs: [`--etcd-servers=${etcd.clientUrl}`, '--etcd-healthcheck-timeout=1s'] });
    admin = adminOf(env);
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
    await etcd?.remove();
  });

  test('serves a create and a get, with the etcd revision as resourceVersion', async () => {
    // WHEN
    const created = await request(env, admin, 'POST', FLUNDERS, flunder('stored'));
    const got = await request(env, admin, 'GET', `${FLUNDERS}/stored`);

    // THEN
    expect(created.status).toBe(201);
    expect(got.status).toBe(200);
    const object = JSON.parse(got.body) as { metadata: { name: string; resourceVersion: string } };
    expect(object.metadata.name).toBe('stored');
    expect(object.metadata.resourceVersion).toBe((JSON.parse(created.body) as typeof object).metadata.resourceVersion);
    // etcd's revisions are small counters, unlike the memory store's start-time-based ones
    expect(Number(object.metadata.resourceVersion)).toBeLessThan(1_000_000);
  });

  test('/readyz has an etcd check, and /readyz/etcd is ok', async () => {
    // WHEN
    const verbose = await env.server.probe('/readyz?verbose');
    const check = await env.server.probe('/readyz/etcd');

    // THEN
    expect(verbose.status).toBe(200);
    expect(verbose.body).toContain('[+]etcd ok\n');
    expect(verbose.body).not.toContain('[+]storage ok');
    expect(check).toEqual({ status: 200, body: 'ok' });
  });

  test('/metrics shows etcd request latency and the watch cache per resource', async () => {
    // GIVEN requests went to etcd (the create above, and the cache's lists; the GET is answered by the watch cache)
    await request(env, admin, 'GET', `${FLUNDERS}/stored`);

    // WHEN
    const metrics = await request(env, admin, 'GET', '/metrics');

    // THEN
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^etcd_request_duration_seconds_count\{operation="list",type="flunders.wardle.example.com"\} [1-9]/m);
    expect(metrics.body).toMatch(/^etcd_request_duration_seconds_bucket\{le="0.005",operation="create",type="flunders.wardle.example.com"\} \d+/m);
    expect(metrics.body).toMatch(/^apiserver_storage_objects\{resource="flunders.wardle.example.com"\} [1-9]/m);
    expect(metrics.body).toMatch(/^apiserver_watch_cache_events\{resource="fischers.wardle.example.com"\} \d+/m);
    expect(metrics.body).toMatch(/^apiserver_watch_cache_bytes\{resource="flunders.wardle.example.com"\} \d+/m);
    expect(metrics.body).toMatch(/^apiserver_watch_cache_resource_version\{resource="flunders.wardle.example.com"\} [1-9]/m);
  });

  test('etcd stopped: /readyz fails within 10 s naming etcd and its error; etcd back: ready again without a restart', async () => {
    // WHEN etcd stops
    await etcd.stop();

    // THEN readiness fails within 10 s, and the etcd check names etcd and why
    await waitFor('/readyz failing', 10_000, () => env.server.probe('/readyz'), (r) => r.status === 500);
    const verbose = await env.server.probe('/readyz?verbose');
    expect(verbose.body).toContain('[-]etcd failed: reason withheld\n');
    const check = await env.server.probe('/readyz/etcd');
    expect(check.status).toBe(500);
    expect(check.body).toMatch(/^internal server error: etcd: \S.*\n$/);
    // AND liveness is not affected: restarting the pod would not bring etcd back
    expect((await env.server.probe('/livez')).status).toBe(200);

    // WHEN etcd is back
    await etcd.restart();

    // THEN the same process becomes ready again, and serves
    await waitFor('/readyz passing', 30_000, () => env.server.probe('/readyz/etcd'), (r) => r.status === 200);
    await waitFor('/readyz passing', 30_000, () => env.server.probe('/readyz'), (r) => r.status === 200);
    expect((await request(env, admin, 'POST', FLUNDERS, flunder('after-outage'))).status).toBe(201);
    expect((await request(env, admin, 'GET', `${FLUNDERS}/stored`)).status).toBe(200);
  });
});

describe('on etcd with TLS', () => {
  let etcd: EtcdProcess;
  let dir: string;

  beforeAll(async () => {
    etcd = await EtcdProcess.start({ tls: true });
    dir = mkdtempSync(path.join(tmpdir(), 'server-storage-tls-'));
  }, 60_000);

  afterAll(async () => {
    await etcd?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('serves with --etcd-cafile, --etcd-certfile and --etcd-keyfile', async () => {
    // GIVEN etcd's CA and a client certificate it accepts
    const tls = etcd.tls!;
    const env = await startServerEnvironment({
      extraArgs: [`--etcd-servers=${etcd.clientUrl}`, `--etcd-cafile=${tls.caFile}`, `--etcd-certfile=${tls.certFile}`, `--etcd-keyfile=${tls.keyFile}`],
    });
    try {
      // WHEN
      const created = await request(env, adminOf(env), 'POST', FLUNDERS, flunder('over-tls'));

      // THEN
      expect(created.status).toBe(201);
      expect(await env.server.probe('/readyz/etcd')).toEqual({ status: 200, body: 'ok' });
    } finally {
      await env.stop();
    }
  });

  test('fails at start with one line naming --etcd-cafile when that CA does not verify etcd', async () => {
    // GIVEN a CA file of another CA than etcd's
    const otherCa = path.join(dir, 'other-ca.crt');
    writeFileSync(otherCa, makeCa('another CA').certPem);
    const tls = etcd.tls!;

    // WHEN
    const run = await runUntilExit([`--etcd-servers=${etcd.clientUrl}`, `--etcd-cafile=${otherCa}`, `--etcd-certfile=${tls.certFile}`, `--etcd-keyfile=${tls.keyFile}`]);

    // THEN
    expect(run.code).toBe(1);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^Error: .*--etcd-cafile.*other-ca\.crt/);
  });

  test('fails at start with one line naming --etcd-keyfile when it is not a private key', async () => {
    // GIVEN a certificate where the key should be
    const tls = etcd.tls!;

    // WHEN
    const run = await runUntilExit([`--etcd-servers=${etcd.clientUrl}`, `--etcd-cafile=${tls.caFile}`, `--etcd-certfile=${tls.certFile}`, `--etcd-keyfile=${tls.certFile}`]);

    // THEN
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^Error: --etcd-keyfile="[^"]+client\.crt" is not a PEM private key[^\n]*\n$/);
  });
});

describe('start-up failures and memory', () => {
  test('fails at start naming --etcd-servers when it is not a URL', async () => {
    // WHEN
    const run = await runUntilExit(['--etcd-servers=notaurl']);

    // THEN
    expect(run.code).toBe(1);
    expect(run.stderr.split('\n')[0]).toBe(
      'Error: --etcd-servers contains "notaurl", which is not a URL: expected http:// or https:// URLs separated by commas, e.g. http://localhost:2379',
    );
  });

  test('memory storage logs at start that objects are lost on restart, and its readiness check is "storage"', async () => {
    // GIVEN / WHEN no etcd flag, and a flag of sample-apiserver's Deployments this server ignores
    const env = await startServerEnvironment({ extraArgs: ['-v=5'] });
    try {
      // THEN
      const warning = env.server.logs().find((line) => line.level === 'warn' && typeof line.msg === 'string' && line.msg.includes('objects are kept in memory and lost on restart; run one replica'));
      expect(warning).toBeDefined();
      expect(env.server.logs().find((line) => line.msg === 'flags accepted for compatibility with the Go apiservers and ignored')).toMatchObject({ flags: ['--v=5'] });
      const verbose = await env.server.probe('/readyz?verbose');
      expect(verbose.body).toContain('[+]storage ok\n');
      expect(verbose.body).not.toContain('etcd');
    } finally {
      await env.stop();
    }
  });
});
