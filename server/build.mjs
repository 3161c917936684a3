// Bundles the server (server/main.ts and everything it imports) into one file with esbuild:
// the container image carries this file and nothing else from node_modules.
//
//   node server/build.mjs [--outfile build/server.js]
//
// Git commit, tree state and build date are baked into /version (server/version.ts reads them).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--outfile');
const outfile = outIndex >= 0 ? args[outIndex + 1] : join(root, 'build', 'server.js');

function git(...gitArgs) {
  try {
    return execFileSync('git', gitArgs, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const commit = process.env.GIT_COMMIT || git('rev-parse', 'HEAD') || 'unknown';
const status = git('status', '--porcelain', '--', 'server', 'apis');
const treeState = process.env.GIT_TREE_STATE || (status === undefined ? 'unknown' : status === '' ? 'clean' : 'dirty');
const buildDate = process.env.BUILD_DATE || new Date().toISOString().replace(/\.\d+Z$/, 'Z');

await build({
  entryPoints: [join(root, 'server', 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'linked',
  minifySyntax: true,
  legalComments: 'linked',
  logLevel: 'warning',
  define: {
    'process.env.SERVER_VERSION': JSON.stringify(version),
    'process.env.SERVER_GIT_COMMIT': JSON.stringify(commit),
    'process.env.SERVER_GIT_TREE_STATE': JSON.stringify(treeState),
    'process.env.SERVER_BUILD_DATE': JSON.stringify(buildDate),
  },
});
process.stdout.write(`${outfile}\n`);
