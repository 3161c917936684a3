/**
 * Client certificate verification against a CA bundle, as Go's `x509.Certificate.Verify` with
 * `KeyUsages: [ExtKeyUsageClientAuth]` does it for k8s.io/apiserver's x509 and request-header
 * authenticators (kube-apiserver decides with it who is `system:masters`, so must we).
 *
 * The path building and the checks are crypto/x509's verify.go, step for step and with its error
 * texts: `buildChains` (roots first, then the intermediates the client sent, which are used but
 * never trusted by themselves; at most 100 signature checks), `isValid` for every certificate
 * (unhandled critical extensions, validity dates, EKU clientAuth or any on every certificate of the
 * chain, name constraints on the SANs below a constrained CA, CA:TRUE on intermediates, path
 * length), `CheckSignatureFrom` (the issuer is a CA, keyUsage keyCertSign when keyUsage is
 * present, and only the signature algorithms Go verifies: no SHA-1, no MD5, RSA keys of 1024 bits
 * and more). Signatures are verified by OpenSSL (node:crypto `X509Certificate.verify`); the fields
 * Go reads that Node does not expose (basic constraints, key usage bits, name constraints, the
 * critical flags, raw names) are read from the DER by the strict reader below.
 *
 * Not used: pkijs's CertificateChainValidationEngine, because it accepts a chain that exceeds a
 * root's pathLenConstraint (checked against pkijs 4.0.0 with the corpus's pathlen case), ignores
 * EKUs and unknown critical extensions, is asynchronous and ESM-only (jest cannot load it).
 * OpenSSL's own chain verifier is not reachable from Node outside a TLS handshake, and differs from
 * Go where it matters (it accepts SHA-1 signatures, it checks a CN against DNS name constraints).
 *
 * The peer chain of a TLS connection is parsed once and the outcome cached on the socket (keyed
 * by the pool, so a reloaded CA is checked afresh), so keep-alive requests pay nothing.
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';

const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_ANY = '2.5.29.37.0';
const MAX_CHAIN_DEPTH = 8;
/** crypto/x509 `maxChainSignatureChecks`. */
const MAX_SIGNATURE_CHECKS = 100;
/** crypto/x509's default `MaxConstraintComparisions`. */
const MAX_CONSTRAINT_COMPARISONS = 250_000;

/** A verified client: the leaf's subject, as the authenticators map it to a user. */
export interface VerifiedClient {
  readonly commonName: string;
  readonly organizations: readonly string[];
}

export type VerifyResult = { readonly ok: true; readonly client: VerifiedClient } | { readonly ok: false; readonly error: string };

/** Splits a PEM bundle into its certificates; throws naming `source` when one does not parse. */
export function parsePemBundle(pem: string, source: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`${source} holds no PEM certificate (expected one or more "-----BEGIN CERTIFICATE-----" blocks)`);
  return blocks.map((block, i) => {
    try {
      const cert = new X509Certificate(block);
      certificateFacts(cert);
      return cert;
    } catch (error) {
      throw new Error(`${source}: certificate #${i + 1} does not parse: ${(error as Error).message}`);
    }
  });
}

/** Unescapes one RFC 2253 attribute value as Node prints subjects (`\,`, `\"`, `\0A`). */
function unescapeDnValue(value: string): string {
  const unquoted = value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
  const bytes: number[] = [];
  for (let i = 0; i < unquoted.length; i++) {
    if (unquoted[i] === '\\' && /^[0-9a-fA-F]{2}$/.test(unquoted.slice(i + 1, i + 3))) {
      bytes.push(parseInt(unquoted.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (unquoted[i] === '\\' && i + 1 < unquoted.length) {
      bytes.push(...Buffer.from(unquoted[++i]));
    } else {
      bytes.push(...Buffer.from(unquoted[i]));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The values of one attribute (`CN`, `O`) of a subject as Node's X509Certificate prints it: one `KEY=value` per line. */
export function subjectAttribute(subject: string, key: string): string[] {
  const values: string[] = [];
  for (const line of subject.split('\n')) {
    // Multi-valued RDNs are printed on one line joined by " + " (an escaped "\+" is part of a value).
    for (const part of line.split(/ ?(?<!\\)\+ ?/)) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq) === key) values.push(unescapeDnValue(part.slice(eq + 1)));
    }
  }
  return values;
}

// ---- DER: just enough to read the fields of a certificate that OpenSSL already parsed ------------

/** One DER element: its identifier octet and where its value lies in the buffer. */
interface Tlv {
  readonly tag: number;
  readonly valueStart: number;
  readonly end: number;
}

const SEQUENCE = 0x30;
const BOOLEAN = 0x01;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const OID = 0x06;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;
const contextPrimitive = (n: number) => 0x80 | n;
const contextConstructed = (n: number) => 0xa0 | n;

class MalformedError extends Error {}

function readTlv(der: Buffer, offset: number, limit: number): Tlv {
  if (offset + 2 > limit) throw new MalformedError('truncated element');
  const tag = der[offset];
  if ((tag & 0x1f) === 0x1f) throw new MalformedError('high tag number');
  let length = der[offset + 1];
  let valueStart = offset + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4 || valueStart + octets > limit) throw new MalformedError('indefinite, oversized or truncated length');
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + der[valueStart + i];
    if (length < 0x80 || der[valueStart] === 0) throw new MalformedError('non-minimal length');
    valueStart += octets;
  }
  const end = valueStart + length;
  if (end > limit) throw new MalformedError('truncated element');
  return { tag, valueStart, end };
}

function children(der: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.valueStart; at < parent.end; ) {
    const element = readTlv(der, at, parent.end);
    out.push(element);
    at = element.end;
  }
  return out;
}

function expectTag(element: Tlv | undefined, tag: number, what: string): Tlv {
  if (!element || element.tag !== tag) throw new MalformedError(`malformed ${what}`);
  return element;
}

const valueOf = (der: Buffer, element: Tlv): Buffer => der.subarray(element.valueStart, element.end);

function decodeOid(der: Buffer, element: Tlv): string {
  const bytes = valueOf(der, expectTag(element, OID, 'object identifier'));
  if (bytes.length === 0 || (bytes[bytes.length - 1] & 0x80) !== 0) throw new MalformedError('malformed object identifier');
  const arcs: number[] = [];
  let arc = 0;
  for (const byte of bytes) {
    if (arc === 0 && byte === 0x80) throw new MalformedError('non-minimal object identifier');
    arc = arc * 128 + (byte & 0x7f);
    if (arc > Number.MAX_SAFE_INTEGER / 128) throw new MalformedError('object identifier arc too large');
    if ((byte & 0x80) === 0) {
      arcs.push(arc);
      arc = 0;
    }
  }
  const first = arcs[0] < 80 ? Math.floor(arcs[0] / 40) : 2;
  return [first, arcs[0] - first * 40, ...arcs.slice(1)].join('.');
}

function decodeTime(der: Buffer, element: Tlv): number {
  const text = valueOf(der, element).toString('latin1');
  const match =
    element.tag === UTC_TIME ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text) : element.tag === GENERALIZED_TIME ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text) : null;
  if (!match) throw new MalformedError('malformed validity');
  let year = Number(match[1]);
  if (element.tag === UTC_TIME) year += year >= 50 ? 1900 : 2000;
  return Date.UTC(year, Number(match[2]) - 1, Number(match[3]), Number(match[4]), Number(match[5]), Number(match[6]));
}

/** A non-negative INTEGER (a path length); lengths beyond 2^31 are as good as unbounded. */
function decodeSmallInteger(der: Buffer, element: Tlv): number {
  const bytes = valueOf(der, expectTag(element, INTEGER, 'integer'));
  if (bytes.length === 0 || bytes[0] & 0x80) throw new MalformedError('negative or empty integer');
  return bytes.length > 5 ? Number.MAX_SAFE_INTEGER : bytes.reduce((n, b) => n * 256 + b, 0);
}

function isAscii(bytes: Buffer): boolean {
  return bytes.every((b) => b < 0x80);
}

// ---- What Go's x509.Certificate holds that the checks read ------------------------------------------

type SanName =
  | { readonly kind: 'email'; readonly value: string }
  | { readonly kind: 'dns'; readonly value: string }
  | { readonly kind: 'uri'; readonly value: string }
  | { readonly kind: 'ip'; readonly value: Buffer };

interface Subtrees {
  readonly dns: string[];
  readonly email: string[];
  readonly uri: string[];
  readonly ip: { readonly ip: Buffer; readonly mask: Buffer }[];
}

interface SignatureAlgorithm {
  /** Go's SignatureAlgorithm.String(). */
  readonly name: string;
  readonly status: 'verifiable' | 'insecure' | 'unknown';
}

interface CertificateFacts {
  readonly x509: X509Certificate;
  readonly der: Buffer;
  readonly version: number;
  readonly rawSubject: Buffer;
  readonly rawIssuer: Buffer;
  readonly rawSubjectPublicKeyInfo: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly basicConstraintsValid: boolean;
  readonly isCa: boolean;
  /** -1: no path length constraint. */
  readonly maxPathLen: number;
  /** Go's KeyUsage bit mask (bit i of the BIT STRING is 1 << i); 0 when absent. */
  readonly keyUsage: number;
  /** Every EKU OID; empty when there is no EKU extension (any usage). */
  readonly extKeyUsages: readonly string[];
  /** The SAN extension's raw value (loop detection) and the names Go checks. */
  readonly san?: { readonly raw: Buffer; readonly names: readonly SanName[] };
  readonly nameConstraints?: { readonly permitted: Subtrees; readonly excluded: Subtrees };
  readonly unhandledCriticalExtensions: readonly string[];
  readonly signatureAlgorithm: SignatureAlgorithm;
}

const KEY_USAGE_CERT_SIGN = 1 << 5;
const OID_AUTHORITY_INFO_ACCESS = '1.3.6.1.5.5.7.1.1';
const OID_MGF1 = '1.2.840.113549.1.1.8';
const OID_SHA256 = '2.16.840.1.101.3.4.2.1';
const OID_SHA384 = '2.16.840.1.101.3.4.2.2';
const OID_SHA512 = '2.16.840.1.101.3.4.2.3';
const DER_NULL = Buffer.from([0x05, 0x00]);
const OID_EC_PUBLIC_KEY = '1.2.840.10045.2.1';
/** P-224, P-256, P-384, P-521: the curves crypto/ecdsa implements. */
const GO_CURVES = new Set(['1.3.132.0.33', '1.2.840.10045.3.1.7', '1.3.132.0.34', '1.3.132.0.35']);

/** crypto/x509's signatureAlgorithmDetails: what Go verifies, what it refuses as insecure. */
const SIGNATURE_ALGORITHMS: Record<string, SignatureAlgorithm> = {
  '1.2.840.113549.1.1.11': { name: 'SHA256-RSA', status: 'verifiable' },
  '1.2.840.113549.1.1.12': { name: 'SHA384-RSA', status: 'verifiable' },
  '1.2.840.113549.1.1.13': { name: 'SHA512-RSA', status: 'verifiable' },
  '1.2.840.10045.4.3.2': { name: 'ECDSA-SHA256', status: 'verifiable' },
  '1.2.840.10045.4.3.3': { name: 'ECDSA-SHA384', status: 'verifiable' },
  '1.2.840.10045.4.3.4': { name: 'ECDSA-SHA512', status: 'verifiable' },
  '1.3.101.112': { name: 'Ed25519', status: 'verifiable' },
  // Refused since Go 1.18 (x509sha1 GODEBUG, removed in 1.24) and MD5 long before.
  '1.2.840.113549.1.1.5': { name: 'SHA1-RSA', status: 'insecure' },
  '1.3.14.3.2.29': { name: 'SHA1-RSA', status: 'insecure' },
  '1.2.840.10045.4.1': { name: 'ECDSA-SHA1', status: 'insecure' },
  '1.2.840.10040.4.3': { name: 'DSA-SHA1', status: 'insecure' },
  '1.2.840.113549.1.1.4': { name: 'MD5-RSA', status: 'insecure' },
  '1.2.840.113549.1.1.2': { name: 'MD2-RSA', status: 'insecure' },
};
const OID_RSASSA_PSS = '1.2.840.113549.1.1.10';
const UNKNOWN_ALGORITHM: SignatureAlgorithm = { name: 'unknown', status: 'unknown' };

/** Go's getSignatureAlgorithmFromAI: PSS only when MGF1 uses the message hash, the salt is the hash length and the trailer the default. */
function signatureAlgorithm(der: Buffer, algorithmIdentifier: Tlv): SignatureAlgorithm {
  const [oidElement, params] = children(der, algorithmIdentifier);
  const oid = decodeOid(der, oidElement);
  if (oid !== OID_RSASSA_PSS) return SIGNATURE_ALGORITHMS[oid] ?? UNKNOWN_ALGORITHM;
  if (!params || params.tag !== SEQUENCE) return UNKNOWN_ALGORITHM;
  let hash: string | undefined;
  let mgfHash: string | undefined;
  let saltLength = 20;
  let trailer = 1;
  const nullOrAbsent = (p: Tlv | undefined) => !p || der.subarray(p.valueStart - 2, p.end).equals(DER_NULL);
  for (const field of children(der, params)) {
    const [inner] = children(der, field);
    if (field.tag === contextConstructed(0)) {
      const [hashOid, hashParams] = children(der, expectTag(inner, SEQUENCE, 'PSS hash'));
      if (!nullOrAbsent(hashParams)) return UNKNOWN_ALGORITHM;
      hash = decodeOid(der, hashOid);
    } else if (field.tag === contextConstructed(1)) {
      const [mgfOid, mgfParams] = children(der, expectTag(inner, SEQUENCE, 'PSS mask generation'));
      if (decodeOid(der, mgfOid) !== OID_MGF1 || !mgfParams || mgfParams.tag !== SEQUENCE) return UNKNOWN_ALGORITHM;
      const [mgfHashOid, mgfHashParams] = children(der, mgfParams);
      if (!nullOrAbsent(mgfHashParams)) return UNKNOWN_ALGORITHM;
      mgfHash = decodeOid(der, mgfHashOid);
    } else if (field.tag === contextConstructed(2)) {
      saltLength = decodeSmallInteger(der, inner);
    } else if (field.tag === contextConstructed(3)) {
      trailer = decodeSmallInteger(der, inner);
    }
  }
  if (!hash || hash !== mgfHash || trailer !== 1) return UNKNOWN_ALGORITHM;
  if (hash === OID_SHA256 && saltLength === 32) return { name: 'SHA256-RSAPSS', status: 'verifiable' };
  if (hash === OID_SHA384 && saltLength === 48) return { name: 'SHA384-RSAPSS', status: 'verifiable' };
  if (hash === OID_SHA512 && saltLength === 64) return { name: 'SHA512-RSAPSS', status: 'verifiable' };
  return UNKNOWN_ALGORITHM;
}

function parseGeneralNames(der: Buffer, sequence: Tlv): SanName[] {
  const names: SanName[] = [];
  for (const name of children(der, sequence)) {
    const bytes = valueOf(der, name);
    if (name.tag === contextPrimitive(1) || name.tag === contextPrimitive(2) || name.tag === contextPrimitive(6)) {
      if (!isAscii(bytes)) throw new MalformedError('SAN is not an IA5String');
      const kind = name.tag === contextPrimitive(1) ? 'email' : name.tag === contextPrimitive(2) ? 'dns' : 'uri';
      names.push({ kind, value: bytes.toString('latin1') });
    } else if (name.tag === contextPrimitive(7)) {
      if (bytes.length !== 4 && bytes.length !== 16) throw new MalformedError(`cannot parse IP address of length ${bytes.length}`);
      names.push({ kind: 'ip', value: Buffer.from(bytes) });
    }
  }
  return names;
}

/** Go's parseNameConstraintsExtension: DNS, email, URI and IP subtrees; any other kind is "unhandled" (refused when critical). */
function parseNameConstraints(der: Buffer, value: Tlv): { permitted: Subtrees; excluded: Subtrees; unhandled: boolean } {
  const empty = (): Subtrees => ({ dns: [], email: [], uri: [], ip: [] });
  const result = { permitted: empty(), excluded: empty(), unhandled: false };
  const parts = children(der, expectTag(value, SEQUENCE, 'NameConstraints extension'));
  if (parts.length === 0) throw new MalformedError('empty name constraints extension');
  for (const part of parts) {
    const into = part.tag === contextConstructed(0) ? result.permitted : part.tag === contextConstructed(1) ? result.excluded : undefined;
    if (!into) throw new MalformedError('invalid NameConstraints extension');
    const subtrees = children(der, part);
    if (subtrees.length === 0) throw new MalformedError('empty name constraints subtree sequence');
    for (const subtree of subtrees) {
      const [base] = children(der, expectTag(subtree, SEQUENCE, 'NameConstraints subtree'));
      if (!base) throw new MalformedError('invalid NameConstraints extension');
      const bytes = valueOf(der, base);
      if (base.tag === contextPrimitive(2) || base.tag === contextPrimitive(1) || base.tag === contextPrimitive(6)) {
        if (!isAscii(bytes)) throw new MalformedError('invalid constraint value');
        const text = bytes.toString('latin1');
        if (base.tag === contextPrimitive(1) && text.includes('@') ? !parseMailbox(text) : text !== '' && !domainToReverseLabels(text.startsWith('.') ? text.slice(1) : text)) {
          throw new MalformedError(`failed to parse constraint ${JSON.stringify(text)}`);
        }
        (base.tag === contextPrimitive(2) ? into.dns : base.tag === contextPrimitive(1) ? into.email : into.uri).push(text);
      } else if (base.tag === contextPrimitive(7)) {
        if (bytes.length !== 8 && bytes.length !== 32) throw new MalformedError(`IP constraint contained value of length ${bytes.length}`);
        into.ip.push({ ip: Buffer.from(bytes.subarray(0, bytes.length / 2)), mask: Buffer.from(bytes.subarray(bytes.length / 2)) });
      } else {
        result.unhandled = true;
      }
    }
  }
  return result;
}

/** Reads what the checks need; throws MalformedError where Go's parser refuses the certificate. */
function parseCertificate(x509: X509Certificate): CertificateFacts {
  const der = x509.raw;
  const certificate = readTlv(der, 0, der.length);
  const [tbs, outerAlgorithm] = children(der, expectTag(certificate, SEQUENCE, 'certificate'));
  const fields = children(der, expectTag(tbs, SEQUENCE, 'tbs certificate'));
  expectTag(outerAlgorithm, SEQUENCE, 'signature algorithm');
  let at = 0;
  let version = 1;
  if (fields[0]?.tag === contextConstructed(0)) version = decodeSmallInteger(der, children(der, fields[at++])[0]) + 1;
  if (version > 3) throw new MalformedError('invalid version');
  at++; // serial number
  const innerAlgorithm = expectTag(fields[at++], SEQUENCE, 'signature algorithm');
  if (!valueOf(der, innerAlgorithm).equals(valueOf(der, outerAlgorithm))) throw new MalformedError("inner and outer signature algorithm identifiers don't match");
  const issuer = expectTag(fields[at++], SEQUENCE, 'issuer');
  const [notBefore, notAfter] = children(der, expectTag(fields[at++], SEQUENCE, 'validity'));
  if (!notBefore || !notAfter) throw new MalformedError('malformed validity');
  const subject = expectTag(fields[at++], SEQUENCE, 'subject');
  const spki = expectTag(fields[at++], SEQUENCE, 'subject public key info');
  const extensionsField = fields.slice(at).find((f) => f.tag === contextConstructed(3));

  let basicConstraintsValid = false;
  let isCa = false;
  let maxPathLen = -1;
  let keyUsage = 0;
  let extKeyUsages: string[] = [];
  let san: CertificateFacts['san'];
  let nameConstraints: CertificateFacts['nameConstraints'];
  const unhandledCriticalExtensions: string[] = [];
  const seen = new Set<string>();
  const extensions = extensionsField ? children(der, expectTag(children(der, extensionsField)[0], SEQUENCE, 'extensions')) : [];
  for (const extension of extensions) {
    const parts = children(der, expectTag(extension, SEQUENCE, 'extension'));
    const id = decodeOid(der, parts[0]);
    const critical = parts.length === 3 ? valueOf(der, expectTag(parts[1], BOOLEAN, 'critical flag'))[0] !== 0 : false;
    const octets = expectTag(parts[parts.length - 1], OCTET_STRING, 'extension value');
    // Read only for the extensions Go parses: an unknown one may hold anything.
    const content = (): Tlv => {
      const element = readTlv(der, octets.valueStart, octets.end);
      if (element.end !== octets.end) throw new MalformedError(`trailing data after extension ${id}`);
      return element;
    };
    if (seen.has(id)) throw new MalformedError('certificate contains duplicate extensions');
    seen.add(id);
    let unhandled = false;
    switch (id) {
      case '2.5.29.15': {
        const bits = valueOf(der, expectTag(content(), BIT_STRING, 'key usage'));
        for (let i = 0; i < 9; i++) if (bits[1 + (i >> 3)] & (0x80 >> (i & 7))) keyUsage |= 1 << i;
        break;
      }
      case '2.5.29.19': {
        const [ca, pathLen] = children(der, expectTag(content(), SEQUENCE, 'basic constraints'));
        basicConstraintsValid = true;
        const pathLenElement = ca?.tag === BOOLEAN ? pathLen : ca;
        isCa = ca?.tag === BOOLEAN && der[ca.valueStart] !== 0;
        if (pathLenElement) maxPathLen = decodeSmallInteger(der, pathLenElement);
        break;
      }
      case '2.5.29.17': {
        const sanValue = expectTag(content(), SEQUENCE, 'SAN extension');
        const names = parseGeneralNames(der, sanValue);
        san = { raw: Buffer.from(valueOf(der, sanValue)), names };
        // As Go: a SAN of no name it understands is unhandled (refused when critical).
        unhandled = names.length === 0;
        break;
      }
      case '2.5.29.30': {
        const parsed = parseNameConstraints(der, content());
        nameConstraints = { permitted: parsed.permitted, excluded: parsed.excluded };
        unhandled = parsed.unhandled;
        break;
      }
      case '2.5.29.37':
        extKeyUsages = children(der, expectTag(content(), SEQUENCE, 'extended key usage')).map((oid) => decodeOid(der, oid));
        break;
      case '2.5.29.14':
        if (critical) throw new MalformedError('subject key identifier incorrectly marked critical');
        break;
      case OID_AUTHORITY_INFO_ACCESS:
        if (critical) throw new MalformedError('authority info access incorrectly marked critical');
        break;
      case '2.5.29.31': // CRL distribution points
      case '2.5.29.35': // authority key identifier
      case '2.5.29.32': // certificate policies
        break;
      default:
        // Policy constraints, policy mappings and inhibitAnyPolicy among them: Go 1.22+ validates
        // policies, we do not, so a critical one is refused rather than ignored.
        unhandled = true;
    }
    if (critical && unhandled) unhandledCriticalExtensions.push(id);
  }
  const facts: CertificateFacts = {
    x509,
    der,
    version,
    rawSubject: Buffer.from(valueOf(der, subject)),
    rawIssuer: Buffer.from(valueOf(der, issuer)),
    rawSubjectPublicKeyInfo: Buffer.from(valueOf(der, spki)),
    notBefore: decodeTime(der, notBefore),
    notAfter: decodeTime(der, notAfter),
    basicConstraintsValid,
    isCa,
    maxPathLen,
    keyUsage,
    extKeyUsages,
    ...(san ? { san } : {}),
    ...(nameConstraints ? { nameConstraints } : {}),
    unhandledCriticalExtensions,
    signatureAlgorithm: signatureAlgorithm(der, outerAlgorithm),
  };
  // As Go's parser: an EC key on a curve crypto/ecdsa does not implement makes the certificate unparsable.
  const [keyAlgorithm] = children(der, spki);
  const [keyOid, keyParams] = children(der, expectTag(keyAlgorithm, SEQUENCE, 'public key algorithm'));
  if (decodeOid(der, keyOid) === OID_EC_PUBLIC_KEY && (keyParams?.tag !== OID || !GO_CURVES.has(decodeOid(der, keyParams)))) throw new MalformedError('unsupported elliptic curve');
  return facts;
}

const factsCache = new WeakMap<X509Certificate, CertificateFacts>();
const publicKeys = new WeakMap<CertificateFacts, KeyObject>();

/** The certificate's facts, read once per X509Certificate; throws `x509: …` when Go would not parse it. */
function certificateFacts(cert: X509Certificate): CertificateFacts {
  let facts = factsCache.get(cert);
  if (!facts) {
    try {
      facts = parseCertificate(cert);
    } catch (error) {
      if (error instanceof MalformedError) throw new Error(`x509: ${error.message}`);
      throw error;
    }
    factsCache.set(cert, facts);
  }
  return facts;
}

function publicKeyOf(facts: CertificateFacts): KeyObject {
  let key = publicKeys.get(facts);
  if (!key) {
    key = facts.x509.publicKey;
    publicKeys.set(facts, key);
  }
  return key;
}

// ---- Name constraints: crypto/x509's matchers ---------------------------------------------------------

/** Go's domainToReverseLabels: labels of printable ASCII, none empty, no trailing dot. */
function domainToReverseLabels(domain: string): string[] | undefined {
  if (domain === '') return [];
  const labels = domain.split('.').reverse();
  for (const label of labels) {
    if (label === '') return undefined;
    for (let i = 0; i < label.length; i++) {
      const c = label.charCodeAt(i);
      if (c < 33 || c > 126) return undefined;
    }
  }
  return labels;
}

interface Mailbox {
  readonly local: string;
  readonly domain: string;
}

/** Go's parseRFC2821Mailbox (RFC 2821 Mailbox, as RFC 5280 reads an rfc822Name). */
function parseMailbox(input: string): Mailbox | undefined {
  if (input === '') return undefined;
  let local = '';
  let i = 0;
  if (input[0] === '"') {
    i = 1;
    for (;;) {
      if (i >= input.length) return undefined;
      const c = input.charCodeAt(i++);
      if (c === 0x22) break;
      if (c === 0x5c) {
        if (i >= input.length) return undefined;
        const next = input.charCodeAt(i);
        if (next === 11 || next === 12 || (next >= 1 && next <= 9) || (next >= 14 && next <= 127)) {
          local += input[i++];
          continue;
        }
        return undefined;
      }
      if (c === 11 || c === 12 || c === 32 || c === 33 || c === 127 || (c >= 1 && c <= 8) || (c >= 14 && c <= 31) || (c >= 35 && c <= 91) || (c >= 93 && c <= 126)) {
        local += String.fromCharCode(c);
        continue;
      }
      return undefined;
    }
  } else {
    while (i < input.length) {
      let c = input[i];
      if (c === '\\') {
        i++;
        if (i >= input.length) return undefined;
        c = input[i];
      } else if (!/[0-9A-Za-z!#$%&'*+\-/=?^_`{|}~.]/.test(c)) {
        break;
      }
      local += input[i++];
    }
    if (local === '' || local.startsWith('.') || local.endsWith('.') || local.includes('..')) return undefined;
  }
  if (input[i] !== '@') return undefined;
  const domain = input.slice(i + 1);
  if (!domainToReverseLabels(domain) || domain === '') return undefined;
  return { local, domain };
}

const equalFold = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** Go's matchDomainConstraint: a leading "." needs at least one more label; labels compared ASCII case-insensitively. */
function matchDomainConstraint(domain: string, constraint: string): boolean {
  if (constraint === '') return true;
  const domainLabels = domainToReverseLabels(domain);
  if (!domainLabels) throw new Error(`x509: internal error: cannot parse domain ${JSON.stringify(domain)}`);
  const mustHaveSubdomains = constraint.startsWith('.');
  const constraintLabels = domainToReverseLabels(mustHaveSubdomains ? constraint.slice(1) : constraint);
  if (!constraintLabels) throw new Error(`x509: internal error: cannot parse domain ${JSON.stringify(constraint)}`);
  if (domainLabels.length < constraintLabels.length || (mustHaveSubdomains && domainLabels.length === constraintLabels.length)) return false;
  return constraintLabels.every((label, i) => equalFold(label, domainLabels[i]));
}

function matchEmailConstraint(mailbox: Mailbox, constraint: string): boolean {
  if (constraint.includes('@')) {
    const wanted = parseMailbox(constraint);
    if (!wanted) throw new Error(`x509: internal error: cannot parse constraint ${JSON.stringify(constraint)}`);
    return mailbox.local === wanted.local && equalFold(mailbox.domain, wanted.domain);
  }
  return matchDomainConstraint(mailbox.domain, constraint);
}

function matchUriConstraint(uri: URL, constraint: string): boolean {
  const host = uri.hostname;
  if (host === '') throw new Error(`URI with empty host (${JSON.stringify(uri.href)}) cannot be matched against constraints`);
  if ((host.startsWith('[') && host.endsWith(']')) || isIP(host) !== 0) throw new Error(`URI with IP (${JSON.stringify(uri.href)}) cannot be matched against constraints`);
  return matchDomainConstraint(host, constraint);
}

function matchIpConstraint(ip: Buffer, constraint: { ip: Buffer; mask: Buffer }): boolean {
  if (ip.length !== constraint.ip.length) return false;
  for (let i = 0; i < ip.length; i++) if ((ip[i] & constraint.mask[i]) !== (constraint.ip[i] & constraint.mask[i])) return false;
  return true;
}

function formatIp(ip: Buffer): string {
  if (ip.length === 4) return [...ip].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(ip.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** Go's checkNameConstraints: excluded first, then at least one permitted of that kind when there are any. */
function checkNameConstraint<N, C>(
  comparisons: { count: number },
  nameType: string,
  name: string,
  parsed: N,
  match: (parsed: N, constraint: C) => boolean,
  permitted: readonly C[],
  excluded: readonly C[],
  show: (constraint: C) => string,
): string | undefined {
  const notAuthorized = 'x509: a root or intermediate certificate is not authorized to sign for this name: ';
  comparisons.count += excluded.length + permitted.length;
  if (comparisons.count > MAX_CONSTRAINT_COMPARISONS) return 'x509: too many name constraint comparisons';
  try {
    for (const constraint of excluded) {
      if (match(parsed, constraint)) return `${notAuthorized}${nameType} ${JSON.stringify(name)} is excluded by constraint ${JSON.stringify(show(constraint))}`;
    }
    if (permitted.length > 0 && !permitted.some((constraint) => match(parsed, constraint))) {
      return `${notAuthorized}${nameType} ${JSON.stringify(name)} is not permitted by any constraint`;
    }
  } catch (error) {
    return `${notAuthorized}${(error as Error).message}`;
  }
  return undefined;
}

/** The SANs of every certificate below the constrained CA `c` (Go: every certificate of the chain so far that has a SAN extension). */
function checkNameConstraints(c: CertificateFacts, chain: readonly CertificateFacts[]): string | undefined {
  const { permitted, excluded } = c.nameConstraints!;
  const comparisons = { count: 0 };
  const same = (s: string) => s;
  for (const below of chain) {
    for (const name of below.san?.names ?? []) {
      let error: string | undefined;
      if (name.kind === 'email') {
        const mailbox = parseMailbox(name.value);
        if (!mailbox) return `x509: cannot parse rfc822Name ${JSON.stringify(name.value)}`;
        error = checkNameConstraint(comparisons, 'email address', name.value, mailbox, matchEmailConstraint, permitted.email, excluded.email, same);
      } else if (name.kind === 'dns') {
        if (!domainToReverseLabels(name.value)) return `x509: cannot parse dnsName ${JSON.stringify(name.value)}`;
        error = checkNameConstraint(comparisons, 'DNS name', name.value, name.value, matchDomainConstraint, permitted.dns, excluded.dns, same);
      } else if (name.kind === 'uri') {
        let uri: URL;
        try {
          uri = new URL(name.value);
        } catch {
          return `x509: internal error: URI SAN ${JSON.stringify(name.value)} failed to parse`;
        }
        error = checkNameConstraint(comparisons, 'URI', name.value, uri, matchUriConstraint, permitted.uri, excluded.uri, same);
      } else if (name.kind === 'ip') {
        const show = (net: { ip: Buffer; mask: Buffer }) => `${formatIp(net.ip)}/${[...net.mask].reduce((bits, b) => bits + b.toString(2).replace(/0/g, '').length, 0)}`;
        error = checkNameConstraint(comparisons, 'IP address', formatIp(name.value), name.value, matchIpConstraint, permitted.ip, excluded.ip, show);
      }
      if (error) return error;
    }
  }
  return undefined;
}

// ---- Path building and validation: crypto/x509 verify.go ----------------------------------------------

enum CertificateType {
  Leaf,
  Intermediate,
  Root,
}

const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Go's `(*Certificate).isValid` for a candidate appended to `chain`, with KeyUsages [ClientAuth]. */
function isValid(c: CertificateFacts, type: CertificateType, chain: readonly CertificateFacts[], now: number): string | undefined {
  if (c.unhandledCriticalExtensions.length > 0) return `x509: unhandled critical extension (${c.unhandledCriticalExtensions.join(', ')})`;
  if (chain.length > 0 && !chain[chain.length - 1].rawIssuer.equals(c.rawSubject)) return 'x509: issuer name does not match subject from issuing certificate';
  if (now < c.notBefore) return `x509: certificate has expired or is not yet valid: current time ${rfc3339(now)} is before ${rfc3339(c.notBefore)}`;
  if (now > c.notAfter) return `x509: certificate has expired or is not yet valid: current time ${rfc3339(now)} is after ${rfc3339(c.notAfter)}`;
  // EKUs nest: every certificate of the chain that lists EKUs must allow clientAuth (or any).
  if (c.extKeyUsages.length > 0 && !c.extKeyUsages.includes(EKU_CLIENT_AUTH) && !c.extKeyUsages.includes(EKU_ANY)) return 'x509: certificate specifies an incompatible key usage';
  if (type !== CertificateType.Leaf && c.nameConstraints) {
    const error = checkNameConstraints(c, chain);
    if (error) return error;
  }
  if (type === CertificateType.Intermediate && (!c.basicConstraintsValid || !c.isCa)) return 'x509: certificate is not authorized to sign other certificates';
  if (c.basicConstraintsValid && c.maxPathLen >= 0 && chain.length - 1 > c.maxPathLen) return 'x509: too many intermediates for path length constraint';
  return undefined;
}

/** Go's `CheckSignatureFrom`: the parent may sign certificates, the algorithm is one Go verifies, and OpenSSL says the signature holds. */
function checkSignatureFrom(child: CertificateFacts, parent: CertificateFacts): string | undefined {
  if ((parent.version === 3 && !parent.basicConstraintsValid) || (parent.basicConstraintsValid && !parent.isCa) || (parent.keyUsage !== 0 && (parent.keyUsage & KEY_USAGE_CERT_SIGN) === 0)) {
    return 'x509: invalid signature: parent certificate cannot sign this kind of certificate';
  }
  const algorithm = child.signatureAlgorithm;
  if (algorithm.status === 'insecure') return `x509: cannot verify signature: insecure algorithm ${algorithm.name}`;
  const key = publicKeyOf(parent);
  const keyType = key.asymmetricKeyType;
  if (algorithm.status === 'unknown' || !(keyType === 'rsa' || keyType === 'ec' || keyType === 'ed25519')) return 'x509: cannot verify signature: algorithm unimplemented';
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (keyType === 'rsa' && bits < 1024) return `crypto/rsa: ${bits}-bit keys are insecure`;
  let verified: boolean;
  try {
    verified = child.x509.verify(key);
  } catch {
    verified = false;
  }
  if (!verified) return keyType === 'rsa' ? 'crypto/rsa: verification error' : `x509: ${keyType === 'ec' ? 'ECDSA' : 'Ed25519'} verification failure`;
  return undefined;
}

/** Go's alreadyInChain: same subject, same key and same SAN (or none) as a certificate already in the chain. */
function alreadyInChain(candidate: CertificateFacts, chain: readonly CertificateFacts[]): boolean {
  return chain.some(
    (c) =>
      c.rawSubject.equals(candidate.rawSubject) &&
      c.rawSubjectPublicKeyInfo.equals(candidate.rawSubjectPublicKeyInfo) &&
      (c.san === undefined ? candidate.san === undefined : candidate.san !== undefined && c.san.raw.equals(candidate.san.raw)),
  );
}

function displayName(c: CertificateFacts): string {
  return subjectAttribute(c.x509.subject, 'CN')[0] || subjectAttribute(c.x509.subject, 'O')[0] || `serial:${BigInt(`0x${c.x509.serialNumber}`).toString()}`;
}

interface ChainSearch {
  readonly roots: readonly CertificateFacts[];
  readonly intermediates: readonly CertificateFacts[];
  readonly now: number;
  signatureChecks: number;
}

/** Go's buildChains, stopping at the first chain found (Go collects them all; the verdict is the same). */
function buildChain(chain: readonly CertificateFacts[], search: ChainSearch): { readonly ok: true } | { readonly ok: false; readonly error: string } {
  const c = chain[chain.length - 1];
  let error: string | undefined;
  let hint: { error: string; candidate: CertificateFacts } | undefined;
  const consider = (type: CertificateType, candidate: CertificateFacts): boolean => {
    if (!candidate.rawSubject.equals(c.rawIssuer) || alreadyInChain(candidate, chain)) return false;
    if (++search.signatureChecks > MAX_SIGNATURE_CHECKS) {
      error = 'x509: signature check attempts limit reached while verifying certificate chain';
      return false;
    }
    const signatureError = checkSignatureFrom(c, candidate);
    if (signatureError) {
      hint ??= { error: signatureError, candidate };
      return false;
    }
    const invalid = isValid(candidate, type, chain, search.now);
    if (invalid) {
      error = invalid;
      return false;
    }
    if (type === CertificateType.Root) return true;
    const above = buildChain([...chain, candidate], search);
    if (above.ok) return true;
    error = above.error;
    return false;
  };
  for (const root of search.roots) if (consider(CertificateType.Root, root)) return { ok: true };
  for (const intermediate of search.intermediates) if (consider(CertificateType.Intermediate, intermediate)) return { ok: true };
  if (error) return { ok: false, error };
  const because = hint ? ` (possibly because of ${JSON.stringify(hint.error)} while trying to verify candidate authority certificate ${JSON.stringify(displayName(hint.candidate))})` : '';
  return { ok: false, error: `x509: certificate signed by unknown authority${because}` };
}

/** The trusted roots of one authenticator (the client CA, or the requestheader CA). */
export class CertPool {
  /** @param pem one or more PEM certificates; @param source names it in errors (`ConfigMap key "client-ca-file"`). */
  static fromPem(pem: string, source: string): CertPool {
    return new CertPool(parsePemBundle(pem, source), source);
  }

  /** The PEM of each root, normalized (for the TLS server's list of acceptable client CAs). */
  readonly pems: readonly string[];
  private readonly fingerprints: ReadonlySet<string>;
  private readonly rootFacts: readonly CertificateFacts[];

  private constructor(
    readonly roots: readonly X509Certificate[],
    readonly source: string,
  ) {
    this.pems = roots.map((r) => r.toString());
    this.fingerprints = new Set(roots.map((r) => r.fingerprint256));
    this.rootFacts = roots.map(certificateFacts);
  }

  /** Whether both pools trust exactly the same roots. */
  equals(other: CertPool | undefined): boolean {
    return !!other && other.fingerprints.size === this.fingerprints.size && [...other.fingerprints].every((f) => this.fingerprints.has(f));
  }

  /**
   * Verifies `presented` (leaf first, then whatever intermediates the client sent) for client
   * authentication at time `now`, as Go's Verify with KeyUsages [ClientAuth]. The error wording is Go's.
   */
  verify(presented: readonly X509Certificate[], now: number = Date.now()): VerifyResult {
    const [leafCert, ...rest] = presented;
    if (!leafCert) return { ok: false, error: 'no client certificate' };
    let leaf: CertificateFacts;
    let intermediates: CertificateFacts[];
    try {
      leaf = certificateFacts(leafCert);
      // Go's CertPool keeps one copy of each certificate.
      intermediates = [];
      for (const facts of rest.map(certificateFacts)) if (!intermediates.some((c) => c.der.equals(facts.der))) intermediates.push(facts);
    } catch (error) {
      return { ok: false, error: (error as Error).message };
    }
    try {
      const invalid = isValid(leaf, CertificateType.Leaf, [], now);
      if (invalid) return { ok: false, error: invalid };
      if (!this.rootFacts.some((root) => root.der.equals(leaf.der))) {
        const chain = buildChain([leaf], { roots: this.rootFacts, intermediates, now, signatureChecks: 0 });
        if (!chain.ok) return chain;
      }
    } catch (error) {
      // A certificate no check foresaw is refused, never a 500.
      return { ok: false, error: `x509: internal error: ${(error as Error).message}` };
    }
    return { ok: true, client: { commonName: subjectAttribute(leafCert.subject, 'CN')[0] ?? '', organizations: subjectAttribute(leafCert.subject, 'O') } };
  }
}

const peerChains = new WeakMap<object, readonly X509Certificate[]>();

/**
 * Intermediates seen with each leaf in full handshakes. A resumed TLS session (session tickets,
 * which Node clients use) restores the peer's leaf but not the intermediates it sent; they are
 * taken from here. A session can only be resumed on the process that issued its ticket, after a
 * full handshake that recorded them. Bounded; the oldest entries go first.
 */
const intermediatesByLeaf = new Map<string, readonly X509Certificate[]>();
const MAX_REMEMBERED_LEAVES = 1024;

function remember(leaf: X509Certificate, intermediates: readonly X509Certificate[]): void {
  if (intermediatesByLeaf.has(leaf.fingerprint256)) return;
  if (intermediatesByLeaf.size >= MAX_REMEMBERED_LEAVES) intermediatesByLeaf.delete(intermediatesByLeaf.keys().next().value!);
  intermediatesByLeaf.set(leaf.fingerprint256, intermediates);
}

/**
 * What identifies the request's connection: its socket under HTTP/1.1; under HTTP/2 its session,
 * since `req.socket` is then a new view of the session's socket for every stream.
 */
function connectionOf(req: IncomingMessage): object {
  return (req as { stream?: { session?: object } }).stream?.session ?? req.socket;
}

/**
 * The certificates the client presented on this request's TLS connection, leaf first; empty when
 * it sent none (or the request did not come over TLS). Parsed once per connection.
 */
function peerCertificates(req: IncomingMessage): readonly X509Certificate[] {
  const socket = req.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== 'function') return [];
  const connection = connectionOf(req);
  const cached = peerChains.get(connection);
  if (cached) return cached;
  let chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let current = socket.getPeerCertificate(true);
  while (current && current.raw && chain.length <= MAX_CHAIN_DEPTH) {
    const cert = new X509Certificate(current.raw);
    if (seen.has(cert.fingerprint256)) break;
    seen.add(cert.fingerprint256);
    chain.push(cert);
    current = current.issuerCertificate;
  }
  if (chain.length > 1) remember(chain[0], chain.slice(1));
  else if (chain.length === 1 && socket.isSessionReused?.()) chain = [chain[0], ...(intermediatesByLeaf.get(chain[0].fingerprint256) ?? [])];
  peerChains.set(connection, chain);
  return chain;
}

/**
 * Caches a pool's verdict per connection: the chain cannot change on a TLS connection, only
 * time (expiry) and the pool (CA reload) can, and both are part of the check.
 */
export class ConnectionVerifier {
  private readonly verdicts = new WeakMap<object, { pool: CertPool; result: VerifyResult; until: number }>();

  verify(req: IncomingMessage, pool: CertPool, now: number): VerifyResult | undefined {
    const presented = peerCertificates(req);
    if (presented.length === 0) return undefined;
    const connection = connectionOf(req);
    const cached = this.verdicts.get(connection);
    if (cached && cached.pool === pool && now <= cached.until) return cached.result;
    const result = pool.verify(presented, now);
    // A success holds until the first certificate involved expires; a failure is re-checked after
    // a second (only time could change it: a certificate not yet valid).
    const until = result.ok ? Math.min(...presented.map((c) => Date.parse(c.validTo)), ...pool.roots.map((c) => Date.parse(c.validTo))) : now + 1000;
    this.verdicts.set(connection, { pool, result, until });
    return result;
  }
}
