import type { CheckResult, CheckStatus } from './checks';

const COLOURS: Record<CheckStatus, string> = { PASS: '\u001b[32m', WARN: '\u001b[33m', FAIL: '\u001b[31m', SKIP: '\u001b[2m' };
const RESET = '\u001b[0m';

export interface Summary {
  readonly pass: number;
  readonly warn: number;
  readonly fail: number;
  readonly skip: number;
}

export function summarize(results: readonly CheckResult[]): Summary {
  const count = (status: CheckStatus): number => results.filter((r) => r.status === status).length;
  return { pass: count('PASS'), warn: count('WARN'), fail: count('FAIL'), skip: count('SKIP') };
}

/** The report for a terminal or a log: one line per check, its fix and evidence indented below. Colour only when asked (a TTY). */
export function formatTable(results: readonly CheckResult[], colour: boolean): string {
  const width = Math.min(Math.max(...results.map((r) => r.check.length), 5), 60);
  const lines: string[] = [];
  for (const result of results) {
    const status = colour ? `${COLOURS[result.status]}${result.status}${RESET}` : result.status;
    lines.push(`${status}  ${result.check.padEnd(width)}  ${result.message}`);
    const indent = ' '.repeat(6 + width + 2);
    if (result.fix) lines.push(`${indent}fix: ${result.fix}`);
    for (const detail of result.details ?? []) lines.push(`${indent}  ${detail}`);
  }
  const summary = summarize(results);
  lines.push('', `${summary.fail} failed, ${summary.warn} warned, ${summary.pass} passed${summary.skip > 0 ? `, ${summary.skip} skipped` : ''}`);
  return lines.join('\n');
}

/** `-o json`: the checks as they are, and the counts; `ok` is what the exit code says. */
export function formatJson(results: readonly CheckResult[]): string {
  const summary = summarize(results);
  return JSON.stringify({ ok: summary.fail === 0, summary, checks: results }, null, 2);
}
