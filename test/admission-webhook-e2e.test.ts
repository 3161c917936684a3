/**
 * Admission webhooks in the bundled server as it ships: the esbuild bundle run as a process, its
 * configurations watched from the kube-apiserver stand-in through its kubeconfig, a real local
 * HTTPS webhook called with AdmissionReview JSON, and the admission flags.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdmissionWebhookServer } from './support/admission-webhook-server';
import { makeLeaf } from './support/pki';
import { request as plainRequest } from './support/shell-fakes';
import { startServerEnvironment, type ServerEnvironment } from './support/server-process';
import { until } from './support/until';

jest.setTimeout(120_000);

const FLUNDERS = '/apis/wardle.example.com/v1alpha1/namespaces/default/flunders';

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly body: any;
}

/** A request to the server as an x509 user in system:masters (authorized without a review). */
function request(env: ServerEnvironment, method: string, path: string, body?: unknown): Promise<Reply> {
  const user = makeLeaf(env.clientCa, { cn: 'alice', organizations: ['system:masters', 'devs'] });
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: env.server.port,
        path,
        method,
        servername: env.serverName,
        ca: env.servingCa.certPem,
        cert: user.chainPem,
        key: user.keyPem,
        headers: payload === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

function webhookFor(hooks: AdmissionWebhookServer, name: string, path: string): Record<string, unknown> {
  return {
    name,
    clientConfig: { url: hooks.url(path), caBundle: hooks.caBundle },
    rules: [{ operations: ['CREATE', 'UPDATE'], apiGroups: ['wardle.example.com'], apiVersions: ['*'], resources: ['flunders'] }],
    sideEffects: 'None',
    admissionReviewVersions: ['v1'],
  };
}

/** Dry-run creates until the server's watch has the configuration and calls `path` (a dry run stores nothing). */
async function untilCalled(env: ServerEnvironment, hooks: AdmissionWebhookServer, path: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (hooks.calls(path).length === 0) {
    if (Date.now() > deadline) throw new Error(`the server never called ${path}`);
    await request(env, 'POST', `${FLUNDERS}?dryRun=All`, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'probe' } });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  hooks.received.clear();
}

describe('the bundled server with admission webhooks (on by default)', () => {
  let env: ServerEnvironment;
  let hooks: AdmissionWebhookServer;

  beforeAll(async () => {
    hooks = await AdmissionWebhookServer.start();
    env = await startServerEnvironment();
  });

  afterAll(async () => {
    await env?.stop();
    await hooks?.close();
  });

  test('fails a create a validating webhook denies, with its message; the review names the x509 user', async () => {
    // GIVEN a ValidatingWebhookConfiguration in the cluster whose webhook denies names starting with "bad-"
    hooks.on('/validate', (review) => (String(review.name).startsWith('bad-') ? { allowed: false, status: { message: 'bad names are not allowed' } } : { allowed: true }));
    env.fake.setWebhookConfiguration('validating', 'names', { webhooks: [webhookFor(hooks, 'names.example.com', '/validate')] });
    await untilCalled(env, hooks, '/validate');
    // WHEN a bad and a good flunder are created
    const refused = await request(env, 'POST', FLUNDERS, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'bad-one' } });
    const created = await request(env, 'POST', FLUNDERS, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'good-one' } });
    // THEN the bad one is refused as upstream words it, the good one stored
    expect(refused.status).toBe(403);
    expect(refused.body.message).toBe('admission webhook "names.example.com" denied the request: bad names are not allowed');
    expect(created.status).toBe(201);
    expect(hooks.calls('/validate')[0].userInfo).toMatchObject({ username: 'alice', groups: expect.arrayContaining(['system:masters', 'devs']) });
    env.fake.setWebhookConfiguration('validating', 'names', undefined);
  });

  test('a mutating webhook\'s patch is stored and its warning returned', async () => {
    hooks.on('/mutate', () => ({ allowed: true, patch: [{ op: 'add', path: '/metadata/annotations', value: { 'mutated-by': 'webhook' } }], warnings: ['annotated'] }));
    env.fake.setWebhookConfiguration('mutating', 'annotate', { webhooks: [webhookFor(hooks, 'annotate.example.com', '/mutate')] });
    await untilCalled(env, hooks, '/mutate');
    const created = await request(env, 'POST', FLUNDERS, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'mutated' } });
    expect(created.status).toBe(201);
    expect(created.headers.warning).toBe('299 - "annotated"');
    const stored = await request(env, 'GET', `${FLUNDERS}/mutated`);
    expect(stored.body.metadata.annotations).toEqual({ 'mutated-by': 'webhook' });
    env.fake.setWebhookConfiguration('mutating', 'annotate', undefined);
  });
});

describe('the bundled server with ValidatingAdmissionPolicy (on by default)', () => {
  let env: ServerEnvironment;

  beforeAll(async () => {
    env = await startServerEnvironment();
  });

  afterAll(async () => {
    await env?.stop();
  });

  test('fails a create a bound policy denies, with upstream\'s wording', async () => {
    // GIVEN a policy refusing flunders without a reference, bound with Deny
    env.fake.setWebhookConfiguration('policy', 'needs-reference', {
      spec: {
        matchConstraints: { resourceRules: [{ apiGroups: ['wardle.example.com'], apiVersions: ['*'], operations: ['CREATE'], resources: ['flunders'] }] },
        validations: [{ expression: 'has(object.spec) && has(object.spec.reference)', message: 'a reference is required' }],
      },
    });
    env.fake.setWebhookConfiguration('policyBinding', 'needs-reference', { spec: { policyName: 'needs-reference', validationActions: ['Deny'] } });
    // WHEN a flunder without a reference is created (until the server's watch has the policy)
    const deadline = Date.now() + 30_000;
    let reply: Reply;
    do {
      reply = await request(env, 'POST', `${FLUNDERS}?dryRun=All`, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'no-reference' } });
      if (reply.status !== 201) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    } while (Date.now() < deadline);
    // THEN 422 with the policy's and binding's names
    expect(reply.status).toBe(422);
    expect(reply.body.message).toBe(
      `flunders.wardle.example.com "no-reference" is forbidden: ValidatingAdmissionPolicy 'needs-reference' with binding 'needs-reference' denied request: a reference is required`,
    );
    const created = await request(env, 'POST', FLUNDERS, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'with-reference' }, spec: { reference: 'x' } });
    expect(created.status).toBe(201);
  });
});

describe('admission audit annotations in the audit log', () => {
  test("a policy's auditAnnotations and an Audit-action failure reach the request's audit event, beside authorization's", async () => {
    // GIVEN the server writing an audit log at Metadata, and a policy that notes names and audits flunders named "noted"
    const dir = mkdtempSync(join(tmpdir(), 'admission-audit-'));
    const log = join(dir, 'audit.log');
    writeFileSync(join(dir, 'policy.yaml'), 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Metadata}]\n');
    const env = await startServerEnvironment({ extraArgs: [`--audit-log-path=${log}`, `--audit-policy-file=${join(dir, 'policy.yaml')}`] });
    try {
      env.fake.setWebhookConfiguration('policy', 'noting', {
        spec: {
          matchConstraints: { resourceRules: [{ apiGroups: ['wardle.example.com'], apiVersions: ['*'], operations: ['CREATE'], resources: ['flunders'] }] },
          validations: [{ expression: "object.metadata.name != 'noted'", message: 'this name is noted' }],
          auditAnnotations: [{ key: 'name', valueExpression: 'object.metadata.name' }],
        },
      });
      env.fake.setWebhookConfiguration('policyBinding', 'noting', { spec: { policyName: 'noting', validationActions: ['Audit'] } });

      // WHEN flunders named "noted" are created (dry runs until the server's watch has the policy)
      const events = () =>
        (existsSync(log) ? readFileSync(log, 'utf8') : '')
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as { verb: string; annotations?: Record<string, string> });
      await until(async () => {
        await request(env, 'POST', `${FLUNDERS}?dryRun=All`, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'noted' } });
        return events().some((event) => event.annotations?.['noting/name'] === 'noted');
      }, 'an audit event with the policy\'s annotation');

      // THEN that event carries the policy's annotations and authorization's, keys sorted
      const event = events().find((e) => e.verb === 'create' && e.annotations?.['noting/name'] === 'noted')!;
      expect(event.annotations).toEqual({
        'authorization.k8s.io/decision': 'allow',
        'authorization.k8s.io/reason': '',
        'noting/name': 'noted',
        'validation.policy.admission.k8s.io/validation_failure': '[{"expressionIndex":0,"message":"this name is noted","validationActions":["Audit"],"binding":"noting","policy":"noting"}]',
      });
      expect(Object.keys(event.annotations!)).toEqual([...Object.keys(event.annotations!)].sort());
    } finally {
      await env.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('--disable-admission-plugins', () => {
  test('with both webhook plugins disabled, a configured webhook that denies everything is not called', async () => {
    const hooks = await AdmissionWebhookServer.start();
    const env = await startServerEnvironment({ extraArgs: ['--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook'] });
    try {
      hooks.on('/deny', () => ({ allowed: false }));
      env.fake.setWebhookConfiguration('validating', 'deny', { webhooks: [webhookFor(hooks, 'deny.example.com', '/deny')] });
      const created = await request(env, 'POST', FLUNDERS, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'free' } });
      expect(created.status).toBe(201);
      expect(hooks.calls('/deny')).toHaveLength(0);
    } finally {
      await env.stop();
      await hooks.close();
    }
  });

  test('fails to start with an unknown plugin name, naming the flag and the registered plugins', async () => {
    await expect(startServerEnvironment({ extraArgs: ['--enable-admission-plugins=AlwaysPullImages'] })).rejects.toThrow(
      /--enable-admission-plugins plugin "AlwaysPullImages" is unknown: expected some of NamespaceLifecycle, MutatingAdmissionWebhook, ValidatingAdmissionPolicy, ValidatingAdmissionWebhook, BanFlunder/,
    );
  });
});

describe('readiness: the informer-sync check', () => {
  /** GET `path` anonymously, as the kubelet's probe does. */
  const probe = (env: ServerEnvironment, path: string) => plainRequest(env.server.port, path, { ca: env.servingCa.certPem, servername: env.serverName });

  test('the server is not ready until the namespace, webhook and policy informers have listed, naming the one that has not', async () => {
    // GIVEN kube-apiserver refuses the list of MutatingWebhookConfigurations (the ClusterRole lacks it)
    const env = await startServerEnvironment({ prepareFake: (fake) => fake.admissionForbidden.add('mutating'), waitReady: false });
    try {
      // WHEN the server has started and the other informers have listed
      let check = { status: 0, body: '' };
      await until(async () => {
        const { status, body } = await probe(env, '/readyz/informer-sync').catch(() => check);
        check = { status, body };
        return body.includes(': 1 informers');
      }, 'informer-sync to name one informer').catch(() => undefined);

      // THEN /readyz fails on informer-sync, which names the informer as upstream's check does
      expect(check).toEqual({ status: 500, body: 'internal server error: 1 informers not started yet: [*v1.MutatingWebhookConfiguration]\n' });
      const readyz = await probe(env, '/readyz?verbose');
      expect(readyz.status).toBe(500);
      expect(readyz.body).toContain('[-]informer-sync failed: reason withheld\n');
      expect(readyz.body).toContain('[+]storage ok\n');

      // AND once the list is allowed, the reflector's retry makes the server ready
      env.fake.admissionForbidden.delete('mutating');
      await env.server.waitReady(30_000);
      expect((await probe(env, '/readyz?verbose')).body).toContain('[+]informer-sync ok\n');
    } finally {
      await env.stop();
    }
  });
});
