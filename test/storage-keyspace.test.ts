import { HistoryEntry, Keyspace } from '../server/storage/keyspace';
import type { ListOptions, ListResult, StoredObject } from '../server/storage/types';

/**
 * The keyspace keeps its sorted keys in bounded runs; these tests hold its range reads to a model
 * that sorts every key on each read, over enough keys to split runs many times.
 */

/** A deterministic pseudo-random sequence (mulberry32), so a failure replays. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function stored(key: string, revision: number, createRevision = revision): StoredObject {
  return { key, value: { name: key, n: revision % 3 }, createRevision, modRevision: revision };
}

/** The model: every key of `objects` under `prefix`, sorted, read as `Storage.list` specifies. */
function modelList(objects: ReadonlyMap<string, StoredObject>, prefix: string, options: ListOptions, revision: number): ListResult {
  const keys = [...objects.keys()].filter((k) => k.startsWith(prefix)).sort();
  const from = keys.filter((k) => options.startKey === undefined || k >= options.startKey);
  const limit = options.limit ?? Infinity;
  const items: StoredObject[] = [];
  let i = 0;
  for (; i < from.length; i++) {
    const o = objects.get(from[i])!;
    if (options.filter && !options.filter(o.value)) continue;
    if (items.length === limit) break;
    items.push(o);
  }
  if (i === from.length) return { items, revision, more: false };
  const last = items[items.length - 1];
  return {
    items,
    revision,
    more: true,
    nextKey: last ? `${last.key}\u0000` : from[i],
    ...(options.filter ? {} : { remaining: from.length - i }),
  };
}

describe('Keyspace', () => {
  test('range reads at the current and at past revisions equal the model through thousands of creates, updates and deletes', () => {
    // GIVEN a keyspace and a model fed the same random writes over three prefixes (keys in random order, so runs split everywhere)
    const next = random(42);
    const keyspace = new Keyspace();
    const model = new Map<string, StoredObject>();
    const snapshots = new Map<number, Map<string, StoredObject>>();
    const history: HistoryEntry[] = [];
    const prefixes = ['/r/a/', '/r/b/', '/r/c/'];
    const pick = () => `${prefixes[Math.floor(next() * 3)]}${Math.floor(next() * 4000)}`;
    const filter = (value: Record<string, unknown>) => value.n !== 1;
    let revision = 0;
    const check = (at: number, objects: ReadonlyMap<string, StoredObject>) => {
      for (const prefix of ['/r/', ...prefixes]) {
        const startKey = next() < 0.5 ? undefined : pick();
        const limit = next() < 0.3 ? undefined : 1 + Math.floor(next() * 700);
        for (const options of [{ startKey, limit }, { startKey, limit, filter }]) {
          // THEN each read equals the model's
          expect(keyspace.list(prefix, options, at, revision, history, 0)).toEqual(modelList(objects, prefix, options, at));
        }
      }
    };
    for (let step = 0; step < 12000; step++) {
      // WHEN a key is created, replaced or removed
      const key = pick();
      revision++;
      const prev = model.get(key);
      if (prev && next() < 0.3) {
        keyspace.remove(key);
        model.delete(key);
        history.push({ event: { type: 'DELETED', key, revision, object: prev.value }, prev });
      } else {
        const object = stored(key, revision, prev?.createRevision);
        keyspace.put(object);
        model.set(key, object);
        history.push({ event: { type: prev ? 'MODIFIED' : 'ADDED', key, revision, object: object.value }, ...(prev ? { prev } : {}) });
      }
      expect(keyspace.size).toBe(model.size);
      if (step % 1500 === 0) snapshots.set(revision, new Map(model));
      if (step % 500 === 0) check(revision, model);
    }
    check(revision, model);
    for (const [at, objects] of snapshots) check(at, objects);

    // WHEN everything is replaced (a relist), THEN reads equal the model of the new contents
    const relisted = [...model.values()].filter((o) => o.modRevision % 2 === 0);
    keyspace.replaceAll(relisted);
    model.clear();
    for (const o of relisted) model.set(o.key, o);
    history.length = 0;
    check(revision, model);
  });

  test('removing every key leaves an empty keyspace that lists nothing and takes new keys', () => {
    // GIVEN 2,000 keys
    const keyspace = new Keyspace();
    for (let i = 0; i < 2000; i++) keyspace.put(stored(`/k/${i}`, i + 1));
    // WHEN all are removed, in an order unrelated to theirs
    for (let i = 0; i < 2000; i++) keyspace.remove(`/k/${(i * 7919) % 2000}`);
    // THEN nothing is listed; a new key is
    expect(keyspace.size).toBe(0);
    expect(keyspace.list('/k/', {}, 3000, 3000, [], 0)).toEqual({ items: [], revision: 3000, more: false });
    keyspace.put(stored('/k/x', 3001));
    expect(keyspace.list('/k/', {}, 3001, 3001, [], 0).items.map((o) => o.key)).toEqual(['/k/x']);
  });
});
