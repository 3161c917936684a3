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
    return { path: rawPath, query: new URLSearchParams(rawQuery) };
  }
  const parsed = new URL(url, 'https://localhost');
  return { path: parsed.pathname, query: parsed.searchParams };
}

export function parseRequestInfo(method: string, url: string, auditID = ''): RequestInfo {
  const { path, query } = splitTarget(url);
  const segments = path.split('/').filter((s) => s.length > 0);
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
      parts: [],
      auditID,
    };
  }
  const [apiPrefix, apiGroup, apiVersion, ...rest] = segments;

  let verb = METHOD_VERBS[method.toUpperCase()] ?? method.toLowerCase();
  let namespace = '';
  let parts = path.includes('%') ? rest.map(decodeURIComponent) : rest;
  // `namespaces/<ns>/<resource>…` scopes to a namespace; `namespaces/<ns>` alone, and its
  // subresources `namespaces/<ns>/status|finalize`, are the namespace object itself.
  if (parts[0] === 'namespaces' && parts.length > 1) {
    namespace = parts[1];
    if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2])) parts = parts.slice(2);
  }
  const [resource, name = '', subresource = '', ...extra] = parts;
  let resolvedName = name;

  // As in requestinfo.go: only a GET without a name becomes list or watch, and only then does a
  // fieldSelector on metadata.name name the object for authorization.
  if (verb === 'get' && resolvedName === '') {
    verb = isWatchQuery(query) ? 'watch' : 'list';
    for (const term of (query.get('fieldSelector') ?? '').split(',')) {
      const match = /^metadata\.name==?([^=!,]+)$/.exec(term.trim());
      if (match) resolvedName = match[1];
    }
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
