import { FLUNDER } from '../apis/wardle';
import { KindCodec } from '../server/registry';
import { flunderRules } from '../server/registry/wardle';
import { FLUNDERS, FLUNDERS_BETA, RegistryServer, flunder } from './support/registry-server';

describe('Flunder conversion rules (sample-apiserver conversion.go)', () => {
  const codec = new KindCodec('wardle.example.com', FLUNDER, flunderRules);

  test.each([
    [{ reference: 'x', referenceType: 'Flunder' }, { flunderReference: 'x', referenceType: 'Flunder' }],
    [{ reference: 'x', referenceType: 'Fischer' }, { fischerReference: 'x', referenceType: 'Fischer' }],
    [{}, {}],
  ])('v1alpha1 %j ↔ v1beta1 %j', (alpha, beta) => {
    const alphaObject = { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'n' }, spec: alpha, status: {} };
    const betaObject = codec.convert(alphaObject, 'v1alpha1', 'v1beta1');
    expect(betaObject).toEqual({ apiVersion: 'wardle.example.com/v1beta1', kind: 'Flunder', metadata: { name: 'n' }, spec: beta, status: {} });
    expect(codec.convert(betaObject, 'v1beta1', 'v1alpha1')).toEqual(alphaObject);
  });

  test('conversion never mutates its input (stored objects are frozen)', () => {
    const frozen = Object.freeze({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: Object.freeze({ name: 'n' }), spec: Object.freeze({ reference: 'x', referenceType: 'Flunder' }) });
    expect(() => codec.convert(frozen, 'v1alpha1', 'v1beta1')).not.toThrow();
  });

  test('the same version is returned as is, without a copy', () => {
    const object = { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'n' } };
    expect(codec.convert(object, 'v1alpha1', 'v1alpha1')).toBe(object);
  });
});

describe('conversion, defaulting and validation through the API', () => {
  let server: RegistryServer;

  beforeEach(async () => {
    server = await RegistryServer.start();
  });

  afterEach(async () => {
    await server.close();
  });

  test('v1alpha1 defaults referenceType to Flunder when reference is set, and v1beta1 reads it converted', async () => {
    // WHEN created in v1alpha1 without referenceType
    const created = await server.post(FLUNDERS, flunder('d', { reference: 'other' }));

    // THEN defaulted
    expect(created.status).toBe(201);
    expect(created.body.spec).toEqual({ reference: 'other', referenceType: 'Flunder' });
    // ... and the same stored object reads as v1beta1
    const beta = await server.get(`${FLUNDERS_BETA}/d`);
    expect(beta.body).toEqual({
      ...created.body,
      apiVersion: 'wardle.example.com/v1beta1',
      spec: { flunderReference: 'other', referenceType: 'Flunder' },
    });
  });

  test('written in v1beta1, read in v1alpha1; an update in v1alpha1 keeps the stored object coherent', async () => {
    const created = await server.post(FLUNDERS_BETA, {
      apiVersion: 'wardle.example.com/v1beta1',
      kind: 'Flunder',
      metadata: { name: 'b' },
      spec: { fischerReference: 'fish', referenceType: 'Fischer' },
    });
    expect(created.status).toBe(201);
    const alpha = await server.get(`${FLUNDERS}/b`);
    expect(alpha.body.spec).toEqual({ reference: 'fish', referenceType: 'Fischer' });
    expect(alpha.body.metadata.resourceVersion).toBe(created.body.metadata.resourceVersion);

    const updated = await server.put(`${FLUNDERS}/b`, { ...alpha.body, spec: { reference: 'fish2', referenceType: 'Fischer' } });
    expect(updated.status).toBe(200);
    expect((await server.get(`${FLUNDERS_BETA}/b`)).body.spec).toEqual({ fischerReference: 'fish2', referenceType: 'Fischer' });
  });

  test('lists in either version read the same objects', async () => {
    await server.post(FLUNDERS, flunder('l1', { reference: 'x' }));
    await server.post(FLUNDERS_BETA, { metadata: { name: 'l2' }, spec: { fischerReference: 'y', referenceType: 'Fischer' } });
    const alpha = await server.get(FLUNDERS);
    const beta = await server.get(FLUNDERS_BETA);
    expect(alpha.body.items.map((i: { spec: unknown }) => i.spec)).toEqual([
      { reference: 'x', referenceType: 'Flunder' },
      { reference: 'y', referenceType: 'Fischer' },
    ]);
    expect(beta.body.kind).toBe('FlunderList');
    expect(beta.body.apiVersion).toBe('wardle.example.com/v1beta1');
    expect(beta.body.items.map((i: { spec: unknown }) => i.spec)).toEqual([
      { flunderReference: 'x', referenceType: 'Flunder' },
      { fischerReference: 'y', referenceType: 'Fischer' },
    ]);
    expect(beta.body.metadata.resourceVersion).toBe(alpha.body.metadata.resourceVersion);
  });

  test.each([
    [{ flunderReference: 'a', fischerReference: 'b', referenceType: 'Flunder' }, 'FieldValueInvalid', 'spec.fischerReference', 'Invalid value: "b": cannot be set with flunderReference at the same time'],
    [{ flunderReference: 'a', referenceType: 'Fischer' }, 'FieldValueInvalid', 'spec.flunderReference', 'Invalid value: "a": cannot be set if referenceType is not Flunder'],
    [{ fischerReference: 'b', referenceType: 'Flunder' }, 'FieldValueInvalid', 'spec.fischerReference', 'Invalid value: "b": cannot be set if referenceType is not Fischer'],
    [{ referenceType: 'Fischer' }, 'FieldValueRequired', 'spec.fischerReference', 'Required value: cannot be empty if referenceType is Fischer'],
    [{ referenceType: 'Flunder' }, 'FieldValueRequired', 'spec.flunderReference', 'Required value: cannot be empty if referenceType is Flunder'],
    [{ flunderReference: 'a' }, 'FieldValueInvalid', 'spec.flunderReference', 'Invalid value: "a": cannot be set if referenceType is not Flunder'],
  ])('v1beta1 spec %j fails with 422 %s on %s', async (spec, type, field, message) => {
    const reply = await server.post(FLUNDERS_BETA, { metadata: { name: 'v' }, spec });
    expect(reply.status).toBe(422);
    expect(reply.body).toMatchObject({ kind: 'Status', reason: 'Invalid', code: 422, details: { name: 'v', group: 'wardle.example.com', kind: 'Flunder', causes: [{ reason: type, field, message }] } });
    expect(reply.body.message).toBe(`Flunder.wardle.example.com "v" is invalid: ${field}: ${message}`);
  });

  test('v1alpha1 with referenceType Fischer and no reference fails as upstream does, on the internal field', async () => {
    const reply = await server.post(FLUNDERS, flunder('v', { referenceType: 'Fischer' }));
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes).toEqual([{ reason: 'FieldValueRequired', field: 'spec.fischerReference', message: 'Required value: cannot be empty if referenceType is Fischer' }]);
  });

  test('schema validation: a wrong type and an unsupported enum value are 422 with one cause each', async () => {
    const reply = await server.post(FLUNDERS, flunder('t', { reference: 42, referenceType: 'Widget' }));
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes).toEqual([
      { reason: 'FieldValueTypeInvalid', field: 'spec.reference', message: 'Invalid value: "integer": spec.reference in body must be of type string: "integer"' },
      { reason: 'FieldValueNotSupported', field: 'spec.referenceType', message: 'Unsupported value: "Widget": supported values: "Flunder", "Fischer"' },
    ]);
    expect(reply.body.message).toMatch(/^Flunder.wardle.example.com "t" is invalid: \[spec.reference: Invalid value: "integer": .*, spec.referenceType: Unsupported value: "Widget": .*\]$/);
  });

  test('unknown fields are pruned with a Warning by default', async () => {
    const reply = await server.post(FLUNDERS, { ...flunder('u', { reference: 'x', extra: 1 }), topLevel: true });
    expect(reply.status).toBe(201);
    expect(reply.body.spec).toEqual({ reference: 'x', referenceType: 'Flunder' });
    expect(reply.body.topLevel).toBeUndefined();
    expect(reply.headers.warning).toBe('299 - "unknown field \\"spec.extra\\"", 299 - "unknown field \\"topLevel\\""');
  });

  test('fieldValidation=Strict rejects unknown fields with 400; Ignore prunes silently', async () => {
    const strict = await server.post(`${FLUNDERS}?fieldValidation=Strict`, flunder('s', { extra: 1 }));
    expect(strict.status).toBe(400);
    expect(strict.body.message).toBe('strict decoding error: unknown field "spec.extra"');
    const ignore = await server.post(`${FLUNDERS}?fieldValidation=Ignore`, flunder('s', { extra: 1 }));
    expect(ignore.status).toBe(201);
    expect(ignore.headers.warning).toBeUndefined();
    expect(ignore.body.spec).toEqual({});
  });

  test('validation applies on update too', async () => {
    await server.post(FLUNDERS_BETA, { metadata: { name: 'up' }, spec: { flunderReference: 'a', referenceType: 'Flunder' } });
    const reply = await server.put(`${FLUNDERS_BETA}/up`, { metadata: { name: 'up' }, spec: { flunderReference: 'a', fischerReference: 'b', referenceType: 'Flunder' } });
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes[0].field).toBe('spec.fischerReference');
  });
});
