import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import YAML from 'yaml';
import { ServerEnvironment, startServerEnvironment } from './support/server-process';

/**
 * Server-side apply end to end: real kubectl 1.28 and 1.33 against the built server (as
 * test/support/e2e-kubectl-suite.ts runs them), and raw HTTPS for the managedFields that ordinary
 * POST and PUT record.
 */

const KUBECTL_DIR = '/usr/lib/google-cloud-sdk/bin';
const GROUP = 'wardle.example.com';
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

interface Entry {
  readonly manager: string;
  readonly operation: string;
  readonly fieldsV1: Record<string, unknown>;
}

let env: ServerEnvironment;

beforeAll(async () => {
  env = await startServerEnvironment();
}, 60_000);

afterAll(async () => {
  await env?.stop();
});

describe.each(['1.28', '1.33'])('kubectl %s', (version) => {
  const binary = path.join(KUBECTL_DIR, `kubectl.${version}`);
  const missing = !fs.existsSync(binary);
  // Only a kubectl missing from the machine skips; it is installed on the project's machines.
  const maybe = missing ? test.skip : test;
  if (missing) process.stderr.write(`SKIPPED kubectl ${version}: ${binary} is not installed\n`);
  const namespace = `ssa-${version.replace('.', '-')}`;
  let kubeconfig: string;
  let cacheDir: string;

  beforeAll(() => {
    if (missing) return;
    kubeconfig = env.kubeconfigFor({ cn: `ssa-user-${version}`, organizations: ['developers'] });
    cacheDir = fs.mkdtempSync(path.join(env.dir, `kubectl-cache-${version}-`));
    env.fake.setNamespace(namespace, 'Active');
  });

  /** Runs kubectl asynchronously (the kube-apiserver stand-in lives in this process and must keep answering). */
  function kubectl(args: string[], stdin?: string): Promise<Run> {
    return new Promise((resolve) => {
      const child = execFile(binary, ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, '-n', namespace, ...args], { timeout: 60_000, env: { PATH: process.env.PATH, HOME: env.dir } }, (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      if (stdin !== undefined) child.stdin!.end(stdin);
    });
  }

  /** JSON (kubectl reads YAML 1.1, where an unquoted `yes` is a boolean). */
  function manifest(name: string, spec: Record<string, unknown>, labels?: Record<string, string>): string {
    return JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name, ...(labels ? { labels } : {}) }, spec });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async function getJson(name: string): Promise<any> {
    // In the version the manifests are written in (kubectl would read the preferred one, v1beta1).
    const run = await kubectl(['get', `flunders.v1alpha1.${GROUP}`, name, '-o', 'json', '--show-managed-fields']);
    expect(run.stderr).toBe('');
    return JSON.parse(run.stdout);
  }

  function entries(object: { metadata: { managedFields?: Entry[] } }): Entry[] {
    return object.metadata.managedFields ?? [];
  }

  maybe(
    'apply --server-side twice: the second apply changes nothing (same resourceVersion) and diff --server-side shows no difference',
    async () => {
      // GIVEN a manifest; WHEN it is applied server-side
      const doc = manifest('twice', { reference: 'one' }, { tier: 'web' });
      const first = await kubectl(['apply', '--server-side', '-f', '-'], doc);
      // THEN kubectl reports it, and the object has kubectl's Apply entry
      expect(first).toEqual({ code: 0, stdout: `flunder.${GROUP}/twice serverside-applied\n`, stderr: '' });
      const created = await getJson('twice');
      expect(entries(created)).toEqual([expect.objectContaining({ manager: 'kubectl', operation: 'Apply', fieldsV1: { 'f:metadata': { 'f:labels': { 'f:tier': {} } }, 'f:spec': { 'f:reference': {} } } })]);
      // WHEN the same manifest is applied again
      const second = await kubectl(['apply', '--server-side', '-f', '-'], doc);
      // THEN nothing was written: the resourceVersion and the entry are the same
      expect(second).toEqual({ code: 0, stdout: `flunder.${GROUP}/twice serverside-applied\n`, stderr: '' });
      const again = await getJson('twice');
      expect(again.metadata.resourceVersion).toBe(created.metadata.resourceVersion);
      expect(again.metadata.managedFields).toEqual(created.metadata.managedFields);
      // AND a server-side diff (a dry-run apply) finds nothing to change
      const diff = await kubectl(['diff', '--server-side', '-f', '-'], doc);
      expect(diff).toEqual({ code: 0, stdout: '', stderr: '' });
    },
    120_000,
  );

  maybe(
    'fails with a conflict naming the field and its manager when another field manager applies a different value; --force-conflicts takes the field over',
    async () => {
      // GIVEN a flunder kubectl applied
      expect((await kubectl(['apply', '--server-side', '-f', '-'], manifest('contested', { reference: 'one' }))).code).toBe(0);
      // WHEN another field manager applies another value of the same field
      const other = manifest('contested', { reference: 'two' });
      const conflict = await kubectl(['apply', '--server-side', '--field-manager=rival', '-f', '-'], other);
      // THEN kubectl fails with the server's 409: the field and its manager
      expect(conflict.code).toBe(1);
      expect(conflict.stdout).toBe('');
      expect(conflict.stderr).toContain('Apply failed with 1 conflict: conflict with "kubectl": .spec.reference');
      expect(conflict.stderr).toContain('--force-conflicts');
      expect((await getJson('contested')).spec.reference).toBe('one');
      // WHEN it forces
      const forced = await kubectl(['apply', '--server-side', '--field-manager=rival', '--force-conflicts', '-f', '-'], other);
      // THEN the value and the field are the rival's
      expect(forced).toEqual({ code: 0, stdout: `flunder.${GROUP}/contested serverside-applied\n`, stderr: '' });
      const object = await getJson('contested');
      expect(object.spec.reference).toBe('two');
      const owners = Object.fromEntries(entries(object).map((e) => [e.manager, e.fieldsV1]));
      expect(owners.rival).toEqual({ 'f:spec': { 'f:reference': {} } });
      expect(owners.kubectl).toBeUndefined();
    },
    120_000,
  );

  maybe(
    'a field dropped from the applied file is removed',
    async () => {
      // GIVEN a flunder applied with a reference and two labels
      const first = await kubectl(['apply', '--server-side', '-f', '-'], manifest('shrinking', { reference: 'one', referenceType: 'Flunder' }, { keep: 'yes', drop: 'me' }));
      expect(first).toEqual({ code: 0, stdout: `flunder.${GROUP}/shrinking serverside-applied\n`, stderr: '' });
      // WHEN the file no longer has the reference nor one label
      const run = await kubectl(['apply', '--server-side', '-f', '-'], manifest('shrinking', {}, { keep: 'yes' }));
      // THEN both are gone
      expect(run.code).toBe(0);
      const object = await getJson('shrinking');
      expect(object.metadata.labels).toEqual({ keep: 'yes' });
      expect(object.spec).toBeUndefined();
    },
    120_000,
  );

  maybe(
    'migrates from client-side apply: kubectl apply, then apply --server-side with a change, without a conflict; kubectl-client-side-apply\'s fields move to kubectl',
    async () => {
      // GIVEN a flunder applied client-side (the last-applied annotation, kubectl-client-side-apply's Update entry)
      const csa = await kubectl(['apply', '-f', '-'], manifest('migrated', { reference: 'one' }, { tier: 'web' }));
      expect(csa).toEqual({ code: 0, stdout: `flunder.${GROUP}/migrated created\n`, stderr: '' });
      const before = await getJson('migrated');
      expect(entries(before).map((e) => `${e.manager}/${e.operation}`)).toEqual(['kubectl-client-side-apply/Update']);
      expect(before.metadata.annotations[LAST_APPLIED]).toContain('"reference":"one"');
      // WHEN it is applied server-side with a changed value
      const ssa = await kubectl(['apply', '--server-side', '-f', '-'], manifest('migrated', { reference: 'two' }, { tier: 'web' }));
      // THEN no conflict: kubectl owns the fields client-side apply owned (kubectl's csaupgrade gives
      // the annotation to kubectl-last-applied), and the annotation follows what was applied
      expect(ssa).toEqual({ code: 0, stdout: `flunder.${GROUP}/migrated serverside-applied\n`, stderr: '' });
      const after = await getJson('migrated');
      expect(after.spec.reference).toBe('two');
      expect(entries(after).map((e) => `${e.manager}/${e.operation}`)).toEqual(['kubectl-last-applied/Apply', 'kubectl/Apply']);
      expect(entries(after)[0].fieldsV1).toEqual({ 'f:metadata': { 'f:annotations': { [`f:${LAST_APPLIED}`]: {} } } });
      expect(entries(after)[1].fieldsV1).toEqual({ 'f:metadata': { 'f:labels': { 'f:tier': {} } }, 'f:spec': { 'f:reference': {} } });
      expect(JSON.parse(after.metadata.annotations[LAST_APPLIED]).spec).toEqual({ reference: 'two' });
      // AND applying again client-side or server-side keeps working
      expect((await kubectl(['apply', '--server-side', '-f', '-'], manifest('migrated', { reference: 'three' }, { tier: 'web' }))).code).toBe(0);
      expect((await getJson('migrated')).spec.reference).toBe('three');
    },
    120_000,
  );

  maybe(
    'get --show-managed-fields shows managedFields; a plain get hides them',
    async () => {
      expect((await kubectl(['apply', '--server-side', '--field-manager=shown', '-f', '-'], manifest('shown', { reference: 'one' }))).code).toBe(0);
      const shown = await kubectl(['get', 'flunder', 'shown', '-o', 'yaml', '--show-managed-fields']);
      expect(shown.code).toBe(0);
      expect(shown.stdout).toMatch(/^ {2}managedFields:\n {2}- apiVersion: wardle\.example\.com\/v1alpha1\n {4}fieldsType: FieldsV1\n/m);
      expect(shown.stdout).toMatch(/^ {4}manager: shown\n {4}operation: Apply\n/m);
      const hidden = await kubectl(['get', 'flunder', 'shown', '-o', 'yaml']);
      expect(hidden.code).toBe(0);
      expect(hidden.stdout).not.toContain('managedFields');
    },
    120_000,
  );
});

describe('managedFields of objects written over raw HTTPS', () => {
  interface Reply {
    readonly status: number;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    readonly body: any;
  }

  /** One request as an x509 user, the server's certificate verified against the serving CA. */
  function request(method: string, path: string, body: unknown, userAgent: string): Promise<Reply> {
    const kubeconfig = YAML.parse(fs.readFileSync(env.kubeconfigFor({ cn: 'raw-writer' }), 'utf8'));
    const user = kubeconfig.users[0].user;
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: env.server.port,
          path,
          method,
          servername: env.serverName,
          ca: env.servingCa.certPem,
          cert: Buffer.from(user['client-certificate-data'], 'base64'),
          key: Buffer.from(user['client-key-data'], 'base64'),
          headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), 'User-Agent': userAgent },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  test('POST records the User-Agent\'s Update entry; PUT with fieldManager adds its own for what it changed', async () => {
    env.fake.setNamespace('raw', 'Active');
    const url = `/apis/${GROUP}/v1alpha1/namespaces/raw/flunders`;
    // GIVEN a flunder created by a client that names itself only in its User-Agent
    const created = await request('POST', url, { apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name: 'raw' }, spec: { reference: 'one' } }, 'raw-client/1.0 (linux)');
    expect(created.status).toBe(201);
    expect(created.body.metadata.managedFields).toEqual([expect.objectContaining({ manager: 'raw-client', operation: 'Update', apiVersion: `${GROUP}/v1alpha1`, fieldsType: 'FieldsV1' })]);
    // WHEN another client replaces it with a label added, naming itself with fieldManager
    const replaced = await request('PUT', `${url}/raw?fieldManager=labeller`, { ...created.body, metadata: { ...created.body.metadata, labels: { added: 'yes' } } }, 'other/2.0');
    // THEN both entries are there, the labeller's with the label alone
    expect(replaced.status).toBe(200);
    const byManager = Object.fromEntries((replaced.body.metadata.managedFields as Entry[]).map((e) => [e.manager, e]));
    expect(Object.keys(byManager).sort()).toEqual(['labeller', 'raw-client']);
    expect(byManager.labeller.fieldsV1).toEqual({ 'f:metadata': { 'f:labels': { '.': {}, 'f:added': {} } } });
  }, 60_000);
});
