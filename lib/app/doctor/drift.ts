import { createHash } from 'node:crypto';
import type { KubeObject } from './installation';
import type { Unstructured } from './kube';

/** Fields the manifest sets that the live object holds differently: `spec.replicas: 2 in dist, 5 in the cluster`. */
export interface FieldDifference {
  readonly path: string;
  readonly expected: unknown;
  readonly actual: unknown;
}

/**
 * Compares only what the manifest sets: the server adds defaults, status, managedFields and
 * the like, which are not drift. A zero value the manifest sets (0, false, '', [], {}) matches an
 * absent field, because the API server drops those (omitempty). A Secret's stringData is
 * compared as the data it becomes.
 */
export function driftOf(expected: KubeObject, actual: KubeObject): FieldDifference[] {
  const differences: FieldDifference[] = [];
  const want: Record<string, Unstructured> = { ...expected };
  if (expected.kind === 'Secret' && expected.stringData) {
    const data: Record<string, string> = { ...(expected.data ?? {}) };
    for (const [key, value] of Object.entries(expected.stringData as Record<string, string>)) data[key] = Buffer.from(value, 'utf8').toString('base64');
    delete want.stringData;
    want.data = data;
  }
  const { metadata, ...rest } = want;
  compare({ labels: metadata.labels, annotations: metadata.annotations }, actual.metadata, 'metadata', differences);
  const { metadata: _ignored, status: _status, ...live } = actual as Record<string, Unstructured>;
  compare(rest, live, '', differences);
  if (expected.kind !== 'Secret') return differences;
  // Reports get pasted into tickets: a Secret's values (a private key) are never shown, only that they differ.
  return differences.map((d) => (d.path.startsWith('data') ? { path: d.path, expected: SECRET_VALUE, actual: d.actual === undefined ? undefined : SECRET_VALUE } : d));
}

/** Stands for a Secret's value in a report. */
const SECRET_VALUE = '(secret value)';

function isZero(value: unknown): boolean {
  if (value === undefined || value === null || value === 0 || value === false || value === '') return true;
  if (Array.isArray(value)) return value.length === 0;
  return typeof value === 'object' && Object.values(value as object).every(isZero);
}

function join(prefix: string, key: string | number): string {
  if (typeof key === 'number') return `${prefix}[${key}]`;
  return prefix === '' ? key : `${prefix}.${key}`;
}

function compare(expected: unknown, actual: unknown, at: string, out: FieldDifference[]): void {
  if (isZero(expected) && isZero(actual)) return;
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) {
      out.push({ path: at, expected, actual });
      return;
    }
    expected.forEach((item, index) => compare(item, actual[index], join(at, index), out));
    return;
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) {
      out.push({ path: at, expected, actual });
      return;
    }
    for (const [key, value] of Object.entries(expected)) compare(value, (actual as Record<string, unknown>)[key], join(at, key), out);
    return;
  }
  // A quantity or port may come back as the other type ("8080" and 8080, "1" and 1).
  if (expected !== actual && String(expected) !== String(actual)) out.push({ path: at, expected, actual });
}

/** `spec.replicas: 2 in dist, 5 in the cluster` (values cut short). */
export function describeDifference(difference: FieldDifference): string {
  const show = (value: unknown): string => {
    if (value === undefined) return 'absent';
    if (value === SECRET_VALUE) return value;
    const text = JSON.stringify(value);
    // A long value (a caBundle) is told apart by its digest: its start is the same PEM header for every certificate.
    return text.length > 60 ? `sha256:${createHash('sha256').update(String(value)).digest('hex').slice(0, 16)}… (${text.length} characters)` : text;
  };
  return `${difference.path}: ${show(difference.expected)} in dist, ${show(difference.actual)} in the cluster`;
}
