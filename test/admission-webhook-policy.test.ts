/**
 * ValidatingAdmissionPolicy through the registry over HTTP: policies and bindings watched from
 * the kube-apiserver stand-in by the server's KubeClient, their CEL validations run on writes.
 */
import pino from 'pino';
import { WARDLE } from '../apis/wardle';
import { validatingAdmissionPolicy, WatchedPolicies } from '../server/admission/webhook';
import { KubeNamespaceLister } from '../server/admission/namespace-lifecycle';
import { createKubeClient, type KubeClient } from '../server/kube-client';
import { wardleAdmission, wardleRules } from '../server/registry/wardle';
import { KubeApiServerStandIn } from './support/kube-apiserver-stand-in';
import { FLUNDERS, RegistryServer, flunder } from './support/registry-server';
import { SCALABLE, WIDGETS } from './support/scalable-api';
import { until } from './support/until';

jest.setTimeout(60_000);

let standIn: KubeApiServerStandIn;
let client: KubeClient;
let policies: WatchedPolicies;
let namespaces: KubeNamespaceLister;
let registry: RegistryServer;

const FLUNDER_RULES = { resourceRules: [{ apiGroups: ['wardle.example.com'], apiVersions: ['v1alpha1'], operations: ['CREATE', 'UPDATE'], resources: ['flunders'] }] };

/** Stores a policy and its binding, and waits until the plugin has compiled these very versions of both. */
async function bind(name: string, policySpec: Record<string, unknown>, bindingSpec: Record<string, unknown> = {}): Promise<void> {
  const policy = standIn.put({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name }, spec: { matchConstraints: FLUNDER_RULES, ...policySpec } });
  const binding = standIn.put({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicyBinding',
    metadata: { name: `${name}-binding` },
    spec: { policyName: name, validationActions: ['Deny'], ...bindingSpec },
  });
  await until(() => {
    const compiled = policies.policies().find((p) => p.name === name);
    return compiled !== undefined && compiled.resourceVersion === policy.metadata.resourceVersion && compiled.bindings[0]?.resourceVersion === binding.metadata.resourceVersion;
  }, `policy ${name} and its binding`);
}

beforeAll(async () => {
  standIn = await KubeApiServerStandIn.start();
  standIn.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns1', labels: { env: 'prod' } } });
  standIn.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns2', labels: { env: 'dev' } } });
  client = createKubeClient({ server: standIn.url, caPem: standIn.ca.certPem, token: standIn.adminToken });
  const logger = pino({ level: 'silent' });
  policies = new WatchedPolicies(client, logger);
  namespaces = new KubeNamespaceLister(client, logger);
  registry = await RegistryServer.start({ admission: [...wardleAdmission(), validatingAdmissionPolicy({ api: WARDLE, rules: wardleRules, policies, namespaces })] });
});

afterEach(async () => {
  for (const kind of ['ValidatingAdmissionPolicyBinding', 'ValidatingAdmissionPolicy']) {
    for (const name of ['p', 'p-binding']) if (standIn.find(kind, name)) standIn.remove(kind, name);
  }
  await until(() => policies.policies().length === 0, 'policies removed');
});

afterAll(async () => {
  await registry?.close();
  policies?.close();
  namespaces?.close();
  client?.close();
  await standIn?.close();
});

describe('ValidatingAdmissionPolicy', () => {
  test('fails a create a validation refuses: 422 Invalid worded as upstream, with the cause', async () => {
    // GIVEN a policy that wants a reference
    await bind('p', { validations: [{ expression: "has(object.spec.reference) && object.spec.reference != ''", message: 'a flunder needs a reference' }] });
    // WHEN a flunder without one is created
    const refused = await registry.post(FLUNDERS, flunder('no-ref'));
    // THEN
    expect(refused.status).toBe(422);
    const message = "ValidatingAdmissionPolicy 'p' with binding 'p-binding' denied request: a flunder needs a reference";
    expect(refused.body).toMatchObject({
      reason: 'Invalid',
      code: 422,
      message: `flunders.wardle.example.com "no-ref" is forbidden: ${message}`,
      details: { name: 'no-ref', group: 'wardle.example.com', kind: 'flunders', causes: [{ message }] },
    });
    expect((await registry.post(FLUNDERS, flunder('with-ref', { reference: 'x' }))).status).toBe(201);
  });

  test('messageExpression, reason, variables, request and namespaceObject', async () => {
    await bind('p', {
      variables: [{ name: 'prod', expression: "namespaceObject.metadata.labels.env == 'prod'" }],
      validations: [
        {
          expression: "!variables.prod || object.metadata.name.startsWith('prod-')",
          messageExpression: "'in ' + request.namespace + ' names start with prod-, not ' + object.metadata.name",
          reason: 'Forbidden',
        },
      ],
    });
    const refused = await registry.post(FLUNDERS, flunder('casual'));
    expect(refused.status).toBe(403);
    expect(refused.body.reason).toBe('Forbidden');
    expect(refused.body.message).toBe("flunders.wardle.example.com \"casual\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'p-binding' denied request: in ns1 names start with prod-, not casual");
    expect((await registry.post(FLUNDERS, flunder('prod-ok'))).status).toBe(201);
    expect((await registry.post(FLUNDERS.replace('/ns1/', '/ns2/'), flunder('casual'))).status).toBe(201);
  });

  test('transition rules with oldObject; the default message names the expression', async () => {
    await bind('p', { validations: [{ expression: 'oldObject == null || object.spec.reference == oldObject.spec.reference' }] });
    expect((await registry.post(FLUNDERS, flunder('fixed', { reference: 'a' }))).status).toBe(201);
    const refused = await registry.patch(`${FLUNDERS}/fixed`, { spec: { reference: 'b' } });
    expect(refused.status).toBe(422);
    expect(refused.body.message).toMatch(/denied request: failed expression: oldObject == null \|\| object\.spec\.reference == oldObject\.spec\.reference$/);
  });

  test('validationActions Warn answers with a Warning header and lets the write through', async () => {
    await bind('p', { validations: [{ expression: 'false', message: 'just so you know' }] }, { validationActions: ['Warn', 'Audit'] });
    const created = await registry.post(FLUNDERS, flunder('warned'));
    expect(created.status).toBe(201);
    expect(created.headers.warning).toBe(`299 - "Validation failed for ValidatingAdmissionPolicy 'p' with binding 'p-binding': just so you know"`);
  });

  test('matchConditions decide whether a policy applies', async () => {
    await bind('p', { matchConditions: [{ name: 'not-exempt', expression: "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)" }], validations: [{ expression: 'false' }] });
    expect((await registry.post(FLUNDERS, flunder('exempted', {}, { labels: { exempt: 'yes' } }))).status).toBe(201);
    expect((await registry.post(FLUNDERS, flunder('checked'))).status).toBe(422);
  });

  test('a policy whose constraints or binding do not match does not apply', async () => {
    await bind(
      'p',
      { matchConstraints: { resourceRules: [{ apiGroups: ['wardle.example.com'], apiVersions: ['*'], operations: ['CREATE'], resources: ['flunders'], resourceNames: ['only-this'] }] }, validations: [{ expression: 'false' }] },
      { matchResources: { namespaceSelector: { matchLabels: { env: 'prod' } } } },
    );
    expect((await registry.post(FLUNDERS, flunder('other'))).status).toBe(201);
    expect((await registry.post(FLUNDERS.replace('/ns1/', '/ns2/'), flunder('only-this'))).status).toBe(201);
    expect((await registry.post(FLUNDERS, flunder('only-this'))).status).toBe(422);
  });

  test('fails a write whose expression errors under failurePolicy Fail; Ignore lets it through', async () => {
    await bind('p', { validations: [{ expression: 'object.spec.missing == 1' }] });
    const refused = await registry.post(FLUNDERS, flunder('erring'));
    expect(refused.status).toBe(422);
    expect(refused.body.message).toMatch(/denied request: expression 'object\.spec\.missing == 1' resulted in error: /);
    await bind('p', { failurePolicy: 'Ignore', validations: [{ expression: 'object.spec.missing == 1' }] });
    expect((await registry.post(FLUNDERS, flunder('erring'))).status).toBe(201);
  });

  test('a cluster that does not serve admissionregistration.k8s.io/v1 policies (before 1.30) has none: the source syncs empty', async () => {
    // GIVEN a client whose lists of policies are answered 404, as kube-apiserver 1.28 answers them
    const notServed = {
      request: async () => ({ status: 404, body: {} as never }),
      watch: (_path: string, _onEvent: unknown, options?: { onError?: (error: Error) => void }) => {
        const timer = setTimeout(() => options?.onError?.(Object.assign(new Error('HTTP 404'), { status: 404 })), 10);
        return { stop: () => clearTimeout(timer), done: Promise.resolve() };
      },
    };
    const source = new WatchedPolicies(notServed, pino({ level: 'silent' }));
    try {
      // THEN it counts as listed, with no policy
      await until(() => source.hasSynced(), 'the not-served source to sync');
      expect(source.policies()).toEqual([]);
    } finally {
      source.close();
    }
  });

  test('fails writes under a policy that does not compile (failed to configure binding)', async () => {
    await bind('p', { validations: [{ expression: 'object.spec.(' }] });
    const refused = await registry.post(FLUNDERS, flunder('broken'));
    expect(refused.status).toBe(422);
    expect(refused.body.message).toMatch(/denied request: failed to configure binding: expression 'object\.spec\.\(': compilation failed: /);
  });
});

describe('ValidatingAdmissionPolicy audit annotations', () => {
  const lastAnnotations = () => Object.fromEntries(registry.auditAnnotations.at(-1)!.entries());

  test('a failed validation under the Audit action is recorded as validation_failure, and the write goes through', async () => {
    await bind('p', { validations: [{ expression: 'true' }, { expression: "object.metadata.name != 'audited'", message: 'audited names are noted' }] }, { validationActions: ['Audit'] });
    expect((await registry.post(FLUNDERS, flunder('audited'))).status).toBe(201);
    expect(lastAnnotations()).toEqual({
      'validation.policy.admission.k8s.io/validation_failure': '[{"expressionIndex":1,"message":"audited names are noted","validationActions":["Audit"],"binding":"p-binding","policy":"p"}]',
    });
  });

  test("the policy's auditAnnotations are recorded as <policy>/<key>; a null value is left out; a value of another type fails under failurePolicy Fail", async () => {
    await bind('p', {
      validations: [{ expression: 'true' }],
      auditAnnotations: [
        { key: 'owner', valueExpression: "'team-' + object.metadata.name" },
        { key: 'nothing', valueExpression: 'null' },
      ],
    });
    expect((await registry.post(FLUNDERS, flunder('owned'))).status).toBe(201);
    expect(lastAnnotations()).toEqual({ 'p/owner': 'team-owned' });

    await bind('p', { validations: [{ expression: 'true' }], auditAnnotations: [{ key: 'count', valueExpression: '1' }] });
    const refused = await registry.post(FLUNDERS, flunder('counted'));
    expect(refused.status).toBe(422);
    expect(refused.body.message).toBe(
      "flunders.wardle.example.com \"counted\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'p-binding' denied request: valueExpression '1' resulted in unsupported return type: int. Return type must be either string or null.",
    );

    await bind('p', { validations: [{ expression: 'true' }], auditAnnotations: [{ key: 'labels', valueExpression: "{'a': 'b'}" }] });
    expect((await registry.post(FLUNDERS, flunder('mapped'))).body.message).toContain("valueExpression '{'a': 'b'}' resulted in unsupported return type: map. Return type must be either string or null.");
  });
});

describe('ValidatingAdmissionPolicy on the scale subresource', () => {
  test('a policy for widgets/scale sees autoscaling/v1 Scales (object, oldObject, request.kind) and refuses too many replicas', async () => {
    // GIVEN a kind with a scale subresource served behind the policy plugin, and a widget with 1 replica
    const widgets = await RegistryServer.start({ api: SCALABLE, rules: {}, admission: [validatingAdmissionPolicy({ api: SCALABLE, rules: {}, policies, namespaces })] });
    try {
      expect((await widgets.post(WIDGETS, { apiVersion: 'scale.example.com/v1', kind: 'Widget', metadata: { name: 'w1' }, spec: { replicas: 1 } })).status).toBe(201);
      await bind('p', {
        matchConstraints: { resourceRules: [{ apiGroups: ['scale.example.com'], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['widgets/scale'] }] },
        validations: [
          {
            expression: "request.kind.group == 'autoscaling' && request.kind.kind == 'Scale' && object.kind == 'Scale' && oldObject.kind == 'Scale' && object.spec.replicas <= 5",
            messageExpression: "'at most 5 replicas, not ' + string(object.spec.replicas)",
          },
        ],
      });

      // WHEN the scale is set to 3, then to 9
      const allowed = await widgets.put(`${WIDGETS}/w1/scale`, { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'w1' }, spec: { replicas: 3 } });
      const refused = await widgets.request('PATCH', `${WIDGETS}/w1/scale`, { raw: '{"spec":{"replicas":9}}', contentType: 'application/merge-patch+json' });

      // THEN 3 passes; 9 is refused by the policy, and the widget keeps 3
      expect(allowed.status).toBe(200);
      expect(refused.status).toBe(422);
      expect(refused.body.message).toBe("widgets.scale.example.com \"w1\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'p-binding' denied request: at most 5 replicas, not 9");
      expect((await widgets.get(`${WIDGETS}/w1`)).body.spec.replicas).toBe(3);
    } finally {
      await widgets.close();
    }
  });
});
