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
 * critical flags, raw names) are read from the DER by the strict reader of x509-facts.ts; the name
 * constraints are matched by name-constraints.ts.
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
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { checkNameConstraints } from './name-constraints';
import { certificateFacts, KEY_USAGE_CERT_SIGN, publicKeyOf, type CertificateFacts } from './x509-facts';

const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_ANY = '2.5.29.37.0';
const MAX_CHAIN_DEPTH = 8;
/** crypto/x509 `maxChainSignatureChecks`. */
const MAX_SIGNATURE_CHECKS = 100;

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
