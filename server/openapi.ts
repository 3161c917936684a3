import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiGroupDefinition, JSONSchemaProps, KindDefinition, kindsInVersion, listKindOf, servedVersions } from '../apis';
import { MediaOffer, negotiate, parseAccept } from './content';
import { JSON_OFFERS, writeDocument, type SerializedDocument } from './discovery';
import { encodeOpenApiV2 } from './openapi-proto';
import { Gvk, META_PREFIX, metaDefinitions } from './openapi-meta';
import { errors } from './status';
import { SERVER_VERSION } from './version';

/**
 * The published OpenAPI documents, generated from the definition's schemas:
 * - `/openapi/v2`: one swagger 2.0 document; kube-apiserver merges its paths under
 *   `/apis/<g>/<v>/` into the cluster spec (polled every minute, ETag honoured).
 * - `/openapi/v3`: the index `{"paths":{"apis/<g>/<v>":{"serverRelativeURL":…?hash=…}}}`, and
 *   `/openapi/v3/apis/<g>/<v>`: an OpenAPI 3.0 document per group version, proxied live by
 *   kube-apiserver (kubectl explain, client-side apply and validation read it).
 *
 * Definitions are named `<reversed group>.<version>.<Kind>` (`com.example.wardle.v1alpha1.Flunder`)
 * and carry `x-kubernetes-group-version-kind`, which is how kubectl finds a kind's schema. Patch
 * operations consume JSON patch, merge patch and apply patches (as k8s.io/apiserver's installer
 * lists them), not strategic merge patch: advertising it would make kubectl apply send it, and
 * custom types cannot take it.
 */

type Schema = Record<string, unknown>;
type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

const PATCH_TYPES = ['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml'];
const PRODUCES = ['application/json'];
const PRODUCES_LIST = ['application/json', 'application/json;stream=watch'];

/** Query parameters, as upstream documents them (types only; descriptions short). */
const QUERY: Record<string, { type: 'string' | 'boolean' | 'integer'; description: string }> = {
  allowWatchBookmarks: { type: 'boolean', description: 'allowWatchBookmarks asks for BOOKMARK events in a watch.' },
  continue: { type: 'string', description: 'continue is the token of the next page of a list.' },
  dryRun: { type: 'string', description: 'dryRun=All processes the request without persisting it.' },
  fieldManager: { type: 'string', description: 'fieldManager names the actor making the change.' },
  fieldSelector: { type: 'string', description: 'fieldSelector restricts a list by fields (metadata.name, metadata.namespace).' },
  fieldValidation: { type: 'string', description: 'fieldValidation: Ignore, Warn or Strict handling of unknown fields.' },
  force: { type: 'boolean', description: 'force takes over the fields other managers own; apply patches only.' },
  gracePeriodSeconds: { type: 'integer', description: 'gracePeriodSeconds before the object is deleted.' },
  labelSelector: { type: 'string', description: 'labelSelector restricts a list by labels.' },
  limit: { type: 'integer', description: 'limit is the most items one page of a list returns.' },
  orphanDependents: { type: 'boolean', description: 'Deprecated: use propagationPolicy.' },
  pretty: { type: 'string', description: "If 'true', the output is pretty printed." },
  propagationPolicy: { type: 'string', description: 'propagationPolicy: Orphan, Background or Foreground.' },
  resourceVersion: { type: 'string', description: 'resourceVersion constrains which revision a list or watch starts from.' },
  resourceVersionMatch: { type: 'string', description: 'resourceVersionMatch: Exact or NotOlderThan.' },
  sendInitialEvents: { type: 'boolean', description: 'sendInitialEvents streams the current objects first, then a bookmark.' },
  timeoutSeconds: { type: 'integer', description: 'timeoutSeconds ends a list or watch after this many seconds.' },
  watch: { type: 'boolean', description: 'watch streams changes instead of listing.' },
};

const LIST_QUERY = ['allowWatchBookmarks', 'continue', 'fieldSelector', 'labelSelector', 'limit', 'resourceVersion', 'resourceVersionMatch', 'sendInitialEvents', 'timeoutSeconds', 'watch'];
const WRITE_QUERY = ['dryRun', 'fieldManager', 'fieldValidation'];
/** PatchOptions: `force` is for apply patches (server-side apply). */
const PATCH_QUERY = [...WRITE_QUERY, 'force'];
const DELETE_QUERY = ['dryRun', 'gracePeriodSeconds', 'orphanDependents', 'propagationPolicy'];
const DELETE_COLLECTION_QUERY = ['continue', 'dryRun', 'fieldSelector', 'gracePeriodSeconds', 'labelSelector', 'limit', 'orphanDependents', 'propagationPolicy', 'resourceVersion', 'resourceVersionMatch', 'sendInitialEvents', 'timeoutSeconds'];

/** Published even though no path refers to them: watch streams are lines of WatchEvent. */
const ALWAYS_PUBLISHED = [`${META_PREFIX}.WatchEvent`];

/** One operation, before it is rendered as swagger 2.0 or OpenAPI 3.0. */
interface Operation {
  readonly method: Method;
  readonly id: string;
  readonly description: string;
  readonly action: string;
  readonly gvk: Gvk;
  readonly query: readonly string[];
  /** Definition name of the request body, or `patch` for a patch body. */
  readonly body?: string;
  readonly bodyRequired?: boolean;
  /** status code → definition name */
  readonly responses: Readonly<Record<string, string>>;
  readonly produces: readonly string[];
  /** The patch media types a patch operation consumes. @default PATCH_TYPES */
  readonly patchTypes?: readonly string[];
}

interface PathItem {
  readonly pathParams: readonly { name: string; description: string }[];
  readonly operations: Operation[];
}

/** `wardle.example.com` → `com.example.wardle`, as the definition namer reverses groups. */
function definitionPrefix(group: string): string {
  return group.split('.').reverse().join('.');
}

/** `wardle.example.com` + `v1alpha1` → `WardleExampleComV1alpha1`, as upstream operation IDs read. */
function operationInfix(group: string, version: string): string {
  const title = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
  return group.replace(/\.k8s\.io$/, '').split(/[.-]/).map(title).join('') + title(version);
}

function tagOf(group: string, version: string): string {
  const infix = operationInfix(group, '');
  return `${infix.charAt(0).toLowerCase()}${infix.slice(1)}_${version}`;
}

function definitionName(group: string, version: string, kind: string): string {
  return `${definitionPrefix(group)}.${version}.${kind}`;
}

/** The kind's schema as an OpenAPI definition: metadata as ObjectMeta, GVK attached. */
function kindDefinition(schema: JSONSchemaProps, gvk: Gvk): Schema {
  const copy = structuredClone(schema) as Schema & { properties?: Record<string, Schema> };
  const properties = { ...(copy.properties ?? {}) };
  properties.metadata = {
    $ref: `#/definitions/${META_PREFIX}.ObjectMeta`,
    description: "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
  };
  return { ...copy, type: 'object', properties, 'x-kubernetes-group-version-kind': [gvk] };
}

function listDefinition(group: string, version: string, kind: KindDefinition): Schema {
  return {
    description: `${listKindOf(kind)} is a list of ${kind.kind}.`,
    properties: {
      apiVersion: { description: 'APIVersion is the versioned schema of this representation of an object.', type: 'string' },
      items: { description: `List of ${kind.plural}.`, items: { $ref: `#/definitions/${definitionName(group, version, kind.kind)}` }, type: 'array' },
      kind: { description: 'Kind is the REST resource this object represents, in CamelCase.', type: 'string' },
      metadata: { $ref: `#/definitions/${META_PREFIX}.ListMeta`, description: 'Standard list metadata.' },
    },
    required: ['items'],
    type: 'object',
    'x-kubernetes-group-version-kind': [{ group, kind: listKindOf(kind), version }],
  };
}

const EMBEDDED_DESCRIPTIONS = {
  apiVersion: 'apiVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources',
  kind: 'kind is a string value representing the type of this object. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds',
  metadata: "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
};

/**
 * apiextensions' addEmbeddedProperties: an `x-kubernetes-embedded-resource` node publishes
 * apiVersion, kind (both required) and metadata (ObjectMeta); in swagger 2.0 not under
 * `x-kubernetes-preserve-unknown-fields` (kubectl would then refuse the unknown fields).
 */
function withEmbeddedProperties(schema: unknown, v2: boolean): unknown {
  if (Array.isArray(schema)) return schema.map((item) => withEmbeddedProperties(item, v2));
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema)) {
    out[key] = key === 'default' || key === 'enum' || key === 'example' || key === 'x-kubernetes-validations' ? value : withEmbeddedProperties(value, v2);
  }
  if (out['x-kubernetes-embedded-resource'] !== true || (v2 && out['x-kubernetes-preserve-unknown-fields'] === true)) return out;
  out.properties = {
    ...((out.properties as Schema | undefined) ?? {}),
    apiVersion: { description: EMBEDDED_DESCRIPTIONS.apiVersion, type: 'string' },
    kind: { description: EMBEDDED_DESCRIPTIONS.kind, type: 'string' },
    metadata: { $ref: `#/definitions/${META_PREFIX}.ObjectMeta`, description: EMBEDDED_DESCRIPTIONS.metadata },
  };
  const required = Array.isArray(out.required) ? [...(out.required as string[])] : [];
  for (const field of ['kind', 'apiVersion']) if (!required.includes(field)) required.push(field);
  out.required = required;
  return out;
}

/** Swagger 2.0 has no `nullable`; upstream publishes CRD schemas to v2 without it. */
function stripNullable(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(stripNullable);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'nullable') continue;
    out[key] = key === 'default' || key === 'enum' || key === 'example' ? value : stripNullable(value);
  }
  return out;
}

/** The `autoscaling/v1` Scale a scale subresource reads and writes, as Kubernetes publishes it. */
const SCALE = 'io.k8s.api.autoscaling.v1.Scale';
const SCALE_PATCH_TYPES = ['application/json-patch+json', 'application/merge-patch+json', 'application/strategic-merge-patch+json'];
const SCALE_DEFINITIONS: Record<string, Schema> = {
  [SCALE]: {
    description: 'Scale represents a scaling request for a resource.',
    properties: {
      apiVersion: { description: 'APIVersion defines the versioned schema of this representation of an object.', type: 'string' },
      kind: { description: 'Kind is a string value representing the REST resource this object represents.', type: 'string' },
      metadata: { $ref: `#/definitions/${META_PREFIX}.ObjectMeta`, description: 'Standard object metadata; More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata.' },
      spec: { $ref: '#/definitions/io.k8s.api.autoscaling.v1.ScaleSpec', description: 'spec defines the behavior of the scale.' },
      status: { $ref: '#/definitions/io.k8s.api.autoscaling.v1.ScaleStatus', description: 'status is the current status of the scale. Read-only.' },
    },
    type: 'object',
    'x-kubernetes-group-version-kind': [{ group: 'autoscaling', kind: 'Scale', version: 'v1' }],
  },
  'io.k8s.api.autoscaling.v1.ScaleSpec': {
    description: 'ScaleSpec describes the attributes of a scale subresource.',
    properties: { replicas: { description: 'replicas is the desired number of instances for the scaled object.', format: 'int32', type: 'integer' } },
    type: 'object',
  },
  'io.k8s.api.autoscaling.v1.ScaleStatus': {
    description: 'ScaleStatus represents the current status of a scale subresource.',
    properties: {
      replicas: { description: 'replicas is the actual number of observed instances of the scaled object.', format: 'int32', type: 'integer' },
      selector: { description: 'selector is the label query over pods that should match the replicas count, in the serialized form of a label selector.', type: 'string' },
    },
    required: ['replicas'],
    type: 'object',
  },
};

/** Paths and definitions of one served group version, in a neutral form. */
function groupVersionModel(api: ApiGroupDefinition, version: string): { paths: Map<string, PathItem>; definitions: Record<string, Schema> } {
  const group = api.group;
  const infix = operationInfix(group, version);
  const base = `/apis/${group}/${version}`;
  const paths = new Map<string, PathItem>();
  const definitions: Record<string, Schema> = {};
  const status = `${META_PREFIX}.Status`;
  const add = (path: string, pathParams: PathItem['pathParams'], operations: Operation[]) => paths.set(path, { pathParams, operations });

  add(`${base}/`, [], [
    { method: 'get', id: `get${infix}APIResources`, description: 'get available resources', action: '', gvk: { group: '', version: '', kind: '' }, query: [], responses: { '200': `${META_PREFIX}.APIResourceList` }, produces: PRODUCES },
  ]);

  for (const { kind, version: kv } of kindsInVersion(api, version)) {
    const gvk: Gvk = { group, version, kind: kind.kind };
    const object = definitionName(group, version, kind.kind);
    const list = definitionName(group, version, listKindOf(kind));
    definitions[object] = kindDefinition(kv.schema, gvk);
    definitions[list] = listDefinition(group, version, kind);
    const namespaced = kind.scope === 'Namespaced';
    const scoped = namespaced ? 'Namespaced' : '';
    const collection = namespaced ? `${base}/namespaces/{namespace}/${kind.plural}` : `${base}/${kind.plural}`;
    const nsParam = namespaced ? [{ name: 'namespace', description: 'object name and auth scope, such as for teams and projects' }] : [];
    const nameParam = { name: 'name', description: `name of the ${kind.kind}` };
    const k = kind.kind;

    add(collection, nsParam, [
      { method: 'get', id: `list${infix}${scoped}${k}`, description: `list or watch objects of kind ${k}`, action: 'list', gvk, query: LIST_QUERY, responses: { '200': list }, produces: PRODUCES_LIST },
      { method: 'post', id: `create${infix}${scoped}${k}`, description: `create a ${k}`, action: 'post', gvk, query: WRITE_QUERY, body: object, bodyRequired: true, responses: { '200': object, '201': object, '202': object }, produces: PRODUCES },
      { method: 'delete', id: `delete${infix}Collection${scoped}${k}`, description: `delete collection of ${k}`, action: 'deletecollection', gvk, query: DELETE_COLLECTION_QUERY, body: `${META_PREFIX}.DeleteOptions`, responses: { '200': status }, produces: PRODUCES },
    ]);
    add(`${collection}/{name}`, [nameParam, ...nsParam], [
      { method: 'get', id: `read${infix}${scoped}${k}`, description: `read the specified ${k}`, action: 'get', gvk, query: [], responses: { '200': object }, produces: PRODUCES },
      { method: 'put', id: `replace${infix}${scoped}${k}`, description: `replace the specified ${k}`, action: 'put', gvk, query: WRITE_QUERY, body: object, bodyRequired: true, responses: { '200': object, '201': object }, produces: PRODUCES },
      { method: 'patch', id: `patch${infix}${scoped}${k}`, description: `partially update the specified ${k}`, action: 'patch', gvk, query: PATCH_QUERY, body: 'patch', bodyRequired: true, responses: { '200': object, '201': object }, produces: PRODUCES },
      { method: 'delete', id: `delete${infix}${scoped}${k}`, description: `delete a ${k}`, action: 'delete', gvk, query: DELETE_QUERY, body: `${META_PREFIX}.DeleteOptions`, responses: { '200': status, '202': status }, produces: PRODUCES },
    ]);
    if (kv.subresources?.status) {
      add(`${collection}/{name}/status`, [nameParam, ...nsParam], [
        { method: 'get', id: `read${infix}${scoped}${k}Status`, description: `read status of the specified ${k}`, action: 'get', gvk, query: [], responses: { '200': object }, produces: PRODUCES },
        { method: 'put', id: `replace${infix}${scoped}${k}Status`, description: `replace status of the specified ${k}`, action: 'put', gvk, query: WRITE_QUERY, body: object, bodyRequired: true, responses: { '200': object, '201': object }, produces: PRODUCES },
        { method: 'patch', id: `patch${infix}${scoped}${k}Status`, description: `partially update status of the specified ${k}`, action: 'patch', gvk, query: PATCH_QUERY, body: 'patch', bodyRequired: true, responses: { '200': object, '201': object }, produces: PRODUCES },
      ]);
    }
    if (kv.subresources?.scale) {
      // As apiextensions' OpenAPI builder: autoscaling/v1 Scale in and out, the kind's GVK on the operations.
      Object.assign(definitions, SCALE_DEFINITIONS);
      add(`${collection}/{name}/scale`, [nameParam, ...nsParam], [
        { method: 'get', id: `read${infix}${scoped}${k}Scale`, description: `read scale of the specified ${k}`, action: 'get', gvk, query: [], responses: { '200': SCALE }, produces: PRODUCES },
        { method: 'put', id: `replace${infix}${scoped}${k}Scale`, description: `replace scale of the specified ${k}`, action: 'put', gvk, query: WRITE_QUERY, body: SCALE, bodyRequired: true, responses: { '200': SCALE, '201': SCALE }, produces: PRODUCES },
        // What the scale subresource accepts: no server-side apply there (415).
        { method: 'patch', id: `patch${infix}${scoped}${k}Scale`, description: `partially update scale of the specified ${k}`, action: 'patch', gvk, query: WRITE_QUERY, body: 'patch', bodyRequired: true, responses: { '200': SCALE, '201': SCALE }, produces: PRODUCES, patchTypes: SCALE_PATCH_TYPES },
      ]);
    }
    if (namespaced) {
      add(`${base}/${kind.plural}`, [], [
        { method: 'get', id: `list${infix}${k}ForAllNamespaces`, description: `list or watch objects of kind ${k}`, action: 'list', gvk, query: LIST_QUERY, responses: { '200': list }, produces: PRODUCES_LIST },
      ]);
    }
  }
  return { paths, definitions };
}

/** Every definition reachable from `roots` through `$ref`s. */
function closure(roots: Iterable<string>, all: Record<string, Schema>, prefix: string): Record<string, Schema> {
  const out: Record<string, Schema> = {};
  const pending = [...roots];
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (out[name] || !all[name]) continue;
    out[name] = all[name];
    const text = JSON.stringify(all[name]);
    for (const match of text.matchAll(new RegExp(`"\\$ref":"${prefix.replace(/\//g, '\\/')}([^"]+)"`, 'g'))) pending.push(match[1]);
  }
  return Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
}

function sortedObject<T>(entries: [string, T][]): Record<string, T> {
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const UNAUTHORIZED = { description: 'Unauthorized' };
const RESPONSE_TEXT: Record<string, string> = { '200': 'OK', '201': 'Created', '202': 'Accepted' };

function swaggerOperation(op: Operation, group: string, version: string): Schema {
  const parameters: Schema[] = [];
  if (op.body === 'patch') {
    parameters.push({ in: 'body', name: 'body', required: true, schema: { $ref: `#/definitions/${META_PREFIX}.Patch` } });
  } else if (op.body) {
    parameters.push({ in: 'body', name: 'body', ...(op.bodyRequired ? { required: true } : {}), schema: { $ref: `#/definitions/${op.body}` } });
  }
  for (const name of op.query) parameters.push({ description: QUERY[name].description, in: 'query', name, type: QUERY[name].type, uniqueItems: true });
  const responses: Schema = {};
  for (const [code, def] of Object.entries(op.responses)) responses[code] = { description: RESPONSE_TEXT[code], schema: { $ref: `#/definitions/${def}` } };
  responses['401'] = UNAUTHORIZED;
  return {
    consumes: op.method === 'patch' ? (op.patchTypes ?? PATCH_TYPES) : ['*/*'],
    description: op.description,
    operationId: op.id,
    ...(parameters.length ? { parameters } : {}),
    produces: op.produces,
    responses,
    schemes: ['https'],
    tags: [tagOf(group, version)],
    ...(op.action ? { 'x-kubernetes-action': op.action, 'x-kubernetes-group-version-kind': op.gvk } : {}),
  };
}

/** Builds the swagger 2.0 document for every served version of the group. */
function buildOpenApiV2(api: ApiGroupDefinition): Schema {
  const versions = servedVersions(api);
  const meta = metaDefinitions(versions.map((version) => ({ group: api.group, version })));
  const paths: [string, Schema][] = [];
  const all: Record<string, Schema> = { ...meta };
  for (const version of versions) {
    const model = groupVersionModel(api, version);
    for (const [name, def] of Object.entries(model.definitions)) all[name] = stripNullable(withEmbeddedProperties(def, true)) as Schema;
    for (const [path, item] of model.paths) {
      const entry: Schema = {};
      for (const op of item.operations) entry[op.method] = swaggerOperation(op, api.group, version);
      const params = [...item.pathParams.map((p) => ({ description: p.description, in: 'path', name: p.name, required: true, type: 'string', uniqueItems: true })), { description: QUERY.pretty.description, in: 'query', name: 'pretty', type: 'string', uniqueItems: true }];
      if (path.endsWith('/') === false) entry.parameters = params;
      paths.push([path, entry]);
    }
  }
  const referenced = new Set<string>(ALWAYS_PUBLISHED);
  for (const [, entry] of paths) for (const m of JSON.stringify(entry).matchAll(/"\$ref":"#\/definitions\/([^"]+)"/g)) referenced.add(m[1]);
  return {
    swagger: '2.0',
    info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion },
    paths: sortedObject(paths),
    definitions: closure(referenced, all, '#/definitions/'),
    securityDefinitions: { BearerToken: { description: 'Bearer Token authentication', in: 'header', name: 'authorization', type: 'apiKey' } },
    security: [{ BearerToken: [] }],
  };
}

/**
 * v2 schema → v3 schema: references move to `#/components/schemas/`, and a `$ref` with sibling
 * keywords becomes `allOf: [{$ref}]` (OpenAPI 3.0 ignores siblings of `$ref`), as kube-openapi does.
 */
function toV3Schema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(toV3Schema);
  if (schema === null || typeof schema !== 'object') return schema;
  const input = schema as Schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(input)) {
    if (key === '$ref') continue;
    out[key] = key === 'default' || key === 'enum' || key === 'example' || key === 'x-kubernetes-group-version-kind' ? value : toV3Schema(value);
  }
  if (typeof input.$ref === 'string') {
    const target = input.$ref.replace('#/definitions/', '#/components/schemas/');
    if (Object.keys(out).length === 0) return { $ref: target };
    return { ...out, allOf: [{ $ref: target }] };
  }
  return out;
}

function v3Operation(op: Operation, group: string, version: string): Schema {
  const mediaTypes = (schemaRef: string, types: readonly string[]) => Object.fromEntries(types.map((t) => [t, { schema: { $ref: `#/components/schemas/${schemaRef}` } }]));
  const responses: Schema = {};
  for (const [code, def] of Object.entries(op.responses)) responses[code] = { description: RESPONSE_TEXT[code], content: mediaTypes(def, op.produces) };
  responses['401'] = UNAUTHORIZED;
  let requestBody: Schema | undefined;
  if (op.body === 'patch') {
    requestBody = { content: Object.fromEntries((op.patchTypes ?? PATCH_TYPES).map((t) => [t, { schema: { $ref: `#/components/schemas/${META_PREFIX}.Patch` } }])), required: true };
  } else if (op.body) {
    requestBody = { content: { '*/*': { schema: { $ref: `#/components/schemas/${op.body}` } } }, ...(op.bodyRequired ? { required: true } : {}) };
  }
  const parameters = op.query.map((name) => ({ name, in: 'query', description: QUERY[name].description, schema: { type: QUERY[name].type, uniqueItems: true } }));
  return {
    tags: [tagOf(group, version)],
    description: op.description,
    operationId: op.id,
    ...(parameters.length ? { parameters } : {}),
    ...(requestBody ? { requestBody } : {}),
    responses,
    ...(op.action ? { 'x-kubernetes-action': op.action, 'x-kubernetes-group-version-kind': op.gvk } : {}),
  };
}

/** Builds the OpenAPI 3.0 document of one served group version. */
function buildOpenApiV3(api: ApiGroupDefinition, version: string): Schema {
  const meta = metaDefinitions([{ group: api.group, version }]);
  const model = groupVersionModel(api, version);
  const all: Record<string, Schema> = { ...meta, ...(withEmbeddedProperties(model.definitions, false) as Record<string, Schema>) };
  const paths: [string, Schema][] = [];
  for (const [path, item] of model.paths) {
    const entry: Schema = {};
    for (const op of item.operations) entry[op.method] = v3Operation(op, api.group, version);
    if (!path.endsWith('/')) {
      entry.parameters = [
        ...item.pathParams.map((p) => ({ name: p.name, in: 'path', description: p.description, required: true, schema: { type: 'string', uniqueItems: true } })),
        { name: 'pretty', in: 'query', description: QUERY.pretty.description, schema: { type: 'string', uniqueItems: true } },
      ];
    }
    paths.push([path, entry]);
  }
  const referenced = new Set<string>(ALWAYS_PUBLISHED);
  for (const [, entry] of paths) for (const m of JSON.stringify(entry).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)) referenced.add(m[1]);
  const schemas = closure(referenced, all, '#/definitions/');
  return {
    openapi: '3.0.0',
    info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion },
    paths: sortedObject(paths),
    components: {
      schemas: Object.fromEntries(Object.entries(schemas).map(([name, schema]) => [name, toV3Schema(schema)])),
      securitySchemes: { BearerToken: { type: 'apiKey', description: 'Bearer Token authentication', name: 'authorization', in: 'header' } },
    },
  };
}

interface Published extends SerializedDocument {
  /** Upper-case hex SHA-512 of the body, as upstream's handler computes it; the ETag is it quoted. */
  readonly hash: string;
}

function publish(doc: unknown): Published {
  return published(Buffer.from(JSON.stringify(doc)));
}

function published(body: Buffer): Published {
  const hash = createHash('sha512').update(body).digest('hex').toUpperCase();
  return { body, hash, etag: `"${hash}"` };
}

/** /openapi/v2 in JSON, or in protobuf (the second spelling is the pre-1.10 one clients still send). */
const V2_OFFERS: readonly MediaOffer<'json' | 'protobuf'>[] = [
  { type: 'application', subtype: 'json', value: 'json' },
  { type: 'application', subtype: 'com.github.proto-openapi.spec.v2@v1.0+protobuf', value: 'protobuf' },
  { type: 'application', subtype: 'com.github.proto-openapi.spec.v2.v1.0+protobuf', value: 'protobuf' },
];

/** Serves the OpenAPI documents of one API group; everything is built once. */
export class OpenApi {
  private readonly v2: Published;
  private readonly v2Protobuf: Published;
  private readonly v3: Map<string, Published>;
  private readonly v3Index: Published;
  private readonly lastModified = new Date().toUTCString();

  constructor(api: ApiGroupDefinition) {
    const v2 = buildOpenApiV2(api);
    this.v2 = publish(v2);
    this.v2Protobuf = published(encodeOpenApiV2(v2));
    this.v3 = new Map(servedVersions(api).map((version) => [`apis/${api.group}/${version}`, publish(buildOpenApiV3(api, version))]));
    const index: Record<string, { serverRelativeURL: string }> = {};
    for (const [path, doc] of this.v3) index[path] = { serverRelativeURL: `/openapi/v3/${path}?hash=${doc.hash}` };
    this.v3Index = publish({ paths: index });
  }

  /** Whether `path` is an OpenAPI path this server answers. */
  handles(path: string): boolean {
    return path === '/openapi/v2' || path === '/openapi/v3' || path === '/openapi/v3/' || (path.startsWith('/openapi/v3/') && this.v3.has(path.slice('/openapi/v3/'.length)));
  }

  /**
   * Writes the document for `path` (one `handles` accepted). The `hash` query parameter is not
   * checked: the current document is always the answer (upstream redirects on a stale hash, and
   * the aggregator treats any redirect as a failure).
   */
  serve(req: IncomingMessage, res: ServerResponse, path: string): void {
    let doc: Published;
    let contentType = 'application/json';
    if (path === '/openapi/v2') {
      const offer = negotiate(parseAccept(req.headers.accept), V2_OFFERS);
      if (!offer) throw errors.notAcceptable(['application/json', `application/${V2_OFFERS[1].subtype}`]);
      if (offer.value === 'json') {
        doc = this.v2;
      } else {
        doc = this.v2Protobuf;
        // As kube-openapi answers it: Go's mime parser rejects the '@' of the requested type.
        contentType = 'application/octet-stream';
      }
    } else {
      if (!negotiate(parseAccept(req.headers.accept), JSON_OFFERS)) throw errors.notAcceptable(['application/json']);
      doc = path === '/openapi/v3' || path === '/openapi/v3/' ? this.v3Index : this.v3.get(path.slice('/openapi/v3/'.length))!;
    }
    const isVersioned = path.startsWith('/openapi/v3/') && path !== '/openapi/v3/';
    const immutable = isVersioned && new URL(req.url ?? '/', 'https://localhost').searchParams.get('hash') === doc.hash;
    writeDocument(req, res, doc, contentType, { Vary: 'Accept', 'Last-Modified': this.lastModified, 'Cache-Control': immutable ? 'public, immutable' : 'no-cache, private' });
  }
}

