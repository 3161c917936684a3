/**
 * The 409 of a conflicting apply, worded as k8s.io/apimachinery's managedfields/internal/conflict.go
 * (NewConflictError, getConflictMessage, printManager) and errors.NewApplyConflict.
 */
import { StatusError } from '../status';
import type { FieldConflict } from './index';
import { parseManagerIdentifier } from './managed-fields';
import { compareStrings, pathToString } from './path-element';
import type { Conflict } from './updater';

/** printManager: `"kubectl"`, `"m" with subresource "status"`, `"m" using wardle.example.com/v1alpha1`. */
export function printManager(identifier: string): string {
  const info = parseManagerIdentifier(identifier);
  let text = JSON.stringify(info.manager);
  if (info.subresource) text = `${text} with subresource ${JSON.stringify(info.subresource)}`;
  if (info.operation === 'Update') text = `${text} using ${info.apiVersion ?? ''}`;
  return text;
}

export function toFieldConflicts(conflicts: readonly Conflict[]): FieldConflict[] {
  return conflicts.map((c) => {
    const info = parseManagerIdentifier(c.identifier);
    return {
      manager: info.manager,
      field: pathToString(c.path),
      operation: info.operation,
      ...(info.operation === 'Update' && info.apiVersion ? { apiVersion: info.apiVersion } : {}),
      ...(info.subresource ? { subresource: info.subresource } : {}),
      printedManager: printManager(c.identifier),
    };
  });
}

/** getConflictMessage. */
export function conflictMessage(conflicts: readonly FieldConflict[]): string {
  if (conflicts.length === 1) return `Apply failed with 1 conflict: conflict with ${conflicts[0].printedManager}: ${conflicts[0].field}`;
  const byManager = new Map<string, string[]>();
  for (const c of conflicts) {
    const key = c.printedManager;
    byManager.set(key, [...(byManager.get(key) ?? []), c.field]);
  }
  const lines: string[] = [];
  // Go sorts the managers' identifiers; their printed forms sort the same way.
  for (const manager of [...byManager.keys()].sort(compareStrings)) {
    lines.push(`conflicts with ${manager}:`);
    for (const field of byManager.get(manager) as string[]) lines.push(`- ${field}`);
  }
  return `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`;
}

export function conflictStatus(conflicts: readonly FieldConflict[]): StatusError {
  return new StatusError({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: conflictMessage(conflicts),
    reason: 'Conflict',
    details: { causes: conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with ${c.printedManager}`, field: c.field })) },
    code: 409,
  });
}
