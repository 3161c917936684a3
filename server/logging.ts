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

/**
 * One JSON line per event on stdout (or on `destination`), with RFC 3339 timestamps, as log
 * collectors expect from a container.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): pino.Logger {
  return pino(
    {
      level,
      base: { component: 'extension-apiserver' },
      timestamp: isoTimeOncePerMillisecond(),
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
