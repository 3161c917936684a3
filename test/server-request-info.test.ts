/**
 * parseRequestInfo against the cases of k8s.io/apiserver's requestinfo_test.go (on an /apis group):
 * routing and the SubjectAccessReview both read what it returns.
 */
import { parseRequestInfo, RequestInfo } from '../server/request-info';

const GV = '/apis/wardle.example.com/v1alpha1';

type Expected = Pick<RequestInfo, 'isResourceRequest' | 'verb' | 'namespace' | 'resource' | 'subresource' | 'name'> & { parts?: string[] };

const resource = (verb: string, namespace: string, resourceName: string, name = '', subresource = ''): Expected => ({
  isResourceRequest: true,
  verb,
  namespace,
  resource: resourceName,
  subresource,
  name,
});

const CASES: [method: string, url: string, expected: Expected][] = [
  ['GET', `${GV}/namespaces/other/flunders`, resource('list', 'other', 'flunders')],
  ['GET', `${GV}/namespaces/other/flunders/foo`, resource('get', 'other', 'flunders', 'foo')],
  ['HEAD', `${GV}/namespaces/other/flunders/foo`, resource('get', 'other', 'flunders', 'foo')],
  ['GET', `${GV}/namespaces/other/flunders/foo/status`, resource('get', 'other', 'flunders', 'foo', 'status')],
  ['GET', `${GV}/flunders`, resource('list', '', 'flunders')],
  ['GET', `${GV}/flunders?watch=true`, resource('watch', '', 'flunders')],
  ['GET', `${GV}/flunders?watch`, resource('watch', '', 'flunders')],
  ['GET', `${GV}/flunders?watch=1`, resource('watch', '', 'flunders')],
  ['GET', `${GV}/flunders?watch=false`, resource('list', '', 'flunders')],
  ['GET', `${GV}/flunders?watch=0`, resource('list', '', 'flunders')],
  ['GET', `${GV}/namespaces/other/flunders?fieldSelector=metadata.name%3Dfoo`, resource('list', 'other', 'flunders', 'foo')],
  ['GET', `${GV}/namespaces/other/flunders?watch=1&fieldSelector=metadata.name%3D%3Dfoo`, resource('watch', 'other', 'flunders', 'foo')],
  ['GET', `${GV}/namespaces/other/flunders?fieldSelector=metadata.name!%3Dfoo`, resource('list', 'other', 'flunders')],
  ['POST', `${GV}/namespaces/other/flunders`, resource('create', 'other', 'flunders')],
  ['PUT', `${GV}/namespaces/other/flunders/foo`, resource('update', 'other', 'flunders', 'foo')],
  ['PUT', `${GV}/namespaces/other/flunders/foo/status`, resource('update', 'other', 'flunders', 'foo', 'status')],
  ['PATCH', `${GV}/namespaces/other/flunders/foo`, resource('patch', 'other', 'flunders', 'foo')],
  ['DELETE', `${GV}/namespaces/other/flunders/foo`, resource('delete', 'other', 'flunders', 'foo')],
  ['DELETE', `${GV}/namespaces/other/flunders`, resource('deletecollection', 'other', 'flunders')],
  ['GET', `${GV}/fischers/fred`, resource('get', '', 'fischers', 'fred')],
  // The namespace object itself, and its subresources (requestinfo.go namespaceSubresources).
  ['GET', `${GV}/namespaces/other`, resource('get', 'other', 'namespaces', 'other')],
  ['GET', `${GV}/namespaces/other/status`, resource('get', 'other', 'namespaces', 'other', 'status')],
  ['PUT', `${GV}/namespaces/other/finalize`, resource('update', 'other', 'namespaces', 'other', 'finalize')],
  ['GET', `${GV}/namespaces`, resource('list', '', 'namespaces')],
  // Trailing parts are kept, not interpreted.
  ['GET', `${GV}/namespaces/other/flunders/foo/status/extra`, { ...resource('get', 'other', 'flunders', 'foo', 'status'), parts: ['extra'] }],
];

describe('parseRequestInfo', () => {
  test.each(CASES)('%s %s', (method, url, expected) => {
    // WHEN
    const info = parseRequestInfo(method, url);

    // THEN
    const { parts = [], ...fields } = expected;
    expect(info).toMatchObject({ ...fields, apiPrefix: 'apis', apiGroup: 'wardle.example.com', apiVersion: 'v1alpha1', path: url.split('?')[0] });
    expect(info.parts).toEqual(parts);
  });

  test.each([
    ['GET', '/apis/wardle.example.com/v1alpha1', 'get'],
    ['GET', '/apis/wardle.example.com', 'get'],
    ['GET', '/apis', 'get'],
    ['HEAD', '/healthz', 'head'],
    ['POST', '/openapi/v3', 'post'],
    ['GET', '/api/v1/namespaces/other/pods', 'get'],
  ])('%s %s is a non-resource request with the lowercased method as verb', (method, url, verb) => {
    expect(parseRequestInfo(method, url)).toMatchObject({ isResourceRequest: false, verb, path: url, namespace: '', resource: '', name: '' });
  });
});

describe('parseRequestInfo path and query', () => {
  // Targets that come out of the URL parser unchanged take a shortcut; these must agree with it.
  test.each([
    `${GV}/namespaces/other/flunders/foo`,
    `${GV}/namespaces/other/flunders?labelSelector=a%3Db,c!=d&limit=10&continue=abc%2B%3D`,
    `${GV}/flunders?fieldSelector=metadata.name=foo&watch=1&x=a+b&y=%20&z="q"&w='s'`,
    `${GV}/namespaces/other/flunders/a%2Fb`,
    `${GV}/namespaces/other/flunders/caf\u00e9`,
    `${GV}/namespaces/./other/../other/flunders/foo`,
    `${GV}/namespaces/other/flunders/.`,
    `${GV}/namespaces/other/flunders/%2e%2E`,
    `${GV}/namespaces/other/flunders/a b`,
    `${GV}/namespaces/other/flunders/a\\b`,
    `${GV}/namespaces/other/flunders/a^b{c}|d\`e`,
    `${GV}/namespaces/other/flunders/foo#fragment`,
    `${GV}/namespaces/other/flunders?a=b#fragment`,
    `${GV}/namespaces/other/flunders?a=<b>&c=d e&f=\u00e9`,
    `/apis//wardle.example.com/v1alpha1/flunders/`,
    `${GV}/flunders?`,
    `${GV}/flunders??watch=1`,
    '/healthz?verbose',
    '*',
  ])('%s: the path and query the URL parser gives', (url) => {
    // GIVEN what the WHATWG URL parser makes of the request target
    const parsed = new URL(url, 'https://localhost');

    // WHEN
    const info = parseRequestInfo('GET', url);

    // THEN
    expect(info.path).toBe(parsed.pathname);
    expect([...info.query]).toEqual([...parsed.searchParams]);
  });
});

describe('a request target starting with //', () => {
  test('is a path, as Go\'s url.ParseRequestURI reads it, not a URL naming a host', () => {
    // GIVEN targets the WHATWG URL parser would read as scheme-relative URLs ('///' does not parse as one)
    // WHEN / THEN the path is kept whole
    expect(parseRequestInfo('GET', '//evil.example/apis/wardle.example.com/v1alpha1/flunders?watch=1')).toMatchObject({ isResourceRequest: false, path: '//evil.example/apis/wardle.example.com/v1alpha1/flunders' });
    expect([...parseRequestInfo('GET', '//evil.example/x?watch=1').query]).toEqual([['watch', '1']]);
    expect(parseRequestInfo('GET', '///')).toMatchObject({ isResourceRequest: false, path: '///' });
  });
});

describe('the query of a request without one', () => {
  test('fails to be changed: it is shared by every request without a query', () => {
    // GIVEN two requests without a query
    const first = parseRequestInfo('GET', `${GV}/namespaces/ns/flunders/a`);
    const second = parseRequestInfo('GET', `${GV}/namespaces/ns/flunders`);

    // WHEN a reader tries to change the first one's query
    // THEN it is refused, and the second one's query stays empty
    expect(() => first.query.set('watch', 'true')).toThrow('the query of a request is read-only');
    expect(() => first.query.append('watch', 'true')).toThrow('read-only');
    expect(() => first.query.delete('watch')).toThrow('read-only');
    expect(() => first.query.sort()).toThrow('read-only');
    expect([...second.query]).toEqual([]);
    expect(second.verb).toBe('list');
  });
});
