import { randomUUID } from 'node:crypto';
import type { KindVersion } from '../../apis/types';
import type { AuditAnnotations } from '../admission/audit-annotations';
import type { AdmissionAttributes, AdmissionContext, AdmissionOperation, AdmissionPlugin } from '../admission/types';
import type { UserInfo } from '../auth/types';
import {
  ExpiredError,
  GetOptions,
  KeyExistsError,
  ListOptions,
  NotFoundError,
  RevisionMismatchError,
  Storage,
  StorageQuotaExceededError,
  StorageUnavailableError,
  StoredObject,
  StoredValue,
  TooLargeRevisionError,
} from '../storage/types';
import { GroupResource, StatusError, errors } from '../status';
import { deepFreeze } from '../storage/frozen';
import { FieldManager, ManagedFieldsError, decodeManagedFields } from '../fieldmanager';
import { CelValidator, compileVersionCel, validateCelRules } from './cel';
import type { KindCodec } from './codec';
import type { FieldError } from './field-errors';
import { ListQuery, decodeContinue, encodeContinue, expiredContinue, notOlderThan, selectorFilter } from './list-options';
import { Meta, generateName, now, pruneObjectMeta, validateObjectMeta } from './metadata';
import { KubeObject, isObject } from './rules';
import { pruneAndDefault, validateAgainstSchema } from './schema';
import { scaleFieldProblems } from './scale';

/**
 * The generic store of one kind, as k8s.io/apiserver's registry/generic/registry/store.go: the
 * rules every write follows (system metadata, defaulting, validation, admission, generateName,
 * compare-and-swap retries, finalizers, dry run) over a `Storage`, driven by the kind's
 * definition and rules. It takes plain values and options and throws `StatusError`; decoding
 * requests and encoding answers is the endpoint handlers' job (handlers.ts). Nothing here names a kind.
 */

export interface StoreDeps {
  readonly storage: Storage;
  /** Admission plugins in order; each runs for the operations it declares. */
  readonly admission: readonly AdmissionPlugin[];
  readonly admissionContext: AdmissionContext;
}

/** What the rules need to know of a request: where, in which version, by whom. */
export interface OperationContext {
  /** The request's namespace; '' for a cluster-scoped kind (or all namespaces, for a list). */
  readonly namespace: string;
  /** The version the client speaks: objects come in and go out in it. */
  readonly version: KindVersion;
  /** '' or 'status'. */
  readonly subresource: string;
  readonly user: UserInfo;
  /**
   * True once nobody waits for the answer any more (the request timed out and got its 504): the
   * store then stops before a write it has not made yet, as a cancelled request context stops
   * Go's store before its etcd call. A write already sent is not taken back.
   * @default - never
   */
  readonly abandoned?: () => boolean;
  /** The request's audit annotations, for admission to add to. @default - none kept */
  readonly auditAnnotations?: AuditAnnotations;
}

export type FieldValidation = 'Ignore' | 'Warn' | 'Strict';

export interface WriteOptions {
  readonly dryRun: boolean;
  readonly fieldValidation: FieldValidation;
  /**
   * The writer's name in `metadata.managedFields` (the `fieldManager` option, or the
   * User-Agent's prefix): its Update entry records the fields the write set or changed.
   * @default '' (the field manager's name for nobody)
   */
  readonly fieldManager?: string;
}

/** The object written (storage version) and the warnings for the client. */
export interface WriteResult {
  readonly value: StoredValue;
  readonly warnings: readonly string[];
  /** True when an update created the object (server-side apply to a missing object: 201). */
  readonly created?: boolean;
}

/** The options of a GET, as metav1.GetOptions. */
export interface GetQuery {
  /** '' (a consistent read), "0" (any revision) or a revision N (not older than N), checked by the handler. */
  readonly resourceVersion: string;
}

/** A list page: stored values and the ListMeta to answer with. */
export interface ListedObjects {
  readonly items: readonly StoredValue[];
  readonly listMeta: Readonly<Record<string, unknown>>;
}

/**
 * The new object of an update, as rest.UpdatedObjectInfo: a whole object (PUT), or a function
 * of the current object (PATCH), re-run on every compare-and-swap retry.
 */
export type UpdatedObjectInfo =
  | {
      /** The object sent, in the request version, its name and namespace already checked against the request. */
      readonly object: KubeObject;
    }
  | {
      /**
       * The new object from the current one (request version, a copy the function may change),
       * its name and namespace checked against the request. A `metadata.resourceVersion` in it
       * is a precondition.
       */
      readonly update: (current: KubeObject) => KubeObject;
      /**
       * The function records `metadata.managedFields` itself (server-side apply): the store adds
       * no Update entry. @default false
       */
      readonly managesFields?: boolean;
      /**
       * The object to create when none exists (request version, name and namespace checked), as
       * the patcher's forceAllowCreate for apply: it is created as by `create` (201).
       * @default - a missing object is 404
       */
      readonly create?: () => KubeObject;
      /**
       * Admission sees the write as this view of the object (a subresource with a kind of its
       * own, as /scale's Scale). @default - the object itself
       */
      readonly admissionView?: AdmissionView;
    };

/**
 * A subresource's own object made from the resource's, as ScaleREST's admission wrappers make an
 * autoscaling/v1 Scale of a custom resource for admission (toScaleUpdateValidation and the
 * scaleUpdatedObjectInfo transformers): objects in the request version.
 */
export interface AdmissionView {
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  /** The view of an object (a new value). */
  view(object: Readonly<KubeObject>): KubeObject;
  /** `object` (a copy, changed in place) with what mutating admission changed in its view written back; throws a StatusError for a view it cannot take. */
  apply(object: KubeObject, view: Readonly<KubeObject>): KubeObject;
}

export interface DeleteOptions {
  readonly preconditions?: { readonly uid?: string; readonly resourceVersion?: string };
  readonly propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
  readonly orphanDependents?: boolean;
  readonly dryRun: boolean;
}

/** Updates retried on a compare-and-swap failure before answering 409 (GuaranteedUpdate retries without bound; a cap keeps a hot key from starving a request). */
const MAX_UPDATE_ATTEMPTS = 16;
const MAX_GENERATE_NAME_ATTEMPTS = 8;

const SYSTEM_META_FIELDS = ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation'] as const;

export function metaOf(object: KubeObject): Meta {
  if (object.metadata === undefined || object.metadata === null) object.metadata = {};
  if (!isObject(object.metadata)) throw errors.badRequest(`metadata must be an object, not ${JSON.stringify(object.metadata)}`);
  return object.metadata;
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((v, i) => jsonEqual(v, (b as unknown[])[i]));
  const ak = Object.keys(a as object).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const bk = Object.keys(b as object).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return ak.length === bk.length && ak.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Everything but metadata (and status, when it is a subresource): what bumps `generation`. */
function specOf(object: Readonly<KubeObject>, withStatus: boolean): Record<string, unknown> {
  const { metadata: _m, apiVersion: _a, kind: _k, status, ...rest } = object;
  return withStatus ? rest : { ...rest, status };
}

/** The generation an update leaves, as the strategies' PrepareForUpdate: the stored one, one more when the spec changed. */
function generationAfterUpdate(next: Readonly<KubeObject>, old: Readonly<KubeObject>, withStatus: boolean): number | undefined {
  const stored = (old.metadata as Meta | undefined)?.generation;
  const generation = typeof stored === 'number' ? stored : undefined;
  return jsonEqual(specOf(next, withStatus), specOf(old, withStatus)) ? generation : (generation ?? 0) + 1;
}

/** The finalizers after a delete request, as the store's deletionFinalizersForGarbageCollection. */
function finalizersOnDelete(meta: Meta, options: DeleteOptions): string[] {
  const current = Array.isArray(meta.finalizers) ? (meta.finalizers as string[]) : [];
  const orphan =
    options.propagationPolicy !== undefined ? options.propagationPolicy === 'Orphan' : options.orphanDependents !== undefined ? options.orphanDependents : current.includes('orphan');
  const foreground = options.propagationPolicy !== undefined ? options.propagationPolicy === 'Foreground' : current.includes('foregroundDeletion');
  const kept = current.filter((f) => f !== 'orphan' && f !== 'foregroundDeletion');
  if (orphan) kept.push('orphan');
  if (foreground) kept.push('foregroundDeletion');
  return kept;
}

/**
 * The storage options of a list, as the cacher and etcd3 store read ListOptions:
 * - `resourceVersion=""`: a consistent read (the current revision);
 * - `"0"`: any revision (`minRevision: 0`; a watch cache answers from memory);
 * - `N`, `resourceVersionMatch` `NotOlderThan`, or unset without `limit`: not older than N (`minRevision: N`);
 * - `N`, `Exact`, or N > 0 with `limit` and no match (upstream's legacy case): the snapshot at N (`revision: N`);
 * - a continue token: the snapshot it was taken at, from the key it names.
 */
function storageListOptions(options: ListQuery, prefix: string): ListOptions {
  const filter = selectorFilter(options);
  const page: ListOptions = { ...(options.limit ? { limit: options.limit } : {}), ...(filter ? { filter } : {}) };
  if (options.continueToken) {
    const decoded = decodeContinue(options.continueToken, prefix);
    return { ...page, startKey: decoded.startKey, ...(decoded.revision === -1 ? {} : { revision: decoded.revision }) };
  }
  if (options.resourceVersion === '') return page;
  const requested = Number(options.resourceVersion);
  // Upstream's legacy case (etcd3 GetList, KEP-2523): a paginated list at N > 0 with no match is Exact.
  const legacyExact = options.resourceVersionMatch === '' && page.limit !== undefined && requested > 0;
  return options.resourceVersionMatch === 'Exact' || legacyExact ? { ...page, revision: requested } : { ...page, minRevision: requested };
}

/**
 * Runs one storage-backed operation and turns what the store says about itself into a
 * metav1.Status: unreachable → 503 (nothing written), no answer to a write → 504 ServerTimeout
 * (it may have been written), a revision it cannot reach → 504 Too large resource version.
 */
async function interpretingStorageErrors<T>(codec: KindCodec, operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof StorageUnavailableError) {
      throw error.indeterminate ? errors.serverTimeout(codec.gr, operation) : errors.serviceUnavailable(error.message);
    }
    if (error instanceof TooLargeRevisionError) throw errors.tooLargeResourceVersion(error.requestedRevision, error.currentRevision);
    if (error instanceof StorageQuotaExceededError) throw errors.storageQuotaExceeded(error.message);
    throw error;
  }
}

export class GenericStore {
  /** Each version's x-kubernetes-validations, compiled once here, at start. */
  private readonly celValidators = new Map<string, CelValidator | undefined>();
  /** Each version's field manager (managedFields in that version's terms), built once here. */
  private readonly fieldManagers = new Map<string, FieldManager>();

  constructor(
    readonly codec: KindCodec,
    private readonly deps: StoreDeps,
  ) {
    for (const version of codec.definition.versions) this.celValidators.set(version.name, compileVersionCel(codec.kind, version));
    // Entries recorded through another version are compared in it, converted as the kind converts.
    const versionNames = new Map(codec.definition.versions.map((v) => [codec.apiVersion(v.name), v.name]));
    const convert = (object: KubeObject, toApiVersion: string): KubeObject => {
      const from = versionNames.get(String(object.apiVersion));
      const to = versionNames.get(toApiVersion);
      if (from === undefined || to === undefined) throw new Error(`${this.codec.kind} has no version ${from === undefined ? String(object.apiVersion) : toApiVersion}`);
      return codec.convert(object, from, to) as KubeObject;
    };
    for (const version of codec.definition.versions) {
      // The CRD strategies' ResetFields: with a status subresource, the main resource cannot set
      // status and /status cannot set spec (a write there keeps their live values, unowned).
      const resetFields = version.subresources?.status === true ? { '': [['status']], status: [['spec']] } : undefined;
      const otherVersions = Object.fromEntries(codec.definition.versions.filter((v) => v !== version).map((v) => [codec.apiVersion(v.name), v.schema]));
      this.fieldManagers.set(
        version.name,
        new FieldManager({ schema: version.schema, apiVersion: codec.apiVersion(version.name), kind: codec.kind, otherVersions, convert, ...(resetFields ? { resetFields } : {}) }),
      );
    }
  }

  /** The field manager of objects in `version` (server-side apply merges with it). */
  fieldManager(version: KindVersion): FieldManager {
    const manager = this.fieldManagers.get(version.name);
    if (!manager) throw errors.internal(`no field manager for version "${version.name}" of ${this.codec.kind}`);
    return manager;
  }

  get storage(): Storage {
    return this.deps.storage;
  }

  /**
   * One object, read as the cacher and etcd3 store read GetOptions: `resourceVersion` ''
   * (the default) is a consistent read; "0" any revision (`minRevision: 0`: a watch cache
   * answers from memory); N not older than N (`minRevision: N`; 504 when the store cannot reach it).
   */
  async get(namespace: string, name: string, options: GetQuery = { resourceVersion: '' }): Promise<StoredValue> {
    const storageOptions: GetOptions = notOlderThan(options.resourceVersion);
    return interpretingStorageErrors(this.codec, 'get', async () => {
      const stored = await this.deps.storage.get(this.codec.key(namespace, name), storageOptions);
      if (!stored) throw errors.notFound(this.codec.gr, name);
      return stored.value;
    });
  }

  /** One page of a list, `namespace` '' for every namespace. */
  async list(namespace: string, options: ListQuery): Promise<ListedObjects> {
    const prefix = this.codec.prefix(namespace || undefined);
    const storageOptions = storageListOptions(options, prefix);
    return interpretingStorageErrors(this.codec, 'list', async () => {
      let result;
      try {
        result = await this.deps.storage.list(prefix, storageOptions);
      } catch (error) {
        if (error instanceof ExpiredError) {
          if (storageOptions.startKey !== undefined) throw expiredContinue(storageOptions.startKey, prefix);
          throw errors.gone('The resourceVersion for the provided list is too old.');
        }
        throw error;
      }
      const listMeta: Record<string, unknown> = { resourceVersion: String(result.revision) };
      if (result.more && result.nextKey !== undefined) {
        listMeta.continue = encodeContinue(result.revision, result.nextKey, prefix);
        if (result.remaining !== undefined) listMeta.remainingItemCount = result.remaining;
      }
      return { items: result.items.map((item) => item.value), listMeta };
    });
  }

  /**
   * Creates an object sent in the request version (its namespace already the request's), as
   * the store's Create with rest.BeforeCreate: defaulting, validation, system fields,
   * admission, then a create transaction (retried with a new name for `generateName`).
   * `managedFields` records the create as the manager's Update entry, unless `fieldsManaged`
   * (server-side apply has recorded its Apply entry).
   */
  async create(context: OperationContext, body: KubeObject, options: WriteOptions, fieldsManaged = false): Promise<WriteResult> {
    const { codec } = this;
    const prepared = this.prepareIncoming(context, body, options.fieldValidation);
    const warnings = prepared.warnings;
    let object = prepared.object;
    let meta = metaOf(object);

    // System fields (rest.BeforeCreate / FillObjectMetaSystemFields): the client cannot set them.
    for (const field of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink', 'resourceVersion']) delete meta[field];
    if (context.version.subresources?.status === true) delete object.status; // create cannot set status
    if (!fieldsManaged) {
      object = this.trackUpdate(context, undefined, object, options);
      meta = metaOf(object);
    }
    this.validateByCel(meta, context.version.name, object);
    const internal = codec.toInternal(object, context.version.name);
    this.validateByRules(meta, internal);
    const stored = codec.fromInternal(internal, codec.storageVersion);
    const storedMeta = metaOf(stored);

    return interpretingStorageErrors(codec, 'create', async () => {
      await this.admit(this.admissionAttributes(context, 'CREATE', typeof storedMeta.name === 'string' ? storedMeta.name : '', options.dryRun, stored, undefined, warnings));
      stopIfAbandoned(context, codec.gr, 'create');

      storedMeta.uid = randomUUID();
      storedMeta.creationTimestamp = now();
      storedMeta.generation = 1;
      const generate = !storedMeta.name && typeof storedMeta.generateName === 'string' ? storedMeta.generateName : undefined;
      for (let attempt = 1; ; attempt++) {
        if (generate !== undefined) storedMeta.name = generateName(generate);
        const name = storedMeta.name as string;
        const key = codec.key(context.namespace, name);
        if (options.dryRun) {
          if (await this.deps.storage.get(key)) throw errors.alreadyExists(codec.gr, name);
          return { value: stored, warnings };
        }
        try {
          const created = await this.deps.storage.create(key, { ...stored, metadata: { ...storedMeta } });
          return { value: created.value, warnings };
        } catch (error) {
          if (!(error instanceof KeyExistsError)) throw error;
          if (generate === undefined || attempt >= MAX_GENERATE_NAME_ATTEMPTS) throw errors.alreadyExists(codec.gr, name);
        }
      }
    });
  }

  /**
   * Updates (PUT) or patches (PATCH) one object through guaranteedUpdate. A resourceVersion in
   * the new object is a precondition (409 when it no longer matches).
   */
  async update(context: OperationContext, name: string, info: UpdatedObjectInfo, options: WriteOptions): Promise<WriteResult> {
    const { codec } = this;
    let warnings: readonly string[] = [];
    let created = false;
    let tryUpdate: (old: StoredObject) => Promise<KubeObject>;
    let createMissing: (() => Promise<StoredValue | undefined>) | undefined;
    if ('object' in info) {
      const meta = metaOf(info.object);
      const precondition = typeof meta.resourceVersion === 'string' && meta.resourceVersion !== '' ? meta.resourceVersion : undefined;
      if (precondition !== undefined && !/^\d+$/.test(precondition)) {
        throw errors.badRequest(`metadata.resourceVersion: Invalid value: "${precondition}": must be a resourceVersion this server gave out`);
      }
      const prepared = this.prepareIncoming(context, info.object, options.fieldValidation);
      warnings = prepared.warnings;
      tryUpdate = async (old) => {
        if (precondition !== undefined && precondition !== String(old.modRevision)) throw errors.conflict(codec.gr, name);
        const attemptWarnings = [...prepared.warnings]; // admission adds its own, once per attempt
        warnings = attemptWarnings;
        const live = codec.fromStorage(old.value, context.version.name);
        const incoming = this.trackUpdate(context, live, structuredClone(prepared.object), options);
        return this.updatedObject(context, name, incoming, old, options.dryRun, attemptWarnings);
      };
    } else {
      const { create } = info;
      if (create) {
        // Apply's createOnApply: the create path; another client creating it first sends this back to updating.
        createMissing = async () => {
          try {
            const result = await this.create(context, create(), options, info.managesFields === true);
            warnings = result.warnings;
            created = true;
            return result.value;
          } catch (error) {
            if (error instanceof StatusError && error.status.reason === 'AlreadyExists') return undefined;
            throw error;
          }
        };
      }
      tryUpdate = async (old) => {
        const live = codec.fromStorage(old.value, context.version.name);
        const current = structuredClone(live) as KubeObject;
        const updated = info.update(current);
        // A resourceVersion in the patch is a precondition: it no longer matches once the object
        // changed, so a retry after a compare-and-swap miss ends here with 409.
        const meta = metaOf(updated);
        const patchedVersion = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '';
        if (patchedVersion !== '' && patchedVersion !== String(old.modRevision)) throw errors.conflict(codec.gr, name);
        const prepared = this.prepareIncoming(context, updated, options.fieldValidation);
        warnings = prepared.warnings;
        const incoming = info.managesFields === true ? prepared.object : this.trackUpdate(context, live, prepared.object, options);
        return this.updatedObject(context, name, incoming, old, options.dryRun, prepared.warnings, info.admissionView);
      };
    }
    const value = await interpretingStorageErrors(codec, 'object' in info ? 'update' : 'patch', () =>
      this.guaranteedUpdate(context.namespace, name, options.dryRun, tryUpdate, createMissing),
    );
    return { value, warnings, ...(created ? { created } : {}) };
  }

  /** Deletes one object: immediately, or by setting deletionTimestamp while finalizers remain. */
  async delete(context: OperationContext, name: string, options: DeleteOptions): Promise<WriteResult> {
    const warnings: string[] = [];
    const value = await interpretingStorageErrors(this.codec, 'delete', () => this.deleteOne(context, name, options, warnings));
    return { value, warnings };
  }

  /** Deletes every object a list selects (one by one, as the store's DeleteCollection); answers them and the revision after. */
  async deleteCollection(context: OperationContext, listOptions: ListQuery, options: DeleteOptions): Promise<ListedObjects & { readonly warnings: readonly string[] }> {
    const prefix = this.codec.prefix(context.namespace || undefined);
    const filter = selectorFilter(listOptions);
    return interpretingStorageErrors(this.codec, 'delete', async () => {
      const listed = await this.deps.storage.list(prefix, filter ? { filter } : {});
      const deleted: StoredValue[] = [];
      const warnings: string[] = []; // admission's, of every item, each text once
      for (const item of listed.items) {
        const itemMeta = item.value.metadata as Meta;
        const name = itemMeta.name as string;
        const namespace = itemMeta.namespace as string | undefined;
        const itemContext = namespace !== undefined && namespace !== context.namespace ? { ...context, namespace } : context;
        try {
          deleted.push(await this.deleteOne(itemContext, name, options, warnings));
        } catch (error) {
          if (error instanceof StatusError && error.code === 404) continue; // deleted meanwhile
          throw error;
        }
      }
      return { items: deleted, listMeta: { resourceVersion: String(await this.deps.storage.currentRevision()) }, warnings: [...new Set(warnings)] };
    });
  }

  // ---- strategy ------------------------------------------------------------------------------

  /**
   * Prunes and defaults an incoming object of the request version, validates it against the
   * schema and ObjectMeta rules (422), and applies the unknown-field policy.
   */
  private prepareIncoming(context: OperationContext, object: KubeObject, fieldValidation: FieldValidation): { object: KubeObject; warnings: string[] } {
    const meta = metaOf(object);
    const unknown = [...pruneObjectMeta(meta), ...pruneAndDefault(object, context.version.schema)];
    if (unknown.length > 0 && fieldValidation === 'Strict') {
      throw errors.badRequest(`strict decoding error: ${unknown.map((path) => `unknown field "${path}"`).join(', ')}`);
    }
    this.codec.rules.default?.(object, context.version.name);
    const problems = [...validateObjectMeta(meta, { namespaced: this.codec.namespaced }), ...validateAgainstSchema(object, context.version.schema)];
    // customResourceValidator.ValidateScaleSpec/Status: replicas at the scale paths non-negative int32s, the selector a string.
    const scale = context.version.subresources?.scale;
    if (scale) problems.push(...scaleFieldProblems(object, scale));
    if (problems.length > 0) throw this.invalid(meta, problems);
    const warnings = fieldValidation === 'Warn' ? unknown.map((path) => `unknown field "${path}"`) : [];
    return { object, warnings };
  }

  /**
   * Records a write in `metadata.managedFields` (the manager's Update entry), as the handlers'
   * FieldManager.UpdateNoErrors: `live` (request version) undefined on create. Returns the
   * field manager's copy; should it fail, the object keeps the live entries.
   */
  private trackUpdate(context: OperationContext, live: Readonly<KubeObject> | undefined, object: KubeObject, options: WriteOptions): KubeObject {
    try {
      return this.fieldManager(context.version).update(live, object, options.fieldManager ?? '', context.subresource === '' ? undefined : context.subresource) as KubeObject;
    } catch {
      const meta = metaOf(object);
      const liveFields = live && isObject(live.metadata) ? live.metadata.managedFields : undefined;
      if (liveFields === undefined) delete meta.managedFields;
      else meta.managedFields = liveFields;
      return object;
    }
  }

  private invalid(meta: Meta, problems: readonly FieldError[]): StatusError {
    const name = typeof meta.name === 'string' && meta.name ? meta.name : typeof meta.generateName === 'string' ? meta.generateName : '';
    return errors.invalid(this.codec.kind, this.codec.group, name, problems);
  }

  /** The version's x-kubernetes-validations rules over the object in that version (and the old one, on update): 422. */
  private validateByCel(meta: Meta, version: string, object: Readonly<KubeObject>, old?: Readonly<KubeObject>): void {
    const problems = validateCelRules(this.celValidators.get(version), object, old);
    if (problems.length > 0) throw this.invalid(meta, problems);
  }

  private validateByRules(meta: Meta, internal: Readonly<KubeObject>, oldInternal?: Readonly<KubeObject>): void {
    const problems = this.codec.rules.validate?.(internal, oldInternal) ?? [];
    if (problems.length > 0) throw this.invalid(meta, problems);
  }

  /**
   * The object to store for an update: the incoming object (request version, prepared) merged
   * with the stored one as the update strategies do — status kept or taken alone per
   * subresource, system metadata kept, generation bumped on a spec change — then validated and admitted.
   */
  private async updatedObject(context: OperationContext, name: string, incoming: KubeObject, old: StoredObject, dryRun: boolean, warnings?: string[], view?: AdmissionView): Promise<KubeObject> {
    const { codec } = this;
    const hasStatusSubresource = context.version.subresources?.status === true;
    const oldValue = old.value;
    const oldMeta = (oldValue.metadata ?? {}) as Meta;
    const internal = codec.toInternal(incoming, context.version.name);
    let next = codec.fromInternal(internal, codec.storageVersion);
    if (context.subresource === 'status') {
      // statusStrategy.PrepareForUpdate: only .status changes.
      const { status } = next;
      const managedFields = metaOf(next).managedFields;
      next = structuredClone(oldValue) as KubeObject;
      if (status === undefined) delete next.status;
      else next.status = status;
      // The status write's managedFields are kept: they record it (statusStrategy.PrepareForUpdate).
      if (managedFields === undefined) delete metaOf(next).managedFields;
      else metaOf(next).managedFields = managedFields;
    } else {
      const incomingMeta = metaOf(next);
      const metaProblems = validateObjectMeta(incomingMeta, { namespaced: codec.namespaced }, oldMeta);
      if (metaProblems.length > 0) throw this.invalid(incomingMeta, metaProblems);
      const meta: Meta = { ...incomingMeta };
      for (const field of SYSTEM_META_FIELDS) {
        if (oldMeta[field] === undefined) delete meta[field];
        else meta[field] = oldMeta[field];
      }
      delete meta.selfLink;
      next = { ...next, metadata: meta };
      if (hasStatusSubresource) {
        // The main resource ignores .status when status is a subresource.
        if (oldValue.status === undefined) delete next.status;
        else next.status = structuredClone(oldValue.status);
      }
      const generation = generationAfterUpdate(next, oldValue, hasStatusSubresource);
      if (generation !== undefined) meta.generation = generation;
    }
    const nextMeta = metaOf(next);
    delete nextMeta.resourceVersion;
    // Validate the internal form of what the client sent (conversion to the storage version may be
    // lossy and hide an invalid combination); for /status, the merged object.
    const validated = context.subresource === 'status' ? codec.toInternal(next, codec.storageVersion) : { ...internal, metadata: nextMeta };
    const version = context.version.name;
    this.validateByCel(nextMeta, version, codec.convert(next, codec.storageVersion, version), codec.convert(oldValue, codec.storageVersion, version));
    this.validateByRules(nextMeta, validated, codec.toInternal(oldValue, codec.storageVersion));
    if (view) next = await this.admitThroughView(context, name, dryRun, next, oldValue, warnings, view);
    else await this.admit(this.admissionAttributes(context, 'UPDATE', name, dryRun, next, oldValue, warnings));
    stopIfAbandoned(context, this.codec.gr, 'update');
    return next;
  }

  /**
   * Admission of an update made through a view (see AdmissionView): plugins see the views of the
   * new and the stored object; what mutating admission changed in the view is written back to the
   * object (its generation as the spec then compares with the stored one), and validating
   * admission sees the view made anew from the result.
   */
  private async admitThroughView(context: OperationContext, name: string, dryRun: boolean, next: KubeObject, oldValue: StoredValue, warnings: string[] | undefined, view: AdmissionView): Promise<KubeObject> {
    const { codec } = this;
    const version = context.version.name;
    const viewOf = (object: Readonly<KubeObject>): KubeObject => view.view(codec.convert(object, codec.storageVersion, version));
    const before = viewOf(next);
    const oldView = deepFreeze(viewOf(oldValue));
    const attributes: AdmissionAttributes = { ...this.admissionAttributes(context, 'UPDATE', name, dryRun, structuredClone(before), oldView, warnings), objectKind: view.kind };
    let admitted = next;
    await this.admit(attributes, () => {
      if (jsonEqual(attributes.object, before)) return attributes;
      const applied = view.apply(structuredClone(codec.convert(next, codec.storageVersion, version)) as KubeObject, attributes.object!);
      admitted = structuredClone(codec.convert(applied, version, codec.storageVersion)) as KubeObject;
      // As for the object before admission: the revision is the store's (a precondition was checked before).
      delete metaOf(admitted).resourceVersion;
      const generation = generationAfterUpdate(admitted, oldValue, context.version.subresources?.status === true);
      if (generation === undefined) delete metaOf(admitted).generation;
      else metaOf(admitted).generation = generation;
      return { ...attributes, object: viewOf(admitted) };
    });
    return admitted;
  }

  // ---- storage -------------------------------------------------------------------------------

  /**
   * Answers a failed compare-and-swap write: 404 when the key is gone, 409 when it changed and the
   * caller will not try again; returns when it will. Any other storage failure is rethrown as it is.
   */
  private casFailed(error: unknown, name: string, retry: boolean): void {
    if (error instanceof NotFoundError) throw errors.notFound(this.codec.gr, name);
    if (!(error instanceof RevisionMismatchError)) throw error;
    if (!retry) throw errors.conflict(this.codec.gr, name);
  }

  /**
   * Read-modify-write with compare-and-swap, as the generic store's GuaranteedUpdate: retried when
   * the object changed meanwhile (a precondition in the new object then answers 409). A no-op
   * is not written (the resourceVersion stays); an object being deleted whose last finalizer is
   * removed is deleted. A missing object is 404, or created by `createMissing` (undefined when
   * another client created it first: then updated).
   */
  private async guaranteedUpdate(
    namespace: string,
    name: string,
    dryRun: boolean,
    tryUpdate: (old: StoredObject) => Promise<KubeObject>,
    createMissing?: () => Promise<StoredValue | undefined>,
  ): Promise<StoredValue> {
    const { storage } = this.deps;
    const key = this.codec.key(namespace, name);
    for (let attempt = 1; ; attempt++) {
      const old = await storage.get(key);
      if (!old && createMissing && attempt < MAX_UPDATE_ATTEMPTS) {
        const created = await createMissing();
        if (created) return created;
        continue;
      }
      if (!old) throw errors.notFound(this.codec.gr, name);
      const next = await tryUpdate(old);
      const meta = metaOf(next);
      const finalizers = Array.isArray(meta.finalizers) ? meta.finalizers : [];
      if (meta.deletionTimestamp && finalizers.length === 0) {
        if (dryRun) return old.value;
        try {
          return (await storage.delete(key, old.modRevision)).value;
        } catch (error) {
          this.casFailed(error, name, attempt < MAX_UPDATE_ATTEMPTS);
          continue;
        }
      }
      if (jsonEqual({ ...next, metadata: { ...meta, resourceVersion: undefined } }, { ...old.value, metadata: { ...(old.value.metadata as Meta), resourceVersion: undefined } })) {
        return old.value;
      }
      if (dryRun) return { ...next, metadata: { ...meta, resourceVersion: String(old.modRevision) } };
      try {
        return (await storage.update(key, next, old.modRevision)).value;
      } catch (error) {
        this.casFailed(error, name, attempt < MAX_UPDATE_ATTEMPTS);
      }
    }
  }

  private async deleteOne(context: OperationContext, name: string, options: DeleteOptions, warnings: string[]): Promise<StoredValue> {
    const { codec } = this;
    const { storage } = this.deps;
    const key = codec.key(context.namespace, name);
    for (let attempt = 1; ; attempt++) {
      const old = await storage.get(key);
      if (!old) throw errors.notFound(codec.gr, name);
      const meta = (old.value.metadata ?? {}) as Meta;
      const { uid, resourceVersion } = options.preconditions ?? {};
      if (uid && uid !== meta.uid) {
        throw errors.conflict(codec.gr, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${String(meta.uid ?? '')}`);
      }
      if (resourceVersion && resourceVersion !== meta.resourceVersion) {
        throw errors.conflict(codec.gr, name, `Precondition failed: ResourceVersion in precondition: ${resourceVersion}, ResourceVersion in object meta: ${String(meta.resourceVersion ?? '')}`);
      }
      await this.admit(this.admissionAttributes(context, 'DELETE', name, options.dryRun, undefined, old.value, warnings));
      stopIfAbandoned(context, codec.gr, 'delete');
      const finalizers = finalizersOnDelete(meta, options);
      try {
        if (finalizers.length > 0) {
          const unchanged = meta.deletionTimestamp !== undefined && jsonEqual(finalizers, meta.finalizers ?? []);
          if (unchanged) return old.value;
          const nextMeta: Meta = { ...meta, finalizers };
          if (nextMeta.deletionTimestamp === undefined) {
            nextMeta.deletionTimestamp = now();
            nextMeta.deletionGracePeriodSeconds = 0;
            nextMeta.generation = (typeof meta.generation === 'number' ? meta.generation : 0) + 1;
          }
          const next = { ...old.value, metadata: nextMeta };
          if (options.dryRun) return next;
          return (await storage.update(key, next, old.modRevision)).value;
        }
        if (options.dryRun) return old.value;
        return (await storage.delete(key, old.modRevision)).value;
      } catch (error) {
        this.casFailed(error, name, !resourceVersion && attempt < MAX_UPDATE_ATTEMPTS);
      }
    }
  }

  // ---- admission -----------------------------------------------------------------------------

  /**
   * Mutating, then validating admission. `afterMutation` gives what validating plugins see when
   * it is not what mutating ones left (a view's change written back to the object, and the view
   * made anew from it).
   */
  private async admit(attributes: AdmissionAttributes, afterMutation?: () => AdmissionAttributes): Promise<void> {
    const plugins = this.deps.admission.filter((p) => p.operations.includes(attributes.operation));
    const managedFieldsBefore = managedFieldsOf(attributes.object);
    for (const plugin of plugins) await plugin.admit?.(attributes, this.deps.admissionContext);
    keepValidManagedFields(attributes, managedFieldsBefore);
    const validated = afterMutation?.() ?? attributes;
    for (const plugin of plugins) await plugin.validate?.(validated, this.deps.admissionContext);
  }

  private admissionAttributes(
    context: OperationContext,
    operation: AdmissionOperation,
    name: string,
    dryRun: boolean,
    object?: KubeObject,
    oldObject?: StoredValue,
    warnings?: string[],
  ): AdmissionAttributes {
    return {
      operation,
      group: this.codec.group,
      version: context.version.name,
      kind: this.codec.kind,
      resource: this.codec.gr.resource,
      subresource: context.subresource,
      namespace: this.codec.namespaced ? context.namespace : '',
      name,
      ...(object ? { object } : {}),
      ...(oldObject ? { oldObject } : {}),
      user: context.user,
      dryRun,
      ...(warnings ? { warnings } : {}),
      auditAnnotations: context.auditAnnotations,
    };
  }
}

function managedFieldsOf(object: KubeObject | undefined): unknown {
  return object && isObject(object.metadata) ? object.metadata.managedFields : undefined;
}

/**
 * ManagedFieldsValidatingAdmissionController: managedFields a mutating plugin left unreadable are
 * put back as they were before admission, with a warning.
 */
function keepValidManagedFields(attributes: AdmissionAttributes, before: unknown): void {
  const after = managedFieldsOf(attributes.object);
  if (after === before || !attributes.object || !isObject(attributes.object.metadata)) return;
  try {
    decodeManagedFields(after);
  } catch (error) {
    if (!(error instanceof ManagedFieldsError)) throw error;
    const meta = attributes.object.metadata;
    if (before === undefined) delete meta.managedFields;
    else meta.managedFields = before;
    attributes.warnings?.push(
      `.metadata.managedFields was in an invalid state after admission; this could be caused by an outdated mutating admission controller; please fix your requests: ${error.message}`,
    );
  }
}

/** Stops a write whose request was abandoned (see OperationContext.abandoned); nobody reads the error. */
function stopIfAbandoned(context: OperationContext, gr: GroupResource, operation: string): void {
  if (context.abandoned?.()) throw errors.serverTimeout(gr, operation);
}
