import { deepFreeze, encodedSize, recordEncodedSize } from './frozen';
import { HistoryEntry, Keyspace } from './keyspace';
import {
  ExpiredError,
  FUTURE_REVISION_WAIT_MS,
  GetOptions,
  KeyExistsError,
  ListOptions,
  ListResult,
  NotFoundError,
  RevisionMismatchError,
  Storage,
  StorageQuotaExceededError,
  StorageEvent,
  StorageWatch,
  StoredObject,
  StoredValue,
  TooLargeRevisionError,
  WatchCallbacks,
} from './types';

export interface MemoryStorageOptions {
  /**
   * How many events the history keeps for watches, snapshots and continue tokens; older ones are
   * compacted (watching or listing from before them → `ExpiredError`).
   * @default 10000
   */
  readonly historyEvents?: number;
  /**
   * Bound of the same history in bytes (of the events' objects as JSON): a few events of large
   * objects must not hold more than this, as the watch cache bounds its own.
   * @default DEFAULT_HISTORY_MAX_BYTES (16 MiB)
   */
  readonly historyMaxBytes?: number;
  /**
   * The most bytes the stored objects may take, each counted as its key, its JSON and
   * `OBJECT_OVERHEAD_BYTES`, as etcd's `--quota-backend-bytes` bounds its database: a create, or an
   * update that grows an object, past it fails with `StorageQuotaExceededError` and writes
   * nothing; deletes and updates that do not grow always succeed.
   * @default DEFAULT_STORAGE_QUOTA_BYTES (16 MiB)
   */
  readonly quotaBytes?: number;
  /**
   * The revision of the empty store; every revision below it counts as compacted.
   * @default - the start time in microseconds (`Date.now() * 1000`)
   */
  readonly initialRevision?: number;
  /**
   * How long a get or list (`minRevision`) or a watch ahead of the store waits for it.
   * @default FUTURE_REVISION_WAIT_MS
   */
  readonly futureRevisionWaitMs?: number;
}

interface Watcher {
  readonly prefix: string;
  /** Only events after this revision are delivered (above the current one while waiting for it). */
  readonly afterRevision: number;
  readonly callbacks: WatchCallbacks;
  stopped: boolean;
  /** While the store has not reached `afterRevision`: the timer that fails the watch. */
  waitTimer?: NodeJS.Timeout;
  /** A progress request made while waiting: answered once the store reaches `afterRevision`. */
  progressWanted?: boolean;
}

/** A history entry with the size it counts against the history's byte bound. */
interface MemoryHistoryEntry extends HistoryEntry {
  readonly bytes: number;
}

/** The history's byte bound: the watch cache's (the pod's memory limit is 256 MiB). */
export const DEFAULT_HISTORY_MAX_BYTES = 16 * 1024 * 1024;
/**
 * The store's default quota, for a 256 MiB pod: ~80 MiB for the process at rest, the objects,
 * the history, watch queues and request bodies in flight. Measured with the server process (idle
 * RSS once full, at 32 MiB): objects of 20 KiB take ~2× their JSON (the object and the JSON cached
 * for reads), 81,000 objects of ~400 B took 131 MiB (~1.65 KiB each) — hence the overhead below,
 * and 16 MiB: ~11,000 small objects or ~800 of 20 KiB.
 */
export const DEFAULT_STORAGE_QUOTA_BYTES = 16 * 1024 * 1024;
/** What an object costs in the heap beyond its JSON (its keys, metadata maps, indexes), counted with each against the quota. */
export const OBJECT_OVERHEAD_BYTES = 1024;

/** A read or watch waiting for the store to reach `revision`. */
interface RevisionWaiter {
  readonly revision: number;
  reached(): void;
  closed(): void;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} ${String(value)} is not a positive integer`);
  return value;
}

/** The byte length of an object's JSON, recorded with the object for later writes. */
function jsonSize(object: StoredValue): number {
  const bytes = Buffer.byteLength(JSON.stringify(object));
  recordEncodedSize(object, bytes);
  return bytes;
}

/** What an object counts against the quota. */
function quotaCost(key: string, jsonBytes: number): number {
  return key.length + jsonBytes + OBJECT_OVERHEAD_BYTES;
}

/**
 * The value with `metadata.resourceVersion` set, frozen. Takes ownership of the value's nested objects.
 * Copied key by key, not spread: an object spread at a site that has seen many shapes gives each
 * result a hidden class of its own (V8), ~0.5 KiB more per stored object and slower reads of it.
 */
function versioned(value: StoredValue, revision: number): StoredValue {
  const metadata = copyOf((value.metadata ?? {}) as Record<string, unknown>);
  metadata.resourceVersion = String(revision);
  const copy = copyOf(value);
  copy.metadata = metadata;
  return deepFreeze(copy);
}

function copyOf(object: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(object)) copy[key] = object[key];
  return copy;
}

/**
 * An in-memory `Storage`: a `Keyspace` (a Map for point reads, sorted keys for range reads) and a
 * bounded ring of events for watches, snapshots and continue tokens. Writes are synchronous
 * under the hood, so each write and its fan-out to watchers happen in one tick, in revision order.
 *
 * Revisions never repeat across processes: the empty store starts at its start time in
 * microseconds, and everything below is compacted, so a client that comes back after a restart
 * with a resourceVersion of the previous process gets `ExpiredError` (410) and relists. This
 * assumes the previous process made fewer than one write per microsecond on average (and the
 * clock did not go back); 2026 in microseconds is about 1.8e15, well within
 * `Number.MAX_SAFE_INTEGER` (9e15, reached in the year 2255).
 */
export class MemoryStorage implements Storage {
  private revision: number;
  private compacted: number;
  private readonly objects = new Keyspace();
  private readonly history: MemoryHistoryEntry[] = [];
  private historyStart = 0;
  private historyBytes = 0;
  private readonly historyEvents: number;
  private readonly historyMaxBytes: number;
  private readonly quotaBytes: number;
  /** Bytes of the stored objects, counted against `quotaBytes` (`quotaCost`). */
  private usedBytes = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly waiters = new Set<RevisionWaiter>();
  private readonly futureRevisionWaitMs: number;
  private closed = false;

  constructor(options: MemoryStorageOptions = {}) {
    this.historyEvents = options.historyEvents ?? 10000;
    if (!Number.isInteger(this.historyEvents) || this.historyEvents < 1) {
      throw new Error(`historyEvents ${String(options.historyEvents)} is not a positive integer`);
    }
    this.historyMaxBytes = positiveInteger('historyMaxBytes', options.historyMaxBytes ?? DEFAULT_HISTORY_MAX_BYTES);
    this.quotaBytes = positiveInteger('quotaBytes', options.quotaBytes ?? DEFAULT_STORAGE_QUOTA_BYTES);
    const initialRevision = options.initialRevision ?? Date.now() * 1000;
    if (!Number.isSafeInteger(initialRevision) || initialRevision < 1) {
      throw new Error(`initialRevision ${String(options.initialRevision)} is not a positive safe integer`);
    }
    this.revision = initialRevision;
    this.compacted = initialRevision;
    this.futureRevisionWaitMs = options.futureRevisionWaitMs ?? FUTURE_REVISION_WAIT_MS;
  }

  /** The revision below which history is gone (`ExpiredError` for reads and watches before it). */
  compactedRevision(): number {
    return this.compacted;
  }

  async currentRevision(): Promise<number> {
    return this.revision;
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | undefined> {
    if (options.minRevision !== undefined && options.minRevision > this.revision) await this.waitForRevision(options.minRevision);
    return this.objects.get(key);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    if (options.revision === undefined && options.minRevision !== undefined && options.minRevision > this.revision) {
      await this.waitForRevision(options.minRevision);
    }
    const revision = options.revision ?? this.revision;
    if (revision > this.revision) throw new TooLargeRevisionError(revision, this.revision);
    if (revision < this.compacted) throw new ExpiredError(revision, this.compacted);
    return this.objects.list(prefix, options, revision, this.revision, this.history, this.historyStart);
  }

  async create(key: string, value: StoredValue): Promise<StoredObject> {
    this.assertOpen();
    if (this.objects.has(key)) throw new KeyExistsError(key);
    const revision = this.revision + 1;
    const object = versioned(value, revision);
    const json = jsonSize(object);
    this.reserve(quotaCost(key, json), 0);
    this.revision = revision;
    const stored: StoredObject = { key, value: object, createRevision: revision, modRevision: revision };
    this.objects.put(stored);
    this.record({ type: 'ADDED', key, revision, object: stored.value }, key.length + json);
    return stored;
  }

  async update(key: string, value: StoredValue, expectedModRevision: number): Promise<StoredObject> {
    this.assertOpen();
    const prev = this.objects.get(key);
    if (!prev) throw new NotFoundError(key);
    if (prev.modRevision !== expectedModRevision) throw new RevisionMismatchError(key, expectedModRevision, prev.modRevision);
    const revision = this.revision + 1;
    const object = versioned(value, revision);
    const json = jsonSize(object);
    this.reserve(quotaCost(key, json), quotaCost(key, encodedSize(prev.value)));
    this.revision = revision;
    const stored: StoredObject = { key, value: object, createRevision: prev.createRevision, modRevision: revision };
    this.objects.put(stored);
    this.record({ type: 'MODIFIED', key, revision, object: stored.value, prevObject: prev.value }, key.length + json, prev);
    return stored;
  }

  async delete(key: string, expectedModRevision: number): Promise<StoredObject> {
    this.assertOpen();
    const prev = this.objects.get(key);
    if (!prev) throw new NotFoundError(key);
    if (prev.modRevision !== expectedModRevision) throw new RevisionMismatchError(key, expectedModRevision, prev.modRevision);
    const revision = ++this.revision;
    this.objects.remove(key);
    const json = encodedSize(prev.value);
    this.usedBytes -= quotaCost(key, json);
    const deleted: StoredObject = { key, value: versioned(prev.value, revision), createRevision: prev.createRevision, modRevision: revision };
    recordEncodedSize(deleted.value, json); // the same object at another resourceVersion: near enough
    this.record({ type: 'DELETED', key, revision, object: deleted.value, prevObject: prev.value }, key.length + json, prev);
    return deleted;
  }

  /**
   * Registers the watcher and replays history after `afterRevision` in the same tick, so no write
   * can slip between the two; callbacks may therefore run before this returns. A watch ahead of
   * the store is registered at once (it only delivers events after `afterRevision`) and fails
   * with `TooLargeRevisionError` when the store has not reached it within the wait.
   */
  watch(prefix: string, afterRevision: number, callbacks: WatchCallbacks): StorageWatch {
    this.assertOpen();
    if (afterRevision < this.compacted) throw new ExpiredError(afterRevision, this.compacted);
    const watcher: Watcher = { prefix, afterRevision, callbacks, stopped: false };
    for (let i = this.historyStart; i < this.history.length; i++) {
      const { event } = this.history[i];
      if (event.revision > afterRevision && event.key.startsWith(prefix)) callbacks.onEvent(event);
    }
    this.watchers.add(watcher);
    if (afterRevision > this.revision) {
      const waiter: RevisionWaiter = {
        revision: afterRevision,
        reached: () => {
          clearTimeout(watcher.waitTimer);
          if (watcher.progressWanted) this.progressSoon(watcher);
        },
        closed: () => clearTimeout(watcher.waitTimer),
      };
      this.waiters.add(waiter);
      watcher.waitTimer = setTimeout(() => {
        this.waiters.delete(waiter);
        if (watcher.stopped) return;
        watcher.stopped = true;
        this.watchers.delete(watcher);
        callbacks.onError?.(new TooLargeRevisionError(afterRevision, this.revision));
      }, this.futureRevisionWaitMs);
      const stopWaiting = (): void => {
        clearTimeout(watcher.waitTimer);
        this.waiters.delete(waiter);
      };
      return this.watchHandle(watcher, stopWaiting);
    }
    return this.watchHandle(watcher);
  }

  private watchHandle(watcher: Watcher, onStop?: () => void): StorageWatch {
    return {
      requestProgress: () => this.progressSoon(watcher),
      stop: () => {
        watcher.stopped = true;
        this.watchers.delete(watcher);
        onStop?.();
      },
    };
  }

  /** A progress notification after the events due now; below the watch's start it waits for the store to reach it. */
  private progressSoon(watcher: Watcher): void {
    queueMicrotask(() => {
      if (watcher.stopped) return;
      watcher.progressWanted = this.revision < watcher.afterRevision;
      if (!watcher.progressWanted) watcher.callbacks.onProgress?.({ type: 'PROGRESS', revision: this.revision });
    });
  }

  /** Resolves when the store reaches `revision`; fails with `TooLargeRevisionError` after the wait. */
  private waitForRevision(revision: number): Promise<void> {
    this.assertOpen();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new TooLargeRevisionError(revision, this.revision));
      }, this.futureRevisionWaitMs);
      const waiter: RevisionWaiter = {
        revision,
        reached: () => {
          clearTimeout(timer);
          resolve();
        },
        closed: () => {
          clearTimeout(timer);
          reject(new Error('storage is closed'));
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** How many storage watchers are registered. */
  watcherCount(): number {
    return this.watchers.size;
  }

  /** As etcd: compacting ahead of the current revision fails (`TooLargeRevisionError`), at or below the compacted one does nothing. */
  async compact(revision: number): Promise<void> {
    this.assertOpen();
    if (revision > this.revision) throw new TooLargeRevisionError(revision, this.revision);
    if (revision <= this.compacted) return;
    // Events at or before the compacted revision are never replayed (watches and snapshots need only later ones).
    while (this.historyStart < this.history.length && this.history[this.historyStart].event.revision <= revision) {
      this.historyBytes -= this.history[this.historyStart++].bytes;
    }
    this.history.splice(0, this.historyStart);
    this.historyStart = 0;
    this.compacted = revision;
  }

  isReady(): boolean {
    return !this.closed;
  }

  unreadyReason(): string | undefined {
    return this.closed ? 'memory: storage is closed' : undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const watcher of this.watchers) {
      watcher.stopped = true;
      clearTimeout(watcher.waitTimer);
    }
    this.watchers.clear();
    for (const waiter of this.waiters) waiter.closed();
    this.waiters.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('storage is closed');
  }

  /** Bytes of the stored objects as the quota counts them, and the quota, for /metrics and tests. */
  storedBytes(): { readonly used: number; readonly quota: number } {
    return { used: this.usedBytes, quota: this.quotaBytes };
  }

  /** Bytes of the history's events, for tests. */
  historySize(): { readonly events: number; readonly bytes: number } {
    return { events: this.history.length - this.historyStart, bytes: this.historyBytes };
  }

  /** Counts a write of `bytes` that replaces `replacedBytes`; past the quota (only when it grows), refuses it. */
  private reserve(bytes: number, replacedBytes: number): void {
    const growth = bytes - replacedBytes;
    if (growth > 0 && this.usedBytes + growth > this.quotaBytes) throw new StorageQuotaExceededError(this.quotaBytes, this.usedBytes, growth);
    this.usedBytes += growth;
  }

  private record(event: StorageEvent, bytes: number, prev?: StoredObject): void {
    this.history.push(prev ? { event, prev, bytes } : { event, bytes }); // no spread: one entry shape for V8
    this.historyBytes += bytes;
    // The newest event always stays (a watch from the revision before it must get it).
    while (this.history.length - this.historyStart > 1 && (this.history.length - this.historyStart > this.historyEvents || this.historyBytes > this.historyMaxBytes)) {
      const oldest = this.history[this.historyStart++];
      this.historyBytes -= oldest.bytes;
      this.compacted = oldest.event.revision;
    }
    // Drop the compacted prefix once it is half the array: amortised O(1), and the compacted
    // events (whose objects may be large and otherwise garbage) are never more than the kept ones.
    if (this.historyStart * 2 >= this.history.length) {
      this.history.splice(0, this.historyStart);
      this.historyStart = 0;
    }
    if (this.waiters.size > 0) this.wakeWaiters();
    for (const watcher of this.watchers) {
      if (watcher.stopped || event.revision <= watcher.afterRevision || !event.key.startsWith(watcher.prefix)) continue;
      try {
        watcher.callbacks.onEvent(event);
      } catch (error) {
        watcher.stopped = true;
        this.watchers.delete(watcher);
        watcher.callbacks.onError?.(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  private wakeWaiters(): void {
    for (const waiter of this.waiters) {
      if (waiter.revision > this.revision) continue;
      this.waiters.delete(waiter);
      waiter.reached();
    }
  }
}
