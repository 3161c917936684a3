import * as fs from 'node:fs';
import * as YAML from 'yaml';
import yargs from 'yargs';
import { isDns1123Subdomain } from '../../apis';
import { _checkCronSchedule, _checkDns1035Label, _checkDns1123Label, _checkImageReference } from '../_validate';
import { DEFAULT_GROUP_PRIORITY_MINIMUM, DEFAULT_VERSION_PRIORITY } from '../api-service';
import { DEFAULT_SECURE_PORT } from '../api-server-deployment';
import { DEFAULT_CA_VALIDITY_DAYS, DEFAULT_CERT_VALIDITY_DAYS, DEFAULT_PKI_DIRECTORY } from '../certificates';
import { _checkEtcdReplicas, _checkEtcdStorageSize, DEFAULT_ETCD_IMAGE, ETCD_BACKUP_NAME_SUFFIX, DEFAULT_ETCD_STORAGE_SIZE, MAX_ETCD_OBJECT_NAME_LENGTH } from '../etcd-cluster';
import { DEFAULT_CLUSTER_DOMAIN } from '../pki';
import { _checkEtcdServerUrl, ETCD_CLUSTER_NAME_SUFFIX } from '../storage';
import { parsePlacementOptions, PLACEMENT_FLAGS, PlacementSynthOptions } from './placement-options';

/** Everything `main.ts` needs to synthesize, after flags, environment and config file are merged. */
export interface SynthOptions extends PlacementSynthOptions {
  readonly namespace?: string;
  readonly name?: string;
  readonly image?: string;
  /** @default - 2 with etcd or external-etcd storage, 1 with memory */
  readonly replicas?: number;
  /** Deprecated: implied by the storage (etcd and external-etcd are shared, memory is not). */
  readonly sharedStorage?: boolean;
  /** @default 'etcd' */
  readonly storage?: StorageMode;
  /** etcd mode: 1, 3 or 5 members. @default 3 */
  readonly etcdReplicas?: number;
  /** external-etcd mode: the client URLs (https://host:port). */
  readonly etcdServers?: readonly string[];
  /** external-etcd mode: PEM files of the CA bundle, the client certificate and its key. */
  readonly etcdCaFile?: string;
  readonly etcdCertFile?: string;
  readonly etcdKeyFile?: string;
  /** etcd mode. @default DEFAULT_ETCD_IMAGE */
  readonly etcdImage?: string;
  /** etcd mode: each member's volume, a Kubernetes quantity. @default '1Gi' */
  readonly etcdStorageSize?: string;
  /** etcd mode. @default - the cluster's default StorageClass */
  readonly etcdStorageClass?: string;
  /** etcd mode: emit the NetworkPolicies that fence etcd in. @default true */
  readonly networkPolicy?: boolean;
  /** etcd mode: a CronJob takes snapshots on this schedule. @default - no backups */
  readonly etcdBackupSchedule?: string;
  readonly securePort: number;
  readonly groupPriorityMinimum: number;
  readonly versionPriority: number;
  readonly certMode: CertMode;
  readonly pkiDir: string;
  /** How messages name where pkiDir came from: `--pki-dir`, `APIEXT_PKI_DIR` or the config file's key. @default '--pki-dir' */
  readonly pkiDirSource?: string;
  /**
   * How messages name where the existing-mode files came from: `--tls-cert-file`,
   * `APIEXT_TLS_CERT_FILE` or the config file's key. @default - the flags
   */
  readonly optionSources?: Readonly<Partial<Record<'tls-cert-file' | 'tls-key-file' | 'ca-bundle-file', string>>>;
  /** Keep the PKI in a directory of a git work tree that does not ignore it. @default false */
  readonly allowUnignoredPkiDir?: boolean;
  readonly certValidityDays: number;
  readonly caValidityDays: number;
  readonly clusterDomain: string;
  readonly output: string;
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  readonly caBundleFile?: string;
  readonly tlsSecretName?: string;
}

export const CERT_MODES = ['self-signed', 'cert-manager', 'existing'] as const;
export type CertMode = (typeof CERT_MODES)[number];

/** Where the server keeps its objects: an etcd cluster deployed with it, an etcd you run, or its memory (a demo). */
export const STORAGE_MODES = ['etcd', 'external-etcd', 'memory'] as const;
export type StorageMode = (typeof STORAGE_MODES)[number];

/** The flags that only one storage mode uses, and that mode. */
const STORAGE_MODE_FLAGS: Readonly<Record<StorageMode, readonly StorageFlag[]>> = {
  etcd: ['etcd-replicas', 'etcd-image', 'etcd-storage-size', 'etcd-storage-class', 'network-policy', 'etcd-backup-schedule'],
  'external-etcd': ['etcd-servers', 'etcd-ca-file', 'etcd-cert-file', 'etcd-key-file'],
  memory: [],
};
type StorageFlag =
  | 'etcd-replicas'
  | 'etcd-image'
  | 'etcd-storage-size'
  | 'etcd-storage-class'
  | 'network-policy'
  | 'etcd-backup-schedule'
  | 'etcd-servers'
  | 'etcd-ca-file'
  | 'etcd-cert-file'
  | 'etcd-key-file';

/** Bad input on the command line, in the environment or in the config file. Exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Runs one of the constructs' checks, given the flag (`--etcd-image`) where it takes a prop name,
 * so that the CLI refuses exactly what the construct would, with a message naming the flag.
 */
export function checkFlag<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw error instanceof UsageError ? error : new UsageError((error as Error).message);
  }
}

export const ENV_PREFIX = 'APIEXT';

/** Reads a `--config` file; YAML is a superset of JSON, so one parser reads both. */
function loadConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--config "${file}" cannot be read: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = YAML.parse(text);
  } catch (error) {
    const detail = (error as Error).message.split('\n')[0];
    throw new UsageError(`--config "${file}" is not valid YAML or JSON: ${detail}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UsageError(`--config "${file}" must hold a mapping of option names to values (e.g. "namespace: wardle"), got ${Array.isArray(parsed) ? 'a list' : typeof parsed}`);
  }
  for (const [key, value] of Object.entries(parsed)) {
    // yargs would pass these on as they are, and a check further down would trip over them.
    if (value === null) throw new UsageError(`--config "${file}": "${key}" has no value (null); give it one (e.g. "${key}: …") or leave the key out`);
    if (typeof value === 'object' && !(Array.isArray(value) && value.every((item) => item === null || typeof item !== 'object'))) {
      throw new UsageError(`--config "${file}": "${key}" is ${Array.isArray(value) ? 'a list of mappings' : 'a mapping'}; expected a string, number or boolean (or, for --etcd-servers, a list)`);
    }
  }
  configFiles.set(file, Object.keys(parsed));
  return parsed as Record<string, unknown>;
}

/** The keys of each config file read, to say where an unknown option came from. */
const configFiles = new Map<string, string[]>();

/** `namespace-x` → `APIEXT_NAMESPACE_X`, as yargs' `.env()` maps variables to options. */
function envNameOf(option: string): string {
  return `${ENV_PREFIX}_${option.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/-/g, '_').toUpperCase()}`;
}

/**
 * yargs says "Unknown argument: foo" wherever foo came from; for a variable in the environment
 * or a key in a config file, that points the user at a command line that does not hold it.
 */
function explainUnknownArguments(message: string, argv: readonly string[]): string {
  const match = /^Unknown arguments?: (.+)$/.exec(message);
  if (!match) return message;
  const sources = match[1].split(', ').map((option) => {
    const variable = envNameOf(option);
    if (process.env[variable] !== undefined) return `${variable} in the environment is not an option (unset it; every option's variable is APIEXT_ and its flag name, e.g. APIEXT_NAMESPACE)`;
    const file = [...configFiles].find(([, keys]) => keys.includes(option))?.[0];
    if (file !== undefined) return `--config "${file}": "${option}" is not an option (the keys are the flag names, e.g. "namespace" or "cert-mode")`;
    const typedAsFlag = argv.some((arg) => arg === `--${option}` || arg.startsWith(`--${option}=`) || arg === `-${option}`);
    return typedAsFlag ? `--${option} is not an option: see --help` : `"${option}" is not an option: options are flags with a value (--name value), and no flag takes two values`;
  });
  return `${message} (${sources.join('; ')})`;
}

function parser(argv: readonly string[]) {
  return yargs([...argv])
    .scriptName('cdk8s-api-extension')
    .usage('$0 [options]\n\nSynthesizes the manifests of an aggregated API server (the bundled wardle.example.com server by default) into --output.')
    .env(ENV_PREFIX)
    .config('config', 'a YAML or JSON file of options (keys as the flags, e.g. "namespace: wardle" or "cert-mode: cert-manager")', loadConfigFile)
    .options({
      namespace: { type: 'string', describe: 'namespace of the server (a DNS-1123 label)', defaultDescription: 'the first label of the API group: "wardle"' },
      name: { type: 'string', describe: 'name of the Deployment, Service, ServiceAccount and Secret (a DNS-1035 label: it names the Service)', defaultDescription: 'the first label of the API group + "-apiserver": "wardle-apiserver"' },
      image: { type: 'string', describe: 'container image of the server', defaultDescription: 'the bundled server image' },
      replicas: {
        type: 'string',
        describe: 'server replicas; more than 1 adds a PodDisruptionBudget and pod anti-affinity; --storage memory allows only 1',
        defaultDescription: '2 with --storage etcd or external-etcd, 1 with memory',
      },
      'shared-storage': {
        type: 'boolean',
        describe: 'whether the replicas share one store',
        deprecated: 'implied by --storage: etcd and external-etcd are shared, memory is not (true with memory is refused)',
      },
      storage: {
        type: 'string',
        default: 'etcd',
        describe: `where the server keeps its objects: ${STORAGE_MODES.join(', ')} (an etcd cluster deployed with the server; an etcd you run; memory, a one-replica demo that loses everything on restart)`,
      },
      'etcd-replicas': { type: 'string', describe: 'etcd mode: etcd members (1, 3 or 5; 3 and 5 survive the loss of 1 and 2)', defaultDescription: '3' },
      'etcd-image': { type: 'string', describe: 'etcd mode: the etcd container image', defaultDescription: DEFAULT_ETCD_IMAGE },
      'etcd-storage-size': { type: 'string', describe: "etcd mode: each member's volume (a quantity, e.g. 1Gi, 8Gi)", defaultDescription: DEFAULT_ETCD_STORAGE_SIZE },
      'etcd-storage-class': { type: 'string', describe: "etcd mode: StorageClass of the members' volumes", defaultDescription: "the cluster's default class" },
      'network-policy': { type: 'string', describe: "etcd mode: a NetworkPolicy that lets only the server's pods (and the backup job) reach etcd's client port, and only members its peer port", defaultDescription: 'true' },
      'etcd-backup-schedule': { type: 'string', describe: 'etcd mode: a CronJob takes an etcd snapshot into a PVC on this schedule (5-field cron as Kubernetes takes it, @hourly, @daily …, or @every 6h)', defaultDescription: 'no backups' },
      'etcd-servers': { type: 'string', describe: 'external-etcd mode: the etcd client URLs, comma-separated (https://host:port)' },
      'etcd-ca-file': { type: 'string', describe: "external-etcd mode: PEM CA bundle that verifies etcd's certificate" },
      'etcd-cert-file': { type: 'string', describe: 'external-etcd mode: PEM client certificate the server presents to etcd' },
      'etcd-key-file': { type: 'string', describe: 'external-etcd mode: PEM private key of --etcd-cert-file' },
      'secure-port': { type: 'string', default: String(DEFAULT_SECURE_PORT), describe: 'the container port the server listens on (HTTPS); the Service listens on 443' },
      'group-priority-minimum': { type: 'string', default: String(DEFAULT_GROUP_PRIORITY_MINIMUM), describe: 'APIService spec.groupPriorityMinimum (1-20000)' },
      'version-priority': { type: 'string', default: String(DEFAULT_VERSION_PRIORITY), describe: 'APIService spec.versionPriority of the preferred version (1-1000)' },
      'cert-mode': { type: 'string', default: 'self-signed', describe: `where the serving certificate comes from: ${CERT_MODES.join(', ')}; etcd's follow (self-signed with existing)` },
      'pki-dir': { type: 'string', default: DEFAULT_PKI_DIRECTORY, describe: "self-signed mode: directory that keeps the CAs and certificates (serving, and etcd's) between synths, one subdirectory per environment (a directory it creates ignores itself in git; keys are 0600)" },
      'allow-unignored-pki-dir': {
        type: 'boolean',
        describe: 'self-signed mode: keep --pki-dir inside a git work tree that does not ignore it (refused by default: its CA keys would be committed)',
      },
      'cert-validity-days': { type: 'string', default: String(DEFAULT_CERT_VALIDITY_DAYS), describe: "self-signed and cert-manager modes: serving (and etcd's) certificate lifetime in days" },
      'ca-validity-days': { type: 'string', default: String(DEFAULT_CA_VALIDITY_DAYS), describe: "self-signed and cert-manager modes: the CAs' lifetime in days (must exceed --cert-validity-days)" },
      'cluster-domain': { type: 'string', default: DEFAULT_CLUSTER_DOMAIN, describe: 'the cluster DNS domain, for the serving certificate SANs' },
      'tls-cert-file': { type: 'string', describe: 'existing mode: PEM serving certificate (intermediates after it)' },
      'tls-key-file': { type: 'string', describe: 'existing mode: PEM private key of --tls-cert-file' },
      'ca-bundle-file': { type: 'string', describe: 'existing mode: PEM CA bundle that signed the serving certificate (becomes caBundle)' },
      'tls-secret-name': { type: 'string', describe: 'existing mode: name of a kubernetes.io/tls Secret already in the namespace (instead of the PEM files)' },
      output: { type: 'string', alias: 'o', default: process.env.CDK8S_OUTDIR ?? 'dist', describe: 'directory to write the manifests into; replaced whole, and only on success' },
      ...PLACEMENT_FLAGS,
    })
    // Printed by parseSynthOptions, with the types the flags really take (see helpText).
    .help(false)
    .option('help', { alias: 'h', type: 'boolean', describe: 'show this help' })
    .strict()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .exitProcess(false)
    .epilogue(
      `Every option can also be given in the environment as ${ENV_PREFIX}_ and its name in capitals with underscores ` +
        `(${ENV_PREFIX}_NAMESPACE=wardle, ${ENV_PREFIX}_CERT_MODE=cert-manager), or as a key of the --config file ("cert-mode: cert-manager"). ` +
        'A flag wins over the environment, and the environment over the config file.',
    )
    .fail((message, error) => {
      throw error instanceof UsageError ? error : new UsageError(message ? explainUnknownArguments(message, argv) : (error?.message ?? 'invalid arguments'));
    });
}

/** Flags declared as strings to yargs (so that the value the user typed reaches the error message) that take numbers or booleans. */
const FLAG_TYPES: Readonly<Record<string, 'number' | 'boolean'>> = {
  replicas: 'number',
  'etcd-replicas': 'number',
  'secure-port': 'number',
  'group-priority-minimum': 'number',
  'version-priority': 'number',
  'cert-validity-days': 'number',
  'ca-validity-days': 'number',
  'network-policy': 'boolean',
  'create-namespace': 'boolean',
};

/** The help text, as `--help` prints it: yargs' own, with each flag's `[string]` replaced by the type it takes. */
export function helpText(): string {
  let help = '';
  parser([]).showHelp((text) => (help = text));
  let flag: string | undefined;
  return help
    .split('\n')
    .map((line) => {
      // A flag's first line starts with at most 8 spaces; its wrapped description is indented further.
      flag = /^ {2,8}(?:-\w, )?--([\w-]+)/.exec(line)?.[1] ?? flag;
      const type = flag === undefined ? undefined : FLAG_TYPES[flag];
      return type ? line.replace('[string]', `[${type}]`) : line;
    })
    .join('\n');
}

/**
 * Parses flags (environment `APIEXT_*` and `--config` below them) into `SynthOptions`, or
 * `undefined` when `--help` was asked for (yargs has printed it). Throws `UsageError`.
 */
export function parseSynthOptions(argv: readonly string[]): SynthOptions | undefined {
  const args = parser(argv).parseSync();
  if (args.help) {
    console.log(helpText());
    return undefined;
  }
  const options: SynthOptions = {
    namespace: args.namespace,
    name: args.name,
    image: args.image,
    replicas: args.replicas === undefined ? undefined : integerOption('replicas', args.replicas),
    sharedStorage: args['shared-storage'],
    storage: storageModeOption(args.storage),
    etcdReplicas: args['etcd-replicas'] === undefined ? undefined : integerOption('etcd-replicas', args['etcd-replicas']),
    etcdServers: args['etcd-servers'] === undefined ? undefined : listOption(args['etcd-servers']),
    etcdCaFile: args['etcd-ca-file'],
    etcdCertFile: args['etcd-cert-file'],
    etcdKeyFile: args['etcd-key-file'],
    etcdImage: args['etcd-image'] === undefined ? undefined : String(args['etcd-image']),
    etcdStorageSize: args['etcd-storage-size'] === undefined ? undefined : String(args['etcd-storage-size']),
    etcdStorageClass: args['etcd-storage-class'],
    networkPolicy: args['network-policy'] === undefined ? undefined : booleanOption('network-policy', args['network-policy']),
    etcdBackupSchedule: args['etcd-backup-schedule'],
    securePort: integerOption('secure-port', args['secure-port']),
    groupPriorityMinimum: integerOption('group-priority-minimum', args['group-priority-minimum']),
    versionPriority: integerOption('version-priority', args['version-priority']),
    certMode: certModeOption(args['cert-mode']),
    pkiDir: args['pki-dir'],
    pkiDirSource: optionSource('pki-dir', argv),
    optionSources: Object.fromEntries((['tls-cert-file', 'tls-key-file', 'ca-bundle-file'] as const).map((flag) => [flag, optionSource(flag, argv)])),
    allowUnignoredPkiDir: args['allow-unignored-pki-dir'],
    certValidityDays: integerOption('cert-validity-days', args['cert-validity-days']),
    caValidityDays: integerOption('ca-validity-days', args['ca-validity-days']),
    clusterDomain: args['cluster-domain'],
    output: args.output,
    tlsCertFile: args['tls-cert-file'],
    tlsKeyFile: args['tls-key-file'],
    caBundleFile: args['ca-bundle-file'],
    tlsSecretName: args['tls-secret-name'],
    ...parsePlacementOptions(args),
  };
  validateSynthOptions(options);
  return options;
}

/** Where an option's value came from, as messages name it: the flag, its APIEXT_ variable, or the config file's key. */
function optionSource(option: string, argv: readonly string[]): string {
  if (argv.some((arg) => arg === `--${option}` || arg.startsWith(`--${option}=`))) return `--${option}`;
  const variable = envNameOf(option);
  if (process.env[variable] !== undefined) return variable;
  const file = [...configFiles].find(([, keys]) => keys.includes(option))?.[0];
  return file === undefined ? `--${option}` : `--config "${file}": "${option}"`;
}

function storageModeOption(raw: string): StorageMode {
  const mode = STORAGE_MODES.find((m) => m === raw);
  if (!mode) throw new UsageError(`--storage "${raw}" is not one of ${STORAGE_MODES.join(', ')}`);
  return mode;
}

/** A comma-separated flag or environment value, or a list in a config file. */
function listOption(raw: unknown): string[] {
  const items = Array.isArray(raw) ? raw.map(String) : String(raw).split(',');
  return items.map((item) => item.trim()).filter((item) => item !== '');
}

function certModeOption(raw: string): CertMode {
  const mode = CERT_MODES.find((m) => m === raw);
  if (!mode) throw new UsageError(`--cert-mode "${raw}" is not one of ${CERT_MODES.join(', ')}`);
  return mode;
}

/**
 * true or false, from a flag (`--network-policy` alone is true, `--no-network-policy` false),
 * the environment or a config file; anything else is refused rather than read as false.
 */
export function booleanOption(flag: string, raw: unknown): boolean {
  const text = String(raw).trim().toLowerCase();
  if (text === '' || text === 'true') return true;
  if (text === 'false') return false;
  throw new UsageError(`--${flag} "${String(raw)}" is not true or false`);
}

/** Numbers arrive as text from flags and the environment, and as numbers from a config file. */
function integerOption(flag: string, raw: unknown): number {
  const text = String(raw).trim();
  if (!/^[+-]?\d+$/.test(text)) throw new UsageError(`--${flag} "${String(raw)}" is not a whole number`);
  const value = Number(text);
  // Past 2^53 the number is no longer the text ("1e+23"): say what was typed.
  if (!Number.isSafeInteger(value)) throw new UsageError(`--${flag} "${text}" is far too large (expected a whole number in the range --help gives)`);
  return value;
}

function integerIn(flag: string, value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`--${flag} "${value}" is not ${what}`);
  }
}

/** Checks what the flags alone can tell, so that the message names the flag, not a construct prop. */
export function validateSynthOptions(o: SynthOptions): void {
  if (o.namespace !== undefined) checkFlag(() => _checkDns1123Label('--namespace', o.namespace!));
  if (o.name !== undefined) checkFlag(() => _checkDns1035Label('--name', o.name!));
  if (o.image !== undefined) checkFlag(() => _checkImageReference('--image', o.image!, 'registry.example.com/wardle-apiserver:1.0'));
  if (o.replicas !== undefined) integerIn('replicas', o.replicas, 1, 1000, 'a whole number of replicas from 1 to 1000');
  validateStorageOptions(o);
  integerIn('secure-port', o.securePort, 1, 65535, 'a port number from 1 to 65535');
  integerIn('group-priority-minimum', o.groupPriorityMinimum, 1, 20000, 'a whole number from 1 to 20000');
  integerIn('version-priority', o.versionPriority, 1, 1000, 'a whole number from 1 to 1000');
  integerIn('cert-validity-days', o.certValidityDays, 1, 36500, 'a whole number of days from 1 to 36500');
  integerIn('ca-validity-days', o.caValidityDays, 1, 36500, 'a whole number of days from 1 to 36500');
  if (o.caValidityDays <= o.certValidityDays) {
    throw new UsageError(
      `--ca-validity-days "${o.caValidityDays}" must be greater than --cert-validity-days "${o.certValidityDays}": the CA has to outlive the serving certificate it signs`,
    );
  }
  if (!isDns1123Subdomain(o.clusterDomain)) throw new UsageError(`--cluster-domain "${o.clusterDomain}" is not a DNS domain (e.g. "cluster.local")`);
  if (o.output.trim() === '') throw new UsageError('--output "" is empty (expected a directory, e.g. "dist")');
  if (o.pkiDir.trim() === '') {
    throw new UsageError(`${o.pkiDirSource ?? '--pki-dir'} "${o.pkiDir}" is empty (expected a directory of its own for the CA keys, e.g. "${DEFAULT_PKI_DIRECTORY}": an empty path would put them in the working directory)`);
  }

  const existingFlags = ['tls-cert-file', 'tls-key-file', 'ca-bundle-file', 'tls-secret-name'] as const;
  const given = existingFlags.filter((flag) => optionFor(o, flag) !== undefined);
  if (o.certMode !== 'existing') {
    if (given.length > 0) throw new UsageError(`--${given[0]} is only used with --cert-mode existing (got --cert-mode ${o.certMode})`);
    return;
  }
  if (o.caBundleFile === undefined) throw new UsageError('--cert-mode existing needs --ca-bundle-file (the PEM CA bundle that signed the serving certificate)');
  if (o.tlsSecretName !== undefined) {
    if (o.tlsCertFile !== undefined || o.tlsKeyFile !== undefined) throw new UsageError('--tls-secret-name and --tls-cert-file/--tls-key-file exclude each other: use the Secret or the files');
    if (!isDns1123Subdomain(o.tlsSecretName)) throw new UsageError(`--tls-secret-name "${o.tlsSecretName}" is not a valid Secret name (a DNS-1123 subdomain)`);
  } else if (o.tlsCertFile === undefined || o.tlsKeyFile === undefined) {
    throw new UsageError('--cert-mode existing needs either --tls-cert-file and --tls-key-file, or --tls-secret-name');
  }
}

/** The storage flags: each belongs to one mode, and is refused with another, so that a flag never silently does nothing. */
function validateStorageOptions(o: SynthOptions): void {
  const given = (flag: StorageFlag): boolean => storageOptionFor(o, flag) !== undefined;
  const storage = o.storage ?? 'etcd';
  for (const [mode, flags] of Object.entries(STORAGE_MODE_FLAGS)) {
    const misplaced = mode === storage ? undefined : flags.find(given);
    if (misplaced) throw new UsageError(`--${misplaced} is only used with --storage ${mode} (got --storage ${storage})`);
  }
  if (storage === 'memory') {
    if (o.sharedStorage === true) {
      throw new UsageError('--shared-storage true contradicts --storage memory: memory storage is per pod (expected --storage etcd or external-etcd for replicas that share their objects)');
    }
    if (o.replicas !== undefined && o.replicas > 1) {
      throw new UsageError(
        `--replicas ${o.replicas} needs shared storage, and --storage memory keeps each pod's objects in that pod: the replicas would answer from different stores ` +
          '(expected --replicas 1, or --storage etcd, the default, or external-etcd)',
      );
    }
  }
  // The longest name derived from --name: the etcd StatefulSet's, or with backups its CronJob's.
  const [suffix, what] =
    o.etcdBackupSchedule === undefined
      ? [ETCD_CLUSTER_NAME_SUFFIX, 'the etcd StatefulSet']
      : [`${ETCD_CLUSTER_NAME_SUFFIX}${ETCD_BACKUP_NAME_SUFFIX}`, "etcd's backup CronJob"];
  if (storage === 'etcd' && o.name !== undefined && `${o.name}${suffix}`.length > MAX_ETCD_OBJECT_NAME_LENGTH) {
    throw new UsageError(
      `--name "${o.name}" is too long for --storage etcd${o.etcdBackupSchedule === undefined ? '' : ' with --etcd-backup-schedule'}: ` +
        `${what} is named "${o.name}${suffix}" (${`${o.name}${suffix}`.length} characters, at most ${MAX_ETCD_OBJECT_NAME_LENGTH}) ` +
        `(expected a --name of at most ${MAX_ETCD_OBJECT_NAME_LENGTH - suffix.length} characters)`,
    );
  }
  if (o.etcdReplicas !== undefined) checkFlag(() => _checkEtcdReplicas('--etcd-replicas', o.etcdReplicas!));
  if (o.etcdImage !== undefined) checkFlag(() => _checkImageReference('--etcd-image', o.etcdImage!, DEFAULT_ETCD_IMAGE));
  if (o.etcdStorageSize !== undefined) checkFlag(() => _checkEtcdStorageSize('--etcd-storage-size', o.etcdStorageSize!));
  if (o.etcdStorageClass !== undefined && !isDns1123Subdomain(o.etcdStorageClass)) {
    throw new UsageError(`--etcd-storage-class "${o.etcdStorageClass}" is not a StorageClass name (a DNS-1123 subdomain, e.g. "standard" or "fast-ssd")`);
  }
  if (o.etcdBackupSchedule !== undefined) checkFlag(() => _checkCronSchedule('--etcd-backup-schedule', o.etcdBackupSchedule!));
  if (storage !== 'external-etcd') return;

  if (o.etcdServers === undefined || o.etcdServers.length === 0) {
    throw new UsageError('--storage external-etcd needs --etcd-servers (the client URLs of your etcd, e.g. https://etcd-0.etcd.example:2379,https://etcd-1.etcd.example:2379)');
  }
  for (const server of o.etcdServers) checkFlag(() => _checkEtcdServerUrl('--etcd-servers', server));
  const missing = (['etcd-ca-file', 'etcd-cert-file', 'etcd-key-file'] as const).find((flag) => !given(flag));
  if (missing) {
    throw new UsageError(`--storage external-etcd needs --${missing}: the server verifies etcd with --etcd-ca-file and authenticates with --etcd-cert-file and --etcd-key-file`);
  }
}

function storageOptionFor(o: SynthOptions, flag: StorageFlag): unknown {
  return {
    'etcd-replicas': o.etcdReplicas,
    'etcd-image': o.etcdImage,
    'etcd-storage-size': o.etcdStorageSize,
    'etcd-storage-class': o.etcdStorageClass,
    'network-policy': o.networkPolicy,
    'etcd-backup-schedule': o.etcdBackupSchedule,
    'etcd-servers': o.etcdServers,
    'etcd-ca-file': o.etcdCaFile,
    'etcd-cert-file': o.etcdCertFile,
    'etcd-key-file': o.etcdKeyFile,
  }[flag];
}

function optionFor(o: SynthOptions, flag: 'tls-cert-file' | 'tls-key-file' | 'ca-bundle-file' | 'tls-secret-name'): string | undefined {
  return { 'tls-cert-file': o.tlsCertFile, 'tls-key-file': o.tlsKeyFile, 'ca-bundle-file': o.caBundleFile, 'tls-secret-name': o.tlsSecretName }[flag];
}
