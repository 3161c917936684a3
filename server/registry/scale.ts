import type { ScaleSubresource } from '../../apis/types';
import { scalePathFields } from '../../apis/features';
import { mediaTypeOf, parseContentType } from '../content';
import { errors } from '../status';
import { managerOrUserAgent } from './apply';
import { parseBody, readBody, readObject } from './body';
import { FieldError, fieldErrors } from './field-errors';
import { parseResourceVersion } from './list-options';
import { checkNesting, checkObjectPath, contextOf, decodeTypeMeta, parseWriteQuery, RequestScope, sendJson } from './handlers';
import { JSON_PATCH, MERGE_PATCH, applyObjectPatch, checkPatch } from './patch';
import { KubeObject, isObject } from './rules';
import type { AdmissionView } from './store';
import { objectTable, parseIncludeObject } from './table';

/**
 * The scale subresource (`<plural>/<name>/scale`), as apiextensions-apiserver serves a CRD's
 * (pkg/registry/customresource/etcd.go, ScaleREST): an `autoscaling/v1` Scale read from and written
 * to the object at the definition's specReplicasPath, statusReplicasPath and labelSelectorPath.
 *
 * - GET: the Scale of the object (500 when the spec replicas field is missing, as upstream).
 * - PUT: the Scale's spec.replicas written to specReplicasPath through the generic store (the
 *   object is then validated and admitted as any update); a resourceVersion in the Scale is a
 *   precondition (409 when stale).
 * - PATCH: merge, JSON or strategic-merge patch of the current Scale (Scale has no list, so a
 *   strategic merge patch is a merge patch), then as PUT. Server-side apply is not served here.
 */

export const SCALE_GROUP = 'autoscaling';
export const SCALE_VERSION = 'v1';
export const SCALE_KIND = 'Scale';
export const SCALE_API_VERSION = `${SCALE_GROUP}/${SCALE_VERSION}`;
const STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json';
/** As ScaleREST signals "spec replicas were not set" to the update (math.MinInt32). */
const UNSET_REPLICAS = -2147483648;
const MAX_INT32 = 2147483647;

export interface Scale {
  readonly kind: typeof SCALE_KIND;
  readonly apiVersion: typeof SCALE_API_VERSION;
  readonly metadata: Record<string, unknown>;
  readonly spec: { replicas?: number };
  readonly status: { replicas: number; selector?: string };
}

/** unstructured.NestedFieldNoCopy: the value at the fields, and whether it was found. */
function nested(object: Readonly<Record<string, unknown>>, fields: readonly string[]): { found: boolean; value?: unknown } {
  let node: unknown = object;
  for (const field of fields) {
    if (!isObject(node) || !Object.prototype.hasOwnProperty.call(node, field)) return { found: false };
    node = node[field];
  }
  return { found: true, value: node };
}

/** unstructured.NestedInt64: an integer, or an error worded as upstream's. */
function nestedInt64(object: Readonly<Record<string, unknown>>, path: string): { found: boolean; value: number } {
  const { found, value } = nested(object, scalePathFields(path));
  if (!found) return { found: false, value: 0 };
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw errors.internal(`${path.replace(/^\./, '')} accessor error: ${JSON.stringify(value)} is of the type ${value === null ? '<nil>' : typeof value === 'number' ? 'float64' : typeof value}, expected int64`);
  }
  return { found: true, value };
}

/** scaleFromCustomResource: the Scale of an object (request version), and whether spec replicas was set. */
export function scaleOf(object: Readonly<KubeObject>, scale: ScaleSubresource): { scale: Scale; specFound: boolean } {
  const meta = (isObject(object.metadata) ? object.metadata : {}) as Record<string, unknown>;
  const spec = nestedInt64(object, scale.specReplicasPath);
  const status = nestedInt64(object, scale.statusReplicasPath);
  let selector = '';
  if (scale.labelSelectorPath !== undefined) {
    const { found, value } = nested(object, scalePathFields(scale.labelSelectorPath));
    if (found && typeof value !== 'string') {
      throw errors.internal(`${scale.labelSelectorPath.replace(/^\./, '')} accessor error: ${JSON.stringify(value)} is of the type ${typeof value}, expected string`);
    }
    if (found) selector = value as string;
  }
  const metadata: Record<string, unknown> = { name: meta.name };
  if (meta.namespace !== undefined && meta.namespace !== '') metadata.namespace = meta.namespace;
  for (const field of ['uid', 'resourceVersion', 'creationTimestamp']) if (meta[field] !== undefined) metadata[field] = meta[field];
  return {
    scale: {
      kind: SCALE_KIND,
      apiVersion: SCALE_API_VERSION,
      metadata,
      // int32 replicas with omitempty: 0 is left out.
      spec: spec.value !== 0 ? { replicas: spec.value } : {},
      status: { replicas: status.value, ...(selector !== '' ? { selector } : {}) },
    },
    specFound: spec.found,
  };
}

/**
 * customResourceValidator.ValidateScaleSpec/ValidateScaleStatus: the replicas fields, where set,
 * integers in [0, MaxInt32]; the selector a string. Field paths are the definition's JSONPaths.
 */
export function scaleFieldProblems(object: Readonly<KubeObject>, scale: ScaleSubresource): FieldError[] {
  const problems: FieldError[] = [];
  for (const path of [scale.specReplicasPath, scale.statusReplicasPath]) {
    const { found, value } = nested(object, scalePathFields(path));
    if (!found) continue;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      problems.push(fieldErrors.invalid(path, 0, `${path.replace(/^\./, '')} accessor error: ${JSON.stringify(value)} is of the type ${typeof value}, expected int64`));
    } else if (value < 0) {
      problems.push(fieldErrors.invalid(path, value, 'should be a non-negative integer'));
    } else if (value > MAX_INT32) {
      problems.push(fieldErrors.invalid(path, value, `should be less than or equal to ${MAX_INT32}`));
    }
  }
  if (scale.labelSelectorPath !== undefined) {
    const { found, value } = nested(object, scalePathFields(scale.labelSelectorPath));
    if (found && typeof value !== 'string') {
      problems.push(fieldErrors.invalid(scale.labelSelectorPath, '', `${scale.labelSelectorPath.replace(/^\./, '')} accessor error: ${JSON.stringify(value)} is of the type ${typeof value}, expected string`));
    }
  }
  return problems;
}

/** unstructured.SetNestedField: creates the maps on the way. */
function setNested(object: Record<string, unknown>, fields: readonly string[], value: unknown): void {
  let node = object;
  for (const field of fields.slice(0, -1)) {
    if (!isObject(node[field])) node[field] = {};
    node = node[field] as Record<string, unknown>;
  }
  node[fields[fields.length - 1]] = value;
}

function scaleDefinition(scope: RequestScope): ScaleSubresource {
  const scale = scope.version.subresources?.scale;
  if (!scale) throw errors.pathNotFound();
  return scale;
}

/**
 * The Scale as JSON, or as a Table of it (`kubectl get --subresource=scale`): ScaleREST has no
 * table convertor, so upstream's default one answers, Name and "Created At" (a date).
 */
function scaleBody(scope: RequestScope, scale: Scale): Buffer {
  if (scope.output.as === 'Table') {
    const table = objectTable(scale as unknown as Record<string, unknown>, { version: { ...scope.version, printerColumns: [] }, metaVersion: scope.output.version, includeObject: parseIncludeObject(scope.query.get('includeObject')) });
    const columns = table.columnDefinitions as { name: string }[];
    columns[columns.length - 1] = { ...columns[columns.length - 1], name: 'Created At' };
    return Buffer.from(JSON.stringify(table));
  }
  if (scope.output.as !== 'Object') throw errors.notAcceptable(['application/json', 'application/json;as=Table;v=v1;g=meta.k8s.io']);
  return Buffer.from(JSON.stringify(scale));
}

/** Checks a Scale sent by a client: autoscaling/v1 Scale, its name the URL's, spec.replicas an int32. */
function checkIncomingScale(scope: RequestScope, body: unknown): { replicas: number; resourceVersion: string } {
  if (!isObject(body)) throw errors.badRequest('the body of the request must be an autoscaling/v1 Scale object');
  const { apiVersion, kind } = decodeTypeMeta(body);
  if (apiVersion !== '' && apiVersion !== SCALE_API_VERSION) {
    throw errors.badRequest(`the API version in the data (${apiVersion}) does not match the expected API version (${SCALE_API_VERSION})`);
  }
  if (kind !== '' && kind !== SCALE_KIND) {
    throw errors.badRequest(`the kind in the data (${kind}) does not match the expected kind (${SCALE_KIND})`);
  }
  const meta = isObject(body.metadata) ? body.metadata : {};
  if (meta.name !== undefined && meta.name !== scope.info.name) {
    throw errors.badRequest(`the name of the object (${typeof meta.name === 'string' ? meta.name : ''}) does not match the name on the URL (${scope.info.name})`);
  }
  const spec = isObject(body.spec) ? body.spec : {};
  const replicas = spec.replicas ?? 0;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < -2147483648 || replicas > MAX_INT32) {
    throw errors.badRequest(`json: cannot unmarshal ${JSON.stringify(replicas)} into Go struct field ScaleSpec.spec.replicas of type int32`);
  }
  const resourceVersion = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : '';
  return { replicas, resourceVersion };
}

/**
 * `object` (changed in place) with the replicas of `scale`, a Scale from the client or from
 * mutating admission, as scaleUpdatedObjectInfo.UpdatedObject takes it: checked as a Scale,
 * spec.replicas written to specReplicasPath, its resourceVersion (when set) a precondition, the
 * result's replicas fields checked (422).
 */
function withScale(scope: RequestScope, definition: ScaleSubresource, object: KubeObject, scale: unknown): KubeObject {
  const { replicas, resourceVersion } = checkIncomingScale(scope, scale);
  if (replicas === UNSET_REPLICAS) throw errors.badRequest(`the spec replicas field "${definition.specReplicasPath}" cannot be empty`);
  setNested(object, scalePathFields(definition.specReplicasPath), replicas);
  const meta = (isObject(object.metadata) ? object.metadata : (object.metadata = {})) as Record<string, unknown>;
  if (resourceVersion !== '') meta.resourceVersion = resourceVersion;
  const problems = scaleFieldProblems(object, definition);
  if (problems.length > 0) throw errors.invalid(scope.codec.kind, scope.codec.group, scope.info.name, problems);
  return object;
}

/**
 * The object updated from a Scale, as scaleUpdatedObjectInfo.UpdatedObject: the Scale the client
 * sent (or patched from the current one) writes its replicas to specReplicasPath; its
 * resourceVersion, when set, becomes the object's (a precondition).
 */
async function writeScale(scope: RequestScope, kind: 'UpdateOptions' | 'PatchOptions', newScale: (current: Scale) => unknown): Promise<void> {
  checkObjectPath(scope);
  const definition = scaleDefinition(scope);
  const query = parseWriteQuery(scope.query, kind);
  const { dryRun, fieldValidation } = query;
  const update = (current: KubeObject): KubeObject => {
    const { scale: oldScale, specFound } = scaleOf(current, definition);
    const old: Scale = specFound ? oldScale : { ...oldScale, spec: { replicas: UNSET_REPLICAS } };
    return withScale(scope, definition, current, newScale(old));
  };
  // Admission sees Scales, as upstream's ScaleREST shows them (kind autoscaling/v1 Scale).
  const admissionView: AdmissionView = {
    kind: { group: SCALE_GROUP, version: SCALE_VERSION, kind: SCALE_KIND },
    view: (object) => scaleOf(object, definition).scale as unknown as KubeObject,
    apply: (object, scale) => withScale(scope, definition, object, scale),
  };
  const written = await scope.store.update(contextOf(scope), scope.info.name, { update, admissionView }, { dryRun, fieldValidation, fieldManager: managerOrUserAgent(query.fieldManager, scope.req.headers['user-agent']) });
  const object = scope.codec.fromStorage(written.value, scope.version.name);
  let scale: Scale;
  try {
    scale = scaleOf(object, definition).scale;
  } catch (error) {
    throw errors.badRequest((error as Error).message);
  }
  sendJson(scope, 200, scaleBody(scope, scale), written.warnings);
}

export async function getScale(scope: RequestScope): Promise<void> {
  checkObjectPath(scope);
  const definition = scaleDefinition(scope);
  const value = await scope.store.get(scope.info.namespace, scope.info.name, { resourceVersion: parseResourceVersion(scope.query) });
  const { scale, specFound } = scaleOf(scope.codec.fromStorage(value, scope.version.name), definition);
  if (!specFound) throw errors.internal(`the spec replicas field "${definition.specReplicasPath}" does not exist`);
  sendJson(scope, 200, scaleBody(scope, scale));
}

export async function updateScale(scope: RequestScope): Promise<void> {
  const body = checkNesting(await readObject(scope.req, scope.res));
  await writeScale(scope, 'UpdateOptions', () => body);
}

export async function patchScale(scope: RequestScope): Promise<void> {
  const contentType = parseContentType(scope.req.headers['content-type']);
  const mediaType = contentType ? mediaTypeOf(contentType) : '';
  if (mediaType !== MERGE_PATCH && mediaType !== JSON_PATCH && mediaType !== STRATEGIC_MERGE_PATCH) {
    throw errors.unsupportedMediaType(scope.req.headers['content-type'] ?? '', [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH]);
  }
  const patchType = mediaType === JSON_PATCH ? JSON_PATCH : MERGE_PATCH;
  const patch = checkNesting(parseBody(await readBody(scope.req, scope.res), 'application/json'));
  checkPatch(patchType, patch);
  await writeScale(scope, 'PatchOptions', (current) => applyObjectPatch(patchType, structuredClone(current) as unknown as Record<string, unknown>, patch));
}
