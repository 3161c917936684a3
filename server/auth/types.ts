import type { IncomingMessage } from 'node:http';
import type { RequestInfo } from '../request-info';

/** The user a request acts as, as `user.Info` in k8s.io/apiserver. */
export interface UserInfo {
  readonly name: string;
  readonly uid?: string;
  readonly groups: readonly string[];
  readonly extra: Readonly<Record<string, readonly string[]>>;
}

/**
 * `authenticated` carries the user (anonymous included: `system:anonymous` in
 * `system:unauthenticated`); `rejected` means a credential was presented but is invalid → 401.
 */
export type AuthenticationResult =
  | { readonly outcome: 'authenticated'; readonly user: UserInfo; readonly method: 'request-header' | 'x509' | 'token' | 'anonymous' }
  | { readonly outcome: 'rejected'; readonly reason: string };

/** Delegated authentication: request-header → x509 client CA → Bearer token (TokenReview). */
export interface Authenticator {
  /**
   * `req.socket` is a TLSSocket; its verified peer certificate is read there. Answers
   * synchronously when no review has to be asked (a cached token, a certificate, request headers).
   */
  authenticate(req: IncomingMessage): AuthenticationResult | Promise<AuthenticationResult>;
}

export interface AuthorizationDecision {
  readonly allowed: boolean;
  /** The SubjectAccessReview's reason or evaluationError, for logs and the 403 message suffix. */
  readonly reason: string;
}

/** Delegated authorization: always-allow paths and system:masters, else SubjectAccessReview. */
export interface Authorizer {
  /** Answers synchronously when no review has to be asked (an always-allowed path or group, a cached review). */
  authorize(user: UserInfo, request: RequestInfo): AuthorizationDecision | Promise<AuthorizationDecision>;
}
