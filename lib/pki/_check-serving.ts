import { createPrivateKey, createPublicKey, KeyObject, X509Certificate } from 'node:crypto';
import * as forge from 'node-forge';
import { splitPemBundle } from './inspect';

/**
 * The check behind `Certificates.fromPem` and the CLI's `--cert-mode existing`: the serving
 * certificate is refused unless the aggregator's Go TLS client (crypto/x509 `Verify` with
 * `ExtKeyUsageServerAuth`, roots = the APIService's caBundle, intermediates = what the server
 * sends after its certificate) would accept it for `<service>.<namespace>.svc`. Internal:
 * lib/pki/index.ts does not export this module.
 */

/** How the messages name each input: construct props by default, the CLI's flags and files from the CLI. */
export interface _ServingInputNames {
  readonly caBundlePem: string;
  readonly tlsCertPem: string;
  readonly tlsKeyPem: string;
}

export const _PROP_NAMES: _ServingInputNames = { caBundlePem: 'caBundlePem', tlsCertPem: 'tlsCertPem', tlsKeyPem: 'tlsKeyPem' };

export interface _ServingPems {
  readonly caBundlePem: string;
  readonly tlsCertPem: string;
  readonly tlsKeyPem: string;
}

const OID = {
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  anyExtendedKeyUsage: '2.5.29.37.0',
} as const;

/** Signature algorithms Go refuses to verify (x509.InsecureAlgorithmError): SHA-1 and MD5/MD2 based. */
const INSECURE_SIGNATURES: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.2': 'MD2-RSA',
  '1.2.840.113549.1.1.4': 'MD5-RSA',
  '1.2.840.113549.1.1.5': 'SHA1-RSA',
  '1.3.14.3.2.29': 'SHA1-RSA',
  '1.2.840.10045.4.1': 'ECDSA-SHA1',
  '1.2.840.10040.4.3': 'DSA-SHA1',
};

/** Critical extensions Go's crypto/x509 understands; any other critical one fails verification (UnhandledCriticalExtension). */
const GO_HANDLED_CRITICAL = new Set([
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.15', // keyUsage
  '2.5.29.17', // subjectAltName
  '2.5.29.19', // basicConstraints
  '2.5.29.30', // nameConstraints
  '2.5.29.31', // cRLDistributionPoints
  '2.5.29.32', // certificatePolicies
  '2.5.29.33', // policyMappings
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.36', // policyConstraints
  '2.5.29.37', // extKeyUsage
  '2.5.29.54', // inhibitAnyPolicy
  '1.3.6.1.5.5.7.1.1', // authorityInfoAccess
]);

const EKU_NAMES: Readonly<Record<string, string>> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
  '2.5.29.37.0': 'anyExtendedKeyUsage',
};

/** What the checks read from a certificate's DER that Node's X509Certificate does not expose. */
interface _Profile {
  readonly signatureAlgorithm: string;
  /** undefined: no keyUsage extension (any usage). */
  readonly keyCertSign?: boolean;
  /** undefined: no basicConstraints extension. */
  readonly basicConstraints?: { readonly ca: boolean; readonly pathLen?: number };
  /** undefined: no extKeyUsage extension (any usage). */
  readonly extKeyUsages?: readonly string[];
  readonly unhandledCritical: readonly string[];
}

interface _Cert {
  readonly x509: X509Certificate;
  readonly profile: _Profile;
  /** How messages name it, e.g. `tlsCertPem`, `the intermediate "CN=…" in tlsCertPem`. */
  readonly label: string;
}

/**
 * Fails with a message naming the input (`names`) unless the aggregator will accept the
 * certificate: the chain (leaf, then intermediates from `tlsCertPem`, up to a CA of the bundle)
 * exists, every certificate in it is valid at `now`, every issuer has basicConstraints CA:TRUE
 * and keyCertSign (when it has a keyUsage extension) and admits its path length, no
 * certificate below the trust anchor is signed with SHA-1 or MD5, every certificate with an
 * extKeyUsage extension allows serverAuth (or any usage), no certificate has a critical
 * extension Go does not know, the key matches, and a DNS SAN covers `<service>.<namespace>.svc`
 * (the common name is ignored, as Go ignores it).
 */
export function _checkServingCertificate(
  pems: _ServingPems,
  request: { readonly serviceName: string; readonly namespace: string },
  now: Date,
  names: _ServingInputNames = _PROP_NAMES,
): void {
  const cas = _certificates(names.caBundlePem, pems.caBundlePem, 'the CA certificate(s) that signed the serving certificate').map((x509) => _cert(x509, `the CA "${_subject(x509)}" in ${names.caBundlePem}`));
  const [leafX509, ...intermediateX509s] = _certificates(names.tlsCertPem, pems.tlsCertPem, 'the serving certificate first, then any intermediates');
  const leaf = _cert(leafX509, names.tlsCertPem);
  const intermediates = intermediateX509s.map((x509) => _cert(x509, `the intermediate "${_subject(x509)}" in ${names.tlsCertPem}`));

  const host = `${request.serviceName}.${request.namespace}.svc`;
  if (leaf.x509.checkHost(host, { subject: 'never', partialWildcards: false, multiLabelWildcards: false }) === undefined) {
    throw new Error(
      `${names.tlsCertPem} is not valid for "${host}" (its names: ${leaf.x509.subjectAltName ?? 'none'}; ` +
        `expected a DNS subject alternative name "${host}", which the aggregator verifies; the common name is ignored)`,
    );
  }

  let key: KeyObject;
  try {
    key = createPrivateKey(pems.tlsKeyPem);
  } catch (e) {
    throw new Error(`${names.tlsKeyPem} is not a valid PEM private key (${(e as Error).message})`);
  }
  const der = (k: KeyObject): Buffer => k.export({ type: 'spki', format: 'der' });
  if (!der(createPublicKey(key)).equals(der(leaf.x509.publicKey))) {
    throw new Error(`${names.tlsKeyPem} does not match ${names.tlsCertPem} (expected the private key of the serving certificate)`);
  }

  const chain = _chain(leaf, intermediates, cas);
  if (chain === undefined) {
    throw new Error(
      `${names.tlsCertPem} (issuer ${_subject(leaf.x509, 'issuer')}) does not chain to ${names.caBundlePem} ` +
        `(expected it to be signed by one of: ${cas.map((ca) => _subject(ca.x509)).join('; ')})`,
    );
  }
  chain.forEach((cert, depth) => _checkInChain(cert, depth, chain, now));
}

/**
 * Leaf → intermediates → a CA of the bundle, by issuer name and signature; undefined if none.
 * Not `checkIssued`: OpenSSL's check behind it also refuses an issuer without keyCertSign, which
 * would hide the reason behind "does not chain".
 */
function _chain(leaf: _Cert, intermediates: readonly _Cert[], cas: readonly _Cert[]): _Cert[] | undefined {
  const issues = (child: _Cert, parent: _Cert): boolean => child.x509.issuer === parent.x509.subject && child.x509.verify(parent.x509.publicKey);
  // A leaf that is itself in the bundle is its own anchor, as Go's Verify takes it (a self-signed serving certificate as caBundle).
  if (cas.some((ca) => ca.x509.raw.equals(leaf.x509.raw))) return [leaf];
  const chain = [leaf];
  for (let depth = 0; depth <= intermediates.length; depth++) {
    const current = chain[chain.length - 1];
    const anchor = cas.find((ca) => issues(current, ca));
    if (anchor !== undefined) return [...chain, anchor];
    const next = intermediates.find((cert) => !chain.includes(cert) && issues(current, cert));
    if (next === undefined) return undefined;
    chain.push(next);
  }
  return undefined;
}

function _checkInChain(cert: _Cert, depth: number, chain: readonly _Cert[], now: Date): void {
  const { x509, profile, label } = cert;
  const isAnchor = depth === chain.length - 1;
  const notBefore = new Date(x509.validFrom);
  const notAfter = new Date(x509.validTo);
  if (now < notBefore || now > notAfter) {
    throw new Error(`${label} is valid from ${notBefore.toISOString()} to ${notAfter.toISOString()}, not now (${now.toISOString()}): Go refuses a chain holding it`);
  }
  if (profile.unhandledCritical.length > 0) {
    throw new Error(`${label} has a critical extension Go does not handle (${profile.unhandledCritical.join(', ')}): Go refuses it (expected it non-critical, or left out)`);
  }
  if (depth > 0) {
    const signed = chain[depth - 1];
    if (profile.basicConstraints?.ca !== true) {
      throw new Error(
        `${label} signs ${signed.label} but is not a CA (expected basicConstraints CA:TRUE on every issuer: ` +
          'Go refuses an intermediate without it, and openssl refuses either)',
      );
    }
    if (profile.keyCertSign === false) {
      throw new Error(`${label} signs ${signed.label} but its keyUsage lacks keyCertSign (expected keyCertSign on every issuer that has a keyUsage extension, RFC 5280 §4.2.1.3)`);
    }
    const below = depth - 1; // intermediates between it and the leaf
    const pathLen = profile.basicConstraints.pathLen;
    if (pathLen !== undefined && below > pathLen) {
      throw new Error(`${label} has pathLenConstraint ${pathLen} but ${below} intermediate(s) below it (Go refuses the chain: TooManyIntermediates)`);
    }
  }
  // The anchor's own signature is never checked (it is trusted as configured); every other one is.
  if (!isAnchor && INSECURE_SIGNATURES[profile.signatureAlgorithm] !== undefined) {
    throw new Error(
      `${label} is signed with ${INSECURE_SIGNATURES[profile.signatureAlgorithm]} (expected SHA-256 or stronger: Go has refused SHA-1 signatures since 1.18, ` +
        'the aggregator would fail with an x509 "insecure algorithm" error)',
    );
  }
  const usages = profile.extKeyUsages;
  if (usages !== undefined && !usages.includes(OID.serverAuth) && !usages.includes(OID.anyExtendedKeyUsage)) {
    const named = usages.map((oid) => EKU_NAMES[oid] ?? oid).join(', ') || 'none';
    throw new Error(
      `${label} ${depth === 0 ? 'is not for TLS servers' : 'does not allow its certificates to serve TLS'} (extended key usages: ${named}; ` +
        'expected serverAuth, anyExtendedKeyUsage or no extendedKeyUsage extension: the aggregator verifies for serverAuth down the whole chain)',
    );
  }
}

function _certificates(name: string, bundle: string, expected: string): X509Certificate[] {
  let blocks: string[];
  try {
    blocks = splitPemBundle(bundle).filter((block) => block.startsWith('-----BEGIN CERTIFICATE-----'));
  } catch (e) {
    throw new Error(`${name} is not a valid PEM bundle (${(e as Error).message})`);
  }
  if (blocks.length === 0) throw new Error(`${name} holds no PEM certificate (expected ${expected}, as "-----BEGIN CERTIFICATE-----" blocks)`);
  return blocks.map((pem) => {
    try {
      return new X509Certificate(pem);
    } catch (e) {
      throw new Error(`${name} is not a valid PEM certificate (${(e as Error).message})`);
    }
  });
}

function _cert(x509: X509Certificate, label: string): _Cert {
  return { x509, label, profile: _profile(x509) };
}

function _subject(x509: X509Certificate, field: 'subject' | 'issuer' = 'subject'): string {
  return x509[field].replace(/\n/g, ', ');
}

/** forge's DER parser, BIT STRINGs left as bytes (its types omit the options object it takes). */
function _fromDer(bytes: string): forge.asn1.Asn1 {
  const fromDer = forge.asn1.fromDer as unknown as (input: forge.util.ByteStringBuffer, options: { decodeBitStrings: boolean }) => forge.asn1.Asn1;
  return fromDer(forge.util.createBuffer(bytes), { decodeBitStrings: false });
}

/** Reads the signature algorithm and the extensions the checks need from the DER, with forge's ASN.1 parser. */
function _profile(x509: X509Certificate): _Profile {
  const certificate = _fromDer(x509.raw.toString('binary'));
  const [tbs, signatureAlgorithm] = certificate.value as forge.asn1.Asn1[];
  const oidOf = (node: forge.asn1.Asn1): string => forge.asn1.derToOid(node.value as string);
  const extensionsTag = (tbs.value as forge.asn1.Asn1[]).find((node) => node.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && node.type === 3);
  const extensions = extensionsTag === undefined ? [] : ((extensionsTag.value as forge.asn1.Asn1[])[0].value as forge.asn1.Asn1[]);
  let keyCertSign: boolean | undefined;
  let basicConstraints: _Profile['basicConstraints'];
  let extKeyUsages: string[] | undefined;
  const unhandledCritical: string[] = [];
  for (const extension of extensions) {
    const parts = extension.value as forge.asn1.Asn1[];
    const oid = oidOf(parts[0]);
    const critical = parts.length === 3 && (parts[1].value as string).charCodeAt(0) !== 0;
    const value = () => _fromDer(parts[parts.length - 1].value as string);
    if (critical && !GO_HANDLED_CRITICAL.has(oid)) unhandledCritical.push(oid);
    if (oid === OID.keyUsage) {
      const bits = value().value as string; // first octet: unused bits; then bit 0 (digitalSignature) is 0x80 of the next
      keyCertSign = bits.length > 1 && (bits.charCodeAt(1) & 0x04) !== 0;
    } else if (oid === OID.basicConstraints) {
      const fields = value().value as forge.asn1.Asn1[];
      const flag = fields.find((node) => node.type === forge.asn1.Type.BOOLEAN);
      const length = fields.find((node) => node.type === forge.asn1.Type.INTEGER);
      basicConstraints = {
        ca: flag !== undefined && (flag.value as string).charCodeAt(0) !== 0,
        pathLen: length === undefined ? undefined : forge.util.createBuffer(length.value as string).getInt(8 * (length.value as string).length),
      };
    } else if (oid === OID.extKeyUsage) {
      extKeyUsages = (value().value as forge.asn1.Asn1[]).map(oidOf);
    }
  }
  return { signatureAlgorithm: oidOf((signatureAlgorithm.value as forge.asn1.Asn1[])[0]), keyCertSign, basicConstraints, extKeyUsages, unhandledCritical };
}
