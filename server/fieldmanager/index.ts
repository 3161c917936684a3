/**
 * Server-side apply's core: which manager owns which fields (`metadata.managedFields`), how an
 * applied configuration merges onto the live object, and when it conflicts. A port of
 * sigs.k8s.io/structured-merge-diff (fieldpath, typed, merge) and
 * k8s.io/apimachinery/pkg/util/managedfields/internal (the chain of managers kube-apiserver
 * builds in NewDefaultFieldManager), pure (no I/O): the registry calls `update()` on every
 * ordinary write and `apply()` for `application/apply-patch+yaml`.
 *
 * Entries recorded in another apiVersion are compared in it when the options give the kind's
 * other versions and a conversion (`otherVersions`, `convert`), as Go converts; without them
 * every entry is compared as recorded. Not done here: defaulting of the applied result and
 * restoring system metadata (uid, creationTimestamp…) the applied object may overwrite — the
 * registry does both for what it stores, as Go's strategy and rest.BeforeUpdate do.
 */
import type { JSONSchemaProps } from '../../apis/types';
import { errors, StatusError } from '../status';
import { conflictStatus, toFieldConflicts, conflictMessage } from './conflict';
import { FieldSet } from './field-set';
import { decodeManagedFields, formatTime, Managed, ManagedFieldsError, managerIdentifier } from './managed-fields';
import { capUpdateManagers, cloneManaged, decodeLiveOrNew, LAST_APPLIED_ANNOTATION, MAX_UPDATE_MANAGERS, setManagedFields, stripFields, syncLastApplied } from './managers';
import { fieldElement } from './path-element';
import { compileRootSchema, TypeNode } from './schema';
import { compareObjects, toFieldSet, TypedValueError, validateApplied } from './typed';
import { ConflictsError, Updater, Versions } from './updater';

export { decodeManagedFields, ManagedFieldsError } from './managed-fields';
export { LAST_APPLIED_ANNOTATION, MAX_UPDATE_MANAGERS } from './managers';
export { FieldSet, FieldsV1Error } from './field-set';

/** A decoded Kubernetes object (JSON). */
export type Obj = Record<string, unknown>;

/** `Apply` for server-side apply, `Update` for every other write. */
export type ManagedFieldsOperation = 'Apply' | 'Update';

/** One entry of `metadata.managedFields`, as metav1.ManagedFieldsEntry (its JSON key order). */
export interface ManagedFieldsEntry {
  manager: string;
  operation: ManagedFieldsOperation;
  /** The apiVersion the fields are recorded in, e.g. `wardle.example.com/v1alpha1`. */
  apiVersion: string;
  /** RFC 3339, UTC, whole seconds. */
  time?: string;
  fieldsType: 'FieldsV1';
  /** The owned fields in the FieldsV1 encoding: `{"f:spec":{"f:replicas":{}}}`. */
  fieldsV1: Record<string, unknown>;
  /** `status` for a write to the status subresource; absent for the main resource. */
  subresource?: string;
}

/** One field an apply would take from another manager. */
export interface FieldConflict {
  /** The manager that owns the field now. */
  readonly manager: string;
  /** The field as Go prints a fieldpath.Path: `.spec.replicas`, `.spec.containers[name="x"].image`. */
  readonly field: string;
  /** How the owner wrote the field. */
  readonly operation: ManagedFieldsOperation;
  /** The owner's apiVersion, for an Update owner (Go names it in messages). */
  readonly apiVersion?: string;
  /** The owner's subresource, if it wrote through one. */
  readonly subresource?: string;
  /** The owner as Go's printManager words it: `"kubectl"`, `"m" using wardle.example.com/v1alpha1`. */
  readonly printedManager: string;
}

/**
 * 409 Conflict; `toStatus()` gives the metav1.Status kube-apiserver answers (message
 * `Apply failed with N conflict(s): conflict with "m" using <apiVersion>: .spec.x`, reason
 * Conflict, causes of type FieldManagerConflict with message and field).
 */
export class ApplyConflictError extends Error {
  readonly conflicts: readonly FieldConflict[];
  constructor(conflicts: readonly FieldConflict[]) {
    super(conflictMessage(conflicts));
    this.name = 'ApplyConflictError';
    this.conflicts = conflicts;
  }
  /** The Status to answer with (409, reason Conflict). */
  toStatus(): StatusError {
    return conflictStatus(this.conflicts);
  }
}

/**
 * An applied configuration that does not fit the schema, worded as Go's
 * `failed to create typed patch object (ns/name; group/version, Kind=K): .spec.x: field not declared in schema`.
 * kube-apiserver answers it as an error that is not a Status: 500, no reason, this message.
 */
export class TypedPatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TypedPatchError';
  }
  toStatus(): StatusError {
    return new StatusError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: '', code: 500 });
  }
}

export interface FieldManagerOptions {
  /**
   * The whole-object schema of the kind's version (KindVersion.schema): list-type /
   * list-map-keys / map-type / preserve-unknown-fields drive merging.
   */
  readonly schema: JSONSchemaProps;
  /** Written as each entry's apiVersion, e.g. `wardle.example.com/v1alpha1`. */
  readonly apiVersion: string;
  /**
   * Go's ResetFieldsStrategy: per subresource ('' = main resource, 'status'), the field paths a
   * write to it may not set or own, e.g. `{ '': [['status']], status: [['spec'], ['metadata', 'labels']] }`
   * when a status subresource exists (kube-apiserver's CRD strategy: main → status, status → spec).
   * No manager owns a reset field through a write to that subresource, a change to it never
   * conflicts, and `apply()` puts its live value back (absent on create); `update()` leaves
   * values alone (the registry's strategy resets them before).
   * @default - none
   */
  readonly resetFields?: Readonly<Record<string, readonly (readonly string[])[]>>;
  /** The kind, e.g. `Flunder`: an applied configuration of another kind is refused (400). @default - not checked */
  readonly kind?: string;
  /**
   * The kind's other versions: whole-object schema by apiVersion (`wardle.example.com/v1beta1`).
   * With `convert`, an entry recorded in another version is compared, pruned and reported in
   * that version, as Go converts with the CRD's conversion; an entry in a version not listed is
   * dropped (Go's missing-version rule).
   * @default - none: every entry is compared as recorded, whatever apiVersion it names (right
   *   while the versions share their field layout)
   */
  readonly otherVersions?: Readonly<Record<string, JSONSchemaProps>>;
  /**
   * Converts a whole object (its `apiVersion` says its version) into `toApiVersion`; throwing
   * means the version cannot be reached (its entries are dropped). Used only with `otherVersions`.
   * @default - none
   */
  readonly convert?: (object: Obj, toApiVersion: string) => Obj;
}

const CURRENT_OPERATION = 'current-operation';
const BEFORE_FIRST_APPLY = 'before-first-apply';

/** Tracks field ownership for one kind in one version. Build one per KindVersion and reuse it: the schema is compiled once. */
export class FieldManager {
  private readonly type: TypeNode;
  private readonly updaters = new Map<string, Updater>();
  private readonly resetPaths: Readonly<Record<string, readonly (readonly string[])[]>>;

  private readonly versions: Versions;

  constructor(readonly options: FieldManagerOptions) {
    this.type = compileRootSchema(options.schema);
    this.resetPaths = options.resetFields ?? {};
    this.versions = versionsOf(options, this.type);
    for (const [subresource, paths] of Object.entries(this.resetPaths)) {
      const ignored = FieldSet.of(...paths.filter((p) => p.length > 0).map((p) => p.map(fieldElement)));
      this.updaters.set(subresource, new Updater(this.versions, ignored.empty() ? undefined : ignored));
    }
  }

  private updater(subresource: string): Updater {
    let updater = this.updaters.get(subresource);
    if (!updater) {
      updater = new Updater(this.versions, undefined);
      this.updaters.set(subresource, updater);
    }
    return updater;
  }

  /**
   * An ordinary write (create, update, merge/JSON patch) by `manager`: returns a copy of
   * newObject whose metadata.managedFields records, as kube-apiserver does, which fields each
   * manager owns (an Update entry for manager with the fields it changed or set; fields it
   * changed are taken from other managers). live undefined = a create. Inputs are not modified
   * (the copy is shallow: only `metadata` is new).
   *
   * As Go: managedFields that newObject carries and that decode are taken as they are (so a
   * client may rewrite them, as kubectl's client-side-apply upgrade does; `[]` resets them),
   * else live's are used; a write to a subresource always uses live's. An existing object
   * without managedFields stays without until its first apply. If the object does not fit the
   * schema (a list item without its keys), live's managedFields are kept.
   */
  update(live: Obj | undefined, newObject: Obj, manager: string, subresource = '', now: Date = new Date()): Obj {
    const newMeta = newObject.metadata;
    if (!isRecord(newMeta)) return { ...newObject };
    const out: Obj = { ...newObject, metadata: { ...newMeta } };
    const outMeta = out.metadata as Obj;
    const liveMeta = isRecord(live?.metadata) ? (live?.metadata as Obj) : {};
    const managed = decodeLiveOrNew(liveMeta.managedFields, newMeta.managedFields, subresource !== '');
    delete outMeta.managedFields;
    const isCreate = live === undefined || !liveMeta.uid;
    // skipNonApplied: an existing object nobody tracks stays untracked until it is applied to.
    if (managed.fields.size === 0 && !isCreate) return out;
    try {
      const identifier = managerIdentifier({ manager: manager || 'unknown', operation: 'Update', apiVersion: this.options.apiVersion, subresource });
      this.recordUpdate(live === undefined ? {} : withoutManagedFields(live), out, managed, identifier, subresource, now);
    } catch (e) {
      if (!(e instanceof TypedValueError)) throw e;
      // UpdateNoErrors: keep what was known rather than lose it.
      if (liveMeta.managedFields !== undefined) outMeta.managedFields = liveMeta.managedFields;
      return out;
    }
    setManagedFields(outMeta, managed);
    return out;
  }

  /**
   * Server-side apply of `applied` (the request body, decoded from YAML) by `manager` onto live
   * (undefined = the object does not exist: create it from applied). Merges per the schema,
   * removes fields `manager` applied before and no longer applies (unless another manager owns
   * them), throws ApplyConflictError for fields owned by others with a different value unless
   * force (force takes them over). Returns the object to store with managedFields.
   *
   * Also as Go: the first apply to an object with no managedFields records its existing fields
   * as owned by `before-first-apply`; for the manager `kubectl`, conflicts on fields that the
   * `kubectl.kubernetes.io/last-applied-configuration` annotation sets to their live values are
   * not conflicts (the upgrade from client-side apply), and that annotation, if present, is
   * rewritten from the applied configuration. Throws a StatusError (400) for an applied object
   * of another apiVersion or kind or with managedFields, TypedPatchError for one that does not
   * fit the schema, ManagedFieldsError if live's managedFields cannot be read.
   */
  apply(live: Obj | undefined, applied: Obj, manager: string, force: boolean, subresource = '', now: Date = new Date()): Obj {
    this.checkApplied(applied);
    const liveObject = live === undefined ? {} : withoutManagedFields(live);
    let managed: Managed;
    try {
      managed = decodeManagedFields(isRecord(live?.metadata) ? (live?.metadata as Obj).managedFields : undefined);
    } catch (e) {
      if (e instanceof ManagedFieldsError) throw new ManagedFieldsError(`failed to decode managed fields: ${e.message}`);
      throw e;
    }
    if (managed.fields.size === 0) {
      const before = managerIdentifier({ manager: BEFORE_FIRST_APPLY, operation: 'Update', apiVersion: this.options.apiVersion, subresource });
      this.recordUpdate({}, liveObject, managed, before, subresource, now);
    }
    const identifier = managerIdentifier({ manager: manager || 'unknown', operation: 'Apply', subresource });
    let attempt = cloneManaged(managed);
    let result: Obj;
    try {
      result = this.recordApply(liveObject, applied, attempt, identifier, force, subresource, now);
    } catch (e) {
      if (!(e instanceof ConflictsError)) throw e;
      // lastAppliedManager: kubectl's upgrade from client-side apply.
      const allowed = manager === 'kubectl' ? this.allowedConflictsFromLastApplied(liveObject) : undefined;
      const remaining = allowed ? e.conflicts.filter((c) => !allowed.has(c.path)) : e.conflicts;
      if (remaining.length > 0) throw new ApplyConflictError(toFieldConflicts(remaining));
      attempt = cloneManaged(managed);
      result = this.recordApply(liveObject, applied, attempt, identifier, true, subresource, now);
    }
    result = structuredClone(result);
    if (manager === 'kubectl') syncLastApplied(result, applied);
    this.resetValues(result, liveObject, subresource);
    const meta = isRecord(result.metadata) ? (result.metadata as Obj) : ((result.metadata = {}) as Obj);
    delete meta.managedFields;
    setManagedFields(meta, attempt);
    return result;
  }

  private checkApplied(applied: Obj): void {
    const apiVersion = typeof applied.apiVersion === 'string' ? applied.apiVersion : '';
    const kind = typeof applied.kind === 'string' ? applied.kind : '';
    if (this.options.kind !== undefined && (kind !== this.options.kind || apiVersion !== this.options.apiVersion)) {
      throw errors.badRequest(`invalid object type: ${gvkString(apiVersion, kind)}`);
    }
    if (apiVersion !== this.options.apiVersion) {
      throw errors.badRequest(
        `Incorrect version specified in apply patch. Specified patch version: ${apiVersion}, expected: ${this.options.apiVersion}`,
      );
    }
    const meta = applied.metadata;
    if (isRecord(meta) && meta.managedFields !== undefined && meta.managedFields !== null) {
      throw errors.badRequest('metadata.managedFields must be nil');
    }
    try {
      validateApplied(this.type, applied);
    } catch (e) {
      if (!(e instanceof TypedValueError)) throw e;
      const name = isRecord(meta) && typeof meta.name === 'string' ? meta.name : '';
      const namespace = isRecord(meta) && typeof meta.namespace === 'string' ? meta.namespace : '';
      throw new TypedPatchError(`failed to create typed patch object (${namespace}/${name}; ${gvkString(apiVersion, kind)}): ${e.message}`);
    }
  }

  /** managedFieldsUpdater + stripMeta + structuredMerge for an Update; then capManagers. */
  private recordUpdate(live: unknown, newObject: unknown, managed: Managed, identifier: string, subresource: string, now: Date): void {
    const fields = managed.fields;
    this.updater(subresource).update(live, stripManagedFieldsOf(newObject), fields, CURRENT_OPERATION);
    stripFields(fields, CURRENT_OPERATION);
    const current = fields.get(CURRENT_OPERATION);
    if (current) {
      fields.delete(CURRENT_OPERATION);
      const previous = fields.get(identifier);
      fields.set(identifier, previous ? { ...current, set: current.set.union(previous.set) } : current);
      managed.times.set(identifier, formatTime(now));
    }
    capUpdateManagers(managed, MAX_UPDATE_MANAGERS);
  }

  /** managedFieldsUpdater + stripMeta + structuredMerge for an Apply. Returns the object to store (without managedFields). */
  private recordApply(live: Obj, applied: Obj, managed: Managed, identifier: string, force: boolean, subresource: string, now: Date): Obj {
    const merged = this.updater(subresource).apply(live, applied, managed.fields, identifier, force);
    stripFields(managed.fields, identifier);
    if (merged === undefined) return live;
    managed.times.set(identifier, formatTime(now));
    return (isRecord(merged) ? merged : {}) as Obj;
  }

  /** The fields the last-applied annotation sets to their live values: kubectl owned them client-side. */
  private allowedConflictsFromLastApplied(live: Obj): FieldSet | undefined {
    const annotations = isRecord(live.metadata) ? (live.metadata as Obj).annotations : undefined;
    const text = isRecord(annotations) ? annotations[LAST_APPLIED_ANNOTATION] : undefined;
    if (typeof text !== 'string' || text === '') return undefined;
    let lastApplied: unknown;
    try {
      lastApplied = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (!isRecord(lastApplied) || lastApplied.apiVersion !== this.options.apiVersion) return undefined;
    try {
      validateApplied(this.type, lastApplied);
      const set = toFieldSet(this.type, lastApplied);
      const c = compareObjects(this.type, lastApplied, live);
      return set.difference(c.modified).difference(c.added).difference(c.removed);
    } catch (e) {
      if (e instanceof TypedValueError) return undefined;
      throw e;
    }
  }

  /** Puts back the live value of each field the subresource may not write. */
  private resetValues(result: Obj, live: Obj, subresource: string): void {
    for (const path of this.resetPaths[subresource] ?? []) {
      if (path.length === 0) continue;
      let source: unknown = live;
      for (const name of path) source = isRecord(source) ? source[name] : undefined;
      let target: Obj = result;
      for (const name of path.slice(0, -1)) {
        if (!isRecord(target[name])) {
          if (source === undefined) break;
          target[name] = {};
        }
        target = target[name] as Obj;
      }
      const last = path[path.length - 1];
      if (source === undefined) delete target[last];
      else target[last] = structuredClone(source);
    }
  }
}

/** The updater's view of the kind's versions: with a conversion, each its own type; without, all as the current one. */
function versionsOf(options: FieldManagerOptions, type: TypeNode): Versions {
  const convert = options.convert;
  if (!convert || !options.otherVersions) {
    return { current: options.apiVersion, typeOf: () => type, convert: (object) => object };
  }
  const types = new Map<string, TypeNode>([[options.apiVersion, type]]);
  for (const [apiVersion, schema] of Object.entries(options.otherVersions)) if (apiVersion !== options.apiVersion) types.set(apiVersion, compileRootSchema(schema));
  return { current: options.apiVersion, typeOf: (apiVersion) => types.get(apiVersion), convert: (object, apiVersion) => convert(object as Obj, apiVersion) };
}

function isRecord(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** GroupVersionKind.String: `wardle.example.com/v1alpha1, Kind=Flunder`, `/v1, Kind=Secret`. */
function gvkString(apiVersion: string, kind: string): string {
  const slash = apiVersion.indexOf('/');
  const [group, version] = slash < 0 ? ['', apiVersion] : [apiVersion.slice(0, slash), apiVersion.slice(slash + 1)];
  return `${group}/${version}, Kind=${kind}`;
}

function withoutManagedFields(object: Obj): Obj {
  const meta = object.metadata;
  if (!isRecord(meta) || !('managedFields' in meta)) return object;
  const rest = { ...meta };
  delete rest.managedFields;
  return { ...object, metadata: rest };
}

function stripManagedFieldsOf(object: unknown): unknown {
  return isRecord(object) ? withoutManagedFields(object) : object;
}

