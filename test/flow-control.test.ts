import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { WARDLE } from '../apis';
import { FixedNamespaceLister } from '../server/admission/namespace-lifecycle';
import { FlowControl, isLongRunning, parseGoDuration, requestTimeoutMs } from '../server/flow-control';
import { OptionsError, parseCommandLine } from '../server/options';
import { ApiServing, createApiServing, resourcePrefixes } from '../server/registry';
import { wardleAdmission, wardleRules } from '../server/registry/wardle';
import { parseRequestInfo } from '../server/request-info';
import { Server } from '../server/server';
import { SecureServing } from '../server/serving';
import { createStorage } from '../server/storage';
import { MemoryStorage } from '../server/storage/memory';
import type { Storage } from '../server/storage/types';
import { EtcdProcess } from './support/etcd';
import { makeCa, makeLeaf, makeServerCert, TestCa, TestCertificate } from './support/pki';
import { FakeAuth, memoryLogger, request, Response } from './support/shell-fakes';
import { until } from './support/until';

/**
 * Flow control and timeouts against the real server shell and registry, built in-process (delegated
 * auth replaced by FakeAuth: x509 users, system:masters allowed everything): max in flight (429),
 * request timeouts (504, nothing half-written), watch lifetimes, and the serving timeouts against
 * slow and silent clients on HTTP/1.1 and HTTP/2. Storage calls are held at a gate to make
 * requests slow on purpose.
 */

const GROUP = 'wardle.example.com';
const FLUNDERS = `/apis/${GROUP}/v1alpha1/namespaces/default/flunders`;

/** Holds the calls that pass through it while closed; lets them all go on open(). */
class Gate {
  private held: (() => void)[] = [];
  private closed = false;

  pass(): Promise<void> {
    if (!this.closed) return Promise.resolve();
    return new Promise((resolve) => this.held.push(resolve));
  }

  get waiting(): number {
    return this.held.length;
  }

  close(): void {
    this.closed = true;
  }

  open(): void {
    this.closed = false;
    for (const release of this.held.splice(0)) release();
  }
}

interface Gates {
  readonly list: Gate;
  readonly create: Gate;
  readonly admission: Gate;
}

/** The memory store with its lists and creates passing through gates. */
function gatedStorage(memory: MemoryStorage, gates: Gates): Storage {
  const overrides: Partial<Storage> = {
    // The flunders' lists; and apart, the fischers' lists that admission (BanFlunder) makes on each flunder create, before its write.
    list: async (prefix, options) => {
      if (prefix.includes('/flunders/')) await gates.list.pass();
      if (prefix.includes('/fischers/')) await gates.admission.pass();
      return memory.list(prefix, options);
    },
    create: async (key, value) => {
      await gates.create.pass();
      return memory.create(key, value);
    },
  };
  return new Proxy(memory, {
    get(target, property, receiver) {
      if (Object.prototype.hasOwnProperty.call(overrides, property)) return overrides[property as keyof Storage];
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

let dir: string;
let servingCa: TestCa;
let bob: TestCertificate;
let admin: TestCertificate;
let serving: TestCertificate;
let clientCaPem: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'flow-control-'));
  servingCa = makeCa('serving-ca');
  const clientCa = makeCa('client-ca');
  bob = makeLeaf(clientCa, { cn: 'bob', organizations: ['developers'] });
  admin = makeLeaf(clientCa, { cn: 'admin', organizations: ['system:masters'] });
  serving = makeServerCert(servingCa);
  writeFileSync(join(dir, 'tls.crt'), serving.chainPem);
  writeFileSync(join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
  clientCaPem = clientCa.certPem;
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Harness {
  readonly server: Server;
  readonly gates: Gates;
  readonly logLines: Record<string, unknown>[];
}

const harnesses: Harness[] = [];
afterAll(async () => {
  for (const { server, gates } of harnesses) {
    gates.list.open();
    gates.create.open();
    gates.admission.open();
    await server.shutdown();
  }
});

async function startServer(
  options: Pick<Parameters<typeof Server.start>[0], 'flowControl' | 'servingTimeouts'> & { minRequestTimeoutSeconds?: number; wrap?: (serving: ApiServing) => ApiServing; storage?: Storage } = {},
): Promise<Harness> {
  const gates: Gates = { list: new Gate(), create: new Gate(), admission: new Gate() };
  const logLines: Record<string, unknown>[] = [];
  const logger = memoryLogger(logLines);
  const apiServing = createApiServing({
    api: WARDLE,
    storage: options.storage ?? gatedStorage(new MemoryStorage(), gates),
    namespaces: new FixedNamespaceLister(['default']),
    admission: wardleAdmission(),
    rules: wardleRules,
    logger,
    minRequestTimeoutSeconds: options.minRequestTimeoutSeconds,
  });
  const server = await Server.start({
    api: WARDLE,
    auth: new FakeAuth([clientCaPem]),
    apiServing: options.wrap ? options.wrap(apiServing) : apiServing,
    logger,
    bindAddress: '127.0.0.1',
    securePort: 0,
    tlsCertFile: join(dir, 'tls.crt'),
    tlsPrivateKeyFile: join(dir, 'tls.key'),
    shutdownDelayMs: 0,
    shutdownTimeoutMs: 2000,
    flowControl: options.flowControl,
    servingTimeouts: options.servingTimeouts,
  });
  const harness = { server, gates, logLines };
  harnesses.push(harness);
  return harness;
}

type Identity = TestCertificate;

function send(server: Server, who: Identity, path: string, options: { method?: string; body?: unknown; agent?: https.Agent } = {}): Promise<Response> {
  return request(server.port, path, {
    ca: servingCa.certPem,
    cert: who.chainPem,
    key: who.keyPem,
    method: options.method ?? 'GET',
    headers: options.body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    agent: options.agent,
  });
}

const flunder = (name: string) => ({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name }, spec: { reference: 'ref', referenceType: 'Flunder' } });

interface OpenWatch {
  readonly status: number;
  readonly ended: Promise<{ cleanly: boolean; afterMs: number }>;
  close(): void;
}

/** A watch over HTTP/1.1; resolves once its 200 headers arrived. */
function openWatch(server: Server, who: Identity, query: string): Promise<OpenWatch> {
  const startedAt = Date.now();
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: server.port, path: `${FLUNDERS}?watch=true&${query}`, ca: servingCa.certPem, cert: who.chainPem, key: who.keyPem, servername: 'localhost', agent: false },
      (res) => {
        const ended = new Promise<{ cleanly: boolean; afterMs: number }>((done) => {
          res.on('data', () => undefined);
          res.on('end', () => done({ cleanly: true, afterMs: Date.now() - startedAt }));
          res.on('aborted', () => done({ cleanly: false, afterMs: Date.now() - startedAt }));
          res.on('error', () => done({ cleanly: false, afterMs: Date.now() - startedAt }));
        });
        resolve({ status: res.statusCode ?? 0, ended, close: () => req.destroy() });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function h2Connect(server: Server, who: Identity): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${server.port}`, { ca: servingCa.certPem, servername: 'localhost', cert: who.chainPem, key: who.keyPem });
    session.once('error', reject);
    session.once('connect', () => {
      session.off('error', reject);
      resolve(session);
    });
  });
}

interface H2Reply {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: string;
  readonly rstCode: number;
}

/** One HTTP/2 request; `endStream: false` sends the headers (and body, if any) without END_STREAM. */
function h2Send(session: http2.ClientHttp2Session, method: string, path: string, options: { body?: string; endStream?: boolean } = {}): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': method, ':path': path, 'content-type': 'application/json' }, { endStream: false });
    let headers: http2.IncomingHttpHeaders = {};
    let body = '';
    stream.on('response', (h) => (headers = h));
    stream.on('data', (chunk: Buffer) => (body += chunk.toString()));
    stream.on('close', () => resolve({ status: Number(headers[':status'] ?? 0), headers, body, rstCode: stream.rstCode ?? 0 }));
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ERR_HTTP2_STREAM_ERROR') reject(error);
    });
    if (options.body !== undefined) stream.write(options.body);
    if (options.endStream !== false) stream.end();
  });
}

describe('Go durations (?timeout=)', () => {
  test.each([
    ['0', 0],
    ['1s', 1000],
    ['1.5s', 1500],
    ['1m30s', 90_000],
    ['250ms', 250],
    ['+2h', 7_200_000],
    ['-1s', -1000],
    ['.5s', 500],
    ['1.s', 1000],
    ['100µs', 0.1],
  ])('%s is %d ms', (text, ms) => {
    expect(parseGoDuration(text)).toEqual({ ms });
  });

  test.each([
    ['', 'time: invalid duration ""'],
    ['soon', 'time: invalid duration "soon"'],
    ['1', 'time: missing unit in duration "1"'],
    ['1d', 'time: unknown unit "d" in duration "1d"'],
    ['.s', 'time: invalid duration ".s"'],
    ['-', 'time: invalid duration "-"'],
  ])('fails on %j with Go\'s message', (text, error) => {
    expect(parseGoDuration(text)).toEqual({ error });
  });
});

describe('which requests are long-running, and their deadline', () => {
  const info = (method: string, url: string) => parseRequestInfo(method, url, '');

  test('watches and profiling are long-running; lists, writes and probes are not', () => {
    expect(isLongRunning(info('GET', `${FLUNDERS}?watch=true`))).toBe(true);
    expect(isLongRunning(info('GET', '/debug/pprof/profile'))).toBe(true);
    expect(isLongRunning(info('GET', FLUNDERS))).toBe(false);
    expect(isLongRunning(info('POST', FLUNDERS))).toBe(false);
    expect(isLongRunning(info('GET', '/healthz'))).toBe(false);
  });

  test('the deadline is --request-timeout, or the client\'s ?timeout= when positive and shorter', () => {
    expect(requestTimeoutMs(info('GET', FLUNDERS), 60_000)).toBe(60_000);
    expect(requestTimeoutMs(info('GET', `${FLUNDERS}?timeout=5s`), 60_000)).toBe(5000);
    expect(requestTimeoutMs(info('GET', `${FLUNDERS}?timeout=2m`), 60_000)).toBe(60_000);
    expect(requestTimeoutMs(info('GET', `${FLUNDERS}?timeout=0s`), 60_000)).toBe(60_000);
    expect(requestTimeoutMs(info('GET', `${FLUNDERS}?timeout=-5s`), 60_000)).toBe(60_000);
  });

  test('fails on a ?timeout= that is not a duration, with upstream\'s 400', () => {
    expect(() => requestTimeoutMs(info('GET', `${FLUNDERS}?timeout=soon`), 60_000)).toThrow('invalid timeout specified in the request URL - time: invalid duration "soon"');
  });
});

describe('FlowControl.admit', () => {
  const user = { name: 'bob', groups: ['developers', 'system:authenticated'], extra: {} };
  const masters = { name: 'admin', groups: ['system:masters', 'system:authenticated'], extra: {} };
  const list = parseRequestInfo('GET', FLUNDERS, '');
  const create = parseRequestInfo('POST', FLUNDERS, '');
  const watch = parseRequestInfo('GET', `${FLUNDERS}?watch=1`, '');

  test('counts read-only and mutating requests against their own limits, frees a slot when done', () => {
    // GIVEN limits of 2 read-only and 1 mutating
    const flow = new FlowControl({ maxRequestsInflight: 2, maxMutatingRequestsInflight: 1, requestTimeoutMs: 60_000 });

    // WHEN two lists and a create are in flight
    const first = flow.admit(list, user)!;
    flow.admit(list, user);
    flow.admit(create, user);

    // THEN a third list and a second create are refused with 429, each naming its flag
    expect(() => flow.admit(list, user)).toThrow(expect.objectContaining({ status: expect.objectContaining({ code: 429, details: expect.objectContaining({ causes: [expect.objectContaining({ message: expect.stringContaining('--max-requests-inflight') })] }) }) }));
    expect(() => flow.admit(create, user)).toThrow(expect.objectContaining({ status: expect.objectContaining({ details: expect.objectContaining({ causes: [expect.objectContaining({ message: expect.stringContaining('--max-mutating-requests-inflight') })] }) }) }));
    // AND watches are not counted at all
    expect(flow.admit(watch, user)).toBeUndefined();
    expect(flow.inflight).toEqual({ readOnly: 2, mutating: 1 });
    // AND a finished list frees its slot (once, however often it is released)
    first();
    first();
    expect(flow.inflight).toEqual({ readOnly: 1, mutating: 1 });
    expect(() => flow.admit(list, user)).not.toThrow();
  });

  test('system:masters is served past the limit without taking a slot; 0 means no limit', () => {
    // GIVEN no read-only limit and a mutating limit of 1, reached
    const flow = new FlowControl({ maxRequestsInflight: 0, maxMutatingRequestsInflight: 1, requestTimeoutMs: 60_000 });
    flow.admit(create, user);

    // WHEN system:masters creates, and 1000 lists are in flight
    expect(() => flow.admit(create, masters)).not.toThrow();
    for (let i = 0; i < 1000; i++) flow.admit(list, user);

    // THEN the mutating slot count is unchanged and no list was refused
    expect(flow.inflight).toEqual({ readOnly: 1000, mutating: 1 });
  });
});

describe('max in flight, against the server', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startServer({ flowControl: { maxRequestsInflight: 2, maxMutatingRequestsInflight: 1, requestTimeoutMs: 60_000 } });
  });

  test('past --max-requests-inflight: 429, Retry-After: 1 and a TooManyRequests Status; watches are not counted', async () => {
    const { server, gates } = harness;
    // GIVEN three open watches (more than the read-only limit: none of them may be counted)
    const watches = await Promise.all([0, 1, 2].map(() => openWatch(server, bob, 'timeoutSeconds=300')));
    expect(watches.map((w) => w.status)).toEqual([200, 200, 200]);
    // AND two lists held in storage
    gates.list.close();
    const held = [send(server, bob, FLUNDERS), send(server, bob, FLUNDERS)];
    await until(() => gates.list.waiting === 2, 'two lists in storage');

    // WHEN a third list and a get arrive
    const refused = await send(server, bob, FLUNDERS);
    const refusedGet = await send(server, bob, `${FLUNDERS}/x`);

    // THEN both are refused at once, as maxinflight.go refuses them
    for (const reply of [refused, refusedGet]) {
      expect(reply.status).toBe(429);
      expect(reply.headers['retry-after']).toBe('1');
      expect(reply.headers['content-type']).toBe('application/json');
      expect(reply.json()).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 429, reason: 'TooManyRequests', message: 'Too many requests, please try again later.', details: { retryAfterSeconds: 1 } });
    }
    // AND system:masters still gets an answer
    expect((await send(server, admin, `${FLUNDERS}/x`)).status).toBe(404);
    // AND once the held lists finish, lists are served again
    gates.list.open();
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200]);
    expect((await send(server, bob, FLUNDERS)).status).toBe(200);
    for (const watch of watches) watch.close();
  });

  test('the mutating limit is apart from the read-only one', async () => {
    const { server, gates } = harness;
    // GIVEN the read-only limit reached
    gates.list.close();
    const lists = [send(server, bob, FLUNDERS), send(server, bob, FLUNDERS)];
    await until(() => gates.list.waiting === 2, 'two lists in storage');

    // WHEN a create arrives, THEN it is served
    expect((await send(server, bob, FLUNDERS, { method: 'POST', body: flunder('apart') })).status).toBe(201);

    // GIVEN a create held in storage (the mutating limit, 1, reached)
    gates.create.close();
    const held = send(server, bob, FLUNDERS, { method: 'POST', body: flunder('held') });
    await until(() => gates.create.waiting === 1, 'a create in storage');

    // WHEN another create arrives
    const refused = await send(server, bob, FLUNDERS, { method: 'POST', body: flunder('refused') });

    // THEN it is refused, naming the mutating limit
    expect(refused.status).toBe(429);
    expect(refused.json().details.causes[0].message).toContain('--max-mutating-requests-inflight');
    gates.create.open();
    gates.list.open();
    expect((await held).status).toBe(201);
    expect((await Promise.all(lists)).map((r) => r.status)).toEqual([200, 200]);
    // AND nothing of the refused create was stored
    expect((await send(server, bob, `${FLUNDERS}/refused`)).status).toBe(404);
  });

  test('the in-flight gauge counts admitted requests, by kind', async () => {
    const { server, gates } = harness;
    // GIVEN a list held in storage
    gates.list.close();
    const held = send(server, bob, FLUNDERS);
    await until(() => gates.list.waiting === 1, 'a list in storage');

    // WHEN /metrics is scraped
    const metrics = await send(server, admin, '/metrics');

    // THEN the held list and the scrape itself are in flight
    expect(metrics.body).toMatch(/^apiserver_current_inflight_requests\{request_kind="readOnly"\} 2$/m);
    expect(metrics.body).toMatch(/^apiserver_current_inflight_requests\{request_kind="mutating"\} 0$/m);
    gates.list.open();
    await held;
  });
});

describe('request timeouts, against the server', () => {
  let harness: Harness;
  const REQUEST_TIMEOUT_MS = 2500;

  beforeAll(async () => {
    harness = await startServer({
      flowControl: { maxRequestsInflight: 400, maxMutatingRequestsInflight: 200, requestTimeoutMs: REQUEST_TIMEOUT_MS },
      minRequestTimeoutSeconds: 1,
      wrap: (apiServing) => ({
        ...apiServing,
        // A handler that starts its answer and then stalls, and writes more after the deadline.
        handle: (req, res, info, user) => {
          if (info.name !== 'stalls-mid-answer') return apiServing.handle(req, res, info, user);
          res.writeHead(200, { 'Content-Type': 'application/json' });
          res.write('{"kind":"Flunder",');
          return new Promise((resolve) =>
            setTimeout(() => {
              res.write('"late":true}');
              res.end();
              resolve();
            }, REQUEST_TIMEOUT_MS * 2),
          );
        },
      }),
    });
  });

  test('a create that times out before its write (held in admission) is abandoned: 504, and nothing is stored once admission answers', async () => {
    const { server, gates } = harness;
    // GIVEN admission held (BanFlunder's list of fischers)
    gates.admission.close();

    // WHEN a create asks for a 500 ms timeout
    const reply = await send(server, bob, `${FLUNDERS}?timeout=500ms`, { method: 'POST', body: flunder('abandoned') });
    expect(reply.status).toBe(504);

    // THEN once admission answers, the store stops before its write: the object never appears
    gates.admission.open();
    await until(() => harness.logLines.some((l) => l.code === 504 && l.verb === 'create' && l.name === undefined), 'the create logged as 504');
    // (a write would have landed within this time: the store's create is synchronous after admission)
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await send(server, bob, `${FLUNDERS}/abandoned`)).status).toBe(404);
  });

  test('a create past the client\'s ?timeout=: 504 Status; the object is then stored whole; the keep-alive connection stays usable', async () => {
    const { server, gates } = harness;
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    // GIVEN creates held in storage
    gates.create.close();

    // WHEN a create asks for a 500 ms timeout
    const startedAt = Date.now();
    const reply = await send(server, bob, `${FLUNDERS}?timeout=500ms`, { method: 'POST', body: flunder('late'), agent });

    // THEN it is answered 504 with the finisher's Status, at its own timeout (the server's is 2.5 s)
    expect(reply.status).toBe(504);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(450);
    expect(reply.headers['audit-id']).toBeDefined();
    expect(reply.json()).toEqual({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Timeout: request did not complete within requested timeout - context deadline exceeded', reason: 'Timeout', details: {}, code: 504 });
    // AND once storage answers, the create it was sending lands whole, and nothing more is written
    gates.create.open();
    await until(() => harness.logLines.some((l) => l.code === 504 && l.verb === 'create'), 'the create logged as 504');
    const logged = harness.logLines.find((l) => l.code === 504 && l.verb === 'create')!;
    expect(logged.latencyMs).toBeLessThan(REQUEST_TIMEOUT_MS);
    const stored = await send(server, bob, `${FLUNDERS}/late`, { agent });
    expect(stored.status).toBe(200);
    expect(stored.json()).toMatchObject(flunder('late'));
    // AND the same connection served the next request
    expect(stored.socketId).toBe(reply.socketId);
    agent.destroy();
  });

  test('a list past --request-timeout over HTTP/2: 504; a longer ?timeout= does not extend it; the session stays usable', async () => {
    const { server, gates } = harness;
    const session = await h2Connect(server, bob);
    gates.list.close();
    try {
      // WHEN a list is held in storage past the server's timeout, though the client allows an hour
      const startedAt = Date.now();
      const reply = await h2Send(session, 'GET', `${FLUNDERS}?timeout=1h`);

      // THEN 504 with the timeout filter's Status, after --request-timeout
      expect(reply.status).toBe(504);
      expect(reply.headers['audit-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
      expect(JSON.parse(reply.body)).toMatchObject({ kind: 'Status', code: 504, reason: 'Timeout', message: 'Timeout: request did not complete within the allotted timeout' });
      // AND the session serves the next request
      gates.list.open();
      expect((await h2Send(session, 'GET', `${FLUNDERS}/nothing`)).status).toBe(404);
    } finally {
      gates.list.open();
      session.close();
    }
  });

  test('fails a ?timeout= that is not a duration with a 400', async () => {
    const reply = await send(harness.server, bob, `${FLUNDERS}?timeout=soon`);
    expect(reply.status).toBe(400);
    expect(reply.json()).toMatchObject({ reason: 'BadRequest', message: 'invalid timeout specified in the request URL - time: invalid duration "soon"' });
  });

  test('an answer already started when the deadline passes is cut, over HTTP/1.1 and HTTP/2; the late writes go nowhere', async () => {
    const { server, logLines } = harness;
    const path = `${FLUNDERS}/stalls-mid-answer`;
    // WHEN over HTTP/1.1
    const http1 = await new Promise<{ status: number; body: string; complete: boolean }>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: server.port, path, ca: servingCa.certPem, cert: bob.chainPem, key: bob.keyPem, servername: 'localhost', agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete }));
      });
      req.on('error', reject);
      req.end();
    });
    // THEN the 200 that had started never completes
    expect(http1).toEqual({ status: 200, body: '{"kind":"Flunder",', complete: false });

    // WHEN over HTTP/2
    const session = await h2Connect(server, bob);
    const h2 = await h2Send(session, 'GET', path);
    // THEN the stream is reset (not ended cleanly) and the session lives on
    expect(h2.status).toBe(200);
    expect(h2.rstCode).not.toBe(0);
    expect(h2.body).toBe('{"kind":"Flunder",');
    expect((await h2Send(session, 'GET', `${FLUNDERS}/nothing`)).status).toBe(404);
    session.close();
    // AND the late writes (after 2 × the timeout) crash nothing; the requests are logged as 504
    await new Promise((resolve) => setTimeout(resolve, REQUEST_TIMEOUT_MS * 2));
    expect((await send(server, bob, '/healthz')).status).toBe(200);
    expect(logLines.filter((l) => l.name === 'stalls-mid-answer').map((l) => l.code)).toEqual([504, 504]);
  });

  test('a request whose body never comes: 504 at the deadline; HTTP/1.1 closes the connection, HTTP/2 the stream', async () => {
    const { server } = harness;
    // WHEN an HTTP/1.1 create announces a body it never sends
    const http1 = await new Promise<{ status: number; connection: string | undefined; socketClosed: Promise<void> }>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: server.port, path: FLUNDERS, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': '1000' }, ca: servingCa.certPem, cert: bob.chainPem, key: bob.keyPem, servername: 'localhost', agent: false },
        (res) => {
          res.resume();
          const socketClosed = new Promise<void>((done) => res.socket.once('close', () => done()));
          resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, socketClosed });
        },
      );
      req.once('error', reject);
      req.write('{"kind":');
    });
    // THEN 504, and the connection is closed after it
    expect(http1.status).toBe(504);
    expect(http1.connection).toBe('close');
    await http1.socketClosed;

    // WHEN an HTTP/2 create sends its headers and part of a body, never END_STREAM
    const session = await h2Connect(server, bob);
    const h2 = await h2Send(session, 'POST', FLUNDERS, { body: '{"kind":', endStream: false });
    // THEN 504, the stream is closed, and the session serves on
    expect(h2.status).toBe(504);
    expect((await h2Send(session, 'GET', `${FLUNDERS}/nothing`)).status).toBe(404);
    session.close();
  });

  test('watches are long-running: past --request-timeout, ended at timeoutSeconds, else within [--min-request-timeout, 2×)', async () => {
    const { server } = harness;
    // WHEN a watch asks for 5 s (twice --request-timeout) and another asks for nothing (--min-request-timeout is 1 s)
    const asked = await openWatch(server, bob, 'timeoutSeconds=5');
    const unasked = await openWatch(server, bob, 'resourceVersion=0');

    // THEN the first ends cleanly after its 5 s, not at the request timeout
    const first = await asked.ended;
    expect(first.cleanly).toBe(true);
    expect(first.afterMs).toBeGreaterThanOrEqual(5000);
    // AND the other ended cleanly too, after at least 1 s (and at most 2 s, plus a loaded machine's slack)
    const second = await unasked.ended;
    expect(second.cleanly).toBe(true);
    expect(second.afterMs).toBeGreaterThanOrEqual(950);
    expect(second.afterMs).toBeLessThan(8000);
  }, 30_000);
});

describe('request timeouts with a real etcd that stops answering', () => {
  let etcd: EtcdProcess;
  let harness: Harness;
  let closeStorage: () => Promise<void>;

  beforeAll(async () => {
    etcd = await EtcdProcess.start();
    const storage = await createStorage(
      { backend: 'etcd', servers: [etcd.clientUrl], prefix: '/registry/flow-control', compactionIntervalMs: 0, healthcheckTimeoutMs: 2000 },
      { resourcePrefixes: resourcePrefixes(WARDLE), logger: memoryLogger() },
    );
    closeStorage = () => storage.close();
    harness = await startServer({ storage: storage.storage });
  }, 60_000);

  afterAll(async () => {
    etcd?.resume();
    await harness?.server.shutdown();
    await closeStorage?.();
    await etcd?.remove();
  });

  test('a create while etcd is stopped (SIGSTOP): 504 at the client\'s ?timeout=; after SIGCONT the object is stored whole or not at all; the connection serves on', async () => {
    const { server } = harness;
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    // GIVEN a connection that served a create, and etcd then stopped
    expect((await send(server, bob, FLUNDERS, { method: 'POST', body: flunder('before'), agent })).status).toBe(201);
    etcd.pause();
    try {
      // WHEN a create asks for a 1 s timeout
      const startedAt = Date.now();
      const reply = await send(server, bob, `${FLUNDERS}?timeout=1s`, { method: 'POST', body: flunder('during'), agent });

      // THEN 504 with the finisher's Status, at the deadline
      expect(reply.status).toBe(504);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(950);
      expect(reply.json()).toMatchObject({ kind: 'Status', code: 504, reason: 'Timeout', message: 'Timeout: request did not complete within requested timeout - context deadline exceeded' });
    } finally {
      etcd.resume();
    }
    // AND once etcd answers again, the object is there whole or not at all, read on the same connection
    const stored = await send(server, bob, `${FLUNDERS}/during`, { agent });
    if (stored.status === 200) expect(stored.json()).toMatchObject(flunder('during'));
    else expect(stored.status).toBe(404);
    expect((await send(server, bob, `${FLUNDERS}/before`, { agent })).socketId).toBe(stored.socketId);
    agent.destroy();
  }, 60_000);
});

describe('serving timeouts against slow and silent clients', () => {
  const READ_HEADER_TIMEOUT_MS = 600;
  const IDLE_TIMEOUT_MS = 800;
  let servingServer: SecureServing;

  beforeAll(async () => {
    servingServer = await SecureServing.start({
      bindAddress: '127.0.0.1',
      securePort: 0,
      tlsCertFile: join(dir, 'tls.crt'),
      tlsPrivateKeyFile: join(dir, 'tls.key'),
      handler: (_req, res) => res.end('ok'),
      clientCaBundle: () => [],
      logger: memoryLogger(),
      timeouts: { readHeaderTimeoutMs: READ_HEADER_TIMEOUT_MS, idleTimeoutMs: IDLE_TIMEOUT_MS },
    });
  });

  afterAll(async () => {
    await servingServer.stop(1000);
  });

  /** Resolves with how long after `startedAt` the socket closed, and what it received. */
  function closed(socket: NodeJS.EventEmitter, startedAt: number): Promise<{ afterMs: number; received: string }> {
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    return new Promise((resolve) => socket.once('close', () => resolve({ afterMs: Date.now() - startedAt, received })));
  }

  test('HTTP/1.1: half a header line and then nothing is answered 408 and closed at the header timeout', async () => {
    // GIVEN a TLS connection that sends part of a request line's headers
    const startedAt = Date.now();
    const socket = tlsConnect({ host: '127.0.0.1', port: servingServer.port, ca: servingCa.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => socket.write('GET /healthz HTTP/1.1\r\nHost: loc'));

    // THEN the server closes it once the header timeout passed (checked every quarter of it)
    const { afterMs, received } = await closed(socket, startedAt);
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(afterMs).toBeGreaterThanOrEqual(READ_HEADER_TIMEOUT_MS - 50);
    expect(afterMs).toBeLessThan(10_000);
  });

  test('a TCP connection that never starts TLS is closed at the header timeout', async () => {
    const startedAt = Date.now();
    const socket = tcpConnect(servingServer.port, '127.0.0.1');
    const { afterMs } = await closed(socket, startedAt);
    expect(afterMs).toBeGreaterThanOrEqual(READ_HEADER_TIMEOUT_MS - 50);
    expect(afterMs).toBeLessThan(10_000);
  });

  test('HTTP/1.1: a keep-alive connection idle past the idle timeout is closed', async () => {
    // GIVEN a request served on a keep-alive connection
    const socket = tlsConnect({ host: '127.0.0.1', port: servingServer.port, ca: servingCa.certPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () =>
      socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n'),
    );
    let answeredAt = 0;
    socket.once('data', () => (answeredAt = Date.now()));
    const result = await closed(socket, Date.now());

    // THEN the answer came, and the connection was closed once idle for the idle timeout (node adds 1 s to what it advertises)
    expect(result.received).toMatch(/^HTTP\/1\.1 200 /);
    expect(result.received).toMatch(/Connection: keep-alive/i);
    const idleMs = Date.now() - answeredAt;
    expect(idleMs).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 50);
    expect(idleMs).toBeLessThan(10_000);
  });

  test('HTTP/2: a session without streams gets GOAWAY at the idle timeout, even while it pings', async () => {
    // GIVEN a session that pings every 100 ms and opens no stream
    const session = http2.connect(`https://127.0.0.1:${servingServer.port}`, { ca: servingCa.certPem, servername: 'localhost' });
    session.on('error', () => undefined);
    const startedAt = Date.now();
    const pinger = setInterval(() => {
      if (!session.closed && !session.destroyed) session.ping(() => undefined);
    }, 100);
    const goaway = new Promise<number>((resolve) => session.once('goaway', () => resolve(Date.now() - startedAt)));
    const sessionClosed = new Promise<void>((resolve) => session.once('close', () => resolve()));

    // THEN GOAWAY comes after the idle timeout, and the connection ends
    try {
      const afterMs = await goaway;
      expect(afterMs).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 50);
      expect(afterMs).toBeLessThan(10_000);
      await sessionClosed;
    } finally {
      clearInterval(pinger);
      session.destroy();
    }
  });

  test('HTTP/2: a stream left half-open by the client is closed with its answer; the session is idle from then', async () => {
    const session = http2.connect(`https://127.0.0.1:${servingServer.port}`, { ca: servingCa.certPem, servername: 'localhost' });
    session.on('error', () => undefined);
    // WHEN one request is sent without END_STREAM, and served
    const reply = await h2Send(session, 'GET', '/healthz', { endStream: false });
    const answeredAt = Date.now();
    expect(reply.status).toBe(200);
    // THEN GOAWAY comes an idle timeout later
    await new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 100);
    session.destroy();
  });

  test('HTTP/2: a HEADERS frame whose header block never ends (no CONTINUATION) does not hold the connection', async () => {
    // GIVEN the connection preface, empty SETTINGS, and a HEADERS frame for stream 1 without END_HEADERS
    const startedAt = Date.now();
    const socket = tlsConnect({ host: '127.0.0.1', port: servingServer.port, ca: servingCa.certPem, servername: 'localhost', ALPNProtocols: ['h2'] }, () => {
      const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
        const header = Buffer.alloc(9);
        header.writeUIntBE(payload.length, 0, 3);
        header[3] = type;
        header[4] = flags;
        header.writeUInt32BE(stream, 5);
        return Buffer.concat([header, payload]);
      };
      socket.write(Buffer.concat([
        Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
        frame(0x4, 0, 0, Buffer.alloc(0)),
        // HPACK: :method GET, :path /, :scheme https (static table 2, 4, 7)
        frame(0x1, 0, 1, Buffer.from([0x82, 0x84, 0x87])),
      ]));
    });

    // THEN the server closes the connection after the idle timeout and Go's 1 s GOAWAY grace
    const { afterMs } = await closed(socket, startedAt);
    expect(afterMs).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 50);
    expect(afterMs).toBeLessThan(10_000);
  });
});

describe('flags', () => {
  const base = () => [`--tls-cert-file=${join(dir, 'tls.crt')}`, `--tls-private-key-file=${join(dir, 'tls.key')}`];
  const config = (args: string[]) => {
    const parsed = parseCommandLine([...base(), ...args]);
    if (parsed.kind !== 'run') throw new Error('expected a run');
    return parsed.config;
  };

  test('Go kube-apiserver\'s defaults', () => {
    const defaults = config([]);
    expect(defaults.flowControl).toEqual({ maxRequestsInflight: 400, maxMutatingRequestsInflight: 200, requestTimeoutMs: 60_000 });
    expect(defaults.minRequestTimeoutSeconds).toBe(1800);
  });

  test('values as given; 0 disables a limit', () => {
    const given = config(['--max-requests-inflight=0', '--max-mutating-requests-inflight', '50', '--request-timeout=1m30s', '--min-request-timeout=0']);
    expect(given.flowControl).toEqual({ maxRequestsInflight: 0, maxMutatingRequestsInflight: 50, requestTimeoutMs: 90_000 });
    expect(given.minRequestTimeoutSeconds).toBe(0);
  });

  test('--help lists them', () => {
    const help = parseCommandLine(['--help']);
    expect(help.kind).toBe('help');
    for (const flag of ['--max-requests-inflight', '--max-mutating-requests-inflight', '--request-timeout', '--min-request-timeout']) expect((help as { text: string }).text).toContain(flag);
  });

  test.each([
    [['--max-requests-inflight=-1'], '--max-requests-inflight="-1" is not a non-negative integer: expected the most read-only requests in flight, e.g. 400 (0: no limit)'],
    [['--max-mutating-requests-inflight=lots'], '--max-mutating-requests-inflight="lots" is not a non-negative integer: expected the most mutating requests in flight, e.g. 200 (0: no limit)'],
    [['--request-timeout=60'], '--request-timeout="60" is not a duration: expected a number with a unit, e.g. 10s, 1m30s, 500ms'],
    [['--request-timeout=0s'], '--request-timeout="0s" is not positive: expected a duration above zero, e.g. 60s (every request would time out at once)'],
    [['--min-request-timeout=30m'], '--min-request-timeout="30m" is not a non-negative integer: expected a number of seconds, e.g. 1800 (0: watches do not end on their own)'],
  ])('fails on %j naming the flag', (args, message) => {
    expect(() => config(args)).toThrow(OptionsError);
    expect(() => config(args)).toThrow(message);
    expect(message).not.toContain('\n');
  });
});
