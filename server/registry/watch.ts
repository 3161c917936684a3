import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { KindVersion } from '../../apis/types';
import type { ResourceOutput } from '../content';
import { ExpiredError, ListOptions, Storage, StorageEvent, StorageUnavailableError, StorageWatch, StoredValue, TooLargeRevisionError } from '../storage/types';
import { Status, StatusError, errors } from '../status';
import type { KindCodec } from './codec';
import { type ListQuery, notOlderThan } from './list-options';
import { IncludeObject, objectTable } from './table';

/**
 * Watch streams, as k8s.io/apiserver's watch handler and cacher serve them: 200, then one JSON
 * object per line `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`, each written
 * (and so flushed) as it happens.
 *
 * - resourceVersion "" (a consistent read) or "0" (any, from a watch cache): synthetic ADDED
 *   events for every current object first.
 * - resourceVersion N: every change after N; N older than the kept history → an ERROR event
 *   carrying a 410 Expired Status (`too old resource version: N (M)`), then the end. N ahead of
 *   the store: the store waits for it, then an ERROR event with a 504 Status (`Timeout: Too large
 *   resource version: N, current: M`).
 * - Errors once the request is accepted are ERROR events in a 200 stream, as the cacher's
 *   errWatcher answers them; only a store that cannot be reached before the stream starts
 *   answers a plain 503/504 Status. A storage watch that fails later ends the stream with an
 *   ERROR event (503 when the store is unavailable, else 500); clients watch again.
 * - `sendInitialEvents=true` (watch-list): ADDED for every object, then a BOOKMARK annotated
 *   `k8s.io/initial-events-end: "true"` at the list's resourceVersion. `false`: no initial events.
 * - `allowWatchBookmarks=true`: periodic BOOKMARK events with only `metadata.resourceVersion`.
 * - Selector filtering with transitions: an object that stops matching is sent as DELETED, one
 *   that starts matching as ADDED (as the cacher does).
 * - Ends at `timeoutSeconds`, else at a random time in [`--min-request-timeout`, twice that)
 *   (30–60 min by default; never when it is 0), as the watch handler spreads reconnections; on
 *   client disconnect, when the client cannot keep up, or on shutdown.
 */

/** `--min-request-timeout`'s default. */
const MIN_REQUEST_TIMEOUT_SECONDS = 1800;

/**
 * How much a watch client that does not read may leave queued. Upstream's cacher gives each
 * watcher a channel of ~100 events and, when it stays full past a short dispatch budget, closes
 * that watcher ("Forcing ... watcher close due to unresponsiveness"); the client watches again
 * from its last resourceVersion. Here the queue is bytes: what Node holds for the response (the
 * socket's or the HTTP/2 stream's writable buffer, `writableLength`; the kernel's socket buffers
 * come on top and are not seen). Event lines fanned out to many watchers are one shared Buffer,
 * so a queue mostly references memory the others share; the bounds are still sized as if it did
 * not, for a 256 MiB pod that must survive 2,000 watchers that stopped reading.
 */
export interface WatchBufferLimits {
  /** A watcher that already had more than this queued when an event comes is closed (one event of any size may always be queued). */
  readonly perWatchBytes: number;
  /** Once the watchers' queues together pass this… */
  readonly totalBytes: number;
  /** …a watcher that had more than this queued when an event comes, and has not caught up for `stalledMs`, is closed. */
  readonly perWatchUnderPressureBytes: number;
  /** How long a watcher's queue must have stayed non-empty to count as stalled (a reading client empties it every few ms). */
  readonly stalledMs: number;
  /** Initial events (a watch's synthetic ADDED list) wait for the client once this much is queued, instead of queueing the whole list. */
  readonly initialEventsHighWaterBytes: number;
}

/**
 * Once the queues pass 64 MiB, 2,000 stalled watchers are cut down to 64 KiB each (128 MiB, if
 * none of it were shared) within a second; one behind by more than 1 MiB is closed in any case.
 */
export const DEFAULT_WATCH_BUFFER_LIMITS: WatchBufferLimits = {
  perWatchBytes: 1024 * 1024,
  totalBytes: 64 * 1024 * 1024,
  perWatchUnderPressureBytes: 64 * 1024,
  stalledMs: 1000,
  initialEventsHighWaterBytes: 256 * 1024,
};

export interface WatchSettings {
  /** How often bookmarks are sent to watchers that allow them. */
  readonly bookmarkIntervalMs: number;
  /** `--min-request-timeout`: a watch without `timeoutSeconds` lasts this × [1, 2); 0: until it ends otherwise. @default 1800 */
  readonly minRequestTimeoutSeconds?: number;
}

/** The open watch streams of a registry: counted for /metrics, ended on shutdown, their queued bytes summed. */
export class WatchHub {
  private readonly sessions = new Set<{ end(): void }>();
  private queued = 0;
  private closedSlow = 0;

  constructor(readonly limits: WatchBufferLimits = DEFAULT_WATCH_BUFFER_LIMITS) {}

  /** The watchers' queued bytes, as each last saw its own (an over-estimate between a watcher's writes). */
  queuedBytes(): number {
    return this.queued;
  }

  /** How many watchers were closed because their client did not read. */
  closedSlowCount(): number {
    return this.closedSlow;
  }

  /** @internal a watcher's queue changed by `delta` bytes. */
  addQueued(delta: number): void {
    this.queued += delta;
  }

  /** @internal a watcher was closed for not reading. */
  countClosedSlow(): void {
    this.closedSlow++;
  }

  add(session: { end(): void }): void {
    this.sessions.add(session);
  }

  remove(session: { end(): void }): void {
    this.sessions.delete(session);
  }

  count(): number {
    return this.sessions.size;
  }

  endAll(): void {
    for (const session of [...this.sessions]) session.end();
  }
}

export interface WatchRequest {
  readonly res: ServerResponse;
  readonly codec: KindCodec;
  readonly version: KindVersion;
  readonly output: ResourceOutput;
  readonly includeObject: IncludeObject;
  readonly namespace: string;
  readonly options: ListQuery;
  readonly filter?: (value: StoredValue) => boolean;
}

/** One line of the stream: an event around the object's JSON text. */
function eventLine(type: string, objectJson: string): string {
  return `{"type":"${type}","object":${objectJson}}\n`;
}

function statusLine(status: Status): string {
  return eventLine('ERROR', JSON.stringify(status));
}

/**
 * The lines of the event being fanned out, by form: one Buffer written to every watcher of that
 * form, so that N watchers that queue it hold one copy, not N (a string built per watcher is
 * flattened, or encoded, once per socket). Only the latest event is kept: a fan-out runs in one tick.
 */
let fanOut: { readonly value: StoredValue; readonly type: string; readonly lines: Map<string, Buffer> } | undefined;

function sharedLine(type: string, value: StoredValue, form: string, build: () => string): Buffer {
  if (fanOut?.value !== value || fanOut.type !== type) fanOut = { value, type, lines: new Map() };
  let line = fanOut.lines.get(form);
  if (!line) {
    line = Buffer.from(build());
    fanOut.lines.set(form, line);
  }
  return line;
}

/** Streams one watch; resolves when it has ended. */
export async function serveWatch(request: WatchRequest, storage: Storage, hub: WatchHub, settings: WatchSettings, logger: Logger): Promise<void> {
  const { res, codec, version, output, includeObject, options } = request;
  const prefix = codec.prefix(request.namespace || undefined);
  const filter = request.filter;
  let tableHeadersSent = false;

  /**
   * An event line. Objects and PartialObjectMetadata come from the codec's per-value cache, so an
   * event fanned out to many watchers is serialized once per version and form; a Table (its Age
   * cells depend on the clock, its first event carries the column definitions) is built per watcher.
   */
  function encode(type: string, value: StoredValue): string | Buffer {
    switch (output.as) {
      case 'Object':
        return sharedLine(type, value, version.name, () => eventLine(type, codec.storedJson(value, version.name)));
      case 'PartialObjectMetadata':
      case 'PartialObjectMetadataList':
        return sharedLine(type, value, `${version.name} ${output.version}`, () => eventLine(type, codec.storedJson(value, version.name, output.version)));
      case 'Table': {
        const noHeaders = tableHeadersSent;
        tableHeadersSent = true;
        const table = objectTable(codec.fromStorage(value, version.name), { version, metaVersion: output.version, includeObject, noHeaders });
        return eventLine(type, JSON.stringify(table));
      }
    }
  }

  function bookmarkLine(revision: number, initialEventsEnd: boolean): string {
    const metadata: Record<string, unknown> = { resourceVersion: String(revision) };
    if (initialEventsEnd) metadata.annotations = { 'k8s.io/initial-events-end': 'true' };
    switch (output.as) {
      case 'Object':
        return eventLine('BOOKMARK', JSON.stringify({ kind: codec.kind, apiVersion: codec.apiVersion(version.name), metadata }));
      case 'PartialObjectMetadata':
      case 'PartialObjectMetadataList':
        return eventLine('BOOKMARK', JSON.stringify({ kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${output.version}`, metadata }));
      case 'Table':
        return eventLine('BOOKMARK', JSON.stringify({ kind: 'Table', apiVersion: `meta.k8s.io/${output.version}`, metadata: { resourceVersion: String(revision) }, rows: [] }));
    }
  }

  /** 200 and the stream's headers, written once the storage watch is set up or the first line is due. */
  function startStream(): void {
    if (res.headersSent) return;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    res.socket?.setNoDelay(true);
  }

  return new Promise<void>((resolve, reject) => {
    let ended = false;
    let storageWatch: StorageWatch | undefined;
    let lastRevision = 0;
    /** This watch's part of the hub's queued bytes: its `writableLength` when last seen. */
    let queued = 0;
    /** When its queue was last seen empty: the client was reading then. */
    let caughtUpAt = Date.now();
    const timers: NodeJS.Timeout[] = [];
    const limits = hub.limits;
    const wakeOnEnd: Array<() => void> = [];

    function setQueued(bytes: number): void {
      hub.addQueued(bytes - queued);
      queued = bytes;
    }

    const session = {
      /** Ends the watch; with `error` before anything was written, the caller answers that Status instead. */
      end(error?: StatusError): void {
        if (ended) return;
        ended = true;
        for (const timer of timers) clearTimeout(timer);
        storageWatch?.stop();
        hub.remove(session);
        setQueued(0);
        for (const wake of wakeOnEnd.splice(0)) wake();
        if (error) {
          reject(error);
          return;
        }
        if (!res.writableEnded && !res.destroyed) {
          startStream();
          res.end();
        }
        resolve();
      },
    };
    hub.add(session);
    res.on('close', () => session.end());
    res.on('drain', () => {
      if (ended) return;
      caughtUpAt = Date.now();
      setQueued(res.writableLength);
    });

    function write(line: string | Buffer): void {
      if (ended) return;
      startStream();
      // What was queued before this event: one event may always be queued, however large.
      const behind = res.writableLength;
      const at = Date.now();
      if (behind === 0) caughtUpAt = at;
      res.write(line);
      setQueued(res.writableLength);
      const slow =
        behind > limits.perWatchBytes ||
        (behind > limits.perWatchUnderPressureBytes && hub.queuedBytes() > limits.totalBytes && at - caughtUpAt > limits.stalledMs);
      if (slow) {
        logger.warn(
          { resource: codec.gr.resource, queuedBytes: res.writableLength, stalledMs: at - caughtUpAt, watchersQueuedBytes: hub.queuedBytes() },
          'watch client is not reading; closing its watch (it may watch again)',
        );
        hub.countClosedSlow();
        session.end();
        res.destroy();
      }
    }

    /** Resolves once the client has read what is queued below the high-water mark, or the watch ended. */
    function clientCaughtUp(): Promise<void> {
      if (ended || res.writableLength <= limits.initialEventsHighWaterBytes) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done);
          const index = wakeOnEnd.indexOf(done);
          if (index >= 0) wakeOnEnd.splice(index, 1);
          resolve();
        };
        res.on('drain', done);
        wakeOnEnd.push(done);
      });
    }

    function fail(status: Status): void {
      write(statusLine(status));
      session.end();
    }

    function onEvent(event: StorageEvent): void {
      let type: string = event.type;
      let value = event.object;
      if (filter) {
        const matchesNow = filter(event.object);
        if (event.type === 'MODIFIED') {
          const matchedBefore = event.prevObject !== undefined && filter(event.prevObject);
          if (matchesNow && !matchedBefore) type = 'ADDED';
          else if (!matchesNow && matchedBefore) {
            type = 'DELETED';
            const prev = event.prevObject!;
            value = { ...prev, metadata: { ...(prev.metadata as object), resourceVersion: String(event.revision) } };
          } else if (!matchesNow) return;
        } else if (!matchesNow) {
          return;
        }
      }
      lastRevision = event.revision;
      write(encode(type, value));
    }

    // As the watch handler (handlers/get.go): 0 or absent → a random time between one and two
    // min-request-timeouts; with --min-request-timeout=0, no end (watch.go's neverExitWatch).
    const timeoutSeconds = options.timeoutSeconds || (settings.minRequestTimeoutSeconds ?? MIN_REQUEST_TIMEOUT_SECONDS) * (1 + Math.random());
    if (timeoutSeconds > 0) timers.push(setTimeout(() => session.end(), timeoutSeconds * 1000));

    async function start(): Promise<void> {
      const rv = options.resourceVersion;
      const initialEvents = options.sendInitialEvents ?? (rv === '' || rv === '0');
      let from: number;
      if (initialEvents) {
        // "" and sendInitialEvents without a resourceVersion: a consistent read; "0": any
        // revision; N (sendInitialEvents, NotOlderThan): not older than N.
        const listOptions: ListOptions = { ...(filter ? { filter } : {}), ...notOlderThan(rv) };
        const listed = await storage.list(prefix, listOptions);
        if (ended) return;
        for (const item of listed.items) {
          write(encode('ADDED', item.value));
          await clientCaughtUp();
          if (ended) return;
        }
        from = listed.revision;
        if (options.sendInitialEvents && options.allowWatchBookmarks) write(bookmarkLine(from, true));
      } else {
        from = rv === '' || rv === '0' ? await storage.currentRevision() : Number(rv);
      }
      if (ended) return;
      lastRevision = from;
      storageWatch = storage.watch(prefix, from, {
        onEvent,
        onProgress: (notification) => {
          if (notification.revision >= lastRevision) {
            lastRevision = notification.revision;
            write(bookmarkLine(notification.revision, false));
          }
        },
        onError: (error) => {
          if (error instanceof ExpiredError) fail(tooOld(error));
          else if (error instanceof TooLargeRevisionError) fail(tooLarge(error));
          else if (error instanceof StorageUnavailableError) {
            logger.warn({ err: error, resource: codec.gr.resource }, 'watch ended: storage unavailable');
            fail(errors.serviceUnavailable(error.message).status);
          } else {
            logger.error({ err: error, resource: codec.gr.resource }, 'watch failed in storage');
            fail(errors.internal('the watch ended unexpectedly').status);
          }
        },
      });
      if (ended) {
        storageWatch.stop();
        return;
      }
      startStream();
      if (options.allowWatchBookmarks) {
        const interval = setInterval(() => storageWatch?.requestProgress(), settings.bookmarkIntervalMs);
        timers.push(interval);
      }
    }

    start().catch((error: unknown) => {
      if (error instanceof StorageUnavailableError && !res.headersSent) {
        // Nothing streamed yet: answer as any other request the store could not serve.
        session.end(errors.serviceUnavailable(error.message));
      } else if (error instanceof ExpiredError) fail(tooOld(error));
      else if (error instanceof TooLargeRevisionError) fail(tooLarge(error));
      else if (error instanceof StorageUnavailableError) fail(errors.serviceUnavailable(error.message).status);
      else if (error instanceof StatusError) fail(error.status);
      else {
        logger.error({ err: error, resource: codec.gr.resource }, 'watch failed');
        fail(errors.internal('the watch could not be started').status);
      }
    });
  });
}

function tooLarge(error: TooLargeRevisionError): Status {
  return errors.tooLargeResourceVersion(error.requestedRevision, error.currentRevision).status;
}

/** The cacher's wording: `too old resource version: 5 (10)`. */
function tooOld(error: ExpiredError): Status {
  return errors.gone(`too old resource version: ${error.requestedRevision} (${error.compactedRevision})`).status;
}
