/**
 * Client-certificate chains, good and bad, made with the openssl CLI and judged twice: by
 * `openssl verify -purpose sslclient -CAfile <roots> -untrusted <intermediates> <leaf>`, run here,
 * and by our verifier (CertPool, as Go's x509.Verify with KeyUsages [ClientAuth]). Each case
 * records what openssl says and what we say; both must agree, except where Go deliberately
 * decides otherwise than openssl (`goDiffers` says why, from Go's sources), and then we follow Go:
 * kube-apiserver is what decides who is system:masters, and so must we.
 *
 * Set CHAIN_CORPUS_TABLE=1 to print the table (case → openssl → ours).
 */
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import { CertPool } from '../server/auth/cert-pool';
import { OpensslChains, type OpensslCertificate } from './support/openssl-chains';
import { startServerEnvironment, type ServerEnvironment } from './support/server-process';
import type { SubjectAccessReviewSpec } from './support/fake-kube-apiserver';

const DAY_MS = 86_400_000;
const SKID = 'subjectKeyIdentifier = hash';
const AKID = 'authorityKeyIdentifier = keyid';
const CA_BASICS = ['basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign'];
const ROOT_EXTENSIONS = [...CA_BASICS, SKID];
const INTERMEDIATE_EXTENSIONS = [...CA_BASICS, SKID, AKID];
const LEAF_EXTENSIONS = ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'extendedKeyUsage = clientAuth', AKID];
const leafWith = (...lines: string[]) => [...LEAF_EXTENSIONS.filter((l) => !lines.some((x) => x.split('=')[0] === l.split('=')[0])), ...lines];

interface Chain {
  readonly roots: readonly OpensslCertificate[];
  /** What the client sends after its leaf. */
  readonly untrusted: readonly OpensslCertificate[];
  readonly leaf: OpensslCertificate;
}

interface CorpusCase {
  readonly name: string;
  readonly build: (pki: OpensslChains, shared: { root: OpensslCertificate; inter: OpensslCertificate }) => Chain;
  /** `openssl verify`'s verdict: 'OK', or a fragment of its error line. */
  readonly openssl: 'OK' | string;
  /** Ours: 'OK', or Go's error. */
  readonly ours: 'OK' | RegExp;
  /** Why Go, and so we, decide otherwise than openssl. */
  readonly goDiffers?: string;
}

const CASES: readonly CorpusCase[] = [
  {
    name: 'accepts a good chain (root → intermediate → leaf)',
    build: (pki, { root, inter }) => ({ roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'good-leaf', { subject: '/CN=alice/O=developers', extensions: LEAF_EXTENSIONS }) }),
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'fails a chain exceeding the root\'s pathlen:0 (an intermediate CA under it, a system:masters leaf)',
    build: (pki) => {
      const root = pki.selfSigned('root-pathlen0', { extensions: ['basicConstraints = critical,CA:TRUE,pathlen:0', 'keyUsage = critical,keyCertSign,cRLSign', SKID] });
      const inter = pki.issue(root, 'inter-under-pathlen0', { extensions: INTERMEDIATE_EXTENSIONS });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'masters-leaf', { subject: '/CN=mallory/O=system:masters', extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'path length constraint exceeded',
    ours: /too many intermediates for path length constraint/,
  },
  {
    name: 'accepts one intermediate under a root with pathlen:1',
    build: (pki) => {
      const root = pki.selfSigned('root-pathlen1', { extensions: ['basicConstraints = critical,CA:TRUE,pathlen:1', 'keyUsage = critical,keyCertSign,cRLSign', SKID] });
      const inter = pki.issue(root, 'inter-under-pathlen1', { extensions: INTERMEDIATE_EXTENSIONS });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-under-pathlen1', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'fails two intermediates under a root with pathlen:1',
    build: (pki) => {
      const root = pki.selfSigned('root-pathlen1-deep', { extensions: ['basicConstraints = critical,CA:TRUE,pathlen:1', 'keyUsage = critical,keyCertSign,cRLSign', SKID] });
      const i1 = pki.issue(root, 'pathlen1-i1', { extensions: INTERMEDIATE_EXTENSIONS });
      const i2 = pki.issue(i1, 'pathlen1-i2', { extensions: INTERMEDIATE_EXTENSIONS });
      return { roots: [root], untrusted: [i1, i2], leaf: pki.issue(i2, 'leaf-pathlen1-deep', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'path length constraint exceeded',
    ours: /too many intermediates for path length constraint/,
  },
  {
    name: 'fails an intermediate that is not a CA (CA:FALSE, though keyCertSign)',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'inter-not-ca', { extensions: ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,keyCertSign', SKID, AKID] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-of-non-ca', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'invalid CA certificate',
    ours: /unknown authority.*parent certificate cannot sign this kind of certificate/,
  },
  {
    name: 'fails an intermediate without basicConstraints (a v3 certificate with keyCertSign)',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'inter-no-basic-constraints', { extensions: ['keyUsage = critical,keyCertSign', SKID, AKID] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-of-no-bc', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'invalid CA certificate',
    ours: /unknown authority.*parent certificate cannot sign this kind of certificate/,
  },
  {
    name: 'fails an issuer whose keyUsage lacks keyCertSign',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'inter-no-certsign', { extensions: ['basicConstraints = critical,CA:TRUE', 'keyUsage = critical,digitalSignature', SKID, AKID] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-of-no-certsign', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'key usage does not include certificate signing',
    ours: /unknown authority.*parent certificate cannot sign this kind of certificate/,
  },
  {
    name: 'accepts an intermediate without a keyUsage extension (no restriction)',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'inter-no-key-usage', { extensions: ['basicConstraints = critical,CA:TRUE', SKID, AKID] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-of-no-ku', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'fails an expired leaf',
    build: (pki, { root, inter }) => ({
      roots: [root],
      untrusted: [inter],
      leaf: pki.issue(inter, 'expired-leaf', { extensions: LEAF_EXTENSIONS, notBefore: new Date(Date.now() - 10 * DAY_MS), notAfter: new Date(Date.now() - DAY_MS) }),
    }),
    openssl: 'certificate has expired',
    ours: /certificate has expired or is not yet valid: current time \S+ is after/,
  },
  {
    name: 'fails an expired intermediate',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'expired-inter', { extensions: INTERMEDIATE_EXTENSIONS, notBefore: new Date(Date.now() - 30 * DAY_MS), notAfter: new Date(Date.now() - DAY_MS) });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-of-expired-inter', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'certificate has expired',
    ours: /current time \S+ is after/,
  },
  {
    name: 'fails an expired root',
    build: (pki) => {
      const root = pki.selfSigned('expired-root', { extensions: ROOT_EXTENSIONS, notBefore: new Date(Date.now() - 30 * DAY_MS), notAfter: new Date(Date.now() - DAY_MS) });
      return { roots: [root], untrusted: [], leaf: pki.issue(root, 'leaf-of-expired-root', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'certificate has expired',
    ours: /current time \S+ is after/,
  },
  {
    name: 'fails a leaf not yet valid',
    build: (pki, { root, inter }) => ({ roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'future-leaf', { extensions: LEAF_EXTENSIONS, notBefore: new Date(Date.now() + DAY_MS) }) }),
    openssl: 'certificate is not yet valid',
    ours: /not yet valid: current time \S+ is before/,
  },
  {
    name: 'fails a serverAuth-only leaf',
    build: (pki, { root, inter }) => ({ roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'server-only-leaf', { extensions: leafWith('extendedKeyUsage = serverAuth') }) }),
    openssl: 'unsuitable certificate purpose',
    ours: /incompatible key usage/,
  },
  {
    name: 'accepts a leaf without an EKU extension (any usage)',
    build: (pki, { root, inter }) => ({
      roots: [root],
      untrusted: [inter],
      leaf: pki.issue(inter, 'no-eku-leaf', { extensions: LEAF_EXTENSIONS.filter((l) => !l.startsWith('extendedKeyUsage')) }),
    }),
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'accepts a leaf whose only EKU is anyExtendedKeyUsage',
    build: (pki, { root, inter }) => ({ roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'any-eku-leaf', { extensions: leafWith('extendedKeyUsage = anyExtendedKeyUsage') }) }),
    openssl: 'unsuitable certificate purpose',
    ours: 'OK',
    goDiffers: 'Go treats ExtKeyUsageAny as "explicitly good for any usage" (verify.go: checkChainForKeyUsage / isValid); openssl -purpose sslclient wants the clientAuth OID itself',
  },
  {
    name: 'fails an intermediate whose EKU is serverAuth only (EKUs nest down the chain)',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'server-only-inter', { extensions: [...INTERMEDIATE_EXTENSIONS, 'extendedKeyUsage = serverAuth'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-of-server-only-inter', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'unsuitable certificate purpose',
    ours: /incompatible key usage/,
  },
  {
    name: 'accepts an intermediate whose EKUs include clientAuth',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'client-inter', { extensions: [...INTERMEDIATE_EXTENSIONS, 'extendedKeyUsage = serverAuth,clientAuth'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-of-client-inter', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'fails a leaf with an unknown critical extension',
    build: (pki, { root, inter }) => ({
      roots: [root],
      untrusted: [inter],
      leaf: pki.issue(inter, 'unknown-critical-leaf', { extensions: [...LEAF_EXTENSIONS, '1.3.6.1.4.1.55555.1 = critical,ASN1:UTF8String:must-understand'] }),
    }),
    openssl: 'unhandled critical extension',
    ours: /unhandled critical extension/,
  },
  {
    name: 'fails an intermediate with an unknown critical extension',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'unknown-critical-inter', { extensions: [...INTERMEDIATE_EXTENSIONS, '1.3.6.1.4.1.55555.2 = critical,ASN1:NULL'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'leaf-of-unknown-critical-inter', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'unhandled critical extension',
    ours: /unhandled critical extension/,
  },
  {
    name: 'fails a leaf DNS SAN outside the permitted name constraints',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'nc-inter-dns', { extensions: [...INTERMEDIATE_EXTENSIONS, 'nameConstraints = critical,permitted;DNS:example.com,permitted;email:example.com'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'nc-dns-violation', { subject: '/CN=alice', extensions: [...LEAF_EXTENSIONS, 'subjectAltName = DNS:evil.org'] }) };
    },
    openssl: 'permitted subtree violation',
    ours: /not authorized to sign for this name: DNS name "evil.org" is not permitted by any constraint/,
  },
  {
    name: 'fails a leaf email SAN outside the permitted name constraints',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'nc-inter-email', { extensions: [...INTERMEDIATE_EXTENSIONS, 'nameConstraints = critical,permitted;DNS:example.com,permitted;email:example.com'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'nc-email-violation', { subject: '/CN=alice', extensions: [...LEAF_EXTENSIONS, 'subjectAltName = email:mallory@evil.org'] }) };
    },
    openssl: 'permitted subtree violation',
    ours: /email address "mallory@evil.org" is not permitted by any constraint/,
  },
  {
    name: 'fails a leaf DNS SAN inside an excluded subtree',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'nc-inter-excluded', { extensions: [...INTERMEDIATE_EXTENSIONS, 'nameConstraints = critical,excluded;DNS:evil.org'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'nc-excluded-violation', { subject: '/CN=alice', extensions: [...LEAF_EXTENSIONS, 'subjectAltName = DNS:www.evil.org'] }) };
    },
    openssl: 'excluded subtree violation',
    ours: /DNS name "www.evil.org" is excluded by constraint "evil.org"/,
  },
  {
    name: 'fails a root\'s name constraints violated two levels down',
    build: (pki) => {
      const root = pki.selfSigned('nc-root', { extensions: [...ROOT_EXTENSIONS, 'nameConstraints = critical,permitted;DNS:.corp.example'] });
      const inter = pki.issue(root, 'inter-under-nc-root', { extensions: INTERMEDIATE_EXTENSIONS });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'nc-root-violation', { subject: '/CN=alice', extensions: [...LEAF_EXTENSIONS, 'subjectAltName = DNS:api.example.org'] }) };
    },
    openssl: 'permitted subtree violation',
    ours: /DNS name "api.example.org" is not permitted by any constraint/,
  },
  {
    name: 'fails a leaf IP SAN outside the permitted IP range',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'nc-inter-ip', { extensions: [...INTERMEDIATE_EXTENSIONS, 'nameConstraints = critical,permitted;IP:10.0.0.0/255.0.0.0'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'nc-ip-violation', { subject: '/CN=alice', extensions: [...LEAF_EXTENSIONS, 'subjectAltName = IP:192.168.1.7'] }) };
    },
    openssl: 'permitted subtree violation',
    ours: /IP address "192.168.1.7" is not permitted by any constraint/,
  },
  {
    name: 'accepts leaf IP and URI SANs inside the permitted IP range and URI domain',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'nc-inter-ip-uri', { extensions: [...INTERMEDIATE_EXTENSIONS, 'nameConstraints = critical,permitted;IP:10.0.0.0/255.0.0.0,permitted;URI:.cluster.local'] });
      return {
        roots: [root],
        untrusted: [inter],
        leaf: pki.issue(inter, 'nc-ip-uri-permitted', { subject: '/CN=alice', extensions: [...LEAF_EXTENSIONS, 'subjectAltName = IP:10.1.2.3,URI:spiffe://ns.cluster.local/sa/alice'] }),
      };
    },
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'fails a leaf URI SAN outside the permitted URI domain',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'nc-inter-uri', { extensions: [...INTERMEDIATE_EXTENSIONS, 'nameConstraints = critical,permitted;URI:.cluster.local'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'nc-uri-violation', { subject: '/CN=alice', extensions: [...LEAF_EXTENSIONS, 'subjectAltName = URI:spiffe://evil.org/sa/alice'] }) };
    },
    openssl: 'permitted subtree violation',
    ours: /URI "spiffe:\/\/evil.org\/sa\/alice" is not permitted by any constraint/,
  },
  {
    name: 'accepts leaf SANs inside the permitted name constraints',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'nc-inter-ok', { extensions: [...INTERMEDIATE_EXTENSIONS, 'nameConstraints = critical,permitted;DNS:example.com,permitted;email:example.com'] });
      return {
        roots: [root],
        untrusted: [inter],
        leaf: pki.issue(inter, 'nc-permitted', { subject: '/CN=alice', extensions: [...LEAF_EXTENSIONS, 'subjectAltName = DNS:api.example.com,email:alice@example.com'] }),
      };
    },
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'accepts a CN outside the DNS name constraints when the leaf has no SAN',
    build: (pki, { root }) => {
      const inter = pki.issue(root, 'nc-inter-cn', { extensions: [...INTERMEDIATE_EXTENSIONS, 'nameConstraints = critical,permitted;DNS:example.com'] });
      return { roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'nc-cn-only', { subject: '/CN=evil.other.org', extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'permitted subtree violation',
    ours: 'OK',
    goDiffers: 'Go applies name constraints to SANs only and never reads the CN as a host name (since Go 1.15; verify.go isValid walks forEachSAN); openssl also checks a host-name-like CN when there is no DNS SAN',
  },
  {
    name: 'fails a leaf signed with SHA-1 (SHA1-RSA)',
    build: (pki) => {
      const root = pki.selfSigned('rsa-root', { key: 'rsa', extensions: ROOT_EXTENSIONS });
      return { roots: [root], untrusted: [], leaf: pki.issue(root, 'sha1-leaf', { key: 'rsa', digest: 'sha1', extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'OK',
    ours: /unknown authority.*insecure algorithm SHA1-RSA/,
    goDiffers: 'Go refuses SHA-1 signatures on certificates since 1.18 (InsecureAlgorithmError; the x509sha1 GODEBUG escape is gone in 1.24); openssl verify accepts them at its default security level',
  },
  {
    name: 'accepts an RSA chain signed with SHA-384',
    build: (pki) => {
      const root = pki.selfSigned('rsa-root-sha384', { key: 'rsa', extensions: ROOT_EXTENSIONS });
      return { roots: [root], untrusted: [], leaf: pki.issue(root, 'rsa-sha384-leaf', { key: 'rsa', digest: 'sha384', extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'fails a leaf whose subject key identifier is marked critical',
    build: (pki, { root, inter }) => ({ roots: [root], untrusted: [inter], leaf: pki.issue(inter, 'critical-skid-leaf', { extensions: [...LEAF_EXTENSIONS, 'subjectKeyIdentifier = critical,hash'] }) }),
    // Go's parser refuses the certificate outright (RFC 5280 4.2.1.2: it MUST be non-critical).
    openssl: 'unhandled critical extension',
    ours: /subject key identifier incorrectly marked critical/,
  },
  {
    name: 'fails a self-signed leaf not in the pool',
    build: (pki, { root }) => ({
      roots: [root],
      untrusted: [],
      leaf: pki.selfSigned('self-signed-leaf', { subject: '/CN=admin/O=system:masters', extensions: ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'extendedKeyUsage = clientAuth'] }),
    }),
    openssl: 'self-signed certificate',
    ours: /certificate signed by unknown authority/,
  },
  {
    name: 'fails a chain to a different root',
    build: (pki, { root }) => {
      const otherRoot = pki.selfSigned('other-root', { extensions: ROOT_EXTENSIONS });
      const otherInter = pki.issue(otherRoot, 'other-inter', { extensions: INTERMEDIATE_EXTENSIONS });
      return { roots: [root], untrusted: [otherInter], leaf: pki.issue(otherInter, 'other-leaf', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'unable to get local issuer certificate',
    ours: /certificate signed by unknown authority/,
  },
  {
    name: 'fails a leaf from a bogus intermediate that has the real one\'s name but another key',
    build: (pki, { root }) => {
      const bogus = pki.selfSigned('bogus-inter', { subject: '/CN=inter', extensions: ROOT_EXTENSIONS });
      return { roots: [root], untrusted: [bogus], leaf: pki.issue(bogus, 'leaf-of-bogus-inter', { subject: '/CN=mallory/O=system:masters', extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'self-signed certificate in certificate chain',
    ours: /certificate signed by unknown authority/,
  },
  {
    name: 'fails a leaf from a presented CA that claims the trusted root\'s name (intermediates are never roots)',
    build: (pki, { root }) => {
      const fakeRoot = pki.selfSigned('fake-root', { subject: '/CN=root', extensions: ROOT_EXTENSIONS });
      return { roots: [root], untrusted: [fakeRoot], leaf: pki.issue(fakeRoot, 'leaf-of-fake-root', { subject: '/CN=mallory/O=system:masters', extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'self-signed certificate in certificate chain',
    ours: /certificate signed by unknown authority/,
  },
  {
    name: 'accepts a good leaf sent with a bogus intermediate beside the real one',
    build: (pki, { root, inter }) => {
      const bogus = pki.selfSigned('bogus-inter-beside', { subject: '/CN=inter', extensions: ROOT_EXTENSIONS });
      return { roots: [root], untrusted: [bogus, inter], leaf: pki.issue(inter, 'leaf-with-bogus-beside', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'accepts a 3-level chain (root → i1 → i2 → leaf), intermediates sent out of order',
    build: (pki, { root }) => {
      const i1 = pki.issue(root, 'level-i1', { extensions: INTERMEDIATE_EXTENSIONS });
      const i2 = pki.issue(i1, 'level-i2', { extensions: INTERMEDIATE_EXTENSIONS });
      return { roots: [root], untrusted: [i1, i2], leaf: pki.issue(i2, 'level-leaf', { subject: '/CN=deep/O=developers', extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'OK',
    ours: 'OK',
  },
  {
    name: 'fails a 3-level chain whose middle intermediate is not sent',
    build: (pki, { root }) => {
      const i1 = pki.issue(root, 'gap-i1', { extensions: INTERMEDIATE_EXTENSIONS });
      const i2 = pki.issue(i1, 'gap-i2', { extensions: INTERMEDIATE_EXTENSIONS });
      return { roots: [root], untrusted: [i2], leaf: pki.issue(i2, 'gap-leaf', { extensions: LEAF_EXTENSIONS }) };
    },
    openssl: 'unable to get local issuer certificate',
    ours: /certificate signed by unknown authority/,
  },
];

let pki: OpensslChains;
const chains = new Map<string, Chain>();
const table: string[] = [];

beforeAll(() => {
  pki = new OpensslChains();
  const root = pki.selfSigned('root', { extensions: ROOT_EXTENSIONS });
  const inter = pki.issue(root, 'inter', { extensions: INTERMEDIATE_EXTENSIONS });
  for (const c of CASES) chains.set(c.name, c.build(pki, { root, inter }));
}, 120_000);

afterAll(() => {
  pki?.remove();
  if (process.env.CHAIN_CORPUS_TABLE) console.log(['| case | openssl verify | ours |', '|---|---|---|', ...table].join('\n'));
});

const firstError = (output: string) => /error \d+ at \d+ depth lookup: (.*)/.exec(output)?.[1] ?? output.split('\n').pop() ?? output;

describe('chain corpus: openssl verify and ours', () => {
  test.each(CASES)('$name', (c) => {
    // GIVEN a chain built with openssl
    const chain = chains.get(c.name)!;

    // WHEN openssl verify and our verifier judge it
    const reference = pki.verify(chain.roots, chain.untrusted, chain.leaf);
    const pool = CertPool.fromPem(chain.roots.map((r) => r.pem).join(''), 'corpus roots');
    const ours = pool.verify([chain.leaf.x509, ...chain.untrusted.map((u) => u.x509)]);
    table.push(`| ${c.name} | ${reference.ok ? 'OK' : firstError(reference.output)} | ${ours.ok ? 'OK' : ours.error}${c.goDiffers ? ' (Go differs from openssl)' : ''} |`);

    // THEN openssl says what the corpus records
    if (c.openssl === 'OK') expect(reference).toMatchObject({ ok: true, output: expect.stringMatching(/: OK$/) });
    else expect(reference).toMatchObject({ ok: false, output: expect.stringContaining(c.openssl) });
    // AND so do we
    if (c.ours === 'OK') expect(ours).toMatchObject({ ok: true });
    else expect(ours).toMatchObject({ ok: false, error: expect.stringMatching(c.ours) });
    // AND we agree with openssl, except where Go deliberately decides otherwise
    expect(ours.ok).toBe(c.goDiffers ? !reference.ok : reference.ok);
  });

  test('the pathlen:0 leaf is refused for every presentation order and with its root sent along', () => {
    // GIVEN the system:masters chain under a pathlen:0 root
    const chain = chains.get(CASES[1].name)!;
    const pool = CertPool.fromPem(chain.roots[0].pem, 'pathlen:0 root');
    // WHEN it is presented with the root as an extra intermediate, or twice over
    for (const untrusted of [[...chain.untrusted, chain.roots[0]], [chain.roots[0], ...chain.untrusted], [...chain.untrusted, ...chain.untrusted]]) {
      // THEN it still fails on the path length
      expect(pool.verify([chain.leaf.x509, ...untrusted.map((u) => u.x509)])).toMatchObject({ ok: false, error: expect.stringMatching(/path length constraint/) });
    }
  });
});

// ---- Through the real server over TLS ----------------------------------------------------------------

const FLUNDERS = '/apis/wardle.example.com/v1alpha1/namespaces/default/flunders';

describe('through the server over TLS (x509 and front-proxy authentication)', () => {
  let env: ServerEnvironment;
  let e2e: OpensslChains;
  let reviews: SubjectAccessReviewSpec[];
  const people: Record<'alice' | 'mallory' | 'proxy' | 'badProxy', { cert: string; key: string }> = {} as never;

  beforeAll(async () => {
    // GIVEN a client CA bundle and a request-header CA bundle that each also trust a pathlen:0
    // root, under which an intermediate CA (that it may not have) issued system:masters certificates
    e2e = new OpensslChains();
    const pathlen0 = e2e.selfSigned('e2e-pathlen0-root', { extensions: ['basicConstraints = critical,CA:TRUE,pathlen:0', 'keyUsage = critical,keyCertSign,cRLSign', SKID] });
    const rogue = e2e.issue(pathlen0, 'e2e-rogue-inter', { extensions: INTERMEDIATE_EXTENSIONS });
    const userRoot = e2e.selfSigned('e2e-user-root', { extensions: ROOT_EXTENSIONS });
    const userInter = e2e.issue(userRoot, 'e2e-user-inter', { extensions: INTERMEDIATE_EXTENSIONS });
    const proxyRoot = e2e.selfSigned('e2e-proxy-root', { extensions: ROOT_EXTENSIONS });
    const proxyInter = e2e.issue(proxyRoot, 'e2e-proxy-inter', { extensions: INTERMEDIATE_EXTENSIONS });
    const presented = (leaf: OpensslCertificate, inter: OpensslCertificate) => ({ cert: leaf.pem + inter.pem, key: readFileSync(leaf.keyPath, 'utf8') });
    people.alice = presented(e2e.issue(userInter, 'e2e-alice', { subject: '/CN=alice/O=developers', extensions: LEAF_EXTENSIONS }), userInter);
    people.mallory = presented(e2e.issue(rogue, 'e2e-mallory', { subject: '/CN=mallory/O=system:masters', extensions: LEAF_EXTENSIONS }), rogue);
    people.proxy = presented(e2e.issue(proxyInter, 'e2e-proxy', { subject: '/CN=front-proxy-client', extensions: LEAF_EXTENSIONS }), proxyInter);
    people.badProxy = presented(e2e.issue(rogue, 'e2e-bad-proxy', { subject: '/CN=front-proxy-client', extensions: LEAF_EXTENSIONS }), rogue);
    const clientCaFile = e2e.bundle('client-ca.pem', [userRoot, pathlen0]);
    const requestheaderCaFile = e2e.bundle('requestheader-ca.pem', [proxyRoot, pathlen0]);
    env = await startServerEnvironment({
      extraArgs: [`--client-ca-file=${clientCaFile}`, `--requestheader-client-ca-file=${requestheaderCaFile}`, '--requestheader-allowed-names=front-proxy-client'],
    });
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
    e2e?.remove();
  });

  beforeEach(() => {
    const seen: SubjectAccessReviewSpec[] = [];
    reviews = seen;
    env.fake.authorize = (spec) => {
      seen.push(spec);
      return { allowed: true, reason: 'allowed by the corpus stand-in' };
    };
  });

  /** One request on a fresh TLS connection with the given client chain. */
  function get(who: { cert: string; key: string }, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: env.server.port, path: FLUNDERS, ca: env.servingCa.certPem, servername: env.serverName, cert: who.cert, key: who.key, headers, agent: false },
        (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  test('a good client chain (root → intermediate → leaf) is the user it names', async () => {
    const res = await get(people.alice);
    expect(res.status).toBe(200);
    expect(reviews.map((r) => [r.user, r.groups])).toEqual([['alice', ['developers', 'system:authenticated']]]);
  });

  test('fails the system:masters leaf under a pathlen:0 root: 401, never authorized', async () => {
    const res = await get(people.mallory);
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toMatchObject({ kind: 'Status', reason: 'Unauthorized', code: 401 });
    expect(reviews).toEqual([]);
  });

  test('a good front-proxy chain makes the headers the user', async () => {
    const res = await get(people.proxy, { 'X-Remote-User': 'bob', 'X-Remote-Group': 'team-b' });
    expect(res.status).toBe(200);
    expect(reviews.map((r) => [r.user, r.groups])).toEqual([['bob', ['team-b', 'system:authenticated']]]);
  });

  test('fails a front-proxy certificate under the pathlen:0 root that claims system:masters: 401', async () => {
    const res = await get(people.badProxy, { 'X-Remote-User': 'system:admin', 'X-Remote-Group': 'system:masters' });
    expect(res.status).toBe(401);
    expect(reviews).toEqual([]);
  });
});
