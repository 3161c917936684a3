import YAML from 'yaml';
import { ApplyConflictError, FieldManager } from '../fieldmanager';
import { StatusError, errors } from '../status';
import { KubeObject, isObject } from './rules';
import { checkYamlBodySize } from './body';

/**
 * Server-side apply at the REST layer, as k8s.io/apiserver's patch handler does it
 * (server/fieldmanager/ is the merge, the managedFields and upstream's wrappers around them):
 * decoding an `application/apply-patch+yaml` body (go-yaml v2's YAML 1.1, duplicate keys per
 * fieldValidation), the field manager's name from the request (managerOrUserAgent), and the
 * field manager's failures as the Status to answer.
 */

/** metav1 validation's FieldManagerMaxLength (bytes). */
export const FIELD_MANAGER_MAX_BYTES = 128;

/** unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space. */
const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

/** Whether one character is printable as Go's unicode.IsPrint says (fieldManager's rule). */
export function isPrintable(character: string): boolean {
  return PRINTABLE.test(character);
}

// ---- the field manager's name ------------------------------------------------------------------

/**
 * The User-Agent's part before the first '/', without unprintable characters, cut so that it
 * stays within 128 bytes (handlers.prefixFromUserAgent): `kubectl/v1.28.2 (linux/amd64)` → `kubectl`.
 */
export function prefixFromUserAgent(userAgent: string): string {
  let prefix = '';
  let bytes = 0;
  for (const character of userAgent.split('/')[0]) {
    if (!isPrintable(character)) continue;
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
export function jsonTypeName(value: unknown): string {
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
 * How deep flow collections (`[`, `{`) may nest in a YAML body, as handlers.ts limits a decoded
 * body; the YAML parser recurses per level (it overflows the stack past ~800) and takes seconds
 * to find out on a deeply nested body, so the depth is counted first, in one pass.
 */
const MAX_FLOW_DEPTH = 1_000;

/**
 * 400 when the body's flow collections, or the sequence entries that open one line (`- - - x`),
 * nest deeper than MAX_FLOW_DEPTH (quoted scalars and comments skipped). Nesting by indentation
 * needs a longer line per level, so the body's size bounds it.
 */
function checkFlowDepth(text: string): void {
  const tooDeep = () => errors.badRequest(`the body of the request is nested deeper than ${MAX_FLOW_DEPTH} levels (exceeded max depth)`);
  let depth = 0;
  let lineStart = true;
  let entries = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (lineStart) {
      if (c === ' ') continue;
      if (c === '-' && (text[i + 1] === ' ' || text[i + 1] === '\t')) {
        if (++entries > MAX_FLOW_DEPTH) throw tooDeep();
        i++;
        continue;
      }
      lineStart = false;
      entries = 0;
    }
    if (c === '\n') {
      lineStart = true;
      entries = 0;
    } else if (c === '[' || c === '{') {
      if (++depth > MAX_FLOW_DEPTH) throw tooDeep();
    } else if (c === ']' || c === '}') {
      depth = Math.max(0, depth - 1);
    } else if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === "'") {
      for (i++; i < text.length && !(text[i] === "'" && text[i + 1] !== "'"); i++) if (text[i] === "'") i++;
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
      while (i + 1 < text.length && text[i + 1] !== '\n') i++;
    }
  }
}

/**
 * The duplicate keys of a JSON text (already parsed, so valid), with their lines: one linear pass,
 * where the YAML parser would take seconds on a large body.
 */
function jsonDuplicateKeys(text: string): string[] {
  const found: string[] = [];
  const keys: (Set<string> | undefined)[] = []; // per open collection: an object's keys, undefined for an array
  let line = 1;
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') line++;
    else if (c === '{') {
      keys.push(new Set());
      expectingKey = true;
    } else if (c === '[') {
      keys.push(undefined);
      expectingKey = false;
    } else if (c === '}' || c === ']') {
      keys.pop();
      expectingKey = false;
    } else if (c === ',') {
      expectingKey = keys[keys.length - 1] !== undefined;
    } else if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (expectingKey) {
        const key = JSON.parse(text.slice(start, i + 1)) as string;
        const seen = keys[keys.length - 1]!;
        if (seen.has(key)) found.push(`line ${line}: key ${JSON.stringify(key)} already set in map`);
        seen.add(key);
        expectingKey = false;
      }
    }
  }
  return found;
}

/** The decoded value as the apply patch's object: null is an empty object, anything but a mapping is 400. */
function asPatchObject(value: unknown): KubeObject {
  if (value === null || value === undefined) return {};
  if (!isObject(value)) {
    throw errors.badRequest(`error decoding patch: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ${jsonTypeName(value)} into Go value of type map[string]interface {}`);
  }
  return value;
}

/**
 * Decodes an apply patch as yaml.Unmarshal into a map (the first YAML document; JSON is YAML): 400
 * `error decoding patch: …` when it is not YAML or not a mapping. An empty body is an empty object.
 * A JSON body (what kubectl and client-go send) is read as JSON: the same value, in linear time.
 */
export function decodeApplyPatch(body: Buffer): DecodedApplyPatch {
  const text = body.toString('utf8');
  if (/^\s*[{[]/.test(text)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined; // not JSON after all (or too deep for JSON.parse): read as YAML below
    }
    if (parsed !== undefined) return { object: asPatchObject(parsed), duplicates: isObject(parsed) ? jsonDuplicateKeys(text) : [] };
  }
  checkYamlBodySize(body);
  checkFlowDepth(text);
  const lines = new YAML.LineCounter();
  const [document] = YAML.parseAllDocuments(text, { ...YAML_OPTIONS, lineCounter: lines });
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
  const object = asPatchObject(value);
  const duplicates: string[] = [];
  if (value !== null && value !== undefined) findDuplicateKeys(document.contents, lines, duplicates);
  return { object, duplicates };
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
  readonly manager: string;
  readonly force: boolean;
  /** '' or 'status'. */
  readonly subresource: string;
}

/**
 * Applies `applied` onto `live` (undefined: the object does not exist yet) with the field
 * manager, which does what upstream's wrappers do (the type check, no managedFields in the body,
 * kubectl's upgrade from client-side apply). Its failures become the Status to answer: conflicts
 * 409; an applied object that does not fit the schema 500 with no reason, as Go answers an
 * error that is not a Status (`failed to create typed patch object (…): .spec.x: field not
 * declared in schema`).
 */
export function applyConfiguration(fieldManager: FieldManager, live: KubeObject | undefined, applied: KubeObject, request: ApplyRequest): KubeObject {
  try {
    return fieldManager.apply(live, applied, request.manager, request.force, request.subresource === '' ? undefined : request.subresource);
  } catch (error) {
    if (error instanceof ApplyConflictError) throw error.toStatus();
    if (error instanceof StatusError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new StatusError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: '', code: 500 });
  }
}
