import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inspectCertificate, PKI_GITIGNORE, PKI_STORE_FILES } from '../../pki';
import { _planFrontProxyPki, FRONT_PROXY_PKI_FILES } from '../../pki/front-proxy';
import { _unsafePkiDirectoryReason } from '../../pki/self-signed-pki';
import { _commitStore } from '../../pki/store';
import { UsageError } from '../options';

/** The front-proxy store's directory inside the PKI directory (a namespace's stores are one level deeper, so they never meet). */
export const FRONT_PROXY_STORE = 'front-proxy';

/** kubeadm's file names, in its certificates directory: what a kubeadm control plane already mounts into kube-apiserver. */
const HOST_FILES = { caBundle: 'front-proxy-ca.crt', clientCert: 'front-proxy-client.crt', clientKey: 'front-proxy-client.key' } as const;
export const DEFAULT_HOST_DIRECTORY = '/etc/kubernetes/pki';

export interface FrontProxyOptions {
  readonly pkiDir: string;
  readonly allowedNames: readonly string[];
  readonly certValidityDays: number;
  readonly caValidityDays: number;
  /** Where the files go on the control-plane hosts. */
  readonly hostDir: string;
  /** Print --enable-aggregator-routing=true as a flag to set (kube-proxy does not run on the control-plane hosts). */
  readonly aggregatorRouting: boolean;
  readonly allowUnignoredPkiDir: boolean;
  readonly now?: Date;
}

export interface FrontProxyResult {
  /** What the store did (`created CA; created client certificate` or `reused …`): for stderr, as it differs between runs. */
  readonly actions: readonly string[];
  /** The flags, files and kubeadm patch: identical on every run while the PKI is unchanged. */
  readonly instructions: string;
  /** The kube-apiserver flags, name → value, in the order printed. */
  readonly flags: readonly (readonly [string, string])[];
}

/** The top of the git work tree holding `directory` when git would not ignore a key in it (as synth checks). */
function gitWorkTreeNotIgnoring(directory: string): string | undefined {
  const absolute = path.resolve(directory);
  if (!fs.existsSync(absolute)) return undefined;
  const git = (...args: string[]) => spawnSync('git', ['-C', absolute, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const check = git('check-ignore', '-q', '--', path.join(absolute, PKI_STORE_FILES.caKey));
  if (check.error !== undefined || check.status !== 1) return undefined;
  const top = git('rev-parse', '--show-toplevel');
  return top.status === 0 ? top.stdout.trim() : absolute;
}

/**
 * Makes (or reuses) the front-proxy CA and client certificate in `<pki-dir>/front-proxy` and says
 * how to give them to kube-apiserver. A second run with the same options writes nothing and
 * returns the same instructions.
 */
export function frontProxy(options: FrontProxyOptions): FrontProxyResult {
  const unsafe = _unsafePkiDirectoryReason(options.pkiDir);
  if (unsafe !== undefined) throw new UsageError(`--pki-dir "${options.pkiDir}" ${unsafe} (expected a directory of its own for the CA keys, e.g. ".pki")`);
  if (!options.allowUnignoredPkiDir) {
    const repository = gitWorkTreeNotIgnoring(options.pkiDir);
    if (repository !== undefined) {
      throw new UsageError(
        `--pki-dir "${options.pkiDir}" is inside the git work tree ${repository} and git does not ignore it: the front-proxy CA key would be committed ` +
          '(expected it ignored, e.g. in .gitignore; or --allow-unignored-pki-dir to keep it there anyway)',
      );
    }
  }
  if (!path.isAbsolute(options.hostDir)) throw new UsageError(`--host-dir "${options.hostDir}" is not an absolute path (expected the directory on the control-plane hosts, e.g. "${DEFAULT_HOST_DIRECTORY}")`);
  const createdPkiDir = !fs.existsSync(options.pkiDir);
  const store = path.join(options.pkiDir, FRONT_PROXY_STORE);
  const [clientCommonName] = options.allowedNames;
  let plan;
  try {
    plan = _planFrontProxyPki({ directory: store, clientCommonName, certValidityDays: options.certValidityDays, caValidityDays: options.caValidityDays, now: options.now });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.replace(/^clientCommonName/, '--allowed-name')}`);
  }
  if (plan.store.writes.size > 0 || plan.store.restrict.length > 0) _commitStore(plan.store);
  if (createdPkiDir) {
    // As a synth does: a PKI directory made here ignores itself in git.
    fs.writeFileSync(path.join(options.pkiDir, PKI_GITIGNORE), '# Made by cdk8s-api-extension: this directory holds CA private keys. Never commit it.\n*\n', { mode: 0o644 });
  }

  const host = (name: string): string => path.posix.join(options.hostDir, name);
  const flags: [string, string][] = [
    ['requestheader-client-ca-file', host(HOST_FILES.caBundle)],
    ['requestheader-allowed-names', options.allowedNames.join(',')],
    ['requestheader-extra-headers-prefix', 'X-Remote-Extra-'],
    ['requestheader-group-headers', 'X-Remote-Group'],
    ['requestheader-username-headers', 'X-Remote-User'],
    ['proxy-client-cert-file', host(HOST_FILES.clientCert)],
    ['proxy-client-key-file', host(HOST_FILES.clientKey)],
  ];
  if (options.aggregatorRouting) flags.push(['enable-aggregator-routing', 'true']);
  const client = inspectCertificate(plan.material.client.certPem);
  const local = (name: string): string => path.join(store, name);
  const routingNote = 'only when kube-proxy does not run on the control-plane hosts (the aggregator then dials the endpoints\' IPs, not the Service\'s ClusterIP):';
  const underKubeadmMount = options.hostDir === DEFAULT_HOST_DIRECTORY || options.hostDir.startsWith(`${DEFAULT_HOST_DIRECTORY}/`);
  const lines = [
    `# Front-proxy PKI in ${store}: CA ${inspectCertificate(plan.material.caCertPem).subject}; client certificate ${client.subject}, expires ${client.notAfter.toISOString()}.`,
    '# Copy to every control-plane host (the key mode 0600, owned by the user kube-apiserver runs as):',
    `#   ${local(FRONT_PROXY_PKI_FILES.requestHeaderCaBundle)} -> ${host(HOST_FILES.caBundle)}`,
    `#   ${local(FRONT_PROXY_PKI_FILES.clientCert)} -> ${host(HOST_FILES.clientCert)}`,
    `#   ${local(FRONT_PROXY_PKI_FILES.clientKey)} -> ${host(HOST_FILES.clientKey)}`,
    '',
    '# kube-apiserver flags:',
    ...flags.map(([name, value]) => `--${name}=${value}`),
    ...(options.aggregatorRouting ? [] : [`# ${routingNote}`, '# --enable-aggregator-routing=true']),
    '',
    '# The same as a kubeadm ClusterConfiguration patch (kubeadm.k8s.io/v1beta4; v1beta3 takes extraArgs as a map, name: value).',
    `# kubeadm mounts ${DEFAULT_HOST_DIRECTORY} into kube-apiserver${underKubeadmMount ? '' : `; ${options.hostDir} needs the apiServer.extraVolumes below`}. On a running cluster, merge it into`,
    '# the ClusterConfiguration of the kubeadm-config ConfigMap (kubectl -n kube-system edit cm kubeadm-config: upgrades keep it), then on each',
    '# control-plane host: kubeadm init phase control-plane apiserver --config <that ClusterConfiguration>.',
    'apiVersion: kubeadm.k8s.io/v1beta4',
    'kind: ClusterConfiguration',
    'apiServer:',
    '  extraArgs:',
    ...flags.flatMap(([name, value]) => [`    - name: ${name}`, `      value: ${JSON.stringify(value)}`]),
    ...(options.aggregatorRouting ? [] : [`    # ${routingNote}`, '    # - name: enable-aggregator-routing', '    #   value: "true"']),
    ...(underKubeadmMount
      ? []
      : ['  extraVolumes:', '    - name: front-proxy', `      hostPath: ${JSON.stringify(options.hostDir)}`, `      mountPath: ${JSON.stringify(options.hostDir)}`, '      readOnly: true', '      pathType: Directory']),
  ];
  const actions = [`${store}: ${plan.material.actions.join('; ')}`];
  return { actions, instructions: lines.join('\n'), flags };
}
