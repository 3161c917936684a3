import type { ListOptions, ListResult, StorageEvent, StoredObject } from './types';

/**
 * The objects of an in-process store under sorted keys, and the range reads that MemoryStorage
 * and the watch cache answer alike (one code path, so the two cannot drift apart): a list at the
 * current revision, or at an earlier one rebuilt from the history of writes since.
 */

/** A write, and the object it replaced: enough to rebuild the snapshot before it. */
export interface HistoryEntry {
  readonly event: StorageEvent;
  readonly prev?: StoredObject;
}

/** The first index in sorted `keys` whose key is ≥ `key`. */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The smallest string greater than every string starting with `prefix`. */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/**
 * A run of consecutive sorted keys and their objects (same index). The keyspace keeps its keys in
 * runs of at most MAX_RUN, so that storing a new key moves at most MAX_RUN entries instead of
 * every key after it (two splices into arrays of 10–30k entries cost ~80 µs per create).
 */
interface Run {
  keys: string[];
  /** `undefined` only in a snapshot's run: a key whose object is looked up elsewhere found nothing. */
  objects: (StoredObject | undefined)[];
}

const MAX_RUN = 512;

/** Where a key is, or would be inserted: run `run`, index `index` in it. */
interface Position {
  run: number;
  index: number;
}

/** The first position whose key is ≥ `key` (past the last run's end when none is). */
function seek(runs: readonly Run[], key: string): Position {
  // The last run whose first key is ≤ key holds the lower bound, or it is the next run's start.
  let lo = 0;
  let hi = runs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid].keys[0] <= key) lo = mid + 1;
    else hi = mid;
  }
  const run = lo === 0 ? 0 : lo - 1;
  if (run >= runs.length) return { run: 0, index: 0 };
  const index = lowerBound(runs[run].keys, key);
  return index === runs[run].keys.length && run + 1 < runs.length ? { run: run + 1, index: 0 } : { run, index };
}

export class Keyspace {
  private readonly objects = new Map<string, StoredObject>();
  /** The keys of `objects` sorted, in runs (none empty): range reads walk them from a lower bound. */
  private runs: Run[] = [];

  get size(): number {
    return this.objects.size;
  }

  get(key: string): StoredObject | undefined {
    return this.objects.get(key);
  }

  has(key: string): boolean {
    return this.objects.has(key);
  }

  /** Stores `stored` under its key, new or replacing. */
  put(stored: StoredObject): void {
    const key = stored.key;
    const replacing = this.objects.has(key);
    this.objects.set(key, stored);
    if (this.runs.length === 0) {
      this.runs.push({ keys: [key], objects: [stored] });
      return;
    }
    const { run, index } = seek(this.runs, key);
    const target = this.runs[run];
    if (replacing) {
      target.objects[index] = stored;
      return;
    }
    if (index === target.keys.length) {
      target.keys.push(key);
      target.objects.push(stored);
    } else {
      target.keys.splice(index, 0, key);
      target.objects.splice(index, 0, stored);
    }
    if (target.keys.length > MAX_RUN) {
      const half = target.keys.length >>> 1;
      this.runs.splice(run + 1, 0, { keys: target.keys.splice(half), objects: target.objects.splice(half) });
    }
  }

  remove(key: string): void {
    if (!this.objects.delete(key)) return;
    const { run, index } = seek(this.runs, key);
    const target = this.runs[run];
    if (target?.keys[index] !== key) return;
    target.keys.splice(index, 1);
    target.objects.splice(index, 1);
    if (target.keys.length === 0) this.runs.splice(run, 1);
  }

  /** Replaces everything with `items` (a relist). */
  replaceAll(items: readonly StoredObject[]): void {
    this.objects.clear();
    for (const item of items) this.objects.set(item.key, item);
    // Sorted in JavaScript's order, which lowerBound uses (etcd's byte order may differ for non-ASCII keys).
    const keys = [...this.objects.keys()].sort();
    this.runs = [];
    for (let i = 0; i < keys.length; i += MAX_RUN / 2) {
      const runKeys = keys.slice(i, i + MAX_RUN / 2);
      this.runs.push({ keys: runKeys, objects: runKeys.map((key) => this.objects.get(key)!) });
    }
  }

  /**
   * `Storage.list` over the objects at `revision`: the current objects when it is `current`,
   * else those rebuilt with `history` (entries in revision order, from `historyStart`), which the
   * caller has checked covers every write after `revision`.
   */
  list(prefix: string, options: ListOptions, revision: number, current: number, history: readonly HistoryEntry[], historyStart: number): ListResult {
    const start = options.startKey !== undefined && options.startKey > prefix ? options.startKey : prefix;
    const end = prefixEnd(prefix);
    const overrides = revision === current ? undefined : snapshotOverrides(prefix, revision, history, historyStart);
    const runs = overrides && overrides.size > 0 ? this.snapshotRuns(prefix, overrides) : this.runs;

    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : Infinity;
    const items: StoredObject[] = [];
    let { run, index } = seek(runs, start);
    let more = false;
    walk: for (; run < runs.length; run++, index = 0) {
      const { keys, objects } = runs[run];
      for (; index < keys.length; index++) {
        if (keys[index] >= end) break walk;
        const stored = objects[index];
        if (!stored) continue;
        if (options.filter && !options.filter(stored.value)) continue;
        if (items.length === limit) {
          more = true;
          break walk;
        }
        items.push(stored);
      }
    }
    if (!more) return { items, revision, more };
    const last = items[items.length - 1];
    const nextKey = last ? `${last.key}\u0000` : runs[run].keys[index];
    const remaining = options.filter ? undefined : countBefore(runs, { run, index }, end);
    return { items, revision, more, nextKey, ...(remaining !== undefined ? { remaining } : {}) };
  }

  /** The sorted keys under `prefix` at the snapshot, in one run: today's, with those created since removed and those deleted since restored. */
  private snapshotRuns(prefix: string, overrides: ReadonlyMap<string, StoredObject | null>): Run[] {
    const keys = new Set<string>();
    const end = prefixEnd(prefix);
    let { run, index } = seek(this.runs, prefix);
    walk: for (; run < this.runs.length; run++, index = 0) {
      const runKeys = this.runs[run].keys;
      for (; index < runKeys.length; index++) {
        if (runKeys[index] >= end) break walk;
        keys.add(runKeys[index]);
      }
    }
    for (const [key, stored] of overrides) {
      if (stored) keys.add(key);
      else keys.delete(key); // created after the snapshot
    }
    const sortedKeys = [...keys].sort();
    const objects = sortedKeys.map((key) => (overrides.has(key) ? (overrides.get(key) ?? undefined) : this.objects.get(key)));
    return [{ keys: sortedKeys, objects }];
  }
}

/** How many keys from `from` on are < `end`. */
function countBefore(runs: readonly Run[], from: Position, end: string): number {
  let count = 0;
  for (let run = from.run, index = from.index; run < runs.length; run++, index = 0) {
    const keys = runs[run].keys;
    if (keys[keys.length - 1] < end) {
      count += keys.length - index;
      continue;
    }
    return count + lowerBound(keys, end) - index;
  }
  return count;
}

/** For each key under `prefix` written after `revision`, its object at `revision` (`null`: it did not exist then). */
function snapshotOverrides(prefix: string, revision: number, history: readonly HistoryEntry[], historyStart: number): Map<string, StoredObject | null> {
  const overrides = new Map<string, StoredObject | null>();
  for (let i = historyStart; i < history.length; i++) {
    const { event, prev } = history[i];
    if (event.revision <= revision || !event.key.startsWith(prefix) || overrides.has(event.key)) continue;
    overrides.set(event.key, event.type === 'ADDED' ? null : (prev ?? null));
  }
  return overrides;
}
