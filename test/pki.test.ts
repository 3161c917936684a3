import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import {
  CertificateKeyPair,
  createCertificateAuthority,
  inspectCertificate,
  isIssuedBy,
  issueServingCertificate,
  PkiError,
  servingDnsNames,
  splitPemBundle,
} from '../lib/pki';
import { openssl, opensslText, opensslVerify } from './fixtures/pki/openssl';

const NOW = new Date('2030-06-15T12:00:00.250Z');
const NOW_SECOND = new Date('2030-06-15T12:00:00Z');
const DAY = 24 * 60 * 60 * 1000;
const SANS = servingDnsNames('wardle-apiserver', 'wardle');

// Key generation is real (and the slow part): one CA and one serving certificate shared by the
// read-only tests.
let ca: CertificateKeyPair;
let serving: CertificateKeyPair;
beforeAll(() => {
  ca = createCertificateAuthority({ commonName: 'wardle-apiserver-ca', validityDays: 3650, now: NOW });
  serving = issueServingCertificate({ ca, commonName: 'wardle-apiserver', dnsNames: SANS, validityDays: 365, now: NOW });
});

describe('servingDnsNames', () => {
  test('lists the four names a Service answers to, cluster.local by default', () => {
    expect(servingDnsNames('wardle-apiserver', 'wardle')).toEqual([
      'wardle-apiserver',
      'wardle-apiserver.wardle',
      'wardle-apiserver.wardle.svc',
      'wardle-apiserver.wardle.svc.cluster.local',
    ]);
  });

  test('uses the given cluster domain', () => {
    expect(servingDnsNames('api', 'ns', 'k8s.example.com')[3]).toBe('api.ns.svc.k8s.example.com');
  });

  test('fails for a namespace that is not a DNS label', () => {
    expect(() => servingDnsNames('api', 'Bad_NS')).toThrow(PkiError);
    expect(() => servingDnsNames('api', 'Bad_NS')).toThrow(/namespace "Bad_NS" is not a valid DNS-1123 label/);
  });

  test('fails for a bad cluster domain', () => {
    expect(() => servingDnsNames('api', 'ns', 'Cluster..Local')).toThrow(/clusterDomain "Cluster..Local" is not a valid DNS subdomain/);
  });
});

describe('createCertificateAuthority', () => {
  test('makes a CA that openssl shows as CA:TRUE critical, keyCertSign + cRLSign, SHA-256, RSA 2048', () => {
    // WHEN
    const text = opensslText(ca.certPem);
    // THEN
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+[^\n]*Certificate Sign, CRL Sign/);
    expect(text).toMatch(/Signature Algorithm: sha256WithRSAEncryption/);
    expect(text).toMatch(/Public-Key: \(2048 bit\)/);
    expect(text).toMatch(/Subject: CN = wardle-apiserver-ca/);
    expect(text).toMatch(/Issuer: CN = wardle-apiserver-ca/);
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
  });

  test('is self-signed, a CA for Node, valid from now − 5 min to now + validityDays', () => {
    // WHEN
    const x509 = new X509Certificate(ca.certPem);
    const info = inspectCertificate(ca.certPem);
    // THEN
    expect(x509.ca).toBe(true);
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(x509.checkIssued(x509)).toBe(true);
    expect(info.notBefore).toEqual(new Date(NOW_SECOND.getTime() - 5 * 60 * 1000));
    expect(info.notAfter).toEqual(new Date(NOW_SECOND.getTime() + 3650 * DAY));
    expect(openssl(['verify', '-CAfile', '{ca.pem}', '-attime', String(NOW.getTime() / 1000 | 0), '{ca.pem}'], { 'ca.pem': ca.certPem }).status).toBe(0);
  });

  test('returns a PKCS#8 private key that matches the certificate', () => {
    const key = createPrivateKey(ca.keyPem);
    expect(ca.keyPem).toMatch(/^-{5}BEGIN PRIVATE KEY-{5}\n/);
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(new X509Certificate(ca.certPem).checkPrivateKey(key)).toBe(true);
  });

  test('honours keyBits', () => {
    const big = createCertificateAuthority({ commonName: 'big', validityDays: 1, keyBits: 3072 });
    expect(inspectCertificate(big.certPem).publicKeyBits).toBe(3072);
  });

  test('fails for keyBits below 2048', () => {
    expect(() => createCertificateAuthority({ commonName: 'x', validityDays: 1, keyBits: 1024 })).toThrow(
      /keyBits 1024 is not allowed \(expected a multiple of 8 from 2048/,
    );
  });

  test.each([0, -1, 1.5, Number.NaN])('fails for validityDays %p', (validityDays) => {
    expect(() => createCertificateAuthority({ commonName: 'x', validityDays })).toThrow(
      new RegExp(`validityDays ${JSON.stringify(validityDays)} is not a positive integer`),
    );
  });

  test('fails for an empty common name', () => {
    expect(() => createCertificateAuthority({ commonName: ' ', validityDays: 1 })).toThrow(/commonName " " is not a valid common name/);
  });

  test('fails for an invalid now', () => {
    expect(() => createCertificateAuthority({ commonName: 'x', validityDays: 1, now: new Date('nope') })).toThrow(/now "Invalid Date" is not a valid Date/);
  });
});

describe('issueServingCertificate', () => {
  test('passes openssl verify -verify_hostname <svc>.<ns>.svc -purpose sslserver', () => {
    // WHEN
    const result = opensslVerify(ca.certPem, serving.certPem, 'wardle-apiserver.wardle.svc', NOW);
    // THEN
    expect(result.output).toMatch(/: OK/);
    expect(result.status).toBe(0);
  });

  test('fails openssl verify for a name not in the SANs, and against another CA', () => {
    // GIVEN
    const other = createCertificateAuthority({ commonName: 'wardle-apiserver-ca', validityDays: 3650, now: NOW });
    // THEN
    expect(opensslVerify(ca.certPem, serving.certPem, 'wardle-apiserver.other.svc', NOW).output).toMatch(/hostname mismatch/);
    expect(opensslVerify(other.certPem, serving.certPem, 'wardle-apiserver.wardle.svc', NOW).status).not.toBe(0);
  });

  test('is issued by the CA for Node: verify, checkIssued, checkHost, not a CA', () => {
    // GIVEN
    const leaf = new X509Certificate(serving.certPem);
    const caCert = new X509Certificate(ca.certPem);
    // THEN
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.ca).toBe(false);
    for (const name of SANS) expect(leaf.checkHost(name)).toBe(name);
    expect(leaf.checkHost('wardle-apiserver.default.svc')).toBeUndefined();
    expect(leaf.issuer).toBe(caCert.subject);
    expect(leaf.checkPrivateKey(createPrivateKey(serving.keyPem))).toBe(true);
  });

  test('carries serverAuth only, digitalSignature + keyEncipherment, key identifiers, SHA-256, RSA 2048', () => {
    // WHEN
    const text = opensslText(serving.certPem);
    const caText = opensslText(ca.certPem);
    // THEN
    expect(text).toMatch(/X509v3 Extended Key Usage: *\n\s+TLS Web Server Authentication\n/);
    expect(text).not.toMatch(/Client Authentication/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment\n/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Signature Algorithm: sha256WithRSAEncryption/);
    expect(text).toMatch(/Public-Key: \(2048 bit\)/);
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
    const caSki = /X509v3 Subject Key Identifier: *\n\s+([0-9A-F:]+)/.exec(caText)?.[1];
    const aki = /X509v3 Authority Key Identifier: *\n\s+(?:keyid:)?([0-9A-F:]+)/.exec(text)?.[1];
    expect(caSki).toBeDefined();
    expect(aki).toBe(caSki);
  });

  test('lists exactly the given DNS names and the validity window from now', () => {
    const info = inspectCertificate(serving.certPem);
    expect(info.dnsNames).toEqual(SANS);
    expect(info.subject).toBe('CN=wardle-apiserver');
    expect(info.issuer).toBe('CN=wardle-apiserver-ca');
    expect(info.notBefore).toEqual(new Date(NOW_SECOND.getTime() - 5 * 60 * 1000));
    expect(info.notAfter).toEqual(new Date(NOW_SECOND.getTime() + 365 * DAY));
    expect(info.isCertificateAuthority).toBe(false);
  });

  test('a Node TLS client trusting only the CA completes a handshake for <svc>.<ns>.svc, and refuses another name', async () => {
    // GIVEN a TLS server with a certificate valid on the wall clock (Node's TLS has no -attime)
    const liveCa = createCertificateAuthority({ commonName: 'live-ca', validityDays: 2 });
    const live = issueServingCertificate({ ca: liveCa, commonName: 'wardle-apiserver', dnsNames: SANS, validityDays: 1 });
    const server = tls.createServer({ cert: live.certPem, key: live.keyPem }, (socket) => socket.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const connect = (servername: string) =>
      new Promise<boolean>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: liveCa.certPem });
        socket.on('secureConnect', () => {
          resolve(socket.authorized);
          socket.end();
        });
        socket.on('error', reject);
      });
    try {
      // WHEN / THEN
      await expect(connect('wardle-apiserver.wardle.svc')).resolves.toBe(true);
      await expect(connect('wardle-apiserver.default.svc')).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    } finally {
      server.close();
    }
  });

  test('gives 50 certificates 50 distinct positive 16-byte serials, minimally DER-encoded', () => {
    // WHEN
    const serials = Array.from({ length: 50 }, () =>
      inspectCertificate(issueServingCertificate({ ca, commonName: 's', dnsNames: ['s.example.com'], validityDays: 1, now: NOW }).certPem).serialNumberHex,
    );
    // THEN the first octet is 0x40–0x7f: positive (top bit clear) and not a padding zero
    for (const serial of serials) expect(serial).toMatch(/^[4-7][0-9A-F]{31}$/);
    expect(new Set(serials).size).toBe(50);
  });

  test('fails when the certificate would outlive its CA, giving both dates', () => {
    // GIVEN
    const shortCa = createCertificateAuthority({ commonName: 'short-ca', validityDays: 10, now: NOW });
    // THEN
    expect(() => issueServingCertificate({ ca: shortCa, commonName: 's', dnsNames: SANS, validityDays: 11, now: NOW })).toThrow(
      /the serving certificate would outlive its CA: it would expire at 2030-06-26T12:00:00.000Z \(validityDays 11\) but the CA "short-ca" expires at 2030-06-25T12:00:00.000Z/,
    );
  });

  test('fails when the CA is not valid yet', () => {
    expect(() => issueServingCertificate({ ca, commonName: 's', dnsNames: SANS, validityDays: 1, now: new Date('2030-01-01T00:00:00Z') })).toThrow(
      /the CA "wardle-apiserver-ca" is not valid yet at 2030-01-01T00:00:00.000Z/,
    );
  });

  test('fails when the "CA" is a serving certificate', () => {
    expect(() => issueServingCertificate({ ca: serving, commonName: 's', dnsNames: SANS, validityDays: 1, now: NOW })).toThrow(
      /ca.certPem "wardle-apiserver" is not a CA certificate \(expected basicConstraints CA:TRUE\)/,
    );
  });

  test('fails when the CA key does not match the CA certificate', () => {
    expect(() =>
      issueServingCertificate({ ca: { certPem: ca.certPem, keyPem: serving.keyPem }, commonName: 's', dnsNames: SANS, validityDays: 1, now: NOW }),
    ).toThrow(/ca.keyPem does not match ca.certPem "wardle-apiserver-ca"/);
  });

  test('fails for a CA that is not PEM', () => {
    expect(() => issueServingCertificate({ ca: { certPem: 'garbage', keyPem: ca.keyPem }, commonName: 's', dnsNames: SANS, validityDays: 1 })).toThrow(
      /ca.certPem is not a PEM RSA certificate/,
    );
  });

  test('fails for empty dnsNames', () => {
    expect(() => issueServingCertificate({ ca, commonName: 's', dnsNames: [], validityDays: 1, now: NOW })).toThrow(/dnsNames \[\] is empty/);
  });

  test.each(['Bad_Name', 'a..b', '', 'x'.repeat(254), 'foo.*.com'])('fails for the DNS name %p', (name) => {
    expect(() => issueServingCertificate({ ca, commonName: 's', dnsNames: [name], validityDays: 1, now: NOW })).toThrow(
      /dnsNames entry .* is not a valid DNS name/,
    );
  });

  test('accepts a leading wildcard label', () => {
    const cert = issueServingCertificate({ ca, commonName: 's', dnsNames: ['*.wardle.svc'], validityDays: 1, now: NOW });
    expect(new X509Certificate(cert.certPem).checkHost('x.wardle.svc')).toBe('*.wardle.svc');
    expect(new X509Certificate(cert.certPem).checkHost('x.y.wardle.svc')).toBeUndefined();
  });

  test('fails for a duplicate DNS name', () => {
    expect(() => issueServingCertificate({ ca, commonName: 's', dnsNames: ['a.b', 'a.b'], validityDays: 1, now: NOW })).toThrow(
      /dnsNames entry "a.b" appears twice/,
    );
  });

  test('fails for keyBits 1024 and validityDays 0', () => {
    expect(() => issueServingCertificate({ ca, commonName: 's', dnsNames: SANS, validityDays: 1, keyBits: 1024, now: NOW })).toThrow(/keyBits 1024/);
    expect(() => issueServingCertificate({ ca, commonName: 's', dnsNames: SANS, validityDays: 0, now: NOW })).toThrow(
      /validityDays 0 is not a positive integer/,
    );
  });
});

describe('inspectCertificate', () => {
  test('agrees with openssl on fingerprint, serial and dates', () => {
    // WHEN
    const info = inspectCertificate(serving.certPem);
    const out = openssl(['x509', '-noout', '-fingerprint', '-sha256', '-serial', '-startdate', '-enddate', '-in', '{c.pem}'], { 'c.pem': serving.certPem }).output;
    // THEN
    expect(out).toContain(`sha256 Fingerprint=${info.sha256Fingerprint}\n`);
    expect(out).toContain(`serial=${info.serialNumberHex}\n`);
    expect(new Date(/notBefore=(.*)/.exec(out)![1])).toEqual(info.notBefore);
    expect(new Date(/notAfter=(.*)/.exec(out)![1])).toEqual(info.notAfter);
    expect(info.sha256Fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(info.publicKeyBits).toBe(2048);
  });

  test('fails for text that is not a certificate', () => {
    expect(() => inspectCertificate('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')).toThrow(/certificate is not a valid PEM certificate/);
  });
});

describe('splitPemBundle', () => {
  test('splits a bundle with CRLF line ends and text between blocks', () => {
    // GIVEN
    const bundle = `# current\r\n${ca.certPem.replace(/\n/g, '\r\n')}junk\n${serving.certPem}`;
    // WHEN
    const blocks = splitPemBundle(bundle);
    // THEN
    expect(blocks).toEqual([ca.certPem, serving.certPem]);
  });

  test('returns nothing for an empty string', () => {
    expect(splitPemBundle('')).toEqual([]);
  });

  test('fails for a block without its END line', () => {
    expect(() => splitPemBundle(`${ca.certPem}-----BEGIN CERTIFICATE-----\nMIIB\n`)).toThrow(/PEM bundle has 2 BEGIN lines but only 1 complete blocks/);
  });
});

describe('isIssuedBy', () => {
  test('is true for the issuing CA', () => {
    expect(isIssuedBy(serving.certPem, ca.certPem)).toBe(true);
  });

  test('is false for another CA with the same name', () => {
    const impostor = createCertificateAuthority({ commonName: 'wardle-apiserver-ca', validityDays: 3650, now: NOW });
    expect(isIssuedBy(serving.certPem, impostor.certPem)).toBe(false);
  });

  test('is false for a certificate whose signature was tampered with: the signature decides', () => {
    // GIVEN the serving certificate with the last byte of its signature flipped
    const der = new X509Certificate(serving.certPem).raw;
    der[der.length - 1] ^= 0xff;
    const body = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
    const tampered = `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
    // THEN names and key identifiers still match, the signature does not
    expect(new X509Certificate(tampered).checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(isIssuedBy(tampered, ca.certPem)).toBe(false);
  });

  test('fails for a CA that is not PEM', () => {
    expect(() => isIssuedBy(serving.certPem, 'nope')).toThrow(/CA certificate is not a valid PEM certificate/);
  });
});

describe('the committed fixtures (test/fixtures/pki)', () => {
  const read = (name: string) => readFileSync(join(__dirname, 'fixtures', 'pki', name), 'utf8');

  test('chain, carry the wardle-apiserver SANs, and outlive this century', () => {
    // GIVEN
    const caPem = read('ca.crt');
    const tlsPem = read('tls.crt');
    // THEN
    expect(opensslVerify(caPem, tlsPem, 'wardle-apiserver.wardle.svc').status).toBe(0);
    expect(inspectCertificate(tlsPem).dnsNames).toEqual(SANS);
    expect(inspectCertificate(tlsPem).notAfter.getUTCFullYear()).toBeGreaterThan(2100);
    expect(inspectCertificate(caPem).notAfter.getTime()).toBeGreaterThan(inspectCertificate(tlsPem).notAfter.getTime());
    expect(new X509Certificate(tlsPem).checkPrivateKey(createPrivateKey(read('tls.key')))).toBe(true);
  });
});
