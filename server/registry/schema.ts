import type { JSONSchemaProps } from '../../apis/types';
import { child, FieldError, fieldErrors, index } from './field-errors';
import { isObject } from './rules';

/**
 * Structural-schema handling of incoming objects, as kube-apiserver does it for CRDs
 * (k8s.io/apiextensions-apiserver/pkg/apiserver/schema): prune unknown fields, apply `default`s,
 * then validate types, enums, required fields and bounds.
 *
 * Unknown-field policy (one, everywhere): unknown fields are **pruned**, exactly as a structural
 * CRD prunes them, and reported per the request's `fieldValidation`: `Strict` → 400 BadRequest
 * `strict decoding error: unknown field "spec.foo"`, `Warn` (the default) → a `Warning` header,
 * `Ignore` → silently. `x-kubernetes-preserve-unknown-fields: true` keeps them.
 *
 * `metadata` is not pruned here (see metadata.ts); `apiVersion` and `kind` are always kept.
 */

type Json = unknown;

/** The JSON type name of a value, as kube-openapi reports it. */
function jsonType(value: Json): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

const ROOT_FIELDS = new Set(['apiVersion', 'kind', 'metadata']);

/**
 * Prunes unknown fields and applies defaults, in place. Returns the paths of pruned fields
 * (`spec.foo`), for the Strict/Warn policy.
 */
export function pruneAndDefault(object: Record<string, Json>, schema: JSONSchemaProps): string[] {
  const pruned: string[] = [];
  walkObject(object, schema, '', pruned, true);
  return pruned;
}

function walk(value: Json, schema: JSONSchemaProps, path: string, pruned: string[]): void {
  if (Array.isArray(value)) {
    if (schema.items) value.forEach((item, i) => walk(item, schema.items!, index(path, i), pruned));
    return;
  }
  if (isObject(value)) walkObject(value, schema, path, pruned, schema['x-kubernetes-embedded-resource'] === true);
}

function walkObject(object: Record<string, Json>, schema: JSONSchemaProps, path: string, pruned: string[], keepTypeMeta: boolean): void {
  const properties = schema.properties;
  const additional = schema.additionalProperties;
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  for (const name of Object.keys(object)) {
    if (keepTypeMeta && ROOT_FIELDS.has(name)) continue;
    const propertySchema = properties?.[name] ?? (typeof additional === 'object' ? additional : undefined);
    if (propertySchema) {
      if (object[name] === null && propertySchema.nullable !== true) {
        // A null in a non-nullable field is dropped (and defaulted below), as CRD defaulting does.
        delete object[name];
        continue;
      }
      walk(object[name], propertySchema, child(path, name), pruned);
    } else if (!preserve && additional !== true && !(properties === undefined && additional === undefined && schema.type !== 'object')) {
      delete object[name];
      pruned.push(child(path, name));
    }
  }
  for (const [name, propertySchema] of Object.entries(properties ?? {})) {
    if (object[name] === undefined && propertySchema.default !== undefined) {
      object[name] = clone(propertySchema.default);
      walk(object[name], propertySchema, child(path, name), pruned);
    }
  }
}

/** Validates a pruned, defaulted object against the schema; `metadata` is left to metadata.ts. */
export function validateAgainstSchema(object: Record<string, Json>, schema: JSONSchemaProps): FieldError[] {
  const errors: FieldError[] = [];
  validateValue(object, schema, '', errors, true);
  return errors;
}

function validateValue(value: Json, schema: JSONSchemaProps, path: string, errors: FieldError[], isRoot = false): void {
  if (value === null) {
    if (schema.nullable !== true && schema.type !== undefined) {
      errors.push(fieldErrors.typeInvalid(path, 'null', `${path} in body must be of type ${schema.type}: "null"`));
    }
    return;
  }
  if (!typeMatches(value, schema)) {
    const expected = schema['x-kubernetes-int-or-string'] ? 'integer,string' : schema.type;
    errors.push(fieldErrors.typeInvalid(path, jsonType(value), `${path || 'body'} in body must be of type ${expected}: "${jsonType(value)}"`));
    return;
  }
  if (schema.enum && !schema.enum.some((allowed) => JSON.stringify(allowed) === JSON.stringify(value))) {
    errors.push(fieldErrors.notSupported(path, value, schema.enum));
  }
  if (typeof value === 'string') validateString(value, schema, path, errors);
  if (typeof value === 'number') validateNumber(value, schema, path, errors);
  if (Array.isArray(value)) validateArray(value, schema, path, errors);
  if (isObject(value)) {
    for (const name of schema.required ?? []) {
      if (value[name] === undefined) errors.push(fieldErrors.required(child(path, name)));
    }
    for (const [name, propertyValue] of Object.entries(value)) {
      if (isRoot && name === 'metadata') continue;
      const propertySchema = schema.properties?.[name] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
      if (propertySchema) validateValue(propertyValue, propertySchema, child(path, name), errors);
      else if (isRoot && (name === 'apiVersion' || name === 'kind') && typeof propertyValue !== 'string') {
        errors.push(fieldErrors.typeInvalid(name, jsonType(propertyValue), `${name} in body must be of type string: "${jsonType(propertyValue)}"`));
      }
    }
  }
}

function typeMatches(value: Json, schema: JSONSchemaProps): boolean {
  if (schema['x-kubernetes-int-or-string']) return typeof value === 'string' || Number.isInteger(value);
  switch (schema.type) {
    case undefined:
      return true;
    case 'object':
      return isObject(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    case 'boolean':
      return typeof value === 'boolean';
  }
}

function validateString(value: string, schema: JSONSchemaProps, path: string, errors: FieldError[]): void {
  if (schema.maxLength !== undefined && [...value].length > schema.maxLength) errors.push(fieldErrors.tooLong(path, schema.maxLength));
  if (schema.minLength !== undefined && [...value].length < schema.minLength) {
    errors.push(fieldErrors.invalid(path, value, `${path} in body should be at least ${schema.minLength} chars long`));
  }
  if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
    errors.push(fieldErrors.invalid(path, value, `${path} in body should match '${schema.pattern}'`));
  }
  if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) {
    errors.push(fieldErrors.invalid(path, value, `${path} in body must be of type date-time: "${value}"`));
  }
}

function validateNumber(value: number, schema: JSONSchemaProps, path: string, errors: FieldError[]): void {
  if (schema.minimum !== undefined && value < schema.minimum) {
    errors.push(fieldErrors.invalid(path, value, `${path} in body should be greater than or equal to ${schema.minimum}`));
  }
  if (schema.maximum !== undefined && value > schema.maximum) {
    errors.push(fieldErrors.invalid(path, value, `${path} in body should be less than or equal to ${schema.maximum}`));
  }
}

function validateArray(value: readonly Json[], schema: JSONSchemaProps, path: string, errors: FieldError[]): void {
  if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(fieldErrors.tooMany(path, value.length, schema.maxItems));
  if (schema.minItems !== undefined && value.length < schema.minItems) {
    errors.push(fieldErrors.invalid(path, value, `${path} in body should have at least ${schema.minItems} items`));
  }
  const listType = schema['x-kubernetes-list-type'];
  if (listType === 'set' || listType === 'map') {
    const mapKeys = schema['x-kubernetes-list-map-keys'] ?? [];
    const seen = new Set<string>();
    value.forEach((item, i) => {
      const identity = listType === 'set' ? JSON.stringify(item) : JSON.stringify(mapKeys.map((k) => (isObject(item) ? item[k] : undefined)));
      if (seen.has(identity)) {
        errors.push({ type: 'FieldValueDuplicate', message: `Duplicate value: ${listType === 'set' ? JSON.stringify(item) : identity}`, field: index(path, i) });
      }
      seen.add(identity);
    });
  }
  if (schema.items) value.forEach((item, i) => validateValue(item, schema.items!, index(path, i), errors));
}
