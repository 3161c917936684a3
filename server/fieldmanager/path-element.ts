/**
 * One step of a field path, as sigs.k8s.io/structured-merge-diff/v4 fieldpath.PathElement: a
 * field name, the key of an item of a `map` list, the value of an item of a `set` list, or the
 * index of an item of an atomic list. Its FieldsV1 form (`f:name`, `k:{"name":"x"}`, `v:"a"`,
 * `i:0`) is also its identity here: two elements are equal exactly when their forms are.
 */

/** A JSON value as decoded from an object (no `undefined`). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export type PathElement =
  | { readonly kind: 'field'; readonly name: string; readonly id: string }
  | { readonly kind: 'key'; readonly fields: readonly (readonly [string, JsonValue])[]; readonly id: string }
  | { readonly kind: 'value'; readonly value: JsonValue; readonly id: string }
  | { readonly kind: 'index'; readonly index: number; readonly id: string };

export type Path = readonly PathElement[];

const fieldCache = new Map<string, PathElement>();

/** A field name element, `f:<name>` (interned: objects repeat the same names). */
export function fieldElement(name: string): PathElement {
  let pe = fieldCache.get(name);
  if (!pe) {
    pe = { kind: 'field', name, id: `f:${name}` };
    if (fieldCache.size < 10_000) fieldCache.set(name, pe);
  }
  return pe;
}

/** The element of a `map` list item: its key fields, sorted by name as Go's FieldList.Sort. */
export function keyElement(fields: readonly (readonly [string, JsonValue])[]): PathElement {
  const sorted = [...fields].sort((a, b) => compareStrings(a[0], b[0]));
  return { kind: 'key', fields: sorted, id: `k:{${sorted.map(([name, value]) => `${goJson(name)}:${goJson(value)}`).join(',')}}` };
}

/** The element of a `set` list item: the item's value. */
export function valueElement(value: JsonValue): PathElement {
  return { kind: 'value', value, id: `v:${goJson(value)}` };
}

/** The element of an atomic list's item by position. */
export function indexElement(index: number): PathElement {
  return { kind: 'index', index, id: `i:${index}` };
}

/** Why a FieldsV1 key cannot be read; an unknown element type is not an error (Go drops it). */
export class PathElementSyntaxError extends Error {}

/**
 * Parses a FieldsV1 key as fieldpath.DeserializePathElement; undefined for a type letter it
 * does not know (Go ignores those: a newer server may write them).
 */
export function parsePathElement(text: string): PathElement | undefined {
  if (text.length < 2) throw new PathElementSyntaxError(`key must be 2 characters long: ${JSON.stringify(text)}`);
  if (text[1] !== ':') throw new PathElementSyntaxError(`missing colon: ${text}`);
  const body = text.slice(2);
  switch (text[0]) {
    case 'f':
      return fieldElement(body);
    case 'v':
      return valueElement(parseJson(text, body));
    case 'k': {
      const parsed = parseJson(text, body);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw new PathElementSyntaxError(`${text}: a key element must hold a JSON object`);
      }
      return keyElement(Object.entries(parsed));
    }
    case 'i': {
      if (!/^[+-]?\d+$/.test(body)) throw new PathElementSyntaxError(`${text}: an index element must hold an integer`);
      return indexElement(Number(body));
    }
    default:
      return undefined;
  }
}

function parseJson(text: string, body: string): JsonValue {
  try {
    return JSON.parse(body) as JsonValue;
  } catch (e) {
    throw new PathElementSyntaxError(`${text}: ${(e as Error).message}`);
  }
}

/** The element as Go's PathElement.String prints it in conflicts: `.name`, `[name="x"]`, `[="a"]`, `[0]`. */
export function elementToString(pe: PathElement): string {
  switch (pe.kind) {
    case 'field':
      return `.${pe.name}`;
    case 'key':
      return `[${pe.fields.map(([name, value]) => `${name}=${goValueString(value)}`).join(',')}]`;
    case 'value':
      return `[=${goValueString(pe.value)}]`;
    case 'index':
      return `[${pe.index}]`;
  }
}

/** A path as Go's fieldpath.Path.String: `.spec.containers[name="x"].image`. */
export function pathToString(path: Path): string {
  return path.map(elementToString).join('');
}

/** value.ToString: strings quoted, maps as `k=v` pairs (Go's map order is random; ours is sorted). */
function goValueString(value: JsonValue): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(goValueString).join(',')}]`;
  return Object.keys(value)
    .sort(compareStrings)
    .map((k) => `${k}=${goValueString(value[k])}`)
    .join('');
}

/** The total order of fieldpath.PathElement.Compare: fields, then keys, values, indexes. */
export function compareElements(a: PathElement, b: PathElement): number {
  if (a.kind !== b.kind) return KIND_ORDER[a.kind] - KIND_ORDER[b.kind];
  switch (a.kind) {
    case 'field':
      return compareStrings(a.name, (b as typeof a).name);
    case 'key': {
      const other = (b as typeof a).fields;
      for (let i = 0; ; i++) {
        if (i >= a.fields.length && i >= other.length) return 0;
        if (i >= a.fields.length) return -1;
        if (i >= other.length) return 1;
        const byName = compareStrings(a.fields[i][0], other[i][0]);
        if (byName !== 0) return byName;
        const byValue = compareValues(a.fields[i][1], other[i][1]);
        if (byValue !== 0) return byValue;
      }
    }
     
    case 'value':
      return compareValues(a.value, (b as typeof a).value);
    case 'index':
      return Math.sign(a.index - (b as typeof a).index);
  }
}

const KIND_ORDER = { field: 0, key: 1, value: 2, index: 3 } as const;

/**
 * Go's strings.Compare: UTF-8 bytes, that is code points. UTF-16 code units order the same way
 * except that a surrogate (half of a character beyond U+FFFF) must rank above U+E000-U+FFFF.
 */
export function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xSurrogate = x >= 0xd800 && x <= 0xdfff;
    const ySurrogate = y >= 0xd800 && y <= 0xdfff;
    if (xSurrogate !== ySurrogate) return xSurrogate ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length < b.length ? -1 : 1;
}

/** value.Compare: numbers < strings < booleans < lists < maps < null. */
export function compareValues(a: JsonValue, b: JsonValue): number {
  const ra = valueRank(a);
  const rb = valueRank(b);
  if (ra !== rb) return ra - rb;
  switch (ra) {
    case 0:
      return Math.sign((a as number) - (b as number));
    case 1:
      return compareStrings(a as string, b as string);
    case 2:
      return a === b ? 0 : a ? 1 : -1;
    case 3: {
      const la = a as JsonValue[];
      const lb = b as JsonValue[];
      for (let i = 0; ; i++) {
        if (i >= la.length && i >= lb.length) return 0;
        if (i >= la.length) return -1;
        if (i >= lb.length) return 1;
        const c = compareValues(la[i], lb[i]);
        if (c !== 0) return c;
      }
    }
     
    case 4: {
      // value.MapCompare: sorted keys compared pairwise, then by length.
      const ma = a as Record<string, JsonValue>;
      const mb = b as Record<string, JsonValue>;
      const ka = Object.keys(ma).sort(compareStrings);
      const kb = Object.keys(mb).sort(compareStrings);
      for (let i = 0; ; i++) {
        if (i >= ka.length && i >= kb.length) return 0;
        if (i >= ka.length) return -1;
        if (i >= kb.length) return 1;
        const byKey = compareStrings(ka[i], kb[i]);
        if (byKey !== 0) return byKey;
        const byValue = compareValues(ma[ka[i]], mb[kb[i]]);
        if (byValue !== 0) return byValue;
      }
    }
     
    default:
      return 0;
  }
}

function valueRank(v: JsonValue): number {
  if (typeof v === 'number') return 0;
  if (typeof v === 'string') return 1;
  if (typeof v === 'boolean') return 2;
  if (Array.isArray(v)) return 3;
  if (v !== null && typeof v === 'object') return 4;
  return 5;
}

/** Deep equality of JSON values (value.Equals; numbers compare numerically). */
export function jsonEquals(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEquals(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const ka = Object.keys(ra);
  if (ka.length !== Object.keys(rb).length) return false;
  for (const k of ka) {
    if (!(k in rb) || !jsonEquals(ra[k], rb[k])) return false;
  }
  return true;
}

const GO_ESCAPES: Record<string, string> = { '<': '\\u003c', '>': '\\u003e', '&': '\\u0026', '\u2028': '\\u2028', '\u2029': '\\u2029' };

/**
 * JSON as Go's encoding/json writes it (and json-iterator's standard-library-compatible config,
 * which writes FieldsV1): map keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped.
 */
export function goJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c]);
  if (typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  const record = value as Record<string, unknown>;
  return `{${Object.keys(record)
    .filter((k) => record[k] !== undefined)
    .sort(compareStrings)
    .map((k) => `${goJson(k)}:${goJson(record[k])}`)
    .join(',')}}`;
}
