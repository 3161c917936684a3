import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { makeLeaf } from './support/pki';
import { startServerEnvironment, ServerEnvironment } from './support/server-process';

/**
 * HTTP/2 on the server's port, negotiated by ALPN as Go clients (kubectl, client-go, the
 * aggregator's proxy) do, against the real server process with delegated authentication:
 * resources, watch, request-header authentication, the body limit, certificate reload and
 * graceful shutdown over node:http2 client sessions; HTTP/1.1 clients on the same port.
 */

const GROUP = 'wardle.example.com';
const NAMESPACE = 'h2';
const FLUNDERS = `/apis/${GROUP}/v1alpha1/namespaces/${NAMESPACE}/flunders`;
const KUBECTL_DIR = '/usr/lib/google-cloud-sdk/bin';

let env: ServerEnvironment;
let admin: { cert: string; key: string };

beforeAll(async () => {
  env = await startServerEnvironment();
  env.fake.setNamespace(NAMESPACE, 'Active');
  // x509 user in system:masters: authorized without a SubjectAccessReview.
  const kubeconfig = fs.readFileSync(env.kubeconfigFor({ cn: 'h2-admin', organizations: ['system:masters'] }), 'utf8');
  const field = (name: string) => Buffer.from(new RegExp(`${name}: (\\S+)`).exec(kubeconfig)![1], 'base64').toString('utf8');
  admin = { cert: field('client-certificate-data'), key: field('client-key-data') };
}, 60_000);

afterAll(async () => {
  await env?.stop();
});

const sessions: http2.ClientHttp2Session[] = [];
afterEach(() => {
  for (const session of sessions.splice(0)) session.destroy();
});

/** An HTTP/2 client session over TLS with ALPN `h2` only, the serving CA checked for the Service name. */
function connect(identity: { cert: string; key: string } | undefined = admin): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${env.server.port}`, { ca: env.servingCa.certPem, servername: env.serverName, ...identity });
    sessions.push(session);
    session.once('error', reject);
    session.once('connect', () => {
      session.off('error', reject);
      resolve(session);
    });
  });
}

interface Reply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

/** One request on `session`; resolves once the response ended. */
function send(session: http2.ClientHttp2Session, method: string, urlPath: string, options: { headers?: http2.OutgoingHttpHeaders; body?: string | Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': method, ':path': urlPath, ...options.headers });
    let headers: http2.IncomingHttpHeaders = {};
    let body = '';
    stream.on('response', (h) => (headers = h));
    stream.on('data', (c: Buffer) => (body += c.toString()));
    stream.on('end', () => resolve({ status: Number(headers[':status']), headers, body }));
    stream.on('error', reject);
    stream.end(options.body);
  });
}

const flunder = (name: string) => JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name }, spec: {} });
const JSON_BODY = { 'content-type': 'application/json' };

/** The server's request log line matching `match`, waited for (request lines reach stdout up to REQUEST_LINES_FLUSH_MS late). */
async function requestLog(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  for (let i = 0; i < 250; i++) {
    const line = env.server.logs().find((l) => l.msg === 'request' && match(l));
    if (line) return line;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('no matching request log line');
}

test('ALPN negotiates h2; a Flunder is created and read back over one HTTP/2 connection', async () => {
  // GIVEN an HTTP/2 session with the admin's client certificate
  const session = await connect();
  expect(session.alpnProtocol).toBe('h2');

  // WHEN a Flunder is created and read on two streams of the same connection
  const created = await send(session, 'POST', FLUNDERS, { headers: JSON_BODY, body: flunder('over-h2') });
  const got = await send(session, 'GET', `${FLUNDERS}/over-h2`, { headers: { 'audit-id': 'h2-get-1' } });

  // THEN both succeed as the certificate's user, and the log records the protocol
  expect(created.status).toBe(201);
  expect(got.status).toBe(200);
  expect(got.headers['content-type']).toBe('application/json');
  expect(got.headers['audit-id']).toBe('h2-get-1');
  // No HTTP/1.1 connection-specific header reaches an HTTP/2 response.
  expect(Object.keys(got.headers).filter((h) => ['connection', 'keep-alive', 'transfer-encoding'].includes(h))).toEqual([]);
  const object = JSON.parse(got.body) as { kind: string; metadata: { name: string; uid: string; resourceVersion: string } };
  expect(object).toMatchObject({ kind: 'Flunder', metadata: { name: 'over-h2', uid: expect.any(String), resourceVersion: expect.any(String) } });
  expect(await requestLog((l) => l.auditID === 'h2-get-1')).toMatchObject({ protocol: 'HTTP/2.0', user: 'h2-admin', verb: 'get', resource: 'flunders', name: 'over-h2', code: 200 });
});

test('an HTTP/1.1 client (no ALPN, or ALPN http/1.1 only) is still served on the same port', async () => {
  for (const [auditId, alpn] of [
    ['h1-no-alpn', undefined],
    ['h1-alpn', ['http/1.1']],
  ] as const) {
    // WHEN
    const reply = await new Promise<{ status: number; headers: Record<string, unknown>; body: string; protocol: string | false | null }>((resolve, reject) => {
      const req = https.get(
        { host: '127.0.0.1', port: env.server.port, path: `${FLUNDERS}/over-h2`, ca: env.servingCa.certPem, servername: env.serverName, ...admin, agent: false, headers: { 'audit-id': auditId }, ...(alpn ? { ALPNProtocols: [...alpn] } : {}) },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, protocol: (res.socket as TLSSocket).alpnProtocol }));
        },
      );
      req.on('error', reject);
    });

    // THEN
    expect(reply.status).toBe(200);
    expect(reply.headers['audit-id']).toBe(auditId);
    expect(reply.protocol === false || reply.protocol === 'http/1.1').toBe(true);
    expect(JSON.parse(reply.body)).toMatchObject({ metadata: { name: 'over-h2' } });
    expect(await requestLog((l) => l.auditID === auditId)).toMatchObject({ protocol: 'HTTP/1.1', user: 'h2-admin', code: 200 });
  }
});

test('every answer carries its Audit-Id: reads (written with their own header list), writes, errors; given or generated', async () => {
  // GIVEN an HTTP/2 session and a Flunder
  const session = await connect();
  const created = await send(session, 'POST', FLUNDERS, { headers: { ...JSON_BODY, 'audit-id': 'aid-create' }, body: flunder('aid-1') });

  // WHEN it is read, listed, a missing one read, and a path outside the group asked for, with and without an Audit-Id
  const got = await send(session, 'GET', `${FLUNDERS}/aid-1`, { headers: { 'audit-id': 'aid-get' } });
  const listed = await send(session, 'GET', FLUNDERS, { headers: { 'audit-id': 'aid-list' } });
  const missing = await send(session, 'GET', `${FLUNDERS}/nobody`, { headers: { 'audit-id': 'aid-404' } });
  const elsewhere = await send(session, 'GET', '/apis/other.example.com/v1/things/x');
  const generated = await send(session, 'GET', `${FLUNDERS}/aid-1`);

  // THEN each answer names the request's Audit-Id once: the given one, or a generated UUID that the log line names too
  expect([created, got, listed, missing].map((r) => [r.status, r.headers['audit-id']])).toEqual([
    [201, 'aid-create'],
    [200, 'aid-get'],
    [200, 'aid-list'],
    [404, 'aid-404'],
  ]);
  expect(elsewhere.status).toBe(404);
  expect(elsewhere.headers['audit-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(generated.headers['audit-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(await requestLog((l) => l.auditID === generated.headers['audit-id'])).toMatchObject({ verb: 'get', name: 'aid-1', code: 200 });
});

test('request-header authentication over h2: each X-Remote-Group and X-Remote-Extra header line is one value', async () => {
  // GIVEN the front proxy's client certificate, and a user the SubjectAccessReview will name
  const session = await connect({ cert: env.frontProxyClient.chainPem, key: env.frontProxyClient.keyPem });
  const before = env.fake.subjectAccessReviewSpecs.length;

  // WHEN a request carries the user as the aggregator sends it: one header line per group and extra value
  const reply = await send(session, 'GET', FLUNDERS, {
    headers: {
      'x-remote-user': 'h2-alice',
      'x-remote-uid': 'uid-h2',
      'x-remote-group': ['team-a', 'team b, with a comma', 'team-c'],
      'x-remote-extra-example.com%2fscopes': ['read', 'write'],
    },
  });

  // THEN the user, every group line and every extra value reached authorization unsplit and unjoined
  expect(reply.status).toBe(200);
  const review = env.fake.subjectAccessReviewSpecs.slice(before).find((s) => s.user === 'h2-alice');
  expect(review).toMatchObject({
    user: 'h2-alice',
    uid: 'uid-h2',
    groups: ['team-a', 'team b, with a comma', 'team-c', 'system:authenticated'],
    extra: { 'example.com/scopes': ['read', 'write'] },
    resourceAttributes: { verb: 'list', group: GROUP, resource: 'flunders', namespace: NAMESPACE },
  });

  // AND on a second stream of the same connection the verified certificate still counts
  const second = await send(session, 'GET', FLUNDERS, { headers: { 'x-remote-user': 'h2-bob', 'x-remote-group': 'system:masters' } });
  expect(second.status).toBe(200);
  expect(await requestLog((l) => l.user === 'h2-bob')).toMatchObject({ protocol: 'HTTP/2.0', verb: 'list' });
});

test('fails to trust X-Remote-User over h2 from a client certificate that is not the front proxy', async () => {
  // GIVEN the admin's x509 certificate (client CA, not the requestheader CA)
  const session = await connect();

  // WHEN it claims another user in the headers
  const reply = await send(session, 'GET', FLUNDERS, { headers: { 'x-remote-user': 'h2-mallory', 'x-remote-group': 'system:masters', 'audit-id': 'h2-forged' } });

  // THEN the request is the certificate's user
  expect(reply.status).toBe(200);
  expect(await requestLog((l) => l.auditID === 'h2-forged')).toMatchObject({ user: 'h2-admin' });
});

test('a watch over h2 receives an event as soon as it happens', async () => {
  // GIVEN a watch from the current resourceVersion on its own stream
  const session = await connect();
  const list = JSON.parse((await send(session, 'GET', FLUNDERS)).body) as { metadata: { resourceVersion: string } };
  const stream = session.request({ ':path': `${FLUNDERS}?watch=1&resourceVersion=${list.metadata.resourceVersion}` });
  const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
  expect(status).toBe(200);
  let text = '';
  const event = new Promise<{ type: string; object: { metadata: { name: string } } }>((resolve) =>
    stream.on('data', (c: Buffer) => {
      text += c.toString();
      if (text.includes('\n')) resolve(JSON.parse(text.slice(0, text.indexOf('\n'))) as never);
    }),
  );

  // WHEN a Flunder is created on another stream of the same connection
  const created = await send(session, 'POST', FLUNDERS, { headers: JSON_BODY, body: flunder('watched-over-h2') });
  expect(created.status).toBe(201);

  // THEN the watch stream delivers the ADDED event without waiting for more data
  expect(await event).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'watched-over-h2' } } });
  stream.close();
});

test('fails with 413 over h2 for a body beyond 3 MiB, declared or streamed, and the connection stays usable', async () => {
  // GIVEN
  const session = await connect();
  const big = Buffer.alloc(3 * 1024 * 1024 + 1, 'a');

  // WHEN one body declares its length and another is streamed without one
  const declared = await send(session, 'POST', FLUNDERS, { headers: { ...JSON_BODY, 'content-length': big.length }, body: big });
  const streamed = await send(session, 'POST', FLUNDERS, { headers: JSON_BODY, body: big });

  // THEN both are 413 RequestEntityTooLarge Status objects
  for (const reply of [declared, streamed]) {
    expect(reply.status).toBe(413);
    expect(JSON.parse(reply.body)).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'RequestEntityTooLarge', code: 413 });
  }
  // AND the same HTTP/2 connection serves the next request
  expect((await send(session, 'GET', FLUNDERS)).status).toBe(200);
  // AND no HTTP/1.1 `Connection: close` was attempted on an HTTP/2 response (node:http2 drops it with this warning)
  expect(env.server.stderr).not.toContain('connection header is not valid');
});

test('100 concurrent large LISTs on one h2 connection all succeed (queued output does not make node:http2 refuse streams)', async () => {
  // GIVEN 400 Flunders of ~600 B (a ~250 KB list) and a client that reads with HTTP/2's default 64 KiB windows
  const namespace = 'h2-big';
  env.fake.setNamespace(namespace, 'Active');
  const session = await connect();
  const collection = `/apis/${GROUP}/v1alpha1/namespaces/${namespace}/flunders`;
  for (let i = 0; i < 400; i += 50) {
    const batch = Array.from({ length: 50 }, (_, j) => JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name: `big-${i + j}` }, spec: { reference: 'r'.repeat(400) } }));
    expect((await Promise.all(batch.map((body) => send(session, 'POST', collection, { headers: JSON_BODY, body })))).map((r) => r.status)).toEqual(batch.map(() => 201));
  }

  // WHEN 100 LISTs (~25 MB of responses, above node:http2's default 10 MB session memory) are asked at once
  const replies = await Promise.all(Array.from({ length: 100 }, () => send(session, 'GET', collection)));

  // THEN every one is a complete list
  expect(new Set(replies.map((r) => r.status))).toEqual(new Set([200]));
  expect(new Set(replies.map((r) => (JSON.parse(r.body) as { items: unknown[] }).items.length))).toEqual(new Set([400]));
});

test('the reloaded serving certificate is served over h2 to new connections; an open h2 connection keeps working', async () => {
  // GIVEN an open session on the current certificate
  const open = await connect();
  const fingerprint = (s: http2.ClientHttp2Session) => (s.socket as TLSSocket).getPeerCertificate().fingerprint256;
  const old = fingerprint(open);

  // WHEN the Secret's files change
  const next = makeLeaf(env.servingCa, { cn: env.serverName, dnsNames: [env.serverName], extendedKeyUsages: ['serverAuth'] });
  fs.writeFileSync(path.join(env.dir, 'tls.key'), next.keyPem, { mode: 0o600 });
  fs.writeFileSync(path.join(env.dir, 'tls.crt'), next.chainPem);

  // THEN a new connection negotiates h2 with the new certificate
  let fresh: http2.ClientHttp2Session | undefined;
  for (let i = 0; i < 100; i++) {
    fresh = await connect();
    if (fingerprint(fresh) !== old) break;
    fresh.destroy();
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(fingerprint(fresh!)).not.toBe(old);
  expect(fresh!.alpnProtocol).toBe('h2');
  expect((await send(fresh!, 'GET', `${FLUNDERS}/over-h2`)).status).toBe(200);
  // AND the session opened before still serves requests
  expect((await send(open, 'GET', `${FLUNDERS}/over-h2`)).status).toBe(200);
});

describe.each(['1.28', '1.33'])('kubectl %s', (version) => {
  const binary = path.join(KUBECTL_DIR, `kubectl.${version}`);
  // Only a kubectl missing from the machine skips; it is installed on the project's machines.
  const missing = !fs.existsSync(binary);
  if (missing) process.stderr.write(`SKIPPED kubectl ${version} over h2: ${binary} is not installed\n`);

  (missing ? test.skip : test)('negotiates HTTP/2', async () => {
    // GIVEN kubectl with an x509 user
    const user = `h2-kubectl-${version}`;
    const kubeconfig = env.kubeconfigFor({ cn: user, organizations: ['system:masters'] });
    const cacheDir = fs.mkdtempSync(path.join(env.dir, `kubectl-cache-h2-${version}-`));

    // WHEN it gets the flunders
    const run = await new Promise<{ error: Error | null; stdout: string; stderr: string }>((resolve) =>
      execFile(binary, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, '-n', NAMESPACE, 'get', 'flunders'], { timeout: 30_000, env: { PATH: process.env.PATH, HOME: env.dir } }, (error, stdout, stderr) => resolve({ error, stdout, stderr })),
    );

    // THEN it succeeded, and its requests came over HTTP/2
    expect(run.stderr).toBe('');
    expect(run.error).toBeNull();
    expect(run.stdout).toContain('over-h2');
    expect(await requestLog((l) => l.user === user && l.verb === 'list')).toMatchObject({ protocol: 'HTTP/2.0', userAgent: expect.stringMatching(/^kubectl/), code: 200 });
  });
});

// Last: it stops the server.
test('graceful shutdown over h2: GOAWAY, the open watch ends cleanly (END_STREAM, not RST_STREAM), the process exits 0', async () => {
  // GIVEN a watch on an HTTP/2 session
  const session = await connect();
  const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
  const stream = session.request({ ':path': `${FLUNDERS}?watch=1` });
  const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
  expect(status).toBe(200);
  const ended = new Promise<{ ended: boolean; rstCode: number | undefined }>((resolve) => {
    let sawEnd = false;
    stream.on('end', () => (sawEnd = true));
    stream.on('close', () => resolve({ ended: sawEnd, rstCode: stream.rstCode }));
    stream.resume();
  });

  // WHEN the server gets SIGTERM
  const exit = env.server.stop();

  // THEN the session is told to go away without error, and the watch stream finishes normally
  expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
  expect(await ended).toEqual({ ended: true, rstCode: http2.constants.NGHTTP2_NO_ERROR });
  expect(await exit).toBe(0);
});
