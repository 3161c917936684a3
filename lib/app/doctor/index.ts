import * as fs from 'node:fs';
import * as YAML from 'yaml';
import yargs from 'yargs';
import { DoctorUsageError } from './errors';
import { CheckResult, Doctor } from './checks';
import { ApiServiceRef, Installation, installationFromManifests, readManifests } from './installation';
import { KubeClient, Unstructured } from './kube';
import { formatJson, formatTable, summarize } from './report';

export { CheckResult, CheckStatus, Doctor, explainUnavailable } from './checks';
export { Installation } from './installation';

export interface DoctorOptions {
  /** The synth's output directory: every object doctor compares with the cluster. */
  readonly dist?: string;
  /** True when `dist` was given (--dist or the config's `output`): a missing directory is then an error. */
  readonly distGiven: boolean;
  readonly namespace?: string;
  readonly name?: string;
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly output: 'table' | 'json';
  readonly logLines: number;
  readonly timeoutSeconds: number;
}

const USAGE = `$0 doctor [options]

Checks a live installation against the cluster, one line per check (PASS, WARN, FAIL) with the fix
for each failure. Reads only: it never changes the cluster. Exit code 0 when nothing failed,
1 when a check failed, 2 on bad options.

What to look for comes from the synth output (--dist, default "dist"), the server picked by
--namespace and --name when it holds several; without manifests, --namespace and --name name the
server and doctor finds its APIServices in the cluster.`;

/** A --config file's keys doctor shares with synth: namespace, name, output (the manifests' directory). */
function readConfig(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new DoctorUsageError(`--config "${file}" cannot be read as YAML or JSON: ${(error as Error).message.split('\n')[0]}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new DoctorUsageError(`--config "${file}" must hold a mapping of option names to values (e.g. "namespace: wardle")`);
  return parsed as Record<string, unknown>;
}

/** Flags → options; undefined when --help was printed. */
export function parseDoctorOptions(argv: readonly string[], print: (text: string) => void = console.log): DoctorOptions | undefined {
  const args = yargs([...argv])
    .scriptName('cdk8s-api-extension')
    .usage(USAGE)
    .options({
      dist: { type: 'string', describe: 'the synth output directory (the manifests applied)', defaultDescription: '"output" of --config, $CDK8S_OUTDIR or "dist"' },
      namespace: { type: 'string', describe: 'namespace of the server to check' },
      name: { type: 'string', describe: 'name of the server (its Service) to check' },
      config: { type: 'string', describe: "synth's --config file: its namespace, name and output are read" },
      kubeconfig: { type: 'string', describe: 'kubeconfig file', defaultDescription: '$KUBECONFIG (merged), ~/.kube/config, or the in-cluster ServiceAccount' },
      context: { type: 'string', describe: 'kubeconfig context', defaultDescription: 'the current context' },
      output: { type: 'string', alias: 'o', choices: ['table', 'json'], default: 'table', describe: 'report format' },
      'log-lines': { type: 'number', default: 10, describe: 'log lines shown of a pod that is not ready' },
      'request-timeout': { type: 'number', default: 10, describe: 'seconds to wait for each answer of the API server' },
    })
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((message, error) => {
      throw new DoctorUsageError((error?.message ?? message).replace(/\s*\n\s*/g, " "));
    })
    .wrap(Math.min(110, process.stdout.columns ?? 110));
  let helpText: string | undefined;
  const parsed = args.parse([...argv], {}, (_error, _argv, output) => {
    if (output) helpText = output;
  }) as Unstructured;
  if (parsed.help) {
    print(helpText ?? '');
    return undefined;
  }
  const config = parsed.config !== undefined ? readConfig(parsed.config) : {};
  const text = (value: unknown, flag: string): string | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value.trim() === '') throw new DoctorUsageError(`${flag} "${String(value)}" is not a name (expected a non-empty string)`);
    return value;
  };
  const distFromFlag = text(parsed.dist, '--dist') ?? text(config.output, `--config "${parsed.config}": output`);
  if (!Number.isInteger(parsed['log-lines']) || parsed['log-lines'] < 0) throw new DoctorUsageError(`--log-lines "${parsed['log-lines']}" is not a count (expected a whole number ≥ 0)`);
  if (!(parsed['request-timeout'] > 0)) throw new DoctorUsageError(`--request-timeout "${parsed['request-timeout']}" is not a duration (expected seconds > 0)`);
  return {
    dist: distFromFlag ?? process.env.CDK8S_OUTDIR ?? 'dist',
    distGiven: distFromFlag !== undefined,
    namespace: text(parsed.namespace, '--namespace') ?? text(config.namespace, `--config "${parsed.config}": namespace`),
    name: text(parsed.name, '--name') ?? text(config.name, `--config "${parsed.config}": name`),
    kubeconfig: text(parsed.kubeconfig, '--kubeconfig'),
    context: text(parsed.context, '--context'),
    output: parsed.output,
    logLines: parsed['log-lines'],
    timeoutSeconds: parsed['request-timeout'],
  };
}

/** Without manifests: the server named by --namespace and --name, its APIServices found in the cluster. */
async function installationFromCluster(client: KubeClient, namespace: string, name: string): Promise<Installation> {
  const list = await client.get('/apis/apiregistration.k8s.io/v1/apiservices');
  if (list.status !== 200) throw new DoctorUsageError(`without manifests doctor lists APIServices to find ${namespace}/${name}'s, and the cluster answered ${list.status}: give --dist`);
  const apiServices: ApiServiceRef[] = (list.body.items ?? [])
    .filter((o: Unstructured) => o.spec?.service?.namespace === namespace && o.spec?.service?.name === name)
    .map((o: Unstructured) => ({ name: o.metadata.name, group: o.spec.group, version: o.spec.version }));
  const deployment = await client.get(`/apis/apps/v1/namespaces/${namespace}/deployments/${name}`);
  const etcd = await client.get(`/apis/apps/v1/namespaces/${namespace}/statefulsets/${name}-etcd`);
  return {
    source: `the server ${namespace}/${name} (no manifests: nothing to compare)`,
    namespace,
    serviceName: name,
    apiServices,
    objects: [],
    deploymentName: name,
    serviceAccountName: deployment.body?.spec?.template?.spec?.serviceAccountName ?? name,
    etcdStatefulSetName: etcd.status === 200 ? `${name}-etcd` : undefined,
  };
}

export interface DoctorIo {
  readonly write: (text: string) => void;
  readonly error: (text: string) => void;
  /** Colour the table (stdout is a TTY). */
  readonly colour: boolean;
}

/** `doctor`: options → installation → checks → report. Resolves to the exit code. */
export async function runDoctor(argv: readonly string[], io: DoctorIo): Promise<number> {
  let results: CheckResult[];
  let options: DoctorOptions | undefined;
  try {
    options = parseDoctorOptions(argv, io.write);
    if (!options) return 0;
    const haveManifests = options.dist !== undefined && fs.existsSync(options.dist);
    if (!haveManifests && (options.distGiven || options.namespace === undefined)) {
      throw new DoctorUsageError(
        `--dist "${options.dist}" does not exist: give the synth output directory (--dist), or --namespace and --name${options.namespace === undefined ? '' : ' without --dist'} to check a server without its manifests`,
      );
    }
    const client = await KubeClient.connect({ kubeconfig: options.kubeconfig, context: options.context, timeoutMs: options.timeoutSeconds * 1000 });
    let installation: Installation;
    if (haveManifests) {
      const objects = readManifests(options.dist!);
      installation = installationFromManifests(objects, `${options.dist}/ (${objects.length} objects)`, options.namespace, options.name);
    } else {
      installation = await installationFromCluster(client, options.namespace!, options.name ?? `${options.namespace}-apiserver`);
    }
    results = await new Doctor({ client, installation, manifestsDirectory: haveManifests ? options.dist : undefined, logLines: options.logLines }).run();
  } catch (error) {
    io.error(`error: ${(error as Error).message}`);
    return error instanceof DoctorUsageError ? 2 : 1;
  }
  io.write(options.output === 'json' ? formatJson(results) : formatTable(results, io.colour));
  return summarize(results).fail === 0 ? 0 : 1;
}
