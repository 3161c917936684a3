/**
 * Certificate chains made with the `openssl` CLI (`openssl req` + `openssl ca`, extensions from
 * an -extfile section), in a temporary directory, and judged by `openssl verify`: the reference
 * the chain-verification corpus compares our verifier with. Keys are EC P-256 unless asked for RSA.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

export interface OpensslCertificate {
  readonly name: string;
  readonly certPath: string;
  readonly keyPath: string;
  readonly pem: string;
  readonly x509: X509Certificate;
}

export interface IssueOptions {
  /** `openssl -subj` form. @default `/CN=<name>` */
  readonly subject?: string;
  /** The extension section's lines (openssl x509v3_config), e.g. `basicConstraints = critical,CA:TRUE`. */
  readonly extensions: readonly string[];
  /** @default - one hour ago */
  readonly notBefore?: Date;
  /** @default - notBefore + 30 days */
  readonly notAfter?: Date;
  /** Digest the issuer signs with. @default sha256 */
  readonly digest?: 'sha256' | 'sha1' | 'sha384';
  /** @default 'ec' (P-256) */
  readonly key?: 'ec' | 'rsa';
}

export interface OpensslVerdict {
  readonly ok: boolean;
  /** openssl's output: `<file>: OK`, or the `error N at D depth lookup: …` lines. */
  readonly output: string;
}

const HOUR_MS = 3_600_000;

/** openssl ca's -startdate/-enddate form (GeneralizedTime). */
const caDate = (d: Date) => d.toISOString().replace(/[-:T]/g, '').replace(/\.\d{3}Z$/, 'Z');

const CA_CONFIG = `[ca]
default_ca = test_ca
[test_ca]
database = ./index.txt
new_certs_dir = ./issued
serial = ./serial
policy = any_subject
unique_subject = no
preserve = yes
copy_extensions = none
[any_subject]
commonName = optional
organizationName = optional
`;

export class OpensslChains {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'openssl-chains-'));
  private readonly certificates = new Map<string, OpensslCertificate>();

  constructor() {
    writeFileSync(path.join(this.dir, 'ca.cnf'), CA_CONFIG);
    writeFileSync(path.join(this.dir, 'index.txt'), '');
    writeFileSync(path.join(this.dir, 'serial'), '1000\n');
    execFileSync('mkdir', ['-p', path.join(this.dir, 'issued')]);
  }

  /** A self-signed certificate (a root CA, or with CA:FALSE a self-signed leaf). */
  selfSigned(name: string, options: IssueOptions): OpensslCertificate {
    return this.issue(undefined, name, options);
  }

  /** A certificate for `name` signed by `issuer` (or self-signed when `issuer` is undefined). */
  issue(issuer: OpensslCertificate | undefined, name: string, options: IssueOptions): OpensslCertificate {
    if (this.certificates.has(name)) throw new Error(`OpensslChains: "${name}" already issued`);
    const file = (ext: string) => path.join(this.dir, `${name}.${ext}`);
    const keyArgs = options.key === 'rsa' ? ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'] : ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    this.openssl(['genpkey', ...keyArgs, '-out', file('key')]);
    this.openssl(['req', '-new', '-key', file('key'), '-subj', options.subject ?? `/CN=${name}`, '-utf8', '-out', file('csr')]);
    writeFileSync(file('ext'), `[v3]\n${options.extensions.join('\n')}\n`);
    const notBefore = options.notBefore ?? new Date(Date.now() - HOUR_MS);
    const notAfter = options.notAfter ?? new Date(notBefore.getTime() + 30 * 24 * HOUR_MS);
    this.openssl([
      'ca', '-batch', '-config', path.join(this.dir, 'ca.cnf'), '-notext', '-utf8',
      ...(issuer ? ['-cert', issuer.certPath, '-keyfile', issuer.keyPath] : ['-selfsign', '-keyfile', file('key')]),
      '-in', file('csr'), '-out', file('pem'), '-extfile', file('ext'), '-extensions', 'v3',
      '-startdate', caDate(notBefore), '-enddate', caDate(notAfter), '-md', options.digest ?? 'sha256',
    ]);
    const pem = readFileSync(file('pem'), 'utf8');
    const cert = { name, certPath: file('pem'), keyPath: file('key'), pem, x509: new X509Certificate(pem) };
    this.certificates.set(name, cert);
    return cert;
  }

  /** Writes the PEMs one after another into `<fileName>` (a bundle) and returns its path. */
  bundle(fileName: string, certs: readonly OpensslCertificate[]): string {
    const file = path.join(this.dir, fileName);
    writeFileSync(file, certs.map((c) => c.pem).join(''));
    return file;
  }

  /** `openssl verify -purpose sslclient -CAfile <roots> [-untrusted <intermediates>] <leaf>`. */
  verify(roots: readonly OpensslCertificate[], untrusted: readonly OpensslCertificate[], leaf: OpensslCertificate): OpensslVerdict {
    const args = ['verify', '-purpose', 'sslclient', '-CAfile', this.bundle(`roots-${leaf.name}.pem`, roots)];
    if (untrusted.length > 0) args.push('-untrusted', this.bundle(`untrusted-${leaf.name}.pem`, untrusted));
    args.push(leaf.certPath);
    try {
      const output = execFileSync('openssl', args, { cwd: this.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return { ok: true, output: output.trim() };
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string };
      return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}`.trim() };
    }
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private openssl(args: readonly string[]): void {
    try {
      execFileSync('openssl', args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      throw new Error(`openssl ${args.join(' ')} failed: ${(error as { stderr?: Buffer }).stderr?.toString() ?? (error as Error).message}`);
    }
  }
}
