import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { KindVersion } from '../../apis/types';
import type { AdmissionAttributes, AdmissionContext, AdmissionOperation, AdmissionPlugin } from '../admission/types';
import type { UserInfo } from '../auth/types';
import { ResourceOutput, mediaTypeOf, parseContentType } from '../content';
import type { RequestInfo } from '../request-info';
import { ExpiredError, KeyExistsError, NotFoundError, RevisionMismatchError, Storage, StoredObject, StoredValue, TooLargeRevisionError } from '../storage/types';
import { GroupResource, StatusError, errors } from '../status';
import { parseBody, readBody, readObject } from './body';
import type { KindCodec } from './codec';
import { FieldError, fieldErrors } from './field-errors';
import { ListQuery, decodeContinue, encodeContinue, expiredContinue, parseListQuery, selectorFilter } from './list-options';
import { Meta, generateName, now, pruneObjectMeta, validateObjectMeta } from './metadata';
import { JSON_PATCH, MERGE_PATCH, PatchType, SUPPORTED_PATCH_TYPES, applyObjectPatch, checkPatch } from './patch';
import { KubeObject, isObject } from './rules';
import { pruneAndDefault, validateAgainstSchema } from './schema';
import { IncludeObject, TableOptions, objectTable, parseIncludeObject, toTable } from './table';
import { WatchHub, WatchSettings, serveWatch } from './watch';

/**
 * The generic REST handler of one kind in one version: every verb of a Kubernetes resource,
 * driven by the kind's definition (schema, scope, subresources, printer columns) and its rules
 * (conversion, defaulting, validation), over a `Storage`. Nothing here names a kind.
 */

export interface RegistryDeps {
  readonly storage: Storage;
  readonly admission: readonly AdmissionPlugin[];
  readonly admissionContext: AdmissionContext;
  readonly hub: WatchHub;
  readonly watchSettings: WatchSettings;
  readonly logger: Logger;
}

export interface RequestScope {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly info: RequestInfo;
  readonly user: UserInfo;
  readonly query: URLSearchParams;
  readonly codec: KindCodec;
  readonly version: KindVersion;
  /** '' or 'status'. */
  readonly subresource: string;
  readonly output: ResourceOutput;
}

type FieldValidation = 'Ignore' | 'Warn' | 'Strict';

/** Updates retried on a compare-and-swap failure before answering 409 (GuaranteedUpdate retries without bound; a cap keeps a hot key from starving a request). */
const MAX_UPDATE_ATTEMPTS = 16;
const MAX_GENERATE_NAME_ATTEMPTS = 8;

function metaOf(object: KubeObject): Meta {
  if (object.metadata === undefined || object.metadata === null) object.metadata = {};
  if (!isObject(object.metadata)) throw errors.badRequest(`metadata must be an object, not ${JSON.stringify(object.metadata)}`);
  return object.metadata;
}

function hasStatusSubresource(scope: RequestScope): boolean {
  return scope.version.subresources?.status === true;
}

function parseDryRun(query: URLSearchParams): boolean {
  const values = query.getAll('dryRun');
  for (const value of values) {
    if (value !== 'All') throw errors.badRequest(`dryRun: Unsupported value: "${value}": supported values: "All"`);
  }
  return values.length > 0;
}

function parseFieldValidation(query: URLSearchParams): FieldValidation {
  const value = query.get('fieldValidation') ?? '';
  if (value === '' || value === 'Warn') return 'Warn';
  if (value === 'Ignore' || value === 'Strict') return value;
  throw errors.badRequest(`fieldValidation: Unsupported value: "${value}": supported values: "Ignore", "Warn", "Strict"`);
}

// ---- responses -------------------------------------------------------------------------------

/** Answers with encoded JSON (Content-Length is its byte length). */
function sendJson(res: ServerResponse, code: number, body: Buffer, warnings: readonly string[] = []): void {
  const headers: Record<string, string | number | string[]> = {
    'Content-Type': 'application/json',
    'Content-Length': body.length,
    'Cache-Control': 'no-cache, private',
  };
  if (warnings.length > 0) headers.Warning = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
  res.writeHead(code, headers);
  res.end(body);
}

function includeObjectOf(scope: RequestScope): IncludeObject {
  return scope.output.as === 'Table' ? parseIncludeObject(scope.query.get('includeObject')) : 'Metadata';
}

function tableOptions(scope: RequestScope, metaVersion: string): TableOptions {
  return { version: scope.version, metaVersion, includeObject: includeObjectOf(scope) };
}

/**
 * One stored value (storage version) as the JSON text of the negotiated representation in the
 * request version. For a read, objects and PartialObjectMetadata come from the codec's per-value
 * cache; the answer to a write is serialized once, uncached (the next read or watch event caches
 * it if anyone needs it; caching every write would cost memory and time for objects nobody
 * reads). A Table is built each time (its Age cells depend on the clock).
 */
function storedText(scope: RequestScope, value: StoredValue, read: boolean): string {
  const { codec, output } = scope;
  const version = scope.version.name;
  switch (output.as) {
    case 'Object':
      return read ? codec.storedJson(value, version) : JSON.stringify(codec.fromStorage(value, version));
    case 'PartialObjectMetadata':
      return codec.storedJson(value, version, output.version);
    case 'PartialObjectMetadataList':
      throw errors.notAcceptable(['application/json', 'application/json;as=Table;v=v1;g=meta.k8s.io']);
    case 'Table':
      return JSON.stringify(objectTable(codec.fromStorage(value, version), tableOptions(scope, output.version)));
  }
}

/**
 * `{<typeMeta>,"metadata":<listMeta>,"items":[<items>]}` (key order as Kubernetes writes lists),
 * the items' texts encoded straight into one buffer: no joined copy of the whole list.
 */
function encodeList(typeMeta: Record<string, string>, listMeta: Record<string, unknown>, items: readonly string[]): Buffer {
  const head = `${JSON.stringify(typeMeta).slice(0, -1)},"metadata":${JSON.stringify(listMeta)},"items":[`;
  let length = Buffer.byteLength(head) + Math.max(items.length - 1, 0) + 2; // the commas and `]}`
  for (const item of items) length += Buffer.byteLength(item);
  const body = Buffer.allocUnsafe(length);
  let offset = body.write(head);
  items.forEach((item, index) => {
    if (index > 0) offset += body.write(',', offset);
    offset += body.write(item, offset);
  });
  offset += body.write(']}', offset);
  return body.subarray(0, offset); // never a byte that was not written
}

/** A list of stored values as encoded JSON of the negotiated representation: the items' cached texts in the list envelope. */
function listBody(scope: RequestScope, items: readonly StoredValue[], listMeta: Record<string, unknown>): Buffer {
  const { codec, output } = scope;
  const version = scope.version.name;
  switch (output.as) {
    case 'Object':
      return encodeList(
        { apiVersion: codec.apiVersion(version), kind: codec.listKind },
        listMeta,
        items.map((value) => codec.storedJson(value, version)),
      );
    case 'PartialObjectMetadataList':
      return encodeList(
        { kind: 'PartialObjectMetadataList', apiVersion: `meta.k8s.io/${output.version}` },
        listMeta,
        items.map((value) => codec.storedJson(value, version, output.version)),
      );
    case 'PartialObjectMetadata':
      throw errors.notAcceptable(['application/json', 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io']);
    case 'Table': {
      const objects = items.map((value) => codec.fromStorage(value, version));
      return Buffer.from(JSON.stringify(toTable(objects, listMeta, tableOptions(scope, output.version))));
    }
  }
}

/** Answers a write with the object written (or deleted). */
function respondWritten(scope: RequestScope, code: number, value: StoredValue, warnings: readonly string[] = []): void {
  sendJson(scope.res, code, Buffer.from(storedText(scope, value, false)), warnings);
}

// ---- reads -----------------------------------------------------------------------------------

export async function getObject(scope: RequestScope, deps: RegistryDeps): Promise<void> {
  const { codec, info } = scope;
  const stored = await deps.storage.get(codec.key(info.namespace, info.name));
  if (!stored) throw errors.notFound(codec.gr, info.name);
  sendJson(scope.res, 200, Buffer.from(storedText(scope, stored.value, true)));
}

function listPrefixAndFilter(scope: RequestScope, options: ListQuery) {
  const prefix = scope.codec.prefix(scope.info.namespace || undefined);
  return { prefix, filter: selectorFilter(options) };
}

export async function listObjects(scope: RequestScope, deps: RegistryDeps): Promise<void> {
  const options = parseListQuery(scope.query, false);
  const { prefix, filter } = listPrefixAndFilter(scope, options);
  let revision: number | undefined;
  let startKey: string | undefined;
  if (options.continueToken) {
    const decoded = decodeContinue(options.continueToken, prefix);
    revision = decoded.revision === -1 ? undefined : decoded.revision;
    startKey = decoded.startKey;
  } else if (options.resourceVersion !== '' && options.resourceVersion !== '0') {
    const requested = Number(options.resourceVersion);
    if (options.resourceVersionMatch === 'Exact') revision = requested;
    else {
      const current = await deps.storage.currentRevision();
      if (requested > current) throw errors.timeout(`Too large resource version: ${requested}, current: ${current}`);
    }
  }
  let result;
  try {
    result = await deps.storage.list(prefix, {
      ...(revision !== undefined ? { revision } : {}),
      ...(options.limit ? { limit: options.limit } : {}),
      ...(startKey !== undefined ? { startKey } : {}),
      ...(filter ? { filter } : {}),
    });
  } catch (error) {
    if (error instanceof ExpiredError) {
      if (startKey !== undefined) throw expiredContinue(startKey, prefix);
      throw errors.gone('The resourceVersion for the provided list is too old.');
    }
    if (error instanceof TooLargeRevisionError) throw errors.timeout(`Too large resource version: ${error.requestedRevision}, current: ${error.currentRevision}`);
    throw error;
  }
  const listMeta: Record<string, unknown> = { resourceVersion: String(result.revision) };
  if (result.more && result.nextKey !== undefined) {
    listMeta.continue = encodeContinue(result.revision, result.nextKey, prefix);
    if (result.remaining !== undefined) listMeta.remainingItemCount = result.remaining;
  }
  sendJson(
    scope.res,
    200,
    listBody(
      scope,
      result.items.map((item) => item.value),
      listMeta,
    ),
  );
}

export async function watchObjects(scope: RequestScope, deps: RegistryDeps): Promise<void> {
  const options = parseListQuery(scope.query, true);
  const filter = selectorFilter(options);
  await serveWatch(
    {
      res: scope.res,
      codec: scope.codec,
      version: scope.version,
      output: scope.output,
      includeObject: includeObjectOf(scope),
      namespace: scope.info.namespace,
      options,
      ...(filter ? { filter } : {}),
    },
    deps.storage,
    deps.hub,
    deps.watchSettings,
    deps.logger,
  );
}

// ---- incoming objects --------------------------------------------------------------------------

/** Checks `apiVersion`/`kind` of a body against the endpoint (400 on a mismatch) and fills them in when absent. */
function withExpectedTypeMeta(scope: RequestScope, body: KubeObject): KubeObject {
  const expectedApiVersion = scope.codec.apiVersion(scope.version.name);
  if (body.apiVersion !== undefined && body.apiVersion !== '' && body.apiVersion !== expectedApiVersion) {
    throw errors.badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${expectedApiVersion})`);
  }
  if (body.kind !== undefined && body.kind !== '' && body.kind !== scope.codec.kind) {
    throw errors.badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${scope.codec.kind})`);
  }
  return scope.codec.withTypeMeta(body, scope.version.name);
}

/** Puts the request's namespace on the object, or 400 when the object names another one. */
function ensureNamespace(scope: RequestScope, meta: Meta): void {
  if (!scope.codec.namespaced) {
    // As rest.EnsureObjectNamespaceMatchesRequestNamespace: a cluster-scoped object's namespace is cleared.
    delete meta.namespace;
    return;
  }
  if (meta.namespace !== undefined && meta.namespace !== '' && meta.namespace !== scope.info.namespace) {
    throw errors.badRequest('the namespace of the provided object does not match the namespace sent on the request');
  }
  meta.namespace = scope.info.namespace;
}

interface Prepared {
  readonly object: KubeObject;
  readonly warnings: string[];
}

/**
 * Prunes and defaults an incoming object of the request version, validates it against the
 * schema and ObjectMeta rules (422), and applies the unknown-field policy.
 */
function prepareIncoming(scope: RequestScope, object: KubeObject, fieldValidation: FieldValidation, old?: Meta): Prepared {
  const meta = metaOf(object);
  const unknown = [...pruneObjectMeta(meta), ...pruneAndDefault(object, scope.version.schema)];
  if (unknown.length > 0 && fieldValidation === 'Strict') {
    throw errors.badRequest(`strict decoding error: ${unknown.map((path) => `unknown field "${path}"`).join(', ')}`);
  }
  scope.codec.rules.default?.(object, scope.version.name);
  const problems = [...validateObjectMeta(meta, { namespaced: scope.codec.namespaced }, old), ...validateAgainstSchema(object, scope.version.schema)];
  if (problems.length > 0) throw invalid(scope, meta, problems);
  const warnings = fieldValidation === 'Warn' ? unknown.map((path) => `unknown field "${path}"`) : [];
  return { object, warnings };
}

function invalid(scope: RequestScope, meta: Meta, problems: readonly FieldError[]): StatusError {
  const name = typeof meta.name === 'string' && meta.name ? meta.name : typeof meta.generateName === 'string' ? meta.generateName : '';
  return errors.invalid(scope.codec.kind, scope.codec.group, name, problems);
}

function validateByRules(scope: RequestScope, meta: Meta, internal: Readonly<KubeObject>, oldInternal?: Readonly<KubeObject>): void {
  const problems = scope.codec.rules.validate?.(internal, oldInternal) ?? [];
  if (problems.length > 0) throw invalid(scope, meta, problems);
}

async function runAdmission(deps: RegistryDeps, attributes: AdmissionAttributes): Promise<void> {
  const plugins = deps.admission.filter((p) => p.operations.includes(attributes.operation));
  for (const plugin of plugins) await plugin.admit?.(attributes, deps.admissionContext);
  for (const plugin of plugins) await plugin.validate?.(attributes, deps.admissionContext);
}

function admissionAttributes(
  scope: RequestScope,
  operation: AdmissionOperation,
  name: string,
  dryRun: boolean,
  object?: KubeObject,
  oldObject?: StoredValue,
): AdmissionAttributes {
  return {
    operation,
    group: scope.codec.group,
    version: scope.version.name,
    kind: scope.codec.kind,
    resource: scope.codec.gr.resource,
    subresource: scope.subresource,
    namespace: scope.codec.namespaced ? scope.info.namespace : '',
    name,
    ...(object ? { object } : {}),
    ...(oldObject ? { oldObject } : {}),
    user: scope.user,
    dryRun,
  };
}

// ---- create ----------------------------------------------------------------------------------

export async function createObject(scope: RequestScope, deps: RegistryDeps): Promise<void> {
  const { codec } = scope;
  const dryRun = parseDryRun(scope.query);
  const fieldValidation = parseFieldValidation(scope.query);
  const body = withExpectedTypeMeta(scope, await readObject(scope.req, scope.res));
  const meta = metaOf(body);
  if (meta.resourceVersion !== undefined && meta.resourceVersion !== '') throw errors.badRequest('resourceVersion should not be set on objects to be created');
  ensureNamespace(scope, meta);
  const { object, warnings } = prepareIncoming(scope, body, fieldValidation);

  // System fields (rest.BeforeCreate / FillObjectMetaSystemFields): the client cannot set them.
  for (const field of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink', 'managedFields', 'resourceVersion']) delete meta[field];
  if (hasStatusSubresource(scope)) delete object.status; // create cannot set status
  const internal = codec.toInternal(object, scope.version.name);
  validateByRules(scope, meta, internal);
  const stored = codec.fromInternal(internal, codec.storageVersion);
  const storedMeta = metaOf(stored);

  await runAdmission(deps, admissionAttributes(scope, 'CREATE', typeof storedMeta.name === 'string' ? storedMeta.name : '', dryRun, stored));

  storedMeta.uid = randomUUID();
  storedMeta.creationTimestamp = now();
  storedMeta.generation = 1;
  const generate = !storedMeta.name && typeof storedMeta.generateName === 'string' ? storedMeta.generateName : undefined;
  for (let attempt = 1; ; attempt++) {
    if (generate !== undefined) storedMeta.name = generateName(generate);
    const name = storedMeta.name as string;
    const key = codec.key(scope.info.namespace, name);
    if (dryRun) {
      if (await deps.storage.get(key)) throw errors.alreadyExists(codec.gr, name);
      respondWritten(scope, 201, stored, warnings);
      return;
    }
    try {
      const created = await deps.storage.create(key, { ...stored, metadata: { ...storedMeta } });
      respondWritten(scope, 201, created.value, warnings);
      return;
    } catch (error) {
      if (!(error instanceof KeyExistsError)) throw error;
      if (generate === undefined || attempt >= MAX_GENERATE_NAME_ATTEMPTS) throw errors.alreadyExists(codec.gr, name);
    }
  }
}

// ---- update and patch ------------------------------------------------------------------------

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

const SYSTEM_META_FIELDS = ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation'] as const;

/**
 * The object to store for an update: the incoming object (request version, prepared) merged
 * with the stored one as the update strategies do — status kept or taken alone per
 * subresource, system metadata kept, generation bumped on a spec change — then validated.
 */
async function updatedObject(scope: RequestScope, deps: RegistryDeps, incoming: KubeObject, old: StoredObject, dryRun: boolean): Promise<KubeObject> {
  const { codec } = scope;
  const oldValue = old.value;
  const oldMeta = (oldValue.metadata ?? {}) as Meta;
  const internal = codec.toInternal(incoming, scope.version.name);
  let next = codec.fromInternal(internal, codec.storageVersion);
  if (scope.subresource === 'status') {
    // statusStrategy.PrepareForUpdate: only .status changes.
    const { status } = next;
    next = structuredClone(oldValue) as KubeObject;
    if (status === undefined) delete next.status;
    else next.status = status;
  } else {
    const incomingMeta = metaOf(next);
    const metaProblems = validateObjectMeta(incomingMeta, { namespaced: codec.namespaced }, oldMeta);
    if (metaProblems.length > 0) throw invalid(scope, incomingMeta, metaProblems);
    const meta: Meta = { ...incomingMeta };
    for (const field of SYSTEM_META_FIELDS) {
      if (oldMeta[field] === undefined) delete meta[field];
      else meta[field] = oldMeta[field];
    }
    delete meta.managedFields;
    delete meta.selfLink;
    next = { ...next, metadata: meta };
    if (hasStatusSubresource(scope)) {
      // The main resource ignores .status when status is a subresource.
      if (oldValue.status === undefined) delete next.status;
      else next.status = structuredClone(oldValue.status);
    }
    if (!jsonEqual(specOf(next, hasStatusSubresource(scope)), specOf(oldValue, hasStatusSubresource(scope)))) {
      meta.generation = (typeof oldMeta.generation === 'number' ? oldMeta.generation : 0) + 1;
    }
  }
  const nextMeta = metaOf(next);
  delete nextMeta.resourceVersion;
  // Validate the internal form of what the client sent (conversion to the storage version may be
  // lossy and hide an invalid combination); for /status, the merged object.
  const validated = scope.subresource === 'status' ? codec.toInternal(next, codec.storageVersion) : { ...internal, metadata: nextMeta };
  validateByRules(scope, nextMeta, validated, codec.toInternal(oldValue, codec.storageVersion));
  await runAdmission(deps, admissionAttributes(scope, 'UPDATE', scope.info.name, dryRun, next, oldValue));
  return next;
}

/**
 * Answers a failed compare-and-swap write: 404 when the key is gone, 409 when it changed and the
 * caller will not try again; returns when it will. Any other storage failure is rethrown as it is.
 */
function casFailed(error: unknown, gr: GroupResource, name: string, retry: boolean): void {
  if (error instanceof NotFoundError) throw errors.notFound(gr, name);
  if (!(error instanceof RevisionMismatchError)) throw error;
  if (!retry) throw errors.conflict(gr, name);
}

/**
 * Read-modify-write with compare-and-swap, as the generic store's GuaranteedUpdate: retried when
 * the object changed meanwhile unless the client fixed the resourceVersion (then 409). A no-op
 * is not written (the resourceVersion stays); an object being deleted whose last finalizer is
 * removed is deleted.
 */
async function guaranteedUpdate(
  scope: RequestScope,
  deps: RegistryDeps,
  dryRun: boolean,
  tryUpdate: (old: StoredObject) => Promise<{ next: KubeObject; preconditionFixed: boolean }>,
): Promise<StoredValue> {
  const { codec, info } = scope;
  const key = codec.key(info.namespace, info.name);
  for (let attempt = 1; ; attempt++) {
    const old = await deps.storage.get(key);
    if (!old) throw errors.notFound(codec.gr, info.name);
    const { next, preconditionFixed } = await tryUpdate(old);
    const meta = metaOf(next);
    const finalizers = Array.isArray(meta.finalizers) ? meta.finalizers : [];
    if (meta.deletionTimestamp && finalizers.length === 0) {
      if (dryRun) return old.value;
      try {
        return (await deps.storage.delete(key, old.modRevision)).value;
      } catch (error) {
        casFailed(error, codec.gr, info.name, !preconditionFixed && attempt < MAX_UPDATE_ATTEMPTS);
        continue;
      }
    }
    if (jsonEqual({ ...next, metadata: { ...meta, resourceVersion: undefined } }, { ...old.value, metadata: { ...(old.value.metadata as Meta), resourceVersion: undefined } })) {
      return old.value;
    }
    if (dryRun) return { ...next, metadata: { ...meta, resourceVersion: String(old.modRevision) } };
    try {
      return (await deps.storage.update(key, next, old.modRevision)).value;
    } catch (error) {
      casFailed(error, codec.gr, info.name, !preconditionFixed && attempt < MAX_UPDATE_ATTEMPTS);
    }
  }
}

function checkNameMatchesUrl(scope: RequestScope, meta: Meta): void {
  if (meta.name !== scope.info.name) {
    throw errors.badRequest(`the name of the object (${typeof meta.name === 'string' ? meta.name : ''}) does not match the name on the URL (${scope.info.name})`);
  }
}

export async function updateObject(scope: RequestScope, deps: RegistryDeps): Promise<void> {
  const dryRun = parseDryRun(scope.query);
  const fieldValidation = parseFieldValidation(scope.query);
  const body = withExpectedTypeMeta(scope, await readObject(scope.req, scope.res));
  const meta = metaOf(body);
  checkNameMatchesUrl(scope, meta);
  ensureNamespace(scope, meta);
  const precondition = typeof meta.resourceVersion === 'string' && meta.resourceVersion !== '' ? meta.resourceVersion : undefined;
  if (precondition !== undefined && !/^\d+$/.test(precondition)) {
    throw errors.badRequest(`metadata.resourceVersion: Invalid value: "${precondition}": must be a resourceVersion this server gave out`);
  }
  const { object, warnings } = prepareIncoming(scope, body, fieldValidation);
  const result = await guaranteedUpdate(scope, deps, dryRun, async (old) => {
    if (precondition !== undefined && precondition !== String(old.modRevision)) throw errors.conflict(scope.codec.gr, scope.info.name);
    const next = await updatedObject(scope, deps, structuredClone(object), old, dryRun);
    return { next, preconditionFixed: precondition !== undefined };
  });
  respondWritten(scope, 200, result, warnings);
}

export async function patchObject(scope: RequestScope, deps: RegistryDeps): Promise<void> {
  const dryRun = parseDryRun(scope.query);
  const fieldValidation = parseFieldValidation(scope.query);
  const contentType = parseContentType(scope.req.headers['content-type']);
  const mediaType = contentType ? mediaTypeOf(contentType) : '';
  if (mediaType !== MERGE_PATCH && mediaType !== JSON_PATCH) {
    throw errors.unsupportedMediaType(scope.req.headers['content-type'] ?? '', SUPPORTED_PATCH_TYPES);
  }
  const patchType: PatchType = mediaType;
  const patch = parseBody(await readBody(scope.req, scope.res), 'application/json');
  checkPatch(patchType, patch);
  let warnings: string[] = [];
  const result = await guaranteedUpdate(scope, deps, dryRun, async (old) => {
    const current = structuredClone(scope.codec.fromStorage(old.value, scope.version.name)) as KubeObject;
    const patched = withExpectedTypeMeta(scope, applyObjectPatch(patchType, current, patch));
    const meta = metaOf(patched);
    checkNameMatchesUrl(scope, meta);
    ensureNamespace(scope, meta);
    // A resourceVersion in the patch is a precondition: it no longer matches once the object
    // changed, so a retry after a compare-and-swap miss ends here with 409.
    const patchedVersion = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '';
    if (patchedVersion !== '' && patchedVersion !== String(old.modRevision)) throw errors.conflict(scope.codec.gr, scope.info.name);
    const prepared = prepareIncoming(scope, patched, fieldValidation);
    warnings = prepared.warnings;
    const next = await updatedObject(scope, deps, prepared.object, old, dryRun);
    return { next, preconditionFixed: false };
  });
  respondWritten(scope, 200, result, warnings);
}

// ---- delete ----------------------------------------------------------------------------------

interface DeleteOptions {
  readonly preconditions?: { readonly uid?: string; readonly resourceVersion?: string };
  readonly propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
  readonly orphanDependents?: boolean;
  readonly dryRun: boolean;
}

const PROPAGATION_POLICIES = ['Foreground', 'Background', 'Orphan'];

/** DeleteOptions from the body (optional) and the query, validated as ValidateDeleteOptions (422). */
async function readDeleteOptions(scope: RequestScope): Promise<DeleteOptions> {
  const body = await readBody(scope.req, scope.res);
  let parsed: Record<string, unknown> = {};
  if (body.length > 0 && body.toString('utf8').trim() !== '') {
    const value = parseBody(body, 'application/json');
    if (!isObject(value)) throw errors.badRequest('the body of a DELETE must be a DeleteOptions object');
    if (value.kind !== undefined && value.kind !== 'DeleteOptions') {
      throw errors.badRequest(`the kind in the data (${String(value.kind)}) does not match the expected kind (DeleteOptions)`);
    }
    parsed = value;
  }
  const query = scope.query;
  const propagationPolicy = (parsed.propagationPolicy ?? query.get('propagationPolicy') ?? undefined) as string | undefined;
  const orphanQuery = query.get('orphanDependents');
  const orphanDependents = (parsed.orphanDependents ?? (orphanQuery === null ? undefined : orphanQuery === 'true')) as boolean | undefined;
  const dryRunValues = [...(Array.isArray(parsed.dryRun) ? (parsed.dryRun as unknown[]) : []), ...query.getAll('dryRun')];
  const problems: FieldError[] = [];
  if (propagationPolicy !== undefined && !PROPAGATION_POLICIES.includes(propagationPolicy)) {
    problems.push(fieldErrors.notSupported('propagationPolicy', propagationPolicy, PROPAGATION_POLICIES));
  }
  if (propagationPolicy !== undefined && orphanDependents !== undefined) {
    problems.push(fieldErrors.invalid('propagationPolicy', propagationPolicy, 'orphanDependents and deletionPropagation cannot be both set'));
  }
  for (const value of dryRunValues) if (value !== 'All') problems.push(fieldErrors.notSupported('dryRun', value, ['All']));
  const gracePeriod = parsed.gracePeriodSeconds ?? query.get('gracePeriodSeconds') ?? undefined;
  if (gracePeriod !== undefined && !/^\d+$/.test(String(gracePeriod))) problems.push(fieldErrors.invalid('gracePeriodSeconds', gracePeriod, 'must be a non-negative integer'));
  if (problems.length > 0) throw errors.invalid('DeleteOptions', 'meta.k8s.io', '', problems);
  const preconditions = isObject(parsed.preconditions) ? (parsed.preconditions as DeleteOptions['preconditions']) : undefined;
  return {
    ...(preconditions ? { preconditions } : {}),
    ...(propagationPolicy ? { propagationPolicy: propagationPolicy as DeleteOptions['propagationPolicy'] } : {}),
    ...(orphanDependents !== undefined ? { orphanDependents } : {}),
    dryRun: dryRunValues.length > 0,
  };
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

/** Deletes one object: immediately, or by setting deletionTimestamp while finalizers remain. */
async function deleteOne(scope: RequestScope, deps: RegistryDeps, name: string, options: DeleteOptions): Promise<StoredValue> {
  const { codec, info } = scope;
  const key = codec.key(info.namespace, name);
  for (let attempt = 1; ; attempt++) {
    const old = await deps.storage.get(key);
    if (!old) throw errors.notFound(codec.gr, name);
    const meta = (old.value.metadata ?? {}) as Meta;
    const { uid, resourceVersion } = options.preconditions ?? {};
    if (uid && uid !== meta.uid) {
      throw errors.conflict(codec.gr, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${String(meta.uid ?? '')}`);
    }
    if (resourceVersion && resourceVersion !== meta.resourceVersion) {
      throw errors.conflict(codec.gr, name, `Precondition failed: ResourceVersion in precondition: ${resourceVersion}, ResourceVersion in object meta: ${String(meta.resourceVersion ?? '')}`);
    }
    await runAdmission(deps, admissionAttributes(scope, 'DELETE', name, options.dryRun, undefined, old.value));
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
        return (await deps.storage.update(key, next, old.modRevision)).value;
      }
      if (options.dryRun) return old.value;
      return (await deps.storage.delete(key, old.modRevision)).value;
    } catch (error) {
      casFailed(error, codec.gr, name, !resourceVersion && attempt < MAX_UPDATE_ATTEMPTS);
    }
  }
}

export async function deleteObject(scope: RequestScope, deps: RegistryDeps): Promise<void> {
  const options = await readDeleteOptions(scope);
  const deleted = await deleteOne(scope, deps, scope.info.name, options);
  respondWritten(scope, 200, deleted);
}

export async function deleteCollection(scope: RequestScope, deps: RegistryDeps): Promise<void> {
  const listOptions = parseListQuery(scope.query, false);
  const options = await readDeleteOptions(scope);
  const { prefix, filter } = listPrefixAndFilter(scope, listOptions);
  const listed = await deps.storage.list(prefix, filter ? { filter } : {});
  const deleted: StoredValue[] = [];
  for (const item of listed.items) {
    const name = (item.value.metadata as Meta).name as string;
    const namespace = (item.value.metadata as Meta).namespace as string | undefined;
    const itemScope: RequestScope = namespace !== undefined && namespace !== scope.info.namespace ? { ...scope, info: { ...scope.info, namespace } } : scope;
    try {
      deleted.push(await deleteOne(itemScope, deps, name, options));
    } catch (error) {
      if (error instanceof StatusError && error.code === 404) continue; // deleted meanwhile
      throw error;
    }
  }
  sendJson(scope.res, 200, listBody(scope, deleted, { resourceVersion: String(await deps.storage.currentRevision()) }));
}
