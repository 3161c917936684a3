import { randomInt } from 'node:crypto';
import { isDns1123Subdomain } from '../../apis/validation';
import { FieldError, fieldErrors, key } from './field-errors';
import { isObject } from './rules';

/**
 * ObjectMeta: the fields a server keeps, their validation (k8s.io/apimachinery
 * pkg/api/validation/objectmeta.go), and the system-managed fields set on create and update.
 */

export type Meta = Record<string, unknown>;

/** The ObjectMeta fields kept on write; anything else under `metadata` is pruned, as for a CRD. */
const OBJECT_META_FIELDS = new Set([
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
]);

/**
 * Removes unknown ObjectMeta fields in place, and known ones that are null (every ObjectMeta field
 * is omitempty in Go: null is the field absent); returns the paths of the unknown ones (`metadata.foo`).
 */
export function pruneObjectMeta(meta: Meta): string[] {
  const pruned: string[] = [];
  for (const name of Object.keys(meta)) {
    if (meta[name] === null && OBJECT_META_FIELDS.has(name)) {
      delete meta[name];
    } else if (!OBJECT_META_FIELDS.has(name)) {
      delete meta[name];
      pruned.push(`metadata.${name}`);
    }
  }
  return pruned;
}

const DNS1123_SUBDOMAIN_MESSAGE =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const QUALIFIED_NAME_MESSAGE =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_VALUE_MESSAGE =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

/** Messages for a qualified name (`prefix/name`), as validation.IsQualifiedName. */
export function qualifiedNameProblems(value: string): string[] {
  const parts = value.split('/');
  if (parts.length > 2) {
    return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"];
  }
  const [prefix, name] = parts.length === 2 ? parts : ['', parts[0]];
  const problems: string[] = [];
  if (parts.length === 2) {
    if (prefix.length === 0) problems.push('prefix part must be non-empty');
    else if (!isDns1123Subdomain(prefix)) problems.push(`prefix part ${DNS1123_SUBDOMAIN_MESSAGE}`);
  }
  if (name.length === 0) problems.push('name part must be non-empty');
  else if (name.length > 63) problems.push('name part must be no more than 63 characters');
  else if (!QUALIFIED_NAME_PART.test(name)) problems.push(QUALIFIED_NAME_MESSAGE);
  return problems;
}

/** Messages for a label value, as validation.IsValidLabelValue. */
export function labelValueProblems(value: string): string[] {
  if (value.length > 63) return ['must be no more than 63 characters'];
  return LABEL_VALUE.test(value) ? [] : [LABEL_VALUE_MESSAGE];
}

function validateStringMap(meta: Meta, field: 'labels' | 'annotations', errors: FieldError[]): Record<string, string> {
  const value = meta[field];
  if (value === undefined || value === null) return {};
  const path = `metadata.${field}`;
  if (!isObject(value)) {
    errors.push(fieldErrors.typeInvalid(path, Array.isArray(value) ? 'array' : typeof value, `${path} in body must be of type object`));
    return {};
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') errors.push(fieldErrors.typeInvalid(key(path, k), typeof v, `${key(path, k)} in body must be of type string`));
    for (const problem of qualifiedNameProblems(k)) errors.push(fieldErrors.invalid(path, k, problem));
  }
  return value as Record<string, string>;
}

export interface ObjectMetaRules {
  readonly namespaced: boolean;
}

/** Validates ObjectMeta on create or update (`old` given), as ValidateObjectMeta[Update]. */
export function validateObjectMeta(meta: Meta, rules: ObjectMetaRules, old?: Meta): FieldError[] {
  const errors: FieldError[] = [];
  const name = meta.name;
  const generateName = meta.generateName;
  if (name !== undefined && typeof name !== 'string') {
    errors.push(fieldErrors.typeInvalid('metadata.name', typeof name, 'metadata.name in body must be of type string'));
  } else if (!name) {
    if (!generateName) errors.push(fieldErrors.required('metadata.name', 'name or generateName is required'));
  } else if (!isDns1123Subdomain(name)) {
    errors.push(fieldErrors.invalid('metadata.name', name, name.length > 253 ? 'must be no more than 253 characters' : DNS1123_SUBDOMAIN_MESSAGE));
  }
  if (generateName !== undefined && generateName !== '') {
    if (typeof generateName !== 'string') {
      errors.push(fieldErrors.typeInvalid('metadata.generateName', typeof generateName, 'metadata.generateName in body must be of type string'));
    } else {
      // As upstream's name validation with prefix=true: a trailing '-' is allowed.
      const stem = generateName.replace(/-+$/, '') || 'a';
      if (!isDns1123Subdomain(stem)) errors.push(fieldErrors.invalid('metadata.generateName', generateName, DNS1123_SUBDOMAIN_MESSAGE));
    }
  }
  if (!rules.namespaced && meta.namespace) errors.push(fieldErrors.forbidden('metadata.namespace', 'not allowed on this type'));

  const labels = validateStringMap(meta, 'labels', errors);
  for (const v of Object.values(labels)) {
    if (typeof v === 'string') for (const problem of labelValueProblems(v)) errors.push(fieldErrors.invalid('metadata.labels', v, problem));
  }
  const annotations = validateStringMap(meta, 'annotations', errors);
  const annotationBytes = Object.entries(annotations).reduce((n, [k, v]) => n + k.length + (typeof v === 'string' ? v.length : 0), 0);
  if (annotationBytes > TOTAL_ANNOTATION_SIZE_LIMIT) {
    errors.push({ reason: 'FieldValueTooLong', message: `Too long: must have at most ${TOTAL_ANNOTATION_SIZE_LIMIT} bytes`, field: 'metadata.annotations' });
  }

  const finalizers = meta.finalizers;
  if (finalizers !== undefined && finalizers !== null) {
    if (!Array.isArray(finalizers)) {
      errors.push(fieldErrors.typeInvalid('metadata.finalizers', typeof finalizers, 'metadata.finalizers in body must be of type array'));
    } else {
      finalizers.forEach((f, i) => {
        if (typeof f !== 'string') errors.push(fieldErrors.typeInvalid(`metadata.finalizers[${i}]`, typeof f, 'must be of type string'));
        else for (const problem of qualifiedNameProblems(f)) errors.push(fieldErrors.invalid(`metadata.finalizers[${i}]`, f, problem));
      });
    }
  }

  const owners = meta.ownerReferences;
  if (owners !== undefined && owners !== null) {
    if (!Array.isArray(owners)) {
      errors.push(fieldErrors.typeInvalid('metadata.ownerReferences', typeof owners, 'metadata.ownerReferences in body must be of type array'));
    } else {
      owners.forEach((owner, i) => {
        const path = `metadata.ownerReferences[${i}]`;
        if (!isObject(owner)) {
          errors.push(fieldErrors.typeInvalid(path, typeof owner, `${path} in body must be of type object`));
          return;
        }
        for (const field of ['apiVersion', 'kind', 'name', 'uid']) {
          if (typeof owner[field] !== 'string' || owner[field] === '') errors.push(fieldErrors.invalid(`${path}.${field}`, owner[field] ?? '', `${field} must not be empty`));
        }
      });
      const controllers = owners.filter((o) => isObject(o) && o.controller === true);
      if (controllers.length > 1) {
        errors.push(fieldErrors.invalid('metadata.ownerReferences', owners, 'Only one reference can have Controller set to true'));
      }
    }
  }

  if (old) {
    if (meta.uid !== undefined && meta.uid !== '' && meta.uid !== old.uid) errors.push(fieldErrors.invalid('metadata.uid', meta.uid, 'field is immutable'));
    if (old.deletionTimestamp && Array.isArray(finalizers)) {
      const before = new Set(Array.isArray(old.finalizers) ? (old.finalizers as string[]) : []);
      const added = (finalizers as unknown[]).filter((f) => typeof f === 'string' && !before.has(f));
      if (added.length > 0) {
        errors.push(fieldErrors.forbidden('metadata.finalizers', `no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`));
      }
    }
  }
  return errors;
}

/** The alphabet of generated name suffixes (k8s.io/apimachinery/pkg/util/rand: no vowels, no confusable digits). */
const SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';
const MAX_GENERATED_NAME_LENGTH = 63 - 5;

/** `generateName` + 5 random characters, the prefix cut to leave room, as names.SimpleNameGenerator. */
export function generateName(prefix: string): string {
  let suffix = '';
  for (let i = 0; i < 5; i++) suffix += SUFFIX_ALPHABET[randomInt(SUFFIX_ALPHABET.length)];
  return `${prefix.length > MAX_GENERATED_NAME_LENGTH ? prefix.slice(0, MAX_GENERATED_NAME_LENGTH) : prefix}${suffix}`;
}

/** The second `nowText` was formatted for (ms since the epoch / 1000, floored), and its text: every create within a second shares it. */
let nowSecond = Number.NaN;
let nowText = '';

/** RFC 3339 at second precision in UTC, as metav1.Time serializes (`2024-05-01T12:00:00Z`). */
export function now(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== nowSecond) {
    nowText = new Date(second * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    nowSecond = second;
  }
  return nowText;
}
