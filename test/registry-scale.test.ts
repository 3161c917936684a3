import type { AdmissionAttributes, AdmissionPlugin } from '../server/admission/types';
import { errors } from '../server/status';
import { Discovery } from '../server/discovery';
import { OpenApi } from '../server/openapi';
import { RegistryServer } from './support/registry-server';
import { SCALABLE, SCALE_GROUP, WIDGETS } from './support/scalable-api';

/**
 * The scale subresource as apiextensions-apiserver serves a CRD's (pkg/registry/customresource
 * etcd.go ScaleREST): autoscaling/v1 Scale read from and written to the definition's paths.
 */

const GROUP = SCALE_GROUP;

let server: RegistryServer;

beforeEach(async () => {
  server = await RegistryServer.start({ api: SCALABLE, rules: {}, admission: [] });
});

afterEach(async () => {
  await server.close();
});

async function createWidget(name: string, spec: Record<string, unknown>): Promise<void> {
  const reply = await server.post(WIDGETS, { apiVersion: `${GROUP}/v1`, kind: 'Widget', metadata: { name }, spec });
  expect(reply.status).toBe(201);
}

describe('scale subresource', () => {
  test('GET answers the autoscaling/v1 Scale read from the paths', async () => {
    // GIVEN a widget with 3 replicas and a status the controller wrote
    await createWidget('w1', { replicas: 3 });
    const current = await server.get(`${WIDGETS}/w1`);
    const status = await server.put(`${WIDGETS}/w1/status`, { ...current.body, status: { replicas: 2, selector: 'app=w1' } });
    expect(status.status).toBe(200);

    // WHEN the scale is read
    const reply = await server.get(`${WIDGETS}/w1/scale`);

    // THEN a Scale with the object's identity, spec and status replicas and the selector
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({
      kind: 'Scale',
      apiVersion: 'autoscaling/v1',
      metadata: { name: 'w1', namespace: 'ns1', uid: current.body.metadata.uid, resourceVersion: status.body.metadata.resourceVersion, creationTimestamp: current.body.metadata.creationTimestamp },
      spec: { replicas: 3 },
      status: { replicas: 2, selector: 'app=w1' },
    });
  });

  test('PUT of a Scale changes spec replicas on the object and bumps its generation', async () => {
    // GIVEN a widget with 1 replica
    await createWidget('w2', { replicas: 1 });
    const scale = (await server.get(`${WIDGETS}/w2/scale`)).body;

    // WHEN a Scale with 5 replicas is put
    const reply = await server.put(`${WIDGETS}/w2/scale`, { ...scale, spec: { replicas: 5 } });

    // THEN the answer is the new Scale and the object says 5
    expect(reply.status).toBe(200);
    expect(reply.body.spec).toEqual({ replicas: 5 });
    const object = (await server.get(`${WIDGETS}/w2`)).body;
    expect(object.spec.replicas).toBe(5);
    expect(object.metadata.generation).toBe(2);
    expect(reply.body.metadata.resourceVersion).toBe(object.metadata.resourceVersion);
  });

  test('PATCH (merge, strategic merge as kubectl scale may send, JSON patch) of the Scale', async () => {
    // GIVEN a widget with 1 replica
    await createWidget('w3', { replicas: 1 });

    // WHEN patched three ways
    const merge = await server.patch(`${WIDGETS}/w3/scale`, { spec: { replicas: 4 } });
    const strategic = await server.patch(`${WIDGETS}/w3/scale`, { spec: { replicas: 6 } }, 'application/strategic-merge-patch+json');
    const json = await server.patch(`${WIDGETS}/w3/scale`, [{ op: 'replace', path: '/spec/replicas', value: 0 }], 'application/json-patch+json');

    // THEN each lands on the object (0 leaves spec.replicas out of the Scale, as int32 omitempty)
    expect([merge.status, strategic.status, json.status]).toEqual([200, 200, 200]);
    expect(merge.body.spec.replicas).toBe(4);
    expect(strategic.body.spec.replicas).toBe(6);
    expect(json.body.spec).toEqual({});
    expect((await server.get(`${WIDGETS}/w3`)).body.spec.replicas).toBe(0);
  });

  test('fails a PUT with a stale resourceVersion: 409 Conflict on the kind', async () => {
    // GIVEN a Scale read, then the object changed
    await createWidget('w4', { replicas: 1 });
    const scale = (await server.get(`${WIDGETS}/w4/scale`)).body;
    expect((await server.patch(`${WIDGETS}/w4/scale`, { spec: { replicas: 2 } })).status).toBe(200);

    // WHEN the old Scale is put back
    const reply = await server.put(`${WIDGETS}/w4/scale`, { ...scale, spec: { replicas: 9 } });

    // THEN 409, and the object keeps 2
    expect(reply.status).toBe(409);
    expect(reply.body).toMatchObject({ reason: 'Conflict', details: { name: 'w4', group: GROUP, kind: 'widgets' } });
    expect(reply.body.message).toBe('Operation cannot be fulfilled on widgets.scale.example.com "w4": the object has been modified; please apply your changes to the latest version and try again');
    expect((await server.get(`${WIDGETS}/w4`)).body.spec.replicas).toBe(2);
  });

  test('fails a negative replica count with 422 naming the spec replicas path', async () => {
    // GIVEN a widget
    await createWidget('w5', { replicas: 1 });

    // WHEN scaled to -1
    const reply = await server.patch(`${WIDGETS}/w5/scale`, { spec: { replicas: -1 } });

    // THEN 422 on the kind, the field the definition's JSONPath
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes).toEqual([{ reason: 'FieldValueInvalid', field: '.spec.replicas', message: 'Invalid value: -1: should be a non-negative integer' }]);
  });

  test('fails a create or update of the object itself whose replicas break the scale rules (ValidateScaleSpec/Status)', async () => {
    // GIVEN no widget WHEN one is created with -1 replicas, and one beyond int32
    const negative = await server.post(WIDGETS, { metadata: { name: 'neg' }, spec: { replicas: -1 } });
    const huge = await server.post(WIDGETS, { metadata: { name: 'huge' }, spec: { replicas: 2147483648 } });
    // THEN 422 naming the path, as kube-apiserver validates a CR with a scale subresource
    expect(negative.status).toBe(422);
    expect(negative.body.details.causes).toEqual([{ reason: 'FieldValueInvalid', field: '.spec.replicas', message: 'Invalid value: -1: should be a non-negative integer' }]);
    expect(huge.status).toBe(422);
    expect(huge.body.details.causes[0].message).toBe('Invalid value: 2147483648: should be less than or equal to 2147483647');
  });

  test('fails a GET when the spec replicas field is missing (500, as upstream) and a scale PATCH that leaves it empty (400)', async () => {
    // GIVEN a widget without spec.replicas
    await createWidget('w6', {});

    // WHEN its scale is read, and patched without replicas
    const read = await server.get(`${WIDGETS}/w6/scale`);
    const patched = await server.patch(`${WIDGETS}/w6/scale`, { metadata: { labels: { a: 'b' } } });

    // THEN upstream's errors
    expect(read.status).toBe(500);
    expect(read.body.message).toBe('Internal error occurred: the spec replicas field ".spec.replicas" does not exist');
    expect(patched.status).toBe(400);
    expect(patched.body.message).toBe('the spec replicas field ".spec.replicas" cannot be empty');
    // …while a PUT sets it from nothing, a null apiVersion and kind read as empty (Go's JSON decoding)
    expect((await server.put(`${WIDGETS}/w6/scale`, { apiVersion: null, kind: null, metadata: { name: 'w6' }, spec: { replicas: 2 } })).status).toBe(200);
  });

  test('fails a Scale of another kind or name with 400', async () => {
    // GIVEN a widget
    await createWidget('w7', { replicas: 1 });

    // WHEN a Deployment or a Scale named otherwise is put
    const wrongKind = await server.put(`${WIDGETS}/w7/scale`, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'w7' }, spec: { replicas: 2 } });
    const wrongName = await server.put(`${WIDGETS}/w7/scale`, { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'other' }, spec: { replicas: 2 } });
    const objectKind = await server.put(`${WIDGETS}/w7/scale`, { apiVersion: 'autoscaling/v1', kind: { toString: '' }, metadata: { name: 'w7' }, spec: { replicas: 2 } });

    // THEN 400 naming what does not match
    expect(wrongKind.status).toBe(400);
    expect(wrongKind.body.message).toBe('the API version in the data (apps/v1) does not match the expected API version (autoscaling/v1)');
    expect(wrongName.status).toBe(400);
    expect(wrongName.body.message).toBe('the name of the object (other) does not match the name on the URL (w7)');
    expect(objectKind.status).toBe(400);
    expect(objectKind.body.message).toBe("couldn't get version/kind; json parse error: json: cannot unmarshal object into Go struct field .kind of type string");
  });

  test("a scale write records the writer's Update entry (subresource scale, owning .spec.replicas), taken from the creator", async () => {
    // GIVEN a widget created by one manager
    await server.request('POST', `${WIDGETS}?fieldManager=creator`, { raw: JSON.stringify({ apiVersion: `${GROUP}/v1`, kind: 'Widget', metadata: { name: 'wm' }, spec: { replicas: 1, selector: 'x' } }) });
    // WHEN another scales it
    expect((await server.request('PATCH', `${WIDGETS}/wm/scale?fieldManager=scaler`, { raw: '{"spec":{"replicas":3}}', contentType: 'application/merge-patch+json' })).status).toBe(200);
    // THEN as upstream's ScaleHandler leaves the parent's managedFields
    const entries = (await server.get(`${WIDGETS}/wm`)).body.metadata.managedFields as Record<string, unknown>[];
    expect(entries.map(({ time: _time, ...entry }) => entry)).toEqual([
      { manager: 'creator', operation: 'Update', apiVersion: `${GROUP}/v1`, fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { '.': {}, 'f:selector': {} } } },
      { manager: 'scaler', operation: 'Update', apiVersion: `${GROUP}/v1`, fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:replicas': {} } }, subresource: 'scale' },
    ]);
  });

  test('fails a server-side apply of the Scale with 415 naming the patch types scale accepts', async () => {
    // GIVEN a widget WHEN an apply patch is sent to its scale
    await createWidget('w9', { replicas: 1 });
    const reply = await server.request('PATCH', `${WIDGETS}/w9/scale?fieldManager=me`, { raw: 'spec:\n  replicas: 2\n', contentType: 'application/apply-patch+yaml' });
    // THEN 415, and nothing changed
    expect(reply.status).toBe(415);
    expect(reply.body.message).toBe('the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json');
    expect((await server.get(`${WIDGETS}/w9`)).body.spec.replicas).toBe(1);
  });

  test('fails with 404 for a kind that has no scale subresource, and 405 for verbs scale does not serve', async () => {
    // GIVEN a plain object and a widget
    expect((await server.post(`/apis/${GROUP}/v1/namespaces/ns1/plains`, { metadata: { name: 'p1' }, spec: { replicas: 1 } })).status).toBe(201);
    await createWidget('w8', { replicas: 1 });

    // WHEN the plain kind's scale is asked for, and a widget's scale deleted
    const missing = await server.get(`/apis/${GROUP}/v1/namespaces/ns1/plains/p1/scale`);
    const deleted = await server.delete(`${WIDGETS}/w8/scale`);

    // THEN 404 and 405
    expect(missing.status).toBe(404);
    expect(deleted.status).toBe(405);
    expect((await server.get(`${WIDGETS}/missing/scale`)).status).toBe(404);
  });
});

describe('admission of scale writes', () => {
  /** What a plugin saw: the attributes of each phase, objects copied. */
  interface Seen {
    readonly phase: 'admit' | 'validate';
    readonly attributes: Omit<AdmissionAttributes, 'user' | 'warnings'>;
  }

  /** A registry on SCALABLE with one plugin that records what it sees and may change the Scale. */
  async function withPlugin(mutate?: (scale: Record<string, unknown>) => void, refuse?: (scale: Record<string, unknown>) => boolean): Promise<Seen[]> {
    const seen: Seen[] = [];
    const record = (phase: Seen['phase'], { user: _user, warnings: _warnings, ...attributes }: AdmissionAttributes) => seen.push({ phase, attributes: structuredClone(attributes) });
    const plugin: AdmissionPlugin = {
      name: 'ScaleWatcher',
      operations: ['CREATE', 'UPDATE', 'DELETE'],
      admit: async (attributes) => {
        record('admit', attributes);
        if (attributes.subresource === 'scale' && attributes.object) mutate?.(attributes.object);
      },
      validate: async (attributes) => {
        record('validate', attributes);
        if (attributes.subresource === 'scale' && attributes.object && refuse?.(attributes.object)) throw errors.forbiddenByAdmission({ group: GROUP, resource: 'widgets' }, 'w', 'too many replicas');
      },
    };
    await server.close();
    server = await RegistryServer.start({ api: SCALABLE, rules: {}, admission: [plugin] });
    return seen;
  }

  test('plugins see autoscaling/v1 Scales, new and old, with subresource scale, as ScaleREST shows them', async () => {
    // GIVEN a widget with 1 replica
    const seen = await withPlugin();
    await createWidget('w1', { replicas: 1 });
    seen.length = 0;

    // WHEN its scale is set to 3
    const reply = await server.put(`${WIDGETS}/w1/scale`, { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'w1' }, spec: { replicas: 3 } });

    // THEN both phases saw the Scale of the new object and of the stored one, named as kind autoscaling/v1 Scale
    expect(reply.status).toBe(200);
    expect(seen.map((s) => s.phase)).toEqual(['admit', 'validate']);
    for (const { attributes } of seen) {
      expect(attributes).toMatchObject({ operation: 'UPDATE', group: GROUP, version: 'v1', resource: 'widgets', subresource: 'scale', namespace: 'ns1', name: 'w1' });
      expect(attributes.objectKind).toEqual({ group: 'autoscaling', version: 'v1', kind: 'Scale' });
      expect(attributes.object).toMatchObject({ apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'w1', namespace: 'ns1' }, spec: { replicas: 3 }, status: { replicas: 0 } });
      expect(attributes.oldObject).toMatchObject({ apiVersion: 'autoscaling/v1', kind: 'Scale', spec: { replicas: 1 } });
      expect(attributes.object).not.toHaveProperty('metadata.managedFields');
    }
  });

  test('what mutating admission changes in the Scale is written to the object; validating admission sees the result and may refuse it', async () => {
    // GIVEN a plugin that caps replicas at 5 and refuses more than 4 (a cap its mutation breaks)
    const seen = await withPlugin(
      (scale) => {
        const spec = scale.spec as { replicas?: number };
        if ((spec.replicas ?? 0) > 5) spec.replicas = 5;
      },
      (scale) => ((scale.spec as { replicas?: number }).replicas ?? 0) > 4 && (scale.metadata as { name: string }).name === 'w3',
    );
    await createWidget('w2', { replicas: 1 });
    await createWidget('w3', { replicas: 1 });
    const generation = (await server.get(`${WIDGETS}/w2`)).body.metadata.generation as number;
    seen.length = 0;

    // WHEN 9 replicas are asked for, through PUT and through a merge patch
    const capped = await server.put(`${WIDGETS}/w2/scale`, { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'w2' }, spec: { replicas: 9 } });
    const refused = await server.request('PATCH', `${WIDGETS}/w3/scale`, { raw: '{"spec":{"replicas":9}}', contentType: 'application/merge-patch+json' });

    // THEN the first stores 5 (generation bumped once) and answers it; validation saw 5; the second is refused and nothing changed
    expect(capped.status).toBe(200);
    expect(capped.body.spec).toEqual({ replicas: 5 });
    const stored = (await server.get(`${WIDGETS}/w2`)).body;
    expect(stored.spec.replicas).toBe(5);
    expect(stored.metadata.generation).toBe(generation + 1);
    expect(seen.find((s) => s.phase === 'validate' && s.attributes.name === 'w2')?.attributes.object).toMatchObject({ spec: { replicas: 5 } });
    expect(refused.status).toBe(403);
    expect(refused.body.message).toMatch(/too many replicas/);
    expect((await server.get(`${WIDGETS}/w3`)).body.spec.replicas).toBe(1);
  });

  test('fails with 422 a Scale that mutating admission made invalid, as a client\'s', async () => {
    // GIVEN a plugin that sets replicas to -1
    await withPlugin((scale) => {
      (scale.spec as { replicas?: number }).replicas = -1;
    });
    await createWidget('w4', { replicas: 1 });

    // WHEN the scale is written
    const reply = await server.put(`${WIDGETS}/w4/scale`, { apiVersion: 'autoscaling/v1', kind: 'Scale', metadata: { name: 'w4' }, spec: { replicas: 2 } });

    // THEN 422 naming the spec replicas path, and the object kept its replicas
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes).toEqual([expect.objectContaining({ field: '.spec.replicas', message: expect.stringMatching(/should be a non-negative integer/) })]);
    expect((await server.get(`${WIDGETS}/w4`)).body.spec.replicas).toBe(1);
  });

  test('writes of the object itself are admitted as the object, without objectKind', async () => {
    const seen = await withPlugin();
    await createWidget('w5', { replicas: 1 });
    expect(seen.every((s) => s.attributes.objectKind === undefined && s.attributes.subresource === '' && (s.attributes.object as { kind?: string }).kind === 'Widget')).toBe(true);
  });
});

describe('scale in discovery and OpenAPI', () => {
  const written = (doc: Discovery, path: string, accept = 'application/json'): Record<string, unknown> => {
    let body: Buffer = Buffer.alloc(0);
    const res = { statusCode: 0, setHeader: () => undefined, end: (b?: Buffer) => (body = b ?? body) };
    doc.serve({ headers: { accept }, method: 'GET' } as never, res as never, path);
    return JSON.parse(body.toString()) as Record<string, unknown>;
  };

  test('the resource list names widgets/scale as autoscaling/v1 Scale with get, patch, update; plains have none', () => {
    // GIVEN the discovery of the group WHEN the version's resources are read
    const list = written(new Discovery(SCALABLE), `/apis/${GROUP}/v1`) as { resources: { name: string }[] };
    // THEN as kube-apiserver lists a CRD's scale subresource
    expect(list.resources.find((r) => r.name === 'widgets/scale')).toEqual({ name: 'widgets/scale', singularName: '', namespaced: true, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
    expect(list.resources.map((r) => r.name)).toEqual(['widgets', 'widgets/status', 'widgets/scale', 'plains']);
  });

  test('aggregated discovery lists the scale subresource with its response kind', () => {
    // GIVEN aggregated discovery v2 WHEN read
    const doc = written(new Discovery(SCALABLE), '/apis', 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList') as {
      items: { versions: { resources: { resource: string; subresources?: unknown[] }[] }[] }[];
    };
    // THEN status and scale, scale answering autoscaling/v1 Scale
    const widgets = doc.items[0].versions[0].resources.find((r) => r.resource === 'widgets')!;
    expect(widgets.subresources).toEqual([
      { subresource: 'status', responseKind: { group: GROUP, version: 'v1', kind: 'Widget' }, verbs: ['get', 'patch', 'update'] },
      { subresource: 'scale', responseKind: { group: 'autoscaling', version: 'v1', kind: 'Scale' }, verbs: ['get', 'patch', 'update'] },
    ]);
  });

  test('OpenAPI v3 has the scale path, its operations and the Scale definitions', () => {
    // GIVEN the OpenAPI of the group WHEN the v1 document is read
    let body: Buffer = Buffer.alloc(0);
    const res = { statusCode: 0, setHeader: () => undefined, end: (b?: Buffer) => (body = b ?? body) };
    new OpenApi(SCALABLE).serve({ headers: { accept: 'application/json' }, method: 'GET', url: '/openapi/v3/apis/scale.example.com/v1' } as never, res as never, `/openapi/v3/apis/${GROUP}/v1`);
    const doc = JSON.parse(body.toString()) as { paths: Record<string, Record<string, { operationId: string }>>; components: { schemas: Record<string, unknown> } };
    // THEN as apiextensions' builder: read/replace/patch …Scale, autoscaling/v1 Scale bodies
    const path = doc.paths[`/apis/${GROUP}/v1/namespaces/{namespace}/widgets/{name}/scale`];
    expect(Object.keys(path).filter((k) => k !== 'parameters').sort()).toEqual(['get', 'patch', 'put']);
    expect(path.get.operationId).toBe('readScaleExampleComV1NamespacedWidgetScale');
    // the patch types scale accepts (no apply-patch: 415 there)
    expect(Object.keys((path.patch as unknown as { requestBody: { content: Record<string, unknown> } }).requestBody.content)).toEqual(['application/json-patch+json', 'application/merge-patch+json', 'application/strategic-merge-patch+json']);
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['io.k8s.api.autoscaling.v1.Scale', 'io.k8s.api.autoscaling.v1.ScaleSpec', 'io.k8s.api.autoscaling.v1.ScaleStatus']));
    expect(doc.paths[`/apis/${GROUP}/v1/namespaces/{namespace}/plains/{name}/scale`]).toBeUndefined();
  });
});
