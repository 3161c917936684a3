import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * The CLI's errors as a user meets them (issue 9, item 8): each bad input is one line that names
 * the flag, the environment variable or the config key it came from, and nothing is written.
 * Runs the compiled `build/main.js`, as `npm run synth` does.
 */

const MAIN = path.resolve(__dirname, '..', 'build', 'main.js');

function synth(cwd: string, args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('APIEXT_') && k !== 'CDK8S_OUTDIR'));
  // A bound, so that a synth that hangs fails its test instead of blocking jest.
  return spawnSync(process.execPath, [MAIN, ...args], { cwd, env: { ...cleanEnv, CDK8S_CHECK_UPGRADE: 'false', ...env }, encoding: 'utf8', timeout: 30_000 });
}

let work: string;
beforeEach(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-errors-'));
});
afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

function expectOneLineError(run: SpawnSyncReturns<string>, message: RegExp): void {
  expect(run.status).toBe(2);
  expect(run.stderr.trim().split('\n')).toHaveLength(1);
  expect(run.stderr).toMatch(/^error: /);
  expect(run.stderr).toMatch(message);
  expect(fs.existsSync(path.join(work, 'dist'))).toBe(false);
}

describe('CLI errors name where the bad input came from', () => {
  test('fails for a stray APIEXT_ variable, naming the variable and the environment', () => {
    // GIVEN a variable with the prefix that is no option WHEN synth runs
    const run = synth(work, [], { APIEXT_FOO: '1' });
    // THEN the error names the variable, not a command-line argument the user never typed
    expectOneLineError(run, /APIEXT_FOO in the environment is not an option/);
  });

  test('fails for a config key that is no option, naming the file and the key', () => {
    fs.writeFileSync(path.join(work, 'apiext.yaml'), 'namespace: wardle\nnamespcae: typo\n');
    const run = synth(work, ['--config', 'apiext.yaml']);
    expectOneLineError(run, /--config ".*apiext\.yaml": "namespcae" is not an option/);
  });

  test('fails for a mistyped flag, naming it as a flag', () => {
    expectOneLineError(synth(work, ['--namespcae', 'x']), /--namespcae is not an option: see --help/);
  });

  test('fails for a positional argument, saying options are flags', () => {
    expectOneLineError(synth(work, ['wardle']), /"wardle" is not an option: options are flags with a value/);
  });

  test('fails for a config key with no value (null), naming the key', () => {
    // GIVEN `namespace:` with nothing after it (YAML null), which used to crash with "Cannot read properties of null"
    fs.writeFileSync(path.join(work, 'apiext.yaml'), 'namespace:\n');
    const run = synth(work, ['--config', 'apiext.yaml']);
    expectOneLineError(run, /--config ".*apiext\.yaml": "namespace" has no value \(null\)/);
  });

  test('fails for a config key holding a mapping', () => {
    fs.writeFileSync(path.join(work, 'apiext.yaml'), 'replicas:\n  min: 2\n');
    expectOneLineError(synth(work, ['--config', 'apiext.yaml']), /--config ".*apiext\.yaml": "replicas" is a mapping; expected a string, number or boolean/);
  });

  test('fails for a number past 2^53 with the digits typed, not "1e+23"', () => {
    const run = synth(work, ['--replicas', '99999999999999999999999']);
    expectOneLineError(run, /--replicas "99999999999999999999999" is far too large/);
    expect(run.stderr).not.toContain('e+');
  });
});

describe('output directories that cannot be', () => {
  test('fails for an --output below a file, naming the file', () => {
    fs.writeFileSync(path.join(work, 'README.md'), 'not a directory');
    expectOneLineError(synth(work, ['--output', 'README.md/sub', '--storage', 'memory']), /--output "README\.md\/sub" cannot be used: "README\.md" is a file, not a directory/);
  });

  test('fails at once for an --output under /proc (Node\'s recursive mkdir loops there), without a stack', () => {
    const started = Date.now();
    const run = synth(work, ['--output', '/proc/nope/dist', '--storage', 'memory']);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: --output "\/proc\/nope\/dist" cannot be written: .*ENOENT/)]);
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

describe('--help', () => {
  test('shows the type each flag takes and how to set options from the environment', () => {
    const run = synth(work, ['--help']);
    expect(run.status).toBe(0);
    const block = (flag: string): string => {
      const lines = run.stdout.split('\n');
      const start = lines.findIndex((line) => new RegExp(`^ {2,8}(-\\w, )?--${flag}\\s`).test(line));
      const end = lines.findIndex((line, i) => i > start && /^ {2,8}(-\w, )?--[\w-]+\s/.test(line));
      return lines.slice(start, end).join('\n');
    };
    for (const flag of ['replicas', 'etcd-replicas', 'secure-port', 'cert-validity-days']) expect(block(flag)).toContain('[number]');
    expect(block('network-policy')).toContain('[boolean]');
    expect(block('namespace')).toContain('[string]');
    expect(run.stdout).toMatch(/APIEXT_NAMESPACE=wardle/);
    expect(fs.existsSync(path.join(work, 'dist'))).toBe(false);
  });
});
