/**
 * Certificates for tests: CAs, intermediates and leaves (server, client, front-proxy client).
 * Keys come from node:crypto (fast, native); certificates are built and signed with node-forge.
 * Every test that needs a PKI makes its own, so nothing is shared between files.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as forge from 'node-forge';

export interface TestCertificate {
  /** The certificate alone, PEM. */
  readonly certPem: string;
  /** Its private key, PKCS#1 PEM. */
  readonly keyPem: string;
  /** The certificate followed by the intermediates up to (not including) the root: what a peer presents. */
  readonly chainPem: string;
  readonly subjectCn: string;
}

export interface TestCa extends TestCertificate {
  readonly isCa: true;
}

export interface ValidityOptions {
  /** @default - one hour ago */
  readonly notBefore?: Date;
  /** @default - notBefore + 30 days */
  readonly notAfter?: Date;
}

export interface CaOptions extends ValidityOptions {
  /** Sign with this CA instead of self-signing: makes an intermediate CA. @default - self-signed root */
  readonly issuer?: TestCa;
  /** Extended key usages put on the CA certificate itself (Go checks EKUs down the chain). @default - none (any usage) */
  readonly extendedKeyUsages?: readonly ('serverAuth' | 'clientAuth')[];
}

export interface LeafOptions extends ValidityOptions {
  readonly cn: string;
  /** Subject O values: the groups of an x509 user. @default [] */
  readonly organizations?: readonly string[];
  /** DNS SANs. @default [] */
  readonly dnsNames?: readonly string[];
  /** IP SANs. @default [] */
  readonly ipAddresses?: readonly string[];
  /** Extended key usages. `[]` omits the extension. @default ['clientAuth'] */
  readonly extendedKeyUsages?: readonly ('serverAuth' | 'clientAuth')[];
}

const HOUR_MS = 3_600_000;

function newKey(): { forgeKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; pem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(pem);
  return { forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), pem };
}

/** A positive serial number of 16 random bytes (the high bit cleared: DER integers are signed). */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;
  return bytes.toString('hex');
}

function validity(cert: forge.pki.Certificate, options: ValidityOptions): void {
  cert.validity.notBefore = options.notBefore ?? new Date(Date.now() - HOUR_MS);
  cert.validity.notAfter = options.notAfter ?? new Date(cert.validity.notBefore.getTime() + 30 * 24 * HOUR_MS);
}

function ekuExtension(usages: readonly ('serverAuth' | 'clientAuth')[]): forge.pki.CertificateField[] {
  if (usages.length === 0) return [];
  return [{ name: 'extKeyUsage', serverAuth: usages.includes('serverAuth'), clientAuth: usages.includes('clientAuth') } as forge.pki.CertificateField];
}

function sign(cert: forge.pki.Certificate, issuerCert: forge.pki.Certificate, issuerKey: forge.pki.rsa.PrivateKey): void {
  cert.setIssuer(issuerCert.subject.attributes);
  cert.sign(issuerKey, forge.md.sha256.create());
}

function issuerChain(issuer: TestCa | undefined): string {
  // An intermediate's chainPem holds itself and its own intermediates; a root's is itself only
  // and is not sent by peers, so it is dropped.
  if (!issuer) return '';
  const issuerCert = forge.pki.certificateFromPem(issuer.certPem);
  const selfSigned = issuerCert.isIssuer(issuerCert);
  return selfSigned ? '' : issuer.chainPem;
}

/** A root CA (self-signed) or, with `issuer`, an intermediate CA. */
export function makeCa(cn: string, options: CaOptions = {}): TestCa {
  const key = newKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.publicKey;
  cert.serialNumber = serial();
  validity(cert, options);
  cert.setSubject([{ name: 'commonName', value: cn }]);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    ...ekuExtension(options.extendedKeyUsages ?? []),
  ]);
  if (options.issuer) {
    sign(cert, forge.pki.certificateFromPem(options.issuer.certPem), forge.pki.privateKeyFromPem(options.issuer.keyPem));
  } else {
    sign(cert, cert, key.forgeKey);
  }
  const certPem = forge.pki.certificateToPem(cert);
  return { certPem, keyPem: key.pem, chainPem: certPem + issuerChain(options.issuer), subjectCn: cn, isCa: true };
}

/** A leaf certificate signed by `issuer`: a client certificate by default, a server one with `extendedKeyUsages: ['serverAuth']`. */
export function makeLeaf(issuer: TestCa, options: LeafOptions): TestCertificate {
  const key = newKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.publicKey;
  cert.serialNumber = serial();
  validity(cert, options);
  cert.setSubject([
    { name: 'commonName', value: options.cn },
    ...(options.organizations ?? []).map((o) => ({ name: 'organizationName', value: o })),
  ]);
  const altNames = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(options.ipAddresses ?? []).map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    ...ekuExtension(options.extendedKeyUsages ?? ['clientAuth']),
    ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
  ]);
  sign(cert, forge.pki.certificateFromPem(issuer.certPem), forge.pki.privateKeyFromPem(issuer.keyPem));
  const certPem = forge.pki.certificateToPem(cert);
  return { certPem, keyPem: key.pem, chainPem: certPem + issuerChain(issuer), subjectCn: options.cn };
}

/** A server certificate for `localhost` and 127.0.0.1 (plus `dnsNames`). */
export function makeServerCert(issuer: TestCa, dnsNames: readonly string[] = []): TestCertificate {
  return makeLeaf(issuer, {
    cn: dnsNames[0] ?? 'localhost',
    dnsNames: ['localhost', ...dnsNames],
    ipAddresses: ['127.0.0.1'],
    extendedKeyUsages: ['serverAuth'],
  });
}
