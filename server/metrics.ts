import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * `/metrics` in the Prometheus text format, with the names and labels of k8s.io/apiserver's
 * endpoint metrics so existing dashboards and alerts apply: `apiserver_request_total`,
 * `apiserver_request_duration_seconds`, `apiserver_registered_watchers`,
 * `apiserver_current_inflight_requests`, plus the Node.js process metrics.
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

export class Metrics {
  readonly registry = new Registry();
  private readonly requests: Counter<(typeof LABELS)[number] | 'code'>;
  private readonly durations: Histogram<(typeof LABELS)[number]>;
  private readonly inflight: Gauge<'request_kind'>;

  /** `watchCount` is read at each scrape (the registry's live count of open watches). */
  constructor(watchCount: () => number) {
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'apiserver_request_total',
      help: 'Counter of apiserver requests broken out for each verb, group, version, resource, subresource, scope and HTTP response code.',
      labelNames: [...LABELS, 'code'],
      registers: [this.registry],
    });
    this.durations = new Histogram({
      name: 'apiserver_request_duration_seconds',
      help: 'Response latency distribution in seconds for each verb, group, version, resource, subresource and scope (watches excluded).',
      labelNames: [...LABELS],
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
    new Gauge({
      name: 'apiserver_registered_watchers',
      help: 'Number of currently open watch requests.',
      registers: [this.registry],
      collect() {
        this.set(watchCount());
      },
    });
    this.inflight = new Gauge({
      name: 'apiserver_current_inflight_requests',
      help: 'Number of requests being served, by kind (readOnly or mutating).',
      labelNames: ['request_kind'],
      registers: [this.registry],
    });
    this.inflight.set({ request_kind: 'readOnly' }, 0);
    this.inflight.set({ request_kind: 'mutating' }, 0);
  }

  /** Marks a request as started; call the returned function once when it is done. */
  started(mutating: boolean): () => void {
    const labels = { request_kind: mutating ? 'mutating' : 'readOnly' };
    this.inflight.inc(labels);
    return () => this.inflight.dec(labels);
  }

  observe(labels: RequestLabels, code: number, seconds: number): void {
    this.requests.inc({ ...labels, code: String(code) });
    if (labels.verb !== 'WATCH') this.durations.observe(labels, seconds);
  }

  async serve(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    const text = await this.registry.metrics();
    res.statusCode = 200;
    res.setHeader('Content-Type', this.registry.contentType);
    res.end(text);
  }
}
