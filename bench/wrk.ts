/**
 * `npm run bench:wrk` (tsc, then `node build/bench/wrk.js`): the bundled extension API server
 * measured with `wrk` (Debian's `wrk`: `apt-get install -y wrk`), a load generator in C that is
 * not the ceiling, against a bare `node:https` server in the same run, for each store.
 *
 * Each request scenario is `wrk -t1 -c50 --latency` over TLS keep-alive, authenticated with a
 * bearer token (wrk sends no client certificate): the server asks the kube-apiserver stand-in's
 * TokenReview (cached 10 s) and SubjectAccessReview (cached 10 s), as it would a ServiceAccount.
 *   GET one Flunder, LIST 100, LIST 1,000, CREATE (a Lua script gives every POST its own name);
 *   the bare server answers each with bytes of the same size (the server's own answer).
 * Then: 500 watchers all notified of one write; RSS idle and with 10,000 Flunders stored.
 * On etcd also the write ceiling: raw etcd puts with the `etcd3` client the server uses, 50 in
 * flight, and CREATE as a ratio to it; and the ceiling of any HTTPS server that writes through
 * that client on this machine: a `node:https` server whose only work per POST is one etcd3 put of
 * the body, under the same wrk load as CREATE (HTTP, TLS and the client, without an API server);
 * the same front with its etcd3 client in a worker thread (what taking the client off the
 * JavaScript thread gains, and what the second V8 isolate costs in RSS); and for each writer the
 * CPU per write of every process on the machine (writer, etcd, load generator), with the most
 * writes per second that CPU allows on this machine's cores.
 *
 * Every scenario runs BENCH_ROUNDS times (bare, then server, alternating); the tables give the
 * medians (the ratio is the median of each round's ratio).
 *
 * Environment: BENCH_STORES (memory,etcd; default: memory, plus etcd when the server's --help
 * lists --etcd-servers), BENCH_SECONDS (per measurement, default 5), BENCH_ROUNDS (default 3),
 * BENCH_CONNECTIONS (50), BENCH_WATCHERS (500), BENCH_ONLY=<text>[|<text>…] (only the scenario of that
 * name, or those whose name contains it; several separated by `|`), BENCH_CPU_PROF=<dir> (the server under node --cpu-prof), BENCH_SERVER_ARGS (more server flags, space-separated),
 * BENCH_NODE_ARGS (more node flags for the server, space-separated), BENCH_SERVER_ENV (NAME=value pairs for the server's environment, space-separated), BENCH_HEAP_SNAPSHOT=<dir> (heap snapshots of the server
 * into <dir>: idle, after populating, after the read load).
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import { EtcdProcess } from '../test/support/etcd';
import { freePort, processRssKiB, serverBundle, startServerEnvironment, ServerEnvironment } from '../test/support/server-process';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const WATCHERS = Number(process.env.BENCH_WATCHERS ?? 500);
/** `|`-separated: each the name of a scenario, or text some names contain (scenario names hold commas). */
const ONLY = (process.env.BENCH_ONLY ?? '').split('|');
const WARMUP_SECONDS = 1;
const STORED = 10_000;
const GROUP = 'wardle.example.com';
const BASE = `/apis/${GROUP}/v1alpha1/namespaces`;

type Store = 'memory' | 'etcd';

/** One wrk (or raw etcd) measurement. */
interface Measurement {
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Non-2xx answers plus socket errors and timeouts. */
  readonly errors: number;
  /** CPU time (user + system) the serving process spent per request, µs: unlike req/s, barely moved by other load on the machine. */
  readonly cpuUsPerRequest: number;
  /** The same for the process behind it (etcd), when one was named; else NaN. */
  readonly peerCpuUsPerRequest: number;
  /** The same for the load generator (wrk, or the raw-put client in this process). */
  readonly loadCpuUsPerRequest: number;
}

/** utime and stime of a process in µs (/proc/<pid>/stat, fields 14 and 15, in clock ticks of 10 ms). */
function cpuMicros(pid: number): { user: number; system: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) * 10_000, system: Number(fields[12]) * 10_000 };
}

interface Scenario {
  readonly name: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  /** Where the bare server answers the same bytes. */
  readonly barePath: string;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function medianMeasurement(ms: readonly Measurement[]): Measurement {
  return {
    rps: median(ms.map((m) => m.rps)),
    p50Ms: median(ms.map((m) => m.p50Ms)),
    p99Ms: median(ms.map((m) => m.p99Ms)),
    errors: ms.reduce((n, m) => n + m.errors, 0),
    cpuUsPerRequest: median(ms.map((m) => m.cpuUsPerRequest)),
    peerCpuUsPerRequest: median(ms.map((m) => m.peerCpuUsPerRequest)),
    loadCpuUsPerRequest: median(ms.map((m) => m.loadCpuUsPerRequest)),
  };
}

function flunderJson(name: string, labels: Record<string, string> = {}): string {
  return JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name, labels }, spec: { reference: 'a-fischer', referenceType: 'Fischer' } });
}

function requireWrk(): void {
  try {
    execFileSync('wrk', ['-v'], { stdio: 'ignore' });
  } catch (error) {
    // `wrk -v` prints its version and exits 1; only a missing binary is ENOENT.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write('bench:wrk needs wrk (Debian package `wrk`): apt-get install -y wrk\n');
      process.exit(1);
    }
  }
}

/** `wrk debian/4.1.0-3+b2 [epoll]` (`wrk -v` prints it and exits 1). */
function wrkVersion(): string {
  return spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0]?.replace(/ Copyright.*/, '') ?? 'wrk';
}

/**
 * CPU µs of this process's children that have ended and been waited for (cutime and cstime,
 * fields 16 and 17 of /proc/self/stat): across one wrk run, wrk's own CPU, since no other child
 * ends meanwhile.
 */
function endedChildrenMicros(): number {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10_000;
}

const totalMicros = (pid: number): number => {
  const { user, system } = cpuMicros(pid);
  return user + system;
};

/** CPU µs of each thread of a process, by `<tid> <name>`. */
function threadMicros(pid: number): Map<string, number> {
  const result = new Map<string, number>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      result.set(`${tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}/${tid}`, (Number(fields[11]) + Number(fields[12])) * 10_000);
    } catch {
      // The thread ended.
    }
  }
  return result;
}

/** A Lua string literal. */
const lua = (text: string): string => JSON.stringify(text);

/**
 * The wrk script of one scenario: the token and Accept header; for POST a body whose name is
 * unique per request; `done` prints the figures as one JSON line (latencies in µs).
 */
function wrkScript(scenario: { method: string; path: string }, token: string | undefined, runId: string): string {
  const lines = [`wrk.method = ${lua(scenario.method)}`, 'wrk.headers["Accept"] = "application/json"'];
  if (token) lines.push(`wrk.headers["Authorization"] = ${lua(`Bearer ${token}`)}`);
  if (scenario.method === 'POST') {
    const [before, after] = flunderJson('@NAME@').split('@NAME@');
    lines.push(
      'wrk.headers["Content-Type"] = "application/json"',
      'local counter = 0',
      'request = function()',
      '  counter = counter + 1',
      `  return wrk.format("POST", ${lua(scenario.path)}, nil, ${lua(before)} .. ${lua(`wrk-${runId}-`)} .. counter .. ${lua(after)})`,
      'end',
    );
  }
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  io.write(string.format(\'BENCH_JSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\\n\',',
    '    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(99)))',
    'end',
  );
  return lines.join('\n') + '\n';
}

let scriptCounter = 0;
const scriptDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-wrk-'));

/**
 * `wrk -t1 -c<CONNECTIONS> -d<seconds>s --latency` of one scenario against the process `pid` listening on `port`; resolves its
 * figures, with the CPU of `peerPid` (etcd behind the server) and of wrk itself per request.
 */
function runWrk(pid: number, port: number, scenario: { method: string; path: string }, token: string | undefined, seconds: number, peerPid?: number): Promise<Measurement> {
  const runId = `${process.pid}-${++scriptCounter}`;
  const script = path.join(scriptDir, `${runId}.lua`);
  fs.writeFileSync(script, wrkScript(scenario, token, runId));
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '--timeout', '10s', '-s', script, `https://127.0.0.1:${port}${scenario.path}`];
  const cpuBefore = cpuMicros(pid);
  const peerBefore = peerPid === undefined ? NaN : totalMicros(peerPid);
  const wrkBefore = endedChildrenMicros();
  const threadsBefore = process.env.BENCH_DEBUG ? threadMicros(pid) : new Map<string, number>();
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = /BENCH_JSON (.*)/.exec(out);
      if (code !== 0 || !line) return reject(new Error(`wrk ${args.join(' ')} exited ${code}:\n${out}`));
      const r = JSON.parse(line[1]) as { requests: number; duration_us: number; errors: number; p50_us: number; p99_us: number };
      const cpuAfter = cpuMicros(pid);
      const peerCpuUsPerRequest = peerPid === undefined ? NaN : (totalMicros(peerPid) - peerBefore) / r.requests;
      const loadCpuUsPerRequest = (endedChildrenMicros() - wrkBefore) / r.requests;
      const user = cpuAfter.user - cpuBefore.user;
      const system = cpuAfter.system - cpuBefore.system;
      if (process.env.BENCH_DEBUG) {
        const threads = [...threadMicros(pid)].map(([t, us]) => `${t} ${((us - (threadsBefore.get(t) ?? 0)) / r.requests).toFixed(1)}`).join(', ');
        process.stderr.write(`  pid ${pid}: ${(user / r.requests).toFixed(1)} µs user + ${(system / r.requests).toFixed(1)} µs system per request; by thread: ${threads}\n`);
      }
      resolve({
        rps: r.requests / (r.duration_us / 1e6),
        p50Ms: r.p50_us / 1000,
        p99Ms: r.p99_us / 1000,
        errors: r.errors,
        cpuUsPerRequest: (user + system) / r.requests,
        peerCpuUsPerRequest,
        loadCpuUsPerRequest,
      });
    });
  });
}

/** The bare server: node:https with the same certificate, answering each path with fixed bytes from `bodiesFile`. */
const BARE_SERVER = `
const https = require('node:https');
const fs = require('node:fs');
const [certFile, keyFile, bodiesFile, port] = process.argv.slice(1);
const bodies = new Map(Object.entries(JSON.parse(fs.readFileSync(bodiesFile, 'utf8'))).map(([k, v]) => [k, Buffer.from(v)]));
const server = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), keepAliveTimeout: 90000 }, (req, res) => {
  const body = bodies.get(req.url.split('?')[0]) ?? bodies.get('default');
  req.resume();
  req.on('end', () => {
    res.writeHead(req.method === 'POST' ? 201 : 200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
    res.end(body);
  });
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

/**
 * The put-only front: node:https answering each POST with its body after one etcd3 put of it (under a key of its own).
 * With `worker`, the etcd3 client lives in a worker thread and the HTTPS thread only passes it the bodies: how much an
 * HTTPS server gains here by taking the client off its JavaScript thread, and what the second V8 isolate costs in RSS.
 */
const PUT_FRONT_SERVER = `
const https = require('node:https');
const fs = require('node:fs');
const { Worker } = require('node:worker_threads');
const [certFile, keyFile, port, etcd3Path, etcdUrl, mode] = process.argv.slice(1);
let put;
if (mode === 'worker') {
  const worker = new Worker(
    "const { parentPort, workerData } = require('node:worker_threads');" +
      'const client = new (require(workerData.etcd3Path).Etcd3)({ hosts: workerData.etcdUrl });' +
      'parentPort.on("message", ({ id, key, value }) => client.put(key).value(value).then(() => parentPort.postMessage({ id }), (error) => parentPort.postMessage({ id, error: String(error) })));',
    { eval: true, workerData: { etcd3Path, etcdUrl } },
  );
  const pending = new Map();
  let nextId = 0;
  worker.on('message', ({ id, error }) => {
    const settle = pending.get(id);
    pending.delete(id);
    settle(error);
  });
  put = (key, value) => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, (error) => (error === undefined ? resolve() : reject(new Error(error))));
    worker.postMessage({ id, key, value });
  });
} else {
  const client = new (require(etcd3Path).Etcd3)({ hosts: etcdUrl });
  put = (key, value) => client.put(key).value(value);
}
let counter = 0;
const server = https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), keepAliveTimeout: 90000 }, (req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    put('/bench-front/' + mode + '/' + counter++, body).then(
      () => {
        res.writeHead(201, { 'Content-Type': 'application/json', 'Content-Length': body.length });
        res.end(body);
      },
      (error) => {
        res.writeHead(500);
        res.end(String(error));
      },
    );
  });
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

type PutFrontMode = 'main' | 'worker';

interface PutFront {
  readonly child: ChildProcess;
  readonly port: number;
  /** RSS 2 s after it is ready, before any load: with `worker`, a second V8 isolate holding the etcd3 client. */
  readonly idleRssKiB: number;
}

async function startPutFront(env: ServerEnvironment, etcd: EtcdProcess, mode: PutFrontMode): Promise<PutFront> {
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', PUT_FRONT_SERVER, path.join(env.dir, 'tls.crt'), path.join(env.dir, 'tls.key'), String(port), require.resolve('etcd3'), etcd.clientUrl, mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the put-only front (${mode}) exited: ${code}`)));
  });
  await new Promise((r) => setTimeout(r, 2000));
  return { child, port, idleRssKiB: processRssKiB(child.pid!) };
}

async function startBare(env: ServerEnvironment, bodies: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const bodiesFile = path.join(scriptDir, `bodies-${++scriptCounter}.json`);
  fs.writeFileSync(bodiesFile, JSON.stringify(bodies));
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', BARE_SERVER, path.join(env.dir, 'tls.crt'), path.join(env.dir, 'tls.key'), bodiesFile, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the bare server exited: ${code}`)));
  });
  return { child, port };
}

/** A small HTTPS client of the server (setup, not measurement): bearer token, keep-alive. */
class Client {
  readonly agent: https.Agent;
  constructor(
    private readonly env: ServerEnvironment,
    private readonly token: string,
    maxSockets = 50,
  ) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets, ca: env.servingCa.certPem, servername: env.serverName });
  }

  send(method: string, pathName: string, body?: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { Authorization: `Bearer ${this.token}`, Accept: 'application/json' };
      if (body !== undefined) Object.assign(headers, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      const req = https.request({ host: '127.0.0.1', port: this.env.server.port, method, path: pathName, agent: this.agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Creates `count` Flunders in `namespace`, 50 at a time. */
  async populate(namespace: string, count: number, prefix = 'flunder'): Promise<void> {
    let next = 0;
    const loop = async () => {
      while (next < count) {
        const i = next++;
        const res = await this.send('POST', `${BASE}/${namespace}/flunders`, flunderJson(`${prefix}-${String(i).padStart(5, '0')}`, { bench: 'yes' }));
        if (res.status !== 201) throw new Error(`populating ${namespace}: ${res.status} ${res.body}`);
      }
    };
    await Promise.all(Array.from({ length: 50 }, loop));
  }
}

/** WATCHERS watch streams on one namespace; resolves how long until every one saw one created object. */
async function watchFanOut(env: ServerEnvironment, token: string, round: number): Promise<{ allMs: number; p50Ms: number; setupMs: number }> {
  const namespace = 'bench-watch';
  env.fake.setNamespace(namespace, 'Active');
  const client = new Client(env, token);
  const list = JSON.parse((await client.send('GET', `${BASE}/${namespace}/flunders`)).body) as { metadata: { resourceVersion: string } };
  const agent = new https.Agent({ keepAlive: false, maxSockets: WATCHERS + 10, ca: env.servingCa.certPem, servername: env.serverName });
  const requests: import('node:http').ClientRequest[] = [];
  const opened: Promise<void>[] = [];
  const seen: Promise<bigint>[] = [];
  const setupStart = process.hrtime.bigint();
  for (let i = 0; i < WATCHERS; i++) {
    let open!: () => void;
    opened.push(new Promise((r) => (open = r)));
    seen.push(
      new Promise<bigint>((resolve, reject) => {
        const req = https.request(
          { host: '127.0.0.1', port: env.server.port, path: `${BASE}/${namespace}/flunders?watch=1&resourceVersion=${list.metadata.resourceVersion}`, agent, headers: { Authorization: `Bearer ${token}` } },
          (res) => {
            if (res.statusCode !== 200) reject(new Error(`watch answered ${res.statusCode}`));
            open();
            let text = '';
            res.on('data', (c: Buffer) => {
              text += c.toString();
              if (text.includes('"ADDED"')) resolve(process.hrtime.bigint());
            });
          },
        );
        req.on('error', reject);
        req.end();
        requests.push(req);
      }),
    );
  }
  await Promise.all(opened);
  const setupMs = Number(process.hrtime.bigint() - setupStart) / 1e6;
  await new Promise((r) => setTimeout(r, 500));
  const t0 = process.hrtime.bigint();
  const created = await client.send('POST', `${BASE}/${namespace}/flunders`, flunderJson(`watched-${round}`));
  if (created.status !== 201) throw new Error(`create for the watchers: ${created.status} ${created.body}`);
  const times = (await Promise.all(seen)).map((t) => Number(t - t0) / 1e6).sort((a, b) => a - b);
  for (const req of requests) req.destroy();
  agent.destroy();
  client.agent.destroy();
  return { allMs: times[times.length - 1], p50Ms: times[Math.floor(times.length / 2)], setupMs };
}

/** Raw etcd puts with the server's client library, CONNECTIONS in flight, for `seconds`: the write ceiling. */
async function rawEtcdPuts(etcd: EtcdProcess, seconds: number, round: number): Promise<Measurement> {
  const client = new Etcd3({ hosts: etcd.clientUrl });
  try {
    const value = flunderJson('raw-put-of-a-flunder-sized-value', { bench: 'yes' });
    let i = 0;
    const latencies: number[] = [];
    let errors = 0;
    const run = async (until: bigint, record: boolean) => {
      const loop = async () => {
        while (process.hrtime.bigint() < until) {
          const t0 = process.hrtime.bigint();
          try {
            await client.put(`/bench-raw/${round}/${i++}`).value(value);
          } catch {
            errors++;
          }
          if (record) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
      };
      await Promise.all(Array.from({ length: CONNECTIONS }, loop));
    };
    await run(process.hrtime.bigint() + BigInt(WARMUP_SECONDS * 1e9), false);
    errors = 0;
    const start = process.hrtime.bigint();
    const clientBefore = process.cpuUsage();
    const etcdBefore = totalMicros(etcd.pid!);
    await run(start + BigInt(Math.round(seconds * 1e9)), true);
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    const clientCpu = process.cpuUsage(clientBefore);
    const puts = latencies.length;
    latencies.sort((a, b) => a - b);
    return {
      rps: puts / elapsed,
      p50Ms: latencies[Math.floor(puts * 0.5)],
      p99Ms: latencies[Math.floor(puts * 0.99)],
      errors,
      cpuUsPerRequest: NaN,
      peerCpuUsPerRequest: (totalMicros(etcd.pid!) - etcdBefore) / puts,
      // The client is this process: all of its CPU in the measurement is the puts'.
      loadCpuUsPerRequest: (clientCpu.user + clientCpu.system) / puts,
    };
  } finally {
    client.close();
  }
}

/**
 * RSS of a server left idle for 30 s since it started: V8's memory reducer gives back the young
 * generation and the start-up garbage after ~8-10 s without allocation, so what is measured
 * sooner (or once RSS holds for a few seconds) is start-up, not idle.
 */
async function idleRss(server: { rssKiB(): number }): Promise<number> {
  await new Promise((r) => setTimeout(r, 29_000));
  return server.rssKiB();
}

/** With BENCH_DEBUG: the server's resident memory by mapping (malloc heap, anonymous mmaps such as V8's heap, files), from /proc. */
/** RSS once it stops falling: sampled each second while idle, at most 30 s (V8 shrinks its heap when idle). */
async function settledRss(server: { rssKiB(): number }): Promise<number> {
  let last = server.rssKiB();
  for (let second = 1; second <= 30; second++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = server.rssKiB();
    if (second >= 5 && Math.abs(now - last) < 512) return now;
    last = now;
  }
  return last;
}

function memoryDebug(pid: number, when: string): void {
  if (!process.env.BENCH_DEBUG) return;
  const kib = new Map<string, number>();
  let kind = '';
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) kind = mapping[1] === '' ? 'anonymous' : mapping[1].startsWith('/') ? 'files' : mapping[1];
    else if (line.startsWith('Rss:')) kib.set(kind, (kib.get(kind) ?? 0) + Number(line.split(/\s+/)[1]));
  }
  const parts = [...kib].filter(([, k]) => k >= 1024).map(([name, k]) => `${name} ${(k / 1024).toFixed(1)}`);
  process.stderr.write(`  RSS ${when} (MiB): ${parts.join(', ')}\n`);
}

/** Has the server (started with --heapsnapshot-signal=SIGUSR2) write a heap snapshot into `dir`; resolves once it is complete. */
async function heapSnapshot(pid: number, dir: string): Promise<void> {
  const before = new Set(fs.readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 120_000;
  for (let lastSize = -1; Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 500));
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (!file) continue;
    const size = fs.statSync(path.join(dir, file)).size;
    if (size > 0 && size === lastSize) return; // no longer growing
    lastSize = size;
  }
  throw new Error(`no heap snapshot from ${pid} in ${dir}`);
}

interface StoreResult {
  readonly store: Store;
  readonly rows: { scenario: Scenario; bytes: number; server: Measurement; bare: Measurement; ratio: number; rounds: number[]; cpuRatio: number }[];
  readonly rawPuts?: Measurement;
  readonly createToRawPuts?: number;
  /** The put-only fronts under CREATE's load, and CREATE and each front as ratios (median of each round's). */
  readonly putFronts: readonly { mode: PutFrontMode; measurement: Measurement; toRawPuts: number; idleRssKiB: number }[];
  readonly createToPutFront?: number;
  readonly fanOut: { allMs: number; p50Ms: number; setupMs: number }[];
  /** 1 s after start. */
  readonly startedRssKiB: number;
  /** 30 s after start, no request served. */
  readonly idleRssKiB: number;
  /** Right after storing the 10,000 Flunders, and after the GET and LIST load (cached serializations included). */
  readonly populatedRssKiB: number;
  /** After populating, once idle: V8 gives back heap grown under the load when it is idle (its memory reducer). */
  readonly settledRssKiB: number;
  /** etcd: a second server started on the etcd holding the 10,000 Flunders, once its cache has listed them. */
  readonly replicaRssKiB?: number;
  readonly afterReadsRssKiB: number;
}

async function benchStore(store: Store): Promise<StoreResult> {
  const cpuProfDir = process.env.BENCH_CPU_PROF;
  const heapDir = process.env.BENCH_HEAP_SNAPSHOT;
  const etcd = store === 'etcd' ? await EtcdProcess.start() : undefined;
  let env: ServerEnvironment | undefined;
  let bare: { child: ChildProcess; port: number } | undefined;
  const putFronts = new Map<PutFrontMode, PutFront>();
  try {
    env = await startServerEnvironment({
      logs: 'discard',
      env: Object.fromEntries((process.env.BENCH_SERVER_ENV ?? '').split(' ').filter((a) => a.includes('=')).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)])),
      // The memory store's default quota (16 MiB) holds ~9,800 Flunders now that each carries its
      // managedFields: the 10,000 stored below and the creates measured need more.
      extraArgs: [...(etcd ? ['--storage=etcd', `--etcd-servers=${etcd.clientUrl}`] : ['--storage-quota-bytes=268435456']), ...(process.env.BENCH_SERVER_ARGS ?? '').split(' ').filter((a) => a)],
      nodeArgs: [
        ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
        ...(heapDir ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${heapDir}`] : []),
        ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a),
      ],
    });
    await new Promise((r) => setTimeout(r, 1000));
    const startedRssKiB = env.server.rssKiB();
    const idleRssKiB = await idleRss(env.server);
    memoryDebug(env.server.pid, `${store} idle`);
    if (heapDir) await heapSnapshot(env.server.pid, heapDir);
    const token = env.fake.serviceAccountToken;
    const client = new Client(env, token);
    for (const ns of ['bench-get', 'bench-list-100', 'bench-list-1000', 'bench-fill', 'bench-create']) env.fake.setNamespace(ns, 'Active');
    await client.populate('bench-get', 1);
    await client.populate('bench-list-100', 100);
    await client.populate('bench-list-1000', 1000);
    await client.populate('bench-fill', STORED - 1101);
    const populatedRssKiB = env.server.rssKiB();
    memoryDebug(env.server.pid, `${store} populated`);
    const settledRssKiB = await settledRss(env.server);
    memoryDebug(env.server.pid, `${store} populated, settled`);
    // A replica started on the populated etcd: its watch cache lists the 10,000 Flunders at start,
    // without having served the writes that stored them (what a restarted or second pod holds).
    let replicaRssKiB: number | undefined;
    if (etcd) {
      const replica = await startServerEnvironment({ logs: 'discard', extraArgs: ['--storage=etcd', `--etcd-servers=${etcd.clientUrl}`] });
      try {
        replicaRssKiB = await settledRss(replica.server);
        memoryDebug(replica.server.pid, `${store} a new replica on the populated etcd`);
      } finally {
        await replica.stop();
      }
    }
    if (heapDir) await heapSnapshot(env.server.pid, heapDir);

    const scenarios: Scenario[] = [
      { name: 'GET one Flunder', method: 'GET', path: `${BASE}/bench-get/flunders/flunder-00000`, barePath: '/get' },
      // resourceVersion=0: any revision will do, so the watch cache may answer without asking etcd (as upstream's cacher).
      { name: 'GET one Flunder ?resourceVersion=0', method: 'GET', path: `${BASE}/bench-get/flunders/flunder-00000?resourceVersion=0`, barePath: '/get' },
      { name: 'LIST 100 Flunders', method: 'GET', path: `${BASE}/bench-list-100/flunders`, barePath: '/list100' },
      { name: 'LIST 1,000 Flunders', method: 'GET', path: `${BASE}/bench-list-1000/flunders`, barePath: '/list1000' },
      { name: 'CREATE a Flunder', method: 'POST', path: `${BASE}/bench-create/flunders`, barePath: '/create' },
    ].filter((s, _, all) => ONLY.some((only) => (all.some((a) => a.name === only) ? s.name === only : s.name.includes(only)))) as Scenario[];
    const bodies: Record<string, string> = {};
    for (const s of scenarios) {
      const res = await client.send(s.method, s.path, s.method === 'POST' ? flunderJson(`wrk-sample-${store}`) : undefined);
      if (res.status !== 200 && res.status !== 201) throw new Error(`${s.name}: ${res.status} ${res.body}`);
      bodies[s.barePath] = res.body;
    }
    bodies.default = bodies[scenarios[0]?.barePath ?? ''] ?? '{}';
    bare = await startBare(env, bodies);

    const rounds = new Map<string, { server: Measurement[]; bare: Measurement[] }>(scenarios.map((s) => [s.name, { server: [], bare: [] }]));
    const raw: Measurement[] = [];
    const front = new Map<PutFrontMode, Measurement[]>();
    const createScenario = scenarios.find((s) => s.method === 'POST');
    if (etcd && createScenario) {
      for (const mode of ['main', 'worker'] as const) {
        putFronts.set(mode, await startPutFront(env, etcd, mode));
        front.set(mode, []);
      }
    }
    let afterReadsRssKiB = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of scenarios) {
        const r = rounds.get(s.name)!;
        if (s.method === 'POST' && round === 0) {
          afterReadsRssKiB = env.server.rssKiB();
          memoryDebug(env.server.pid, `${store} after the reads`);
        }
        await runWrk(bare.child.pid!, bare.port, { method: s.method, path: s.barePath }, undefined, WARMUP_SECONDS);
        r.bare.push(await runWrk(bare.child.pid!, bare.port, { method: s.method, path: s.barePath }, undefined, SECONDS));
        await runWrk(env.server.pid, env.server.port, s, token, WARMUP_SECONDS);
        r.server.push(await runWrk(env.server.pid, env.server.port, s, token, SECONDS, etcd?.pid));
        process.stderr.write(`${store} round ${round + 1}/${ROUNDS} ${s.name}: server ${r.server.at(-1)!.rps.toFixed(0)} req/s, bare ${r.bare.at(-1)!.rps.toFixed(0)} req/s\n`);
      }
      if (etcd && scenarios.some((s) => s.method === 'POST')) {
        raw.push(await rawEtcdPuts(etcd, SECONDS, round));
        process.stderr.write(`${store} round ${round + 1}/${ROUNDS} raw etcd puts: ${raw.at(-1)!.rps.toFixed(0)}/s\n`);
      }
      for (const [mode, putFront] of putFronts) {
        await runWrk(putFront.child.pid!, putFront.port, createScenario!, undefined, WARMUP_SECONDS);
        front.get(mode)!.push(await runWrk(putFront.child.pid!, putFront.port, createScenario!, undefined, SECONDS, etcd?.pid));
        process.stderr.write(`${store} round ${round + 1}/${ROUNDS} put-only front (${mode}): ${front.get(mode)!.at(-1)!.rps.toFixed(0)}/s\n`);
      }
    }
    if (afterReadsRssKiB === 0) {
      afterReadsRssKiB = env.server.rssKiB();
      memoryDebug(env.server.pid, `${store} after the reads`);
    }
    if (heapDir) await heapSnapshot(env.server.pid, heapDir);

    const fanOut = [];
    if (WATCHERS > 0 && ONLY.some((only) => only === '' || 'watch'.includes(only))) {
      for (let round = 0; round < ROUNDS; round++) fanOut.push(await watchFanOut(env, token, round));
    }
    client.agent.destroy();

    const rows = scenarios.map((scenario) => {
      const r = rounds.get(scenario.name)!;
      const ratios = r.server.map((m, i) => m.rps / r.bare[i].rps);
      const cpuRatio = median(r.server.map((m, i) => r.bare[i].cpuUsPerRequest / m.cpuUsPerRequest));
      return { scenario, bytes: Buffer.byteLength(bodies[scenario.barePath]), server: medianMeasurement(r.server), bare: medianMeasurement(r.bare), ratio: median(ratios), rounds: ratios, cpuRatio };
    });
    const create = rounds.get('CREATE a Flunder');
    const rawPuts = raw.length > 0 ? medianMeasurement(raw) : undefined;
    const createToRawPuts = create && raw.length > 0 ? median(create.server.map((m, i) => m.rps / raw[i].rps)) : undefined;
    const mainFront = front.get('main');
    const createToPutFront = create && mainFront ? median(create.server.map((m, i) => m.rps / mainFront[i].rps)) : undefined;
    const putFrontResults = [...front].map(([mode, ms]) => ({
      mode,
      measurement: medianMeasurement(ms),
      toRawPuts: median(ms.map((m, i) => m.rps / raw[i].rps)),
      idleRssKiB: putFronts.get(mode)!.idleRssKiB,
    }));
    return { store, rows, rawPuts, createToRawPuts, putFronts: putFrontResults, createToPutFront, fanOut, startedRssKiB, idleRssKiB, populatedRssKiB, settledRssKiB, replicaRssKiB, afterReadsRssKiB };
  } finally {
    bare?.child.kill('SIGTERM');
    for (const putFront of putFronts.values()) putFront.child.kill('SIGTERM');
    await env?.stop();
    await etcd?.remove();
  }
}

/**
 * The machine's CPU time so far by /proc/stat's first line: all of it and the share the hypervisor gave to other
 * guests (steal). Steal takes CPU from a run without showing in the load average; the report says how much there was.
 */
function machineCpuTicks(): { total: number; steal: number } {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
}
const ticksAtStart = machineCpuTicks();

const mib = (kib: number): string => (kib / 1024).toFixed(1);
const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');

/**
 * Where each write's CPU goes, in every process on the machine (the writer, etcd, the load generator), and the most
 * writes per second that CPU allows on this machine's cores were every thread of every process busy all the time: a
 * ceiling no change of threading in the server can pass, only less CPU per write.
 */
function writeBudget(results: readonly StoreResult[]): string[] {
  const cores = os.cpus().length;
  const rows: string[] = [];
  for (const r of results) {
    if (!r.rawPuts) continue;
    const raw = r.rawPuts.rps;
    const line = (writer: string, m: Measurement, writerCpu: number, ratio: number, rss: string) => {
      const all = writerCpu + m.peerCpuUsPerRequest + m.loadCpuUsPerRequest;
      const most = (cores * 1e6) / all;
      rows.push(
        `| ${r.store} | ${writer} | ${m.rps.toFixed(0)} | ${ratio.toFixed(2)}× | ${writerCpu.toFixed(0)}; ${m.peerCpuUsPerRequest.toFixed(0)}; ${m.loadCpuUsPerRequest.toFixed(0)}; **${all.toFixed(0)}** | ${most.toFixed(0)}/s = ${(most / raw).toFixed(2)}× raw puts | ${rss} |`,
      );
    };
    line('raw etcd puts (the client is the writer and the load)', r.rawPuts, 0, 1, '');
    for (const f of r.putFronts) line(`put-only front (${f.mode === 'main' ? 'one thread' : 'client in a worker thread'})`, f.measurement, f.measurement.cpuUsPerRequest, f.toRawPuts, `${mib(f.idleRssKiB)} MiB`);
    const create = r.rows.find((row) => row.scenario.method === 'POST');
    if (create && r.createToRawPuts !== undefined) line('CREATE through the server', create.server, create.server.cpuUsPerRequest, r.createToRawPuts, `${mib(r.idleRssKiB)} MiB`);
  }
  if (rows.length === 0) return [];
  return [
    '',
    `| store | writer | writes/s | × raw puts | CPU µs per write: writer; etcd; load generator; **all** | at most, all ${cores} cores busy | RSS idle |`,
    '|---|---|---:|---:|---:|---:|---:|',
    ...rows,
  ];
}

function report(results: readonly StoreResult[]): string {
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  const ticks = machineCpuTicks();
  const steal = (100 * (ticks.steal - ticksAtStart.steal)) / Math.max(1, ticks.total - ticksAtStart.total);
  const out = [
    `Run ${new Date().toISOString()} on ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}, Node ${process.version}, ${wrkVersion()}; ` +
      `wrk -t1 -c${CONNECTIONS} --latency, ${SECONDS} s per measurement after ${WARMUP_SECONDS} s warm-up, median of ${ROUNDS} rounds; load average at the end ${load}; ` +
      `CPU time stolen by the hypervisor during the run ${steal.toFixed(1)}%.`,
    '',
    '| store | request | response | server req/s | p50 ms | p99 ms | errors | bare req/s | bare p99 ms | server / bare (each round) | CPU µs/request server; bare; bare / server | target |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of results) {
    for (const row of r.rows) {
      const isCreate = row.scenario.method === 'POST';
      const target = isCreate
        ? r.createToRawPuts !== undefined
          ? `≥ 0.6× raw etcd puts: ${r.createToRawPuts.toFixed(2)}× ${verdict(r.createToRawPuts >= 0.6)}` +
            (r.createToPutFront !== undefined ? `; ${r.createToPutFront.toFixed(2)}× the put-only front` : '')
          : '(ceiling: raw etcd puts, etcd only)'
        : row.scenario.name.startsWith('GET')
          ? `≥ 0.5×, p99 < 20 ms: ${verdict(row.ratio >= 0.5 && row.server.p99Ms < 20)}`
          : `≥ 0.5×: ${verdict(row.ratio >= 0.5)}`;
      out.push(
        `| ${r.store} | ${row.scenario.name} | ${row.bytes.toLocaleString('en-US')} B | ${row.server.rps.toFixed(0)} | ${row.server.p50Ms.toFixed(1)} | ${row.server.p99Ms.toFixed(1)} | ${row.server.errors} | ${row.bare.rps.toFixed(0)} | ${row.bare.p99Ms.toFixed(1)} | ${row.ratio.toFixed(2)}× (${row.rounds.map((x) => x.toFixed(2)).join(', ')}) | ${row.server.cpuUsPerRequest.toFixed(0)}; ${row.bare.cpuUsPerRequest.toFixed(0)}; ${row.cpuRatio.toFixed(2)}× | ${target} |`,
      );
    }
    if (r.rawPuts) {
      out.push(`| ${r.store} | raw etcd puts (etcd3, ${CONNECTIONS} in flight) | | ${r.rawPuts.rps.toFixed(0)} | ${r.rawPuts.p50Ms.toFixed(1)} | ${r.rawPuts.p99Ms.toFixed(1)} | ${r.rawPuts.errors} | | | | | the write ceiling |`);
    }
    for (const f of r.putFronts) {
      const m = f.measurement;
      const what = f.mode === 'main' ? 'put-only front: node:https, one etcd3 put per POST (wrk, CREATE\'s load)' : 'put-only front, its etcd3 client in a worker thread';
      out.push(
        `| ${r.store} | ${what} | | ${m.rps.toFixed(0)} | ${m.p50Ms.toFixed(1)} | ${m.p99Ms.toFixed(1)} | ${m.errors} | | | ${f.toRawPuts.toFixed(2)}× raw etcd puts | ${m.cpuUsPerRequest.toFixed(0)} | the ceiling of an HTTPS server writing through this client${f.mode === 'main' ? '' : ' off its main thread'} |`,
      );
    }
  }
  out.push(...writeBudget(results));
  out.push('', `| store | ${WATCHERS} watchers: all saw one write (median of rounds; each round) | median watcher | opening the streams | RSS idle (1 s after start; 30 s) | RSS with ${STORED.toLocaleString('en-US')} Flunders (right after populating; settled, idle; after the read load) |`, '|---|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const all = r.fanOut.map((f) => f.allMs);
    const fan = r.fanOut.length > 0 ? `${median(all).toFixed(1)} ms (${all.map((x) => x.toFixed(0)).join(', ')}) ${verdict(median(all) < 100)}` : 'not run';
    out.push(
      `| ${r.store} | ${fan} | ${r.fanOut.length > 0 ? median(r.fanOut.map((f) => f.p50Ms)).toFixed(1) + ' ms' : ''} | ${r.fanOut.length > 0 ? median(r.fanOut.map((f) => f.setupMs)).toFixed(0) + ' ms' : ''} | ${mib(r.startedRssKiB)} MiB; ${mib(r.idleRssKiB)} MiB ${verdict(r.idleRssKiB < 80 * 1024)} | ${mib(r.populatedRssKiB)} MiB; settled ${mib(r.settledRssKiB)} MiB ${verdict(r.settledRssKiB < 150 * 1024)}; ${mib(r.afterReadsRssKiB)} MiB after the read load${r.replicaRssKiB !== undefined ? `; a new replica on the populated etcd ${mib(r.replicaRssKiB)} MiB ${verdict(r.replicaRssKiB < 150 * 1024)}` : ''} |`,
    );
  }
  return out.join('\n') + '\n';
}

function storesToRun(): Store[] {
  if (process.env.BENCH_STORES) return process.env.BENCH_STORES.split(',').map((s) => s.trim() as Store);
  const help = execFileSync(process.execPath, [serverBundle(), '--help'], { encoding: 'utf8' });
  if (help.includes('--etcd-servers')) return ['memory', 'etcd'];
  process.stderr.write('the server has no --etcd-servers flag yet: measuring the memory store only\n');
  return ['memory'];
}

async function main(): Promise<void> {
  requireWrk();
  const results: StoreResult[] = [];
  for (const store of storesToRun()) results.push(await benchStore(store));
  process.stdout.write(report(results));
}

main().then(
  () => {
    fs.rmSync(scriptDir, { recursive: true, force: true });
    process.exit(0);
  },
  (error: unknown) => {
    process.stderr.write(`bench:wrk failed: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
