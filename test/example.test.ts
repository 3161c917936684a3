import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';

/** The README's "use the constructs from another cdk8s app" example: it compiles (tsc in npm test), runs, and is the README's text. */

const ROOT = path.resolve(__dirname, '..');
const EXAMPLE = path.join(ROOT, 'examples', 'my-platform.ts');

test('the README shows examples/my-platform.ts verbatim', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  expect(readme).toContain(fs.readFileSync(EXAMPLE, 'utf8').trim());
});

test('the example, compiled and importing the package by name, synthesizes its objects', () => {
  // GIVEN the compiled example, resolving 'cdk8s-api-extension' through the package's own exports
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-example-'));
  try {
    // WHEN it runs as a cdk8s app would
    const run = spawnSync(process.execPath, [path.join(ROOT, 'build', 'examples', 'my-platform.js')], {
      cwd: work,
      encoding: 'utf8',
      env: { ...process.env, CDK8S_OUTDIR: path.join(work, 'dist') },
    });
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain('APIServices: v1beta1.wardle.example.com, v1alpha1.wardle.example.com');
    // THEN the chart holds the server with cert-manager certificates and the CRDs
    const objects = YAML.parseAllDocuments(fs.readFileSync(path.join(work, 'dist', 'platform.k8s.yaml'), 'utf8')).map((d) => d.toJS());
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(kinds).toEqual(expect.arrayContaining(['CustomResourceDefinition/fischers.wardle.crd.example.com', 'APIService/v1beta1.wardle.example.com']));
    const deployment = objects.find((o) => o.kind === 'Deployment');
    expect(deployment.metadata.namespace).toBe('wardle-system');
    expect(deployment.spec.replicas).toBe(1);
    expect(objects.some((o) => o.kind === 'Certificate')).toBe(true);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
});
