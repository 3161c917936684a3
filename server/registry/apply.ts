import YAML from 'yaml';
import { ApplyConflictError, FieldConflict, FieldManager } from '../fieldmanager';
import { StatusError, errors } from '../status';
import { KubeObject, isObject } from './rules';

/**
 * Server-side apply at the REST layer, as k8s.io/apiserver's patch handler and the managedfields
 * wrappers around structured-merge-diff do it (server/fieldmanager/ is the merge itself):
 * decoding an `application/apply-patch+yaml` body (go-yaml v2's YAML 1.1, duplicate keys per
 * fieldValidation), the applied object's type check (versionCheckManager), the field manager's
 * name from the request (managerOrUserAgent), and the upgrade from client-side apply
 * (lastAppliedManager, lastAppliedUpdater).
 */

/** kubectl's client-side apply annotation (corev1.LastAppliedConfigAnnotation). */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/** The only manager whose applies keep last-applied-configuration in step (lastappliedmanager.go, lastappliedupdater.go). */
const KUBECTL_MANAGER = 'kubectl';

/** metav1 validation's FieldManagerMaxLength (bytes). */
const FIELD_MANAGER_MAX_BYTES = 128;

/** apimachinery's TotalAnnotationSizeLimitB: a last-applied annotation that would pass it is dropped (SetLastApplied). */
const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

/** unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space. */
const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

// ---- the field manager's name ------------------------------------------------------------------

/**
 * The User-Agent's part before the first '/', without unprintable characters, cut so that it
 * stays within 128 bytes (handlers.prefixFromUserAgent): `kubectl/v1.28.2 (linux/amd64)` → `kubectl`.
 */
export function prefixFromUserAgent(userAgent: string): string {
  let prefix = '';
  let bytes = 0;
  for (const character of userAgent.split('/')[0]) {
    if (!PRINTABLE.test(character)) continue;
    const length = Buffer.byteLength(character);
    if (bytes + length > FIELD_MANAGER_MAX_BYTES) break;
    prefix += character;
    bytes += length;
  }
  return prefix;
}

/** The manager of a write: the `fieldManager` option, or else the User-Agent's prefix (managerOrUserAgent). */
export function managerOrUserAgent(fieldManager: string, userAgent: string | undefined): string {
  return fieldManager !== '' ? fieldManager : prefixFromUserAgent(userAgent ?? '');
}

// ---- decoding the body -------------------------------------------------------------------------

/** An apply patch as decoded: the object, and the duplicate keys a strict decoder would refuse. */
export interface DecodedApplyPatch {
  readonly object: KubeObject;
  /** `line 10: key "knownField1" already set in map`, in document order (go-yaml v2's wording). */
  readonly duplicates: readonly string[];
}

/**
 * go-yaml v2 resolves YAML 1.1 plain scalars (yes/no/on/off, 0755, 0x1F, 1_000, `<<` merges) but
 * keeps timestamps and sexagesimal numbers as strings when decoding into interface{}.
 */
const YAML_OPTIONS: YAML.ParseOptions & YAML.DocumentOptions & YAML.SchemaOptions = {
  version: '1.1',
  uniqueKeys: false,
  customTags: (tags) => tags.filter((tag) => typeof tag === 'string' || (tag.tag !== 'tag:yaml.org,2002:timestamp' && tag.format !== 'TIME')),
};

/** What Go's json.Unmarshal calls a JSON value that is not an object, for its "cannot unmarshal" error. */
function jsonTypeName(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'number' || typeof value === 'bigint') return 'number';
  if (typeof value === 'boolean') return 'bool';
  return 'object';
}

/** The duplicate keys of every mapping under `node`, as go-yaml's strict decoder lists them. */
function findDuplicateKeys(node: unknown, lines: YAML.LineCounter, found: string[]): void {
  if (YAML.isMap(node)) {
    const seen = new Set<string>();
    for (const pair of node.items) {
      const key: unknown = pair.key;
      if (YAML.isScalar(key)) {
        const name = JSON.stringify(key.value);
        if (seen.has(name) && key.range) found.push(`line ${lines.linePos(key.range[0]).line}: key ${name} already set in map`);
        seen.add(name);
      }
      findDuplicateKeys(pair.value, lines, found);
    }
  } else if (YAML.isSeq(node)) {
    for (const item of node.items) findDuplicateKeys(item, lines, found);
  }
}

/**
 * Decodes an apply patch as yaml.Unmarshal into a map (the first YAML document; JSON is YAML): 400
 * `error decoding patch: …` when it is not YAML or not a mapping. An empty body is an empty object.
 */
export function decodeApplyPatch(body: Buffer): DecodedApplyPatch {
  const lines = new YAML.LineCounter();
  const [document] = YAML.parseAllDocuments(body.toString('utf8'), { ...YAML_OPTIONS, lineCounter: lines });
  if (document === undefined) return { object: {}, duplicates: [] };
  if (!(document instanceof YAML.Document)) throw errors.badRequest('error decoding patch: error converting YAML to JSON: yaml: the body is not a YAML document');
  const problem = document.errors[0];
  if (problem) {
    const line = problem.linePos?.[0].line;
    throw errors.badRequest(`error decoding patch: error converting YAML to JSON: yaml: ${line === undefined ? '' : `line ${line}: `}${problem.message.split('\n')[0]}`);
  }
  let value: unknown;
  try {
    value = document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw errors.badRequest(`error decoding patch: error converting YAML to JSON: yaml: ${(error as Error).message.split('\n')[0]}`);
  }
  if (value === null || value === undefined) return { object: {}, duplicates: [] };
  if (!isObject(value)) {
    throw errors.badRequest(`error decoding patch: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ${jsonTypeName(value)} into Go value of type map[string]interface {}`);
  }
  const duplicates: string[] = [];
  findDuplicateKeys(document.contents, lines, duplicates);
  return { object: value, duplicates };
}

/**
 * The applyPatcher's strict check of the body: duplicate keys fail a Strict apply (400) and are
 * warnings (one per key) under Warn; Ignore says nothing.
 */
export function strictApplyWarnings(decoded: DecodedApplyPatch, fieldValidation: 'Ignore' | 'Warn' | 'Strict'): string[] {
  if (fieldValidation === 'Ignore' || decoded.duplicates.length === 0) return [];
  if (fieldValidation === 'Strict') {
    throw errors.badRequest(
      `error strict decoding patch: error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:\n${decoded.duplicates.map((d) => `  ${d}`).join('\n')}`,
    );
  }
  return [...decoded.duplicates];
}

// ---- the apply -----------------------------------------------------------------------------------

export interface ApplyRequest {
  /** The request's `apiVersion` (`wardle.example.com/v1alpha1`) and kind: the applied object must be of them. */
  readonly apiVersion: string;
  readonly kind: string;
  readonly manager: string;
  readonly force: boolean;
  /** '' or 'status'. */
  readonly subresource: string;
}

/** GroupVersionKind.String() of an object's type meta: `wardle.example.com/v1alpha1, Kind=Flunder`, `/, Kind=` when absent. */
function gvkString(object: KubeObject): string {
  const apiVersion = typeof object.apiVersion === 'string' ? object.apiVersion : '';
  const kind = typeof object.kind === 'string' ? object.kind : '';
  const parts = apiVersion.split('/');
  // schema.ParseGroupVersion: "" and "v1" have no group; more than one '/' is no group version at all.
  const [group, version] = apiVersion === '' || parts.length > 2 ? ['', ''] : parts.length === 1 ? ['', parts[0]] : parts;
  return `${group}/${version}, Kind=${kind}`;
}

/**
 * Applies `applied` onto `live` (undefined: the object does not exist yet) as FieldManager.Apply
 * with upstream's wrappers: the applied object must be of the request's type (400 `invalid
 * object type: …`) and carry no managedFields (400); kubectl's applies to an object that
 * client-side apply manages take over, without a conflict, the fields whose last applied value is
 * still live, and keep last-applied-configuration equal to what they apply. Throws the 409 of
 * ApplyConflictError for the other conflicts (unless `force`).
 */
export function applyConfiguration(fieldManager: FieldManager, live: KubeObject | undefined, applied: KubeObject, request: ApplyRequest): KubeObject {
  if (applied.apiVersion !== request.apiVersion || applied.kind !== request.kind) throw errors.badRequest(`invalid object type: ${gvkString(applied)}`);
  if (isObject(applied.metadata) && Array.isArray(applied.metadata.managedFields)) throw errors.badRequest('metadata.managedFields must be nil');
  const subresource = request.subresource === '' ? undefined : request.subresource;
  let result: KubeObject;
  try {
    result = fieldManager.apply(live, applied, request.manager, request.force, subresource);
  } catch (error) {
    if (!(error instanceof ApplyConflictError) || request.manager !== KUBECTL_MANAGER || live === undefined) throw asStatusError(error);
    const remaining = error.conflicts.filter((conflict) => !conflictAllowedByLastApplied(conflict, live, request.apiVersion));
    if (remaining.length > 0) throw new ApplyConflictError(remaining).toStatus();
    try {
      result = fieldManager.apply(live, applied, request.manager, true, subresource);
    } catch (forced) {
      throw asStatusError(forced);
    }
  }
  if (request.manager === KUBECTL_MANAGER) syncLastApplied(result, applied);
  return result;
}

/** A FieldManager error as the Status to answer: conflicts are 409; others (the applied object does not fit the schema) 500, as Go answers an error that is not a Status. */
function asStatusError(error: unknown): Error {
  if (error instanceof ApplyConflictError) return error.toStatus();
  if (error instanceof StatusError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new StatusError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: '', code: 500 });
}

// ---- upgrading from client-side apply ------------------------------------------------------------

function lastAppliedOf(object: KubeObject): string | undefined {
  const annotations = isObject(object.metadata) ? object.metadata.annotations : undefined;
  const value = isObject(annotations) ? annotations[LAST_APPLIED_ANNOTATION] : undefined;
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * lastAppliedManager.allowedConflictsFromLastApplied for one conflict: the field is allowed when
 * the object's last-applied-configuration (of the request's apiVersion) sets it to the value it
 * has live — client-side apply owned it, so kubectl's server-side apply may take it over.
 */
function conflictAllowedByLastApplied(conflict: FieldConflict, live: KubeObject, apiVersion: string): boolean {
  const text = lastAppliedOf(live);
  if (text === undefined) return false;
  let lastApplied: unknown;
  try {
    lastApplied = JSON.parse(text);
  } catch {
    return false;
  }
  if (!isObject(lastApplied) || lastApplied.apiVersion !== apiVersion) return false;
  const path = parseFieldPath(conflict.field);
  if (path === undefined) return false;
  const inLastApplied = resolvePath(lastApplied, path);
  const inLive = resolvePath(live, path);
  return inLastApplied.found && inLive.found && jsonEqual(inLastApplied.value, inLive.value);
}

/**
 * lastAppliedUpdater: when kubectl applies to an object that carries last-applied-configuration,
 * the annotation becomes the applied object (without the annotation), as kubectl would write it;
 * dropped when it would take the annotations past their size limit (SetLastApplied).
 */
function syncLastApplied(result: KubeObject, applied: KubeObject): void {
  if (lastAppliedOf(result) === undefined) return;
  const appliedMeta = isObject(applied.metadata) ? applied.metadata : undefined;
  const appliedAnnotations = appliedMeta && isObject(appliedMeta.annotations) ? appliedMeta.annotations : undefined;
  let source = applied;
  if (appliedAnnotations && LAST_APPLIED_ANNOTATION in appliedAnnotations) {
    const { [LAST_APPLIED_ANNOTATION]: _dropped, ...others } = appliedAnnotations;
    source = { ...applied, metadata: { ...appliedMeta, annotations: others } };
  }
  const meta = result.metadata as Record<string, unknown>;
  const annotations: Record<string, unknown> = { ...(meta.annotations as Record<string, unknown>), [LAST_APPLIED_ANNOTATION]: goJson(source) + '\n' };
  const size = Object.entries(annotations).reduce((total, [k, v]) => total + k.length + (typeof v === 'string' ? v.length : 0), 0);
  if (size > TOTAL_ANNOTATION_SIZE_LIMIT) delete annotations[LAST_APPLIED_ANNOTATION];
  result.metadata = { ...meta, annotations };
}

/** JSON as Go's encoding/json writes a map[string]interface{}: keys sorted, <, > and & escaped. */
function goJson(value: unknown): string {
  return JSON.stringify(sortKeys(value)).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isObject(value)) return value;
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const child = sortKeys(value[key]);
    if (key === '__proto__') Object.defineProperty(sorted, key, { value: child, enumerable: true, writable: true, configurable: true });
    else sorted[key] = child;
  }
  return sorted;
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((v, i) => jsonEqual(v, (b as unknown[])[i]));
  const ak = Object.keys(a);
  const bk = Object.keys(b);
  return ak.length === bk.length && ak.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

// ---- field paths as Go prints them ---------------------------------------------------------------

/** One element of a fieldpath.Path: `.name`, `[k="v",n=1]` (list-map key), `[="v"]` (set value), `[3]` (index). */
export type PathElement = { readonly field: string } | { readonly key: Readonly<Record<string, unknown>> } | { readonly value: unknown } | { readonly index: number };

/** Reads one JSON value at `text[start]`; returns it and where it ends. */
function readJsonValue(text: string, start: number): [unknown, number] | undefined {
  let end = start;
  if (text[start] === '"') {
    for (end = start + 1; end < text.length && text[end] !== '"'; end++) if (text[end] === '\\') end++;
    end++;
  } else if (text[start] === '{' || text[start] === '[') {
    let depth = 0;
    for (; end < text.length; end++) {
      const c = text[end];
      if (c === '"') {
        for (end++; end < text.length && text[end] !== '"'; end++) if (text[end] === '\\') end++;
      } else if (c === '{' || c === '[') depth++;
      else if ((c === '}' || c === ']') && --depth === 0) {
        end++;
        break;
      }
    }
  } else {
    while (end < text.length && text[end] !== ',' && text[end] !== ']') end++;
  }
  try {
    return [JSON.parse(text.slice(start, end)), end];
  } catch {
    return undefined;
  }
}

/** Parses a path as fieldpath.Path.String() prints it (`.spec.ports[containerPort=80,protocol="TCP"].name`); undefined when it does not parse. */
export function parseFieldPath(text: string): PathElement[] | undefined {
  const path: PathElement[] = [];
  let at = 0;
  while (at < text.length) {
    if (text[at] === '.') {
      let end = at + 1;
      while (end < text.length && text[end] !== '.' && text[end] !== '[') end++;
      path.push({ field: text.slice(at + 1, end) });
      at = end;
    } else if (text[at] === '[') {
      at++;
      if (/^\d+\]/.test(text.slice(at))) {
        const end = text.indexOf(']', at);
        path.push({ index: Number(text.slice(at, end)) });
        at = end + 1;
      } else if (text[at] === '=') {
        const read = readJsonValue(text, at + 1);
        if (!read || text[read[1]] !== ']') return undefined;
        path.push({ value: read[0] });
        at = read[1] + 1;
      } else {
        const key: Record<string, unknown> = {};
        for (;;) {
          const equals = text.indexOf('=', at);
          if (equals < 0) return undefined;
          const read = readJsonValue(text, equals + 1);
          if (!read) return undefined;
          key[text.slice(at, equals)] = read[0];
          at = read[1] + 1;
          if (text[read[1]] === ']') break;
          if (text[read[1]] !== ',') return undefined;
        }
        path.push({ key });
      }
    } else {
      return undefined;
    }
  }
  return path;
}

/** The value a path names in an object, if it is there. */
export function resolvePath(object: unknown, path: readonly PathElement[]): { found: boolean; value?: unknown } {
  let current: unknown = object;
  for (const element of path) {
    if ('field' in element) {
      if (!isObject(current) || !Object.prototype.hasOwnProperty.call(current, element.field)) return { found: false };
      current = current[element.field];
    } else if ('index' in element) {
      if (!Array.isArray(current) || element.index >= current.length) return { found: false };
      current = current[element.index];
    } else if ('value' in element) {
      if (!Array.isArray(current)) return { found: false };
      const match = current.find((item) => jsonEqual(item, element.value));
      if (match === undefined) return { found: false };
      current = match;
    } else {
      if (!Array.isArray(current)) return { found: false };
      const match = current.find((item) => isObject(item) && Object.entries(element.key).every(([k, v]) => jsonEqual(item[k], v)));
      if (match === undefined) return { found: false };
      current = match;
    }
  }
  return { found: true, value: current };
}
