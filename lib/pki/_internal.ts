import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import * as forge from 'node-forge';
import { PkiError } from './pki-error';

/** The smallest RSA modulus we issue: NIST SP 800-131A, and what Kubernetes tooling expects. */
const MIN_KEY_BITS = 2048;
const DEFAULT_KEY_BITS = 2048;
const MAX_KEY_BITS = 16384;
/** notBefore is backdated by this much so that a node whose clock lags can use a fresh certificate. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
export const _DAY_MS = 24 * 60 * 60 * 1000;
/** X.520 ub-common-name; openssl and Go refuse longer common names. */
export const _MAX_COMMON_NAME_LENGTH = 64;

export interface _KeyPair {
  readonly privateKey: forge.pki.rsa.PrivateKey;
  readonly publicKey: forge.pki.rsa.PublicKey;
  /** PKCS#8 ("BEGIN PRIVATE KEY"), as written by Node. */
  readonly keyPem: string;
}

/** RSA key generation through Node's native crypto: forge's pure-JS generator takes seconds. */
export function _generateRsaKeyPair(keyBits: number): _KeyPair {
  const { privateKey: keyPem } = generateKeyPairSync('rsa', {
    modulusLength: keyBits,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const privateKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const publicKey = forge.pki.rsa.setPublicKey(privateKey.n, privateKey.e);
  return { privateKey, publicKey, keyPem };
}

/**
 * A random positive serial of 16 bytes (RFC 5280 §4.1.2.2: at most 20 octets, positive; CA/B
 * Baseline Requirements: at least 64 random bits). The top bit is cleared so the DER INTEGER is
 * never negative (Go ≥ 1.23 rejects negative serials) and the next bit is set so the first
 * octet is never zero, which would make the DER encoding non-minimal (Go rejects that too):
 * 126 random bits remain.
 */
export function _randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/** `now` to the whole second, since X.509 times carry no fractions. */
function _truncateToSecond(now: Date): Date {
  return new Date(Math.floor(now.getTime() / 1000) * 1000);
}

export function _validity(now: Date, validityDays: number): { notBefore: Date; notAfter: Date } {
  const start = _truncateToSecond(now);
  return {
    notBefore: new Date(start.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(start.getTime() + validityDays * _DAY_MS),
  };
}

export function _checkNow(now: Date | undefined): Date {
  const value = now ?? new Date();
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new PkiError(`now "${String(now)}" is not a valid Date (expected a Date with a time value)`);
  }
  return value;
}

export function _checkValidityDays(option: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new PkiError(`${option} ${JSON.stringify(value)} is not a positive integer (expected a whole number of days, at least 1)`);
  }
  // Date arithmetic stays exact far beyond this; it rules out typos that overflow X.509 times.
  if (value > 36500 * 10) {
    throw new PkiError(`${option} ${value} is too large (expected at most ${36500 * 10} days)`);
  }
}

/** The lifetimes of a CA and of the serving certificates it signs: whole days each, the CA's the longer. */
export function _checkValidities(certValidityDays: number, caValidityDays: number): void {
  _checkValidityDays('certValidityDays', certValidityDays);
  _checkValidityDays('caValidityDays', caValidityDays);
  if (caValidityDays <= certValidityDays) {
    throw new PkiError(
      `caValidityDays ${caValidityDays} is not greater than certValidityDays ${certValidityDays} ` +
        `(expected the CA to outlive the serving certificates it signs)`,
    );
  }
}

export function _checkKeyBits(keyBits: number | undefined): number {
  const value = keyBits ?? DEFAULT_KEY_BITS;
  if (!Number.isInteger(value) || value < MIN_KEY_BITS || value > MAX_KEY_BITS || value % 8 !== 0) {
    throw new PkiError(
      `keyBits ${JSON.stringify(value)} is not allowed (expected a multiple of 8 from ${MIN_KEY_BITS} to ${MAX_KEY_BITS}; ` +
        `RSA keys shorter than ${MIN_KEY_BITS} bits are refused by Kubernetes clients)`,
    );
  }
  return value;
}

export function _checkCommonName(option: string, value: string): void {
  // eslint-disable-next-line no-control-regex
  if (typeof value !== 'string' || value.trim() === '' || value.length > _MAX_COMMON_NAME_LENGTH || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new PkiError(
      `${option} ${JSON.stringify(value)} is not a valid common name ` +
        `(expected 1 to ${_MAX_COMMON_NAME_LENGTH} characters, not blank, no control characters)`,
    );
  }
}

/** A subject holding only a common name, encoded as UTF8String (RFC 5280 §4.1.2.6). */
export function _commonNameSubject(commonName: string): forge.pki.CertificateField[] {
  return [{ name: 'commonName', value: commonName, valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class }];
}

/**
 * Copies a parsed name for use as an issuer. forge keeps parsed UTF8String values as raw UTF-8
 * bytes but encodes them again when writing, so decode them first to keep the issuer
 * byte-identical to the CA's subject (Go and openssl compare the two byte for byte).
 */
export function _copyName(attributes: forge.pki.CertificateField[]): forge.pki.CertificateField[] {
  return attributes.map((a) => {
    const utf8 = (a.valueTagClass as unknown as number) === forge.asn1.Type.UTF8 && typeof a.value === 'string';
    return { type: a.type, value: utf8 ? forge.util.decodeUtf8(a.value as string) : a.value, valueTagClass: a.valueTagClass };
  });
}

/**
 * Signs `cert` with SHA-256 and RSA as forge's `cert.sign(key, sha256)` does, but with Node's
 * OpenSSL: forge signs in pure JavaScript (~35-50 ms a certificate), OpenSSL in ~1 ms, and
 * PKCS#1 v1.5 signatures are deterministic, so the certificate is byte for byte the same.
 */
export function _signSha256(cert: forge.pki.Certificate, key: forge.pki.rsa.PrivateKey): string {
  cert.md = forge.md.sha256.create();
  cert.signatureOid = cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption;
  // getTBSCertificate is public in forge (x509.js) but missing from @types/node-forge.
  cert.tbsCertificate = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  const tbs = Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), 'binary');
  cert.signature = sign('sha256', tbs, forge.pki.privateKeyToPem(key)).toString('binary');
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
}
