import { Histogram, Registry } from 'prom-client';
import { Metrics, RequestLabels } from '../server/metrics';

/** The block of one metric (HELP, TYPE and its lines) in a Prometheus text exposition. */
function block(text: string, name: string): string {
  const found = text.split('\n\n').find((b) => b.startsWith(`# HELP ${name} `));
  if (!found) throw new Error(`no ${name} in:\n${text}`);
  return found.trimEnd();
}

const labels = (verb: string, resource: string, scope: string, subresource = ''): RequestLabels => ({
  verb,
  group: resource ? 'wardle.example.com' : '',
  version: resource ? 'v1alpha1' : '',
  resource,
  subresource,
  scope,
});

describe('Metrics', () => {
  test('apiserver_request_duration_seconds is exposed exactly as prom-client\'s own Histogram fed the same observations', async () => {
    // GIVEN the server's metrics and a reference prom-client Histogram with the same name, help, labels and buckets
    const metrics = new Metrics();
    const ownText = await metrics.registry.metrics();
    const help = /# HELP apiserver_request_duration_seconds (.*)/.exec(ownText)![1];
    const reference = new Registry();
    const histogram = new Histogram({
      name: 'apiserver_request_duration_seconds',
      help,
      labelNames: ['verb', 'group', 'version', 'resource', 'subresource', 'scope'],
      buckets: [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60],
      registers: [reference],
    });
    // Values on bucket bounds, between them, past the last one, and zero; series that differ in one label only.
    const observations: [RequestLabels, number, number][] = [
      [labels('GET', 'flunders', 'resource'), 200, 0.005],
      [labels('GET', 'flunders', 'resource'), 404, 0.0049],
      [labels('LIST', 'flunders', 'namespace'), 200, 0.3],
      [labels('GET', 'flunders', 'resource', 'status'), 200, 61],
      [labels('GET', '', ''), 404, 0],
      [labels('LIST', 'flunders', 'cluster'), 200, 1.25],
      [labels('GET', 'flunders', 'resource'), 200, 0.1234567],
      [labels('WATCH', 'flunders', 'namespace'), 200, 12],
      [labels('POST', 'flunders', 'namespace'), 201, 59.999],
    ];

    // WHEN both are fed the same observations (watches are not timed)
    for (const [l, code, seconds] of observations) {
      metrics.observe(l, code, seconds);
      if (l.verb !== 'WATCH') histogram.observe({ ...l }, seconds);
    }

    // THEN the exposition of the histogram is the same, byte for byte
    const expected = block(await reference.metrics(), 'apiserver_request_duration_seconds');
    expect(block(await metrics.registry.metrics(), 'apiserver_request_duration_seconds')).toBe(expected);
    expect(expected).toContain('apiserver_request_duration_seconds_bucket{le="+Inf",verb="GET",group="wardle.example.com",version="v1alpha1",resource="flunders",subresource="status",scope="resource"} 1');
    expect(expected).not.toContain('WATCH');
    // And the request counter counts each label set and code.
    expect(block(await metrics.registry.metrics(), 'apiserver_request_total')).toContain(
      'apiserver_request_total{verb="GET",group="wardle.example.com",version="v1alpha1",resource="flunders",subresource="",scope="resource",code="200"} 2',
    );
  });

  test('a scrape of an unused histogram shows only its HELP and TYPE, as prom-client does', async () => {
    // GIVEN metrics that observed nothing
    const metrics = new Metrics();
    // WHEN scraped
    const text = block(await metrics.registry.metrics(), 'apiserver_request_duration_seconds');
    // THEN the histogram has no series
    expect(text.split('\n')).toEqual([expect.stringMatching(/^# HELP /), '# TYPE apiserver_request_duration_seconds histogram']);
  });
});
