import { Writable } from 'node:stream';
import pino from 'pino';
import { RequestLogLine, createLogger, requestLogWriter } from '../server/logging';

/** A destination that keeps each write as it came. */
function capture(): { stream: Writable; writes: string[] } {
  const writes: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      writes.push(chunk.toString());
      callback();
    },
  });
  return { stream, writes };
}

const withoutTime = (line: string): string => line.replace(/,"time":"[^"]*"/, ',"time":"T"');

const base: RequestLogLine = {
  auditID: 'a0b1c2',
  user: 'system:serviceaccount:wardle:default',
  verb: 'get',
  group: 'wardle.example.com',
  version: 'v1alpha1',
  resource: 'flunders',
  namespace: 'ns',
  name: 'f1',
  code: 200,
  latencyMs: 1.234,
  userAgent: 'kubectl/v1.28.0 (linux/amd64) kubernetes/abcdef',
  protocol: 'HTTP/1.1',
  remote: '127.0.0.1',
};

/** The fields in the order the writer prints them (pino prints an object's keys in their own order). */
const ORDER = ['auditID', 'user', 'verb', 'group', 'version', 'resource', 'subresource', 'namespace', 'name', 'path', 'code', 'latencyMs', 'aborted', 'userAgent', 'protocol', 'remote'] as const;
const inOrder = (line: RequestLogLine): RequestLogLine => Object.fromEntries(ORDER.filter((k) => k in line).map((k) => [k, line[k]])) as unknown as RequestLogLine;

const lines: [string, RequestLogLine][] = [
  ['a resource request', base],
  ['a status subresource, aborted', { ...base, subresource: 'status', aborted: true, code: 500 }],
  ['a non-resource request of nobody yet', { auditID: 'x', user: undefined, verb: 'GET', path: '/healthz', code: 401, latencyMs: 0, userAgent: undefined, protocol: 'HTTP/2.0', remote: undefined }],
  ['quotes and backslashes', { ...base, name: 'a"b\\c', userAgent: '"quoted" \\ agent' }],
  ['control characters', { ...base, userAgent: 'tab\there\nnewline', path: undefined }],
  ['a string over 100 characters', { ...base, userAgent: `${'x'.repeat(120)}"\u2028` }],
  ['non-ASCII and a lone surrogate', { ...base, user: 'jürgen \u{1F600}', name: '\ud800' }],
  ['an empty group', { ...base, group: '', namespace: undefined }],
];

describe('request log line', () => {
  test.each(lines)('is what pino writes for the same fields: %s', (_name, line) => {
    // GIVEN the server's logger on a captured destination
    const { stream, writes } = capture();
    const logger = createLogger('info', stream);
    // WHEN the line is written by the request log writer and by pino
    requestLogWriter(logger)(line);
    logger.info(inOrder(line), 'request');
    // THEN both wrote the same text (apart from the clock)
    expect(writes).toHaveLength(2);
    expect(withoutTime(writes[0])).toBe(withoutTime(writes[1]));
    expect(JSON.parse(writes[0])).toMatchObject({ level: 'info', component: 'extension-apiserver', msg: 'request', auditID: line.auditID, code: line.code });
  });

  test('writes nothing when info is not logged', () => {
    // GIVEN a logger at warn level
    const { stream, writes } = capture();
    const logger = createLogger('warn', stream);
    // WHEN a request line is written
    requestLogWriter(logger)(base);
    // THEN nothing reached the destination
    expect(writes).toEqual([]);
  });

  test('goes through pino for a logger createLogger did not build', () => {
    // GIVEN a plain pino logger (default formatting: numeric level, epoch time)
    const { stream, writes } = capture();
    const logger = pino({ level: 'info' }, stream);
    // WHEN a request line is written
    requestLogWriter(logger)(base);
    // THEN pino formatted it
    expect(writes).toHaveLength(1);
    expect(JSON.parse(writes[0])).toMatchObject({ level: 30, msg: 'request', name: 'f1', code: 200 });
  });
});
