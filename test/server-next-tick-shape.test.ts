/**
 * pinNextTickShape against the V8 behaviour it works around, read off V8's own feedback for
 * nextTick's tick-object literal (`%DebugPrint` of the function lists each slot's state).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildSync } from 'esbuild';

let dir: string;
let modulePath: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'next-tick-shape-'));
  modulePath = path.join(dir, 'next-tick-shape.js');
  buildSync({ entryPoints: [path.join(__dirname, '..', 'server', 'next-tick-shape.ts')], outfile: modulePath, platform: 'node', format: 'cjs', logLevel: 'silent' });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Runs ticks, then idles through five full GCs with no tick object alive (as a server between
 * requests), runs one more tick and prints V8's feedback for nextTick. Returns the states of its
 * DefineKeyedOwnPropertyInLiteral slots (the literal's four properties) and what the pin returned.
 */
function tickLiteralFeedbackAfterIdle(pin: boolean): { states: string[]; pinned: string | undefined } {
  const script = `
    const { pinNextTickShape } = require(${JSON.stringify(modulePath)});
    ${pin ? "process.stderr.write('pinned ' + pinNextTickShape() + '\\n');" : ''}
    let n = 0;
    const step = () => (++n < 1000 ? process.nextTick(step) : setImmediate(idle));
    process.nextTick(step);
    function idle() {
      for (let i = 0; i < 5; i++) gc();
      process.nextTick(() => setImmediate(() => %DebugPrint(process.nextTick)));
    }`;
  // Nothing else on stdout: once console.log has made the pipe non-blocking, V8's print can be cut short.
  const child = spawnSync(process.execPath, ['--allow-natives-syntax', '--expose-gc', '-e', script], { encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`the child failed (${String(child.status)}): ${child.stderr}`);
  return {
    states: [...child.stdout.matchAll(/DefineKeyedOwnPropertyInLiteral (\w+)/g)].map((m) => m[1]),
    pinned: /^pinned (\w+)$/m.exec(child.stderr)?.[1],
  };
}

test('without the pin, an idle spell leaves nextTick on the slow path (the V8 behaviour worked around)', () => {
  // GIVEN no pinned tick object WHEN the process idles through full GCs and ticks again
  const { states } = tickLiteralFeedbackAfterIdle(false);
  // THEN the literal's property caches went megamorphic (if this fails, Node no longer does it and the pin can go)
  expect(states).toHaveLength(4);
  expect(states).toContain('MEGAMORPHIC');
});

test('with the pin, the same idle spell leaves every property cache of the tick literal monomorphic', () => {
  // GIVEN the pin taken at start
  const { states, pinned } = tickLiteralFeedbackAfterIdle(true);
  // THEN it caught a tick object, and nextTick still adds each property on the fast path
  expect(pinned).toBe('true');
  expect(states).toEqual(['MONOMORPHIC', 'MONOMORPHIC', 'MONOMORPHIC', 'MONOMORPHIC']);
});
