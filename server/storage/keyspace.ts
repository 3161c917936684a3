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

export class Keyspace {
  private readonly objects = new Map<string, StoredObject>();
  /** The keys of `objects`, sorted: range reads walk them from a lower bound. */
  private keys: string[] = [];
  /** `objects` in the order of `keys` (same index): a range read at the current revision walks it without a lookup per key. */
  private sorted: StoredObject[] = [];

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
    const index = lowerBound(this.keys, stored.key);
    if (this.objects.has(stored.key)) {
      this.sorted[index] = stored;
    } else {
      this.keys.splice(index, 0, stored.key);
      this.sorted.splice(index, 0, stored);
    }
    this.objects.set(stored.key, stored);
  }

  remove(key: string): void {
    if (!this.objects.delete(key)) return;
    const index = lowerBound(this.keys, key);
    if (this.keys[index] === key) {
      this.keys.splice(index, 1);
      this.sorted.splice(index, 1);
    }
  }

  /** Replaces everything with `items` (a relist). */
  replaceAll(items: readonly StoredObject[]): void {
    this.objects.clear();
    for (const item of items) this.objects.set(item.key, item);
    // Sorted in JavaScript's order, which lowerBound uses (etcd's byte order may differ for non-ASCII keys).
    this.keys = [...this.objects.keys()].sort();
    this.sorted = this.keys.map((key) => this.objects.get(key)!);
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
    const keys = overrides ? this.snapshotKeys(prefix, overrides) : this.keys;
    // At the current revision (or one no write since has changed) the objects are at the keys' indices.
    const sorted = keys === this.keys ? this.sorted : undefined;
    const lookup = (key: string): StoredObject | undefined => (overrides?.has(key) ? (overrides.get(key) ?? undefined) : this.objects.get(key));

    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : Infinity;
    const items: StoredObject[] = [];
    let index = lowerBound(keys, start);
    for (; index < keys.length && keys[index] < end; index++) {
      const stored = sorted ? sorted[index] : lookup(keys[index]);
      if (!stored) continue;
      if (options.filter && !options.filter(stored.value)) continue;
      if (items.length === limit) break;
      items.push(stored);
    }
    const more = index < keys.length && keys[index] < end;
    if (!more) return { items, revision, more };
    const last = items[items.length - 1];
    const nextKey = last ? `${last.key}\u0000` : keys[index];
    const remaining = options.filter ? undefined : lowerBound(keys, end) - index;
    return { items, revision, more, nextKey, ...(remaining !== undefined ? { remaining } : {}) };
  }

  /** The sorted keys under `prefix` at the snapshot: today's, with those created since removed and those deleted since restored. */
  private snapshotKeys(prefix: string, overrides: ReadonlyMap<string, StoredObject | null>): string[] {
    if (overrides.size === 0) return this.keys;
    const keys = new Set(this.keys.slice(lowerBound(this.keys, prefix), lowerBound(this.keys, prefixEnd(prefix))));
    for (const [key, stored] of overrides) {
      if (stored) keys.add(key);
      else keys.delete(key); // created after the snapshot
    }
    return [...keys].sort();
  }
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
