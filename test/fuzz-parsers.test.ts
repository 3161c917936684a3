/**
 * Property-based tests (fast-check) of the request parsers, called directly: many cases each.
 * Every parser either returns a value or throws a StatusError with a 4xx metav1.Status; never
 * another exception. Where k8s.io/apimachinery defines the grammar (label and field selectors,
 * request info), generated valid inputs must parse and match as its parser would.
 *
 * Seeds are random; fast-check prints the seed and the shrunk counterexample on failure
 * (rerun one with `fc.assert(..., { seed, path })`). FUZZ_RUNS scales the number of runs.
 */
import fc from 'fast-check';
import { negotiate, parseAccept, parseContentType, RESOURCE_OFFERS } from '../server/content';
import { decodeContinue, encodeContinue, parseListQuery } from '../server/registry/list-options';
import { applyObjectPatch, checkPatch, JSON_PATCH, MERGE_PATCH } from '../server/registry/patch';
import { matchesFields, parseFieldSelector, parseLabelSelector } from '../server/registry/selectors';
import { parseRequestInfo } from '../server/request-info';
import { StatusError } from '../server/status';
import { goMatches, LabelRequirement } from './support/go-label-selector';

const RUNS = Math.max(1, Math.round(Number(process.env.FUZZ_RUNS ?? 1) * 2000));

/** Runs `fn`; a throw must be a StatusError carrying a 4xx Failure Status whose code is its HTTP code. */
function returnsOrRejects<T>(fn: () => T): { value?: T; status?: StatusError['status'] } {
  try {
    return { value: fn() };
  } catch (error) {
    if (!(error instanceof StatusError)) throw new Error(`threw ${String(error)} instead of a StatusError`, { cause: error });
    const status = error.status;
    expect(status).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure' });
    expect(status.code).toBeGreaterThanOrEqual(400);
    expect(status.code).toBeLessThan(500);
    expect(typeof status.reason).toBe('string');
    expect(status.reason.length).toBeGreaterThan(0);
    expect(typeof status.message).toBe('string');
    return { status };
  }
}

/** Characters that matter to the parsers, mixed with anything. */
const SPECIAL = fc.constantFrom('/', '%', '%2F', '%2f', '%2e', '%zz', '..', '.', '?', '&', '=', '!', ',', '(', ')', ' ', '\t', '\u00a0', '\u3000', '<', '>', '\\', '"', '#', 'é', '😀', '\u0000');
const fuzzText = (maxLength = 40) =>
  fc.array(fc.oneof(fc.string({ maxLength: 4 }), SPECIAL, fc.string({ unit: 'binary', maxLength: 3 })), { maxLength }).map((parts) => parts.join(''));

// ---- request info ---------------------------------------------------------------------------

/**
 * k8s.io/apiserver requestinfo.go for /apis/<group>/<version>/…, on paths of non-empty,
 * unencoded segments: the reference the parser is compared with.
 */
function goRequestInfo(method: string, segments: string[], query: URLSearchParams) {
  const nonResource = { isResourceRequest: false, verb: method.toLowerCase() };
  if (segments.length < 4 || segments[0] !== 'apis') return nonResource;
  let parts = segments.slice(3);
  let verb = ({ POST: 'create', GET: 'get', HEAD: 'get', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<string, string>)[method] ?? method.toLowerCase();
  let namespace = '';
  if (parts[0] === 'namespaces' && parts.length > 1) {
    namespace = parts[1];
    if (parts.length > 2 && parts[2] !== 'status' && parts[2] !== 'finalize') parts = parts.slice(2);
  }
  const resource = parts[0] ?? '';
  const name = parts[1] ?? '';
  const subresource = parts[2] ?? '';
  if (verb === 'get' && name === '') {
    const watch = query.getAll('watch');
    verb = watch.length > 0 && !['false', '0'].includes(watch[0].toLowerCase()) ? 'watch' : 'list';
  }
  if (verb === 'delete' && name === '') verb = 'deletecollection';
  return { isResourceRequest: true, verb, apiGroup: segments[1], apiVersion: segments[2], namespace, resource, name, subresource };
}

const PATH_SEGMENT = fc.oneof(
  fc.constantFrom('apis', 'wardle.example.com', 'v1alpha1', 'v1beta1', 'namespaces', 'default', 'flunders', 'fischers', 'status', 'finalize', 'watch', 'proxy', 'in'),
  fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,20}$/),
);
const METHOD = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'get');

describe('parseRequestInfo', () => {
  test('on paths of plain segments, agrees with requestinfo.go', () => {
    fc.assert(
      fc.property(METHOD, fc.array(PATH_SEGMENT, { maxLength: 9 }), fc.constantFrom('', '?watch', '?watch=1', '?watch=false', '?watch=0', '?watch=FALSE', '?watch=yes', '?watch=0&watch=1', '?limit=1'), (method, segments, query) => {
        // GIVEN /apis/… made of segments that need no decoding
        const url = `/${segments.join('/')}${query}`;

        // WHEN
        const info = parseRequestInfo(method, url);

        // THEN it is what the Go parser makes of it
        const expected = goRequestInfo(method, segments, new URLSearchParams(query));
        expect(info).toMatchObject(expected);
        expect(info.path).toBe(`/${segments.join('/')}`);
      }),
      { numRuns: RUNS },
    );
  });

  test('on any request target, returns a request info or throws a URIError (the handler answers 400), and never a group or version with a slash', () => {
    fc.assert(
      fc.property(METHOD, fc.array(fc.oneof(PATH_SEGMENT, fuzzText(12), fc.string({ minLength: 0, maxLength: 300 })), { maxLength: 10 }), fc.constantFrom('/', '//', '', '///', '/./', '/../'), fuzzText(), (method, segments, lead, query) => {
        const url = `${lead}${segments.join('/')}${query ? `?${query}` : ''}`;
        let info;
        try {
          info = parseRequestInfo(method, url);
        } catch (error) {
          // A malformed percent-encoding; or a target that is not a path (absolute-form) and does not parse as a URL.
          // (By name: node's URL parser throws its own realm's TypeError.)
          if (url.startsWith('/')) expect((error as Error).name).toBe('URIError');
          else expect(['URIError', 'TypeError']).toContain((error as Error).name);
          return;
        }
        expect(typeof info.path).toBe('string');
        if (url.startsWith('/')) expect(info.path.startsWith('/')).toBe(true);
        expect(info.query).toBeInstanceOf(URLSearchParams);
        if (info.isResourceRequest) {
          expect(info.apiPrefix).toBe('apis');
          for (const field of [info.apiGroup, info.apiVersion]) expect(field).not.toContain('/');
          expect(info.resource.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- label selectors ------------------------------------------------------------------------

const LABEL_NAME = fc.stringMatching(/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?$/);
const LABEL_KEY = fc.oneof(LABEL_NAME, fc.tuple(fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z0-9]{1,5})?$/), LABEL_NAME).map(([p, n]) => `${p}/${n}`), fc.constantFrom('in', 'notin', 'a', 'b'));
const LABEL_VALUE = fc.oneof(fc.constant(''), LABEL_NAME, fc.constantFrom('a', 'b', 'in', 'notin', '1', '10', '007'));
/** Go's lexer skips ' ', '\t', '\r' and '\n' between tokens, and only those. */
const WS = fc.constantFrom('', '', ' ', '  ', '\t', '\n', '\r');

const LABEL_REQUIREMENT: fc.Arbitrary<LabelRequirement> = fc.oneof(
  fc.record({ op: fc.constantFrom('exists' as const, '!' as const), key: LABEL_KEY }),
  fc.record({ op: fc.constantFrom('=' as const, '==' as const, '!=' as const), key: LABEL_KEY, value: LABEL_VALUE }),
  // Empty items inside a list are examples below: whether Go's parser takes them depends on what follows (`(a,,b)` yes, `(a,,)` no).
  fc.record({ op: fc.constantFrom('in' as const, 'notin' as const), key: LABEL_KEY, values: fc.array(LABEL_VALUE.filter((v) => v !== ''), { maxLength: 4 }) }),
  fc.record({ op: fc.constantFrom('>' as const, '<' as const), key: LABEL_KEY, value: fc.integer({ min: -1000, max: 1000 }).map(String) }),
);

/** A requirement as text, with whitespace where Go's lexer allows it. */
function renderRequirement(r: LabelRequirement, ws: () => string): string {
  switch (r.op) {
    case 'exists':
      return `${ws()}${r.key}${ws()}`;
    case '!':
      return `${ws()}!${ws()}${r.key}${ws()}`;
    case 'in':
    case 'notin':
      // `in`/`notin` need a separator before them; `()` is the set {""} in Go's parser.
      return `${ws()}${r.key} ${ws()}${r.op}${ws()}(${ws()}${r.values.join(`${ws()},${ws()}`)}${ws()})${ws()}`;
    default:
      return `${ws()}${r.key}${ws()}${r.op}${ws()}${r.value}${ws()}`;
  }
}

const LABELS = fc.dictionary(LABEL_KEY, LABEL_VALUE, { maxKeys: 5 });

describe('label selectors', () => {
  test('any text parses or is refused with a 400 Status', () => {
    fc.assert(
      fc.property(fc.oneof(fuzzText(), fc.array(fc.oneof(LABEL_REQUIREMENT.map((r) => renderRequirement(r, () => ' ')), SPECIAL, fc.string({ maxLength: 3 })), { maxLength: 6 }).map((p) => p.join(''))), LABELS, (text, labels) => {
        const { value, status } = returnsOrRejects(() => parseLabelSelector(text));
        if (status) expect(status.code).toBe(400);
        else if (value) expect(typeof value(labels)).toBe('boolean');
      }),
      { numRuns: RUNS },
    );
  });

  test('a selector matches labels as stored, whatever they hold (null from "labels": null, a list, a string): never throws', () => {
    fc.assert(
      fc.property(fc.array(LABEL_REQUIREMENT, { minLength: 1, maxLength: 3 }), fc.jsonValue({ maxDepth: 2 }), (requirements, stored) => {
        const selector = parseLabelSelector(requirements.map((r) => renderRequirement(r, () => ' ')).join(','))!;
        expect(typeof selector(stored as Record<string, string>)).toBe('boolean');
      }),
      { numRuns: RUNS },
    );
  });

  test('a valid selector, written with any whitespace the Go lexer skips, parses and matches as labels.Parse does', () => {
    fc.assert(
      fc.property(fc.array(LABEL_REQUIREMENT, { minLength: 1, maxLength: 5 }), fc.infiniteStream(WS), fc.array(LABELS, { minLength: 1, maxLength: 6 }), (requirements, spaces, labelSets) => {
        // GIVEN the selector as text
        const text = requirements.map((r) => renderRequirement(r, () => spaces.next().value)).join(',');

        // WHEN
        const selector = parseLabelSelector(text);

        // THEN it matches a label set exactly when every requirement does
        expect(selector).toBeDefined();
        for (const labels of labelSets) {
          const withSome = { ...labels, ...Object.fromEntries(requirements.slice(0, 2).map((r) => [r.key, 'value' in r ? r.value : 'in' === r.op ? r.values[0] ?? '' : 'x'])) };
          for (const set of [labels, withSome]) expect(selector!(set)).toBe(requirements.every((r) => goMatches(r, set)));
        }
        expect(selector!(undefined)).toBe(requirements.every((r) => goMatches(r, {})));
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- field selectors ------------------------------------------------------------------------

/** fields.EscapeValue. */
const escapeFieldValue = (value: string) => value.replace(/\\/g, '\\\\').replace(/,/g, '\\,').replace(/=/g, '\\=');

describe('field selectors', () => {
  test('any text parses or is refused with a 400 Status', () => {
    fc.assert(
      fc.property(fc.oneof(fuzzText(), fc.array(fc.oneof(fc.constantFrom('metadata.name', 'metadata.namespace', '=', '==', '!=', ',', '\\', 'spec.x'), fc.string({ maxLength: 3 })), { maxLength: 8 }).map((p) => p.join(''))), (text) => {
        const { value, status } = returnsOrRejects(() => parseFieldSelector(text));
        if (status) expect(status.code).toBe(400);
        else if (value) expect(typeof matchesFields(value, 'a', 'b')).toBe('boolean');
      }),
      { numRuns: RUNS },
    );
  });

  test('a valid selector with escaped values parses and matches as fields.ParseSelector does', () => {
    const term = fc.record({ field: fc.constantFrom('metadata.name', 'metadata.namespace'), op: fc.constantFrom('=', '==', '!='), value: fc.oneof(fc.constantFrom('a', 'b', '', 'a,b', 'x=y', 'n!', '\\'), fc.string({ maxLength: 6 })) });
    fc.assert(
      fc.property(fc.array(term, { minLength: 1, maxLength: 4 }), fc.constantFrom('a', 'b', 'a,b', 'x=y', ''), fc.constantFrom('a', 'b', 'n!', '\\'), (terms, name, namespace) => {
        const text = terms.map((t) => `${t.field}${t.op}${escapeFieldValue(t.value)}`).join(',');
        const parsed = parseFieldSelector(text);
        expect(parsed).toBeDefined();
        const expected = terms.every((t) => ((t.field === 'metadata.name' ? name : namespace) === t.value) === (t.op !== '!='));
        expect(matchesFields(parsed!, name, namespace)).toBe(expected);
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- list options ---------------------------------------------------------------------------

const LIST_KEYS = ['limit', 'continue', 'resourceVersion', 'resourceVersionMatch', 'timeoutSeconds', 'watch', 'allowWatchBookmarks', 'sendInitialEvents', 'labelSelector', 'fieldSelector', 'fieldManager', 'dryRun', 'fieldValidation', 'pretty'];
const QUERY_VALUE = fc.oneof(
  fc.constantFrom('', '0', '1', '-1', '+1', '007', 'true', 'false', 'True', 'Exact', 'NotOlderThan', 'All', '1e3', '0x10', '99999999999999999999', '9223372036854775807', '9223372036854775808', '-9223372036854775809', 'NaN', 'a=b', 'metadata.name=x'),
  fuzzText(10),
);
const QUERY = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...LIST_KEYS), fc.string({ maxLength: 5 })), QUERY_VALUE), { maxLength: 8 }).map((pairs) => {
  const query = new URLSearchParams();
  for (const [k, v] of pairs) query.append(k, v);
  return query;
});

describe('list options', () => {
  test('any query, with repeated keys, parses or is refused with a 400 or 422 Status', () => {
    fc.assert(
      fc.property(QUERY, fc.boolean(), (query, watch) => {
        const { value, status } = returnsOrRejects(() => parseListQuery(query, watch));
        if (status) expect([400, 422]).toContain(status.code);
        if (value?.limit !== undefined) expect(Number.isSafeInteger(value.limit)).toBe(true);
        if (value?.timeoutSeconds !== undefined) expect(Number.isSafeInteger(value.timeoutSeconds)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- continue tokens ------------------------------------------------------------------------

const PREFIX = '/wardle.example.com/flunders/';
const TOKEN_JSON = fc.oneof(
  fc.jsonValue(),
  fc.record({ v: fc.oneof(fc.constant('meta.k8s.io/v1'), fc.jsonValue()), rv: fc.oneof(fc.integer(), fc.double(), fc.constant(-1), fc.jsonValue()), start: fc.oneof(fc.string(), fc.constantFrom('../x', '/abs', 'a/../../b', 'default/f1\u0000', ''), fc.jsonValue()) }, { requiredKeys: [] }),
);

describe('continue tokens', () => {
  test('any token decodes to a key under the prefix, or is refused with a 400 Status', () => {
    fc.assert(
      fc.property(fc.oneof(fuzzText(), fc.base64String(), TOKEN_JSON.map((v) => Buffer.from(JSON.stringify(v) ?? 'null').toString('base64url')), TOKEN_JSON.map((v) => Buffer.from(JSON.stringify(v) ?? 'null').toString('base64'))), (token) => {
        const { value, status } = returnsOrRejects(() => decodeContinue(token, PREFIX));
        if (status) expect(status.code).toBe(400);
        if (value) {
          expect(value.startKey.startsWith(PREFIX)).toBe(true);
          expect(value.startKey.slice(PREFIX.length).split('/')).not.toContain('..');
          expect(Number.isSafeInteger(value.revision)).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });

  test('an encoded token decodes to what was encoded', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\/[a-z0-9]([a-z0-9.-]{0,18}[a-z0-9])?$/), fc.constantFrom('', '\u0000'), (revision, key, suffix) => {
        const rest = key + suffix;
        expect(decodeContinue(encodeContinue(revision, PREFIX + rest, PREFIX), PREFIX)).toEqual({ revision, startKey: PREFIX + rest });
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- content negotiation --------------------------------------------------------------------

const MEDIA_TYPE = fc.constantFrom('application/json', '*/*', 'application/*', 'application/vnd.kubernetes.protobuf', 'application/yaml', 'text/plain', 'application/json;as=Table;g=meta.k8s.io;v=v1', 'application/json;as=Table;v=v1beta1;g=meta.k8s.io', 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1', 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1', 'application/json;as=Table', 'APPLICATION/JSON', 'application/json;stream=watch', 'application');
const ACCEPT = fc.oneof(
  fuzzText(),
  fc.array(fc.tuple(fc.oneof(MEDIA_TYPE, fuzzText(6)), fc.oneof(fc.constant(''), fc.constantFrom(';q=0', ';q=1', ';q=0.5', ';q=abc', ';q=-1', ';q=2', ';q=', ';=x', ';as', ';as="Table"', ';__proto__=x', ';constructor=y', ';;')), WS), { maxLength: 5 }).map((clauses) => clauses.map(([t, p, w]) => `${w}${t}${p}${w}`).join(',')),
);

describe('content negotiation', () => {
  test('any Accept parses into clauses by falling quality, and negotiation picks an offer or none', () => {
    fc.assert(
      fc.property(fc.oneof(ACCEPT, fc.array(ACCEPT, { maxLength: 3 })), fc.constantFrom(...(Object.keys(RESOURCE_OFFERS) as (keyof typeof RESOURCE_OFFERS)[])), (accept, kind) => {
        const clauses = parseAccept(accept);
        const text = Array.isArray(accept) ? accept.join(',') : (accept as string);
        if (text.trim() === '') expect(clauses).toEqual([{ type: '*', subtype: '*', params: {}, q: 1 }]);
        for (let i = 1; i < clauses.length; i++) expect(clauses[i - 1].q).toBeGreaterThanOrEqual(clauses[i].q);
        for (const clause of clauses) {
          expect(clause.q).toBeGreaterThan(0);
          expect(clause.q).toBeLessThanOrEqual(1);
          expect(Object.getPrototypeOf(clause.params)).toBe(Object.prototype);
        }
        const chosen = negotiate(clauses, RESOURCE_OFFERS[kind]);
        if (chosen) expect(RESOURCE_OFFERS[kind]).toContain(chosen);
      }),
      { numRuns: RUNS },
    );
  });

  test.each(['garbage', 'application', 'text/plain, garbage', 'application/json;q=0'])('an Accept of %j accepts nothing (406), as goautoneg and NegotiateMediaTypeOptions (was answered JSON)', (accept) => {
    expect(negotiate(parseAccept(accept), RESOURCE_OFFERS.object)).toBeUndefined();
  });

  test.each(['', '*', '*;q=0.5', 'garbage, application/json'])('an Accept of %j is answered JSON', (accept) => {
    expect(negotiate(parseAccept(accept), RESOURCE_OFFERS.object)?.value).toEqual({ as: 'Object' });
  });

  test('any Content-Type parses to a media type, or one that matches none (malformed), or nothing (absent)', () => {
    fc.assert(
      fc.property(fc.oneof(ACCEPT, fc.constant(undefined)), (header) => {
        const parsed = parseContentType(header);
        if (header === undefined || header.trim() === '') expect(parsed).toBeUndefined();
        else if (parsed!.type !== '') expect(header.split(';')[0].trim().toLowerCase()).toBe(`${parsed!.type}/${parsed!.subtype}`);
      }),
      { numRuns: RUNS },
    );
  });

  test.each(['garbage', 'application/', '/json', 'application/json/x', 'application json'])('a malformed Content-Type (%s) names no media type, so a body in it fails with 415', (header) => {
    expect(parseContentType(header)).toMatchObject({ type: '', subtype: '' });
  });
});

// ---- patches --------------------------------------------------------------------------------

/** RFC 7386, on own properties only (a `__proto__` key is a key like any other). */
function referenceMergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const result = new Map<string, unknown>(typeof target === 'object' && target !== null && !Array.isArray(target) ? Object.entries(target) : []);
  for (const [name, value] of Object.entries(patch)) {
    if (value === null) result.delete(name);
    else result.set(name, referenceMergePatch(result.get(name), value));
  }
  const out: Record<string, unknown> = {};
  for (const [name, value] of result) Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
  return out;
}

const FLUNDER = fc.record({
  apiVersion: fc.constant('wardle.example.com/v1alpha1'),
  kind: fc.constant('Flunder'),
  metadata: fc.record({ name: fc.constant('f'), namespace: fc.constant('default'), labels: fc.dictionary(LABEL_KEY, LABEL_VALUE, { maxKeys: 2 }) }),
  spec: fc.record({ reference: fc.string({ maxLength: 5 }), referenceType: fc.constantFrom('Flunder', 'Fischer') }, { requiredKeys: [] }),
});
/** JSON text with `__proto__` keys, as JSON.parse makes them: own properties. */
const PROTO_JSON = fc.jsonValue().map((v) => JSON.parse(JSON.stringify({ __proto__x: v }).replace('__proto__x', '__proto__')) as unknown);
const PATCH_VALUE = fc.oneof(fc.jsonValue(), PROTO_JSON, fc.dictionary(fc.constantFrom('metadata', 'spec', 'status', 'kind', '__proto__', 'constructor'), fc.oneof(fc.jsonValue(), PROTO_JSON)).map((d) => JSON.parse(JSON.stringify(d)) as unknown));
const JSON_POINTER = fc.array(fc.oneof(fc.constantFrom('metadata', 'spec', 'labels', 'name', '-', '0', '__proto__', 'constructor', 'prototype', '~0', '~1', '', 'reference'), fc.string({ maxLength: 3 })), { maxLength: 4 }).map((p) => (p.length ? `/${p.join('/')}` : ''));
const JSON_PATCH_OP = fc.oneof(
  fc.record({ op: fc.constantFrom('add', 'replace', 'test'), path: JSON_POINTER, value: fc.jsonValue() }),
  fc.record({ op: fc.constantFrom('remove'), path: JSON_POINTER }),
  fc.record({ op: fc.constantFrom('move', 'copy'), from: JSON_POINTER, path: JSON_POINTER }),
  fc.record({ op: fc.constant('move'), from: fc.constantFrom('', '/metadata', '/spec'), path: fc.constantFrom('/constructor', '/metadata/x', '/spec/a/b', '/x') }),
  fc.dictionary(fc.constantFrom('op', 'path', 'from', 'value'), fc.jsonValue()),
  fc.jsonValue(),
);

describe('patches', () => {
  test('a merge patch of any JSON applies as RFC 7386 does, own keys only, or is refused with a 4xx Status', () => {
    fc.assert(
      fc.property(FLUNDER, PATCH_VALUE, (object, patch) => {
        const before = JSON.stringify(object);
        const { status } = returnsOrRejects(() => checkPatch(MERGE_PATCH, patch));
        if (status) return;
        const { value } = returnsOrRejects(() => applyObjectPatch(MERGE_PATCH, structuredClone(object), patch));
        if (value) {
          expect(JSON.stringify(value)).toBe(JSON.stringify(referenceMergePatch(object, patch)));
          expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
        }
        expect(JSON.stringify(object)).toBe(before);
      }),
      { numRuns: RUNS },
    );
  });

  test('a JSON patch of any operations applies or is refused with a 4xx Status, and never touches Object.prototype', () => {
    fc.assert(
      fc.property(FLUNDER, fc.oneof(fc.array(JSON_PATCH_OP, { maxLength: 4 }), fc.jsonValue()), (object, patch) => {
        const { status } = returnsOrRejects(() => checkPatch(JSON_PATCH, patch));
        // A result that is stored must serialize (no document containing itself).
        if (!status) {
          const { value } = returnsOrRejects(() => applyObjectPatch(JSON_PATCH, structuredClone(object), patch));
          if (value) expect(() => JSON.stringify(value)).not.toThrow();
        }
        expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(OBJECT_PROTOTYPE_NAMES);
      }),
      { numRuns: RUNS },
    );
  });
});

const OBJECT_PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype).sort();

// ---- examples: the Go grammar's tricky forms, and each bug the properties found ---------------

describe('label selectors as labels.Parse reads them', () => {
  const labels = { app: 'web', tier: '', n: '7', in: 'in' };
  test.each([
    ['!key', '!missing', true],
    ['!key on a present key', '!app', false],
    ['key in (a,b)', 'app in (web,db)', true],
    ['key notin () is "not the empty value"', 'app notin ()', true],
    ['key in () is "the empty value"', 'tier in ()', true],
    ['key in (,) and (a,,b) hold the empty value', 'tier in (x,,y)', true],
    ['a=b,c!=d', 'app=web,tier!=x', true],
    ['whitespace between every token', ' app \t=\r\n web , ! missing ', true],
    ['key==value', 'app==web', true],
    ['key= (empty value)', 'tier=', true],
    ['gt and lt on integers', 'n>6,n<8', true],
    ['gt on a non-integer label', 'app>1', false],
    ['in and notin are keys and values where no operator is expected', 'in in (in)', true],
    ['in( without a space', 'app in(web)', true],
    ['(,) is the empty value', 'tier in (,)', true],
    ['(a,) holds a and the empty value', 'tier in (x,)', true],
  ])('%s: %s', (_name, selector, expected) => {
    expect(parseLabelSelector(selector)!(labels)).toBe(expected);
  });

  test.each([
    ['a trailing comma', 'a=b,'],
    ['a leading comma', ',a=b'],
    ['!key=value', '!a=b'],
    ['key in without parentheses', 'a in b'],
    ['an unbalanced parenthesis', 'a in (b'],
    ['a non-integer for gt', 'a>b'],
    ['an int64 overflow for lt', 'a<9223372036854775808'],
    ['a no-break space, which Go does not skip', 'a\u00a0=\u00a0b'],
    ['===', 'a===b'],
    ['an empty item before the closing parenthesis after an empty one', 'a in (b,,)'],
  ])('rejects %s (%s) with 400', (_name, selector) => {
    expect(() => parseLabelSelector(selector)).toThrow(expect.objectContaining({ code: 400 }) as Error);
  });
});

describe('field selectors as fields.ParseSelector reads them', () => {
  test('an escaped comma, equals sign and backslash are part of the value', () => {
    expect(parseFieldSelector('metadata.name=a\\,b\\=c\\\\d')).toEqual([{ field: 'metadata.name', equal: true, value: 'a,b=c\\d' }]);
  });

  test('empty terms are skipped and nothing is trimmed', () => {
    expect(parseFieldSelector('metadata.name=a,,')).toEqual([{ field: 'metadata.name', equal: true, value: 'a' }]);
    expect(() => parseFieldSelector('metadata.name =a')).toThrow('field label not supported: metadata.name ');
  });

  test.each(['metadata.name=a\\b', 'metadata.name=a\\', 'metadata.name=a=b'])('rejects an invalid escape or an unescaped = (%s) with 400', (selector) => {
    expect(() => parseFieldSelector(selector)).toThrow(expect.objectContaining({ code: 400 }) as Error);
  });
});

describe('request info', () => {
  test('a target starting with // is a path, as Go reads it, not a URL with a host', () => {
    expect(parseRequestInfo('GET', '///')).toMatchObject({ isResourceRequest: false, path: '///' });
    expect(parseRequestInfo('GET', '//apis/wardle.example.com/v1alpha1/flunders')).toMatchObject({ isResourceRequest: true, resource: 'flunders', verb: 'list' });
    expect(parseRequestInfo('GET', '//evil.example/apis/wardle.example.com/v1alpha1/flunders')).toMatchObject({ isResourceRequest: false, path: '//evil.example/apis/wardle.example.com/v1alpha1/flunders' });
  });

  test.each(['..', '.', 'a/b', 'a%2Fb'])('a field selector naming %s names no object for authorization (not a path segment name)', (name) => {
    const info = parseRequestInfo('GET', `/apis/wardle.example.com/v1alpha1/flunders?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`);
    expect(info).toMatchObject({ verb: 'list', name: '' });
  });

  test('of two metadata.name terms, the first in sorted order names the object, as RequiresExactMatch', () => {
    expect(parseRequestInfo('GET', `/apis/wardle.example.com/v1alpha1/flunders?fieldSelector=${encodeURIComponent('metadata.name=b,metadata.name=a')}`).name).toBe('a');
  });
});

describe('list options and continue tokens', () => {
  test.each(['9223372036854775808', '-9223372036854775809'])('rejects limit=%s (beyond int64, as strconv.ParseInt) with 400', (limit) => {
    expect(() => parseListQuery(new URLSearchParams({ limit }), false)).toThrow(expect.objectContaining({ code: 400 }) as Error);
  });

  test('a limit within int64 but beyond 2^53 is read as the largest safe integer, and +N as N', () => {
    expect(parseListQuery(new URLSearchParams({ limit: '9223372036854775807' }), false).limit).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseListQuery(new URLSearchParams({ limit: '+5' }), false).limit).toBe(5);
  });

  test('booleans read as the query conversion reads them: 0 and false (any case) are false, anything else true', () => {
    expect(parseListQuery(new URLSearchParams({ allowWatchBookmarks: 'FALSE' }), true).allowWatchBookmarks).toBe(false);
    expect(parseListQuery(new URLSearchParams({ allowWatchBookmarks: 'yes' }), true).allowWatchBookmarks).toBe(true);
  });

  test('rejects a resourceVersion beyond 2^53 with 400 (it could not be read exactly)', () => {
    expect(() => parseListQuery(new URLSearchParams({ resourceVersion: '99999999999999999999' }), false)).toThrow(expect.objectContaining({ code: 400 }) as Error);
  });

  test('rejects a continue token whose revision is beyond 2^53 with 400', () => {
    const token = Buffer.from('{"v":"meta.k8s.io/v1","rv":9007199254740992,"start":"default/a"}').toString('base64url');
    expect(() => decodeContinue(token, PREFIX)).toThrow(expect.objectContaining({ code: 400 }) as Error);
  });
});

describe('JSON patch', () => {
  test.each([
    ['', '/constructor'],
    ['', '/a'],
    ['/metadata', '/metadata/x'],
  ])('fails with 422 for a move from %j into its own value at %j (was a document containing itself: a 500 when stored)', (from, path) => {
    const patch = [{ op: 'move', from, path }];
    checkPatch(JSON_PATCH, patch);
    expect(() => applyObjectPatch(JSON_PATCH, { metadata: { name: 'f' } }, patch)).toThrow(expect.objectContaining({ code: 422 }) as Error);
  });

  test('a move to itself, or to a sibling whose name extends it, applies', () => {
    expect(applyObjectPatch(JSON_PATCH, { a: 1 }, [{ op: 'move', from: '/a', path: '/a' }])).toEqual({ a: 1 });
    expect(applyObjectPatch(JSON_PATCH, { a: 1 }, [{ op: 'move', from: '/a', path: '/ab' }])).toEqual({ ab: 1 });
  });
});

describe('merge patch', () => {
  test('a "__proto__" key is merged as an own key, not into the prototype', () => {
    // GIVEN a patch whose "__proto__" key holds a spec (JSON.parse makes it an own property)
    const patch = JSON.parse('{"__proto__":{"spec":{"reference":"x"}},"kind":"Flunder"}') as unknown;

    // WHEN
    const patched = applyObjectPatch(MERGE_PATCH, { metadata: { name: 'f' } }, patch);

    // THEN the key is an own property and the result's prototype is untouched
    expect(Object.getPrototypeOf(patched)).toBe(Object.prototype);
    expect(Object.keys(patched)).toEqual(['metadata', '__proto__', 'kind']);
    expect((patched as { spec?: unknown }).spec).toBeUndefined();
  });
});
