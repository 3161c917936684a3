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
 * - Ends at `timeoutSeconds` (default 30–60 min, as `--min-request-timeout`), on client
 *   disconnect, when the client cannot keep up, or on shutdown.
 */

/** Upstream terminates watchers that fall this far behind; we cut at this many buffered bytes. */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
const MIN_REQUEST_TIMEOUT_SECONDS = 1800;

export interface WatchSettings {
  /** How often bookmarks are sent to watchers that allow them. */
  readonly bookmarkIntervalMs: number;
}

/** The open watch streams of a registry: counted for /metrics, ended on shutdown. */
export class WatchHub {
  private readonly sessions = new Set<{ end(): void }>();

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
  function encode(type: string, value: StoredValue): string {
    switch (output.as) {
      case 'Object':
        return eventLine(type, codec.storedJson(value, version.name));
      case 'PartialObjectMetadata':
      case 'PartialObjectMetadataList':
        return eventLine(type, codec.storedJson(value, version.name, output.version));
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
    const timers: NodeJS.Timeout[] = [];

    const session = {
      /** Ends the watch; with `error` before anything was written, the caller answers that Status instead. */
      end(error?: StatusError): void {
        if (ended) return;
        ended = true;
        for (const timer of timers) clearTimeout(timer);
        storageWatch?.stop();
        hub.remove(session);
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

    function write(line: string): void {
      if (ended) return;
      startStream();
      res.write(line);
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        logger.warn({ resource: codec.gr.resource, bufferedBytes: res.writableLength }, 'watch client is not reading; ending its watch');
        session.end();
        res.destroy();
      }
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

    // As the watch handler: 0 or absent → a random time between one and two min-request-timeouts.
    const timeoutSeconds = options.timeoutSeconds || MIN_REQUEST_TIMEOUT_SECONDS * (1 + Math.random());
    timers.push(setTimeout(() => session.end(), timeoutSeconds * 1000));

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
        for (const item of listed.items) write(encode('ADDED', item.value));
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
