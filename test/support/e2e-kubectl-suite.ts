import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startServerEnvironment, ServerEnvironment } from './server-process';

/**
 * kubectl 1.28 and 1.33 from the machine, pointed straight at the server with an x509 client
 * certificate signed by the client CA the auth ConfigMap publishes, the serving CA as
 * certificate-authority-data: every command a user runs against an aggregated API. Run once per
 * store (test/e2e-kubectl.test.ts, test/e2e-kubectl-etcd.test.ts): whatever kubectl sees on
 * memory it must see on etcd.
 */

const KUBECTL_DIR = '/usr/lib/google-cloud-sdk/bin';
const VERSIONS = ['1.28', '1.33'] as const;
const GROUP = 'wardle.example.com';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Registers the kubectl suite against a server that stores in `storage` (etcd: a real etcd started for it). */
export function describeKubectlSuite(storage: 'memory' | 'etcd'): void {
  describe(`kubectl against the server on ${storage} storage`, () => {
    let env: ServerEnvironment;

    beforeAll(async () => {
      env = await startServerEnvironment({ storage });
    }, 60_000);

    afterAll(async () => {
      await env?.stop();
    });

    test(`the server stores in ${storage}: /readyz names its storage check`, async () => {
      // GIVEN the server started for this suite; WHEN its readiness is asked; THEN the check is its store's
      const ready = await env.server.probe('/readyz?verbose');
      expect(ready.status).toBe(200);
      expect(ready.body).toContain(storage === 'etcd' ? '[+]etcd ok' : '[+]storage ok');
    });

    describe.each(VERSIONS)('kubectl %s', (version) => {
      const binary = path.join(KUBECTL_DIR, `kubectl.${version}`);
      const missing = !fs.existsSync(binary);
      // Only a kubectl missing from the machine skips; it is installed on the project's machines.
      const maybe = missing ? test.skip : test;
      if (missing) process.stderr.write(`SKIPPED kubectl ${version}: ${binary} is not installed\n`);
      let kubeconfig: string;
      let cacheDir: string;
      const namespace = `kubectl-${version.replace('.', '-')}`;

      beforeAll(() => {
        if (missing) return;
        kubeconfig = env.kubeconfigFor({ cn: `kubectl-user-${version}`, organizations: ['developers'] });
        cacheDir = fs.mkdtempSync(path.join(env.dir, `kubectl-cache-${version}-`));
        env.fake.setNamespace(namespace, 'Active');
      });

      /** Runs kubectl asynchronously (the kube-apiserver stand-in lives in this process and must keep answering). */
      function kubectl(args: string[], stdin?: string): Promise<Run> {
        return new Promise((resolve) => {
          const child = execFile(binary, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, '-n', namespace, ...args], { timeout: 30_000, env: { PATH: process.env.PATH, HOME: env.dir } }, (error, stdout, stderr) =>
            resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
          );
          if (stdin !== undefined) child.stdin!.end(stdin);
        });
      }

      function manifest(name: string, spec: Record<string, unknown> = {}, labels: Record<string, string> = {}): string {
        return JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name, labels }, spec });
      }

      maybe('api-resources lists the group\'s kinds with their short names and verbs', async () => {
        const run = await kubectl(['api-resources', `--api-group=${GROUP}`, '-o', 'wide']);
        expect(run.stderr).toBe('');
        expect(run.code).toBe(0);
        expect(run.stdout).toMatch(/^NAME\s+SHORTNAMES\s+APIVERSION\s+NAMESPACED\s+KIND\s+VERBS/m);
        expect(run.stdout).toMatch(/^flunders\s+.*wardle\.example\.com\/v1beta1\s+true\s+Flunder\s+.*create.*list.*watch/m);
        expect(run.stdout).toMatch(/^fischers\s+.*wardle\.example\.com\/v1alpha1\s+false\s+Fischer/m);
      });

      maybe('get on an empty namespace says "No resources found"', async () => {
        const run = await kubectl(['get', 'flunders']);
        expect(run.code).toBe(0);
        expect(run.stdout).toBe('');
        expect(run.stderr).toBe(`No resources found in ${namespace} namespace.\n`);
      });

      maybe('create -f, then get prints a table, get -o yaml the object', async () => {
        const created = await kubectl(['create', '-f', '-'], manifest('one', { reference: 'two' }));
        expect(created).toEqual({ code: 0, stdout: `flunder.${GROUP}/one created\n`, stderr: '' });

        const table = await kubectl(['get', 'flunders']);
        expect(table.code).toBe(0);
        expect(table.stdout).toMatch(/^NAME\s+.*AGE\n/);
        expect(table.stdout).toMatch(/^one\s+/m);

        const yaml = await kubectl(['get', 'flunder', 'one', '-o', 'yaml']);
        expect(yaml.code).toBe(0);
        expect(yaml.stdout).toMatch(/^apiVersion: wardle\.example\.com\/v1(alpha1|beta1)\nkind: Flunder\n/);
        expect(yaml.stdout).toMatch(/^ {2}name: one$/m);
        expect(yaml.stdout).toMatch(/^ {2}uid: [0-9a-f-]{36}$/m);
        expect(yaml.stdout).toMatch(/^ {2}resourceVersion: "\d+"$/m);
        expect(yaml.stdout).toMatch(/^ {2}creationTimestamp: "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"$/m);
      });

      maybe('apply -f twice: created, then unchanged, without error', async () => {
        const doc = manifest('applied', { reference: 'one' }, { tier: 'a' });
        const first = await kubectl(['apply', '-f', '-'], doc);
        expect(first).toEqual({ code: 0, stdout: `flunder.${GROUP}/applied created\n`, stderr: '' });
        const second = await kubectl(['apply', '-f', '-'], doc);
        expect(second).toEqual({ code: 0, stdout: `flunder.${GROUP}/applied unchanged\n`, stderr: '' });
        const changed = await kubectl(['apply', '-f', '-'], manifest('applied', { reference: 'other' }, { tier: 'b' }));
        expect(changed).toEqual({ code: 0, stdout: `flunder.${GROUP}/applied configured\n`, stderr: '' });
        const got = JSON.parse((await kubectl(['get', 'flunder', 'applied', '-o', 'json'])).stdout);
        expect(got.metadata.labels).toEqual({ tier: 'b' });
      });

      maybe('patch --type=merge and label change the object', async () => {
        const patched = await kubectl(['patch', 'flunder', 'one', '--type=merge', '-p', '{"metadata":{"annotations":{"note":"patched"}}}']);
        expect(patched).toEqual({ code: 0, stdout: `flunder.${GROUP}/one patched\n`, stderr: '' });
        const labeled = await kubectl(['label', 'flunder', 'one', 'color=blue']);
        expect(labeled).toEqual({ code: 0, stdout: `flunder.${GROUP}/one labeled\n`, stderr: '' });
        const selected = await kubectl(['get', 'flunders', '-l', 'color=blue', '-o', 'name']);
        expect(selected.stdout).toBe(`flunder.${GROUP}/one\n`);
        const got = JSON.parse((await kubectl(['get', 'flunder', 'one', '-o', 'json'])).stdout);
        expect(got.metadata.annotations).toEqual({ note: 'patched' });
      });

      maybe('get -w sees a change made meanwhile', async () => {
        // GIVEN a watch started with kubectl
        const child = spawn(binary, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, '-n', namespace, 'get', 'flunders', '-w', '-o', 'name'], { env: { PATH: process.env.PATH, HOME: env.dir } });
        let out = '';
        let err = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (err += c.toString()));
        const waitFor = async (pattern: RegExp, ms: number) => {
          const deadline = Date.now() + ms;
          while (!pattern.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
          return pattern.test(out);
        };
        try {
          expect(await waitFor(new RegExp(`^flunder\\.${GROUP}/one$`, 'm'), 10_000)).toBe(true);
          // WHEN another client creates a flunder
          const created = await kubectl(['create', '-f', '-'], manifest('watched'));
          expect(created.code).toBe(0);
          // THEN the watch prints it
          expect(await waitFor(new RegExp(`^flunder\\.${GROUP}/watched$`, 'm'), 10_000)).toBe(true);
          expect(err).toBe('');
        } finally {
          child.kill();
        }
      });

      maybe('delete removes the object; get then says NotFound', async () => {
        const deleted = await kubectl(['delete', 'flunder', 'watched']);
        expect(deleted).toEqual({ code: 0, stdout: `flunder.${GROUP} "watched" deleted\n`, stderr: '' });
        const listed = await kubectl(['get', 'flunders', '-o', 'name']);
        expect(listed.stdout).not.toContain('watched');
        // (A plain `get` of a missing object outside "default" makes kubectl also GET the namespace,
        // which kube-apiserver serves, not this server: ask for the object in "default" instead.)
        const gone = await kubectl(['get', 'flunder', 'watched', '-n', 'default']);
        expect(gone.code).not.toBe(0);
        expect(gone.stderr).toBe(`Error from server (NotFound): flunders.${GROUP} "watched" not found\n`);
      });

      maybe('explain flunders.spec describes the fields from the OpenAPI schema', async () => {
        const run = await kubectl(['explain', 'flunders.spec', `--api-version=${GROUP}/v1alpha1`]);
        expect(run.stderr).toBe('');
        expect(run.code).toBe(0);
        expect(run.stdout).toMatch(/KIND:\s+Flunder/);
        expect(run.stdout).toMatch(/GROUP:\s+wardle\.example\.com\n/);
        expect(run.stdout).toMatch(/VERSION:\s+v1alpha1\n/);
        expect(run.stdout).toMatch(/FIELD:\s+spec <Object>/);
        expect(run.stdout).toContain('FlunderSpec is the desired state of a Flunder.');
        expect(run.stdout).toMatch(/reference\s+<string>/);
        expect(run.stdout).toMatch(/referenceType\s+<string>/);
      });

      maybe('explain without --api-version describes the preferred version, v1beta1', async () => {
        const run = await kubectl(['explain', 'flunders.spec']);
        expect(run.stderr).toBe('');
        expect(run.code).toBe(0);
        expect(run.stdout).toMatch(/VERSION:\s+v1beta1\n/);
        expect(run.stdout).toMatch(/flunderReference\s+<string>/);
        expect(run.stdout).toMatch(/fischerReference\s+<string>/);
      });

      maybe('a user the SubjectAccessReview denies gets kubectl\'s Forbidden message', async () => {
        const denied = env.kubeconfigFor({ cn: `nobody-${version}` });
        const previous = env.fake.authorize;
        env.fake.authorize = (spec) => (spec.user?.startsWith('nobody') ? { allowed: false, reason: 'no RBAC policy matched' } : previous(spec));
        try {
          const run = await new Promise<Run>((resolve) =>
            execFile(binary, ['--kubeconfig', denied, '--cache-dir', cacheDir, '-n', namespace, 'get', 'flunders'], { env: { PATH: process.env.PATH, HOME: env.dir } }, (error, stdout, stderr) =>
              resolve({ code: error ? 1 : 0, stdout, stderr }),
            ),
          );
          expect(run.code).toBe(1);
          expect(run.stderr).toContain(`flunders.${GROUP} is forbidden: User "nobody-${version}" cannot list resource "flunders" in API group "${GROUP}" in the namespace "${namespace}"`);
        } finally {
          env.fake.authorize = previous;
        }
      });
    });
  });
}
