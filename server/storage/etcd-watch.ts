/**
 * One etcd watch behind a `StorageWatch`: its own gRPC Watch stream (etcd3's generated
 * `WatchClient`, through etcd3's connection pool), because etcd3 1.1.2's high-level `Watcher`
 * cannot send a `WatchProgressRequest` and throws on the answer (etcd 3.4 answers it with
 * watch_id -1, which etcd3's WatchManager finds no watcher for). One stream per watch also means
 * a progress answer on the stream belongs to this watch.
 *
 * etcd before 3.4.25/3.5.8 answers a progress request with the store's current revision even
 * while events up to it are still on their way to this watch (its history replay, or writes in
 * flight: etcd-io/etcd#15220; measured on 3.4.23: thousands of events arrived after a progress
 * answer above them). So an answer R is checked before it is delivered: with L the last revision
 * delivered, no event under the prefix lies in (L, R] iff no key under it has a mod_revision above L
 * at R and the number of keys at R equals the number at L (kept by counting delivered events,
 * calibrated once by a count at L). Until the check passes, the answer waits (re-checked every
 * 100 ms as events arrive).
 *
 * Lost connection: the watch ends with `onError(StorageUnavailableError)` (never a silent stall,
 * never a transparent resume); the caller (the cacher) watches again from the last revision it
 * saw, and gets `ExpiredError` if that was compacted meanwhile.
 */
import type { IDuplexStream, IEvent, IRangeRequest, IRangeResponse, IWatchRequest, IWatchResponse, WatchClient } from 'etcd3';
import { grpcReason } from './etcd-health';
import {
  ExpiredError,
  FUTURE_REVISION_WAIT_MS,
  StorageEvent,
  StorageUnavailableError,
  StorageWatch,
  StoredValue,
  TooLargeRevisionError,
  WatchCallbacks,
} from './types';

export interface EtcdWatchContext {
  readonly watchClient: WatchClient;
  /** The storage prefix etcd keys carry in front of the registry's keys. */
  readonly keyPrefix: string;
  /** A stored value, versioned at `revision` and frozen. */
  decode(value: Buffer, revision: number): StoredValue;
  /** As decode, for the value of a put of `key` (a registry key): the store may hand over the object its own write of it returned. */
  decodeWrite?(key: string, value: Buffer, revision: number): StoredValue;
  currentRevision(): Promise<number>;
  /** One KV range (with the store's deadline and error handling). */
  range(request: IRangeRequest): Promise<IRangeResponse>;
  /** How long the stream may take to confirm the watch. */
  readonly requestTimeoutMs: number;
  /** The connection was lost: lets the store re-check its health now. */
  unavailable(reason: string): void;
}

/** The smallest byte string greater than every string starting with `prefix` (etcd's range end for a prefix). */
export function rangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the keyspace
}

/** How often a wait for a future revision asks etcd for its current revision. */
const REVISION_POLL_MS = 50;

/**
 * Resolves once etcd's current revision reaches `revision` (or `done()` says the wait no longer
 * matters); after FUTURE_REVISION_WAIT_MS rejects with TooLargeRevisionError, as upstream's
 * cacher waits for a future revision. `sleep` lets a caller cancel the wait with its own timers.
 */
export async function waitForRevision(
  currentRevision: () => Promise<number>,
  revision: number,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  done: () => boolean = () => false,
): Promise<void> {
  const deadline = Date.now() + FUTURE_REVISION_WAIT_MS;
  for (;;) {
    const current = await currentRevision();
    if (current >= revision || done()) return;
    if (Date.now() >= deadline) throw new TooLargeRevisionError(revision, current);
    await sleep(REVISION_POLL_MS);
  }
}

export class EtcdWatch implements StorageWatch {
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  private stopped = false;
  private created = false;
  /** Set while the store has not reached `afterRevision` (a watch from the future). */
  private waitingForFuture = false;
  private progressWanted = false;
  /** The revision of the last event delivered (or the start). */
  private lastRevision: number;
  /** How many keys are under the prefix at `lastRevision`; undefined until calibrated. */
  private keyCount: number | undefined;
  /** Key-count change of the events delivered while a check is in flight. */
  private deltaDuringCheck = 0;
  /** The highest progress answer from etcd not yet verified. */
  private unverifiedProgress: number | undefined;
  private checking = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly context: EtcdWatchContext,
    /** The registry prefix watched. */
    readonly prefix: string,
    private readonly afterRevision: number,
    private readonly callbacks: WatchCallbacks,
  ) {
    this.lastRevision = afterRevision;
    void this.open();
  }

  requestProgress(): void {
    if (this.stopped) return;
    if (!this.created || this.waitingForFuture) {
      this.progressWanted = true;
      return;
    }
    this.progressWanted = false;
    // etcd 3.4 answers on this stream with watch_id -1 and the store's current revision.
    this.stream?.write({ progress_request: {} });
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.release();
  }

  private async open(): Promise<void> {
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      stream = await this.context.watchClient.watch();
    } catch (error) {
      this.fail(this.unavailableError(error));
      return;
    }
    if (this.stopped) {
      stream.cancel();
      return;
    }
    this.stream = stream;
    stream.on('data', (response) => this.receive(response));
    stream.on('error', (error) => {
      if (!this.stopped) this.fail(this.unavailableError(error));
    });
    stream.on('end', () => {
      if (!this.stopped) this.fail(this.unavailableError(new Error('the watch stream ended')));
    });
    const key = Buffer.from(this.context.keyPrefix + this.prefix);
    // From `afterRevision` itself (its events are dropped below) rather than afterRevision + 1:
    // etcd refuses a start below the compacted revision, so this refuses afterRevision <
    // compacted, exactly where MemoryStorage throws ExpiredError. 0 means "now" to etcd: start at 1.
    stream.write({
      create_request: { key, range_end: rangeEnd(key), start_revision: Math.max(this.afterRevision, 1), prev_kv: true, progress_notify: true },
    });
    this.after(this.context.requestTimeoutMs, () => {
      if (!this.created) this.fail(new StorageUnavailableError(`etcd: the watch on ${this.prefix} was not confirmed within ${this.context.requestTimeoutMs / 1000}s`));
    });
  }

  private receive(response: IWatchResponse): void {
    if (this.stopped) return;
    if (response.canceled) {
      const compacted = Number(response.compact_revision);
      if (compacted > 0) this.fail(new ExpiredError(this.afterRevision, compacted));
      else this.fail(new StorageUnavailableError(`etcd: the watch on ${this.prefix} was canceled: ${response.cancel_reason || 'no reason given'}`));
      return;
    }
    if (response.created) {
      this.created = true;
      const current = Number(response.header.revision);
      if (this.afterRevision > current) this.waitForFuture();
      else if (this.progressWanted) this.requestProgress();
      return;
    }
    if (response.events.length === 0) {
      const revision = Number(response.header.revision);
      // Below afterRevision only while waiting for a future revision: nothing to promise yet.
      if (revision < this.afterRevision) return;
      if (this.waitingForFuture) this.caughtUp();
      // Answers to progress requests (watch_id -1) need checking; etcd's own periodic
      // notifications go through the watcher's event channel, in order.
      if (String(response.watch_id) === '-1' && revision > this.lastRevision) this.verifyProgress(revision);
      else this.deliverProgress(Math.max(revision, this.lastRevision));
      return;
    }
    for (const event of response.events) {
      const revision = Number(event.kv.mod_revision);
      if (revision <= this.afterRevision) continue;
      if (this.waitingForFuture) this.caughtUp();
      // Inside the try: a value that is not JSON (written by another program under the prefix)
      // ends this watch with an error instead of throwing out of grpc-js's 'data' handler, which
      // would be an uncaught exception and kill the process.
      try {
        const storageEvent = this.toStorageEvent(event, revision);
        this.lastRevision = revision;
        const delta = storageEvent.type === 'ADDED' ? 1 : storageEvent.type === 'DELETED' ? -1 : 0;
        if (this.keyCount !== undefined) this.keyCount += delta;
        this.deltaDuringCheck += delta;
        this.callbacks.onEvent(storageEvent);
      } catch (error) {
        this.fail(error instanceof Error ? error : new Error(String(error)));
      }
      if (this.stopped) return;
    }
  }

  private verifyProgress(revision: number): void {
    this.unverifiedProgress = Math.max(this.unverifiedProgress ?? 0, revision);
    void this.checkProgress();
  }

  /** Delivers the unverified progress answer once no event up to it can still be on its way (see the file comment). */
  private async checkProgress(): Promise<void> {
    const target = this.unverifiedProgress;
    if (this.checking || this.stopped || target === undefined) return;
    this.checking = true;
    const from = this.lastRevision;
    let countAtFrom = this.keyCount;
    this.deltaDuringCheck = 0;
    let clean = false;
    try {
      const key = Buffer.from(this.context.keyPrefix + this.prefix);
      const end = rangeEnd(key);
      const [window, calibration] = await Promise.all([
        // etcd counts every key in the range at `target`; min_mod_revision only filters the rows.
        this.context.range({ key, range_end: end, revision: target, min_mod_revision: from + 1, keys_only: true, limit: 1 }),
        countAtFrom === undefined ? this.context.range({ key, range_end: end, revision: from, count_only: true }) : undefined,
      ]);
      if (calibration) {
        countAtFrom = Number(calibration.count);
        this.keyCount = countAtFrom + this.deltaDuringCheck;
      }
      clean = window.kvs.length === 0 && Number(window.count) === countAtFrom;
    } catch {
      clean = false; // e.g. `from` compacted meanwhile, or etcd unavailable: try again below
    }
    this.checking = false;
    if (this.stopped) return;
    if (clean) {
      if (this.unverifiedProgress === target) this.unverifiedProgress = undefined;
      // Nothing under the prefix changed in (from, target], so keyCount holds at target too: later
      // answers at this revision need no check (each check reads every key: etcd drops `limit`
      // when `min_mod_revision` is set).
      this.lastRevision = Math.max(this.lastRevision, target);
      // Events delivered during the check are all above `target`: the notification may not go back.
      this.deliverProgress(Math.max(target, this.lastRevision));
      if (this.stopped) return;
    }
    if (this.unverifiedProgress !== undefined) this.after(clean ? 0 : 100, () => void this.checkProgress());
  }

  /**
   * A callback that throws ends the watch, as in onEvent: thrown here it would escape grpc-js's
   * 'data' handler (an uncaught exception) or checkProgress (an unhandled rejection).
   */
  private deliverProgress(revision: number): void {
    try {
      this.callbacks.onProgress?.({ type: 'PROGRESS', revision });
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private toStorageEvent(event: IEvent, revision: number): StorageEvent {
    const key = event.kv.key.toString('utf8').slice(this.context.keyPrefix.length);
    try {
      return this.decodeEvent(event, key, revision);
    } catch (error) {
      throw new Error(`etcd: cannot decode the value of ${key} at revision ${revision}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private decodeEvent(event: IEvent, key: string, revision: number): StorageEvent {
    const prev = event.prev_kv;
    const prevObject = prev ? this.context.decode(prev.value, Number(prev.mod_revision)) : undefined;
    // Proto enum names as loaded by etcd3 (enums: String): 'Put' | 'Delete'.
    if (String(event.type).toUpperCase() === 'DELETE') {
      // The last value, versioned at the deletion (as etcd3's decoder does); etcd always has prev_kv
      // here unless the previous revision was compacted away, then only the version is known.
      const object = prev ? this.context.decode(prev.value, revision) : Object.freeze({ metadata: Object.freeze({ resourceVersion: String(revision) }) });
      return prevObject ? { type: 'DELETED', key, revision, object, prevObject } : { type: 'DELETED', key, revision, object };
    }
    const object = this.context.decodeWrite ? this.context.decodeWrite(key, event.kv.value, revision) : this.context.decode(event.kv.value, revision);
    if (event.kv.create_revision === event.kv.mod_revision) return { type: 'ADDED', key, revision, object };
    return prevObject ? { type: 'MODIFIED', key, revision, object, prevObject } : { type: 'MODIFIED', key, revision, object };
  }

  /** The store is behind `afterRevision`: wait for it as the cacher does, then fail. */
  private waitForFuture(): void {
    this.waitingForFuture = true;
    const done = () => this.stopped || !this.waitingForFuture; // stopped, or an event came first
    const sleep = (ms: number) => new Promise<void>((resolve) => this.after(ms, resolve));
    waitForRevision(() => this.context.currentRevision(), this.afterRevision, sleep, done).then(
      () => {
        if (!done()) this.caughtUp();
      },
      (error: unknown) => {
        if (!done()) this.fail(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  private caughtUp(): void {
    this.waitingForFuture = false;
    if (this.progressWanted) this.requestProgress();
  }

  private after(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  private unavailableError(error: unknown): StorageUnavailableError {
    const message = grpcReason(error);
    this.context.unavailable(message);
    return new StorageUnavailableError(`etcd: the watch on ${this.prefix} lost its connection: ${message}`);
  }

  private fail(error: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    this.release();
    this.callbacks.onError?.(error);
  }

  private release(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    const stream = this.stream;
    this.stream = undefined;
    // Cancelling makes grpc-js emit a CANCELLED error; keep a listener so it is not unhandled.
    stream?.on('error', () => undefined);
    stream?.cancel();
  }
}
