/**
 * EtcdStorage against a real etcd (test/support/etcd.ts): the contract of server/storage/types.ts
 * as etcd gives it (transactions, revisions, watch, progress, compaction), TLS with client
 * certificates, failover, etcd going away and coming back, start-up verification, the compactor,
 * and the esbuild bundle talking to etcd from a directory without node_modules.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { EtcdStorage, EtcdStorageOptions, verifyEtcdAtStart } from '../server/storage/etcd';
import { MemoryStorage } from '../server/storage/memory';
import {
  ExpiredError,
  KeyExistsError,
  NotFoundError,
  ProgressNotification,
  RevisionMismatchError,
  Storage,
  StorageEvent,
  StorageUnavailableError,
  TooLargeRevisionError,
  StorageQuotaExceededError,
} from '../server/storage/types';
import { EtcdProcess } from './support/etcd';
import { makeCa } from './support/pki';
import { freePort } from './support/server-process';

jest.setTimeout(120_000);

const ROOT = path.join(__dirname, '..');
const logger = pino({ level: 'silent' });
let prefixCounter = 0;

function obj(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { metadata: { name }, ...extra };
}

function rv(value: { metadata?: unknown }): string {
  return (value.metadata as { resourceVersion: string }).resourceVersion;
}

async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Records what a watch delivers. */
function recorder() {
  const events: StorageEvent[] = [];
  const progress: ProgressNotification[] = [];
  const errors: Error[] = [];
  return { events, progress, errors, callbacks: { onEvent: (e: StorageEvent) => events.push(e), onProgress: (p: ProgressNotification) => progress.push(p), onError: (e: Error) => errors.push(e) } };
}

describe('EtcdStorage on a plain etcd', () => {
  let etcd: EtcdProcess;
  let storage: EtcdStorage;
  let prefix: string;
  const open: EtcdStorage[] = [];

  function newStorage(options: Partial<EtcdStorageOptions> = {}): EtcdStorage {
    const created = new EtcdStorage({ servers: [etcd.clientUrl], prefix, logger, requestTimeoutMs: 5000, ...options });
    open.push(created);
    return created;
  }

  beforeAll(async () => {
    etcd = await EtcdProcess.start();
  });

  afterAll(async () => {
    await etcd?.remove();
  });

  beforeEach(() => {
    prefix = `/registry/test-${++prefixCounter}`;
    storage = newStorage();
  });

  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });

  test('objects read back with equal managedFields share one frozen list (the watch cache holds it once); the values are unchanged', async () => {
    // GIVEN two objects written by the same manager in the same second, and one by another manager
    const managedFields = (manager: string) => [{ manager, operation: 'Update', apiVersion: 'wardle.example.com/v1alpha1', time: '2026-12-03T10:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:n': {} } } }];
    const withFields = (name: string, manager: string) => ({ metadata: { name, managedFields: managedFields(manager) }, spec: { n: 1 } });
    await storage.create('/flunders/ns/shared-a', withFields('shared-a', 'kubectl'));
    await storage.create('/flunders/ns/shared-b', withFields('shared-b', 'kubectl'));
    await storage.create('/flunders/ns/shared-c', withFields('shared-c', 'helm'));

    // WHEN they are read back
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map(async (n) => (await storage.get(`/flunders/ns/shared-${n}`))!.value.metadata as Record<string, unknown>));

    // THEN a and b hold the very same frozen list, c its own, and each equals what was written
    expect(a.managedFields).toBe(b.managedFields);
    expect(c.managedFields).not.toBe(a.managedFields);
    expect(Object.isFrozen((a.managedFields as object[])[0])).toBe(true);
    expect(a.managedFields).toEqual(managedFields('kubectl'));
    expect(c.managedFields).toEqual(managedFields('helm'));
  });

  test('create, get, update and delete: the etcd revision is the resourceVersion, values are frozen', async () => {
    // GIVEN
    const start = await storage.currentRevision();

    // WHEN
    const a = await storage.create('/flunders/ns/a', obj('a', { spec: { n: 1 } }));
    const b = await storage.create('/flunders/ns/b', obj('b'));
    const a2 = await storage.update('/flunders/ns/a', obj('a', { spec: { n: 2 } }), a.modRevision);

    // THEN
    expect([a.modRevision, b.modRevision, a2.modRevision]).toEqual([start + 1, start + 2, start + 3]);
    expect(a2.createRevision).toBe(a.createRevision);
    expect(rv(a2.value)).toBe(String(a2.modRevision));
    expect(Object.isFrozen(a2.value)).toBe(true);
    expect(Object.isFrozen(a2.value.spec)).toBe(true);
    expect(await storage.currentRevision()).toBe(start + 3);
    const got = await storage.get('/flunders/ns/a');
    expect(got).toEqual({ key: '/flunders/ns/a', value: { metadata: { name: 'a', resourceVersion: String(a2.modRevision) }, spec: { n: 2 } }, createRevision: a.createRevision, modRevision: a2.modRevision });
    expect(Object.isFrozen(got!.value)).toBe(true);

    // AND a delete answers the last value at the deletion revision
    const deleted = await storage.delete('/flunders/ns/a', a2.modRevision);
    expect(deleted).toEqual({ key: '/flunders/ns/a', value: { metadata: { name: 'a', resourceVersion: String(start + 4) }, spec: { n: 2 } }, createRevision: a.createRevision, modRevision: start + 4 });
    expect(await storage.get('/flunders/ns/a')).toBeUndefined();
  });

  test('fails a create on an existing key and a compare-and-swap on a changed or missing key', async () => {
    // GIVEN
    const a = await storage.create('/flunders/ns/a', obj('a'));
    const a2 = await storage.update('/flunders/ns/a', obj('a', { v: 2 }), a.modRevision);

    // THEN
    await expect(storage.create('/flunders/ns/a', obj('a'))).rejects.toBeInstanceOf(KeyExistsError);
    const mismatch = await storage.update('/flunders/ns/a', obj('a', { v: 3 }), a.modRevision).catch((e: unknown) => e);
    expect(mismatch).toBeInstanceOf(RevisionMismatchError);
    expect(mismatch).toMatchObject({ key: '/flunders/ns/a', expectedModRevision: a.modRevision, actualModRevision: a2.modRevision });
    await expect(storage.delete('/flunders/ns/a', a.modRevision)).rejects.toMatchObject({ name: 'RevisionMismatchError', actualModRevision: a2.modRevision });
    await expect(storage.update('/flunders/ns/zz', obj('zz'), 1)).rejects.toBeInstanceOf(NotFoundError);
    await expect(storage.delete('/flunders/ns/zz', 1)).rejects.toBeInstanceOf(NotFoundError);
  });

  test('values are JSON under the prefix in etcd, without resourceVersion', async () => {
    // GIVEN
    await storage.create('/flunders/ns/a', { metadata: { name: 'a', resourceVersion: '999' }, spec: { reference: 'x' } });

    // WHEN read with a raw etcd client
    const raw = new Etcd3({ hosts: etcd.clientUrl });
    try {
      const text = await raw.get(`${prefix}/flunders/ns/a`).string();

      // THEN
      expect(JSON.parse(text!)).toEqual({ metadata: { name: 'a' }, spec: { reference: 'x' } });
      expect(await raw.getAll().prefix(prefix).keys()).toEqual([`${prefix}/flunders/ns/a`]);
    } finally {
      raw.close();
    }
  });

  test('list: prefix, limit, startKey, filter, more, nextKey and remaining as MemoryStorage answers them', async () => {
    // GIVEN the same keys in etcd and in memory
    const memory = new MemoryStorage();
    for (const key of ['/g/r/ns1/c', '/g/r/ns1/a', '/g/r/ns2/b', '/g/r/ns1/b', '/g/other/x', '/g/r/ns3/d', '/g/r/ns3/e']) {
      await storage.create(key, obj(key));
      await memory.create(key, obj(key));
    }
    const endsWithB = (v: Record<string, unknown>) => (v.metadata as { name: string }).name.endsWith('b');
    const cases = [
      {},
      { limit: 2 },
      { limit: 3, startKey: '/g/r/ns1/b\u0000' },
      { limit: 10 },
      { startKey: '/g/r/ns2/' },
      { limit: 1, filter: endsWithB },
      { limit: 1, filter: endsWithB, startKey: '/g/r/ns1/b\u0000' },
      { limit: 2, filter: endsWithB },
      { filter: endsWithB },
      { limit: 6 },
    ];
    const shape = (result: Awaited<ReturnType<Storage['list']>>) => ({ keys: result.items.map((i) => i.key), more: result.more, nextKey: result.nextKey, remaining: result.remaining });

    // THEN every page is the same
    for (const options of cases) {
      expect({ options, ...shape(await storage.list('/g/r/', options)) }).toEqual({ options, ...shape(await memory.list('/g/r/', options)) });
    }
    // AND following nextKey walks every key once
    const walked: string[] = [];
    let page = await storage.list('/g/r/', { limit: 2 });
    walked.push(...page.items.map((i) => i.key));
    while (page.more) {
      page = await storage.list('/g/r/', { limit: 2, startKey: page.nextKey, revision: page.revision });
      walked.push(...page.items.map((i) => i.key));
    }
    expect(walked).toEqual(['/g/r/ns1/a', '/g/r/ns1/b', '/g/r/ns1/c', '/g/r/ns2/b', '/g/r/ns3/d', '/g/r/ns3/e']);
    await memory.close();
  });

  test('list at an exact revision answers the snapshot of that revision', async () => {
    // GIVEN
    const a = await storage.create('/flunders/ns/a', obj('a', { v: 1 }));
    await storage.create('/flunders/ns/b', obj('b'));
    const snapshot = await storage.currentRevision();
    await storage.update('/flunders/ns/a', obj('a', { v: 2 }), a.modRevision);
    await storage.delete('/flunders/ns/b', (await storage.get('/flunders/ns/b'))!.modRevision);
    await storage.create('/flunders/ns/c', obj('c'));

    // WHEN
    const then = await storage.list('/flunders/', { revision: snapshot });
    const now = await storage.list('/flunders/');

    // THEN
    expect(then.revision).toBe(snapshot);
    expect(then.items.map((i) => [i.key, i.value.v, rv(i.value)])).toEqual([
      ['/flunders/ns/a', 1, String(a.modRevision)],
      ['/flunders/ns/b', undefined, String(snapshot)],
    ]);
    expect(now.revision).toBe(await storage.currentRevision());
    expect(now.items.map((i) => i.key)).toEqual(['/flunders/ns/a', '/flunders/ns/c']);
  });

  test('watch replays history after a revision with previous values, then follows live writes in order', async () => {
    // GIVEN history
    const start = await storage.currentRevision();
    const a = await storage.create('/flunders/ns/a', obj('a', { v: 1 }));
    const a2 = await storage.update('/flunders/ns/a', obj('a', { v: 2 }), a.modRevision);
    await storage.create('/fischers/x', obj('x')); // another prefix: not watched

    // WHEN
    const seen = recorder();
    const watch = storage.watch('/flunders/', start, seen.callbacks);
    await waitFor('the replay', () => seen.events.length === 2);
    const deleted = await storage.delete('/flunders/ns/a', a2.modRevision);
    const b = await storage.create('/flunders/ns/b', obj('b'));
    await waitFor('the live events', () => seen.events.length === 4);
    watch.stop();

    // THEN
    expect(seen.events.map((e) => [e.type, e.key, e.revision])).toEqual([
      ['ADDED', '/flunders/ns/a', a.modRevision],
      ['MODIFIED', '/flunders/ns/a', a2.modRevision],
      ['DELETED', '/flunders/ns/a', deleted.modRevision],
      ['ADDED', '/flunders/ns/b', b.modRevision],
    ]);
    const [added, modified, gone] = seen.events;
    expect(added.object).toEqual({ metadata: { name: 'a', resourceVersion: String(a.modRevision) }, v: 1 });
    expect(added.prevObject).toBeUndefined();
    expect(modified.prevObject).toEqual(added.object);
    expect(modified.object).toEqual(a2.value);
    expect(gone.object).toEqual({ metadata: { name: 'a', resourceVersion: String(deleted.modRevision) }, v: 2 });
    expect(gone.prevObject).toEqual(a2.value);
    expect(Object.isFrozen(gone.object)).toBe(true);
    expect(seen.errors).toEqual([]);
  });

  test('a live event of a write this store made carries the object the write returned; another client\'s write is decoded', async () => {
    // GIVEN a watch, and a second store on the same etcd (another replica)
    const seen = recorder();
    const watch = storage.watch('/flunders/', await storage.currentRevision(), seen.callbacks);
    const other = newStorage();
    let probes = 0;
    await waitFor('the watch to be created', async () => {
      await other.create(`/flunders/probe/${++probes}`, obj('probe'));
      return seen.events.length > 0;
    });
    await waitFor('the event of every probe', () => seen.events.length === probes);
    const before = probes;

    // WHEN this store creates and updates, and the other one updates
    const created = await storage.create('/flunders/ns/mine', obj('mine', { v: 1 }));
    const updated = await storage.update('/flunders/ns/mine', obj('mine', { v: 2 }), created.modRevision);
    const theirs = await other.update('/flunders/ns/mine', obj('mine', { v: 3 }), updated.modRevision);
    await waitFor('the three events', () => seen.events.length === before + 3);
    watch.stop();

    // THEN this store's writes reach the watch as the very objects they returned (not decoded again); the other's equal its value
    const [added, modified, foreign] = seen.events.slice(before);
    expect(added.object).toBe(created.value);
    expect(modified.object).toBe(updated.value);
    expect(modified.prevObject).toEqual(created.value);
    expect(foreign.object).not.toBe(theirs.value);
    expect(foreign.object).toEqual(theirs.value);
    expect(Object.isFrozen(foreign.object)).toBe(true);
  });

  test('watch from a revision skips the events at and before it', async () => {
    // GIVEN
    const a = await storage.create('/flunders/ns/a', obj('a'));
    const b = await storage.create('/flunders/ns/b', obj('b'));

    // WHEN
    const seen = recorder();
    const watch = storage.watch('/flunders/', a.modRevision, seen.callbacks);
    await waitFor('the replay', () => seen.events.length >= 1);
    watch.requestProgress();
    await waitFor('a progress notification', () => seen.progress.length >= 1);
    watch.stop();

    // THEN
    expect(seen.events.map((e) => e.revision)).toEqual([b.modRevision]);
  });

  test('requestProgress is answered by etcd with its revision, after the events due', async () => {
    // GIVEN a watch that has seen a write
    const seen = recorder();
    const watch = storage.watch('/flunders/', await storage.currentRevision(), seen.callbacks);
    const a = await storage.create('/flunders/ns/a', obj('a'));
    await waitFor('the event', () => seen.events.length === 1);
    await storage.create('/fischers/x', obj('x')); // moves the revision, not this watch

    // WHEN
    watch.requestProgress();
    await waitFor('a progress notification', () => seen.progress.length >= 1);
    watch.stop();

    // THEN
    expect(seen.progress[0]).toEqual({ type: 'PROGRESS', revision: a.modRevision + 1 });
  });

  test('checks a progress answer once: later answers at the same revision are delivered without reading etcd again', async () => {
    // GIVEN a watch on an idle prefix, etcd's revision moved by a write elsewhere, and ranges counted
    let ranges = 0;
    const counted = newStorage({ observe: (operation, _seconds, _ok, key) => (operation === 'list' && key === undefined ? ranges++ : undefined) });
    const seen = recorder();
    const watch = counted.watch('/flunders/', await counted.currentRevision(), seen.callbacks);
    const other = await counted.create('/fischers/x', obj('x'));

    // WHEN progress is asked for again and again at that revision
    for (let answers = 1; answers <= 5; answers++) {
      watch.requestProgress();
      await waitFor(`progress answer ${answers}`, () => seen.progress.length >= answers);
    }
    watch.stop();

    // THEN every answer carries the revision; only the first was checked (a window range and the calibration count)
    expect(seen.progress.map((p) => p.revision)).toEqual(Array(5).fill(other.modRevision));
    expect(ranges).toBe(2);
  });

  test('a progress notification never runs ahead of events still on their way (etcd 3.4.23 answers with its current revision)', async () => {
    // GIVEN a long history to replay
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 1500; i++) writes.push(storage.create(`/flunders/ns/k${i}`, obj(`k${i}`, { padding: 'x'.repeat(200) })));
    await Promise.all(writes);
    const last = await storage.currentRevision();

    // WHEN progress is asked for during the replay and during live writes
    const order: Array<['event' | 'progress', number]> = [];
    const watch = storage.watch('/flunders/', 1, {
      onEvent: (e) => order.push(['event', e.revision]),
      onProgress: (p) => order.push(['progress', p.revision]),
    });
    for (let i = 0; i < 30; i++) {
      watch.requestProgress();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    for (let i = 0; i < 100; i++) {
      void storage.create(`/flunders/ns/live${i}`, obj(`live${i}`));
      if (i % 3 === 0) watch.requestProgress();
    }
    await waitFor('every event', () => order.filter(([kind]) => kind === 'event').length === 1600);
    watch.requestProgress();
    await waitFor('a progress after the last event', () => order.at(-1)?.[0] === 'progress');
    watch.stop();

    // THEN every event came before any progress at or above its revision
    let promised = 0;
    for (const [kind, revision] of order) {
      if (kind === 'event') expect(revision).toBeGreaterThan(promised);
      else promised = Math.max(promised, revision);
    }
    expect(promised).toBeGreaterThanOrEqual(last + 100);
  });

  test('no callback runs after stop', async () => {
    // GIVEN
    const seen = recorder();
    const watch = storage.watch('/flunders/', await storage.currentRevision(), seen.callbacks);
    await storage.create('/flunders/ns/a', obj('a'));
    await waitFor('the event', () => seen.events.length === 1);

    // WHEN
    watch.stop();
    await storage.create('/flunders/ns/b', obj('b'));
    const marker = recorder();
    const other = storage.watch('/flunders/', (await storage.currentRevision()) - 1, marker.callbacks);
    await waitFor('the marker watch', () => marker.events.length === 1);
    other.stop();

    // THEN
    expect(seen.events).toHaveLength(1);
    expect(seen.errors).toEqual([]);
  });

  test('fails a watch with an error naming the key when etcd holds a value that is not JSON, without an uncaught exception', async () => {
    // GIVEN a watch, and a raw client writing under the prefix as another program could
    const seen = recorder();
    const watch = storage.watch('/flunders/', await storage.currentRevision(), seen.callbacks);
    const raw = new Etcd3({ hosts: etcd.clientUrl });
    try {
      // WHEN
      await raw.put(`${prefix}/flunders/ns/bad`).value('not json');

      // THEN the watch ends through onError (before the fix, JSON.parse threw out of grpc-js's data handler)
      const [error] = await waitFor('the watch error', () => (seen.errors.length > 0 ? seen.errors : undefined));
      expect(error.message).toMatch(/cannot decode the value of \/flunders\/ns\/bad/);
      expect(seen.events).toEqual([]);
    } finally {
      watch.stop();
      raw.close();
    }
  });

  test('fails a watch whose onProgress throws, through onError, without an uncaught exception', async () => {
    // GIVEN a watch whose progress callback throws, for an answer delivered at once and for one checked first
    const errors: Error[] = [];
    const callbacks = {
      onEvent: () => undefined,
      onProgress: () => {
        throw new Error('the client is gone');
      },
      onError: (error: Error) => errors.push(error),
    };
    const written = await storage.create('/fischers/x', obj('x'));
    const atOnce = storage.watch('/flunders/', written.modRevision, callbacks); // an answer at its start needs no check
    const checked = storage.watch('/fischers/none/', written.modRevision - 1, callbacks); // one above its start is checked first

    // WHEN
    atOnce.requestProgress();
    checked.requestProgress();

    // THEN both watches end through onError with what the callback threw
    await waitFor('both errors', () => errors.length === 2);
    expect(errors.map((error) => error.message)).toEqual(['the client is gone', 'the client is gone']);
  });

  test('fails list and watch below the compacted revision with ExpiredError', async () => {
    // GIVEN
    const a = await storage.create('/flunders/ns/a', obj('a'));
    const old = a.modRevision;
    const b = await storage.update('/flunders/ns/a', obj('a', { v: 2 }), a.modRevision);
    await storage.create('/flunders/ns/c', obj('c'));
    const compactAt = b.modRevision + 1;

    // WHEN
    await storage.compact(compactAt);

    // THEN a list below it fails, at it works
    const listed = await storage.list('/flunders/', { revision: old }).catch((e: unknown) => e);
    expect(listed).toBeInstanceOf(ExpiredError);
    expect(listed).toMatchObject({ requestedRevision: old, compactedRevision: compactAt });
    expect((await storage.list('/flunders/', { revision: compactAt })).items).toHaveLength(2);
    // AND a watch after a revision below it fails (as MemoryStorage: afterRevision < compacted), at it works
    const expired = recorder();
    storage.watch('/flunders/', compactAt - 1, expired.callbacks);
    await waitFor('the watch error', () => expired.errors.length === 1);
    expect(expired.errors[0]).toBeInstanceOf(ExpiredError);
    expect(expired.errors[0]).toMatchObject({ requestedRevision: compactAt - 1, compactedRevision: compactAt });
    const fine = recorder();
    const watch = storage.watch('/flunders/', compactAt, fine.callbacks);
    watch.requestProgress();
    await waitFor('progress', () => fine.progress.length === 1);
    watch.stop();
    expect(fine.errors).toEqual([]);
    // AND compacting again at or below does nothing; ahead of the store fails
    await storage.compact(compactAt);
    await storage.compact(old);
    const current = await storage.currentRevision();
    await expect(storage.compact(current + 5)).rejects.toMatchObject({ name: 'TooLargeRevisionError', requestedRevision: current + 5, currentRevision: current });
  });

  test('fails reads and watches at a future revision with TooLargeRevisionError, after waiting for minRevision', async () => {
    // GIVEN
    const current = await storage.currentRevision();

    // THEN an exact revision fails at once
    await expect(storage.list('/flunders/', { revision: current + 10 })).rejects.toMatchObject({ name: 'TooLargeRevisionError', requestedRevision: current + 10, currentRevision: current });
    // AND minRevision waits for the store, then fails
    const waited = Date.now();
    await expect(storage.list('/flunders/', { minRevision: current + 10 })).rejects.toBeInstanceOf(TooLargeRevisionError);
    expect(Date.now() - waited).toBeGreaterThanOrEqual(2900);
    // AND minRevision succeeds once a write reaches it
    const pending = storage.list('/flunders/', { minRevision: current + 1 });
    await storage.create('/flunders/ns/a', obj('a'));
    expect((await pending).items).toHaveLength(1);
    // AND a watch ahead of the store fails after the wait
    const seen = recorder();
    storage.watch('/flunders/', current + 100, seen.callbacks);
    await waitFor('the watch error', () => seen.errors.length === 1, 10_000);
    expect(seen.errors[0]).toBeInstanceOf(TooLargeRevisionError);
  });

  test('a watch ahead of the store starts when the store reaches its revision', async () => {
    // GIVEN a watch one revision ahead
    const current = await storage.currentRevision();
    const seen = recorder();
    const watch = storage.watch('/flunders/', current + 1, seen.callbacks);

    // WHEN two writes follow
    await storage.create('/flunders/ns/a', obj('a'));
    const b = await storage.create('/flunders/ns/b', obj('b'));
    await waitFor('the second event', () => seen.events.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 3500)); // past the future-revision wait
    watch.stop();

    // THEN only the write after it came, and no error
    expect(seen.events.map((e) => e.revision)).toEqual([b.modRevision]);
    expect(seen.errors).toEqual([]);
  });

  test('fails over from a server that refuses connections to one that works', async () => {
    // GIVEN a first URL nobody listens on
    const dead = `http://127.0.0.1:${await freePort()}`;
    const failover = newStorage({ servers: [dead, etcd.clientUrl] });

    // WHEN / THEN every request succeeds (etcd3 picks a server at random per request: with 30 of
    // them, the chance that the dead one was never tried is 2^-30)
    for (let i = 0; i < 30; i++) await failover.create(`/flunders/ns/f${i}`, obj(`f${i}`));
    expect((await failover.list('/flunders/')).items).toHaveLength(30);
    expect(await failover.checkHealth()).toBeUndefined();
    expect(failover.isReady()).toBe(true);
  });

  test('the compactor compacts at the revision of one interval earlier, once across replicas', async () => {
    // GIVEN two replicas compacting every 300 ms
    const old = (await storage.create('/flunders/ns/a', obj('a'))).modRevision;
    await storage.update('/flunders/ns/a', obj('a', { v: 2 }), old);
    const other = newStorage();
    storage.startCompactor(300);
    other.startCompactor(300);

    // THEN the old revision is compacted away soon
    await waitFor(
      'compaction',
      async () => (await storage.list('/flunders/', { revision: old }).then(() => false, (e: unknown) => e instanceof ExpiredError)) || undefined,
    );
    // AND compact_rev_key counts the compactions
    const raw = new Etcd3({ hosts: etcd.clientUrl });
    try {
      expect(Number(await raw.get('compact_rev_key').string())).toBeGreaterThan(0);
    } finally {
      raw.close();
    }
  });

  test('close stops watches without calling onError', async () => {
    // GIVEN
    const closing = newStorage();
    const seen = recorder();
    closing.watch('/flunders/', await closing.currentRevision(), seen.callbacks);

    // WHEN
    await closing.close();
    await storage.create('/flunders/ns/a', obj('a'));
    await new Promise((resolve) => setTimeout(resolve, 300));

    // THEN
    expect(seen.events).toEqual([]);
    expect(seen.errors).toEqual([]);
    expect(closing.isReady()).toBe(false);
    await expect(closing.get('/flunders/ns/a')).rejects.toBeInstanceOf(StorageUnavailableError);
  });

  test('runs from the esbuild bundle in a directory without node_modules (etcd protos inlined)', async () => {
    // GIVEN a probe script bundled by server/build.mjs into a temporary directory
    const dir = mkdtempSync(path.join(tmpdir(), 'etcd-bundle-'));
    try {
      const entry = path.join(dir, 'probe.ts');
      writeFileSync(
        entry,
        [
          `import { EtcdStorage } from ${JSON.stringify(path.join(ROOT, 'server', 'storage', 'etcd'))};`,
          `import pino from ${JSON.stringify(require.resolve('pino'))};`,
          `const storage = new EtcdStorage({ servers: [process.argv[2]], prefix: process.argv[3], logger: pino({ level: 'silent' }) });`,
          `storage.create('/probe/x', { metadata: { name: 'x' } }).then(async (created) => {`,
          `  const got = await storage.get('/probe/x');`,
          `  process.stdout.write(JSON.stringify({ created: created.modRevision, got: got && got.value }));`,
          `  await storage.close();`,
          `}, (error) => { console.error(error); process.exit(1); });`,
        ].join('\n'),
      );
      const bundle = path.join(dir, 'out', 'probe.js');
      execFileSync(process.execPath, [path.join(ROOT, 'server', 'build.mjs'), '--entry', entry, '--outfile', bundle], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
      rmSync(entry);

      // WHEN it runs with nothing but the bundle
      const output = execFileSync(process.execPath, [bundle, etcd.clientUrl, prefix], { cwd: path.dirname(bundle), encoding: 'utf8', timeout: 30_000 });

      // THEN it talked to etcd
      const { created, got } = JSON.parse(output) as { created: number; got: unknown };
      expect(got).toEqual({ metadata: { name: 'x', resourceVersion: String(created) } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('EtcdStorage when etcd goes away', () => {
  let etcd: EtcdProcess;
  const open: EtcdStorage[] = [];

  beforeEach(async () => {
    etcd = await EtcdProcess.start();
  });

  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    await etcd?.remove();
  });

  test('fails requests quickly with StorageUnavailableError, turns unready within 10 s, and recovers after a restart', async () => {
    // GIVEN a ready store with a watch
    const storage = new EtcdStorage({ servers: [etcd.clientUrl], prefix: '/registry/down', logger, requestTimeoutMs: 3000, healthcheckTimeoutMs: 1000 });
    open.push(storage);
    await waitFor('ready', () => storage.isReady());
    const seen = recorder();
    storage.watch('/flunders/', await storage.currentRevision(), seen.callbacks);
    const a = await storage.create('/flunders/ns/a', obj('a'));
    await waitFor('the event', () => seen.events.length === 1);

    // WHEN etcd is killed
    await etcd.kill();
    const killedAt = Date.now();

    // THEN requests fail fast with StorageUnavailableError, never hang
    const failed = await storage.get('/flunders/ns/a').catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(StorageUnavailableError);
    const write = await storage.update('/flunders/ns/a', obj('a', { v: 2 }), a.modRevision).catch((e: unknown) => e);
    expect(write).toBeInstanceOf(StorageUnavailableError);
    expect(Date.now() - killedAt).toBeLessThan(7000);
    // AND the watch ends with StorageUnavailableError
    await waitFor('the watch error', () => seen.errors.length === 1);
    expect(seen.errors[0]).toBeInstanceOf(StorageUnavailableError);
    // AND the store is unready within 10 s, naming etcd and the server
    await waitFor('unready', () => !storage.isReady(), 10_000);
    expect(storage.unreadyReason()).toMatch(new RegExp(`^etcd: .*${etcd.clientUrl.replace(/[.]/g, '\\.')}`));
    expect(await storage.checkHealth()).toMatch(/^etcd: no answer from http:\/\/127\.0\.0\.1:\d+ within 1s \(connect ECONNREFUSED\)$/);

    // WHEN etcd comes back
    await etcd.restart();

    // THEN the same store is ready again and serves
    await waitFor('ready again', () => storage.isReady(), 15_000);
    expect(storage.unreadyReason()).toBeUndefined();
    const served = await waitFor('a served get', () => storage.get('/flunders/ns/a').catch(() => undefined), 15_000);
    expect(served.modRevision).toBe(a.modRevision);
    // AND a watch resumed from the last delivered revision sees what happened since
    const resumed = recorder();
    const watch = storage.watch('/flunders/', seen.events[0].revision, resumed.callbacks);
    await storage.update('/flunders/ns/a', obj('a', { v: 3 }), a.modRevision);
    await waitFor('the resumed event', () => resumed.events.length === 1);
    watch.stop();
  });

  test('fails a request etcd does not answer within the deadline with StorageUnavailableError, indeterminate for a write', async () => {
    // GIVEN a store with a 1 s deadline, and etcd frozen (SIGSTOP: connections open, no answers)
    const storage = new EtcdStorage({ servers: [etcd.clientUrl], prefix: '/registry/frozen', logger, requestTimeoutMs: 1000, healthcheckTimeoutMs: 1000 });
    open.push(storage);
    const a = await storage.create('/flunders/ns/a', obj('a'));
    const pid = (etcd as unknown as { child: { pid: number } }).child.pid;
    process.kill(pid, 'SIGSTOP');
    try {
      // WHEN
      const started = Date.now();
      const write = await storage.update('/flunders/ns/a', obj('a', { v: 2 }), a.modRevision).catch((e: unknown) => e);
      const read = await storage.get('/flunders/ns/a').catch((e: unknown) => e);

      // THEN both fail after about the deadline, the write as indeterminate
      expect(write).toBeInstanceOf(StorageUnavailableError);
      expect(write).toMatchObject({ indeterminate: true, message: 'etcd: no answer to update within 1s' });
      expect(read).toBeInstanceOf(StorageUnavailableError);
      expect(Date.now() - started).toBeLessThan(6000);
      // AND the health check says etcd does not answer
      expect(await storage.checkHealth()).toMatch(/^etcd: no answer from http:\/\/127\.0\.0\.1:\d+ within 1s$/);
      expect(storage.isReady()).toBe(false);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // AND it recovers when etcd answers again
    await waitFor('ready again', () => storage.isReady(), 15_000);
    await waitFor('a served get', () => storage.get('/flunders/ns/a').catch(() => undefined), 15_000);
  });

  test('ignores TLS material for http:// servers, as etcd\'s Go client does, and refuses servers that mix http:// and https://', async () => {
    // GIVEN a plain-text etcd and a CA and client certificate, as a Deployment may pass them anyway
    const ca = makeCa('unused CA');
    const options: EtcdStorageOptions = { servers: [etcd.clientUrl], prefix: '/registry/plain', logger, requestTimeoutMs: 5000, tls: { ca: ca.certPem } };

    // WHEN
    await verifyEtcdAtStart(options, { cafile: '/ca.crt' });
    const plain = new EtcdStorage(options);
    open.push(plain);

    // THEN requests are answered (before the fix, the client spoke TLS to a plain-text etcd and never connected)
    const created = await plain.create('/flunders/ns/a', obj('a'));
    expect((await plain.get('/flunders/ns/a'))?.modRevision).toBe(created.modRevision);

    // AND one client cannot speak TLS to some servers and plain text to others
    const mixed = { ...options, servers: [etcd.clientUrl, 'https://127.0.0.1:1'] };
    expect(() => new EtcdStorage(mixed)).toThrow(/--etcd-servers mixes http:\/\/ and https:\/\/ URLs/);
    await expect(verifyEtcdAtStart(mixed, {})).rejects.toThrow(/mixes http:\/\/ and https:\/\//);
  });

  test('starts unready when etcd is not there, and verifyEtcdAtStart resolves without hanging', async () => {
    // GIVEN nobody listening
    await etcd.kill();
    const options: EtcdStorageOptions = { servers: [etcd.clientUrl], prefix: '/registry/x', logger, healthcheckTimeoutMs: 1000 };

    // THEN
    const started = Date.now();
    await verifyEtcdAtStart(options, {});
    expect(Date.now() - started).toBeLessThan(2000);
    const storage = new EtcdStorage(options);
    open.push(storage);
    expect(storage.isReady()).toBe(false);
    expect(await storage.checkHealth()).toMatch(/^etcd: no answer from/);
  });
});

describe('EtcdStorage over TLS with client certificates', () => {
  let etcd: EtcdProcess;
  const open: EtcdStorage[] = [];

  beforeAll(async () => {
    etcd = await EtcdProcess.start({ tls: true });
  });

  afterAll(async () => {
    for (const s of open.splice(0)) await s.close();
    await etcd?.remove();
  });

  function tlsOptions(tls: EtcdStorageOptions['tls']): EtcdStorageOptions {
    return { servers: [etcd.clientUrl], prefix: '/registry/tls', logger, tls, requestTimeoutMs: 5000, healthcheckTimeoutMs: 2000 };
  }

  test('works with the CA and a client certificate', async () => {
    // GIVEN
    const { ca, client, caFile, certFile, keyFile } = etcd.tls!;
    const options = tlsOptions({ ca: ca.certPem, cert: client.chainPem, key: client.keyPem });

    // WHEN
    await verifyEtcdAtStart(options, { cafile: caFile, certfile: certFile, keyfile: keyFile });
    const storage = new EtcdStorage(options);
    open.push(storage);

    // THEN
    const created = await storage.create('/flunders/ns/a', obj('a'));
    expect((await storage.get('/flunders/ns/a'))?.modRevision).toBe(created.modRevision);
    expect(await storage.checkHealth()).toBeUndefined();
    const seen = recorder();
    const watch = storage.watch('/flunders/', 0, seen.callbacks);
    await waitFor('the replay', () => seen.events.length === 1);
    watch.stop();
  });

  test('fails without a client certificate: requests, health and the start-up check say so', async () => {
    // GIVEN only the CA
    const options = tlsOptions({ ca: etcd.tls!.ca.certPem });

    // THEN the start-up check names the missing flags
    await expect(verifyEtcdAtStart(options, { cafile: etcd.tls!.caFile })).rejects.toThrow(
      /^etcd at https:\/\/127\.0\.0\.1:\d+ requires a client certificate: set --etcd-certfile and --etcd-keyfile \(sslv3 alert bad certificate\)$/,
    );
    // AND a store cannot read
    const storage = new EtcdStorage(options);
    open.push(storage);
    await expect(storage.get('/flunders/ns/a')).rejects.toThrow(/^etcd: get failed: .*bad certificate$/);
    expect(await storage.checkHealth()).toMatch(/^etcd: https:\/\/127\.0\.0\.1:\d+ does not accept the client certificate \(sslv3 alert bad certificate\)$/);
  });

  test('fails at start with a CA that does not verify etcd, naming --etcd-cafile', async () => {
    // GIVEN another CA
    const wrong = makeCa('not the etcd CA');
    const { client, certFile, keyFile } = etcd.tls!;
    const options = tlsOptions({ ca: wrong.certPem, cert: client.chainPem, key: client.keyPem });

    // THEN
    const error = (await verifyEtcdAtStart(options, { cafile: '/etc/wrong-ca.crt', certfile: certFile, keyfile: keyFile }).then(
      () => new Error('resolved'),
      (e: unknown) => e,
    )) as Error;
    expect(error.message).toMatch(/^--etcd-cafile "\/etc\/wrong-ca\.crt" does not verify the certificate of etcd at https:\/\/127\.0\.0\.1:\d+: unable to verify the first certificate$/);
    expect(error.message).not.toContain('\n');
  });

  test('fails at start with a client certificate etcd does not trust, naming --etcd-certfile and --etcd-keyfile', async () => {
    // GIVEN a client certificate from another CA
    const other = makeCa('another CA');
    const { makeLeaf } = await import('./support/pki');
    const stranger = makeLeaf(other, { cn: 'stranger', extendedKeyUsages: ['clientAuth'] });
    const options = tlsOptions({ ca: etcd.tls!.ca.certPem, cert: stranger.chainPem, key: stranger.keyPem });

    // THEN
    await expect(verifyEtcdAtStart(options, { cafile: etcd.tls!.caFile, certfile: '/c.crt', keyfile: '/c.key' })).rejects.toThrow(
      /^--etcd-certfile "\/c\.crt" \/ --etcd-keyfile "\/c\.key": etcd at https:\/\/127\.0\.0\.1:\d+ does not accept this client certificate: sslv3 alert bad certificate$/,
    );
  });

  test('fails at start with a certificate and a key that do not belong together', async () => {
    // GIVEN the client certificate with another key
    const stranger = makeCa('key donor');
    const options = tlsOptions({ ca: etcd.tls!.ca.certPem, cert: etcd.tls!.client.chainPem, key: stranger.keyPem });

    // THEN
    await expect(verifyEtcdAtStart(options, { certfile: '/c.crt', keyfile: '/other.key' })).rejects.toThrow(
      /^--etcd-certfile "\/c\.crt" \/ --etcd-keyfile "\/other\.key" cannot be used together: key values mismatch$/,
    );
  });
});

describe('EtcdStorage on an etcd whose quota is full', () => {
  let etcd: EtcdProcess;
  let storage: EtcdStorage;

  beforeAll(async () => {
    // GIVEN an etcd with a 512 KiB backend quota
    etcd = await EtcdProcess.start({ quotaBackendBytes: 512 * 1024 });
    storage = new EtcdStorage({ servers: [etcd.clientUrl], prefix: '/registry/quota', logger, requestTimeoutMs: 5000 });
  });

  afterAll(async () => {
    await storage?.close();
    await etcd?.remove();
  });

  test("fails writes past etcd's quota with StorageQuotaExceededError carrying etcd's message; reads go on", async () => {
    // WHEN objects of 100 KiB are written until etcd raises its NOSPACE alarm
    const padding = 'x'.repeat(100 * 1024);
    let refused: unknown;
    let written = 0;
    for (let i = 0; i < 40 && refused === undefined; i++) {
      try {
        await storage.create(`/registry/quota/o-${i}`, { kind: 'Flunder', metadata: { name: `o-${i}` }, spec: { padding } });
        written++;
      } catch (error) {
        refused = error;
      }
    }

    // THEN the refusal is the quota error with etcd's own words, as kube-apiserver passes them on
    expect(refused).toBeInstanceOf(StorageQuotaExceededError);
    expect((refused as Error).message).toMatch(/etcdserver: mvcc: database space exceeded/);
    // AND what was stored before stays readable
    expect(written).toBeGreaterThan(0);
    expect((await storage.get('/registry/quota/o-0'))?.value).toMatchObject({ metadata: { name: 'o-0' } });
  });
});
