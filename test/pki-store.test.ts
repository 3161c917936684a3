import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, chmodSync, utimesSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, ensurePki, inspectCertificate, PkiMaterial, PkiStoreOptions, servingDnsNames, splitPemBundle } from '../lib/pki';
import { opensslVerify } from './fixtures/pki/openssl';

const T0 = new Date('2031-03-01T00:00:00Z');
const DAY = 24 * 60 * 60 * 1000;
const at = (days: number) => new Date(T0.getTime() + days * DAY);
const HOST = 'wardle-apiserver.wardle.svc';

let root: string;
let dir: string;
let options: PkiStoreOptions;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'pki-store-'));
  dir = join(root, '.pki', 'wardle', 'wardle-apiserver');
  options = {
    directory: dir,
    caCommonName: 'wardle-apiserver-ca',
    servingCommonName: 'wardle-apiserver',
    dnsNames: servingDnsNames('wardle-apiserver', 'wardle'),
    certValidityDays: 365,
    caValidityDays: 3650,
    now: T0,
  };
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const file = (name: string) => join(dir, name);
const read = (name: string) => readFileSync(file(name), 'utf8');
const mode = (path: string) => statSync(path).mode & 0o777;
const snapshotDir = () => Object.fromEntries(readdirSync(dir).map((name) => [name, read(name)]));
const serialOf = (pem: string) => inspectCertificate(pem).serialNumberHex;
/** openssl verify of the serving certificate against the material's CA bundle, at `now`. */
const verifies = (m: PkiMaterial, certPem: string, now: Date) => opensslVerify(m.caBundlePem, certPem, HOST, now).status === 0;

describe('ensurePki on an empty directory', () => {
  test('creates the CA and the serving certificate, and they pass openssl verify', () => {
    // WHEN
    const m = ensurePki(options);
    // THEN
    expect(m.actions).toEqual(['created CA', 'created serving certificate']);
    expect(m.caBundlePem).toBe(m.caCertPem);
    expect(opensslVerify(m.caBundlePem, m.tlsCertPem, HOST, T0).output).toMatch(/: OK/);
    expect(inspectCertificate(m.tlsCertPem).dnsNames).toEqual(options.dnsNames);
    expect(new X509Certificate(m.caCertPem).ca).toBe(true);
  });

  test('writes ca.crt, ca.key, tls.crt, tls.key: directory 0700, keys 0600, certificates 0644, no temporary files left', () => {
    // WHEN
    const m = ensurePki(options);
    // THEN
    expect(readdirSync(dir).sort()).toEqual(['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
    expect(mode(dir)).toBe(0o700);
    expect(mode(file('ca.key'))).toBe(0o600);
    expect(mode(file('tls.key'))).toBe(0o600);
    expect(mode(file('ca.crt'))).toBe(0o644);
    expect(mode(file('tls.crt'))).toBe(0o644);
    expect(read('ca.crt')).toBe(m.caCertPem);
    expect(read('tls.crt')).toBe(m.tlsCertPem);
    expect(read('tls.key')).toBe(m.tlsKeyPem);
  });

  test('never hands out the CA private key', () => {
    // WHEN
    const m = ensurePki(options);
    // THEN no line of the CA key's base64 body appears anywhere in the material
    const caKeyLines = read('ca.key').split('\n').filter((line) => line.length > 0 && !line.startsWith('-----'));
    const everything = JSON.stringify(m);
    expect(caKeyLines.length).toBeGreaterThan(10);
    for (const line of caKeyLines) expect(everything).not.toContain(line);
    expect(m.tlsKeyPem).not.toBe(read('ca.key'));
  });
});

describe('ensurePki on an existing store', () => {
  test('reuses everything while valid: byte-identical PEMs and no file rewritten', () => {
    // GIVEN
    const first = ensurePki(options);
    const before = snapshotDir();
    const mtimes = readdirSync(dir).map((name) => statSync(file(name)).mtimeMs);
    // WHEN run again 200 days later (165 of 365 days left: more than a third)
    const second = ensurePki({ ...options, now: at(200) });
    // THEN
    expect(second.actions).toEqual(['reused CA', 'reused serving certificate']);
    expect(second).toEqual({ ...first, actions: second.actions });
    expect(snapshotDir()).toEqual(before);
    expect(readdirSync(dir).map((name) => statSync(file(name)).mtimeMs)).toEqual(mtimes);
  });

  test('reuses the serving certificate with DNS names in another order', () => {
    const first = ensurePki(options);
    const second = ensurePki({ ...options, dnsNames: [...options.dnsNames].reverse() });
    expect(second.tlsCertPem).toBe(first.tlsCertPem);
  });

  test('keeps the serving certificate with just over a third of its life left, renews it with just under', () => {
    // GIVEN a 300-day certificate (its lifetime is 300 days and the 5 minutes of backdating)
    const first = ensurePki({ ...options, certValidityDays: 300 });
    // WHEN 199 days later: 101 days left, more than a third
    const kept = ensurePki({ ...options, certValidityDays: 300, now: at(199) });
    // THEN
    expect(kept.tlsCertPem).toBe(first.tlsCertPem);
    // WHEN 200 days later: 100 days left, less than a third of 300 days and 5 minutes
    const renewed = ensurePki({ ...options, certValidityDays: 300, now: at(200) });
    // THEN
    expect(renewed.actions).toEqual(['reused CA', 'renewed serving certificate: 100 of 300 days left']);
    expect(renewed.tlsCertPem).not.toBe(first.tlsCertPem);
    expect(renewed.caCertPem).toBe(first.caCertPem);
  });

  test('renews the serving certificate when less than a third of its life remains, under the same CA', () => {
    // GIVEN
    const first = ensurePki(options);
    // WHEN 244 days later: 121 of 365 days left
    const renewed = ensurePki({ ...options, now: at(244) });
    // THEN
    expect(renewed.actions).toEqual(['reused CA', 'renewed serving certificate: 121 of 365 days left']);
    expect(renewed.caBundlePem).toBe(first.caBundlePem);
    expect(serialOf(renewed.tlsCertPem)).not.toBe(serialOf(first.tlsCertPem));
    expect(renewed.tlsKeyPem).not.toBe(first.tlsKeyPem);
    expect(inspectCertificate(renewed.tlsCertPem).notAfter).toEqual(at(244 + 365));
    expect(verifies(renewed, renewed.tlsCertPem, at(244))).toBe(true);
    expect(read('tls.crt')).toBe(renewed.tlsCertPem);
    expect(mode(file('tls.key'))).toBe(0o600);
  });

  test('renews the serving certificate when its DNS names differ', () => {
    // GIVEN
    const first = ensurePki(options);
    // WHEN the Service moves to namespace "flunders"
    const moved = ensurePki({ ...options, dnsNames: servingDnsNames('wardle-apiserver', 'flunders') });
    // THEN
    expect(moved.actions[1]).toMatch(/^renewed serving certificate: its DNS names \[wardle-apiserver, .*\] differ from \[wardle-apiserver, wardle-apiserver\.flunders/);
    expect(moved.caCertPem).toBe(first.caCertPem);
    expect(opensslVerify(moved.caBundlePem, moved.tlsCertPem, 'wardle-apiserver.flunders.svc', T0).status).toBe(0);
    expect(opensslVerify(moved.caBundlePem, moved.tlsCertPem, HOST, T0).status).not.toBe(0);
  });

  test('renews the serving certificate when its common name differs', () => {
    ensurePki(options);
    const renamed = ensurePki({ ...options, servingCommonName: 'wardle' });
    expect(renamed.actions).toEqual(['reused CA', 'renewed serving certificate: its common name "wardle-apiserver" differs from "wardle"']);
  });

  test('renews the serving certificate when it does not chain to the current CA', () => {
    // GIVEN a tls.crt/tls.key pair signed by some other CA
    ensurePki(options);
    const elsewhere = join(root, 'elsewhere');
    ensurePki({ ...options, directory: elsewhere });
    writeFileSync(file('tls.crt'), readFileSync(join(elsewhere, 'tls.crt')));
    writeFileSync(file('tls.key'), readFileSync(join(elsewhere, 'tls.key')));
    // WHEN
    const m = ensurePki(options);
    // THEN
    expect(m.actions).toEqual(['reused CA', 'renewed serving certificate: it is not issued by the current CA']);
    expect(verifies(m, m.tlsCertPem, T0)).toBe(true);
  });

  test('issues a serving certificate when tls.key is missing', () => {
    ensurePki(options);
    unlinkSync(file('tls.key'));
    const m = ensurePki(options);
    expect(m.actions).toEqual(['reused CA', `renewed serving certificate: ${file('tls.key')} is missing`]);
    expect(new X509Certificate(m.tlsCertPem).checkPrivateKey(createPrivateKey(read('tls.key')))).toBe(true);
  });

  test('restores mode 0600 on a key file that was opened up', () => {
    ensurePki(options);
    chmodSync(file('tls.key'), 0o644);
    const m = ensurePki(options);
    expect(m.actions).toContain(`restricted ${file('tls.key')} to mode 0600`);
    expect(mode(file('tls.key'))).toBe(0o600);
  });

  test('removes temporary files a crash left behind', () => {
    // GIVEN a half-written key from a crashed run, an hour old
    ensurePki(options);
    const leftover = file('tls.key.tmp-12345-abcdef');
    writeFileSync(leftover, `${'-'.repeat(5)}BEGIN PRIVATE KEY${'-'.repeat(5)}\nMIIE`);
    const hourAgo = new Date(Date.now() - 60 * 60 * 1000);
    utimesSync(leftover, hourAgo, hourAgo);
    // WHEN
    ensurePki(options);
    // THEN
    expect(existsSync(leftover)).toBe(false);
  });
});

describe('CA rotation', () => {
  // CA 550 days, serving certificates 365 days: at day 200 the CA has 350 days left, fewer than a
  // fresh serving certificate needs, so it is rotated; the next CA lasts until day 750 and is
  // reused until day 385.
  const rotating = () => ({ ...options, caValidityDays: 550 });

  test('rotates a CA that would not outlive a new serving certificate, keeping the old CA in the bundle', () => {
    // GIVEN
    const first = ensurePki(rotating());
    // WHEN
    const rotated = ensurePki({ ...rotating(), now: at(200) });
    // THEN the new CA comes first, then the old one
    expect(rotated.actions[0]).toBe(
      `rotated CA: it expires at ${at(550).toISOString()}, before a serving certificate issued now would (${at(565).toISOString()}, certValidityDays 365)`,
    );
    expect(rotated.actions[1]).toBe('renewed serving certificate: it is not issued by the current CA');
    expect(rotated.actions[2]).toMatch(/^kept retired CA "wardle-apiserver-ca" \(serial [0-9A-F]+\) in the CA bundle until /);
    expect(rotated.actions[2].endsWith(` until ${at(365).toISOString()}`)).toBe(true);
    expect(splitPemBundle(rotated.caBundlePem)).toEqual([rotated.caCertPem, first.caCertPem]);
    expect(rotated.caCertPem).not.toBe(first.caCertPem);
    expect(inspectCertificate(rotated.caCertPem).notAfter).toEqual(at(200 + 550));
    // AND both the old pods' certificate and the new one verify against the bundle
    expect(verifies(rotated, first.tlsCertPem, at(200))).toBe(true);
    expect(verifies(rotated, rotated.tlsCertPem, at(200))).toBe(true);
    expect(read('ca-retired.crt')).toBe(first.caCertPem);
    expect(read('tls-retired.crt')).toBe(first.tlsCertPem);
  });

  test('keeps the retired CA, byte-identically, until the serving certificate it signed expires, then drops it', () => {
    // GIVEN
    const first = ensurePki(rotating());
    const rotated = ensurePki({ ...rotating(), now: at(200) });
    // WHEN the old serving certificate is still valid
    const later = ensurePki({ ...rotating(), now: at(364) });
    // THEN
    expect(later).toEqual({ ...rotated, actions: later.actions });
    expect(later.actions).toEqual(['reused CA', 'reused serving certificate', expect.stringMatching(/^kept retired CA/)]);
    // WHEN it has expired
    const dropped = ensurePki({ ...rotating(), now: at(366) });
    // THEN
    expect(dropped.actions).toEqual([
      'reused CA',
      'reused serving certificate',
      expect.stringMatching(/^dropped retired CA "wardle-apiserver-ca" \(serial [0-9A-F]+\): no serving certificate it signed is still valid$/),
    ]);
    expect(dropped.caBundlePem).toBe(rotated.caCertPem);
    // (judged the day before it expired, so only the missing CA can make it fail)
    expect(verifies(dropped, first.tlsCertPem, at(364))).toBe(false);
    expect(verifies(later, first.tlsCertPem, at(364))).toBe(true);
    expect(verifies(dropped, dropped.tlsCertPem, at(366))).toBe(true);
    expect(existsSync(file('ca-retired.crt'))).toBe(false);
    expect(existsSync(file('tls-retired.crt'))).toBe(false);
  });

  test('rewrites no file while the retired CA is kept unchanged', () => {
    // GIVEN a rotated store, with its retired bundles
    ensurePki(rotating());
    ensurePki({ ...rotating(), now: at(200) });
    const mtimes = readdirSync(dir).map((name) => [name, statSync(file(name)).mtimeMs]);
    expect(mtimes.map(([name]) => name)).toEqual(expect.arrayContaining(['ca-retired.crt', 'tls-retired.crt']));
    // WHEN it is loaded again while the old serving certificate is still valid
    const later = ensurePki({ ...rotating(), now: at(300) });
    // THEN the retired CA is kept and nothing is written
    expect(later.actions[2]).toMatch(/^kept retired CA/);
    expect(readdirSync(dir).map((name) => [name, statSync(file(name)).mtimeMs])).toEqual(mtimes);
  });

  test('recovers from a crash between writing the retired bundles and the new CA: the old CA is listed once', () => {
    // GIVEN the state a rotation leaves if it dies after its first renames
    const first = ensurePki(rotating());
    writeFileSync(file('ca-retired.crt'), first.caCertPem);
    writeFileSync(file('tls-retired.crt'), first.tlsCertPem);
    // WHEN
    const m = ensurePki({ ...rotating(), now: at(200) });
    // THEN
    expect(splitPemBundle(m.caBundlePem)).toEqual([m.caCertPem, first.caCertPem]);
    expect(read('ca-retired.crt')).toBe(first.caCertPem);
    expect(read('tls-retired.crt')).toBe(first.tlsCertPem);
  });

  test('reports dropping a retired CA whose serving certificates are gone', () => {
    // GIVEN a store whose retired CA signed nothing still valid
    ensurePki(rotating());
    ensurePki({ ...rotating(), now: at(200) });
    writeFileSync(file('tls-retired.crt'), '');
    // WHEN
    const m = ensurePki({ ...rotating(), now: at(201) });
    // THEN
    expect(m.actions[2]).toMatch(/^dropped retired CA "wardle-apiserver-ca" \(serial [0-9A-F]+\): no serving certificate it signed is still valid$/);
    expect(splitPemBundle(m.caBundlePem)).toHaveLength(1);
  });

  test('does not keep an expired CA whose serving certificate has expired too', () => {
    // GIVEN
    ensurePki(rotating());
    // WHEN everything has expired
    const m = ensurePki({ ...rotating(), now: at(600) });
    // THEN
    expect(m.actions[0]).toBe(`rotated CA: it expired at ${at(550).toISOString()}`);
    expect(splitPemBundle(m.caBundlePem)).toEqual([m.caCertPem]);
    expect(verifies(m, m.tlsCertPem, at(600))).toBe(true);
  });

  test('rotates when ca.key is missing, still trusting the old CA for the certificate it signed', () => {
    // GIVEN
    const first = ensurePki(options);
    unlinkSync(file('ca.key'));
    // WHEN
    const m = ensurePki(options);
    // THEN
    expect(m.actions[0]).toBe(`rotated CA: ${file('ca.key')} is missing`);
    expect(splitPemBundle(m.caBundlePem)).toEqual([m.caCertPem, first.caCertPem]);
    expect(verifies(m, first.tlsCertPem, T0)).toBe(true);
  });

  test('creates a new CA and reissues the serving certificate when both CA files are gone', () => {
    ensurePki(options);
    unlinkSync(file('ca.key'));
    unlinkSync(file('ca.crt'));
    const m = ensurePki(options);
    expect(m.actions).toEqual(['created CA', 'renewed serving certificate: it is not issued by the current CA']);
    expect(splitPemBundle(m.caBundlePem)).toHaveLength(1);
  });

  test('rotates a ca.crt that is not a CA certificate', () => {
    // GIVEN ca.crt/ca.key replaced by the serving pair
    ensurePki(options);
    writeFileSync(file('ca.crt'), read('tls.crt'));
    writeFileSync(file('ca.key'), read('tls.key'));
    // WHEN
    const m = ensurePki(options);
    // THEN
    expect(m.actions[0]).toBe(`rotated CA: ${file('ca.crt')} is not a CA certificate (no basicConstraints CA:TRUE)`);
    expect(new X509Certificate(m.caCertPem).ca).toBe(true);
  });
});

describe('ensurePki failures', () => {
  test('fails when tls.key does not match tls.crt, naming the files, and changes nothing', () => {
    // GIVEN
    ensurePki(options);
    writeFileSync(file('tls.key'), createCertificateAuthority({ commonName: 'x', validityDays: 1 }).keyPem, { mode: 0o600 });
    const before = snapshotDir();
    // THEN
    expect(() => ensurePki(options)).toThrow(`${file('tls.key')} does not match ${file('tls.crt')}`);
    expect(snapshotDir()).toEqual(before);
  });

  test('fails when ca.key does not match ca.crt', () => {
    ensurePki(options);
    writeFileSync(file('ca.key'), read('tls.key'));
    expect(() => ensurePki(options)).toThrow(`${file('ca.key')} does not match ${file('ca.crt')}`);
  });

  test('fails for a ca.crt that is not PEM, naming the file', () => {
    ensurePki(options);
    writeFileSync(file('ca.crt'), 'not a certificate\n');
    expect(() => ensurePki(options)).toThrow(`${file('ca.crt')} is not a PEM certificate (expected a "-----BEGIN CERTIFICATE-----" block)`);
  });

  test('fails for a truncated tls.crt, naming the file', () => {
    ensurePki(options);
    writeFileSync(file('tls.crt'), read('tls.crt').slice(0, 300));
    expect(() => ensurePki(options)).toThrow(new RegExp(`${file('tls.crt')} is malformed: PEM bundle has 1 BEGIN lines but only 0 complete blocks`));
  });

  test('fails for a PEM block that holds no certificate, naming the file', () => {
    ensurePki(options);
    writeFileSync(file('tls.crt'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(() => ensurePki(options)).toThrow(new RegExp(`${file('tls.crt')} is not a valid PEM certificate`));
  });

  test('fails for a tls.key that is not a key, naming the file', () => {
    ensurePki(options);
    writeFileSync(file('tls.key'), read('tls.crt'));
    expect(() => ensurePki(options)).toThrow(new RegExp(`${file('tls.key')} is not an unencrypted PEM private key`));
  });

  test('fails for a malformed ca-retired.crt, naming the file', () => {
    ensurePki(options);
    writeFileSync(file('ca-retired.crt'), '-----BEGIN CERTIFICATE-----\n');
    expect(() => ensurePki(options)).toThrow(new RegExp(`${file('ca-retired.crt')} is malformed`));
  });

  test('fails when caValidityDays is not greater than certValidityDays, before writing anything', () => {
    expect(() => ensurePki({ ...options, caValidityDays: 365 })).toThrow(
      'caValidityDays 365 is not greater than certValidityDays 365 (expected the CA to outlive the serving certificates it signs)',
    );
    expect(existsSync(dir)).toBe(false);
  });

  test('fails for certValidityDays 0', () => {
    expect(() => ensurePki({ ...options, certValidityDays: 0 })).toThrow(/certValidityDays 0 is not a positive integer/);
  });

  test('fails for empty dnsNames and for a bad DNS name', () => {
    expect(() => ensurePki({ ...options, dnsNames: [] })).toThrow(/dnsNames \[\] is empty/);
    expect(() => ensurePki({ ...options, dnsNames: ['Bad_Name'] })).toThrow(/dnsNames entry "Bad_Name" is not a valid DNS name/);
  });

  test('fails for an empty directory option', () => {
    expect(() => ensurePki({ ...options, directory: '' })).toThrow(/directory "" is empty/);
  });
});
