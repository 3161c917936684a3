/**
 * A watch cache in front of a `Storage`, as k8s.io/apiserver's storage/cacher: per resource, one
 * list and then ONE watch on the store behind, applied to an in-memory copy of the current
 * objects and to a bounded history of events; every client watch of that resource is served
 * from it (fan-out), and gets and lists that may be served from memory are.
 *
 * - Writes and `currentRevision()` go to the store behind; `compact()` too, and trims the
 *   caches' history to match; `close()` closes it.
 * - `get` of a key under a cached prefix is read as a list is (below), with `minRevision` or
 *   consistent (as the cacher's Get, and consistent reads from cache for GETs too); other keys,
 *   and any key while its cache is not ready, from the store behind.
 * - `list` with `minRevision` (resourceVersion="0", NotOlderThan): from memory once the cache has
 *   reached it (waits up to the future-revision wait, then `TooLargeRevisionError`; without
 *   ordered progress notifications, a revision past the cache's last event goes to the store).
 * - `list` with `revision` (Exact, continue tokens): from the history when its window covers the
 *   revision, else from the store behind.
 * - `list` (and `get`) with neither (resourceVersion="", a consistent read, as kube-apiserver
 *   1.31's ConsistentListFromCache): the store's current revision (concurrent requests share one check),
 *   then from memory once the cache has caught up with it (it asks its watch for progress so an
 *   idle resource catches up at once); if it has not within `consistentReadWaitMs`, from the store.
 *   Only when the store's progress notifications are ordered (`progressNotifyOrdered`); else
 *   consistent reads go to the store, as kube-apiserver does on an etcd without that guarantee.
 * - `watch`: history replayed from memory, then live; a revision older than the history →
 *   `ExpiredError` (thrown); one ahead of the cache waits, then `TooLargeRevisionError` (onError).
 *
 * When the watch behind fails:
 * - with `ExpiredError` (the cache fell behind compaction): as the cacher's `terminateAllWatchers`
 *   before it relists, every client watch ends with `onError(ExpiredError)` naming the revision it
 *   had reached (the client answers 410 and its informer relists), and the cache lists again.
 * - with anything else (etcd unreachable): the cache is unready (`unreadyReason` says why), lists
 *   and new watches go to the store behind (which fails fast while it is down), and the watch is
 *   retried from the cache's revision with backoff. Client watches keep their stream and resume
 *   with it, as upstream's reflector retries a failed watch without relisting.
 *
 * Callbacks of client watches run synchronously in the fan-out, never awaited: a slow client
 * (its socket buffering) does not hold others back, and one that throws is ended alone.
 */
import type { Logger } from 'pino';
import { encodedSize } from './frozen';
import { HistoryEntry, Keyspace } from './keyspace';
import {
  ExpiredError,
  FUTURE_REVISION_WAIT_MS,
  GetOptions,
  ListOptions,
  ListResult,
  ProgressNotification,
  Storage,
  StorageEvent,
  StorageWatch,
  StoredObject,
  StoredValue,
  TooLargeRevisionError,
  WatchCallbacks,
} from './types';

export interface CacherOptions {
  /** The store behind the cache (etcd; MemoryStorage in unit tests). Writes go straight to it. */
  readonly storage: Storage;
  /** One cache and one watch on `storage` per prefix (one per resource), e.g. '/flunders/'; other keys pass through. */
  readonly resourcePrefixes: readonly string[];
  /** Bound of the event history kept for watches and exact-revision lists, in bytes of JSON. @default 16 MiB (per resource: the pod's memory limit is 256 MiB) */
  readonly historyMaxBytes?: number;
  /** Bound of the event history, in events per resource. @default 10000 */
  readonly historyMaxEvents?: number;
  /**
   * How often each cache asks its watch for a progress notification, which moves the cache's
   * revision past writes to other resources (fresher resourceVersion="0" lists, consistent reads
   * that rarely wait).
   * @default 1000
   */
  readonly progressIntervalMs?: number;
  /** How long a read or watch at a revision ahead of the cache waits for it. @default FUTURE_REVISION_WAIT_MS (3 s) */
  readonly futureRevisionWaitMs?: number;
  /** How long a consistent read (get or list) waits for the cache to catch up before reading from the store behind. @default 3000 */
  readonly consistentReadWaitMs?: number;
  /**
   * Whether the store's progress notifications come after every event up to their revision, as
   * the `Storage` contract asks: MemoryStorage's do, and so do EtcdStorage's (it checks each
   * answer of etcd before passing it on, since etcd before 3.4.31 and 3.5.13 — Debian's 3.4.23
   * among them — answers a progress request with its current revision ahead of events still on
   * their way: etcd-io/etcd#15220, #17507). Set it false for a store that passes such answers on
   * unchecked (`etcdOrdersProgressNotify` tells from etcd's version): the cache's revision then
   * moves with its events only, consistent lists and `minRevision` lists the cache has not
   * reached go to the store, and client progress notifications carry the revision of the cache's
   * last event.
   * @default true
   */
  readonly progressNotifyOrdered?: boolean;
  readonly logger: Logger;
}

/** One resource's cache, for /metrics. */
export interface CacheStats {
  readonly prefix: string;
  readonly objects: number;
  readonly historyEvents: number;
  readonly historyBytes: number;
  /** The revision the cache holds the store's state at. */
  readonly revision: number;
  readonly ready: boolean;
}

/**
 * Whether an etcd of this version (its status' `version`, e.g. "3.4.23") sends progress
 * notifications only after every event up to their revision: 3.4.31+ within 3.4, 3.5.13+ from
 * 3.5 on, as k8s.io/apiserver's feature support checker decides for consistent reads from cache.
 * A version that does not parse is taken as not.
 */
export function etcdOrdersProgressNotify(version: string): boolean {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!match) return false;
  const [major, minor, patch] = match.slice(1).map(Number);
  if (major !== 3) return major > 3;
  if (minor === 4) return patch >= 31;
  if (minor === 5) return patch >= 13;
  return minor > 5;
}

const DEFAULT_HISTORY_MAX_BYTES = 16 * 1024 * 1024;
const DEFAULT_HISTORY_MAX_EVENTS = 10_000;
const DEFAULT_PROGRESS_INTERVAL_MS = 1000;
const DEFAULT_CONSISTENT_READ_WAIT_MS = 3000;
/** Backoff between attempts to list or watch the store behind. */
const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5000;
/** A progress request unanswered for this long may be sent again. */
const PROGRESS_REQUEST_TIMEOUT_MS = 1000;
/** While reads wait for a revision, how soon to ask again after a progress notification fell short. */
const PROGRESS_RETRY_MS = 50;

/** A history entry with its approximate size (the history is bounded by bytes). */
interface CacheEntry extends HistoryEntry {
  readonly bytes: number;
}

interface ClientWatcher {
  readonly prefix: string;
  readonly callbacks: WatchCallbacks;
  /** Events up to this revision are not delivered: replayed already, or not after the watch's start. */
  delivered: number;
  stopped: boolean;
}

interface RevisionWaiter {
  readonly revision: number;
  resolve(reached: boolean): void;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** The cache of one resource prefix. */
class ResourceCache {
  /** The cache holds the store's state at this revision: its last event's, or a later one an ordered progress notification vouched for. */
  revision = 0;
  /** The store is known to have reached this revision (every progress notification counts). */
  private seenRevision = 0;
  /** The revision of the last event applied (events at or below it are repeats). */
  private lastEventRevision = 0;
  private readonly objects = new Keyspace();
  private readonly history: CacheEntry[] = [];
  private historyStart = 0;
  private historyBytes = 0;
  /** Every event after this revision is in the history (the list's revision, or the last evicted event). */
  private historyFrom = 0;
  private readonly watchers = new Set<ClientWatcher>();
  private readonly waiters = new Set<RevisionWaiter>();
  /** Client watchers that asked for a progress notification: answered at the next one from the store. */
  private readonly progressWanted = new Set<ClientWatcher>();
  private progressRequestedAt: number | undefined;
  private progressRetry: NodeJS.Timeout | undefined;
  private underlying: StorageWatch | undefined;
  /** Bumped whenever the watch behind is replaced, so callbacks of an abandoned one are ignored. */
  private generation = 0;
  private listed = false;
  private watching = false;
  private reason: string | undefined = 'initializing';
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_MIN_MS;
  private closed = false;

  constructor(
    readonly prefix: string,
    private readonly storage: Storage,
    private readonly settings: {
      readonly historyMaxBytes: number;
      readonly historyMaxEvents: number;
      readonly futureRevisionWaitMs: number;
      readonly progressNotifyOrdered: boolean;
      readonly logger: Logger;
    },
  ) {}

  start(): void {
    this.relist();
  }

  /** Listed, and the watch behind is running: memory may answer. */
  isReady(): boolean {
    return this.listed && this.watching && !this.closed;
  }

  unreadyReason(): string | undefined {
    return this.isReady() ? undefined : `watch cache ${this.prefix}: ${this.reason ?? 'not ready'}`;
  }

  /** Whether an exact-revision read at `revision` can be rebuilt from the history. */
  covers(revision: number): boolean {
    // Not beyond the last event: a progress notification vouches for the state at its revision,
    // while EtcdStorage's checked answers (etcd before 3.4.31) may still have a key created and
    // deleted inside the window on its way, which a snapshot between the two would miss.
    return revision >= this.historyFrom && revision <= this.lastEventRevision;
  }

  stats(): CacheStats {
    return {
      prefix: this.prefix,
      objects: this.objects.size,
      historyEvents: this.history.length - this.historyStart,
      historyBytes: this.historyBytes,
      revision: this.revision,
      ready: this.isReady(),
    };
  }

  /**
   * Resolves true once the store is known to have reached `revision` (with ordered progress
   * notifications: once the cache holds its state there), false after `timeoutMs` (or on close).
   */
  waitForRevision(revision: number, timeoutMs: number): Promise<boolean> {
    if (this.seenRevision >= revision) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter: RevisionWaiter = {
        revision,
        resolve: (reached) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(reached);
        },
      };
      const timer = setTimeout(() => waiter.resolve(false), timeoutMs);
      this.waiters.add(waiter);
      this.requestProgress();
    });
  }

  /** Asks the watch behind for a progress notification, unless one was asked for recently and not answered yet. */
  requestProgress(): void {
    if (!this.underlying || this.closed) return;
    const now = Date.now();
    if (this.progressRequestedAt !== undefined && now - this.progressRequestedAt < PROGRESS_REQUEST_TIMEOUT_MS) return;
    this.progressRequestedAt = now;
    this.underlying.requestProgress();
  }

  /** The object under `key` in the cache, at the cache's revision. */
  get(key: string): StoredObject | undefined {
    return this.objects.get(key);
  }

  /** As MemoryStorage.list (the same code), from the cache: at `revision` when given (the caller checked `covers`), else at the cache's revision. */
  list(prefix: string, options: ListOptions, revision = this.revision): ListResult {
    return this.objects.list(prefix, options, revision, this.revision, this.history, this.historyStart);
  }

  /**
   * A client watch: history after `afterRevision` is replayed in this call (so callbacks may run
   * before it returns), then events follow live. Ahead of the cache: waits, then TooLargeRevisionError.
   */
  watch(prefix: string, afterRevision: number, callbacks: WatchCallbacks): StorageWatch {
    if (afterRevision < this.historyFrom) throw new ExpiredError(afterRevision, this.historyFrom);
    const watcher: ClientWatcher = { prefix, callbacks, delivered: afterRevision, stopped: false };
    this.watchers.add(watcher);
    for (let i = this.historyStart; i < this.history.length && !watcher.stopped; i++) this.deliver(watcher, this.history[i].event);
    if (afterRevision > this.seenRevision) {
      void this.waitForRevision(afterRevision, this.settings.futureRevisionWaitMs).then((reached) => {
        if (!reached && !watcher.stopped) this.end(watcher, new TooLargeRevisionError(afterRevision, this.seenRevision));
      });
    }
    return {
      requestProgress: () => {
        if (watcher.stopped) return;
        this.progressWanted.add(watcher);
        this.requestProgress();
      },
      stop: () => {
        watcher.stopped = true;
        this.watchers.delete(watcher);
        this.progressWanted.delete(watcher);
      },
    };
  }

  /** Trims the history before `revision`, as the store behind compacts it. */
  compact(revision: number): void {
    while (this.historyStart < this.history.length && this.history[this.historyStart].event.revision < revision) this.evictOldest();
    // The compacted revision is the store's, even while the cache lags behind it.
    this.historyFrom = Math.max(this.historyFrom, revision);
  }

  close(): void {
    this.closed = true;
    this.stopUnderlying();
    clearTimeout(this.retryTimer);
    clearTimeout(this.progressRetry);
    for (const watcher of this.watchers) watcher.stopped = true;
    this.watchers.clear();
    this.progressWanted.clear();
    for (const waiter of this.waiters) waiter.resolve(false);
  }

  // --- keeping the cache in step with the store behind ---

  private relist(): void {
    if (this.closed) return;
    this.listed = false;
    this.stopUnderlying();
    this.storage.list(this.prefix).then(
      (listed) => {
        if (this.closed) return;
        this.replace(listed);
        this.listed = true;
        this.startWatch(true);
      },
      (error: unknown) => {
        this.reason = `list failed: ${asError(error).message}`;
        this.settings.logger.warn({ err: error, prefix: this.prefix }, 'watch cache: list failed; retrying');
        this.retryLater(() => this.relist());
      },
    );
  }

  private replace(listed: ListResult): void {
    this.objects.replaceAll(listed.items);
    this.history.length = 0;
    this.historyStart = 0;
    this.historyBytes = 0;
    this.historyFrom = listed.revision;
    this.revision = listed.revision;
    this.lastEventRevision = listed.revision;
    this.seenRevision = Math.max(this.seenRevision, listed.revision);
    this.settings.logger.info({ prefix: this.prefix, revision: listed.revision, objects: listed.items.length }, 'watch cache initialized');
    this.wakeWaiters(); // reads that waited through a relist for a revision the list reached
  }

  /** Watches the store behind from the cache's revision. After a list it is ready at once; after a failure, on its first sign of life. */
  private startWatch(afterList: boolean): void {
    if (this.closed) return;
    this.stopUnderlying();
    const generation = this.generation;
    const current = (): boolean => generation === this.generation && !this.closed;
    try {
      this.underlying = this.storage.watch(this.prefix, this.revision, {
        onEvent: (event) => {
          if (current()) this.apply(event);
        },
        onProgress: (notification) => {
          if (current()) this.progress(notification);
        },
        onError: (error) => {
          if (current()) this.watchFailed(error);
        },
      });
    } catch (error) {
      this.watchFailed(asError(error));
      return;
    }
    if (afterList) this.healthy();
    else this.requestProgress();
  }

  private stopUnderlying(): void {
    this.generation++;
    this.watching = false;
    this.progressRequestedAt = undefined;
    const underlying = this.underlying;
    this.underlying = undefined;
    underlying?.stop();
  }

  private healthy(): void {
    if (this.watching) return;
    this.watching = true;
    this.reason = undefined;
    this.retryMs = RETRY_MIN_MS;
  }

  private watchFailed(error: Error): void {
    this.stopUnderlying();
    if (error instanceof ExpiredError) {
      this.settings.logger.warn({ err: error, prefix: this.prefix }, 'watch cache fell behind compaction; relisting');
      this.reason = `relisting: ${error.message}`;
      for (const watcher of this.watchers) this.end(watcher, new ExpiredError(watcher.delivered, error.compactedRevision));
      this.relist();
      return;
    }
    this.reason = `watch failed: ${error.message}`;
    this.settings.logger.warn({ err: error, prefix: this.prefix }, 'watch cache: watch failed; retrying');
    this.retryLater(() => this.startWatch(false));
  }

  private retryLater(retry: () => void): void {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(retry, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  private apply(event: StorageEvent): void {
    this.healthy();
    if (event.revision <= this.lastEventRevision) return; // already seen (a resumed watch)
    const prev = this.objects.get(event.key);
    if (event.type === 'DELETED') {
      this.objects.remove(event.key);
    } else {
      const createRevision = event.type === 'ADDED' ? event.revision : (prev?.createRevision ?? event.revision);
      this.objects.put({ key: event.key, value: event.object, createRevision, modRevision: event.revision });
    }
    const bytes = event.key.length + encodedSize(event.object);
    this.record(prev ? { event, prev, bytes } : { event, bytes }); // no spread: one entry shape for V8
    this.lastEventRevision = event.revision;
    this.revision = Math.max(this.revision, event.revision);
    this.seenRevision = Math.max(this.seenRevision, event.revision);
    for (const watcher of this.watchers) this.deliver(watcher, event);
    this.wakeWaiters();
  }

  private record(entry: CacheEntry): void {
    this.history.push(entry);
    this.historyBytes += entry.bytes;
    while (this.history.length - this.historyStart > this.settings.historyMaxEvents || this.historyBytes > this.settings.historyMaxBytes) {
      this.evictOldest();
    }
  }

  private evictOldest(): void {
    const oldest = this.history[this.historyStart++];
    this.historyBytes -= oldest.bytes;
    this.historyFrom = Math.max(this.historyFrom, oldest.event.revision);
    // Drop the evicted entries once they are half the array: amortised O(1), and evicted events
    // (whose objects may be large and otherwise garbage) never outnumber the kept ones.
    if (this.historyStart * 2 >= this.history.length) {
      this.history.splice(0, this.historyStart);
      this.historyStart = 0;
    }
  }

  private progress(notification: ProgressNotification): void {
    this.healthy();
    this.progressRequestedAt = undefined;
    this.seenRevision = Math.max(this.seenRevision, notification.revision);
    if (this.settings.progressNotifyOrdered) this.revision = this.seenRevision;
    this.wakeWaiters();
    const answer: ProgressNotification = { type: 'PROGRESS', revision: this.revision };
    for (const watcher of this.progressWanted) {
      if (watcher.delivered > this.revision) continue; // still waiting for its start revision
      this.progressWanted.delete(watcher);
      // `delivered` stays at the last event: an event at or below the answer that still arrives
      // (a create and delete inside a checked window, see covers) is delivered late, never dropped.
      this.call(watcher, () => watcher.callbacks.onProgress?.(answer));
    }
    // Reads still waiting for a later revision (writes elsewhere in the store): ask again, soon.
    if (this.waiters.size > 0 && !this.progressRetry) {
      this.progressRetry = setTimeout(() => {
        this.progressRetry = undefined;
        if (this.waiters.size > 0) this.requestProgress();
      }, PROGRESS_RETRY_MS);
    }
  }

  private wakeWaiters(): void {
    for (const waiter of this.waiters) if (this.seenRevision >= waiter.revision) waiter.resolve(true);
  }

  private deliver(watcher: ClientWatcher, event: StorageEvent): void {
    if (watcher.stopped || event.revision <= watcher.delivered || !event.key.startsWith(watcher.prefix)) return;
    watcher.delivered = event.revision;
    this.call(watcher, () => watcher.callbacks.onEvent(event));
  }

  /** Runs one watcher's callback; one that throws ends that watcher alone. */
  private call(watcher: ClientWatcher, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.end(watcher, asError(error));
    }
  }

  private end(watcher: ClientWatcher, error: Error): void {
    if (watcher.stopped) return;
    watcher.stopped = true;
    this.watchers.delete(watcher);
    this.progressWanted.delete(watcher);
    try {
      watcher.callbacks.onError?.(error);
    } catch (thrown) {
      this.settings.logger.error({ err: thrown, prefix: this.prefix }, 'watch cache: a watcher failed in onError');
    }
  }
}

export class CachedStorage implements Storage {
  private readonly storage: Storage;
  private readonly caches: readonly ResourceCache[];
  private readonly futureRevisionWaitMs: number;
  private readonly consistentReadWaitMs: number;
  private readonly progressNotifyOrdered: boolean;
  private readonly logger: Logger;
  private readonly progressTimer: NodeJS.Timeout;
  /** Client watches passed to the store behind while their cache was not ready, to stop on close. */
  private readonly passedThrough = new Set<StorageWatch>();
  /** The revision check not sent yet: consistent reads arriving now share it. */
  private queuedRevisionCheck: Promise<number> | undefined;
  /** Settles when the check last sent has been answered. */
  private revisionCheckSent: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(options: CacherOptions) {
    this.storage = options.storage;
    this.logger = options.logger;
    this.futureRevisionWaitMs = options.futureRevisionWaitMs ?? FUTURE_REVISION_WAIT_MS;
    this.consistentReadWaitMs = options.consistentReadWaitMs ?? DEFAULT_CONSISTENT_READ_WAIT_MS;
    this.progressNotifyOrdered = options.progressNotifyOrdered ?? true;
    const historyMaxBytes = options.historyMaxBytes ?? DEFAULT_HISTORY_MAX_BYTES;
    const historyMaxEvents = options.historyMaxEvents ?? DEFAULT_HISTORY_MAX_EVENTS;
    const progressIntervalMs = options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    for (const [name, value] of Object.entries({ historyMaxBytes, historyMaxEvents, progressIntervalMs })) {
      if (!Number.isInteger(value) || value < 1) throw new Error(`${name} ${String(value)} is not a positive integer`);
    }
    for (const prefix of options.resourcePrefixes) {
      if (!prefix.startsWith('/') || !prefix.endsWith('/')) throw new Error(`resource prefix "${prefix}" must start and end with "/"`);
      const overlapping = options.resourcePrefixes.find((other) => other !== prefix && prefix.startsWith(other));
      if (overlapping) throw new Error(`resource prefix "${prefix}" lies under "${overlapping}"`);
    }
    const settings = {
      historyMaxBytes,
      historyMaxEvents,
      futureRevisionWaitMs: this.futureRevisionWaitMs,
      progressNotifyOrdered: this.progressNotifyOrdered,
      logger: this.logger,
    };
    this.caches = [...new Set(options.resourcePrefixes)].map((prefix) => new ResourceCache(prefix, this.storage, settings));
    for (const cache of this.caches) cache.start();
    this.progressTimer = setInterval(() => {
      for (const cache of this.caches) cache.requestProgress();
    }, progressIntervalMs);
    this.progressTimer.unref();
  }

  /** Per resource: objects, history events and bytes, revision, ready — for /metrics. */
  stats(): readonly CacheStats[] {
    return this.caches.map((cache) => cache.stats());
  }

  currentRevision(): Promise<number> {
    return this.storage.currentRevision();
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | undefined> {
    const cache = await this.cacheToRead(key, options.minRevision);
    return cache ? cache.get(key) : this.storage.get(key, options);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    if (options.revision !== undefined) {
      const cache = this.cacheFor(prefix);
      return cache?.isReady() && cache.covers(options.revision) ? cache.list(prefix, options, options.revision) : this.storage.list(prefix, options);
    }
    const cache = await this.cacheToRead(prefix, options.minRevision);
    return cache ? cache.list(prefix, options) : this.storage.list(prefix, options);
  }

  create(key: string, value: StoredValue): Promise<StoredObject> {
    return this.storage.create(key, value);
  }

  update(key: string, value: StoredValue, expectedModRevision: number): Promise<StoredObject> {
    return this.storage.update(key, value, expectedModRevision);
  }

  delete(key: string, expectedModRevision: number): Promise<StoredObject> {
    return this.storage.delete(key, expectedModRevision);
  }

  watch(prefix: string, afterRevision: number, callbacks: WatchCallbacks): StorageWatch {
    if (this.closed) throw new Error('storage is closed');
    const cache = this.cacheFor(prefix);
    if (cache?.isReady()) return cache.watch(prefix, afterRevision, callbacks);
    // Until the cache is ready (starting, relisting, or its watch broken), the store serves the watch.
    // Forgotten when it ends, which may happen before storage.watch returns.
    const handle: { watch?: StorageWatch; ended?: boolean } = {};
    const watch = this.storage.watch(prefix, afterRevision, {
      onEvent: (event) => callbacks.onEvent(event),
      onProgress: (notification) => callbacks.onProgress?.(notification),
      onError: (error) => {
        handle.ended = true;
        if (handle.watch) this.passedThrough.delete(handle.watch);
        callbacks.onError?.(error);
      },
    });
    handle.watch = watch;
    if (!handle.ended) this.passedThrough.add(watch);
    return {
      requestProgress: () => watch.requestProgress(),
      stop: () => {
        this.passedThrough.delete(watch);
        watch.stop();
      },
    };
  }

  async compact(revision: number): Promise<void> {
    await this.storage.compact(revision);
    for (const cache of this.caches) cache.compact(revision);
  }

  isReady(): boolean {
    return !this.closed && this.storage.isReady() && this.caches.every((cache) => cache.isReady());
  }

  unreadyReason(): string | undefined {
    if (this.closed) return 'watch cache: closed';
    return this.storage.unreadyReason() ?? this.caches.map((cache) => cache.unreadyReason()).find((reason) => reason !== undefined);
  }

  /** Ends every watch (no onError), stops the caches and closes the store behind. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.progressTimer);
    for (const cache of this.caches) cache.close();
    for (const watch of this.passedThrough) watch.stop();
    this.passedThrough.clear();
    await this.storage.close();
  }

  /** The cache holding every key under `prefix` (or the key itself), if any. */
  private cacheFor(prefix: string): ResourceCache | undefined {
    return this.caches.find((cache) => prefix.startsWith(cache.prefix));
  }

  /**
   * The cache that may answer a read of `keyOrPrefix` (a get or a list) not older than
   * `minRevision`, or a consistent read when it is undefined; undefined when the store behind
   * must answer it. `minRevision`: once the cache has reached it (waits, then
   * `TooLargeRevisionError`). Consistent: once the cache has caught up with the store's current
   * revision (one check shared by concurrent reads), else the store after `consistentReadWaitMs`.
   */
  private async cacheToRead(keyOrPrefix: string, minRevision: number | undefined): Promise<ResourceCache | undefined> {
    const cache = this.cacheFor(keyOrPrefix);
    if (!cache?.isReady()) return undefined;
    if (minRevision !== undefined) {
      if (minRevision <= cache.revision) return cache;
      // Unordered progress: only the store can say whether it has reached minRevision.
      if (!this.progressNotifyOrdered) return undefined;
      const reached = await cache.waitForRevision(minRevision, this.futureRevisionWaitMs);
      if (!cache.isReady()) return undefined;
      if (!reached) throw new TooLargeRevisionError(minRevision, cache.revision);
      return cache;
    }
    if (!this.progressNotifyOrdered) return undefined;
    const current = await this.sharedCurrentRevision();
    const reached = await cache.waitForRevision(current, this.consistentReadWaitMs);
    if (reached && cache.isReady()) return cache;
    this.logger.warn({ key: keyOrPrefix, revision: current, cacheRevision: cache.revision }, 'watch cache did not catch up; consistent read from the store');
    return undefined;
  }

  /**
   * The store's current revision for a consistent read. A check already sent may have been
   * answered before this read arrived, so it cannot be shared; reads arriving while one is in
   * flight share the next one, sent when it returns, and not before the end of the event loop's
   * turn (setImmediate), so that every read arriving in that turn's I/O shares it too.
   */
  private sharedCurrentRevision(): Promise<number> {
    if (this.queuedRevisionCheck) return this.queuedRevisionCheck;
    const check = this.revisionCheckSent.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(() => {
      this.queuedRevisionCheck = undefined;
      const sent = this.storage.currentRevision();
      this.revisionCheckSent = sent.catch(() => undefined);
      return sent;
    });
    this.queuedRevisionCheck = check;
    return check;
  }
}
