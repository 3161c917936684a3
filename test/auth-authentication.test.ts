/**
 * Delegated authentication end to end: a real TLS server authenticating with startDelegatedAuth
 * against the kube-apiserver stand-in, reached by real TLS clients with real certificates.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import pino from 'pino';
import { startDelegatedAuth, StartupError, type DelegatedAuth, type DelegatedAuthOptions } from '../server/auth';
import { CertPool } from '../server/auth/cert-pool';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf, makeServerCert, type TestCa, type TestCertificate } from './support/pki';

// ---- fixtures ------------------------------------------------------------------------------

let fake: FakeKubeApiServer;
let dir: string;
let servingCa: TestCa;
let serving: TestCertificate;
let clientCa: TestCa;
let frontProxyCa: TestCa;
let otherCa: TestCa;
let frontProxy: TestCertificate;
let alice: TestCertificate;

let logs: string[];
let clock: number;
const running: { auth: DelegatedAuth; server: https.Server }[] = [];

function logger() {
  return pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logs.push(chunk.toString());
        callback();
      },
    }),
  );
}

beforeAll(async () => {
  fake = await FakeKubeApiServer.start();
  servingCa = makeCa('serving-ca');
  serving = makeServerCert(servingCa);
  clientCa = makeCa('kubernetes-client-ca');
  frontProxyCa = makeCa('front-proxy-ca');
  otherCa = makeCa('attacker-ca');
  frontProxy = makeLeaf(frontProxyCa, { cn: 'front-proxy-client' });
  alice = makeLeaf(clientCa, { cn: 'alice', organizations: ['dev', 'ops'] });
});

afterAll(async () => {
  await fake.stop();
});

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'auth-authn-'));
  logs = [];
  clock = Date.now();
  fake.configMapForbidden = false;
  fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: clientCa.certPem, requestheaderCaPem: frontProxyCa.certPem, allowedNames: ['front-proxy-client'] }));
});

afterEach(async () => {
  for (const { auth, server } of running.splice(0)) {
    auth.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Starts delegated auth against the stand-in and a TLS server that answers with what it authenticated. */
async function startEchoServer(options: Partial<DelegatedAuthOptions> = {}): Promise<{ auth: DelegatedAuth; port: number; caChanges: () => number }> {
  const kubeconfig = fake.writeKubeconfig(dir, 'cert');
  const auth = await startDelegatedAuth({ authenticationKubeconfig: kubeconfig, authorizationKubeconfig: kubeconfig, ...options }, logger(), { now: () => clock });
  const tlsOptions = () => {
    const bundle = auth.clientCaBundle();
    return { cert: serving.certPem, key: serving.keyPem, ...(bundle.length > 0 ? { ca: bundle } : {}) };
  };
  const server = https.createServer({ ...tlsOptions(), requestCert: true, rejectUnauthorized: false }, (req, res) => {
    Promise.resolve(auth.authenticator.authenticate(req)).then(
      (result) => {
        res.writeHead(result.outcome === 'authenticated' ? 200 : 401, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(result));
      },
      (error: Error) => {
        res.writeHead(500);
        res.end(error.message);
      },
    );
  });
  let changes = 0;
  auth.onClientCaChange(() => {
    changes++;
    server.setSecureContext(tlsOptions());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  running.push({ auth, server });
  return { auth, port: (server.address() as AddressInfo).port, caChanges: () => changes };
}

interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

/** One request on a fresh connection (no agent: identities must not share sockets). */
function call(port: number, options: { cert?: TestCertificate; headers?: Record<string, string | string[]> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: '/apis/wardle.example.com/v1alpha1/namespaces/default/flunders',
        servername: 'localhost',
        ca: servingCa.certPem,
        agent: false,
        ...(options.cert ? { cert: options.cert.chainPem, key: options.cert.keyPem } : {}),
        headers: options.headers ?? {},
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function fingerprints(pems: readonly string[]): string[] {
  return pems.map((p) => new X509Certificate(p).fingerprint256);
}

const FORGED = { 'X-Remote-User': 'mallory', 'X-Remote-Group': 'system:masters' };

// ---- request-header --------------------------------------------------------------------------

describe('request-header', () => {
  test('trusts the front proxy: user, uid, every group header value, and extras', async () => {
    // GIVEN the front proxy's client certificate, signed by the requestheader CA with an allowed CN
    const { port } = await startEchoServer();

    // WHEN it sends the user with repeated group headers (one holding a comma) and extras
    const answer = await call(port, {
      cert: frontProxy,
      headers: {
        'X-Remote-User': 'alice@example.com',
        'X-Remote-Uid': 'uid-42',
        'X-Remote-Group': ['dev', 'ops, with a comma', 'qa'],
        'X-Remote-Extra-Scopes': ['read', 'write'],
        'X-Remote-Extra-Example.com%2FTenant': 'Blue',
      },
    });

    // THEN every header line is one value, and system:authenticated is added
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      outcome: 'authenticated',
      method: 'request-header',
      user: {
        name: 'alice@example.com',
        uid: 'uid-42',
        groups: ['dev', 'ops, with a comma', 'qa', 'system:authenticated'],
        extra: { scopes: ['read', 'write'], 'example.com/tenant': ['Blue'] },
      },
    });
  });

  test('trusts a front proxy certificate issued by an intermediate it presents', async () => {
    // GIVEN a front-proxy certificate signed by an intermediate CA under the requestheader CA
    const intermediate = makeCa('front-proxy-intermediate', { issuer: frontProxyCa });
    const leaf = makeLeaf(intermediate, { cn: 'front-proxy-client' });
    const { port } = await startEchoServer();

    // WHEN it presents leaf + intermediate
    const answer = await call(port, { cert: leaf, headers: { 'X-Remote-User': 'bob', 'X-Remote-Group': 'team' } });

    // THEN the chain is verified up to the requestheader CA
    expect(answer.body).toMatchObject({ outcome: 'authenticated', method: 'request-header', user: { name: 'bob', groups: ['team', 'system:authenticated'] } });
  });

  test('stays trusted on resumed TLS sessions, which do not carry the intermediates', async () => {
    // GIVEN a front proxy certificate issued by an intermediate, and a client that resumes TLS sessions
    const intermediate = makeCa('front-proxy-intermediate', { issuer: frontProxyCa });
    const leaf = makeLeaf(intermediate, { cn: 'front-proxy-client' });
    const { port } = await startEchoServer();
    const agent = new https.Agent({ keepAlive: false, ca: servingCa.certPem, cert: leaf.chainPem, key: leaf.keyPem });

    // WHEN it makes three requests on three connections
    const answers: { reused: boolean; body: Answer['body'] }[] = [];
    for (let i = 0; i < 3; i++) {
      answers.push(
        await new Promise((resolve, reject) => {
          https
            .get({ host: '127.0.0.1', port, servername: 'localhost', agent, headers: { 'X-Remote-User': 'pat' } }, (res) => {
              let text = '';
              res.on('data', (c: Buffer) => (text += c.toString()));
              res.on('end', () => resolve({ reused: (res.socket as import('node:tls').TLSSocket).isSessionReused(), body: JSON.parse(text) }));
            })
            .on('error', reject);
        }),
      );
    }
    agent.destroy();

    // THEN the later connections were resumed, and every request was the front proxy's user
    expect(answers.map((a) => a.reused)).toEqual([false, true, true]);
    for (const a of answers) expect(a.body).toMatchObject({ method: 'request-header', user: { name: 'pat' } });
  });

  test('a front proxy certificate without a username header falls through the chain', async () => {
    // GIVEN the front proxy's certificate, and no X-Remote-User
    const { port } = await startEchoServer();

    // WHEN it sends only groups
    const answer = await call(port, { cert: frontProxy, headers: { 'X-Remote-Group': 'system:masters' } });

    // THEN request-header has no opinion and x509 refuses the front-proxy certificate: 401
    expect(answer.status).toBe(401);
    expect(answer.body.reason).toMatch(/x509: verifying client certificate failed: x509: certificate signed by unknown authority/);
  });

  test('ignores forged headers from a client without a certificate (anonymous)', async () => {
    const { port } = await startEchoServer();
    const answer = await call(port, { headers: FORGED });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ outcome: 'authenticated', method: 'anonymous', user: { name: 'system:anonymous', groups: ['system:unauthenticated'], extra: {} } });
  });

  test('fails a client certificate from another CA sending headers (401, the forged user unused)', async () => {
    // GIVEN a certificate with the allowed CN but signed by another CA
    const impostor = makeLeaf(otherCa, { cn: 'front-proxy-client' });
    const { port } = await startEchoServer();

    // WHEN it sends X-Remote-User
    const answer = await call(port, { cert: impostor, headers: FORGED });

    // THEN it is rejected, and the reasons say why
    expect(answer.status).toBe(401);
    expect(answer.body.reason).toMatch(/^request-header: x509: certificate signed by unknown authority/);
    expect(JSON.stringify(answer.body)).not.toContain('mallory');
  });

  test('fails a requestheader-CA certificate whose CN is not in allowed-names', async () => {
    const wrongCn = makeLeaf(frontProxyCa, { cn: 'not-the-aggregator' });
    const { port } = await startEchoServer();
    const answer = await call(port, { cert: wrongCn, headers: FORGED });
    expect(answer.status).toBe(401);
    expect(answer.body.reason).toMatch(/request-header: x509: subject with cn=not-the-aggregator is not in the allowed list/);
  });

  test('fails a requestheader-CA certificate without EKU clientAuth, or expired', async () => {
    // GIVEN a serverAuth-only certificate and an expired one, both from the requestheader CA
    const serverOnly = makeLeaf(frontProxyCa, { cn: 'front-proxy-client', extendedKeyUsages: ['serverAuth'] });
    const expired = makeLeaf(frontProxyCa, { cn: 'front-proxy-client', notBefore: new Date(Date.now() - 3 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const { port } = await startEchoServer();

    // WHEN each sends headers
    const a = await call(port, { cert: serverOnly, headers: FORGED });
    const b = await call(port, { cert: expired, headers: FORGED });

    // THEN neither is trusted
    expect(a.status).toBe(401);
    expect(a.body.reason).toMatch(/incompatible key usage/);
    expect(b.status).toBe(401);
    expect(b.body.reason).toMatch(/expired or is not yet valid/);
  });

  test('reads and verifies the peer chain once per keep-alive connection, the headers on every request', async () => {
    // GIVEN a front proxy on one keep-alive connection, and spies on the server's reading and verifying of its chain
    const { port } = await startEchoServer();
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: servingCa.certPem, cert: frontProxy.chainPem, key: frontProxy.keyPem });
    const peerReads = jest.spyOn(TLSSocket.prototype, 'getPeerCertificate');
    const verifies = jest.spyOn(CertPool.prototype, 'verify');

    // WHEN it sends three requests for three users
    const users: string[] = [];
    const sockets = new Set<unknown>();
    let serverReads: number;
    let verifyCalls: number;
    try {
      for (const user of ['u1', 'u2', 'u3']) {
        users.push(
          await new Promise<string>((resolve, reject) => {
            https
              .get({ host: '127.0.0.1', port, servername: 'localhost', agent, headers: { 'X-Remote-User': user } }, (res) => {
                sockets.add(res.socket);
                let text = '';
                res.on('data', (c: Buffer) => (text += c.toString()));
                res.on('end', () => resolve((JSON.parse(text) as Answer['body']).user.name));
              })
              .on('error', reject);
          }),
        );
      }
    } finally {
      agent.destroy();
      // Only the echo server's end of the connection: the client reads the certificate too (to check the server's name), and so does the kube-apiserver stand-in.
      serverReads = peerReads.mock.contexts.filter((socket) => socket.server && socket.localPort === port).length;
      verifyCalls = verifies.mock.calls.length;
      peerReads.mockRestore();
      verifies.mockRestore();
    }

    // THEN each request is its own user, over one connection whose chain the server read and verified once
    expect(users).toEqual(['u1', 'u2', 'u3']);
    expect(sockets.size).toBe(1);
    expect(serverReads).toBe(1);
    expect(verifyCalls).toBe(1);
  });

  test('any CN is trusted when allowed-names is empty', async () => {
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ requestheaderCaPem: frontProxyCa.certPem, allowedNames: [] }));
    const { port } = await startEchoServer();
    const answer = await call(port, { cert: makeLeaf(frontProxyCa, { cn: 'some-other-proxy' }), headers: { 'X-Remote-User': 'carol' } });
    expect(answer.body).toMatchObject({ method: 'request-header', user: { name: 'carol' } });
  });
});

// ---- x509 -------------------------------------------------------------------------------------

describe('x509', () => {
  test('a client certificate from the client CA is the user CN in the groups O; its X-Remote-* headers are ignored', async () => {
    const { port } = await startEchoServer();
    const answer = await call(port, { cert: alice, headers: FORGED });
    expect(answer.body).toEqual({ outcome: 'authenticated', method: 'x509', user: { name: 'alice', groups: ['dev', 'ops', 'system:authenticated'], extra: {} } });
  });

  test('fails a client certificate from an unknown CA (401)', async () => {
    const { port } = await startEchoServer();
    const answer = await call(port, { cert: makeLeaf(otherCa, { cn: 'alice' }) });
    expect(answer.status).toBe(401);
    expect(answer.body.reason).toMatch(/x509: verifying client certificate failed/);
  });
});

// ---- TokenReview ------------------------------------------------------------------------------

describe('TokenReview', () => {
  test('a valid token is the reviewed user; an unknown one is 401', async () => {
    // GIVEN a token kube-apiserver knows
    fake.setToken('token-dave', { user: { username: 'dave', uid: 'u-1', groups: ['devs'], extra: { 'authentication.kubernetes.io/pod-name': ['p'] } } });
    const { port } = await startEchoServer();

    // WHEN it and an unknown one are presented
    const ok = await call(port, { headers: { Authorization: 'Bearer token-dave' } });
    const bad = await call(port, { headers: { Authorization: 'Bearer nobody-knows-me' } });

    // THEN
    expect(ok.body).toEqual({
      outcome: 'authenticated',
      method: 'token',
      user: { name: 'dave', uid: 'u-1', groups: ['devs', 'system:authenticated'], extra: { 'authentication.kubernetes.io/pod-name': ['p'] } },
    });
    expect(bad.status).toBe(401);
    expect(bad.body.reason).toBe('invalid bearer token');
    expect(fake.tokenReviewSpecs.slice(-2).map((s) => s.token)).toEqual(['token-dave', 'nobody-knows-me']);
  });

  test('results are cached 10 s (allowed and denied), then reviewed again', async () => {
    fake.setToken('token-erin', { user: { username: 'erin' } });
    const { port } = await startEchoServer();
    const before = fake.calls.tokenReviews;

    // WHEN each token is used three times within 10 s
    for (let i = 0; i < 3; i++) {
      await call(port, { headers: { Authorization: 'Bearer token-erin' } });
      await call(port, { headers: { Authorization: 'Bearer wrong-token' } });
      clock += 3000;
    }
    // THEN each was reviewed once
    expect(fake.calls.tokenReviews).toBe(before + 2);

    // WHEN the cache has expired (and erin's token was revoked meanwhile)
    clock += 1001;
    fake.setToken('token-erin', undefined);
    const after = await call(port, { headers: { Authorization: 'Bearer token-erin' } });

    // THEN it is reviewed again and now refused
    expect(fake.calls.tokenReviews).toBe(before + 3);
    expect(after.status).toBe(401);
  });

  test('on one keep-alive connection, each request is its own token\'s user, and an expired answer is reviewed again', async () => {
    // GIVEN two valid tokens and one keep-alive connection
    fake.setToken('token-gina', { user: { username: 'gina' } });
    fake.setToken('token-hugo', { user: { username: 'hugo' } });
    const { port } = await startEchoServer();
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: servingCa.certPem });
    const sockets = new Set<unknown>();
    const onConnection = (authorization: string | undefined): Promise<Answer> =>
      new Promise((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, servername: 'localhost', agent, headers: authorization ? { Authorization: authorization } : {} }, (res) => {
            sockets.add(res.socket);
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (text += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
          })
          .on('error', reject);
      });
    try {
      const before = fake.calls.tokenReviews;

      // WHEN the tokens alternate on it, with a wrong one and none in between
      const names = [];
      for (const authorization of ['Bearer token-gina', 'Bearer token-gina', 'Bearer token-hugo', 'Bearer wrong', undefined, 'Bearer token-gina']) {
        const answer = await onConnection(authorization);
        names.push(answer.body.user?.name ?? answer.status);
      }

      // THEN each request was answered as its own token's user, each token reviewed once, all on one connection
      expect(names).toEqual(['gina', 'gina', 'hugo', 401, 'system:anonymous', 'gina']);
      expect(fake.calls.tokenReviews).toBe(before + 3);
      expect(sockets.size).toBe(1);

      // WHEN gina's answer has expired and her token was revoked meanwhile
      clock += 10_001;
      fake.setToken('token-gina', undefined);
      const after = await onConnection('Bearer token-gina');

      // THEN it is reviewed again on the same connection, and refused
      expect(after.status).toBe(401);
      expect(fake.calls.tokenReviews).toBe(before + 4);
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  test('concurrent requests with one token share one review', async () => {
    fake.setToken('token-frank', { user: { username: 'frank' } });
    const { port } = await startEchoServer();
    const before = fake.calls.tokenReviews;
    const answers = await Promise.all(Array.from({ length: 8 }, () => call(port, { headers: { Authorization: 'Bearer token-frank' } })));
    expect(answers.every((a) => a.body.user?.name === 'frank')).toBe(true);
    expect(fake.calls.tokenReviews).toBe(before + 1);
  });

  test('more tokens than are kept unhashed are each reviewed once per TTL, and answered as their own user', async () => {
    // GIVEN 80 tokens (more than the 64 kept by their raw string in front of the hashed cache)
    const names = Array.from({ length: 80 }, (_, i) => `user-${i}`);
    for (const name of names) fake.setToken(`token-${name}`, { user: { username: name } });
    const { port } = await startEchoServer();
    const before = fake.calls.tokenReviews;

    // WHEN each is used three times, in turn, within the TTL
    const seen: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (const name of names) seen.push((await call(port, { headers: { Authorization: `Bearer token-${name}` } })).body.user?.name);
    }

    // THEN each was reviewed once, and every answer named the token's own user
    expect(fake.calls.tokenReviews).toBe(before + names.length);
    expect(seen).toEqual([...names, ...names, ...names]);

    // WHEN the TTL has passed
    clock += 10_001;
    await call(port, { headers: { Authorization: 'Bearer token-user-79' } });
    // THEN the token is reviewed again
    expect(fake.calls.tokenReviews).toBe(before + names.length + 1);
  });

  test('fails closed (401) while kube-apiserver is down, without caching, and recovers', async () => {
    // GIVEN a known token and a server that started while kube-apiserver was up
    fake.setToken('token-gina', { user: { username: 'gina' } });
    const { port } = await startEchoServer();

    // WHEN kube-apiserver goes down
    await fake.down();
    const during = await call(port, { headers: { Authorization: 'Bearer token-gina' } });
    await fake.up();
    const afterwards = await call(port, { headers: { Authorization: 'Bearer token-gina' } });

    // THEN the request failed with 401, and the next one after its return is authenticated
    expect(during.status).toBe(401);
    expect(during.body.reason).toMatch(/token review failed/);
    expect(afterwards.body).toMatchObject({ outcome: 'authenticated', user: { name: 'gina' } });
  });

  test('an error reported by the review is 401 and not cached', async () => {
    fake.setToken('token-flaky', { error: 'oidc provider unavailable' });
    const { port } = await startEchoServer();
    const first = await call(port, { headers: { Authorization: 'Bearer token-flaky' } });
    fake.setToken('token-flaky', { user: { username: 'henry' } });
    const second = await call(port, { headers: { Authorization: 'Bearer token-flaky' } });
    expect(first.status).toBe(401);
    expect(first.body.reason).toBe('oidc provider unavailable');
    expect(second.body).toMatchObject({ user: { name: 'henry' } });
  });

  test('sends the configured audiences and refuses a token not meant for them', async () => {
    fake.setToken('token-aud-ok', { user: { username: 'ivy' }, audiences: ['wardle'] });
    fake.setToken('token-aud-other', { user: { username: 'jack' }, audiences: ['elsewhere'] });
    const { port } = await startEchoServer({ authenticationAudiences: ['wardle'] });
    const ok = await call(port, { headers: { Authorization: 'Bearer token-aud-ok' } });
    const other = await call(port, { headers: { Authorization: 'Bearer token-aud-other' } });
    expect(ok.body).toMatchObject({ user: { name: 'ivy' } });
    expect(other.status).toBe(401);
    expect(fake.tokenReviewSpecs.at(-1)).toEqual({ token: 'token-aud-other', audiences: ['wardle'] });
  });

  test('never logs a token', async () => {
    fake.setToken('token-secret-value-123', { user: { username: 'kim' } });
    const { port } = await startEchoServer();
    await call(port, { headers: { Authorization: 'Bearer token-secret-value-123' } });
    await fake.down();
    await call(port, { headers: { Authorization: 'Bearer token-secret-value-456' } });
    await fake.up();
    expect(logs.join('\n')).toMatch(/TokenReview failed/);
    expect(logs.join('\n')).not.toMatch(/token-secret-value/);
  });

  test('a non-Bearer Authorization header is no credential (anonymous)', async () => {
    const { port } = await startEchoServer();
    const answer = await call(port, { headers: { Authorization: 'Basic YWRtaW46YWRtaW4=' } });
    expect(answer.body).toMatchObject({ method: 'anonymous' });
  });

  test('fails an empty bearer token ("Bearer  x", two spaces) with 401, not as anonymous, without a review', async () => {
    // GIVEN
    const { port } = await startEchoServer();
    const before = fake.calls.tokenReviews;

    // WHEN the Bearer scheme is followed by an empty token, as upstream's bearertoken splits it
    const answer = await call(port, { headers: { Authorization: 'Bearer  token-after-two-spaces' } });

    // THEN it is an invalid credential, never sent to kube-apiserver
    expect(answer.status).toBe(401);
    expect(answer.body).toEqual({ outcome: 'rejected', reason: 'invalid bearer token' });
    expect(fake.calls.tokenReviews).toBe(before);
  });
});

// ---- the ConfigMap ----------------------------------------------------------------------------

describe('the authentication ConfigMap', () => {
  async function until(condition: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  test('a reload changes the trusted requestheader CA and tells the TLS server', async () => {
    // GIVEN a running server trusting frontProxyCa
    const { auth, port, caChanges } = await startEchoServer();
    expect(fingerprints(auth.clientCaBundle())).toEqual(fingerprints([clientCa.certPem, frontProxyCa.certPem]));
    const rotatedCa = makeCa('front-proxy-ca-2');
    const rotatedProxy = makeLeaf(rotatedCa, { cn: 'front-proxy-client' });

    // WHEN kube-apiserver publishes a new requestheader CA
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: clientCa.certPem, requestheaderCaPem: rotatedCa.certPem, allowedNames: ['front-proxy-client'] }));
    await until(() => caChanges() === 1, 'the CA change');

    // THEN the new proxy is trusted, the old one is not, and the bundle changed
    const fromNew = await call(port, { cert: rotatedProxy, headers: { 'X-Remote-User': 'lena' } });
    const fromOld = await call(port, { cert: frontProxy, headers: { 'X-Remote-User': 'lena' } });
    expect(fromNew.body).toMatchObject({ method: 'request-header', user: { name: 'lena' } });
    expect(fromOld.status).toBe(401);
    expect(fingerprints(auth.clientCaBundle())).toEqual(fingerprints([clientCa.certPem, rotatedCa.certPem]));
  });

  test('a reload that leaves a CA alone keeps the verdicts of connections it verified', async () => {
    // GIVEN alice (client CA) authenticated on a keep-alive connection
    const { port, caChanges } = await startEchoServer();
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: servingCa.certPem, cert: alice.chainPem, key: alice.keyPem });
    const get = () =>
      new Promise<Answer['body']>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, servername: 'localhost', agent }, (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => resolve(JSON.parse(text)));
          })
          .on('error', reject);
      });
    const verifies = jest.spyOn(CertPool.prototype, 'verify');
    let verifiedWith: string[];
    let second: Answer['body'];
    try {
      expect(await get()).toMatchObject({ method: 'x509', user: { name: 'alice' } });
      verifies.mockClear();

      // WHEN kube-apiserver publishes a new requestheader CA and the same client CA, and alice asks again
      fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: clientCa.certPem, requestheaderCaPem: makeCa('front-proxy-ca-2').certPem, allowedNames: ['front-proxy-client'] }));
      await until(() => caChanges() === 1, 'the CA change');
      second = await get();
      verifiedWith = verifies.mock.contexts.map((pool) => pool.source);
    } finally {
      agent.destroy();
      verifies.mockRestore();
    }

    // THEN she is still alice, and only the changed pool verified her connection again
    expect(second).toMatchObject({ method: 'x509', user: { name: 'alice' } });
    expect(verifiedWith).toEqual(['ConfigMap kube-system/extension-apiserver-authentication key "requestheader-client-ca-file"']);
  });

  test('a malformed reload is ignored and the last configuration kept', async () => {
    const { port } = await startEchoServer();
    fake.setAuthConfigMap({ ...FakeKubeApiServer.authConfigMapData({ requestheaderCaPem: frontProxyCa.certPem }), 'requestheader-group-headers': 'X-Remote-Group' });
    await until(() => logs.some((l) => l.includes('ignoring reloaded')), 'the error log');
    const answer = await call(port, { cert: frontProxy, headers: { 'X-Remote-User': 'mia' } });
    expect(answer.body).toMatchObject({ method: 'request-header', user: { name: 'mia' } });
  });

  test('fails to start when the ConfigMap is forbidden, naming the RoleBinding and the command', async () => {
    // GIVEN the server's identity cannot read the ConfigMap
    fake.configMapForbidden = true;
    const kubeconfig = fake.writeKubeconfig(dir, 'token');

    // WHEN delegated auth starts
    const start = startDelegatedAuth({ authenticationKubeconfig: kubeconfig, authorizationKubeconfig: kubeconfig }, logger());

    // THEN it fails with what to do
    await expect(start).rejects.toThrow(StartupError);
    await expect(start).rejects.toThrow(
      'cannot read configmap "extension-apiserver-authentication" in namespace "kube-system": forbidden (configmaps "extension-apiserver-authentication" is forbidden: User "system:serviceaccount:wardle:wardle-apiserver" cannot get resource "configmaps" in API group "" in the namespace "kube-system"). ' +
        `The server's ServiceAccount needs a RoleBinding in namespace "kube-system" to Role "extension-apiserver-authentication-reader": ` +
        'kubectl create rolebinding -n kube-system wardle-apiserver-auth-reader --role=extension-apiserver-authentication-reader --serviceaccount=wardle:wardle-apiserver',
    );
  });

  test('fails to start when kube-apiserver rejects the credentials', async () => {
    // GIVEN a kubeconfig whose token kube-apiserver does not know
    const kubeconfig = fake.writeKubeconfig(dir, 'token');
    writeFileSync(kubeconfig, readFileSync(kubeconfig, 'utf8').replace(fake.serviceAccountToken, 'expired-token'));

    // WHEN / THEN
    await expect(startDelegatedAuth({ authenticationKubeconfig: kubeconfig, authorizationKubeconfig: kubeconfig }, logger())).rejects.toThrow(
      /rejected the server's credentials \(401 Unauthorized\) reading ConfigMap kube-system\/extension-apiserver-authentication/,
    );
  });

  test('fails to start on a malformed ConfigMap, naming the key', async () => {
    fake.setAuthConfigMap({ ...FakeKubeApiServer.authConfigMapData({ requestheaderCaPem: frontProxyCa.certPem }), 'requestheader-allowed-names': 'front-proxy-client' });
    await expect(startEchoServer()).rejects.toThrow(/key "requestheader-allowed-names" is "front-proxy-client", not a JSON array of strings/);
    fake.setAuthConfigMap({ 'client-ca-file': 'not a certificate' });
    await expect(startEchoServer()).rejects.toThrow(/key "client-ca-file" holds no PEM certificate/);
  });

  test('without the ConfigMap: ready, token only; request-header once it appears', async () => {
    // GIVEN no ConfigMap
    fake.setAuthConfigMap(undefined);
    const { auth, port } = await startEchoServer();
    expect(auth.isReady()).toBe(true);
    expect(auth.clientCaBundle()).toEqual([]);
    expect((await call(port, { cert: frontProxy, headers: { 'X-Remote-User': 'nora' } })).body).toMatchObject({ method: 'anonymous' });

    // WHEN kube-apiserver creates it
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ requestheaderCaPem: frontProxyCa.certPem }));
    await until(() => auth.clientCaBundle().length === 1, 'the ConfigMap');

    // THEN the front proxy is trusted
    expect((await call(port, { cert: frontProxy, headers: { 'X-Remote-User': 'nora' } })).body).toMatchObject({ method: 'request-header', user: { name: 'nora' } });
  });

  test('starts not ready while kube-apiserver is unreachable, and loads when it returns', async () => {
    // GIVEN kube-apiserver is down when the server starts
    const kubeconfig = fake.writeKubeconfig(dir, 'cert');
    await fake.down();
    const auth = await startDelegatedAuth({ authenticationKubeconfig: kubeconfig, authorizationKubeconfig: kubeconfig }, logger());
    running.push({ auth, server: https.createServer() });

    // THEN it is not ready
    expect(auth.isReady()).toBe(false);

    // WHEN kube-apiserver comes back
    await fake.up();

    // THEN the configuration loads and it becomes ready
    await until(() => auth.isReady(), 'readiness');
    expect(auth.clientCaBundle()).toHaveLength(2);
  });

  test('flags replace the ConfigMap: --client-ca-file and --requestheader-* with custom headers; skip-lookup reads nothing', async () => {
    // GIVEN CA files and custom header names, and a ConfigMap that would trust other CAs
    const caFile = path.join(dir, 'client-ca.crt');
    const rhFile = path.join(dir, 'requestheader-ca.crt');
    writeFileSync(caFile, clientCa.certPem);
    writeFileSync(rhFile, frontProxyCa.certPem);
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: otherCa.certPem, requestheaderCaPem: otherCa.certPem }));
    const gets = fake.calls.configMapGets + fake.calls.configMapLists;

    // WHEN started with skip-lookup and the flags
    const { port } = await startEchoServer({
      authenticationSkipLookup: true,
      clientCaFile: caFile,
      requestheaderClientCaFile: rhFile,
      requestheaderUsernameHeaders: ['X-Proxy-User'],
      requestheaderGroupHeaders: ['X-Proxy-Group'],
      requestheaderExtraHeadersPrefix: ['X-Proxy-Extra-'],
      requestheaderAllowedNames: ['front-proxy-client'],
    });
    const viaProxy = await call(port, { cert: frontProxy, headers: { 'X-Proxy-User': 'olga', 'X-Proxy-Group': ['a', 'b'], 'X-Proxy-Extra-Team': 'x', 'X-Remote-User': 'ignored' } });
    const viaCert = await call(port, { cert: alice });

    // THEN the flags' CAs and headers are used and the ConfigMap was never read
    expect(viaProxy.body).toEqual({ outcome: 'authenticated', method: 'request-header', user: { name: 'olga', groups: ['a', 'b', 'system:authenticated'], extra: { team: ['x'] } } });
    expect(viaCert.body).toMatchObject({ method: 'x509', user: { name: 'alice' } });
    expect(fake.calls.configMapGets + fake.calls.configMapLists).toBe(gets);
  });

  test('fails to start on an unreadable --client-ca-file, naming the flag', async () => {
    await expect(startEchoServer({ authenticationSkipLookup: true, clientCaFile: path.join(dir, 'missing.crt') })).rejects.toThrow(/--client-ca-file ".*missing.crt" cannot be read/);
  });
});
