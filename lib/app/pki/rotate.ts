import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { WARDLE } from '../../../apis';
import { createCertificateAuthority, inspectCertificate, issueCertificate, PKI_STORE_FILES, pkiEnvironmentOf, servingDnsNames, splitPemBundle } from '../../pki';
import { _commitStore, _StorePlan } from '../../pki/store';
import { ETCD_CLIENT_CERT_CHECKSUM_ANNOTATION, SERVING_CERT_CHECKSUM_ANNOTATION } from '../../api-server-deployment';
import { ETCD_CLUSTER_NAME_SUFFIX } from '../../storage';
import { SynthOptions, UsageError } from '../options';
import { synthesize } from '../synth';

/** The serving store's file that keeps the serving certificates retired CAs signed (see the store). */
const RETIRED_SERVING_CERTS = 'tls-retired.crt';

export interface RotateOptions {
  readonly synth: SynthOptions;
  /** Rotate the CA (and so the serving certificate) rather than only the serving certificate. */
  readonly ca: boolean;
  /** Reissue etcd's leaf certificates (members' server and peer, the server's client) instead; not with `ca`. */
  readonly etcd?: boolean;
  /** @default - the current time */
  readonly now?: Date;
}

/** A certificate as the report names it. */
export interface RotatedCertificate {
  readonly subject: string;
  readonly serialNumberHex: string;
  readonly sha256Fingerprint: string;
  readonly notAfter: string;
}

/** One object the next synth changes, and which of its fields. */
export interface PlannedChange {
  /** `Secret wardle/wardle-apiserver-tls`, `APIService v1beta1.wardle.example.com` */
  readonly object: string;
  /** Dotted paths of the fields that differ, e.g. `data.tls.crt`, `spec.caBundle`. */
  readonly fields: readonly string[];
  /** `added`, `removed` or `changed`. */
  readonly change: 'added' | 'removed' | 'changed';
  /** For a changed field that holds certificates (base64 PEM): what it will hold, e.g. `2 certificates: CN=… serial …; CN=… serial …`. */
  readonly certificates?: Readonly<Record<string, string>>;
}

export interface RotateReport {
  /** The store rotated, e.g. `.pki/wardle/wardle-apiserver/cluster.local`. */
  readonly store: string;
  readonly rotated: 'serving certificate' | 'CA' | 'etcd certificates';
  /** The CA before and after (the same unless `rotated` is `CA`). */
  readonly ca: { readonly previous: RotatedCertificate; readonly current: RotatedCertificate };
  /** Each leaf certificate reissued, by its file in the store. */
  readonly leaves: readonly { readonly file: string; readonly previous: RotatedCertificate; readonly current: RotatedCertificate }[];
  /** With --ca: until when the old CA stays in caBundle (when the serving certificate it signed expires); undefined when it is not kept (that certificate had expired). */
  readonly oldCaKeptUntil?: string;
  /** The next synth's changes against --output, from a synth into a temporary directory; undefined when it could not be previewed. */
  readonly nextSynth?: { readonly against: string; readonly changes: readonly PlannedChange[] };
  /** Why the next synth could not be previewed. */
  readonly previewError?: string;
}

function describe(pem: string): RotatedCertificate {
  const info = inspectCertificate(pem);
  return { subject: info.subject, serialNumberHex: info.serialNumberHex, sha256Fingerprint: info.sha256Fingerprint, notAfter: info.notAfter.toISOString() };
}

function commonNameOf(pem: string): string {
  const cn = /^CN=(.*)$/m.exec(new X509Certificate(pem).subject)?.[1];
  if (cn === undefined) throw new Error('the certificate has no common name');
  return cn;
}

function readStoreFile(store: string, name: string): string {
  const file = path.join(store, name);
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UsageError(`${file} does not exist: there is nothing to rotate in ${store} (expected a store a self-signed synth made: run the synth with these options first)`);
    }
    throw error;
  }
}

/** The serving store the synth with these options uses: `<pki-dir>/<namespace>/<name>/<environment>`. */
export function servingStoreOf(o: SynthOptions): { store: string; namespace: string; name: string } {
  const firstLabel = WARDLE.group.split('.')[0];
  const namespace = o.namespace ?? firstLabel;
  const name = o.name ?? `${firstLabel}-apiserver`;
  const environment = pkiEnvironmentOf(namespace, servingDnsNames(name, namespace, o.clusterDomain), { service: name });
  return { store: path.join(o.pkiDir, namespace, name, environment), namespace, name };
}

/**
 * Forces a new serving certificate, or (`ca`) a CA rotation, in the serving store the synth with
 * the same options uses, then previews the next synth. The CA rotation is the store's own
 * overlap: the old CA goes to `ca-retired.crt` and the serving certificate it signed to
 * `tls-retired.crt`, so the next synth keeps the old CA in caBundle after the new one until that
 * certificate expires. Files are written atomically in the store's order (retired bundles first).
 */
export function rotateServingPki(options: RotateOptions): RotateReport {
  const o = options.synth;
  if (o.certMode !== 'self-signed') {
    throw new UsageError(
      `--cert-mode ${o.certMode}: pki rotate rotates the self-signed PKI of --pki-dir (expected --cert-mode self-signed; cert-manager renews its own certificates, and "existing" ones are yours)`,
    );
  }
  const now = options.now ?? new Date();
  if (options.etcd) return rotateEtcdLeaves(o, options.ca, now);
  const { store } = servingStoreOf(o);
  const oldCaPem = splitPemBundle(readStoreFile(store, PKI_STORE_FILES.caCert))[0];
  const oldCaKeyPem = readStoreFile(store, PKI_STORE_FILES.caKey);
  const oldServingPem = splitPemBundle(readStoreFile(store, PKI_STORE_FILES.tlsCert))[0];
  const oldServing = new X509Certificate(oldServingPem);
  const dnsNames = inspectCertificate(oldServingPem).dnsNames;
  const servingCommonName = commonNameOf(oldServingPem);

  const writes = new Map<string, { content: string; mode: number }>();
  let ca = { certPem: oldCaPem, keyPem: oldCaKeyPem };
  let oldCaKeptUntil: string | undefined;
  if (options.ca) {
    ca = createCertificateAuthority({ commonName: commonNameOf(oldCaPem), validityDays: o.caValidityDays, now });
    writes.set(path.join(store, PKI_STORE_FILES.caCert), { content: ca.certPem, mode: 0o644 });
    writes.set(path.join(store, PKI_STORE_FILES.caKey), { content: ca.keyPem, mode: 0o600 });
    const oldCa = new X509Certificate(oldCaPem);
    // As the store does on an automatic rotation: the old CA is kept while the certificate it signed may still be served.
    if (new Date(oldServing.validTo) > now && oldServing.checkIssued(oldCa) && oldServing.verify(oldCa.publicKey)) {
      const append = (name: string, pem: string): void => {
        const file = path.join(store, name);
        const current = fs.existsSync(file) ? splitPemBundle(fs.readFileSync(file, 'utf8')) : [];
        if (!current.includes(pem)) writes.set(file, { content: [...current, pem].join(''), mode: 0o644 });
      };
      append(PKI_STORE_FILES.retiredCaCerts, oldCaPem);
      append(RETIRED_SERVING_CERTS, oldServingPem);
      oldCaKeptUntil = new Date(oldServing.validTo).toISOString();
    }
  }
  let serving;
  try {
    serving = issueCertificate({ ca, commonName: servingCommonName, dnsNames, extendedKeyUsages: ['serverAuth'], validityDays: o.certValidityDays, now });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}${options.ca ? '' : ' (rotate the CA with --ca)'}`);
  }
  writes.set(path.join(store, PKI_STORE_FILES.tlsCert), { content: serving.certPem, mode: 0o644 });
  writes.set(path.join(store, PKI_STORE_FILES.tlsKey), { content: serving.keyPem, mode: 0o600 });

  const plan: _StorePlan = {
    spec: {
      directory: store,
      caCommonName: commonNameOf(oldCaPem),
      certValidityDays: o.certValidityDays,
      caValidityDays: o.caValidityDays,
      now,
      leaves: [{ stem: 'tls', label: 'serving certificate', commonName: servingCommonName, dnsNames, ipAddresses: [], extendedKeyUsages: ['serverAuth'] }],
      leafNoun: 'serving certificate',
      retiredLeavesFile: RETIRED_SERVING_CERTS,
    },
    result: { caBundlePem: '', caCertPem: ca.certPem, leaves: [serving], actions: [] },
    writes,
    restrict: [],
  };
  _commitStore(plan);

  const report: RotateReport = {
    store,
    rotated: options.ca ? 'CA' : 'serving certificate',
    ca: { previous: describe(oldCaPem), current: describe(ca.certPem) },
    leaves: [{ file: PKI_STORE_FILES.tlsCert, previous: describe(oldServingPem), current: describe(serving.certPem) }],
    oldCaKeptUntil,
  };
  try {
    return { ...report, nextSynth: previewNextSynth(o) };
  } catch (error) {
    return { ...report, previewError: (error as Error).message };
  }
}

/** `serverAuth`/`clientAuth` from the OIDs Node lists as `keyUsage`. */
const EXTENDED_KEY_USAGES: Readonly<Record<string, 'serverAuth' | 'clientAuth'>> = { '1.3.6.1.5.5.7.3.1': 'serverAuth', '1.3.6.1.5.5.7.3.2': 'clientAuth' };

/**
 * `pki rotate --etcd`: each leaf of the etcd store reissued by the same etcd CA with the same
 * names and usages (the synth then reuses them: they match what it asks for). The etcd CA is not
 * rotated here: etcd reads its trusted CAs only at start, so the store stages its successor
 * itself, two certificate lifetimes ahead.
 */
function rotateEtcdLeaves(o: SynthOptions, ca: boolean, now: Date): RotateReport {
  if (ca) {
    throw new UsageError(
      '--etcd with --ca: etcd reads its trusted CAs only at start, so its CA is rotated by synth alone, staged in the bundle two certificate lifetimes before it signs ' +
        '(expected --etcd alone, to reissue its certificates, or --ca alone, for the serving CA)',
    );
  }
  const storage = o.storage ?? 'etcd';
  if (storage !== 'etcd') throw new UsageError(`--etcd: --storage ${storage} deploys no etcd of ours (expected --storage etcd, the default)`);
  const { namespace, name } = servingStoreOf(o);
  const store = path.join(o.pkiDir, namespace, `${name}${ETCD_CLUSTER_NAME_SUFFIX}`, o.clusterDomain);
  const caPem = splitPemBundle(readStoreFile(store, PKI_STORE_FILES.caCert))[0];
  const caPair = { certPem: caPem, keyPem: readStoreFile(store, PKI_STORE_FILES.caKey) };
  const files = fs
    .readdirSync(store)
    .filter((file) => /^(?:.+-(?:server|peer)|client)\.crt$/.test(file))
    .sort();
  const writes = new Map<string, { content: string; mode: number }>();
  const leaves: RotateReport['leaves'][number][] = [];
  for (const file of files) {
    const oldPem = splitPemBundle(readStoreFile(store, file))[0];
    const old = new X509Certificate(oldPem);
    const ipAddresses = (old.subjectAltName ?? '').split(', ').filter((entry) => entry.startsWith('IP Address:')).map((entry) => entry.slice('IP Address:'.length));
    const issued = issueCertificate({
      ca: caPair,
      commonName: commonNameOf(oldPem),
      dnsNames: inspectCertificate(oldPem).dnsNames,
      ipAddresses,
      extendedKeyUsages: (old.keyUsage ?? []).map((oid) => EXTENDED_KEY_USAGES[oid]).filter((usage) => usage !== undefined),
      validityDays: o.certValidityDays,
      now,
    });
    writes.set(path.join(store, file), { content: issued.certPem, mode: 0o644 });
    writes.set(path.join(store, file.replace(/\.crt$/, '.key')), { content: issued.keyPem, mode: 0o600 });
    leaves.push({ file, previous: describe(oldPem), current: describe(issued.certPem) });
  }
  _commitStore({
    spec: { directory: store, caCommonName: commonNameOf(caPem), certValidityDays: o.certValidityDays, caValidityDays: o.caValidityDays, now, leaves: [], leafNoun: 'certificate', retiredLeavesFile: 'certs-retired.crt' },
    result: { caBundlePem: '', caCertPem: caPem, leaves: [], actions: [] },
    writes,
    restrict: [],
  });
  const report: RotateReport = { store, rotated: 'etcd certificates', ca: { previous: describe(caPem), current: describe(caPem) }, leaves };
  try {
    return { ...report, nextSynth: previewNextSynth(o) };
  } catch (error) {
    return { ...report, previewError: (error as Error).message };
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function objectsOf(directory: string): Map<string, Json> {
  const objects = new Map<string, Json>();
  if (!fs.existsSync(directory)) return objects;
  for (const file of fs.readdirSync(directory).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    for (const document of YAML.parseAllDocuments(fs.readFileSync(path.join(directory, file), 'utf8'))) {
      const object = document.toJS() as { kind?: string; metadata?: { name?: string; namespace?: string } } | null;
      if (!object?.kind || !object.metadata?.name) continue;
      objects.set(`${object.kind} ${object.metadata.namespace ? `${object.metadata.namespace}/` : ''}${object.metadata.name}`, object as Json);
    }
  }
  return objects;
}

/** The dotted paths where `a` and `b` differ (a whole array counts as one field). */
function differingFields(a: Json, b: Json, prefix = ''): string[] {
  const isObject = (v: Json): v is { [key: string]: Json } => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObject(a) && isObject(b)) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort().flatMap((key) => differingFields(a[key] ?? null, b[key] ?? null, prefix === '' ? key : `${prefix}.${key}`));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}

/**
 * What the next synth with these options changes in --output: a synth into a temporary directory
 * (which, like any synth, saves the PKI: here it finds the rotation done and reuses it), compared
 * object by object.
 */
export function previewNextSynth(o: SynthOptions): { against: string; changes: PlannedChange[] } {
  const temporary = fs.mkdtempSync(path.join(os.tmpdir(), 'pki-rotate-preview-'));
  try {
    const output = path.join(temporary, 'dist');
    synthesize({ ...o, output });
    const before = objectsOf(o.output);
    const after = objectsOf(output);
    const changes: PlannedChange[] = [];
    for (const [key, object] of after) {
      const old = before.get(key);
      if (old === undefined) changes.push({ object: key, fields: [], change: 'added' });
      else {
        const fields = differingFields(old, object);
        if (fields.length === 0) continue;
        const certificates: Record<string, string> = {};
        for (const field of fields) {
          const held = certificatesAt(object, field);
          if (held !== undefined) certificates[field] = held;
        }
        changes.push({ object: key, fields, change: 'changed', ...(Object.keys(certificates).length > 0 ? { certificates } : {}) });
      }
    }
    for (const key of before.keys()) if (!after.has(key)) changes.push({ object: key, fields: [], change: 'removed' });
    return { against: o.output, changes };
  } finally {
    fs.rmSync(temporary, { recursive: true, force: true });
  }
}

/** The certificates a field (base64 PEM, e.g. spec.caBundle, data.tls.crt) holds, in order; undefined for other fields. */
function certificatesAt(object: Json, field: string): string | undefined {
  // Keys hold dots (data.tls.crt): walk the first two levels, then take the rest as one key.
  const [first, ...rest] = field.split('.');
  const top = (object as Record<string, Json>)[first] as Record<string, Json> | undefined;
  const value = top?.[rest.join('.')];
  if (typeof value !== 'string') return undefined;
  const text = Buffer.from(value, 'base64').toString('utf8');
  if (!text.includes('-----BEGIN CERTIFICATE-----')) return undefined;
  const certificates = splitPemBundle(text).filter((pem) => pem.startsWith('-----BEGIN CERTIFICATE-----')).map((pem) => {
    const info = inspectCertificate(pem);
    return `${info.subject} serial ${info.serialNumberHex.slice(0, 8)}…`;
  });
  return `${certificates.length} certificate${certificates.length === 1 ? '' : 's'}: ${certificates.join('; ')}`;
}

/** What a field change means once applied. */
function meaning(field: string): string | undefined {
  if (field === 'spec.caBundle') return 'the aggregator trusts the new bundle as soon as the APIService is applied';
  if (field.endsWith(SERVING_CERT_CHECKSUM_ANNOTATION)) return 'the checksum annotation changes: the Deployment rolls its pods, which then serve the new certificate';
  if (field.endsWith(ETCD_CLIENT_CERT_CHECKSUM_ANNOTATION)) return "the checksum annotation changes: the Deployment rolls its pods, which then present the new client certificate to etcd";
  if (field === 'data.tls.crt') return 'the new certificate';
  if (field === 'data.tls.key') return 'its new private key';
  if (field === 'data.ca.crt') return 'the CA bundle, as in caBundle';
  return undefined;
}

export function formatRotateReport(report: RotateReport): string {
  const cert = (c: RotatedCertificate): string => `${c.subject} serial ${c.serialNumberHex}, SHA-256 ${c.sha256Fingerprint}, expires ${c.notAfter}`;
  const lines: string[] = [];
  const unchanged = `${report.ca.current.subject} serial ${report.ca.current.serialNumberHex}`;
  if (report.rotated === 'CA') {
    lines.push(`Rotated the CA of ${report.store}:`);
    lines.push(`  old CA    ${cert(report.ca.previous)}`);
    lines.push(`  new CA    ${cert(report.ca.current)}`);
  } else if (report.rotated === 'etcd certificates') {
    lines.push(`Issued new etcd certificates in ${report.store} (the etcd CA is unchanged: ${unchanged}):`);
  } else {
    lines.push(`Issued a new serving certificate in ${report.store} (the CA is unchanged: ${unchanged}):`);
  }
  for (const leaf of report.leaves) {
    lines.push(`  ${leaf.file}`);
    lines.push(`    old     ${cert(leaf.previous)}`);
    lines.push(`    new     ${cert(leaf.current)}`);
  }
  if (report.rotated === 'CA') {
    lines.push(
      report.oldCaKeptUntil !== undefined
        ? `The old CA stays in caBundle, after the new one, until ${report.oldCaKeptUntil} (when the serving certificate it signed expires): pods still serving it during the rollout keep being trusted. The synth after that drops it.`
        : 'The old CA is not kept in caBundle: the serving certificate it signed has expired.',
    );
  }
  lines.push('');
  if (report.nextSynth === undefined) {
    lines.push(`Could not preview the next synth (${report.previewError ?? 'unknown error'}).`);
    lines.push('The next synth with the same options writes the new certificate into the serving Secret (tls.crt, tls.key, ca.crt), the CA bundle into each APIService caBundle, and a new checksum annotation on the Deployment\'s pods.');
  } else if (report.nextSynth.changes.length === 0) {
    lines.push(`The next synth with the same options changes nothing in ${report.nextSynth.against}/.`);
  } else {
    lines.push(`The next synth with the same options changes, in ${report.nextSynth.against}/:`);
    for (const change of report.nextSynth.changes) {
      if (change.change !== 'changed') {
        lines.push(`  ${change.object} (${change.change})`);
        continue;
      }
      lines.push(`  ${change.object}`);
      for (const field of change.fields) {
        const why = meaning(field);
        lines.push(`    ${field}${why === undefined ? '' : `: ${why}`}`);
        const held = change.certificates?.[field];
        if (held !== undefined) lines.push(`      now ${held}`);
      }
    }
  }
  lines.push(
    '',
    report.rotated === 'etcd certificates'
      ? 'Then "kubectl apply -f <output>/" updates the Secrets: etcd reads its certificate files at each new connection, and the kubelet updates the mounted Secrets ' +
          "within about a minute; the server's new client certificate changes its checksum annotation, which rolls the server's pods. The etcd CA, and so every peer's trust, is unchanged."
      : report.rotated === 'CA'
      ? 'Then "kubectl apply -f <output>/" sends them within a second: the aggregator trusts the new caBundle at once, and with it both CAs; ' +
          'the new checksum rolls the pods one by one, each serving the new certificate once it starts, while the old CA keeps the pods not yet rolled trusted. ' +
          'Nothing is refused at any step.'
      : 'Then "kubectl apply -f <output>/" updates the Secret, and the new checksum rolls the pods one by one, each serving the new certificate once it starts; ' +
          'the caBundle is unchanged (the same CA signs both certificates): nothing is refused at any step.',
  );
  return lines.join('\n');
}
