import { FLUNDERS, FLUNDERS_BETA, RegistryServer, WatchStream, flunder } from './support/registry-server';

let server: RegistryServer;
const streams: WatchStream[] = [];

async function watch(path: string, accept?: string): Promise<WatchStream> {
  const stream = await server.watch(path, accept);
  streams.push(stream);
  return stream;
}

afterEach(async () => {
  for (const stream of streams.splice(0)) stream.close();
  await server.close();
});

function summary(events: { type: string; object: { metadata: { name?: string; resourceVersion: string } } }[]): string[] {
  return events.map((e) => `${e.type} ${e.object.metadata.name ?? ''}`.trim());
}

describe('watch', () => {
  beforeEach(async () => {
    server = await RegistryServer.start({ bookmarkIntervalMs: 100 });
  });

  test('resourceVersion unset: 200 chunked JSON lines, ADDED for current objects, then changes as they happen', async () => {
    // GIVEN
    await server.post(FLUNDERS, flunder('a'));

    // WHEN
    const stream = await watch(`${FLUNDERS}?watch=1`);
    await stream.waitFor(1);
    const updated = await server.put(`${FLUNDERS}/a`, flunder('a', { reference: 'x' }));
    await server.post(FLUNDERS, flunder('b'));
    await server.delete(`${FLUNDERS}/a`);
    const events = await stream.waitFor(4);

    // THEN
    expect(stream.status).toBe(200);
    expect(stream.headers['content-type']).toBe('application/json');
    expect(stream.headers['transfer-encoding']).toBe('chunked');
    expect(summary(events)).toEqual(['ADDED a', 'MODIFIED a', 'ADDED b', 'DELETED a']);
    expect(events[1].object).toEqual(updated.body);
    const versions = events.map((e) => Number(e.object.metadata.resourceVersion));
    expect([...versions].sort((x, y) => x - y)).toEqual(versions);
  });

  test('resourceVersion N: every change after N, none before', async () => {
    const first = await server.post(FLUNDERS, flunder('a'));
    await server.post(FLUNDERS, flunder('b'));
    await server.post(FLUNDERS, flunder('c'));
    const stream = await watch(`${FLUNDERS}?watch=true&resourceVersion=${first.body.metadata.resourceVersion}`);
    expect(summary(await stream.waitFor(2))).toEqual(['ADDED b', 'ADDED c']);
  });

  test('a watch in another version sees objects converted to it', async () => {
    const stream = await watch(`${FLUNDERS_BETA}?watch=1`);
    await server.post(FLUNDERS, flunder('conv', { reference: 'other', referenceType: 'Fischer' }));
    const [event] = await stream.waitFor(1);
    expect(event.object).toMatchObject({ apiVersion: 'wardle.example.com/v1beta1', spec: { fischerReference: 'other', referenceType: 'Fischer' } });
  });

  test('label selector: an object that stops matching is DELETED, one that starts matching is ADDED', async () => {
    await server.post(FLUNDERS, flunder('sel', {}, { labels: { app: 'x' } }));
    const stream = await watch(`${FLUNDERS}?watch=1&labelSelector=app%3Dx`);
    await stream.waitFor(1);
    await server.post(FLUNDERS, flunder('other', {}, { labels: { app: 'y' } }));
    await server.put(`${FLUNDERS}/sel`, flunder('sel', {}, { labels: { app: 'y' } }));
    await server.put(`${FLUNDERS}/other`, flunder('other', {}, { labels: { app: 'x' } }));
    const events = await stream.waitFor(3);
    expect(summary(events)).toEqual(['ADDED sel', 'DELETED sel', 'ADDED other']);
    // The DELETED carries the last matching state at the event's resourceVersion.
    expect(events[1].object.metadata.labels).toEqual({ app: 'x' });
  });

  test('a too-old resourceVersion answers 200, then an ERROR event with a 410 Expired Status', async () => {
    // GIVEN a store that keeps only 5 events
    await server.close();
    server = await RegistryServer.start({ storage: { historyEvents: 5 } });
    const first = await server.post(FLUNDERS, flunder('old'));
    for (let i = 0; i < 8; i++) await server.put(`${FLUNDERS}/old`, flunder('old', {}, { labels: { n: String(i) } }));

    // WHEN
    const stream = await watch(`${FLUNDERS}?watch=1&resourceVersion=${first.body.metadata.resourceVersion}`);
    const [event] = await stream.waitFor(1);
    await stream.ended;

    // THEN
    expect(stream.status).toBe(200);
    expect(event.type).toBe('ERROR');
    expect(event.object).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });
    expect(event.object.message).toMatch(new RegExp(`^too old resource version: ${first.body.metadata.resourceVersion} \\(\\d+\\)$`));
  });

  test('allowWatchBookmarks: periodic BOOKMARK events carrying only the resourceVersion', async () => {
    const created = await server.post(FLUNDERS, flunder('bm'));
    const stream = await watch(`${FLUNDERS}?watch=1&allowWatchBookmarks=true&resourceVersion=${created.body.metadata.resourceVersion}`);
    await server.post('/apis/wardle.example.com/v1alpha1/fischers', { metadata: { name: 'elsewhere' } });
    const [bookmark] = await stream.waitFor(1);
    expect(bookmark).toEqual({
      type: 'BOOKMARK',
      object: { kind: 'Flunder', apiVersion: 'wardle.example.com/v1alpha1', metadata: { resourceVersion: expect.stringMatching(/^\d+$/) } },
    });
    expect(Number(bookmark.object.metadata.resourceVersion)).toBeGreaterThanOrEqual(Number(created.body.metadata.resourceVersion));
  });

  test('without allowWatchBookmarks no bookmark is sent', async () => {
    const { resourceVersion } = (await server.get(FLUNDERS)).body.metadata;
    const stream = await watch(`${FLUNDERS}?watch=1&resourceVersion=${resourceVersion}`);
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(stream.events).toEqual([]);
  });

  test('sendInitialEvents=true: ADDED for all, then a BOOKMARK annotated k8s.io/initial-events-end, then changes', async () => {
    await server.post(FLUNDERS, flunder('i1'));
    const last = await server.post(FLUNDERS, flunder('i2'));
    const stream = await watch(`${FLUNDERS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true`);
    const initial = await stream.waitFor(3);
    expect(summary(initial)).toEqual(['ADDED i1', 'ADDED i2', 'BOOKMARK']);
    expect(initial[2].object.metadata).toEqual({ resourceVersion: last.body.metadata.resourceVersion, annotations: { 'k8s.io/initial-events-end': 'true' } });
    await server.post(FLUNDERS, flunder('i3'));
    const next = (await stream.waitFor(4))[3];
    expect(summary([next])).toEqual(['ADDED i3']);
  });

  test('sendInitialEvents=false with resourceVersion unset: only changes from now', async () => {
    await server.post(FLUNDERS, flunder('before'));
    const stream = await watch(`${FLUNDERS}?watch=1&sendInitialEvents=false&resourceVersionMatch=NotOlderThan`);
    await server.post(FLUNDERS, flunder('after'));
    expect(summary(await stream.waitFor(1))).toEqual(['ADDED after']);
  });

  test.each([
    ['sendInitialEvents=true&allowWatchBookmarks=true', 'resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan'],
    ['resourceVersionMatch=NotOlderThan', 'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided'],
    ['sendInitialEvents=true&resourceVersionMatch=NotOlderThan', 'allowWatchBookmarks: Forbidden: allowWatchBookmarks must be set to true when sendInitialEvents is set'],
  ])('fails with 422 before streaming for %s', async (query, message) => {
    const reply = await server.get(`${FLUNDERS}?watch=1&${query}`);
    expect(reply.status).toBe(422);
    expect(reply.body.message).toBe(`ListOptions.meta.k8s.io "" is invalid: ${message}`);
  });

  test('timeoutSeconds ends the stream cleanly', async () => {
    const started = Date.now();
    const stream = await watch(`${FLUNDERS}?watch=1&timeoutSeconds=1`);
    await stream.ended;
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(server.serving.watchCount()).toBe(0);
  });

  test('timeoutSeconds=0 means the default timeout, not an immediate end', async () => {
    const stream = await watch(`${FLUNDERS}?watch=1&timeoutSeconds=0`);
    const result = await Promise.race([stream.ended.then(() => 'ended'), new Promise((resolve) => setTimeout(() => resolve('open'), 300))]);
    expect(result).toBe('open');
  });

  test('watchCount counts open watches; close() ends them cleanly; a client disconnect ends its watch', async () => {
    const one = await watch(`${FLUNDERS}?watch=1`);
    const two = await watch(`${FLUNDERS}?watch=1`);
    await waitUntil(() => server.serving.watchCount() === 2);
    one.close();
    await waitUntil(() => server.serving.watchCount() === 1);
    await server.serving.close();
    await two.ended;
    expect(server.serving.watchCount()).toBe(0);
    expect(server.storage.watcherCount()).toBe(0);
  });

  test('Table watch: the first event carries columnDefinitions, later ones only rows', async () => {
    const stream = await watch(`${FLUNDERS}?watch=1`, 'application/json;as=Table;v=v1;g=meta.k8s.io');
    await server.post(FLUNDERS, flunder('t1', { reference: 'r' }));
    await server.post(FLUNDERS, flunder('t2'));
    const [first, second] = await stream.waitFor(2);
    expect(first.object.kind).toBe('Table');
    expect(first.object.columnDefinitions.map((c: { name: string }) => c.name)).toEqual(['Name', 'Reference-Type', 'Reference', 'Age']);
    expect(first.object.rows[0].cells.slice(0, 3)).toEqual(['t1', 'Flunder', 'r']);
    expect(second.object.columnDefinitions).toBeUndefined();
    expect(second.object.rows[0].cells[0]).toBe('t2');
    expect(second.object.rows[0].object.kind).toBe('PartialObjectMetadata');
  });

  test('a Table watch started later shows each row’s Age at its own time, not one computed for an earlier watch', async () => {
    // GIVEN two objects, listed by a Table watch now, with the clock held still (creationTimestamp
    // has whole seconds: a real clock may pass a second boundary between create and watch)
    const accept = 'application/json;as=Table;v=v1;g=meta.k8s.io';
    const start = Math.floor(Date.now() / 1000) * 1000 + 100;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => start);
    let events;
    try {
      await server.post(FLUNDERS, flunder('age1'));
      await server.post(FLUNDERS, flunder('age2'));
      const early = await watch(`${FLUNDERS}?watch=1`, accept);
      expect((await early.waitFor(2)).map((e) => e.object.rows[0].cells.at(-1))).toEqual(['0s', '0s']);

      // WHEN another Table watch lists them three hours later
      clock.mockImplementation(() => start + 3 * 3600 * 1000);
      events = await (await watch(`${FLUNDERS}?watch=1`, accept)).waitFor(2);
    } finally {
      clock.mockRestore();
    }

    // THEN both rows are three hours old
    expect(events.map((e) => e.object.rows[0].cells.at(-1))).toEqual(['3h', '3h']);
  });

  test('PartialObjectMetadata watch (as the garbage collector asks, protobuf first)', async () => {
    const accept =
      'application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';
    const stream = await watch(`${FLUNDERS}?watch=1&allowWatchBookmarks=true`, accept);
    await server.post(FLUNDERS, flunder('pom', {}, { labels: { a: 'b' } }));
    const [event] = await stream.waitFor(1);
    expect(event.type).toBe('ADDED');
    expect(event.object).toEqual({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: expect.objectContaining({ name: 'pom', labels: { a: 'b' } }) });
    const bookmark = (await stream.waitFor(2))[1];
    expect(bookmark.object.kind).toBe('PartialObjectMetadata');
  });

  test('one change reaches 500 watchers', async () => {
    // GIVEN 500 open watches from the current resourceVersion
    const { resourceVersion } = (await server.get(FLUNDERS)).body.metadata;
    const many = await Promise.all(Array.from({ length: 500 }, () => watch(`${FLUNDERS}?watch=1&resourceVersion=${resourceVersion}`)));
    await waitUntil(() => server.serving.watchCount() === 500);

    // WHEN one object is created
    const started = Date.now();
    await server.post(FLUNDERS, flunder('fanout'));
    await Promise.all(many.map((s) => s.waitFor(1)));

    // THEN every watcher saw it (the timing target is measured by the benchmark, not asserted here)
    for (const stream of many) expect(summary(stream.events)).toEqual(['ADDED fanout']);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
