/**
 * The delegated authentication chain, as k8s.io/apiserver's DelegatingAuthenticatorConfig builds
 * it: request-header → x509 → Bearer token (TokenReview), the first user wins; errors of earlier
 * steps do not stop later ones; an authenticated user gets `system:authenticated`. When nobody
 * authenticates the request: a credential that failed → rejected (401); none at all → the
 * anonymous user `system:anonymous` in `system:unauthenticated` (authorization then decides).
 */
import type { IncomingMessage } from 'node:http';
import type { AuthenticationResult, Authenticator, UserInfo } from './types';

const ANONYMOUS_USER: UserInfo = Object.freeze({ name: 'system:anonymous', groups: Object.freeze(['system:unauthenticated']), extra: Object.freeze({}) });
const ALL_AUTHENTICATED = 'system:authenticated';
const ALL_UNAUTHENTICATED = 'system:unauthenticated';

/** What one step of the chain says: a user, nothing (no credential of its kind), or an error (a credential that failed). */
export type ChainResult = { readonly kind: 'none' } | { readonly kind: 'user'; readonly user: UserInfo } | { readonly kind: 'error'; readonly error: string };

export interface ChainAuthenticator {
  readonly method: 'request-header' | 'x509' | 'token';
  authenticate(req: IncomingMessage): ChainResult | Promise<ChainResult>;
}

/** Upstream AuthenticatedGroupAdder: adds system:authenticated unless the user already is in it (or in system:unauthenticated). */
function withAuthenticatedGroup(user: UserInfo): UserInfo {
  if (user.groups.some((g) => g === ALL_AUTHENTICATED || g === ALL_UNAUTHENTICATED)) return user;
  return Object.freeze({ ...user, groups: Object.freeze([...user.groups, ALL_AUTHENTICATED]) });
}

/**
 * The token step answers a cached token with the same user object each time: its chain user is
 * kept beside it, so that requests with one token share one user object (the authorizer's review
 * key is memoized on it). The other steps build a user per request, not worth remembering.
 */
const tokenUsers = new WeakMap<UserInfo, UserInfo>();
function chainUser(step: ChainAuthenticator, user: UserInfo): UserInfo {
  if (step.method !== 'token') return withAuthenticatedGroup(user);
  let added = tokenUsers.get(user);
  if (!added) {
    added = withAuthenticatedGroup(user);
    tokenUsers.set(user, added);
  }
  return added;
}

export function createAuthenticator(chain: readonly ChainAuthenticator[]): Authenticator {
  /** The chain from step `from` on, once a step answered with a promise. */
  const rest = async (req: IncomingMessage, from: number, pending: Promise<ChainResult>, errors: string[] | undefined): Promise<AuthenticationResult> => {
    let answer: ChainResult | Promise<ChainResult> = pending;
    for (let index = from; ; ) {
      const result = answer instanceof Promise ? await answer : answer;
      const outcome = found(chain[index], result);
      if (outcome) return outcome;
      if (result.kind === 'error') (errors ??= []).push(result.error);
      if (++index === chain.length) return finish(errors);
      answer = chain[index].authenticate(req);
    }
  };
  return {
    authenticate(req: IncomingMessage): AuthenticationResult | Promise<AuthenticationResult> {
      let errors: string[] | undefined;
      // Most steps answer synchronously (a certificate verdict cached on the connection, a cached
      // token): the whole chain then answers synchronously, and a promise only when a review is asked.
      for (let index = 0; index < chain.length; index++) {
        const answer = chain[index].authenticate(req);
        if (answer instanceof Promise) return rest(req, index, answer, errors);
        const outcome = found(chain[index], answer);
        if (outcome) return outcome;
        if (answer.kind === 'error') (errors ??= []).push(answer.error);
      }
      return finish(errors);
    },
  };
}

/** A step that found a user ends the chain. */
function found(step: ChainAuthenticator, result: ChainResult): AuthenticationResult | undefined {
  return result.kind === 'user' ? { outcome: 'authenticated', user: chainUser(step, result.user), method: step.method } : undefined;
}

/** Nobody authenticated the request: a credential that failed is a rejection, none at all the anonymous user. */
function finish(errors: string[] | undefined): AuthenticationResult {
  if (errors) return { outcome: 'rejected', reason: errors.join('; ') };
  return { outcome: 'authenticated', user: ANONYMOUS_USER, method: 'anonymous' };
}
