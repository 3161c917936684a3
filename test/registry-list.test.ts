import { FLUNDERS, RegistryServer, flunder } from './support/registry-server';

let server: RegistryServer;

afterEach(async () => {
  await server.close();
});

function names(reply: { body: { items: { metadata: { name: string } }[] } }): string[] {
  return reply.body.items.map((i) => i.metadata.name);
}

describe('list', () => {
  beforeEach(async () => {
    server = await RegistryServer.start();
  });

  test('answers a FlunderList with the list resourceVersion, items sorted by name', async () => {
    // GIVEN
    await server.post(FLUNDERS, flunder('b'));
    const last = await server.post(FLUNDERS, flunder('a'));

    // WHEN
    const reply = await server.get(FLUNDERS);

    // THEN
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'FlunderList', metadata: { resourceVersion: last.body.metadata.resourceVersion } });
    expect(reply.body.metadata.continue).toBeUndefined();
    expect(names(reply)).toEqual(['a', 'b']);
    expect(reply.body.items[0]).toMatchObject({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder' });
  });

  test('an empty list still carries a resourceVersion', async () => {
    const reply = await server.get(FLUNDERS);
    expect(reply.body.items).toEqual([]);
    expect(reply.body.metadata.resourceVersion).toMatch(/^\d+$/);
  });

  test.each([
    ['tier=web', ['web1', 'web2']],
    ['tier==web', ['web1', 'web2']],
    ['tier!=web', ['db', 'plain']],
    ['tier in (web,db)', ['db', 'web1', 'web2']],
    ['tier notin (web)', ['db', 'plain']],
    ['tier', ['db', 'web1', 'web2']],
    ['!tier', ['plain']],
    ['tier=web,env=prod', ['web1']],
    ['tier=web,!env', ['web2']],
  ])('labelSelector %s', async (selector, expected) => {
    // GIVEN
    await server.post(FLUNDERS, flunder('web1', {}, { labels: { tier: 'web', env: 'prod' } }));
    await server.post(FLUNDERS, flunder('web2', {}, { labels: { tier: 'web' } }));
    await server.post(FLUNDERS, flunder('db', {}, { labels: { tier: 'db', env: 'prod' } }));
    await server.post(FLUNDERS, flunder('plain'));

    // WHEN
    const reply = await server.get(`${FLUNDERS}?labelSelector=${encodeURIComponent(selector)}`);

    // THEN
    expect(reply.status).toBe(200);
    expect(names(reply)).toEqual(expected);
  });

  test('fails with 400 for a malformed label selector', async () => {
    const reply = await server.get(`${FLUNDERS}?labelSelector=${encodeURIComponent('a in (b')}`);
    expect(reply.status).toBe(400);
    expect(reply.body.message).toMatch(/unable to parse requirement/);
  });

  test.each([
    ['a/b/c=x', /invalid label key "a\/b\/c": a qualified name must consist of/],
    ['Bad_Prefix/app=x', /invalid label key "Bad_Prefix\/app": prefix part a lowercase RFC 1123 subdomain/],
    [`app=${'v'.repeat(64)}`, /invalid label value: "v{64}": must be no more than 63 characters/],
    ['app in (ok,-bad)', /invalid label value: "-bad": a valid label must be an empty string/],
  ])('fails with 400 for label selector %s, naming what is wrong (as metadata validation words it)', async (selector, message) => {
    // WHEN
    const reply = await server.get(`${FLUNDERS}?labelSelector=${encodeURIComponent(selector)}`);

    // THEN
    expect(reply.status).toBe(400);
    expect(reply.body.message).toMatch(message);
  });

  test('fieldSelector on metadata.name and metadata.namespace; 400 for other fields', async () => {
    await server.post(FLUNDERS, flunder('x'));
    await server.post(FLUNDERS, flunder('y'));
    await server.post('/apis/wardle.example.com/v1alpha1/namespaces/ns2/flunders', flunder('x'));
    expect(names(await server.get(`${FLUNDERS}?fieldSelector=metadata.name%3Dx`))).toEqual(['x']);
    expect(names(await server.get(`${FLUNDERS}?fieldSelector=metadata.name!%3Dx`))).toEqual(['y']);
    const across = await server.get('/apis/wardle.example.com/v1alpha1/flunders?fieldSelector=metadata.namespace%3Dns2');
    expect(across.body.items.map((i: { metadata: { namespace: string } }) => i.metadata.namespace)).toEqual(['ns2']);
    const bad = await server.get(`${FLUNDERS}?fieldSelector=spec.reference%3Dx`);
    expect(bad.status).toBe(400);
    expect(bad.body.message).toBe('field label not supported: spec.reference');
  });

  test('limit and continue page through every object exactly once, with remainingItemCount', async () => {
    // GIVEN 7 objects
    for (let i = 0; i < 7; i++) await server.post(FLUNDERS, flunder(`f${i}`));

    // WHEN paging 3 at a time, with a write in between pages
    const first = await server.get(`${FLUNDERS}?limit=3`);
    await server.post(FLUNDERS, flunder('f9-late'));
    const second = await server.get(`${FLUNDERS}?limit=3&continue=${encodeURIComponent(first.body.metadata.continue)}`);
    const third = await server.get(`${FLUNDERS}?limit=3&continue=${encodeURIComponent(second.body.metadata.continue)}`);

    // THEN pages are consistent with the first page's snapshot
    expect(names(first)).toEqual(['f0', 'f1', 'f2']);
    expect(first.body.metadata.remainingItemCount).toBe(4);
    expect(names(second)).toEqual(['f3', 'f4', 'f5']);
    expect(second.body.metadata.remainingItemCount).toBe(1);
    expect(names(third)).toEqual(['f6']);
    expect(third.body.metadata.continue).toBeUndefined();
    expect(third.body.metadata.remainingItemCount).toBeUndefined();
    expect(second.body.metadata.resourceVersion).toBe(first.body.metadata.resourceVersion);
  });

  test('with a selector, limit counts matching objects and remainingItemCount is left out', async () => {
    for (let i = 0; i < 6; i++) await server.post(FLUNDERS, flunder(`s${i}`, {}, { labels: { even: String(i % 2 === 0) } }));
    const first = await server.get(`${FLUNDERS}?limit=2&labelSelector=even%3Dtrue`);
    expect(names(first)).toEqual(['s0', 's2']);
    expect(first.body.metadata.remainingItemCount).toBeUndefined();
    const second = await server.get(`${FLUNDERS}?limit=2&labelSelector=even%3Dtrue&continue=${encodeURIComponent(first.body.metadata.continue)}`);
    expect(names(second)).toEqual(['s4']);
    expect(second.body.metadata.continue).toBeUndefined();
  });

  test('fails with 400 for a malformed continue token and for continue with a resourceVersion', async () => {
    expect((await server.get(`${FLUNDERS}?continue=garbage`)).status).toBe(400);
    await server.post(FLUNDERS, flunder('a'));
    await server.post(FLUNDERS, flunder('b'));
    const first = await server.get(`${FLUNDERS}?limit=1`);
    const reply = await server.get(`${FLUNDERS}?limit=1&resourceVersion=5&continue=${encodeURIComponent(first.body.metadata.continue)}`);
    expect(reply.status).toBe(400);
    expect(reply.body.message).toBe('specifying resource version is not allowed when using continue');
  });

  test('resourceVersionMatch=Exact lists the snapshot at that resourceVersion', async () => {
    // GIVEN a list taken, then changes
    await server.post(FLUNDERS, flunder('keep', { reference: 'old' }));
    await server.post(FLUNDERS, flunder('gone'));
    const before = await server.get(FLUNDERS);
    await server.put(`${FLUNDERS}/keep`, flunder('keep', { reference: 'new' }));
    await server.delete(`${FLUNDERS}/gone`);
    await server.post(FLUNDERS, flunder('born'));

    // WHEN
    const exact = await server.get(`${FLUNDERS}?resourceVersion=${before.body.metadata.resourceVersion}&resourceVersionMatch=Exact`);

    // THEN
    expect(exact.status).toBe(200);
    expect(exact.body).toEqual(before.body);
  });

  test('a paginated list at a resourceVersion without resourceVersionMatch lists the snapshot at it, as upstream\'s legacy case', async () => {
    // GIVEN a resourceVersion, then a change
    await server.post(FLUNDERS, flunder('a', { reference: 'old' }));
    const before = await server.get(FLUNDERS);
    await server.put(`${FLUNDERS}/a`, flunder('a', { reference: 'new' }));
    await server.post(FLUNDERS, flunder('b'));

    // WHEN a list with a limit asks for it (etcd3's GetList reads it Exact; without limit it is NotOlderThan)
    const paged = await server.get(`${FLUNDERS}?limit=10&resourceVersion=${before.body.metadata.resourceVersion}`);
    const unpaged = await server.get(`${FLUNDERS}?resourceVersion=${before.body.metadata.resourceVersion}`);

    // THEN
    expect(paged.status).toBe(200);
    expect(paged.body).toEqual(before.body);
    expect(names(unpaged)).toEqual(['a', 'b']);
  });

  test('fails with 504 for a resourceVersion from the future, after the store waited for it', async () => {
    // GIVEN a resourceVersion ahead of the store
    const current = Number((await server.get(FLUNDERS)).body.metadata.resourceVersion);
    const future = current + 1000;

    // WHEN a list asks for it (NotOlderThan, the default match)
    const reply = await server.get(`${FLUNDERS}?resourceVersion=${future}`);

    // THEN upstream's Timeout Status, with the cause client-go's reflector looks for, and Retry-After
    expect(reply.status).toBe(504);
    expect(reply.body).toMatchObject({
      reason: 'Timeout',
      message: `Timeout: Too large resource version: ${future}, current: ${current}`,
      details: { causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }], retryAfterSeconds: 1 },
    });
    expect(reply.headers['retry-after']).toBe('1');
  });

  test.each([
    ['resourceVersionMatch=Exact', 'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided'],
    ['resourceVersion=0&resourceVersionMatch=Exact', 'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'],
    ['resourceVersion=1&resourceVersionMatch=Sometimes', 'resourceVersionMatch: Unsupported value: "Sometimes": supported values: "Exact", "NotOlderThan", ""'],
    ['sendInitialEvents=true', 'sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list'],
  ])('fails with 422 Invalid ListOptions for %s', async (query, message) => {
    const reply = await server.get(`${FLUNDERS}?${query}`);
    expect(reply.status).toBe(422);
    expect(reply.body.message).toBe(`ListOptions.meta.k8s.io "" is invalid: ${message}`);
  });
});

describe('list over compacted history', () => {
  beforeEach(async () => {
    server = await RegistryServer.start({ storage: { historyEvents: 5 } });
  });

  test('an expired continue token fails with 410 Expired and a token that continues at the latest version', async () => {
    // GIVEN a first page
    for (let i = 0; i < 4; i++) await server.post(FLUNDERS, flunder(`e${i}`));
    const first = await server.get(`${FLUNDERS}?limit=2`);
    // ... and enough writes to compact its snapshot away
    for (let i = 0; i < 6; i++) await server.put(`${FLUNDERS}/e0`, flunder('e0', {}, { labels: { n: String(i) } }));

    // WHEN continuing
    const expired = await server.get(`${FLUNDERS}?limit=2&continue=${encodeURIComponent(first.body.metadata.continue)}`);

    // THEN 410 with upstream's message and a fresh token
    expect(expired.status).toBe(410);
    expect(expired.body.reason).toBe('Expired');
    expect(expired.body.message).toMatch(/^The provided continue parameter is too old to display a consistent list result\./);
    const fresh = expired.body.metadata.continue as string;
    expect(fresh).toBeTruthy();
    const rest = await server.get(`${FLUNDERS}?limit=2&continue=${encodeURIComponent(fresh)}`);
    expect(rest.status).toBe(200);
    expect(names(rest)).toEqual(['e2', 'e3']);
  });

  test('an Exact list at a compacted resourceVersion fails with 410', async () => {
    await server.post(FLUNDERS, flunder('x'));
    const before = await server.get(FLUNDERS);
    for (let i = 0; i < 6; i++) await server.put(`${FLUNDERS}/x`, flunder('x', {}, { labels: { n: String(i) } }));
    const reply = await server.get(`${FLUNDERS}?resourceVersion=${before.body.metadata.resourceVersion}&resourceVersionMatch=Exact`);
    expect(reply.status).toBe(410);
    expect(reply.body.message).toBe('The resourceVersion for the provided list is too old.');
  });
});
