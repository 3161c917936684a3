import type { ApiGroupDefinition, KindDefinition, KindVersion } from '../../apis/types';
import { listKindOf, storageVersion } from '../../apis/versions';
import type { GroupResource } from '../status';
import type { StoredValue } from '../storage/types';
import type { KindRules, KubeObject } from './rules';
import { partialObjectMetadata } from './table';

/** Lists of fewer items are encoded each time (little to save); see KindCodec.listItemsBytes. */
const LIST_CACHE_MIN_ITEMS = 16;
const LIST_CACHE_MAX_ENTRIES = 64;
const LIST_CACHE_MAX_BYTES = 8 * 1024 * 1024;

const COMMA = 0x2c;
const CLOSE_BRACKET = 0x5d;
const CLOSE_BRACE = 0x7d;

/**
 * Everything the REST layer needs to know about one kind, derived from its definition and its
 * rules: storage keys, the storage version, and conversion between versions.
 *
 * Keys are `/<group>/<plural>/<namespace>/<name>` (namespaced) or `/<group>/<plural>/<name>`:
 * k8s.io/apiserver's keys (its REST options' resource prefix is `<group>/<resource>`), so that
 * under the same `--etcd-prefix` (`/registry/wardle.example.com`) the etcd keys are
 * sample-apiserver's.
 */
export class KindCodec {
  readonly storageVersion: string;
  readonly listKind: string;
  readonly gr: GroupResource;
  readonly namespaced: boolean;
  private readonly versions: ReadonlyMap<string, KindVersion>;
  /**
   * JSON texts of stored values, per form (`<version>` or `<version>|<meta version>`). A stored
   * value is frozen and replaced, never changed, on a write, so a text cached on it cannot go
   * stale; it is collected with the value.
   */
  private readonly texts = new Map<string, WeakMap<StoredValue, string>>();
  /**
   * The same texts UTF-8 encoded, for list bodies (copied, not re-encoded, per LIST). Each in its
   * own allocation: small `Buffer.from` results are slices of shared 8 KiB pool slabs, and a
   * long-lived slice would keep its whole slab alive.
   */
  private readonly encoded = new Map<string, WeakMap<StoredValue, Buffer>>();
  /** listItemsBytes' kept lists, by form and listing, least recently used first; and the bytes they hold. */
  private readonly lists = new Map<string, { readonly values: readonly StoredValue[]; readonly bytes: Buffer }>();
  private listsBytes = 0;

  constructor(
    readonly group: string,
    readonly definition: KindDefinition,
    readonly rules: KindRules = {},
  ) {
    this.storageVersion = storageVersion(definition).name;
    this.listKind = listKindOf(definition);
    this.gr = { group, resource: definition.plural };
    this.namespaced = definition.scope === 'Namespaced';
    this.versions = new Map(definition.versions.filter((v) => v.served).map((v) => [v.name, v]));
  }

  get kind(): string {
    return this.definition.kind;
  }

  /** The served version of that name, if any. */
  version(name: string): KindVersion | undefined {
    return this.versions.get(name);
  }

  apiVersion(version: string): string {
    return `${this.group}/${version}`;
  }

  /** The prefix of every key of the kind, or of those in one namespace. */
  prefix(namespace?: string): string {
    const base = resourcePrefix(this.group, this.definition);
    return this.namespaced && namespace ? `${base}${namespace}/` : base;
  }

  key(namespace: string, name: string): string {
    return `${this.prefix(this.namespaced ? namespace : undefined)}${name}`;
  }

  /** The internal form of an object of `version`. */
  toInternal(object: Readonly<KubeObject>, version: string): KubeObject {
    return this.rules.toInternal ? this.rules.toInternal(object, version) : (object as KubeObject);
  }

  /** The internal form rendered in `version`, `apiVersion` and `kind` set. */
  fromInternal(internal: Readonly<KubeObject>, version: string): KubeObject {
    const out = this.rules.fromInternal ? this.rules.fromInternal(internal, version) : (internal as KubeObject);
    return this.withTypeMeta(out, version);
  }

  /**
   * Converts between versions; returns `object` itself when both are the same (no copy on the
   * hot read path). Never mutates `object`.
   */
  convert(object: Readonly<KubeObject>, from: string, to: string): Readonly<KubeObject> {
    if (from === to) return object;
    return this.fromInternal(this.toInternal(object, from), to);
  }

  /** A stored object (storage version) as `version`. */
  fromStorage(object: Readonly<KubeObject>, version: string): Readonly<KubeObject> {
    return this.convert(object, this.storageVersion, version);
  }

  /**
   * The JSON text of a stored value as `version`, or, given `metaVersion`, of its
   * PartialObjectMetadata (`meta.k8s.io/<metaVersion>`). Computed once per frozen stored value and
   * form (lists, GETs and every watcher of an event share it); a value that is not frozen is
   * serialized every time.
   */
  storedJson(value: StoredValue, version: string, metaVersion?: string): string {
    const form = formOf(version, metaVersion);
    let text = this.texts.get(form)?.get(value);
    if (text !== undefined) return text;
    text = this.serialize(value, version, metaVersion);
    if (Object.isFrozen(value)) cacheOn(this.texts, form, value, text);
    return text;
  }

  /**
   * `storedJson` as UTF-8, cached the same way (apart from the text: a value only listed holds
   * its bytes, not both). Never write into the Buffer returned: it is shared.
   */
  storedBytes(value: StoredValue, version: string, metaVersion?: string): Buffer {
    const form = formOf(version, metaVersion);
    let bytes = this.encoded.get(form)?.get(value);
    if (bytes !== undefined) return bytes;
    const text = this.texts.get(form)?.get(value) ?? this.serialize(value, version, metaVersion);
    bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
    bytes.write(text);
    if (Object.isFrozen(value)) cacheOn(this.encoded, form, value, bytes);
    return bytes;
  }

  /**
   * `<item>,<item>,…]}`: the items of a list body in `version` (or their PartialObjectMetadata)
   * and the closing of the list, as UTF-8, copied from each value's storedBytes. Given a `listing`
   * (what was listed: the request target), the result is kept and answered again, without a copy
   * or a lookup per item, while that listing lists the very same stored values in the same order:
   * stored values are frozen and replaced on every write, so the same objects have the same bytes.
   * Kept: lists of at least LIST_CACHE_MIN_ITEMS frozen values, at most LIST_CACHE_MAX_ENTRIES
   * listings and LIST_CACHE_MAX_BYTES in all, the least recently used dropped first. Never write
   * into the Buffer returned: it may be shared.
   */
  listItemsBytes(values: readonly StoredValue[], version: string, metaVersion?: string, listing?: string): Buffer {
    const form = formOf(version, metaVersion);
    const key = listing === undefined || values.length < LIST_CACHE_MIN_ITEMS ? undefined : `${form}\u0000${listing}`;
    const kept = key === undefined ? undefined : this.lists.get(key);
    if (kept && sameValues(kept.values, values)) {
      // Most recently used last.
      this.lists.delete(key!);
      this.lists.set(key!, kept);
      return kept.bytes;
    }
    const cache = this.encoded.get(form);
    const items: Buffer[] = new Array<Buffer>(values.length);
    let length = Math.max(values.length - 1, 0) + 2; // the commas and `]}`
    let frozen = true;
    for (let index = 0; index < values.length; index++) {
      const value = values[index];
      const bytes = cache?.get(value) ?? this.storedBytes(value, version, metaVersion);
      items[index] = bytes;
      length += bytes.length;
      if (frozen && !Object.isFrozen(value)) frozen = false;
    }
    const keep = key !== undefined && frozen && length <= LIST_CACHE_MAX_BYTES;
    const body = keep ? Buffer.allocUnsafeSlow(length) : Buffer.allocUnsafe(length);
    let offset = 0;
    for (let index = 0; index < items.length; index++) {
      if (index > 0) body[offset++] = COMMA;
      body.set(items[index], offset);
      offset += items[index].length;
    }
    body[offset++] = CLOSE_BRACKET;
    body[offset++] = CLOSE_BRACE;
    if (offset !== length) throw new Error(`list body: wrote ${offset} of ${length} bytes`); // never a byte that was not written
    if (keep) this.keepList(key, values, body);
    return body;
  }

  private keepList(key: string, values: readonly StoredValue[], bytes: Buffer): void {
    const previous = this.lists.get(key);
    if (previous) {
      this.lists.delete(key);
      this.listsBytes -= previous.bytes.length;
    }
    for (const [oldest, entry] of this.lists) {
      if (this.lists.size < LIST_CACHE_MAX_ENTRIES && this.listsBytes + bytes.length <= LIST_CACHE_MAX_BYTES) break;
      this.lists.delete(oldest);
      this.listsBytes -= entry.bytes.length;
    }
    // A copy of the array: the caller's may be reused or changed.
    this.lists.set(key, { values: [...values], bytes });
    this.listsBytes += bytes.length;
  }

  private serialize(value: StoredValue, version: string, metaVersion: string | undefined): string {
    const object = this.fromStorage(value, version);
    return JSON.stringify(metaVersion === undefined ? object : partialObjectMetadata(object, metaVersion));
  }

  /** `apiVersion` and `kind` of `version`, first in key order as Kubernetes writes them. */
  withTypeMeta(object: Readonly<KubeObject>, version: string): KubeObject {
    const apiVersion = this.apiVersion(version);
    if (object.apiVersion === apiVersion && object.kind === this.kind) return object as KubeObject;
    const { apiVersion: _a, kind: _k, ...rest } = object;
    return { apiVersion, kind: this.kind, ...rest };
  }
}

function sameValues(a: readonly StoredValue[], b: readonly StoredValue[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

function formOf(version: string, metaVersion: string | undefined): string {
  return metaVersion === undefined ? version : `${version}|${metaVersion}`;
}

function cacheOn<T>(caches: Map<string, WeakMap<StoredValue, T>>, form: string, value: StoredValue, entry: T): void {
  let cache = caches.get(form);
  if (!cache) {
    cache = new WeakMap();
    caches.set(form, cache);
  }
  cache.set(value, entry);
}

/** The prefix of every storage key of a kind: `/wardle.example.com/flunders/`. */
function resourcePrefix(group: string, kind: KindDefinition): string {
  return `/${group}/${kind.plural}/`;
}

/**
 * The key prefix of each resource of an API group (`['/wardle.example.com/flunders/', …]`): what a watch
 * cache keeps one cache and one storage watch for.
 */
export function resourcePrefixes(api: ApiGroupDefinition): string[] {
  return api.kinds.map((kind) => resourcePrefix(api.group, kind));
}
