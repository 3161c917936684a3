import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Aggregator, ApiServiceRef, headerKeyEscape } from './support/aggregator';
import { makeCa, makeLeaf } from './support/pki';

/**
 * The aggregator stand-in itself, against a recording upstream: what the other e2e suites rely on
 * it to do as kube-aggregator does (handler_proxy.go, handler_discovery.go, transport's
 * SetAuthProxyHeaders).
 */

const GROUP = 'wardle.example.com';
const servingCa = makeCa('upstream-ca');
const frontProxyCa = makeCa('front-proxy-ca');
const frontProxyClient = makeLeaf(frontProxyCa, { cn: 'front-proxy-client' });
const serving = makeLeaf(servingCa, { cn: 'wardle-apiserver.wardle.svc', dnsNames: ['wardle-apiserver.wardle.svc'], extendedKeyUsages: ['serverAuth'] });

interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  peerCn?: string;
}

let upstream: https.Server;
let seen: Seen[];
let answer: (req: IncomingMessage, res: ServerResponse) => void;
let aggregator: Aggregator;
let apiService: ApiServiceRef;

beforeAll(async () => {
  upstream = https.createServer({ cert: serving.certPem, key: serving.keyPem, ca: frontProxyCa.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
    seen.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, peerCn: peer?.subject?.CN as string | undefined });
    req.resume();
    req.on('end', () => answer(req, res));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  apiService = { group: GROUP, version: 'v1alpha1', service: { namespace: 'wardle', name: 'wardle-apiserver' }, caBundle: servingCa.certPem };
  aggregator = await Aggregator.start({
    apiServices: [apiService],
    endpoint: { host: '127.0.0.1', port: (upstream.address() as AddressInfo).port },
    proxyClientCert: frontProxyClient,
    users: { token: { name: 'alice', uid: 'u-1', groups: ['a', 'b, c'], extra: { 'Example.com/Scope%': ['x', 'y'] } } },
  });
});

afterAll(async () => {
  await aggregator.stop();
  await new Promise((resolve) => upstream.close(resolve));
});

beforeEach(() => {
  seen = [];
  answer = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"kind":"APIResourceList","resources":[{"name":"flunders"}]}');
  };
});

function viaFront(urlPath: string, headers: Record<string, string | string[]> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(urlPath, aggregator.url), { ca: aggregator.ca.certPem, headers: { authorization: 'Bearer token', ...headers } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Header lines as sent, [lowercased name, value]. */
const lines = (s: Seen) => Array.from({ length: s.rawHeaders.length / 2 }, (_, i) => [s.rawHeaders[2 * i].toLowerCase(), s.rawHeaders[2 * i + 1]] as const);

test('headerKeyEscape follows client-go: token characters kept, others and "%" percent-encoded', () => {
  expect(headerKeyEscape('example.com/scope')).toBe('example.com%2Fscope');
  expect(headerKeyEscape('a%b c')).toBe('a%25b%20c');
  expect(headerKeyEscape('ünï')).toBe('%C3%BCn%C3%AF');
  expect(headerKeyEscape("Plain-Key_1.~!#$&'*+^`|")).toBe("Plain-Key_1.~!#$&'*+^`|");
});

test('fails with 503 before the availability check passed, then proxies', async () => {
  const fresh = await Aggregator.start({ apiServices: [apiService], endpoint: { host: '127.0.0.1', port: (upstream.address() as AddressInfo).port }, proxyClientCert: frontProxyClient, users: { token: { name: 'alice' } } });
  try {
    const status = () =>
      new Promise<number>((resolve) =>
        https.get(new URL(`/apis/${GROUP}/v1alpha1`, fresh.url), { ca: fresh.ca.certPem, headers: { authorization: 'Bearer token' } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }),
      );
    expect(await status()).toBe(503);
    expect(seen).toEqual([]);
    expect(await fresh.checkAvailability()).toMatchObject({ available: true });
    // THEN the check went as system:kube-aggregator in system:masters with the front-proxy certificate
    const check = seen[seen.length - 1];
    expect(check.peerCn).toBe('front-proxy-client');
    expect(lines(check).filter(([n]) => n.startsWith('x-remote-'))).toEqual([['x-remote-user', 'system:kube-aggregator'], ['x-remote-group', 'system:masters']]);
    expect(await status()).toBe(200);
  } finally {
    await fresh.stop();
  }
});

test('proxies with the user as X-Remote-* headers, one line per group and extra value, Authorization and Impersonate-* dropped', async () => {
  await aggregator.checkAvailability();
  seen = [];
  const res = await viaFront(`/apis/${GROUP}/v1alpha1/namespaces/ns/flunders?limit=5`, { 'impersonate-user': 'root', 'impersonate-group': 'system:masters', 'x-remote-user': 'mallory', 'x-remote-extra-foo': 'bar' });
  expect(res.status).toBe(200);
  expect(seen).toHaveLength(1);
  const [request] = seen;
  expect(request.url).toBe(`/apis/${GROUP}/v1alpha1/namespaces/ns/flunders?limit=5`);
  const sent = lines(request);
  expect(sent.filter(([n]) => n === 'authorization' || n.startsWith('impersonate-'))).toEqual([]);
  expect(sent.filter(([n]) => n.startsWith('x-remote-'))).toEqual([
    ['x-remote-user', 'alice'],
    ['x-remote-uid', 'u-1'],
    ['x-remote-group', 'a'],
    ['x-remote-group', 'b, c'],
    ['x-remote-extra-example.com%2fscope%25', 'x'],
    ['x-remote-extra-example.com%2fscope%25', 'y'],
  ]);
  expect(sent.find(([n]) => n === 'audit-id')?.[1]).toMatch(/^[0-9a-f-]{36}$/);
});

test('proxies only /apis/<group>/<version> of a registered APIService', async () => {
  await aggregator.checkAvailability();
  seen = [];
  for (const path of ['/apis', `/apis/${GROUP}`, '/openapi/v2', '/version', `/apis/other.example.com/v1/things`]) {
    expect((await viaFront(path)).status).toBe(404);
  }
  expect((await viaFront('/apis/x', { authorization: 'Bearer wrong' })).status).toBe(401);
  expect(seen).toEqual([]);
});

test('fails with 502 when the server redirects', async () => {
  await aggregator.checkAvailability();
  answer = (_req, res) => {
    res.writeHead(302, { location: 'https://elsewhere/' });
    res.end();
  };
  expect((await viaFront(`/apis/${GROUP}/v1alpha1/flunders`)).status).toBe(502);
  expect(await aggregator.checkAvailability()).toMatchObject({ available: false, reason: 'FailedDiscoveryCheck' });
});

describe('aggregated discovery', () => {
  test('1.28 asks for v2beta1 and falls back to the legacy APIResourceList only on 406', async () => {
    const agg128 = await Aggregator.start({ apiServices: [apiService], endpoint: { host: '127.0.0.1', port: (upstream.address() as AddressInfo).port }, proxyClientCert: frontProxyClient, kubeVersion: '1.28' });
    try {
      answer = (req, res) => {
        res.writeHead(req.url === '/apis' ? 406 : 200, { 'content-type': 'application/json' });
        res.end(req.url === '/apis' ? '{}' : '{"kind":"APIResourceList","resources":[{"name":"flunders"}]}');
      };
      const fallback = await agg128.discover();
      expect(fallback).toMatchObject({ source: 'legacy', resources: [{ name: 'flunders' }] });
      expect(lines(seen[0]).find(([n]) => n === 'accept')?.[1]).toBe('application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList');

      // WHEN the server answers 200 with the legacy APIGroupList instead: the group has no resources (the trap)
      answer = (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"kind":"APIGroupList","apiVersion":"v1","groups":[]}');
      };
      expect(await agg128.discover()).toMatchObject({ source: 'failed', resources: [] });
      // AND a 404 too
      answer = (_req, res) => {
        res.writeHead(404);
        res.end();
      };
      expect(await agg128.discover()).toMatchObject({ source: 'failed', resources: [] });
    } finally {
      await agg128.stop();
    }
  });

  test('1.33 asks for v2 and reads the group version from the APIGroupDiscoveryList', async () => {
    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList' });
      res.end(JSON.stringify({ kind: 'APIGroupDiscoveryList', apiVersion: 'apidiscovery.k8s.io/v2', items: [{ metadata: { name: GROUP }, versions: [{ version: 'v1alpha1', resources: [{ resource: 'flunders' }] }] }] }));
    };
    expect(await aggregator.discover()).toMatchObject({ source: 'aggregated', resources: [{ resource: 'flunders' }] });
    expect(lines(seen[0]).find(([n]) => n === 'accept')?.[1]).toBe('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList');
  });
});
