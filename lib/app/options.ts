import * as fs from 'node:fs';
import * as YAML from 'yaml';
import yargs from 'yargs';
import { isDns1035Label, isDns1123Label, isDns1123Subdomain } from '../../apis';
import { DEFAULT_GROUP_PRIORITY_MINIMUM, DEFAULT_VERSION_PRIORITY } from '../api-service';
import { DEFAULT_SECURE_PORT } from '../api-server-deployment';
import { DEFAULT_CA_VALIDITY_DAYS, DEFAULT_CERT_VALIDITY_DAYS, DEFAULT_PKI_DIRECTORY } from '../certificates';
import { DEFAULT_CLUSTER_DOMAIN } from '../pki';

/** Everything `main.ts` needs to synthesize, after flags, environment and config file are merged. */
export interface SynthOptions {
  readonly namespace?: string;
  readonly name?: string;
  readonly image?: string;
  readonly replicas: number;
  /** The replicas share one store: more than one may run. */
  readonly sharedStorage: boolean;
  readonly securePort: number;
  readonly groupPriorityMinimum: number;
  readonly versionPriority: number;
  readonly certMode: CertMode;
  readonly pkiDir: string;
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

/** Bad input on the command line, in the environment or in the config file. Exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
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
  return parsed as Record<string, unknown>;
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
        default: '1',
        describe:
          'server replicas; more than 1 adds a PodDisruptionBudget and pod anti-affinity, and needs --shared-storage',
      },
      'shared-storage': {
        type: 'boolean',
        default: false,
        describe: "the server's replicas share one store (e.g. etcd), so more than one replica may run. The bundled server keeps its objects in memory, per pod, unless given --etcd-servers",
      },
      'secure-port': { type: 'string', default: String(DEFAULT_SECURE_PORT), describe: 'the container port the server listens on (HTTPS); the Service listens on 443' },
      'group-priority-minimum': { type: 'string', default: String(DEFAULT_GROUP_PRIORITY_MINIMUM), describe: 'APIService spec.groupPriorityMinimum (1-20000)' },
      'version-priority': { type: 'string', default: String(DEFAULT_VERSION_PRIORITY), describe: 'APIService spec.versionPriority of the preferred version (1-1000)' },
      'cert-mode': { type: 'string', default: 'self-signed', describe: `where the serving certificate comes from: ${CERT_MODES.join(', ')}` },
      'pki-dir': { type: 'string', default: DEFAULT_PKI_DIRECTORY, describe: 'self-signed mode: directory that keeps the CA and serving certificate between synths (git-ignored; keys are 0600)' },
      'cert-validity-days': { type: 'string', default: String(DEFAULT_CERT_VALIDITY_DAYS), describe: 'self-signed and cert-manager modes: serving certificate lifetime in days' },
      'ca-validity-days': { type: 'string', default: String(DEFAULT_CA_VALIDITY_DAYS), describe: 'self-signed and cert-manager modes: CA lifetime in days (must exceed --cert-validity-days)' },
      'cluster-domain': { type: 'string', default: DEFAULT_CLUSTER_DOMAIN, describe: 'the cluster DNS domain, for the serving certificate SANs' },
      'tls-cert-file': { type: 'string', describe: 'existing mode: PEM serving certificate (intermediates after it)' },
      'tls-key-file': { type: 'string', describe: 'existing mode: PEM private key of --tls-cert-file' },
      'ca-bundle-file': { type: 'string', describe: 'existing mode: PEM CA bundle that signed the serving certificate (becomes caBundle)' },
      'tls-secret-name': { type: 'string', describe: 'existing mode: name of a kubernetes.io/tls Secret already in the namespace (instead of the PEM files)' },
      output: { type: 'string', alias: 'o', default: process.env.CDK8S_OUTDIR ?? 'dist', describe: 'directory to write the manifests into; replaced whole, and only on success' },
    })
    .strictOptions()
    .help()
    .alias('help', 'h')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .exitProcess(false)
    .fail((message, error) => {
      throw error instanceof UsageError ? error : new UsageError(message ?? error?.message ?? 'invalid arguments');
    });
}

/** The help text, as `--help` prints it. */
export async function helpText(): Promise<string> {
  return parser([]).getHelp();
}

/**
 * Parses flags (environment `APIEXT_*` and `--config` below them) into `SynthOptions`, or
 * `undefined` when `--help` was asked for (yargs has printed it). Throws `UsageError`.
 */
export function parseSynthOptions(argv: readonly string[]): SynthOptions | undefined {
  const args = parser(argv).parseSync();
  if (args.help) return undefined;
  const options: SynthOptions = {
    namespace: args.namespace,
    name: args.name,
    image: args.image,
    replicas: integerOption('replicas', args.replicas),
    sharedStorage: args['shared-storage'],
    securePort: integerOption('secure-port', args['secure-port']),
    groupPriorityMinimum: integerOption('group-priority-minimum', args['group-priority-minimum']),
    versionPriority: integerOption('version-priority', args['version-priority']),
    certMode: certModeOption(args['cert-mode']),
    pkiDir: args['pki-dir'],
    certValidityDays: integerOption('cert-validity-days', args['cert-validity-days']),
    caValidityDays: integerOption('ca-validity-days', args['ca-validity-days']),
    clusterDomain: args['cluster-domain'],
    output: args.output,
    tlsCertFile: args['tls-cert-file'],
    tlsKeyFile: args['tls-key-file'],
    caBundleFile: args['ca-bundle-file'],
    tlsSecretName: args['tls-secret-name'],
  };
  validateSynthOptions(options);
  return options;
}

function certModeOption(raw: string): CertMode {
  const mode = CERT_MODES.find((m) => m === raw);
  if (!mode) throw new UsageError(`--cert-mode "${raw}" is not one of ${CERT_MODES.join(', ')}`);
  return mode;
}

/** Numbers arrive as text from flags and the environment, and as numbers from a config file. */
function integerOption(flag: string, raw: unknown): number {
  const text = String(raw).trim();
  if (!/^[+-]?\d+$/.test(text)) throw new UsageError(`--${flag} "${String(raw)}" is not a whole number`);
  return Number(text);
}

function integerIn(flag: string, value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`--${flag} "${value}" is not ${what}`);
  }
}

/** Checks what the flags alone can tell, so that the message names the flag, not a construct prop. */
export function validateSynthOptions(o: SynthOptions): void {
  const label = `a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)`;
  if (o.namespace !== undefined && !isDns1123Label(o.namespace)) throw new UsageError(`--namespace "${o.namespace}" is not ${label}`);
  if (o.name !== undefined && !isDns1035Label(o.name)) {
    throw new UsageError(`--name "${o.name}" is not a valid DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters; it names the Service)`);
  }
  if (o.image !== undefined && (o.image.trim() === '' || /\s/.test(o.image))) throw new UsageError(`--image "${o.image}" is not an image reference (e.g. "registry.example.com/wardle-apiserver:1.0")`);
  integerIn('replicas', o.replicas, 1, 1000, 'a whole number of replicas from 1 to 1000');
  if (o.replicas > 1 && !o.sharedStorage) {
    throw new UsageError(
      `--replicas ${o.replicas} needs --shared-storage: without shared storage each pod keeps its own objects (the bundled server stores in memory unless given --etcd-servers), and the replicas would answer from different stores`,
    );
  }
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

function optionFor(o: SynthOptions, flag: 'tls-cert-file' | 'tls-key-file' | 'ca-bundle-file' | 'tls-secret-name'): string | undefined {
  return { 'tls-cert-file': o.tlsCertFile, 'tls-key-file': o.tlsKeyFile, 'ca-bundle-file': o.caBundleFile, 'tls-secret-name': o.tlsSecretName }[flag];
}
