import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { ApiGroupDefinition } from '../apis/types';
import { ServerEnvironment, serverBundle, startServerEnvironment } from './support/server-process';

/**
 * One definition, one meaning, through the built server (`--api-definition-file`): the scale
 * subresource driven by kubectl 1.28 and 1.33 (`kubectl scale`, with and without a precondition,
 * and a client PUT of a Scale), a deprecated version's warning as kubectl prints it, and the
 * refusal at start of a definition with a feature the server does not honour.
 */

const KUBECTL_DIR = '/usr/lib/google-cloud-sdk/bin';
const VERSIONS = ['1.28', '1.33'] as const;
const GROUP = 'scale.example.com';
const replicas = { type: 'integer' as const };

const DEFINITION: ApiGroupDefinition = {
  group: GROUP,
  kinds: [
    {
      kind: 'Widget',
      plural: 'widgets',
      singular: 'widget',
      scope: 'Namespaced',
      versions: ['v1', 'v1beta1'].map((name) => ({
        name,
        served: true,
        storage: name === 'v1',
        ...(name === 'v1beta1' ? { deprecated: true } : {}),
        schema: {
          type: 'object' as const,
          properties: {
            spec: { type: 'object' as const, properties: { replicas } },
            status: { type: 'object' as const, properties: { replicas, selector: { type: 'string' as const } } },
          },
        },
        subresources: { status: true, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } },
      })),
    },
    {
      kind: 'Gadget',
      plural: 'gadgets',
      singular: 'gadget',
      scope: 'Namespaced',
      versions: [{ name: 'v1alpha1', served: true, storage: true, deprecated: true, deprecationWarning: 'gadgets are going away; use widgets', schema: { type: 'object', properties: { spec: { type: 'object' } } } }],
    },
  ],
};

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(binary: string, args: readonly string[], env: NodeJS.ProcessEnv, stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(binary, args, { timeout: 60_000, env }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

describe('the built server serving a definition of its own', () => {
  let env: ServerEnvironment;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'definition-'));
    const file = path.join(dir, 'api.json');
    fs.writeFileSync(file, JSON.stringify(DEFINITION));
    env = await startServerEnvironment({ extraArgs: [`--api-definition-file=${file}`] });
  }, 90_000);

  afterAll(async () => {
    await env?.stop();
  });

  describe.each(VERSIONS)('kubectl %s', (version) => {
    const binary = path.join(KUBECTL_DIR, `kubectl.${version}`);
    const missing = !fs.existsSync(binary);
    const maybe = missing ? test.skip : test;
    if (missing) process.stderr.write(`SKIPPED kubectl ${version}: ${binary} is not installed\n`);
    const namespace = `scale-${version.replace('.', '-')}`;
    let kubeconfig: string;
    let cacheDir: string;

    beforeAll(() => {
      if (missing) return;
      kubeconfig = env.kubeconfigFor({ cn: `scaler-${version}`, organizations: ['developers'] });
      cacheDir = fs.mkdtempSync(path.join(env.dir, `kubectl-cache-${version}-`));
      env.fake.setNamespace(namespace, 'Active');
    });

    const kubectl = (args: string[], stdin?: string) =>
      run(binary, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, '-n', namespace, ...args], { PATH: process.env.PATH, HOME: env.dir }, stdin);

    maybe(
      'kubectl scale sets spec replicas through the scale subresource, with and without --current-replicas',
      async () => {
        // GIVEN a widget with 1 replica
        const created = await kubectl(['create', '-f', '-'], JSON.stringify({ apiVersion: `${GROUP}/v1`, kind: 'Widget', metadata: { name: 'w' }, spec: { replicas: 1 } }));
        expect(created.stderr).toBe('');
        expect(created.code).toBe(0);

        // WHEN it is scaled (a merge patch of the Scale), then scaled with a precondition (GET then PUT of the Scale)
        const scaled = await kubectl(['scale', 'widgets/w', '--replicas=3']);
        const preconditioned = await kubectl(['scale', 'widgets/w', '--current-replicas=3', '--replicas=4']);
        const refused = await kubectl(['scale', 'widgets/w', '--current-replicas=9', '--replicas=5']);

        // THEN the object says 4, and the failed precondition changed nothing
        expect(scaled.stderr).toBe('');
        expect(scaled.stdout).toContain(`widget.${GROUP}/w scaled`);
        expect(preconditioned.stderr).toBe('');
        expect(preconditioned.code).toBe(0);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toContain('Expected replicas to be 9, was 4');
        const read = await kubectl(['get', 'widgets', 'w', '-o', 'jsonpath={.spec.replicas} {.metadata.generation}']);
        expect(read.stdout).toBe('4 3');
        // …and kubectl reads the Scale itself (a Table of it, then the object)
        const table = await kubectl(['get', 'widgets', 'w', '--subresource=scale']);
        expect(table.stderr).toBe('');
        expect(table.stdout).toMatch(/^NAME\s+CREATED AT\s*\nw\s+\S+\s*$/);
        const scale = await kubectl(['get', 'widgets', 'w', '--subresource=scale', '-o', 'json']);
        expect(JSON.parse(scale.stdout)).toMatchObject({ apiVersion: 'autoscaling/v1', kind: 'Scale', spec: { replicas: 4 } });
      },
      120_000,
    );

    maybe(
      'a client PUT of an autoscaling/v1 Scale changes spec replicas; the Scale read back says so',
      async () => {
        // GIVEN a widget with 2 replicas
        expect((await kubectl(['create', '-f', '-'], JSON.stringify({ apiVersion: `${GROUP}/v1`, kind: 'Widget', metadata: { name: 'put' }, spec: { replicas: 2 } }))).code).toBe(0);
        const uri = `/apis/${GROUP}/v1/namespaces/${namespace}/widgets/put/scale`;

        // WHEN a Scale with 7 replicas is PUT (kubectl replace --raw: a plain PUT of the body)
        const put = await kubectl(['replace', '--raw', uri, '-f', '-'], JSON.stringify({ apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'put', namespace }, spec: { replicas: 7 } }));

        // THEN the answer is the Scale, and the object's spec says 7
        expect(put.stderr).toBe('');
        expect(JSON.parse(put.stdout)).toMatchObject({ apiVersion: 'autoscaling/v1', kind: 'Scale', spec: { replicas: 7 }, status: { replicas: 0 } });
        const read = await kubectl(['get', '--raw', uri]);
        expect(JSON.parse(read.stdout).spec).toEqual({ replicas: 7 });
        expect((await kubectl(['get', 'widgets', 'put', '-o', 'jsonpath={.spec.replicas}'])).stdout).toBe('7');
      },
      120_000,
    );

    maybe(
      'a deprecated version answers with kube-apiserver\'s warning, which kubectl prints; the default text names the preferred version',
      async () => {
        // GIVEN a widget and a gadget
        expect((await kubectl(['create', '-f', '-'], JSON.stringify({ apiVersion: `${GROUP}/v1`, kind: 'Widget', metadata: { name: 'old' }, spec: { replicas: 1 } }))).code).toBe(0);

        // WHEN the deprecated v1beta1 is read, the current v1 is read, and a gadget (deprecated with its own text) is created
        const deprecated = await kubectl(['get', `widgets.v1beta1.${GROUP}`, 'old']);
        const current = await kubectl(['get', `widgets.v1.${GROUP}`, 'old']);
        const gadget = await kubectl(['create', '-f', '-'], JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Gadget', metadata: { name: 'g' }, spec: {} }));

        // THEN warnings exactly where upstream gives them
        expect(deprecated.code).toBe(0);
        expect(deprecated.stderr).toContain(`Warning: ${GROUP}/v1beta1 Widget is deprecated; use ${GROUP}/v1 Widget`);
        expect(current.stderr).toBe('');
        expect(gadget.code).toBe(0);
        expect(gadget.stderr).toContain('Warning: gadgets are going away; use widgets');
      },
      120_000,
    );
  });
});

describe('refusal at start', () => {
  test(
    'fails to start with a definition using a feature the server does not honour, one line naming kind, version, field and feature',
    async () => {
      // GIVEN a definition whose field has format "k8s-short-name" (kube-apiserver 1.34+; not implemented), and placeholder TLS files (never read: the refusal comes first)
      const dir = fs.mkdtempSync(path.join(tmpdir(), 'definition-refused-'));
      const definition = structuredClone(DEFINITION) as unknown as { kinds: { versions: { schema: { properties: { spec: { properties: Record<string, unknown> } } } }[] }[] };
      definition.kinds[0].versions[0].schema.properties.spec.properties.contact = { type: 'string', format: 'k8s-short-name' };
      const file = path.join(dir, 'api.json');
      fs.writeFileSync(file, JSON.stringify(definition));
      for (const name of ['tls.crt', 'tls.key']) fs.writeFileSync(path.join(dir, name), 'placeholder', { mode: 0o600 });

      // WHEN the server starts
      const result = await run(process.execPath, [serverBundle(), '--secure-port=0', `--tls-cert-file=${path.join(dir, 'tls.crt')}`, `--tls-private-key-file=${path.join(dir, 'tls.key')}`, `--api-definition-file=${file}`], { PATH: process.env.PATH });

      // THEN it exits 1 and says what, where
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        'kind Widget, version v1, field schema.properties.spec.properties.contact.format: format "k8s-short-name" is not supported by the bundled server: ' +
          'kube-apiserver validates it only from 1.34 (ignored before); the bundled server does not',
      );
    },
    60_000,
  );
});
