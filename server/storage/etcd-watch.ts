/**
 * One etcd watch behind a `StorageWatch`: its own gRPC Watch stream (etcd3's generated
 * `WatchClient`, through etcd3's connection pool), because etcd3 1.1.2's high-level `Watcher`
 * cannot send a `WatchProgressRequest` and throws on the answer (etcd 3.4 answers it with
 * watch_id -1, which etcd3's WatchManager finds no watcher for). One stream per watch also means
 * a progress answer on the stream belongs to this watch.
 *
 * Lost connection: the watch ends with `onError(StorageUnavailableError)` (never a silent stall,
 * never a transparent resume); the caller (the cacher) watches again from the last revision it
 * saw, and gets `ExpiredError` if that was compacted meanwhile.
 */
import type { IDuplexStream, IEvent, IWatchRequest, IWatchResponse, WatchClient } from 'etcd3';
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
  currentRevision(): Promise<number>;
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

export class EtcdWatch implements StorageWatch {
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  private stopped = false;
  private created = false;
  /** Set while the store has not reached `afterRevision` (a watch from the future). */
  private waitingForFuture = false;
  private progressWanted = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly context: EtcdWatchContext,
    private readonly prefix: string,
    private readonly afterRevision: number,
    private readonly callbacks: WatchCallbacks,
  ) {
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
      this.progress(Number(response.header.revision));
      return;
    }
    for (const event of response.events) {
      const revision = Number(event.kv.mod_revision);
      if (revision <= this.afterRevision) continue;
      if (this.waitingForFuture) this.caughtUp();
      try {
        this.callbacks.onEvent(this.toStorageEvent(event, revision));
      } catch (error) {
        this.fail(error instanceof Error ? error : new Error(String(error)));
      }
      if (this.stopped) return;
    }
  }

  private progress(revision: number): void {
    // Below afterRevision only while waiting for a future revision: nothing to promise yet.
    if (revision < this.afterRevision) return;
    if (this.waitingForFuture) this.caughtUp();
    this.callbacks.onProgress?.({ type: 'PROGRESS', revision });
  }

  private toStorageEvent(event: IEvent, revision: number): StorageEvent {
    const key = event.kv.key.toString('utf8').slice(this.context.keyPrefix.length);
    const prev = event.prev_kv;
    const prevObject = prev ? this.context.decode(prev.value, Number(prev.mod_revision)) : undefined;
    // Proto enum names as loaded by etcd3 (enums: String): 'Put' | 'Delete'.
    if (String(event.type).toUpperCase() === 'DELETE') {
      // The last value, versioned at the deletion (as etcd3's decoder does); etcd always has prev_kv
      // here unless the previous revision was compacted away, then only the version is known.
      const object = prev ? this.context.decode(prev.value, revision) : Object.freeze({ metadata: Object.freeze({ resourceVersion: String(revision) }) });
      return prevObject ? { type: 'DELETED', key, revision, object, prevObject } : { type: 'DELETED', key, revision, object };
    }
    const object = this.context.decode(event.kv.value, revision);
    if (event.kv.create_revision === event.kv.mod_revision) return { type: 'ADDED', key, revision, object };
    return prevObject ? { type: 'MODIFIED', key, revision, object, prevObject } : { type: 'MODIFIED', key, revision, object };
  }

  /** The store is behind `afterRevision`: wait for it as the cacher does, then fail. */
  private waitForFuture(): void {
    this.waitingForFuture = true;
    const deadline = Date.now() + FUTURE_REVISION_WAIT_MS;
    const poll = async (): Promise<void> => {
      if (this.stopped || !this.waitingForFuture) return;
      let current: number;
      try {
        current = await this.context.currentRevision();
      } catch (error) {
        this.fail(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (this.stopped || !this.waitingForFuture) return;
      if (current >= this.afterRevision) return this.caughtUp();
      if (Date.now() >= deadline) return this.fail(new TooLargeRevisionError(this.afterRevision, current));
      this.after(100, () => void poll());
    };
    void poll();
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
