/**
 * Client certificate verification against a CA bundle, as Go's `x509.Certificate.Verify` with
 * `KeyUsages: [ClientAuth]` does it for k8s.io/apiserver's x509 and request-header
 * authenticators: signatures up to a trusted root (intermediates presented by the client are
 * used but never trusted by themselves), validity dates of every certificate in the chain,
 * intermediates must be CAs, and every EKU extension along the chain must allow client auth.
 *
 * The peer chain of a TLS connection is parsed once and the outcome cached on the socket (keyed
 * by the pool, so a reloaded CA is checked afresh), so keep-alive requests pay nothing.
 */
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_ANY = '2.5.29.37.0';
const MAX_CHAIN_DEPTH = 8;

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
      return new X509Certificate(block);
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

function isValidAt(cert: X509Certificate, now: number): boolean {
  return Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo);
}

function allowsClientAuth(cert: X509Certificate): boolean {
  // No EKU extension means any usage, as in Go.
  const usages = cert.keyUsage as string[] | undefined;
  return !usages || usages.length === 0 || usages.includes(EKU_CLIENT_AUTH) || usages.includes(EKU_ANY);
}

function signs(issuer: X509Certificate, cert: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
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

  private constructor(
    readonly roots: readonly X509Certificate[],
    readonly source: string,
  ) {
    this.pems = roots.map((r) => r.toString());
    this.fingerprints = new Set(roots.map((r) => r.fingerprint256));
  }

  /** Whether both pools trust exactly the same roots. */
  equals(other: CertPool | undefined): boolean {
    return !!other && other.fingerprints.size === this.fingerprints.size && [...other.fingerprints].every((f) => this.fingerprints.has(f));
  }

  /**
   * Verifies `presented` (leaf first, then whatever intermediates the client sent) for client
   * authentication at time `now`. The error wording follows Go's x509 errors.
   */
  verify(presented: readonly X509Certificate[], now: number = Date.now()): VerifyResult {
    const [leaf, ...intermediates] = presented;
    if (!leaf) return { ok: false, error: 'no client certificate' };
    const chain = this.buildChain(leaf, intermediates, 0);
    if (!chain) return { ok: false, error: `x509: certificate signed by unknown authority (not chained to ${this.source})` };
    for (const cert of chain) {
      if (!isValidAt(cert, now)) {
        return { ok: false, error: `x509: certificate has expired or is not yet valid: "${subjectAttribute(cert.subject, 'CN')[0] ?? cert.subject}" is valid from ${cert.validFrom} to ${cert.validTo}` };
      }
      if (!allowsClientAuth(cert)) return { ok: false, error: 'x509: certificate specifies an incompatible key usage (clientAuth is required)' };
    }
    return { ok: true, client: { commonName: subjectAttribute(leaf.subject, 'CN')[0] ?? '', organizations: subjectAttribute(leaf.subject, 'O') } };
  }

  private buildChain(cert: X509Certificate, intermediates: readonly X509Certificate[], depth: number): X509Certificate[] | undefined {
    if (depth > MAX_CHAIN_DEPTH) return undefined;
    if (this.fingerprints.has(cert.fingerprint256)) return [cert];
    for (const root of this.roots) if (signs(root, cert)) return [cert, root];
    for (const candidate of intermediates) {
      if (!candidate.ca || candidate.fingerprint256 === cert.fingerprint256 || !signs(candidate, cert)) continue;
      const rest = this.buildChain(candidate, intermediates, depth + 1);
      if (rest) return [cert, ...rest];
    }
    return undefined;
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
