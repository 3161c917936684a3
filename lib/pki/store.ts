import { createPrivateKey, createPublicKey, KeyObject, randomBytes, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { _checkCommonName, _checkNow, _checkValidities, _DAY_MS } from './_internal';
import { CertificateKeyPair, createCertificateAuthority } from './certificate-authority';
import { _parseCertificate, inspectCertificate, isIssuedBy, splitPemBundle } from './inspect';
import { PkiError } from './pki-error';
import { ExtendedKeyUsage, issueCertificate } from './serving-certificate';

export interface PkiStoreOptions {
  /** Directory that holds the PKI between synths, e.g. `.pki/wardle/wardle-apiserver`. Created with mode 0700. */
  readonly directory: string;
  /** Common name of a CA this store creates. Changing it does not rotate an existing CA. */
  readonly caCommonName: string;
  /** Common name of the serving certificate; changing it renews the certificate. */
  readonly servingCommonName: string;
  /** DNS names the serving certificate must carry (order does not matter); changing them renews it. */
  readonly dnsNames: readonly string[];
  /** Lifetime of a serving certificate this store issues, in days. */
  readonly certValidityDays: number;
  /** Lifetime of a CA this store creates, in days; must be greater than `certValidityDays`. */
  readonly caValidityDays: number;
  /**
   * The time at which validity and renewal are judged and certificates are issued.
   * @default - new Date()
   */
  readonly now?: Date;
}

/** What a PKI store hands to the constructs. Never holds the CA private key. */
export interface PkiMaterial {
  /** The current CA first, then retired CAs that a serving certificate still in use chains to. */
  readonly caBundlePem: string;
  /** The current CA certificate. */
  readonly caCertPem: string;
  /** The serving certificate (the contents of `tls.crt`). */
  readonly tlsCertPem: string;
  /** The serving certificate's private key (the contents of `tls.key`). */
  readonly tlsKeyPem: string;
  /** What was done, in order, e.g. `created CA`, `reused serving certificate`. */
  readonly actions: readonly string[];
}

/** The files of a PKI store, relative to its directory. */
export const PKI_STORE_FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  tlsCert: 'tls.crt',
  tlsKey: 'tls.key',
  /** CAs replaced by a rotation, kept while a serving certificate they signed may still be served. */
  retiredCaCerts: 'ca-retired.crt',
  /** The last serving certificate each retired CA signed: how long that CA is still needed. */
  retiredTlsCerts: 'tls-retired.crt',
} as const;

/** The staged successor of the CA, in stores that stage one (the etcd PKI). */
export const PKI_STORE_NEXT_CA_FILES = { cert: 'ca-next.crt', key: 'ca-next.key' } as const;

const KEY_MODE = 0o600;
const CERT_MODE = 0o644;
const DIRECTORY_MODE = 0o700;

/**
 * Loads the PKI from `options.directory`, creating, renewing or rotating what is missing or no
 * longer fit, and writes back only what changed (each file atomically). With the same options
 * and an unchanged directory, it returns byte-identical PEMs.
 *
 * - The CA is created when `ca.crt` or `ca.key` is missing, and rotated when it is not a CA, not
 *   valid at `now`, or would not outlive a serving certificate issued now. On rotation, the old
 *   CA stays in `caBundlePem` (after the new one) until the serving certificate it signed expires.
 * - The serving certificate is renewed when missing, when less than a third of its lifetime
 *   remains, when its DNS names or common name differ from the options, or when it is not issued
 *   by the current CA.
 * - A malformed PEM file, or a key that does not match its certificate, is a PkiError naming the
 *   file: the store never overwrites what it cannot read.
 */
export function ensurePki(options: PkiStoreOptions): PkiMaterial {
  const plan = _planServingPki(options);
  _commitStore(plan.store);
  return plan.material;
}

/** `ensurePki` without writing: the material, and the plan `_commitStore` writes. */
export function _planServingPki(options: PkiStoreOptions): { readonly store: _StorePlan; readonly material: PkiMaterial } {
  const now = _checkOptions(options);
  const store = _planStore({
    directory: options.directory,
    caCommonName: options.caCommonName,
    certValidityDays: options.certValidityDays,
    caValidityDays: options.caValidityDays,
    now,
    leafNoun: 'serving certificate',
    retiredLeavesFile: PKI_STORE_FILES.retiredTlsCerts,
    leaves: [
      {
        stem: 'tls',
        label: 'serving certificate',
        commonName: options.servingCommonName,
        dnsNames: options.dnsNames,
        ipAddresses: [],
        extendedKeyUsages: ['serverAuth'],
      },
    ],
  });
  const { result } = store;
  const [tls] = result.leaves;
  return { store, material: { caBundlePem: result.caBundlePem, caCertPem: result.caCertPem, tlsCertPem: tls.certPem, tlsKeyPem: tls.keyPem, actions: result.actions } };
}

/** One leaf certificate of a store: `<stem>.crt` and `<stem>.key` in its directory. */
export interface _LeafSpec {
  readonly stem: string;
  /** How actions name it, e.g. `serving certificate`, `peer certificate of etcd-0`. */
  readonly label: string;
  readonly commonName: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly extendedKeyUsages: readonly ExtendedKeyUsage[];
}

export interface _StoreSpec {
  readonly directory: string;
  readonly caCommonName: string;
  readonly certValidityDays: number;
  readonly caValidityDays: number;
  readonly now: Date;
  readonly leaves: readonly _LeafSpec[];
  /** What the retired-CA actions call the certificates a CA signed, e.g. `serving certificate`. */
  readonly leafNoun: string;
  /** The file that keeps the last leaves each retired CA signed. */
  readonly retiredLeavesFile: string;
  /**
   * Create the CA's successor (`ca-next.crt`, `ca-next.key`) when the CA has less than two
   * certificate lifetimes left, and put it in the bundle right after the CA; it becomes the CA
   * when the CA can no longer outlive a new certificate. For peers that read their trusted CAs
   * only at start (etcd): they have a certificate lifetime to restart with the next CA trusted
   * before any certificate it signs is presented to them.
   * @default false
   */
  readonly stageNextCa?: boolean;
}

export interface _StoreResult {
  readonly caBundlePem: string;
  readonly caCertPem: string;
  /** In the order of the spec's leaves; `certPem` is the file's text. */
  readonly leaves: readonly CertificateKeyPair[];
  readonly actions: readonly string[];
}

/**
 * The store's work for one CA and any number of leaf certificates (see `ensurePki`): each leaf is
 * reused, or issued anew when missing, near expiry, changed or not signed by the current CA; the
 * CA is rotated with overlap, and only changed files are written, atomically.
 */
export function _ensureStore(spec: _StoreSpec): _StoreResult {
  const plan = _planStore(spec);
  _commitStore(plan);
  return plan.result;
}

/**
 * `mkdir -p` (with mode 0700 unless told otherwise), one level at a time from the nearest existing
 * ancestor: Node's recursive mkdirSync loops forever where a parent refuses new entries with
 * ENOENT (`/proc/x`).
 */
export function _makeDirectories(dir: string, mode: number = DIRECTORY_MODE): void {
  const missing: string[] = [];
  for (let current = resolve(dir); !existsSync(current); current = dirname(current)) {
    missing.unshift(current);
    if (dirname(current) === current) break;
  }
  for (const directory of missing) mkdirSync(directory, { mode });
}

/** What `_planStore` decided: the material, and the files to write to get the directory there. */
export interface _StorePlan {
  readonly spec: _StoreSpec;
  readonly result: _StoreResult;
  /** Path → content and mode; an empty content removes the file. */
  readonly writes: ReadonlyMap<string, { readonly content: string; readonly mode: number }>;
  /** Key files found readable by others, to be restricted to 0600. */
  readonly restrict: readonly string[];
}

/**
 * The store's work without writing anything: reads the directory (a missing one is an empty
 * store) and decides what to reuse, issue and rotate. `_commitStore` writes the plan; until then
 * the directory is as it was, so a synth that fails later changes nothing.
 */
export function _planStore(spec: _StoreSpec): _StorePlan {
  const { now } = spec;
  const dir = spec.directory;
  const files = _paths(dir, spec);
  const actions: string[] = [];
  const writes = new Map<string, { content: string; mode: number }>();
  const restrict: string[] = [];
  const _loadPair = (certPath: string, keyPath: string, actions: string[]) => _loadStoredPair(certPath, keyPath, actions, restrict);

  // The CA.
  const storedCa = _loadPair(files.caCert, files.caKey, actions);
  const caProblem = _caProblem(storedCa, spec, now, files);
  const storedNext = spec.stageNextCa ? _loadPair(files.nextCaCert, files.nextCaKey, actions) : {};
  const nextPresent = storedNext.cert !== undefined || storedNext.key !== undefined;
  const nextIsCurrent = storedNext.cert !== undefined && storedNext.cert.pem === storedCa.cert?.pem;
  const nextProblem = nextPresent && !nextIsCurrent ? _caProblem(storedNext, spec, now, { caCert: files.nextCaCert, caKey: files.nextCaKey }) : 'absent';
  let ca: CertificateKeyPair;
  let promoted = false;
  if (caProblem === undefined) {
    ca = { certPem: storedCa.cert!.pem, keyPem: storedCa.key!.pem };
    actions.push('reused CA');
  } else if (nextProblem === undefined) {
    // The staged CA has been in the bundle the members trust since it was made: it can sign now.
    ca = { certPem: storedNext.cert!.pem, keyPem: storedNext.key!.pem };
    writes.set(files.caCert, { content: ca.certPem, mode: CERT_MODE });
    writes.set(files.caKey, { content: ca.keyPem, mode: KEY_MODE });
    promoted = true;
    actions.push(`rotated CA to the next CA ${_describe(storedNext.cert!.x509)}: ${caProblem}`);
  } else {
    ca = createCertificateAuthority({ commonName: spec.caCommonName, validityDays: spec.caValidityDays, now });
    writes.set(files.caCert, { content: ca.certPem, mode: CERT_MODE });
    writes.set(files.caKey, { content: ca.keyPem, mode: KEY_MODE });
    actions.push(storedCa.cert === undefined && storedCa.key === undefined ? 'created CA' : `rotated CA: ${caProblem}`);
  }

  // The next CA (stageNextCa): trusted before it signs anything, for peers that load their trust only at start.
  let nextCaCertPem: string | undefined;
  if (spec.stageNextCa) {
    const caNotAfter = _notAfter(new X509Certificate(ca.certPem));
    const stageFrom = caNotAfter - 2 * spec.certValidityDays * _DAY_MS;
    if (!promoted && nextProblem === undefined) {
      nextCaCertPem = storedNext.cert!.pem;
      actions.push('reused next CA');
    } else if (now.getTime() >= stageFrom) {
      const next = createCertificateAuthority({ commonName: spec.caCommonName, validityDays: spec.caValidityDays, now });
      writes.set(files.nextCaCert, { content: next.certPem, mode: CERT_MODE });
      writes.set(files.nextCaKey, { content: next.keyPem, mode: KEY_MODE });
      nextCaCertPem = splitPemBundle(next.certPem)[0];
      actions.push(
        `staged the next CA ${_describe(new X509Certificate(next.certPem))} in the CA bundle: the CA expires at ${_iso(caNotAfter)} ` +
          `and is replaced once it cannot outlive a new certificate (${_iso(caNotAfter - spec.certValidityDays * _DAY_MS)})`,
      );
    } else if (nextPresent) {
      writes.set(files.nextCaCert, { content: '', mode: CERT_MODE });
      writes.set(files.nextCaKey, { content: '', mode: KEY_MODE });
      if (!promoted && !nextIsCurrent) actions.push(`dropped next CA: ${nextProblem}`);
    }
  }

  // The leaves.
  const storedLeaves = spec.leaves.map((leaf) => _loadPair(join(dir, `${leaf.stem}.crt`), join(dir, `${leaf.stem}.key`), actions));
  const retiredCaFile = _loadBundle(files.retiredCaCerts);
  const retiredLeavesFile = _loadBundle(files.retiredLeaves);
  let retiredCas = retiredCaFile.pems;
  let retiredLeaves = retiredLeavesFile.pems;
  if (caProblem !== undefined && storedCa.cert !== undefined) {
    const stillValid = storedLeaves
      .map((stored) => stored.cert)
      .filter((old): old is _StoredCert => old !== undefined && _signedBy(old, storedCa.cert!) && _notAfter(old.x509) > now.getTime());
    if (stillValid.length > 0) {
      retiredCas = [...retiredCas, { pem: storedCa.cert.pem, x509: storedCa.cert.x509 }];
      retiredLeaves = [...retiredLeaves, ...stillValid.map((old) => ({ pem: old.pem, x509: old.x509 }))];
    }
  }

  const leaves = spec.leaves.map((leaf, i): CertificateKeyPair => {
    const stored = storedLeaves[i];
    const certFile = join(dir, `${leaf.stem}.crt`);
    const keyFile = join(dir, `${leaf.stem}.key`);
    const problem = _leafProblem(stored, ca.certPem, leaf, now, certFile, keyFile);
    if (problem === undefined) {
      actions.push(`reused ${leaf.label}`);
      return { certPem: stored.cert!.fileText, keyPem: stored.key!.pem };
    }
    const issued = issueCertificate({
      ca,
      commonName: leaf.commonName,
      dnsNames: leaf.dnsNames,
      ipAddresses: leaf.ipAddresses,
      extendedKeyUsages: leaf.extendedKeyUsages,
      validityDays: spec.certValidityDays,
      now,
    });
    writes.set(certFile, { content: issued.certPem, mode: CERT_MODE });
    writes.set(keyFile, { content: issued.keyPem, mode: KEY_MODE });
    actions.push(stored.cert === undefined && stored.key === undefined ? `created ${leaf.label}` : `renewed ${leaf.label}: ${problem}`);
    return issued;
  });

  // Retired CAs: kept while a leaf they signed has not expired.
  const liveRetiredLeaves = retiredLeaves.filter(
    (t, i) => _notAfter(t.x509) > now.getTime() && retiredLeaves.findIndex((u) => u.pem === t.pem) === i,
  );
  const keptCas: _Pem[] = [];
  for (const retired of retiredCas) {
    const signed = liveRetiredLeaves.filter((t) => _signedBy(t, retired));
    const duplicate = keptCas.some((k) => k.pem === retired.pem) || retired.pem === splitPemBundle(ca.certPem)[0];
    if (signed.length > 0 && !duplicate) {
      keptCas.push(retired);
      const until = new Date(Math.max(...signed.map((t) => _notAfter(t.x509))));
      actions.push(`kept retired CA ${_describe(retired.x509)} in the CA bundle until ${until.toISOString()}`);
    } else if (!duplicate) {
      actions.push(`dropped retired CA ${_describe(retired.x509)}: no ${spec.leafNoun} it signed is still valid`);
    }
  }
  const keptLeaves = liveRetiredLeaves.filter((t) => keptCas.some((c) => _signedBy(t, c)));
  _setBundle(writes, files.retiredCaCerts, retiredCaFile.text, keptCas);
  _setBundle(writes, files.retiredLeaves, retiredLeavesFile.text, keptLeaves);

  const caCertPem = splitPemBundle(ca.certPem)[0];
  const caBundlePem = [caCertPem, ...(nextCaCertPem === undefined ? [] : [nextCaCertPem]), ...keptCas.map((c) => c.pem)].join('');
  return { spec, result: { caBundlePem, caCertPem, leaves, actions }, writes, restrict };
}

/**
 * Writes a plan: the directory (and any parent it creates) with mode 0700, loose key files back
 * to 0600, the changed files atomically.
 */
export function _commitStore(plan: _StorePlan): void {
  const { spec } = plan;
  const dir = spec.directory;
  try {
    _makeDirectories(dir);
    chmodSync(dir, DIRECTORY_MODE);
  } catch (e) {
    throw new PkiError(`cannot create the PKI store ${dir} (${(e as Error).message})`);
  }
  _removeStaleTemporaryFiles(dir, spec);
  for (const path of plan.restrict) chmodSync(path, KEY_MODE);
  _commit(dir, new Map(plan.writes), spec);
}

interface _Pem {
  /** One normalized PEM block. */
  readonly pem: string;
  readonly x509: X509Certificate;
}

interface _StoredCert extends _Pem {
  readonly fileText: string;
}

interface _StoredKey {
  readonly pem: string;
  readonly key: KeyObject;
}

interface _StoredPair {
  readonly cert?: _StoredCert;
  readonly key?: _StoredKey;
}

function _paths(dir: string, spec: _StoreSpec) {
  return {
    caCert: join(dir, PKI_STORE_FILES.caCert),
    caKey: join(dir, PKI_STORE_FILES.caKey),
    retiredCaCerts: join(dir, PKI_STORE_FILES.retiredCaCerts),
    retiredLeaves: join(dir, spec.retiredLeavesFile),
    nextCaCert: join(dir, PKI_STORE_NEXT_CA_FILES.cert),
    nextCaKey: join(dir, PKI_STORE_NEXT_CA_FILES.key),
  };
}

function _checkOptions(options: PkiStoreOptions): Date {
  if (typeof options.directory !== 'string' || options.directory.trim() === '') {
    throw new PkiError(`directory ${JSON.stringify(options.directory)} is empty (expected a path, e.g. ".pki/wardle/wardle-apiserver")`);
  }
  _checkCommonName('caCommonName', options.caCommonName);
  _checkCommonName('servingCommonName', options.servingCommonName);
  _checkValidities(options.certValidityDays, options.caValidityDays);
  // dnsNames are checked by issueServingCertificate; check them now, before anything is written.
  if (!Array.isArray(options.dnsNames) || options.dnsNames.length === 0) {
    throw new PkiError(`dnsNames ${JSON.stringify(options.dnsNames)} is empty (expected at least one DNS name, e.g. "<service>.<namespace>.svc")`);
  }
  return _checkNow(options.now);
}

function _readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PkiError(`${path} cannot be read (${(e as Error).message})`);
  }
}

function _loadCert(path: string): _StoredCert | undefined {
  const text = _readIfPresent(path);
  if (text === undefined) return undefined;
  const blocks = _blocks(path, text);
  if (blocks.length === 0 || !blocks[0].startsWith('-----BEGIN CERTIFICATE-----')) {
    throw new PkiError(`${path} is not a PEM certificate (expected a "-----BEGIN CERTIFICATE-----" block)`);
  }
  return { pem: blocks[0], x509: _parseCertificate(blocks[0], path), fileText: text };
}

function _loadKey(path: string, actions: string[], restrict: string[]): _StoredKey | undefined {
  const text = _readIfPresent(path);
  if (text === undefined) return undefined;
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (e) {
    throw new PkiError(`${path} is not an unencrypted PEM private key (${(e as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new PkiError(`${path} holds a ${String(key.asymmetricKeyType)} key (expected an RSA private key)`);
  }
  if ((statSync(path).mode & 0o077) !== 0) {
    restrict.push(path);
    actions.push(`restricted ${path} to mode 0600`);
  }
  return { pem: text, key };
}

function _loadStoredPair(certPath: string, keyPath: string, actions: string[], restrict: string[]): _StoredPair {
  const cert = _loadCert(certPath);
  const key = _loadKey(keyPath, actions, restrict);
  if (cert !== undefined && key !== undefined) {
    const fromKey = createPublicKey(key.key).export({ type: 'spki', format: 'der' });
    const fromCert = cert.x509.publicKey.export({ type: 'spki', format: 'der' });
    if (!fromKey.equals(fromCert)) {
      throw new PkiError(`${keyPath} does not match ${certPath} (expected the private key of that certificate's public key)`);
    }
  }
  return { cert, key };
}

/** A bundle file's text (undefined when it is absent) and its certificates. */
function _loadBundle(path: string): { text?: string; pems: _Pem[] } {
  const text = _readIfPresent(path);
  if (text === undefined) return { pems: [] };
  const pems = _blocks(path, text).map((pem) => {
    if (!pem.startsWith('-----BEGIN CERTIFICATE-----')) {
      throw new PkiError(`${path} holds a non-certificate PEM block (expected only "-----BEGIN CERTIFICATE-----" blocks)`);
    }
    return { pem, x509: _parseCertificate(pem, path) };
  });
  return { text, pems };
}

function _blocks(path: string, text: string): string[] {
  try {
    return splitPemBundle(text);
  } catch (e) {
    throw new PkiError(`${path} is malformed: ${(e as Error).message}`);
  }
}

/** Why the stored CA cannot be used, or undefined if it can. */
function _caProblem(stored: _StoredPair, spec: _StoreSpec, now: Date, files: { caCert: string; caKey: string }): string | undefined {
  if (stored.cert === undefined) return `${files.caCert} is missing`;
  if (stored.key === undefined) return `${files.caKey} is missing`;
  const x509 = stored.cert.x509;
  if (!x509.ca) return `${files.caCert} is not a CA certificate (no basicConstraints CA:TRUE)`;
  if (_notBefore(x509) > now.getTime()) return `it is not valid before ${_iso(_notBefore(x509))}`;
  if (_notAfter(x509) <= now.getTime()) return `it expired at ${_iso(_notAfter(x509))}`;
  const newCertNotAfter = now.getTime() + spec.certValidityDays * _DAY_MS;
  if (_notAfter(x509) < newCertNotAfter) {
    return (
      `it expires at ${_iso(_notAfter(x509))}, before a ${spec.leafNoun} issued now would ` +
      `(${_iso(newCertNotAfter)}, certValidityDays ${spec.certValidityDays})`
    );
  }
  return undefined;
}

/** Why a stored leaf certificate must be renewed, or undefined if it can be reused. */
function _leafProblem(stored: _StoredPair, caCertPem: string, leaf: _LeafSpec, now: Date, certFile: string, keyFile: string): string | undefined {
  if (stored.cert === undefined) return `${certFile} is missing`;
  if (stored.key === undefined) return `${keyFile} is missing`;
  const x509 = stored.cert.x509;
  if (!isIssuedBy(stored.cert.pem, caCertPem)) return 'it is not issued by the current CA';
  const have = [...inspectCertificate(stored.cert.pem).dnsNames].sort();
  const want = [...leaf.dnsNames].sort();
  if (have.join(',') !== want.join(',')) return `its DNS names [${have.join(', ')}] differ from [${want.join(', ')}]`;
  const haveIps = _ipAddressesOf(x509).sort();
  const wantIps = [...leaf.ipAddresses].sort();
  if (haveIps.join(',') !== wantIps.join(',')) return `its IP addresses [${haveIps.join(', ')}] differ from [${wantIps.join(', ')}]`;
  const haveUsages = (x509.keyUsage ?? []).map((oid) => _EXTENDED_KEY_USAGE_NAMES[oid] ?? oid).sort();
  const wantUsages = [...leaf.extendedKeyUsages].sort();
  if (haveUsages.join(',') !== wantUsages.join(',')) {
    return `its extended key usages [${haveUsages.join(', ')}] differ from [${wantUsages.join(', ')}]`;
  }
  const commonName = /^CN=(.*)$/m.exec(x509.subject)?.[1];
  if (commonName !== leaf.commonName) return `its common name "${commonName}" differs from "${leaf.commonName}"`;
  const notBefore = _notBefore(x509);
  const notAfter = _notAfter(x509);
  if (notBefore > now.getTime()) return `it is not valid before ${_iso(notBefore)}`;
  if (notAfter <= now.getTime()) return `it expired at ${_iso(notAfter)}`;
  const lifetime = notAfter - notBefore;
  const remaining = notAfter - now.getTime();
  if (remaining * 3 < lifetime) {
    return `${Math.floor(remaining / _DAY_MS)} of ${Math.round(lifetime / _DAY_MS)} days left`;
  }
  return undefined;
}

/** Node's X509Certificate.keyUsage lists the extended key usage OIDs. */
const _EXTENDED_KEY_USAGE_NAMES: Readonly<Record<string, string>> = { '1.3.6.1.5.5.7.3.1': 'serverAuth', '1.3.6.1.5.5.7.3.2': 'clientAuth' };

/** Node prints IP SANs as `IP Address:127.0.0.1`. */
function _ipAddressesOf(x509: X509Certificate): string[] {
  return (x509.subjectAltName ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('IP Address:'))
    .map((entry) => entry.slice('IP Address:'.length));
}

/** Issuer name and key identifier match, and the signature verifies. */
function _signedBy(cert: _Pem, ca: _Pem): boolean {
  return cert.x509.checkIssued(ca.x509) && cert.x509.verify(ca.x509.publicKey);
}

function _notBefore(x509: X509Certificate): number {
  return new Date(x509.validFrom).getTime();
}

function _notAfter(x509: X509Certificate): number {
  return new Date(x509.validTo).getTime();
}

function _iso(ms: number): string {
  return new Date(ms).toISOString();
}

function _describe(x509: X509Certificate): string {
  return `"${/^CN=(.*)$/m.exec(x509.subject)?.[1] ?? x509.subject}" (serial ${x509.serialNumber.toUpperCase()})`;
}

/**
 * Schedules a bundle file for writing, or for removal (empty content) when nothing is left in it;
 * nothing when `current` (its text as loaded, undefined if absent) already says that.
 */
function _setBundle(writes: Map<string, { content: string; mode: number }>, path: string, current: string | undefined, pems: readonly _Pem[]): void {
  const content = pems.map((p) => p.pem).join('');
  if (current === (content === '' ? undefined : content)) return;
  writes.set(path, { content, mode: CERT_MODE });
}

const TEMPORARY_SUFFIX = '.tmp-';

/**
 * The order in which files are swapped in: the retired bundles first, so that a crash between two
 * renames never leaves a retired CA out of the bundle while the CA that replaces it is in place;
 * then the CA (key first), then the leaves (keys first).
 */
function _commitRank(name: string, spec: _StoreSpec): number {
  if (name === PKI_STORE_FILES.retiredCaCerts) return 0;
  if (name === spec.retiredLeavesFile) return 1;
  if (name === PKI_STORE_FILES.caKey) return 2;
  if (name === PKI_STORE_FILES.caCert) return 3;
  // After the CA: a crash while promoting the next CA leaves it in both places, which the next run tidies.
  if (name === PKI_STORE_NEXT_CA_FILES.key) return 4;
  if (name === PKI_STORE_NEXT_CA_FILES.cert) return 5;
  return name.endsWith('.key') ? 6 : 7;
}

/**
 * Writes every changed file to a temporary sibling (fsynced, final mode), then renames them all
 * into place and fsyncs the directory: a crash leaves whole old files or whole new ones, never a
 * half-written key. An empty content removes the file.
 */
function _commit(dir: string, writes: Map<string, { content: string; mode: number }>, spec: _StoreSpec): void {
  const rank = (path: string) => _commitRank(basename(path), spec);
  const ordered = [...writes].sort(([a], [b]) => rank(a) - rank(b));
  const staged: Array<{ path: string; temporary?: string }> = [];
  try {
    for (const [path, { content, mode }] of ordered) {
      if (content === '') {
        staged.push({ path });
        continue;
      }
      const temporary = `${path}${TEMPORARY_SUFFIX}${process.pid}-${randomBytes(6).toString('hex')}`;
      const fd = openSync(temporary, 'wx', mode);
      staged.push({ path, temporary });
      try {
        writeSync(fd, content);
        fchmodSync(fd, mode);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  } catch (e) {
    for (const { temporary } of staged) if (temporary !== undefined) _unlinkQuietly(temporary);
    throw new PkiError(`cannot write the PKI store ${dir} (${(e as Error).message})`);
  }
  for (const { path, temporary } of staged) {
    if (temporary === undefined) _unlinkQuietly(path);
    else renameSync(temporary, path);
  }
  if (staged.length > 0) {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** Removes temporary files left by a crash (older than a minute, so a concurrent writer's are spared). */
function _removeStaleTemporaryFiles(dir: string, spec: _StoreSpec): void {
  const ours = new Set<string>([
    PKI_STORE_FILES.caCert,
    PKI_STORE_FILES.caKey,
    PKI_STORE_FILES.retiredCaCerts,
    spec.retiredLeavesFile,
    PKI_STORE_NEXT_CA_FILES.cert,
    PKI_STORE_NEXT_CA_FILES.key,
    ...spec.leaves.flatMap((leaf) => [`${leaf.stem}.crt`, `${leaf.stem}.key`]),
  ]);
  for (const name of readdirSync(dir)) {
    const at = name.indexOf(TEMPORARY_SUFFIX);
    if (at <= 0 || !ours.has(name.slice(0, at))) continue;
    const path = join(dir, name);
    if (Date.now() - statSync(path).mtimeMs > 60_000) _unlinkQuietly(path);
  }
}

function _unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
