import { execFileSync, spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * The CA key never lands where git would pick it up: unsafe PKI directories are refused with one
 * line naming the flag or variable, a PKI directory in a git work tree that does not ignore it is
 * refused unless --allow-unignored-pki-dir, a PKI directory the synth creates ignores itself, and
 * what holds keys is 0700 (directories) and 0600 (files).
 */

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'build', 'main.js');
jest.setTimeout(120_000);

function synth(cwd: string, args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('APIEXT_') && k !== 'CDK8S_OUTDIR'));
  return spawnSync(process.execPath, [MAIN, '--storage', 'memory', ...args], { cwd, env: { ...clean, ...env }, encoding: 'utf8' });
}

function mode(file: string): string {
  return (fs.statSync(file).mode & 0o777).toString(8);
}

/** Refused: exit 2, one line naming the input, and nothing written where the PKI or the output would go. */
function expectRefused(run: SpawnSyncReturns<string>, message: RegExp): void {
  expect(run.stdout).toBe('');
  const lines = run.stderr.trim().split('\n');
  expect(lines).toEqual([expect.stringMatching(message)]);
  expect(run.status).toBe(2);
}

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: cwd } });
}

beforeAll(() => {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" (npm test does) before jest`);
});

describe('unsafe PKI directories are refused, naming where the value came from', () => {
  let work: string;
  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-pki-safety-'));
    fs.writeFileSync(path.join(work, 'README.md'), 'a file\n');
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  /** Nothing but README.md in the work directory: no CA key, no output. */
  function expectNothingWritten(): void {
    expect(fs.readdirSync(work)).toEqual(['README.md']);
  }

  test('fails for --pki-dir ""', () => {
    expectRefused(synth(work, ['--pki-dir', '']), /^error: --pki-dir "" is empty \(expected a directory of its own for the CA keys, e\.g\. "\.pki"/);
    expectNothingWritten();
  });

  test('fails for APIEXT_PKI_DIR= (empty in the environment), naming the variable', () => {
    expectRefused(synth(work, [], { APIEXT_PKI_DIR: '' }), /^error: APIEXT_PKI_DIR "" is empty/);
    expectNothingWritten();
  });

  test('fails for pki-dir "" in a config file, naming the file and key', () => {
    fs.writeFileSync(path.join(work, 'synth.yaml'), 'pki-dir: ""\n');
    expectRefused(synth(work, ['--config', 'synth.yaml']), /^error: --config ".*synth\.yaml": "pki-dir" "" is empty/);
    expect(fs.readdirSync(work).sort()).toEqual(['README.md', 'synth.yaml']);
  });

  test('fails for /, the working directory and a directory above it', () => {
    expectRefused(synth(work, ['--pki-dir', '/']), /^error: --pki-dir "\/" is the filesystem root/);
    expectRefused(synth(work, ['--pki-dir', '.']), /^error: --pki-dir "\." is the working directory or a directory above it/);
    expectRefused(synth(work, ['--pki-dir', '..']), /^error: --pki-dir "\.\." is the working directory or a directory above it/);
    expectRefused(synth(work, [], { APIEXT_PKI_DIR: work }), /^error: APIEXT_PKI_DIR ".*" is the working directory or a directory above it/);
    expectNothingWritten();
  });

  test('fails for a file, and for the output directory itself', () => {
    expectRefused(synth(work, ['--pki-dir', 'README.md']), /^error: --pki-dir "README\.md" is a file, not a directory/);
    expectRefused(synth(work, ['--pki-dir', 'README.md/sub']), /^error: --pki-dir "README\.md\/sub" cannot be created: .*README\.md is a file, not a directory/);
    expectRefused(synth(work, ['--pki-dir', 'out', '-o', 'out']), /^error: --pki-dir "out" is inside --output "out"/);
    expectNothingWritten();
  });

  test('fails, without hanging, for a directory that cannot be made (/proc/nope: Node\'s recursive mkdir loops there)', () => {
    // GIVEN a path under /proc, where mkdir answers ENOENT WHEN synthesized THEN it fails fast, naming the flag
    const run = spawnSync(process.execPath, [MAIN, '--storage', 'memory', '--pki-dir', '/proc/nope'], { cwd: work, encoding: 'utf8', timeout: 60_000 });
    expect(run.signal).toBeNull();
    expect(run.status).toBe(1);
    expect(run.stderr.split('\n')[0]).toMatch(/^error: --pki-dir "\/proc\/nope": cannot create the PKI store .*ENOENT/);
    expectNothingWritten();
  });

  test('output directory 0700, output files holding keys 0600; every PKI directory 0700, keys 0600', () => {
    // GIVEN a permissive umask WHEN synthesized with etcd (members' and client keys too)
    const run = spawnSync('/bin/sh', ['-c', `umask 022 && exec "${process.execPath}" "${MAIN}" --pki-dir pki/nested`], { cwd: work, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    // THEN the output directory is 0700 and its file (holding the Secrets' keys) 0600
    expect(mode(path.join(work, 'dist'))).toBe('700');
    for (const file of fs.readdirSync(path.join(work, 'dist'))) expect(mode(path.join(work, 'dist', file))).toBe('600');
    // AND every directory the PKI created is 0700, every key 0600
    const entries = fs.readdirSync(path.join(work, 'pki'), { recursive: true }) as string[];
    for (const dir of ['', ...entries.filter((e) => fs.statSync(path.join(work, 'pki', e)).isDirectory())]) {
      expect({ dir, mode: mode(path.join(work, 'pki', dir)) }).toEqual({ dir, mode: '700' });
    }
    const keys = entries.filter((e) => e.endsWith('.key'));
    expect(keys.length).toBeGreaterThanOrEqual(2 + 3 * 2 + 1 + 1);
    for (const key of keys) expect({ key, mode: mode(path.join(work, 'pki', key)) }).toEqual({ key, mode: '600' });
  });
});

describe('a PKI directory inside a git work tree', () => {
  let repo: string;
  beforeEach(() => {
    repo = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-pki-git-'));
    git(repo, 'init', '-q');
    fs.writeFileSync(path.join(repo, '.gitignore'), '/dist/\n/.pki/\n');
  });
  afterEach(() => fs.rmSync(repo, { recursive: true, force: true }));

  test('fails for an existing directory git does not ignore, naming the flag and the fix; --allow-unignored-pki-dir keeps it', () => {
    // GIVEN a directory of the repository that .gitignore does not cover
    fs.mkdirSync(path.join(repo, 'secrets'));
    // WHEN synthesized into it THEN refused, nothing written
    expectRefused(
      synth(repo, ['--pki-dir', 'secrets']),
      /^error: --pki-dir "secrets" is inside the git work tree .* and git does not ignore it: its CA private keys would be committed \(expected it ignored, e\.g\. echo '\/secrets\/' >> .*\.gitignore; or --allow-unignored-pki-dir/,
    );
    expect(fs.readdirSync(path.join(repo, 'secrets'))).toEqual([]);
    expect(fs.existsSync(path.join(repo, 'dist'))).toBe(false);
    // AND with the override it is used
    const allowed = synth(repo, ['--pki-dir', 'secrets', '--allow-unignored-pki-dir']);
    expect(allowed.stderr).toBe('');
    expect(allowed.status).toBe(0);
    expect(fs.existsSync(path.join(repo, 'secrets', 'wardle', 'wardle-apiserver', 'cluster.local', 'ca.key'))).toBe(true);
  });

  test('a PKI directory the synth creates ignores itself: git status lists none of its files', () => {
    // GIVEN a PKI directory .gitignore does not mention, not there yet
    const run = synth(repo, ['--pki-dir', 'keys/pki']);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    // THEN git ignores the CA key, and a second synth (the directory now exists) is accepted
    expect(spawnSync('git', ['check-ignore', '-q', 'keys/pki/wardle/wardle-apiserver/cluster.local/ca.key'], { cwd: repo }).status).toBe(0);
    expect(git(repo, 'status', '--porcelain', '--untracked-files=all')).toBe('?? .gitignore\n');
    expect(synth(repo, ['--pki-dir', 'keys/pki']).status).toBe(0);
  });

  test('an ignored directory (.pki in .gitignore) is accepted', () => {
    fs.mkdirSync(path.join(repo, '.pki'));
    const run = synth(repo, []);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  test('no git on PATH: no check', () => {
    fs.mkdirSync(path.join(repo, 'secrets'));
    const run = synth(repo, ['--pki-dir', 'secrets'], { PATH: path.join(repo, 'no-such-bin') });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});
