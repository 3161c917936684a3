import { MemoryStorage } from '../server/storage/memory';
import { ExpiredError, KeyExistsError, NotFoundError, ProgressNotification, RevisionMismatchError, StorageEvent, TooLargeRevisionError } from '../server/storage/types';

function obj(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { metadata: { name }, ...extra };
}

describe('MemoryStorage', () => {
  let storage: MemoryStorage;

  beforeEach(() => {
    storage = new MemoryStorage();
  });

  afterEach(async () => {
    await storage.close();
  });

  test('every write takes the next revision, written into metadata.resourceVersion', async () => {
    // GIVEN
    const start = await storage.currentRevision();

    // WHEN
    const a = await storage.create('/g/r/a', obj('a'));
    const b = await storage.create('/g/r/b', obj('b'));
    const a2 = await storage.update('/g/r/a', obj('a', { x: 1 }), a.modRevision);

    // THEN
    expect([a.modRevision, b.modRevision, a2.modRevision]).toEqual([start + 1, start + 2, start + 3]);
    expect(a2.createRevision).toBe(a.createRevision);
    expect((a2.value.metadata as { resourceVersion: string }).resourceVersion).toBe(String(a2.modRevision));
    expect(await storage.currentRevision()).toBe(start + 3);
    expect((await storage.get('/g/r/a'))?.value).toEqual({ metadata: { name: 'a', resourceVersion: String(a2.modRevision) }, x: 1 });
  });

  test('stored values are frozen: callers cannot change what others read', async () => {
    const created = await storage.create('/g/r/a', obj('a', { spec: { n: 1 } }));
    expect(Object.isFrozen(created.value)).toBe(true);
    expect(() => {
      (created.value.spec as { n: number }).n = 2;
    }).toThrow(TypeError);
  });

  test('create fails on an existing key; update and delete are compare-and-swap', async () => {
    const a = await storage.create('/g/r/a', obj('a'));
    await expect(storage.create('/g/r/a', obj('a'))).rejects.toBeInstanceOf(KeyExistsError);
    await storage.update('/g/r/a', obj('a', { v: 2 }), a.modRevision);
    await expect(storage.update('/g/r/a', obj('a', { v: 3 }), a.modRevision)).rejects.toBeInstanceOf(RevisionMismatchError);
    await expect(storage.delete('/g/r/a', a.modRevision)).rejects.toBeInstanceOf(RevisionMismatchError);
    await expect(storage.update('/g/r/zz', obj('zz'), 1)).rejects.toBeInstanceOf(NotFoundError);
    const current = (await storage.get('/g/r/a'))!;
    const deleted = await storage.delete('/g/r/a', current.modRevision);
    expect(deleted.modRevision).toBe(current.modRevision + 1);
    expect((deleted.value.metadata as { resourceVersion: string }).resourceVersion).toBe(String(deleted.modRevision));
    expect(await storage.get('/g/r/a')).toBeUndefined();
  });

  test('list: by prefix in key order, with limit, startKey, filter and remaining', async () => {
    for (const key of ['/g/r/ns1/c', '/g/r/ns1/a', '/g/r/ns2/b', '/g/r/ns1/b', '/g/other/x']) await storage.create(key, obj(key));
    const all = await storage.list('/g/r/');
    expect(all.items.map((i) => i.key)).toEqual(['/g/r/ns1/a', '/g/r/ns1/b', '/g/r/ns1/c', '/g/r/ns2/b']);
    expect(all.more).toBe(false);

    const page = await storage.list('/g/r/', { limit: 2 });
    expect(page.items.map((i) => i.key)).toEqual(['/g/r/ns1/a', '/g/r/ns1/b']);
    expect(page).toMatchObject({ more: true, remaining: 2, nextKey: '/g/r/ns1/b\u0000' });
    const next = await storage.list('/g/r/', { limit: 2, startKey: page.nextKey! });
    expect(next.items.map((i) => i.key)).toEqual(['/g/r/ns1/c', '/g/r/ns2/b']);
    expect(next.more).toBe(false);

    const filtered = await storage.list('/g/r/', { limit: 1, filter: (v) => (v.metadata as { name: string }).name.endsWith('b') });
    expect(filtered.items.map((i) => i.key)).toEqual(['/g/r/ns1/b']);
    expect(filtered.more).toBe(true);
    expect(filtered.remaining).toBeUndefined();

    expect((await storage.list('/g/r/ns1/')).items).toHaveLength(3);
  });

  test('list at a past revision answers the snapshot of that revision', async () => {
    // GIVEN
    await storage.create('/g/r/a', obj('a', { v: 1 }));
    const b = await storage.create('/g/r/b', obj('b'));
    const snapshot = await storage.list('/g/r/');
    const a = (await storage.get('/g/r/a'))!;
    await storage.update('/g/r/a', obj('a', { v: 2 }), a.modRevision);
    await storage.delete('/g/r/b', b.modRevision);
    await storage.create('/g/r/c', obj('c'));

    // WHEN
    const past = await storage.list('/g/r/', { revision: snapshot.revision });

    // THEN
    expect(past.revision).toBe(snapshot.revision);
    expect(past.items).toEqual(snapshot.items);
    const pastPage = await storage.list('/g/r/', { revision: snapshot.revision, limit: 1 });
    expect(pastPage).toMatchObject({ more: true, remaining: 1 });
  });

  test('list at a compacted revision fails with ExpiredError; in the future with TooLargeRevisionError', async () => {
    storage = new MemoryStorage({ historyEvents: 3 });
    const first = await storage.create('/g/r/a', obj('a'));
    let current = first;
    for (let i = 0; i < 5; i++) current = await storage.update('/g/r/a', obj('a', { i }), current.modRevision);
    expect(storage.compactedRevision()).toBe(current.modRevision - 3);
    await expect(storage.list('/g/r/', { revision: first.modRevision })).rejects.toBeInstanceOf(ExpiredError);
    await expect(storage.list('/g/r/', { revision: current.modRevision + 10 })).rejects.toBeInstanceOf(TooLargeRevisionError);
    await expect(storage.list('/g/r/', { revision: current.modRevision - 1 })).resolves.toMatchObject({ revision: current.modRevision - 1 });
  });

  test('watch replays history after the revision, then delivers writes in order, with prevObject', async () => {
    // GIVEN
    const a = await storage.create('/g/r/a', obj('a'));
    await storage.create('/g/r/b', obj('b'));
    const events: StorageEvent[] = [];

    // WHEN
    const watch = storage.watch('/g/r/', a.modRevision, { onEvent: (e) => events.push(e) });
    const a2 = await storage.update('/g/r/a', obj('a', { v: 2 }), a.modRevision);
    await storage.create('/g/other/x', obj('x'));
    await storage.delete('/g/r/a', a2.modRevision);
    watch.stop();
    await storage.create('/g/r/late', obj('late'));

    // THEN
    expect(events.map((e) => `${e.type} ${e.key}`)).toEqual(['ADDED /g/r/b', 'MODIFIED /g/r/a', 'DELETED /g/r/a']);
    expect(events[1].prevObject).toEqual(a.value);
    expect(events[2].prevObject).toEqual(a2.value);
    expect(events.map((e) => e.revision)).toEqual([...events.map((e) => e.revision)].sort((x, y) => x - y));
    expect(storage.watcherCount()).toBe(0);
  });

  test('watch from a compacted revision fails with ExpiredError', async () => {
    storage = new MemoryStorage({ historyEvents: 2 });
    const a = await storage.create('/g/r/a', obj('a'));
    let current = a;
    for (let i = 0; i < 4; i++) current = await storage.update('/g/r/a', obj('a', { i }), current.modRevision);
    expect(() => storage.watch('/g/r/', a.modRevision, { onEvent: () => undefined })).toThrow(ExpiredError);
    expect(() => storage.watch('/g/r/', current.modRevision - 2, { onEvent: () => undefined }).stop()).not.toThrow();
  });

  test('requestProgress delivers the current revision after the events already due', async () => {
    const seen: string[] = [];
    const watch = storage.watch('/g/r/', await storage.currentRevision(), {
      onEvent: (e) => seen.push(`event ${e.revision}`),
      onProgress: (p: ProgressNotification) => seen.push(`progress ${p.revision}`),
    });
    watch.requestProgress();
    const created = await storage.create('/g/r/a', obj('a'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([`event ${created.modRevision}`, `progress ${created.modRevision}`]);
    watch.stop();
  });

  test('a throwing watcher is dropped with onError; the others keep receiving', async () => {
    const good: number[] = [];
    const errors: Error[] = [];
    const start = await storage.currentRevision();
    storage.watch('/g/r/', start, {
      onEvent: () => {
        throw new Error('boom');
      },
      onError: (e) => errors.push(e),
    });
    storage.watch('/g/r/', start, { onEvent: (e) => good.push(e.revision) });
    await storage.create('/g/r/a', obj('a'));
    await storage.create('/g/r/b', obj('b'));
    expect(good).toHaveLength(2);
    expect(errors.map((e) => e.message)).toEqual(['boom']);
    expect(storage.watcherCount()).toBe(1);
  });

  test('close ends watches and refuses writes; isReady turns false', async () => {
    storage.watch('/g/r/', await storage.currentRevision(), { onEvent: () => undefined });
    expect(storage.isReady()).toBe(true);
    await storage.close();
    expect(storage.isReady()).toBe(false);
    expect(storage.unreadyReason()).toBe('memory: storage is closed');
    expect(storage.watcherCount()).toBe(0);
    await expect(storage.create('/g/r/a', obj('a'))).rejects.toThrow(/closed/);
  });

  test('fails on a non-positive history size', () => {
    expect(() => new MemoryStorage({ historyEvents: 0 })).toThrow(/historyEvents 0 is not a positive integer/);
  });

  test('fails on an initial revision that is not a positive safe integer', () => {
    expect(() => new MemoryStorage({ initialRevision: 0 })).toThrow(/initialRevision 0 is not a positive safe integer/);
    expect(() => new MemoryStorage({ initialRevision: 2 ** 53 })).toThrow(/initialRevision 9007199254740992 is not a positive safe integer/);
  });

  describe('revisions across restarts', () => {
    test('the empty store starts at its start time in microseconds, with everything below compacted', async () => {
      // GIVEN
      const before = Date.now() * 1000;

      // WHEN
      const fresh = new MemoryStorage();

      // THEN
      const start = await fresh.currentRevision();
      expect(start).toBeGreaterThanOrEqual(before);
      expect(start).toBeLessThanOrEqual(Date.now() * 1000);
      expect(fresh.compactedRevision()).toBe(start);
      await expect(fresh.list('/g/r/', { revision: start })).resolves.toMatchObject({ items: [], revision: start });
      await expect(fresh.list('/g/r/', { revision: start - 1 })).rejects.toBeInstanceOf(ExpiredError);
      expect(() => fresh.watch('/g/r/', start - 1, { onEvent: () => undefined })).toThrow(ExpiredError);
      await fresh.close();
    });

    test('a resourceVersion of the previous process is expired in the next one: the client relists', async () => {
      // GIVEN a process that wrote a few objects, and a client that saw the last revision
      const previous = new MemoryStorage();
      let last = await previous.create('/g/r/a', obj('a'));
      for (let i = 0; i < 5; i++) last = await previous.update('/g/r/a', obj('a', { i }), last.modRevision);
      await previous.close();
      const startedAt = Date.now();
      while (Date.now() === startedAt) await new Promise((resolve) => setImmediate(resolve)); // a restart takes longer than 1 ms

      // WHEN the process restarts
      const next = new MemoryStorage();

      // THEN the client's revision is below the new start: 410, never a silently different history
      expect(await next.currentRevision()).toBeGreaterThan(last.modRevision);
      await expect(next.list('/g/r/', { revision: last.modRevision })).rejects.toBeInstanceOf(ExpiredError);
      expect(() => next.watch('/g/r/', last.modRevision, { onEvent: () => undefined })).toThrow(ExpiredError);
      await next.close();
    });

    test('initialRevision chooses the start revision', async () => {
      const fixed = new MemoryStorage({ initialRevision: 1 });
      expect(await fixed.currentRevision()).toBe(1);
      expect((await fixed.create('/g/r/a', obj('a'))).modRevision).toBe(2);
      await fixed.close();
    });
  });

  describe('revisions ahead of the store', () => {
    beforeEach(async () => {
      await storage.close();
      storage = new MemoryStorage({ futureRevisionWaitMs: 200 });
    });

    test('list with minRevision ahead waits for the write that reaches it', async () => {
      // GIVEN
      const start = await storage.currentRevision();

      // WHEN
      const listing = storage.list('/g/r/', { minRevision: start + 2 });
      await storage.create('/g/r/a', obj('a'));
      await storage.create('/g/r/b', obj('b'));

      // THEN
      const listed = await listing;
      expect(listed.revision).toBe(start + 2);
      expect(listed.items.map((i) => i.key)).toEqual(['/g/r/a', '/g/r/b']);
    });

    test('fails list with minRevision ahead with TooLargeRevisionError after the wait', async () => {
      const start = await storage.currentRevision();
      await expect(storage.list('/g/r/', { minRevision: start + 5 })).rejects.toEqual(new TooLargeRevisionError(start + 5, start));
    });

    test('fails list at an exact future revision at once, without waiting', async () => {
      const start = await storage.currentRevision();
      const listing = storage.list('/g/r/', { revision: start + 1, minRevision: start });
      await storage.create('/g/r/a', obj('a'));
      await expect(listing).rejects.toBeInstanceOf(TooLargeRevisionError);
    });

    test('list with minRevision at or below the current revision answers the current one', async () => {
      const created = await storage.create('/g/r/a', obj('a'));
      await expect(storage.list('/g/r/', { minRevision: created.modRevision - 1 })).resolves.toMatchObject({ revision: created.modRevision });
    });

    test('a watch ahead of the store delivers only the writes after its revision once reached', async () => {
      // GIVEN
      const start = await storage.currentRevision();
      const events: number[] = [];
      const errors: Error[] = [];

      // WHEN
      const watch = storage.watch('/g/r/', start + 2, { onEvent: (e) => events.push(e.revision), onError: (e) => errors.push(e) });
      for (const name of ['a', 'b', 'c']) await storage.create(`/g/r/${name}`, obj(name));
      await new Promise((resolve) => setTimeout(resolve, 300)); // past the wait: the reached watch must not fail

      // THEN
      expect(events).toEqual([start + 3]);
      expect(errors).toEqual([]);
      watch.stop();
    });

    test('fails a watch ahead of the store with TooLargeRevisionError on onError after the wait', async () => {
      // GIVEN
      const start = await storage.currentRevision();
      const events: number[] = [];

      // WHEN
      const failed = new Promise<Error>((resolve) => storage.watch('/g/r/', start + 5, { onEvent: (e) => events.push(e.revision), onError: resolve }));
      await storage.create('/g/r/a', obj('a'));

      // THEN
      expect(await failed).toEqual(new TooLargeRevisionError(start + 5, start + 1));
      expect(events).toEqual([]);
      expect(storage.watcherCount()).toBe(0);
    });

    test('a watch stopped while waiting never calls onError', async () => {
      const errors: Error[] = [];
      storage.watch('/g/r/', (await storage.currentRevision()) + 1, { onEvent: () => undefined, onError: (e) => errors.push(e) }).stop();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(errors).toEqual([]);
    });

    test('close fails a waiting list and ends a waiting watch without onError', async () => {
      const start = await storage.currentRevision();
      const errors: Error[] = [];
      storage.watch('/g/r/', start + 1, { onEvent: () => undefined, onError: (e) => errors.push(e) });
      const listing = storage.list('/g/r/', { minRevision: start + 1 });
      await storage.close();
      await expect(listing).rejects.toThrow(/closed/);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(errors).toEqual([]);
    });
  });

  describe('compact', () => {
    test('reads and watches below the compacted revision fail with ExpiredError; at it they work', async () => {
      // GIVEN
      const a = await storage.create('/g/r/a', obj('a', { v: 1 }));
      const b = await storage.create('/g/r/b', obj('b'));
      const a2 = await storage.update('/g/r/a', obj('a', { v: 2 }), a.modRevision);
      await storage.delete('/g/r/b', b.modRevision);

      // WHEN
      await storage.compact(a2.modRevision);

      // THEN
      expect(storage.compactedRevision()).toBe(a2.modRevision);
      await expect(storage.list('/g/r/', { revision: b.modRevision })).rejects.toEqual(new ExpiredError(b.modRevision, a2.modRevision));
      expect(() => storage.watch('/g/r/', b.modRevision, { onEvent: () => undefined })).toThrow(ExpiredError);
      const atCompacted = await storage.list('/g/r/', { revision: a2.modRevision });
      expect(atCompacted.items.map((i) => i.value)).toEqual([a2.value, b.value]);
      const events: StorageEvent[] = [];
      storage.watch('/g/r/', a2.modRevision, { onEvent: (e) => events.push(e) }).stop();
      expect(events.map((e) => `${e.type} ${e.key}`)).toEqual(['DELETED /g/r/b']);
    });

    test('compacting at or below the compacted revision does nothing', async () => {
      const a = await storage.create('/g/r/a', obj('a'));
      const a2 = await storage.update('/g/r/a', obj('a', { v: 2 }), a.modRevision);
      await storage.compact(a2.modRevision);
      await storage.compact(a.modRevision);
      expect(storage.compactedRevision()).toBe(a2.modRevision);
    });

    test('fails to compact ahead of the current revision with TooLargeRevisionError', async () => {
      const current = await storage.currentRevision();
      await expect(storage.compact(current + 1)).rejects.toEqual(new TooLargeRevisionError(current + 1, current));
      expect(storage.compactedRevision()).toBe(current);
    });
  });
});
