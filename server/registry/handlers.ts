import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { KindVersion } from '../../apis/types';
import type { AuditAnnotations } from '../admission/audit-annotations';
import type { UserInfo } from '../auth/types';
import { ResourceOutput, mediaTypeOf, parseContentType } from '../content';
import type { RequestInfo } from '../request-info';
import type { StoredValue } from '../storage/types';
import { errors } from '../status';
import { parseBody, readBody, readObject } from './body';
import type { KindCodec } from './codec';
import { ApplyRequest, FIELD_MANAGER_MAX_BYTES, applyConfiguration, decodeApplyPatch, isPrintable, jsonTypeName, managerOrUserAgent, strictApplyWarnings } from './apply';
import { FieldError, fieldErrors } from './field-errors';
import { parseListQuery, parseResourceVersion, selectorFilter } from './list-options';
import type { Meta } from './metadata';
import { APPLY_PATCH, JSON_PATCH, MERGE_PATCH, PatchType, SUPPORTED_PATCH_TYPES, applyObjectPatch, checkPatch } from './patch';
import { KubeObject, isObject } from './rules';
import { DeleteOptions, FieldValidation, GenericStore, OperationContext, metaOf } from './store';
import { IncludeObject, TableOptions, objectTable, parseIncludeObject, toTable } from './table';
import { WatchHub, WatchSettings, serveWatch } from './watch';

/**
 * The endpoint handlers of one kind in one version, as k8s.io/apiserver's endpoints/handlers:
 * each decodes the request (body, query options), calls the generic store, and encodes the
 * answer in the negotiated representation, with warnings. The rules live in the store (store.ts).
 */

export interface HandlerDeps {
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
  readonly store: GenericStore;
  readonly version: KindVersion;
  /** '' or 'status'. */
  readonly subresource: string;
  readonly output: ResourceOutput;
  /** The request's audit annotations (admission adds to them). */
  readonly auditAnnotations?: AuditAnnotations;
}

export type Handler = (scope: RequestScope, deps: HandlerDeps) => Promise<void>;

/** path.IsValidPathSegmentName's objections to a name or namespace from the URL (decoded: `%2F` is a '/'). */
function pathSegmentProblem(segment: string): string | undefined {
  if (segment === '.' || segment === '..') return `may not be '${segment}'`;
  if (segment.includes('/')) return "may not contain '/'";
  if (segment.includes('%')) return "may not contain '%'";
  return undefined;
}

/**
 * 400 for a request naming one object whose name or namespace cannot be a storage key segment,
 * as the etcd3 key functions (NamespaceKeyFunc) refuse them; such an object cannot exist (names
 * and namespaces are validated on create), so this only answers honestly what was asked.
 */
export function checkObjectPath(scope: RequestScope): void {
  const nameProblem = pathSegmentProblem(scope.info.name);
  if (nameProblem) throw errors.badRequest(`Name parameter invalid: ${JSON.stringify(scope.info.name)}: ${nameProblem}`);
  const namespaceProblem = scope.info.namespace === '' ? undefined : pathSegmentProblem(scope.info.namespace);
  if (namespaceProblem) throw errors.badRequest(`Namespace parameter is invalid: ${JSON.stringify(scope.info.namespace)}: ${namespaceProblem}`);
}

export function contextOf(scope: RequestScope): OperationContext {
  // Ended before the handler answered: the request timed out (flow-control.ts sent the 504).
  return {
    namespace: scope.info.namespace,
    version: scope.version,
    subresource: scope.subresource,
    user: scope.user,
    abandoned: () => scope.res.writableEnded,
    auditAnnotations: scope.auditAnnotations,
  };
}

/** The write options (CreateOptions, UpdateOptions, PatchOptions) from the query, validated as ValidateCreateOptions & co. (422). */
interface WriteQuery {
  readonly dryRun: boolean;
  readonly fieldValidation: FieldValidation;
  /** As sent ('' when not). */
  readonly fieldManager: string;
  /** `force`: apply patches only ("0" and "false" are false, any other value true, as Go decodes a bool). */
  readonly force: boolean;
}

const FIELD_VALIDATIONS = ['Ignore', 'Warn', 'Strict'];

/**
 * `dryRun` (only "All", repeatable), `fieldValidation` ("", Ignore, Warn, Strict), `fieldManager`
 * (at most 128 bytes of printable characters; required for an apply patch) and `force` (apply patches
 * only), as metav1 validation checks them: 422 `CreateOptions.meta.k8s.io "" is invalid: …` naming each.
 */
export function parseWriteQuery(query: URLSearchParams, kind: 'CreateOptions' | 'UpdateOptions' | 'PatchOptions', patchType?: string): WriteQuery {
  const problems: FieldError[] = [];
  const forceValue = query.get('force');
  if (kind === 'PatchOptions') {
    // ValidatePatchOptions: kubectl defaults fieldManager to "kubectl"; controllers must set it.
    if (patchType === APPLY_PATCH && (query.get('fieldManager') ?? '') === '') problems.push(fieldErrors.required('fieldManager', 'is required for apply patch'));
    if (patchType !== APPLY_PATCH && forceValue !== null) problems.push(fieldErrors.forbidden('force', 'may not be specified for non-apply patch'));
  }
  const dryRun = query.getAll('dryRun');
  if (dryRun.some((value) => value !== 'All')) problems.push(fieldErrors.notSupported('dryRun', dryRun, ['All']));
  const fieldValidation = query.get('fieldValidation') ?? '';
  if (fieldValidation !== '' && !FIELD_VALIDATIONS.includes(fieldValidation)) problems.push(fieldErrors.notSupported('fieldValidation', fieldValidation, ['', ...FIELD_VALIDATIONS]));
  const fieldManager = query.get('fieldManager') ?? '';
  if (Buffer.byteLength(fieldManager) > FIELD_MANAGER_MAX_BYTES) problems.push(fieldErrors.tooLong('fieldManager', FIELD_MANAGER_MAX_BYTES));
  // unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space; one error per character, at its byte offset.
  let offset = 0;
  for (const character of fieldManager) {
    if (!isPrintable(character)) {
      const code = `U+${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
      problems.push(fieldErrors.invalid('fieldManager', fieldManager, `invalid character ${code} (at position ${offset})`));
    }
    offset += Buffer.byteLength(character);
  }
  if (problems.length > 0) throw errors.invalid(kind, 'meta.k8s.io', '', problems);
  return {
    dryRun: dryRun.length > 0,
    fieldValidation: fieldValidation === '' ? 'Warn' : (fieldValidation as FieldValidation),
    fieldManager,
    force: forceValue !== null && forceValue !== '0' && forceValue.toLowerCase() !== 'false',
  };
}

/**
 * How deep a request body may nest. Go's encoding/json refuses beyond 10,000 levels ("exceeded max
 * depth"); the recursive walks a body meets here (structuredClone, merge patches, fast-json-patch's
 * validation, schema pruning, freezing, JSON.stringify) overflow node's stack from ~5,000 levels,
 * so the limit is 1,000: far beyond any real object, and well inside the stack.
 */
const MAX_NESTING_DEPTH = 1_000;

/**
 * 400 for a decoded body nested deeper than MAX_NESTING_DEPTH. Checked without recursion, before
 * anything recursive meets the body and overflows the stack (was a 500).
 */
export function checkNesting<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  const pending: [unknown, number][] = [[value, 1]];
  while (pending.length > 0) {
    const [next, depth] = pending.pop()!;
    if (depth > MAX_NESTING_DEPTH) throw errors.badRequest(`the body of the request is nested deeper than ${MAX_NESTING_DEPTH} levels (exceeded max depth)`);
    const children = Array.isArray(next) ? next : Object.values(next as Record<string, unknown>);
    for (const child of children) if (typeof child === 'object' && child !== null) pending.push([child, depth + 1]);
  }
  return value;
}

// ---- responses -------------------------------------------------------------------------------

/**
 * The headers of a JSON answer, as one `writeHead` list (node's fast path when no header was set
 * before): Audit-Id (the handler leaves it to reads, see handler.ts), type, length, no caching.
 */
function jsonHeaders(info: RequestInfo, contentLength: number): (string | number | string[])[] {
  const headers: (string | number | string[])[] = ['Content-Type', 'application/json', 'Content-Length', contentLength, 'Cache-Control', 'no-cache, private'];
  if (info.auditID !== '') headers.unshift('Audit-Id', info.auditID);
  return headers;
}

/** A `Warning` header value: `299 - "<text>"`, as warning.AddWarning writes it. */
export function warningHeader(text: string): string {
  return `299 - ${JSON.stringify(text)}`;
}

/** Adds the Warning headers to a writeHead list: those set before (the deprecation one, index.ts), which the list would replace, then `warnings`. */
function pushWarnings(scope: RequestScope, headers: (string | number | string[])[], warnings: readonly string[]): void {
  const earlier = scope.res.getHeader('Warning');
  const allWarnings = [...(Array.isArray(earlier) ? earlier : earlier === undefined ? [] : [String(earlier)]), ...warnings.map(warningHeader)];
  if (allWarnings.length > 0) headers.push('Warning', allWarnings);
}

/** Answers with encoded JSON (Content-Length is its byte length). */
export function sendJson(scope: RequestScope, code: number, body: Buffer, warnings: readonly string[] = []): void {
  const headers = jsonHeaders(scope.info, body.length);
  pushWarnings(scope, headers, warnings);
  scope.res.writeHead(code, headers);
  scope.res.end(body);
}

function includeObjectOf(scope: RequestScope): IncludeObject {
  return scope.output.as === 'Table' ? parseIncludeObject(scope.query.get('includeObject')) : 'Metadata';
}

function tableOptions(scope: RequestScope, metaVersion: string): TableOptions {
  return { version: scope.version, metaVersion, includeObject: includeObjectOf(scope) };
}

/**
 * One stored value (storage version) read by a GET, as encoded JSON of the negotiated
 * representation in the request version: objects and PartialObjectMetadata are the codec's cached
 * bytes of the value (serialized and encoded once per value and form, shared with lists), written
 * as they are. A Table is built each time (its Age cells depend on the clock).
 */
function readObjectBody(scope: RequestScope, value: StoredValue): Buffer {
  const { codec, output } = scope;
  const version = scope.version.name;
  switch (output.as) {
    case 'Object':
      return codec.storedBytes(value, version);
    case 'PartialObjectMetadata':
      return codec.storedBytes(value, version, output.version);
    case 'PartialObjectMetadataList':
      throw errors.notAcceptable(['application/json', 'application/json;as=Table;v=v1;g=meta.k8s.io']);
    case 'Table':
      return Buffer.from(JSON.stringify(objectTable(codec.fromStorage(value, version), tableOptions(scope, output.version))));
  }
}

/**
 * The answer to a write: the object written (or deleted) as JSON text of the negotiated
 * representation, serialized once, uncached (the next read or watch event caches it if anyone
 * needs it; caching every write would cost memory and time for objects nobody reads).
 */
function writtenText(scope: RequestScope, value: StoredValue): string {
  const { codec, output } = scope;
  const version = scope.version.name;
  switch (output.as) {
    case 'Object':
      return JSON.stringify(codec.fromStorage(value, version));
    case 'PartialObjectMetadata':
      return codec.storedJson(value, version, output.version);
    case 'PartialObjectMetadataList':
      throw errors.notAcceptable(['application/json', 'application/json;as=Table;v=v1;g=meta.k8s.io']);
    case 'Table':
      return JSON.stringify(objectTable(codec.fromStorage(value, version), tableOptions(scope, output.version)));
  }
}

/** A list answer: the envelope up to `"items":[` (text), then the items and the closing (bytes). */
interface ListBody {
  readonly head: string;
  readonly rest: Buffer;
}

/** `{<typeMeta>,"metadata":<listMeta>,"items":[` (key order as Kubernetes writes lists). */
function listHead(typeMeta: Record<string, string>, listMeta: Readonly<Record<string, unknown>>): string {
  return `${JSON.stringify(typeMeta).slice(0, -1)},"metadata":${JSON.stringify(listMeta)},"items":[`;
}

/**
 * A list of stored values as encoded JSON of the negotiated representation: the envelope, then
 * the items' cached bytes (KindCodec.listItemsBytes; kept per `listing` when given).
 */
function listBody(scope: RequestScope, items: readonly StoredValue[], listMeta: Readonly<Record<string, unknown>>, listing?: string): ListBody {
  const { codec, output } = scope;
  const version = scope.version.name;
  switch (output.as) {
    case 'Object':
      return { head: listHead({ apiVersion: codec.apiVersion(version), kind: codec.listKind }, listMeta), rest: codec.listItemsBytes(items, version, undefined, listing) };
    case 'PartialObjectMetadataList':
      return {
        head: listHead({ kind: 'PartialObjectMetadataList', apiVersion: `meta.k8s.io/${output.version}` }, listMeta),
        rest: codec.listItemsBytes(items, version, output.version, listing),
      };
    case 'PartialObjectMetadata':
      throw errors.notAcceptable(['application/json', 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io']);
    case 'Table': {
      const objects = items.map((value) => codec.fromStorage(value, version));
      return { head: '', rest: Buffer.from(JSON.stringify(toTable(objects, { ...listMeta }, tableOptions(scope, output.version)))) };
    }
  }
}

/**
 * Answers a list: head and rest written as one response (corked: one write to the connection),
 * without copying the rest into a new buffer with the head.
 */
function sendList(scope: RequestScope, body: ListBody, warnings: readonly string[] = []): void {
  const res = scope.res;
  const headLength = Buffer.byteLength(body.head);
  const headers = jsonHeaders(scope.info, headLength + body.rest.length);
  pushWarnings(scope, headers, warnings);
  res.cork();
  res.writeHead(200, headers);
  if (headLength > 0) res.write(body.head);
  res.end(body.rest);
  res.uncork();
}

/** Answers a write with the object written (or deleted). */
function respondWritten(scope: RequestScope, code: number, value: StoredValue, warnings: readonly string[] = []): void {
  sendJson(scope, code, Buffer.from(writtenText(scope, value)), warnings);
}

// ---- get.go: get, list, watch ----------------------------------------------------------------

export async function getObject(scope: RequestScope): Promise<void> {
  checkObjectPath(scope);
  const value = await scope.store.get(scope.info.namespace, scope.info.name, { resourceVersion: parseResourceVersion(scope.query) });
  sendJson(scope, 200, readObjectBody(scope, value));
}

export async function listObjects(scope: RequestScope): Promise<void> {
  const options = parseListQuery(scope.query, false);
  const listed = await scope.store.list(scope.info.namespace, options);
  // Kept per request target: the same target lists the same selection (the items decide whether the bytes still apply).
  sendList(scope, listBody(scope, listed.items, listed.listMeta, scope.req.url));
}

export async function watchObjects(scope: RequestScope, deps: HandlerDeps): Promise<void> {
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
    scope.store.storage,
    deps.hub,
    deps.watchSettings,
    deps.logger,
  );
}

// ---- incoming objects --------------------------------------------------------------------------

/**
 * A body's `apiVersion` and `kind` as the JSON serializer's type-meta decoding
 * (SimpleMetaFactory.Interpret) reads them into Go strings: absent or `null` → "" (what the endpoint
 * then defaults), any other non-string → 400.
 */
export function decodeTypeMeta(body: Record<string, unknown>): { readonly apiVersion: string; readonly kind: string } {
  const read = (field: 'apiVersion' | 'kind'): string => {
    const value = body[field];
    if (value === undefined || value === null) return '';
    if (typeof value !== 'string') {
      throw errors.badRequest(`couldn't get version/kind; json parse error: json: cannot unmarshal ${jsonTypeName(value)} into Go struct field .${field} of type string`);
    }
    return value;
  };
  return { apiVersion: read('apiVersion'), kind: read('kind') };
}

/** Checks `apiVersion`/`kind` of a body against the endpoint (400 on a mismatch) and fills them in when empty. */
function withExpectedTypeMeta(scope: RequestScope, body: KubeObject): KubeObject {
  const { apiVersion, kind } = decodeTypeMeta(body);
  const expectedApiVersion = scope.codec.apiVersion(scope.version.name);
  if (apiVersion !== '' && apiVersion !== expectedApiVersion) {
    throw errors.badRequest(`the API version in the data (${apiVersion}) does not match the expected API version (${expectedApiVersion})`);
  }
  if (kind !== '' && kind !== scope.codec.kind) {
    throw errors.badRequest(`the kind in the data (${kind}) does not match the expected kind (${scope.codec.kind})`);
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

function checkNameMatchesUrl(scope: RequestScope, meta: Meta): void {
  if (meta.name !== scope.info.name) {
    throw errors.badRequest(`the name of the object (${typeof meta.name === 'string' ? meta.name : ''}) does not match the name on the URL (${scope.info.name})`);
  }
}

// ---- create.go, update.go, patch.go ------------------------------------------------------------

/** The manager a write records in managedFields: `fieldManager`, or else the User-Agent's prefix. */
function managerOf(scope: RequestScope, query: WriteQuery): string {
  return managerOrUserAgent(query.fieldManager, scope.req.headers['user-agent']);
}

export async function createObject(scope: RequestScope): Promise<void> {
  const query = parseWriteQuery(scope.query, 'CreateOptions');
  const { dryRun, fieldValidation } = query;
  const body = withExpectedTypeMeta(scope, checkNesting(await readObject(scope.req, scope.res)));
  const meta = metaOf(body);
  if (meta.resourceVersion !== undefined && meta.resourceVersion !== '') throw errors.badRequest('resourceVersion should not be set on objects to be created');
  ensureNamespace(scope, meta);
  const created = await scope.store.create(contextOf(scope), body, { dryRun, fieldValidation, fieldManager: managerOf(scope, query) });
  respondWritten(scope, 201, created.value, created.warnings);
}

export async function updateObject(scope: RequestScope): Promise<void> {
  checkObjectPath(scope);
  const query = parseWriteQuery(scope.query, 'UpdateOptions');
  const { dryRun, fieldValidation } = query;
  const body = withExpectedTypeMeta(scope, checkNesting(await readObject(scope.req, scope.res)));
  const meta = metaOf(body);
  checkNameMatchesUrl(scope, meta);
  ensureNamespace(scope, meta);
  const updated = await scope.store.update(contextOf(scope), scope.info.name, { object: body }, { dryRun, fieldValidation, fieldManager: managerOf(scope, query) });
  respondWritten(scope, 200, updated.value, updated.warnings);
}

export async function patchObject(scope: RequestScope): Promise<void> {
  checkObjectPath(scope);
  // The patch type first (415), as PatchResource: the options' rules depend on it.
  const contentType = parseContentType(scope.req.headers['content-type']);
  const mediaType = contentType ? mediaTypeOf(contentType) : '';
  if (mediaType !== MERGE_PATCH && mediaType !== JSON_PATCH && mediaType !== APPLY_PATCH) {
    throw errors.unsupportedMediaType(scope.req.headers['content-type'] ?? '', SUPPORTED_PATCH_TYPES);
  }
  const query = parseWriteQuery(scope.query, 'PatchOptions', mediaType);
  if (mediaType === APPLY_PATCH) return applyObject(scope, query);
  const { dryRun, fieldValidation } = query;
  const patchType: PatchType = mediaType;
  const patch = checkNesting(parseBody(await readBody(scope.req, scope.res), 'application/json'));
  checkPatch(patchType, patch);
  const update = (current: KubeObject): KubeObject => {
    const patched = withExpectedTypeMeta(scope, applyObjectPatch(patchType, current, patch));
    const meta = metaOf(patched);
    checkNameMatchesUrl(scope, meta);
    ensureNamespace(scope, meta);
    return patched;
  };
  const patched = await scope.store.update(contextOf(scope), scope.info.name, { update }, { dryRun, fieldValidation, fieldManager: managerOf(scope, query) });
  respondWritten(scope, 200, patched.value, patched.warnings);
}

/**
 * Server-side apply (patch.go's applyPatcher): the body merged onto the object by the field
 * manager, which records the Apply entry; a missing object is created (201), but never through
 * a subresource. Conflicts with other managers are 409 unless `force`.
 */
async function applyObject(scope: RequestScope, query: WriteQuery): Promise<void> {
  const decoded = decodeApplyPatch(await readBody(scope.req, scope.res));
  checkNesting(decoded.object);
  const manager = managerOf(scope, query);
  const request: ApplyRequest = { manager, force: query.force, subresource: scope.subresource };
  const fieldManager = scope.store.fieldManager(scope.version);
  let strictWarnings: string[] = [];
  const apply = (live: KubeObject | undefined): KubeObject => {
    const applied = applyConfiguration(fieldManager, live, decoded.object, request);
    strictWarnings = strictApplyWarnings(decoded, query.fieldValidation);
    const meta = metaOf(applied);
    if (live === undefined && typeof meta.uid === 'string' && meta.uid !== '') {
      throw errors.conflict(scope.codec.gr, scope.info.name, `uid mismatch: the provided object specified uid ${meta.uid}, and no existing object was found`);
    }
    checkNameMatchesUrl(scope, meta);
    ensureNamespace(scope, meta);
    return applied;
  };
  const info = { update: (current: KubeObject) => apply(current), managesFields: true, ...(scope.subresource === '' ? { create: () => apply(undefined) } : {}) };
  const result = await scope.store.update(contextOf(scope), scope.info.name, info, { dryRun: query.dryRun, fieldValidation: query.fieldValidation, fieldManager: manager });
  respondWritten(scope, result.created ? 201 : 200, result.value, [...strictWarnings, ...result.warnings]);
}

// ---- delete.go ---------------------------------------------------------------------------------

const PROPAGATION_POLICIES = ['Foreground', 'Background', 'Orphan'];

/** DeleteOptions from the body (optional) and the query, validated as ValidateDeleteOptions (422). */
async function readDeleteOptions(scope: RequestScope): Promise<DeleteOptions> {
  const body = await readBody(scope.req, scope.res);
  let parsed: Record<string, unknown> = {};
  if (body.length > 0 && body.toString('utf8').trim() !== '') {
    const value = checkNesting(parseBody(body, 'application/json'));
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

export async function deleteObject(scope: RequestScope): Promise<void> {
  checkObjectPath(scope);
  const options = await readDeleteOptions(scope);
  const deleted = await scope.store.delete(contextOf(scope), scope.info.name, options);
  respondWritten(scope, 200, deleted.value, deleted.warnings);
}

export async function deleteCollection(scope: RequestScope): Promise<void> {
  const listOptions = parseListQuery(scope.query, false);
  const options = await readDeleteOptions(scope);
  const deleted = await scope.store.deleteCollection(contextOf(scope), listOptions, options);
  sendList(scope, listBody(scope, deleted.items, deleted.listMeta), deleted.warnings);
}
