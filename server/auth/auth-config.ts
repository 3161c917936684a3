/**
 * The authentication configuration of a delegated extension API server, as k8s.io/apiserver's
 * DelegatingAuthenticationOptions builds it: the client CA and the request-header (front-proxy)
 * settings, read from the ConfigMap `kube-system/extension-apiserver-authentication` that
 * kube-apiserver publishes, watched and reloaded; `--client-ca-file` replaces the ConfigMap's
 * client CA, `--requestheader-client-ca-file` (with the other --requestheader-* flags) replaces
 * its whole request-header part, and `--authentication-skip-lookup` uses the flags only.
 *
 * Unlike upstream, which can tolerate a failed lookup and go on treating every request as
 * anonymous, a Forbidden ConfigMap fails the start with the RoleBinding to create.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { KubeApiError, type KubeClient, type KubeWatch } from '../kube-client';
import { CertPool } from './cert-pool';

export const AUTH_CONFIGMAP_NAMESPACE = 'kube-system';
export const AUTH_CONFIGMAP_NAME = 'extension-apiserver-authentication';
const AUTH_READER_ROLE = 'extension-apiserver-authentication-reader';

const CONFIGMAP_PATH = `/api/v1/namespaces/${AUTH_CONFIGMAP_NAMESPACE}/configmaps/${AUTH_CONFIGMAP_NAME}`;
const CONFIGMAP_WATCH_PATH = `/api/v1/namespaces/${AUTH_CONFIGMAP_NAMESPACE}/configmaps?fieldSelector=${encodeURIComponent(`metadata.name=${AUTH_CONFIGMAP_NAME}`)}`;

/** A misconfiguration the server cannot start with; the message says how to fix it. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/** Who may send X-Remote-* headers, and which headers carry the user. Header names are lowercase. */
export interface RequestHeaderConfig {
  readonly pool: CertPool;
  readonly usernameHeaders: readonly string[];
  readonly uidHeaders: readonly string[];
  readonly groupHeaders: readonly string[];
  readonly extraHeaderPrefixes: readonly string[];
  /** CNs the front proxy's certificate may have; empty = any CN signed by the pool. */
  readonly allowedNames: readonly string[];
}

export interface AuthenticationConfig {
  /** Roots for x509 client-certificate users. @default - no x509 authentication */
  readonly clientCa?: CertPool;
  /** @default - no request-header authentication */
  readonly requestHeader?: RequestHeaderConfig;
}

export interface AuthConfigOptions {
  /** Reads and watches the ConfigMap; required unless skipLookup or both CA files are given. */
  readonly client?: KubeClient;
  /** @default false */
  readonly skipLookup?: boolean;
  /** @default - the ConfigMap's client-ca-file */
  readonly clientCaFile?: string;
  /** With it, the request-header settings come from the flags below, not the ConfigMap. @default - the ConfigMap's */
  readonly requestheaderClientCaFile?: string;
  /** @default ['x-remote-user'] */
  readonly requestheaderUsernameHeaders?: readonly string[];
  /** @default ['x-remote-uid'] */
  readonly requestheaderUidHeaders?: readonly string[];
  /** @default ['x-remote-group'] */
  readonly requestheaderGroupHeaders?: readonly string[];
  /** @default ['x-remote-extra-'] */
  readonly requestheaderExtraHeadersPrefix?: readonly string[];
  /** @default [] (any CN) */
  readonly requestheaderAllowedNames?: readonly string[];
  /** How often CA files given by flag are checked for changes. @default 30000 */
  readonly fileCheckIntervalMs?: number;
  /** Where the in-cluster namespace file is, to name the ServiceAccount in the RoleBinding hint. @default /var/run/secrets/kubernetes.io/serviceaccount */
  readonly serviceAccountDir?: string;
  readonly logger: Logger;
}

/** The live configuration: authenticators read `current()` on every request. */
export interface AuthConfigSource {
  current(): AuthenticationConfig;
  /** True once a configuration was loaded (from the ConfigMap, or from flags only). */
  isLoaded(): boolean;
  /** The PEMs of every root a client certificate may chain to: client CA ∪ requestheader CA. */
  clientCaBundle(): string[];
  /** Called after a reload changed clientCaBundle(). */
  onClientCaChange(listener: () => void): void;
  close(): void;
}

function headerList(value: readonly string[] | undefined, fallback: readonly string[]): string[] {
  return (value ?? fallback).map((h) => h.trim().toLowerCase()).filter((h) => h !== '');
}

/** A ConfigMap value holding a JSON array of strings, as kube-apiserver writes the requestheader-* keys. */
function jsonStrings(data: Record<string, string>, key: string): string[] {
  const raw = data[key];
  if (raw === undefined || raw.trim() === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error(`ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} key "${key}" is ${JSON.stringify(raw)}, not a JSON array of strings`);
  }
  if (!Array.isArray(parsed) || parsed.some((v) => typeof v !== 'string')) {
    throw new Error(`ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} key "${key}" is ${JSON.stringify(raw)}, not a JSON array of strings`);
  }
  return parsed as string[];
}

/** The parts of the configuration the ConfigMap `data` provides (throws naming the key that is malformed). */
function configFromConfigMapData(data: Record<string, string>): AuthenticationConfig {
  const source = (key: string) => `ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} key "${key}"`;
  const clientCa = data['client-ca-file']?.trim() ? CertPool.fromPem(data['client-ca-file'], source('client-ca-file')) : undefined;
  const requestHeader: RequestHeaderConfig | undefined = data['requestheader-client-ca-file']?.trim()
    ? {
        pool: CertPool.fromPem(data['requestheader-client-ca-file'], source('requestheader-client-ca-file')),
        usernameHeaders: headerList(jsonStrings(data, 'requestheader-username-headers'), []),
        uidHeaders: headerList(jsonStrings(data, 'requestheader-uid-headers'), []),
        groupHeaders: headerList(jsonStrings(data, 'requestheader-group-headers'), []),
        extraHeaderPrefixes: headerList(jsonStrings(data, 'requestheader-extra-headers-prefix'), []),
        allowedNames: jsonStrings(data, 'requestheader-allowed-names'),
      }
    : undefined;
  return { ...(clientCa ? { clientCa } : {}), ...(requestHeader ? { requestHeader } : {}) };
}

function readCaFile(file: string, flag: string): CertPool {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`${flag} "${file}" cannot be read: ${(error as Error).message}`);
  }
  return CertPool.fromPem(pem, `${flag} "${file}"`);
}

/**
 * The message for a Forbidden ConfigMap: who we are (from a SelfSubjectReview, else the pod's
 * namespace file and placeholders) and the kubectl command that creates the missing RoleBinding.
 */
async function forbiddenMessage(client: KubeClient, serverMessage: string, serviceAccountDir: string): Promise<string> {
  let namespace = '<namespace>';
  let serviceAccount = '<serviceaccount>';
  let user: string | undefined;
  try {
    namespace = readFileSync(`${serviceAccountDir}/namespace`, 'utf8').trim() || namespace;
  } catch {
    // Not in a cluster: keep the placeholder.
  }
  try {
    const review = await client.request<{ status?: { userInfo?: { username?: string } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'SelfSubjectReview',
    });
    user = review.status === 201 || review.status === 200 ? review.body?.status?.userInfo?.username : undefined;
  } catch {
    // Best effort only: the message stays useful with placeholders.
  }
  const sa = user ? /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user) : null;
  if (sa) [, namespace, serviceAccount] = sa;
  const subject = sa || !user ? `--serviceaccount=${namespace}:${serviceAccount}` : `--user=${user}`;
  const bindingName = `${!sa && user ? user.replace(/[^a-z0-9-]+/gi, '-').toLowerCase() : serviceAccount}-auth-reader`;
  return (
    `cannot read configmap "${AUTH_CONFIGMAP_NAME}" in namespace "${AUTH_CONFIGMAP_NAMESPACE}": forbidden (${serverMessage}). ` +
    `The server's ${sa || !user ? 'ServiceAccount' : `user "${user}"`} needs a RoleBinding in namespace "${AUTH_CONFIGMAP_NAMESPACE}" to Role "${AUTH_READER_ROLE}": ` +
    `kubectl create rolebinding -n ${AUTH_CONFIGMAP_NAMESPACE} ${bindingName} --role=${AUTH_READER_ROLE} ${subject} ` +
    `(or start with --authentication-skip-lookup and pass --client-ca-file and --requestheader-client-ca-file)`
  );
}

/** `previous` when `next` trusts exactly the same roots, else `next`. */
function samePool(previous: CertPool | undefined, next: CertPool | undefined): CertPool | undefined {
  return next?.equals(previous) ? previous : next;
}

function sameBundle(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((pem, i) => pem === b[i]);
}

/**
 * Loads the configuration and keeps it current. Rejects with StartupError when the ConfigMap is
 * Forbidden or malformed, or a CA file is unreadable. When the API server cannot be reached, it
 * resolves anyway and keeps trying in the background; `isLoaded()` stays false until it succeeds.
 */
export async function startAuthConfig(options: AuthConfigOptions): Promise<AuthConfigSource> {
  const { logger } = options;
  const flagsOnlyClientCa = options.clientCaFile !== undefined && options.clientCaFile !== '';
  const flagsOnlyRequestHeader = options.requestheaderClientCaFile !== undefined && options.requestheaderClientCaFile !== '';
  // As upstream: no lookup when told so, or when the flags already give both CAs.
  const lookup = !options.skipLookup && !(flagsOnlyClientCa && flagsOnlyRequestHeader);
  if (lookup && !options.client) throw new StartupError('reading the authentication ConfigMap needs a client of kube-apiserver (or --authentication-skip-lookup)');

  const fromFlags = (): AuthenticationConfig => {
    try {
      const clientCa = flagsOnlyClientCa ? readCaFile(options.clientCaFile!, '--client-ca-file') : undefined;
      const requestHeader: RequestHeaderConfig | undefined = flagsOnlyRequestHeader
        ? {
            pool: readCaFile(options.requestheaderClientCaFile!, '--requestheader-client-ca-file'),
            usernameHeaders: headerList(options.requestheaderUsernameHeaders, ['x-remote-user']),
            uidHeaders: headerList(options.requestheaderUidHeaders, ['x-remote-uid']),
            groupHeaders: headerList(options.requestheaderGroupHeaders, ['x-remote-group']),
            extraHeaderPrefixes: headerList(options.requestheaderExtraHeadersPrefix, ['x-remote-extra-']),
            allowedNames: [...(options.requestheaderAllowedNames ?? [])],
          }
        : undefined;
      return { ...(clientCa ? { clientCa } : {}), ...(requestHeader ? { requestHeader } : {}) };
    } catch (error) {
      throw new StartupError((error as Error).message);
    }
  };

  let flagConfig = fromFlags();
  let mapConfig: AuthenticationConfig = {};
  let config: AuthenticationConfig = flagConfig;
  let loaded = !lookup;
  let bundle: string[] = [];
  const listeners: (() => void)[] = [];

  const recompute = () => {
    // A pool that trusts the same roots as before stays the same object: the authenticators'
    // per-connection verdicts are keyed by it, and a reload that left a CA alone keeps them.
    const clientCa = samePool(config.clientCa, flagsOnlyClientCa ? flagConfig.clientCa : mapConfig.clientCa);
    const rh = flagsOnlyRequestHeader ? flagConfig.requestHeader : mapConfig.requestHeader;
    const requestHeader = rh && { ...rh, pool: samePool(config.requestHeader?.pool, rh.pool)! };
    config = { ...(clientCa ? { clientCa } : {}), ...(requestHeader ? { requestHeader } : {}) };
    const next = [...new Set([...(config.clientCa?.pems ?? []), ...(config.requestHeader?.pool.pems ?? [])])];
    if (!sameBundle(bundle, next)) {
      bundle = next;
      for (const listener of listeners) {
        try {
          listener();
        } catch (error) {
          logger.error({ err: error }, 'client CA change listener failed');
        }
      }
    }
  };

  const applyConfigMap = (data: Record<string, string> | undefined, origin: string) => {
    try {
      mapConfig = data ? configFromConfigMapData(data) : {};
    } catch (error) {
      logger.error({ err: error }, `ignoring ${origin} of ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME}: keeping the previous authentication configuration`);
      return;
    }
    loaded = true;
    recompute();
    logger.info(
      { clientCa: !!mapConfig.clientCa, requestHeader: !!mapConfig.requestHeader, allowedNames: mapConfig.requestHeader?.allowedNames },
      `authentication configuration ${origin} from ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME}`,
    );
  };

  recompute();

  let watch: KubeWatch | undefined;
  if (lookup) {
    const client = options.client!;
    let startRv: string | undefined;
    try {
      const res = await client.request<{ data?: Record<string, string>; metadata?: { resourceVersion?: string }; message?: string }>('GET', CONFIGMAP_PATH);
      if (res.status === 403) {
        throw new StartupError(await forbiddenMessage(client, res.body?.message ?? 'Forbidden', options.serviceAccountDir ?? '/var/run/secrets/kubernetes.io/serviceaccount'));
      } else if (res.status === 401) {
        // Retrying cannot help: the credentials themselves are wrong or expired.
        throw new StartupError(
          `kube-apiserver at ${client.server} rejected the server's credentials (401 Unauthorized) reading ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME}: check the kubeconfig's user, or the mounted ServiceAccount token`,
        );
      } else if (res.status === 200) {
        try {
          mapConfig = configFromConfigMapData(res.body?.data ?? {});
        } catch (error) {
          throw new StartupError((error as Error).message);
        }
        startRv = res.body?.metadata?.resourceVersion;
        loaded = true;
        recompute();
        logger.info({ clientCa: !!mapConfig.clientCa, requestHeader: !!mapConfig.requestHeader }, `authentication configuration loaded from ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME}`);
      } else if (res.status === 404) {
        // As upstream: a cluster that publishes no ConfigMap has no client CA and no front proxy.
        logger.warn(`ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} not found: no client-certificate or request-header authentication until it appears`);
        loaded = true;
      } else {
        logger.warn({ status: res.status }, `reading ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} failed; retrying in the background`);
      }
    } catch (error) {
      if (error instanceof StartupError) throw error;
      logger.warn({ err: error }, `kube-apiserver unreachable while reading ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME}; retrying in the background (not ready until then)`);
    }

    watch = client.watch(
      CONFIGMAP_WATCH_PATH,
      (event) => {
        if (event.type === 'SYNC') {
          const item = (event.object?.items ?? []).find((i: { metadata?: { name?: string } }) => i?.metadata?.name === AUTH_CONFIGMAP_NAME);
          if (item) applyConfigMap(item.data ?? {}, 'loaded');
          else if (!loaded) {
            loaded = true;
            logger.warn(`ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} not found: no client-certificate or request-header authentication until it appears`);
          }
        } else if (event.type === 'ADDED' || event.type === 'MODIFIED') {
          applyConfigMap(event.object?.data ?? {}, 'reloaded');
        } else if (event.type === 'DELETED') {
          // Keep what we trust: a deleted ConfigMap is an accident more often than a revocation,
          // and kube-apiserver recreates it within a minute.
          logger.warn(`ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} was deleted; keeping the last authentication configuration`);
        }
      },
      {
        ...(startRv ? { resourceVersion: startRv } : {}),
        onError: (error) => {
          const forbidden = error instanceof KubeApiError && error.status === 403;
          logger.warn(
            { err: { message: error.message } },
            forbidden
              ? `watching ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} is forbidden: the server's identity needs a RoleBinding in ${AUTH_CONFIGMAP_NAMESPACE} to Role "${AUTH_READER_ROLE}"`
              : `watching ConfigMap ${AUTH_CONFIGMAP_NAMESPACE}/${AUTH_CONFIGMAP_NAME} failed; retrying`,
          );
        },
      },
    );
  }

  // CA files given by flag are re-read when they change (a mounted Secret or ConfigMap is updated in place).
  const files = [options.clientCaFile, options.requestheaderClientCaFile].filter((f): f is string => !!f);
  let lastContents = files.map((f) => safeRead(f));
  const fileTimer =
    files.length > 0
      ? setInterval(() => {
          const contents = files.map((f) => safeRead(f));
          if (contents.every((c, i) => c === lastContents[i])) return;
          try {
            flagConfig = fromFlags();
            lastContents = contents;
            recompute();
            logger.info({ files }, 'client CA files changed: reloaded');
          } catch (error) {
            logger.error({ err: error }, 'client CA files changed but do not load; keeping the previous ones');
          }
        }, options.fileCheckIntervalMs ?? 30_000)
      : undefined;
  fileTimer?.unref();

  return {
    current: () => config,
    isLoaded: () => loaded,
    clientCaBundle: () => [...bundle],
    onClientCaChange: (listener) => {
      listeners.push(listener);
    },
    close: () => {
      watch?.stop();
      if (fileTimer) clearInterval(fileTimer);
    },
  };
}

function safeRead(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
