#!/usr/bin/env node
// `npm run synth` (and, with `--entry build/lib/app/cli.js`, `npm run doctor`, `pki`, `front-proxy`):
// runs the app from the current sources. The compiled app is rebuilt first when a source of it
// (main.ts, apis/, lib/, imports/) is newer than its output, or when there is no build at all
// (`npm ci --ignore-scripts` skips `prepack`); otherwise it runs as it is, so an unchanged tree
// pays a few stat calls and nothing more.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const SOURCE_ROOTS = ['main.ts', 'apis', 'lib', 'imports'];

/** Every .ts source of the app (declaration files aside), relative to ROOT. */
function sources() {
  const found = [];
  const walk = (relative) => {
    const full = path.join(ROOT, relative);
    const stat = fs.statSync(full, { throwIfNoEntry: false });
    if (!stat) return;
    if (stat.isDirectory()) {
      for (const entry of fs.readdirSync(full)) walk(path.join(relative, entry));
    } else if (relative.endsWith('.ts') && !relative.endsWith('.d.ts')) {
      found.push(relative);
    }
  };
  SOURCE_ROOTS.forEach(walk);
  return found;
}

/** The first source whose compiled file is missing or older than it, or undefined when the build is current. */
function staleSource() {
  return sources().find((source) => {
    const output = fs.statSync(path.join(ROOT, 'build', source.replace(/\.ts$/, '.js')), { throwIfNoEntry: false });
    return !output || output.mtimeMs < fs.statSync(path.join(ROOT, source)).mtimeMs;
  });
}

function build(reason) {
  let tsc;
  try {
    tsc = require.resolve('typescript/bin/tsc', { paths: [ROOT] });
  } catch {
    console.error(`error: ${reason}, and TypeScript is not installed to build it: run "npm ci" (with devDependencies), then "npm run synth" again`);
    process.exit(1);
  }
  console.error(`synth: ${reason}; compiling the app (tsc -p tsconfig.app.json)`);
  const run = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.app.json')], { cwd: ROOT, stdio: 'inherit' });
  if (run.status !== 0) {
    console.error('error: the app does not compile (above); nothing was written: the output directory is as it was');
    process.exit(1);
  }
}

// `--entry <compiled file>` first: which program to run (build/main.js, the synth, by default).
let entry = path.join('build', 'main.js');
if (process.argv[2] === '--entry') {
  entry = process.argv[3];
  process.argv.splice(2, 2);
}
const stale = staleSource();
if (stale !== undefined) {
  const built = fs.existsSync(path.join(ROOT, entry));
  build(built ? `${stale} changed since the last build` : `the app is not built yet (${entry} is missing)`);
  // tsc leaves an output alone when its source changed on disk but not in content (a checkout, a
  // regenerated file): it is current, so its time says so, or every run would compile again.
  const now = new Date();
  for (const source of sources()) {
    const output = path.join(ROOT, 'build', source.replace(/\.ts$/, '.js'));
    const stat = fs.statSync(output, { throwIfNoEntry: false });
    if (stat && stat.mtimeMs < fs.statSync(path.join(ROOT, source)).mtimeMs) fs.utimesSync(output, now, now);
  }
}
const program = require(path.join(ROOT, entry));
// The package command runs only as the main module; from here it is started by hand.
if (typeof program.runCli === 'function') program.runCli(process.argv.slice(2));
