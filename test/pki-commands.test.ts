import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { ensureFrontProxyPki, FRONT_PROXY_PKI_FILES } from '../lib/pki/front-proxy';

/**
 * `pki inspect`, `pki rotate` and `front-proxy` end to end: the compiled CLI (build/lib/app/cli.js,
 * built by `npx tsc -p .` as `npm test` does) on the PKI and output of real synths of this
 * repository (build/main.js), each test in directories of its own. Chains are cross-checked with
 * `openssl verify`; expired and foreign certificates are made with `openssl ca`.
 */
const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'build', 'lib', 'app', 'cli.js');
const MAIN = path.join(ROOT, 'build', 'main.js');
const STORE = path.join('wardle', 'wardle-apiserver', 'cluster.local');
const PRIVATE_KEY_LINE = /-{5}BEGIN [A-Z ]*PRIVATE KEY-{5}/;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let work: string;

function run(file: string, args: readonly string[], cwd: string = work): Run {
  const result = spawnSync(process.execPath, [file, ...args], {
    cwd,
    env: { PATH: process.env.PATH, HOME: work, CDK8S_CHECK_UPGRADE: 'false' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: result.status ?? 1, stdout: result.stdout, stderr: result.stderr };
}

function cli(args: readonly string[], cwd: string = work): Run {
  return run(CLI, args, cwd);
}

/** A synth of this repository into `<dir>/dist`, its PKI in `<dir>/pki`. */
function synth(dir: string, extra: readonly string[] = []): void {
  const result = run(MAIN, ['--output', path.join(dir, 'dist'), '--pki-dir', path.join(dir, 'pki'), ...extra], dir);
  if (result.code !== 0) throw new Error(`synth failed (${result.code}): ${result.stderr}`);
}

function newDirectory(name: string): string {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  return dir;
}

function openssl(args: readonly string[], cwd: string = work): { code: number; output: string } {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  return { code: result.status ?? 1, output: `${result.stdout}${result.stderr}` };
}

/** `openssl verify` of `certFile` against the CAs of `caFile`; `purpose` e.g. `sslclient`. */
function opensslVerifies(caFile: string, certFile: string, purpose?: string): boolean {
  return openssl(['verify', ...(purpose ? ['-purpose', purpose] : []), '-CAfile', caFile, certFile]).code === 0;
}

/** A self-signed CA made by openssl in `dir` (ca.crt, ca.key). */
function opensslCa(dir: string, cn: string): { cert: string; key: string } {
  fs.mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, 'ca.crt');
  const key = path.join(dir, 'ca.key');
  const made = openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '3650', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  if (made.code !== 0) throw new Error(made.output);
  return { cert, key };
}

/**
 * A serving certificate for wardle-apiserver.wardle.svc signed by `ca` with the validity given
 * (`openssl ca -startdate/-enddate`, YYYYMMDDHHMMSSZ), written to `<dir>/leaf.crt` and `leaf.key`.
 */
function opensslLeaf(dir: string, ca: { cert: string; key: string }, startdate: string, enddate: string): { cert: string; key: string } {
  fs.mkdirSync(dir, { recursive: true });
  const config = path.join(dir, 'ca.cnf');
  fs.writeFileSync(
    config,
    [
      '[ca]',
      'default_ca = d',
      '[d]',
      `database = ${path.join(dir, 'index.txt')}`,
      `new_certs_dir = ${dir}`,
      `serial = ${path.join(dir, 'serial')}`,
      'default_md = sha256',
      'policy = p',
      'unique_subject = no',
      '[p]',
      'commonName = supplied',
      '[ext]',
      'basicConstraints = critical,CA:FALSE',
      'extendedKeyUsage = serverAuth',
      'subjectAltName = DNS:wardle-apiserver,DNS:wardle-apiserver.wardle,DNS:wardle-apiserver.wardle.svc,DNS:wardle-apiserver.wardle.svc.cluster.local',
      '',
    ].join('\n'),
  );
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), '01\n');
  const key = path.join(dir, 'leaf.key');
  const csr = path.join(dir, 'leaf.csr');
  const cert = path.join(dir, 'leaf.crt');
  let made = openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-subj', '/CN=wardle-apiserver.wardle.svc', '-out', csr]);
  if (made.code !== 0) throw new Error(made.output);
  made = openssl(['ca', '-batch', '-config', config, '-cert', ca.cert, '-keyfile', ca.key, '-in', csr, '-out', cert, '-startdate', startdate, '-enddate', enddate, '-extensions', 'ext', '-notext']);
  if (made.code !== 0) throw new Error(made.output);
  return { cert, key };
}

interface Inspected {
  location: string;
  source: 'pki' | 'dist';
  role: string;
  subject: string;
  serialNumberHex: string;
  sha256Fingerprint: string;
  notAfter: string;
  daysLeft: number;
  chain: { verified: boolean; detail: string };
  status: 'OK' | 'WARN' | 'FAIL';
  problems: string[];
}

function inspectJson(args: readonly string[]): { run: Run; ok: boolean; certificates: Inspected[] } {
  const result = cli(['pki', 'inspect', '-o', 'json', ...args]);
  if (result.stdout.trim() === '') throw new Error(`pki inspect printed nothing (exit ${result.code}): ${result.stderr}`);
  const report = JSON.parse(result.stdout);
  return { run: result, ok: report.ok, certificates: report.certificates };
}

// Parsed manifests: their fields are read ad hoc, as the assertions need them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function manifests(dist: string): Array<{ kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; [key: string]: any }> {
  return fs
    .readdirSync(dist)
    .filter((file) => file.endsWith('.yaml'))
    .sort()
    .flatMap((file) => YAML.parseAllDocuments(fs.readFileSync(path.join(dist, file), 'utf8')).map((d) => d.toJS()))
    .filter(Boolean);
}

function pemsOf(base64: string): string[] {
  return Buffer.from(base64, 'base64').toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];
}

function firstPem(file: string): string {
  return fs.readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0];
}

/** Every file under `dir` with its content and mode: to show that a run wrote nothing. */
function snapshot(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else {
        const stat = fs.statSync(full);
        files[path.relative(dir, full)] = `${(stat.mode & 0o777).toString(8)} ${stat.mtimeMs} ${fs.readFileSync(full, 'utf8')}`;
      }
    }
  };
  walk(dir);
  return files;
}

let fresh: string;

beforeAll(() => {
  if (!fs.existsSync(CLI) || !fs.existsSync(MAIN)) throw new Error(`${CLI} or ${MAIN} is missing: run "npx tsc -p ." first (npm test does)`);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'pki-commands-'));
  // GIVEN a real synth of this repository (self-signed serving PKI, etcd's PKI)
  fresh = newDirectory('fresh');
  synth(fresh);
}, 180_000);

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

describe('pki inspect', () => {
  test('on a fresh synth every certificate is OK and chained, as openssl verify says; no private key is printed', () => {
    // WHEN inspecting the synth's PKI directory and output
    const { run: result, ok, certificates } = inspectJson(['--pki-dir', path.join(fresh, 'pki'), '--dist', path.join(fresh, 'dist')]);

    // THEN exit 0, and every certificate of both is there and OK
    expect(result.code).toBe(0);
    expect(ok).toBe(true);
    expect(certificates.every((c) => c.status === 'OK' && c.chain.verified)).toBe(true);
    const store = path.join(fresh, 'pki', STORE);
    const servingInPki = certificates.find((c) => c.location === path.join(store, 'tls.crt'))!;
    const servingInDist = certificates.find((c) => c.location === 'Secret wardle/wardle-apiserver-tls tls.crt')!;
    expect(servingInPki.sha256Fingerprint).toBe(new X509Certificate(fs.readFileSync(path.join(store, 'tls.crt'))).fingerprint256);
    expect(servingInDist.sha256Fingerprint).toBe(servingInPki.sha256Fingerprint);
    // the serving certificate in dist/ is checked against each APIService caBundle too
    expect(servingInDist.chain.detail).toMatch(/caBundle of APIService v1beta1\.wardle\.example\.com/);
    expect(certificates.filter((c) => c.location.startsWith('APIService ')).length).toBeGreaterThanOrEqual(1);
    // every etcd leaf of the PKI is there too
    expect(certificates.filter((c) => c.location.includes(`wardle-apiserver-etcd${path.sep}`) && c.role === 'leaf').length).toBe(7);
    // openssl agrees on every leaf of the PKI directory
    for (const leaf of certificates.filter((c) => c.source === 'pki' && c.role === 'leaf')) {
      expect(opensslVerifies(path.join(path.dirname(leaf.location), 'ca.crt'), leaf.location)).toBe(true);
    }
    for (const format of ['table', 'wide', 'json']) {
      const printed = cli(['pki', 'inspect', '-o', format, '--pki-dir', path.join(fresh, 'pki'), '--dist', path.join(fresh, 'dist')]);
      expect(printed.code).toBe(0);
      expect(printed.stdout).not.toMatch(PRIVATE_KEY_LINE);
    }
  });

  test('the table names each certificate once per place, with status, days left and chain', () => {
    // WHEN inspecting for a terminal (no TTY here: no colour)
    const result = cli(['pki', 'inspect', '--pki-dir', path.join(fresh, 'pki'), '--dist', path.join(fresh, 'dist')]);

    // THEN a header, a row per certificate, a summary; no escape codes
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines).toContainEqual(expect.stringMatching(/^STATUS\s+DAYS\s+ROLE\s+SUBJECT\s+SERIAL\s+CHAIN\s+WHERE$/));
    expect(lines).toContainEqual(expect.stringMatching(/^OK\s+364\s+leaf\s+CN=wardle-apiserver\.wardle\.svc\s+\w{8}\s+verified\s+Secret wardle\/wardle-apiserver-tls tls\.crt$/));
    expect(result.stdout).toMatch(/^0 failed, 0 warned, \d+ OK$/m);
    expect(result.stdout).not.toContain('\u001b[');
  });

  test('on a terminal the status is coloured, and not with NO_COLOR', () => {
    // GIVEN a pseudo-terminal (util-linux script)
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} pki inspect --pki-dir ${JSON.stringify(path.join(fresh, 'pki'))} --dist ${JSON.stringify(path.join(fresh, 'dist'))}`;
    const onTty = (env: NodeJS.ProcessEnv) => spawnSync('script', ['-qec', command, '/dev/null'], { cwd: work, env: { PATH: process.env.PATH, HOME: work, ...env }, encoding: 'utf8' });

    // WHEN inspecting there, with and without NO_COLOR
    const coloured = onTty({});
    const plain = onTty({ NO_COLOR: '1' });

    // THEN OK is green on the terminal, plain with NO_COLOR
    expect(coloured.status).toBe(0);
    expect(coloured.stdout).toContain('\u001b[32mOK');
    expect(plain.status).toBe(0);
    expect(plain.stdout).toMatch(/^OK\s+364\s+leaf/m);
    expect(plain.stdout).not.toContain('\u001b[');
  });

  test('fails on certificates that expire within --warn-days (longer than their lifetime)', () => {
    // WHEN warning under 400 days, when the leaves live 365 days and the CAs 3650
    const { run: result, ok, certificates } = inspectJson(['--pki-dir', path.join(fresh, 'pki'), '--dist', path.join(fresh, 'dist'), '--warn-days', '400']);

    // THEN exit 1: every leaf warns, every CA is OK
    expect(result.code).toBe(1);
    expect(ok).toBe(false);
    for (const c of certificates) {
      if (c.role === 'leaf') {
        expect(c.status).toBe('WARN');
        expect(c.problems.join()).toMatch(/expires within 400 days \(.*, 36[45] days left\)/);
      } else {
        expect(c.status).toBe('OK');
      }
    }
    const table = cli(['pki', 'inspect', '--pki-dir', path.join(fresh, 'pki'), '--dist', path.join(fresh, 'dist'), '--warn-days', '400']);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/^0 failed, \d+ warned, \d+ OK$/m);
  });

  test('fails on an expired serving certificate, as openssl verify does', () => {
    // GIVEN a copy of the PKI whose serving certificate, signed by its CA, expired in 2020 (openssl ca -startdate/-enddate)
    const dir = newDirectory('expired');
    fs.cpSync(path.join(fresh, 'pki'), path.join(dir, 'pki'), { recursive: true });
    const store = path.join(dir, 'pki', STORE);
    const expired = opensslLeaf(path.join(dir, 'openssl'), { cert: path.join(store, 'ca.crt'), key: path.join(store, 'ca.key') }, '20200101000000Z', '20200201000000Z');
    fs.copyFileSync(expired.cert, path.join(store, 'tls.crt'));
    fs.copyFileSync(expired.key, path.join(store, 'tls.key'));

    // WHEN inspecting that PKI (no dist/ there)
    const { run: result, certificates } = inspectJson(['--pki-dir', path.join(dir, 'pki')]);

    // THEN exit 1, the serving certificate FAILs as expired while its chain holds; openssl says the same
    expect(result.code).toBe(1);
    const serving = certificates.find((c) => c.location === path.join(store, 'tls.crt'))!;
    expect(serving.status).toBe('FAIL');
    expect(serving.chain.verified).toBe(true);
    expect(serving.problems).toEqual(['expired at 2020-02-01T00:00:00.000Z']);
    expect(serving.daysLeft).toBeLessThan(0);
    const verdict = openssl(['verify', '-CAfile', path.join(store, 'ca.crt'), path.join(store, 'tls.crt')]);
    expect(verdict.code).not.toBe(0);
    expect(verdict.output).toMatch(/certificate has expired/);
    expect(certificates.filter((c) => c !== serving).every((c) => c.status === 'OK')).toBe(true);
  });

  test('fails on a serving certificate of another CA put in the PKI, as openssl verify does', () => {
    // GIVEN a copy of the PKI whose tls.crt was issued by another CA (valid dates)
    const dir = newDirectory('foreign-pki');
    fs.cpSync(path.join(fresh, 'pki'), path.join(dir, 'pki'), { recursive: true });
    const store = path.join(dir, 'pki', STORE);
    const other = opensslCa(path.join(dir, 'other-ca'), 'another CA');
    const foreign = opensslLeaf(path.join(dir, 'openssl'), other, '20250101000000Z', '20400101000000Z');
    fs.copyFileSync(foreign.cert, path.join(store, 'tls.crt'));
    fs.copyFileSync(foreign.key, path.join(store, 'tls.key'));

    // WHEN inspecting it
    const { run: result, certificates } = inspectJson(['--pki-dir', path.join(dir, 'pki')]);

    // THEN exit 1: mis-chained, naming the store's CAs; openssl refuses it with the store's CA and accepts it with its own
    expect(result.code).toBe(1);
    const serving = certificates.find((c) => c.location === path.join(store, 'tls.crt'))!;
    expect(serving.status).toBe('FAIL');
    expect(serving.chain.verified).toBe(false);
    expect(serving.problems).toEqual([`mis-chained: not issued by any certificate of the CAs of ${store}`]);
    expect(opensslVerifies(path.join(store, 'ca.crt'), path.join(store, 'tls.crt'))).toBe(false);
    expect(opensslVerifies(other.cert, path.join(store, 'tls.crt'))).toBe(true);
  });

  test('fails on a serving Secret of another CA in dist/: it chains to its own ca.crt but not to the caBundle', () => {
    // GIVEN a copy of dist/ whose serving Secret holds a certificate and ca.crt of another CA
    const dir = newDirectory('foreign-dist');
    fs.cpSync(path.join(fresh, 'dist'), path.join(dir, 'dist'), { recursive: true });
    const other = opensslCa(path.join(dir, 'other-ca'), 'another CA');
    const foreign = opensslLeaf(path.join(dir, 'openssl'), other, '20250101000000Z', '20400101000000Z');
    const base64 = (file: string) => Buffer.from(fs.readFileSync(file, 'utf8')).toString('base64');
    for (const file of fs.readdirSync(path.join(dir, 'dist'))) {
      const full = path.join(dir, 'dist', file);
      const documents = YAML.parseAllDocuments(fs.readFileSync(full, 'utf8')).map((d) => d.toJS());
      for (const o of documents) {
        if (o?.kind === 'Secret' && o.metadata.name === 'wardle-apiserver-tls') {
          o.data['tls.crt'] = base64(foreign.cert);
          o.data['ca.crt'] = base64(other.cert);
          o.data['tls.key'] = base64(foreign.key);
        }
      }
      fs.writeFileSync(full, documents.map((o) => YAML.stringify(o)).join('---\n'));
    }

    // WHEN inspecting that output (no PKI directory there)
    const { run: result, certificates } = inspectJson(['--dist', path.join(dir, 'dist')]);

    // THEN exit 1: the Secret's certificate verifies with its ca.crt, not with the APIServices' caBundle
    expect(result.code).toBe(1);
    const serving = certificates.find((c) => c.location === 'Secret wardle/wardle-apiserver-tls tls.crt')!;
    expect(serving.status).toBe('FAIL');
    expect(serving.chain.detail).toMatch(/^verified by CN=another CA \(its Secret's ca\.crt\); not issued by any certificate of the caBundle of APIService v1beta1\.wardle\.example\.com/);
    expect(serving.problems).toHaveLength(1);
    expect(serving.problems[0]).toMatch(/^mis-chained: not issued by any certificate of the caBundle of APIService v1beta1\.wardle\.example\.com/);
  });

  test('fails on a key that does not match its certificate, and warns on a key readable by others', () => {
    // GIVEN a copy of the PKI whose tls.key is another certificate's key, and whose ca.key is mode 0644
    const dir = newDirectory('keys');
    fs.cpSync(path.join(fresh, 'pki'), path.join(dir, 'pki'), { recursive: true });
    const store = path.join(dir, 'pki', STORE);
    fs.copyFileSync(path.join(dir, 'pki', 'wardle', 'wardle-apiserver-etcd', 'cluster.local', 'client.key'), path.join(store, 'tls.key'));
    fs.chmodSync(path.join(store, 'ca.key'), 0o644);

    // WHEN inspecting it
    const { run: result, certificates } = inspectJson(['--pki-dir', path.join(dir, 'pki')]);

    // THEN the serving certificate FAILs on its key (openssl agrees: the moduli differ), the CA WARNs on its mode; no key is printed
    expect(result.code).toBe(1);
    const serving = certificates.find((c) => c.location === path.join(store, 'tls.crt'))!;
    expect(serving.status).toBe('FAIL');
    expect(serving.problems).toEqual([`its key ${path.join(store, 'tls.key')} does not match the certificate (expected the private key of its public key)`]);
    const modulus = (args: string[]) => openssl(args).output.trim();
    expect(modulus(['x509', '-noout', '-modulus', '-in', path.join(store, 'tls.crt')])).not.toBe(modulus(['rsa', '-noout', '-modulus', '-in', path.join(store, 'tls.key')]));
    const ca = certificates.find((c) => c.location === path.join(store, 'ca.crt'))!;
    expect(ca.status).toBe('WARN');
    expect(ca.problems).toEqual([`its key ${path.join(store, 'ca.key')} is readable by others (mode 0644; expected 0600: a synth restricts it)`]);
    expect(result.stdout).not.toMatch(PRIVATE_KEY_LINE);
  });

  test('fails on a CA private key in dist/', () => {
    // GIVEN a copy of dist/ whose serving Secret holds the CA itself, with its key
    const dir = newDirectory('ca-key-in-dist');
    fs.cpSync(path.join(fresh, 'dist'), path.join(dir, 'dist'), { recursive: true });
    const store = path.join(fresh, 'pki', STORE);
    const base64 = (file: string) => Buffer.from(fs.readFileSync(file, 'utf8')).toString('base64');
    for (const file of fs.readdirSync(path.join(dir, 'dist'))) {
      const full = path.join(dir, 'dist', file);
      const documents = YAML.parseAllDocuments(fs.readFileSync(full, 'utf8')).map((d) => d.toJS());
      for (const o of documents) {
        if (o?.kind === 'Secret' && o.metadata.name === 'wardle-apiserver-tls') {
          o.data['tls.crt'] = base64(path.join(store, 'ca.crt'));
          o.data['tls.key'] = base64(path.join(store, 'ca.key'));
        }
      }
      fs.writeFileSync(full, documents.map((o) => YAML.stringify(o)).join('---\n'));
    }

    // WHEN inspecting it
    const { run: result, certificates } = inspectJson(['--dist', path.join(dir, 'dist')]);

    // THEN that certificate FAILs for its key being there; nothing prints the key
    expect(result.code).toBe(1);
    const inSecret = certificates.find((c) => c.location === 'Secret wardle/wardle-apiserver-tls tls.crt')!;
    expect(inSecret.status).toBe('FAIL');
    expect(inSecret.problems).toEqual([
      "Secret wardle/wardle-apiserver-tls tls.key is a CA's private key in the output: whoever reads the manifests can issue certificates this CA's clients trust",
    ]);
    expect(result.stdout).not.toMatch(PRIVATE_KEY_LINE);
  });

  test('fails with exit 2 naming the flag on bad options', () => {
    // WHEN --warn-days is not a number, or --pki-dir / --dist do not exist
    const badDays = cli(['pki', 'inspect', '--warn-days', 'soon', '--pki-dir', path.join(fresh, 'pki')]);
    const noPki = cli(['pki', 'inspect', '--pki-dir', path.join(work, 'absent')]);
    const nothing = cli(['pki', 'inspect'], newDirectory('empty'));
    const noSubcommand = cli(['pki', 'inspekt']);

    // THEN exit 2 and one line naming what is wrong
    expect(badDays.code).toBe(2);
    expect(badDays.stderr).toMatch(/--warn-days "soon" is not a whole number of days/);
    expect(noPki.code).toBe(2);
    expect(noPki.stderr).toMatch(/--pki-dir ".*absent" does not exist/);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/no certificate found in --pki-dir ".pki" or --dist "dist"/);
    expect(noSubcommand.code).toBe(2);
    expect(noSubcommand.stderr).toMatch(/"inspekt" is not a pki subcommand \(expected inspect or rotate\)/);
  });
});

describe('pki rotate', () => {
  test('--ca: a new CA and serving certificate now; the next synth keeps the old CA in caBundle after the new one, changes the Secret and rolls the pods', () => {
    // GIVEN a synth and its PKI
    const dir = newDirectory('rotate-ca');
    synth(dir);
    const store = path.join(dir, 'pki', STORE);
    const dist = path.join(dir, 'dist');
    const oldCa = firstPem(path.join(store, 'ca.crt'));
    const oldServing = firstPem(path.join(store, 'tls.crt'));
    const before = manifests(dist);
    const distBefore = snapshot(dist);

    // WHEN rotating the CA with the synth's options
    const result = cli(['pki', 'rotate', '--ca', '--pki-dir', path.join(dir, 'pki'), '--output', dist], dir);

    // THEN the store holds a new CA and a serving certificate it signed; the old ones are retired, not lost
    expect(result.code).toBe(0);
    const newCa = firstPem(path.join(store, 'ca.crt'));
    expect(newCa).not.toBe(oldCa);
    expect(opensslVerifies(path.join(store, 'ca.crt'), path.join(store, 'tls.crt'))).toBe(true);
    expect(fs.readFileSync(path.join(store, 'ca-retired.crt'), 'utf8')).toBe(oldCa);
    expect(fs.readFileSync(path.join(store, 'tls-retired.crt'), 'utf8')).toBe(oldServing);
    expect(fs.statSync(path.join(store, 'ca.key')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(store, 'tls.key')).mode & 0o777).toBe(0o600);
    // it says what the next synth changes, and changes nothing in dist/ itself
    expect(snapshot(dist)).toEqual(distBefore);
    expect(result.stdout).toMatch(/^Rotated the CA of /);
    expect(result.stdout).toMatch(new RegExp(`The old CA stays in caBundle, after the new one, until ${new Date(new X509Certificate(oldServing).validTo).toISOString()}`));
    expect(result.stdout).toMatch(/^ {2}Secret wardle\/wardle-apiserver-tls\n {4}data\.ca\.crt.*\n.*now 2 certificates.*\n {4}data\.tls\.crt.*\n.*\n {4}data\.tls\.key/m);
    expect(result.stdout).toMatch(/^ {2}Deployment wardle\/wardle-apiserver\n {4}spec\.template\.metadata\.annotations\.apiextension\.cdk8s\.io\/serving-cert-sha256: .*rolls its pods/m);
    expect(result.stdout).toMatch(/^ {2}APIService v1beta1\.wardle\.example\.com\n {4}spec\.caBundle: .*\n {6}now 2 certificates/m);
    expect(result.stdout).not.toMatch(/etcd/);
    expect(result.stdout).not.toMatch(PRIVATE_KEY_LINE);

    // WHEN synthesizing again with the same options
    synth(dir);

    // THEN each caBundle is the new CA, then the old one; the Secret serves the new certificate; the pods' checksum changed
    const after = manifests(dist);
    for (const apiService of after.filter((o) => o.kind === 'APIService')) {
      expect(pemsOf(apiService.spec.caBundle)).toEqual([newCa, oldCa]);
    }
    const secret = after.find((o) => o.kind === 'Secret' && o.metadata.name === 'wardle-apiserver-tls')!;
    expect(pemsOf(secret.data['tls.crt'])[0]).toBe(firstPem(path.join(store, 'tls.crt')));
    expect(pemsOf(secret.data['ca.crt'])).toEqual([newCa, oldCa]);
    const annotation = (objects: typeof before) =>
      objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'wardle-apiserver')!.spec.template.metadata.annotations['apiextension.cdk8s.io/serving-cert-sha256'];
    expect(annotation(after)).not.toBe(annotation(before));
    // during the overlap both certificates verify against the caBundle (openssl)
    const bundle = path.join(dir, 'bundle.pem');
    fs.writeFileSync(bundle, pemsOf(after.find((o) => o.kind === 'APIService')!.spec.caBundle).join(''));
    fs.writeFileSync(path.join(dir, 'old-serving.pem'), oldServing);
    expect(opensslVerifies(bundle, path.join(dir, 'old-serving.pem'), 'sslserver')).toBe(true);
    expect(opensslVerifies(bundle, path.join(store, 'tls.crt'), 'sslserver')).toBe(true);
    // the etcd objects did not change
    const etcd = (objects: typeof before) => JSON.stringify(objects.filter((o) => o.metadata.name.includes('-etcd')));
    expect(etcd(after)).toBe(etcd(before));
    // and inspect finds everything in order; a third synth changes nothing
    expect(inspectJson(['--pki-dir', path.join(dir, 'pki'), '--dist', dist]).run.code).toBe(0);
    const settled = snapshot(dist);
    synth(dir);
    expect(Object.fromEntries(Object.entries(snapshot(dist)).map(([k, v]) => [k, v.replace(/^\S+ \S+ /, '')]))).toEqual(
      Object.fromEntries(Object.entries(settled).map(([k, v]) => [k, v.replace(/^\S+ \S+ /, '')])),
    );
  }, 180_000);

  test('without --ca: a new serving certificate of the same CA; the next synth changes the Secret and the checksum, not caBundle', () => {
    // GIVEN a synth and its PKI
    const dir = newDirectory('rotate-serving');
    synth(dir);
    const store = path.join(dir, 'pki', STORE);
    const dist = path.join(dir, 'dist');
    const oldCa = firstPem(path.join(store, 'ca.crt'));
    const oldServing = firstPem(path.join(store, 'tls.crt'));
    const before = manifests(dist);

    // WHEN forcing a new serving certificate, with the options in a synth --config file
    const config = path.join(dir, 'synth.yaml');
    fs.writeFileSync(config, `pki-dir: ${JSON.stringify(path.join(dir, 'pki'))}\noutput: ${JSON.stringify(dist)}\n`);
    const result = cli(['pki', 'rotate', '--config', config], dir);

    // THEN same CA, new serving certificate with the same names, nothing retired; the preview lists no caBundle
    expect(result.code).toBe(0);
    expect(firstPem(path.join(store, 'ca.crt'))).toBe(oldCa);
    const newServing = firstPem(path.join(store, 'tls.crt'));
    expect(newServing).not.toBe(oldServing);
    expect(new X509Certificate(newServing).subjectAltName).toBe(new X509Certificate(oldServing).subjectAltName);
    expect(fs.existsSync(path.join(store, 'ca-retired.crt'))).toBe(false);
    expect(result.stdout).toMatch(/^Issued a new serving certificate in /);
    expect(result.stdout).toMatch(/data\.tls\.crt: the new certificate/);
    expect(result.stdout).not.toMatch(/spec\.caBundle/);

    // WHEN synthesizing again
    synth(dir);

    // THEN the Secret and the checksum changed, the caBundle did not
    const after = manifests(dist);
    const find = (objects: typeof before, kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name)!;
    expect(pemsOf(find(after, 'Secret', 'wardle-apiserver-tls').data['tls.crt'])[0]).toBe(newServing);
    expect(find(after, 'APIService', 'v1beta1.wardle.example.com').spec.caBundle).toBe(find(before, 'APIService', 'v1beta1.wardle.example.com').spec.caBundle);
    expect(find(after, 'Deployment', 'wardle-apiserver').spec.template.metadata.annotations).not.toEqual(find(before, 'Deployment', 'wardle-apiserver').spec.template.metadata.annotations);
  }, 180_000);

  test('--ca when the serving certificate has expired: the old CA is not kept, as on an automatic rotation', () => {
    // GIVEN a synth whose stored serving certificate, signed by the store's CA, expired in 2020
    const dir = newDirectory('rotate-ca-expired');
    synth(dir);
    const store = path.join(dir, 'pki', STORE);
    const expired = opensslLeaf(path.join(dir, 'openssl'), { cert: path.join(store, 'ca.crt'), key: path.join(store, 'ca.key') }, '20200101000000Z', '20200201000000Z');
    fs.copyFileSync(expired.cert, path.join(store, 'tls.crt'));
    fs.copyFileSync(expired.key, path.join(store, 'tls.key'));

    // WHEN rotating the CA
    const result = cli(['pki', 'rotate', '--ca', '--pki-dir', path.join(dir, 'pki'), '--output', path.join(dir, 'dist')], dir);

    // THEN nothing is retired, and the next synth's caBundle is the new CA alone
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/The old CA is not kept in caBundle: the serving certificate it signed has expired\./);
    expect(fs.existsSync(path.join(store, 'ca-retired.crt'))).toBe(false);
    expect(result.stdout).toMatch(/ {4}spec\.caBundle: .*\n {6}now 1 certificate: /);
  }, 180_000);

  test('--etcd: new etcd certificates from the same etcd CA, which the next synth reuses; it changes the etcd Secrets and the server pods\' checksum, not the members\'', () => {
    // GIVEN a synth and its PKI
    const dir = newDirectory('rotate-etcd');
    synth(dir);
    const etcdStore = path.join(dir, 'pki', 'wardle', 'wardle-apiserver-etcd', 'cluster.local');
    const servingBefore = snapshot(path.join(dir, 'pki', STORE));
    const leafFiles = fs.readdirSync(etcdStore).filter((f) => /-(server|peer)\.crt$|^client\.crt$/.test(f)).sort();
    const oldLeaves = leafFiles.map((f) => firstPem(path.join(etcdStore, f)));
    const oldCa = firstPem(path.join(etcdStore, 'ca.crt'));
    const before = manifests(path.join(dir, 'dist'));

    // WHEN reissuing etcd's certificates
    const result = cli(['pki', 'rotate', '--etcd', '--pki-dir', path.join(dir, 'pki'), '--output', path.join(dir, 'dist')], dir);

    // THEN every leaf is new, with the same names and usages, from the same CA (openssl verifies each for its use); the serving PKI is untouched
    expect(result.code).toBe(0);
    expect(leafFiles).toHaveLength(7);
    expect(firstPem(path.join(etcdStore, 'ca.crt'))).toBe(oldCa);
    leafFiles.forEach((file, i) => {
      const renewed = new X509Certificate(firstPem(path.join(etcdStore, file)));
      const old = new X509Certificate(oldLeaves[i]);
      expect(renewed.fingerprint256).not.toBe(old.fingerprint256);
      expect([renewed.subject, renewed.subjectAltName, renewed.keyUsage]).toEqual([old.subject, old.subjectAltName, old.keyUsage]);
      expect(opensslVerifies(path.join(etcdStore, 'ca.crt'), path.join(etcdStore, file), file === 'client.crt' ? 'sslclient' : 'sslserver')).toBe(true);
      expect(fs.statSync(path.join(etcdStore, file.replace(/\.crt$/, '.key'))).mode & 0o777).toBe(0o600);
    });
    expect(snapshot(path.join(dir, 'pki', STORE))).toEqual(servingBefore);
    expect(result.stdout).toMatch(/^Issued new etcd certificates in /);
    expect(result.stdout).toMatch(/^ {2}Deployment wardle\/wardle-apiserver\n {4}spec\.template\.metadata\.annotations\.apiextension\.cdk8s\.io\/etcd-client-cert-sha256: .*rolls its pods/m);
    expect(result.stdout).not.toMatch(/StatefulSet|APIService/);

    // WHEN synthesizing again
    const again = run(MAIN, ['--output', path.join(dir, 'dist'), '--pki-dir', path.join(dir, 'pki')], dir);

    // THEN the synth reuses every certificate; the etcd Secrets hold the new ones; the members' StatefulSet is unchanged
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/wardle-apiserver-etcd\/cluster\.local: reused CA; (reused [^;]+; ){6}reused client certificate$/m);
    const after = manifests(path.join(dir, 'dist'));
    const secret = after.find((o) => o.kind === 'Secret' && o.metadata.name === 'wardle-apiserver-etcd-client-tls')!;
    expect(pemsOf(secret.data['tls.crt'])[0]).toBe(firstPem(path.join(etcdStore, 'client.crt')));
    const statefulSet = (objects: typeof before) => JSON.stringify(objects.find((o) => o.kind === 'StatefulSet'));
    expect(statefulSet(after)).toBe(statefulSet(before));
  }, 180_000);

  test('fails with exit 2 on --etcd with --ca: etcd\'s CA rotation is staged by synth', () => {
    // WHEN asking for an etcd CA rotation
    const result = cli(['pki', 'rotate', '--etcd', '--ca', '--pki-dir', path.join(fresh, 'pki')]);

    // THEN refused, saying why, and the PKI is as it was
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--etcd with --ca: etcd reads its trusted CAs only at start/);
  });

  test('fails with exit 2 when there is nothing to rotate or the certificates are not self-signed', () => {
    // WHEN the PKI directory holds no store for these options, or the mode is cert-manager
    const empty = newDirectory('rotate-empty');
    const nothing = cli(['pki', 'rotate', '--pki-dir', path.join(empty, 'pki')], empty);
    const otherName = cli(['pki', 'rotate', '--pki-dir', path.join(fresh, 'pki'), '--name', 'other-apiserver'], empty);
    const certManager = cli(['pki', 'rotate', '--cert-mode', 'cert-manager', '--pki-dir', path.join(fresh, 'pki')], empty);

    // THEN exit 2 naming the missing file, or the flag
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/ca\.crt does not exist: there is nothing to rotate in .*wardle\/wardle-apiserver\/cluster\.local/);
    expect(otherName.code).toBe(2);
    expect(otherName.stderr).toMatch(/wardle\/other-apiserver\/cluster\.local/);
    expect(certManager.code).toBe(2);
    expect(certManager.stderr).toMatch(/--cert-mode cert-manager: pki rotate rotates the self-signed PKI/);
    expect(fs.existsSync(path.join(empty, 'pki'))).toBe(false);
  });
});

describe('front-proxy', () => {
  test('makes a CA and a client certificate that openssl verifies for client auth, whose CN is in the allowed names printed; a second run changes nothing', () => {
    // GIVEN no PKI directory yet
    const dir = newDirectory('front-proxy');
    const pki = path.join(dir, '.pki');

    // WHEN running front-proxy twice
    const first = cli(['front-proxy', '--pki-dir', pki], dir);
    const files = snapshot(pki);
    const second = cli(['front-proxy', '--pki-dir', pki], dir);

    // THEN the second run wrote nothing and printed the same, byte for byte
    expect(first.code).toBe(0);
    expect(second.code).toBe(0);
    expect(snapshot(pki)).toEqual(files);
    expect(second.stdout).toBe(first.stdout);
    expect(first.stderr).toMatch(/front-proxy: created CA; created client certificate/);
    expect(second.stderr).toMatch(/front-proxy: reused CA; reused client certificate\n$/);
    // the store: directory 0700, keys 0600, a .gitignore for the new PKI directory
    const store = path.join(pki, 'front-proxy');
    expect(fs.statSync(store).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(store, 'ca.key')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(store, 'front-proxy-client.key')).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(path.join(pki, '.gitignore'), 'utf8')).toMatch(/^\*$/m);
    // openssl verifies the client certificate for TLS client auth against the bundle it is told to give kube-apiserver
    const bundle = path.join(store, 'requestheader-client-ca.crt');
    const client = path.join(store, 'front-proxy-client.crt');
    expect(opensslVerifies(bundle, client, 'sslclient')).toBe(true);
    expect(opensslVerifies(bundle, client, 'sslserver')).toBe(false);
    // its CN is among the allowed names printed
    const allowed = /^--requestheader-allowed-names=(.*)$/m.exec(first.stdout)![1].split(',');
    const cn = /CN=([^\n,]+)/.exec(new X509Certificate(fs.readFileSync(client)).subject)![1];
    expect(allowed).toContain(cn);
    expect(cn).toBe('front-proxy-client');
    // the flags, with the files where the kubeadm patch puts them
    expect(first.stdout).toContain('--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt');
    expect(first.stdout).toContain('--requestheader-extra-headers-prefix=X-Remote-Extra-');
    expect(first.stdout).toContain('--requestheader-group-headers=X-Remote-Group');
    expect(first.stdout).toContain('--requestheader-username-headers=X-Remote-User');
    expect(first.stdout).toContain('--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt');
    expect(first.stdout).toContain('--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key');
    expect(first.stdout).toMatch(/^# --enable-aggregator-routing=true$/m);
    expect(first.stdout).not.toMatch(PRIVATE_KEY_LINE);
    // the kubeadm patch parses, and sets the same flags
    const patch = YAML.parse(first.stdout.slice(first.stdout.indexOf('apiVersion: kubeadm.k8s.io/v1beta4')));
    expect(patch.kind).toBe('ClusterConfiguration');
    const flags = [...first.stdout.matchAll(/^--([a-z-]+)=(.*)$/gm)].map((m) => ({ name: m[1], value: m[2] }));
    expect(patch.apiServer.extraArgs).toEqual(flags);
  });

  test('several allowed names: the first is the CN; --enable-aggregator-routing is printed as a flag; another host directory gets a volume', () => {
    // GIVEN a PKI directory of its own
    const dir = newDirectory('front-proxy-names');

    // WHEN asking for two names, aggregator routing and another host directory
    const result = cli(['front-proxy', '--pki-dir', path.join(dir, 'pki'), '--allowed-name', 'aggregator', '--allowed-name', 'front-proxy-client', '--enable-aggregator-routing', '--host-dir', '/srv/pki'], dir);

    // THEN
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^--requestheader-allowed-names=aggregator,front-proxy-client$/m);
    expect(result.stdout).toMatch(/^--enable-aggregator-routing=true$/m);
    expect(new X509Certificate(fs.readFileSync(path.join(dir, 'pki', 'front-proxy', 'front-proxy-client.crt'))).subject).toBe('CN=aggregator');
    const patch = YAML.parse(result.stdout.slice(result.stdout.indexOf('apiVersion: kubeadm.k8s.io/v1beta4')));
    expect(patch.apiServer.extraArgs).toContainEqual({ name: 'enable-aggregator-routing', value: 'true' });
    expect(patch.apiServer.extraArgs).toContainEqual({ name: 'proxy-client-cert-file', value: '/srv/pki/front-proxy-client.crt' });
    expect(patch.apiServer.extraVolumes).toEqual([{ name: 'front-proxy', hostPath: '/srv/pki', mountPath: '/srv/pki', readOnly: true, pathType: 'Directory' }]);
  });

  test('the front-proxy CA rotates with overlap both ways: the next CA is in the bundle before it signs, the old one stays while its client certificate lives', () => {
    // GIVEN a front-proxy store made at T0 with short lifetimes (CA 10 days, client certificate 2 days)
    const directory = path.join(newDirectory('front-proxy-rotation'), 'front-proxy');
    const day = 86_400_000;
    const t0 = new Date('2030-01-01T00:00:00Z');
    const at = (days: number) => ensureFrontProxyPki({ directory, certValidityDays: 2, caValidityDays: 10, now: new Date(t0.getTime() + days * day) });
    const bundleFile = () => fs.readFileSync(path.join(directory, FRONT_PROXY_PKI_FILES.requestHeaderCaBundle), 'utf8');
    const first = at(0);
    expect(bundleFile()).toBe(first.caCertPem);

    // WHEN run again at day 7 (3 days of CA left: under two client lifetimes)
    const staged = at(7);

    // THEN the next CA is in the bundle file, but the client certificate is still the current CA's
    expect(staged.actions.join('; ')).toMatch(/staged the next CA/);
    const [current, next] = bundleFile().match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g)!;
    expect(current).toBe(first.caCertPem);
    expect(new X509Certificate(staged.client.certPem).checkIssued(new X509Certificate(current))).toBe(true);

    // WHEN run at day 8.5 (the CA cannot outlive a new 2-day certificate; the client certificate of day 7 lives until day 9)
    const promoted = at(8.5);

    // THEN the next CA signs the new client certificate; the old CA stays in the bundle while the old client certificate lives
    expect(promoted.caCertPem).toBe(next);
    expect(bundleFile()).toBe(promoted.caBundlePem);
    expect(promoted.caBundlePem).toBe(`${next}${first.caCertPem}`);
    const clientFile = path.join(directory, FRONT_PROXY_PKI_FILES.clientCert);
    expect(fs.readFileSync(clientFile, 'utf8')).toBe(promoted.client.certPem);
    const caFile = path.join(directory, 'next-ca.pem');
    fs.writeFileSync(caFile, next);
    // openssl checks the signature (-no_check_time: the certificates are dated 2030)
    expect(openssl(['verify', '-no_check_time', '-purpose', 'sslclient', '-CAfile', caFile, clientFile]).code).toBe(0);
  });

  test('fails with exit 2 naming the flag on bad options', () => {
    // WHEN the PKI directory is the working directory, the host directory relative, the lifetimes inverted
    const dir = newDirectory('front-proxy-bad');
    const here = cli(['front-proxy', '--pki-dir', '.'], dir);
    const relativeHost = cli(['front-proxy', '--pki-dir', 'pki', '--host-dir', 'etc/pki'], dir);
    const lifetimes = cli(['front-proxy', '--pki-dir', 'pki', '--cert-validity-days', '400', '--ca-validity-days', '300'], dir);

    // THEN exit 2, one line naming the flag, nothing written
    expect(here.code).toBe(2);
    expect(here.stderr).toMatch(/--pki-dir "\." is the working directory/);
    expect(relativeHost.code).toBe(2);
    expect(relativeHost.stderr).toMatch(/--host-dir "etc\/pki" is not an absolute path/);
    expect(lifetimes.code).toBe(2);
    expect(lifetimes.stderr).toMatch(/--ca-validity-days "300" must be greater than --cert-validity-days "400"/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});
