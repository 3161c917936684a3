import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { CertPool, parsePemBundle, subjectAttribute } from '../server/auth/cert-pool';
import { makeCa, makeLeaf, type TestCa, type TestCertificate } from './support/pki';

const x509 = (pem: string) => new X509Certificate(pem);
const presented = (...certs: TestCertificate[]) => certs.map((c) => x509(c.certPem));

let root: TestCa;
let pool: CertPool;

beforeAll(() => {
  root = makeCa('root');
  pool = CertPool.fromPem(root.certPem, 'test CA');
});

describe('CertPool.verify', () => {
  test('accepts a leaf signed by a root, and maps CN and every O', () => {
    const leaf = makeLeaf(root, { cn: 'alice', organizations: ['dev', 'ops'] });
    expect(pool.verify(presented(leaf))).toEqual({ ok: true, client: { commonName: 'alice', organizations: ['dev', 'ops'] } });
  });

  test('accepts a chain through presented intermediates, in any order', () => {
    // GIVEN root → i1 → i2 → leaf
    const i1 = makeCa('i1', { issuer: root });
    const i2 = makeCa('i2', { issuer: i1 });
    const leaf = makeLeaf(i2, { cn: 'deep' });

    // WHEN the client sends the intermediates out of order / not at all
    expect(pool.verify(presented(leaf, i1, i2))).toMatchObject({ ok: true, client: { commonName: 'deep' } });
    expect(pool.verify(presented(leaf, i1))).toMatchObject({ ok: false, error: expect.stringMatching(/unknown authority/) });
  });

  test('fails a chain through a non-CA certificate (a leaf signing another leaf)', () => {
    // GIVEN a legitimate client certificate whose holder signs a certificate of their own choosing
    const holder = makeLeaf(root, { cn: 'someone' });
    const forged = makeLeaf({ ...holder, isCa: true }, { cn: 'front-proxy-client' });

    // WHEN both are presented
    const result = pool.verify(presented(forged, holder));

    // THEN the forged certificate is not trusted
    expect(result).toMatchObject({ ok: false, error: expect.stringMatching(/unknown authority/) });
  });

  test('fails an intermediate whose EKUs exclude clientAuth (EKUs nest, as in Go)', () => {
    const serverOnlyCa = makeCa('server-only', { issuer: root, extendedKeyUsages: ['serverAuth'] });
    const leaf = makeLeaf(serverOnlyCa, { cn: 'x' });
    expect(pool.verify(presented(leaf, serverOnlyCa))).toMatchObject({ ok: false, error: expect.stringMatching(/incompatible key usage/) });
  });

  test('accepts a leaf without an EKU extension (any usage)', () => {
    const leaf = makeLeaf(root, { cn: 'no-eku', extendedKeyUsages: [] });
    expect(pool.verify(presented(leaf))).toMatchObject({ ok: true });
  });

  test('fails a certificate not yet valid, and one checked after its expiry', () => {
    const future = makeLeaf(root, { cn: 'future', notBefore: new Date(Date.now() + 86_400_000) });
    const leaf = makeLeaf(root, { cn: 'now' });
    // Go's wording (the old message named the certificate's CN and dates in OpenSSL's format)
    expect(pool.verify(presented(future))).toMatchObject({ ok: false, error: expect.stringMatching(/not yet valid: current time \S+ is before \S+/) });
    expect(pool.verify(presented(leaf), Date.now() + 31 * 86_400_000)).toMatchObject({ ok: false, error: expect.stringMatching(/expired or is not yet valid/) });
  });

  test('fails a leaf whose signature does not verify, though names match', () => {
    // GIVEN another CA with the same subject CN as the trusted root
    const impostorRoot = makeCa('root');
    const leaf = makeLeaf(impostorRoot, { cn: 'alice' });
    expect(pool.verify(presented(leaf))).toMatchObject({ ok: false });
  });

  test('trusts any root of a bundle', () => {
    const second = makeCa('second');
    const bundle = CertPool.fromPem(root.certPem + second.certPem, 'bundle');
    expect(bundle.verify(presented(makeLeaf(second, { cn: 's' })))).toMatchObject({ ok: true });
    expect(bundle.pems).toHaveLength(2);
    expect(bundle.equals(CertPool.fromPem(second.certPem + root.certPem, 'reordered'))).toBe(true);
    expect(bundle.equals(pool)).toBe(false);
  });
});

describe('malformed and tampered certificates', () => {
  test('fails every one-byte change to a good leaf that OpenSSL still parses, and never throws', () => {
    // GIVEN a leaf that verifies
    const leafDer = x509(makeLeaf(root, { cn: 'tamper', dnsNames: ['a.example.com'] }).certPem).raw;
    expect(pool.verify([new X509Certificate(leafDer)])).toMatchObject({ ok: true });
    let parsed = 0;
    fc.assert(
      fc.property(fc.nat({ max: leafDer.length - 1 }), fc.integer({ min: 1, max: 255 }), (index, flip) => {
        // WHEN one byte is changed
        const tampered = Buffer.from(leafDer);
        tampered[index] ^= flip;
        let cert: X509Certificate;
        try {
          cert = new X509Certificate(tampered);
        } catch {
          return; // OpenSSL refuses it: the TLS handshake would never get this far
        }
        parsed++;
        // THEN our verifier answers (no exception) and refuses it
        expect(pool.verify([cert])).toMatchObject({ ok: false, error: expect.any(String) });
      }),
      { numRuns: 400 },
    );
    expect(parsed).toBeGreaterThan(50);
  });
});

describe('subjects', () => {
  test('reads escaped and UTF-8 CN and O values as openssl wrote them', () => {
    // GIVEN a certificate made by openssl with special characters in its subject
    const dir = mkdtempSync(path.join(tmpdir(), 'cert-pool-'));
    try {
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-utf8',
        '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'), '-days', '1',
        '-subj', '/CN=Jürgen "J", Admin+UID=7/O=grüne/O=a\\/b=c',
        '-addext', 'extendedKeyUsage=clientAuth',
      ], { stdio: 'pipe' });
      const pem = readFileSync(path.join(dir, 'c.pem'), 'utf8');

      // WHEN it is verified against itself as the root
      const result = CertPool.fromPem(pem, 'self').verify([x509(pem)]);

      // THEN the values come back unescaped
      expect(result).toEqual({ ok: true, client: { commonName: 'Jürgen "J", Admin', organizations: ['grüne', 'a/b=c'] } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('subjectAttribute splits lines and multi-valued RDNs', () => {
    expect(subjectAttribute('UID=7 + CN=a\\+b\nO=x\nO=y', 'O')).toEqual(['x', 'y']);
    expect(subjectAttribute('UID=7 + CN=a\\+b\nO=x\nO=y', 'UID')).toEqual(['7']);
    expect(subjectAttribute('UID=7 + CN=a\\+b\nO=x\nO=y', 'CN')).toEqual(['a+b']);
    expect(subjectAttribute('CN=line\\0Abreak', 'CN')).toEqual(['line\nbreak']);
  });

  test('fails a bundle without certificates, naming its source', () => {
    expect(() => parsePemBundle('garbage', 'ConfigMap key "client-ca-file"')).toThrow('ConfigMap key "client-ca-file" holds no PEM certificate');
  });
});
