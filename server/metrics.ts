import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CacheStats } from './storage/cacher';

/**
 * `/metrics` in the Prometheus text format, with the names and labels of k8s.io/apiserver's
 * metrics so existing dashboards and alerts apply: `apiserver_request_total`,
 * `apiserver_request_duration_seconds`, `apiserver_registered_watchers`,
 * `apiserver_current_inflight_requests`; storage's `etcd_request_duration_seconds`,
 * `etcd_request_errors_total`, `apiserver_storage_objects` and the watch cache's size
 * (`apiserver_watch_cache_events`, `apiserver_watch_cache_bytes`,
 * `apiserver_watch_cache_resource_version`); plus the Node.js process metrics.
 */

/** The labels of one finished request. Only served groups and resources reach these labels. */
export interface RequestLabels {
  /** Upper-case: GET, LIST, WATCH, POST, PUT, PATCH, DELETE, DELETECOLLECTION … */
  readonly verb: string;
  readonly group: string;
  readonly version: string;
  readonly resource: string;
  readonly subresource: string;
  /** `resource` (one object), `namespace` (a collection in a namespace), `cluster`, or empty. */
  readonly scope: string;
}

/** The duration buckets upstream uses for apiserver_request_duration_seconds. */
const DURATION_BUCKETS = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60];
const LABELS = ['verb', 'group', 'version', 'resource', 'subresource', 'scope'] as const;

/** What prom-client's Histogram exports (its get()). */
type HistogramData<T extends string> = Awaited<ReturnType<Histogram<T>['get']>>;

/** One series of a PlainHistogram: its labels, the count per bucket (not cumulative; past the last bucket: none), sum and count. */
interface HistogramSeries {
  readonly labels: Record<string, string>;
  readonly buckets: number[];
  sum: number;
  count: number;
}

/**
 * A histogram whose observations are counted in plain arrays per series (the caller keys the
 * series), and handed to the registry at scrape time in the very form prom-client's Histogram
 * exports (same names, labels, `le` values and order): prom-client's `observe` hashes the labels
 * object on every call.
 */
class PlainHistogram<T extends string> extends Histogram<T> {
  private readonly series = new Map<string, HistogramSeries>();
  private readonly bounds: readonly number[];

  constructor(private readonly configuration: { name: string; help: string; labelNames: readonly T[]; buckets: number[]; registers: Registry[] }) {
    super(configuration);
    this.bounds = [...configuration.buckets];
  }

  /** Counts one observation into the series `key` (equal keys exactly when the labels are). */
  record(key: string, labels: Record<string, string>, value: number): void {
    let series = this.series.get(key);
    if (!series) {
      series = { labels, buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, series);
    }
    // The first bucket whose upper bound holds the value, as prom-client's findBound.
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        series.buckets[i]++;
        break;
      }
    }
    series.sum += value;
    series.count++;
  }

  override reset(): void {
    super.reset();
    // Also called by the base constructor, before this class's fields exist.
    (this.series as Map<string, HistogramSeries> | undefined)?.clear();
  }

  override async get(): Promise<HistogramData<T>> {
    const name = this.configuration.name;
    const values: HistogramData<T>['values'] = [];
    // Series in the order first seen, each as prom-client lists it: buckets (cumulative), +Inf, sum, count.
    for (const { labels, buckets, sum, count } of this.series.values()) {
      let cumulative = 0;
      for (let i = 0; i < buckets.length; i++) {
        cumulative += buckets[i];
        values.push({ metricName: `${name}_bucket`, labels: { le: this.bounds[i], ...labels } as never, value: cumulative });
      }
      values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', ...labels } as never, value: count });
      values.push({ metricName: `${name}_sum`, labels: { ...labels } as never, value: sum });
      values.push({ metricName: `${name}_count`, labels: { ...labels } as never, value: count });
    }
    // The fields prom-client's own Histogram returns (its type declares a `collect` it does not return).
    return { name, help: this.configuration.help, type: 'histogram', values, aggregator: 'sum' } as unknown as HistogramData<T>;
  }

  /** What the registry reads for the text format: the same values (prom-client's own would read its empty hash map). */
  getForPromString(): Promise<HistogramData<T>> {
    return this.get();
  }
}

/** What the scrape-time gauges read, once the parts they describe exist. */
export interface MetricsSources {
  /** Open watch streams. */
  readonly watchCount: () => number;
  /** Per resource, the watch cache's size. @default - none (memory storage) */
  readonly cacheStats?: () => readonly CacheStats[];
  /** The resource a cache prefix holds, as upstream labels it (`flunders.wardle.example.com`). @default - the prefix */
  readonly resourceOf?: (prefix: string) => string;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<(typeof LABELS)[number] | 'code'>;
  private readonly durations: PlainHistogram<(typeof LABELS)[number]>;
  private readonly inflight: Gauge<'request_kind'>;
  private readonly etcdDurations: Histogram<'operation' | 'type'>;
  private readonly etcdErrors: Counter<'operation' | 'type'>;
  private sources: MetricsSources = { watchCount: () => 0 };
  /**
   * Request counts per label set (code included) and requests in flight, counted in plain maps
   * and handed to prom-client at scrape time: its `inc`/`dec` hash the labels object on every
   * call, several times per request.
   */
  private readonly requestCounts = new Map<string, { readonly labels: Record<string, string>; count: number }>();
  private readonly inflightCounts = { readOnly: 0, mutating: 0 };
  private readonly readOnlyDone = (): void => {
    this.inflightCounts.readOnly--;
  };
  private readonly mutatingDone = (): void => {
    this.inflightCounts.mutating--;
  };

  /** Created first, so that storage can report into it; `readFrom` then names what the gauges read at each scrape. */
  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'apiserver_request_total',
      help: 'Counter of apiserver requests broken out for each verb, group, version, resource, subresource, scope and HTTP response code.',
      labelNames: [...LABELS, 'code'],
      registers: [this.registry],
      collect: () => {
        // Series in the order first seen, as prom-client keeps them.
        this.requests.reset();
        for (const { labels, count } of this.requestCounts.values()) this.requests.inc(labels, count);
      },
    });
    this.durations = new PlainHistogram({
      name: 'apiserver_request_duration_seconds',
      help: 'Response latency distribution in seconds for each verb, group, version, resource, subresource and scope (watches excluded).',
      labelNames: [...LABELS],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
    const watchers: Gauge = new Gauge({
      name: 'apiserver_registered_watchers',
      help: 'Number of currently open watch requests.',
      registers: [this.registry],
      collect: () => watchers.set(this.sources.watchCount()),
    });
    this.etcdDurations = new Histogram({
      name: 'etcd_request_duration_seconds',
      help: 'Etcd request latency in seconds for each operation and object type.',
      labelNames: ['operation', 'type'],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
    this.etcdErrors = new Counter({
      name: 'etcd_request_errors_total',
      help: 'Etcd failed request counts for each operation and object type.',
      labelNames: ['operation', 'type'],
      registers: [this.registry],
    });
    // Read at scrape time: the cache's own counts, no bookkeeping on the request path.
    const perResource = (name: string, help: string, value: (stats: CacheStats) => number) => {
      const gauge: Gauge<'resource'> = new Gauge({
        name,
        help,
        labelNames: ['resource'],
        registers: [this.registry],
        collect: () => {
          gauge.reset();
          const resourceOf = this.sources.resourceOf ?? ((prefix: string) => prefix);
          for (const stats of this.sources.cacheStats?.() ?? []) gauge.set({ resource: resourceOf(stats.prefix) }, value(stats));
        },
      });
    };
    perResource('apiserver_storage_objects', 'Number of stored objects at the time of last check split by kind.', (s) => s.objects);
    perResource('apiserver_watch_cache_events', 'Number of events in the watch cache\'s history, per resource (upstream\'s apiserver_watch_cache_capacity counts its slots).', (s) => s.historyEvents);
    perResource('apiserver_watch_cache_bytes', 'Bytes of JSON held in the watch cache\'s history, per resource (the bound is in bytes).', (s) => s.historyBytes);
    perResource('apiserver_watch_cache_resource_version', 'Current resource version of watch cache broken by resource type.', (s) => s.revision);
    this.inflight = new Gauge({
      name: 'apiserver_current_inflight_requests',
      help: 'Number of requests being served, by kind (readOnly or mutating).',
      labelNames: ['request_kind'],
      registers: [this.registry],
      collect: () => {
        this.inflight.set({ request_kind: 'readOnly' }, this.inflightCounts.readOnly);
        this.inflight.set({ request_kind: 'mutating' }, this.inflightCounts.mutating);
      },
    });
  }

  readFrom(sources: MetricsSources): void {
    this.sources = sources;
  }

  /** One etcd request finished; `type` is the resource it was for (`flunders.wardle.example.com`), empty when unknown. */
  observeEtcdRequest(operation: string, type: string, seconds: number, ok: boolean): void {
    this.etcdDurations.observe({ operation, type }, seconds);
    if (!ok) this.etcdErrors.inc({ operation, type });
  }

  /** Marks a request as started; call the returned function once when it is done. */
  started(mutating: boolean): () => void {
    if (mutating) {
      this.inflightCounts.mutating++;
      return this.mutatingDone;
    }
    this.inflightCounts.readOnly++;
    return this.readOnlyDone;
  }

  observe(labels: RequestLabels, code: number, seconds: number): void {
    // Joined with NUL, which no label value holds: HTTP methods and served routes cannot carry one.
    const seriesKey = `${labels.verb}\u0000${labels.group}\u0000${labels.version}\u0000${labels.resource}\u0000${labels.subresource}\u0000${labels.scope}`;
    const key = `${seriesKey}\u0000${code}`;
    const series = this.requestCounts.get(key);
    if (series) series.count++;
    else this.requestCounts.set(key, { labels: { ...labels, code: String(code) }, count: 1 });
    if (labels.verb !== 'WATCH') this.durations.record(seriesKey, labels as unknown as Record<string, string>, seconds);
  }

  async serve(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    const text = await this.registry.metrics();
    res.statusCode = 200;
    res.setHeader('Content-Type', this.registry.contentType);
    res.end(text);
  }
}
