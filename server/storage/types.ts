/**
 * The storage interface the registry is written against: a key-value store with one global,
 * monotonically increasing revision, shaped after etcd v3 (what k8s.io/apiserver's
 * storage/etcd3 uses). Three implement it: `MemoryStorage` (one process), `EtcdStorage` (etcd v3)
 * and `CachedStorage` (the watch cache in front of another store); one conformance suite
 * (test/support/storage-conformance.ts) holds them to the same behaviour.
 *
 * - Keys are strings such as `/flunders/ns/name` (etcd puts `--etcd-prefix` before them); lists
 *   and watches take a prefix ending in `/`.
 * - Every write creates a new revision. An object's `modRevision` is its resourceVersion; the
 *   store writes it into `metadata.resourceVersion` of every value it hands out, as etcd3's
 *   versioner does on decode. Outside the registry a revision is an opaque string.
 * - Updates and deletes are compare-and-swap on `modRevision`.
 * - History is kept for a window; anything older is compacted. Reading or watching from a
 *   compacted revision fails with `ExpiredError` (the registry answers 410 Expired).
 */

/**
 * A stored value: a JSON object. Values handed out are shared and frozen: never mutate them. A
 * write stores a new value; the registry caches serializations on a frozen value for as long as
 * it lives (KindCodec.storedJson), so a store must never change a value it has handed out.
 */
export type StoredValue = Readonly<Record<string, unknown>>;

export interface StoredObject {
  readonly key: string;
  /** The object, its `metadata.resourceVersion` equal to `String(modRevision)`. */
  readonly value: StoredValue;
  /** The revision that created the key (etcd's create_revision). */
  readonly createRevision: number;
  /** The revision of the last write to the key (etcd's mod_revision): the resourceVersion. */
  readonly modRevision: number;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StorageEvent {
  readonly type: WatchEventType;
  readonly key: string;
  /** The revision of this write. */
  readonly revision: number;
  /** The value after the write; for DELETED, the last value with `resourceVersion` = `revision` (as etcd3 decodes it). */
  readonly object: StoredValue;
  /** The value before the write (etcd's prev_kv); absent for ADDED. */
  readonly prevObject?: StoredValue;
}

/** Delivered in order with events: every event up to `revision` has been delivered (etcd's progress notify). */
export interface ProgressNotification {
  readonly type: 'PROGRESS';
  readonly revision: number;
}

export interface ListOptions {
  /**
   * Read at this revision (a consistent snapshot, for `resourceVersionMatch=Exact` and continue
   * tokens). Fails with `ExpiredError` when compacted and `TooLargeRevisionError` when in the future.
   * @default - the current revision
   */
  readonly revision?: number;
  /**
   * Read at any revision not older than this one (`resourceVersionMatch=NotOlderThan`, and
   * `resourceVersion="0"` as 0): a store may answer from a cache that lags the current revision.
   * When the store has not reached it, it may wait up to `FUTURE_REVISION_WAIT_MS`, then fails
   * with `TooLargeRevisionError`. Ignored when `revision` is set.
   * @default - a consistent read at the current revision
   */
  readonly minRevision?: number;
  /** Return at most this many matching items; `more` then tells whether others follow. @default - all */
  readonly limit?: number;
  /** Start at this key (inclusive), for continuing a paginated list. @default - the prefix itself */
  readonly startKey?: string;
  /** Only values for which this returns true count toward `limit` and are returned. @default - all */
  readonly filter?: (value: StoredValue) => boolean;
}

export interface GetOptions {
  /**
   * Read a value not older than this revision (`resourceVersion` on a GET: "0" as 0, `N` as N):
   * a store may answer from a cache that lags the current revision. When the store has not
   * reached it, it may wait up to `FUTURE_REVISION_WAIT_MS`, then fails with
   * `TooLargeRevisionError`.
   * @default - a consistent read of the current value
   */
  readonly minRevision?: number;
}

export interface ListResult {
  readonly items: readonly StoredObject[];
  /** The revision the list was read at: the list's resourceVersion. */
  readonly revision: number;
  /** Whether keys after the last item remain; continue from `nextKey`. */
  readonly more: boolean;
  /** The key to continue from when `more`. */
  readonly nextKey?: string;
  /**
   * How many keys remain after this page, counted without `filter` (as etcd's count is); only
   * set when `more` and no filter was given.
   */
  readonly remaining?: number;
}

export interface StorageWatch {
  /** Asks for a `PROGRESS` notification, delivered after every event already due. */
  requestProgress(): void;
  /** Stops delivery; no callback runs after it returns. */
  stop(): void;
}

export interface WatchCallbacks {
  /** Events for keys under the prefix with a revision above the start, in revision order. */
  onEvent(event: StorageEvent): void;
  onProgress?(notification: ProgressNotification): void;
  /** The watch ended on the storage side (e.g. the store closed, or the watcher fell behind compaction). */
  onError?(error: Error): void;
}

/** The registry's view of a key-value store. All methods may be asynchronous (etcd is). */
export interface Storage {
  /** The current revision: the resourceVersion of an empty list. */
  currentRevision(): Promise<number>;
  /** The object under `key`, or undefined when there is none. */
  get(key: string, options?: GetOptions): Promise<StoredObject | undefined>;
  list(prefix: string, options?: ListOptions): Promise<ListResult>;
  /** Stores a new key; fails with `KeyExistsError` if it exists. Returns the stored object. */
  create(key: string, value: StoredValue): Promise<StoredObject>;
  /**
   * Replaces the value if the key's modRevision is still `expectedModRevision`; fails with
   * `NotFoundError` if the key is gone and `RevisionMismatchError` if it changed.
   */
  update(key: string, value: StoredValue, expectedModRevision: number): Promise<StoredObject>;
  /** Deletes under the same compare-and-swap; returns the deleted object at the deletion revision. */
  delete(key: string, expectedModRevision: number): Promise<StoredObject>;
  /**
   * Watches keys under `prefix` for writes after `afterRevision` (history is replayed first).
   * When `afterRevision` is older than the compacted revision it fails with `ExpiredError`:
   * thrown at once by a store that knows synchronously (memory), or delivered to `onError` by
   * one that learns it from its server (etcd answers a watch on a compacted revision that way).
   * When `afterRevision` is ahead of the store, the store waits up to `FUTURE_REVISION_WAIT_MS`
   * for it, then delivers `TooLargeRevisionError` to `onError`.
   */
  watch(prefix: string, afterRevision: number, callbacks: WatchCallbacks): StorageWatch;
  /**
   * Discards history before `revision` (etcd's compaction): reading or watching from a revision
   * below it fails with `ExpiredError` from then on. Compacting at or below the compacted
   * revision does nothing; ahead of the current revision fails with `TooLargeRevisionError`.
   */
  compact(revision: number): Promise<void>;
  /** Whether the store can serve (connected, loaded). */
  isReady(): boolean;
  /**
   * Why the store cannot serve, in words naming the backend (`etcd: connect ECONNREFUSED
   * 127.0.0.1:2379`), for `/readyz/etcd`; undefined when it can.
   */
  unreadyReason(): string | undefined;
  /** Ends every watch (their `onError` is not called) and releases resources. */
  close(): Promise<void>;
}

/** How long a read or watch at a revision ahead of the store waits for it (the cacher's 3 s). */
export const FUTURE_REVISION_WAIT_MS = 3000;

/** A revision older than the compacted history was asked for. */
export class ExpiredError extends Error {
  constructor(
    readonly requestedRevision: number,
    readonly compactedRevision: number,
  ) {
    super(`revision ${requestedRevision} has been compacted (compacted revision ${compactedRevision})`);
    this.name = 'ExpiredError';
  }
}

/** A revision newer than the store's current one was asked for. */
export class TooLargeRevisionError extends Error {
  constructor(
    readonly requestedRevision: number,
    readonly currentRevision: number,
  ) {
    super(`revision ${requestedRevision} is newer than the current revision ${currentRevision}`);
    this.name = 'TooLargeRevisionError';
  }
}

export class KeyExistsError extends Error {
  constructor(readonly key: string) {
    super(`key ${key} already exists`);
    this.name = 'KeyExistsError';
  }
}

export class NotFoundError extends Error {
  constructor(readonly key: string) {
    super(`key ${key} not found`);
    this.name = 'NotFoundError';
  }
}

/**
 * The store could not be reached or did not answer in time (etcd down, no leader, timeout):
 * nothing can be said about whether a write took place only if `indeterminate`.
 */
export class StorageUnavailableError extends Error {
  constructor(
    message: string,
    /** The write may or may not have been applied (the request left, no answer came back). */
    readonly indeterminate = false,
  ) {
    super(message);
    this.name = 'StorageUnavailableError';
  }
}

/** Compare-and-swap failed: the key was written since it was read. */
export class RevisionMismatchError extends Error {
  constructor(
    readonly key: string,
    readonly expectedModRevision: number,
    readonly actualModRevision: number,
  ) {
    super(`key ${key} has modRevision ${actualModRevision}, expected ${expectedModRevision}`);
    this.name = 'RevisionMismatchError';
  }
}

/**
 * The store has no room for the write (etcd's "etcdserver: mvcc: database space exceeded", the
 * memory store's quota): nothing was written. Deletes, and updates that do not grow, still succeed.
 */
export class StorageQuotaExceededError extends Error {
  /** The memory store's quota, its use and the refused write's growth; etcd's own refusal (NOSPACE) carries etcd's message instead. */
  constructor(
    readonly quotaBytes: number | undefined,
    readonly usedBytes: number | undefined,
    /** How many more bytes the refused write needed. */
    readonly requestedBytes: number | undefined,
    message = `database space exceeded: the write needs ${requestedBytes} more bytes, ${usedBytes} of the quota of ${quotaBytes} bytes are used`,
  ) {
    super(message);
    this.name = 'StorageQuotaExceededError';
  }
}
