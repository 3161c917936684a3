/**
 * One conformance suite for every `Storage` (issue 6): the same cases run against the memory
 * store, etcd, and the watch cache in front of either. It uses only the `Storage` interface;
 * whatever is store-specific happens in `setup`. A behaviour only one store has is a bug in the
 * other.
 *
 * Rules the cases keep so that any store passes them:
 * - Revisions are opaque increasing numbers: no case assumes where they start or that they
 *   grow by one (etcd's revision is global to the cluster, memory's starts at its start time).
 * - Watches may deliver synchronously (memory) or later (etcd, the cacher): events are collected
 *   and awaited with a deadline, never after a fixed sleep.
 * - A watch from a compacted revision may throw (memory knows at once) or report to `onError`
 *   (etcd learns it from its server): both are accepted.
 */
import {
  ExpiredError,
  FUTURE_REVISION_WAIT_MS,
  KeyExistsError,
  NotFoundError,
  ProgressNotification,
  RevisionMismatchError,
  Storage,
  StorageEvent,
  StorageWatch,
  StoredObject,
  StoredValue,
  TooLargeRevisionError,
} from '../../server/storage/types';
import { until } from './until';

/** The key prefixes the suite writes under: a cache in front of the store must cover them. */
export const CONFORMANCE_RESOURCE_PREFIXES: readonly string[] = ['/flunders/', '/fischers/'];

export interface StorageUnderTest {
  readonly storage: Storage;
  /**
   * Another client of the same data, as another replica's: `storage` learns of writes through it
   * only as it learns of any other client's (the store behind a cache, a second etcd client).
   * `cleanup` releases it.
   * @default - `storage` itself
   */
  readonly peer?: Storage;
  /** Releases the store and what it runs on; must also work after the case closed the storage. */
  cleanup(): Promise<void>;
}

/** How long a case waits for something that should happen promptly (event delivery on a loaded machine). */
const DELIVERY_DEADLINE_MS = 10_000;
/** How long a case waits for something that must not happen before concluding it did not. */
const QUIET_PERIOD_MS = 300;
const CASE_TIMEOUT_MS = 30_000;

function flunder(name: string, spec: Record<string, unknown> = {}): StoredValue {
  return { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name }, spec };
}

function resourceVersion(value: StoredValue): unknown {
  return (value.metadata as { resourceVersion?: unknown } | undefined)?.resourceVersion;
}

function spec(value: StoredValue): unknown {
  return value.spec;
}

function isDeepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  return Object.isFrozen(value) && Object.values(value as object).every(isDeepFrozen);
}

/** Polls `condition` until it holds or the stores' delivery deadline passes (then fails naming `what`). */
function waitUntil(condition: () => boolean, what: string, timeoutMs = DELIVERY_DEADLINE_MS): Promise<void> {
  return until(condition, what, timeoutMs, 5);
}

/** Sleeps; only to give a store the chance to do what it must not (never to wait for a result). */
function quietPeriod(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, QUIET_PERIOD_MS));
}

type Delivery = { readonly kind: 'event'; readonly event: StorageEvent } | { readonly kind: 'progress'; readonly progress: ProgressNotification };

/** A watch whose callbacks are recorded, in the order they ran. */
export class WatchRecorder {
  readonly deliveries: Delivery[] = [];
  readonly errors: Error[] = [];
  /** Set when `watch()` itself threw. */
  readonly thrown?: Error;
  private readonly handle?: StorageWatch;

  constructor(storage: Storage, prefix: string, afterRevision: number) {
    try {
      this.handle = storage.watch(prefix, afterRevision, {
        onEvent: (event) => this.deliveries.push({ kind: 'event', event }),
        onProgress: (progress) => this.deliveries.push({ kind: 'progress', progress }),
        onError: (error) => this.errors.push(error),
      });
    } catch (error) {
      this.thrown = error instanceof Error ? error : new Error(String(error));
    }
  }

  get events(): StorageEvent[] {
    return this.deliveries.flatMap((d) => (d.kind === 'event' ? [d.event] : []));
  }

  get progress(): ProgressNotification[] {
    return this.deliveries.flatMap((d) => (d.kind === 'progress' ? [d.progress] : []));
  }

  /** `TYPE key` of every event, for readable comparisons. */
  get summary(): string[] {
    return this.events.map((e) => `${e.type} ${e.key}`);
  }

  requestProgress(): void {
    this.handle?.requestProgress();
  }

  stop(): void {
    this.handle?.stop();
  }

  async waitForEvents(count: number): Promise<StorageEvent[]> {
    await waitUntil(() => this.events.length >= count || this.errors.length > 0, `${count} events (have ${JSON.stringify(this.summary)})`);
    if (this.errors.length > 0) throw this.errors[0];
    return this.events;
  }

  /** The watch's failure, thrown by `watch()` or delivered to `onError`. */
  async failure(timeoutMs = DELIVERY_DEADLINE_MS): Promise<Error> {
    if (this.thrown) return this.thrown;
    await waitUntil(() => this.errors.length > 0, 'the watch to fail', timeoutMs);
    return this.errors[0];
  }
}

/** Pages through a list to the end; returns every item and the pages' revisions. */
async function listAllPages(storage: Storage, prefix: string, options: { limit: number; filter?: (value: StoredValue) => boolean; revision?: number }) {
  const items: StoredObject[] = [];
  const revisions: number[] = [];
  let startKey: string | undefined;
  for (let page = 0; page < 100; page++) {
    const result = await storage.list(prefix, { ...options, ...(startKey !== undefined ? { startKey } : {}) });
    items.push(...result.items);
    revisions.push(result.revision);
    if (!result.more) return { items, revisions };
    expect(result.nextKey).toBeDefined();
    startKey = result.nextKey;
  }
  throw new Error('pagination did not end within 100 pages');
}

/**
 * Defines the conformance cases in a `describe(name)`. `setup` runs before each case and must
 * give a store holding nothing under `CONFORMANCE_RESOURCE_PREFIXES`; `cleanup` runs after it.
 */
export function describeStorageConformance(name: string, setup: () => Promise<StorageUnderTest>): void {
  describe(`Storage conformance: ${name}`, () => {
    let underTest: StorageUnderTest | undefined;
    let storage: Storage;
    const recorders: WatchRecorder[] = [];

    function record(prefix: string, afterRevision: number): WatchRecorder {
      const recorder = new WatchRecorder(storage, prefix, afterRevision);
      recorders.push(recorder);
      return recorder;
    }

    beforeEach(async () => {
      underTest = await setup();
      storage = underTest.storage;
    }, CASE_TIMEOUT_MS);

    afterEach(async () => {
      for (const recorder of recorders.splice(0)) recorder.stop();
      await underTest?.cleanup();
      underTest = undefined;
    }, CASE_TIMEOUT_MS);

    describe('writes and reads', () => {
      test(
        'create stores a new revision, written into metadata.resourceVersion, and hands out frozen values',
        async () => {
          // GIVEN
          const before = await storage.currentRevision();

          // WHEN
          const a = await storage.create('/flunders/ns1/a', flunder('a', { n: 1, nested: { list: [1, 2] } }));
          const b = await storage.create('/flunders/ns1/b', flunder('b'));

          // THEN
          expect(a.key).toBe('/flunders/ns1/a');
          expect(a.modRevision).toBeGreaterThan(before);
          expect(a.createRevision).toBe(a.modRevision);
          expect(b.modRevision).toBeGreaterThan(a.modRevision);
          expect(resourceVersion(a.value)).toBe(String(a.modRevision));
          expect(a.value).toEqual({ ...flunder('a', { n: 1, nested: { list: [1, 2] } }), metadata: { name: 'a', resourceVersion: String(a.modRevision) } });
          expect(await storage.currentRevision()).toBeGreaterThanOrEqual(b.modRevision);
          const got = await storage.get('/flunders/ns1/a');
          const listed = await storage.list('/flunders/');
          for (const value of [a.value, got!.value, ...listed.items.map((i) => i.value)]) expect(isDeepFrozen(value)).toBe(true);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'fails to create an existing key with KeyExistsError, leaving it unchanged',
        async () => {
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));
          await expect(storage.create('/flunders/ns1/a', flunder('a', { v: 2 }))).rejects.toBeInstanceOf(KeyExistsError);
          expect(await storage.get('/flunders/ns1/a')).toEqual(a);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'get answers the stored object, or undefined for a missing key',
        async () => {
          // GIVEN
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));

          // WHEN
          const got = await storage.get('/flunders/ns1/a');

          // THEN
          expect(got).toEqual({ key: '/flunders/ns1/a', value: a.value, createRevision: a.createRevision, modRevision: a.modRevision });
          expect(await storage.get('/flunders/ns1/missing')).toBeUndefined();
          expect(await storage.get('/flunders/ns1/')).toBeUndefined();
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'update is compare-and-swap on modRevision and keeps createRevision',
        async () => {
          // GIVEN
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));

          // WHEN
          const a2 = await storage.update('/flunders/ns1/a', flunder('a', { v: 2 }), a.modRevision);

          // THEN
          expect(a2.modRevision).toBeGreaterThan(a.modRevision);
          expect(a2.createRevision).toBe(a.createRevision);
          expect(resourceVersion(a2.value)).toBe(String(a2.modRevision));
          expect(spec(a2.value)).toEqual({ v: 2 });
          expect(isDeepFrozen(a2.value)).toBe(true);
          expect(await storage.get('/flunders/ns1/a')).toEqual(a2);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'fails update with RevisionMismatchError on a stale modRevision and NotFoundError on a missing key',
        async () => {
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));
          const a2 = await storage.update('/flunders/ns1/a', flunder('a', { v: 2 }), a.modRevision);
          await expect(storage.update('/flunders/ns1/a', flunder('a', { v: 3 }), a.modRevision)).rejects.toBeInstanceOf(RevisionMismatchError);
          await expect(storage.update('/flunders/ns1/missing', flunder('missing'), a.modRevision)).rejects.toBeInstanceOf(NotFoundError);
          expect(await storage.get('/flunders/ns1/a')).toEqual(a2);
          expect(await storage.get('/flunders/ns1/missing')).toBeUndefined();
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'delete is compare-and-swap and returns the object at the delete revision',
        async () => {
          // GIVEN
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));

          // WHEN
          const deleted = await storage.delete('/flunders/ns1/a', a.modRevision);

          // THEN
          expect(deleted.key).toBe('/flunders/ns1/a');
          expect(deleted.modRevision).toBeGreaterThan(a.modRevision);
          expect(deleted.createRevision).toBe(a.createRevision);
          expect(resourceVersion(deleted.value)).toBe(String(deleted.modRevision));
          expect(spec(deleted.value)).toEqual({ v: 1 });
          expect(await storage.get('/flunders/ns1/a')).toBeUndefined();
          expect(await storage.currentRevision()).toBeGreaterThanOrEqual(deleted.modRevision);
          expect((await storage.list('/flunders/')).items).toEqual([]);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'fails delete with RevisionMismatchError on a stale modRevision and NotFoundError on a missing key',
        async () => {
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));
          const a2 = await storage.update('/flunders/ns1/a', flunder('a', { v: 2 }), a.modRevision);
          await expect(storage.delete('/flunders/ns1/a', a.modRevision)).rejects.toBeInstanceOf(RevisionMismatchError);
          await expect(storage.delete('/flunders/ns1/missing', a.modRevision)).rejects.toBeInstanceOf(NotFoundError);
          expect(await storage.get('/flunders/ns1/a')).toEqual(a2);
          const deleted = await storage.delete('/flunders/ns1/a', a2.modRevision);
          await expect(storage.delete('/flunders/ns1/a', deleted.modRevision)).rejects.toBeInstanceOf(NotFoundError);
        },
        CASE_TIMEOUT_MS,
      );
    });

    describe('list', () => {
      test(
        'lists by prefix in key order, at a revision covering every write',
        async () => {
          // GIVEN keys written out of order, under two resources and two namespaces
          let last: StoredObject | undefined;
          for (const key of ['/flunders/ns2/b', '/flunders/ns1/c', '/fischers/x', '/flunders/ns1/a', '/flunders/ns1x/d', '/flunders/ns1/b']) {
            last = await storage.create(key, flunder(key));
          }

          // WHEN
          const all = await storage.list('/flunders/');
          const ns1 = await storage.list('/flunders/ns1/');

          // THEN
          expect(all.items.map((i) => i.key)).toEqual(['/flunders/ns1/a', '/flunders/ns1/b', '/flunders/ns1/c', '/flunders/ns1x/d', '/flunders/ns2/b']);
          expect(all.more).toBe(false);
          expect(all.revision).toBeGreaterThanOrEqual(last!.modRevision);
          expect(ns1.items.map((i) => i.key)).toEqual(['/flunders/ns1/a', '/flunders/ns1/b', '/flunders/ns1/c']);
          for (const item of all.items) {
            expect(resourceVersion(item.value)).toBe(String(item.modRevision));
            expect(await storage.get(item.key)).toEqual(item);
          }
          expect((await storage.list('/fischers/')).items.map((i) => i.key)).toEqual(['/fischers/x']);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'an empty list answers the current revision',
        async () => {
          const before = await storage.currentRevision();
          const empty = await storage.list('/flunders/');
          expect(empty).toMatchObject({ items: [], more: false });
          expect(empty.revision).toBeGreaterThanOrEqual(before);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'paginates with limit and startKey: more, nextKey and remaining',
        async () => {
          // GIVEN
          for (const name of ['d', 'b', 'a', 'c', 'e']) await storage.create(`/flunders/ns1/${name}`, flunder(name));
          await storage.create('/fischers/z', flunder('z'));

          // WHEN
          const first = await storage.list('/flunders/', { limit: 2 });
          const second = await storage.list('/flunders/', { limit: 2, startKey: first.nextKey! });
          const third = await storage.list('/flunders/', { limit: 2, startKey: second.nextKey! });

          // THEN
          expect(first.items.map((i) => i.key)).toEqual(['/flunders/ns1/a', '/flunders/ns1/b']);
          expect(first).toMatchObject({ more: true, remaining: 3 });
          expect(second.items.map((i) => i.key)).toEqual(['/flunders/ns1/c', '/flunders/ns1/d']);
          expect(second).toMatchObject({ more: true, remaining: 1 });
          expect(third.items.map((i) => i.key)).toEqual(['/flunders/ns1/e']);
          expect(third.more).toBe(false);
          expect(third.nextKey).toBeUndefined();
          expect(third.remaining).toBeUndefined();
          const exact = await storage.list('/flunders/', { limit: 5 });
          expect(exact.items).toHaveLength(5);
          expect(exact.more).toBe(false);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'paginates with a filter: only matching values count toward the limit, no remaining',
        async () => {
          // GIVEN
          for (let i = 0; i < 10; i++) await storage.create(`/flunders/ns1/f${i}`, flunder(`f${i}`, { even: i % 2 === 0 }));
          const even = (value: StoredValue) => (value.spec as { even: boolean }).even;

          // WHEN
          const first = await storage.list('/flunders/', { limit: 2, filter: even });
          const all = await listAllPages(storage, '/flunders/', { limit: 2, filter: even });

          // THEN
          expect(first.items.map((i) => i.key)).toEqual(['/flunders/ns1/f0', '/flunders/ns1/f2']);
          expect(first.more).toBe(true);
          expect(first.remaining).toBeUndefined();
          expect(all.items.map((i) => i.key)).toEqual(['/flunders/ns1/f0', '/flunders/ns1/f2', '/flunders/ns1/f4', '/flunders/ns1/f6', '/flunders/ns1/f8']);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'lists at an exact revision: a snapshot where later writes are invisible and later deletes still visible',
        async () => {
          // GIVEN
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));
          const b = await storage.create('/flunders/ns1/b', flunder('b', { v: 1 }));
          await storage.create('/flunders/ns1/c', flunder('c', { v: 1 }));
          const snapshot = await storage.list('/flunders/');
          const revision = snapshot.revision;
          await storage.update('/flunders/ns1/a', flunder('a', { v: 2 }), a.modRevision);
          await storage.delete('/flunders/ns1/b', b.modRevision);
          await storage.create('/flunders/ns1/aa', flunder('aa', { v: 1 }));

          // WHEN
          const past = await storage.list('/flunders/', { revision });
          const pastPage = await storage.list('/flunders/', { revision, limit: 2 });
          const pastRest = await storage.list('/flunders/', { revision, limit: 2, startKey: pastPage.nextKey! });

          // THEN
          expect(past.revision).toBe(revision);
          expect(past.items).toEqual(snapshot.items);
          expect(pastPage.revision).toBe(revision);
          expect(pastPage.items.map((i) => i.key)).toEqual(['/flunders/ns1/a', '/flunders/ns1/b']);
          expect(pastPage).toMatchObject({ more: true, remaining: 1 });
          expect(pastRest.items.map((i) => i.key)).toEqual(['/flunders/ns1/c']);
          expect(pastRest.revision).toBe(revision);
          const now = await storage.list('/flunders/');
          expect(now.items.map((i) => `${i.key} ${JSON.stringify(spec(i.value))}`)).toEqual([
            '/flunders/ns1/a {"v":2}',
            '/flunders/ns1/aa {"v":1}',
            '/flunders/ns1/c {"v":1}',
          ]);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'list with minRevision at or below the store answers at once, at a revision not older',
        async () => {
          const a = await storage.create('/flunders/ns1/a', flunder('a'));
          const listed = await storage.list('/flunders/', { minRevision: a.modRevision });
          expect(listed.revision).toBeGreaterThanOrEqual(a.modRevision);
          expect(listed.items).toEqual([a]);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'list with minRevision ahead of the store waits for the write that reaches it',
        async () => {
          // GIVEN
          const before = await storage.currentRevision();

          // WHEN
          const listing = storage.list('/flunders/', { minRevision: before + 1 });
          const a = await storage.create('/flunders/ns1/a', flunder('a'));

          // THEN
          const listed = await listing;
          expect(listed.revision).toBeGreaterThanOrEqual(a.modRevision);
          expect(listed.items).toEqual([a]);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'fails list at an exact revision in the future with TooLargeRevisionError, without waiting',
        async () => {
          const current = await storage.currentRevision();
          const started = Date.now();
          const error = await storage.list('/flunders/', { revision: current + 1000 }).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(TooLargeRevisionError);
          expect((error as TooLargeRevisionError).requestedRevision).toBe(current + 1000);
          expect(Date.now() - started).toBeLessThan(FUTURE_REVISION_WAIT_MS);
        },
        CASE_TIMEOUT_MS,
      );
    });

    describe('watch', () => {
      test(
        'replays history after the revision, then delivers live writes, with prevObject',
        async () => {
          // GIVEN
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));
          const b = await storage.create('/flunders/ns1/b', flunder('b', { v: 1 }));
          const a2 = await storage.update('/flunders/ns1/a', flunder('a', { v: 2 }), a.modRevision);
          const bDeleted = await storage.delete('/flunders/ns1/b', b.modRevision);

          // WHEN
          const watch = record('/flunders/', a.modRevision);
          const replayed = await watch.waitForEvents(3);
          const c = await storage.create('/flunders/ns1/c', flunder('c'));
          const events = await watch.waitForEvents(4);

          // THEN
          expect(watch.summary).toEqual(['ADDED /flunders/ns1/b', 'MODIFIED /flunders/ns1/a', 'DELETED /flunders/ns1/b', 'ADDED /flunders/ns1/c']);
          expect(replayed[0]).toEqual({ type: 'ADDED', key: '/flunders/ns1/b', revision: b.modRevision, object: b.value });
          expect(replayed[1]).toEqual({ type: 'MODIFIED', key: '/flunders/ns1/a', revision: a2.modRevision, object: a2.value, prevObject: a.value });
          expect(replayed[2]).toEqual({ type: 'DELETED', key: '/flunders/ns1/b', revision: bDeleted.modRevision, object: bDeleted.value, prevObject: b.value });
          expect(events[3]).toEqual({ type: 'ADDED', key: '/flunders/ns1/c', revision: c.modRevision, object: c.value });
          for (const event of events) expect(isDeepFrozen(event.object) && isDeepFrozen(event.prevObject)).toBe(true);
          expect(watch.errors).toEqual([]);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'a watch from the current revision replays nothing',
        async () => {
          // GIVEN
          await storage.create('/flunders/ns1/a', flunder('a'));
          const current = await storage.currentRevision();

          // WHEN
          const watch = record('/flunders/', current);
          const b = await storage.create('/flunders/ns1/b', flunder('b'));

          // THEN
          await watch.waitForEvents(1);
          await quietPeriod();
          expect(watch.events).toEqual([{ type: 'ADDED', key: '/flunders/ns1/b', revision: b.modRevision, object: b.value }]);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'a watch on a narrower prefix sees only its keys',
        async () => {
          // GIVEN
          const start = await storage.currentRevision();
          const ns1 = record('/flunders/ns1/', start);
          const all = record('/flunders/', start);

          // WHEN
          for (const key of ['/flunders/ns1/a', '/flunders/ns1x/b', '/flunders/ns2/c', '/fischers/ns1/d', '/flunders/ns1/e']) await storage.create(key, flunder(key));

          // THEN
          await all.waitForEvents(4);
          await ns1.waitForEvents(2);
          await quietPeriod();
          expect(ns1.summary).toEqual(['ADDED /flunders/ns1/a', 'ADDED /flunders/ns1/e']);
          expect(all.summary).toEqual(['ADDED /flunders/ns1/a', 'ADDED /flunders/ns1x/b', 'ADDED /flunders/ns2/c', 'ADDED /flunders/ns1/e']);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'live events arrive in revision order, each once',
        async () => {
          // GIVEN
          const watch = record('/flunders/', await storage.currentRevision());

          // WHEN concurrent writes to several keys
          const written = await Promise.all(Array.from({ length: 20 }, (_, i) => storage.create(`/flunders/ns1/k${i}`, flunder(`k${i}`))));
          const updated = await Promise.all(written.slice(0, 10).map((w, i) => storage.update(w.key, flunder(`k${i}`, { v: 2 }), w.modRevision)));

          // THEN
          const events = await watch.waitForEvents(30);
          await quietPeriod();
          expect(watch.events).toHaveLength(30);
          const revisions = events.map((e) => e.revision);
          expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
          expect(new Set(revisions).size).toBe(30);
          expect([...revisions].sort((x, y) => x - y)).toEqual([...written, ...updated].map((w) => w.modRevision).sort((x, y) => x - y));
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'requestProgress is answered with a revision not below any event already delivered',
        async () => {
          // GIVEN a watch with nothing to deliver
          const start = await storage.currentRevision();
          const watch = record('/flunders/', start);

          // WHEN progress is asked, then after a write again
          watch.requestProgress();
          await waitUntil(() => watch.progress.length > 0, 'a progress notification on an idle watch');
          const a = await storage.create('/flunders/ns1/a', flunder('a'));
          watch.requestProgress();
          await waitUntil(() => watch.progress.some((p) => p.revision >= a.modRevision), `a progress notification at ${a.modRevision} or later`);

          // THEN the first notification covers the start; every notification follows every event it covers
          await quietPeriod(); // an event delivered late still counts against the notification it follows
          expect(watch.progress[0].revision).toBeGreaterThanOrEqual(start);
          const outOfOrder = watch.deliveries.flatMap((delivery, index) =>
            delivery.kind !== 'progress'
              ? []
              : watch.deliveries
                  .slice(index + 1)
                  .flatMap((later) => (later.kind === 'event' && later.event.revision <= delivery.progress.revision ? [`progress ${delivery.progress.revision} came before event ${later.event.revision}`] : [])),
          );
          expect(outOfOrder).toEqual([]);
          expect(watch.summary).toEqual(['ADDED /flunders/ns1/a']);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'requestProgress on a watch ahead of the store is answered at or above its revision, after the write that reaches it',
        async () => {
          // GIVEN
          const start = await storage.currentRevision();
          const watch = record('/flunders/', start + 1);

          // WHEN
          watch.requestProgress();
          const a = await storage.create('/flunders/ns1/a', flunder('a'));
          const b = await storage.create('/flunders/ns1/b', flunder('b'));
          watch.requestProgress();

          // THEN
          await waitUntil(() => watch.progress.some((p) => p.revision >= b.modRevision), `a progress notification at ${b.modRevision} or later`);
          expect(watch.progress.every((p) => p.revision >= start + 1)).toBe(true);
          expect(watch.events.map((e) => e.revision)).toEqual([a, b].map((w) => w.modRevision).filter((r) => r > start + 1));
          expect(watch.errors).toEqual([]);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'a watch ahead of the store delivers the writes after its revision once the store reaches it',
        async () => {
          // GIVEN
          const start = await storage.currentRevision();

          // WHEN
          const watch = record('/flunders/', start + 1);
          const a = await storage.create('/flunders/ns1/a', flunder('a'));
          const b = await storage.create('/flunders/ns1/b', flunder('b'));

          // THEN
          await watch.waitForEvents(1);
          await quietPeriod();
          expect(watch.events).toEqual([a, b].filter((w) => w.modRevision > start + 1).map((w) => ({ type: 'ADDED', key: w.key, revision: w.modRevision, object: w.value })));
          expect(watch.errors).toEqual([]);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'stop() ends delivery',
        async () => {
          // GIVEN
          const start = await storage.currentRevision();
          const stopped = record('/flunders/', start);
          const witness = record('/flunders/', start);
          await storage.create('/flunders/ns1/a', flunder('a'));
          await stopped.waitForEvents(1);

          // WHEN
          stopped.stop();
          stopped.requestProgress();
          await storage.create('/flunders/ns1/b', flunder('b'));

          // THEN
          await witness.waitForEvents(2);
          await quietPeriod();
          expect(stopped.summary).toEqual(['ADDED /flunders/ns1/a']);
          expect(stopped.progress).toEqual([]);
          expect(stopped.errors).toEqual([]);
        },
        CASE_TIMEOUT_MS,
      );
    });

    describe('compaction', () => {
      test(
        'fails list and watch below the compacted revision with ExpiredError; at it they work',
        async () => {
          // GIVEN
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));
          const a2 = await storage.update('/flunders/ns1/a', flunder('a', { v: 2 }), a.modRevision);
          const b = await storage.create('/flunders/ns1/b', flunder('b', { v: 1 }));
          const a3 = await storage.update('/flunders/ns1/a', flunder('a', { v: 3 }), a2.modRevision);
          // Compaction runs well behind the watchers (kube's compactor: an interval behind); a watcher
          // still behind a compaction is cancelled and must relist, which leaves no history to watch from.
          await storage.list('/flunders/', { minRevision: a3.modRevision });

          // WHEN
          await storage.compact(b.modRevision);

          // THEN
          for (const below of [a.modRevision, a2.modRevision]) {
            await expect(storage.list('/flunders/', { revision: below })).rejects.toBeInstanceOf(ExpiredError);
            expect(await record('/flunders/', below).failure()).toBeInstanceOf(ExpiredError);
          }
          const atCompacted = await storage.list('/flunders/', { revision: b.modRevision });
          expect(atCompacted.items).toEqual([a2, b]);
          const watch = record('/flunders/', b.modRevision);
          await watch.waitForEvents(1);
          expect(watch.events).toEqual([{ type: 'MODIFIED', key: '/flunders/ns1/a', revision: a3.modRevision, object: a3.value, prevObject: a2.value }]);
          expect(await storage.get('/flunders/ns1/a')).toEqual(a3);
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'compacting at or below the compacted revision does nothing',
        async () => {
          // GIVEN
          const a = await storage.create('/flunders/ns1/a', flunder('a', { v: 1 }));
          const a2 = await storage.update('/flunders/ns1/a', flunder('a', { v: 2 }), a.modRevision);
          await storage.compact(a2.modRevision);

          // WHEN
          await storage.compact(a2.modRevision);
          await storage.compact(a.modRevision);

          // THEN
          await expect(storage.list('/flunders/', { revision: a2.modRevision })).resolves.toMatchObject({ revision: a2.modRevision, items: [a2] });
        },
        CASE_TIMEOUT_MS,
      );

      test(
        'fails to compact ahead of the current revision with TooLargeRevisionError',
        async () => {
          const current = await storage.currentRevision();
          await expect(storage.compact(current + 1000)).rejects.toBeInstanceOf(TooLargeRevisionError);
        },
        CASE_TIMEOUT_MS,
      );
    });

    test(
      `fails list with minRevision and watch ahead of the store with TooLargeRevisionError after waiting ${FUTURE_REVISION_WAIT_MS} ms`,
      async () => {
        // GIVEN
        const start = await storage.currentRevision();
        const started = Date.now();

        // WHEN a list and a watch far ahead, and a watch just ahead that a write reaches
        const listing = storage.list('/flunders/', { minRevision: start + 1000 }).then(
          () => undefined,
          (e: unknown) => ({ error: e, elapsed: Date.now() - started }),
        );
        const far = record('/flunders/', start + 1000);
        const near = record('/flunders/', start + 1);
        await storage.create('/flunders/ns1/a', flunder('a'));
        await storage.create('/flunders/ns1/b', flunder('b'));

        // THEN
        const listed = await listing;
        expect(listed?.error).toBeInstanceOf(TooLargeRevisionError);
        expect((listed?.error as TooLargeRevisionError).requestedRevision).toBe(start + 1000);
        expect(listed!.elapsed).toBeGreaterThanOrEqual(FUTURE_REVISION_WAIT_MS * 0.9);
        const farError = await far.failure(FUTURE_REVISION_WAIT_MS + DELIVERY_DEADLINE_MS);
        expect(farError).toBeInstanceOf(TooLargeRevisionError);
        expect((farError as TooLargeRevisionError).requestedRevision).toBe(start + 1000);
        expect(Date.now() - started).toBeGreaterThanOrEqual(FUTURE_REVISION_WAIT_MS * 0.9);
        expect(far.events).toEqual([]);
        expect(near.errors).toEqual([]);
        expect(near.events.length).toBeGreaterThanOrEqual(1);
      },
      CASE_TIMEOUT_MS,
    );

    test(
      `get with minRevision answers a value not older than it; ahead of the store fails with TooLargeRevisionError after waiting ${FUTURE_REVISION_WAIT_MS} ms`,
      async () => {
        // GIVEN an object
        const a = await storage.create('/flunders/ns1/a', flunder('a'));
        const current = await storage.currentRevision();

        // WHEN getting it not older than its write, at any revision, and far ahead of the store
        const notOlder = await storage.get('/flunders/ns1/a', { minRevision: a.modRevision });
        const any = await storage.get('/flunders/ns1/a', { minRevision: 0 });
        const started = Date.now();
        const ahead = await storage.get('/flunders/ns1/a', { minRevision: current + 1000 }).then(
          () => undefined,
          (e: unknown) => e,
        );

        // THEN the write is seen at its revision; any revision may be older (a cache), never newer; ahead fails after the wait
        expect(notOlder).toEqual(a);
        expect(any === undefined || any.modRevision === a.modRevision).toBe(true);
        expect(ahead).toBeInstanceOf(TooLargeRevisionError);
        expect((ahead as TooLargeRevisionError).requestedRevision).toBe(current + 1000);
        expect(Date.now() - started).toBeGreaterThanOrEqual(FUTURE_REVISION_WAIT_MS * 0.9);
      },
      CASE_TIMEOUT_MS,
    );

    test(
      'get and list with no options are consistent reads: they see at once what another client wrote',
      async () => {
        const peer = underTest?.peer ?? storage;

        // WHEN another client creates an object, THEN a get and a list right after see it
        const a = await peer.create('/flunders/ns1/a', flunder('a', { v: 1 }));
        expect(await storage.get('/flunders/ns1/a')).toEqual(a);
        expect((await storage.list('/flunders/')).items).toEqual([a]);

        // WHEN it updates it, THEN they see the update
        const a2 = await peer.update('/flunders/ns1/a', flunder('a', { v: 2 }), a.modRevision);
        expect(await storage.get('/flunders/ns1/a')).toEqual(a2);
        expect((await storage.list('/flunders/')).items).toEqual([a2]);

        // WHEN it deletes it, THEN they see it gone
        await peer.delete('/flunders/ns1/a', a2.modRevision);
        expect(await storage.get('/flunders/ns1/a')).toBeUndefined();
        expect((await storage.list('/flunders/')).items).toEqual([]);
      },
      CASE_TIMEOUT_MS,
    );

    test(
      'close() ends every watch without onError; later writes fail',
      async () => {
        // GIVEN
        const watch = record('/flunders/', await storage.currentRevision());
        await storage.create('/flunders/ns1/a', flunder('a'));
        await watch.waitForEvents(1);

        // WHEN
        await storage.close();

        // THEN
        await expect(storage.create('/flunders/ns1/b', flunder('b'))).rejects.toThrow();
        await quietPeriod();
        expect(watch.errors).toEqual([]);
        expect(watch.summary).toEqual(['ADDED /flunders/ns1/a']);
      },
      CASE_TIMEOUT_MS,
    );
  });
}
