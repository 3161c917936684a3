/**
 * A set of field paths, as structured-merge-diff's fieldpath.Set: a trie whose nodes hold
 * `members` (paths that end here) and `children` (paths that go on). Sets are values: the
 * operations return new sets (sharing unchanged subtrees) and never modify their inputs; only
 * `insert` modifies, and only sets under construction.
 */
import { compareElements, Path, PathElement, parsePathElement, PathElementSyntaxError, pathToString } from './path-element';

interface Child {
  readonly pe: PathElement;
  readonly set: FieldSet;
}

export class FieldSet {
  /** Paths that end at this node, by element id. */
  readonly members = new Map<string, PathElement>();
  /** Paths that go on below this node, by element id. */
  readonly children = new Map<string, Child>();

  static of(...paths: Path[]): FieldSet {
    const set = new FieldSet();
    for (const p of paths) set.insert(p);
    return set;
  }

  insert(path: Path): void {
    if (path.length > 0) this.insertFrom(path, 0);
  }

  private insertFrom(path: Path, i: number): void {
    if (i === path.length - 1) this.members.set(path[i].id, path[i]);
    else this.descend(path[i]).insertFrom(path, i + 1);
  }

  /** The child set at pe, created if missing (construction only). */
  descend(pe: PathElement): FieldSet {
    let child = this.children.get(pe.id);
    if (!child) {
      child = { pe, set: new FieldSet() };
      this.children.set(pe.id, child);
    }
    return child.set;
  }

  has(path: Path): boolean {
    return path.length > 0 && this.hasFrom(path, 0);
  }

  private hasFrom(path: Path, i: number): boolean {
    if (i === path.length - 1) return this.members.has(path[i].id);
    const child = this.children.get(path[i].id);
    return child !== undefined && child.set.hasFrom(path, i + 1);
  }

  empty(): boolean {
    if (this.members.size > 0) return false;
    for (const child of this.children.values()) if (!child.set.empty()) return false;
    return true;
  }

  /** The paths below pe, without the pe prefix (empty if none). */
  withPrefix(pe: PathElement): FieldSet {
    return this.children.get(pe.id)?.set ?? EMPTY;
  }

  union(other: FieldSet): FieldSet {
    if (other.members.size === 0 && other.children.size === 0) return this;
    if (this.members.size === 0 && this.children.size === 0) return other;
    const out = new FieldSet();
    for (const [id, pe] of this.members) out.members.set(id, pe);
    for (const [id, pe] of other.members) out.members.set(id, pe);
    for (const [id, child] of this.children) out.children.set(id, child);
    for (const [id, child] of other.children) {
      const mine = out.children.get(id);
      out.children.set(id, mine ? { pe: mine.pe, set: mine.set.union(child.set) } : child);
    }
    return out;
  }

  intersection(other: FieldSet): FieldSet {
    const out = new FieldSet();
    for (const [id, pe] of this.members) if (other.members.has(id)) out.members.set(id, pe);
    for (const [id, child] of this.children) {
      const theirs = other.children.get(id);
      if (!theirs) continue;
      const common = child.set.intersection(theirs.set);
      if (!common.empty()) out.children.set(id, { pe: child.pe, set: common });
    }
    return out;
  }

  /** Paths of this set not in other (a member of other does not remove the paths below it). */
  difference(other: FieldSet): FieldSet {
    const out = new FieldSet();
    for (const [id, pe] of this.members) if (!other.members.has(id)) out.members.set(id, pe);
    for (const [id, child] of this.children) {
      const theirs = other.children.get(id);
      if (!theirs) {
        out.children.set(id, child);
        continue;
      }
      const rest = child.set.difference(theirs.set);
      if (!rest.empty()) out.children.set(id, { pe: child.pe, set: rest });
    }
    return out;
  }

  /** Like difference, but a member of other also removes every path below it. */
  recursiveDifference(other: FieldSet): FieldSet {
    const out = new FieldSet();
    for (const [id, pe] of this.members) if (!other.members.has(id)) out.members.set(id, pe);
    for (const [id, child] of this.children) {
      if (other.members.has(id)) continue;
      const theirs = other.children.get(id);
      if (!theirs) {
        out.children.set(id, child);
        continue;
      }
      const rest = child.set.recursiveDifference(theirs.set);
      if (!rest.empty()) out.children.set(id, { pe: child.pe, set: rest });
    }
    return out;
  }

  /** Only the members that have no children (fieldpath.Set.Leaves). */
  leaves(): FieldSet {
    const out = new FieldSet();
    for (const [id, pe] of this.members) if (!this.children.has(id)) out.members.set(id, pe);
    for (const [id, child] of this.children) {
      const leaves = child.set.leaves();
      if (!leaves.empty()) out.children.set(id, { pe: child.pe, set: leaves });
    }
    return out;
  }

  equals(other: FieldSet): boolean {
    if (this.members.size !== other.members.size || this.children.size !== other.children.size) return false;
    for (const id of this.members.keys()) if (!other.members.has(id)) return false;
    for (const [id, child] of this.children) {
      const theirs = other.children.get(id);
      if (!theirs || !child.set.equals(theirs.set)) return false;
    }
    return true;
  }

  /** Every path, in Go's order: this node's members sorted, then each child's paths. */
  paths(): Path[] {
    const out: Path[] = [];
    this.collect([], out);
    return out;
  }

  private collect(prefix: PathElement[], out: Path[]): void {
    for (const pe of sortedElements(this.members.values())) out.push([...prefix, pe]);
    for (const child of sortedChildren(this.children.values())) {
      prefix.push(child.pe);
      child.set.collect(prefix, out);
      prefix.pop();
    }
  }

  /** The paths, one per line, as fieldpath.Set.String (for messages and tests). */
  toString(): string {
    return this.paths().map(pathToString).join('\n');
  }

  /**
   * The FieldsV1 encoding, as fieldpath.Set.ToJSON writes it: `f:`/`k:`/`v:`/`i:` keys in
   * PathElement order, `{}` for a member, `"."` for a node that is both a member and a parent.
   * JavaScript keeps this insertion order when the object is serialized.
   */
  toFieldsV1(): Record<string, unknown> {
    return this.emit(false);
  }

  private emit(includeSelf: boolean): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    if (includeSelf && (this.members.size > 0 || this.children.size > 0)) out['.'] = {};
    const entries: { pe: PathElement; child?: FieldSet; member: boolean }[] = [];
    for (const [id, pe] of this.members) entries.push({ pe, member: true, child: this.children.get(id)?.set });
    for (const [id, child] of this.children) if (!this.members.has(id)) entries.push({ pe: child.pe, member: false, child: child.set });
    entries.sort((a, b) => compareElements(a.pe, b.pe));
    for (const entry of entries) out[entry.pe.id] = entry.child ? entry.child.emit(entry.member) : {};
    return out;
  }

  /**
   * Reads FieldsV1 as fieldpath.Set.FromJSON: `.` marks the node a member, an empty object is a
   * member, element types this version does not know are dropped. Throws FieldsV1Error naming
   * the path to the bad key.
   */
  static fromFieldsV1(fields: unknown): FieldSet {
    if (!isPlainObject(fields)) throw new FieldsV1Error(`expected a JSON object, got ${describe(fields)}`);
    const set = new FieldSet();
    readInto(set, fields, '');
    return set;
  }
}

const EMPTY = new FieldSet();

/** A FieldsV1 value that cannot be read. */
export class FieldsV1Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FieldsV1Error';
  }
}

/** Reads the entries of one FieldsV1 object into set; returns whether the object marks its own node a member. */
function readInto(set: FieldSet, fields: Record<string, unknown>, where: string): boolean {
  let member = false;
  let any = false;
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (key === '.') {
      member = true;
      continue;
    }
    if (!isPlainObject(value)) throw new FieldsV1Error(`${where}${key}: expected a JSON object, got ${describe(value)}`);
    let pe: PathElement | undefined;
    try {
      pe = parsePathElement(key);
    } catch (e) {
      if (e instanceof PathElementSyntaxError) throw new FieldsV1Error(`${where}${JSON.stringify(key)}: ${e.message}`);
      throw e;
    }
    if (!pe) continue;
    const child = new FieldSet();
    const childIsMember = readInto(child, value, `${where}${key}/`);
    if (childIsMember) set.members.set(pe.id, pe);
    if (child.members.size > 0 || child.children.size > 0) {
      const existing = set.children.get(pe.id);
      set.children.set(pe.id, { pe, set: existing ? existing.set.union(child) : child });
    }
    any ||= childIsMember || child.members.size > 0 || child.children.size > 0;
  }
  // An object with no children (`{}`, or only keys of unknown types) is a member.
  return member || !any;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `${typeof value} ${JSON.stringify(value)}`;
}

function sortedElements(elements: Iterable<PathElement>): PathElement[] {
  return [...elements].sort(compareElements);
}

function sortedChildren(children: Iterable<Child>): Child[] {
  return [...children].sort((a, b) => compareElements(a.pe, b.pe));
}
