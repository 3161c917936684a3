import fc from 'fast-check';
import { decodeApplyPatch, managerOrUserAgent, prefixFromUserAgent, strictApplyWarnings } from '../server/registry/apply';
import { MAX_YAML_BODY_BYTES } from '../server/registry/body';
import { FLUNDERS, FLUNDERS_BETA, RegistryServer, flunder } from './support/registry-server';

/**
 * Server-side apply at the REST layer (server/registry/apply.ts, the store's managedFields):
 * PATCH application/apply-patch+yaml as kube-apiserver's patch handler answers it, and the
 * Update entries every ordinary write records. The merge itself is server/fieldmanager's, tested there.
 */

const APPLY = 'application/apply-patch+yaml';
const GROUP_VERSION = 'wardle.example.com/v1alpha1';
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Entry = { manager: string; operation: string; apiVersion: string; fieldsType: string; fieldsV1: any; time?: string; subresource?: string };

describe('decoding an apply patch', () => {
  test('YAML and JSON bodies decode as go-yaml v2 does: YAML 1.1 booleans and octals, timestamps kept as strings', () => {
    // GIVEN a YAML body using YAML 1.1 scalars; WHEN decoded; THEN they resolve as Go's yaml.Unmarshal resolves them
    const decoded = decodeApplyPatch(Buffer.from('apiVersion: a/v1\nkind: K\nspec:\n  on: yes\n  mode: 0755\n  when: 2024-01-01\n  count: 1_000\n'));
    expect(decoded).toEqual({ object: { apiVersion: 'a/v1', kind: 'K', spec: { true: true, mode: 493, when: '2024-01-01', count: 1000 } }, duplicates: [] });
    // AND a tab-indented JSON body is YAML too
    expect(decodeApplyPatch(Buffer.from('{\n\t"apiVersion": "a/v1",\n\t"spec": {"x": [1, 2]}\n}')).object).toEqual({ apiVersion: 'a/v1', spec: { x: [1, 2] } });
  });

  test('an empty body is an empty object; only the first YAML document is read', () => {
    expect(decodeApplyPatch(Buffer.from('')).object).toEqual({});
    expect(decodeApplyPatch(Buffer.from('a: 1\n---\nb: 2\n')).object).toEqual({ a: 1 });
  });

  test('duplicate keys are listed with their lines, as go-yaml words them', () => {
    // GIVEN the body of upstream's field validation test (crdApplyInvalidBody), keys set twice
    const body = '\n{\n\t"apiVersion": "a/v1",\n\t"kind": "K",\n\t"metadata": {\n\t\t"name": "n"\n\t},\n\t"spec": {\n\t\t"knownField1": "val1",\n\t\t"knownField1": "val2",\n\t\t"ports": [{\n\t\t\t"name": "portName",\n\t\t\t"containerPort": 8080,\n\t\t\t"protocol": "TCP",\n\t\t\t"hostPort": 8081,\n\t\t\t"hostPort": 8082\n\t\t}]\n\t}\n}';
    // WHEN decoded
    const decoded = decodeApplyPatch(Buffer.from(body));
    // THEN the last value wins and the duplicates are named by line, as in upstream's expectations
    expect(decoded.object.spec).toEqual({ knownField1: 'val2', ports: [{ name: 'portName', containerPort: 8080, protocol: 'TCP', hostPort: 8082 }] });
    expect(decoded.duplicates).toEqual(['line 10: key "knownField1" already set in map', 'line 16: key "hostPort" already set in map']);
    // AND Warn makes them warnings, Ignore says nothing, Strict fails with upstream's message
    expect(strictApplyWarnings(decoded, 'Warn')).toEqual(decoded.duplicates);
    expect(strictApplyWarnings(decoded, 'Ignore')).toEqual([]);
    expect(() => strictApplyWarnings(decoded, 'Strict')).toThrow(
      'error strict decoding patch: error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n  line 10: key "knownField1" already set in map\n  line 16: key "hostPort" already set in map',
    );
  });

  test('fails with 400 for a body nested deeper than 1,000 levels, before the YAML parser recurses into it', () => {
    // GIVEN bodies nested up to 100,000 levels deep, within the YAML size limit (flow collections, unclosed; sequence entries on one line)
    for (const body of [`a: ${'['.repeat(100_000)}`, '- '.repeat(100_000), `{"a": ${'{"b": '.repeat(40_000)}`]) {
      // WHEN decoded; THEN refused by depth, not by the parser's stack (which took seconds to overflow)
      expect(() => decodeApplyPatch(Buffer.from(body))).toThrow('the body of the request is nested deeper than 1000 levels (exceeded max depth)');
    }
    // AND brackets in quoted scalars and comments do not count
    expect(decodeApplyPatch(Buffer.from(`a: "${'['.repeat(2000)}"\nb: '${'{'.repeat(2000)}' # ${'['.repeat(2000)}\n`)).object).toEqual({ a: '['.repeat(2000), b: '{'.repeat(2000) });
  });

  test('a JSON body with duplicate keys in nested objects and lists: the last value wins, each duplicate named by line', () => {
    const decoded = decodeApplyPatch(Buffer.from('{"a": 1,\n "l": [{"k": 1, "k": 2}, "k"],\n "a": {"x": "\\"a\\"", "x": 3}}'));
    expect(decoded.object).toEqual({ a: { x: 3 }, l: [{ k: 2 }, 'k'] });
    expect(decoded.duplicates).toEqual(['line 2: key "k" already set in map', 'line 3: key "a" already set in map', 'line 3: key "x" already set in map']);
  });

  test.each([
    ['a list', '[1, 2]', 'error decoding patch: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type map[string]interface {}'],
    ['a string', 'hello', 'error decoding patch: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go value of type map[string]interface {}'],
    ['broken YAML', 'a: b: c', 'error decoding patch: error converting YAML to JSON: yaml: line 1: '],
  ])('fails with 400 for %s', (_what, body, message) => {
    expect(() => decodeApplyPatch(Buffer.from(body))).toThrow(message);
  });
});

describe('decoding an apply patch, property', () => {
  test('a JSON body decodes to the same object and duplicates whether read as JSON or as YAML', () => {
    // GIVEN any JSON object, written with one of its keys repeated (a duplicate the last value wins)
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue(), { minKeys: 1 }), fc.jsonValue(), (object, extra) => {
        const [first] = Object.keys(object);
        const text = `${JSON.stringify(object).slice(0, -1)},\n${JSON.stringify(first)}: ${JSON.stringify(extra)}}`;
        // WHEN decoded as JSON (the fast path) and as YAML (a leading comment sends it there)
        const asJson = decodeApplyPatch(Buffer.from(text));
        const asYaml = decodeApplyPatch(Buffer.from(`# yaml\n${text}`));
        // THEN both give JSON.parse's object, and name the same duplicate (one line apart)
        expect(asJson.object).toEqual(JSON.parse(text));
        expect(asYaml.object).toEqual(asJson.object);
        expect(asJson.duplicates).toEqual([`line 2: key ${JSON.stringify(first)} already set in map`]);
        expect(asYaml.duplicates).toEqual([`line 3: key ${JSON.stringify(first)} already set in map`]);
      }),
      { numRuns: 300 },
    );
  });
});

describe('the field manager of a write', () => {
  test('is fieldManager, or else the User-Agent before its first "/", printable and at most 128 bytes', () => {
    expect(managerOrUserAgent('mine', 'kubectl/v1.28.2 (linux/amd64) kubernetes/89a4ea3')).toBe('mine');
    expect(managerOrUserAgent('', 'kubectl/v1.28.2 (linux/amd64) kubernetes/89a4ea3')).toBe('kubectl');
    expect(managerOrUserAgent('', undefined)).toBe('');
    expect(prefixFromUserAgent('tab\there\u0001/x')).toBe('tabhere');
    expect(Buffer.byteLength(prefixFromUserAgent('é'.repeat(100)))).toBe(128);
  });
});

describe('PATCH with application/apply-patch+yaml', () => {
  let server: RegistryServer;

  beforeEach(async () => {
    server = await RegistryServer.start();
  });

  afterEach(async () => {
    await server.close();
  });

  function apply(path: string, body: unknown, query: string, headers: Record<string, string> = {}) {
    return server.request('PATCH', `${path}?${query}`, { raw: typeof body === 'string' ? body : JSON.stringify(body), contentType: APPLY, headers });
  }

  function entries(object: { metadata: { managedFields?: Entry[] } }): Entry[] {
    return object.metadata.managedFields ?? [];
  }

  test('fails with 413 for a YAML body over 256 KiB, apply or create, before parsing it; the same object as JSON is taken', async () => {
    // GIVEN a Flunder whose YAML (block style, not JSON) is over the YAML limit: 4,000 labels
    const labels = Object.fromEntries(Array.from({ length: 4000 }, (_, i) => [`label-${i}`, 'v'.repeat(60)]));
    const labelLines = Object.entries(labels).map(([key, value]) => `    ${key}: ${value}\n`).join('');
    const yaml = `apiVersion: ${GROUP_VERSION}\nkind: Flunder\nmetadata:\n  name: big\n  labels:\n${labelLines}spec:\n  reference: r\n`;
    expect(Buffer.byteLength(yaml)).toBeGreaterThan(MAX_YAML_BODY_BYTES);

    // WHEN it is applied, or created as application/yaml
    const applied = await apply(`${FLUNDERS}/big`, yaml, 'fieldManager=m');
    const created = await server.request('POST', FLUNDERS, { raw: yaml, contentType: 'application/yaml' });

    // THEN both are 413 naming the limit, and nothing was stored
    for (const reply of [applied, created]) {
      expect(reply.status).toBe(413);
      expect(reply.body.reason).toBe('RequestEntityTooLarge');
      expect(reply.body.message).toBe(`Request entity too large: a YAML body is limited to 262144 bytes (this one has ${Buffer.byteLength(yaml)}): send it as JSON`);
    }
    expect((await server.request('GET', `${FLUNDERS}/big`)).status).toBe(404);

    // AND the same object sent as JSON (as kubectl sends it) is applied
    const asJson = { apiVersion: GROUP_VERSION, kind: 'Flunder', metadata: { name: 'big', labels }, spec: { reference: 'r' } };
    expect((await apply(`${FLUNDERS}/big`, asJson, 'fieldManager=m')).status).toBe(201);
  });

  test('fails with 422 without a fieldManager, as ValidatePatchOptions words it', async () => {
    const reply = await apply(`${FLUNDERS}/a`, flunder('a'), '');
    expect(reply.status).toBe(422);
    expect(reply.body.message).toBe('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
  });

  test('fails with 422 for force on a merge patch, and for an unprintable fieldManager', async () => {
    await server.post(FLUNDERS, flunder('a'));
    const forced = await server.request('PATCH', `${FLUNDERS}/a?force=true`, { body: {}, contentType: 'application/merge-patch+json' });
    expect(forced.status).toBe(422);
    expect(forced.body.message).toBe('PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch');
    const unprintable = await apply(`${FLUNDERS}/a`, flunder('a'), 'fieldManager=a%01b');
    expect(unprintable.status).toBe(422);
    expect(unprintable.body.message).toBe('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Invalid value: "a\\u0001b": invalid character U+0001 (at position 1)');
  });

  test.each([
    ['another kind', { apiVersion: GROUP_VERSION, kind: 'Fischer', metadata: { name: 'a' } }, 'invalid object type: wardle.example.com/v1alpha1, Kind=Fischer'],
    ['no apiVersion', { kind: 'Flunder', metadata: { name: 'a' } }, 'invalid object type: /, Kind=Flunder'],
    ['another version', { ...flunder('a'), apiVersion: 'wardle.example.com/v1beta1' }, 'invalid object type: wardle.example.com/v1beta1, Kind=Flunder'],
    ['managedFields', flunder('a', {}, { managedFields: [] }), 'metadata.managedFields must be nil'],
    ['another name', flunder('b'), 'the name of the object (b) does not match the name on the URL (a)'],
    ['no name', { apiVersion: GROUP_VERSION, kind: 'Flunder', spec: {} }, 'the name of the object () does not match the name on the URL (a)'],
    ['another namespace', flunder('a', {}, { namespace: 'ns2' }), 'the namespace of the provided object does not match the namespace sent on the request'],
  ])('fails with 400 for an applied object with %s', async (_what, body, message) => {
    const reply = await apply(`${FLUNDERS}/a`, body, 'fieldManager=m');
    expect([reply.status, reply.body.message]).toEqual([400, message]);
    expect((await server.get(`${FLUNDERS}/a`)).status).toBe(404);
  });

  test('creates a missing object (201) with an Apply entry; applying it again changes nothing', async () => {
    // GIVEN no flunder; WHEN one is applied (YAML)
    const yaml = `apiVersion: ${GROUP_VERSION}\nkind: Flunder\nmetadata:\n  name: a\n  labels:\n    tier: web\nspec:\n  reference: other\n`;
    const created = await apply(`${FLUNDERS}/a`, yaml, 'fieldManager=applier');
    // THEN it is created, with the applier's Apply entry owning what it applied
    expect(created.status).toBe(201);
    expect(created.body.spec).toEqual({ reference: 'other', referenceType: 'Flunder' });
    expect(entries(created.body)).toEqual([
      {
        manager: 'applier',
        operation: 'Apply',
        apiVersion: GROUP_VERSION,
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:metadata': { 'f:labels': { 'f:tier': {} } }, 'f:spec': { 'f:reference': {} } },
      },
    ]);
    // WHEN the same configuration is applied again
    const again = await apply(`${FLUNDERS}/a`, yaml, 'fieldManager=applier');
    // THEN nothing is written: same resourceVersion, same entry
    expect(again.status).toBe(200);
    expect(again.body.metadata.resourceVersion).toBe(created.body.metadata.resourceVersion);
    expect(entries(again.body)).toEqual(entries(created.body));
    // AND GET shows the entry
    expect(entries((await server.get(`${FLUNDERS}/a`)).body)).toEqual(entries(created.body));
  });

  test('fails with 409 naming the field and its manager when another manager applies a different value; force takes it over', async () => {
    // GIVEN a flunder applied by "first"
    await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'one' }), 'fieldManager=first');
    // WHEN "second" applies another value of the same field
    const conflict = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'two' }), 'fieldManager=second');
    // THEN 409 Conflict names the field and the manager, as kube-apiserver does
    expect(conflict.status).toBe(409);
    expect(conflict.body).toMatchObject({
      reason: 'Conflict',
      message: `Apply failed with 1 conflict: conflict with "first": .spec.reference`,
      details: { causes: [{ reason: 'FieldManagerConflict', message: 'conflict with "first"', field: '.spec.reference' }] },
    });
    expect((await server.get(`${FLUNDERS}/a`)).body.spec.reference).toBe('one');
    // WHEN it forces
    const forced = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'two' }), 'fieldManager=second&force=true');
    // THEN the value is its, and the field moved to its entry
    expect(forced.status).toBe(200);
    expect(forced.body.spec.reference).toBe('two');
    const owners = Object.fromEntries(entries(forced.body).map((e) => [e.manager, e.fieldsV1]));
    expect(owners.second).toEqual({ 'f:spec': { 'f:reference': {} } });
    expect(owners.first).toBeUndefined();
  });

  test('removes a field the manager applied before and no longer applies', async () => {
    // GIVEN a flunder applied with a reference and two labels
    await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'one', referenceType: 'Flunder' }, { labels: { keep: 'yes', drop: 'me' } }), 'fieldManager=m');
    // WHEN the same manager applies it without the reference and one label
    const reply = await apply(`${FLUNDERS}/a`, flunder('a', {}, { labels: { keep: 'yes' } }), 'fieldManager=m');
    // THEN they are gone (the emptied spec too: structured-merge-diff leaves it null, and null is pruned)
    expect(reply.status).toBe(200);
    expect(reply.body.metadata.labels).toEqual({ keep: 'yes' });
    expect(reply.body.spec).toBeUndefined();
    expect(reply.body.metadata.managedFields[0].fieldsV1).toEqual({ 'f:metadata': { 'f:labels': { 'f:keep': {} } }, 'f:spec': {} });
  });

  test('duplicate keys: a warning by default, 400 under fieldValidation=Strict', async () => {
    const body = `apiVersion: ${GROUP_VERSION}\nkind: Flunder\nmetadata:\n  name: a\nspec:\n  reference: first\n  reference: second\n`;
    const strict = await apply(`${FLUNDERS}/a`, body, 'fieldManager=m&fieldValidation=Strict');
    expect(strict.status).toBe(400);
    expect(strict.body.message).toBe('error strict decoding patch: error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n  line 7: key "reference" already set in map');
    const warned = await apply(`${FLUNDERS}/a`, body, 'fieldManager=m');
    expect(warned.status).toBe(201);
    expect(warned.headers.warning).toBe('299 - "line 7: key \\"reference\\" already set in map"');
    expect(warned.body.spec.reference).toBe('second');
  });

  test('fails with 500 for an applied field the schema does not declare, as Go answers the typed conversion error', async () => {
    const reply = await apply(`${FLUNDERS}/a`, flunder('a', { unknown: 'x' }), 'fieldManager=m');
    expect(reply.status).toBe(500);
    expect(reply.body).toMatchObject({ reason: '', message: 'failed to create typed patch object (/a; wardle.example.com/v1alpha1, Kind=Flunder): .spec.unknown: field not declared in schema' });
  });

  test('fails with 409 for a stale resourceVersion in the applied object (a precondition), and for a uid when nothing exists', async () => {
    const created = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'one' }), 'fieldManager=m');
    const stale = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'two' }, { resourceVersion: '1' }), 'fieldManager=m');
    expect([stale.status, stale.body.reason]).toEqual([409, 'Conflict']);
    const current = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'two' }, { resourceVersion: created.body.metadata.resourceVersion }), 'fieldManager=m');
    expect(current.status).toBe(200);
    const uid = await apply(`${FLUNDERS}/b`, flunder('b', {}, { uid: 'abc' }), 'fieldManager=m');
    expect([uid.status, uid.body.message]).toEqual([409, 'Operation cannot be fulfilled on flunders.wardle.example.com "b": uid mismatch: the provided object specified uid abc, and no existing object was found']);
  });

  test('dryRun=All answers what would be created and stores nothing', async () => {
    const reply = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'x' }), 'fieldManager=m&dryRun=All');
    expect(reply.status).toBe(201);
    expect(entries(reply.body).map((e) => e.manager)).toEqual(['m']);
    expect((await server.get(`${FLUNDERS}/a`)).status).toBe(404);
  });

  test('status on the main resource is neither stored nor owned; /status applies status only, recorded with subresource status', async () => {
    // GIVEN a flunder applied with a status (the kind has a status subresource)
    const created = await apply(`${FLUNDERS}/a`, { ...flunder('a', { reference: 'x' }), status: { phase: 'ignored' } }, 'fieldManager=m');
    expect(created.status).toBe(201);
    expect(created.body.status).toBeUndefined();
    expect(entries(created.body)[0].fieldsV1).toEqual({ 'f:spec': { 'f:reference': {} } });
    // WHEN a controller applies status through /status (with a spec it may not change)
    const status = await apply(`${FLUNDERS}/a/status`, { ...flunder('a', { reference: 'changed' }), status: {} }, 'fieldManager=controller');
    // THEN status is its and spec is the live one
    expect(status.status).toBe(200);
    expect(status.body.spec.reference).toBe('x');
    const controller = entries(status.body).find((e) => e.manager === 'controller');
    expect(controller).toMatchObject({ operation: 'Apply', subresource: 'status' });
    // AND /status never creates
    const missing = await apply(`${FLUNDERS}/b/status`, { ...flunder('b'), status: {} }, 'fieldManager=controller');
    expect(missing.status).toBe(404);
  });

  test('applies through another served version, recording that version', async () => {
    const reply = await apply(`${FLUNDERS_BETA}/a`, { ...flunder('a', { flunderReference: 'x', referenceType: 'Flunder' }), apiVersion: 'wardle.example.com/v1beta1' }, 'fieldManager=m');
    expect(reply.status).toBe(201);
    expect(entries(reply.body)).toEqual([expect.objectContaining({ manager: 'm', operation: 'Apply', apiVersion: 'wardle.example.com/v1beta1', fieldsV1: { 'f:spec': { 'f:flunderReference': {}, 'f:referenceType': {} } } })]);
    expect((await server.get(`${FLUNDERS}/a`)).body.spec).toEqual({ reference: 'x', referenceType: 'Flunder' });
  });

  test('a field set through another version conflicts with its manager, named in that version; force takes it over', async () => {
    // GIVEN a flunder applied through v1alpha1
    await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'one', referenceType: 'Flunder' }), 'fieldManager=first');
    // WHEN another manager applies another value of the same field through v1beta1
    const beta = { ...flunder('a', { flunderReference: 'two', referenceType: 'Flunder' }), apiVersion: 'wardle.example.com/v1beta1' };
    const conflict = await apply(`${FLUNDERS_BETA}/a`, beta, 'fieldManager=second');
    // THEN it conflicts with the first manager, on the field as that manager's version names it
    expect([conflict.status, conflict.body.message]).toEqual([409, 'Apply failed with 1 conflict: conflict with "first": .spec.reference']);
    // AND forcing takes it over: the first manager keeps only what the second did not change
    const forced = await apply(`${FLUNDERS_BETA}/a`, beta, 'fieldManager=second&force=true');
    expect(forced.status).toBe(200);
    const owners = Object.fromEntries(entries(forced.body).map((e) => [e.manager, e.fieldsV1]));
    expect(owners).toEqual({ first: { 'f:spec': { 'f:referenceType': {} } }, second: { 'f:spec': { 'f:flunderReference': {}, 'f:referenceType': {} } } });
  });

  describe('an object client-side apply manages (last-applied-configuration)', () => {
    /** What `kubectl apply` (client-side) leaves: the annotation, and the fields its Update entry owns. */
    async function clientSideApplied(spec: Record<string, unknown>): Promise<void> {
      const configuration = flunder('a', spec);
      const body = flunder('a', spec, { annotations: { [LAST_APPLIED]: `${JSON.stringify(configuration)}\n` } });
      const reply = await server.post(`${FLUNDERS}?fieldManager=kubectl-client-side-apply`, body);
      expect(reply.status).toBe(201);
    }

    test('kubectl takes over, without a conflict, the fields whose last applied value is live, and keeps the annotation in step', async () => {
      // GIVEN a flunder kubectl applied client-side
      await clientSideApplied({ reference: 'one' });
      // WHEN kubectl applies it server-side with another value
      const reply = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'two' }), 'fieldManager=kubectl');
      // THEN no conflict: kubectl owns the field, and the annotation is what it applied, as kubectl writes it
      expect(reply.status).toBe(200);
      expect(reply.body.spec.reference).toBe('two');
      expect(entries(reply.body).find((e) => e.manager === 'kubectl')).toMatchObject({ operation: 'Apply', fieldsV1: { 'f:spec': { 'f:reference': {} } } });
      expect(reply.body.metadata.annotations[LAST_APPLIED]).toBe(`{"apiVersion":"${GROUP_VERSION}","kind":"Flunder","metadata":{"name":"a"},"spec":{"reference":"two"}}\n`);
    });

    test('fails with 409 for a field another writer changed since (live no longer the last applied value)', async () => {
      // GIVEN a flunder kubectl applied client-side, whose field someone else changed since
      await clientSideApplied({ reference: 'one' });
      expect((await server.request('PATCH', `${FLUNDERS}/a?fieldManager=editor`, { body: { spec: { reference: 'edited' } }, contentType: 'application/merge-patch+json' })).status).toBe(200);
      // WHEN kubectl applies server-side
      const reply = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'two' }), 'fieldManager=kubectl');
      // THEN the editor's field conflicts
      expect(reply.status).toBe(409);
      expect(reply.body.message).toBe('Apply failed with 1 conflict: conflict with "editor" using wardle.example.com/v1alpha1: .spec.reference');
    });

    test('another manager gets no such allowance', async () => {
      await clientSideApplied({ reference: 'one' });
      const reply = await apply(`${FLUNDERS}/a`, flunder('a', { reference: 'two' }), 'fieldManager=flux');
      expect(reply.status).toBe(409);
      expect(reply.body.message).toBe('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using wardle.example.com/v1alpha1: .spec.reference');
    });
  });
});

describe('managedFields of ordinary writes', () => {
  let server: RegistryServer;

  beforeEach(async () => {
    server = await RegistryServer.start();
  });

  afterEach(async () => {
    await server.close();
  });

  function managers(object: { metadata: { managedFields?: Entry[] } }): string[] {
    return (object.metadata.managedFields ?? []).map((e) => `${e.manager}/${e.operation}${e.subresource ? `/${e.subresource}` : ''}`);
  }

  test('create, update and patch record Update entries named by fieldManager, or else the User-Agent prefix', async () => {
    // GIVEN a create by "creator"
    const created = await server.post(`${FLUNDERS}?fieldManager=creator`, flunder('a', { reference: 'x' }));
    expect(created.body.metadata.managedFields).toEqual([
      {
        manager: 'creator',
        operation: 'Update',
        apiVersion: GROUP_VERSION,
        time: expect.any(String),
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:spec': { '.': {}, 'f:reference': {}, 'f:referenceType': {} } },
      },
    ]);
    // WHEN a client without fieldManager changes a label (its User-Agent names it)
    const patched = await server.request('PATCH', `${FLUNDERS}/a`, { body: { metadata: { labels: { a: 'b' } } }, contentType: 'application/merge-patch+json', headers: { 'User-Agent': 'my-controller/v1.2 (linux)' } });
    // THEN it has its own entry for the label
    expect(managers(patched.body)).toEqual(['creator/Update', 'my-controller/Update']);
    expect(patched.body.metadata.managedFields[1].fieldsV1).toEqual({ 'f:metadata': { 'f:labels': { '.': {}, 'f:a': {} } } });
  });

  test('an update that sends no managedFields keeps them; one that sends [] clears them', async () => {
    const created = await server.post(`${FLUNDERS}?fieldManager=creator`, flunder('a', { reference: 'x' }));
    const { managedFields: _kept, ...meta } = created.body.metadata;
    const put = await server.put(`${FLUNDERS}/a?fieldManager=creator`, { ...created.body, metadata: meta });
    expect(put.body.metadata.managedFields).toEqual(created.body.metadata.managedFields);
    const cleared = await server.request('PATCH', `${FLUNDERS}/a`, { body: { metadata: { managedFields: [] } }, contentType: 'application/merge-patch+json' });
    expect(cleared.status).toBe(200);
    expect(cleared.body.metadata.managedFields).toBeUndefined();
  });

  test('a JSON patch that replaces managedFields (kubectl\'s upgrade from client-side apply) replaces them', async () => {
    // GIVEN a flunder with a client-side apply entry
    const created = await server.post(`${FLUNDERS}?fieldManager=kubectl-client-side-apply`, flunder('a', { reference: 'x' }));
    const [entry] = created.body.metadata.managedFields as Entry[];
    // WHEN kubectl's csaupgrade moves its fields to the Apply entry of "kubectl"
    const upgraded = { ...entry, manager: 'kubectl', operation: 'Apply' };
    const reply = await server.patch(
      `${FLUNDERS}/a`,
      [
        { op: 'test', path: '/metadata/resourceVersion', value: created.body.metadata.resourceVersion },
        { op: 'replace', path: '/metadata/managedFields', value: [upgraded] },
      ],
      'application/json-patch+json',
    );
    // THEN the object's managedFields are those
    expect(reply.status).toBe(200);
    expect(reply.body.metadata.managedFields).toEqual([upgraded]);
  });

  test('an update that sends managedFields that do not decode keeps the live ones, as decodeLiveOrNew', async () => {
    const created = await server.post(`${FLUNDERS}?fieldManager=creator`, flunder('a', { reference: 'x' }));
    const bogus = [{ manager: 'x', operation: 'Bogus', apiVersion: GROUP_VERSION, fieldsType: 'FieldsV1', fieldsV1: {} }];
    const put = await server.put(`${FLUNDERS}/a?fieldManager=creator`, { ...created.body, metadata: { ...created.body.metadata, managedFields: bogus } });
    expect(put.status).toBe(200);
    expect(put.body.metadata.managedFields).toEqual(created.body.metadata.managedFields);
  });

  test('after managedFields are cleared, ordinary writes record nothing until an apply, which gives the existing fields to before-first-apply', async () => {
    // GIVEN a flunder whose managedFields were cleared
    await server.post(`${FLUNDERS}?fieldManager=creator`, flunder('a', { reference: 'x' }));
    await server.request('PATCH', `${FLUNDERS}/a`, { body: { metadata: { managedFields: [] } }, contentType: 'application/merge-patch+json' });
    // WHEN an ordinary write changes it; THEN nothing is recorded (skipNonApplied)
    const labelled = await server.request('PATCH', `${FLUNDERS}/a?fieldManager=labeller`, { body: { metadata: { labels: { a: 'b' } } }, contentType: 'application/merge-patch+json' });
    expect(labelled.body.metadata.managedFields).toBeUndefined();
    // WHEN it is applied to; THEN what was there belongs to before-first-apply
    const applied = await server.request('PATCH', `${FLUNDERS}/a?fieldManager=applier`, { raw: JSON.stringify(flunder('a', {}, { annotations: { note: 'n' } })), contentType: APPLY });
    expect(applied.status).toBe(200);
    expect(managers(applied.body).sort()).toEqual(['applier/Apply', 'before-first-apply/Update']);
  });

  test('managedFields a mutating admission plugin leaves unreadable are put back, with a warning', async () => {
    // GIVEN an admission plugin that breaks managedFields
    await server.close();
    server = await RegistryServer.start({
      admission: [
        {
          name: 'Breaker',
          operations: ['CREATE', 'UPDATE'],
          async admit(attributes) {
            (attributes.object!.metadata as Record<string, unknown>).managedFields = [{ manager: 'broken' }];
          },
        },
      ],
    });
    // WHEN an object is created
    const created = await server.post(`${FLUNDERS}?fieldManager=creator`, flunder('a'));
    // THEN its managedFields are the ones recorded before admission, and the client is told
    expect(created.status).toBe(201);
    expect(managers(created.body)).toEqual(['creator/Update']);
    expect(created.headers.warning).toBe(
      '299 - ".metadata.managedFields was in an invalid state after admission; this could be caused by an outdated mutating admission controller; please fix your requests: operation must be `Apply` or `Update`"',
    );
  });

  test('a status update records an entry with subresource status and never owns spec', async () => {
    const created = await server.post(`${FLUNDERS}?fieldManager=creator`, flunder('a', { reference: 'x' }));
    const reply = await server.put(`${FLUNDERS}/a/status?fieldManager=controller`, { ...created.body, spec: { reference: 'y' }, status: { ready: true } });
    expect(reply.status).toBe(200);
    expect(managers(reply.body).sort()).toEqual(['controller/Update/status', 'creator/Update']);
    expect(reply.body.spec.reference).toBe('x');
  });

  test('watch events and lists carry managedFields', async () => {
    const watch = await server.watch(`${FLUNDERS}?watch=true`);
    try {
      await server.post(`${FLUNDERS}?fieldManager=creator`, flunder('a'));
      const [event] = await watch.waitFor(1, 10_000);
      expect(managers(event.object)).toEqual(['creator/Update']);
      const listed = await server.get(FLUNDERS);
      expect(managers(listed.body.items[0])).toEqual(['creator/Update']);
    } finally {
      watch.close();
    }
  });
});
