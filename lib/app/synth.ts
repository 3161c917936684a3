import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Chart } from 'cdk8s';
import * as YAML from 'yaml';
import { ApiGroupDefinition, WARDLE } from '../../apis';
import { AggregatedApiServer } from '../aggregated-api-server';
import { Certificates, DEFAULT_PKI_DIRECTORY, ICertificates } from '../certificates';
import { EtcdCertificates, IEtcdCertificates } from '../etcd-certificates';
import { inspectCertificate, PKI_STORE_FILES, PkiCertificate, protectSynthOutput, SelfSignedPki, splitPemBundle } from '../pki';
import { _checkServingCertificate } from '../pki/_check-serving';
import { _unsafePkiDirectoryReason } from '../pki/self-signed-pki';
import { _makeDirectories } from '../pki/store';
import { _checkEtcdClientCertificate, IStorage, Storage } from '../storage';
import { checkFlag, SynthOptions, UsageError } from './options';

/** One synthesized object, as the summary lists it. */
export interface SynthesizedObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
}

export interface SynthesizedCertificate {
  /**
   * `CA` for a certificate in an APIService caBundle, `serving` for the serving Secret's
   * tls.crt; `etcd` for the tls.crt of etcd's Secrets (members' server and peer certificates,
   * the server's client certificate), `etcd CA` for their ca.crt.
   */
  readonly role: 'CA' | 'serving' | 'etcd' | 'etcd CA';
  readonly subject: string;
  /** The Secret an etcd certificate is in (a member's server or peer certificate, or the client's). */
  readonly secretName?: string;
  readonly sha256Fingerprint: string;
  readonly notAfter: Date;
}

export interface SynthResult {
  readonly outputDirectory: string;
  readonly files: readonly { readonly path: string; readonly objects: readonly SynthesizedObject[] }[];
  /** The certificates in the output, as the PKI (self-signed) or the files read (existing) gave them. */
  readonly certificates: readonly SynthesizedCertificate[];
  /**
   * What each PKI store did (created, reused, renewed, rotated), one line per store directory:
   * `.pki/wardle/wardle-apiserver/cluster.local: reused CA; reused serving certificate`.
   */
  readonly pkiActions: readonly string[];
}

/** Reads a file named by a flag; the error names the flag (or `source`, where it came from) and the file. */
function readFlagFile(flag: string, file: string, source = `--${flag}`): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`${source} "${file}" cannot be read: ${(error as Error).message}`);
  }
}

/** Reads a PEM file named by a flag; the error names the flag, the file and what it should hold. */
function readPemFlag(flag: string, file: string, holds: 'certificate' | 'private key', source = `--${flag}`): string {
  const text = readFlagFile(flag, file, source);
  try {
    if (holds === 'private key') crypto.createPrivateKey(text);
    else {
      const pems = splitPemBundle(text);
      if (pems.length === 0) throw new Error('no CERTIFICATE block');
      pems.forEach((pem) => new crypto.X509Certificate(pem));
    }
  } catch (error) {
    throw new UsageError(`${source} "${file}" does not hold a PEM ${holds} (${(error as Error).message})`);
  }
  return text;
}

/** The certificates `existing` mode reads, checked as the aggregator will check them, with messages naming the flags and files. */
interface ExistingCertificates {
  readonly certificates: ICertificates;
  /** What the synth reports: the serving certificate (when given as a file), then the CA bundle. */
  readonly report: readonly PkiCertificate[];
}

function existingCertificates(o: SynthOptions, api: ApiGroupDefinition): ExistingCertificates {
  // Named as the user gave them: the flag, its APIEXT_ variable or the config file's key.
  const source = (flag: 'ca-bundle-file' | 'tls-cert-file' | 'tls-key-file') => o.optionSources?.[flag] ?? `--${flag}`;
  const caBundlePem = readPemFlag('ca-bundle-file', o.caBundleFile!, 'certificate', source('ca-bundle-file'));
  const caReport = splitPemBundle(caBundlePem)
    .filter((pem) => pem.startsWith('-----BEGIN CERTIFICATE-----'))
    .map((certPem) => ({ role: 'CA' as const, certPem }));
  if (o.tlsSecretName !== undefined) {
    return { certificates: Certificates.fromSecret({ secretName: o.tlsSecretName, caBundlePem }), report: caReport };
  }
  const pems = {
    caBundlePem,
    tlsCertPem: readPemFlag('tls-cert-file', o.tlsCertFile!, 'certificate', source('tls-cert-file')),
    tlsKeyPem: readPemFlag('tls-key-file', o.tlsKeyFile!, 'private key', source('tls-key-file')),
  };
  const { namespace, name } = serverNames(o, api);
  checkFlag(() =>
    _checkServingCertificate(pems, { serviceName: name, namespace }, new Date(), {
      caBundlePem: `${source('ca-bundle-file')} "${o.caBundleFile}"`,
      tlsCertPem: `${source('tls-cert-file')} "${o.tlsCertFile}"`,
      tlsKeyPem: `${source('tls-key-file')} "${o.tlsKeyFile}"`,
    }),
  );
  return { certificates: Certificates.fromPem(pems), report: [{ role: 'serving', certPem: splitPemBundle(pems.tlsCertPem)[0] }, ...caReport] };
}

/** External etcd's client certificate and CA bundle, as read from the files (the Secret is `<name>-etcd-client`, see `Storage.externalEtcd`). */
function externalEtcdReport(o: SynthOptions, api: ApiGroupDefinition): PkiCertificate[] {
  if (o.storage !== 'external-etcd') return [];
  const certificates = (file: string) => splitPemBundle(readFlagFile('', file)).filter((pem) => pem.startsWith('-----BEGIN CERTIFICATE-----'));
  return [
    { role: 'etcd', certPem: certificates(o.etcdCertFile!)[0], secretName: `${serverNames(o, api).name}-etcd-client` },
    ...certificates(o.etcdCaFile!).map((certPem) => ({ role: 'etcd CA' as const, certPem })),
  ];
}

/** The namespace and name the server gets: the flags, or the construct's defaults (the group's first label). */
function serverNames(o: SynthOptions, api: ApiGroupDefinition): { namespace: string; name: string } {
  const firstLabel = api.group.split('.')[0];
  return { namespace: o.namespace ?? firstLabel, name: o.name ?? `${firstLabel}-apiserver` };
}

/**
 * The serving certificates. Self-signed ones come from `pki`, the PKI the synth created and saves
 * once the output is complete; without one (an app adding charts itself), from a PKI in
 * --pki-dir written as the tree is built.
 */
function certificatesFor(o: SynthOptions, api: ApiGroupDefinition, pki: SelfSignedPki | undefined, existing: ExistingCertificates | undefined): ICertificates {
  const validity = { certValidityDays: o.certValidityDays, caValidityDays: o.caValidityDays };
  switch (o.certMode) {
    case 'self-signed':
      return pki !== undefined ? Certificates.selfSigned({ pki }) : Certificates.selfSigned({ pkiDirectory: o.pkiDir, ...validity });
    case 'cert-manager':
      return Certificates.certManager(validity);
    case 'existing':
      return (existing ?? existingCertificates(o, api)).certificates;
  }
}

/** etcd's certificates come from where the serving certificate comes from; `existing` has no etcd counterpart, so it is self-signed then. */
function etcdCertificatesFor(o: SynthOptions, pki: SelfSignedPki | undefined): IEtcdCertificates {
  const validity = { certValidityDays: o.certValidityDays, caValidityDays: o.caValidityDays };
  if (o.certMode === 'cert-manager') return EtcdCertificates.certManager(validity);
  return pki !== undefined ? EtcdCertificates.selfSigned({ pki }) : EtcdCertificates.selfSigned({ pkiDirectory: o.pkiDir, ...validity });
}

function storageFor(o: SynthOptions, pki: SelfSignedPki | undefined): IStorage {
  switch (o.storage ?? 'etcd') {
    case 'etcd':
      return Storage.etcdCluster({
        replicas: o.etcdReplicas,
        image: o.etcdImage,
        storageSize: o.etcdStorageSize,
        storageClassName: o.etcdStorageClass,
        networkPolicy: o.networkPolicy,
        backupSchedule: o.etcdBackupSchedule,
        certificates: etcdCertificatesFor(o, pki),
      });
    case 'external-etcd': {
      const pem = { caPem: readFlagFile('etcd-ca-file', o.etcdCaFile!), certPem: readFlagFile('etcd-cert-file', o.etcdCertFile!), keyPem: readFlagFile('etcd-key-file', o.etcdKeyFile!) };
      // The construct's own check, naming the flags and files: Storage.externalEtcd would name its props.
      checkFlag(() =>
        _checkEtcdClientCertificate(pem, { caPem: `--etcd-ca-file "${o.etcdCaFile}"`, certPem: `--etcd-cert-file "${o.etcdCertFile}"`, keyPem: `--etcd-key-file "${o.etcdKeyFile}"` }),
      );
      return Storage.externalEtcd({ servers: o.etcdServers!, pem });
    }
    case 'memory':
      return Storage.memory();
  }
}

/** Whether the synth keeps a PKI in --pki-dir: the serving one when self-signed, etcd's unless cert-manager makes it. */
function usesPkiDirectory(o: SynthOptions): boolean {
  return o.certMode === 'self-signed' || ((o.storage ?? 'etcd') === 'etcd' && o.certMode !== 'cert-manager');
}

/** What `addServerChart` takes beyond the options: where self-signed certificates come from, and `existing` mode's checked files. */
export interface ServerChartSources {
  /** @default - a PKI in --pki-dir, written as the tree is built */
  readonly pki?: SelfSignedPki;
  /** @default - read and checked when the chart is added */
  readonly existing?: ExistingCertificates;
}

/** Adds the server described by `o` to `app`: one chart, named after the server. */
export function addServerChart(app: App, o: SynthOptions, api: ApiGroupDefinition = WARDLE, sources: ServerChartSources = {}): AggregatedApiServer {
  const chart = new Chart(app, serverNames(o, api).name);
  return new AggregatedApiServer(chart, 'Server', {
    api,
    namespace: o.namespace,
    name: o.name,
    image: o.image,
    replicas: o.replicas,
    storage: storageFor(o, sources.pki),
    securePort: o.securePort,
    groupPriorityMinimum: o.groupPriorityMinimum,
    versionPriority: o.versionPriority,
    clusterDomain: o.clusterDomain,
    certificates: certificatesFor(o, api, sources.pki, sources.existing),
    createNamespace: o.createNamespace,
    labels: o.labels,
    priorityClassName: o.priorityClassName,
    nodeSelector: o.nodeSelector,
    tolerations: o.tolerations,
    imagePullSecrets: o.imagePullSecrets,
    serverRules: o.serverRules,
  });
}

/**
 * Synthesizes into a staging directory beside `o.output` and swaps it in only when everything
 * succeeded, so that a failed synth leaves the previous output exactly as it was.
 */
export function synthesize(o: SynthOptions, api: ApiGroupDefinition = WARDLE): SynthResult {
  const output = path.resolve(o.output);
  checkOutputDirectory(o, output);
  const pki = usesPkiDirectory(o) ? openPki(o) : undefined;
  const existing = o.certMode === 'existing' ? existingCertificates(o, api) : undefined;
  let staging: string;
  try {
    // One level at a time (`-o /proc/x/dist` made Node's recursive mkdir loop); the output's parents are ordinary directories.
    _makeDirectories(path.dirname(output), 0o777);
    staging = fs.mkdtempSync(path.join(path.dirname(output), `.${path.basename(output)}.staging-`));
  } catch (error) {
    throw new UsageError(`--output "${o.output}" cannot be written: ${pathProblem(output, error)}`);
  }
  try {
    const app = new App({ outdir: staging });
    addServerChart(app, o, api, { pki, existing });
    app.synth();
    protectSynthOutput(staging);
    const certificates = [...(existing?.report ?? []), ...(pki?.certificates ?? []), ...externalEtcdReport(o, api)];
    const stores = pki?.actions.map((line) => `${path.join(o.pkiDir, line)}`) ?? [];
    // The PKI is written once the output is complete, and before it replaces the old output:
    // a failure on the way leaves both as they were, or the PKI ahead (reused by the next synth).
    const written = pki === undefined ? [] : savePki(o, pki);
    const result = { ...describeOutput(staging, output), certificates: describeCertificates(certificates), pkiActions: [...stores, ...written] };
    replaceDirectory(staging, output);
    return result;
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * The PKI of this synth, in --pki-dir: refused when the directory is no place for CA keys
 * (empty, `/`, the working directory or above it, a file), or when it is in a git work tree
 * that does not ignore it (unless --allow-unignored-pki-dir). A directory the PKI creates
 * ignores itself (it gets a `.gitignore` of `*`).
 */
function openPki(o: SynthOptions): SelfSignedPki {
  const source = o.pkiDirSource ?? '--pki-dir';
  const unsafe = _unsafePkiDirectoryReason(o.pkiDir) ?? uncreatableReason(o.pkiDir);
  if (unsafe !== undefined) {
    throw new UsageError(`${source} "${o.pkiDir}" ${unsafe} (expected a directory of its own for the CA keys, e.g. "${DEFAULT_PKI_DIRECTORY}")`);
  }
  if (!o.allowUnignoredPkiDir) {
    const repository = gitWorkTreeNotIgnoring(o.pkiDir);
    if (repository !== undefined) {
      const relative = path.relative(repository, path.resolve(o.pkiDir));
      throw new UsageError(
        `${source} "${o.pkiDir}" is inside the git work tree ${repository} and git does not ignore it: its CA private keys would be committed ` +
          `(expected it ignored, e.g. echo '/${relative}/' >> ${path.join(repository, '.gitignore')}; or --allow-unignored-pki-dir to keep it there anyway)`,
      );
    }
  }
  return checkFlag(() => new SelfSignedPki({ directory: o.pkiDir, certValidityDays: o.certValidityDays, caValidityDays: o.caValidityDays }));
}

/** Saves the PKI; a directory that cannot be written is named by the flag (or variable) it came from. */
function savePki(o: SynthOptions, pki: SelfSignedPki): readonly string[] {
  try {
    return pki.save();
  } catch (error) {
    throw new Error(`${o.pkiDirSource ?? '--pki-dir'} "${o.pkiDir}": ${(error as Error).message}`);
  }
}

/**
 * Why --pki-dir cannot be created, when it does not exist yet: its nearest existing ancestor is
 * a file or not writable. (A PKI directory that exists is only written when something changed.)
 */
function uncreatableReason(directory: string): string | undefined {
  let ancestor = path.resolve(directory);
  if (fs.existsSync(ancestor)) return undefined;
  while (!fs.existsSync(ancestor)) ancestor = path.dirname(ancestor);
  if (!fs.statSync(ancestor).isDirectory()) return `cannot be created: ${ancestor} is a file, not a directory`;
  try {
    fs.accessSync(ancestor, fs.constants.W_OK);
  } catch {
    return `cannot be created: ${ancestor} is not writable`;
  }
  return undefined;
}

/**
 * The top of the git work tree holding the existing directory `directory` when git would not
 * ignore a key file in it; undefined when it would, when the directory does not exist yet (the
 * PKI creates it with a `.gitignore`), or when there is no git or no work tree.
 */
function gitWorkTreeNotIgnoring(directory: string): string | undefined {
  const absolute = path.resolve(directory);
  if (!fs.existsSync(absolute)) return undefined;
  const git = (...args: string[]) => spawnSync('git', ['-C', absolute, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const check = git('check-ignore', '-q', '--', path.join(absolute, PKI_STORE_FILES.caKey));
  if (check.error !== undefined || check.status !== 1) return undefined; // 0: ignored; 128: not a work tree; no git
  const top = git('rev-parse', '--show-toplevel');
  return top.status === 0 ? top.stdout.trim() : absolute;
}



/** What a synth writes into the output directory (cdk8s adds construct-metadata.json when asked to). */
const OUTPUT_ENTRY = /^(?:.+\.k8s\.yaml|construct-metadata\.json)$/;

/**
 * The output directory is replaced whole, so it must be missing, empty or a previous output:
 * `--output .` or `--output README.md` must fail, not delete the project. The PKI directory must
 * lie outside it, or the swap would delete the CA (and its private key would be in the output).
 */
function checkOutputDirectory(o: SynthOptions, output: string): void {
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(output, { throwIfNoEntry: false });
  } catch (error) {
    throw new UsageError(`--output "${o.output}" cannot be used: ${pathProblem(output, error)}`);
  }
  if (stat !== undefined && !stat.isDirectory()) {
    throw new UsageError(`--output "${o.output}" is not a directory (expected a directory to replace, or a path that does not exist yet)`);
  }
  if (stat !== undefined) {
    const foreign = fs
      .readdirSync(output, { withFileTypes: true })
      .filter((entry) => !entry.isFile() || !OUTPUT_ENTRY.test(entry.name))
      .map((entry) => entry.name)
      .sort();
    if (foreign.length > 0) {
      const shown = foreign.length > 3 ? `${foreign.slice(0, 3).join(', ')} and ${foreign.length - 3} more` : foreign.join(', ');
      throw new UsageError(
        `--output "${o.output}" holds ${shown}, which a synth does not write (expected a new or empty directory, or a previous ` +
          `output holding only *.k8s.yaml files: the output directory is replaced whole)`,
      );
    }
  }
  const pkiDir = path.resolve(o.pkiDir);
  if (usesPkiDirectory(o) && (pkiDir === output || pkiDir.startsWith(`${output}${path.sep}`))) {
    throw new UsageError(
      `--pki-dir "${o.pkiDir}" is inside --output "${o.output}" (expected a directory outside it: the output is replaced whole, ` +
        `and the CA private key must never be in it)`,
    );
  }
}

/** A file-system error on `target` in words: which ancestor is a file, or what was refused. */
function pathProblem(target: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOTDIR') {
    for (let current = path.dirname(target); path.dirname(current) !== current; current = path.dirname(current)) {
      if (fs.statSync(current, { throwIfNoEntry: false })?.isFile()) return `"${path.relative(process.cwd(), current) || current}" is a file, not a directory (expected a directory path)`;
    }
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return `permission denied (${(error as Error).message}; expected a directory this user may write)`;
  return `${(error as Error).message} (expected a directory path this user may create and write)`;
}

/** Renames `from` onto `to`; the old `to` is moved aside first and restored if the rename fails. */
function replaceDirectory(from: string, to: string): void {
  const previous = fs.existsSync(to) ? `${to}.previous-${process.pid}` : undefined;
  if (previous) fs.renameSync(to, previous);
  try {
    fs.renameSync(from, to);
  } catch (error) {
    if (previous) fs.renameSync(previous, to);
    throw error;
  }
  if (previous) fs.rmSync(previous, { recursive: true, force: true });
}

/** The order the summary lists certificates in: the aggregator's, then etcd's. */
const ROLE_ORDER: readonly SynthesizedCertificate['role'][] = ['serving', 'CA', 'etcd', 'etcd CA'];

function describeOutput(directory: string, reportedDirectory: string): Pick<SynthResult, 'outputDirectory' | 'files'> {
  const files: { path: string; objects: SynthesizedObject[] }[] = [];
  for (const file of fs.readdirSync(directory).sort()) {
    const objects: SynthesizedObject[] = [];
    for (const document of YAML.parseAllDocuments(fs.readFileSync(path.join(directory, file), 'utf8'))) {
      const object = document.toJS();
      if (!object) continue;
      objects.push({ apiVersion: object.apiVersion, kind: object.kind, name: object.metadata?.name, namespace: object.metadata?.namespace });
    }
    files.push({ path: path.join(reportedDirectory, file), objects });
  }
  return { outputDirectory: reportedDirectory, files };
}

/** The certificates handed to the constructs, each once (a CA is in every etcd Secret), in ROLE_ORDER. */
function describeCertificates(handedOut: readonly PkiCertificate[]): SynthesizedCertificate[] {
  const certificates = new Map<string, SynthesizedCertificate>();
  for (const { role, certPem, secretName } of handedOut) {
    const info = inspectCertificate(certPem);
    certificates.set(`${role} ${info.sha256Fingerprint}`, { role, subject: info.subject, secretName: role === 'etcd' ? secretName : undefined, sha256Fingerprint: info.sha256Fingerprint, notAfter: info.notAfter });
  }
  return [...certificates.values()].sort((a, b) => ROLE_ORDER.indexOf(a.role) - ROLE_ORDER.indexOf(b.role));
}

/** The report printed after a successful synth. */
export function formatSynthResult(result: SynthResult, cwd = process.cwd()): string {
  const lines: string[] = [];
  const count = result.files.reduce((n, f) => n + f.objects.length, 0);
  lines.push(`Synthesized ${count} objects into ${path.relative(cwd, result.outputDirectory) || '.'}/`);
  for (const file of result.files) {
    lines.push(`  ${path.relative(cwd, file.path)}`);
    for (const o of file.objects) lines.push(`    ${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`);
  }
  if (result.certificates.length > 0) {
    lines.push('Certificates:');
    for (const c of result.certificates) {
      const where = c.secretName === undefined ? '' : ` (Secret ${c.secretName})`;
      lines.push(`  ${c.role.padEnd(7)} ${c.subject}${where}  SHA-256 ${c.sha256Fingerprint}  expires ${c.notAfter.toISOString()}`);
    }
  }
  if (result.pkiActions.length > 0) {
    lines.push('PKI:');
    for (const line of result.pkiActions) lines.push(`  ${path.isAbsolute(line) ? path.relative(cwd, line) : line}`);
  }
  return lines.join('\n');
}
