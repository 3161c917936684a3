import { accessSync, constants as fsConstants } from 'node:fs';
import { isIP } from 'node:net';
import yargs from 'yargs';
import { AuditOptions, AuditPolicyError, loadAuditPolicyFile } from './audit';
import type { DelegatedAuthOptions } from './auth';
import { FLOW_CONTROL_DEFAULTS, FlowControlOptions } from './flow-control';
import { LOG_LEVELS, LogLevel } from './logging';
import { SERVER_VERSION } from './version';

/**
 * Command-line flags → complete() → validate() → ServerConfig, the way k8s.io/apiserver's
 * RecommendedOptions do it. The flag names are the Go apiservers' own, so a Deployment written
 * for kubernetes/sample-apiserver or metrics-server passes the same arguments here.
 */

/** Thrown for a bad command line: the message names the flag, the value and what is expected. */
export class OptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionsError';
  }
}

const STORAGE_BACKENDS = ['memory', 'etcd'] as const;
export type StorageBackend = (typeof STORAGE_BACKENDS)[number];

/** sample-apiserver's default: its keys are kube-apiserver's layout under the group's name. */
const DEFAULT_ETCD_PREFIX = '/registry/wardle.example.com';

/**
 * Memory bounds for a 256 MiB pod (README "Memory bounds"). The store's quota (server/storage/memory.ts
 * says how it was sized): ~11,000 small objects or ~800 of 20 KiB. Bodies in flight: two of the
 * largest (3 MiB) at once, several times that while decoded and handled.
 */
const DEFAULT_STORAGE_QUOTA_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_REQUEST_BODY_BYTES_INFLIGHT = 8 * 1024 * 1024;
/** k8s.io/apiserver's largest request body: a smaller budget could never admit one. */
const MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024;

/** Where objects are kept: this process's memory (one replica, lost on restart), or etcd. */
export type StorageConfig = MemoryStorageConfig | EtcdStorageConfig;

export interface MemoryStorageConfig {
  readonly backend: 'memory';
  /** `--storage-quota-bytes`: the most bytes of objects kept (key + JSON + 1 KiB each); beyond it writes fail with "database space exceeded". */
  readonly quotaBytes: number;
}

export interface EtcdStorageConfig {
  readonly backend: 'etcd';
  /** `--etcd-servers`: http:// or https:// client URLs. */
  readonly servers: readonly string[];
  /** `--etcd-prefix`: starts with '/', no trailing '/'. */
  readonly prefix: string;
  /** `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`: readable PEM files (cert and key together). */
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  /** `--etcd-compaction-interval`; 0 disables compaction by this server. */
  readonly compactionIntervalMs: number;
  /** `--etcd-healthcheck-timeout`. */
  readonly healthcheckTimeoutMs: number;
}

/** What the server runs with, complete and valid. */
export interface ServerConfig {
  /** Port for HTTPS; 0 picks a free port (tests). */
  readonly securePort: number;
  readonly bindAddress: string;
  readonly tlsCertFile: string;
  readonly tlsPrivateKeyFile: string;
  /** Kubeconfig for the server's own calls to kube-apiserver (namespaces); KUBECONFIG, then in-cluster, when unset. */
  readonly kubeconfig?: string;
  /** `--api-definition-file`: the ApiGroupDefinition (JSON) to serve; the bundled wardle API when unset. */
  readonly apiDefinitionFile?: string;
  /** `--context`: the context of every kubeconfig the server loads instead of its current-context. */
  readonly kubeconfigContext?: string;
  readonly auth: DelegatedAuthOptions;
  /** How long to keep serving, unready, after SIGTERM before closing the listener. */
  readonly shutdownDelayMs: number;
  /** Upper bound for in-flight requests to finish once the listener is closed. */
  readonly shutdownTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly storage: StorageConfig;
  /** `--max-request-body-bytes-inflight`: request bodies being read or handled, in bytes, beyond which requests get 429 (0: no limit). */
  readonly maxRequestBodyBytesInflight: number;
  /** `--max-requests-inflight`, `--max-mutating-requests-inflight` (0: no limit), `--request-timeout`. */
  readonly flowControl: Omit<FlowControlOptions, 'onAdmitted'>;
  /** `--min-request-timeout`: watches without `timeoutSeconds` last this many seconds × [1, 2); 0: no end. */
  readonly minRequestTimeoutSeconds: number;
  /** `--audit-log-*` and `--audit-policy-file`; undefined when none is given. */
  readonly audit?: AuditOptions;
  /**
   * The admission plugins that run, from `--enable-admission-plugins` and
   * `--disable-admission-plugins`, in ADMISSION_PLUGINS order.
   * @default DEFAULT_ADMISSION_PLUGINS
   */
  readonly admissionPlugins?: readonly AdmissionPluginName[];
  /**
   * Flags the Go apiservers take that this server accepts and ignores (e.g. `-v=5` from
   * sample-apiserver's e2e Deployment), as given, for one log line at start.
   */
  readonly ignoredFlags: readonly string[];
}

export type ParseResult =
  | { readonly kind: 'run'; readonly config: ServerConfig }
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'version'; readonly text: string };

/** The flags as parsed, before defaults that depend on other flags and before validation. */
interface RawFlags {
  readonly 'secure-port': string;
  readonly 'bind-address': string;
  readonly 'tls-cert-file'?: string;
  readonly 'tls-private-key-file'?: string;
  readonly kubeconfig?: string;
  readonly 'api-definition-file'?: string;
  readonly context?: string;
  readonly 'authentication-kubeconfig'?: string;
  readonly 'authorization-kubeconfig'?: string;
  readonly 'authentication-skip-lookup': boolean;
  readonly 'client-ca-file'?: string;
  readonly 'requestheader-client-ca-file'?: string;
  readonly 'requestheader-username-headers'?: string[];
  readonly 'requestheader-uid-headers'?: string[];
  readonly 'requestheader-group-headers'?: string[];
  readonly 'requestheader-extra-headers-prefix'?: string[];
  readonly 'requestheader-allowed-names'?: string[];
  readonly 'authentication-token-webhook-cache-ttl': string;
  readonly 'authorization-webhook-cache-authorized-ttl': string;
  readonly 'authorization-webhook-cache-unauthorized-ttl': string;
  readonly 'authorization-always-allow-paths': string[];
  readonly 'authorization-always-allow-groups': string[];
  readonly 'shutdown-delay-duration': string;
  readonly 'shutdown-timeout': string;
  readonly 'log-level': string;
  readonly storage?: string;
  readonly 'etcd-servers'?: string[];
  readonly 'etcd-prefix': string;
  readonly 'etcd-cafile'?: string;
  readonly 'etcd-certfile'?: string;
  readonly 'etcd-keyfile'?: string;
  readonly 'etcd-compaction-interval': string;
  readonly 'etcd-healthcheck-timeout': string;
  readonly 'storage-quota-bytes'?: string;
  readonly 'max-request-body-bytes-inflight': string;
  readonly 'max-requests-inflight': string;
  readonly 'max-mutating-requests-inflight': string;
  readonly 'request-timeout': string;
  readonly 'min-request-timeout': string;
  readonly 'audit-log-path'?: string;
  readonly 'audit-log-maxage'?: string;
  readonly 'audit-log-maxbackup'?: string;
  readonly 'audit-log-maxsize'?: string;
  readonly 'audit-policy-file'?: string;
  readonly 'enable-admission-plugins'?: string[];
  readonly 'disable-admission-plugins'?: string[];
  readonly v?: string;
}

/**
 * The admission plugins this server registers, in the order they run: upstream's
 * RecommendedPluginOrder, then sample-apiserver's BanFlunder.
 */
export const ADMISSION_PLUGINS = ['NamespaceLifecycle', 'MutatingAdmissionWebhook', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionWebhook', 'BanFlunder'] as const;
export type AdmissionPluginName = (typeof ADMISSION_PLUGINS)[number];
/** On unless disabled, as upstream (its DefaultOffPlugins are none of these). */
export const DEFAULT_ADMISSION_PLUGINS: readonly AdmissionPluginName[] = ['NamespaceLifecycle', 'MutatingAdmissionWebhook', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionWebhook', 'BanFlunder'];

/**
 * Flags of the Go apiservers this server has no use for, accepted so their Deployments run
 * unchanged: klog's verbosity (--log-level sets ours).
 */
const IGNORED_FLAGS = ['v'] as const;

const AUDIT_FLAGS = ['audit-log-path', 'audit-log-maxage', 'audit-log-maxbackup', 'audit-log-maxsize', 'audit-policy-file'] as const;

const DURATION_UNITS_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a Go `time.Duration` string (`10s`, `1m30s`, `500ms`, `0`) into milliseconds.
 * Returns undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  const whole = /^(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))*$/;
  if (!whole.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(amount) * DURATION_UNITS_MS[unit];
  }
  return total;
}

/** `--flag=a,b --flag c` → [a, b, c], as pflag's StringSlice reads repeated and comma lists. */
function commaList(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const values = Array.isArray(value) ? value : [value];
  return values.flatMap((v) => String(v).split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
}

function parser(argv: readonly string[]) {
  const list = { type: 'string', coerce: commaList } as const;
  return yargs([...argv])
    .scriptName('extension-apiserver')
    .usage('$0 [flags]\n\nServes an aggregated API behind kube-apiserver, with delegated authentication and authorization.')
    .parserConfiguration({ 'camel-case-expansion': false, 'strip-aliased': true, 'boolean-negation': false })
    .help(false)
    .version(false)
    .options({
      'secure-port': { type: 'string', default: '10250', group: 'Serving:', describe: 'The port on which to serve HTTPS (0: a free port).' },
      'bind-address': { type: 'string', default: '0.0.0.0', group: 'Serving:', describe: 'The IP address on which to listen.' },
      'tls-cert-file': { type: 'string', group: 'Serving:', describe: 'PEM serving certificate (with intermediates after it). Reloaded when the file changes.' },
      'tls-private-key-file': { type: 'string', group: 'Serving:', describe: 'PEM private key matching --tls-cert-file. Reloaded when the file changes.' },
      kubeconfig: { type: 'string', group: 'Cluster:', describe: 'Kubeconfig for the server\'s own calls to kube-apiserver; the files of KUBECONFIG (merged as kubectl merges them), else in-cluster config, when unset.' },
      context: { type: 'string', group: 'Cluster:', describe: 'The kubeconfig context to use instead of its current-context, as kubectl\'s --context (for every kubeconfig flag, or KUBECONFIG).' },
      'authentication-kubeconfig': { type: 'string', group: 'Authentication:', describe: 'Kubeconfig with rights to create tokenreviews and read the auth ConfigMap; in-cluster config when unset.' },
      'authentication-skip-lookup': { type: 'boolean', default: false, group: 'Authentication:', describe: 'Do not read kube-system/extension-apiserver-authentication; use only the flags.' },
      'client-ca-file': { type: 'string', group: 'Authentication:', describe: 'CA bundle for x509 client certificates (overrides the ConfigMap).' },
      'requestheader-client-ca-file': { type: 'string', group: 'Authentication:', describe: 'CA bundle for the front proxy\'s client certificate (overrides the ConfigMap).' },
      'requestheader-username-headers': { ...list, group: 'Authentication:', describe: 'Request headers to read the user name from, e.g. X-Remote-User.' },
      'requestheader-uid-headers': { ...list, group: 'Authentication:', describe: 'Request headers to read the user UID from, e.g. X-Remote-Uid.' },
      'requestheader-group-headers': { ...list, group: 'Authentication:', describe: 'Request headers to read groups from, e.g. X-Remote-Group.' },
      'requestheader-extra-headers-prefix': { ...list, group: 'Authentication:', describe: 'Request header prefixes for user extras, e.g. X-Remote-Extra-.' },
      'requestheader-allowed-names': { ...list, group: 'Authentication:', describe: 'Common names of front-proxy certificates whose headers are trusted (empty: any).' },
      'authentication-token-webhook-cache-ttl': { type: 'string', default: '10s', group: 'Authentication:', describe: 'How long TokenReview results are cached.' },
      'authorization-kubeconfig': { type: 'string', group: 'Authorization:', describe: 'Kubeconfig with rights to create subjectaccessreviews; in-cluster config when unset.' },
      'authorization-webhook-cache-authorized-ttl': { type: 'string', default: '10s', group: 'Authorization:', describe: 'How long allowed SubjectAccessReview answers are cached.' },
      'authorization-webhook-cache-unauthorized-ttl': { type: 'string', default: '10s', group: 'Authorization:', describe: 'How long denied SubjectAccessReview answers are cached.' },
      'authorization-always-allow-paths': { ...list, default: ['/healthz', '/readyz', '/livez'], group: 'Authorization:', describe: 'Paths anyone may GET without a SubjectAccessReview.' },
      'authorization-always-allow-groups': { ...list, default: ['system:masters'], group: 'Authorization:', describe: 'Groups allowed everything without a SubjectAccessReview.' },
      'shutdown-delay-duration': { type: 'string', default: '5s', group: 'Lifecycle:', describe: 'After SIGTERM, keep serving (unready) this long so endpoints drop the pod first.' },
      'shutdown-timeout': { type: 'string', default: '20s', group: 'Lifecycle:', describe: 'After the listener closes, how long in-flight requests may take to finish.' },
      'max-requests-inflight': { type: 'string', default: String(FLOW_CONTROL_DEFAULTS.maxRequestsInflight), group: 'Flow control:', describe: 'Most read-only requests (get, list) served at once; past it 429 with Retry-After: 1. Watches are not counted, system:masters is never refused; 0: no limit.' },
      'max-mutating-requests-inflight': { type: 'string', default: String(FLOW_CONTROL_DEFAULTS.maxMutatingRequestsInflight), group: 'Flow control:', describe: 'Most mutating requests (create, update, patch, delete) served at once; past it 429 with Retry-After: 1; 0: no limit.' },
      'request-timeout': { type: 'string', default: `${FLOW_CONTROL_DEFAULTS.requestTimeoutMs / 1000}s`, group: 'Flow control:', describe: 'Longest a request other than a watch may take (a client\'s shorter ?timeout= wins); past it 504 and the request\'s answer is dropped.' },
      'min-request-timeout': { type: 'string', default: String(FLOW_CONTROL_DEFAULTS.minRequestTimeoutSeconds), group: 'Flow control:', describe: 'Seconds: a watch without timeoutSeconds ends after a random time between this and twice this, to spread reconnections; 0: watches do not end on their own.' },
      'api-definition-file': { type: 'string', group: 'API:', describe: 'JSON file holding the ApiGroupDefinition to serve (apis/types.ts) instead of the bundled wardle.example.com API; a definition with a feature this server does not honour is refused at start, naming it.' },
      'log-level': { type: 'string', default: 'info', group: 'Logging:', describe: `One of ${LOG_LEVELS.join(', ')}.` },
      storage: { type: 'string', group: 'Storage:', describe: `Storage backend: ${STORAGE_BACKENDS.join(' or ')}. Default: etcd when --etcd-servers is given, else memory (one replica; objects are lost on restart).` },
      'etcd-servers': { ...list, group: 'Storage:', describe: 'etcd client URLs (http:// or https://), comma-separated; requests fail over between them.' },
      'etcd-prefix': { type: 'string', default: DEFAULT_ETCD_PREFIX, group: 'Storage:', describe: 'Prefix of every key this server writes in etcd.' },
      'etcd-cafile': { type: 'string', group: 'Storage:', describe: 'PEM CA bundle to verify etcd\'s serving certificate with.' },
      'etcd-certfile': { type: 'string', group: 'Storage:', describe: 'PEM client certificate to present to etcd (with --etcd-keyfile).' },
      'etcd-keyfile': { type: 'string', group: 'Storage:', describe: 'PEM private key of --etcd-certfile.' },
      'etcd-compaction-interval': { type: 'string', default: '5m', group: 'Storage:', describe: 'How often to compact etcd\'s history, as kube-apiserver does (0: never; leave it to another apiserver or to etcd).' },
      'etcd-healthcheck-timeout': { type: 'string', default: '2s', group: 'Storage:', describe: 'Deadline of one etcd health check (/readyz/etcd).' },
      'storage-quota-bytes': {
        type: 'string',
        group: 'Storage:',
        describe: `With --storage=memory: the most bytes of objects the store keeps (each counted as its key, its JSON and 1 KiB), as etcd's --quota-backend-bytes; past it creates and growing updates fail with 500 "database space exceeded" (nothing stored is lost; deletes work). Default ${DEFAULT_STORAGE_QUOTA_BYTES} (16 MiB, for a 256 MiB pod). etcd enforces its own quota.`,
      },
      'max-request-body-bytes-inflight': {
        type: 'string',
        default: String(DEFAULT_MAX_REQUEST_BODY_BYTES_INFLIGHT),
        group: 'Serving:',
        describe: `Bytes of request bodies being read or handled at once, in the whole process (no Go apiserver flag: --max-requests-inflight counts requests, not bytes); a request whose body does not fit gets 429 with Retry-After before its body is read. At least ${MAX_REQUEST_BODY_BYTES} (one largest body); 0: no limit. Default 8 MiB, for a 256 MiB pod.`,
      },
      'audit-log-path': { type: 'string', group: 'Audit:', describe: 'Write an audit.k8s.io/v1 Event (Metadata level: never a body or a credential) per request to this file, or - for standard output. As kube-apiserver, nothing is written without --audit-policy-file.' },
      'audit-policy-file': { type: 'string', group: 'Audit:', describe: 'audit.k8s.io/v1 Policy (YAML): the first matching rule gives the level; None writes nothing, Request and RequestResponse are written at Metadata.' },
      'audit-log-maxsize': { type: 'string', default: '0', group: 'Audit:', describe: 'Megabytes the audit log file may reach before it is rotated (renamed with the time, e.g. audit-2026-01-02T15-04-05.000.log); 0: 100, as kube-apiserver.' },
      'audit-log-maxbackup': { type: 'string', default: '0', group: 'Audit:', describe: 'Rotated audit log files to keep (0: all).' },
      'audit-log-maxage': { type: 'string', default: '0', group: 'Audit:', describe: 'Days to keep rotated audit log files, by the time in their name (0: no limit).' },
      'enable-admission-plugins': {
        ...list,
        group: 'Admission:',
        describe: `Admission plugins to run besides the default ones (${DEFAULT_ADMISSION_PLUGINS.join(', ')}), comma-separated; the order is fixed. Registered: ${ADMISSION_PLUGINS.join(', ')}.`,
      },
      'disable-admission-plugins': { ...list, group: 'Admission:', describe: 'Admission plugins not to run, even if on by default, comma-separated (NamespaceLifecycle always runs).' },
      v: { type: 'string', group: 'Accepted and ignored (Go apiserver compatibility):', describe: 'klog verbosity; ignored: use --log-level.' },
      help: { type: 'boolean', alias: 'h', describe: 'Show this help.' },
      version: { type: 'boolean', describe: 'Show the version.' },
    })
    .strict()
    .exitProcess(false)
    .wrap(null)
    .fail((message, error) => {
      throw new OptionsError(error?.message ?? message);
    });
}

function durationFlag(flags: RawFlags, name: keyof RawFlags & string): number {
  const text = String(flags[name]);
  const ms = parseDuration(text);
  if (ms === undefined) throw new OptionsError(`--${name}="${text}" is not a duration: expected a number with a unit, e.g. 10s, 1m30s, 500ms`);
  return ms;
}

function nonNegativeInteger(flags: RawFlags, name: (typeof AUDIT_FLAGS)[number], unit: string): number {
  const text = String(flags[name] ?? '0');
  if (!/^\d{1,9}$/.test(text)) throw new OptionsError(`--${name}="${text}" is not a non-negative integer: expected a number of ${unit}, e.g. 0 or 10`);
  return Number(text);
}

/** The audit flags, with the policy read and checked now: a bad policy stops the start here. */
function auditOptions(flags: RawFlags): AuditOptions | undefined {
  if (!AUDIT_FLAGS.some((name) => flags[name] !== undefined && flags[name] !== '0')) return undefined;
  const policyFile = flags['audit-policy-file'] || undefined;
  let policy;
  if (policyFile !== undefined) {
    try {
      policy = loadAuditPolicyFile(policyFile);
    } catch (error) {
      if (!(error instanceof AuditPolicyError)) throw error;
      throw new OptionsError(`--audit-policy-file="${policyFile}" ${error.message.startsWith('cannot be read') ? error.message : `is not a valid audit.k8s.io/v1 Policy: ${error.message}`}`);
    }
  }
  return {
    // Empty, as in the Go servers, means no audit log.
    logPath: flags['audit-log-path'] || undefined,
    maxAgeDays: nonNegativeInteger(flags, 'audit-log-maxage', 'days'),
    maxBackups: nonNegativeInteger(flags, 'audit-log-maxbackup', 'files'),
    maxSizeMegabytes: nonNegativeInteger(flags, 'audit-log-maxsize', 'megabytes'),
    policyFile,
    policy,
  };
}

/** The plugins that run, checked as upstream's AdmissionOptions.Validate (unknown names, overlaps). */
function admissionPlugins(flags: RawFlags): readonly AdmissionPluginName[] {
  const enable = flags['enable-admission-plugins'] ?? [];
  const disable = flags['disable-admission-plugins'] ?? [];
  for (const [flag, names] of [['enable-admission-plugins', enable], ['disable-admission-plugins', disable]] as const) {
    const unknown = names.find((name) => !(ADMISSION_PLUGINS as readonly string[]).includes(name));
    if (unknown !== undefined) throw new OptionsError(`--${flag} plugin "${unknown}" is unknown: expected some of ${ADMISSION_PLUGINS.join(', ')}, comma-separated`);
  }
  const overlap = enable.filter((name) => disable.includes(name));
  if (overlap.length > 0) throw new OptionsError(`[${[...new Set(overlap)].sort().join(' ')}] in enable-admission-plugins and disable-admission-plugins overlapped: expected each plugin in at most one of them`);
  if (disable.includes('NamespaceLifecycle')) {
    throw new OptionsError('--disable-admission-plugins plugin "NamespaceLifecycle" cannot be disabled here: the bundled server always runs it (objects would be accepted in missing or terminating namespaces)');
  }
  return ADMISSION_PLUGINS.filter((name) => (DEFAULT_ADMISSION_PLUGINS.includes(name) || enable.includes(name)) && !disable.includes(name));
}

/** A non-negative integer flag (pflag's IntVar, decimal only), named in the error. */
function countFlag(flags: RawFlags, name: 'max-requests-inflight' | 'max-mutating-requests-inflight' | 'min-request-timeout', expected: string): number {
  const text = String(flags[name]);
  if (!/^\d{1,9}$/.test(text)) throw new OptionsError(`--${name}="${text}" is not a non-negative integer: expected ${expected}`);
  return Number(text);
}

function flowControlConfig(flags: RawFlags): Omit<FlowControlOptions, 'onAdmitted'> {
  const requestTimeoutMs = durationFlag(flags, 'request-timeout');
  if (!(requestTimeoutMs > 0)) throw new OptionsError(`--request-timeout="${flags['request-timeout']}" is not positive: expected a duration above zero, e.g. 60s (every request would time out at once)`);
  return {
    maxRequestsInflight: countFlag(flags, 'max-requests-inflight', 'the most read-only requests in flight, e.g. 400 (0: no limit)'),
    maxMutatingRequestsInflight: countFlag(flags, 'max-mutating-requests-inflight', 'the most mutating requests in flight, e.g. 200 (0: no limit)'),
    requestTimeoutMs,
  };
}

function readableFile(name: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  if (path === '') throw new OptionsError(`--${name} is empty: expected the path of a readable file`);
  try {
    accessSync(path, fsConstants.R_OK);
  } catch (error) {
    throw new OptionsError(`--${name}="${path}" cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}; expected a readable file`);
  }
  return path;
}

/** A size in bytes: a decimal integer, at least `min` (0 allowed when `zeroAllowed`). */
function bytesFlag(name: 'storage-quota-bytes' | 'max-request-body-bytes-inflight', text: string, min: number, zeroAllowed: boolean): number {
  const value = /^\d{1,15}$/.test(text) ? Number(text) : NaN;
  if (Number.isNaN(value)) throw new OptionsError(`--${name}="${text}" is not a number of bytes: expected a decimal integer, e.g. ${32 * 1024 * 1024} for 32 MiB`);
  if (value < min && !(zeroAllowed && value === 0)) {
    throw new OptionsError(`--${name}=${text} is below ${min}: expected at least ${min} bytes${zeroAllowed ? ' (or 0 for no limit)' : ''}`);
  }
  return value;
}

/** Fills the defaults that depend on other flags. */
export function complete(flags: RawFlags): RawFlags {
  // As in the Go servers: one kubeconfig given for the server is also used for authn and authz.
  // As the Go servers' etcd options: storage is etcd as soon as etcd servers are given.
  return {
    ...flags,
    'authentication-kubeconfig': flags['authentication-kubeconfig'] ?? flags.kubeconfig,
    'authorization-kubeconfig': flags['authorization-kubeconfig'] ?? flags.kubeconfig,
    storage: flags.storage ?? ((flags['etcd-servers'] ?? []).length > 0 ? 'etcd' : 'memory'),
  };
}

function etcdServerUrl(text: string): string {
  const expected = 'expected http:// or https:// URLs separated by commas, e.g. http://localhost:2379';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new OptionsError(`--etcd-servers contains "${text}", which is not a URL: ${expected}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OptionsError(`--etcd-servers contains "${text}", which is not an http:// or https:// URL: ${expected}`);
  if (url.hostname === '' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '') {
    throw new OptionsError(`--etcd-servers contains "${text}", which is not a bare client URL (scheme, host and port only): ${expected}`);
  }
  return url.origin;
}

const ETCD_FILE_FLAGS = ['etcd-cafile', 'etcd-certfile', 'etcd-keyfile'] as const;

function storageConfig(flags: RawFlags): StorageConfig {
  const backend = flags.storage ?? 'memory';
  if (!(STORAGE_BACKENDS as readonly string[]).includes(backend)) {
    throw new OptionsError(`--storage="${backend}" is not a storage backend: expected one of ${STORAGE_BACKENDS.join(', ')}`);
  }
  const servers = (flags['etcd-servers'] ?? []).map(etcdServerUrl);
  if (backend === 'memory') {
    if (servers.length > 0) throw new OptionsError(`--storage=memory and --etcd-servers="${servers.join(',')}" exclude each other: drop --storage to use etcd, or --etcd-servers to keep objects in memory`);
    const fileFlag = ETCD_FILE_FLAGS.find((name) => flags[name] !== undefined);
    if (fileFlag) throw new OptionsError(`--${fileFlag}="${flags[fileFlag]}" needs --etcd-servers: without it objects are kept in memory and no etcd is contacted`);
    const quotaText = flags['storage-quota-bytes'];
    return { backend: 'memory', quotaBytes: quotaText === undefined ? DEFAULT_STORAGE_QUOTA_BYTES : bytesFlag('storage-quota-bytes', quotaText, 1, false) };
  }
  if (flags['storage-quota-bytes'] !== undefined) {
    throw new OptionsError(`--storage-quota-bytes="${flags['storage-quota-bytes']}" applies to --storage=memory only: etcd enforces its own quota (etcd's --quota-backend-bytes)`);
  }
  if (servers.length === 0) throw new OptionsError('--storage=etcd needs --etcd-servers: expected the etcd client URLs, e.g. --etcd-servers=https://etcd-0.etcd:2379,https://etcd-1.etcd:2379');
  const prefix = flags['etcd-prefix'];
  if (!prefix.startsWith('/')) throw new OptionsError(`--etcd-prefix="${prefix}" does not start with "/": expected a key prefix such as ${DEFAULT_ETCD_PREFIX}`);
  if ((flags['etcd-certfile'] === undefined) !== (flags['etcd-keyfile'] === undefined)) {
    const [given, missing] = flags['etcd-certfile'] !== undefined ? ['etcd-certfile', 'etcd-keyfile'] : ['etcd-keyfile', 'etcd-certfile'];
    throw new OptionsError(`--${given} is given without --${missing}: expected both (the client certificate and its private key) or neither`);
  }
  const healthcheckTimeoutMs = durationFlag(flags, 'etcd-healthcheck-timeout');
  if (healthcheckTimeoutMs <= 0) throw new OptionsError(`--etcd-healthcheck-timeout="${flags['etcd-healthcheck-timeout']}" is not positive: expected a duration above zero, e.g. 2s`);
  return {
    backend: 'etcd',
    servers,
    prefix: prefix.replace(/\/+$/, ''),
    caFile: readableFile('etcd-cafile', flags['etcd-cafile']),
    certFile: readableFile('etcd-certfile', flags['etcd-certfile']),
    keyFile: readableFile('etcd-keyfile', flags['etcd-keyfile']),
    compactionIntervalMs: durationFlag(flags, 'etcd-compaction-interval'),
    healthcheckTimeoutMs,
  };
}

/** Checks every flag and builds the config; throws OptionsError on the first bad one. */
export function validate(flags: RawFlags): ServerConfig {
  const portText = String(flags['secure-port']);
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 0 && port <= 65535)) {
    throw new OptionsError(`--secure-port=${portText} is not a port: expected an integer from 1 to 65535 (0 picks a free port)`);
  }
  const bindAddress = flags['bind-address'];
  if (isIP(bindAddress) === 0) throw new OptionsError(`--bind-address="${bindAddress}" is not an IP address: expected e.g. 0.0.0.0 or ::`);
  for (const name of ['tls-cert-file', 'tls-private-key-file'] as const) {
    if (flags[name] === undefined) throw new OptionsError(`--${name} is required: the server only serves HTTPS (the kubelet mounts the serving Secret, e.g. /var/run/apiserver/serving-cert/tls.crt and tls.key)`);
  }
  const logLevel = flags['log-level'];
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new OptionsError(`--log-level="${logLevel}" is not a level: expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const storage = storageConfig(flags);
  for (const path of flags['authorization-always-allow-paths']) {
    if (!path.startsWith('/')) throw new OptionsError(`--authorization-always-allow-paths contains "${path}": expected absolute paths such as /healthz`);
  }
  const prefixes = flags['requestheader-extra-headers-prefix'];
  const seconds = (ms: number) => ms / 1000;

  const auth: DelegatedAuthOptions = {
    authenticationKubeconfig: readableFile('authentication-kubeconfig', flags['authentication-kubeconfig']),
    authorizationKubeconfig: readableFile('authorization-kubeconfig', flags['authorization-kubeconfig']),
    authenticationSkipLookup: flags['authentication-skip-lookup'],
    clientCaFile: readableFile('client-ca-file', flags['client-ca-file']),
    requestheaderClientCaFile: readableFile('requestheader-client-ca-file', flags['requestheader-client-ca-file']),
    requestheaderUsernameHeaders: flags['requestheader-username-headers'],
    requestheaderUidHeaders: flags['requestheader-uid-headers'],
    requestheaderGroupHeaders: flags['requestheader-group-headers'],
    requestheaderExtraHeadersPrefix: prefixes,
    requestheaderAllowedNames: flags['requestheader-allowed-names'],
    authenticationTokenCacheTtlSeconds: seconds(durationFlag(flags, 'authentication-token-webhook-cache-ttl')),
    authorizationAllowedCacheTtlSeconds: seconds(durationFlag(flags, 'authorization-webhook-cache-authorized-ttl')),
    authorizationDeniedCacheTtlSeconds: seconds(durationFlag(flags, 'authorization-webhook-cache-unauthorized-ttl')),
    alwaysAllowPaths: flags['authorization-always-allow-paths'],
    alwaysAllowGroups: flags['authorization-always-allow-groups'],
  };

  return {
    securePort: port,
    bindAddress,
    tlsCertFile: readableFile('tls-cert-file', flags['tls-cert-file'])!,
    tlsPrivateKeyFile: readableFile('tls-private-key-file', flags['tls-private-key-file'])!,
    kubeconfig: readableFile('kubeconfig', flags.kubeconfig),
    ...(flags['api-definition-file'] !== undefined ? { apiDefinitionFile: readableFile('api-definition-file', flags['api-definition-file']) } : {}),
    ...(flags.context ? { kubeconfigContext: flags.context } : {}),
    auth,
    shutdownDelayMs: durationFlag(flags, 'shutdown-delay-duration'),
    shutdownTimeoutMs: durationFlag(flags, 'shutdown-timeout'),
    logLevel: logLevel as LogLevel,
    storage,
    maxRequestBodyBytesInflight: bytesFlag('max-request-body-bytes-inflight', String(flags['max-request-body-bytes-inflight']), MAX_REQUEST_BODY_BYTES, true),
    flowControl: flowControlConfig(flags),
    minRequestTimeoutSeconds: countFlag(flags, 'min-request-timeout', 'a number of seconds, e.g. 1800 (0: watches do not end on their own)'),
    audit: auditOptions(flags),
    admissionPlugins: admissionPlugins(flags),
    ignoredFlags: IGNORED_FLAGS.filter((name) => flags[name] !== undefined).map((name) => `--${name}=${flags[name]}`),
  };
}

/** Parses a command line (without the node and script arguments) into what to do. */
export function parseCommandLine(argv: readonly string[]): ParseResult {
  const y = parser(argv);
  const parsed = y.parseSync() as unknown as RawFlags & { help?: boolean; version?: boolean };
  if (parsed.help) {
    let text = '';
    y.showHelp((s: string) => {
      text = s;
    });
    return { kind: 'help', text };
  }
  if (parsed.version) return { kind: 'version', text: SERVER_VERSION.gitVersion };
  return { kind: 'run', config: validate(complete(parsed)) };
}
