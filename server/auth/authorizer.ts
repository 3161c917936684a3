/**
 * Delegated authorization, as k8s.io/apiserver's DelegatingAuthorizationOptions builds it: a
 * union of the always-allowed paths (non-resource requests only; exact paths and `prefix*`
 * patterns, as pkg/authorization/path), the privileged groups (`system:masters`), and a
 * SubjectAccessReview (authorization.k8s.io/v1) to kube-apiserver, whose answers are cached
 * (allowed and denied, 10 s each by default) under the whole review spec.
 *
 * A review that fails (kube-apiserver unreachable, or refusing us) denies the request and is not
 * cached, so the server recovers as soon as kube-apiserver answers again. (Upstream answers such
 * a failure with 500 InternalError; this server answers 403, fail-closed either way.)
 */
import type { Logger } from 'pino';
import type { KubeClient } from '../kube-client';
import type { RequestInfo } from '../request-info';
import { errors, type StatusError } from '../status';
import { ReviewCache } from './review-cache';
import type { AuthorizationDecision, Authorizer, UserInfo } from './types';

export interface DelegatedAuthorizerOptions {
  readonly client: KubeClient;
  /** Non-resource paths allowed for everyone, anonymous included; `/x/*` allows everything under `/x/`. @default ['/healthz', '/readyz', '/livez'] */
  readonly alwaysAllowPaths?: readonly string[];
  /** Groups allowed everything without asking. @default ['system:masters'] */
  readonly alwaysAllowGroups?: readonly string[];
  /** @default 10000 */
  readonly allowedCacheTtlMs?: number;
  /** @default 10000 */
  readonly deniedCacheTtlMs?: number;
  /** @default 10000 */
  readonly maxCacheEntries?: number;
  /** @default Date.now */
  readonly now?: () => number;
  readonly logger?: Logger;
}

function omitEmpty(fields: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== ''));
}

/** The spec of the SubjectAccessReview that asks whether `user` may do `request`. */
export function subjectAccessReviewSpec(user: UserInfo, request: RequestInfo): Record<string, unknown> {
  const extraKeys = Object.keys(user.extra).sort();
  return {
    ...(request.isResourceRequest
      ? {
          // Empty fields are left out, as Go's omitempty does.
          resourceAttributes: omitEmpty({
            namespace: request.namespace,
            verb: request.verb,
            group: request.apiGroup,
            version: request.apiVersion,
            resource: request.resource,
            subresource: request.subresource,
            name: request.name,
          }),
        }
      : { nonResourceAttributes: { path: request.path, verb: request.verb } }),
    user: user.name,
    ...(user.uid ? { uid: user.uid } : {}),
    groups: user.groups,
    ...(extraKeys.length > 0 ? { extra: Object.fromEntries(extraKeys.map((k) => [k, user.extra[k]])) } : {}),
  };
}

/**
 * The cache key of the review `subjectAccessReviewSpec(user, request)` would send: equal exactly
 * when the specs are (an empty field and an absent one are the same there). Cheaper than the spec
 * itself, which is built only when the cache has no answer.
 */
export function reviewKey(user: UserInfo, request: RequestInfo): string {
  // Each attribute as its length, ':' and itself: no value can be read as a separator of another,
  // and a resource request's key (prefix 'r') never equals a non-resource one's ('n'). Plain
  // concatenation: JSON.stringify of an array per request was a measurable part of a GET.
  const r = request;
  return r.isResourceRequest
    ? `${subjectKey(user)}r${r.namespace.length}:${r.namespace}${r.verb.length}:${r.verb}${r.apiGroup.length}:${r.apiGroup}${r.apiVersion.length}:${r.apiVersion}${r.resource.length}:${r.resource}${r.subresource.length}:${r.subresource}${r.name.length}:${r.name}`
    : `${subjectKey(user)}n${r.path.length}:${r.path}${r.verb.length}:${r.verb}`;
}

/**
 * The user's part of reviewKey, memoized per frozen user object: a cached token's requests share
 * one (the token authenticator's answer, or the chain's copy with system:authenticated added);
 * other authenticators build one per request.
 */
const subjectKeys = new WeakMap<UserInfo, string>();
function subjectKey(user: UserInfo): string {
  let key = subjectKeys.get(user);
  if (key === undefined) {
    const extraKeys = Object.keys(user.extra);
    const extra = extraKeys.length === 0 ? [] : extraKeys.sort().map((k) => [k, user.extra[k]]);
    key = JSON.stringify([user.name, user.uid ?? '', user.groups, extra]);
    if (Object.isFrozen(user) && Object.isFrozen(user.groups) && Object.isFrozen(user.extra)) subjectKeys.set(user, key);
  }
  return key;
}

/** Go's `%q` for the strings a 403 message quotes (a user name or a path may hold quotes). */
const quote = (value: string): string => JSON.stringify(value);

/** Upstream's `sanitizer` (responsewriters/errors.go): the user-controlled part of a 403 never carries markup. */
const sanitize = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * The 403 kube-apiserver answers for a denied request (endpoints/handlers/responsewriters
 * `Forbidden`: the sanitized `forbiddenMessage` inside `apierrors.NewForbidden`), with the
 * authorizer's reason appended.
 */
export function forbiddenError(user: UserInfo, request: RequestInfo, reason = ''): StatusError {
  const suffix = reason ? `: ${reason}` : '';
  if (!request.isResourceRequest) {
    return errors.forbidden({ group: '', resource: '' }, '', `forbidden: ${sanitize(`User ${quote(user.name)} cannot ${request.verb} path ${quote(request.path)}`)}${suffix}`);
  }
  const resource = request.subresource ? `${request.resource}/${request.subresource}` : request.resource;
  const scope = request.namespace ? `in the namespace ${quote(request.namespace)}` : 'at the cluster scope';
  const qualified = request.apiGroup ? `${request.resource}.${request.apiGroup}` : request.resource;
  const subject = request.name ? `${qualified} ${quote(request.name)}` : qualified;
  const message = sanitize(`User ${quote(user.name)} cannot ${request.verb} resource ${quote(resource)} in API group ${quote(request.apiGroup)} ${scope}`);
  return errors.forbidden({ group: request.apiGroup, resource: request.resource }, request.name, `${subject} is forbidden: ${message}${suffix}`);
}

/** Upstream path authorizer: exact paths, and `prefix*` patterns; only a trailing `*` is allowed. */
function pathMatcher(paths: readonly string[]): (path: string) => boolean {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const raw of paths) {
    const p = raw.replace(/^\//, '');
    if (p.slice(0, -1).includes('*')) throw new Error(`always-allow path ${JSON.stringify(raw)} is invalid: only a trailing "*" is allowed`);
    if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
    else exact.add(p);
  }
  return (path) => {
    const p = path.replace(/^\//, '');
    return exact.has(p) || prefixes.some((prefix) => p.startsWith(prefix));
  };
}

// No reason, as upstream's path and privileged-group authorizers give none (the audit event's authorization.k8s.io/reason is empty).
const ALLOWED_BY_PATH: AuthorizationDecision = Object.freeze({ allowed: true, reason: '' });
const ALLOWED_BY_GROUP: AuthorizationDecision = Object.freeze({ allowed: true, reason: '' });

export function createDelegatedAuthorizer(options: DelegatedAuthorizerOptions): Authorizer & { cacheSize(): number } {
  const allowedPath = pathMatcher(options.alwaysAllowPaths ?? ['/healthz', '/readyz', '/livez']);
  const privileged = new Set(options.alwaysAllowGroups ?? ['system:masters']);
  const allowedTtl = options.allowedCacheTtlMs ?? 10_000;
  const deniedTtl = options.deniedCacheTtlMs ?? 10_000;
  const cache = new ReviewCache<AuthorizationDecision>({ ...(options.maxCacheEntries !== undefined ? { maxEntries: options.maxCacheEntries } : {}), ...(options.now ? { now: options.now } : {}) });

  const review = async (spec: Record<string, unknown>): Promise<{ decision: AuthorizationDecision; cacheable: boolean }> => {
    let response: { status: number; body: { status?: { allowed?: boolean; denied?: boolean; reason?: string; evaluationError?: string }; message?: string } };
    try {
      response = await options.client.request('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec,
      });
    } catch (error) {
      options.logger?.warn({ err: { message: (error as Error).message } }, 'SubjectAccessReview failed: kube-apiserver unreachable');
      return { decision: { allowed: false, reason: 'the authorization check could not be made' }, cacheable: false };
    }
    if (response.status !== 201 && response.status !== 200) {
      options.logger?.warn({ status: response.status, message: response.body?.message }, 'SubjectAccessReview refused by kube-apiserver (is the auth-delegator ClusterRoleBinding missing?)');
      return { decision: { allowed: false, reason: 'the authorization check could not be made' }, cacheable: false };
    }
    const status = response.body?.status ?? {};
    const reason = status.reason || status.evaluationError || '';
    return { decision: { allowed: status.allowed === true, reason }, cacheable: true };
  };

  return {
    cacheSize: () => cache.size,
    authorize(user: UserInfo, request: RequestInfo): AuthorizationDecision | Promise<AuthorizationDecision> {
      if (!request.isResourceRequest && allowedPath(request.path)) return ALLOWED_BY_PATH;
      if (user.groups.some((g) => privileged.has(g))) return ALLOWED_BY_GROUP;
      return cache.get(reviewKey(user, request), async () => {
        const { decision, cacheable } = await review(subjectAccessReviewSpec(user, request));
        return { value: decision, ttlMs: cacheable ? (decision.allowed ? allowedTtl : deniedTtl) : 0 };
      });
    },
  };
}
