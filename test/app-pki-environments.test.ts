import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Chart } from 'cdk8s';
import * as YAML from 'yaml';
import { AggregatedApiServer, Certificates, protectSynthOutput, SelfSignedPki, WARDLE } from '../lib';

/**
 * Environments kept apart: two synths with different inputs sharing one PKI directory never
 * change each other's certificates or output, a throwaway synth never changes the PKI the
 * committed output uses, and the PKI is written by the app (`SelfSignedPki.save()`), never as a
 * side effect of building the construct tree.
 */

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'build', 'main.js');
jest.setTimeout(180_000);

function synth(cwd: string, args: string[]): SpawnSyncReturns<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('APIEXT_') && k !== 'CDK8S_OUTDIR'));
  const run = spawnSync(process.execPath, [MAIN, ...args], { cwd, env, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`synth ${args.join(' ')} failed: ${run.stderr}`);
  return run;
}

/** Every file under `dir` (recursively) → SHA-256 of its bytes. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of (fs.readdirSync(dir, { recursive: true }) as string[]).sort()) {
    const full = path.join(dir, entry);
    if (fs.statSync(full).isFile()) out[entry] = crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex');
  }
  return out;
}

function caBundleOf(dir: string): string {
  const objects = fs.readdirSync(dir).flatMap((f) => YAML.parseAllDocuments(fs.readFileSync(path.join(dir, f), 'utf8')).map((d) => d.toJS()));
  return objects.find((o) => o?.kind === 'APIService').spec.caBundle;
}

beforeAll(() => {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" (npm test does) before jest`);
});

describe('two environments sharing one PKI directory', () => {
  let work: string;
  let elsewhere: string;
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-env-'));
    elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-env-x-'));
  });
  afterAll(() => {
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(elsewhere, { recursive: true, force: true });
  });

  test('A, then B (another cluster domain, another output), then A and B again: each byte-identical to its first synth', () => {
    const outputB = path.join(elsewhere, 'x');
    const b = ['--cluster-domain', 'corp.internal', '-o', outputB];
    // GIVEN synth A on the defaults
    synth(work, []);
    const firstA = tree(path.join(work, 'dist'));
    const pkiOfA = tree(path.join(work, '.pki', 'wardle', 'wardle-apiserver', 'cluster.local'));
    const etcdPkiOfA = tree(path.join(work, '.pki', 'wardle', 'wardle-apiserver-etcd', 'cluster.local'));
    // WHEN synth B runs with the same PKI directory
    const runB = synth(work, b);
    const firstB = tree(outputB);
    // THEN B's PKI is its own environment, and A's files are untouched
    expect(runB.stdout).toMatch(/^ {2}\.pki\/wardle\/wardle-apiserver\/corp\.internal: created CA; created serving certificate$/m);
    expect(tree(path.join(work, '.pki', 'wardle', 'wardle-apiserver', 'cluster.local'))).toEqual(pkiOfA);
    expect(tree(path.join(work, '.pki', 'wardle', 'wardle-apiserver-etcd', 'cluster.local'))).toEqual(etcdPkiOfA);
    expect(caBundleOf(outputB)).not.toBe(caBundleOf(path.join(work, 'dist')));
    // AND A again is byte-identical to the first A, B again to the first B
    const againA = synth(work, []);
    expect(tree(path.join(work, 'dist'))).toEqual(firstA);
    expect(againA.stdout).toMatch(/^ {2}\.pki\/wardle\/wardle-apiserver\/cluster\.local: reused CA; reused serving certificate$/m);
    synth(work, b);
    expect(tree(outputB)).toEqual(firstB);
  });

  test('another namespace is another store; a throwaway output with the same inputs changes no PKI file', () => {
    // GIVEN the PKI as the committed output (dist/) uses it
    synth(work, []);
    const pkiBefore = tree(path.join(work, '.pki'));
    const committed = tree(path.join(work, 'dist'));
    // WHEN a throwaway synth writes elsewhere with the same inputs, and one with another namespace
    synth(work, ['-o', path.join(elsewhere, 'throwaway')]);
    synth(work, ['-o', path.join(elsewhere, 'other-ns'), '--namespace', 'other']);
    // THEN every file the committed output's PKI holds is as it was (the other namespace added its own)
    const pkiAfter = tree(path.join(work, '.pki'));
    expect(Object.fromEntries(Object.entries(pkiAfter).filter(([file]) => file in pkiBefore))).toEqual(pkiBefore);
    expect(Object.keys(pkiAfter).filter((file) => !(file in pkiBefore)).every((file) => file.startsWith(`other${path.sep}`))).toBe(true);
    // AND the throwaway output is the committed one, byte for byte
    expect(tree(path.join(elsewhere, 'throwaway'))).toEqual(committed);
  });
});

describe('a PKI directory from before environments (<pki>/<namespace>/<name>)', () => {
  let work: string;
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-env-legacy-'));
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  test('is adopted by its own environment (byte-identical output, no CA rotated) and by no other', () => {
    // GIVEN a synth, its stores then moved up one level: the layout before environments
    synth(work, []);
    const before = tree(path.join(work, 'dist'));
    for (const store of ['wardle-apiserver', 'wardle-apiserver-etcd']) {
      const parent = path.join(work, '.pki', 'wardle', store);
      for (const file of fs.readdirSync(path.join(parent, 'cluster.local'))) fs.renameSync(path.join(parent, 'cluster.local', file), path.join(parent, file));
      fs.rmdirSync(path.join(parent, 'cluster.local'));
    }
    const legacy = tree(path.join(work, '.pki'));
    // WHEN synthesized again with the same inputs
    const run = synth(work, []);
    // THEN the old stores are adopted: the output is byte-identical, the files copied into the environment's store
    expect(tree(path.join(work, 'dist'))).toEqual(before);
    expect(run.stdout).toMatch(/^ {2}\.pki\/wardle\/wardle-apiserver\/cluster\.local: adopted the store .*wardle-apiserver \(kept there as it was, no longer used\); reused CA; reused serving certificate$/m);
    expect(run.stdout).toMatch(/^ {2}\.pki\/wardle\/wardle-apiserver-etcd\/cluster\.local: adopted the store .*; reused CA; .*reused client certificate$/m);
    expect(tree(path.join(work, '.pki', 'wardle', 'wardle-apiserver', 'cluster.local'))).toEqual(
      Object.fromEntries(['ca.crt', 'ca.key', 'tls.crt', 'tls.key'].map((file) => [file, legacy[path.join('wardle', 'wardle-apiserver', file)]])),
    );
    // AND another environment does not take them: it gets a CA of its own
    const other = synth(work, ['--cluster-domain', 'corp.internal', '-o', 'dist-corp']);
    expect(other.stdout).toMatch(/^ {2}\.pki\/wardle\/wardle-apiserver\/corp\.internal: created CA; created serving certificate$/m);
  });
});

describe('SelfSignedPki: the app writes the PKI, building the tree does not', () => {
  let work: string;
  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-pki-object-'));
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  function build(pki: SelfSignedPki): { yaml: string; server: AggregatedApiServer } {
    const app = new App({ outdir: path.join(work, 'dist') });
    const server = new AggregatedApiServer(new Chart(app, 'wardle'), 'Server', { api: WARDLE, certificates: Certificates.selfSigned({ pki }) });
    app.synth();
    const yaml = fs.readdirSync(path.join(work, 'dist')).map((f) => fs.readFileSync(path.join(work, 'dist', f), 'utf8')).join('');
    return { yaml, server };
  }

  test('building and synthesizing write nothing; save() writes every store (etcd\'s too), 0700 directories, 0600 keys, a .gitignore', () => {
    // GIVEN a PKI object on a directory that does not exist
    const directory = path.join(work, 'pki');
    const pki = new SelfSignedPki({ directory });
    // WHEN the tree is built and synthesized
    const first = build(pki);
    // THEN the directory still does not exist
    expect(fs.existsSync(directory)).toBe(false);
    expect(pki.actions).toEqual([
      `wardle${path.sep}wardle-apiserver${path.sep}cluster.local: created CA; created serving certificate`,
      expect.stringMatching(/^wardle.wardle-apiserver-etcd.cluster\.local: created CA; .*created client certificate$/),
    ]);
    // AND what the summary prints comes from the PKI object: the serving certificate is the Secret's
    const secret = YAML.parseAllDocuments(first.yaml).map((d) => d.toJS()).find((o) => o?.metadata?.name === 'wardle-apiserver-tls');
    const serving = pki.certificates.find((c) => c.role === 'serving')!;
    expect(Buffer.from(secret.data['tls.crt'], 'base64').toString('utf8')).toBe(serving.certPem);
    expect(pki.certificates.filter((c) => c.role === 'etcd').map((c) => c.secretName)).toContain('wardle-apiserver-etcd-client-tls');
    // WHEN saved
    expect(pki.save()).toEqual([`${path.join(directory, '.gitignore')}: created, so that git ignores the PKI directory`]);
    // THEN every directory it made is 0700 and every key 0600, and the directory ignores itself
    for (const entry of ['', 'wardle', path.join('wardle', 'wardle-apiserver'), path.join('wardle', 'wardle-apiserver', 'cluster.local'), path.join('wardle', 'wardle-apiserver-etcd', 'cluster.local')]) {
      expect({ entry, mode: (fs.statSync(path.join(directory, entry)).mode & 0o777).toString(8) }).toEqual({ entry, mode: '700' });
    }
    const keys = (fs.readdirSync(directory, { recursive: true }) as string[]).filter((f) => f.endsWith('.key'));
    expect(keys.length).toBe(2 + 3 * 2 + 1 + 1);
    for (const key of keys) expect({ key, mode: (fs.statSync(path.join(directory, key)).mode & 0o777).toString(8) }).toEqual({ key, mode: '600' });
    expect(fs.readFileSync(path.join(directory, '.gitignore'), 'utf8')).toMatch(/^\*$/m);
    // AND saving again writes nothing
    const before = tree(directory);
    const mtimes = keys.map((key) => fs.statSync(path.join(directory, key)).mtimeMs);
    expect(pki.save()).toEqual([]);
    expect(tree(directory)).toEqual(before);
    expect(keys.map((key) => fs.statSync(path.join(directory, key)).mtimeMs)).toEqual(mtimes);
    // AND a new app on the same directory reuses everything: byte-identical output
    const next = new SelfSignedPki({ directory });
    expect(build(next).yaml).toBe(first.yaml);
    expect(next.actions.every((line) => /: (reused [^;]+)(; reused [^;]+)*$/.test(line))).toBe(true);
  });

  test('a tree that fails to build after its certificates were bound leaves the PKI directory as it was', () => {
    // GIVEN a PKI object, and a second server whose name collides with the first in one chart
    const directory = path.join(work, 'pki');
    const pki = new SelfSignedPki({ directory });
    const chart = new Chart(new App({ outdir: path.join(work, 'dist') }), 'wardle');
    new AggregatedApiServer(chart, 'One', { api: WARDLE, certificates: Certificates.selfSigned({ pki }) });
    // WHEN the second fails (same construct id) THEN nothing was written: the app never saved
    expect(() => new AggregatedApiServer(chart, 'One', { api: WARDLE, certificates: Certificates.selfSigned({ pki }) })).toThrow(/There is already a Construct with name 'One'/);
    expect(fs.existsSync(directory)).toBe(false);
  });

  test('protectSynthOutput: the library user\'s output directory 0700, files holding keys 0600', () => {
    // GIVEN an app synthesized by cdk8s, which writes with the umask (0755 / 0644 under umask 022)
    const pki = new SelfSignedPki({ directory: path.join(work, 'pki') });
    build(pki);
    const dist = path.join(work, 'dist');
    fs.chmodSync(dist, 0o755);
    fs.writeFileSync(path.join(dist, 'no-secret.k8s.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n', { mode: 0o644 });
    // WHEN protected
    const restricted = protectSynthOutput(dist);
    // THEN the directory is 0700, the file with the Secrets 0600, the one without left as it was
    expect((fs.statSync(dist).mode & 0o777).toString(8)).toBe('700');
    expect(restricted).toEqual([path.join(dist, 'wardle.k8s.yaml')]);
    expect((fs.statSync(path.join(dist, 'wardle.k8s.yaml')).mode & 0o777).toString(8)).toBe('600');
    expect((fs.statSync(path.join(dist, 'no-secret.k8s.yaml')).mode & 0o777).toString(8)).toBe('644');
  });

  test('fails for an empty directory or the working directory, naming the option', () => {
    expect(() => new SelfSignedPki({ directory: '' })).toThrow(/^directory "" is empty .*expected a directory of its own for the PKI, e\.g\. "\.pki"/);
    expect(() => new SelfSignedPki({ directory: '.' })).toThrow(/^directory "\." is the working directory or a directory above it/);
    expect(() => new SelfSignedPki({ directory: '/' })).toThrow(/^directory "\/" is the filesystem root/);
  });

  test('fails for pki given with pkiDirectory, naming both', () => {
    const pki = new SelfSignedPki({ directory: path.join(work, 'pki') });
    expect(() => Certificates.selfSigned({ pki, pkiDirectory: 'elsewhere' })).toThrow(/^pki and pkiDirectory are both set/);
  });
});
