import { execFileSync, spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Construct } from 'constructs';
import { Certificates, servingDnsNames } from '../lib';
import { newChart } from './constructs/_fixtures';

/**
 * `--cert-mode existing` accepts what the aggregator's Go TLS client accepts and nothing else.
 * Every certificate here is made by openssl in the test; each refusal is cross-checked with
 * `openssl verify -purpose sslserver` (which refuses it too), and the accepted chains pass it.
 */

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'build', 'main.js');
const HOST = 'wardle-apiserver.wardle.svc';

/** openssl extension sections the certificates below are made with. */
const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = test root CA
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[intermediate_not_ca]
basicConstraints = critical, CA:FALSE
keyUsage = critical, keyCertSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[intermediate_no_cert_sign]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[intermediate_client_only]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:${HOST}, DNS:wardle-apiserver.wardle.svc.cluster.local
[server_no_eku]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
subjectAltName = DNS:${HOST}
[client_only]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectAltName = DNS:${HOST}
[cn_only]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
`;

let work: string;

function openssl(...args: string[]): string {
  return execFileSync('openssl', args, { cwd: work, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A key and a certificate `<name>.crt` signed by `issuer` (self-signed without one), with the config section `section`. */
function issue(name: string, section: string, options: { issuer?: string; cn?: string; digest?: string; days?: string } = {}): void {
  openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${options.cn ?? name}`);
  const signer = options.issuer === undefined ? ['-signkey', `${name}.key`] : ['-CA', `${options.issuer}.crt`, '-CAkey', `${options.issuer}.key`, '-set_serial', `0x${Date.now().toString(16)}${Math.floor(Math.random() * 1e6)}`];
  openssl('x509', '-req', '-in', `${name}.csr`, ...signer, '-days', options.days ?? '30', `-${options.digest ?? 'sha256'}`, '-extfile', 'openssl.cnf', '-extensions', section, '-out', `${name}.crt`);
}

function cat(...files: string[]): string {
  const out = path.join(work, `${files.join('+')}.pem`);
  fs.writeFileSync(out, files.map((f) => fs.readFileSync(path.join(work, f), 'utf8')).join(''));
  return out;
}

function synth(args: string[], extraEnv: Record<string, string> = {}): SpawnSyncReturns<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('APIEXT_') && k !== 'CDK8S_OUTDIR'));
  return spawnSync(process.execPath, [MAIN, '--storage', 'memory', '--cert-mode', 'existing', ...args], { cwd: work, env: { ...env, ...extraEnv }, encoding: 'utf8' });
}

function existing(cert: string, key: string, bundle = 'root.crt'): SpawnSyncReturns<string> {
  return synth(['--tls-cert-file', cert, '--tls-key-file', key, '--ca-bundle-file', bundle]);
}

/** `openssl verify -purpose sslserver` of the leaf (first) in `chainFile` against `bundle`, the rest untrusted; with SHA-1 refused (-auth_level 1) as Go refuses it. */
function opensslVerifies(chainFile: string, bundle = 'root.crt'): boolean {
  const pems = fs.readFileSync(path.join(work, chainFile), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
  fs.writeFileSync(path.join(work, 'verify-leaf.pem'), pems[0]);
  fs.writeFileSync(path.join(work, 'verify-untrusted.pem'), pems.slice(1).join(''));
  const untrusted = pems.length > 1 ? ['-untrusted', 'verify-untrusted.pem'] : [];
  const run = spawnSync('openssl', ['verify', '-auth_level', '1', '-purpose', 'sslserver', '-verify_hostname', HOST, '-CAfile', bundle, ...untrusted, 'verify-leaf.pem'], { cwd: work, encoding: 'utf8' });
  return run.status === 0;
}

function expectRefused(run: SpawnSyncReturns<string>, message: RegExp): void {
  expect(run.status).toBe(2);
  const lines = run.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(message);
  expect(fs.existsSync(path.join(work, 'dist'))).toBe(false);
}

beforeAll(() => {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" (npm test does) before jest`);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-existing-'));
  fs.writeFileSync(path.join(work, 'openssl.cnf'), OPENSSL_CONFIG);
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'root.key', '-out', 'root.crt', '-config', 'openssl.cnf', '-extensions', 'root', '-days', '60');
  issue('intermediate', 'intermediate', { issuer: 'root' });
  issue('server', 'server', { issuer: 'intermediate' });
  issue('direct', 'server', { issuer: 'root' });
  issue('no-eku', 'server_no_eku', { issuer: 'root' });
  issue('client-only', 'client_only', { issuer: 'root' });
  issue('sha1', 'server', { issuer: 'root', digest: 'sha1' });
  issue('expired', 'server', { issuer: 'root', days: '-1' });
  issue('cn-only', 'cn_only', { issuer: 'root', cn: HOST });
  issue('not-ca', 'intermediate_not_ca', { issuer: 'root' });
  issue('under-not-ca', 'server', { issuer: 'not-ca' });
  issue('no-cert-sign', 'intermediate_no_cert_sign', { issuer: 'root' });
  issue('under-no-cert-sign', 'server', { issuer: 'no-cert-sign' });
  issue('client-ca', 'intermediate_client_only', { issuer: 'root' });
  issue('under-client-ca', 'server', { issuer: 'client-ca' });
}, 120_000);
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
afterEach(() => fs.rmSync(path.join(work, 'dist'), { recursive: true, force: true }));

describe('--cert-mode existing accepts what the aggregator accepts', () => {
  test('a chain through an intermediate (serverAuth leaf, intermediate after it in --tls-cert-file)', () => {
    // GIVEN a leaf signed by an intermediate signed by the root in --ca-bundle-file
    const chain = cat('server.crt', 'intermediate.crt');
    // WHEN synthesized THEN it succeeds, as openssl verify -purpose sslserver does
    const run = existing(chain, 'server.key');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(opensslVerifies(path.basename(chain))).toBe(true);
    // AND the summary reports the serving certificate and the CA, from the files given
    const fingerprint = openssl('x509', '-noout', '-fingerprint', '-sha256', '-in', 'server.crt').trim().split('=')[1];
    expect(run.stdout).toMatch(new RegExp(`^ {2}serving CN=server {2}SHA-256 ${fingerprint}`, 'm'));
    expect(run.stdout).toMatch(/^ {2}CA {6}CN=test root CA {2}SHA-256/m);
  });

  test('a leaf without an extendedKeyUsage extension (any usage, as Go reads it)', () => {
    const run = existing('no-eku.crt', 'no-eku.key');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(opensslVerifies('no-eku.crt')).toBe(true);
  });

  test('a self-signed serving certificate (CA:FALSE) that is its own --ca-bundle-file: Go takes a leaf found among the roots as its own anchor', () => {
    // GIVEN a self-signed certificate with the serving extensions, used as the bundle too
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'self.key', '-out', 'self.crt', '-config', 'openssl.cnf', '-extensions', 'server', '-days', '30', '-subj', '/CN=self');
    // WHEN synthesized THEN accepted
    const run = existing('self.crt', 'self.key', 'self.crt');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});

describe('--cert-mode existing refuses what Go refuses, naming the flag and the file', () => {
  test('fails for a leaf usable only for clientAuth', () => {
    expect(opensslVerifies('client-only.crt')).toBe(false);
    expectRefused(existing('client-only.crt', 'client-only.key'), /--tls-cert-file "client-only\.crt" is not for TLS servers \(extended key usages: clientAuth; expected serverAuth/);
  });

  test('fails for a SHA-1-signed leaf', () => {
    expect(opensslVerifies('sha1.crt')).toBe(false);
    expectRefused(existing('sha1.crt', 'sha1.key'), /--tls-cert-file "sha1\.crt" is signed with SHA1-RSA \(expected SHA-256 or stronger/);
  });

  test('fails for a chain through an issuer that is not a CA (CA:FALSE)', () => {
    const chain = cat('under-not-ca.crt', 'not-ca.crt');
    expect(opensslVerifies(path.basename(chain))).toBe(false);
    expectRefused(existing(chain, 'under-not-ca.key'), /the intermediate "CN=not-ca" in --tls-cert-file ".*" signs --tls-cert-file ".*" but is not a CA \(expected basicConstraints CA:TRUE/);
  });

  test('fails for a chain through a CA whose keyUsage lacks keyCertSign', () => {
    const chain = cat('under-no-cert-sign.crt', 'no-cert-sign.crt');
    expect(opensslVerifies(path.basename(chain))).toBe(false);
    expectRefused(existing(chain, 'under-no-cert-sign.key'), /the intermediate "CN=no-cert-sign" in --tls-cert-file ".*" signs .* but its keyUsage lacks keyCertSign/);
  });

  test('fails for a chain through an intermediate limited to clientAuth', () => {
    const chain = cat('under-client-ca.crt', 'client-ca.crt');
    expect(opensslVerifies(path.basename(chain))).toBe(false);
    expectRefused(existing(chain, 'under-client-ca.key'), /the intermediate "CN=client-ca" in --tls-cert-file ".*" does not allow its certificates to serve TLS \(extended key usages: clientAuth/);
  });

  test('fails for an expired leaf', () => {
    expect(opensslVerifies('expired.crt')).toBe(false);
    expectRefused(existing('expired.crt', 'expired.key'), /--tls-cert-file "expired\.crt" is valid from \S+ to \S+, not now/);
  });

  test('fails for a leaf whose only name is its common name (Go ignores the CN)', () => {
    // (openssl verify -verify_hostname falls back to the CN when there is no DNS SAN; Go has not since 1.15)
    expectRefused(existing('cn-only.crt', 'cn-only.key'), /--tls-cert-file "cn-only\.crt" is not valid for "wardle-apiserver\.wardle\.svc" \(its names: none/);
  });

  test('fails for a key that is not the certificate\'s', () => {
    expectRefused(existing('direct.crt', 'no-eku.key'), /--tls-key-file "no-eku\.key" does not match --tls-cert-file "direct\.crt"/);
  });

  test('fails for a leaf that does not chain to --ca-bundle-file', () => {
    // GIVEN the intermediate's leaf without the intermediate
    expect(opensslVerifies('server.crt')).toBe(false);
    expectRefused(existing('server.crt', 'server.key'), /--tls-cert-file "server\.crt" \(issuer CN=intermediate\) does not chain to --ca-bundle-file "root\.crt"/);
  });

  test('fails naming the environment variable when the file came from APIEXT_TLS_CERT_FILE', () => {
    const run = synth(['--tls-key-file', 'client-only.key', '--ca-bundle-file', 'root.crt'], { APIEXT_TLS_CERT_FILE: 'client-only.crt' });
    expectRefused(run, /^error: APIEXT_TLS_CERT_FILE "client-only\.crt" is not for TLS servers/);
  });

  test('fails for a leaf made for another namespace, naming the Service name it needs', () => {
    expectRefused(synth(['--namespace', 'other', '--tls-cert-file', 'direct.crt', '--tls-key-file', 'direct.key', '--ca-bundle-file', 'root.crt']), /--tls-cert-file "direct\.crt" is not valid for "wardle-apiserver\.other\.svc"/);
  });
});

describe('Certificates.fromPem (a construct user) gets the prop names', () => {
  const read = (file: string) => fs.readFileSync(path.join(work, file), 'utf8');
  const request = { serviceName: 'wardle-apiserver', namespace: 'wardle', name: 'wardle-apiserver', dnsNames: servingDnsNames('wardle-apiserver', 'wardle') };
  const bind = (cert: string, key: string) => () =>
    Certificates.fromPem({ caBundlePem: read('root.crt'), tlsCertPem: read(cert), tlsKeyPem: read(key) }).bind(new Construct(newChart(), 'Certificates'), request);

  test('fails for a clientAuth-only leaf and a SHA-1 leaf, naming tlsCertPem', () => {
    expect(bind('client-only.crt', 'client-only.key')).toThrow(/^tlsCertPem is not for TLS servers/);
    expect(bind('sha1.crt', 'sha1.key')).toThrow(/^tlsCertPem is signed with SHA1-RSA/);
  });

  test('fails for a non-CA issuer, naming where it is', () => {
    const chain = read(path.basename(cat('under-not-ca.crt', 'not-ca.crt')));
    const run = () =>
      Certificates.fromPem({ caBundlePem: read('root.crt'), tlsCertPem: chain, tlsKeyPem: read('under-not-ca.key') }).bind(new Construct(newChart(), 'Certificates'), request);
    expect(run).toThrow(/^the intermediate "CN=not-ca" in tlsCertPem signs tlsCertPem but is not a CA/);
  });

  test('accepts the openssl-made chain', () => {
    const chain = read(path.basename(cat('server.crt', 'intermediate.crt')));
    expect(() =>
      Certificates.fromPem({ caBundlePem: read('root.crt'), tlsCertPem: chain, tlsKeyPem: read('server.key') }).bind(new Construct(newChart(), 'Certificates'), request),
    ).not.toThrow();
  });
});
