import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inspectCertificate, PKI_STORE_FILES, splitPemBundle } from '../../pki';
import { PKI_STORE_NEXT_CA_FILES } from '../../pki/store';
import { FRONT_PROXY_PKI_FILES } from '../../pki/front-proxy';
import { readManifests } from '../doctor/installation';
import { UsageError } from '../options';

const DAY_MS = 86_400_000;

export type InspectStatus = 'OK' | 'WARN' | 'FAIL';

/** One certificate as `pki inspect` reports it. Never holds key material. */
export interface InspectedCertificate {
  /** Where it is: a file of the PKI directory, or an object's field in dist/ (with the certificate's place in a bundle). */
  readonly location: string;
  readonly source: 'pki' | 'dist';
  /** `CA`, `next CA` (staged), `retired CA` (kept in the bundle during a rotation's overlap), or `leaf`. */
  readonly role: 'CA' | 'next CA' | 'retired CA' | 'leaf';
  readonly subject: string;
  /** DNS and IP SANs as Node prints them (`DNS:a`, `IP Address:127.0.0.1`). */
  readonly subjectAltNames: readonly string[];
  readonly issuer: string;
  readonly serialNumberHex: string;
  readonly sha256Fingerprint: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly daysLeft: number;
  readonly chain: { readonly verified: boolean; readonly detail: string };
  readonly status: InspectStatus;
  /** Why the status is not OK; notes for a retired CA. */
  readonly problems: readonly string[];
}

export interface InspectReport {
  readonly now: string;
  readonly warnDays: number;
  /** What was read: `.pki (3 stores)`, `dist/ (2 files)`, or why a place was skipped. */
  readonly sources: readonly string[];
  readonly certificates: readonly InspectedCertificate[];
  readonly summary: { readonly ok: number; readonly warn: number; readonly fail: number };
  /** Whether the exit code is 0: nothing expired, mis-chained or expiring within warnDays. */
  readonly ok: boolean;
}

/** A certificate found, before it is judged. */
interface Found {
  readonly location: string;
  readonly source: 'pki' | 'dist';
  readonly role: InspectedCertificate['role'];
  readonly x509: X509Certificate;
  readonly pem: string;
  /** For a leaf: the certificates it must chain to, each with where it is, and the intermediates presented with it. */
  readonly anchors?: readonly { readonly where: string; readonly certificates: readonly X509Certificate[] }[];
  readonly intermediates?: readonly X509Certificate[];
  /** Its private key, to check that it matches (never printed): a file of the store, or a Secret's tls.key. */
  readonly key?: { readonly where: string; readonly pem: string; readonly mode?: number };
}

/** The files of a store that hold CAs, and what they are. */
const CA_FILES: Readonly<Record<string, InspectedCertificate['role']>> = {
  [PKI_STORE_FILES.caCert]: 'CA',
  [PKI_STORE_NEXT_CA_FILES.cert]: 'next CA',
  [PKI_STORE_FILES.retiredCaCerts]: 'retired CA',
};

/**
 * Files of a store that are not certificates in use: retired leaves (kept only to time the
 * retired CA's overlap) and the front-proxy bundle (ca.crt, the next and retired CAs again).
 */
function isBookkeeping(name: string): boolean {
  return (name.endsWith('-retired.crt') && name !== PKI_STORE_FILES.retiredCaCerts) || name === FRONT_PROXY_PKI_FILES.requestHeaderCaBundle;
}

function parseBundle(text: string, where: string): { pem: string; x509: X509Certificate }[] {
  let blocks: string[];
  try {
    blocks = splitPemBundle(text).filter((block) => block.startsWith('-----BEGIN CERTIFICATE-----'));
  } catch (error) {
    throw new Error(`${where} is not a PEM bundle: ${(error as Error).message}`);
  }
  return blocks.map((pem, index) => {
    try {
      return { pem, x509: new X509Certificate(pem) };
    } catch (error) {
      throw new Error(`${where}: certificate ${index + 1} of ${blocks.length} does not parse (${(error as Error).message})`);
    }
  });
}

/** Every store of a PKI directory (a directory holding ca.crt), depth first, sorted. */
function storesOf(directory: string): string[] {
  const stores: string[] = [];
  const walk = (dir: string): void => {
    const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
    if (entries.some((entry) => entry.isFile() && entry.name === PKI_STORE_FILES.caCert)) stores.push(dir);
    for (const entry of entries) if (entry.isDirectory()) walk(path.join(dir, entry.name));
  };
  walk(directory);
  return stores;
}

/** The key file beside a store's certificate file (`tls.crt` → `tls.key`), if there is one. */
function keyBeside(certFile: string): Found['key'] {
  const file = certFile.replace(/\.crt$/, '.key');
  const stat = fs.statSync(file, { throwIfNoEntry: false });
  return stat?.isFile() ? { where: file, pem: fs.readFileSync(file, 'utf8'), mode: stat.mode & 0o777 } : undefined;
}

/** The certificates of one store: its CAs, and each leaf with the store's CAs as anchors. */
function findInStore(store: string): Found[] {
  const files = fs
    .readdirSync(store)
    .filter((name) => name.endsWith('.crt') && !name.includes('.tmp-') && fs.statSync(path.join(store, name)).isFile())
    .sort();
  const cas: Found[] = [];
  const leaves: { location: string; pem: string; x509: X509Certificate; intermediates: X509Certificate[]; key?: Found['key'] }[] = [];
  for (const name of files) {
    if (isBookkeeping(name)) continue;
    const file = path.join(store, name);
    const certificates = parseBundle(fs.readFileSync(file, 'utf8'), file);
    const role = CA_FILES[name];
    const key = keyBeside(file);
    if (role !== undefined) {
      certificates.forEach(({ pem, x509 }, index) => cas.push({ location: certificates.length > 1 ? `${file} [${index + 1}]` : file, source: 'pki', role, x509, pem, ...(role === 'retired CA' ? {} : { key }) }));
    } else if (certificates.length > 0) {
      leaves.push({ location: file, pem: certificates[0].pem, x509: certificates[0].x509, intermediates: certificates.slice(1).map((c) => c.x509), key });
    }
  }
  const anchors = [{ where: `the CAs of ${store}`, certificates: cas.map((ca) => ca.x509) }];
  return [...cas, ...leaves.map((leaf) => ({ ...leaf, source: 'pki' as const, role: 'leaf' as const, anchors }))];
}

function decodeBase64Pem(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? Buffer.from(value, 'base64').toString('utf8') : undefined;
}

/** The certificates of a synth's output: Secrets' tls.crt and ca.crt, APIServices' caBundle. */
function findInDist(directory: string): { found: Found[]; files: number } {
  const objects = readManifests(directory);
  const found: Found[] = [];
  const apiServices = objects.filter((o) => o.kind === 'APIService');
  const bundles = new Map<string, { where: string; certificates: X509Certificate[] }[]>();
  for (const apiService of apiServices) {
    const pem = decodeBase64Pem(apiService.spec?.caBundle);
    const service = apiService.spec?.service;
    if (pem === undefined) continue;
    const where = `APIService ${apiService.metadata.name} spec.caBundle`;
    const certificates = parseBundle(pem, where);
    certificates.forEach(({ pem: one, x509 }, index) => found.push({ location: `${where} [${index + 1}]`, source: 'dist', role: 'CA', x509, pem: one }));
    if (service?.namespace !== undefined && service?.name !== undefined) {
      const host = `${service.name}.${service.namespace}.svc`;
      const list = bundles.get(host) ?? [];
      list.push({ where: `the caBundle of APIService ${apiService.metadata.name}`, certificates: certificates.map((c) => c.x509) });
      bundles.set(host, list);
    }
  }
  for (const secret of objects.filter((o) => o.kind === 'Secret')) {
    const ref = `Secret ${secret.metadata.namespace ?? ''}/${secret.metadata.name}`;
    const caPem = decodeBase64Pem(secret.data?.['ca.crt']);
    const tlsPem = decodeBase64Pem(secret.data?.['tls.crt']);
    const cas = caPem === undefined ? [] : parseBundle(caPem, `${ref} ca.crt`);
    // A CA's key has no place in the output: a `ca.key` beside `ca.crt` is checked (and refused) as the first CA's.
    const caKeyPem = decodeBase64Pem(secret.data?.['ca.key']);
    cas.forEach(({ pem, x509 }, index) =>
      found.push({ location: `${ref} ca.crt [${index + 1}]`, source: 'dist', role: 'CA', x509, pem, ...(index === 0 && caKeyPem !== undefined ? { key: { where: `${ref} ca.key`, pem: caKeyPem } } : {}) }),
    );
    if (tlsPem === undefined) continue;
    const chain = parseBundle(tlsPem, `${ref} tls.crt`);
    if (chain.length === 0) continue;
    const leaf = chain[0].x509;
    const anchors = [{ where: `its Secret's ca.crt`, certificates: cas.map((c) => c.x509) }];
    // A serving certificate must also chain to the caBundle of each APIService whose Service it serves.
    for (const [host, list] of bundles) if (leaf.checkHost(host, { subject: 'never' }) !== undefined) anchors.push(...list);
    const keyPem = decodeBase64Pem(secret.data?.['tls.key']);
    const key = keyPem === undefined ? undefined : { where: `${ref} tls.key`, pem: keyPem };
    found.push({ location: `${ref} tls.crt`, source: 'dist', role: 'leaf', x509: leaf, pem: chain[0].pem, anchors, intermediates: chain.slice(1).map((c) => c.x509), key });
  }
  return { found, files: fs.readdirSync(directory).filter((file) => /\.ya?ml$/.test(file)).length };
}

function signs(issuer: X509Certificate, subject: X509Certificate): boolean {
  return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
}

/** The anchor `leaf` chains to, through `intermediates` (at most 8 deep), or undefined. */
function chainTo(leaf: X509Certificate, intermediates: readonly X509Certificate[], anchors: readonly X509Certificate[]): X509Certificate | undefined {
  let current = leaf;
  for (let depth = 0; depth < 8; depth++) {
    const anchor = anchors.find((candidate) => signs(candidate, current));
    if (anchor !== undefined) return anchor;
    const next = intermediates.find((candidate) => candidate !== current && signs(candidate, current));
    if (next === undefined) return undefined;
    current = next;
  }
  return undefined;
}

/** Why `keyPem` is not the private key of `certificate`, or undefined when it is. */
function keyMismatch(certificate: X509Certificate, keyPem: string): string | undefined {
  let fromKey: Buffer;
  try {
    fromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  } catch {
    return 'is not a private key in PEM';
  }
  return fromKey.equals(certificate.publicKey.export({ type: 'spki', format: 'der' })) ? undefined : 'does not match the certificate (expected the private key of its public key)';
}

function oneLine(name: string): string {
  return name.split('\n').join(', ');
}

function judge(found: Found, now: Date, warnDays: number): InspectedCertificate {
  const info = inspectCertificate(found.pem);
  const { x509 } = found;
  const notBefore = new Date(x509.validFrom);
  const notAfter = new Date(x509.validTo);
  const daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
  // Each problem with what it makes the certificate: FAIL (unusable now) or WARN (act soon).
  const noted: { text: string; fails: boolean }[] = [];
  const fail = (text: string): void => void noted.push({ text, fails: true });
  const warn = (text: string): void => void noted.push({ text, fails: false });
  let chain: InspectedCertificate['chain'];
  if (found.anchors === undefined) {
    // A CA: a root verifies its own signature; one that is not self-signed is trusted as an anchor as it is (as Go does).
    chain = signs(x509, x509) ? { verified: true, detail: 'self-signed, signature verified' } : { verified: true, detail: 'not self-signed: trusted as an anchor where it is' };
  } else {
    const verdicts = found.anchors.map(({ where, certificates }) => {
      const anchor = chainTo(x509, found.intermediates ?? [], certificates);
      return anchor === undefined ? { ok: false, text: `not issued by any certificate of ${where}` } : { ok: true, text: `verified by ${oneLine(anchor.subject)} (${where})` };
    });
    chain = { verified: verdicts.every((v) => v.ok), detail: verdicts.map((v) => v.text).join('; ') };
    if (!chain.verified) fail(`mis-chained: ${verdicts.filter((v) => !v.ok).map((v) => v.text).join('; ')}`);
  }
  if (found.key !== undefined) {
    const keyProblem = keyMismatch(x509, found.key.pem);
    if (keyProblem !== undefined) fail(`its key ${found.key.where} ${keyProblem}`);
    if (found.key.mode !== undefined && (found.key.mode & 0o077) !== 0) warn(`its key ${found.key.where} is readable by others (mode 0${found.key.mode.toString(8)}; expected 0600: a synth restricts it)`);
  }
  if (notBefore > now) fail(`not valid before ${notBefore.toISOString()}`);
  if (notAfter <= now) fail(`expired at ${notAfter.toISOString()}`);
  else if (notAfter.getTime() - now.getTime() < warnDays * DAY_MS) warn(`expires within ${warnDays} days (${notAfter.toISOString()}, ${daysLeft} days left)`);
  if (found.source === 'dist' && found.x509.ca && found.key !== undefined) {
    fail(`${found.key.where} is a CA's private key in the output: whoever reads the manifests can issue certificates this CA's clients trust`);
  }
  const problems = noted.map((p) => p.text);
  const mustFail = noted.some((p) => p.fails);
  let status: InspectStatus = mustFail ? 'FAIL' : problems.length > 0 ? 'WARN' : 'OK';
  if (found.role === 'retired CA' && found.source === 'pki') {
    // Kept only while a certificate it signed is still served: its end is the overlap's end, not a problem.
    status = 'OK';
    problems.splice(0, problems.length, 'retired: kept in the CA bundle until the last certificate it signed expires');
  }
  return {
    location: found.location,
    source: found.source,
    role: found.role,
    subject: info.subject,
    subjectAltNames: (x509.subjectAltName ?? '').split(', ').filter((entry) => entry !== ''),
    issuer: info.issuer,
    serialNumberHex: info.serialNumberHex,
    sha256Fingerprint: info.sha256Fingerprint,
    notBefore: notBefore.toISOString(),
    notAfter: notAfter.toISOString(),
    daysLeft,
    chain,
    status,
    problems,
  };
}

export interface InspectOptions {
  readonly pkiDir: string;
  /** Whether --pki-dir was given: a missing directory is then an error. */
  readonly pkiDirGiven: boolean;
  readonly dist: string;
  readonly distGiven: boolean;
  readonly warnDays: number;
  readonly now?: Date;
}

/** Reads every certificate of the PKI directory and of dist/ and judges each. Reads only. */
export function inspectPki(options: InspectOptions): InspectReport {
  const now = options.now ?? new Date();
  const sources: string[] = [];
  const found: Found[] = [];
  const present = (dir: string, given: boolean, flag: string): boolean => {
    const stat = fs.statSync(dir, { throwIfNoEntry: false });
    if (stat?.isDirectory()) return true;
    if (given) throw new UsageError(`${flag} "${dir}" ${stat === undefined ? 'does not exist' : 'is not a directory'} (expected ${flag === '--pki-dir' ? 'the PKI directory a synth keeps, e.g. ".pki"' : 'the output directory of a synth, e.g. "dist"'})`);
    sources.push(`${dir}: not there, skipped`);
    return false;
  };
  if (present(options.pkiDir, options.pkiDirGiven, '--pki-dir')) {
    const stores = storesOf(options.pkiDir);
    for (const store of stores) found.push(...findInStore(store));
    sources.push(`${options.pkiDir}: ${stores.length} store${stores.length === 1 ? '' : 's'}`);
  }
  let readDist = present(options.dist, options.distGiven, '--dist');
  if (readDist && !options.distGiven && !fs.readdirSync(options.dist).some((file) => /\.ya?ml$/.test(file))) {
    // The default directory without manifests is skipped as a missing one is; a --dist given must hold some.
    sources.push(`${options.dist}: no manifests, skipped`);
    readDist = false;
  }
  if (readDist) {
    const { found: inDist, files } = findInDist(options.dist);
    found.push(...inDist);
    sources.push(`${options.dist}: ${files} manifest file${files === 1 ? '' : 's'}, ${inDist.length} certificate${inDist.length === 1 ? '' : 's'}`);
  }
  if (found.length === 0) {
    throw new UsageError(
      `no certificate found in --pki-dir "${options.pkiDir}" or --dist "${options.dist}" (expected a synth's PKI directory or output; a cert-manager output holds none: its certificates are in the cluster)`,
    );
  }
  const certificates = found.map((f) => judge(f, now, options.warnDays));
  const count = (status: InspectStatus): number => certificates.filter((c) => c.status === status).length;
  const summary = { ok: count('OK'), warn: count('WARN'), fail: count('FAIL') };
  return { now: now.toISOString(), warnDays: options.warnDays, sources, certificates, summary, ok: summary.warn === 0 && summary.fail === 0 };
}

const COLOURS: Record<InspectStatus, string> = { OK: '\u001b[32m', WARN: '\u001b[33m', FAIL: '\u001b[31m' };
const RESET = '\u001b[0m';

/** `wide`: a block per certificate with every field, the status first; colour only when asked. */
function formatWide(report: InspectReport, colour: boolean): string[] {
  const lines: string[] = [];
  for (const c of report.certificates) {
    const status = colour ? `${COLOURS[c.status]}${c.status.padEnd(4)}${RESET}` : c.status.padEnd(4);
    lines.push(`${status}  ${c.location}  (${c.role})`);
    const field = (name: string, value: string): void => {
      lines.push(`      ${name.padEnd(11)} ${value}`);
    };
    field('subject', c.subject);
    if (c.subjectAltNames.length > 0) field('SANs', c.subjectAltNames.join(', '));
    field('issuer', c.issuer);
    field('serial', c.serialNumberHex);
    field('SHA-256', c.sha256Fingerprint);
    field('valid', `${c.notBefore} to ${c.notAfter} (${c.daysLeft} days left)`);
    field('chain', c.chain.detail);
    for (const problem of c.problems) field(c.status === 'OK' ? 'note' : 'problem', problem);
  }
  return lines;
}

/**
 * `table`: one row per certificate (the same CA in several places is one row naming them all),
 * its problems under it. The fields the table leaves out are in `-o wide` and `-o json`.
 */
function formatTable(report: InspectReport, colour: boolean): string[] {
  const rows: { c: InspectedCertificate; locations: string[] }[] = [];
  for (const c of report.certificates) {
    const same = rows.find((r) => r.c.role !== 'leaf' && r.c.sha256Fingerprint === c.sha256Fingerprint && r.c.role === c.role && r.c.status === c.status && r.c.source === c.source);
    if (same) same.locations.push(c.location);
    else rows.push({ c, locations: [c.location] });
  }
  const chainOf = (c: InspectedCertificate): string => (!c.chain.verified ? 'MIS-CHAINED' : c.chain.detail.startsWith('self-signed') ? 'self-signed' : c.role === 'leaf' ? 'verified' : 'anchor');
  const where = (locations: string[]): string => (locations.length === 1 ? locations[0] : `${locations[0]} (and ${locations.length - 1} more with the same certificate)`);
  const table = [
    ['STATUS', 'DAYS', 'ROLE', 'SUBJECT', 'SERIAL', 'CHAIN', 'WHERE'],
    ...rows.map(({ c, locations }) => [c.status, String(c.daysLeft), c.role, c.subject, c.serialNumberHex.slice(0, 8), chainOf(c), where(locations)]),
  ];
  const widths = table[0].map((_, column) => Math.max(...table.map((row) => row[column].length)));
  const lines: string[] = [];
  table.forEach((row, index) => {
    const cells = row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column])));
    if (index > 0 && colour) cells[0] = `${COLOURS[row[0] as InspectStatus]}${cells[0]}${RESET}`;
    lines.push(cells.join('  ').trimEnd());
    const c = index > 0 ? rows[index - 1].c : undefined;
    if (c !== undefined && c.status !== 'OK') for (const problem of c.problems) lines.push(`      ${problem}`);
  });
  return lines;
}

/** The report for a terminal or a log: `table` (default) or `wide`. */
export function formatInspectReport(report: InspectReport, colour: boolean, wide = false): string {
  const { ok, warn, fail } = report.summary;
  return [
    `Read ${report.sources.join('; ')}. Now ${report.now}; warning under ${report.warnDays} days.`,
    '',
    ...(wide ? formatWide(report, colour) : formatTable(report, colour)),
    '',
    `${fail} failed, ${warn} warned, ${ok} OK`,
  ].join('\n');
}
