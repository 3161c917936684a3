import { isIP } from 'node:net';
import * as forge from 'node-forge';
import { isDns1123Label, isDns1123Subdomain } from '../../apis/validation';
import {
  _checkCommonName,
  _checkKeyBits,
  _checkNow,
  _checkValidityDays,
  _commonNameSubject,
  _copyName,
  _generateRsaKeyPair,
  _randomSerialHex,
  _signSha256,
  _validity,
} from './_internal';
import { CertificateKeyPair } from './certificate-authority';
import { PkiError } from './pki-error';

/** The cluster DNS domain Kubernetes uses unless the cluster was set up otherwise. */
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

export interface IssueServingCertificateOptions {
  /** The CA that signs the certificate (its certificate and private key, PEM). */
  readonly ca: CertificateKeyPair;
  /** Common name of the certificate. Clients ignore it and check the DNS names. */
  readonly commonName: string;
  /**
   * DNS subject alternative names, e.g. from `servingDnsNames()`. The aggregator checks
   * `<service>.<namespace>.svc`.
   */
  readonly dnsNames: readonly string[];
  /** Days from `now` until the certificate expires; it must not outlive the CA. */
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
 * The names a Service is reached by inside the cluster, the SANs a serving certificate needs:
 * `[svc, svc.ns, svc.ns.svc, svc.ns.svc.<clusterDomain>]`.
 */
export function servingDnsNames(service: string, namespace: string, clusterDomain: string = DEFAULT_CLUSTER_DOMAIN): string[] {
  if (!isDns1123Label(service)) {
    throw new PkiError(`service "${service}" is not a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)`);
  }
  if (!isDns1123Label(namespace)) {
    throw new PkiError(`namespace "${namespace}" is not a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)`);
  }
  if (!isDns1123Subdomain(clusterDomain)) {
    throw new PkiError(
      `clusterDomain "${clusterDomain}" is not a valid DNS subdomain (lowercase letters, digits, '-' and '.', e.g. "cluster.local")`,
    );
  }
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.${clusterDomain}`];
}

/**
 * Issues a TLS serving certificate signed by `ca`: the DNS SANs given, extendedKeyUsage
 * serverAuth only, keyUsage digitalSignature + keyEncipherment (critical), basicConstraints
 * CA:FALSE, subject and authority key identifiers, SHA-256 with RSA, a positive random serial.
 * Throws a PkiError if the certificate would outlive the CA.
 */
export function issueServingCertificate(options: IssueServingCertificateOptions): CertificateKeyPair {
  _checkDnsNames(options.dnsNames);
  return issueCertificate({ ...options, extendedKeyUsages: ['serverAuth'] });
}

/** The extended key usages a leaf certificate can carry. */
export type ExtendedKeyUsage = 'serverAuth' | 'clientAuth';

export interface IssueCertificateOptions {
  /** The CA that signs the certificate (its certificate and private key, PEM). */
  readonly ca: CertificateKeyPair;
  /** Common name of the certificate (a client certificate's user name; servers' clients check the SANs). */
  readonly commonName: string;
  /** DNS subject alternative names. @default [] */
  readonly dnsNames?: readonly string[];
  /** IP subject alternative names, IPv4 or IPv6. @default [] */
  readonly ipAddresses?: readonly string[];
  /** At least one; a certificate with serverAuth needs at least one DNS or IP SAN. */
  readonly extendedKeyUsages: readonly ExtendedKeyUsage[];
  /** Days from `now` until the certificate expires; it must not outlive the CA. */
  readonly validityDays: number;
  /** The issue time (notBefore is 5 minutes earlier, for clock skew). @default - new Date() */
  readonly now?: Date;
  /** RSA modulus length in bits; less than 2048 is refused. @default 2048 */
  readonly keyBits?: number;
}

/**
 * Issues a leaf certificate signed by `ca` for the usages given: `issueServingCertificate` for
 * any usage, e.g. an etcd member's certificate (serverAuth + clientAuth, DNS and IP SANs) or a
 * client certificate (clientAuth, no SANs). Same extensions, key and serial rules.
 */
export function issueCertificate(options: IssueCertificateOptions): CertificateKeyPair {
  _checkCommonName('commonName', options.commonName);
  const dnsNames = options.dnsNames ?? [];
  const ipAddresses = options.ipAddresses ?? [];
  if (dnsNames.length > 0) _checkDnsNames(dnsNames);
  _checkIpAddresses(ipAddresses);
  _checkExtendedKeyUsages(options.extendedKeyUsages, dnsNames.length + ipAddresses.length);
  _checkValidityDays('validityDays', options.validityDays);
  const keyBits = _checkKeyBits(options.keyBits);
  const now = _checkNow(options.now);
  const { caCert, caKey } = _parseCa(options.ca);
  const { notBefore, notAfter } = _validity(now, options.validityDays);

  if (now.getTime() < caCert.validity.notBefore.getTime()) {
    throw new PkiError(
      `the CA "${_cn(caCert)}" is not valid yet at ${now.toISOString()} (its notBefore is ${caCert.validity.notBefore.toISOString()})`,
    );
  }
  if (notAfter.getTime() > caCert.validity.notAfter.getTime()) {
    const what = options.extendedKeyUsages.includes('serverAuth') ? 'serving certificate' : 'client certificate';
    throw new PkiError(
      `the ${what} would outlive its CA: it would expire at ${notAfter.toISOString()} ` +
        `(validityDays ${options.validityDays}) but the CA "${_cn(caCert)}" expires at ${caCert.validity.notAfter.toISOString()} ` +
        `(expected a CA that outlives the certificate: rotate the CA or shorten validityDays)`,
    );
  }

  const keys = _generateRsaKeyPair(keyBits);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = _randomSerialHex();
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject(_commonNameSubject(options.commonName));
  cert.setIssuer(_copyName(caCert.subject.attributes));
  const altNames = [...dnsNames.map((value) => ({ type: 2, value })), ...ipAddresses.map((ip) => ({ type: 7, ip }))];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: options.extendedKeyUsages.includes('serverAuth'), clientAuth: options.extendedKeyUsages.includes('clientAuth') },
    ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: _keyIdentifierOf(caCert) },
  ]);
  return { certPem: _signSha256(cert, caKey), keyPem: keys.keyPem };
}

function _checkIpAddresses(ipAddresses: readonly string[]): void {
  for (const ip of ipAddresses) {
    if (typeof ip !== 'string' || isIP(ip) === 0) {
      throw new PkiError(`ipAddresses entry ${JSON.stringify(ip)} is not an IP address (expected e.g. "127.0.0.1" or "::1")`);
    }
  }
}

function _checkExtendedKeyUsages(usages: readonly ExtendedKeyUsage[], sanCount: number): void {
  const known: readonly string[] = ['serverAuth', 'clientAuth'];
  if (!Array.isArray(usages) || usages.length === 0 || usages.some((usage) => !known.includes(usage))) {
    throw new PkiError(`extendedKeyUsages ${JSON.stringify(usages)} is not valid (expected one or both of "serverAuth", "clientAuth")`);
  }
  if (usages.includes('serverAuth') && sanCount === 0) {
    throw new PkiError('a certificate with extendedKeyUsages "serverAuth" has no dnsNames or ipAddresses (expected at least one: clients check the SANs)');
  }
}

/** Lowercase DNS names, optionally with a leading `*.` wildcard label; at least one; no duplicates. */
function _checkDnsNames(dnsNames: readonly string[]): void {
  if (!Array.isArray(dnsNames) || dnsNames.length === 0) {
    throw new PkiError(`dnsNames ${JSON.stringify(dnsNames)} is empty (expected at least one DNS name, e.g. "<service>.<namespace>.svc")`);
  }
  const seen = new Set<string>();
  for (const name of dnsNames) {
    const host = typeof name === 'string' && name.startsWith('*.') ? name.slice(2) : name;
    if (typeof host !== 'string' || !isDns1123Subdomain(host)) {
      throw new PkiError(
        `dnsNames entry ${JSON.stringify(name)} is not a valid DNS name ` +
          `(expected lowercase letters, digits, '-' and '.', at most 253 characters, optionally starting with "*.")`,
      );
    }
    if (seen.has(name)) throw new PkiError(`dnsNames entry "${name}" appears twice (expected each DNS name once)`);
    seen.add(name);
  }
}

function _parseCa(ca: CertificateKeyPair): { caCert: forge.pki.Certificate; caKey: forge.pki.rsa.PrivateKey } {
  let caCert: forge.pki.Certificate;
  let caKey: forge.pki.rsa.PrivateKey;
  try {
    caCert = forge.pki.certificateFromPem(ca.certPem);
  } catch (e) {
    throw new PkiError(`ca.certPem is not a PEM RSA certificate (${(e as Error).message})`);
  }
  try {
    caKey = forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey;
  } catch (e) {
    throw new PkiError(`ca.keyPem is not an unencrypted PEM RSA private key (${(e as Error).message})`);
  }
  const basicConstraints = caCert.getExtension('basicConstraints') as { cA?: boolean } | undefined;
  if (basicConstraints?.cA !== true) {
    throw new PkiError(`ca.certPem "${_cn(caCert)}" is not a CA certificate (expected basicConstraints CA:TRUE)`);
  }
  const publicKey = caCert.publicKey as forge.pki.rsa.PublicKey;
  if (!publicKey.n.equals(caKey.n) || !publicKey.e.equals(caKey.e)) {
    throw new PkiError(`ca.keyPem does not match ca.certPem "${_cn(caCert)}" (expected the CA certificate's own private key)`);
  }
  return { caCert, caKey };
}

/** The CA's own subject key identifier if it has one, else the RFC 5280 §4.2.1.2 method (1) hash. */
function _keyIdentifierOf(caCert: forge.pki.Certificate): string {
  const ski = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  return ski?.subjectKeyIdentifier !== undefined
    ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
    : caCert.generateSubjectKeyIdentifier().getBytes();
}

function _cn(cert: forge.pki.Certificate): string {
  const field = cert.subject.getField('CN') as { value?: string } | null;
  return String(field?.value ?? cert.subject.hash);
}
