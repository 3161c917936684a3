/**
 * Flood test (issue 8, bounded memory): the real server process (the esbuild bundle, memory
 * storage), so that its resident set size can be read from /proc, flooded three ways:
 *
 * (a) 300 concurrent bodies of ~3 MiB, all refused (invalid objects, or over the budget of request
 *     bodies in flight): RSS stays under 200 MiB and /healthz answers within 1 s throughout;
 * (b) 2,000 watchers that never read (HTTP/2 streams and HTTP/1.1 responses, paused) while 300
 *     objects of 20 KiB are written: RSS stays under 200 MiB plus the stored data, the stalled
 *     watchers are closed, a reading watcher sees every event;
 * (c) writes past the storage quota are refused with "database space exceeded" and nothing stored
 *     is lost; deletes and shrinking updates work; afterwards the server serves as before.
 *
 * The measured peaks are printed (console.log) for bench/RESULTS.md. RSS bounds and the 1 s
 * /healthz are the only time- or size-based assertions; everything else waits for a condition.
 * `FLOOD_PROF=<dir>` writes a CPU profile of each server process there.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import { makeLeaf, type TestCertificate } from './support/pki';
import { startServerEnvironment, type ServerEnvironment } from './support/server-process';

jest.setTimeout(240_000);

const GROUP = 'wardle.example.com';
const NAMESPACE = 'flood';
const FLUNDERS = `/apis/${GROUP}/v1alpha1/namespaces/${NAMESPACE}/flunders`;
const MiB = 1024 * 1024;
/** The pod's limit is 256 MiB; the issue asks for 200 MiB under every flood. */
const RSS_BOUND_KIB = 200 * 1024;
const QUOTA_BYTES = 12 * MiB;

let env: ServerEnvironment;
let admin: TestCertificate;

/**
 * Polls GET /healthz back to back from a process of its own (as the kubelet probes: a new TLS
 * connection each time, a 1 s timeout), so that the latency measured is the server's, not that
 * of this process's event loop, busy with the flood it generates.
 */
const HEALTHZ_POLLER = `
const https = require('node:https');
const [port, ca, servername] = [Number(process.argv[1]), process.env.CA, process.argv[2]];
let worst = 0, polls = 0, running = true;
const t0 = Date.now(), slowest = [];
const failures = [];
process.stdin.on('data', () => {}); process.stdin.on('end', () => (running = false));
(async () => {
  while (running) {
    const started = process.hrtime.bigint();
    const outcome = await new Promise((resolve) => {
      const req = https.get({ host: '127.0.0.1', port, path: '/healthz', ca, servername, agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(res.statusCode === 200 ? undefined : res.statusCode + ' ' + body));
      });
      req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
      req.on('error', (error) => resolve(error.message));
    });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    worst = Math.max(worst, ms);
    slowest.push([Math.round(ms), Date.now() - t0]); slowest.sort((a, b) => b[0] - a[0]); slowest.length = Math.min(slowest.length, 5);
    polls++;
    if (outcome) failures.push(outcome);
    await new Promise((r) => setTimeout(r, 20));
  }
  process.stdout.write(JSON.stringify({ worst, polls, failures, slowest }));
})();
`;

interface Measured<T> {
  readonly result: T;
  readonly peakRssKiB: number;
  readonly worstHealthzMs: number;
  readonly healthzPolls: number;
  readonly healthzFailures: string[];
}

/** CPU seconds the server process has used (utime + stime of /proc/<pid>/stat). */
function serverCpuSeconds(): number {
  const fields = readFileSync(`/proc/${env.server.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Peak RSS (sampled every 50 ms) and the worst /healthz latency while `during` runs. */
async function measured<T>(during: () => Promise<T>): Promise<Measured<T>> {
  const cpuBefore = serverCpuSeconds();
  const startedAt = Date.now();
  let peakRssKiB = env.server.rssKiB();
  figures.push(`RSS before: ${(peakRssKiB / 1024).toFixed(1)} MiB`);
  const sampler = setInterval(() => {
    try {
      peakRssKiB = Math.max(peakRssKiB, env.server.rssKiB());
    } catch {
      // the process is gone: the assertions after will say so
    }
  }, 50);
  const poller = spawn(process.execPath, ['-e', HEALTHZ_POLLER, String(env.server.port), env.serverName], { env: { CA: env.servingCa.certPem }, stdio: ['pipe', 'pipe', 'inherit'] });
  let report = '';
  poller.stdout.on('data', (c: Buffer) => (report += c.toString()));
  const pollerDone = new Promise<void>((resolve) => poller.on('close', () => resolve()));
  try {
    const result = await during();
    clearInterval(sampler);
    peakRssKiB = Math.max(peakRssKiB, env.server.rssKiB());
    poller.stdin.end();
    await pollerDone;
    const { worst, polls, failures, slowest } = JSON.parse(report) as { worst: number; polls: number; failures: string[]; slowest: number[][] };
    figures.push(`server CPU ${(serverCpuSeconds() - cpuBefore).toFixed(1)} s in ${((Date.now() - startedAt) / 1000).toFixed(1)} s; slowest /healthz [ms, at ms]: ${JSON.stringify(slowest)}`);
    return { result, peakRssKiB, worstHealthzMs: worst, healthzPolls: polls, healthzFailures: failures };
  } finally {
    clearInterval(sampler);
    if (poller.exitCode === null) poller.kill();
  }
}

function connect(settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    // A client session that queues megabytes of bodies needs more than node:http2's 10 MiB default.
    const session = http2.connect(`https://127.0.0.1:${env.server.port}`, { maxSessionMemory: 1024, ca: env.servingCa.certPem, cert: admin.chainPem, key: admin.keyPem, servername: env.serverName, settings });
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

interface Answer {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: string;
}

/** One request on an HTTP/2 session; resolves with status, headers and body (a reset stream rejects). */
function h2Request(session: http2.ClientHttp2Session, method: string, path: string, body?: string | Buffer, contentType = 'application/json'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': method, ':path': path, ...(body !== undefined ? { 'content-type': contentType } : {}) });
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks).toString('utf8') }));
    stream.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ERR_HTTP2_STREAM_ERROR' ? resolve({ status: -2, headers, body: error.message }) : reject(error)));
    stream.end(body);
  });
}

/** One request over its own HTTP/1.1 connection. */
function h1Request(method: string, path: string, body?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: env.server.port, method, path, ca: env.servingCa.certPem, cert: admin.chainPem, key: admin.keyPem, servername: env.serverName, agent: false, headers: body ? { 'content-type': 'application/json', 'content-length': body.length } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as http2.IncomingHttpHeaders, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    // The server may answer (429, then close) before the whole body is sent: that is the point.
    req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' || error.code === 'ECONNRESET' ? resolve({ status: -1, headers: {}, body: error.code }) : reject(error)));
    req.end(body);
  });
}

/** A create as client-go makes it: a 429 is retried after its Retry-After (the server's flow control may answer it under this load). */
async function createRetrying(session: http2.ClientHttp2Session, object: Record<string, unknown>): Promise<Answer> {
  for (let attempt = 1; ; attempt++) {
    const answer = await h2Request(session, 'POST', FLUNDERS, JSON.stringify(object));
    if (answer.status !== 429 || attempt === 10) return answer;
    await new Promise((r) => setTimeout(r, Number(answer.headers['retry-after'] ?? 1) * 1000));
  }
}

function flunder(name: string, reference: string): Record<string, unknown> {
  return { apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name, namespace: NAMESPACE }, spec: { reference } };
}

async function waitFor(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs `tasks` with at most `limit` at once. */
async function inParallel<T>(limit: number, tasks: Array<() => Promise<T>>): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < tasks.length) {
        const index = next++;
        results[index] = await tasks[index]();
      }
    }),
  );
  return results;
}

const figures: string[] = [];

/**
 * A fresh server for each flood (default flags but the quota, which (c) fills), as the issue
 * measured each: the peak of one flood, not what the previous one left in the heap and malloc's
 * arenas. (c) then runs on the server (b) flooded.
 */
async function startServer(name: string): Promise<void> {
  env = await startServerEnvironment({ extraArgs: [`--storage-quota-bytes=${QUOTA_BYTES}`, '--log-level=warn'], ...(process.env.FLOOD_PROF ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${process.env.FLOOD_PROF}`] } : {}) });
  env.fake.setNamespace(NAMESPACE, 'Active');
  admin = makeLeaf(env.clientCa, { cn: 'flood-admin', organizations: ['system:masters'] });
  figures.push(`${name}: a fresh server, idle RSS ${(env.server.rssKiB() / 1024).toFixed(1)} MiB`);
}

// The clients of a real flood run on other machines, not on the server's CPU: this process (the
// flood's clients) yields the CPU to the server and to the /healthz poller (as the kubelet, its own process).
beforeAll(() => setPriority(10));

afterAll(() => console.log(`flood figures (memory storage, default flags but --storage-quota-bytes=${QUOTA_BYTES}):\n  ${figures.join('\n  ')}`));

describe('(a) request bodies', () => {
  beforeAll(() => startServer('(a)'));
  afterAll(() => env?.stop());


  test('(a) 300 concurrent ~3 MiB bodies, all refused: RSS stays under 200 MiB and /healthz answers within 1 s throughout', async () => {
    // GIVEN invalid Flunders (the name is not a DNS-1123 subdomain) of just under the 3 MiB body limit
    const body = Buffer.from(JSON.stringify(flunder('Not_A_Valid_Name', 'x'.repeat(3 * MiB - 1024))));
    expect(body.length).toBeLessThan(3 * MiB);
    const sessions = await Promise.all([connect(), connect(), connect()]);

    // WHEN 250 are sent on HTTP/2 streams (3 connections) and 50 on HTTP/1.1 connections, all at once
    const { result: answers, peakRssKiB, worstHealthzMs, healthzPolls, healthzFailures } = await measured(() =>
      Promise.all([
        ...Array.from({ length: 250 }, (_, i) => h2Request(sessions[i % 3], 'POST', FLUNDERS, body)),
        ...Array.from({ length: 50 }, () => h1Request('POST', FLUNDERS, body)),
      ]),
    );
    for (const session of sessions) session.close();
    figures.push(`(a) 300 × ${(body.length / MiB).toFixed(2)} MiB bodies: peak RSS ${(peakRssKiB / 1024).toFixed(1)} MiB, worst /healthz ${worstHealthzMs.toFixed(0)} ms over ${healthzPolls} polls`);

    // THEN every one is refused: 422 (invalid) once read, or 429 (over the budget) before it is read
    const byStatus = new Map<number, number>();
    for (const answer of answers) byStatus.set(answer.status, (byStatus.get(answer.status) ?? 0) + 1);
    figures.push(`(a) answers by status: ${JSON.stringify(Object.fromEntries(byStatus))}`);
    // (-1: an HTTP/1.1 client still sending when the server closed the connection after its 429)
    expect(answers.filter((a) => a.status !== 422 && a.status !== 429 && a.status !== -1).map((a) => `${a.status} ${a.body.slice(0, 200)}`)).toEqual([]);
    expect(byStatus.get(422) ?? 0).toBeGreaterThan(0);
    expect(byStatus.get(429) ?? 0).toBeGreaterThan(0);
    const overBudget = answers.find((a) => a.status === 429 && a.body.includes('--max-request-body-bytes-inflight'))!;
    expect(overBudget).toBeDefined();
    expect(overBudget.headers['retry-after']).toBe('1');
    expect(JSON.parse(overBudget.body)).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'TooManyRequests', code: 429, details: { retryAfterSeconds: 1 } });
    // AND memory and liveness held
    expect(healthzFailures).toEqual([]);
    expect(peakRssKiB).toBeLessThan(RSS_BOUND_KIB);
    expect(worstHealthzMs).toBeLessThan(1000);
    // AND afterwards the server serves normally
    const session = await connect();
    expect((await h2Request(session, 'POST', FLUNDERS, JSON.stringify(flunder('after-the-bodies', 'r')))).status).toBe(201);
    expect((await h2Request(session, 'GET', `${FLUNDERS}/after-the-bodies`)).status).toBe(200);
    session.close();
  });
});

/** Watches that never read: HTTP/2 streams (`perSession` on each of `sessions` connections) and HTTP/1.1 responses, paused from the start. */
async function openStalledWatches(sessions: number, perSession: number, http1: number): Promise<() => void> {
  const connections = await Promise.all(Array.from({ length: sessions }, () => connect()));
  for (const session of connections) {
    for (let i = 0; i < perSession; i++) {
      const stream = session.request({ ':path': `${FLUNDERS}?watch=1` });
      stream.pause();
      stream.on('error', () => undefined); // reset by the server: how a closed watch shows, once read
    }
  }
  const requests = Array.from({ length: http1 }, () => {
    const req = https.get({ host: '127.0.0.1', port: env.server.port, path: `${FLUNDERS}?watch=1`, ca: env.servingCa.certPem, cert: admin.chainPem, key: admin.keyPem, servername: env.serverName, agent: false }, (res) => {
      res.pause();
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    return req;
  });
  return () => {
    for (const req of requests) req.destroy();
    for (const session of connections) session.destroy();
  };
}

/** A watch that reads everything, with HTTP/2 windows as Go's client sets them (4 MiB per stream). */
async function openReadingWatch(): Promise<{ session: http2.ClientHttp2Session; added: string[]; ended: () => boolean }> {
  const session = await connect({ initialWindowSize: 4 * MiB });
  session.setLocalWindowSize(64 * MiB);
  const added: string[] = [];
  let ended = false;
  let partial = '';
  const watch = session.request({ ':path': `${FLUNDERS}?watch=1` });
  watch.setEncoding('utf8');
  watch.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const event = JSON.parse(line) as { type: string; object: { metadata: { name: string } } };
      if (event.type === 'ADDED') added.push(event.object.metadata.name);
    }
  });
  watch.on('close', () => (ended = true));
  return { session, added, ended: () => ended };
}

/** The server's count of open watches (/metrics). */
async function registeredWatchers(session: http2.ClientHttp2Session): Promise<number> {
  const text = (await h2Request(session, 'GET', '/metrics')).body;
  return Number(/^apiserver_registered_watchers(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? NaN);
}

/** Watches the server closed because their client did not read (its log lines). */
function closedAsSlow(): number {
  return env.server.logs().filter((line) => String(line.msg).startsWith('watch client is not reading')).length;
}

describe('(b) stalled watchers, then (c) the storage quota, on the same server', () => {
  beforeAll(() => startServer('(b) and (c)'));
  afterAll(() => env?.stop());

  test('(b) 2,000 watchers that never read while 300 objects of 20 KiB are written: RSS bounded, stalled watchers closed, a reading watcher sees every event', async () => {
    const names = Array.from({ length: 300 }, (_, i) => `object-${String(i).padStart(3, '0')}`);
    const storedBytes = 300 * (20 * 1024 + 300);
    const t0 = Date.now();
    const marks: string[] = [];
    const mark = (what: string) => marks.push(`${what} at ${Date.now() - t0} ms`);
    const { result, peakRssKiB, worstHealthzMs } = await measured(async () => {
      // GIVEN 1,900 stalled HTTP/2 watches (20 connections × 95), 100 stalled HTTP/1.1 watches, and one watch that reads
      const closeStalled = await openStalledWatches(20, 95, 100);
      const reader = await openReadingWatch();
      const deadline = Date.now() + 60_000;
      while ((await registeredWatchers(reader.session)) < 2001 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(await registeredWatchers(reader.session)).toBe(2001);
      mark('2,001 watches open');

      // WHEN 300 objects of 20 KiB are created, 10 at a time
      const writer = await connect();
      const created = await inParallel(10, names.map((name) => () => createRetrying(writer, flunder(name, 'r'.repeat(20 * 1024)))));
      writer.close();
      mark('300 created');
      expect(created.map((c) => c.status)).toEqual(names.map(() => 201));
      await waitFor('the reading watch to see all 300 ADDED events', () => reader.added.length >= 300 || reader.ended(), 60_000);
      await waitFor('the server to close the 2,000 stalled watches', () => closedAsSlow() >= 2000, 60_000);
      mark('2,000 closed');
      return { closeStalled, reader };
    });
    const { closeStalled, reader } = result;
    figures.push(`(b) ${marks.join(', ')}`);
    figures.push(`(b) 2,000 stalled watches (1,900 HTTP/2, 100 HTTP/1.1) + 300 × 20 KiB writes: peak RSS ${(peakRssKiB / 1024).toFixed(1)} MiB (bound ${(200 + storedBytes / MiB).toFixed(1)} MiB), worst /healthz ${worstHealthzMs.toFixed(0)} ms; closed as slow by the server: ${closedAsSlow()}`);

    // THEN the reading watch saw every event and is still open
    expect(reader.ended()).toBe(false);
    expect(reader.added.slice().sort()).toEqual(names);
    // AND the server closed every stalled watch (a client that does not read cannot tell: it sees the end once it reads again), and only those
    expect(closedAsSlow()).toBe(2000);
    expect(await registeredWatchers(reader.session)).toBe(1);
    // AND memory stayed bounded
    expect(peakRssKiB).toBeLessThan(RSS_BOUND_KIB + storedBytes / 1024);
    closeStalled();
    reader.session.close();
  });

  test('(c) writes past the storage quota are refused with "database space exceeded", nothing stored is lost, and the server serves normally after the flood', async () => {
    // GIVEN what (b) stored
    const session = await connect();
    const listed = async () => JSON.parse((await h2Request(session, 'GET', FLUNDERS)).body) as { items: Array<{ metadata: { name: string }; spec: { reference: string } }> };
    const before = await listed();
    expect(before.items).toHaveLength(300);

    // WHEN objects of 512 KiB are created until the quota refuses one
    const { result: refused, peakRssKiB } = await measured(async () => {
      for (let i = 0; i < 100; i++) {
        const answer = await h2Request(session, 'POST', FLUNDERS, JSON.stringify(flunder(`big-${i}`, 'b'.repeat(512 * 1024))));
        if (answer.status !== 201) return { answer, accepted: i };
      }
      throw new Error('the quota never refused a write');
    });
    figures.push(`(c) quota ${QUOTA_BYTES} bytes: ${refused.accepted} objects of 512 KiB accepted after (b)'s 300, then refused; peak RSS ${(peakRssKiB / 1024).toFixed(1)} MiB`);

    // THEN the refusal is kube-apiserver's answer to etcd's "database space exceeded": 500, no reason, the message
    expect(refused.answer.status).toBe(500);
    const status = JSON.parse(refused.answer.body) as Record<string, unknown>;
    expect(status).toMatchObject({ kind: 'Status', status: 'Failure', code: 500, reason: '' });
    expect(status.message).toMatch(/^database space exceeded: the write needs \d+ more bytes, \d+ of the quota of 12582912 bytes are used$/);
    // AND nothing stored is lost
    const after = await listed();
    expect(after.items.map((i) => i.metadata.name).sort()).toEqual([...before.items.map((i) => i.metadata.name), ...Array.from({ length: refused.accepted }, (_, i) => `big-${i}`)].sort());
    expect(after.items.every((i) => i.spec.reference.length === (i.metadata.name.startsWith('big-') ? 512 * 1024 : 20 * 1024))).toBe(true);

    // AND an update that shrinks an object and a delete still work, and the space they free can be used again
    const first = after.items.find((i) => i.metadata.name === 'big-0')!;
    const shrunk = await h2Request(session, 'PUT', `${FLUNDERS}/big-0`, JSON.stringify({ ...first, spec: { reference: 'small' } }));
    expect(shrunk.status).toBe(200);
    expect((await h2Request(session, 'DELETE', `${FLUNDERS}/big-1`)).status).toBe(200);
    const again = await h2Request(session, 'POST', FLUNDERS, JSON.stringify(flunder('after-the-flood', 'b'.repeat(512 * 1024))));
    expect(again.status).toBe(201);
    // AND the server serves normally: probes, reads, a watch
    expect((await env.server.probe('/readyz')).status).toBe(200);
    expect((await h2Request(session, 'GET', `${FLUNDERS}/after-the-flood`)).status).toBe(200);
    const watched = await h1Request('GET', `${FLUNDERS}?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dafter-the-flood`);
    expect(watched.status).toBe(200);
    expect(watched.body).toContain('"name":"after-the-flood"');
    // AND a watch over HTTP/2 from resourceVersion "" gets every object as ADDED: ~11 MiB of initial
    // events, sent as the client reads them (they wait past 256 KiB queued) rather than all at once
    const stored = (await listed()).items.map((i) => i.metadata.name).sort();
    const initial = await h2Request(session, 'GET', `${FLUNDERS}?watch=1&timeoutSeconds=5`);
    expect(initial.status).toBe(200);
    const added = initial.body.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { type: string; object: { metadata: { name: string } } });
    expect(added.filter((e) => e.type === 'ADDED').map((e) => e.object.metadata.name).sort()).toEqual(stored);
    session.close();
  });
});
