/**
 * `Storage` on etcd v3, as k8s.io/apiserver's storage/etcd3 stores: one key per object under a
 * prefix, values as JSON without `metadata.resourceVersion` (the versioner's way), the etcd
 * revision as the resourceVersion, creates as a transaction on `create_revision == 0`, updates
 * and deletes as transactions on `mod_revision` with a read in the else branch (so one round trip
 * says both "changed" and "gone").
 *
 * Client: the `etcd3` npm package (1.1.2): its connection pool (one gRPC channel per server, a
 * circuit breaker per server) and its generated KV/Watch clients; the watch is our own stream
 * (see etcd-watch.ts). Failover: a request that could not be sent to one server (connection
 * refused, breaker open) is sent to the next; a request that was sent and got no answer within
 * `requestTimeoutMs` fails with `StorageUnavailableError` (indeterminate for writes), never retried.
 *
 * Readiness: every 2.5 s, etcd's `GET /health` on each server (ready when one answers healthy),
 * and at once when a request finds etcd unavailable. Watches end with `StorageUnavailableError`
 * when their connection is lost (see etcd-watch.ts); the caller watches again.
 */
import { deepFreeze, recordEncodedSize, shareManagedFields } from './frozen';
import { performance } from 'node:perf_hooks';
import {
  castGrpcError,
  ClientClosedError,
  CompareResult,
  CompareTarget,
  Etcd3,
  GRPCDeadlineExceededError,
  IKeyValue,
  IOptions,
  IRangeRequest,
  IRangeResponse,
  ITxnRequest,
  ITxnResponse,
  isRecoverableError,
  WatchClient,
} from 'etcd3';
import type { Logger } from 'pino';
import { EtcdTlsPem, grpcReason, probeEtcd } from './etcd-health';
import { EtcdWatch, rangeEnd, waitForRevision } from './etcd-watch';
import {
  ExpiredError,
  GetOptions,
  KeyExistsError,
  ListOptions,
  ListResult,
  NotFoundError,
  RevisionMismatchError,
  Storage,
  StorageQuotaExceededError,
  StorageUnavailableError,
  StorageWatch,
  StoredObject,
  StoredValue,
  TooLargeRevisionError,
  WatchCallbacks,
} from './types';

export type EtcdOperation = 'get' | 'list' | 'create' | 'update' | 'delete' | 'currentRevision' | 'compact';

export interface EtcdStorageOptions {
  /** Client URLs, http:// or https://; the client fails over between them. */
  readonly servers: readonly string[];
  /** Prepended to every key the registry gives (keys start with '/'), e.g. '/registry/wardle.example.com'. */
  readonly prefix: string;
  /** PEM texts (not paths): CA bundle to verify etcd, client certificate chain and key. */
  readonly tls?: EtcdTlsPem;
  /** Deadline of one health check, ms. @default 2000 (--etcd-healthcheck-timeout) */
  readonly healthcheckTimeoutMs?: number;
  /** Deadline of each request, ms: past it → StorageUnavailableError (indeterminate for writes). @default 10000 */
  readonly requestTimeoutMs?: number;
  readonly logger: Logger;
  /** Called after every etcd request, for /metrics (etcd_request_duration_seconds). */
  readonly observe?: (operation: EtcdOperation, seconds: number, ok: boolean, key?: string) => void;
}

/** How often the background health check asks every server. */
const HEALTH_CHECK_INTERVAL_MS = 2500;

/** kube-apiserver's key for coordinating compaction between replicas (storage/etcd3/compact.go). */
const COMPACT_REV_KEY = Buffer.from('compact_rev_key');

/** Decoded values of writes waiting for their answer or watch event, at most (oldest dropped first). */
const MAX_AWAITED_EVENTS = 1024;

/** Rows fetched per range while a filter discards some of them. */
const FILTERED_PAGE_SIZE = 500;

/** JSON without `metadata.resourceVersion`: the revision is etcd's, not part of the value. */
function encode(value: StoredValue): Buffer {
  const metadata = value.metadata as Record<string, unknown> | undefined;
  if (metadata === undefined || !('resourceVersion' in metadata)) return Buffer.from(JSON.stringify(value));
  const { resourceVersion: _dropped, ...rest } = metadata;
  return Buffer.from(JSON.stringify({ ...value, metadata: rest }));
}

/** The stored JSON with `metadata.resourceVersion` = `revision`, frozen (a value handed out). */
function decode(json: Buffer, revision: number): StoredValue {
  const value = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
  // Set on the parsed object, not spread into a copy: a spread at a site that has seen many shapes
  // gives each result a hidden class of its own (V8), ~0.5 KiB more per object held.
  const parsed = value.metadata;
  const metadata = (parsed !== null && typeof parsed === 'object' ? parsed : (value.metadata = { ...(parsed ?? {}) })) as Record<string, unknown>;
  metadata.resourceVersion = String(revision);
  shareManagedFields(metadata);
  recordEncodedSize(value, json.length);
  return deepFreeze(value);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}


/** cockatiel's breaker refused the call: nothing was sent. */
function isBrokenCircuit(error: unknown): boolean {
  return error instanceof Error && (error.name === 'BrokenCircuitError' || error.message.includes('circuit breaker is open'));
}

/** The request never left: no connection to the server (so a write certainly did not happen). */
function neverSent(error: unknown): boolean {
  return isBrokenCircuit(error) || /No connection established|ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH/.test(messageOf(error));
}

/** etcd could not serve (connection, deadline, no leader): retrying later may succeed. */
function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return isRecoverableError(error) || isBrokenCircuit(error) || /etcdserver: (request timed out|no leader|leader changed|server stopped|too many requests)/.test(error.message);
}

const COMPACTED = /required revision has been compacted/;
const FUTURE = /required revision is a future revision/;
/** etcd's ErrGRPCNoSpace: "etcdserver: mvcc: database space exceeded". */
const NO_SPACE = /database space exceeded/;

/** Runs one request, retrying it on the next server while it could not be sent. */
interface FailoverPolicy {
  execute<T>(run: () => Promise<T>): Promise<T>;
}

/**
 * etcd3's pool runs each request through this policy with a host iterator that moves to the next
 * server on every attempt: retry only what was never sent, once per server.
 */
function failoverPolicy(servers: number): FailoverPolicy {
  return {
    async execute<T>(run: () => Promise<T>): Promise<T> {
      for (let attempt = 1; ; attempt++) {
        try {
          return await run();
        } catch (error) {
          if (attempt >= servers || !neverSent(error)) throw error;
        }
      }
    },
  };
}

/**
 * What EtcdStorage calls of etcd3's connection pool (`Etcd3`'s protected `pool`, a
 * `ConnectionPool` from etcd3/lib/connection-pool): the gRPC client of a server its breaker lets
 * through, and the order in which it tries the servers.
 */
interface EtcdConnectionPool {
  withConnection<T>(service: 'KV', fn: (connection: { client: object; metadata: unknown }) => Promise<T>, hosts: Generator<unknown, void, unknown>): Promise<T>;
  shuffledHosts(): Generator<unknown, void, unknown>;
}

/** A generated grpc-js unary method of etcd's KV service, as etcd3's clients hold them. */
type UnaryMethod = (request: unknown, metadata: unknown, options: { deadline: number }, callback: (error: Error | null, response: unknown) => void) => void;

function validateServers(servers: readonly string[]): void {
  if (servers.length === 0) throw new Error('no etcd servers given');
  const protocols = new Set<string>();
  for (const server of servers) {
    let url: URL | undefined;
    try {
      url = new URL(server);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.host) {
      throw new Error(`etcd server "${server}" is not an http:// or https:// URL`);
    }
    protocols.add(url.protocol);
  }
  // etcd3 has one set of channel credentials for every server: TLS for all or for none.
  if (protocols.size > 1) throw new Error(`--etcd-servers mixes http:// and https:// URLs (${servers.join(',')}): expected one scheme for every server`);
}

/** Whether the servers speak TLS (validateServers made sure they all agree). */
function serversUseTls(servers: readonly string[]): boolean {
  return servers.some((server) => server.startsWith('https:'));
}

export class EtcdStorage implements Storage {
  private readonly client: Etcd3;
  /** The client's connection pool: a gRPC channel and a circuit breaker per server. */
  private readonly pool: EtcdConnectionPool;
  private readonly failover: FailoverPolicy;
  private readonly prefix: string;
  private readonly requestTimeoutMs: number;
  private readonly healthcheckTimeoutMs: number;
  private readonly logger: Logger;
  private readonly watches = new Set<EtcdWatch>();
  /** Keys with a create or update of this process in flight (and how many). */
  private readonly writesInFlight = new Map<string, number>();
  /**
   * Where a write's answer and its watch event meet, by key: whichever arrives first leaves the
   * value it decoded, and the other takes it instead of decoding the same JSON again. So the
   * watch cache keeps the very object the write returned, and the serialization the registry
   * cached on it while answering the write serves later reads.
   */
  private readonly decodedWrites = new Map<string, { readonly revision: number; readonly value: StoredValue }>();
  private unready: string | undefined = 'etcd: not checked yet';
  private healthCheckInFlight: Promise<string | undefined> | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private compactorTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: EtcdStorageOptions) {
    validateServers(options.servers);
    this.prefix = options.prefix;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.healthcheckTimeoutMs = options.healthcheckTimeoutMs ?? 2000;
    this.logger = options.logger;
    const tls = options.tls;
    this.failover = failoverPolicy(options.servers.length);
    this.client = new Etcd3({
      hosts: [...options.servers],
      // Only for https:// servers: as etcd's Go client (CREDS_DROP for http://), the TLS flags do
      // not turn a plain-text etcd into a TLS one that never answers.
      credentials:
        tls && serversUseTls(options.servers) && (tls.ca !== undefined || tls.cert !== undefined)
          ? {
              // Without a CA, grpc-js verifies against the system roots.
              rootCertificate: (tls.ca !== undefined ? Buffer.from(tls.ca) : undefined) as Buffer,
              privateKey: tls.key !== undefined ? Buffer.from(tls.key) : undefined,
              certChain: tls.cert !== undefined ? Buffer.from(tls.cert) : undefined,
            }
          : undefined,
      grpcOptions: {
        // Lists of thousands of objects exceed grpc-js's 4 MiB default (kube sets MaxInt32 too).
        'grpc.max_receive_message_length': -1,
        // Finds a dead connection with no traffic (etcd permits pings every 5 s during streams).
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': 10_000,
        // Per-call bookkeeping for the channelz debugging service, which nothing here serves.
        'grpc.enable_channelz': 0,
      },
      // Streams (watches) live on; each other call has the request deadline.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + this.requestTimeoutMs }),
      // Only `execute` is called by the pool; the rest of cockatiel's IPolicy is events we do not need.
      faultHandling: { global: this.failover as unknown as NonNullable<IOptions['faultHandling']>['global'] },
    });
    this.pool = (this.client as unknown as { readonly pool: EtcdConnectionPool }).pool;
    this.scheduleHealthCheck(0);
  }

  async currentRevision(): Promise<number> {
    // A count of one key: O(1) in etcd, and the header carries the store's revision.
    const response = await this.request('currentRevision', false, () => this.range({ key: Buffer.from(this.prefix), count_only: true }));
    return Number(response.header.revision);
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | undefined> {
    const read = (): Promise<IRangeResponse> => this.request('get', false, () => this.range({ key: this.etcdKey(key) }), key);
    let response = await read();
    // Read first, as etcd3's Get checks minimumResourceVersion against the answer: one round trip when etcd has reached it.
    if (options.minRevision !== undefined && Number(response.header.revision) < options.minRevision) {
      await waitForRevision(() => this.currentRevision(), options.minRevision);
      response = await read();
    }
    const kv = response.kvs[0];
    return kv ? this.toStored(kv) : undefined;
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    if (options.revision === undefined && options.minRevision !== undefined) await waitForRevision(() => this.currentRevision(), options.minRevision);
    const start = options.startKey !== undefined && options.startKey > prefix ? options.startKey : prefix;
    const end = rangeEnd(this.etcdKey(prefix));
    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : undefined;
    const filter = options.filter;
    let revision = options.revision;
    const page = async (from: Buffer, rows: number | undefined): Promise<IRangeResponse> => {
      const request: IRangeRequest = { key: from, range_end: end, ...(rows !== undefined ? { limit: rows } : {}), ...(revision !== undefined ? { revision } : {}) };
      try {
        return await this.request('list', false, () => this.range(request), prefix);
      } catch (error) {
        if (revision !== undefined && COMPACTED.test(messageOf(error))) throw new ExpiredError(revision, await this.compactedRevision(revision));
        if (revision !== undefined && FUTURE.test(messageOf(error))) throw new TooLargeRevisionError(revision, await this.currentRevision());
        throw error;
      }
    };

    if (!filter) {
      // etcd's limit, more and count are MemoryStorage's limit, more and remaining.
      const response = await page(this.etcdKey(start), limit);
      const items = response.kvs.map((kv) => this.toStored(kv));
      const readAt = revision ?? Number(response.header.revision);
      if (!response.more || items.length === 0) return { items, revision: readAt, more: false };
      return { items, revision: readAt, more: true, nextKey: `${items[items.length - 1].key}\u0000`, remaining: Number(response.count) - items.length };
    }

    // With a filter, `more` means another matching item exists: read pages until one is found.
    const items: StoredObject[] = [];
    let from = this.etcdKey(start);
    for (;;) {
      const response = await page(from, limit === undefined ? undefined : Math.max(limit + 1, FILTERED_PAGE_SIZE));
      revision ??= Number(response.header.revision);
      for (const kv of response.kvs) {
        const stored = this.toStored(kv);
        if (!filter(stored.value)) continue;
        if (items.length === limit) return { items, revision, more: true, nextKey: `${items[items.length - 1].key}\u0000` };
        items.push(stored);
      }
      if (!response.more || response.kvs.length === 0) return { items, revision, more: false };
      from = Buffer.concat([response.kvs[response.kvs.length - 1].key, Buffer.from([0])]);
    }
  }

  async create(key: string, value: StoredValue): Promise<StoredObject> {
    const etcdKey = this.etcdKey(key);
    const json = encode(value);
    const response = await this.writing(key, () =>
      this.request('create', true, () =>
        this.txn({
          compare: [{ key: etcdKey, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }],
          success: [{ request_put: { key: etcdKey, value: json } }],
          failure: [],
        }),
        key,
      ),
    );
    if (!response.succeeded) throw new KeyExistsError(key);
    const revision = Number(response.header.revision);
    return { key, value: this.decodedWrite(key, json, revision, 'answer'), createRevision: revision, modRevision: revision };
  }

  async update(key: string, value: StoredValue, expectedModRevision: number): Promise<StoredObject> {
    const etcdKey = this.etcdKey(key);
    const json = encode(value);
    const response = await this.writing(key, () =>
      this.request('update', true, () =>
        this.txn({
          compare: [{ key: etcdKey, target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: expectedModRevision }],
          success: [{ request_put: { key: etcdKey, value: json, prev_kv: true } }],
          failure: [{ request_range: { key: etcdKey } }],
        }),
        key,
      ),
    );
    if (!response.succeeded) throw this.casFailure(key, expectedModRevision, response.responses[0]?.response_range);
    const revision = Number(response.header.revision);
    const prev = response.responses[0]?.response_put?.prev_kv;
    // prev_kv is there: the compare just saw the key.
    const createRevision = prev ? Number(prev.create_revision) : revision;
    return { key, value: this.decodedWrite(key, json, revision, 'answer'), createRevision, modRevision: revision };
  }

  async delete(key: string, expectedModRevision: number): Promise<StoredObject> {
    const etcdKey = this.etcdKey(key);
    const response = await this.request('delete', true, () =>
      this.txn({
        compare: [{ key: etcdKey, target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: expectedModRevision }],
        success: [{ request_delete_range: { key: etcdKey, prev_kv: true } }],
        failure: [{ request_range: { key: etcdKey } }],
      }),
      key,
    );
    if (!response.succeeded) throw this.casFailure(key, expectedModRevision, response.responses[0]?.response_range);
    const revision = Number(response.header.revision);
    const prev = response.responses[0]?.response_delete_range?.prev_kvs?.[0];
    if (!prev) throw new NotFoundError(key); // cannot happen: the compare saw the key in the same transaction
    return { key, value: decode(prev.value, revision), createRevision: Number(prev.create_revision), modRevision: revision };
  }

  watch(prefix: string, afterRevision: number, callbacks: WatchCallbacks): StorageWatch {
    this.assertOpen();
    let watch: EtcdWatch | undefined = undefined;
    const tracked: WatchCallbacks = {
      onEvent: (event) => callbacks.onEvent(event),
      onProgress: (notification) => callbacks.onProgress?.(notification),
      onError: (error) => {
        if (watch) this.watches.delete(watch);
        callbacks.onError?.(error);
      },
    };
    watch = new EtcdWatch(
      {
        watchClient: this.client.watchClient,
        keyPrefix: this.prefix,
        decode,
        decodeWrite: (key, json, revision) => this.decodedWrite(key, json, revision, 'event'),
        currentRevision: () => this.currentRevision(),
        range: (request) => this.request('list', false, () => this.range(request)),
        requestTimeoutMs: this.requestTimeoutMs,
        unavailable: (reason) => this.unavailable(reason),
      },
      prefix,
      afterRevision,
      tracked,
    );
    this.watches.add(watch);
    const started = watch;
    return {
      requestProgress: () => started.requestProgress(),
      stop: () => {
        started.stop();
        this.watches.delete(started);
      },
    };
  }

  async compact(revision: number): Promise<void> {
    try {
      // physical: answer once the history is gone, so reads right after see ExpiredError.
      await this.request('compact', true, () => this.client.kv.compact({ revision, physical: true }));
      this.logger.info({ revision }, 'etcd: compacted');
    } catch (error) {
      if (COMPACTED.test(messageOf(error))) return; // at or below the compacted revision: nothing to do
      if (FUTURE.test(messageOf(error))) throw new TooLargeRevisionError(revision, await this.currentRevision());
      throw error;
    }
  }

  /**
   * kube-apiserver's compactor (storage/etcd3/compact.go): every interval, a transaction on the
   * version of `compact_rev_key` elects the one replica that compacts at the revision it saw one
   * interval earlier; the others learn the key's version and try again next interval.
   */
  startCompactor(intervalMs: number): void {
    if (this.compactorTimer || this.closed) return;
    let compactTime = 0;
    let lastRevision = 0;
    const tick = async (): Promise<void> => {
      try {
        [compactTime, lastRevision] = await this.compactOnce(compactTime, lastRevision);
      } catch (error) {
        this.logger.warn({ err: error }, 'etcd: compaction failed');
      }
      if (!this.closed) this.compactorTimer = setTimeout(() => void tick(), intervalMs).unref();
    };
    this.compactorTimer = setTimeout(() => void tick(), intervalMs).unref();
  }

  private async compactOnce(compactTime: number, revision: number): Promise<[number, number]> {
    const response = await this.request('compact', true, () =>
      this.txn({
        compare: [{ key: COMPACT_REV_KEY, target: CompareTarget.Version, result: CompareResult.Equal, version: compactTime }],
        // The put increments the key's version: the next interval's compare.
        success: [{ request_put: { key: COMPACT_REV_KEY, value: Buffer.from(String(revision)) } }],
        failure: [{ request_range: { key: COMPACT_REV_KEY } }],
      }),
    );
    const current = Number(response.header.revision);
    if (!response.succeeded) {
      // Another replica (or a restart of this one) moved on: adopt its count.
      return [Number(response.responses[0]?.response_range?.kvs[0]?.version ?? 0), current];
    }
    // No compaction on the first interval: nothing was seen an interval ago.
    if (revision !== 0) {
      try {
        await this.compact(revision);
      } catch (error) {
        this.logger.warn({ err: error, revision }, 'etcd: compaction failed');
      }
    }
    return [compactTime + 1, current];
  }

  isReady(): boolean {
    return !this.closed && this.unready === undefined;
  }

  unreadyReason(): string | undefined {
    return this.closed ? 'etcd: storage is closed' : this.unready;
  }

  /** One health check now; undefined when healthy, else the reason in words ("etcd: ..."). Also updates isReady()/unreadyReason(). */
  checkHealth(): Promise<string | undefined> {
    this.healthCheckInFlight ??= this.probeAll().finally(() => (this.healthCheckInFlight = undefined));
    return this.healthCheckInFlight;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.healthTimer);
    clearTimeout(this.compactorTimer);
    for (const watch of this.watches) watch.stop();
    this.watches.clear();
    this.client.close();
  }

  private async probeAll(): Promise<string | undefined> {
    const results = await Promise.all(this.options.servers.map((server) => probeEtcd(server, this.options.tls, this.healthcheckTimeoutMs)));
    if (this.closed) return 'etcd: storage is closed';
    const reason = results.some((result) => result.ok) ? undefined : `etcd: ${results.map((result) => (result.ok ? '' : result.reason)).join('; ')}`;
    if (reason !== undefined && this.unready === undefined) this.logger.warn({ reason }, 'etcd: not ready');
    if (reason === undefined && this.unready !== undefined) this.logger.info({ servers: this.options.servers }, 'etcd: ready');
    this.unready = reason;
    return reason;
  }

  private scheduleHealthCheck(delayMs: number): void {
    if (this.closed) return;
    clearTimeout(this.healthTimer);
    this.healthTimer = setTimeout(() => {
      void this.checkHealth().finally(() => this.scheduleHealthCheck(HEALTH_CHECK_INTERVAL_MS));
    }, delayMs).unref();
  }

  /** A request found etcd unavailable: unready at once, and a health check now to say why (or to recover). */
  private unavailable(reason: string): void {
    if (this.closed) return;
    if (this.unready === undefined) {
      this.unready = `etcd: ${reason}`;
      this.logger.warn({ reason }, 'etcd: not ready');
    }
    if (!this.healthCheckInFlight) this.scheduleHealthCheck(0);
  }

  /** Runs a create or update of `key`, known meanwhile as in flight (see decodedWrite). */
  private async writing<T>(key: string, write: () => Promise<T>): Promise<T> {
    this.writesInFlight.set(key, (this.writesInFlight.get(key) ?? 0) + 1);
    try {
      return await write();
    } finally {
      const left = (this.writesInFlight.get(key) ?? 1) - 1;
      if (left === 0) this.writesInFlight.delete(key);
      else this.writesInFlight.set(key, left);
    }
  }

  /**
   * The value a put of `key` stored at `revision`, for the write's answer or for its watch event:
   * decoded once for both (see decodedWrites). The first to come leaves it only when the other
   * will come: the answer, when a watch covers the key; the event, while a write of the key is in flight.
   */
  private decodedWrite(key: string, json: Buffer, revision: number, from: 'answer' | 'event'): StoredValue {
    const left = this.decodedWrites.get(key);
    if (left !== undefined) {
      this.decodedWrites.delete(key);
      if (left.revision === revision) return left.value;
    }
    const value = decode(json, revision);
    const otherWillCome = from === 'answer' ? [...this.watches].some((watch) => key.startsWith(watch.prefix)) : this.writesInFlight.has(key);
    if (otherWillCome) {
      this.decodedWrites.set(key, { revision, value });
      // Bounded: an answer or event that never comes (a write that timed out) leaves its value behind.
      if (this.decodedWrites.size > MAX_AWAITED_EVENTS) this.decodedWrites.delete(this.decodedWrites.keys().next().value as string);
    }
    return value;
  }

  private etcdKey(key: string): Buffer {
    return Buffer.from(this.prefix + key);
  }

  private toStored(kv: IKeyValue): StoredObject {
    const modRevision = Number(kv.mod_revision);
    return { key: kv.key.toString('utf8').slice(this.prefix.length), value: decode(kv.value, modRevision), createRevision: Number(kv.create_revision), modRevision };
  }

  private casFailure(key: string, expectedModRevision: number, current: IRangeResponse | undefined): Error {
    const kv = current?.kvs[0];
    return kv ? new RevisionMismatchError(key, expectedModRevision, Number(kv.mod_revision)) : new NotFoundError(key);
  }

  /**
   * etcd's "compacted" error does not say up to where; a watch from revision 1 is answered with
   * the compacted revision (then canceled). Falls back to `requested + 1` when etcd does not say.
   */
  private async compactedRevision(requested: number): Promise<number> {
    const fallback = requested + 1;
    let stream: Awaited<ReturnType<WatchClient['watch']>>;
    try {
      stream = await this.client.watchClient.watch();
    } catch {
      return fallback;
    }
    return new Promise((resolve) => {
      const done = (revision: number) => {
        clearTimeout(timer);
        stream.on('error', () => undefined);
        stream.cancel();
        resolve(revision);
      };
      const timer = setTimeout(() => done(fallback), this.requestTimeoutMs);
      stream.on('data', (response) => {
        if (Number(response.compact_revision) > 0) done(Number(response.compact_revision));
      });
      stream.on('error', () => done(fallback));
      stream.write({ create_request: { key: Buffer.from(`${this.prefix}\u0000compacted-revision-probe`), start_revision: 1 } });
    });
  }

  private range(request: IRangeRequest): Promise<IRangeResponse> {
    return this.unary('range', request);
  }

  private txn(request: ITxnRequest): Promise<ITxnResponse> {
    return this.unary('txn', request);
  }

  /**
   * One KV call on etcd3's gRPC client for a server its pool picks (that server's breaker, our
   * failover), without etcd3's generic `exec` around it: its call-option resolution and the
   * promise hops it adds cost more than the rest of our request pipeline on a create.
   */
  private async unary<T>(method: 'range' | 'txn', request: IRangeRequest | ITxnRequest): Promise<T> {
    let callError: unknown;
    // One walk over the servers for all attempts, as etcd3's exec: each retry goes to the next server.
    const hosts = this.pool.shuffledHosts();
    try {
      return await this.failover.execute(() =>
        this.pool.withConnection(
          'KV',
          ({ client, metadata }) =>
            new Promise<T>((resolve, reject) => {
              const call = (client as Record<typeof method, UnaryMethod>)[method];
              // grpc-js captures the caller's stack (`new Error()`) on every call, only to append
              // it to the message of a failed call; our errors name the operation instead.
              const stackTraceLimit = Error.stackTraceLimit;
              Error.stackTraceLimit = 0;
              try {
                call.call(client, request, metadata, { deadline: Date.now() + this.requestTimeoutMs }, (error, response) => {
                  if (error) reject((callError = castGrpcError(error)));
                  else resolve(response as T);
                });
              } finally {
                Error.stackTraceLimit = stackTraceLimit;
              }
            }),
          hosts,
        ),
      );
    } catch (error) {
      // As etcd3's exec: a breaker that opened after a failed call reports that call's error.
      throw isBrokenCircuit(error) && callError !== undefined && !isBrokenCircuit(callError) ? callError : error;
    }
  }

  /** Runs one etcd request: reports its duration, turns connection trouble into StorageUnavailableError. */
  private async request<T>(operation: EtcdOperation, write: boolean, run: () => Promise<T>, key?: string): Promise<T> {
    this.assertOpen();
    const started = performance.now();
    let ok = false;
    try {
      const result = await run();
      ok = true;
      return result;
    } catch (error) {
      throw this.translate(operation, error, write);
    } finally {
      this.options.observe?.(operation, (performance.now() - started) / 1000, ok, key);
    }
  }

  private translate(operation: EtcdOperation, error: unknown, write: boolean): Error {
    if (error instanceof ClientClosedError || this.closed) return new StorageUnavailableError('etcd: storage is closed');
    // etcd's quota (--quota-backend-bytes) is full and its NOSPACE alarm raised: writes fail until
    // an operator compacts, defragments and disarms it; the client is told as kube-apiserver tells it.
    // (gRPC RESOURCE_EXHAUSTED: not a sign that etcd is unreachable, so the store stays ready for reads.)
    if (write && NO_SPACE.test(messageOf(error))) return new StorageQuotaExceededError(undefined, undefined, undefined, messageOf(error));
    if (error instanceof GRPCDeadlineExceededError) {
      const reason = `no answer to ${operation} within ${this.requestTimeoutMs / 1000}s`;
      this.unavailable(reason);
      return new StorageUnavailableError(`etcd: ${reason}`, write);
    }
    if (isUnavailable(error)) {
      const reason = `${operation} failed: ${grpcReason(error)}`;
      this.unavailable(reason);
      return new StorageUnavailableError(`etcd: ${reason}`, write && !neverSent(error));
    }
    return error instanceof Error ? error : new Error(String(error));
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageUnavailableError('etcd: storage is closed');
  }
}

/**
 * Start-up verification for the server: resolves when etcd answered or is merely unreachable
 * (then the server starts unready and keeps retrying); throws an Error whose message is one line
 * naming the flag and the problem when retrying cannot help: a CA that does not verify etcd's
 * certificate (--etcd-cafile), a client certificate etcd rejects (--etcd-certfile/--etcd-keyfile).
 * Asks every server at once, so it takes at most `healthcheckTimeoutMs`.
 */
export async function verifyEtcdAtStart(options: EtcdStorageOptions, flags: { cafile?: string; certfile?: string; keyfile?: string }): Promise<void> {
  validateServers(options.servers);
  const timeoutMs = options.healthcheckTimeoutMs ?? 2000;
  const results = await Promise.all(options.servers.map(async (server) => ({ server, result: await probeEtcd(server, options.tls, timeoutMs) })));
  for (const { server, result } of results) {
    if (result.ok) continue;
    switch (result.failure) {
      case 'untrusted':
        throw new Error(
          flags.cafile
            ? `--etcd-cafile "${flags.cafile}" does not verify the certificate of etcd at ${server}: ${result.detail}`
            : `the system CAs do not verify the certificate of etcd at ${server} (set --etcd-cafile): ${result.detail}`,
        );
      case 'wrong-name':
        throw new Error(`--etcd-servers: the certificate of etcd at ${server} is not valid for that address: ${result.detail}`);
      case 'client-rejected':
        throw new Error(
          flags.certfile || flags.keyfile
            ? `--etcd-certfile "${flags.certfile ?? ''}" / --etcd-keyfile "${flags.keyfile ?? ''}": etcd at ${server} does not accept this client certificate: ${result.detail}`
            : `etcd at ${server} requires a client certificate: set --etcd-certfile and --etcd-keyfile (${result.detail})`,
        );
      case 'client-unusable':
        throw new Error(`--etcd-certfile "${flags.certfile ?? ''}" / --etcd-keyfile "${flags.keyfile ?? ''}" cannot be used together: ${result.detail}`);
      default:
        options.logger.warn({ server, reason: result.reason }, 'etcd: not reachable at start; starting unready and retrying');
    }
  }
}
