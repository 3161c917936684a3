import * as http from 'node:http';
import { FISCHERS, FLUNDERS, RegistryServer, flunder } from './support/registry-server';

let server: RegistryServer;

beforeEach(async () => {
  server = await RegistryServer.start();
});

afterEach(async () => {
  await server.close();
});

describe('create', () => {
  test('answers 201 with uid, creationTimestamp, resourceVersion, generation and the namespace filled in', async () => {
    // WHEN
    const reply = await server.post(FLUNDERS, flunder('alpha', { reference: 'beta' }));

    // THEN
    expect(reply.status).toBe(201);
    expect(reply.headers['content-type']).toBe('application/json');
    const meta = reply.body.metadata;
    expect(reply.body).toMatchObject({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder' });
    expect(meta).toMatchObject({ name: 'alpha', namespace: 'ns1', generation: 1 });
    expect(meta.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(meta.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Math.abs(Date.parse(meta.creationTimestamp) - Date.now())).toBeLessThan(5000);
    expect(meta.resourceVersion).toMatch(/^\d+$/);
  });

  test('generateName appends five random characters and the name is unique', async () => {
    // WHEN
    const replies = await Promise.all([1, 2, 3].map(() => server.post(FLUNDERS, { metadata: { generateName: 'gen-' }, spec: {} })));

    // THEN
    const names = replies.map((r) => r.body.metadata.name as string);
    for (const reply of replies) expect(reply.status).toBe(201);
    for (const name of names) expect(name).toMatch(/^gen-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    expect(new Set(names).size).toBe(3);
  });

  test('fills in missing apiVersion and kind from the endpoint, as a typed server decodes with defaults', async () => {
    const reply = await server.post(FLUNDERS, { metadata: { name: 'bare' } });
    expect(reply.status).toBe(201);
    expect(reply.body).toMatchObject({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder' });
  });

  test('ignores client-set system fields and drops status when status is a subresource', async () => {
    const reply = await server.post(FLUNDERS, {
      ...flunder('sys'),
      metadata: { name: 'sys', uid: 'mine', creationTimestamp: '2000-01-01T00:00:00Z', generation: 7, deletionTimestamp: '2000-01-01T00:00:00Z' },
      status: { anything: true },
    });
    expect(reply.status).toBe(201);
    expect(reply.body.metadata.uid).not.toBe('mine');
    expect(reply.body.metadata.creationTimestamp).not.toBe('2000-01-01T00:00:00Z');
    expect(reply.body.metadata.generation).toBe(1);
    expect(reply.body.metadata.deletionTimestamp).toBeUndefined();
    expect(reply.body.status).toBeUndefined();
  });

  test('fails with 409 AlreadyExists for an existing name', async () => {
    await server.post(FLUNDERS, flunder('dup'));
    const reply = await server.post(FLUNDERS, flunder('dup'));
    expect(reply.status).toBe(409);
    expect(reply.body).toMatchObject({
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'AlreadyExists',
      message: 'flunders.wardle.example.com "dup" already exists',
      details: { name: 'dup', group: 'wardle.example.com', kind: 'flunders' },
      code: 409,
    });
  });

  test('fails with 400 when the body names another namespace', async () => {
    const reply = await server.post(FLUNDERS, flunder('x', {}, { namespace: 'ns2' }));
    expect(reply.status).toBe(400);
    expect(reply.body.message).toBe('the namespace of the provided object does not match the namespace sent on the request');
  });

  test('fails with 400 for a body of another version or kind', async () => {
    const wrongVersion = await server.post(FLUNDERS, { ...flunder('x'), apiVersion: 'wardle.example.com/v1beta1' });
    expect(wrongVersion.status).toBe(400);
    expect(wrongVersion.body.message).toBe(
      'the API version in the data (wardle.example.com/v1beta1) does not match the expected API version (wardle.example.com/v1alpha1)',
    );
    const wrongKind = await server.post(FLUNDERS, { ...flunder('x'), kind: 'Fischer' });
    expect(wrongKind.status).toBe(400);
    expect(wrongKind.body.message).toBe('the kind in the data (Fischer) does not match the expected kind (Flunder)');
  });

  test('fails with 400, not 500, when apiVersion or kind is not a string', async () => {
    // An object whose toString is not a function made String() throw: found by fuzz-request-parsing (seed 1357534718).
    const objectKind = await server.post(FLUNDERS, { ...flunder('x'), kind: { toString: '' } });
    expect(objectKind.status).toBe(400);
    expect(objectKind.body).toMatchObject({ kind: 'Status', reason: 'BadRequest', code: 400 });
    expect(objectKind.body.message).toBe("couldn't get version/kind; json parse error: json: cannot unmarshal object into Go struct field .kind of type string");
    const numberVersion = await server.post(FLUNDERS, { ...flunder('x'), apiVersion: 1 });
    expect(numberVersion.status).toBe(400);
    expect(numberVersion.body.message).toBe("couldn't get version/kind; json parse error: json: cannot unmarshal number into Go struct field .apiVersion of type string");
  });

  test('reads a null apiVersion or kind as empty, as Go decodes JSON null into a string, and fills both in', async () => {
    // WHEN a create and then an update name neither (null)
    const created = await server.post(FLUNDERS, { ...flunder('nulled'), apiVersion: null, kind: null });
    const updated = await server.put(`${FLUNDERS}/nulled`, { ...created.body, apiVersion: null, kind: null, spec: { reference: 'other' } });

    // THEN both succeed, answered and stored with the endpoint's apiVersion and kind
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder' });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', spec: { reference: 'other' } });
    expect((await server.get(`${FLUNDERS}/nulled`)).body).toMatchObject({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder' });
  });

  test('fails with 400 BadRequest for malformed JSON and for a non-object body', async () => {
    const malformed = await server.request('POST', FLUNDERS, { raw: '{"metadata": {"name": "x"' });
    expect(malformed.status).toBe(400);
    expect(malformed.body).toMatchObject({ kind: 'Status', reason: 'BadRequest', code: 400 });
    expect(malformed.body.message).toMatch(/could not be decoded as JSON/);
    const array = await server.request('POST', FLUNDERS, { raw: '[1,2]' });
    expect(array.status).toBe(400);
  });

  test('accepts a YAML body', async () => {
    const reply = await server.request('POST', FLUNDERS, { raw: 'apiVersion: wardle.example.com/v1alpha1\nkind: Flunder\nmetadata:\n  name: yamled\n', contentType: 'application/yaml' });
    expect(reply.status).toBe(201);
    expect(reply.body.metadata.name).toBe('yamled');
  });

  test('fails with 415 for a body of an unsupported media type', async () => {
    const reply = await server.request('POST', FLUNDERS, { raw: 'x', contentType: 'text/plain' });
    expect(reply.status).toBe(415);
    expect(reply.body.reason).toBe('UnsupportedMediaType');
  });

  test('fails with 413 for a body over 3 MiB, whether declared or streamed', async () => {
    // GIVEN a valid object padded past the limit
    const big = JSON.stringify({ ...flunder('big'), metadata: { name: 'big', annotations: { pad: 'x'.repeat(3 * 1024 * 1024) } } });

    // WHEN sent with a Content-Length
    const declared = await server.request('POST', FLUNDERS, { raw: big });
    // THEN
    expect(declared.status).toBe(413);
    expect(declared.body).toMatchObject({ reason: 'RequestEntityTooLarge', code: 413, message: 'Request entity too large: limit is 3145728' });

    // WHEN sent chunked without a Content-Length
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${server.url}${FLUNDERS}`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < big.length; i += 65536) req.write(big.slice(i, i + 65536));
      req.end();
    });
    // THEN
    expect(chunked).toBe(413);
    expect((await server.get(`${FLUNDERS}/big`)).status).toBe(404);
  });

  test('fails with 400 when resourceVersion is set on create', async () => {
    const reply = await server.post(FLUNDERS, flunder('rv', {}, { resourceVersion: '5' }));
    expect(reply.status).toBe(400);
    expect(reply.body.message).toBe('resourceVersion should not be set on objects to be created');
  });

  test('dryRun=All validates and answers without storing', async () => {
    const reply = await server.post(`${FLUNDERS}?dryRun=All`, flunder('dry'));
    expect(reply.status).toBe(201);
    expect(reply.body.metadata.name).toBe('dry');
    expect((await server.get(`${FLUNDERS}/dry`)).status).toBe(404);
    const bad = await server.post(`${FLUNDERS}?dryRun=Some`, flunder('dry'));
    // As ValidateCreateOptions: 422 CreateOptions.meta.k8s.io "" is invalid.
    expect(bad.status).toBe(422);
  });
});

describe('metadata validation', () => {
  test('fails with 422 naming metadata.name when it is not a DNS-1123 subdomain', async () => {
    const reply = await server.post(FLUNDERS, flunder('Bad_Name'));
    expect(reply.status).toBe(422);
    expect(reply.body.reason).toBe('Invalid');
    expect(reply.body.details.causes).toEqual([
      expect.objectContaining({ reason: 'FieldValueInvalid', field: 'metadata.name', message: expect.stringMatching(/^Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/) }),
    ]);
    expect(reply.body.message).toMatch(/^Flunder.wardle.example.com "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"/);
  });

  test('fails with 422 when neither name nor generateName is given', async () => {
    const reply = await server.post(FLUNDERS, { metadata: {} });
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes).toEqual([{ reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name or generateName is required' }]);
  });

  test('fails with 422 for invalid label keys and values', async () => {
    const reply = await server.post(FLUNDERS, flunder('labels', {}, { labels: { 'bad key': 'v', good: 'bad value!' } }));
    expect(reply.status).toBe(422);
    const fields = reply.body.details.causes.map((c: { field: string; message: string }) => `${c.field} ${c.message.split(':')[0]}`);
    expect(fields).toEqual(['metadata.labels Invalid value', 'metadata.labels Invalid value']);
  });

  test('prunes unknown metadata fields', async () => {
    const reply = await server.post(FLUNDERS, flunder('meta', {}, { bogus: 1 }));
    expect(reply.status).toBe(201);
    expect(reply.body.metadata.bogus).toBeUndefined();
    expect(reply.headers.warning).toBe('299 - "unknown field \\"metadata.bogus\\""');
  });
});

describe('get', () => {
  test('answers the stored object, and 404 NotFound with the upstream message otherwise', async () => {
    const created = await server.post(FLUNDERS, flunder('g', { reference: 'r' }));
    const reply = await server.get(`${FLUNDERS}/g`);
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual(created.body);

    const missing = await server.get(`${FLUNDERS}/nope`);
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'flunders.wardle.example.com "nope" not found',
      reason: 'NotFound',
      details: { name: 'nope', group: 'wardle.example.com', kind: 'flunders' },
      code: 404,
    });
  });
});

describe('update', () => {
  test('bumps resourceVersion, and generation only when the spec changes', async () => {
    // GIVEN
    const created = (await server.post(FLUNDERS, flunder('u', { reference: 'a' }))).body;

    // WHEN only labels change
    const relabelled = await server.put(`${FLUNDERS}/u`, { ...created, metadata: { ...created.metadata, labels: { a: 'b' } } });
    // THEN
    expect(relabelled.status).toBe(200);
    expect(Number(relabelled.body.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));
    expect(relabelled.body.metadata.generation).toBe(1);
    expect(relabelled.body.metadata.uid).toBe(created.metadata.uid);
    expect(relabelled.body.metadata.creationTimestamp).toBe(created.metadata.creationTimestamp);

    // WHEN the spec changes
    const respecced = await server.put(`${FLUNDERS}/u`, { ...relabelled.body, spec: { reference: 'b' } });
    // THEN
    expect(respecced.status).toBe(200);
    expect(respecced.body.metadata.generation).toBe(2);
    expect(respecced.body.spec).toEqual({ reference: 'b', referenceType: 'Flunder' });
  });

  test('ignores .status on the main resource when status is a subresource', async () => {
    const created = (await server.post(FLUNDERS, flunder('s'))).body;
    const reply = await server.put(`${FLUNDERS}/s`, { ...created, status: { phase: 'x' } });
    expect(reply.status).toBe(200);
    expect(reply.body.status).toBeUndefined();
    // A no-op write keeps the resourceVersion, as GuaranteedUpdate skips identical writes.
    expect(reply.body.metadata.resourceVersion).toBe(created.metadata.resourceVersion);
  });

  test('fails with 409 Conflict and the upstream message on a stale resourceVersion', async () => {
    // GIVEN two clients that read the same version
    const created = (await server.post(FLUNDERS, flunder('c', { reference: 'a' }))).body;
    const first = await server.put(`${FLUNDERS}/c`, { ...created, spec: { reference: 'first' } });
    expect(first.status).toBe(200);

    // WHEN the second writes with the old resourceVersion
    const second = await server.put(`${FLUNDERS}/c`, { ...created, spec: { reference: 'second' } });

    // THEN
    expect(second.status).toBe(409);
    expect(second.body).toMatchObject({
      reason: 'Conflict',
      code: 409,
      message: 'Operation cannot be fulfilled on flunders.wardle.example.com "c": the object has been modified; please apply your changes to the latest version and try again',
      details: { name: 'c', group: 'wardle.example.com', kind: 'flunders' },
    });
    expect((await server.get(`${FLUNDERS}/c`)).body.spec.reference).toBe('first');
  });

  test('without a resourceVersion the update is unconditional', async () => {
    await server.post(FLUNDERS, flunder('unc', { reference: 'a' }));
    await server.put(`${FLUNDERS}/unc`, flunder('unc', { reference: 'b' }));
    const reply = await server.put(`${FLUNDERS}/unc`, flunder('unc', { reference: 'c' }));
    expect(reply.status).toBe(200);
    expect(reply.body.spec.reference).toBe('c');
  });

  test('concurrent unconditional updates all succeed, each on a fresh version', async () => {
    await server.post(FLUNDERS, flunder('race'));
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => server.put(`${FLUNDERS}/race`, flunder('race', {}, { labels: { [`l${i}`]: 'x' } }))),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(new Set(replies.map((r) => r.body.metadata.resourceVersion)).size).toBe(20);
  });

  test('fails with 404 for a missing object: update does not create', async () => {
    const reply = await server.put(`${FLUNDERS}/ghost`, flunder('ghost'));
    expect(reply.status).toBe(404);
    expect(reply.body.message).toBe('flunders.wardle.example.com "ghost" not found');
  });

  test('fails with 400 when the body names another object', async () => {
    await server.post(FLUNDERS, flunder('n'));
    const reply = await server.put(`${FLUNDERS}/n`, flunder('m'));
    expect(reply.status).toBe(400);
    expect(reply.body.message).toBe('the name of the object (m) does not match the name on the URL (n)');
  });

  test('fails with 422 when the uid is changed', async () => {
    const created = (await server.post(FLUNDERS, flunder('uid'))).body;
    const reply = await server.put(`${FLUNDERS}/uid`, { ...created, metadata: { ...created.metadata, uid: 'other' } });
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes).toEqual([{ reason: 'FieldValueInvalid', field: 'metadata.uid', message: 'Invalid value: "other": field is immutable' }]);
  });
});

describe('status subresource', () => {
  test('PUT and PATCH on /status change only .status; GET answers the object', async () => {
    // GIVEN
    const created = (await server.post(FLUNDERS, flunder('st', { reference: 'a' }))).body;

    // WHEN status is written together with a spec change and a label
    const put = await server.put(`${FLUNDERS}/st/status`, { ...created, metadata: { ...created.metadata, labels: { no: 'no' } }, spec: { reference: 'changed' }, status: {} });

    // THEN only status applies (Flunder's status schema has no fields: an empty object stays)
    expect(put.status).toBe(200);
    expect(put.body.spec.reference).toBe('a');
    expect(put.body.metadata.labels).toBeUndefined();
    expect(put.body.status).toEqual({});
    expect(put.body.metadata.generation).toBe(1);

    const patched = await server.patch(`${FLUNDERS}/st/status`, { spec: { reference: 'again' } });
    expect(patched.status).toBe(200);
    expect(patched.body.spec.reference).toBe('a');

    const got = await server.get(`${FLUNDERS}/st/status`);
    expect(got.status).toBe(200);
    expect(got.body.metadata.name).toBe('st');
  });

  test('fails with 404 for a kind without the status subresource, and for other subresources', async () => {
    await server.post(FISCHERS, { metadata: { name: 'f' } });
    expect((await server.get(`${FISCHERS}/f/status`)).status).toBe(404);
    await server.post(FLUNDERS, flunder('sub'));
    expect((await server.get(`${FLUNDERS}/sub/scale`)).status).toBe(404);
  });
});

describe('delete', () => {
  test('answers 200 with the deleted object; the object is gone', async () => {
    const created = (await server.post(FLUNDERS, flunder('d'))).body;
    const reply = await server.delete(`${FLUNDERS}/d`, { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' });
    expect(reply.status).toBe(200);
    expect(reply.body.metadata.uid).toBe(created.metadata.uid);
    expect(Number(reply.body.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));
    expect((await server.get(`${FLUNDERS}/d`)).status).toBe(404);
    expect((await server.delete(`${FLUNDERS}/d`)).status).toBe(404);
  });

  test('fails with 409 when a uid or resourceVersion precondition does not hold', async () => {
    const created = (await server.post(FLUNDERS, flunder('p'))).body;
    const uid = await server.delete(`${FLUNDERS}/p`, { preconditions: { uid: 'other' } });
    expect(uid.status).toBe(409);
    expect(uid.body.message).toBe(`Operation cannot be fulfilled on flunders.wardle.example.com "p": Precondition failed: UID in precondition: other, UID in object meta: ${created.metadata.uid}`);
    const rv = await server.delete(`${FLUNDERS}/p`, { preconditions: { resourceVersion: '1' } });
    expect(rv.status).toBe(409);
    expect(rv.body.message).toMatch(/Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: \d+/);
    const ok = await server.delete(`${FLUNDERS}/p`, { preconditions: { uid: created.metadata.uid, resourceVersion: created.metadata.resourceVersion } });
    expect(ok.status).toBe(200);
  });

  test('fails with 500, not 409 Conflict, when the storage fails the delete for another reason', async () => {
    // GIVEN a stored object and a storage that now refuses writes
    await server.post(FLUNDERS, flunder('broken'));
    await server.storage.close();
    const logged = jest.spyOn(console, 'error').mockImplementation(() => undefined);

    // WHEN
    const reply = await server.delete(`${FLUNDERS}/broken`);

    // THEN the storage's own error comes through
    logged.mockRestore();
    expect(reply.status).toBe(500);
    expect(reply.body.reason).toBe('InternalError');
    expect(reply.body.message).toMatch(/storage is closed/);
  });

  test('fails with 422 for an unknown propagationPolicy', async () => {
    await server.post(FLUNDERS, flunder('pp'));
    const reply = await server.delete(`${FLUNDERS}/pp`, { propagationPolicy: 'Sideways' });
    expect(reply.status).toBe(422);
    expect(reply.body.message).toBe('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan"');
  });

  test('an object with finalizers is marked for deletion and removed when its last finalizer goes', async () => {
    // GIVEN
    await server.post(FLUNDERS, flunder('fin', {}, { finalizers: ['example.com/hold'] }));

    // WHEN deleted
    const deleting = await server.delete(`${FLUNDERS}/fin`);
    // THEN it stays, marked
    expect(deleting.status).toBe(200);
    expect(deleting.body.metadata.deletionTimestamp).toBeDefined();
    expect(deleting.body.metadata.generation).toBe(2);
    const still = await server.get(`${FLUNDERS}/fin`);
    expect(still.status).toBe(200);

    // WHEN a new finalizer is added while deleting
    const added = await server.patch(`${FLUNDERS}/fin`, { metadata: { finalizers: ['example.com/hold', 'example.com/more'] } });
    // THEN
    expect(added.status).toBe(422);

    // WHEN the finalizer is removed
    const released = await server.patch(`${FLUNDERS}/fin`, { metadata: { finalizers: null } });
    // THEN the object is gone
    expect(released.status).toBe(200);
    expect((await server.get(`${FLUNDERS}/fin`)).status).toBe(404);
  });

  test('propagationPolicy Foreground and Orphan add the garbage collector finalizers', async () => {
    await server.post(FLUNDERS, flunder('fg'));
    const foreground = await server.delete(`${FLUNDERS}/fg`, { propagationPolicy: 'Foreground' });
    expect(foreground.body.metadata.finalizers).toEqual(['foregroundDeletion']);
    await server.post(FLUNDERS, flunder('or'));
    const orphan = await server.delete(`${FLUNDERS}/or?propagationPolicy=Orphan`);
    expect(orphan.body.metadata.finalizers).toEqual(['orphan']);
  });

  test('deletecollection deletes what the selector matches and answers the list of deleted objects', async () => {
    await server.post(FLUNDERS, flunder('a', {}, { labels: { app: 'x' } }));
    await server.post(FLUNDERS, flunder('b', {}, { labels: { app: 'x' } }));
    await server.post(FLUNDERS, flunder('c', {}, { labels: { app: 'y' } }));
    const reply = await server.delete(`${FLUNDERS}?labelSelector=app%3Dx`);
    expect(reply.status).toBe(200);
    expect(reply.body.kind).toBe('FlunderList');
    expect(reply.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(['a', 'b']);
    const left = await server.get(FLUNDERS);
    expect(left.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(['c']);
  });
});

describe('scope and routing', () => {
  test('a cluster-scoped kind is served at the cluster path only and ignores a namespace in the body', async () => {
    const created = await server.post(FISCHERS, { metadata: { name: 'fi', namespace: 'ns1' }, disallowedFlunders: ['x'] });
    expect(created.status).toBe(201);
    expect(created.body.metadata.namespace).toBeUndefined();
    expect((await server.get('/apis/wardle.example.com/v1alpha1/namespaces/ns1/fischers/fi')).status).toBe(404);
  });

  test('a namespaced kind lists across namespaces at the cluster path but cannot be created there (405)', async () => {
    await server.post(FLUNDERS, flunder('one'));
    await server.post('/apis/wardle.example.com/v1alpha1/namespaces/ns2/flunders', flunder('two'));
    const all = await server.get('/apis/wardle.example.com/v1alpha1/flunders');
    expect(all.status).toBe(200);
    expect(all.body.items.map((i: { metadata: { namespace: string; name: string } }) => `${i.metadata.namespace}/${i.metadata.name}`)).toEqual(['ns1/one', 'ns2/two']);
    const post = await server.post('/apis/wardle.example.com/v1alpha1/flunders', flunder('three'));
    expect(post.status).toBe(405);
    expect(post.body.reason).toBe('MethodNotAllowed');
    expect((await server.get('/apis/wardle.example.com/v1alpha1/flunders/one')).status).toBe(404);
  });

  test('fails with 404 for an unknown resource or version and 405 for a method a path does not take', async () => {
    expect((await server.get('/apis/wardle.example.com/v1alpha1/namespaces/ns1/widgets')).status).toBe(404);
    expect((await server.get('/apis/wardle.example.com/v9/namespaces/ns1/flunders')).status).toBe(404);
    expect((await server.put(FLUNDERS, flunder('x'))).status).toBe(405);
    expect((await server.post(`${FLUNDERS}/x`, flunder('x'))).status).toBe(405);
  });
});
