import { parseFieldSelector } from './registry/selectors';

/**
 * What a request asks for, parsed from its method, path and query the way
 * k8s.io/apiserver/pkg/endpoints/request/requestinfo.go does. Routing and the
 * SubjectAccessReview both read it, so they can never disagree.
 */
export interface RequestInfo {
  /** False for `/healthz`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>` and anything that is not a resource. */
  readonly isResourceRequest: boolean;
  /** The URL path, without the query. */
  readonly path: string;
  /** The URL query, parsed once here for every later reader. */
  readonly query: URLSearchParams;
  /** Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection; for non-resource requests the lowercased method. */
  readonly verb: string;
  readonly apiPrefix: string;
  readonly apiGroup: string;
  readonly apiVersion: string;
  readonly namespace: string;
  readonly resource: string;
  readonly subresource: string;
  readonly name: string;
  /** The path segments after the resource name and subresource, if any (not served here). */
  readonly parts: readonly string[];
  /** The request's audit ID (its Audit-Id header, or one generated for it), which every answer carries; '' when not given. */
  readonly auditID: string;
}

const METHOD_VERBS: Record<string, string> = {
  POST: 'create',
  GET: 'get',
  HEAD: 'get',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

/** requestinfo.go `namespaceSubresources`: after `namespaces/<ns>/` these name a subresource of the namespace, not a resource. */
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);

/** `?watch`, `?watch=1`, `?watch=true` mean watch; `watch=false` and `watch=0` do not. */
function isWatchQuery(query: URLSearchParams): boolean {
  if (!query.has('watch')) return false;
  const value = query.get('watch')!.toLowerCase();
  return value !== 'false' && value !== '0';
}

/**
 * A path the WHATWG URL parser would return unchanged: it starts with one `/`, holds only
 * characters it neither percent-encodes nor rewrites (no `%`, `\\`, space, `^`, non-ASCII…), and
 * has no `.` or `..` segment to resolve. The query must hold only visible ASCII without `#`, and
 * must not start with `?` (URLSearchParams drops one leading `?`; the URL parser keeps it).
 */
const VERBATIM_PATH = /^\/(?!\/)[A-Za-z0-9\-._~!$&'()*+,;=:@/]*$/;
const DOT_SEGMENT = /(?:^|\/)\.\.?(?:\/|$)/;
const VERBATIM_QUERY = /^(?!\?)[\x21\x22\x24-\x7e]*$/;
const BASE = 'https://localhost';

/**
 * The path and parsed query of a request target, as `new URL(url, base)` gives them. The URL
 * parser is the slow part of each request; the request targets clients send (`/apis/…?a=b`)
 * come out of it unchanged, so those are split directly and only the others parsed.
 */
function splitTarget(url: string): { path: string; query: URLSearchParams } {
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const rawQuery = q < 0 ? '' : url.slice(q + 1);
  if (VERBATIM_PATH.test(rawPath) && !DOT_SEGMENT.test(rawPath) && VERBATIM_QUERY.test(rawQuery)) {
    return { path: rawPath, query: rawQuery === '' ? EMPTY_QUERY : new URLSearchParams(rawQuery) };
  }
  // A target starting with '//' is a path, as Go's url.ParseRequestURI reads it, not a
  // scheme-relative URL naming a host ('//x/apis/…' would lose its first segment, '///' would not parse).
  const parsed = url.startsWith('/') ? new URL(`${BASE}${url}`) : new URL(url, BASE);
  return { path: parsed.pathname, query: parsed.searchParams };
}

/** The query of the many requests without one, shared: read-only, so that no reader can change it for the others. */
class ReadOnlyQuery extends URLSearchParams {
  override append(): never {
    throw new TypeError('the query of a request is read-only');
  }
  override delete(): never {
    throw new TypeError('the query of a request is read-only');
  }
  override set(): never {
    throw new TypeError('the query of a request is read-only');
  }
  override sort(): never {
    throw new TypeError('the query of a request is read-only');
  }
}
const EMPTY_QUERY: URLSearchParams = new ReadOnlyQuery();

const NO_PARTS: readonly string[] = Object.freeze([]);

/**
 * The name a list or watch's field selector requires (`metadata.name=x`), as requestinfo.go takes it
 * for authorization: fields.Selector.RequiresExactMatch on the parsed selector (terms sorted), and
 * only a valid path segment name (path.IsValidPathSegmentName). '' when there is none, or the
 * selector does not parse (the list itself then fails with 400).
 */
function nameOfFieldSelector(fieldSelector: string): string {
  let requirements;
  try {
    requirements = parseFieldSelector(fieldSelector);
  } catch {
    return '';
  }
  const exact = requirements?.find((r) => r.field === 'metadata.name' && r.equal);
  if (!exact) return '';
  const name = exact.value;
  return name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('%') ? '' : name;
}

export function parseRequestInfo(method: string, url: string, auditID = ''): RequestInfo {
  const { path, query } = splitTarget(url);
  // Most paths have no empty segment ('//', a trailing '/'): split once, and filter only those that do.
  let segments = path.split('/');
  segments = segments[0] === '' && segments.indexOf('', 1) < 0 ? segments.slice(1) : segments.filter((s) => s.length > 0);
  // Only /apis/<group>/<version>/<resource>… is a resource request; /api (the core group) is not served here.
  if (segments[0] !== 'apis' || segments.length < 4) {
    return {
      isResourceRequest: false,
      path,
      query,
      verb: method.toLowerCase(),
      apiPrefix: '',
      apiGroup: '',
      apiVersion: '',
      namespace: '',
      resource: '',
      subresource: '',
      name: '',
      parts: NO_PARTS,
      auditID,
    };
  }
  const apiPrefix = segments[0];
  const apiGroup = segments[1];
  const apiVersion = segments[2];
  let start = 3;
  if (path.includes('%')) {
    for (let i = start; i < segments.length; i++) segments[i] = decodeURIComponent(segments[i]);
  }

  let verb = METHOD_VERBS[method.toUpperCase()] ?? method.toLowerCase();
  let namespace = '';
  // `namespaces/<ns>/<resource>…` scopes to a namespace; `namespaces/<ns>` alone, and its
  // subresources `namespaces/<ns>/status|finalize`, are the namespace object itself.
  if (segments[start] === 'namespaces' && segments.length > start + 1) {
    namespace = segments[start + 1];
    if (segments.length > start + 2 && !NAMESPACE_SUBRESOURCES.has(segments[start + 2])) start += 2;
  }
  const resource = segments[start];
  const name = segments[start + 1] ?? '';
  const subresource = segments[start + 2] ?? '';
  const extra = segments.length > start + 3 ? segments.slice(start + 3) : NO_PARTS;
  let resolvedName = name;

  // As in requestinfo.go: only a GET without a name becomes list or watch, and only then does a
  // fieldSelector on metadata.name name the object for authorization.
  if (verb === 'get' && resolvedName === '') {
    verb = isWatchQuery(query) ? 'watch' : 'list';
    const fieldSelector = query.get('fieldSelector');
    if (fieldSelector) resolvedName = nameOfFieldSelector(fieldSelector);
  }
  if (verb === 'delete' && resolvedName === '') verb = 'deletecollection';

  return {
    isResourceRequest: true,
    path,
    query,
    verb,
    apiPrefix,
    apiGroup,
    apiVersion,
    namespace,
    resource,
    subresource,
    name: resolvedName,
    parts: extra,
    auditID,
  };
}
