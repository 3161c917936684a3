import * as forge from 'node-forge';
import {
  _checkCommonName,
  _checkKeyBits,
  _checkNow,
  _checkValidityDays,
  _commonNameSubject,
  _generateRsaKeyPair,
  _randomSerialHex,
  _signSha256,
  _validity,
} from './_internal';

/** A certificate and its private key, both PEM. */
export interface CertificateKeyPair {
  /** The certificate, `-----BEGIN CERTIFICATE-----`. */
  readonly certPem: string;
  /** Its private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`) (Go's tls.X509KeyPair and Node accept it). */
  readonly keyPem: string;
}

export interface CreateCertificateAuthorityOptions {
  /** Common name of the CA, e.g. `wardle-apiserver-ca`. 1 to 64 characters. */
  readonly commonName: string;
  /** Days from `now` until the CA expires. It must outlive every certificate it issues. */
  readonly validityDays: number;
  /**
   * The issue time. notBefore is `now` minus 5 minutes (clock skew); notAfter is `now` plus
   * `validityDays`.
   * @default - new Date()
   */
  readonly now?: Date;
  /**
   * RSA modulus length in bits; less than 2048 is refused.
   * @default 2048
   */
  readonly keyBits?: number;
}

/**
 * Creates a self-signed root CA: basicConstraints CA:TRUE (critical), keyUsage keyCertSign and
 * cRLSign (critical), subject key identifier, SHA-256 with RSA, a positive random serial.
 */
export function createCertificateAuthority(options: CreateCertificateAuthorityOptions): CertificateKeyPair {
  _checkCommonName('commonName', options.commonName);
  _checkValidityDays('validityDays', options.validityDays);
  const keyBits = _checkKeyBits(options.keyBits);
  const now = _checkNow(options.now);

  const keys = _generateRsaKeyPair(keyBits);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = _randomSerialHex();
  const { notBefore, notAfter } = _validity(now, options.validityDays);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  const name = _commonNameSubject(options.commonName);
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  return { certPem: _signSha256(cert, keys.privateKey), keyPem: keys.keyPem };
}
