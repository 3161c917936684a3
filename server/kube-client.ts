/**
 * A minimal JSON client of kube-apiserver over node:https with a keep-alive agent: enough for the
 * server's own calls (the authentication ConfigMap, TokenReview, SubjectAccessReview, namespaces).
 *
 * Configuration is kubeconfig files as kubectl reads them (merged KUBECONFIG, --context, relative
 * paths, tokenFile, exec credential plugins, auth providers, proxy-url) or the in-cluster
 * ServiceAccount (token, ca.crt, KUBERNETES_SERVICE_HOST/PORT), as client-go resolves them.
 * Exec plugins, auth providers and proxies are @kubernetes/client-node's KubeConfig at work,
 * loaded only for a kubeconfig that uses them; the transport and the reflector stay ours (one
 * keep-alive agent, timeouts, watch resume and dead-peer detection, which client-node's fetch
 * client and informer do not have). TLS is always verified: `insecure-skip-tls-verify` is refused.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';

/** The in-cluster ServiceAccount mount of every pod (unless automountServiceAccountToken is false). */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Where warnings go (a pino Logger fits). */
export interface KubeClientLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface KubeWatchEvent {
  /** ADDED, MODIFIED, DELETED, or SYNC: a full list (`object` is the List) that replaces everything known before. */
  readonly type: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly object: any;
}

export interface KubeWatchOptions {
  /**
   * Start watching from this resourceVersion (taken from an earlier GET or LIST) instead of
   * listing first.
   * @default - list first and emit a SYNC event
   */
  readonly resourceVersion?: string;
  /** Told about every failed list or watch attempt (the watch retries with backoff on its own). @default - ignored */
  readonly onError?: (error: Error) => void;
}

export interface KubeWatch {
  /** Ends the watch; `done` then resolves. */
  stop(): void;
  readonly done: Promise<void>;
}

export interface KubeClient {
  /** `https://host:port` of the API server. */
  readonly server: string;
  /**
   * One JSON request. Resolves with any HTTP status (the caller decides what a 403 or 404 means);
   * rejects only when no answer came (connection refused, TLS failure, timeout).
   */
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /**
   * A reflector on a collection path (query allowed, e.g. a fieldSelector): LIST, emit SYNC, then
   * stream watch events, resuming from the last resourceVersion seen (bookmarks keep it fresh);
   * on 410 Gone it lists again and emits SYNC. Retries with backoff until stopped.
   */
  watch(path: string, onEvent: (event: KubeWatchEvent) => void, options?: KubeWatchOptions): KubeWatch;
  /** Closes the keep-alive connections and stops every watch. */
  close(): void;
}

/** The resolved connection settings of a KubeClient. */
export interface KubeClientConfig {
  /** `https://host:port`. */
  readonly server: string;
  /** PEM bundle of the API server's CA. @default - the system roots */
  readonly caPem?: string;
  /** TLS server name to verify instead of the server's host. @default - the server's host */
  readonly tlsServerName?: string;
  /** Client certificate (chain) and key, PEM. @default - none */
  readonly clientCertPem?: string;
  readonly clientKeyPem?: string;
  /** A fixed bearer token. @default - none */
  readonly token?: string;
  /** A file holding the bearer token, re-read every `tokenRefreshMs` (bound ServiceAccount tokens rotate). @default - none */
  readonly tokenFile?: string;
  /** The cluster's proxy-url (http, https or socks5). @default - none */
  readonly proxyUrl?: string;
  /**
   * The kubeconfig entries of a user with an exec plugin or auth-provider, or of a cluster behind a
   * proxy: handed to @kubernetes/client-node's KubeConfig, which computes the Authorization header
   * (and the proxy agent). Paths in them are absolute.
   * @default - none: the credentials above are all there is
   */
  readonly kubeconfigEntries?: {
    readonly contextName: string;
    readonly cluster: { readonly name: string; readonly cluster: Record<string, unknown> };
    readonly user: { readonly name: string; readonly user: Record<string, unknown> };
    /** For errors: `exec credential plugin "aws" of user "eks"`. */
    readonly describe: string;
  };
}

export interface KubeClientTuning {
  /** Per-request timeout. @default 10000 */
  readonly requestTimeoutMs?: number;
  /** How often a token file is re-read, and exec plugin or auth-provider credentials asked again (at once after a 401). @default 60000 (client-go re-reads token files every minute) */
  readonly tokenRefreshMs?: number;
  /**
   * A watch on which no byte (not even a bookmark; kube-apiserver sends one about every minute)
   * arrived for this long is taken for a dead peer (a half-open connection, a blackholing NAT or
   * proxy) and re-established from its last resourceVersion. Over HTTP/2 client-go pings after 30 s
   * of silence and gives up 15 s later; this HTTP/1.1 client cannot ping, so it waits longer than
   * one bookmark interval.
   * @default 120000
   */
  readonly watchIdleTimeoutMs?: number;
  /** Told once when a token file becomes unreadable, or a credential refresh fails while the last good credentials are kept. @default - not told */
  readonly logger?: KubeClientLogger;
  /** First retry delay of a failing watch, doubled up to `maxWatchBackoffMs`. @default 250 */
  readonly watchBackoffMs?: number;
  /** @default 10000 */
  readonly maxWatchBackoffMs?: number;
}

/** An answer other than the one expected (a List for a LIST, 200 for a watch). */
export class KubeApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    const message = typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string' ? (body as { message: string }).message : String(body).slice(0, 200);
    super(`${method} ${path}: HTTP ${status}: ${message}`);
    this.name = 'KubeApiError';
  }
}

export interface LoadKubeClientOptions extends KubeClientTuning {
  /** A kubeconfig file. @default - the files of KUBECONFIG in `env`, else the in-cluster ServiceAccount configuration */
  readonly kubeconfig?: string;
  /** The kubeconfig context to use instead of its current-context (kubectl's --context). @default - the current-context */
  readonly context?: string;
  /** Where the ServiceAccount files are. @default SERVICE_ACCOUNT_DIR */
  readonly serviceAccountDir?: string;
  /** Environment to read KUBECONFIG and KUBERNETES_SERVICE_HOST/PORT from. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * A client from kubeconfig files (`kubeconfig`, else the `KUBECONFIG` list of `env`), or from the
 * in-cluster ServiceAccount when there is neither, as controller-runtime's config loading picks.
 */
export function loadKubeClient(options: LoadKubeClientOptions): KubeClient {
  const env = options.env ?? process.env;
  const files = options.kubeconfig ? [options.kubeconfig] : kubeconfigFilesFromEnv(env);
  let config: KubeClientConfig;
  if (files) {
    config = configFromKubeconfig(files, options.context);
  } else {
    if (options.context !== undefined) {
      throw new Error(`--context="${options.context}" needs a kubeconfig (--kubeconfig or KUBECONFIG): the in-cluster configuration has no contexts`);
    }
    config = inClusterConfig(options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR, env);
  }
  return createKubeClient(config, options);
}

/**
 * The files of `KUBECONFIG` (a path list, separated by ':' as kubectl reads it), without
 * duplicates and without the files that do not exist, as kubectl skips them; undefined when unset.
 */
export function kubeconfigFilesFromEnv(env: NodeJS.ProcessEnv): string[] | undefined {
  const value = env.KUBECONFIG;
  if (!value) return undefined;
  const listed = [...new Set(value.split(path.delimiter).filter((f) => f !== ''))];
  const existing = listed.filter((f) => existsSync(f));
  if (existing.length === 0) throw new Error(`KUBECONFIG="${value}" names no existing file: expected a kubeconfig path, or several separated by "${path.delimiter}"`);
  return existing;
}

/** The in-cluster configuration, as client-go's rest.InClusterConfig. */
export function inClusterConfig(serviceAccountDir: string, env: NodeJS.ProcessEnv): KubeClientConfig {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new Error(
      'unable to load in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined; outside a cluster pass a kubeconfig (--kubeconfig, --authentication-kubeconfig, --authorization-kubeconfig, or KUBECONFIG)',
    );
  }
  const tokenFile = path.join(serviceAccountDir, 'token');
  const caFile = path.join(serviceAccountDir, 'ca.crt');
  const caPem = readRequired(caFile, 'the in-cluster CA (is the ServiceAccount token mounted? automountServiceAccountToken must not be false)');
  readRequired(tokenFile, 'the in-cluster ServiceAccount token (is automountServiceAccountToken false?)');
  return { server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`, caPem, tokenFile };
}

function readRequired(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`cannot read ${what} from "${file}": ${(error as Error).message}`);
  }
}

type Entry = Record<string, unknown>;
interface NamedEntry {
  readonly name: string;
  readonly entry: Entry;
  /** The kubeconfig file it came from (relative paths in it are already made absolute). */
  readonly file: string;
}

/** One kubeconfig file, parsed, with the relative paths of its clusters and users made absolute against its directory, as client-go resolves them. */
function readKubeconfigFile(file: string): { clusters: NamedEntry[]; users: NamedEntry[]; contexts: NamedEntry[]; currentContext?: string } {
  const text = readRequired(file, 'the kubeconfig');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let doc: any;
  try {
    doc = parseYaml(text);
  } catch (error) {
    throw new Error(`kubeconfig "${file}" is not valid YAML: ${(error as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null) throw new Error(`kubeconfig "${file}" is empty or not a mapping`);
  const dir = path.dirname(path.resolve(file));
  const absolute = (entry: Entry, keys: readonly string[]): Entry => {
    const copy: Entry = { ...entry };
    for (const key of keys) if (typeof copy[key] === 'string' && copy[key] !== '') copy[key] = path.resolve(dir, copy[key] as string);
    return copy;
  };
  const named = (list: unknown, field: 'cluster' | 'user' | 'context', resolve: (e: Entry) => Entry): NamedEntry[] =>
    (Array.isArray(list) ? list : []).flatMap((item: { name?: unknown } & Record<string, unknown>) =>
      item && typeof item.name === 'string' && typeof item[field] === 'object' && item[field] !== null ? [{ name: item.name, entry: resolve(item[field] as Entry), file }] : [],
    );
  const currentContext = typeof doc['current-context'] === 'string' && doc['current-context'] !== '' ? (doc['current-context'] as string) : undefined;
  return {
    clusters: named(doc.clusters, 'cluster', (e) => absolute(e, ['certificate-authority'])),
    users: named(doc.users, 'user', (e) => {
      const user = absolute(e, ['client-certificate', 'client-key', 'tokenFile']);
      // An exec command with a path separator is relative to the kubeconfig; a bare name is looked up in PATH.
      const exec = user.exec as Entry | undefined;
      if (exec && typeof exec.command === 'string' && exec.command.includes('/')) user.exec = absolute(exec, ['command']);
      return user;
    }),
    contexts: named(doc.contexts, 'context', (e) => e),
    ...(currentContext ? { currentContext } : {}),
  };
}

/** The exec credential API versions client-go accepts (v1alpha1 was removed in Kubernetes 1.24). */
const EXEC_API_VERSIONS = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'];
/** The auth providers @kubernetes/client-node implements. */
const AUTH_PROVIDERS = ['oidc', 'gcp', 'azure'];

/**
 * Resolves kubeconfig files into connection settings, as kubectl does: several files are merged
 * (the first file to define a cluster, user or context name wins, and the first current-context
 * set wins), `context` replaces the current-context (kubectl's --context), and relative paths
 * are relative to the file that holds them.
 */
export function configFromKubeconfig(files: string | readonly string[], context?: string): KubeClientConfig {
  const list = typeof files === 'string' ? [files] : files;
  const source = `kubeconfig "${list.join(path.delimiter)}"`;
  const parsed = list.map(readKubeconfigFile);
  const merge = (field: 'clusters' | 'users' | 'contexts'): NamedEntry[] => {
    const merged = new Map<string, NamedEntry>();
    for (const p of parsed) for (const e of p[field]) if (!merged.has(e.name)) merged.set(e.name, e);
    return [...merged.values()];
  };
  const clusters = merge('clusters');
  const users = merge('users');
  const contexts = merge('contexts');
  const contextName = context ?? parsed.find((p) => p.currentContext)?.currentContext;
  if (contextName === undefined) throw new Error(`${source} has no current-context (expected the name of one of its contexts, or --context)`);
  const find = (entries: NamedEntry[], name: string, field: string): NamedEntry => {
    const found = entries.find((e) => e.name === name);
    if (!found) throw new Error(`${source}: ${field} "${name}" not found (expected one of: ${entries.map((e) => e.name).join(', ') || 'none'})`);
    return found;
  };
  const selected = find(contexts, contextName, 'context').entry;
  if (typeof selected.cluster !== 'string' || selected.cluster === '') throw new Error(`${source}: context "${contextName}" names no cluster`);
  const clusterName = selected.cluster;
  const cluster = find(clusters, clusterName, 'cluster').entry;
  const userName = typeof selected.user === 'string' && selected.user !== '' ? selected.user : undefined;
  const user = userName ? find(users, userName, 'user').entry : {};

  const server = cluster.server;
  if (typeof server !== 'string' || !server.startsWith('https://')) {
    throw new Error(`${source}: cluster "${clusterName}" server ${JSON.stringify(server)} is not an https:// URL`);
  }
  if (cluster['insecure-skip-tls-verify'] === true) {
    throw new Error(
      `${source}: cluster "${clusterName}" sets insecure-skip-tls-verify: true, which this server refuses (it would send tokens and user identities to anyone); set certificate-authority-data or certificate-authority instead`,
    );
  }
  for (const unsupported of ['username', 'password']) {
    if (user[unsupported] !== undefined) {
      throw new Error(`${source}: user "${userName}" uses "${unsupported}" (basic authentication, which kube-apiserver removed in 1.19); use a client certificate, token, tokenFile, exec plugin or auth-provider`);
    }
  }
  const exec = user.exec as Entry | undefined;
  if (exec !== undefined) {
    if (typeof exec.command !== 'string' || exec.command === '') throw new Error(`${source}: user "${userName}" exec has no command (expected the credential plugin to run, e.g. aws or kubelogin)`);
    if (!EXEC_API_VERSIONS.includes(String(exec.apiVersion))) {
      const given = exec.apiVersion === undefined ? 'has no apiVersion' : `apiVersion ${JSON.stringify(exec.apiVersion)} is not supported`;
      throw new Error(`${source}: user "${userName}" exec ${given} (expected ${EXEC_API_VERSIONS.join(' or ')})`);
    }
  }
  const authProvider = user['auth-provider'] as Entry | undefined;
  if (authProvider !== undefined && !AUTH_PROVIDERS.includes(String(authProvider.name))) {
    throw new Error(`${source}: user "${userName}" auth-provider ${JSON.stringify(authProvider.name)} is not supported (expected one of ${AUTH_PROVIDERS.join(', ')}, or an exec plugin)`);
  }
  const proxyUrl = typeof cluster['proxy-url'] === 'string' && cluster['proxy-url'] !== '' ? (cluster['proxy-url'] as string) : undefined;
  if (proxyUrl !== undefined && !/^(https?|socks5h?):\/\//.test(proxyUrl)) {
    throw new Error(`${source}: cluster "${clusterName}" proxy-url "${proxyUrl}" is not a proxy URL (expected http://, https://, socks5:// or socks5h://)`);
  }

  const dataOrFile = (dataKey: string, fileKey: string, owner: Entry): string | undefined => {
    const data = owner[dataKey];
    if (typeof data === 'string' && data !== '') return Buffer.from(data, 'base64').toString('utf8');
    const ref = owner[fileKey];
    if (typeof ref === 'string' && ref !== '') return readRequired(ref, `${fileKey} of ${source}`);
    return undefined;
  };
  const clientCertPem = dataOrFile('client-certificate-data', 'client-certificate', user);
  const clientKeyPem = dataOrFile('client-key-data', 'client-key', user);
  if ((clientCertPem === undefined) !== (clientKeyPem === undefined)) {
    throw new Error(`${source}: user "${userName}" has a client certificate without a key or a key without a certificate (expected both)`);
  }
  const token = typeof user.token === 'string' && user.token !== '' ? user.token : undefined;
  const tokenFile = typeof user.tokenFile === 'string' && user.tokenFile !== '' ? user.tokenFile : undefined;
  const tlsServerName = typeof cluster['tls-server-name'] === 'string' && cluster['tls-server-name'] !== '' ? (cluster['tls-server-name'] as string) : undefined;
  const plugin = exec !== undefined || authProvider !== undefined || proxyUrl !== undefined;
  return {
    server: server.replace(/\/+$/, ''),
    caPem: dataOrFile('certificate-authority-data', 'certificate-authority', cluster),
    ...(tlsServerName ? { tlsServerName } : {}),
    ...(clientCertPem ? { clientCertPem, clientKeyPem } : {}),
    ...(token ? { token } : {}),
    ...(tokenFile && !token ? { tokenFile } : {}),
    ...(proxyUrl ? { proxyUrl } : {}),
    ...(plugin
      ? {
          kubeconfigEntries: {
            contextName,
            cluster: { name: clusterName, cluster },
            user: { name: userName ?? `${contextName}-user`, user },
            describe: exec !== undefined ? `exec credential plugin "${exec.command as string}" of user "${userName}"` : authProvider !== undefined ? `auth-provider "${String(authProvider.name)}" of user "${userName}"` : `cluster "${clusterName}"`,
          },
        }
      : {}),
  };
}

/** A client over explicit settings. */
export function createKubeClient(config: KubeClientConfig, tuning: KubeClientTuning = {}): KubeClient {
  return new HttpsKubeClient(config, tuning);
}

/** What an exec plugin or auth provider answered, through client-node. */
interface PluginAnswer {
  /** Authorization (and Impersonate-User, if the kubeconfig says `as`). */
  readonly headers: Record<string, string>;
  /** A client certificate an exec plugin handed out. */
  readonly clientCertPem?: string;
  readonly clientKeyPem?: string;
  /** client-node's agent for the cluster's proxy-url. */
  readonly proxyAgent?: https.Agent;
}

type ClientNodeModules = [typeof import('@kubernetes/client-node/dist/config.js'), typeof import('@kubernetes/client-node/dist/config_types.js')];
let clientNodeModules: Promise<ClientNodeModules> | undefined;

/**
 * @kubernetes/client-node's KubeConfig (and its parsers), imported the first time a kubeconfig
 * needs an exec plugin, an auth provider or a proxy: a server on a token or a client certificate
 * (in-cluster, the usual case) never evaluates it. The deep imports skip the generated API
 * clients of the package's index.
 */
function loadClientNode(): Promise<ClientNodeModules> {
  return (clientNodeModules ??= Promise.all([import('@kubernetes/client-node/dist/config.js'), import('@kubernetes/client-node/dist/config_types.js')]));
}

/** The credentials (and proxy agent) of one kubeconfig user and cluster, computed by client-node's KubeConfig. */
class KubeConfigCredentials {
  private kubeConfig: Promise<import('@kubernetes/client-node/dist/config.js').KubeConfig> | undefined;

  constructor(private readonly entries: NonNullable<KubeClientConfig['kubeconfigEntries']>) {}

  /** Runs the exec plugin or asks the auth provider (client-node keeps an exec answer until its expirationTimestamp). */
  async resolve(): Promise<PluginAnswer> {
    const kc = await (this.kubeConfig ??= loadClientNode().then(([{ KubeConfig }, { newClusters, newUsers }]) => {
      const { contextName, cluster, user } = this.entries;
      const kubeConfig = new KubeConfig();
      // One context, made of the entries configFromKubeconfig selected and checked (paths already absolute).
      kubeConfig.loadFromOptions({
        clusters: newClusters([cluster]),
        users: newUsers([user]),
        contexts: [{ name: contextName, cluster: cluster.name, user: user.name }],
        currentContext: contextName,
      });
      return kubeConfig;
    }));
    const options: https.RequestOptions = {};
    try {
      await kc.applyToHTTPSOptions(options);
    } catch (error) {
      const message = String((error as Error)?.message ?? error).trim();
      throw new Error(`${this.entries.describe} failed: ${message || 'it exited with an error and wrote nothing to stderr'}`);
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(options.headers ?? {})) if (typeof value === 'string') headers[name] = value;
    const pem = (value: unknown) => (value === undefined || value === null ? undefined : Buffer.isBuffer(value) ? value.toString('utf8') : String(value));
    const clientCertPem = pem(options.cert);
    const clientKeyPem = pem(options.key);
    return {
      headers,
      ...(clientCertPem && clientKeyPem ? { clientCertPem, clientKeyPem } : {}),
      ...(this.entries.cluster.cluster['proxy-url'] ? { proxyAgent: options.agent as https.Agent } : {}),
    };
  }
}

class HttpsKubeClient implements KubeClient {
  readonly server: string;
  private readonly url: URL;
  private readonly requestTimeoutMs: number;
  private readonly tokenRefreshMs: number;
  private readonly watchBackoffMs: number;
  private readonly maxWatchBackoffMs: number;
  private readonly watchIdleTimeoutMs: number;
  private readonly logger: KubeClientLogger | undefined;
  /** The direct connection's agent, for the client certificate in `agentCertPem`; client-node's proxy agent replaces it behind a proxy-url. */
  private agent: https.Agent | undefined;
  private agentCertPem: string | undefined;
  private proxyAgent: https.Agent | undefined;
  private token: string | undefined;
  private tokenReadAt = 0;
  private tokenFileFailing = false;
  private readonly plugin: KubeConfigCredentials | undefined;
  private pluginAnswer: { readonly at: number; readonly value: Promise<PluginAnswer> } | undefined;
  private lastGoodPluginAnswer: PluginAnswer | undefined;
  private pluginFailing = false;
  private readonly watches = new Set<KubeWatch>();

  constructor(
    private readonly config: KubeClientConfig,
    tuning: KubeClientTuning,
  ) {
    this.server = config.server;
    this.url = new URL(config.server);
    this.requestTimeoutMs = tuning.requestTimeoutMs ?? 10_000;
    this.tokenRefreshMs = tuning.tokenRefreshMs ?? 60_000;
    this.watchBackoffMs = tuning.watchBackoffMs ?? 250;
    this.maxWatchBackoffMs = tuning.maxWatchBackoffMs ?? 10_000;
    this.watchIdleTimeoutMs = tuning.watchIdleTimeoutMs ?? 120_000;
    this.logger = tuning.logger;
    this.token = config.token;
    if (config.tokenFile) {
      // The first read must succeed: a server that starts without a token only collects 401s.
      this.token = readRequired(config.tokenFile, 'the bearer token file').trim();
      this.tokenReadAt = Date.now();
    }
    this.plugin = config.kubeconfigEntries ? new KubeConfigCredentials(config.kubeconfigEntries) : undefined;
    if (!config.proxyUrl) this.agent = this.directAgent(config.clientCertPem, config.clientKeyPem);
  }

  private directAgent(certPem: string | undefined, keyPem: string | undefined): https.Agent {
    this.agentCertPem = certPem;
    return new https.Agent({
      keepAlive: true,
      maxSockets: 32,
      ...(this.config.caPem ? { ca: this.config.caPem } : {}),
      ...(certPem ? { cert: certPem, key: keyPem } : {}),
      ...(this.config.tlsServerName ? { servername: this.config.tlsServerName } : {}),
      rejectUnauthorized: true,
    });
  }

  /**
   * The bearer token, re-read from the token file when it is older than tokenRefreshMs. A read
   * that fails keeps the last good token (the kubelet swaps the file atomically; a read can still
   * race a remount) and is logged once until a read succeeds again.
   */
  private currentToken(): string | undefined {
    const file = this.config.tokenFile;
    if (file && Date.now() - this.tokenReadAt >= this.tokenRefreshMs) {
      this.tokenReadAt = Date.now();
      try {
        const value = readFileSync(file, 'utf8').trim();
        if (value === '') throw new Error('the file is empty');
        this.token = value;
        this.tokenFileFailing = false;
      } catch (error) {
        if (!this.tokenFileFailing) {
          this.tokenFileFailing = true;
          this.logger?.warn({ tokenFile: file, err: { message: (error as Error).message } }, 'cannot read the bearer token file for kube-apiserver; keeping the last token read, and trying again every refresh');
        }
      }
    }
    return this.token;
  }

  /** The exec plugin's or auth provider's answer, asked again every tokenRefreshMs (and after a 401); the last good one is kept when asking fails. */
  private pluginCredentials(plugin: KubeConfigCredentials): Promise<PluginAnswer> {
    const now = Date.now();
    if (this.pluginAnswer && now - this.pluginAnswer.at < this.tokenRefreshMs) return this.pluginAnswer.value;
    const value: Promise<PluginAnswer> = plugin.resolve().then(
      (answer) => {
        this.lastGoodPluginAnswer = answer;
        this.pluginFailing = false;
        return answer;
      },
      (error: Error) => {
        if (!this.lastGoodPluginAnswer) {
          // Nothing to fall back on: the next request asks again.
          if (this.pluginAnswer?.value === value) this.pluginAnswer = undefined;
          throw error;
        }
        if (!this.pluginFailing) {
          this.pluginFailing = true;
          this.logger?.warn({ err: { message: error.message } }, 'refreshing the credentials for kube-apiserver failed; keeping the last good ones');
        }
        return this.lastGoodPluginAnswer;
      },
    );
    this.pluginAnswer = { at: now, value };
    return value;
  }

  /** After a 401: the plugin's credentials are asked again by the next request. */
  private unauthorized(): void {
    this.pluginAnswer = undefined;
  }

  /** The agent and the authentication headers of the next request. */
  private async prepare(): Promise<{ agent: https.Agent; headers: Record<string, string> }> {
    const token = this.currentToken();
    const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
    if (!this.plugin) return { agent: this.agent!, headers };
    const answer = await this.pluginCredentials(this.plugin);
    Object.assign(headers, answer.headers);
    if (this.config.proxyUrl) {
      // client-node builds a new agent per answer: the first one is kept, with its connections.
      this.proxyAgent ??= answer.proxyAgent;
      return { agent: this.proxyAgent!, headers };
    }
    if (answer.clientCertPem && answer.clientCertPem !== this.agentCertPem) {
      // An exec plugin handed out a (new) client certificate: new connections present it; the old
      // agent's connections are closed once requests on them had time to finish.
      const previous = this.agent;
      this.agent = this.directAgent(answer.clientCertPem, answer.clientKeyPem);
      if (previous) setTimeout(() => previous.destroy(), this.requestTimeoutMs).unref();
    }
    return { agent: this.agent!, headers };
  }

  private async open(method: string, requestPath: string, headers: Record<string, string>, timeoutMs: number | undefined): Promise<ReturnType<typeof https.request>> {
    const prepared = await this.prepare();
    const req = https.request({
      agent: prepared.agent,
      protocol: 'https:',
      hostname: this.url.hostname.replace(/^\[|\]$/g, ''),
      port: this.url.port || 443,
      method,
      path: this.url.pathname.replace(/\/+$/, '') + requestPath,
      headers: {
        Accept: 'application/json',
        'User-Agent': 'cdk8s-api-extension-server',
        ...prepared.headers,
        ...headers,
      },
      ...(this.config.tlsServerName ? { servername: this.config.tlsServerName } : {}),
    });
    if (timeoutMs !== undefined) {
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${requestPath}: no answer within ${timeoutMs} ms`)));
    }
    return req;
  }

  async request<T = unknown>(method: string, requestPath: string, body?: unknown): Promise<{ status: number; body: T }> {
    const answer = await this.send<T>(method, requestPath, body);
    if (answer.status !== 401 || !this.plugin) return answer;
    // Expired plugin credentials: ask the plugin again and retry once, as client-go's exec
    // authenticator refreshes on a 401 (our calls are reads and reviews: safe to repeat).
    this.unauthorized();
    return this.send<T>(method, requestPath, body);
  }

  private async send<T>(method: string, requestPath: string, body?: unknown): Promise<{ status: number; body: T }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = await this.open(method, requestPath, payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}, this.requestTimeoutMs);
    return new Promise((resolve, reject) => {
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            // Not JSON (a proxy's HTML error page): hand the text over as it is.
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T });
        });
      });
      req.end(payload);
    });
  }

  watch(collectionPath: string, onEvent: (event: KubeWatchEvent) => void, options: KubeWatchOptions = {}): KubeWatch {
    let stopped = false;
    let current: ReturnType<typeof https.request> | undefined;
    let wake: (() => void) | undefined;
    const separator = collectionPath.includes('?') ? '&' : '?';
    /** The last resourceVersion seen (events and bookmarks), kept across failed connections; undefined: list again. */
    let resourceVersion = options.resourceVersion;

    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });

    const deliver = (event: KubeWatchEvent) => {
      try {
        onEvent(event);
      } catch (error) {
        options.onError?.(error as Error);
      }
    };

    /** One watch connection from `resourceVersion`; resolves when it ends, rejects when it failed. */
    const stream = async (from: string): Promise<void> => {
      // A server-side timeout between 5 and 10 minutes, as client-go's reflector picks.
      const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
      const query = `watch=1&allowWatchBookmarks=true&timeoutSeconds=${timeoutSeconds}&resourceVersion=${encodeURIComponent(from)}`;
      const req = await this.open('GET', `${collectionPath}${separator}${query}`, {}, undefined);
      current = req;
      if (stopped) req.destroy();
      return new Promise<void>((resolve, reject) => {
        // The answer must start within the request timeout; then bytes must keep coming (events or
        // bookmarks) within the idle timeout, or the peer is taken for dead.
        const headerTimer = setTimeout(() => req.destroy(new Error(`WATCH ${collectionPath}: no answer within ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
        let idleTimer: NodeJS.Timeout | undefined;
        const clearTimers = () => {
          clearTimeout(headerTimer);
          clearTimeout(idleTimer);
        };
        req.on('error', (error) => {
          clearTimers();
          if (stopped) resolve();
          else reject(error);
        });
        // Destroyed before an answer (stop(), the header timeout) without an 'error': settle anyway.
        req.on('close', () => {
          clearTimers();
          resolve();
        });
        req.on('response', (res) => {
          clearTimeout(headerTimer);
          if (res.statusCode !== 200) {
            if (res.statusCode === 401) this.unauthorized();
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              if (res.statusCode === 410) {
                resourceVersion = undefined;
                return resolve();
              }
              let body: unknown = Buffer.concat(chunks).toString('utf8');
              try {
                body = JSON.parse(body as string);
              } catch {
                // keep the text
              }
              reject(new KubeApiError('WATCH', collectionPath, res.statusCode ?? 0, body));
            });
            return;
          }
          idleTimer = setTimeout(() => {
            reject(new Error(`WATCH ${collectionPath}: no bytes (not even a bookmark) for ${this.watchIdleTimeoutMs} ms: taking the connection for dead and watching again`));
            req.destroy();
          }, this.watchIdleTimeoutMs);
          res.setEncoding('utf8');
          let buffered = '';
          res.on('data', (chunk: string) => {
            idleTimer!.refresh();
            buffered += chunk;
            let newline: number;
            while ((newline = buffered.indexOf('\n')) >= 0) {
              const line = buffered.slice(0, newline).trim();
              buffered = buffered.slice(newline + 1);
              if (line === '' || resourceVersion === undefined) continue;
              let event: KubeWatchEvent;
              try {
                event = JSON.parse(line) as KubeWatchEvent;
              } catch {
                req.destroy(new Error(`WATCH ${collectionPath}: malformed event line`));
                return;
              }
              if (event.type === 'ERROR') {
                // 410 Expired/Gone: our resourceVersion was compacted away: relist. Other errors: reconnect.
                if (event.object?.code === 410) resourceVersion = undefined;
                req.destroy();
                return;
              }
              const eventRv = event.object?.metadata?.resourceVersion;
              if (typeof eventRv === 'string' && eventRv !== '') resourceVersion = eventRv;
              if (event.type !== 'BOOKMARK' && !stopped) deliver(event);
            }
          });
          res.on('error', () => resolve());
          res.on('close', () => {
            clearTimers();
            resolve();
          });
        });
        req.end();
      });
    };

    const run = async (): Promise<void> => {
      let backoff = this.watchBackoffMs;
      while (!stopped) {
        try {
          if (resourceVersion === undefined) {
            const list = await this.request<{ metadata?: { resourceVersion?: string } }>('GET', collectionPath);
            if (list.status !== 200) throw new KubeApiError('LIST', collectionPath, list.status, list.body);
            if (stopped) break;
            resourceVersion = list.body?.metadata?.resourceVersion ?? '';
            deliver({ type: 'SYNC', object: list.body });
          }
          const started = Date.now();
          await stream(resourceVersion);
          // A watch that lasted was healthy: reconnect at once, and the next failure starts from the
          // first delay again. One that ended at once (a flapping server) waits like a failure.
          if (Date.now() - started > 1000) {
            backoff = this.watchBackoffMs;
            continue;
          }
        } catch (error) {
          if (stopped) break;
          options.onError?.(error as Error);
        }
        await sleep(backoff * (0.8 + Math.random() * 0.4));
        backoff = Math.min(backoff * 2, this.maxWatchBackoffMs);
      }
    };

    const handle: KubeWatch = {
      stop: () => {
        stopped = true;
        current?.destroy();
        wake?.();
        this.watches.delete(handle);
      },
      done: run(),
    };
    this.watches.add(handle);
    return handle;
  }

  close(): void {
    for (const w of [...this.watches]) w.stop();
    this.agent?.destroy();
    this.proxyAgent?.destroy();
  }
}
