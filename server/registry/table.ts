import type { KindVersion, PrinterColumn } from '../../apis/types';
import { errors } from '../status';

/**
 * Server-side printing: `meta.k8s.io` Table (what `kubectl get` asks for) and
 * PartialObjectMetadata[List] (what the garbage collector and the namespace controller ask
 * for), built as kube-apiserver builds them for CRDs (apiextensions-apiserver tableconvertor).
 */

type Json = Record<string, unknown>;

export type IncludeObject = 'None' | 'Metadata' | 'Object';

export interface TableColumnDefinition {
  readonly name: string;
  readonly type: string;
  readonly format: string;
  readonly description: string;
  readonly priority: number;
}

const NAME_DESCRIPTION =
  'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names';
const AGE_DESCRIPTION =
  'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata';

/** Parses `includeObject` (TableOptions); 400 for anything but None, Metadata, Object. */
export function parseIncludeObject(value: string | null): IncludeObject {
  if (value === null || value === '') return 'Metadata';
  if (value === 'None' || value === 'Metadata' || value === 'Object') return value;
  throw errors.badRequest(`includeObject: Unsupported value: "${value}": supported values: "None", "Metadata", "Object"`);
}

/** Name, the version's printer columns, then Age. */
export function columnDefinitions(version: KindVersion): TableColumnDefinition[] {
  return [
    { name: 'Name', type: 'string', format: 'name', description: NAME_DESCRIPTION, priority: 0 },
    ...(version.printerColumns ?? []).map((c) => ({
      name: c.name,
      type: c.type,
      format: c.format ?? '',
      description: c.description ?? '',
      priority: c.priority ?? 0,
    })),
    { name: 'Age', type: 'date', format: '', description: AGE_DESCRIPTION, priority: 0 },
  ];
}

/**
 * Evaluates a simple JSONPath (`.spec.reference`, `.status.items[0].name`, `.metadata.labels['a.b/c']`),
 * the subset CRD printer columns allow.
 */
function evaluateJsonPath(object: unknown, path: string): unknown {
  const tokens: (string | number)[] = [];
  const re = /\.([^.[\]]+)|\[(\d+)\]|\[['"]([^'"]+)['"]\]/gy;
  const source = path.replace(/^\{|\}$/g, '');
  let match: RegExpExecArray | null;
  re.lastIndex = 0;
  while (re.lastIndex < source.length && (match = re.exec(source)) !== null) {
    tokens.push(match[1] ?? (match[2] !== undefined ? Number(match[2]) : match[3]));
  }
  let current: unknown = object;
  for (const token of tokens) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[token];
  }
  return current;
}

/** How long ago, as k8s.io/apimachinery/pkg/util/duration.HumanDuration prints it (`5s`, `3m20s`, `2d`). */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const days = Math.floor(hours / 24) % 365;
    return days === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${days}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

/** A cell as tableconvertor's cellForJSONValue renders it; `null` when absent or of the wrong type. */
function cell(column: PrinterColumn, object: unknown, nowMs: number): unknown {
  const value = evaluateJsonPath(object, column.jsonPath);
  if (value === undefined || value === null) return null;
  switch (column.type) {
    case 'string':
      return typeof value === 'string' ? value : JSON.stringify(value);
    case 'integer':
      return typeof value === 'number' ? Math.trunc(value) : null;
    case 'number':
      return typeof value === 'number' ? value : null;
    case 'boolean':
      return typeof value === 'boolean' ? value : null;
    case 'date': {
      const time = typeof value === 'string' ? Date.parse(value) : NaN;
      return Number.isNaN(time) ? null : humanDuration(nowMs - time);
    }
  }
}

/** `{kind: PartialObjectMetadata, apiVersion: meta.k8s.io/<v>, metadata}`. */
export function partialObjectMetadata(object: Readonly<Json>, metaVersion: string): Json {
  return { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${metaVersion}`, metadata: object.metadata ?? {} };
}

export interface TableOptions {
  readonly version: KindVersion;
  /** `meta.k8s.io` version of the Table (`v1` or `v1beta1`). */
  readonly metaVersion: string;
  readonly includeObject: IncludeObject;
  /** Leave out columnDefinitions (every watch event after the first). @default false */
  readonly noHeaders?: boolean;
}

/** One row per object (already in the requested version). */
export function toTable(objects: readonly Readonly<Json>[], listMeta: Json, options: TableOptions): Json {
  const nowMs = Date.now();
  const columns = options.version.printerColumns ?? [];
  const rows = objects.map((object) => {
    const metadata = (object.metadata ?? {}) as Json;
    const created = typeof metadata.creationTimestamp === 'string' ? Date.parse(metadata.creationTimestamp) : NaN;
    const cells = [metadata.name ?? '', ...columns.map((c) => cell(c, object, nowMs)), Number.isNaN(created) ? '<unknown>' : humanDuration(nowMs - created)];
    const row: Json = { cells };
    if (options.includeObject === 'Metadata') row.object = partialObjectMetadata(object, options.metaVersion);
    else if (options.includeObject === 'Object') row.object = object;
    return row;
  });
  return {
    kind: 'Table',
    apiVersion: `meta.k8s.io/${options.metaVersion}`,
    metadata: listMeta,
    ...(options.noHeaders ? {} : { columnDefinitions: columnDefinitions(options.version) }),
    rows,
  };
}

/** One object as a Table whose resourceVersion is the object's (how a GET and a watch event answer). */
export function objectTable(object: Readonly<Json>, options: TableOptions): Json {
  const metadata = (object.metadata ?? {}) as Json;
  return toTable([object], { resourceVersion: typeof metadata.resourceVersion === 'string' ? metadata.resourceVersion : '' }, options);
}
