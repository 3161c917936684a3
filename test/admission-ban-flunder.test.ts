import { FISCHERS, FLUNDERS, FLUNDERS_BETA, RegistryServer, flunder } from './support/registry-server';

let server: RegistryServer;

beforeEach(async () => {
  server = await RegistryServer.start();
  await server.post(FISCHERS, { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Fischer', metadata: { name: 'f1' }, disallowedFlunders: ['banned', 'also-banned'] });
  await server.post(FISCHERS, { metadata: { name: 'f2' }, disallowedFlunders: ['banned-too'] });
});

afterEach(async () => {
  await server.close();
});

describe('BanFlunder', () => {
  test.each(['banned', 'also-banned', 'banned-too'])('fails a create of Flunder "%s" listed by a Fischer with 403 and the sample-apiserver message', async (name) => {
    const reply = await server.post(FLUNDERS, flunder(name));
    expect(reply.status).toBe(403);
    expect(reply.body).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `flunders.wardle.example.com "${name}" is forbidden: this name may not be used, please change the resource name`,
      reason: 'Forbidden',
      details: { name, group: 'wardle.example.com', kind: 'flunders' },
      code: 403,
    });
    expect((await server.get(`${FLUNDERS}/${name}`)).status).toBe(404);
  });

  test('applies in every version', async () => {
    const reply = await server.post(FLUNDERS_BETA, { metadata: { name: 'banned' } });
    expect(reply.status).toBe(403);
  });

  test('allows other names, and follows changes to the Fischers', async () => {
    expect((await server.post(FLUNDERS, flunder('free'))).status).toBe(201);
    await server.patch(`${FISCHERS}/f1`, { disallowedFlunders: ['later'] });
    expect((await server.post(FLUNDERS, flunder('banned'))).status).toBe(201);
    expect((await server.post(FLUNDERS, flunder('later'))).status).toBe(403);
  });

  test('only creates are checked, as upstream: an existing Flunder can be updated after its name is banned', async () => {
    await server.post(FLUNDERS, flunder('grandfathered'));
    await server.patch(`${FISCHERS}/f2`, { disallowedFlunders: ['grandfathered'] });
    expect((await server.patch(`${FLUNDERS}/grandfathered`, { metadata: { labels: { a: 'b' } } })).status).toBe(200);
  });

  test('Fischers themselves are not checked', async () => {
    expect((await server.post(FISCHERS, { metadata: { name: 'banned' } })).status).toBe(201);
  });
});
