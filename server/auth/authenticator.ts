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
  return { ...user, groups: [...user.groups, ALL_AUTHENTICATED] };
}

export function createAuthenticator(chain: readonly ChainAuthenticator[]): Authenticator {
  return {
    async authenticate(req: IncomingMessage): Promise<AuthenticationResult> {
      let errors: string[] | undefined;
      for (const step of chain) {
        // Most steps answer synchronously (a certificate verdict cached on the connection, a cached token): await only promises.
        const answer = step.authenticate(req);
        const result = answer instanceof Promise ? await answer : answer;
        if (result.kind === 'user') return { outcome: 'authenticated', user: withAuthenticatedGroup(result.user), method: step.method };
        if (result.kind === 'error') (errors ??= []).push(result.error);
      }
      if (errors) return { outcome: 'rejected', reason: errors.join('; ') };
      return { outcome: 'authenticated', user: ANONYMOUS_USER, method: 'anonymous' };
    },
  };
}
