/**
 * Admission webhooks through the registry over HTTP: the MutatingAdmissionWebhook and
 * ValidatingAdmissionWebhook plugins read their configurations and namespace labels from a
 * kube-apiserver stand-in by list and watch (the server's own KubeClient), and call a real local
 * HTTPS webhook with admission.k8s.io/v1 AdmissionReview JSON.
 */
import pino from 'pino';
import { WARDLE } from '../apis/wardle';
import { webhookAdmission, WatchedWebhookConfigurations, type WebhookSpec } from '../server/admission/webhook';
import { KubeNamespaceLister } from '../server/admission/namespace-lifecycle';
import { createKubeClient, type KubeClient } from '../server/kube-client';
import { wardleAdmission, wardleRules } from '../server/registry/wardle';
import { AdmissionWebhookServer } from './support/admission-webhook-server';
import { KubeApiServerStandIn } from './support/kube-apiserver-stand-in';
import { makeCa } from './support/pki';
import { SCALABLE, WIDGETS } from './support/scalable-api';
import { FLUNDERS, FLUNDERS_BETA, RegistryServer, flunder } from './support/registry-server';
import { until } from './support/until';

jest.setTimeout(60_000);

const SERVICE = { namespace: 'hooks', name: 'webhook', port: 443 };

let standIn: KubeApiServerStandIn;
let client: KubeClient;
let hooks: AdmissionWebhookServer;
let mutating: WatchedWebhookConfigurations;
let validating: WatchedWebhookConfigurations;
let namespaces: KubeNamespaceLister;
let registry: RegistryServer;

/** A webhook of the test server at `path` (through the service reference), for flunders by default. */
function hook(name: string, path: string, extra: Partial<WebhookSpec> = {}): WebhookSpec {
  return {
    name,
    clientConfig: { service: { ...SERVICE, path }, caBundle: hooks.caBundle },
    rules: [{ operations: ['CREATE', 'UPDATE', 'DELETE'], apiGroups: ['wardle.example.com'], apiVersions: ['v1alpha1'], resources: ['flunders'] }],
    sideEffects: 'None',
    admissionReviewVersions: ['v1'],
    ...extra,
  };
}

/** Stores a configuration in the stand-in and waits until the plugin's watch has it. */
async function configure(kind: 'Mutating' | 'Validating', name: string, webhooks: WebhookSpec[]): Promise<void> {
  standIn.put({ apiVersion: 'admissionregistration.k8s.io/v1', kind: `${kind}WebhookConfiguration`, metadata: { name }, webhooks });
  const source = kind === 'Mutating' ? mutating : validating;
  await until(() => webhooks.every((w) => source.webhooks().some((c) => c.spec.name === w.name && c.configurationName === name)), `configuration ${name}`);
}

beforeAll(async () => {
  standIn = await KubeApiServerStandIn.start();
  standIn.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns1', labels: { env: 'prod' } } });
  standIn.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns2', labels: { env: 'dev' } } });
  client = createKubeClient({ server: standIn.url, caPem: standIn.ca.certPem, token: standIn.adminToken });
  hooks = await AdmissionWebhookServer.start(['webhook.hooks.svc']);
  const logger = pino({ level: 'silent' });
  mutating = new WatchedWebhookConfigurations(client, 'mutating', logger);
  validating = new WatchedWebhookConfigurations(client, 'validating', logger);
  namespaces = new KubeNamespaceLister(client, logger);
  const plugins = webhookAdmission({
    api: WARDLE,
    rules: wardleRules,
    mutating,
    validating,
    namespaces,
    // The service name is verified (the certificate is for webhook.hooks.svc); only the dial goes to loopback.
    resolveService: () => ({ host: '127.0.0.1', port: hooks.port }),
  });
  registry = await RegistryServer.start({ admission: [...wardleAdmission(), plugins.mutating, plugins.validating] });
});

afterEach(async () => {
  // No configuration outlives its test; the plugins see them gone before the next one starts.
  for (const kind of ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']) {
    for (const name of ['a', 'b', 'c']) if (standIn.find(kind, name)) standIn.remove(kind, name);
  }
  await until(() => mutating.webhooks().length === 0 && validating.webhooks().length === 0, 'configurations removed');
  hooks.reset();
});

afterAll(async () => {
  await registry?.close();
  mutating?.close();
  validating?.close();
  namespaces?.close();
  client?.close();
  await hooks?.close();
  await standIn?.close();
});

describe('validating webhooks', () => {
  test('fails a create a webhook denies: its message reaches the client as upstream words it, and the review carried the request', async () => {
    // GIVEN a validating webhook that denies every flunder
    hooks.on('/deny', () => ({ allowed: false, status: { message: 'no flunders on Thursdays' } }));
    await configure('Validating', 'a', [hook('deny.example.com', '/deny')]);
    // WHEN a flunder is created
    const reply = await registry.post(FLUNDERS, flunder('thursday', { reference: 'x' }, { labels: { team: 'a' } }));
    // THEN 403 with upstream's wording, nothing stored
    expect(reply.status).toBe(403);
    expect(reply.body).toMatchObject({ kind: 'Status', status: 'Failure', code: 403, message: 'admission webhook "deny.example.com" denied the request: no flunders on Thursdays' });
    expect((await registry.get(`${FLUNDERS}/thursday`)).status).toBe(404);
    // AND the AdmissionReview request said what was asked, by whom
    const [request] = hooks.calls('/deny');
    expect(request).toMatchObject({
      kind: { group: 'wardle.example.com', version: 'v1alpha1', kind: 'Flunder' },
      resource: { group: 'wardle.example.com', version: 'v1alpha1', resource: 'flunders' },
      requestKind: { group: 'wardle.example.com', version: 'v1alpha1', kind: 'Flunder' },
      requestResource: { group: 'wardle.example.com', version: 'v1alpha1', resource: 'flunders' },
      name: 'thursday',
      namespace: 'ns1',
      operation: 'CREATE',
      userInfo: { username: 'alice', groups: ['system:authenticated'] },
      object: { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'thursday', namespace: 'ns1', labels: { team: 'a' } }, spec: { reference: 'x' } },
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    });
    expect(request.uid).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('fails with the code and reason the webhook gives', async () => {
    hooks.on('/deny', () => ({ allowed: false, status: { code: 422, reason: 'Invalid', message: 'bad spec' } }));
    await configure('Validating', 'a', [hook('deny.example.com', '/deny')]);
    const reply = await registry.post(FLUNDERS, flunder('coded'));
    expect(reply.status).toBe(422);
    expect(reply.body).toMatchObject({ reason: 'Invalid', message: 'admission webhook "deny.example.com" denied the request: bad spec' });
  });

  test('allows what every webhook allows; updates and deletes carry the old object', async () => {
    await configure('Validating', 'a', [hook('allow.example.com', '/allow')]);
    expect((await registry.post(FLUNDERS, flunder('kept', { reference: 'one' }))).status).toBe(201);
    expect((await registry.patch(`${FLUNDERS}/kept`, { spec: { reference: 'two' } })).status).toBe(200);
    expect((await registry.delete(`${FLUNDERS}/kept`)).status).toBe(200);
    const calls = hooks.calls('/allow');
    expect(calls.map((c) => c.operation)).toEqual(['CREATE', 'UPDATE', 'DELETE']);
    expect(calls[1]).toMatchObject({ object: { spec: { reference: 'two' } }, oldObject: { spec: { reference: 'one' } }, options: { kind: 'UpdateOptions' } });
    expect(calls[2]).toMatchObject({ object: null, oldObject: { spec: { reference: 'two' } }, options: { kind: 'DeleteOptions' } });
  });

  test('validating webhooks are called in parallel: the first answers only once the second was called', async () => {
    // GIVEN webhook a, first in order, that answers only after webhook b received its review (sequential calls would time a out)
    hooks.on('/a', async () => {
      await until(() => hooks.calls('/b').length > 0, 'webhook b to be called', 8_000);
      return { allowed: true };
    });
    await configure('Validating', 'a', [hook('a.example.com', '/a', { timeoutSeconds: 10 })]);
    await configure('Validating', 'b', [hook('b.example.com', '/b')]);
    // WHEN a flunder is created THEN both allowed it
    expect((await registry.post(FLUNDERS, flunder('parallel'))).status).toBe(201);
    expect(hooks.calls('/a')).toHaveLength(1);
  });

  test('a webhook whose rules do not match is never called', async () => {
    // GIVEN webhooks for another resource, another group, another operation, another version (Exact), and the status subresource
    const base = { apiGroups: ['wardle.example.com'], apiVersions: ['*'] };
    await configure('Validating', 'a', [
      hook('fischers.example.com', '/never', { rules: [{ ...base, operations: ['*'], resources: ['fischers'] }] }),
      hook('apps.example.com', '/never', { rules: [{ operations: ['*'], apiGroups: ['apps'], apiVersions: ['*'], resources: ['*'] }] }),
      hook('deletes.example.com', '/never', { rules: [{ ...base, operations: ['DELETE'], resources: ['flunders'] }] }),
      hook('beta-exact.example.com', '/never', { matchPolicy: 'Exact', rules: [{ ...base, apiVersions: ['v1beta1'], operations: ['*'], resources: ['flunders'] }] }),
      hook('status.example.com', '/never', { rules: [{ ...base, operations: ['*'], resources: ['flunders/status'] }] }),
      hook('cluster.example.com', '/never', { rules: [{ ...base, operations: ['*'], resources: ['*'], scope: 'Cluster' }] }),
      hook('counted.example.com', '/counted', { rules: [{ ...base, operations: ['CREATE'], resources: ['*'], scope: 'Namespaced' }] }),
    ]);
    // WHEN a flunder is created and updated
    expect((await registry.post(FLUNDERS, flunder('unwatched'))).status).toBe(201);
    expect((await registry.patch(`${FLUNDERS}/unwatched`, { spec: { reference: 'r' } })).status).toBe(200);
    // THEN only the matching webhook was called, once
    expect(hooks.calls('/never')).toHaveLength(0);
    expect(hooks.calls('/counted')).toHaveLength(1);
  });

  test('subresource rules: flunders/status and */status are called for status writes only, * for the main resource only, */* for both', async () => {
    const base = { apiGroups: ['*'], apiVersions: ['*'], operations: ['UPDATE'] };
    await configure('Validating', 'a', [
      hook('status.example.com', '/status', { rules: [{ ...base, resources: ['flunders/status'] }] }),
      hook('main.example.com', '/main', { rules: [{ ...base, resources: ['flunders'] }] }),
      hook('all.example.com', '/all', { rules: [{ ...base, resources: ['*/*'] }] }),
      hook('star.example.com', '/star', { rules: [{ ...base, resources: ['*'] }] }),
      hook('any-status.example.com', '/any-status', { rules: [{ ...base, resources: ['*/status'] }] }),
    ]);
    expect((await registry.post(FLUNDERS, flunder('sub'))).status).toBe(201);
    expect((await registry.patch(`${FLUNDERS}/sub/status`, { status: { ok: true } })).status).toBe(200);
    expect((await registry.patch(`${FLUNDERS}/sub`, { spec: { reference: 'z' } })).status).toBe(200);
    expect(hooks.calls('/status').map((c) => c.subResource)).toEqual(['status']);
    expect(hooks.calls('/main').map((c) => c.subResource)).toEqual([undefined]);
    expect(hooks.calls('/all')).toHaveLength(2);
    // '*' is every resource but no subresource; '*/status' the status of every resource
    expect(hooks.calls('/star').map((c) => c.subResource)).toEqual([undefined]);
    expect(hooks.calls('/any-status').map((c) => c.subResource)).toEqual(['status']);
  });

  test('matchPolicy Equivalent: a webhook for v1beta1 gets a v1alpha1 write converted to v1beta1', async () => {
    await configure('Validating', 'a', [hook('beta.example.com', '/beta', { rules: [{ operations: ['CREATE'], apiGroups: ['wardle.example.com'], apiVersions: ['v1beta1'], resources: ['flunders'] }] })]);
    expect((await registry.post(FLUNDERS, flunder('converted', { reference: 'other', referenceType: 'Flunder' }))).status).toBe(201);
    const [request] = hooks.calls('/beta');
    expect(request.kind).toEqual({ group: 'wardle.example.com', version: 'v1beta1', kind: 'Flunder' });
    expect(request.requestKind).toEqual({ group: 'wardle.example.com', version: 'v1alpha1', kind: 'Flunder' });
    expect(request.object).toMatchObject({ apiVersion: 'wardle.example.com/v1beta1', spec: { flunderReference: 'other', referenceType: 'Flunder' } });
  });

  test('namespaceSelector and objectSelector choose the writes a webhook sees', async () => {
    await configure('Validating', 'a', [
      hook('prod.example.com', '/prod', { namespaceSelector: { matchLabels: { env: 'prod' } } }),
      hook('not-dev.example.com', '/not-dev', { namespaceSelector: { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] } }),
      hook('labelled.example.com', '/labelled', { objectSelector: { matchExpressions: [{ key: 'audit', operator: 'Exists' }] } }),
    ]);
    const ns2 = FLUNDERS.replace('/ns1/', '/ns2/');
    expect((await registry.post(FLUNDERS, flunder('in-prod'))).status).toBe(201);
    expect((await registry.post(ns2, flunder('in-dev', {}, { labels: { audit: 'yes' } }))).status).toBe(201);
    expect(hooks.calls('/prod').map((c) => c.name)).toEqual(['in-prod']);
    expect(hooks.calls('/not-dev').map((c) => c.name)).toEqual(['in-prod']);
    expect(hooks.calls('/labelled').map((c) => c.name)).toEqual(['in-dev']);
    // The old object's labels count too: removing the label is still seen.
    expect((await registry.patch(`${ns2}/in-dev`, { metadata: { labels: { audit: null } } })).status).toBe(200);
    expect(hooks.calls('/labelled').map((c) => c.operation)).toEqual(['CREATE', 'UPDATE']);
  });

  test('fails with 404 when a namespaceSelector needs the labels of a namespace the cluster does not have', async () => {
    // GIVEN a namespace the registry knows (NamespaceLifecycle) but the cluster stand-in does not
    await configure('Validating', 'a', [hook('prod.example.com', '/prod', { namespaceSelector: { matchLabels: { env: 'prod' } } })]);
    const reply = await registry.post(FLUNDERS.replace('/ns1/', '/default/'), flunder('nowhere'));
    expect(reply.status).toBe(404);
    expect(reply.body.message).toBe('namespaces "default" not found');
    expect(hooks.calls('/prod')).toHaveLength(0);
  });

  test('matchConditions in CEL decide over object, oldObject and request', async () => {
    await configure('Validating', 'a', [
      hook('checked.example.com', '/checked', {
        matchConditions: [
          { name: 'prefixed', expression: "object.metadata.name.startsWith('check-')" },
          { name: 'not-system', expression: "!request.userInfo.username.startsWith('system:')" },
        ],
      }),
    ]);
    expect((await registry.post(FLUNDERS, flunder('check-me'))).status).toBe(201);
    expect((await registry.post(FLUNDERS, flunder('skip-me'))).status).toBe(201);
    expect(hooks.calls('/checked').map((c) => c.name)).toEqual(['check-me']);
  });

  test('fails a write whose matchCondition errors under failurePolicy Fail (403), and skips the webhook under Ignore', async () => {
    await configure('Validating', 'a', [hook('broken.example.com', '/broken', { matchConditions: [{ name: 'missing', expression: 'object.spec.nothing == 1' }] })]);
    const refused = await registry.post(FLUNDERS, flunder('cond-fail'));
    expect(refused.status).toBe(403);
    expect(refused.body.message).toMatch(/^flunders\.wardle\.example\.com "cond-fail" is forbidden: expression 'object\.spec\.nothing == 1' resulted in error: .+/);
    await configure('Validating', 'a', [hook('broken.example.com', '/broken', { failurePolicy: 'Ignore', matchConditions: [{ name: 'missing', expression: 'object.spec.nothing == 1' }] })]);
    expect((await registry.post(FLUNDERS, flunder('cond-ignored'))).status).toBe(201);
    expect(hooks.calls('/broken')).toHaveLength(0);
  });
});

describe('failures to call a webhook', () => {
  test('fails a write when the webhook times out under failurePolicy Fail; Ignore lets it through', async () => {
    hooks.on('/hang', () => 'hang');
    await configure('Validating', 'a', [hook('slow.example.com', '/hang', { timeoutSeconds: 1 })]);
    const started = Date.now();
    const reply = await registry.post(FLUNDERS, flunder('slow'));
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(reply.status).toBe(500);
    expect(reply.body).toMatchObject({
      reason: 'InternalError',
      message: 'Internal error occurred: failed calling webhook "slow.example.com": failed to call webhook: Post "https://webhook.hooks.svc:443/hang?timeout=1s": context deadline exceeded',
    });
    await configure('Validating', 'a', [hook('slow.example.com', '/hang', { timeoutSeconds: 1, failurePolicy: 'Ignore' })]);
    expect((await registry.post(FLUNDERS, flunder('slow-ignored'))).status).toBe(201);
  });

  test('fails a write when the webhook is down under failurePolicy Fail; Ignore lets it through', async () => {
    // GIVEN a URL nobody listens on (a port just closed)
    const gone = await AdmissionWebhookServer.start();
    const url = gone.url('/down');
    await gone.close();
    await configure('Mutating', 'a', [{ ...hook('down.example.com', '/down'), clientConfig: { url, caBundle: hooks.caBundle } }]);
    const reply = await registry.post(FLUNDERS, flunder('down'));
    expect(reply.status).toBe(500);
    expect(reply.body.message).toBe(`Internal error occurred: failed calling webhook "down.example.com": failed to call webhook: Post "${url}?timeout=10s": dial tcp 127.0.0.1:${new URL(url).port}: connect: connection refused`);
    await configure('Mutating', 'a', [{ ...hook('down.example.com', '/down', { failurePolicy: 'Ignore' }), clientConfig: { url, caBundle: hooks.caBundle } }]);
    expect((await registry.post(FLUNDERS, flunder('down-ignored'))).status).toBe(201);
  });

  test('fails a write to a webhook whose certificate the caBundle does not verify', async () => {
    const otherCa = makeCa('not-the-webhook-ca');
    await configure('Validating', 'a', [{ ...hook('untrusted.example.com', '/untrusted'), clientConfig: { service: { ...SERVICE, path: '/untrusted' }, caBundle: Buffer.from(otherCa.certPem).toString('base64') } }]);
    const reply = await registry.post(FLUNDERS, flunder('untrusted'));
    expect(reply.status).toBe(500);
    expect(reply.body.message).toBe(
      'Internal error occurred: failed calling webhook "untrusted.example.com": failed to call webhook: Post "https://webhook.hooks.svc:443/untrusted?timeout=10s": tls: failed to verify certificate: x509: certificate signed by unknown authority',
    );
    expect(hooks.calls('/untrusted')).toHaveLength(0);
  });

  test('fails a write when no caBundle is given: the system roots do not know the test CA', async () => {
    await configure('Validating', 'a', [{ ...hook('roots.example.com', '/roots'), clientConfig: { service: { ...SERVICE, path: '/roots' } } }]);
    const reply = await registry.post(FLUNDERS, flunder('roots'));
    expect(reply.status).toBe(500);
    expect(reply.body.message).toMatch(/x509: certificate signed by unknown authority$/);
  });

  test('fails a write when the answer is not a valid review (another uid)', async () => {
    hooks.on('/wrong-uid', () => ({ allowed: true, rawResponse: { uid: 'someone-else', allowed: true } }));
    await configure('Validating', 'a', [hook('wrong.example.com', '/wrong-uid')]);
    const reply = await registry.post(FLUNDERS, flunder('wrong-uid'));
    expect(reply.status).toBe(500);
    expect(reply.body.message).toMatch(/^Internal error occurred: failed calling webhook "wrong\.example\.com": expected response\.uid="[0-9a-f-]+", got "someone-else"$/);
  });
});

describe('connections to webhooks', () => {
  /** A webhook server of its own (connections counted from zero), called by URL. */
  async function ownWebhook(name: string): Promise<{ server: AdmissionWebhookServer; spec: WebhookSpec }> {
    const server = await AdmissionWebhookServer.start();
    return { server, spec: { ...hook(name, '/own'), clientConfig: { url: server.url('/own'), caBundle: server.caBundle } } };
  }

  test('keeps the connection alive: successive writes reach the webhook over one TLS connection', async () => {
    const { server, spec } = await ownWebhook('kept.example.com');
    try {
      await configure('Validating', 'a', [spec]);
      for (const name of ['kept-1', 'kept-2', 'kept-3']) expect((await registry.post(FLUNDERS, flunder(name))).status).toBe(201);
      expect(server.calls('/own').map((r) => r.name)).toEqual(['kept-1', 'kept-2', 'kept-3']);
      expect(server.connections).toBe(1);
    } finally {
      await server.close();
    }
  });

  test('a call whose kept connection the webhook closes unanswered is sent once more on a new connection', async () => {
    const { server, spec } = await ownWebhook('dropping.example.com');
    try {
      await configure('Validating', 'a', [spec]);
      expect((await registry.post(FLUNDERS, flunder('before-drop'))).status).toBe(201);
      server.dropNextReusedRequest();
      const reply = await registry.post(FLUNDERS, flunder('after-drop'));
      expect(reply.status).toBe(201);
      expect(server.calls('/own').map((r) => r.name)).toEqual(['before-drop', 'after-drop']);
      expect(server.connections).toBe(2);
    } finally {
      await server.close();
    }
  });
});

describe('mutating webhooks', () => {
  test('a JSON patch is applied, pruned and stored', async () => {
    // GIVEN a webhook that adds a label, sets a spec field and adds a field the schema does not know
    hooks.on('/mutate', () => ({
      allowed: true,
      patch: [
        { op: 'add', path: '/metadata/labels', value: { mutated: 'yes' } },
        { op: 'add', path: '/spec/reference', value: 'set-by-webhook' },
        { op: 'add', path: '/spec/unknownField', value: 1 },
      ],
    }));
    await configure('Mutating', 'a', [hook('mutate.example.com', '/mutate')]);
    // WHEN a flunder is created
    const reply = await registry.post(FLUNDERS, flunder('mutated', {}));
    // THEN the answer and the stored object carry the patch, without the unknown field
    expect(reply.status).toBe(201);
    const stored = (await registry.get(`${FLUNDERS}/mutated`)).body;
    expect(stored.metadata.labels).toEqual({ mutated: 'yes' });
    // (referenceType is the server's defaulting, after the patch)
    expect(stored.spec).toEqual({ reference: 'set-by-webhook', referenceType: 'Flunder' });
    expect(reply.body.spec).toEqual(stored.spec);
  });

  test('an update whose spec a webhook changed bumps the generation; a status write does not keep a webhook\'s spec change', async () => {
    // GIVEN a webhook that sets spec.reference on updates, and one for status writes that touches spec and status
    hooks.on('/spec', () => ({ allowed: true, patch: [{ op: 'add', path: '/spec/reference', value: 'webhook-ref' }] }));
    hooks.on('/status', () => ({ allowed: true, patch: [{ op: 'add', path: '/spec/reference', value: 'from-status' }, { op: 'add', path: '/status', value: { seen: true } }] }));
    const base = { apiGroups: ['*'], apiVersions: ['*'], operations: ['UPDATE'] };
    await configure('Mutating', 'a', [hook('spec.example.com', '/spec', { rules: [{ ...base, resources: ['flunders'] }] }), hook('status.example.com', '/status', { rules: [{ ...base, resources: ['flunders/status'] }] })]);
    const created = await registry.post(FLUNDERS, flunder('generations', { reference: 'mine' }));
    expect(created.body.metadata.generation).toBe(1);
    // WHEN only a label changes (no spec change by the client)
    const updated = await registry.patch(`${FLUNDERS}/generations`, { metadata: { labels: { x: 'y' } } });
    // THEN the webhook's spec change bumped the generation
    expect(updated.status).toBe(200);
    expect(updated.body.spec.reference).toBe('webhook-ref');
    expect(updated.body.metadata.generation).toBe(2);
    // WHEN the status is written
    const status = await registry.patch(`${FLUNDERS}/generations/status`, { status: { phase: 'x' } });
    // THEN the webhook was called, and its spec change is not stored (Flunder's status schema has no fields: its status is pruned to {})
    expect(status.status).toBe(200);
    expect(hooks.calls('/status')).toHaveLength(1);
    expect(status.body.spec.reference).toBe('webhook-ref');
    expect(status.body.metadata.generation).toBe(2);
  });

  test('fails a write whose patched object the schema refuses (422)', async () => {
    hooks.on('/bad-patch', () => ({ allowed: true, patch: [{ op: 'add', path: '/spec/referenceType', value: 'Bogus' }] }));
    await configure('Mutating', 'a', [hook('bad.example.com', '/bad-patch')]);
    const reply = await registry.post(FLUNDERS, flunder('bad-patch', {}));
    expect(reply.status).toBe(422);
    expect(reply.body.message).toMatch(/^Flunder\.wardle\.example\.com "bad-patch" is invalid: spec\.referenceType: Unsupported value: "Bogus"/);
  });

  test('a webhook with reinvocationPolicy IfNeeded is called again when a later webhook changed the object', async () => {
    // GIVEN webhook a (IfNeeded) that records what it saw, and a later webhook b that adds a label
    hooks.on('/first', () => ({ allowed: true }));
    hooks.on('/second', (request) => (request.object.metadata.labels?.second ? { allowed: true } : { allowed: true, patch: [{ op: 'add', path: '/metadata/labels', value: { second: 'yes' } }] }));
    await configure('Mutating', 'a', [hook('first.example.com', '/first', { reinvocationPolicy: 'IfNeeded' })]);
    await configure('Mutating', 'b', [hook('second.example.com', '/second')]);
    // WHEN a flunder is created
    expect((await registry.post(FLUNDERS, flunder('reinvoked'))).status).toBe(201);
    // THEN a was called twice, the second time with b's change; b once
    const first = hooks.calls('/first');
    expect(first).toHaveLength(2);
    expect(first[1].object.metadata.labels).toEqual({ second: 'yes' });
    expect(hooks.calls('/second')).toHaveLength(1);
  });

  test('a webhook with reinvocationPolicy IfNeeded is called once when no later webhook changed the object', async () => {
    hooks.on('/first', () => ({ allowed: true, patch: [{ op: 'add', path: '/metadata/annotations', value: { a: '1' } }] }));
    await configure('Mutating', 'a', [hook('first.example.com', '/first', { reinvocationPolicy: 'IfNeeded' })]);
    await configure('Mutating', 'b', [hook('second.example.com', '/second')]);
    expect((await registry.post(FLUNDERS, flunder('changed-by-itself'))).status).toBe(201);
    expect(hooks.calls('/first')).toHaveLength(1);
    expect(hooks.calls('/second')[0].object.metadata.annotations).toEqual({ a: '1' });
  });

  test('a webhook with reinvocationPolicy Never is called once', async () => {
    hooks.on('/second', () => ({ allowed: true, patch: [{ op: 'add', path: '/metadata/annotations', value: { b: '1' } }] }));
    await configure('Mutating', 'a', [hook('first.example.com', '/first')]);
    await configure('Mutating', 'b', [hook('second.example.com', '/second')]);
    expect((await registry.post(FLUNDERS, flunder('not-reinvoked'))).status).toBe(201);
    expect(hooks.calls('/first')).toHaveLength(1);
  });

  test('warnings of mutating and validating webhooks reach the client as Warning headers, on create, update and delete', async () => {
    hooks.on('/warn-m', () => ({ allowed: true, warnings: ['mutating says hi'] }));
    hooks.on('/warn-v', () => ({ allowed: true, warnings: ['validating says "careful"'] }));
    await configure('Mutating', 'a', [hook('warn-m.example.com', '/warn-m')]);
    await configure('Validating', 'a', [hook('warn-v.example.com', '/warn-v')]);
    const created = await registry.post(FLUNDERS, flunder('warned'));
    expect(created.status).toBe(201);
    expect(created.headers.warning).toBe('299 - "mutating says hi", 299 - "validating says \\"careful\\""');
    const updated = await registry.put(`${FLUNDERS}/warned`, { ...created.body, spec: { reference: 'u' } });
    expect(updated.status).toBe(200);
    expect(updated.headers.warning).toBe('299 - "mutating says hi", 299 - "validating says \\"careful\\""');
    // AND a delete carries them too; a deletecollection once each, whatever the number of items
    const deleted = await registry.request('DELETE', `${FLUNDERS}/warned`);
    expect(deleted.status).toBe(200);
    expect(deleted.headers.warning).toBe('299 - "mutating says hi", 299 - "validating says \\"careful\\""');
    for (const name of ['warned-1', 'warned-2']) expect((await registry.post(FLUNDERS, flunder(name, {}, { labels: { batch: 'warned' } }))).status).toBe(201);
    const collection = await registry.request('DELETE', `${FLUNDERS}?labelSelector=batch%3Dwarned`);
    expect(collection.status).toBe(200);
    expect((collection.body as { items: unknown[] }).items).toHaveLength(2);
    expect(collection.headers.warning).toBe('299 - "mutating says hi", 299 - "validating says \\"careful\\""');
  });

  test('fails a dry run to a webhook with side effects (400, as upstream words it); sideEffects None is called with dryRun true', async () => {
    await configure('Mutating', 'a', [hook('effects.example.com', '/effects', { sideEffects: 'Some' })]);
    const refused = await registry.post(`${FLUNDERS}?dryRun=All`, flunder('dry'));
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ reason: 'BadRequest', message: 'admission webhook "effects.example.com" does not support dry run' });
    expect(hooks.calls('/effects')).toHaveLength(0);
    // A real write still calls it.
    expect((await registry.post(FLUNDERS, flunder('wet'))).status).toBe(201);
    expect(hooks.calls('/effects')).toHaveLength(1);

    await configure('Mutating', 'a', [hook('effects.example.com', '/effects', { sideEffects: 'None' })]);
    expect((await registry.post(`${FLUNDERS}?dryRun=All`, flunder('dry'))).status).toBe(201);
    expect(hooks.calls('/effects').at(-1)).toMatchObject({ dryRun: true, options: { dryRun: ['All'] } });
    expect((await registry.get(`${FLUNDERS}/dry`)).status).toBe(404);
  });

  test('a webhook for v1alpha1 mutates a v1beta1 write (Equivalent), converted both ways', async () => {
    hooks.on('/alpha', () => ({ allowed: true, patch: [{ op: 'add', path: '/spec/reference', value: 'from-alpha' }] }));
    await configure('Mutating', 'a', [hook('alpha.example.com', '/alpha')]);
    const reply = await registry.post(FLUNDERS_BETA, { apiVersion: 'wardle.example.com/v1beta1', kind: 'Flunder', metadata: { name: 'beta-write' }, spec: { referenceType: 'Flunder', flunderReference: 'original' } });
    expect(reply.status).toBe(201);
    expect(reply.body).toMatchObject({ apiVersion: 'wardle.example.com/v1beta1', spec: { flunderReference: 'from-alpha' } });
    expect(hooks.calls('/alpha')[0]).toMatchObject({ kind: { version: 'v1alpha1' }, requestKind: { version: 'v1beta1' } });
  });
});

describe('audit annotations', () => {
  /** The annotations admission added to the registry's last request. */
  const lastAnnotations = () => Object.fromEntries(registry.auditAnnotations.at(-1)!.entries());

  test("a webhook's auditAnnotations are recorded as <webhook>/<key>; a key that is not a qualified name is left out", async () => {
    hooks.on('/annotate', (request) => ({ allowed: true, rawResponse: { uid: request.uid, allowed: true, auditAnnotations: { decision: 'checked', 'Not A Key!': 'dropped', empty: null } } }));
    await configure('Validating', 'a', [hook('annotate.example.com', '/annotate')]);
    expect((await registry.post(FLUNDERS, flunder('annotated'))).status).toBe(201);
    // null decodes as Go decodes it into a string: empty
    expect(lastAnnotations()).toEqual({ 'annotate.example.com/decision': 'checked', 'annotate.example.com/empty': '' });
  });

  test('fails the call of a webhook whose auditAnnotations are not strings (the answer does not decode)', async () => {
    hooks.on('/bad-annotations', (request) => ({ allowed: true, rawResponse: { uid: request.uid, allowed: true, auditAnnotations: { count: 3 } } }));
    await configure('Validating', 'a', [hook('bad.example.com', '/bad-annotations')]);
    const reply = await registry.post(FLUNDERS, flunder('badly-annotated'));
    expect(reply.status).toBe(500);
    expect(reply.body.message).toBe(
      'Internal error occurred: failed calling webhook "bad.example.com": json: cannot unmarshal number into Go struct field AdmissionResponse.response.auditAnnotations of type string',
    );
  });

  test('every mutating webhook called is recorded with its round, its place among all mutating webhooks and whether it mutated', async () => {
    // GIVEN two mutating webhooks; only the second matches flunder writes and it patches, reinvocation on
    hooks.on('/patcher', () => ({ allowed: true, patch: [{ op: 'add', path: '/metadata/labels', value: { patched: 'yes' } }] }));
    await configure('Mutating', 'a', [
      { ...hook('elsewhere.example.com', '/elsewhere'), rules: [{ operations: ['CREATE'], apiGroups: ['other.example.com'], apiVersions: ['*'], resources: ['*'] }] },
      hook('patcher.example.com', '/patcher'),
    ]);
    // WHEN a flunder is created
    expect((await registry.post(FLUNDERS, flunder('mutation-recorded'))).status).toBe(201);
    // THEN upstream's mutation annotation for index 1 (the first webhook was not called)
    expect(lastAnnotations()).toEqual({ 'mutation.webhook.admission.k8s.io/round_0_index_1': '{"configuration":"a","webhook":"patcher.example.com","mutated":true}' });
  });

  test('a webhook that fails open under failurePolicy Ignore is recorded (validating and mutating)', async () => {
    // GIVEN webhooks that time out, failing open
    hooks.on('/hang', () => 'hang');
    await configure('Validating', 'a', [hook('slow-v.example.com', '/hang', { timeoutSeconds: 1, failurePolicy: 'Ignore' })]);
    await configure('Mutating', 'b', [hook('slow-m.example.com', '/hang', { timeoutSeconds: 1, failurePolicy: 'Ignore' })]);
    // WHEN a flunder is created THEN it is, and both failures are recorded
    expect((await registry.post(FLUNDERS, flunder('failed-open'))).status).toBe(201);
    expect(lastAnnotations()).toEqual({
      'failed-open.mutation.webhook.admission.k8s.io/round_0_index_0': 'slow-m.example.com',
      'mutation.webhook.admission.k8s.io/round_0_index_0': '{"configuration":"b","webhook":"slow-m.example.com","mutated":false}',
      'failed-open.validating.webhook.admission.k8s.io/round_0_index_0': 'slow-v.example.com',
    });
  });
});

describe('scale subresource', () => {
  const widgetHook = (name: string, path: string, resources: string[]): WebhookSpec => ({
    ...hook(name, path),
    rules: [{ operations: ['UPDATE'], apiGroups: ['scale.example.com'], apiVersions: ['v1'], resources }],
  });

  test('webhooks for widgets/scale get autoscaling/v1 Scale reviews and may patch the Scale; webhooks for widgets are not called', async () => {
    // GIVEN a registry of widgets behind the webhook plugins, and a widget with 1 replica
    const plugins = webhookAdmission({ api: SCALABLE, rules: {}, mutating, validating, namespaces, resolveService: () => ({ host: '127.0.0.1', port: hooks.port }) });
    const widgets = await RegistryServer.start({ api: SCALABLE, rules: {}, admission: [plugins.mutating, plugins.validating] });
    try {
      expect((await widgets.post(WIDGETS, { apiVersion: 'scale.example.com/v1', kind: 'Widget', metadata: { name: 'w1' }, spec: { replicas: 1 } })).status).toBe(201);
      hooks.on('/cap', () => ({ allowed: true, patch: [{ op: 'replace', path: '/spec/replicas', value: 4 }] }));
      await configure('Mutating', 'a', [widgetHook('cap.example.com', '/cap', ['widgets/scale'])]);
      await configure('Validating', 'b', [widgetHook('check.example.com', '/check', ['widgets/scale']), widgetHook('main.example.com', '/main', ['widgets'])]);

      // WHEN the scale is set to 9
      const reply = await widgets.put(`${WIDGETS}/w1/scale`, { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'w1' }, spec: { replicas: 9 } });

      // THEN the mutating webhook's 4 is stored and answered; both scale webhooks got Scale reviews; the main resource's webhook was not called
      expect(reply.status).toBe(200);
      expect(reply.body.spec).toEqual({ replicas: 4 });
      expect((await widgets.get(`${WIDGETS}/w1`)).body.spec.replicas).toBe(4);
      const [mutated] = hooks.calls('/cap');
      const [checked] = hooks.calls('/check');
      for (const review of [mutated, checked]) {
        expect(review).toMatchObject({
          kind: { group: 'autoscaling', version: 'v1', kind: 'Scale' },
          resource: { group: 'scale.example.com', version: 'v1', resource: 'widgets' },
          subResource: 'scale',
          requestKind: { group: 'autoscaling', version: 'v1', kind: 'Scale' },
          requestResource: { group: 'scale.example.com', version: 'v1', resource: 'widgets' },
          requestSubResource: 'scale',
          name: 'w1',
          namespace: 'ns1',
          operation: 'UPDATE',
          oldObject: { apiVersion: 'autoscaling/v1', kind: 'Scale', spec: { replicas: 1 } },
        });
      }
      expect(mutated.object).toMatchObject({ apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'w1' }, spec: { replicas: 9 } });
      expect(checked.object).toMatchObject({ apiVersion: 'autoscaling/v1', kind: 'Scale', spec: { replicas: 4 } });
      expect(hooks.calls('/main')).toHaveLength(0);
    } finally {
      await widgets.close();
    }
  });
});

describe('readiness', () => {
  test('fails writes with 403 "not yet ready to handle request" until the configurations are listed', async () => {
    // GIVEN a plugin whose configuration source never syncs, with a short wait
    const never = { hasSynced: () => false, webhooks: () => [] };
    const plugins = webhookAdmission({ api: WARDLE, rules: wardleRules, mutating: never, validating: never, namespaces, readyTimeoutMs: 200 });
    const waiting = await RegistryServer.start({ admission: [plugins.mutating, plugins.validating] });
    try {
      const reply = await waiting.post(FLUNDERS, flunder('early'));
      expect(reply.status).toBe(403);
      expect(reply.body.message).toBe('flunders.wardle.example.com "early" is forbidden: not yet ready to handle request');
    } finally {
      await waiting.close();
    }
  });
});
