/**
 * Walks over an object and its TypeNode, as structured-merge-diff's typed package:
 * `toFieldSet` (the fields a value sets), `compareObjects` (added / modified / removed),
 * `mergeObjects` (an applied configuration over the live object), `removeItems` /
 * `extractItems`, `ensureNamedFieldsAreMembers` and `validateApplied` (what
 * ObjectToTyped refuses in an applied configuration). The walks follow the Go ones step by step,
 * including their corners: an empty or null map or list is one leaf, a granular map whose
 * values are all removed becomes null, a named field is a member of a set only when its value
 * is null or an empty map.
 */
import { FieldSet } from './field-set';
import { fieldElement, indexElement, jsonEquals, JsonValue, keyElement, Path, PathElement, pathToString, valueElement } from './path-element';
import { DEDUCED, ListType, MapType, TypeNode } from './schema';

type Form = 'leaf' | 'map' | 'list';
type JsonObject = { [key: string]: JsonValue };

/** A value that does not fit the schema (Go's typed.ValidationErrors). */
export class TypedValueError extends Error {
  constructor(readonly errors: readonly { path: string; message: string }[]) {
    super(
      errors.length === 1
        ? formatOne(errors[0])
        : ['errors:', ...errors.map((e) => `  ${formatOne(e)}`)].join('\n'),
    );
    this.name = 'TypedValueError';
  }
}

function formatOne(e: { path: string; message: string }): string {
  return e.path ? `${e.path}: ${e.message}` : e.message;
}

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Which of the node's forms handles v (Go's deduceAtom + handleAtom); a value the node has no form for is a leaf. */
function formOf(node: TypeNode, v: unknown): Form {
  if (Array.isArray(v)) return node.list ? 'list' : node.map ? 'map' : 'leaf';
  if (isObject(v)) return node.map ? 'map' : node.scalar ? 'leaf' : node.list ? 'list' : 'leaf';
  if (v === null || v === undefined) return node.map ? 'map' : node.scalar ? 'leaf' : node.list ? 'list' : 'leaf';
  return node.scalar ? 'leaf' : node.map ? 'map' : node.list ? 'list' : 'leaf';
}

function asMap(v: unknown): JsonObject | undefined {
  return isObject(v) ? v : undefined;
}

function asList(v: unknown): JsonValue[] | undefined {
  return Array.isArray(v) ? (v as JsonValue[]) : undefined;
}

function fieldType(map: MapType, key: string): TypeNode {
  return map.fields.get(key) ?? map.elementType ?? DEDUCED;
}

/** The path element of a list item (listItemToPathElement); throws a message on a bad item. */
export function listItemElement(list: ListType, item: JsonValue): PathElement {
  if (list.keys.length > 0) {
    if (item === null) throw new ItemError('associative list with keys may not have a null element');
    if (!isObject(item)) throw new ItemError('associative list with keys may not have non-map elements');
    const fields: [string, JsonValue][] = [];
    const defaults = list.elementType.map?.defaults;
    for (const name of list.keys) {
      if (name in item) fields.push([name, item[name]]);
      else if (defaults?.has(name)) fields.push([name, defaults.get(name) as JsonValue]);
    }
    if (fields.length === 0) {
      throw new ItemError(
        `associative list with keys has an element that omits all key fields [${list.keys.map((k) => JSON.stringify(k)).join(' ')}] (and doesn't have default values for any key fields)`,
      );
    }
    return keyElement(fields);
  }
  if (isObject(item)) throw new ItemError("associative list without keys has an element that's a map type");
  if (Array.isArray(item)) throw new ItemError('not supported: associative list with lists as elements');
  if (item === null) throw new ItemError("associative list without keys has an element that's an explicit null");
  return valueElement(item);
}

class ItemError extends Error {}

function itemElementAt(list: ListType, item: JsonValue, index: number, path: Path): PathElement {
  try {
    return listItemElement(list, item);
  } catch (e) {
    if (e instanceof ItemError) throw new TypedValueError([{ path: pathToString(path), message: `element ${index}: ${e.message}` }]);
    throw e;
  }
}

/** A value for Go's %v in a message: String() throws on an object whose toString is not a function. */
function goValueText(value: unknown): string {
  return typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
}

// ---------------------------------------------------------------------------------------------
// ToFieldSet

/** The fields value sets (typed.ToFieldSet). Duplicated items of an associative list are owned as a whole. */
export function toFieldSet(node: TypeNode, value: unknown): FieldSet {
  const set = new FieldSet();
  fieldSetWalk(node, value, [], set);
  return set;
}

function fieldSetWalk(node: TypeNode, value: unknown, path: PathElement[], set: FieldSet): void {
  const form = formOf(node, value);
  if (form === 'leaf') {
    set.insert(path);
    return;
  }
  if (form === 'list') {
    const list = node.list as ListType;
    if (list.atomic) {
      set.insert(path);
      return;
    }
    const items = asList(value);
    if (!items) return;
    const elements = items.map((item, i) => itemElementAt(list, item, i, path));
    const seen = new Set<string>();
    const duplicates = new Set<string>();
    for (const pe of elements) {
      if (seen.has(pe.id)) {
        if (!duplicates.has(pe.id)) {
          duplicates.add(pe.id);
          set.insert([...path, pe]);
        }
      } else seen.add(pe.id);
    }
    for (let i = 0; i < items.length; i++) {
      const pe = elements[i];
      if (duplicates.has(pe.id)) continue;
      path.push(pe);
      fieldSetWalk(list.elementType, items[i], path, set);
      set.insert(path);
      path.pop();
    }
    return;
  }
  const map = node.map as MapType;
  if (map.atomic) {
    set.insert(path);
    return;
  }
  const m = asMap(value);
  if (!m) return;
  for (const key of Object.keys(m)) {
    const child = m[key];
    if (child === undefined) continue;
    path.push(fieldElement(key));
    fieldSetWalk(fieldType(map, key), child, path, set);
    if (child === null || (isObject(child) && Object.keys(child).length === 0) || !map.fields.has(key)) set.insert(path);
    path.pop();
  }
}

// ---------------------------------------------------------------------------------------------
// Compare

export interface Comparison {
  /** Fields the new value no longer has. */
  readonly removed: FieldSet;
  /** Leaf fields both have, with different values. */
  readonly modified: FieldSet;
  /** Fields only the new value has. */
  readonly added: FieldSet;
}

/** What changed from lhs to rhs (typed.Compare). */
export function compareObjects(node: TypeNode, lhs: unknown, rhs: unknown): Comparison {
  const cmp = { removed: new FieldSet(), modified: new FieldSet(), added: new FieldSet() };
  compareWalk(node, lhs, rhs, [], cmp);
  return cmp;
}

function compareWalk(node: TypeNode, lhs: unknown, rhs: unknown, path: PathElement[], cmp: Comparison): void {
  const lf = lhs === undefined ? undefined : formOf(node, lhs);
  const rf = rhs === undefined ? undefined : formOf(node, rhs);
  let inLeaf: boolean;
  if (rhs === undefined) inLeaf = compareForm(node, lf as Form, lhs, rhs, path, cmp);
  else if (lhs === undefined || lf === rf) inLeaf = compareForm(node, rf as Form, lhs, rhs, path, cmp);
  else {
    // Different forms (a string became a map): Go walks both, each seeing the other side as absent below.
    compareForm(node, lf as Form, lhs, rhs, path, cmp);
    inLeaf = compareForm(node, rf as Form, lhs, rhs, path, cmp);
  }
  if (!inLeaf) {
    if (lhs === undefined) cmp.added.insert(path);
    else if (rhs === undefined) cmp.removed.insert(path);
  }
}

/** Returns whether the node was compared as one leaf. */
function compareForm(node: TypeNode, form: Form, lhs: unknown, rhs: unknown, path: PathElement[], cmp: Comparison): boolean {
  if (form === 'map') {
    const map = node.map as MapType;
    const lm = asMap(lhs);
    const rm = asMap(rhs);
    if (map.atomic || (isEmptyMap(lm) && isEmptyMap(rm))) return compareLeaf(lhs, rhs, path, cmp);
    if (lm) {
      for (const key of Object.keys(lm)) {
        if (lm[key] === undefined) continue;
        path.push(fieldElement(key));
        compareWalk(fieldType(map, key), lm[key], rm?.[key], path, cmp);
        path.pop();
      }
    }
    if (rm) {
      for (const key of Object.keys(rm)) {
        if (rm[key] === undefined || (lm && lm[key] !== undefined)) continue;
        path.push(fieldElement(key));
        compareWalk(fieldType(map, key), undefined, rm[key], path, cmp);
        path.pop();
      }
    }
    return false;
  }
  if (form === 'list') {
    const list = node.list as ListType;
    const ll = asList(lhs);
    const rl = asList(rhs);
    if (list.atomic || ((ll ?? []).length === 0 && (rl ?? []).length === 0)) return compareLeaf(lhs, rhs, path, cmp);
    compareListItems(list, ll ?? [], rl ?? [], path, cmp);
    return false;
  }
  return compareLeaf(lhs, rhs, path, cmp);
}

function isEmptyMap(m: JsonObject | undefined): boolean {
  if (!m) return true;
  for (const k in m) if (m[k] !== undefined) return false;
  return true;
}

function compareLeaf(lhs: unknown, rhs: unknown, path: PathElement[], cmp: Comparison): true {
  if (lhs === undefined) cmp.added.insert(path);
  else if (rhs === undefined) cmp.removed.insert(path);
  else if (!jsonEquals(lhs, rhs)) cmp.modified.insert(path);
  return true;
}

function compareListItems(list: ListType, lhs: JsonValue[], rhs: JsonValue[], path: PathElement[], cmp: Comparison): void {
  const all: PathElement[] = [];
  const lValues = new Map<string, JsonValue[]>();
  lhs.forEach((item, i) => {
    const pe = itemElementAt(list, item, i, path);
    const existing = lValues.get(pe.id);
    if (existing) existing.push(item);
    else {
      lValues.set(pe.id, [item]);
      all.push(pe);
    }
  });
  const rValues = new Map<string, JsonValue[]>();
  rhs.forEach((item, i) => {
    const pe = itemElementAt(list, item, i, path);
    const existing = rValues.get(pe.id);
    if (existing) existing.push(item);
    else {
      rValues.set(pe.id, [item]);
      if (!lValues.has(pe.id)) all.push(pe);
    }
  });
  for (const pe of all) {
    const l = lValues.get(pe.id) ?? [];
    const r = rValues.get(pe.id) ?? [];
    path.push(pe);
    if (l.length <= 1 && r.length <= 1) {
      compareWalk(list.elementType, l[0], r[0], path, cmp);
    } else if (l.length >= 2 && r.length >= 2) {
      // Duplicates before and after: compared as one atomic value.
      if (!jsonEquals(l, r)) cmp.modified.insert(path);
    } else if (l.length >= 2) {
      if (r.length !== 0) compareWalk(list.elementType, undefined, r[0], path, cmp);
      cmp.removed.insert(path);
    } else {
      if (l.length !== 0) compareWalk(list.elementType, l[0], undefined, path, cmp);
      cmp.added.insert(path);
    }
    path.pop();
  }
}

// ---------------------------------------------------------------------------------------------
// Merge

/** rhs (an applied configuration) merged over lhs (the live object), as typed.Merge with ruleKeepRHS. */
export function mergeObjects(node: TypeNode, lhs: unknown, rhs: unknown): unknown {
  return mergeWalk(node, lhs, rhs, []);
}

function mergeWalk(node: TypeNode, lhs: unknown, rhs: unknown, path: PathElement[]): unknown {
  const form = rhs === undefined ? formOf(node, lhs) : formOf(node, rhs);
  if (form === 'map') {
    const map = node.map as MapType;
    const lm = asMap(lhs);
    const rm = asMap(rhs);
    if (map.atomic || (isEmptyMap(lm) && isEmptyMap(rm))) return keepRhs(lhs, rhs);
    const out: JsonObject = {};
    let any = false;
    if (lm) {
      for (const key of Object.keys(lm)) {
        if (lm[key] === undefined) continue;
        path.push(fieldElement(key));
        const merged = mergeWalk(fieldType(map, key), lm[key], rm?.[key], path);
        path.pop();
        if (merged !== undefined) {
          out[key] = merged as JsonValue;
          any = true;
        }
      }
    }
    if (rm) {
      for (const key of Object.keys(rm)) {
        if (rm[key] === undefined || (lm && lm[key] !== undefined)) continue;
        path.push(fieldElement(key));
        const merged = mergeWalk(fieldType(map, key), undefined, rm[key], path);
        path.pop();
        if (merged !== undefined) {
          out[key] = merged as JsonValue;
          any = true;
        }
      }
    }
    return any ? out : undefined;
  }
  if (form === 'list') {
    const list = node.list as ListType;
    const ll = asList(lhs);
    const rl = asList(rhs);
    if (list.atomic || ((ll ?? []).length === 0 && (rl ?? []).length === 0)) return keepRhs(lhs, rhs);
    return mergeListItems(list, ll ?? [], rl ?? [], path);
  }
  return keepRhs(lhs, rhs);
}

function keepRhs(lhs: unknown, rhs: unknown): unknown {
  return rhs !== undefined ? rhs : lhs;
}

/** The order of visitListItems: live items in place, applied items after the shared item that precedes them. */
function mergeListItems(list: ListType, lhs: JsonValue[], rhs: JsonValue[], path: PathElement[]): unknown {
  const rhsPEs: PathElement[] = [];
  const observedRHS = new Map<string, JsonValue>();
  const duplicateErrors: { path: string; message: string }[] = [];
  rhs.forEach((item, i) => {
    const pe = itemElementAt(list, item, i, path);
    if (observedRHS.has(pe.id)) {
      duplicateErrors.push({ path: pathToString(path), message: `duplicate entries for key ${pathToString([pe])}` });
      return;
    }
    observedRHS.set(pe.id, item);
    rhsPEs.push(pe);
  });
  if (duplicateErrors.length > 0) throw new TypedValueError(duplicateErrors);
  const lhsPEs: PathElement[] = [];
  const observedLHS = new Map<string, JsonValue>();
  lhs.forEach((item, i) => {
    const pe = itemElementAt(list, item, i, path);
    // A duplicated live item is not merged with the applied one: it is seen as null.
    observedLHS.set(pe.id, observedLHS.has(pe.id) ? null : item);
    lhsPEs.push(pe);
  });

  const sharedOrder = rhsPEs.filter((pe) => observedLHS.has(pe.id));
  let sharedIndex = 0;
  let nextShared: PathElement | undefined = sharedOrder[sharedIndex++];
  const mergedRHS = new Set<string>();
  const out: unknown[] = [];
  const mergeItem = (pe: PathElement, l: unknown, r: unknown) => {
    path.push(pe);
    const merged = mergeWalk(list.elementType, l, r, path);
    path.pop();
    if (merged !== undefined) out.push(merged);
  };
  let lI = 0;
  let rI = 0;
  while (lI < lhsPEs.length || rI < rhsPEs.length) {
    if (lI < lhsPEs.length && rI < rhsPEs.length) {
      const pe = lhsPEs[lI];
      if (pe.id === rhsPEs[rI].id) {
        mergedRHS.add(pe.id);
        mergeItem(pe, observedLHS.get(pe.id), observedRHS.get(pe.id));
        lI++;
        rI++;
        nextShared = sharedOrder[sharedIndex++];
        continue;
      }
      if (observedRHS.has(pe.id) && nextShared !== undefined && nextShared.id !== pe.id) {
        lI++;
        continue;
      }
    }
    if (lI < lhsPEs.length) {
      const pe = lhsPEs[lI];
      if (!observedRHS.has(pe.id)) {
        mergeItem(pe, lhs[lI], undefined);
        lI++;
        continue;
      } else if (mergedRHS.has(pe.id)) {
        lI++;
      }
    }
    if (rI < rhsPEs.length) {
      const pe = rhsPEs[rI];
      mergedRHS.add(pe.id);
      mergeItem(pe, observedLHS.get(pe.id), observedRHS.get(pe.id));
      rI++;
      if (nextShared !== undefined && nextShared.id === pe.id) nextShared = sharedOrder[sharedIndex++];
    }
  }
  return out.length > 0 ? out : undefined;
}

// ---------------------------------------------------------------------------------------------
// RemoveItems / ExtractItems

/** value without the fields of toRemove (typed.RemoveItems). */
export function removeItems(node: TypeNode, value: unknown, toRemove: FieldSet): unknown {
  return removeWalk(node, value, toRemove, false);
}

/** Only the fields of items of value (typed.ExtractItems). */
export function extractItems(node: TypeNode, value: unknown, items: FieldSet): unknown {
  return removeWalk(node, value, items, true);
}

function removeWalk(node: TypeNode, value: unknown, toRemove: FieldSet, extract: boolean): unknown {
  const form = formOf(node, value);
  if (form === 'leaf') return value;
  if (form === 'list') {
    const list = node.list as ListType;
    const items = asList(value);
    if (!items) return null;
    if (items.length === 0 || list.atomic) return extract ? value : null;
    const out: unknown[] = [];
    for (const item of items) {
      let pe: PathElement;
      try {
        pe = listItemElement(list, item);
      } catch {
        // Go goes on with an empty element, which matches nothing: the item stays (or is not extracted).
        if (!extract) out.push(item);
        continue;
      }
      const exact = toRemove.members.has(pe.id);
      const prefix = toRemove.withPrefix(pe);
      const hasPrefix = !prefix.empty();
      let kept: unknown = item;
      if (extract) {
        if (hasPrefix) kept = removeWalk(list.elementType, item, prefix, true);
        if (exact || hasPrefix) out.push(kept);
      } else {
        if (exact) continue;
        if (hasPrefix) kept = removeWalk(list.elementType, item, prefix, false);
        out.push(kept);
      }
    }
    return out.length > 0 ? out : null;
  }
  const map = node.map as MapType;
  const m = asMap(value);
  if (!m) return null;
  if (isEmptyMap(m) || map.atomic) return extract ? value : null;
  const out: JsonObject = {};
  let any = false;
  for (const key of Object.keys(m)) {
    const child = m[key];
    if (child === undefined) continue;
    const pe = fieldElement(key);
    const type = fieldType(map, key);
    if (toRemove.members.has(pe.id)) {
      if (extract) {
        out[key] = removeWalk(type, child, toRemove, true) as JsonValue;
        any = true;
      }
      continue;
    }
    const subset = toRemove.withPrefix(pe);
    let kept: unknown = child;
    if (!subset.empty()) kept = removeWalk(type, child, subset, extract);
    else if (extract) continue;
    out[key] = kept as JsonValue;
    any = true;
  }
  return any ? out : null;
}

// ---------------------------------------------------------------------------------------------
// EnsureNamedFieldsAreMembers

/** set with every named field that has children also a member (fieldpath.Set.EnsureNamedFieldsAreMembers). */
export function ensureNamedFieldsAreMembers(set: FieldSet, node: TypeNode | undefined): FieldSet {
  const out = new FieldSet();
  for (const [id, pe] of set.members) out.members.set(id, pe);
  for (const [id, child] of set.children) {
    let childType: TypeNode | undefined;
    if (child.pe.kind === 'field' && node?.map) {
      if (node.map.fields.has(child.pe.name)) out.members.set(id, child.pe);
      childType = node.map.fields.get(child.pe.name) ?? node.map.elementType;
    } else if (child.pe.kind === 'key' && node?.list) {
      childType = node.list.elementType;
    }
    out.children.set(id, { pe: child.pe, set: ensureNamedFieldsAreMembers(child.set, childType) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Validation of an applied configuration

/** What typed.AsTyped refuses in an applied configuration: undeclared fields, wrong forms, duplicate or keyless list items. */
export function validateApplied(node: TypeNode, value: unknown): void {
  const errors: { path: string; message: string }[] = [];
  validateWalk(node, value, [], errors);
  if (errors.length > 0) throw new TypedValueError(errors);
}

function validateWalk(node: TypeNode, value: unknown, path: PathElement[], errors: { path: string; message: string }[]): void {
  const where = () => pathToString(path);
  if (value === null) return;
  if (Array.isArray(value)) {
    if (!node.list) {
      if (!node.scalar || node.map) errors.push({ path: where(), message: `expected ${node.map ? 'map' : 'scalar'}, got list` });
      else errors.push({ path: where(), message: 'expected scalar, got list' });
      return;
    }
    const list = node.list;
    if (list.atomic) {
      value.forEach((item, i) => {
        path.push(indexElement(i));
        validateWalk(list.elementType, item, path, errors);
        path.pop();
      });
      return;
    }
    const seen = new Set<string>();
    for (let i = 0; i < value.length; i++) {
      const item = value[i] as JsonValue;
      let pe: PathElement;
      try {
        pe = listItemElement(list, item);
      } catch (e) {
        // Go bails out of the list: without an element, nothing deeper can be reported.
        errors.push({ path: where(), message: `element ${i}: ${(e as Error).message}` });
        return;
      }
      if (seen.has(pe.id)) errors.push({ path: where(), message: `duplicate entries for key ${pathToString([pe])}` });
      seen.add(pe.id);
      path.push(pe);
      validateWalk(list.elementType, item, path, errors);
      path.pop();
    }
    return;
  }
  if (isObject(value)) {
    if (!node.map) {
      errors.push({ path: where(), message: `expected ${node.list ? 'list' : 'scalar'}, got map` });
      return;
    }
    const map = node.map;
    for (const key of Object.keys(value)) {
      if (value[key] === undefined) continue;
      path.push(fieldElement(key));
      const type = map.fields.get(key) ?? map.elementType;
      if (!type) {
        // Go stops at the first undeclared field of a map.
        errors.push({ path: where(), message: 'field not declared in schema' });
        path.pop();
        return;
      }
      validateWalk(type, value[key], path, errors);
      path.pop();
    }
    return;
  }
  if (!node.scalar) {
    errors.push({ path: where(), message: `expected ${node.map ? 'map' : 'list'}, got ${JSON.stringify(value)}` });
    return;
  }
  // validateScalar's wording, Go's %T / %#v / %v of the value included.
  switch (node.scalar) {
    case 'numeric':
      if (typeof value !== 'number') errors.push({ path: where(), message: `expected numeric (int or float), got ${typeof value === 'boolean' ? 'bool' : 'string'}` });
      return;
    case 'string':
      if (typeof value !== 'string') errors.push({ path: where(), message: `expected string, got &value.valueUnstructured{Value:${goValueText(value)}}` });
      return;
    case 'boolean':
      if (typeof value !== 'boolean') errors.push({ path: where(), message: `expected boolean, got &{${goValueText(value)}}` });
      return;
    default:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// ReconcileFieldSetWithSchema

/**
 * A set recorded when a field was granular, fixed for a schema that made it atomic: the paths
 * below the now-atomic field become the field itself (typed.ReconcileFieldSetWithSchema).
 * Undefined when nothing changes. Going from atomic to granular needs nothing: the member stays.
 */
export function reconcileFieldSetWithSchema(set: FieldSet, node: TypeNode): FieldSet | undefined {
  const toRemove = new FieldSet();
  reconcileWalk(node, set, [], false, toRemove);
  if (toRemove.empty()) return undefined;
  return set.recursiveDifference(toRemove).union(toRemove);
}

function reconcileWalk(node: TypeNode, set: FieldSet | undefined, path: PathElement[], isAtomic: boolean, atomics: FieldSet): void {
  // Go's handleAtom order: a map, else a scalar, else a list.
  if (node.map) {
    const map = node.map;
    if (map.fields.size === 0 && map.elementType === DEDUCED) return;
    if (!isAtomic && map.atomic) {
      if (set && !set.empty()) atomics.insert(path);
      return;
    }
    if (set) reconcileItems(set, path, atomics, (pe) => (pe.kind === 'field' ? (map.fields.get(pe.name) ?? map.elementType) : map.elementType));
    return;
  }
  if (node.scalar || !node.list) return;
  const list = node.list;
  if (!isAtomic && list.atomic) {
    atomics.insert(path);
    return;
  }
  if (set) reconcileItems(set, path, atomics, () => list.elementType);
}

function reconcileItems(set: FieldSet, path: PathElement[], atomics: FieldSet, typeOf: (pe: PathElement) => TypeNode | undefined): void {
  const visit = (pe: PathElement, isMember: boolean) => {
    const type = typeOf(pe);
    if (!type) return;
    const child = set.children.get(pe.id)?.set;
    path.push(pe);
    reconcileWalk(type, child, path, isMember && !child, atomics);
    path.pop();
  };
  for (const child of set.children.values()) if (!set.members.has(child.pe.id)) visit(child.pe, false);
  for (const pe of set.members.values()) visit(pe, true);
}
