import * as fs from 'node:fs';
import * as YAML from 'yaml';
import yargs from 'yargs';
import { DEFAULT_CA_VALIDITY_DAYS, DEFAULT_CERT_VALIDITY_DAYS, DEFAULT_PKI_DIRECTORY } from '../../certificates';
import { DEFAULT_FRONT_PROXY_CLIENT_NAME } from '../../pki/front-proxy';
import { parseSynthOptions, UsageError } from '../options';
import { DEFAULT_HOST_DIRECTORY, frontProxy } from './front-proxy';
import { formatInspectReport, inspectPki } from './inspect';
import { formatRotateReport, rotateServingPki } from './rotate';

export { inspectPki, formatInspectReport, type InspectReport, type InspectedCertificate } from './inspect';
export { rotateServingPki, previewNextSynth, servingStoreOf, formatRotateReport, type RotateReport } from './rotate';
export { frontProxy, FRONT_PROXY_STORE, type FrontProxyOptions, type FrontProxyResult } from './front-proxy';

export interface CommandIo {
  readonly write: (text: string) => void;
  readonly error: (text: string) => void;
  /** Colour the output (stdout is a TTY). */
  readonly colour: boolean;
}

type Args = Record<string, unknown>;

/** A yargs parser that throws UsageError and hands --help's text back instead of exiting. */
function parse(argv: readonly string[], usage: string, options: Parameters<ReturnType<typeof yargs>['options']>[0]): { args: Args; help?: string } {
  let help: string | undefined;
  const args = yargs([...argv])
    .scriptName('cdk8s-api-extension')
    .usage(usage)
    .options(options)
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new UsageError(message);
    })
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .parse([...argv], {}, (_error, _argv, output) => {
      if (output) help = output;
    }) as Args;
  return { args, help: args.help ? (help ?? '') : undefined };
}

/** A --config file's keys as synth reads them (only the ones these commands take). */
function readConfig(file: string | undefined): Args {
  if (file === undefined) return {};
  let parsed: unknown;
  try {
    parsed = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`--config "${file}" cannot be read as YAML or JSON: ${(error as Error).message.split('\n')[0]}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`--config "${file}" must hold a mapping of option names to values (e.g. "pki-dir: .pki")`);
  return parsed as Args;
}

function wholeNumber(flag: string, value: unknown, min: number): number {
  const text = String(value).trim();
  if (!/^\d+$/.test(text) || Number(text) < min || !Number.isSafeInteger(Number(text))) throw new UsageError(`--${flag} "${String(value)}" is not a whole number of days from ${min} (e.g. 30)`);
  return Number(text);
}

const INSPECT_USAGE = `$0 pki inspect [options]

Prints each certificate of the PKI directory (every store in it) and of the synth output (Secrets'
tls.crt and ca.crt, APIServices' caBundle): subject, SANs, issuer, serial, SHA-256 fingerprint,
validity, days left, and whether it chains to its CA (a leaf of the PKI to its store's CAs; a
Secret's tls.crt to its ca.crt and to the caBundle of each APIService whose Service it serves).
Reads only; never prints a private key. Exit code 0 when all is well, 1 when a certificate is
expired, not yet valid, mis-chained or expires within --warn-days, 2 on bad options.`;

async function runInspect(argv: readonly string[], io: CommandIo): Promise<number> {
  const { args, help } = parse(argv, INSPECT_USAGE, {
    'pki-dir': { type: 'string', describe: 'the PKI directory', defaultDescription: `"pki-dir" of --config, $APIEXT_PKI_DIR or "${DEFAULT_PKI_DIRECTORY}"` },
    dist: { type: 'string', describe: 'the synth output directory', defaultDescription: '"output" of --config, $CDK8S_OUTDIR or "dist"' },
    config: { type: 'string', describe: "synth's --config file: its pki-dir and output are read" },
    'warn-days': { type: 'string', default: '30', describe: 'fail when a certificate expires within this many days' },
    output: { type: 'string', alias: 'o', choices: ['table', 'wide', 'json'], default: 'table', describe: 'report format: a row per certificate, a block per certificate with every field, or JSON' },
  });
  if (help !== undefined) {
    io.write(help);
    return 0;
  }
  const config = readConfig(args.config as string | undefined);
  const pkiDirGiven = (args['pki-dir'] ?? config['pki-dir']) as string | undefined;
  const distGiven = (args.dist ?? config.output) as string | undefined;
  const report = inspectPki({
    pkiDir: pkiDirGiven ?? process.env.APIEXT_PKI_DIR ?? DEFAULT_PKI_DIRECTORY,
    pkiDirGiven: pkiDirGiven !== undefined,
    dist: distGiven ?? process.env.CDK8S_OUTDIR ?? 'dist',
    distGiven: distGiven !== undefined,
    warnDays: wholeNumber('warn-days', args['warn-days'], 0),
  });
  io.write(args.output === 'json' ? JSON.stringify(report, null, 2) : formatInspectReport(report, io.colour, args.output === 'wide'));
  return report.ok ? 0 : 1;
}

const ROTATE_USAGE = `usage: cdk8s-api-extension pki rotate [--ca | --etcd] [synth options]

Forces a new serving certificate in the self-signed PKI, or with --ca starts a CA rotation with the
overlap of the automatic one (the old CA stays in caBundle, after the new one, until the serving
certificate it signed expires). Give the options you synthesize with (--namespace, --name,
--cluster-domain, --pki-dir, --config, --output, --cert-validity-days, --ca-validity-days, … or
their APIEXT_* variables): they pick the store, and the new certificates get the synth's
lifetimes. Then says what the next synth and apply will change, from a synth into a temporary
directory compared with --output. Exit code 0 when rotated, 2 on bad options or nothing to rotate.

options:
  --ca     rotate the CA (a new CA, a new serving certificate it signs), not only the serving certificate
  --etcd   reissue etcd's certificates (members' server and peer, the server's client) with the same etcd CA instead
  --help   show this help
  (every synth option: see "npm run synth -- --help")`;

async function runRotate(argv: readonly string[], io: CommandIo): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.write(ROTATE_USAGE);
    return 0;
  }
  const ca = argv.includes('--ca');
  const etcd = argv.includes('--etcd');
  const synthArgs = argv.filter((arg) => arg !== '--ca' && arg !== '--etcd');
  const synth = parseSynthOptions(synthArgs);
  if (synth === undefined) return 0;
  io.write(formatRotateReport(rotateServingPki({ synth, ca, etcd })));
  return 0;
}

const FRONT_PROXY_USAGE = `$0 front-proxy [options]

For a cluster whose kube-apiserver runs without the aggregation layer: makes a front-proxy CA and
client certificate in <pki-dir>/front-proxy (reused while valid: a second run changes nothing;
directory 0700, keys 0600; never in the synth output) and prints the kube-apiserver flags that
enable aggregation, and the same as a kubeadm ClusterConfiguration patch. What the PKI did
(created, reused, renewed) goes to stderr; stdout is the same on every run while the PKI is.`;

async function runFrontProxy(argv: readonly string[], io: CommandIo): Promise<number> {
  const { args, help } = parse(argv, FRONT_PROXY_USAGE, {
    'pki-dir': { type: 'string', describe: 'the PKI directory', defaultDescription: `$APIEXT_PKI_DIR or "${DEFAULT_PKI_DIRECTORY}"` },
    'allowed-name': {
      type: 'string',
      array: true,
      describe: 'a name for --requestheader-allowed-names (repeat for several); the client certificate gets the first as its common name',
      defaultDescription: DEFAULT_FRONT_PROXY_CLIENT_NAME,
    },
    'host-dir': { type: 'string', default: DEFAULT_HOST_DIRECTORY, describe: 'where the files go on the control-plane hosts (kubeadm mounts /etc/kubernetes/pki into kube-apiserver)' },
    'enable-aggregator-routing': { type: 'boolean', default: false, describe: 'kube-proxy does not run on the control-plane hosts: print --enable-aggregator-routing=true among the flags' },
    'cert-validity-days': { type: 'string', default: String(DEFAULT_CERT_VALIDITY_DAYS), describe: 'client certificate lifetime in days' },
    'ca-validity-days': { type: 'string', default: String(DEFAULT_CA_VALIDITY_DAYS), describe: "the CA's lifetime in days (must exceed --cert-validity-days)" },
    'allow-unignored-pki-dir': { type: 'boolean', default: false, describe: 'keep --pki-dir inside a git work tree that does not ignore it' },
  });
  if (help !== undefined) {
    io.write(help);
    return 0;
  }
  const allowedNames = ((args['allowed-name'] as string[] | undefined) ?? [DEFAULT_FRONT_PROXY_CLIENT_NAME]).flatMap((name) => String(name).split(','));
  for (const name of allowedNames) {
    if (name.trim() === '' || name !== name.trim()) throw new UsageError(`--allowed-name "${name}" is not a name (expected a common name without surrounding spaces, e.g. "${DEFAULT_FRONT_PROXY_CLIENT_NAME}")`);
  }
  const certValidityDays = wholeNumber('cert-validity-days', args['cert-validity-days'], 1);
  const caValidityDays = wholeNumber('ca-validity-days', args['ca-validity-days'], 1);
  if (caValidityDays <= certValidityDays) throw new UsageError(`--ca-validity-days "${caValidityDays}" must be greater than --cert-validity-days "${certValidityDays}": the CA has to outlive the certificate it signs`);
  const result = frontProxy({
    pkiDir: (args['pki-dir'] as string | undefined) ?? process.env.APIEXT_PKI_DIR ?? DEFAULT_PKI_DIRECTORY,
    allowedNames,
    certValidityDays,
    caValidityDays,
    hostDir: String(args['host-dir']),
    aggregatorRouting: args['enable-aggregator-routing'] === true,
    allowUnignoredPkiDir: args['allow-unignored-pki-dir'] === true,
  });
  for (const action of result.actions) io.error(action);
  io.write(result.instructions);
  return 0;
}

/** Runs a command; bad input is exit 2 with one line naming the flag, anything else exit 1. */
async function guarded(io: CommandIo, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (error) {
    io.error(`error: ${(error as Error).message}`);
    return error instanceof UsageError ? 2 : 1;
  }
}

const PKI_SUBCOMMANDS: Record<string, (argv: readonly string[], io: CommandIo) => Promise<number>> = { inspect: runInspect, rotate: runRotate };

/** `pki inspect …` and `pki rotate …`. */
export function runPki(argv: readonly string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  const run = sub === undefined ? undefined : PKI_SUBCOMMANDS[sub];
  if (run === undefined) {
    const text = 'usage: cdk8s-api-extension pki inspect|rotate [options] (--help on each)';
    if (sub === '--help' || sub === '-h') {
      io.write(text);
      return Promise.resolve(0);
    }
    io.error(`error: ${sub === undefined ? 'pki needs a subcommand' : `"${sub}" is not a pki subcommand`} (expected inspect or rotate)\n${text}`);
    return Promise.resolve(2);
  }
  return guarded(io, () => run(rest, io));
}

/** `front-proxy …`. */
export function runFrontProxyCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  return guarded(io, () => runFrontProxy(argv, io));
}
