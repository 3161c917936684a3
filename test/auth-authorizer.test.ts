/**
 * Delegated authorization against the kube-apiserver stand-in: SubjectAccessReview specs on the
 * wire, caching with an injectable clock, failing closed, the always-allowed paths and groups,
 * and the 403 wording.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { forbiddenError, startDelegatedAuth } from '../server/auth';
import { createDelegatedAuthorizer, reviewKey, subjectAccessReviewSpec, type DelegatedAuthorizerOptions } from '../server/auth/authorizer';
import type { UserInfo } from '../server/auth/types';
import { loadKubeClient, type KubeClient } from '../server/kube-client';
import { parseRequestInfo, type RequestInfo } from '../server/request-info';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf, makeServerCert } from './support/pki';

let fake: FakeKubeApiServer;
let dir: string;
let client: KubeClient;
let clock: number;

const alice: UserInfo = { name: 'alice', uid: 'uid-a', groups: ['dev', 'system:authenticated'], extra: { scopes: ['read', 'write'], 'example.com/tenant': ['blue'] } };
const anonymous: UserInfo = { name: 'system:anonymous', groups: ['system:unauthenticated'], extra: {} };
const FLUNDERS = '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders';

function authorizer(options: Partial<DelegatedAuthorizerOptions> = {}) {
  return createDelegatedAuthorizer({ client, now: () => clock, ...options });
}

beforeAll(async () => {
  fake = await FakeKubeApiServer.start();
  dir = mkdtempSync(path.join(tmpdir(), 'auth-authz-'));
  client = loadKubeClient({ kubeconfig: fake.writeKubeconfig(dir, 'token') });
});

afterAll(async () => {
  client.close();
  await fake.stop();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  clock = Date.now();
  fake.authorize = (spec) => (spec.user === 'alice' ? { allowed: true, reason: 'RBAC: allowed by RoleBinding "dev/ns1"' } : { allowed: false, reason: 'no RBAC policy matched' });
});

describe('SubjectAccessReview', () => {
  test('sends the user and the resource attributes of a resource request', async () => {
    // WHEN alice reads a Flunder's status
    const decision = await authorizer().authorize(alice, parseRequestInfo('GET', `${FLUNDERS}/f1/status`));

    // THEN kube-apiserver was asked with the authorization.k8s.io/v1 spec, and allowed it
    expect(decision).toEqual({ allowed: true, reason: 'RBAC: allowed by RoleBinding "dev/ns1"' });
    expect(fake.subjectAccessReviewSpecs.at(-1)).toEqual({
      resourceAttributes: { namespace: 'ns1', verb: 'get', group: 'wardle.example.com', version: 'v1alpha1', resource: 'flunders', subresource: 'status', name: 'f1' },
      user: 'alice',
      uid: 'uid-a',
      groups: ['dev', 'system:authenticated'],
      extra: { 'example.com/tenant': ['blue'], scopes: ['read', 'write'] },
    });
  });

  test('sends path and verb for a non-resource request, and the name from a metadata.name fieldSelector', async () => {
    const authz = authorizer();
    await authz.authorize(alice, parseRequestInfo('GET', '/apis/wardle.example.com/v1alpha1'));
    expect(fake.subjectAccessReviewSpecs.at(-1)).toMatchObject({ nonResourceAttributes: { path: '/apis/wardle.example.com/v1alpha1', verb: 'get' } });
    expect(fake.subjectAccessReviewSpecs.at(-1)).not.toHaveProperty('resourceAttributes');

    await authz.authorize(alice, parseRequestInfo('GET', '/apis/wardle.example.com/v1alpha1/fischers?watch=1&fieldSelector=metadata.name%3Dfred'));
    expect(fake.subjectAccessReviewSpecs.at(-1)?.resourceAttributes).toEqual({ verb: 'watch', group: 'wardle.example.com', version: 'v1alpha1', resource: 'fischers', name: 'fred' });
  });

  test('denies with the reviewer reason; "no opinion" and explicit denial both deny', async () => {
    fake.authorize = (spec) => (spec.user === 'bob' ? { allowed: false, denied: true, reason: 'denied by policy' } : { allowed: false });
    const authz = authorizer();
    expect(await authz.authorize({ ...alice, name: 'bob' }, parseRequestInfo('DELETE', `${FLUNDERS}/f1`))).toEqual({ allowed: false, reason: 'denied by policy' });
    expect(await authz.authorize({ ...alice, name: 'carl' }, parseRequestInfo('DELETE', `${FLUNDERS}/f1`))).toEqual({ allowed: false, reason: '' });
  });

  test('the cache key is equal exactly when the SubjectAccessReview specs are, separators and digits inside values included', () => {
    // GIVEN attribute values that hold what a naive join would read as separators or lengths
    const values = ['', 'a', '1:a', 'a1:', ':', '1:', '0:', 'r', 'n1:a', '"', '","', '\u0000'];
    const resource = parseRequestInfo('GET', `${FLUNDERS}/x`);
    const nonResource = parseRequestInfo('GET', '/healthz');
    const requests: RequestInfo[] = [];
    for (const namespace of values) for (const name of values) for (const subresource of values) requests.push({ ...resource, namespace, name, subresource });
    for (const resourceName of values) for (const verb of ['get', 'list']) requests.push({ ...resource, resource: resourceName, verb, apiGroup: resourceName.slice(1), name: 'r' });
    for (const path of values) for (const verb of values) requests.push({ ...nonResource, path, verb });
    const users = values.map((name): UserInfo => ({ ...alice, name }));
    users.push({ ...alice, groups: ['dev', 'system:authenticated', 'x'] }, { ...alice, extra: {} }, { ...alice, uid: undefined });

    // WHEN the keys and specs of every user × request are computed
    const specOfKey = new Map<string, string>();
    const keyOfSpec = new Map<string, string>();
    const collisions: string[] = [];
    for (const user of users) {
      for (const request of requests) {
        const key = reviewKey(user, request);
        const spec = JSON.stringify(subjectAccessReviewSpec(user, request));
        // THEN one key never stands for two specs, nor one spec for two keys
        if ((specOfKey.get(key) ?? spec) !== spec || (keyOfSpec.get(spec) ?? key) !== key) collisions.push(`${key} / ${spec}`);
        specOfKey.set(key, spec);
        keyOfSpec.set(spec, key);
      }
    }
    expect(collisions).toEqual([]);
    expect(specOfKey.size).toBeGreaterThan(20_000);
  });

  test('caches allowed and denied 10 s each, keyed by the whole spec', async () => {
    // GIVEN one authorizer with the default TTLs
    const authz = authorizer();
    const before = fake.calls.subjectAccessReviews;
    const list = parseRequestInfo('GET', FLUNDERS);

    // WHEN alice (allowed) and dave (denied) list three times within 10 s
    for (let i = 0; i < 3; i++) {
      expect((await authz.authorize(alice, list)).allowed).toBe(true);
      expect((await authz.authorize({ ...alice, name: 'dave' }, list)).allowed).toBe(false);
      clock += 3000;
    }

    // THEN kube-apiserver was asked once for each
    expect(fake.calls.subjectAccessReviews).toBe(before + 2);

    // WHEN alice lists in another namespace, and with another group
    await authz.authorize(alice, parseRequestInfo('GET', '/apis/wardle.example.com/v1alpha1/namespaces/ns2/flunders'));
    await authz.authorize({ ...alice, groups: ['other'] }, list);

    // THEN those are different questions
    expect(fake.calls.subjectAccessReviews).toBe(before + 4);

    // WHEN 10 s have passed since the first answers, and alice lost her access
    clock += 1001;
    fake.authorize = () => ({ allowed: false, reason: 'RoleBinding removed' });

    // THEN kube-apiserver is asked again, and the new answer holds
    expect(await authz.authorize(alice, list)).toEqual({ allowed: false, reason: 'RoleBinding removed' });
    expect(fake.calls.subjectAccessReviews).toBe(before + 5);
  });

  test('allowed and denied TTLs are separate', async () => {
    const authz = authorizer({ allowedCacheTtlMs: 20_000, deniedCacheTtlMs: 5_000 });
    const list = parseRequestInfo('GET', FLUNDERS);
    const before = fake.calls.subjectAccessReviews;
    await authz.authorize(alice, list);
    await authz.authorize({ ...alice, name: 'erin' }, list);
    clock += 6000;
    await authz.authorize(alice, list);
    await authz.authorize({ ...alice, name: 'erin' }, list);
    expect(fake.calls.subjectAccessReviews).toBe(before + 3);
  });

  test('concurrent identical questions share one review', async () => {
    const authz = authorizer();
    const before = fake.calls.subjectAccessReviews;
    const decisions = await Promise.all(Array.from({ length: 10 }, () => authz.authorize(alice, parseRequestInfo('GET', FLUNDERS))));
    expect(decisions.every((d) => d.allowed)).toBe(true);
    expect(fake.calls.subjectAccessReviews).toBe(before + 1);
  });

  test('a cached answer comes synchronously, for the same user object and for an equal one', async () => {
    // GIVEN alice's list was reviewed once, by a frozen user object (as the authenticator's)
    const authz = authorizer();
    const frozen: UserInfo = Object.freeze({ ...alice, groups: Object.freeze([...alice.groups]) });
    const list = parseRequestInfo('GET', FLUNDERS);
    expect(await authz.authorize(frozen, list)).toMatchObject({ allowed: true });
    const before = fake.calls.subjectAccessReviews;

    // WHEN the same question is asked again, by that object, by an equal new one, and by a user with other groups
    const again = authz.authorize(frozen, list);
    const equal = authz.authorize({ ...alice, groups: [...alice.groups] }, list);
    const otherGroups = authz.authorize(Object.freeze({ ...alice, groups: Object.freeze(['ops']) }), list);

    // THEN the first two are answered from the cache without a promise; the last one is a new review
    expect(again).toEqual({ allowed: true, reason: 'RBAC: allowed by RoleBinding "dev/ns1"' });
    expect(equal).toEqual({ allowed: true, reason: 'RBAC: allowed by RoleBinding "dev/ns1"' });
    expect(otherGroups).toBeInstanceOf(Promise);
    await otherGroups;
    expect(fake.calls.subjectAccessReviews).toBe(before + 1);
  });

  test('fails closed while kube-apiserver is down, without caching the failure, and recovers', async () => {
    // GIVEN alice is allowed, but kube-apiserver is down
    const authz = authorizer();
    await fake.down();
    const during = await authz.authorize(alice, parseRequestInfo('GET', FLUNDERS));

    // WHEN it comes back
    await fake.up();
    const after = await authz.authorize(alice, parseRequestInfo('GET', FLUNDERS));

    // THEN the request during the outage was denied, the next one allowed
    expect(during).toEqual({ allowed: false, reason: 'the authorization check could not be made' });
    expect(after.allowed).toBe(true);
  });

  test('fails closed when kube-apiserver refuses the review (no auth-delegator binding), without caching', async () => {
    // GIVEN the server's identity is not allowed to create SubjectAccessReviews (the stand-in answers 401 to unknown tokens)
    const stranger = loadKubeClient({ kubeconfig: fake.writeKubeconfig(path.join(dir, 'stranger'), 'token') });
    fake.setToken(fake.serviceAccountToken, undefined);
    try {
      const authz = createDelegatedAuthorizer({ client: stranger, now: () => clock });
      expect(await authz.authorize(alice, parseRequestInfo('GET', FLUNDERS))).toEqual({ allowed: false, reason: 'the authorization check could not be made' });
      expect(authz.cacheSize()).toBe(0);
    } finally {
      fake.setToken(fake.serviceAccountToken, { user: fake.serviceAccountUser });
      stranger.close();
    }
  });
});

describe('always allowed', () => {
  test('/healthz, /readyz and /livez for anyone, without asking; other paths are asked', async () => {
    const authz = authorizer();
    const before = fake.calls.subjectAccessReviews;
    for (const p of ['/healthz', '/readyz', '/livez']) {
      expect((await authz.authorize(anonymous, parseRequestInfo('GET', `${p}?verbose`))).allowed).toBe(true);
    }
    expect(fake.calls.subjectAccessReviews).toBe(before);

    // Upstream matches exact paths unless a pattern ends in "*": a per-check path is asked.
    expect((await authz.authorize(anonymous, parseRequestInfo('GET', '/readyz/ping'))).allowed).toBe(false);
    expect((await authz.authorize(anonymous, parseRequestInfo('GET', '/metrics'))).allowed).toBe(false);
    expect(fake.calls.subjectAccessReviews).toBe(before + 2);
  });

  test('"prefix*" patterns allow everything under them, for non-resource requests only', async () => {
    const authz = authorizer({ alwaysAllowPaths: ['/healthz', '/readyz/*'] });
    const before = fake.calls.subjectAccessReviews;
    expect((await authz.authorize(anonymous, parseRequestInfo('GET', '/readyz/ping'))).allowed).toBe(true);
    expect((await authz.authorize(anonymous, parseRequestInfo('GET', '/healthz'))).allowed).toBe(true);
    expect(fake.calls.subjectAccessReviews).toBe(before);
  });

  test('fails on a pattern with a "*" that is not trailing', () => {
    expect(() => authorizer({ alwaysAllowPaths: ['/a*/b'] })).toThrow(/always-allow path "\/a\*\/b" is invalid: only a trailing "\*" is allowed/);
  });

  test('system:masters is allowed everything without asking', async () => {
    const authz = authorizer();
    const before = fake.calls.subjectAccessReviews;
    const aggregator: UserInfo = { name: 'system:kube-aggregator', groups: ['system:masters', 'system:authenticated'], extra: {} };
    expect(await authz.authorize(aggregator, parseRequestInfo('DELETE', FLUNDERS))).toEqual({ allowed: true, reason: '' }); // upstream's privilegedGroupAuthorizer gives no reason
    expect(await authz.authorize(aggregator, parseRequestInfo('GET', '/apis/wardle.example.com/v1alpha1'))).toMatchObject({ allowed: true });
    expect(fake.calls.subjectAccessReviews).toBe(before);
  });
});

describe('forbiddenError', () => {
  test('words the 403 as kube-apiserver does', () => {
    const bob: UserInfo = { name: 'bob', groups: [], extra: {} };
    expect(forbiddenError(bob, parseRequestInfo('GET', FLUNDERS)).status).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'flunders.wardle.example.com is forbidden: User "bob" cannot list resource "flunders" in API group "wardle.example.com" in the namespace "ns1"',
      reason: 'Forbidden',
      details: { group: 'wardle.example.com', kind: 'flunders' },
      code: 403,
    });
    expect(forbiddenError(bob, parseRequestInfo('PUT', '/apis/wardle.example.com/v1alpha1/fischers/fred/status'), 'no RBAC policy matched').status.message).toBe(
      'fischers.wardle.example.com "fred" is forbidden: User "bob" cannot update resource "fischers/status" in API group "wardle.example.com" at the cluster scope: no RBAC policy matched',
    );
    expect(forbiddenError(bob, parseRequestInfo('GET', '/foo')).status.message).toBe('forbidden: User "bob" cannot get path "/foo"');
  });

  test('quotes as Go\'s %q and sanitizes markup in the user-controlled part, as responsewriters.Forbidden', () => {
    // GIVEN a user name (from a token or a front proxy) holding quotes and markup
    const mallory: UserInfo = { name: 'mal"<b>&', groups: [], extra: {} };

    // WHEN it is denied a resource and a path
    const resource = forbiddenError(mallory, parseRequestInfo('GET', FLUNDERS), 'no <rule>');
    const path = forbiddenError(mallory, parseRequestInfo('GET', '/foo'));

    // THEN the quote is escaped, the markup is entity-encoded; the authorizer's reason is appended as is
    expect(resource.status.message).toBe(
      'flunders.wardle.example.com is forbidden: User "mal\\"&lt;b&gt;&amp;" cannot list resource "flunders" in API group "wardle.example.com" in the namespace "ns1": no <rule>',
    );
    expect(path.status.message).toBe('forbidden: User "mal\\"&lt;b&gt;&amp;" cannot get path "/foo"');
  });
});

describe('end to end', () => {
  test("a front proxy's user is authorized with its groups and extras, and a denial is a 403 Status", async () => {
    // GIVEN delegated auth trusting a front proxy, and kube-apiserver allowing only group "wardle-admins"
    const frontProxyCa = makeCa('front-proxy-ca');
    const servingCa = makeCa('serving-ca');
    const serving = makeServerCert(servingCa);
    const frontProxy = makeLeaf(frontProxyCa, { cn: 'front-proxy-client' });
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ requestheaderCaPem: frontProxyCa.certPem }));
    fake.authorize = (spec) => ({ allowed: (spec.groups ?? []).includes('wardle-admins') });
    const kubeconfig = fake.writeKubeconfig(path.join(dir, 'e2e'), 'cert');
    const auth = await startDelegatedAuth({ authenticationKubeconfig: kubeconfig, authorizationKubeconfig: kubeconfig }, pino({ level: 'silent' }));
    const server = https.createServer({ cert: serving.certPem, key: serving.keyPem, ca: auth.clientCaBundle(), requestCert: true, rejectUnauthorized: false }, (req, res) => {
      void (async () => {
        const authn = await auth.authenticator.authenticate(req);
        if (authn.outcome !== 'authenticated') throw new Error('unexpected 401');
        const info = parseRequestInfo(req.method ?? 'GET', req.url ?? '/');
        const decision = await auth.authorizer.authorize(authn.user, info);
        const body = decision.allowed ? { user: authn.user } : forbiddenError(authn.user, info, decision.reason).status;
        res.writeHead(decision.allowed ? 200 : 403, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      })();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const call = (groups: string[]) =>
      new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
        https
          .get(
            {
              host: '127.0.0.1',
              port: (server.address() as AddressInfo).port,
              path: FLUNDERS,
              servername: 'localhost',
              ca: servingCa.certPem,
              cert: frontProxy.certPem,
              key: frontProxy.keyPem,
              agent: false,
              headers: { 'X-Remote-User': 'zoe', 'X-Remote-Group': groups, 'X-Remote-Extra-Reason': 'on call' },
            },
            (res) => {
              let text = '';
              res.on('data', (c: Buffer) => (text += c.toString()));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
            },
          )
          .on('error', reject);
      });

    try {
      // WHEN zoe comes through the front proxy with and without the group
      const allowed = await call(['wardle-admins', 'dev']);
      const denied = await call(['dev']);

      // THEN the SAR carried the headers' identity, and the denial is kube-apiserver's 403
      expect(allowed.status).toBe(200);
      expect(fake.subjectAccessReviewSpecs.at(-2)).toMatchObject({ user: 'zoe', groups: ['wardle-admins', 'dev', 'system:authenticated'], extra: { reason: ['on call'] } });
      expect(denied).toEqual({
        status: 403,
        body: expect.objectContaining({
          code: 403,
          reason: 'Forbidden',
          message: 'flunders.wardle.example.com is forbidden: User "zoe" cannot list resource "flunders" in API group "wardle.example.com" in the namespace "ns1"',
        }),
      });
    } finally {
      auth.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
