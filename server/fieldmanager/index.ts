/**
 * Server-side apply's core: which manager owns which fields (`metadata.managedFields`), how an
 * applied configuration merges onto the live object, and when it conflicts. A port of
 * sigs.k8s.io/structured-merge-diff/v4 and k8s.io/apimachinery/pkg/util/managedfields/internal,
 * pure (no I/O): the registry calls `update()` on every ordinary write and `apply()` for
 * `application/apply-patch+yaml`.
 */
import type { JSONSchemaProps } from '../../apis/types';
import type { StatusError } from '../status';

/** A decoded Kubernetes object (JSON). */
export type Obj = Record<string, unknown>;

/** `Apply` for server-side apply, `Update` for every other write. */
export type ManagedFieldsOperation = 'Apply' | 'Update';

/** One entry of `metadata.managedFields`, as metav1.ManagedFieldsEntry. */
export interface ManagedFieldsEntry {
  manager: string;
  operation: ManagedFieldsOperation;
  /** The apiVersion the fields are recorded in, e.g. `wardle.example.com/v1alpha1`. */
  apiVersion: string;
  /** RFC 3339, seconds. */
  time?: string;
  fieldsType: 'FieldsV1';
  /** The owned fields in the FieldsV1 encoding: `{"f:spec":{"f:replicas":{}}}`. */
  fieldsV1: Record<string, unknown>;
  /** `status` for a write to the status subresource; absent for the main resource. */
  subresource?: string;
}

/** One field an apply would take from another manager. */
export interface FieldConflict {
  /** The manager that owns the field now. */
  readonly manager: string;
  /** The field as Go prints a fieldpath.Path: `.spec.replicas`, `.spec.containers[name="x"].image`. */
  readonly field: string;
}

/**
 * 409 Conflict; `toStatus()` gives the metav1.Status kube-apiserver answers (message
 * `Apply failed with N conflict(s): conflict with "m" using <apiVersion>: .spec.x`, reason
 * Conflict, causes of type FieldManagerConflict with message and field).
 */
export class ApplyConflictError extends Error {
  readonly conflicts: readonly FieldConflict[];
  constructor(conflicts: readonly FieldConflict[]) {
    super('not implemented yet');
    this.name = 'ApplyConflictError';
    this.conflicts = conflicts;
  }
  /** The Status to answer with (409, reason Conflict). */
  toStatus(): StatusError {
    throw new Error('not implemented yet');
  }
}

export interface FieldManagerOptions {
  /**
   * The whole-object schema of the kind's version (KindVersion.schema): list-type /
   * list-map-keys / map-type / preserve-unknown-fields drive merging.
   */
  readonly schema: JSONSchemaProps;
  /** Written as each entry's apiVersion, e.g. `wardle.example.com/v1alpha1`. */
  readonly apiVersion: string;
  /**
   * Go's ResetFieldsStrategy: per subresource ('' = main resource, 'status'), the field paths a
   * write to it may not set or own, e.g. `{ '': [['status']], status: [['spec'], ['metadata']] }`
   * when a status subresource exists. A reset field in a write is put back to its live value
   * and never owned by the writer.
   * @default - none
   */
  readonly resetFields?: Readonly<Record<string, readonly (readonly string[])[]>>;
}

/** Tracks field ownership for one kind in one version. Build one per KindVersion and reuse it. */
export class FieldManager {
  constructor(readonly options: FieldManagerOptions) {}

  /**
   * An ordinary write (create, update, merge/JSON patch) by `manager`: returns a copy of
   * newObject whose metadata.managedFields records, as kube-apiserver does, which fields each
   * manager owns (an Update entry for manager with the fields it changed or set; fields it
   * changed are taken from other managers). live undefined = a create. Inputs are not modified.
   */
  update(_live: Obj | undefined, _newObject: Obj, _manager: string, _subresource?: string, _now?: Date): Obj {
    throw new Error('not implemented yet');
  }

  /**
   * Server-side apply of `applied` (the request body, decoded from YAML) by `manager` onto live
   * (undefined = the object does not exist: create it from applied). Merges per the schema,
   * removes fields `manager` applied before and no longer applies (unless another manager owns
   * them), throws ApplyConflictError for fields owned by others with a different value unless
   * force (force takes them over). Returns the object to store with managedFields.
   */
  apply(_live: Obj | undefined, _applied: Obj, _manager: string, _force: boolean, _subresource?: string, _now?: Date): Obj {
    throw new Error('not implemented yet');
  }
}
