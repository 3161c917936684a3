import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as http2Constants, type Http2Stream } from 'node:http2';
import type { UserInfo } from './auth/types';
import type { RequestInfo } from './request-info';
import { Status, StatusError, errors } from './status';

/**
 * Flow control and request timeouts, as k8s.io/apiserver's filters do them (without priority and
 * fairness):
 *
 * - max in flight (server/filters/maxinflight.go): at most `--max-requests-inflight` read-only and
 *   `--max-mutating-requests-inflight` mutating requests are served at once; the next one is
 *   answered 429 with `Retry-After: 1` at once (no queue). Long-running requests (watches) are not
 *   counted, members of `system:masters` are never refused, 0 disables a limit. Runs after
 *   authentication, as upstream (it needs the user's groups), before authorization.
 * - request deadline and timeout (endpoints/filters/request_deadline.go, server/filters/timeout.go):
 *   every request that is not long-running gets `--request-timeout`, or the client's `?timeout=`
 *   when shorter; past it the client gets a 504 Status and whatever the handler writes afterwards
 *   is discarded; if the handler had already started its answer, the stream is cut (HTTP/1.1: the
 *   connection; HTTP/2: the stream) so that no half answer passes for a whole one. The deadline
 *   runs from the request's arrival, authentication and authorization included.
 */

export interface FlowControlOptions {
  /** `--max-requests-inflight`: read-only requests served at once; 0: no limit. */
  readonly maxRequestsInflight: number;
  /** `--max-mutating-requests-inflight`: mutating requests served at once; 0: no limit. */
  readonly maxMutatingRequestsInflight: number;
  /** `--request-timeout`: the longest a request that is not long-running may take. */
  readonly requestTimeoutMs: number;
  /**
   * Called for each request admitted to the limits (and each request of `system:masters` past
   * them); the function it returns when that request is done. For the in-flight gauge.
   * @default - nothing
   */
  readonly onAdmitted?: (mutating: boolean) => () => void;
}

/** The Go kube-apiserver's defaults. */
export const FLOW_CONTROL_DEFAULTS = {
  maxRequestsInflight: 400,
  maxMutatingRequestsInflight: 200,
  requestTimeoutMs: 60_000,
  minRequestTimeoutSeconds: 1800,
} as const;

/** maxinflight.go's `nonMutatingRequestVerbs`, plus `head`, which this server's request info names for HEAD outside resources. */
const READ_ONLY_VERBS = new Set(['get', 'list', 'watch', 'head']);
/** The generic apiserver's LongRunningFunc (server/config.go NewConfig): the watch verb, no subresource of this API streams. */
const LONG_RUNNING_VERBS = new Set(['watch']);
/** maxinflight.go's retryAfter. */
const RETRY_AFTER_SECONDS = 1;
/** user.SystemPrivilegedGroup: never refused by the in-flight limit. */
const PRIVILEGED_GROUP = 'system:masters';

/** filters.BasicLongRunningRequestCheck with the generic apiserver's verbs: watches and profiling streams. */
export function isLongRunning(info: RequestInfo): boolean {
  if (LONG_RUNNING_VERBS.has(info.verb)) return true;
  return !info.isResourceRequest && info.path.startsWith('/debug/pprof/');
}

export function isMutating(info: RequestInfo): boolean {
  return !READ_ONLY_VERBS.has(info.verb);
}

const GO_DURATION_UNITS_MS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Go's `time.ParseDuration`, in milliseconds: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` or `0`, with its
 * error messages (`time: invalid duration "x"`, `time: missing unit in duration "1"`,
 * `time: unknown unit "d" in duration "1d"`).
 */
export function parseGoDuration(text: string): { readonly ms: number } | { readonly error: string } {
  const quote = (s: string) => JSON.stringify(s);
  const invalid = { error: `time: invalid duration ${quote(text)}` };
  let rest = text;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    sign = rest.startsWith('-') ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === '0') return { ms: 0 };
  if (rest === '') return invalid;
  let total = 0;
  while (rest !== '') {
    const number = /^(\d*)(?:\.(\d*))?/.exec(rest)!;
    const [whole, integer, fraction] = number;
    if (integer === '' && (fraction === undefined || fraction === '')) return invalid;
    rest = rest.slice(whole.length);
    const unit = /^[^\d.]*/.exec(rest)![0];
    if (unit === '') return { error: `time: missing unit in duration ${quote(text)}` };
    const scale = GO_DURATION_UNITS_MS[unit];
    if (scale === undefined) return { error: `time: unknown unit ${quote(unit)} in duration ${quote(text)}` };
    rest = rest.slice(unit.length);
    total += Number(`${integer || '0'}.${fraction ?? ''}0`) * scale;
  }
  // Go refuses what overflows an int64 of nanoseconds (about 292 years).
  if (total * 1e6 > 2 ** 63 - 1) return invalid;
  return { ms: sign * total };
}

/**
 * The deadline of a request that is not long-running, as WithRequestDeadline computes it:
 * `--request-timeout`, or the client's `?timeout=` when positive and shorter.
 * Throws the 400 upstream answers for a `?timeout=` that is not a Go duration.
 */
export function requestTimeoutMs(info: RequestInfo, maximumMs: number): number {
  const value = info.query.get('timeout');
  if (value === null || value === '') return maximumMs;
  const parsed = parseGoDuration(value);
  if ('error' in parsed) throw errors.badRequest(`invalid timeout specified in the request URL - ${parsed.error}`);
  return parsed.ms > 0 && parsed.ms < maximumMs ? parsed.ms : maximumMs;
}

/** apierrors.NewTooManyRequests as maxinflight.go answers it, the limit reached named in a cause. */
export function tooManyRequests(limitFlag: string, limit: number): StatusError {
  return new StatusError({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'Too many requests, please try again later.',
    reason: 'TooManyRequests',
    details: {
      causes: [{ reason: 'TooManyRequests', message: `${limit} requests of this kind are in flight, the limit set by --${limitFlag}` }],
      retryAfterSeconds: RETRY_AFTER_SECONDS,
    },
    code: 429,
  });
}

/**
 * The 504 past the deadline, apierrors.NewTimeoutError(…, 0). Upstream, writes wait for storage in
 * the finisher (endpoints/handlers/finisher), which answers first with
 * `request did not complete within requested timeout - context deadline exceeded`; every other
 * request gets the timeout filter's `request did not complete within the allotted timeout`.
 */
export function requestTimedOut(info: RequestInfo): Status {
  const message = info.isResourceRequest && isMutating(info) ? 'request did not complete within requested timeout - context deadline exceeded' : 'request did not complete within the allotted timeout';
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `Timeout: ${message}`, reason: 'Timeout', details: {}, code: 504 };
}

/** What the handler writes a response with; after a timeout each of these does nothing. */
const WRITING_METHODS = ['writeHead', 'setHeader', 'setHeaders', 'appendHeader', 'removeHeader', 'write', 'end', 'flushHeaders', 'writeContinue', 'writeEarlyHints', 'destroy'] as const;

/** Makes every later write by the handler a no-op and pins the status code the logs and metrics read. */
function discardLaterWrites(res: ServerResponse, code: number): void {
  const target = res as unknown as Record<string, unknown>;
  for (const method of WRITING_METHODS) {
    if (typeof target[method] !== 'function') continue;
    // write() reports that nothing is buffered; the others return the response, as they do.
    target[method] = method === 'write' ? () => true : () => res;
  }
  Object.defineProperty(res, 'statusCode', { configurable: true, enumerable: true, get: () => code, set: () => undefined });
}

/**
 * Max in-flight limits and request timeouts for one server. `admit` and `startDeadline` are
 * called by the handler chain (handler.ts) for each request.
 */
export class FlowControl {
  private readOnlyInflight = 0;
  private mutatingInflight = 0;

  constructor(private readonly options: FlowControlOptions) {}

  /** Requests being served now, as counted against each limit. */
  get inflight(): { readonly readOnly: number; readonly mutating: number } {
    return { readOnly: this.readOnlyInflight, mutating: this.mutatingInflight };
  }

  /**
   * Counts an authenticated request against its limit; returns what to call once it is done
   * (undefined when nothing was counted: long-running requests). Throws the 429 StatusError past
   * the limit.
   */
  admit(info: RequestInfo, user: UserInfo): (() => void) | undefined {
    if (isLongRunning(info)) return undefined;
    const mutating = isMutating(info);
    const limit = mutating ? this.options.maxMutatingRequestsInflight : this.options.maxRequestsInflight;
    const current = mutating ? this.mutatingInflight : this.readOnlyInflight;
    const gaugeDone = this.options.onAdmitted?.(mutating);
    if (limit > 0 && current >= limit) {
      if (!user.groups.includes(PRIVILEGED_GROUP)) {
        gaugeDone?.();
        throw tooManyRequests(mutating ? 'max-mutating-requests-inflight' : 'max-requests-inflight', limit);
      }
      // Served without taking a slot, as upstream serves system:masters past the limit.
      return gaugeDone;
    }
    if (mutating) this.mutatingInflight++;
    else this.readOnlyInflight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (mutating) this.mutatingInflight--;
      else this.readOnlyInflight--;
      gaugeDone?.();
    };
  }

  /**
   * Arms the request's deadline (none for long-running requests), counted from `startedAt`
   * (process.hrtime.bigint() at arrival). Returns what to call once the response is done.
   * Throws the 400 StatusError for a `?timeout=` that is not a duration.
   */
  startDeadline(req: IncomingMessage, res: ServerResponse, info: RequestInfo, startedAt: bigint): (() => void) | undefined {
    if (isLongRunning(info)) return undefined;
    const timeoutMs = requestTimeoutMs(info, this.options.requestTimeoutMs);
    const elapsedMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
    const timer = setTimeout(() => timeOut(req, res, info), Math.max(0, timeoutMs - elapsedMs));
    return () => clearTimeout(timer);
  }
}

/** The deadline passed: 504 if nothing was written yet, else the stream is cut; the handler's later writes go nowhere. */
function timeOut(req: IncomingMessage, res: ServerResponse, info: RequestInfo): void {
  if (res.writableEnded || res.destroyed) return;
  const status = requestTimedOut(info);
  const stream = (res as unknown as { stream?: Http2Stream }).stream;
  if (res.headersSent) {
    // As Go's handler abort: HTTP/2 resets the stream with INTERNAL_ERROR, HTTP/1.1 loses the connection.
    if (stream) stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
    else res.destroy();
  } else {
    // Reads of resources set their Audit-Id only with their answer (handler.ts): take it from the request info.
    const auditId = res.getHeader('Audit-Id') ?? (info.auditID || undefined);
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    const body = `${JSON.stringify(status)}\n`;
    const headers: Record<string, string | number> = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-cache, private' };
    if (auditId !== undefined) headers['Audit-Id'] = String(auditId);
    // A body still arriving will not be read: an HTTP/1.1 connection cannot carry another request
    // after it; an HTTP/2 stream is reset with NO_ERROR once the answer is sent (RFC 9113 §8.1),
    // else it would stay open, holding a slot of the session, until the client ends it.
    if (!req.complete && req.httpVersionMajor === 1) headers.Connection = 'close';
    res.writeHead(504, headers);
    res.end(body);
    // (With NO_ERROR, node sends the RST_STREAM once the answer is flushed.)
    if (!req.complete && stream) stream.close(http2Constants.NGHTTP2_NO_ERROR);
  }
  discardLaterWrites(res, 504);
}
