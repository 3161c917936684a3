/**
 * What Go's x509.Certificate holds that client certificate verification reads (cert-pool.ts),
 * from the DER of a certificate OpenSSL already parsed: basic constraints, key usage bits, EKUs,
 * name constraints, SANs, the critical flags and raw names, with the signature algorithm as Go
 * names and judges it. The DER reader is strict and small: a certificate it cannot read is one Go
 * would not parse either (`x509: …`).
 */
import { X509Certificate, type KeyObject } from 'node:crypto';

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

export type SanName =
  | { readonly kind: 'email'; readonly value: string }
  | { readonly kind: 'dns'; readonly value: string }
  | { readonly kind: 'uri'; readonly value: string }
  | { readonly kind: 'ip'; readonly value: Buffer };

export interface Subtrees {
  readonly dns: string[];
  readonly email: string[];
  readonly uri: string[];
  readonly ip: { readonly ip: Buffer; readonly mask: Buffer }[];
}

export interface SignatureAlgorithm {
  /** Go's SignatureAlgorithm.String(). */
  readonly name: string;
  readonly status: 'verifiable' | 'insecure' | 'unknown';
}

export interface CertificateFacts {
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

export const KEY_USAGE_CERT_SIGN = 1 << 5;
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
export function certificateFacts(cert: X509Certificate): CertificateFacts {
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

export function publicKeyOf(facts: CertificateFacts): KeyObject {
  let key = publicKeys.get(facts);
  if (!key) {
    key = facts.x509.publicKey;
    publicKeys.set(facts, key);
  }
  return key;
}

// ---- Names as crypto/x509 parses them (SANs and constraints) ------------------------------------

/** Go's domainToReverseLabels: labels of printable ASCII, none empty, no trailing dot. */
export function domainToReverseLabels(domain: string): string[] | undefined {
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

export interface Mailbox {
  readonly local: string;
  readonly domain: string;
}

/** Go's parseRFC2821Mailbox (RFC 2821 Mailbox, as RFC 5280 reads an rfc822Name). */
export function parseMailbox(input: string): Mailbox | undefined {
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
