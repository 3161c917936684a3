import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Chart } from 'cdk8s';
import * as YAML from 'yaml';
import { ApiGroupDefinition, WARDLE } from '../../apis';
import { AggregatedApiServer } from '../aggregated-api-server';
import { Certificates, ICertificates } from '../certificates';
import { EtcdCertificates, IEtcdCertificates } from '../etcd-certificates';
import { inspectCertificate, splitPemBundle } from '../pki';
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
  readonly certificates: readonly SynthesizedCertificate[];
  /** What the PKI store did (created, reused, renewed, rotated), in self-signed mode. */
  readonly pkiActions: readonly string[];
  /** What the etcd PKI store did, when etcd is deployed with self-signed certificates. */
  readonly etcdPkiActions: readonly string[];
}

/** Reads a file named by a flag; the error names the flag and the file. */
function readFlagFile(flag: string, file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--${flag} "${file}" cannot be read: ${(error as Error).message}`);
  }
}

/** Reads a PEM file named by a flag; the error names the flag, the file and what it should hold. */
function readPemFlag(flag: string, file: string, holds: 'certificate' | 'private key'): string {
  const text = readFlagFile(flag, file);
  try {
    if (holds === 'private key') crypto.createPrivateKey(text);
    else {
      const pems = splitPemBundle(text);
      if (pems.length === 0) throw new Error('no CERTIFICATE block');
      pems.forEach((pem) => new crypto.X509Certificate(pem));
    }
  } catch (error) {
    throw new UsageError(`--${flag} "${file}" does not hold a PEM ${holds} (${(error as Error).message})`);
  }
  return text;
}

function certificatesFor(o: SynthOptions): ICertificates {
  const validity = { certValidityDays: o.certValidityDays, caValidityDays: o.caValidityDays };
  switch (o.certMode) {
    case 'self-signed':
      return Certificates.selfSigned({ pkiDirectory: o.pkiDir, ...validity });
    case 'cert-manager':
      return Certificates.certManager(validity);
    case 'existing':
      return o.tlsSecretName !== undefined
        ? Certificates.fromSecret({ secretName: o.tlsSecretName, caBundlePem: readPemFlag('ca-bundle-file', o.caBundleFile!, 'certificate') })
        : Certificates.fromPem({
            caBundlePem: readPemFlag('ca-bundle-file', o.caBundleFile!, 'certificate'),
            tlsCertPem: readPemFlag('tls-cert-file', o.tlsCertFile!, 'certificate'),
            tlsKeyPem: readPemFlag('tls-key-file', o.tlsKeyFile!, 'private key'),
          });
  }
}

/** etcd's certificates come from where the serving certificate comes from; `existing` has no etcd counterpart, so it is self-signed then. */
function etcdCertificatesFor(o: SynthOptions): IEtcdCertificates {
  const validity = { certValidityDays: o.certValidityDays, caValidityDays: o.caValidityDays };
  return o.certMode === 'cert-manager' ? EtcdCertificates.certManager(validity) : EtcdCertificates.selfSigned({ pkiDirectory: o.pkiDir, ...validity });
}

function storageFor(o: SynthOptions): IStorage {
  switch (o.storage ?? 'etcd') {
    case 'etcd':
      return Storage.etcdCluster({
        replicas: o.etcdReplicas,
        image: o.etcdImage,
        storageSize: o.etcdStorageSize,
        storageClassName: o.etcdStorageClass,
        networkPolicy: o.networkPolicy,
        backupSchedule: o.etcdBackupSchedule,
        certificates: etcdCertificatesFor(o),
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

/** Adds the server described by `o` to `app`: one chart, named after the server. */
export function addServerChart(app: App, o: SynthOptions, api: ApiGroupDefinition = WARDLE): AggregatedApiServer {
  const chart = new Chart(app, o.name ?? `${api.group.split('.')[0]}-apiserver`);
  return new AggregatedApiServer(chart, 'Server', {
    api,
    namespace: o.namespace,
    name: o.name,
    image: o.image,
    replicas: o.replicas,
    storage: storageFor(o),
    securePort: o.securePort,
    groupPriorityMinimum: o.groupPriorityMinimum,
    versionPriority: o.versionPriority,
    clusterDomain: o.clusterDomain,
    certificates: certificatesFor(o),
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
  fs.mkdirSync(path.dirname(output), { recursive: true });
  const staging = fs.mkdtempSync(path.join(path.dirname(output), `.${path.basename(output)}.staging-`));
  try {
    const app = new App({ outdir: staging });
    const server = addServerChart(app, o, api);
    app.synth();
    const result = { ...describeOutput(staging, output, server.secretName), pkiActions: server.pkiActions, etcdPkiActions: server.storage.pkiActions ?? [] };
    replaceDirectory(staging, output);
    return result;
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw error;
  }
}

/** What a synth writes into the output directory (cdk8s adds construct-metadata.json when asked to). */
const OUTPUT_ENTRY = /^(?:.+\.k8s\.yaml|construct-metadata\.json)$/;

/**
 * The output directory is replaced whole, so it must be missing, empty or a previous output:
 * `--output .` or `--output README.md` must fail, not delete the project. The PKI directory must
 * lie outside it, or the swap would delete the CA (and its private key would be in the output).
 */
function checkOutputDirectory(o: SynthOptions, output: string): void {
  const stat = fs.statSync(output, { throwIfNoEntry: false });
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

function describeOutput(directory: string, reportedDirectory: string, servingSecretName: string): Omit<SynthResult, 'pkiActions' | 'etcdPkiActions'> {
  const files: { path: string; objects: SynthesizedObject[] }[] = [];
  const certificates = new Map<string, SynthesizedCertificate>();
  const note = (role: SynthesizedCertificate['role'], pem: string, secretName?: string) => {
    const info = inspectCertificate(pem);
    certificates.set(`${role} ${info.sha256Fingerprint}`, { role, subject: info.subject, secretName, sha256Fingerprint: info.sha256Fingerprint, notAfter: info.notAfter });
  };
  for (const file of fs.readdirSync(directory).sort()) {
    const objects: SynthesizedObject[] = [];
    for (const document of YAML.parseAllDocuments(fs.readFileSync(path.join(directory, file), 'utf8'))) {
      const object = document.toJS();
      if (!object) continue;
      objects.push({ apiVersion: object.apiVersion, kind: object.kind, name: object.metadata?.name, namespace: object.metadata?.namespace });
      if (object.kind === 'APIService' && object.spec?.caBundle) {
        splitPemBundle(Buffer.from(object.spec.caBundle, 'base64').toString('utf8')).forEach((pem) => note('CA', pem));
      }
      if (object.kind === 'Secret' && object.type === 'kubernetes.io/tls' && object.data?.['tls.crt']) {
        const pem = (key: string): string => Buffer.from(object.data[key] ?? '', 'base64').toString('utf8');
        if (object.metadata?.name === servingSecretName) note('serving', splitPemBundle(pem('tls.crt'))[0]);
        else {
          // Every other TLS Secret in the chart is etcd's: a member's, or the server's client certificate.
          note('etcd', splitPemBundle(pem('tls.crt'))[0], object.metadata.name);
          splitPemBundle(pem('ca.crt')).forEach((ca) => note('etcd CA', ca));
        }
      }
    }
    files.push({ path: path.join(reportedDirectory, file), objects });
  }
  const byRole = [...certificates.values()].sort((a, b) => ROLE_ORDER.indexOf(a.role) - ROLE_ORDER.indexOf(b.role));
  return { outputDirectory: reportedDirectory, files, certificates: byRole };
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
  if (result.pkiActions.length > 0) lines.push(`PKI: ${result.pkiActions.join('; ')}`);
  if (result.etcdPkiActions.length > 0) lines.push(`etcd PKI: ${result.etcdPkiActions.join('; ')}`);
  return lines.join('\n');
}
