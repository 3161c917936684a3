import { X509Certificate } from 'node:crypto';
import { PkiError } from './pki-error';

/** What a certificate says about itself, read with Node's X509Certificate. */
export interface CertificateInfo {
  /** Distinguished name as Node prints it, e.g. `CN=wardle-apiserver`. */
  readonly subject: string;
  readonly issuer: string;
  /** DNS subject alternative names, in certificate order. */
  readonly dnsNames: string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Uppercase hex, as `openssl x509 -serial` prints it. */
  readonly serialNumberHex: string;
  /** `AB:CD:…`, as `openssl x509 -fingerprint -sha256` prints it. */
  readonly sha256Fingerprint: string;
  /** basicConstraints CA:TRUE. */
  readonly isCertificateAuthority: boolean;
  /** RSA modulus length or EC curve size in bits. */
  readonly publicKeyBits: number;
}

/** Reads the first certificate of a PEM string. Throws a PkiError if there is none. */
export function inspectCertificate(pem: string): CertificateInfo {
  const x509 = _parseCertificate(pem, 'certificate');
  const details = x509.publicKey.asymmetricKeyDetails;
  return {
    subject: x509.subject.replace(/\n/g, ', '),
    issuer: x509.issuer.replace(/\n/g, ', '),
    dnsNames: _dnsNamesOf(x509),
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    serialNumberHex: x509.serialNumber.toUpperCase(),
    sha256Fingerprint: x509.fingerprint256,
    isCertificateAuthority: x509.ca,
    publicKeyBits: details?.modulusLength ?? _curveBits(details?.namedCurve),
  };
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?\r?\n-----END \1-----/g;

/**
 * Splits a PEM bundle (e.g. a caBundle) into its blocks, each with `\n` line ends and a final
 * newline. Text between blocks is ignored; a BEGIN line without its END is a PkiError.
 */
export function splitPemBundle(bundle: string): string[] {
  const blocks = [...bundle.matchAll(PEM_BLOCK)].map((m) => `${m[0].replace(/\r\n/g, '\n')}\n`);
  const begins = bundle.match(/-----BEGIN [A-Z0-9 ]+-----/g)?.length ?? 0;
  if (begins !== blocks.length) {
    throw new PkiError(`PEM bundle has ${begins} BEGIN lines but only ${blocks.length} complete blocks (expected each BEGIN to have its END)`);
  }
  return blocks;
}

/** Whether `certPem`'s issuer is `caCertPem`'s subject and its signature verifies with the CA's key. */
export function isIssuedBy(certPem: string, caCertPem: string): boolean {
  const cert = _parseCertificate(certPem, 'certificate');
  const ca = _parseCertificate(caCertPem, 'CA certificate');
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

export function _parseCertificate(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (e) {
    throw new PkiError(`${what} is not a valid PEM certificate (${(e as Error).message})`);
  }
}

/** Node prints `DNS:a, DNS:b, IP Address:…`; names with ',' or ':' are JSON-quoted. */
function _dnsNamesOf(x509: X509Certificate): string[] {
  const san = x509.subjectAltName;
  if (san === undefined) return [];
  const entries = san.match(/(?:[^,"]|"(?:[^"\\]|\\.)*")+/g) ?? [];
  return entries
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => {
      const value = entry.slice('DNS:'.length);
      return value.startsWith('"') ? (JSON.parse(value) as string) : value;
    });
}

function _curveBits(namedCurve: string | undefined): number {
  const bits = /(\d{3})/.exec(namedCurve ?? '');
  return bits ? Number(bits[1]) : 0;
}
