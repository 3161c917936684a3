import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * What `npm pack` ships is a usable construct library: a consumer project that installs the
 * tarball type-checks against its declarations and synthesizes with it.
 */

const ROOT = path.resolve(__dirname, '..');

test('the packed tarball compiles and synthesizes in a consumer cdk8s app', () => {
  // GIVEN the tarball, unpacked where a consumer's npm install would put it
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-pack-'));
  try {
    const [packed] = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' }));
    const files: string[] = packed.files.map((f: { path: string }) => f.path);
    expect(files).toEqual(expect.arrayContaining(['build/lib/index.js', 'build/lib/index.d.ts', 'build/apis/index.js', 'README.md']));
    expect(files.filter((f) => /^(server|test|build\/server|build\/test)\//.test(f) || f.includes('.pki') || f.endsWith('.key'))).toEqual([]);
    expect(files).toContain('LICENSE');
    // Every source map points at sources the tarball holds.
    const unshippedSources = files
      .filter((f) => f.endsWith('.js.map'))
      .flatMap((map) => {
        const { sources } = JSON.parse(fs.readFileSync(path.join(ROOT, map), 'utf8')) as { sources: string[] };
        return sources.map((source) => path.posix.normalize(path.posix.join(path.posix.dirname(map), source))).filter((source) => !files.includes(source));
      });
    expect(unshippedSources).toEqual([]);

    const modules = path.join(work, 'consumer', 'node_modules');
    fs.mkdirSync(path.join(modules, 'cdk8s-api-extension'), { recursive: true });
    execFileSync('tar', ['-xzf', path.join(work, packed.filename), '-C', path.join(modules, 'cdk8s-api-extension'), '--strip-components=1']);
    // No install-time script: `prepare` would run tsc in the consumer's tree; `prepack` only runs when packing.
    const manifest = JSON.parse(fs.readFileSync(path.join(modules, 'cdk8s-api-extension', 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
    expect(Object.keys(manifest.scripts ?? {}).filter((name) => /^(pre|post)?(install|prepare)$/.test(name))).toEqual([]);
    // The consumer's own copies of the peer and runtime dependencies.
    for (const dep of ['cdk8s', 'cdk8s-plus-28', 'constructs', 'node-forge', 'yaml', 'yargs', '@bufbuild', '@types']) {
      fs.symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(modules, dep));
    }
    const consumer = path.join(work, 'consumer');
    fs.writeFileSync(
      path.join(consumer, 'main.ts'),
      [
        "import { App, Chart } from 'cdk8s';",
        "import { AggregatedApiServer, Certificates, WARDLE } from 'cdk8s-api-extension';",
        'const app = new App();',
        "const server = new AggregatedApiServer(new Chart(app, 'consumer'), 'Wardle', { api: WARDLE, certificates: Certificates.certManager() });",
        'console.log(server.apiServices.length);',
        'app.synth();',
        '',
      ].join('\n'),
    );

    // WHEN it is type-checked against the shipped declarations and run
    const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '--strict', '--module', 'commonjs', '--target', 'es2022', '--types', 'node', '--skipLibCheck', 'main.ts'], {
      cwd: consumer,
      encoding: 'utf8',
    });
    expect(tsc.stdout + tsc.stderr).toBe('');
    const run = spawnSync(process.execPath, ['main.js'], { cwd: consumer, encoding: 'utf8', env: { ...process.env, CDK8S_OUTDIR: path.join(consumer, 'dist') } });

    // THEN it synthesizes the server
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('2');
    expect(fs.readFileSync(path.join(consumer, 'dist', 'consumer.k8s.yaml'), 'utf8')).toContain('name: v1beta1.wardle.example.com');
    // AND the package exports no internal (`_`-prefixed) name
    const exported = spawnSync(process.execPath, ['-e', "console.log(JSON.stringify(Object.keys(require('cdk8s-api-extension'))))"], { cwd: consumer, encoding: 'utf8' });
    const names = JSON.parse(exported.stdout) as string[];
    expect(names).toEqual(expect.arrayContaining(['AggregatedApiServer', 'Certificates', 'EtcdCluster', 'inspectCertificate']));
    expect(names.filter((name) => name.startsWith('_'))).toEqual([]);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});
