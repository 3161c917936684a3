/**
 * Bearer-token authentication by TokenReview (authentication.k8s.io/v1), as k8s.io/apiserver's
 * webhook token authenticator behind its cache: the token is sent to kube-apiserver, which says
 * who it belongs to. Answers are cached (success and plain failure; 10 s by default) under a
 * SHA-256 of the audiences and the token, never the token itself; concurrent requests with the
 * same token share one review. A review that cannot be made, or that reports an error, fails the
 * request (401) and is not cached, so the server recovers as soon as kube-apiserver answers again.
 *
 * In front of that cache, the few most recently used tokens map to their cached answer directly
 * (`RECENT_TOKENS`, each until the answer expires): hashing a ~1 KB JWT was a visible part of
 * every request's CPU. This keeps those few token strings in memory up to the TTL, beyond the
 * life of the requests that carried them, which the hashed cache alone avoids; the exposure is
 * bounded (a few tokens, seconds) and of the same kind as the request headers and socket buffers
 * that hold every in-flight token anyway.
 */
import * as crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { KubeClient } from '../kube-client';
import type { ChainAuthenticator, ChainResult } from './authenticator';
import { ReviewCache } from './review-cache';

const NONE: ChainResult = { kind: 'none' };
/** How many tokens map to their cached answer without hashing: clients that reuse one token on keep-alive connections. */
const RECENT_TOKENS = 64;
const INVALID: ChainResult = { kind: 'error', error: 'invalid bearer token' };

export interface TokenReviewAuthenticatorOptions {
  readonly client: KubeClient;
  /** Audiences the token must be meant for (TokenReview spec.audiences). @default - the API server's own audiences */
  readonly audiences?: readonly string[];
  /** How long a review is trusted. @default 10000 */
  readonly cacheTtlMs?: number;
  /** @default 10000 */
  readonly maxCacheEntries?: number;
  /** @default Date.now */
  readonly now?: () => number;
  readonly logger?: Logger;
}

interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

/**
 * The bearer token of `Authorization: Bearer <token>` as upstream's bearertoken authenticator
 * reads it: undefined when the header carries no bearer credential; '' when it does but the token
 * is empty (`Bearer  x`, two spaces), which upstream refuses as an invalid token.
 */
function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization?.trim();
  if (!header) return undefined;
  const parts = header.split(' ');
  if (parts.length < 2 || parts[0].toLowerCase() !== 'bearer') return undefined;
  return parts[1];
}

/** SHA-256 in hex: one-shot `crypto.hash` (Node ≥ 20.12; a fraction of createHash's cost per request), else createHash. */
const sha256Hex: (text: string) => string =
  typeof crypto.hash === 'function' ? (text) => crypto.hash('sha256', text, 'hex') : (text) => crypto.createHash('sha256').update(text).digest('hex');

export function createTokenReviewAuthenticator(options: TokenReviewAuthenticatorOptions): ChainAuthenticator {
  const ttl = options.cacheTtlMs ?? 10_000;
  const audiences = options.audiences ?? [];
  const keyPrefix = `${JSON.stringify(audiences)}|`;
  const cache = new ReviewCache<ChainResult>({ ...(options.maxCacheEntries !== undefined ? { maxEntries: options.maxCacheEntries } : {}), ...(options.now ? { now: options.now } : {}) });

  const review = async (token: string): Promise<{ result: ChainResult; cacheable: boolean }> => {
    let response: { status: number; body: { status?: TokenReviewStatus; message?: string } };
    try {
      response = await options.client.request('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, ...(audiences.length > 0 ? { audiences } : {}) },
      });
    } catch (error) {
      options.logger?.warn({ err: { message: (error as Error).message } }, 'TokenReview failed: kube-apiserver unreachable');
      return { result: { kind: 'error', error: `token review failed: ${(error as Error).message}` }, cacheable: false };
    }
    if (response.status !== 201 && response.status !== 200) {
      options.logger?.warn({ status: response.status, message: response.body?.message }, 'TokenReview refused by kube-apiserver (is the auth-delegator ClusterRoleBinding missing?)');
      return { result: { kind: 'error', error: `token review failed: HTTP ${response.status}` }, cacheable: false };
    }
    const status = response.body?.status ?? {};
    if (!status.authenticated) {
      // Upstream: an error reported by the review is not cached; a plain "not authenticated" is.
      return status.error ? { result: { kind: 'error', error: status.error }, cacheable: false } : { result: INVALID, cacheable: true };
    }
    if (audiences.length > 0) {
      const granted = status.audiences && status.audiences.length > 0 ? status.audiences : audiences;
      if (!granted.some((a) => audiences.includes(a))) return { result: INVALID, cacheable: true };
    }
    const user = status.user ?? {};
    if (!user.username) return { result: INVALID, cacheable: true };
    return {
      result: {
        kind: 'user',
        // Frozen: the cached answer is shared by every request with the token (and memoized on by the authorizer).
        user: Object.freeze({
          name: user.username,
          ...(user.uid ? { uid: user.uid } : {}),
          groups: Object.freeze([...(user.groups ?? [])]),
          extra: Object.freeze(Object.fromEntries(Object.entries(user.extra ?? {}).map(([k, v]) => [k, Object.freeze([...v])]))),
        }),
      },
      cacheable: true,
    };
  };

  const now = options.now ?? Date.now;
  /** Raw token → the hashed cache's answer and its expiry, oldest first. */
  const recent = new Map<string, { readonly value: ChainResult; readonly expires: number }>();
  const remember = (token: string, entry: { readonly value: ChainResult; readonly expires: number }): void => {
    const t = now();
    for (const [k, v] of recent) {
      // Oldest first: drop the expired, then as many as needed to stay within the bound.
      if (v.expires > t && recent.size < RECENT_TOKENS) break;
      recent.delete(k);
    }
    recent.set(token, entry);
  };

  /**
   * Per connection, the Authorization header of its last authenticated request and that answer:
   * a keep-alive client sends the same header on each request, and comparing it is cheaper than
   * parsing it and hashing the token for `recent`. Held no longer than the answer's TTL is used,
   * and forgotten with the connection.
   */
  const lastOnConnection = new WeakMap<object, { readonly header: string; readonly entry: { readonly value: ChainResult; readonly expires: number } }>();

  return {
    method: 'token',
    authenticate(req: IncomingMessage): ChainResult | Promise<ChainResult> {
      const header = req.headers.authorization;
      // Over HTTP/2, req.socket is a view per stream: the session is the connection.
      const connection: object | undefined = (req as { stream?: { session?: object } }).stream?.session ?? req.socket;
      const last = connection && header !== undefined ? lastOnConnection.get(connection) : undefined;
      if (last !== undefined) {
        if (last.header === header && last.entry.expires > now()) return last.entry.value;
        lastOnConnection.delete(connection!);
      }
      const token = bearerToken(req);
      if (token === undefined) return NONE;
      if (token === '') return INVALID;
      const hit = recent.get(token);
      if (hit) {
        if (hit.expires > now()) {
          if (connection) lastOnConnection.set(connection, { header: header!, entry: hit });
          return hit.value;
        }
        recent.delete(token);
      }
      const key = sha256Hex(keyPrefix + token);
      const cached = cache.lookup(key);
      if (cached) {
        remember(token, cached);
        if (connection) lastOnConnection.set(connection, { header: header!, entry: cached });
        return cached.value;
      }
      return cache.get(key, async () => {
        const { result, cacheable } = await review(token);
        return { value: result, ttlMs: cacheable ? ttl : 0 };
      });
    },
  };
}
