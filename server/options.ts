import { accessSync, constants as fsConstants } from 'node:fs';
import { isIP } from 'node:net';
import yargs from 'yargs';
import type { DelegatedAuthOptions } from './auth';
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

const STORAGE_BACKENDS = ['memory'] as const;
export type StorageBackend = (typeof STORAGE_BACKENDS)[number];

/** What the server runs with, complete and valid. */
export interface ServerConfig {
  /** Port for HTTPS; 0 picks a free port (tests). */
  readonly securePort: number;
  readonly bindAddress: string;
  readonly tlsCertFile: string;
  readonly tlsPrivateKeyFile: string;
  /** Kubeconfig for the server's own calls to kube-apiserver (namespaces); in-cluster when unset. */
  readonly kubeconfig?: string;
  readonly auth: DelegatedAuthOptions;
  /** How long to keep serving, unready, after SIGTERM before closing the listener. */
  readonly shutdownDelayMs: number;
  /** Upper bound for in-flight requests to finish once the listener is closed. */
  readonly shutdownTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly storage: StorageBackend;
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
  readonly storage: string;
}

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
      kubeconfig: { type: 'string', group: 'Cluster:', describe: 'Kubeconfig for the server\'s own calls to kube-apiserver; in-cluster config when unset.' },
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
      'log-level': { type: 'string', default: 'info', group: 'Logging:', describe: `One of ${LOG_LEVELS.join(', ')}.` },
      storage: { type: 'string', default: 'memory', group: 'Storage:', describe: `Storage backend: ${STORAGE_BACKENDS.join(', ')}.` },
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

/** Fills the defaults that depend on other flags. */
export function complete(flags: RawFlags): RawFlags {
  // As in the Go servers: one kubeconfig given for the server is also used for authn and authz.
  return {
    ...flags,
    'authentication-kubeconfig': flags['authentication-kubeconfig'] ?? flags.kubeconfig,
    'authorization-kubeconfig': flags['authorization-kubeconfig'] ?? flags.kubeconfig,
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
    if (flags[name] === undefined) throw new OptionsError(`--${name} is required: the server only serves HTTPS (the kubelet mounts the serving Secret, e.g. /var/run/serving-cert/tls.crt and tls.key)`);
  }
  const logLevel = flags['log-level'];
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new OptionsError(`--log-level="${logLevel}" is not a level: expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const storage = flags.storage;
  if (!(STORAGE_BACKENDS as readonly string[]).includes(storage)) {
    throw new OptionsError(`--storage="${storage}" is not a storage backend: expected one of ${STORAGE_BACKENDS.join(', ')}`);
  }
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
    auth,
    shutdownDelayMs: durationFlag(flags, 'shutdown-delay-duration'),
    shutdownTimeoutMs: durationFlag(flags, 'shutdown-timeout'),
    logLevel: logLevel as LogLevel,
    storage: storage as StorageBackend,
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
