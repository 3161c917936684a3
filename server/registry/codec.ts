import type { ApiGroupDefinition, KindDefinition, KindVersion } from '../../apis/types';
import { listKindOf, storageVersion } from '../../apis/versions';
import type { GroupResource } from '../status';
import type { StoredValue } from '../storage/types';
import type { KindRules, KubeObject } from './rules';
import { partialObjectMetadata } from './table';

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
