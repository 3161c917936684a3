/**
 * The schema as structured-merge-diff sees it: JSONSchemaProps compiled once (per kind version)
 * into TypeNodes, following k8s.io/kube-openapi's schemaconv (ToSchemaFromOpenAPI), which
 * kube-apiserver uses for CRDs:
 *
 * - `type: object` is a map: `properties` are its named fields; `additionalProperties` (a schema)
 *   types its other keys; an object with neither, or under `x-kubernetes-preserve-unknown-fields`
 *   (inherited by descendants), takes any key with a type deduced from the value; otherwise other
 *   keys are not declared. `x-kubernetes-map-type: atomic` makes it one leaf; granular is the default.
 * - `type: array` is a list: `x-kubernetes-list-type` `atomic` (the default), `set` (items are
 *   scalars, identified by value) or `map` (items are objects identified by
 *   `x-kubernetes-list-map-keys`, a missing key taking the key field's `default`).
 * - other types are scalars; no type (`x-kubernetes-int-or-string`, an untyped node) accepts a
 *   scalar, a list or a map.
 * - deduced (Go's `__untyped_deduced_`): maps granular with deduced values, lists atomic.
 *
 * `metadata` at the root, and in an `x-kubernetes-embedded-resource`, is ObjectMeta as
 * kube-apiserver types it (labels and annotations granular maps, finalizers a set,
 * ownerReferences a map list keyed by uid), whatever the schema says.
 */
import type { JSONSchemaProps } from '../../apis/types';
import type { JsonValue } from './path-element';

export type ScalarType = 'string' | 'numeric' | 'boolean' | 'untyped';

export interface MapType {
  /** Named fields (`properties`). */
  readonly fields: ReadonlyMap<string, TypeNode>;
  /** Defaults of named fields, for map-list keys that an item omits. */
  readonly defaults: ReadonlyMap<string, JsonValue>;
  /** The type of other keys; undefined when they are not declared in the schema. */
  readonly elementType: TypeNode | undefined;
  readonly atomic: boolean;
}

export interface ListType {
  readonly atomic: boolean;
  /** `x-kubernetes-list-map-keys` of a `map` list; empty for a `set`. */
  readonly keys: readonly string[];
  readonly elementType: TypeNode;
}

/** The forms a value at one place of the object may take (Go's schema.Atom). */
export interface TypeNode {
  readonly scalar?: ScalarType;
  readonly list?: ListType;
  readonly map?: MapType;
}

const NO_FIELDS: ReadonlyMap<string, never> = new Map<string, never>();

type MutableNode = { scalar: ScalarType; list?: ListType; map?: MapType };

/** `__untyped_atomic_`: anything, lists and maps atomic. */
export const UNTYPED_ATOMIC: TypeNode = (() => {
  const node: MutableNode = { scalar: 'untyped' };
  node.list = { atomic: true, keys: [], elementType: node };
  node.map = { fields: NO_FIELDS, defaults: NO_FIELDS, elementType: node, atomic: true };
  return node;
})();

/** `__untyped_deduced_`: anything, maps granular (of deduced values), lists atomic. */
export const DEDUCED: TypeNode = (() => {
  const node: MutableNode = { scalar: 'untyped' };
  node.list = { atomic: true, keys: [], elementType: UNTYPED_ATOMIC };
  node.map = { fields: NO_FIELDS, defaults: NO_FIELDS, elementType: node, atomic: false };
  return node;
})();

const STRING: TypeNode = { scalar: 'string' };
const NUMERIC: TypeNode = { scalar: 'numeric' };
const BOOLEAN: TypeNode = { scalar: 'boolean' };

function struct(fields: Record<string, TypeNode>, options: { elementType?: TypeNode; atomic?: boolean } = {}): TypeNode {
  return { map: { fields: new Map(Object.entries(fields)), defaults: NO_FIELDS, elementType: options.elementType, atomic: options.atomic ?? false } };
}

const STRING_MAP: TypeNode = { map: { fields: NO_FIELDS, defaults: NO_FIELDS, elementType: STRING, atomic: false } };

const OWNER_REFERENCE = struct({ apiVersion: STRING, kind: STRING, name: STRING, uid: STRING, controller: BOOLEAN, blockOwnerDeletion: BOOLEAN });

/** metav1.ObjectMeta as kube-apiserver's OpenAPI types it (the tags of k8s.io/apimachinery/pkg/apis/meta/v1/types.go). */
export const OBJECT_META: TypeNode = struct({
  name: STRING,
  generateName: STRING,
  namespace: STRING,
  selfLink: STRING,
  uid: STRING,
  resourceVersion: STRING,
  generation: NUMERIC,
  creationTimestamp: STRING,
  deletionTimestamp: STRING,
  deletionGracePeriodSeconds: NUMERIC,
  labels: STRING_MAP,
  annotations: STRING_MAP,
  ownerReferences: { list: { atomic: false, keys: ['uid'], elementType: OWNER_REFERENCE } },
  finalizers: { list: { atomic: false, keys: [], elementType: STRING } },
  managedFields: { list: { atomic: true, keys: [], elementType: UNTYPED_ATOMIC } },
});

/** Compiles a kind version's whole-object schema. */
export function compileRootSchema(schema: JSONSchemaProps): TypeNode {
  const root = compile(schema, schema['x-kubernetes-preserve-unknown-fields'] === true);
  const map = root.map ?? { fields: NO_FIELDS, defaults: NO_FIELDS, elementType: DEDUCED, atomic: false };
  const fields = new Map(map.fields);
  fields.set('metadata', OBJECT_META);
  if (!fields.has('apiVersion')) fields.set('apiVersion', STRING);
  if (!fields.has('kind')) fields.set('kind', STRING);
  return { map: { ...map, fields, atomic: false } };
}

function compile(schema: JSONSchemaProps, preserveUnknown: boolean): TypeNode {
  const preserve = preserveUnknown || schema['x-kubernetes-preserve-unknown-fields'] === true;
  switch (schema.type) {
    case 'object':
      return { map: schema['x-kubernetes-embedded-resource'] === true ? embedded(compileMap(schema, preserve)) : compileMap(schema, preserve) };
    case 'array':
      return { list: compileList(schema, preserve) };
    case 'string':
      return STRING;
    case 'integer':
    case 'number':
      return NUMERIC;
    case 'boolean':
      return BOOLEAN;
    default:
      return { scalar: 'untyped', list: compileList(schema, preserve), map: compileMap(schema, preserve) };
  }
}

/** apiextensions' OpenAPI builder gives an embedded resource apiVersion, kind and ObjectMeta. */
function embedded(map: MapType): MapType {
  const fields = new Map(map.fields);
  if (!fields.has('apiVersion')) fields.set('apiVersion', STRING);
  if (!fields.has('kind')) fields.set('kind', STRING);
  fields.set('metadata', OBJECT_META);
  return { ...map, fields };
}

function compileMap(schema: JSONSchemaProps, preserve: boolean): MapType {
  const fields = new Map<string, TypeNode>();
  const defaults = new Map<string, JsonValue>();
  for (const [name, property] of Object.entries(schema.properties ?? {})) {
    fields.set(name, compile(property, preserve));
    if (property.default !== undefined) defaults.set(name, property.default as JsonValue);
  }
  const additional = schema.additionalProperties;
  let elementType: TypeNode | undefined;
  if (additional === undefined) elementType = preserve || fields.size === 0 ? DEDUCED : undefined;
  else if (typeof additional === 'object') elementType = compile(additional, preserve);
  else elementType = additional ? DEDUCED : undefined;
  return { fields, defaults, elementType, atomic: schema['x-kubernetes-map-type'] === 'atomic' };
}

function compileList(schema: JSONSchemaProps, preserve: boolean): ListType {
  const listType = schema['x-kubernetes-list-type'] ?? 'atomic';
  return {
    atomic: listType === 'atomic',
    keys: listType === 'map' ? [...(schema['x-kubernetes-list-map-keys'] ?? [])] : [],
    elementType: schema.items ? compile(schema.items, preserve) : UNTYPED_ATOMIC,
  };
}
