import { compiledRe2 } from '../../apis/re2';
import type { JSONSchemaProps } from '../../apis/types';
import { child, FieldError, fieldErrors, index } from './field-errors';
import { matchesFormat } from './formats';
import { labelValueProblems, qualifiedNameProblems } from './metadata';
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
    if (schema['x-kubernetes-embedded-resource'] === true) errors.push(...embeddedResourceProblems(value, path));
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
  // Go's regexp (RE2), unanchored, as kube-openapi's pattern check; a pattern RE2 cannot compile is refused at start (apis/features.ts).
  if (schema.pattern !== undefined && !compiledRe2(schema.pattern).test(value)) {
    errors.push(fieldErrors.invalid(path, value, `${path} in body should match '${schema.pattern}'`));
  }
  // errors.InvalidType(path, "body", format, value), as kube-openapi's FormatOf words it.
  if (schema.format !== undefined && !matchesFormat(schema.format, value)) {
    errors.push(fieldErrors.typeInvalid(path, value, `${path} in body must be of type ${schema.format}: ${JSON.stringify(value)}`));
  }
}

/** Go's `%#v` of a decoded JSON value, as field.Duplicate renders a map or a list. */
function goSyntax(value: Json): string {
  if (value === null || value === undefined) return 'interface {}(nil)';
  if (Array.isArray(value)) return `[]interface {}{${value.map(goSyntax).join(', ')}}`;
  if (isObject(value)) {
    return `map[string]interface {}{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${goSyntax(value[k])}`).join(', ')}}`;
  }
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

/** field.Duplicate's body: simple values printed plainly, strings quoted, maps and lists as Go syntax. */
function duplicate(path: string, value: Json): FieldError {
  const shown = value === null || value === undefined ? '"null"' : typeof value === 'string' ? JSON.stringify(value) : typeof value === 'object' ? goSyntax(value) : String(value);
  return { reason: 'FieldValueDuplicate', message: `Duplicate value: ${shown}`, field: path };
}

/** json.Marshal's text of a value: object keys sorted, so equal maps compare equal. */
function canonicalJson(value: Json): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value)) return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  return JSON.stringify(value) ?? 'undefined';
}

/** validateListSet: the indexes where an item appears for the second time (only the second, as upstream). */
function secondAppearances(items: readonly Json[]): number[] {
  const seen = new Map<string, number>();
  const found: number[] = [];
  items.forEach((item, i) => {
    const identity = item === UNSPECIFIED ? '\u0000unspecified' : canonicalJson(item);
    const times = seen.get(identity) ?? 0;
    seen.set(identity, times + 1);
    if (times === 1) found.push(i);
  });
  return found;
}

const UNSPECIFIED = Symbol('unspecified key');

/**
 * The uniqueness of `x-kubernetes-list-type: set` items and `map` keys, as apiextensions'
 * listtype.ValidateListSetsAndMaps: a map list's items must be objects (or null).
 */
function listTypeProblems(value: readonly Json[], schema: JSONSchemaProps, path: string): FieldError[] {
  const listType = schema['x-kubernetes-list-type'];
  if (listType === 'set') return value.length <= 1 ? [] : secondAppearances(value).map((i) => duplicate(index(path, i), value[i]));
  if (listType !== 'map') return [];
  const notObject = value.findIndex((item) => item !== null && !isObject(item));
  if (notObject >= 0) return [fieldErrors.invalid(index(path, notObject), value[notObject], 'must be an object for an array of list-type map')];
  if (value.length <= 1) return [];
  const keyFields = schema['x-kubernetes-list-map-keys'] ?? [];
  if (keyFields.length === 1) {
    const [keyField] = keyFields;
    const keys = value.map((item) => (isObject(item) && item[keyField] !== undefined ? item[keyField] : UNSPECIFIED));
    return secondAppearances(keys as Json[]).map((i) => duplicate(index(path, i), keys[i] === UNSPECIFIED ? {} : { [keyField]: keys[i] as Json }));
  }
  const keys = value.map((item) => Object.fromEntries(keyFields.filter((k) => isObject(item) && item[k] !== undefined).map((k) => [k, (item as Record<string, Json>)[k]])));
  return secondAppearances(keys).map((i) => duplicate(index(path, i), keys[i]));
}

/** schema.ParseGroupVersion's objection, or undefined. */
function groupVersionProblem(apiVersion: string): string | undefined {
  if (apiVersion === '' || apiVersion === '/') return undefined;
  const slashes = apiVersion.split('/').length - 1;
  return slashes > 1 ? `unexpected GroupVersion string: ${apiVersion}` : undefined;
}

/** path.ValidatePathSegmentName's objections (prefix: a generateName). */
function pathSegmentNameProblems(name: string, prefix: boolean): string[] {
  const problems: string[] = [];
  if (!prefix && (name === '.' || name === '..')) problems.push(`may not be '${name}'`);
  for (const illegal of ['/', '%']) if (name.includes(illegal)) problems.push(`may not contain '${illegal}'`);
  return problems;
}

/**
 * An `x-kubernetes-embedded-resource` object, as apiextensions' objectmeta.validateEmbeddedResource:
 * apiVersion and kind required strings (kind a mixed-case DNS-1035 label), metadata's names valid
 * path segments, its namespace a DNS-1123 label, its labels valid.
 */
function embeddedResourceProblems(value: Record<string, Json>, path: string): FieldError[] {
  const problems: FieldError[] = [];
  if (!('apiVersion' in value)) problems.push(fieldErrors.required(child(path, 'apiVersion')));
  if (!('kind' in value)) problems.push(fieldErrors.required(child(path, 'kind')));
  const { apiVersion, kind, metadata } = value;
  if ('apiVersion' in value) {
    if (typeof apiVersion !== 'string') problems.push(fieldErrors.invalid(child(path, 'apiVersion'), apiVersion, 'must be a string'));
    else if (apiVersion === '') problems.push(fieldErrors.required(child(path, 'apiVersion')));
    else {
      const problem = groupVersionProblem(apiVersion);
      if (problem) problems.push(fieldErrors.invalid(child(path, 'apiVersion'), apiVersion, problem));
    }
  }
  if ('kind' in value) {
    if (typeof kind !== 'string') problems.push(fieldErrors.invalid(child(path, 'kind'), kind, 'must be a string'));
    else if (kind === '') problems.push(fieldErrors.required(child(path, 'kind')));
    else if (!/^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(kind.toLowerCase()) || kind.length > 63) {
      problems.push(fieldErrors.invalid(child(path, 'kind'), kind, "may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"));
    }
  }
  if (metadata !== undefined && isObject(metadata)) {
    const metaPath = child(path, 'metadata');
    for (const [field, prefix] of [['name', false], ['generateName', true]] as const) {
      const name = metadata[field];
      if (typeof name === 'string' && name !== '') for (const problem of pathSegmentNameProblems(name, prefix)) problems.push(fieldErrors.invalid(child(metaPath, field), name, problem));
    }
    const namespace = metadata.namespace;
    if (typeof namespace === 'string' && namespace !== '' && !(namespace.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace))) {
      problems.push(fieldErrors.invalid(child(metaPath, 'namespace'), namespace, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"));
    }
    if (isObject(metadata.labels)) {
      for (const [labelKey, labelValue] of Object.entries(metadata.labels)) {
        for (const problem of qualifiedNameProblems(labelKey)) problems.push(fieldErrors.invalid(child(metaPath, 'labels'), labelKey, problem));
        if (typeof labelValue === 'string') for (const problem of labelValueProblems(labelValue)) problems.push(fieldErrors.invalid(child(metaPath, 'labels'), labelValue, problem));
      }
    }
  } else if (metadata !== undefined && metadata !== null) {
    problems.push(fieldErrors.invalid(child(path, 'metadata'), metadata, 'must be an object'));
  }
  return problems;
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
  errors.push(...listTypeProblems(value, schema, path));
  if (schema.items) value.forEach((item, i) => validateValue(item, schema.items!, index(path, i), errors));
}
