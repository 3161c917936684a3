import pino from 'pino';

/** The levels `--log-level` accepts, least to most verbose. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Header and field names that must never reach a log line. pino removes them wherever a logged
 * object carries them, so a careless `logger.info({ headers })` cannot leak a token.
 */
const REDACTED_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'headers.cookie',
  'token',
  'spec.token',
  'key',
  'cert',
  'tlsKey',
];

/**
 * pino's `isoTime` (`,"time":"<RFC 3339 in UTC>"`), formatted once per millisecond: under load
 * many lines share one, and formatting a date is a visible part of each request's log line.
 */
function isoTimeOncePerMillisecond(): () => string {
  let lastMs = NaN;
  let last = '';
  return () => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      last = `,"time":"${new Date(now).toISOString()}"`;
    }
    return last;
  };
}

const BINDINGS = { component: 'extension-apiserver' };

/** What createLogger's loggers write their request lines with: the stream and the timestamp pino uses. */
const requestLineSinks = new WeakMap<pino.Logger, { readonly destination: pino.DestinationStream; readonly time: () => string }>();

/** Request lines gather on stdout up to this many bytes (~10 lines) before one write. */
export const REQUEST_LINES_BUFFER_BYTES = 4096;
/** …and wait at most this long for it when requests are few. klog, the Go servers' logger, flushes every 5 s. */
export const REQUEST_LINES_FLUSH_MS = 1000;

/**
 * stdout as createLogger writes it: request lines buffered (REQUEST_LINES_BUFFER_BYTES,
 * REQUEST_LINES_FLUSH_MS), every other line written at once, with what was buffered before it.
 * Written synchronously, as Node writes stdout to a pipe and klog to stderr: one write per
 * request line, through libuv's thread pool and back, was a tenth of the CPU of a GET.
 */
function stdoutStreams(): { readonly requestLines: pino.DestinationStream; readonly otherLines: pino.DestinationStream } {
  const stdout = pino.destination({ dest: 1, sync: true, minLength: REQUEST_LINES_BUFFER_BYTES, periodicFlush: REQUEST_LINES_FLUSH_MS });
  // pino flushes its own streams at exit only when they write asynchronously.
  process.on('exit', () => stdout.flushSync());
  const otherLines = {
    write(line: string): boolean {
      stdout.write(line);
      stdout.flushSync();
      return true;
    },
    flush(callback?: (error?: Error) => void): void {
      stdout.flushSync();
      callback?.();
    },
    flushSync: () => stdout.flushSync(),
  };
  return { requestLines: stdout, otherLines };
}

/**
 * One JSON line per event on stdout (or on `destination`), with RFC 3339 timestamps, as log
 * collectors expect from a container.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): pino.Logger {
  const time = isoTimeOncePerMillisecond();
  const streams = destination ? { requestLines: destination, otherLines: destination } : stdoutStreams();
  const stream = streams.otherLines;
  const logger = pino(
    {
      level,
      base: BINDINGS,
      timestamp: time,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    stream,
  );
  // A stream that wants pino's metadata of each line (pino.multistream) gets every line from pino.
  if ((stream as unknown as Record<symbol, unknown>)[pino.symbols.needsMetadataGsym] !== true) requestLineSinks.set(logger, { destination: streams.requestLines, time });
  return logger;
}

/** The fields of the per-request log line, in the order they print; undefined ones are left out (as pino does). */
export interface RequestLogLine {
  readonly auditID: string;
  readonly user: string | undefined;
  readonly verb: string | undefined;
  readonly group?: string;
  readonly version?: string;
  readonly resource?: string;
  readonly subresource?: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly path?: string;
  readonly code: number;
  readonly latencyMs: number;
  readonly aborted?: boolean;
  readonly userAgent: string | undefined;
  readonly protocol: string;
  readonly remote: string | undefined;
}

/**
 * pino's string encoding (tools.js `asString`): short strings with no control character only get
 * `"` and `\` escaped; others go through JSON.stringify.
 */
function asString(text: string): string {
  if (text.length > 100) return JSON.stringify(text);
  let result = '';
  let last = 0;
  let found = false;
  let point = 255;
  for (let i = 0; i < text.length && point >= 32; i++) {
    point = text.charCodeAt(i);
    if (point === 34 || point === 92) {
      result += `${text.slice(last, i)}\\`;
      last = i;
      found = true;
    }
  }
  result = found ? result + text.slice(last) : text;
  return point < 32 ? JSON.stringify(text) : `"${result}"`;
}

/** Nothing pino's asString would escape or re-encode: no quote, backslash, control character (Cc), or lone surrogate (Cs). */
const PLAIN = /^[^"\\\p{Cc}\p{Cs}]*$/u;

const field = (name: string, value: string | undefined): string => {
  if (value === undefined) return '';
  // Most values (ids, names, user agents) need no escaping: one native test instead of pino's loop over the characters.
  return value.length <= 100 && PLAIN.test(value) ? `,"${name}":"${value}"` : `,"${name}":${asString(value)}`;
};

/**
 * Writes the line `logger.info(line, 'request')` would write, at info level. For a logger of
 * createLogger the text is built here, byte for byte what pino builds (the test compares them),
 * and written to its stream: pino's generic path (per key: serializer and stringifier lookups,
 * redaction, the key's own escaping) was a tenth of the CPU of a GET. Any other logger gets the
 * line through pino.
 */
export function requestLogWriter(logger: pino.Logger): (line: RequestLogLine) => void {
  const sink = requestLineSinks.get(logger);
  if (!sink) return (line) => logger.info(line, 'request');
  const level = `{"level":"info"`;
  const bindings = `,"component":${asString(BINDINGS.component)}`;
  return (line) => {
    if (!logger.isLevelEnabled('info')) return;
    const text =
      level +
      sink.time() +
      bindings +
      field('auditID', line.auditID) +
      field('user', line.user) +
      field('verb', line.verb) +
      field('group', line.group) +
      field('version', line.version) +
      field('resource', line.resource) +
      field('subresource', line.subresource) +
      field('namespace', line.namespace) +
      field('name', line.name) +
      field('path', line.path) +
      `,"code":${Number.isFinite(line.code) ? line.code : 'null'},"latencyMs":${Number.isFinite(line.latencyMs) ? line.latencyMs : 'null'}` +
      (line.aborted === undefined ? '' : `,"aborted":${line.aborted}`) +
      field('userAgent', line.userAgent) +
      field('protocol', line.protocol) +
      field('remote', line.remote) +
      ',"msg":"request"}\n';
    sink.destination.write(text);
  };
}
