// Bundles the server (server/main.ts and everything it imports) into one file with esbuild:
// the container image carries this file and nothing else from node_modules.
//
//   node server/build.mjs [--outfile build/server.js] [--entry server/main.ts]
//
// Git commit, tree state and build date are baked into /version (server/version.ts reads them).
// `--entry` bundles another entry point the same way (tests bundle a probe of the etcd store).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const flag = (name) => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : undefined);
const outfile = flag('--outfile') ?? join(root, 'build', 'server.js');
const entry = flag('--entry') ? resolve(flag('--entry')) : join(root, 'server', 'main.ts');

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

/**
 * etcd3 loads etcd's gRPC protos from disk when its module loads (`loadSync(`${__dirname}/../proto/rpc.proto`)`),
 * which a one-file bundle has no directory for. This plugin parses the protos at build time and
 * inlines them as protobuf.js JSON, loaded with proto-loader's `fromJSON` (same options), so the
 * bundle stays one file. The build fails if etcd3's line changes, rather than shipping a bundle
 * that crashes at start.
 */
const etcdProtosInline = {
  name: 'etcd3-protos-inline',
  setup(builder) {
    builder.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (loaded) => {
      const source = readFileSync(loaded.path, 'utf8');
      const call = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {';
      if (!source.includes(call)) throw new Error(`${loaded.path}: etcd3 no longer loads its protos with ${call}; update server/build.mjs`);
      // protobufjs as proto-loader itself resolves it; keepCase as etcd3 asks (snake_case fields).
      const protobuf = createRequire(createRequire(loaded.path).resolve('@grpc/proto-loader'))('protobufjs');
      const protoRoot = new protobuf.Root().loadSync(join(dirname(loaded.path), '..', 'proto', 'rpc.proto'), { keepCase: true });
      const json = JSON.stringify(protoRoot.toJSON());
      return { contents: source.replace(call, `(0, proto_loader_1.fromJSON)(${json}, {`), loader: 'js' };
    });
  },
};

/**
 * server/kube-client.ts uses @kubernetes/client-node's KubeConfig (exec plugins, auth providers,
 * proxies), whose module also imports the package's generated API clients (for makeApiClient) and
 * node-fetch (for applyToFetchOptions' Headers): ~1.2 MB of the bundle the server never runs.
 * For that one importer, the generated clients become a stub that throws if called, and
 * node-fetch's Headers the global one (Node 20 has it).
 */
const kubeConfigTrimmed = {
  name: 'client-node-kubeconfig-trimmed',
  setup(builder) {
    const fromKubeConfig = (args) => /[\\/]@kubernetes[\\/]client-node[\\/]dist[\\/]config\.js$/.test(args.importer);
    builder.onResolve({ filter: /^(\.\/gen\/index\.js|node-fetch)$/ }, (args) => (fromKubeConfig(args) ? { path: args.path, namespace: 'client-node-trimmed' } : undefined));
    builder.onLoad({ filter: /.*/, namespace: 'client-node-trimmed' }, (args) => ({
      contents:
        args.path === 'node-fetch'
          ? 'export const Headers = globalThis.Headers;'
          : 'const unavailable = () => { throw new Error("KubeConfig.makeApiClient is not in the server bundle (server/build.mjs)"); };\nexport const createConfiguration = unavailable;\nexport class ServerConfiguration { constructor() { unavailable(); } }',
      loader: 'js',
    }));
  },
};

await build({
  entryPoints: [entry],
  plugins: [etcdProtosInline, kubeConfigTrimmed],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'linked',
  minifySyntax: true,
  // Without comments the bundle is ASCII (esbuild escapes non-ASCII in strings), so V8 keeps its
  // source as a one-byte string: 2.3 MB instead of 6.2 MB of UTF-16 for the 3.2 MB with comments.
  // Stack traces keep the function names; the linked map gives the lines.
  minifyWhitespace: true,
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
