import { WARDLE } from '../apis/wardle';
import { resourcePrefixes } from '../server/registry';
import type { MemoryStorage } from '../server/storage/memory';
import { GetOptions, ListOptions, Storage, StorageUnavailableError, TooLargeRevisionError, WatchCallbacks } from '../server/storage/types';
import { FISCHERS, FLUNDERS, RegistryServer, flunder } from './support/registry-server';

/**
 * What the registry asks of its storage and how it answers what the storage says: the
 * resourceVersion semantics of LIST and WATCH, future revisions, an unreachable store, and the
 * key layout.
 */

let server: RegistryServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** The memory store with some methods replaced. */
function overriding(storage: MemoryStorage, overrides: Partial<Storage>): Storage {
  return new Proxy(storage, {
    get(target, property, receiver) {
      if (Object.prototype.hasOwnProperty.call(overrides, property)) return overrides[property as keyof Storage];
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** A server whose storage records the options of every list. */
async function recordingLists(): Promise<{ server: RegistryServer; lists: ListOptions[] }> {
  const lists: ListOptions[] = [];
  const started = await RegistryServer.start({
    wrapStorage: (memory) =>
      overriding(memory, {
        list: (prefix, options = {}) => {
          const { filter: _f, ...rest } = options;
          lists.push(rest);
          return memory.list(prefix, options);
        },
      }),
  });
  return { server: started, lists };
}

describe('LIST resourceVersion semantics', () => {
  test.each([
    ['resourceVersion unset: a consistent read', '', {}],
    ['resourceVersion="0": any revision (from a watch cache)', '?resourceVersion=0', { minRevision: 0 }],
    ['resourceVersion=N: not older than N', '?resourceVersion=RV', { minRevision: 'RV' }],
    ['resourceVersion=N&resourceVersionMatch=NotOlderThan', '?resourceVersion=RV&resourceVersionMatch=NotOlderThan', { minRevision: 'RV' }],
    ['resourceVersion=N&resourceVersionMatch=Exact: the snapshot at N', '?resourceVersion=RV&resourceVersionMatch=Exact', { revision: 'RV' }],
  ])('%s', async (_name, query, expected) => {
    // GIVEN a server whose storage records list options, and one object
    const recording = await recordingLists();
    server = recording.server;
    const rv = Number((await server.post(FLUNDERS, flunder('a'))).body.metadata.resourceVersion);
    recording.lists.length = 0;

    // WHEN a list is asked with that resourceVersion
    const reply = await server.get(`${FLUNDERS}${query.replace('RV', String(rv))}`);

    // THEN it succeeds, and the storage was asked exactly that
    expect(reply.status).toBe(200);
    const want = Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, v === 'RV' ? rv : v]));
    expect(recording.lists).toEqual([want]);
  });

  test('a continue token reads its snapshot from its key', async () => {
    // GIVEN two objects and a first page
    const recording = await recordingLists();
    server = recording.server;
    await server.post(FLUNDERS, flunder('a'));
    await server.post(FLUNDERS, flunder('b'));
    const first = await server.get(`${FLUNDERS}?limit=1`);
    recording.lists.length = 0;

    // WHEN the next page is asked
    const next = await server.get(`${FLUNDERS}?limit=1&continue=${first.body.metadata.continue}`);

    // THEN the storage read at the first page's revision, from the key the store said continues it (under the resource's prefix)
    expect(next.body.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(['b']);
    expect(recording.lists).toEqual([{ limit: 1, revision: Number(first.body.metadata.resourceVersion), startKey: expect.stringMatching(/^\/wardle\.example\.com\/flunders\/ns1\/a/) }]);
  });

  test('fails with 504 Too large resource version when the store cannot reach the revision, with no check of its own', async () => {
    // GIVEN a store that answers every list with TooLargeRevisionError at once, and never asked for its current revision
    server = await RegistryServer.start({
      wrapStorage: (memory) =>
        overriding(memory, {
          list: () => Promise.reject(new TooLargeRevisionError(120, 100)),
          currentRevision: () => Promise.reject(new Error('the registry must not ask')),
        }),
    });

    // WHEN a list asks for a resourceVersion (NotOlderThan)
    const reply = await server.get(`${FLUNDERS}?resourceVersion=120&resourceVersionMatch=NotOlderThan`);

    // THEN 504 with upstream's message
    expect(reply.status).toBe(504);
    expect(reply.body).toMatchObject({ kind: 'Status', code: 504, reason: 'Timeout', message: 'Timeout: Too large resource version: 120, current: 100' });
    expect(reply.headers['retry-after']).toBe('1');
  });
});

describe('GET resourceVersion semantics', () => {
  /** A server whose storage records the options of every get. */
  async function recordingGets(): Promise<{ server: RegistryServer; gets: GetOptions[] }> {
    const gets: GetOptions[] = [];
    const started = await RegistryServer.start({
      wrapStorage: (memory) =>
        overriding(memory, {
          get: (key, options) => {
            gets.push(options ?? {});
            return memory.get(key, options);
          },
        }),
    });
    return { server: started, gets };
  }

  test.each([
    ['resourceVersion unset: a consistent read', '', {}],
    ['resourceVersion="": a consistent read', '?resourceVersion=', {}],
    ['resourceVersion="0": any revision (from a watch cache)', '?resourceVersion=0', { minRevision: 0 }],
    ['resourceVersion=N: not older than N', '?resourceVersion=RV', { minRevision: 'RV' }],
  ])('%s', async (_name, query, expected) => {
    // GIVEN a server whose storage records get options, and one object
    const recording = await recordingGets();
    server = recording.server;
    const rv = Number((await server.post(FLUNDERS, flunder('a'))).body.metadata.resourceVersion);
    recording.gets.length = 0;

    // WHEN the object is read with that resourceVersion
    const reply = await server.get(`${FLUNDERS}/a${query.replace('RV', String(rv))}`);

    // THEN it is answered, and the storage was asked exactly that
    expect(reply.status).toBe(200);
    expect(reply.body.metadata).toMatchObject({ name: 'a', resourceVersion: String(rv) });
    const want = Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, v === 'RV' ? rv : v]));
    expect(recording.gets).toEqual([want]);
  });

  test('the reads that a patch and a delete make stay consistent reads (no options)', async () => {
    // GIVEN a server whose storage records get options
    const recording = await recordingGets();
    server = recording.server;

    // WHEN an object is created, patched and deleted
    await server.post(FLUNDERS, flunder('a'));
    await server.patch(`${FLUNDERS}/a`, { spec: { reference: 'x' } });
    await server.delete(`${FLUNDERS}/a`);

    // THEN the patch's read and the delete's were consistent
    expect(recording.gets).toEqual([{}, {}]);
  });

  test('fails with 400 on a resourceVersion that is not a number, as a list does', async () => {
    // GIVEN one object
    server = await RegistryServer.start();
    await server.post(FLUNDERS, flunder('a'));

    // WHEN it is read with resourceVersion=abc
    const reply = await server.get(`${FLUNDERS}/a?resourceVersion=abc`);

    // THEN 400 with the list's message
    expect(reply.status).toBe(400);
    expect(reply.body).toMatchObject({ kind: 'Status', code: 400, reason: 'BadRequest', message: 'invalid resource version "abc": a resourceVersion is a non-negative integer' });
  });

  test('fails with 504 Too large resource version once the store gave up waiting for N', async () => {
    // GIVEN a store that waits 200 ms for a future revision, and one object
    server = await RegistryServer.start({ storage: { futureRevisionWaitMs: 200 } });
    const rv = Number((await server.post(FLUNDERS, flunder('a'))).body.metadata.resourceVersion);

    // WHEN the object is read not older than 5 revisions ahead
    const reply = await server.get(`${FLUNDERS}/a?resourceVersion=${rv + 5}`);

    // THEN 504 with upstream's message
    expect(reply.status).toBe(504);
    expect(reply.body).toMatchObject({ kind: 'Status', code: 504, reason: 'Timeout', message: `Timeout: Too large resource version: ${rv + 5}, current: ${rv}` });
  });
});

describe('an unreachable store', () => {
  const down = (indeterminate: boolean) => () => Promise.reject(new StorageUnavailableError('etcd: connect ECONNREFUSED 127.0.0.1:2379', indeterminate));

  test('fails reads with 503 ServiceUnavailable and Retry-After', async () => {
    // GIVEN a store that cannot be reached
    server = await RegistryServer.start({ wrapStorage: (memory) => overriding(memory, { get: down(false), list: down(false) }) });

    // WHEN an object and a list are read
    const get = await server.get(`${FLUNDERS}/a`);
    const list = await server.get(FLUNDERS);

    // THEN both are 503 naming the store, with Retry-After
    for (const reply of [get, list]) {
      expect(reply.status).toBe(503);
      expect(reply.body).toMatchObject({ kind: 'Status', code: 503, reason: 'ServiceUnavailable', message: 'etcd: connect ECONNREFUSED 127.0.0.1:2379', details: { retryAfterSeconds: 1 } });
      expect(reply.headers['retry-after']).toBe('1');
    }
  });

  test('fails a write that was not sent with 503', async () => {
    server = await RegistryServer.start({ wrapStorage: (memory) => overriding(memory, { create: down(false) }) });
    const reply = await server.post(FLUNDERS, flunder('a'));
    expect(reply.status).toBe(503);
    expect(reply.body.reason).toBe('ServiceUnavailable');
  });

  test('fails a write whose outcome is unknown with 504 ServerTimeout in upstream words', async () => {
    // GIVEN a store that sent a write and got no answer
    server = await RegistryServer.start({ wrapStorage: (memory) => overriding(memory, { create: down(true), update: down(true) }) });
    await server.storage.create('/wardle.example.com/flunders/ns1/b', { ...flunder('b'), metadata: { name: 'b', namespace: 'ns1', uid: 'u' } });

    // WHEN a Flunder is created, and another updated
    const create = await server.post(FLUNDERS, flunder('a'));
    const update = await server.patch(`${FLUNDERS}/b`, { spec: { reference: 'x' } });

    // THEN 504 ServerTimeout, saying the operation may be retried
    expect(create.status).toBe(504);
    expect(create.body).toMatchObject({
      reason: 'ServerTimeout',
      message: 'The create operation against flunders.wardle.example.com could not be completed at this time, please try again.',
      details: { name: 'create', group: 'wardle.example.com', kind: 'flunders', retryAfterSeconds: 2 },
    });
    expect(create.headers['retry-after']).toBe('2');
    expect(update.status).toBe(504);
    expect(update.body.message).toBe('The patch operation against flunders.wardle.example.com could not be completed at this time, please try again.');
  });

  test('fails a watch whose initial list cannot be read with a plain 503, before any stream', async () => {
    server = await RegistryServer.start({ wrapStorage: (memory) => overriding(memory, { list: down(false) }) });
    const reply = await server.get(`${FLUNDERS}?watch=1`);
    expect(reply.status).toBe(503);
    expect(reply.body.reason).toBe('ServiceUnavailable');
  });
});

describe('WATCH and storage failures', () => {
  test('fails a watch at a future resourceVersion with a 504 ERROR event once the store gave up waiting', async () => {
    // GIVEN a store that waits 200 ms for a future revision
    server = await RegistryServer.start({ storage: { futureRevisionWaitMs: 200 } });
    const current = Number((await server.get(FLUNDERS)).body.metadata.resourceVersion);

    // WHEN a watch starts ahead of it
    const stream = await server.watch(`${FLUNDERS}?watch=1&resourceVersion=${current + 5}`);
    await stream.ended;

    // THEN the stream (200, as upstream's errWatcher) carries one ERROR with the Timeout Status
    expect(stream.status).toBe(200);
    expect(stream.events).toEqual([
      {
        type: 'ERROR',
        object: expect.objectContaining({ kind: 'Status', code: 504, reason: 'Timeout', message: `Timeout: Too large resource version: ${current + 5}, current: ${current}` }),
      },
    ]);
  });

  test.each([
    ['an unavailable store ends it with 503', new StorageUnavailableError('etcd: no leader'), 503, 'ServiceUnavailable'],
    ['any other failure ends it with 500', new Error('boom'), 500, 'InternalError'],
  ])('a storage watch that fails: %s, so that clients watch again', async (_name, failure, code, reason) => {
    // GIVEN a store whose watches fail as soon as they start
    let failWatch: ((error: Error) => void) | undefined;
    server = await RegistryServer.start({
      wrapStorage: (memory) =>
        overriding(memory, {
          watch: (prefix: string, after: number, callbacks: WatchCallbacks) => {
            const watch = memory.watch(prefix, after, callbacks);
            failWatch = (error) => callbacks.onError?.(error);
            return watch;
          },
        }),
    });
    const current = (await server.get(FLUNDERS)).body.metadata.resourceVersion;
    const stream = await server.watch(`${FLUNDERS}?watch=1&resourceVersion=${current}`);

    // WHEN its storage watch fails
    failWatch!(failure);
    await stream.ended;

    // THEN the stream ends with an ERROR event carrying the Status
    expect(stream.events).toEqual([{ type: 'ERROR', object: expect.objectContaining({ kind: 'Status', code, reason }) }]);
  });
});

describe('storage keys', () => {
  test("are /<group>/<plural>/[<namespace>/]<name>, k8s.io/apiserver's (so sample-apiserver's under the same etcd prefix)", async () => {
    // GIVEN a server
    server = await RegistryServer.start();

    // WHEN a namespaced Flunder and a cluster-scoped Fischer are created
    expect((await server.post(FLUNDERS, flunder('f'))).status).toBe(201);
    expect((await server.post(FISCHERS, { metadata: { name: 'fi' } })).status).toBe(201);

    // THEN they are stored under the group and the resource
    expect((await server.storage.list('/')).items.map((item) => item.key)).toEqual(['/wardle.example.com/fischers/fi', '/wardle.example.com/flunders/ns1/f']);
  });

  test('resourcePrefixes names the prefix of every resource of a group', () => {
    expect(resourcePrefixes(WARDLE)).toEqual(['/wardle.example.com/flunders/', '/wardle.example.com/fischers/']);
  });
});
