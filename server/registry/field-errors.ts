import type { StatusCause } from '../status';

/**
 * Field errors as k8s.io/apimachinery/pkg/util/validation/field builds them: each becomes a
 * `StatusCause` {reason (Go's Type), message: the error body, field} of a 422 Invalid.
 */
export type FieldError = StatusCause & { readonly reason: string; readonly message: string; readonly field: string };

/** Renders a value the way field errors quote it: strings in double quotes, the rest as JSON. */
function show(value: unknown): string {
  return value === undefined ? 'null' : JSON.stringify(value);
}

export const fieldErrors = {
  invalid: (field: string, value: unknown, detail: string): FieldError => ({
    reason: 'FieldValueInvalid',
    message: `Invalid value: ${show(value)}${detail ? `: ${detail}` : ''}`,
    field,
  }),
  required: (field: string, detail = ''): FieldError => ({
    reason: 'FieldValueRequired',
    message: `Required value${detail ? `: ${detail}` : ''}`,
    field,
  }),
  forbidden: (field: string, detail: string): FieldError => ({ reason: 'FieldValueForbidden', message: `Forbidden: ${detail}`, field }),
  notSupported: (field: string, value: unknown, supported: readonly unknown[]): FieldError => ({
    reason: 'FieldValueNotSupported',
    message: `Unsupported value: ${show(value)}: supported values: ${supported.map(show).join(', ')}`,
    field,
  }),
  typeInvalid: (field: string, value: unknown, detail: string): FieldError => ({
    reason: 'FieldValueTypeInvalid',
    message: `Invalid value: ${show(value)}: ${detail}`,
    field,
  }),
  tooLong: (field: string, max: number): FieldError => ({
    reason: 'FieldValueTooLong',
    message: `Too long: may not be more than ${max} bytes`,
    field,
  }),
  tooMany: (field: string, actual: number, max: number): FieldError => ({
    reason: 'FieldValueTooMany',
    message: `Too many: ${actual}: must have at most ${max} items`,
    field,
  }),
};

/** `spec.items[2].name`-style path building. */
export function child(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

export function index(path: string, i: number): string {
  return `${path}[${i}]`;
}

export function key(path: string, k: string): string {
  return `${path}[${k}]`;
}
