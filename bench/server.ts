/**
 * `npm run bench:server` (tsc, then `node build/bench/server.js`): the bundled extension API
 * server under load on loopback, TLS with keep-alive, every request through the full
 * request-header authentication (front-proxy client certificate + X-Remote-User/Group) and the
 * cached authorization path (SubjectAccessReviews at kube-apiserver's stand-in, warmed first).
 *
 * The server (the esbuild bundle the image runs) and a bare `node:https` server answering the same
 * bytes with the same certificate run as separate child processes; the load generator (this
 * process, N keep-alive connections) measures both in the same run, so each figure also comes as
 * a ratio to the bare server:
 *   GET of one Flunder, LIST of 100 and of 1,000 Flunders, CREATE — requests/s, p50 and p99;
 *   watch fan-out: 500 watchers, time until all have seen one change;
 *   RSS of the server idle and after the load (VmRSS of /proc/<pid>/status).
 *
 * Environment: BENCH_SECONDS (per measurement, default 5), BENCH_CONNECTIONS (default 50),
 * BENCH_WATCHERS (default 500), BENCH_CPU_PROF=<dir> (run the server under node --cpu-prof),
 * BENCH_ONLY=<text> (only the request scenarios whose name contains it, e.g. "LIST 1,000").
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort, startServerEnvironment, ServerEnvironment } from '../test/support/server-process';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const WATCHERS = Number(process.env.BENCH_WATCHERS ?? 500);
const WARMUP_SECONDS = 1;
const GROUP = 'wardle.example.com';
const BASE = `/apis/${GROUP}/v1alpha1/namespaces`;

interface Target {
  readonly port: number;
  readonly agent: https.Agent;
}

interface Measurement {
  readonly requests: number;
  readonly errors: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
}

interface Request {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  /** The body for request number i. */
  readonly body?: (i: number) => string;
}

const AUTH_HEADERS: [string, string][] = [
  ['X-Remote-User', 'bench-user'],
  ['X-Remote-Group', 'bench-group'],
  ['X-Remote-Group', 'system:authenticated'],
];

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** One request; resolves the status and the body length. */
function send(target: Target, request: Request, i: number): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const body = request.body?.(i);
    // Raw [name, value] pairs keep the repeated X-Remote-Group lines; Node then adds no Host itself.
    const headers: string[] = ['Host', 'wardle-apiserver.wardle.svc', ...AUTH_HEADERS.flat()];
    headers.push('Accept', 'application/json');
    if (body !== undefined) headers.push('Content-Type', 'application/json', 'Content-Length', String(Buffer.byteLength(body)));
    const req = https.request({ host: '127.0.0.1', port: target.port, method: request.method, path: request.path, agent: target.agent, headers: headers as unknown as Record<string, string> }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** CONNECTIONS loops, each sending one request after the other, for `seconds`. */
async function load(target: Target, request: Request, seconds: number, counter: { next: number }): Promise<Measurement> {
  const latencies: number[] = [];
  let errors = 0;
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const start = process.hrtime.bigint();
  const loop = async () => {
    while (process.hrtime.bigint() < end) {
      const t0 = process.hrtime.bigint();
      try {
        const res = await send(target, request, counter.next++);
        if (res.status >= 300) errors++;
      } catch {
        errors++;
      }
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, loop));
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const sorted = Float64Array.from(latencies).sort();
  return { requests: latencies.length, errors, rps: latencies.length / elapsed, p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

async function measure(target: Target, request: Request, counter = { next: 0 }): Promise<Measurement> {
  await load(target, request, WARMUP_SECONDS, counter);
  return load(target, request, SECONDS, counter);
}

/** The bare server: node:https with the same certificate, answering each path with a fixed body from `bodiesFile`. */
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

async function startBare(env: ServerEnvironment, bodies: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-bare-'));
  const bodiesFile = path.join(dir, 'bodies.json');
  fs.writeFileSync(bodiesFile, JSON.stringify(bodies));
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', BARE_SERVER, path.join(env.dir, 'tls.crt'), path.join(env.dir, 'tls.key'), bodiesFile, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the bare server exited: ${code}`)));
  });
  return { child, port };
}

function flunder(name: string, labels: Record<string, string> = {}): string {
  return JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name, labels }, spec: { reference: 'a-fischer', referenceType: 'Fischer' } });
}

async function populate(target: Target, namespace: string, count: number): Promise<void> {
  const counter = { next: 0 };
  const create: Request = { method: 'POST', path: `${BASE}/${namespace}/flunders`, body: (i) => flunder(`flunder-${String(i).padStart(5, '0')}`, { bench: 'yes' }) };
  const loop = async () => {
    while (counter.next < count) {
      const res = await send(target, create, counter.next++);
      if (res.status !== 201) throw new Error(`populating ${namespace}: ${res.status} ${res.body.toString()}`);
    }
  };
  await Promise.all(Array.from({ length: 10 }, loop));
}

/** WATCHERS watch streams on one namespace; resolves how long until every one saw the object created. */
async function watchFanOut(env: ServerEnvironment, target: Target): Promise<{ allMs: number; p50Ms: number; setupMs: number }> {
  const namespace = 'bench-watch';
  env.fake.setNamespace(namespace, 'Active');
  const list = JSON.parse((await send(target, { method: 'GET', path: `${BASE}/${namespace}/flunders` }, 0)).body.toString());
  const rv = list.metadata.resourceVersion as string;
  const agent = new https.Agent({ keepAlive: false, maxSockets: WATCHERS + 10, ca: env.servingCa.certPem, servername: env.serverName, cert: env.frontProxyClient.certPem, key: env.frontProxyClient.keyPem });
  const seen: (Promise<bigint> | undefined)[] = [];
  const requests: import('node:http').ClientRequest[] = [];
  const setupStart = process.hrtime.bigint();
  const opened: Promise<void>[] = [];
  for (let i = 0; i < WATCHERS; i++) {
    let open!: () => void;
    opened.push(new Promise((r) => (open = r)));
    seen.push(
      new Promise<bigint>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: target.port, path: `${BASE}/${namespace}/flunders?watch=1&resourceVersion=${rv}`, agent, headers: ['Host', env.serverName, ...AUTH_HEADERS.flat()] as unknown as Record<string, string> }, (res) => {
          if (res.statusCode !== 200) reject(new Error(`watch answered ${res.statusCode}`));
          open();
          let text = '';
          res.on('data', (c: Buffer) => {
            text += c.toString();
            if (text.includes('"ADDED"')) resolve(process.hrtime.bigint());
          });
        });
        req.on('error', reject);
        req.end();
        requests.push(req);
      }),
    );
  }
  await Promise.all(opened);
  // Every stream is open (headers received): the server has registered each watcher.
  const setupMs = Number(process.hrtime.bigint() - setupStart) / 1e6;
  await new Promise((r) => setTimeout(r, 200));
  const t0 = process.hrtime.bigint();
  const created = await send(target, { method: 'POST', path: `${BASE}/${namespace}/flunders`, body: () => flunder('watched') }, 0);
  if (created.status !== 201) throw new Error(`create for the watchers: ${created.status}`);
  const times = (await Promise.all(seen)).map((t) => Number(t! - t0) / 1e6).sort((a, b) => a - b);
  for (const req of requests) req.destroy();
  agent.destroy();
  return { allMs: times[times.length - 1], p50Ms: times[Math.floor(times.length / 2)], setupMs };
}

function rssMiB(kib: number): string {
  return (kib / 1024).toFixed(1);
}

async function main(): Promise<void> {
  const cpuProfDir = process.env.BENCH_CPU_PROF;
  const env = await startServerEnvironment({ logs: 'discard', nodeArgs: cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [] });
  let bare: { child: ChildProcess; port: number } | undefined;
  try {
    env.fake.authorize = (spec) => ({ allowed: spec.user === 'bench-user' });
    await new Promise((r) => setTimeout(r, 1000));
    const idleRss = env.server.rssKiB();

    const agentOptions = { keepAlive: true, maxSockets: CONNECTIONS, ca: env.servingCa.certPem, servername: env.serverName, cert: env.frontProxyClient.certPem, key: env.frontProxyClient.keyPem };
    const server: Target = { port: env.server.port, agent: new https.Agent(agentOptions) };
    for (const ns of ['bench-get', 'bench-list-100', 'bench-list-1000', 'bench-create']) env.fake.setNamespace(ns, 'Active');
    await populate(server, 'bench-get', 1);
    await populate(server, 'bench-list-100', 100);
    await populate(server, 'bench-list-1000', 1000);

    const scenarios: { name: string; request: Request; bare: string }[] = [
      { name: 'GET one Flunder', request: { method: 'GET', path: `${BASE}/bench-get/flunders/flunder-00000` }, bare: '/get' },
      { name: 'LIST 100 Flunders', request: { method: 'GET', path: `${BASE}/bench-list-100/flunders` }, bare: '/list100' },
      { name: 'LIST 1,000 Flunders', request: { method: 'GET', path: `${BASE}/bench-list-1000/flunders` }, bare: '/list1000' },
      { name: 'CREATE a Flunder', request: { method: 'POST', path: `${BASE}/bench-create/flunders`, body: (i) => flunder(`created-${i}`) }, bare: '/create' },
    ];
    // The bare server answers each scenario with the bytes the server answered.
    const bodies: Record<string, string> = {};
    for (const s of scenarios) {
      const res = await send(server, s.request.method === 'POST' ? { ...s.request, body: () => flunder('sample') } : s.request, 0);
      if (res.status !== 200 && res.status !== 201) throw new Error(`${s.name}: ${res.status} ${res.body.toString()}`);
      bodies[s.bare] = res.body.toString();
    }
    bodies.default = bodies['/get'];
    bare = await startBare(env, bodies);
    const bareTarget: Target = { port: bare.port, agent: new https.Agent({ ...agentOptions, cert: undefined, key: undefined }) };

    const rows: string[] = [];
    let created = 0;
    const results: Record<string, { server: Measurement; bare: Measurement }> = {};
    for (const s of scenarios.filter((c) => c.name.includes(process.env.BENCH_ONLY ?? ''))) {
      const bareResult = await measure(bareTarget, { ...s.request, path: s.bare });
      const counter = { next: 0 };
      const serverResult = await measure(server, s.request, counter);
      if (s.request.method === 'POST') created += counter.next;
      results[s.name] = { server: serverResult, bare: bareResult };
      const bytes = Buffer.byteLength(bodies[s.bare]);
      rows.push(
        `| ${s.name} | ${bytes.toLocaleString('en-US')} B | ${serverResult.rps.toFixed(0)} | ${serverResult.p50.toFixed(1)} | ${serverResult.p99.toFixed(1)} | ${serverResult.errors} | ${bareResult.rps.toFixed(0)} | ${bareResult.p50.toFixed(1)} | ${bareResult.p99.toFixed(1)} | ${((100 * serverResult.rps) / bareResult.rps).toFixed(0)}% |`,
      );
    }
    const loadedRss = env.server.rssKiB();
    server.agent.destroy();
    bareTarget.agent.destroy();
    const fanOut = await watchFanOut(env, server);
    const afterWatchRss = env.server.rssKiB();

    const get = results['GET one Flunder'] ?? { server: { rps: NaN, p99: NaN }, bare: { rps: NaN } };
    const lines = [
      `Run ${new Date().toISOString()} on ${os.cpus().length} × ${os.cpus()[0]?.model.trim()}, Node ${process.version}; ${CONNECTIONS} keep-alive connections, ${SECONDS} s per measurement after ${WARMUP_SECONDS} s warm-up.`,
      '',
      '| request | response | server req/s | p50 ms | p99 ms | errors | bare req/s | bare p50 ms | bare p99 ms | server / bare |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
      '',
      `| watch fan-out (${WATCHERS} watchers) | value |`,
      '|---|---:|',
      `| all watchers saw the change | ${fanOut.allMs.toFixed(1)} ms |`,
      `| median watcher saw it | ${fanOut.p50Ms.toFixed(1)} ms |`,
      `| opening the ${WATCHERS} streams (TLS + auth each) | ${fanOut.setupMs.toFixed(0)} ms |`,
      '',
      '| server RSS | MiB |',
      '|---|---:|',
      `| idle (ready, before any request) | ${rssMiB(idleRss)} |`,
      `| after the request load (${(1101 + created).toLocaleString('en-US')} Flunders stored) | ${rssMiB(loadedRss)} |`,
      `| with ${WATCHERS} watchers open | ${rssMiB(afterWatchRss)} |`,
      '',
      'Targets: ' +
        [
          `GET ≥ 50% of bare: ${((100 * get.server.rps) / get.bare.rps).toFixed(0)}% ${get.server.rps >= 0.5 * get.bare.rps ? 'met' : 'MISSED'}`,
          `GET p99 < 20 ms: ${get.server.p99.toFixed(1)} ms ${get.server.p99 < 20 ? 'met' : 'MISSED'}`,
          `${WATCHERS} watchers < 100 ms: ${fanOut.allMs.toFixed(1)} ms ${fanOut.allMs < 100 ? 'met' : 'MISSED'}`,
          `idle RSS < 80 MB: ${rssMiB(idleRss)} MiB ${idleRss < 80 * 1000 ? 'met' : 'MISSED'}`,
        ].join('; ') +
        '.',
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    bare?.child.kill('SIGTERM');
    await env.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench:server failed: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
