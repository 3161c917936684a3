import * as https from 'node:https';
import { Aggregator, ApiServiceRef } from './support/aggregator';
import type { SubjectAccessReviewSpec } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf, type TestCertificate } from './support/pki';
import { startServerEnvironment, ServerEnvironment } from './support/server-process';

/**
 * Security end to end, against the server process: who may speak for a user (only a front proxy
 * whose certificate chains to the request-header CA, with an allowed CN), SubjectAccessReview
 * denials, and request bodies that are malformed, too large or carry unknown fields.
 */

const GROUP = 'wardle.example.com';
const FLUNDERS = `/apis/${GROUP}/v1alpha1/namespaces/default/flunders`;
const FORGED = { 'X-Remote-User': 'system:admin', 'X-Remote-Group': 'system:masters' };

let env: ServerEnvironment;
let aggregator: Aggregator;
let apiService: ApiServiceRef;
/** SubjectAccessReviews kube-apiserver's stand-in received since the test began. */
let reviews: SubjectAccessReviewSpec[];

beforeAll(async () => {
  env = await startServerEnvironment();
  apiService = { group: GROUP, version: 'v1alpha1', service: { namespace: 'wardle', name: 'wardle-apiserver' }, caBundle: env.servingCa.certPem };
  aggregator = await Aggregator.start({ apiServices: [apiService], endpoint: { host: '127.0.0.1', port: env.server.port }, proxyClientCert: env.frontProxyClient });
}, 60_000);

afterAll(async () => {
  await aggregator?.stop();
  await env?.stop();
});

beforeEach(() => {
  const seen: SubjectAccessReviewSpec[] = [];
  reviews = seen;
  env.fake.authorize = (spec) => {
    seen.push(spec);
    return spec.user === 'alice' || spec.user === 'bob' ? { allowed: true } : { allowed: false, reason: 'no RBAC policy matched' };
  };
});

/** A request straight at the server with an optional client certificate and raw headers. */
function direct(options: { method?: string; path?: string; cert?: TestCertificate; headers?: Record<string, string>; body?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: env.server.port,
        method: options.method ?? 'GET',
        path: options.path ?? FLUNDERS,
        ca: env.servingCa.certPem,
        servername: env.serverName,
        ...(options.cert ? { cert: options.cert.chainPem, key: options.cert.keyPem } : {}),
        headers: { ...options.headers, ...(options.body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(options.body)) } : {}) },
        agent: false,
      },
      (res) => {
        let data = '';
        res.on('data', (c: Buffer) => (data += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const reviewedUsers = () => reviews.map((r) => r.user);

describe('request headers are trusted only from a verified front proxy', () => {
  test('fails to impersonate with X-Remote-User and no client certificate: the request is anonymous', async () => {
    // WHEN a client without a certificate sends forged identity headers
    const res = await direct({ headers: FORGED });
    // THEN the server reviewed system:anonymous, denied it, and never the forged user
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).message).toContain('User "system:anonymous" cannot list resource "flunders"');
    expect(reviewedUsers()).toEqual(['system:anonymous']);
    expect(reviews[0].groups).toEqual(['system:unauthenticated']);
  });

  test('fails to impersonate with a front-proxy-looking certificate from another CA: 401', async () => {
    const impostor = makeLeaf(makeCa('front-proxy-ca'), { cn: 'front-proxy-client' });
    const res = await direct({ cert: impostor, headers: FORGED });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toMatchObject({ kind: 'Status', reason: 'Unauthorized', code: 401 });
    expect(reviews).toEqual([]);
  });

  test('fails to impersonate with a request-header CA certificate whose CN is not an allowed name: 401', async () => {
    const wrongName = makeLeaf(env.requestheaderCa, { cn: 'some-other-proxy' });
    const res = await direct({ cert: wrongName, headers: FORGED });
    expect(res.status).toBe(401);
    expect(reviews).toEqual([]);
  });

  test('fails to impersonate with a valid x509 user certificate: the user is the certificate\'s, the headers are ignored', async () => {
    const bob = makeLeaf(env.clientCa, { cn: 'bob', organizations: ['developers'] });
    const res = await direct({ cert: bob, headers: FORGED });
    expect(res.status).toBe(200);
    expect(reviewedUsers()).toEqual(['bob']);
    expect(reviews[0].groups).toEqual(['developers', 'system:authenticated']);
  });

  test('the front proxy\'s certificate with an allowed CN makes the headers the user, every group header counted', async () => {
    await aggregator.checkAvailability(apiService);
    const res = await aggregator.proxy(apiService, { name: 'alice', groups: ['team-a', 'team-b'] }, { path: FLUNDERS });
    expect(res.status).toBe(200);
    expect(reviewedUsers()).toEqual(['alice']);
    expect(reviews[0].groups).toEqual(['team-a', 'team-b', 'system:authenticated']);
  });
});

describe('authorization and bodies, through the aggregator', () => {
  test('fails with 403 and the upstream message when the SubjectAccessReview denies', async () => {
    const res = await aggregator.proxy(apiService, { name: 'carol', groups: ['guests'] }, { path: FLUNDERS });
    expect(res.status).toBe(403);
    const status = JSON.parse(res.body);
    expect(status).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Forbidden', code: 403 });
    expect(status.message).toBe(`flunders.${GROUP} is forbidden: User "carol" cannot list resource "flunders" in API group "${GROUP}" in the namespace "default": no RBAC policy matched`);
    expect(reviews).toMatchObject([{ user: 'carol', groups: ['guests', 'system:authenticated'], resourceAttributes: { verb: 'list', resource: 'flunders', namespace: 'default', group: GROUP, version: 'v1alpha1' } }]);
  });

  test('fails with 400 on malformed JSON', async () => {
    const res = await aggregator.proxy(apiService, { name: 'alice' }, { method: 'POST', path: FLUNDERS, headers: { 'content-type': 'application/json' }, body: '{"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder", "metadata": {' });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ kind: 'Status', reason: 'BadRequest', code: 400 });
  });

  test('fails with 413 on a body over 3 MiB', async () => {
    const big = JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name: 'big', annotations: { a: 'x'.repeat(3 * 1024 * 1024) } }, spec: {} });
    const res = await aggregator.proxy(apiService, { name: 'alice' }, { method: 'POST', path: FLUNDERS, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(big)) }, body: big });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toMatchObject({ kind: 'Status', reason: 'RequestEntityTooLarge', code: 413 });
    // AND the server is fine afterwards
    expect((await aggregator.proxy(apiService, { name: 'alice' }, { path: FLUNDERS })).status).toBe(200);
  });

  test('unknown fields: dropped with a warning by default, rejected with fieldValidation=Strict, as kube-apiserver does', async () => {
    const body = JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name: 'with-unknown' }, spec: { reference: 'x', colour: 'red' } });
    const headers = { 'content-type': 'application/json' };
    const strict = await aggregator.proxy(apiService, { name: 'alice' }, { method: 'POST', path: `${FLUNDERS}?fieldValidation=Strict`, headers, body });
    expect(strict.status).toBe(400);
    expect(JSON.parse(strict.body).message).toContain('unknown field "spec.colour"');
    const warned = await aggregator.proxy(apiService, { name: 'alice' }, { method: 'POST', path: FLUNDERS, headers, body });
    expect(warned.status).toBe(201);
    expect(String(warned.headers.warning)).toContain('unknown field \\"spec.colour\\"');
    expect(JSON.parse(warned.body).spec).toEqual({ reference: 'x', referenceType: 'Flunder' });
  });
});
