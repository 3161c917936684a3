import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * `npm run synth` (scripts/synth.js) runs the current sources: it builds the app when there is
 * no build (as after `npm ci --ignore-scripts`) or when a source is newer than its output, and
 * otherwise starts at once. Run on a copy of the app's sources, so that editing them here
 * touches nothing of the repository.
 */

const ROOT = path.resolve(__dirname, '..');

let copy: string;
beforeAll(() => {
  copy = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-launcher-'));
  for (const entry of ['main.ts', 'apis', 'lib', 'imports', 'scripts', 'tsconfig.json', 'tsconfig.app.json', 'package.json']) {
    fs.cpSync(path.join(ROOT, entry), path.join(copy, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
});
afterAll(() => fs.rmSync(copy, { recursive: true, force: true }));

function synth(): SpawnSyncReturns<string> {
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('APIEXT_') && k !== 'CDK8S_OUTDIR')), CDK8S_CHECK_UPGRADE: 'false' };
  return spawnSync(process.execPath, ['scripts/synth.js', '--output', 'out', '--pki-dir', 'pki', '--storage', 'memory'], { cwd: copy, env, encoding: 'utf8' });
}

test('builds a missing app, runs a current one as it is, and rebuilds after a source changed', () => {
  // GIVEN sources and no build
  expect(fs.existsSync(path.join(copy, 'build'))).toBe(false);

  // WHEN synth runs THEN it compiles the app first, then writes the output
  const first = synth();
  expect(first.stderr).toContain('the app is not built yet (build/main.js is missing); compiling the app');
  expect(first.status).toBe(0);
  expect(fs.readdirSync(path.join(copy, 'out')).length).toBeGreaterThan(0);

  // WHEN it runs again with nothing changed THEN it does not compile
  const second = synth();
  expect(second.status).toBe(0);
  expect(second.stderr).not.toContain('compiling');

  // WHEN main.ts changes THEN the next synth runs the new code
  const main = path.join(copy, 'main.ts');
  fs.writeFileSync(main, `${fs.readFileSync(main, 'utf8')}\nconsole.error('edited main.ts ran');\n`);
  const third = synth();
  expect(third.stderr).toContain('main.ts changed since the last build; compiling the app');
  expect(third.stderr).toContain('edited main.ts ran');
  expect(third.status).toBe(0);
}, 180_000);

test('a source touched but not changed compiles once, not on every run; the package command runs through it too', () => {
  // GIVEN a built app, and a source whose time changed but not its content (a checkout, a regenerated file)
  expect(synth().status).toBe(0);
  const source = path.join(copy, 'lib', 'index.ts');
  const later = new Date(Date.now() + 2000);
  fs.utimesSync(source, later, later);

  // WHEN synth runs twice THEN only the first compiles
  const first = synth();
  expect(first.status).toBe(0);
  expect(first.stderr).toContain('lib/index.ts changed since the last build; compiling the app');
  const second = synth();
  expect(second.status).toBe(0);
  expect(second.stderr).not.toContain('compiling');

  // AND `npm run doctor` & co. (the package command through the launcher) answer
  const help = spawnSync(process.execPath, ['scripts/synth.js', '--entry', 'build/lib/app/cli.js', 'doctor', '--help'], { cwd: copy, encoding: 'utf8' });
  expect(help.status).toBe(0);
  expect(help.stdout).toMatch(/^cdk8s-api-extension doctor \[options\]/);
}, 180_000);

test('fails for sources that do not compile, and leaves the output as it was', () => {
  // GIVEN a built app and its output
  expect(synth().status).toBe(0);
  const before = fs.readdirSync(path.join(copy, 'out')).map((f) => fs.readFileSync(path.join(copy, 'out', f), 'utf8'));

  // WHEN a library source gets a type error
  const source = path.join(copy, 'lib', 'index.ts');
  fs.writeFileSync(source, `${fs.readFileSync(source, 'utf8')}\nexport const broken: number = 'not a number';\n`);
  const run = synth();

  // THEN synth stops with the compiler's error and writes nothing
  expect(run.status).toBe(1);
  expect(run.stdout + run.stderr).toContain("Type 'string' is not assignable to type 'number'");
  expect(run.stderr).toContain('the app does not compile (above); nothing was written');
  expect(fs.readdirSync(path.join(copy, 'out')).map((f) => fs.readFileSync(path.join(copy, 'out', f), 'utf8'))).toEqual(before);

  // AND the next synth does not run what the failed compile left: it compiles again, and fails again
  const again = synth();
  expect(again.status).toBe(1);
  expect(again.stderr).toContain('lib/index.ts changed since the last build; compiling the app');
}, 180_000);
