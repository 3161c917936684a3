/**
 * Property-based tests (fast-check) of request parsing through the real server, in process, over
 * HTTPS (HTTP/2 and HTTP/1.1) with a client certificate of system:masters: the handler chain, the
 * registry and the memory store as the server runs them. Whatever the path, query, headers and
 * body, the server answers: never a 5xx (but the 504 "Too large resource version" kube-apiserver
 * answers too), every refusal a metav1.Status whose code is the HTTP status, no error logged as an
 * unexpected failure, no uncaught exception or unhandled rejection, and it keeps serving.
 *
 * Seeds are random and logged; fast-check prints the seed and path of a failure (rerun one with
 * `FUZZ_SEED=<seed>`). Runs per property are bounded (300-400, and each stops at 4 s) so the file
 * finishes in well under 60 s on a loaded 2-core machine; FUZZ_RUNS scales both. The store is the
 * memory store (the server's default); FUZZ_STORAGE=etcd runs the same properties against a real
 * etcd behind the watch cache. The parsers alone get many more cases in fuzz-parsers.test.ts.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WARDLE } from '../apis';
import { FixedNamespaceLister } from '../server/admission/namespace-lifecycle';
import { createApiServing, resourcePrefixes } from '../server/registry';
import { wardleAdmission, wardleRules } from '../server/registry/wardle';
import { Server } from '../server/server';
import { CachedStorage } from '../server/storage/cacher';
import { EtcdStorage } from '../server/storage/etcd';
import { MemoryStorage } from '../server/storage/memory';
import type { Storage } from '../server/storage/types';
import { EtcdProcess } from './support/etcd';
import { makeCa, makeLeaf, makeServerCert, TestCertificate } from './support/pki';
import { FakeAuth, memoryLogger } from './support/shell-fakes';
import { goMatches, LabelRequirement } from './support/go-label-selector';

const SCALE = Number(process.env.FUZZ_RUNS ?? 1);
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);

const GROUP = 'wardle.example.com';
const GV = `/apis/${GROUP}/v1alpha1`;
const DEFAULT = `${GV}/namespaces/default/flunders`;
const FUZZ = `${GV}/namespaces/fuzz/flunders`;

let dir: string;
let server: Server;
let ca: string;
let admin: TestCertificate;
let session: http2.ClientHttp2Session;
let agent: https.Agent;
const logLines: Record<string, unknown>[] = [];
/** Uncaught exceptions and unhandled rejections seen while the file runs: there must be none. */
const crashes: unknown[] = [];
const onCrash = (error: unknown) => crashes.push(error);

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** The answer was a stream (a watch), cut after its headers. */
  readonly streamed: boolean;
}

interface Sent {
  readonly method: string;
  /** The request target; characters beyond visible ASCII are sent percent-encoded. */
  readonly path: string;
  readonly headers?: Record<string, string | string[]>;
  readonly body?: string | Buffer;
  readonly protocol?: 'h2' | 'http/1.1';
}

/**
 * Visible ASCII stays; anything else is percent-encoded as UTF-8, as clients send it: node's
 * HTTP/1.1 parser and nghttp2 refuse other bytes in a request target before the server sees it.
 */
function encodeForHttp(path: string): string {
  return Array.from(path)
    .map((c) => (/^[\x21-\x7e]$/.test(c) ? c : [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('')))
    .join('');
}

/** One request; a stream answer (no Content-Length, 200) is cut once its headers are in. Fails after 20 s: a hang. */
function send(sent: Sent): Promise<Reply> {
  const protocol = sent.protocol ?? 'h2';
  const reply = protocol === 'h2' ? sendH2(sent) : sendHttp1(sent);
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in 20 s (a hang) to ${sent.method} ${sent.path} over ${protocol}`)), 20_000);
  });
  return Promise.race([reply, hang]).finally(() => clearTimeout(timer));
}

/**
 * The HTTP/2 session, connected again when the server has closed it: it may end one that reset
 * thousands of streams (each watch the properties open is cut with RST_STREAM), as nghttp2's
 * rapid-reset protection does.
 */
function h2Session(): http2.ClientHttp2Session {
  if (!session || session.closed || session.destroyed) {
    session = http2.connect(`https://127.0.0.1:${server.port}`, { ca, cert: admin.chainPem, key: admin.keyPem, servername: 'localhost' });
    session.on('error', () => undefined); // a request on it fails with the error; a closed session is connected again
    session.on('goaway', (code: number) => console.log(`the server sent GOAWAY (code ${code}) after ${tally.size ? [...tally.values()].reduce((a, b) => a + b) : 0} requests of this property`));
  }
  return session;
}

/**
 * Sends over HTTP/2. A request its session could not carry is sent again on a new session: the
 * server ended the session meanwhile (GOAWAY), or refused the stream unprocessed
 * (ENHANCE_YOUR_CALM, REFUSED_STREAM: nghttp2's limits on a client that resets streams fast).
 */
async function sendH2(sent: Sent): Promise<Reply> {
  for (let attempt = 1; ; attempt++) {
    const used = h2Session();
    try {
      return await sendOnSession(used, sent);
    } catch (error) {
      const refused = /ENHANCE_YOUR_CALM|REFUSED_STREAM/.test(String((error as Error).message));
      if (attempt >= 3 || !(refused || used.closed || used.destroyed)) throw error;
      if (refused) used.close();
    }
  }
}

function sendOnSession(used: http2.ClientHttp2Session, sent: Sent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = used.request({ ':method': sent.method, ':path': encodeForHttp(sent.path), ...(sent.headers ?? {}) }, { endStream: sent.body === undefined });
    const chunks: Buffer[] = [];
    let headers: http2.IncomingHttpHeaders = {};
    stream.on('response', (h) => {
      headers = h;
      if (h[':status'] === 200 && h['content-length'] === undefined && sent.method !== 'HEAD') {
        resolve({ status: 200, headers: h, text: '', streamed: true });
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(headers[':status']), headers, text: Buffer.concat(chunks).toString('utf8'), streamed: false }));
    stream.on('error', reject);
    if (sent.body !== undefined) stream.end(sent.body);
  });
}

function sendHttp1(sent: Sent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // A body's length always declared: node sends a DELETE body without one (nor chunked), which the server reads as the next request.
    const headers = sent.body === undefined ? sent.headers : { ...sent.headers, 'content-length': String(Buffer.byteLength(sent.body)) };
    const req = https.request({ host: '127.0.0.1', port: server.port, method: sent.method, path: '/', headers, agent, servername: 'localhost' }, (res) => {
      if (res.statusCode === 200 && res.headers['content-length'] === undefined && sent.method !== 'HEAD') {
        resolve({ status: 200, headers: res.headers, text: '', streamed: true });
        res.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), streamed: false }));
      res.on('error', reject);
    });
    // The target is set after the client's own check (which refuses what node's server parser refuses too, and more).
    (req as http.ClientRequest & { path: string }).path = encodeForHttp(sent.path);
    req.on('error', reject);
    req.end(sent.body);
  });
}

/** Error-level lines the server logged since `from` (an unexpected failure is logged as 'request failed'). */
function errorsLoggedSince(from: number): Record<string, unknown>[] {
  return logLines.slice(from).filter((line) => Number(line.level) >= 50);
}

/**
 * The answer is one the server may give: below 500 (or kube-apiserver's own 504 for a
 * resourceVersion the store has not reached); a refusal is a Failure Status with the HTTP code.
 */
function expectWellFormed(sent: Sent, reply: Reply): void {
  const context = `${sent.method} ${JSON.stringify(sent.path)} ${JSON.stringify(sent.headers ?? {})} body ${JSON.stringify(String(sent.body ?? '').slice(0, 300))} → ${reply.status} ${reply.text.slice(0, 500)}`;
  if (reply.status >= 400 && sent.method !== 'HEAD') {
    let status: Record<string, unknown>;
    try {
      status = JSON.parse(reply.text) as Record<string, unknown>;
    } catch {
      throw new Error(`not a JSON Status: ${context}`);
    }
    const details = status.details as { causes?: { reason?: string }[] } | undefined;
    const tooLargeResourceVersion = reply.status === 504 && status.reason === 'Timeout' && details?.causes?.[0]?.reason === 'ResourceVersionTooLarge';
    if (reply.status >= 500 && !tooLargeResourceVersion) throw new Error(`a ${reply.status}: ${context}`);
    if (status.kind !== 'Status' || status.apiVersion !== 'v1' || status.status !== 'Failure' || status.code !== reply.status || typeof status.reason !== 'string' || status.reason === '' || typeof status.message !== 'string') {
      throw new Error(`not a Failure Status with code ${reply.status} and a reason: ${context}`);
    }
    expect(String(reply.headers['content-type'])).toMatch(/^application\/json/);
  } else if (reply.status >= 500) {
    throw new Error(`a ${reply.status}: ${context}`);
  } else if (!reply.streamed && sent.method !== 'HEAD' && reply.text !== '' && /json/.test(String(reply.headers['content-type']))) {
    try {
      JSON.parse(reply.text);
    } catch {
      throw new Error(`a ${reply.status} whose body is not JSON: ${context}`);
    }
  }
}

/** Answers by status code in the property running: logged with it, to show what the inputs reached. */
let tally = new Map<number, number>();

/** Sends and checks one request, and that nothing was logged as an unexpected failure meanwhile. */
async function sendChecked(sent: Sent): Promise<Reply> {
  const from = logLines.length;
  const reply = await send(sent);
  tally.set(reply.status, (tally.get(reply.status) ?? 0) + 1);
  const logged = errorsLoggedSince(from);
  try {
    expectWellFormed(sent, reply);
  } catch (error) {
    if (logged.length > 0) (error as Error).message += `\nlogged: ${JSON.stringify(logged[0]).slice(0, 1500)}`;
    throw error;
  }
  if (logged.length > 0) throw new Error(`logged an error for ${sent.method} ${JSON.stringify(sent.path)}: ${JSON.stringify(logged[0]).slice(0, 800)}`);
  return reply;
}

/**
 * Most time one property may take: on a loaded machine it stops early (logged) rather than push
 * the file past a minute; FUZZ_RUNS lifts the limit with the runs.
 */
const PROPERTY_TIME_LIMIT_MS = 4_000 * Math.max(1, SCALE);

/** Runs a property with a logged seed (random unless FUZZ_SEED is set); logs the runs made and the answers by status. */
async function check<Ts extends [unknown, ...unknown[]]>(name: string, numRuns: number, property: fc.IAsyncPropertyWithHooks<Ts>): Promise<void> {
  const seed = SEED ?? (Math.random() * 2 ** 31) | 0;
  tally = new Map();
  const details = await fc.check(property, { seed, numRuns, interruptAfterTimeLimit: PROPERTY_TIME_LIMIT_MS });
  const answers = JSON.stringify(Object.fromEntries([...tally].sort(([a], [b]) => a - b)));
  console.log(`${name}: seed ${seed} (rerun with FUZZ_SEED=${seed}), ${details.numRuns} of ${numRuns} runs${details.interrupted ? ' (stopped at the time limit)' : ''}, answers by status ${answers}`);
  if (details.failed) throw new Error(`${fc.defaultReportMessage(details)}\n${details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)}`);
}

const flunder = (name: string, labels: Record<string, string> = {}, namespace = 'default') => ({
  apiVersion: `${GROUP}/v1alpha1`,
  kind: 'Flunder',
  metadata: { name, namespace, labels },
  spec: { reference: 'other', referenceType: 'Flunder' },
});

/** The objects of `default`, with their labels: what selectors are checked against. */
const SEEDED: { name: string; labels: Record<string, string> }[] = [
  { name: 'a1', labels: { app: 'web', tier: 'front', n: '1' } },
  { name: 'a2', labels: { app: 'web', tier: '', n: '20' } },
  { name: 'b1', labels: { app: 'db', n: '003' } },
  { name: 'b2', labels: { app: 'db', tier: 'back', 'example.com/team': 'x' } },
  { name: 'c1', labels: {} },
  { name: 'c2', labels: { in: 'notin', n: 'x7' } },
];

/**
 * The store behind the registry: the memory store, or with FUZZ_STORAGE=etcd a real etcd behind
 * the watch cache, as the server runs them. A short wait for future revisions: resourceVersions
 * from the future are answered 504 quickly.
 */
let closeStorage: () => Promise<void> = async () => undefined;
async function startStorage(): Promise<Storage> {
  if (process.env.FUZZ_STORAGE !== 'etcd') return new MemoryStorage({ futureRevisionWaitMs: 50 });
  const etcd = await EtcdProcess.start();
  const etcdStorage = new EtcdStorage({ servers: [etcd.clientUrl], prefix: '/registry/fuzz', logger: memoryLogger() });
  const cached = new CachedStorage({ storage: etcdStorage, resourcePrefixes: resourcePrefixes(WARDLE), logger: memoryLogger(), futureRevisionWaitMs: 200 });
  const deadline = Date.now() + 20_000;
  while (!cached.isReady() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  closeStorage = async () => {
    await cached.close();
    await etcd.remove();
  };
  return cached;
}

beforeAll(async () => {
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  dir = mkdtempSync(join(tmpdir(), 'fuzz-request-parsing-'));
  const servingCa = makeCa('serving-ca');
  const clientCa = makeCa('client-ca');
  admin = makeLeaf(clientCa, { cn: 'fuzzer', organizations: ['system:masters'] });
  const serving = makeServerCert(servingCa);
  writeFileSync(join(dir, 'tls.crt'), serving.chainPem);
  writeFileSync(join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
  ca = servingCa.certPem;
  const logger = memoryLogger(logLines);
  // A short wait for future revisions: resourceVersions from the future are answered 504 quickly.
  const storage = await startStorage();
  const apiServing = createApiServing({ api: WARDLE, storage, namespaces: new FixedNamespaceLister(['default', 'fuzz']), admission: wardleAdmission(), rules: wardleRules, logger });
  server = await Server.start({
    api: WARDLE,
    auth: new FakeAuth([clientCa.certPem]),
    apiServing,
    logger,
    bindAddress: '127.0.0.1',
    securePort: 0,
    tlsCertFile: join(dir, 'tls.crt'),
    tlsPrivateKeyFile: join(dir, 'tls.key'),
    shutdownDelayMs: 0,
    shutdownTimeoutMs: 2000,
  });
  agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca, cert: admin.chainPem, key: admin.keyPem });
  for (const { name, labels } of SEEDED) {
    const created = await send({ method: 'POST', path: DEFAULT, headers: { 'content-type': 'application/json' }, body: JSON.stringify(flunder(name, labels)) });
    expect(created.status).toBe(201);
  }
  const fischer = await send({ method: 'POST', path: `${GV}/fischers`, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Fischer', metadata: { name: 'fred' }, disallowedFlunders: ['banned'] }) });
  expect(fischer.status).toBe(201);
}, 60_000);

afterAll(async () => {
  session?.close();
  agent?.destroy();
  await server?.shutdown();
  await closeStorage();
  rmSync(dir, { recursive: true, force: true });
  process.off('uncaughtException', onCrash);
  process.off('unhandledRejection', onCrash);
});

/** After each property: nothing crashed, and the server still answers a health check and a list. */
afterEach(async () => {
  expect(crashes).toEqual([]);
  expect((await send({ method: 'GET', path: '/healthz' })).status).toBe(200);
  const list = await send({ method: 'GET', path: DEFAULT, protocol: 'http/1.1' });
  expect(list.status).toBe(200);
  expect((JSON.parse(list.text) as { items: unknown[] }).items.length).toBe(SEEDED.length);
});

// ---- generators ------------------------------------------------------------------------------

const METHOD = fc.constantFrom('GET', 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS');
const PROTOCOL = fc.constantFrom<'h2' | 'http/1.1'>('h2', 'http/1.1');
const SEGMENT = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('apis', GROUP, 'v1alpha1', 'v1beta1', 'v1', 'namespaces', 'default', 'fuzz', 'flunders', 'fischers', 'status', 'finalize', 'a1', 'fred', 'watch', 'proxy', 'api', 'healthz', 'readyz', 'livez', 'openapi', 'v2', 'v3', 'version', 'metrics') },
  { weight: 2, arbitrary: fc.constantFrom('', '.', '..', '%2e%2e', '%2E.', '%2F', 'a%2Fb', '%00', '%zz', '%', '%E9', '%C3%A9', 'caf\u00e9', '\u{1F600}', '\u202e', 'a;b', 'a?b', '#', '~', '\\', '..%2F..') },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(...'abc.-_~!$&\'()*+,;=:@%/\u00e9\u4e2d'.split('')), maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 8 }).map((s) => Array.from(s).filter((c) => c.codePointAt(0)! > 0x20 && c !== '\x7f' && c !== '?' && c !== '#').join('')) },
  { weight: 1, arbitrary: fc.integer({ min: 254, max: 20_000 }).map((n) => 'x'.repeat(n)) },
);
const LEAD = fc.constantFrom('/', '/', '/', '//', '///', '/./', '/../');
const PATH = fc.tuple(LEAD, fc.array(SEGMENT, { maxLength: 9 }), fc.constantFrom('', '/', '//')).map(([lead, segments, trail]) => `${lead}${segments.join('/')}${trail}`);
/** A part of a resource path: most often a real one, else any segment. */
const part = (...real: string[]) => fc.oneof({ weight: 15, arbitrary: fc.constantFrom(...real) }, { weight: 1, arbitrary: SEGMENT });
/** Resource paths shaped as the registry routes them (`[namespaces/<ns>/]<resource>[/<name>[/<subresource>[/…]]]`), with any part replaced. */
const STRUCTURED_PATH = fc
  .tuple(
    part(GV, GV, `/apis/${GROUP}/v1beta1`, `//apis/${GROUP}/v1alpha1`, `/apis/${GROUP}/v2`, `/apis/${GROUP}`),
    fc.option(part('default', 'default', 'fuzz', 'absent', 'kube-system'), { nil: undefined, freq: 3 }),
    part('flunders', 'flunders', 'fischers', 'namespaces'),
    fc.option(part('a1', 'fred', 'target', 'absent'), { nil: undefined }),
    fc.option(part('status', 'scale', 'finalize'), { nil: undefined, freq: 2 }),
    fc.oneof({ weight: 6, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(SEGMENT, { maxLength: 2 }) }),
  )
  .map(([base, namespace, resource, name, sub, rest]) => [base.startsWith('/') ? base : `/${base}`, ...(namespace === undefined ? [] : ['namespaces', namespace]), resource, ...(name === undefined ? [] : [name]), ...(name !== undefined && sub !== undefined ? [sub] : []), ...rest].join('/'));
/** Paths under the group most of the time, so that they reach the registry. */
const RESOURCE_PATH = fc.oneof(
  { weight: 3, arbitrary: STRUCTURED_PATH },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(GV, `/apis/${GROUP}/v1beta1`, `//apis/${GROUP}/v1alpha1`), fc.array(SEGMENT, { maxLength: 5 })).map(([base, segments]) => `${base}/${segments.join('/')}`) },
);

const QUERY_KEYS = ['limit', 'continue', 'resourceVersion', 'resourceVersionMatch', 'timeoutSeconds', 'watch', 'allowWatchBookmarks', 'sendInitialEvents', 'labelSelector', 'fieldSelector', 'fieldManager', 'dryRun', 'fieldValidation', 'force', 'pretty', 'includeObject', 'propagationPolicy', 'orphanDependents', 'gracePeriodSeconds'];
const QUERY_VALUE = fc.oneof(
  fc.constantFrom('', '0', '1', '-1', '+3', '007', '2', 'true', 'false', 'FALSE', 'Exact', 'NotOlderThan', 'All', 'Strict', 'Ignore', 'Warn', 'Object', 'None', 'Metadata', 'Background', 'Orphan', '1e3', '0x10', '99999999999999999999', '9223372036854775807', '9223372036854775808', 'NaN', 'app=web', 'metadata.name=a1', 'x'.repeat(300)),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 6 }),
);
const QUERY = fc.array(fc.tuple(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...QUERY_KEYS) }, { weight: 1, arbitrary: fc.string({ maxLength: 6 }) }), QUERY_VALUE), { maxLength: 6 }).map((pairs) => {
  const query = new URLSearchParams();
  for (const [k, v] of pairs) query.append(k, v);
  return query.toString();
});
/** A resourceVersion the store holds (or held), so that a list is not answered 504 after a wait. */
const currentRevision = async () => (JSON.parse((await send({ method: 'GET', path: DEFAULT })).text) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;

// ---- properties ------------------------------------------------------------------------------

describe('through the server', () => {
  test('any path, with any method and over either protocol, is answered well-formed', async () => {
    await check(
      'paths',
      runs(400),
      fc.asyncProperty(METHOD, fc.oneof({ weight: 3, arbitrary: RESOURCE_PATH }, { weight: 1, arbitrary: PATH }), fc.constantFrom('', '', '?watch=1', '?limit=1', '?dryRun=All', '?x=%zz', '?%', '??', '?a=b#frag'), PROTOCOL, async (method, path, query, protocol) => {
        const hasBody = method === 'POST' || method === 'PUT' || method === 'PATCH';
        // Writes outside `fuzz` are dry runs (first in the query, before any fragment): the seeded objects stay as they are.
        const dryRun = method !== 'GET' && method !== 'HEAD' && !path.includes('/fuzz/');
        const target = dryRun ? `${path}?dryRun=All&${query.replace(/^\?/, '')}` : `${path}${query}`;
        const body = method === 'PATCH' ? '{"metadata":{"labels":{"p":"q"}}}' : JSON.stringify(flunder('fuzzed', {}, 'fuzz'));
        await sendChecked({ method, path: target, protocol, ...(hasBody ? { headers: { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }, body } : {}) });
      }),
    );
  }, 60_000);

  test('any query parameters, repeated or not, on every verb, are answered well-formed', async () => {
    const resourceVersion = await currentRevision();
    const target = fc.constantFrom(
      { method: 'GET', path: DEFAULT },
      { method: 'GET', path: `${GV}/flunders` },
      { method: 'GET', path: `${DEFAULT}/a1` },
      { method: 'GET', path: `${GV}/fischers` },
      { method: 'POST', path: FUZZ, body: flunder('q', {}, 'fuzz') },
      { method: 'PUT', path: `${FUZZ}/q`, body: flunder('q', {}, 'fuzz') },
      { method: 'PATCH', path: `${FUZZ}/q`, body: { metadata: { labels: { patched: 'yes' } } } },
      { method: 'DELETE', path: `${FUZZ}/q` },
      { method: 'DELETE', path: FUZZ },
    );
    await check(
      'query',
      runs(300),
      fc.asyncProperty(target, QUERY, fc.boolean(), async ({ method, path, body }, query, atCurrent) => {
        // Reads name the current revision half the time (a future one waits, then is 504 as upstream).
        const rv = atCurrent && /resourceVersion=\d/.test(query) ? query.replace(/resourceVersion=\d+/g, `resourceVersion=${resourceVersion}`) : query;
        await sendChecked({
          method,
          path: `${path}?${rv}`,
          ...(body ? { headers: { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }, body: JSON.stringify(body) } : {}),
        });
      }),
    );
  }, 60_000);

  test('any combination of the list and watch options (resourceVersion, resourceVersionMatch, sendInitialEvents, allowWatchBookmarks, limit, continue, timeoutSeconds) is answered well-formed', async () => {
    const resourceVersion = await currentRevision();
    const option = (name: string, ...values: string[]) => fc.option(fc.constantFrom(...values).map((v) => `${name}=${encodeURIComponent(v)}`), { nil: undefined });
    await check(
      'list and watch options',
      runs(300),
      fc.asyncProperty(
        fc.constantFrom(DEFAULT, `${GV}/flunders`, `${GV}/fischers`, `${DEFAULT}/a1`),
        fc.tuple(
          option('watch', '1', 'true', '0', 'false', ''),
          option('resourceVersion', '', '0', resourceVersion, '1', String(Number(resourceVersion) + 1_000_000)),
          option('resourceVersionMatch', 'NotOlderThan', 'Exact', 'notolderthan', ''),
          option('sendInitialEvents', 'true', 'false', ''),
          option('allowWatchBookmarks', 'true', 'false', ''),
          option('limit', '1', '0', '500', '-1'),
          option('continue', 'garbage', ''),
          option('timeoutSeconds', '1', '0', '-1', '9223372036854775807'),
        ),
        fc.constantFrom('', 'application/json;as=Table;g=meta.k8s.io;v=v1', 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1', 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1'),
        async (path, options, accept) => {
          const query = options.filter((o) => o !== undefined).join('&');
          await sendChecked({ method: 'GET', path: `${path}?${query}`, headers: accept ? { accept } : {} });
        },
      ),
    );
  }, 60_000);

  test('any Accept and Content-Type header is answered well-formed, a transformation only when asked for', async () => {
    const mediaType = fc.constantFrom(
      'application/json',
      '*/*',
      'application/*',
      '',
      'application/yaml',
      'application/vnd.kubernetes.protobuf',
      'application/json;as=Table;g=meta.k8s.io;v=v1',
      'application/json;as=Table;v=v1beta1;g=meta.k8s.io',
      'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1',
      'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1',
      'application/json;as=Table',
      'application/json;as=Unknown;g=meta.k8s.io;v=v1',
      'application/merge-patch+json',
      'application/json-patch+json',
      'application/apply-patch+yaml',
      'application/strategic-merge-patch+json',
      'text/plain',
      'garbage',
      'application/json;charset=utf-8',
      'application/json; charset="utf-8"',
    );
    const header = fc.oneof(
      fc.array(fc.tuple(mediaType, fc.constantFrom('', ';q=0', ';q=0.5', ';q=1', ';q=abc', ';q=-1', ';q=9', ';=', ';as', ';__proto__=x', ';;')), { maxLength: 4 }).map((clauses) => clauses.map(([t, p]) => `${t}${p}`).join(', ')),
      fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n\0]/g, '')),
    );
    const target = fc.constantFrom(
      { method: 'GET', path: DEFAULT },
      { method: 'GET', path: `${DEFAULT}/a1` },
      { method: 'GET', path: `${DEFAULT}?watch=1` },
      { method: 'POST', path: FUZZ, body: JSON.stringify(flunder('h', {}, 'fuzz')) },
      { method: 'PUT', path: `${FUZZ}/h`, body: JSON.stringify(flunder('h', {}, 'fuzz')) },
      { method: 'PATCH', path: `${FUZZ}/h`, body: '{"metadata":{"labels":{"p":"q"}}}' },
      { method: 'PATCH', path: `${FUZZ}/h`, body: '[{"op":"add","path":"/metadata/labels","value":{"p":"r"}}]' },
      { method: 'DELETE', path: `${FUZZ}/h`, body: '{}' },
    );
    await check(
      'content negotiation',
      runs(300),
      fc.asyncProperty(target, header, fc.option(header, { nil: undefined }), PROTOCOL, async ({ method, path, body }, accept, contentType, protocol) => {
        const headers: Record<string, string> = { accept };
        if (contentType !== undefined) headers['content-type'] = contentType;
        const reply = await sendChecked({ method, path, headers, protocol, ...(body ? { body } : {}) });
        if (reply.status < 300 && !reply.streamed) {
          const kind = (JSON.parse(reply.text) as { kind?: string }).kind;
          if (kind === 'Table') expect(accept).toMatch(/as=Table/);
          if (kind?.startsWith('PartialObjectMetadata')) expect(accept).toMatch(/as=PartialObjectMetadata/);
        }
      }),
    );
  }, 60_000);
});

// ---- bodies ----------------------------------------------------------------------------------

const PLACEHOLDER = '"\\u0000fuzz"';
/** JSON texts JSON.stringify never writes: numbers beyond a double, precise big integers, own __proto__ keys. */
const RAW_JSON = fc.oneof(
  fc.constantFrom('1e400', '-1e400', '123456789012345678901234567890', '9007199254740993', '-0', '1.5', '0', 'null', 'true', '""', '[]', '{}', '"x"', '{"__proto__":{"polluted":"yes"}}', '{"__proto__":null}', '[{"__proto__":[]}]', '"\\ud800"', '"\\u0000"'),
  fc.json({ maxDepth: 3 }),
);
/** Every field of a Flunder, by path: each gets a value of the wrong type. */
const FLUNDER_FIELDS = [
  [],
  ['apiVersion'],
  ['kind'],
  ['metadata'],
  ['metadata', 'name'],
  ['metadata', 'generateName'],
  ['metadata', 'namespace'],
  ['metadata', 'labels'],
  ['metadata', 'labels', 'app'],
  ['metadata', 'annotations'],
  ['metadata', 'annotations', 'note'],
  ['metadata', 'resourceVersion'],
  ['metadata', 'uid'],
  ['metadata', 'generation'],
  ['metadata', 'creationTimestamp'],
  ['metadata', 'deletionTimestamp'],
  ['metadata', 'deletionGracePeriodSeconds'],
  ['metadata', 'ownerReferences'],
  ['metadata', 'ownerReferences', 0],
  ['metadata', 'ownerReferences', 0, 'uid'],
  ['metadata', 'ownerReferences', 0, 'controller'],
  ['metadata', 'finalizers'],
  ['metadata', 'finalizers', 0],
  ['metadata', 'managedFields'],
  ['metadata', 'managedFields', 0],
  ['metadata', 'selfLink'],
  ['metadata', '__proto__'],
  ['spec'],
  ['spec', 'reference'],
  ['spec', 'referenceType'],
  ['spec', 'flunderReference'],
  ['status'],
  ['__proto__'],
] as const;

/** A full Flunder (v1alpha1) named `name` in `fuzz`, with the value at `path` replaced by the raw JSON text `raw`. */
function flunderWith(name: string, path: readonly (string | number)[], raw: string): string {
  const object: Record<string, unknown> = {
    ...flunder(name, { app: 'web' }, 'fuzz'),
    metadata: {
      name,
      namespace: 'fuzz',
      labels: { app: 'web' },
      annotations: { note: 'n' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'cm', uid: '6b7f3d4e-0000-4000-8000-000000000000', controller: true }],
      finalizers: ['example.com/f'],
      managedFields: [{ manager: 'fuzzer', operation: 'Update', apiVersion: `${GROUP}/v1alpha1` }],
    },
    status: {},
  };
  if (path.length === 0) return raw;
  let parent = object as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  // Object.defineProperty: a "__proto__" field is an own key in the JSON text, as a client would send it.
  Object.defineProperty(parent, last, { value: '\u0000fuzz', enumerable: true, writable: true, configurable: true });
  return JSON.stringify(object).replace(PLACEHOLDER, () => raw);
}

/** ObjectMeta and the Flunder fields have the types of their Go structs. */
function expectFlunderTypes(object: Record<string, unknown>, input: string): void {
  const fail = (why: string) => {
    if (process.env.FUZZ_COLLECT) {
      console.log(`COLLECT ${input.slice(0, 60)} :: ${why}`);
      return;
    }
    throw new Error(`accepted ${input} and answered a Flunder whose ${why}: ${JSON.stringify(object).slice(0, 600)}`);
  };
  const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isRecord(object.metadata)) return fail('metadata is not an object');
  const meta = object.metadata;
  for (const key of ['name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp', 'generateName']) {
    if (meta[key] !== undefined && typeof meta[key] !== 'string') fail(`metadata.${key} is not a string`);
  }
  for (const key of ['labels', 'annotations']) {
    if (meta[key] === undefined) continue;
    if (!isRecord(meta[key])) return fail(`metadata.${key} is not a map`);
    for (const value of Object.values(meta[key])) if (typeof value !== 'string') fail(`metadata.${key} holds a ${typeof value}`);
  }
  if (meta.generation !== undefined && !Number.isSafeInteger(meta.generation)) fail('metadata.generation is not an integer');
  if (meta.finalizers !== undefined && (!Array.isArray(meta.finalizers) || meta.finalizers.some((f) => typeof f !== 'string'))) fail('metadata.finalizers is not a list of strings');
  if (meta.ownerReferences !== undefined && (!Array.isArray(meta.ownerReferences) || meta.ownerReferences.some((r) => !isRecord(r)))) fail('metadata.ownerReferences is not a list of objects');
  if (object.spec !== undefined) {
    if (!isRecord(object.spec)) return fail('spec is not an object');
    for (const value of Object.values(object.spec)) if (typeof value !== 'string') fail(`spec holds a ${typeof value}`);
  }
  if (object.status !== undefined && !isRecord(object.status)) fail('status is not an object');
}

const JSON_POINTER = fc.array(fc.oneof(fc.constantFrom('metadata', 'spec', 'labels', 'name', 'namespace', 'resourceVersion', '-', '0', '__proto__', 'constructor', 'prototype', '~0', '~1', '', 'reference', 'referenceType', 'status', 'kind', 'apiVersion'), fc.string({ maxLength: 3 })), { maxLength: 4 }).map((p) => (p.length ? `/${p.join('/')}` : ''));
const JSON_PATCH_OP = fc.oneof(
  fc.record({ op: fc.constantFrom('add', 'replace', 'test'), path: JSON_POINTER, value: fc.jsonValue({ maxDepth: 2 }) }),
  fc.record({ op: fc.constant('remove'), path: JSON_POINTER }),
  fc.record({ op: fc.constantFrom('move', 'copy'), from: JSON_POINTER, path: JSON_POINTER }),
  fc.dictionary(fc.constantFrom('op', 'path', 'from', 'value'), fc.jsonValue({ maxDepth: 2 })),
);

describe('bodies through the server', () => {
  beforeAll(async () => {
    const created = await send({ method: 'POST', path: FUZZ, headers: { 'content-type': 'application/json' }, body: JSON.stringify(flunder('target', {}, 'fuzz')) });
    expect([201, 409]).toContain(created.status);
  });

  test('a create or update whose every field in turn holds a value of any type is answered well-formed', async () => {
    await check(
      'wrong types',
      runs(300),
      fc.asyncProperty(fc.constantFrom(...FLUNDER_FIELDS), RAW_JSON, fc.constantFrom('POST', 'PUT'), fc.constantFrom('application/json', 'application/yaml'), PROTOCOL, async (field, raw, method, contentType, protocol) => {
        const name = method === 'POST' ? `w${Math.random().toString(36).slice(2, 10)}` : 'target';
        const reply = await sendChecked({ method, path: method === 'POST' ? FUZZ : `${FUZZ}/${name}`, headers: { 'content-type': contentType }, body: flunderWith(name, field, raw), protocol });
        // THEN what was accepted is a Flunder of the right types (a wrong type is refused, or dropped as unknown)
        if (reply.status < 300) expectFlunderTypes(JSON.parse(reply.text) as Record<string, unknown>, `${field.join('.')}=${raw}`);
      }),
    );
  }, 60_000);

  test('any JSON value, or any text, as a create, update, patch or delete body is answered well-formed', async () => {
    const body = fc.oneof(fc.json({ maxDepth: 4 }), RAW_JSON, fc.string({ maxLength: 40 }), fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)));
    const target = fc.constantFrom(
      { method: 'POST', path: FUZZ, contentType: 'application/json' },
      { method: 'POST', path: FUZZ, contentType: 'application/yaml' },
      { method: 'PUT', path: `${FUZZ}/target`, contentType: 'application/json' },
      { method: 'PUT', path: `${FUZZ}/target/status`, contentType: 'application/json' },
      { method: 'PATCH', path: `${FUZZ}/target`, contentType: 'application/merge-patch+json' },
      { method: 'PATCH', path: `${FUZZ}/target/status`, contentType: 'application/merge-patch+json' },
      { method: 'PATCH', path: `${FUZZ}/target`, contentType: 'application/json-patch+json' },
      { method: 'PATCH', path: `${FUZZ}/target`, contentType: 'application/apply-patch+yaml' },
      { method: 'PATCH', path: `${FUZZ}/target`, contentType: 'application/strategic-merge-patch+json' },
      { method: 'DELETE', path: `${FUZZ}/absent`, contentType: 'application/json' },
      { method: 'POST', path: `${GV}/fischers`, contentType: 'application/json' },
    );
    await check(
      'any body',
      runs(300),
      fc.asyncProperty(target, body, fc.constantFrom('', '?dryRun=All'), async ({ method, path, contentType }, text, query) => {
        await sendChecked({ method, path: `${path}${query}`, headers: { 'content-type': contentType }, body: text });
      }),
    );
  }, 60_000);

  test('merge patches of any shape and JSON patches of any operations are answered well-formed', async () => {
    const mergePatch = fc.oneof(
      fc.dictionary(fc.constantFrom('metadata', 'spec', 'status', 'kind', 'apiVersion', '__proto__', 'constructor', 'x'), fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(null))).map((d) => JSON.stringify(d).replace('"x":', '"__proto__":')),
      fc.constantFrom(...FLUNDER_FIELDS).chain((field) => RAW_JSON.map((raw) => flunderWith('target', field, raw))),
    );
    const jsonPatch = fc.array(JSON_PATCH_OP, { maxLength: 4 }).map((ops) => JSON.stringify(ops));
    await check(
      'patches',
      runs(300),
      fc.asyncProperty(fc.oneof(mergePatch.map((body) => ({ body, type: 'application/merge-patch+json' })), jsonPatch.map((body) => ({ body, type: 'application/json-patch+json' }))), fc.constantFrom('', '/status'), fc.constantFrom('', '?dryRun=All', '?fieldValidation=Strict'), async ({ body, type }, sub, query) => {
        await sendChecked({ method: 'PATCH', path: `${FUZZ}/target${sub}${query}`, headers: { 'content-type': type }, body });
      }),
    );
  }, 60_000);
});

// ---- examples: each bug the properties found, reproduced --------------------------------------

describe('bugs the fuzzing found', () => {
  test('fails no longer with 500: a label selector over an object created with "labels": null (TypeError in the selector)', async () => {
    // GIVEN an object created with null labels, annotations, finalizers and owner references
    const body = JSON.stringify({ ...flunder('nulls', {}, 'fuzz'), metadata: { name: 'nulls', namespace: 'fuzz', labels: null, annotations: null, finalizers: null, ownerReferences: null } });
    const created = await sendChecked({ method: 'POST', path: FUZZ, headers: { 'content-type': 'application/json' }, body });
    expect(created.status).toBe(201);

    // WHEN it is listed and watched with a label selector
    const listed = await sendChecked({ method: 'GET', path: `${FUZZ}?labelSelector=${encodeURIComponent('!app,tier notin (x)')}` });
    const watched = await sendChecked({ method: 'GET', path: `${FUZZ}?watch=1&resourceVersion=0&labelSelector=app` });

    // THEN it is listed, a watch starts, and the object was stored without the nulls (Go's ObjectMeta omits them)
    expect(listed.status).toBe(200);
    expect((JSON.parse(listed.text) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name)).toContain('nulls');
    expect(watched.status).toBe(200);
    const stored = JSON.parse(created.text) as { metadata: Record<string, unknown> };
    for (const field of ['labels', 'annotations', 'finalizers', 'ownerReferences']) expect(stored.metadata).not.toHaveProperty(field);
  });

  test('fails with 422 for a JSON patch moving the document into itself (was a 500: a circular object reached the store)', async () => {
    // GIVEN an object
    const name = `move-${Math.random().toString(36).slice(2, 8)}`;
    expect((await sendChecked({ method: 'POST', path: FUZZ, headers: { 'content-type': 'application/json' }, body: JSON.stringify(flunder(name, {}, 'fuzz')) })).status).toBe(201);

    // WHEN a JSON patch moves the root, or metadata, under itself
    for (const [from, path] of [['', '/constructor'], ['', '/x'], ['/metadata', '/metadata/x']]) {
      const reply = await sendChecked({ method: 'PATCH', path: `${FUZZ}/${name}`, headers: { 'content-type': 'application/json-patch+json' }, body: JSON.stringify([{ op: 'move', from, path }]) });

      // THEN it is refused, as RFC 6902 4.4 says
      expect(reply.status).toBe(422);
    }
  });
});

describe('watch timeouts', () => {
  /** Opens a watch and resolves with its lines once one names `name`, or rejects when the stream ends first. */
  function watchUntil(path: string, name: string, opened: () => void): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const stream = h2Session().request({ ':method': 'GET', ':path': path });
      const lines: string[] = [];
      let buffer = '';
      stream.on('response', (headers) => (headers[':status'] === 200 ? opened() : reject(new Error(`watch answered ${headers[':status']}`))));
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        buffer += chunk;
        for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
          lines.push(buffer.slice(0, newline));
          buffer = buffer.slice(newline + 1);
        }
        if (lines.some((line) => line.includes(`"name":"${name}"`))) {
          resolve(lines);
          stream.close(http2.constants.NGHTTP2_CANCEL);
        }
      });
      stream.on('end', () => reject(new Error(`the watch ended before ${name} was written: ${JSON.stringify(lines)}`)));
      stream.on('error', reject);
    });
  }

  test.each(['9223372036854775807', '2147484'])('fails no longer to watch with timeoutSeconds=%s (a timer beyond 2^31-1 ms fired at once and ended the watch as it began)', async (timeoutSeconds) => {
    // GIVEN a watch asking for a timeout beyond what node's timers hold
    const name = `t${timeoutSeconds.length}-${Math.random().toString(36).slice(2, 8)}`;
    let opened!: () => void;
    const isOpen = new Promise<void>((resolve) => (opened = resolve));
    const watched = watchUntil(`${FUZZ}?watch=1&timeoutSeconds=${timeoutSeconds}`, name, opened);
    await isOpen;

    // WHEN an object is created
    expect((await sendChecked({ method: 'POST', path: FUZZ, headers: { 'content-type': 'application/json' }, body: JSON.stringify(flunder(name, {}, 'fuzz')) })).status).toBe(201);

    // THEN the watch, still open, delivers it
    expect((await watched).some((line) => line.startsWith('{"type":"ADDED"'))).toBe(true);
  });
});

describe('names and namespaces that cannot be a path segment', () => {
  test.each([
    ['GET', `${FUZZ}/a%2Fb`, 'Name parameter invalid: "a/b": may not contain \'/\''],
    ['DELETE', `${FUZZ}/100%25`, 'Name parameter invalid: "100%": may not contain \'%\''],
    ['PUT', `${FUZZ}/a%2F..`, 'Name parameter invalid'],
    ['PATCH', `${FUZZ}/x%2Fstatus`, 'Name parameter invalid'],
    ['GET', `${GV}/namespaces/fuzz%2Fx/flunders/a1`, 'Namespace parameter is invalid: "fuzz/x": may not contain \'/\''],
  ])('fails with 400 naming the parameter for %s %s, as the etcd3 key functions refuse it', async (method, path, message) => {
    const body = method === 'PUT' || method === 'PATCH' ? { headers: { 'content-type': method === 'PUT' ? 'application/json' : 'application/merge-patch+json' }, body: '{}' } : {};
    const reply = await sendChecked({ method, path, ...body });
    expect([reply.status, (JSON.parse(reply.text) as { message: string }).message]).toEqual([400, expect.stringContaining(message)]);
  });
});

describe('write options', () => {
  test.each([
    ['POST', FUZZ, 'dryRun=All&dryRun=Bogus', 'CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value'],
    ['POST', FUZZ, 'fieldValidation=strict', 'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict"'],
    ['PUT', `${FUZZ}/target`, `fieldManager=${'m'.repeat(129)}`, 'UpdateOptions.meta.k8s.io "" is invalid: fieldManager: Too long'],
    // 128 characters, 131 bytes: Go's len() counts bytes
    ['PUT', `${FUZZ}/target`, `fieldManager=${encodeURIComponent(`kubectl édition ✓ ${'m'.repeat(110)}`)}`, 'UpdateOptions.meta.k8s.io "" is invalid: fieldManager: Too long'],
    ['PATCH', `${FUZZ}/target`, 'fieldManager=a%01b', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Invalid value'],
  ])('fails with 422 for %s %s?%s, naming the option as metav1 validation does (was a 400, or nothing for fieldManager)', async (method, path, query, message) => {
    const reply = await sendChecked({ method, path: `${path}?${query}`, headers: { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }, body: JSON.stringify(flunder('target', {}, 'fuzz')) });
    expect([reply.status, (JSON.parse(reply.text) as { message: string }).message]).toEqual([422, expect.stringContaining(message)]);
  });

  test('a fieldManager of 128 bytes of printable characters, any script, is taken', async () => {
    const reply = await sendChecked({ method: 'POST', path: `${FUZZ}?dryRun=All&fieldManager=${encodeURIComponent(`kubectl édition ✓ ${'m'.repeat(107)}`)}`, headers: { 'content-type': 'application/json' }, body: JSON.stringify(flunder('fm', {}, 'fuzz')) });
    expect(reply.status).toBe(201);
  });
});

describe('an Accept header with no media type', () => {
  test.each(['garbage', 'application', 'text/html, x'])('fails with 406 NotAcceptable for Accept: %s (was answered JSON)', async (accept) => {
    const reply = await sendChecked({ method: 'GET', path: `${DEFAULT}/a1`, headers: { accept } });
    expect([reply.status, (JSON.parse(reply.text) as { reason: string }).reason]).toEqual([406, 'NotAcceptable']);
  });
});

describe('malformed Content-Type', () => {
  test.each([
    ['POST', FUZZ],
    ['PUT', `${FUZZ}/target`],
    ['PATCH', `${FUZZ}/target`],
  ])('fails with 415 for a %s whose Content-Type does not parse (was read as JSON), as Go\'s NegotiateInputSerializer', async (method, path) => {
    for (const contentType of ['garbage', 'application/json/x', 'application/']) {
      const reply = await sendChecked({ method, path, headers: { 'content-type': contentType }, body: JSON.stringify(flunder('target', {}, 'fuzz')) });
      expect([reply.status, (JSON.parse(reply.text) as { details: { causes: { message: string }[] } }).details.causes[0].message]).toEqual([415, contentType]);
    }
  });
});

describe('deeply nested bodies', () => {
  const nested = (depth: number, open: string, close: string, leaf = '1') => `${open.repeat(depth)}${leaf}${close.repeat(depth)}`;
  /** A value that makes the whole body `depth` levels deep when placed at level `at`. */
  const deep = (depth: number, at: number, kind: 'object' | 'array') => (kind === 'object' ? nested(depth - at, '{"a":', '}') : nested(depth - at, '[', ']'));
  const base = (name: string) => JSON.stringify(flunder(name, {}, 'fuzz'));
  const CASES: [string, string, (name: string) => string, string, (name: string, depth: number) => string][] = [
    ['create, managedFields[0].fieldsV1 (kept as stored)', 'POST', () => FUZZ, 'application/json', (name, d) => base(name).replace('"labels":{}', `"labels":{},"managedFields":[{"manager":"m","operation":"Update","fieldsV1":${deep(d, 4, 'object')}}]`)],
    ['create, nested spec field (pruned)', 'POST', () => FUZZ, 'application/json', (name, d) => base(name).replace('"spec":{', `"spec":{"x":${deep(d, 2, 'array')},`)],
    ['update, managedFields', 'PUT', (name) => `${FUZZ}/${name}`, 'application/json', (name, d) => base(name).replace('"labels":{}', `"labels":{},"managedFields":[{"manager":"m","operation":"Update","fieldsV1":${deep(d, 4, 'array')}}]`)],
    ['merge patch', 'PATCH', (name) => `${FUZZ}/${name}`, 'application/merge-patch+json', (_name, d) => `{"metadata":{"managedFields":[{"manager":"m","operation":"Update","fieldsV1":${deep(d, 4, 'object')}}]}}`],
    ['merge patch of status', 'PATCH', (name) => `${FUZZ}/${name}/status`, 'application/merge-patch+json', (_name, d) => `{"status":${deep(d, 1, 'object')}}`],
    ['JSON patch value', 'PATCH', (name) => `${FUZZ}/${name}`, 'application/json-patch+json', (_name, d) => `[{"op":"add","path":"/metadata/managedFields","value":[{"manager":"m","operation":"Update","fieldsV1":${deep(d, 4, 'array')}}]}]`],
    ['delete options', 'DELETE', () => `${FUZZ}/absent`, 'application/json', (_name, d) => `{"preconditions":${deep(d, 1, 'object')}}`],
  ];

  test.each(CASES)('fails with 400 for a %s nested 1,001 or 100,000 deep (was a 500: stack overflow); 1,000 deep is answered well-formed', async (_name, method, path, contentType, body) => {
    // GIVEN an object to update or patch
    const name = `deep-${Math.random().toString(36).slice(2, 8)}`;
    if (method !== 'POST') expect((await sendChecked({ method: 'POST', path: FUZZ, headers: { 'content-type': 'application/json' }, body: base(name) })).status).toBe(201);

    // WHEN / THEN
    const within = await sendChecked({ method, path: path(name), headers: { 'content-type': contentType }, body: body(name, 1_000) });
    expect(within.status).not.toBe(400);
    for (const depth of [1_001, 100_000]) {
      const beyond = await sendChecked({ method, path: path(`${name}x`), headers: { 'content-type': contentType }, body: body(`${name}x`, depth) });
      expect([beyond.status, (JSON.parse(beyond.text) as { message: string }).message]).toEqual([400, expect.stringContaining('exceeded max depth')]);
    }
    // AND what was stored is read, listed and watched
    await sendChecked({ method: 'GET', path: `${FUZZ}/${name}` });
    await sendChecked({ method: 'GET', path: FUZZ });
    await sendChecked({ method: 'GET', path: `${FUZZ}?watch=1&resourceVersion=0` });
  });
});

// ---- selectors and continue tokens -----------------------------------------------------------

const SELECTOR_KEY = fc.constantFrom('app', 'tier', 'n', 'example.com/team', 'in', 'missing');
const SELECTOR_VALUE = fc.constantFrom('web', 'db', 'front', 'back', 'x', 'notin', '1', '20', '003', '');
const LABEL_REQUIREMENT: fc.Arbitrary<LabelRequirement> = fc.oneof(
  fc.record({ op: fc.constantFrom('exists' as const, '!' as const), key: SELECTOR_KEY }),
  fc.record({ op: fc.constantFrom('=' as const, '==' as const, '!=' as const), key: SELECTOR_KEY, value: SELECTOR_VALUE }),
  fc.record({ op: fc.constantFrom('in' as const, 'notin' as const), key: SELECTOR_KEY, values: fc.array(SELECTOR_VALUE.filter((v) => v !== ''), { maxLength: 3 }) }),
  fc.record({ op: fc.constantFrom('>' as const, '<' as const), key: SELECTOR_KEY, value: fc.integer({ min: -5, max: 25 }).map(String) }),
);
const SPACE = fc.constantFrom('', '', ' ', '\t');

function renderRequirement(r: LabelRequirement, ws: string): string {
  switch (r.op) {
    case 'exists':
      return `${ws}${r.key}${ws}`;
    case '!':
      return `${ws}!${ws}${r.key}`;
    case 'in':
    case 'notin':
      return `${r.key} ${r.op}${ws}(${r.values.join(`${ws},`)})${ws}`;
    default:
      return `${r.key}${ws}${r.op}${ws}${r.value}`;
  }
}

const itemNames = (reply: Reply) => (JSON.parse(reply.text) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name);

describe('selectors and continue tokens through the server', () => {
  test('a valid label and field selector lists exactly what labels.Parse and fields.ParseSelector would select; any other text is answered well-formed', async () => {
    const fieldTerm = fc.record({ field: fc.constantFrom('metadata.name', 'metadata.namespace'), op: fc.constantFrom('=', '==', '!='), value: fc.constantFrom('a1', 'b2', 'c1', 'default', 'fuzz', '') });
    await check(
      'selectors',
      runs(300),
      fc.asyncProperty(
        fc.option(fc.array(fc.tuple(LABEL_REQUIREMENT, SPACE), { minLength: 1, maxLength: 3 }), { nil: undefined }),
        fc.option(fc.array(fieldTerm, { minLength: 1, maxLength: 2 }), { nil: undefined }),
        fc.oneof(
          { weight: 3, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: fc.tuple(fc.constantFrom('labelSelector', 'fieldSelector'), fc.string({ unit: fc.constantFrom(...'abn=!(),<> in notin \t.metadata/\\-01'.split('')), maxLength: 20 })) },
        ),
        fc.constantFrom('list', 'watch'),
        async (labelRequirements, fieldTerms, garbage, verb) => {
          const query = new URLSearchParams();
          if (labelRequirements) query.set('labelSelector', labelRequirements.map(([r, ws]) => renderRequirement(r, ws)).join(','));
          if (fieldTerms) query.set('fieldSelector', fieldTerms.map((t) => `${t.field}${t.op}${t.value}`).join(','));
          if (garbage !== undefined) query.set(garbage[0], garbage[1]);
          if (verb === 'watch') query.set('watch', '1');
          const reply = await sendChecked({ method: 'GET', path: `${DEFAULT}?${query}` });
          if (garbage !== undefined || verb === 'watch') return;
          // THEN exactly the seeded objects every requirement matches
          expect(reply.status).toBe(200);
          const expected = SEEDED.filter(({ name, labels }) => (labelRequirements ?? []).every(([r]) => goMatches(r, labels)) && (fieldTerms ?? []).every((t) => ((t.field === 'metadata.name' ? name : 'default') === t.value) === (t.op !== '!=')));
          expect(itemNames(reply)).toEqual(expected.map((s) => s.name));
        },
      ),
    );
  }, 60_000);

  test('any continue token (garbage, base64 of JSON with wrong fields, another resource\'s or namespace\'s, edited) is answered well-formed; a list paged with any limit returns every object once', async () => {
    // GIVEN real tokens: of this list, of the cluster-wide list and of fischers
    for (const name of ['f2', 'f3', 'f4']) {
      await send({ method: 'POST', path: `${GV}/fischers`, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Fischer', metadata: { name } }) });
    }
    const tokenOf = async (path: string) => (JSON.parse((await send({ method: 'GET', path })).text) as { metadata: { continue?: string } }).metadata.continue!;
    const real = await Promise.all([tokenOf(`${DEFAULT}?limit=2`), tokenOf(`${GV}/flunders?limit=2`), tokenOf(`${GV}/fischers?limit=1`)]);
    for (const token of real) expect(token).toEqual(expect.any(String));
    const decoded = real.map((t) => JSON.parse(Buffer.from(t, 'base64url').toString()) as Record<string, unknown>);
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value) ?? 'null').toString(JSON.stringify(value)?.length % 2 ? 'base64' : 'base64url');
    const token = fc.oneof(
      fc.constantFrom(...real),
      fc.string({ maxLength: 30 }),
      fc.base64String({ maxLength: 40 }),
      fc.jsonValue({ maxDepth: 2 }).map(encode),
      fc.tuple(fc.constantFrom(...decoded), fc.constantFrom('v', 'rv', 'start'), fc.oneof(fc.jsonValue({ maxDepth: 1 }), fc.constantFrom(-1, 0, 1, 2 ** 53 - 1, 2 ** 53, 1e300, '../x', '/x', 'default/../../', 'zzz', '\u0000', 'default/a1\u0000', 'fred'))).map(([d, key, value]) => encode({ ...d, [key]: value })),
      // A revision from the future, and one just past the token's.
      fc.tuple(fc.constantFrom(...decoded), fc.constantFrom(1, 1_000_000)).map(([d, ahead]) => encode({ ...d, rv: (d.rv as number) + ahead })),
      fc.constantFrom(...real).map((t) => `${t.slice(0, -3)}`),
    );
    await check(
      'continue tokens',
      runs(300),
      fc.asyncProperty(token, fc.constantFrom(DEFAULT, `${GV}/flunders`, `${GV}/fischers`, FUZZ), fc.constantFrom('', '&limit=1', '&limit=0', '&resourceVersion=0', '&resourceVersionMatch=Exact', '&watch=1'), async (continueToken, path, extra) => {
        await sendChecked({ method: 'GET', path: `${path}?continue=${encodeURIComponent(continueToken)}${extra}` });
      }),
    );
    // AND paging with any limit returns every object exactly once, in name order
    await check(
      'paging',
      runs(30),
      fc.asyncProperty(fc.integer({ min: 1, max: 7 }), async (limit) => {
        const names: string[] = [];
        let next: string | undefined = '';
        while (next !== undefined) {
          const reply = await sendChecked({ method: 'GET', path: `${DEFAULT}?limit=${limit}${next ? `&continue=${encodeURIComponent(next)}` : ''}` });
          names.push(...itemNames(reply));
          next = (JSON.parse(reply.text) as { metadata: { continue?: string } }).metadata.continue || undefined;
        }
        expect(names).toEqual(SEEDED.map((s) => s.name));
      }),
    );
  }, 60_000);
});
