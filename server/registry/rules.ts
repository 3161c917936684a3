import type { FieldError } from './field-errors';

/**
 * Per-kind rules: what a generic, definition-driven registry cannot know about a kind —
 * conversion between its versions, defaulting beyond schema `default`s, cross-field validation.
 * They live apart from the REST and storage layers (e.g. `registry/wardle/`), which never name a kind.
 *
 * Conversion goes through an **internal** form, as k8s.io/apimachinery's scheme converts typed
 * objects: a served version → internal → the storage version, and back. Without `toInternal` /
 * `fromInternal` the internal form is the object itself and conversion only rewrites
 * `apiVersion` (a CRD's `None` strategy).
 */

/** A Kubernetes object as JSON. */
export type KubeObject = Record<string, unknown>;

/** Whether a JSON value is an object: not `null`, not an array. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface KindRules {
  /**
   * Converts an object of `version` into the internal form. Must not mutate `object` (stored
   * objects are frozen); return a new object (sharing unchanged parts is fine).
   * @default - the object as it is
   */
  toInternal?(object: Readonly<KubeObject>, version: string): KubeObject;
  /**
   * Converts the internal form into `version`; `apiVersion` is set by the caller. Must not mutate `object`.
   * @default - the object as it is
   */
  fromInternal?(object: Readonly<KubeObject>, version: string): KubeObject;
  /** Defaults an incoming object of `version` in place, after the schema's `default`s. @default - none */
  default?(object: KubeObject, version: string): void;
  /**
   * Validates the internal form on create (`old` undefined) and update; returns field errors
   * (422 Invalid with one cause each), e.g. sample-apiserver's ValidateFlunder.
   * @default - no errors
   */
  validate?(object: Readonly<KubeObject>, old: Readonly<KubeObject> | undefined): FieldError[];
}

/** Rules by kind name (`Flunder`). Kinds without an entry are served by the definition alone. */
export type ApiRules = Readonly<Record<string, KindRules>>;
