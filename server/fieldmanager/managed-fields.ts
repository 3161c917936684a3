/**
 * metadata.managedFields on the wire and in memory, as k8s.io/apimachinery's
 * pkg/util/managedfields/internal/managedfields.go: each entry is keyed by a manager identifier
 * (the JSON of the entry without fields, time and, for an applier, apiVersion), so that one
 * manager's Apply entry, its Update entries in each apiVersion and on each subresource are
 * distinct owners.
 */
import { FieldSet, FieldsV1Error } from './field-set';
import { compareStrings, goJson } from './path-element';
import type { ManagedFieldsEntry, ManagedFieldsOperation } from './index';

/** The fields one manager owns, in the apiVersion it wrote them in (fieldpath.VersionedSet). */
export interface VersionedSet {
  readonly set: FieldSet;
  readonly apiVersion: string;
  /** An Apply entry (true) or an Update entry. */
  readonly applied: boolean;
}

/** Owners by manager identifier, with the time of each one's last change. */
export interface Managed {
  readonly fields: Map<string, VersionedSet>;
  readonly times: Map<string, string | undefined>;
}

export function emptyManaged(): Managed {
  return { fields: new Map(), times: new Map() };
}

/** The parts of an entry that identify its manager. */
export interface ManagerInfo {
  readonly manager: string;
  readonly operation: ManagedFieldsOperation;
  readonly apiVersion?: string;
  readonly subresource?: string;
}

// Writes look up the same few managers over and over: identifiers and their parts are memoized.
const MEMO_LIMIT = 1000;
const identifiers = new Map<string, string>();
const parsedIdentifiers = new Map<string, ManagerInfo>();

function remember<V>(memo: Map<string, V>, key: string, value: V): V {
  if (memo.size >= MEMO_LIMIT) memo.clear();
  memo.set(key, value);
  return value;
}

/** BuildManagerIdentifier: the entry's JSON without fieldsType, fieldsV1, time, and apiVersion for an applier. */
export function managerIdentifier(info: ManagerInfo): string {
  const key = `${info.operation}\u0000${info.manager}\u0000${info.apiVersion ?? ''}\u0000${info.subresource ?? ''}`;
  return identifiers.get(key) ?? remember(identifiers, key, buildIdentifier(info));
}

function buildIdentifier(info: ManagerInfo): string {
  // omitempty, as Go marshals metav1.ManagedFieldsEntry.
  const parts = info.manager ? [`"manager":${goJson(info.manager)}`] : [];
  parts.push(`"operation":${goJson(info.operation)}`);
  if (info.operation !== 'Apply' && info.apiVersion) parts.push(`"apiVersion":${goJson(info.apiVersion)}`);
  if (info.subresource) parts.push(`"subresource":${goJson(info.subresource)}`);
  return `{${parts.join(',')}}`;
}

/** The parts of an identifier; a name that is not an identifier is taken as a bare manager name. */
export function parseManagerIdentifier(identifier: string): ManagerInfo {
  return parsedIdentifiers.get(identifier) ?? remember(parsedIdentifiers, identifier, parseIdentifier(identifier));
}

function parseIdentifier(identifier: string): ManagerInfo {
  try {
    const parsed = JSON.parse(identifier) as Partial<ManagerInfo>;
    if (parsed && typeof parsed === 'object' && typeof parsed.operation === 'string') {
      return { manager: parsed.manager ?? '', operation: parsed.operation ?? 'Update', apiVersion: parsed.apiVersion, subresource: parsed.subresource };
    }
  } catch {
    // not JSON: a bare name
  }
  return { manager: identifier, operation: 'Update' };
}

/** A managedFields list that cannot be read, worded as DecodeManagedFields. */
export class ManagedFieldsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManagedFieldsError';
  }
}

/** DecodeManagedFields: the entries of metadata.managedFields (absent = none). Throws ManagedFieldsError. */
export function decodeManagedFields(encoded: unknown): Managed {
  const managed = emptyManaged();
  if (encoded === undefined || encoded === null) return managed;
  if (!Array.isArray(encoded)) throw new ManagedFieldsError('metadata.managedFields must be a list');
  encoded.forEach((raw, i) => {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ManagedFieldsError(`managed fields entry ${i} must be an object`);
    const entry = raw as Partial<ManagedFieldsEntry> & Record<string, unknown>;
    if (entry.operation !== 'Apply' && entry.operation !== 'Update') throw new ManagedFieldsError('operation must be `Apply` or `Update`');
    if (typeof entry.apiVersion !== 'string' || entry.apiVersion.length < 1) throw new ManagedFieldsError('apiVersion must not be empty');
    const fieldsType = entry.fieldsType as unknown;
    if (fieldsType === undefined || fieldsType === '') throw new ManagedFieldsError(`missing fieldsType in managed fields entry ${i}`);
    if (fieldsType !== 'FieldsV1') throw new ManagedFieldsError(`invalid fieldsType ${JSON.stringify(fieldsType)} in managed fields entry ${i}`);
    const identifier = managerIdentifier({
      manager: typeof entry.manager === 'string' ? entry.manager : '',
      operation: entry.operation,
      apiVersion: entry.apiVersion,
      subresource: typeof entry.subresource === 'string' ? entry.subresource : undefined,
    });
    let set: FieldSet;
    try {
      set = FieldSet.fromFieldsV1(entry.fieldsV1 ?? {});
    } catch (e) {
      if (e instanceof FieldsV1Error) throw new ManagedFieldsError(`error decoding versioned set from managed fields entry ${i} (manager ${JSON.stringify(entry.manager)}): error decoding set: ${e.message}`);
      throw e;
    }
    managed.fields.set(identifier, { set, apiVersion: entry.apiVersion, applied: entry.operation === 'Apply' });
    managed.times.set(identifier, normalizeTime(entry.time));
  });
  return managed;
}

const RFC3339_SECONDS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

function normalizeTime(time: unknown): string | undefined {
  if (typeof time !== 'string' || time === '') return undefined;
  if (RFC3339_SECONDS.test(time)) return time;
  const ms = Date.parse(time);
  return Number.isNaN(ms) ? time : formatTime(new Date(ms));
}

let lastSecond = NaN;
let lastFormatted = '';

/** metav1.Time as JSON: RFC 3339, UTC, whole seconds. */
export function formatTime(date: Date): string {
  const second = Math.floor(date.getTime() / 1000);
  if (second !== lastSecond) {
    lastSecond = second;
    lastFormatted = `${date.toISOString().slice(0, 19)}Z`;
  }
  return lastFormatted;
}

function timeSeconds(time: string | undefined): number {
  if (!time) return 0;
  const ms = Date.parse(time);
  return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
}

/** encodeManagedFields + sortEncodedManagedFields: Apply before Update, then oldest first, manager, apiVersion, subresource. */
export function encodeManagedFields(managed: Managed): ManagedFieldsEntry[] {
  const entries: ManagedFieldsEntry[] = [];
  for (const [identifier, versioned] of managed.fields) {
    const info = parseManagerIdentifier(identifier);
    const time = managed.times.get(identifier);
    // The key order of metav1.ManagedFieldsEntry's JSON.
    const entry: ManagedFieldsEntry = {
      manager: info.manager,
      operation: versioned.applied ? 'Apply' : info.operation,
      apiVersion: versioned.apiVersion,
      ...(time ? { time } : {}),
      fieldsType: 'FieldsV1',
      fieldsV1: versioned.set.toFieldsV1(),
      ...(info.subresource ? { subresource: info.subresource } : {}),
    };
    entries.push(entry);
  }
  return entries.sort(
    (p, q) =>
      compareStrings(p.operation, q.operation) ||
      timeSeconds(p.time) - timeSeconds(q.time) ||
      compareStrings(p.manager, q.manager) ||
      compareStrings(p.apiVersion, q.apiVersion) ||
      compareStrings(p.subresource ?? '', q.subresource ?? ''),
  );
}
