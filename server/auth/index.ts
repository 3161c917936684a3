/**
 * Delegated authentication and authorization for the extension API server: everything a request
 * needs to become a user and a decision, configured like k8s.io/apiserver's
 * DelegatingAuthenticationOptions and DelegatingAuthorizationOptions.
 */
import type { Logger } from 'pino';
import { loadKubeClient, type KubeClient } from '../kube-client';
import { startAuthConfig, StartupError } from './auth-config';
import { createAuthenticator } from './authenticator';
import { createDelegatedAuthorizer } from './authorizer';
import { createRequestHeaderAuthenticator } from './request-header';
import { createTokenReviewAuthenticator } from './token-review';
import type { Authenticator, Authorizer } from './types';
import { createX509Authenticator } from './x509';

export { StartupError } from './auth-config';
export { forbiddenError } from './authorizer';
export type { AuthenticationResult, Authenticator, AuthorizationDecision, Authorizer, UserInfo } from './types';

export interface DelegatedAuthOptions {
  /** Kubeconfig for the ConfigMap and TokenReview. @default - the in-cluster ServiceAccount */
  authenticationKubeconfig?: string;
  /** Kubeconfig for SubjectAccessReview. @default - the in-cluster ServiceAccount */
  authorizationKubeconfig?: string;
  /** Do not read the ConfigMap kube-system/extension-apiserver-authentication: only the flags below. @default false */
  authenticationSkipLookup?: boolean;
  /** @default - the ConfigMap's client-ca-file */
  clientCaFile?: string;
  /** @default - the ConfigMap's request-header settings */
  requestheaderClientCaFile?: string;
  /** @default ['x-remote-user'] (with requestheaderClientCaFile) */
  requestheaderUsernameHeaders?: string[];
  /** @default ['x-remote-uid'] (with requestheaderClientCaFile) */
  requestheaderUidHeaders?: string[];
  /** @default ['x-remote-group'] (with requestheaderClientCaFile) */
  requestheaderGroupHeaders?: string[];
  /** @default ['x-remote-extra-'] (with requestheaderClientCaFile) */
  requestheaderExtraHeadersPrefix?: string[];
  /** @default [] (any CN signed by the requestheader CA) */
  requestheaderAllowedNames?: string[];
  /** Audiences a bearer token must be meant for (TokenReview spec.audiences). @default - the API server's own */
  authenticationAudiences?: string[];
  /** @default 10 */
  authenticationTokenCacheTtlSeconds?: number;
  /** @default 10 */
  authorizationAllowedCacheTtlSeconds?: number;
  /** @default 10 */
  authorizationDeniedCacheTtlSeconds?: number;
  /** @default ['/healthz', '/readyz', '/livez'] */
  alwaysAllowPaths?: string[];
  /** @default ['system:masters'] */
  alwaysAllowGroups?: string[];
}

export interface DelegatedAuth {
  readonly authenticator: Authenticator;
  readonly authorizer: Authorizer;
  /** PEMs to request client certificates with (client CA ∪ requestheader CA): the TLS server's `ca`. */
  clientCaBundle(): string[];
  /** Called when a reload changed clientCaBundle(): the serving TLS context must be rebuilt. */
  onClientCaChange(listener: () => void): void;
  /** The authentication configuration is loaded (a /readyz check). */
  isReady(): boolean;
  close(): void;
}

/** What the server's configuration stage shares with auth, and test seams. */
export interface DelegatedAuthDependencies {
  /**
   * Kube clients built once by the configuration stage and shared with its other parts: auth
   * uses them and leaves closing them to their owner.
   * @default - built here from the kubeconfigs (one for both when they are the same), closed by close()
   */
  readonly clients?: { readonly authentication: KubeClient; readonly authorization: KubeClient };
  /** @default Date.now */
  readonly now?: () => number;
  /** @default - loadKubeClient({ kubeconfig }) */
  readonly loadClient?: (kubeconfig: string | undefined) => KubeClient;
  /** Where the in-cluster ServiceAccount files are. @default /var/run/secrets/kubernetes.io/serviceaccount */
  readonly serviceAccountDir?: string;
}

/**
 * Loads the authentication configuration (see auth-config.ts) and builds the authenticator chain
 * request-header → x509 → TokenReview and the delegated authorizer. Rejects with StartupError
 * when the configuration cannot be loaded (a Forbidden ConfigMap names the missing RoleBinding).
 */
export async function startDelegatedAuth(options: DelegatedAuthOptions, logger: Logger, deps: DelegatedAuthDependencies = {}): Promise<DelegatedAuth> {
  const now = deps.now ?? Date.now;
  const clients = new Map<string, KubeClient>();
  const clientFor = (kubeconfig: string | undefined): KubeClient => {
    const key = kubeconfig ?? '';
    let client = clients.get(key);
    if (!client) {
      try {
        client = deps.loadClient ? deps.loadClient(kubeconfig) : loadKubeClient({ kubeconfig, ...(deps.serviceAccountDir ? { serviceAccountDir: deps.serviceAccountDir } : {}) });
      } catch (error) {
        throw new StartupError((error as Error).message);
      }
      clients.set(key, client);
    }
    return client;
  };
  const closeClients = () => {
    for (const c of clients.values()) c.close();
  };

  const authnClient = deps.clients?.authentication ?? clientFor(options.authenticationKubeconfig);
  const authzClient = deps.clients?.authorization ?? clientFor(options.authorizationKubeconfig);
  let config: Awaited<ReturnType<typeof startAuthConfig>>;
  try {
    config = await startAuthConfig({
      client: authnClient,
      skipLookup: options.authenticationSkipLookup ?? false,
      ...(options.clientCaFile ? { clientCaFile: options.clientCaFile } : {}),
      ...(options.requestheaderClientCaFile ? { requestheaderClientCaFile: options.requestheaderClientCaFile } : {}),
      ...(options.requestheaderUsernameHeaders ? { requestheaderUsernameHeaders: options.requestheaderUsernameHeaders } : {}),
      ...(options.requestheaderUidHeaders ? { requestheaderUidHeaders: options.requestheaderUidHeaders } : {}),
      ...(options.requestheaderGroupHeaders ? { requestheaderGroupHeaders: options.requestheaderGroupHeaders } : {}),
      ...(options.requestheaderExtraHeadersPrefix ? { requestheaderExtraHeadersPrefix: options.requestheaderExtraHeadersPrefix } : {}),
      ...(options.requestheaderAllowedNames ? { requestheaderAllowedNames: options.requestheaderAllowedNames } : {}),
      ...(deps.serviceAccountDir ? { serviceAccountDir: deps.serviceAccountDir } : {}),
      logger,
    });
  } catch (error) {
    closeClients();
    throw error;
  }

  const authenticator = createAuthenticator([
    createRequestHeaderAuthenticator(() => config.current().requestHeader, now),
    createX509Authenticator(() => config.current().clientCa, now),
    createTokenReviewAuthenticator({
      client: authnClient,
      ...(options.authenticationAudiences ? { audiences: options.authenticationAudiences } : {}),
      cacheTtlMs: (options.authenticationTokenCacheTtlSeconds ?? 10) * 1000,
      now,
      logger,
    }),
  ]);
  let authorizer: Authorizer;
  try {
    authorizer = createDelegatedAuthorizer({
      client: authzClient,
      ...(options.alwaysAllowPaths ? { alwaysAllowPaths: options.alwaysAllowPaths } : {}),
      ...(options.alwaysAllowGroups ? { alwaysAllowGroups: options.alwaysAllowGroups } : {}),
      allowedCacheTtlMs: (options.authorizationAllowedCacheTtlSeconds ?? 10) * 1000,
      deniedCacheTtlMs: (options.authorizationDeniedCacheTtlSeconds ?? 10) * 1000,
      now,
      logger,
    });
  } catch (error) {
    config.close();
    closeClients();
    throw new StartupError((error as Error).message);
  }

  let closed = false;
  return {
    authenticator,
    authorizer,
    clientCaBundle: () => config.clientCaBundle(),
    onClientCaChange: (listener) => config.onClientCaChange(listener),
    isReady: () => !closed && config.isLoaded(),
    close: () => {
      closed = true;
      config.close();
      closeClients();
    },
  };
}
