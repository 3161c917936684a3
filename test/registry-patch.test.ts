import { FLUNDERS, FLUNDERS_BETA, RegistryServer, flunder } from './support/registry-server';

let server: RegistryServer;

beforeEach(async () => {
  server = await RegistryServer.start();
  await server.post(FLUNDERS, flunder('p', { reference: 'a' }, { labels: { keep: 'yes', drop: 'yes' } }));
});

afterEach(async () => {
  await server.close();
});

describe('merge patch (RFC 7386)', () => {
  test('merges objects, null deletes, and the result is validated and stored', async () => {
    const reply = await server.patch(`${FLUNDERS}/p`, { metadata: { labels: { drop: null, added: 'x' } }, spec: { reference: 'b' } });
    expect(reply.status).toBe(200);
    expect(reply.body.metadata.labels).toEqual({ keep: 'yes', added: 'x' });
    expect(reply.body.spec).toEqual({ reference: 'b', referenceType: 'Flunder' });
    expect(reply.body.metadata.generation).toBe(2);
    expect((await server.get(`${FLUNDERS}/p`)).body).toEqual(reply.body);
  });

  test('in another version, the patch applies to that version of the object', async () => {
    const reply = await server.patch(`${FLUNDERS_BETA}/p`, { spec: { flunderReference: null, fischerReference: 'fish', referenceType: 'Fischer' } });
    expect(reply.status).toBe(200);
    expect(reply.body.spec).toEqual({ fischerReference: 'fish', referenceType: 'Fischer' });
    expect((await server.get(`${FLUNDERS}/p`)).body.spec).toEqual({ reference: 'fish', referenceType: 'Fischer' });
  });

  test('a resourceVersion in the patch is a precondition: 409 when stale', async () => {
    const current = (await server.get(`${FLUNDERS}/p`)).body;
    await server.patch(`${FLUNDERS}/p`, { metadata: { labels: { bump: '1' } } });
    const stale = await server.patch(`${FLUNDERS}/p`, { metadata: { resourceVersion: current.metadata.resourceVersion, labels: { late: '1' } } });
    expect(stale.status).toBe(409);
    expect(stale.body.reason).toBe('Conflict');
  });

  test('fails with 422 when the patched object is invalid', async () => {
    const reply = await server.patch(`${FLUNDERS}/p`, { spec: { referenceType: 'Widget' } });
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes).toEqual([
      { reason: 'FieldValueNotSupported', field: 'spec.referenceType', message: 'Unsupported value: "Widget": supported values: "Flunder", "Fischer"' },
    ]);
  });

  test('fails with 400 when the patch renames the object, and 404 for a missing object', async () => {
    const renamed = await server.patch(`${FLUNDERS}/p`, { metadata: { name: 'q' } });
    expect(renamed.status).toBe(400);
    expect((await server.patch(`${FLUNDERS}/missing`, { spec: {} })).status).toBe(404);
  });

  test('fails with 400 for a merge patch that is not an object', async () => {
    const reply = await server.request('PATCH', `${FLUNDERS}/p`, { raw: '[1]', contentType: 'application/merge-patch+json' });
    expect(reply.status).toBe(400);
  });
});

describe('JSON patch (RFC 6902)', () => {
  test('applies operations in order', async () => {
    const reply = await server.patch(
      `${FLUNDERS}/p`,
      [
        { op: 'test', path: '/spec/reference', value: 'a' },
        { op: 'replace', path: '/spec/reference', value: 'z' },
        { op: 'add', path: '/metadata/labels/new', value: 'n' },
        { op: 'remove', path: '/metadata/labels/drop' },
      ],
      'application/json-patch+json',
    );
    expect(reply.status).toBe(200);
    expect(reply.body.spec.reference).toBe('z');
    expect(reply.body.metadata.labels).toEqual({ keep: 'yes', new: 'n' });
  });

  test('fails with 422 when an operation does not apply, and changes nothing', async () => {
    const reply = await server.patch(`${FLUNDERS}/p`, [{ op: 'test', path: '/spec/reference', value: 'not-a' }, { op: 'replace', path: '/spec/reference', value: 'z' }], 'application/json-patch+json');
    expect(reply.status).toBe(422);
    expect(reply.body.reason).toBe('Invalid');
    expect(reply.body.details.causes[0].reason).toBe('UnexpectedServerResponse');
    expect((await server.get(`${FLUNDERS}/p`)).body.spec.reference).toBe('a');
  });

  test('fails with 400 for a malformed JSON patch', async () => {
    const reply = await server.patch(`${FLUNDERS}/p`, [{ op: 'frobnicate', path: '/x' }], 'application/json-patch+json');
    expect(reply.status).toBe(400);
  });
});

describe('unsupported patch types', () => {
  test.each(['application/strategic-merge-patch+json', 'text/plain'])('%s fails with 415 listing the supported types', async (type) => {
    const reply = await server.request('PATCH', `${FLUNDERS}/p`, { raw: '{}', contentType: type });
    expect(reply.status).toBe(415);
    expect(reply.body).toMatchObject({
      reason: 'UnsupportedMediaType',
      code: 415,
      message: 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
    });
  });
});
