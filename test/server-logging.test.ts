import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { buildSync } from 'esbuild';
import pino from 'pino';
import { REQUEST_LINES_BUFFER_BYTES, REQUEST_LINES_FLUSH_MS, RequestLogLine, createLogger, requestLogWriter } from '../server/logging';

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

describe('stdout', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'logging-stdout-'));
    buildSync({ entryPoints: [path.join(__dirname, '..', 'server', 'logging.ts')], bundle: true, outfile: path.join(dir, 'logging.js'), platform: 'node', format: 'cjs', logLevel: 'silent' });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs `body` in a process whose stdout is a file; returns what it wrote there and its report on stderr (JSON). */
  function runWithStdoutInFile(body: string): { lines: Record<string, unknown>[]; report: Record<string, number> } {
    const stdoutPath = path.join(dir, `stdout-${Date.now()}`);
    const stdout = openSync(stdoutPath, 'w');
    const script = `
      const { fstatSync } = require('node:fs');
      const { createLogger, requestLogWriter } = require(${JSON.stringify(path.join(dir, 'logging.js'))});
      const logger = createLogger('info');
      const request = requestLogWriter(logger);
      const line = (name) => ({ ...${JSON.stringify(base)}, name });
      const written = () => fstatSync(1).size;
      const report = {};
      ${body}`;
    const child = spawnSync(process.execPath, ['-e', script], { stdio: ['ignore', stdout, 'pipe'], encoding: 'utf8' });
    closeSync(stdout);
    if (child.status !== 0) throw new Error(`the child failed (${String(child.status)}): ${child.stderr}`);
    const lines = readFileSync(stdoutPath, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    return { lines, report: JSON.parse(child.stderr) as Record<string, number> };
  }

  test('request lines wait to be written together; any other line is written at once, after them', () => {
    // GIVEN the logger of the server, on stdout
    const { lines, report } = runWithStdoutInFile(`
      // WHEN two request lines are logged, then a warning, then one more request line
      request(line('a')); request(line('b'));
      report.afterRequestLines = written();
      logger.warn('a warning');
      report.afterWarning = written();
      request(line('c'));
      report.afterLastRequestLine = written();
      // ...and the process waits past the flush period
      setTimeout(() => { report.afterWaiting = written(); process.stderr.write(JSON.stringify(report)); }, ${REQUEST_LINES_FLUSH_MS} + 500);`);
    // THEN the request lines waited, the warning took them out with it, the last one went out within the period
    expect(report.afterRequestLines).toBe(0);
    expect(report.afterWarning).toBeGreaterThan(0);
    expect(report.afterLastRequestLine).toBe(report.afterWarning);
    expect(report.afterWaiting).toBeGreaterThan(report.afterWarning);
    expect(lines.map((l) => l.name ?? l.msg)).toEqual(['a', 'b', 'a warning', 'c']);
  });

  test('request lines go out without waiting once they fill the buffer, and all of them at exit', () => {
    // GIVEN / WHEN more request lines than the buffer holds, then exit at once
    const count = Math.ceil((2 * REQUEST_LINES_BUFFER_BYTES) / 300);
    const { lines, report } = runWithStdoutInFile(`
      for (let i = 0; i < ${count}; i++) request(line('r' + i));
      report.beforeExit = written();
      process.stderr.write(JSON.stringify(report));`);
    // THEN some were written before the exit, and every one is there, in order
    expect(report.beforeExit).toBeGreaterThanOrEqual(REQUEST_LINES_BUFFER_BYTES);
    expect(lines.map((l) => l.name)).toEqual(Array.from({ length: count }, (_, i) => `r${i}`));
  });
});
