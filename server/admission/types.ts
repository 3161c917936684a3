import type { UserInfo } from '../auth/types';
import type { AuditAnnotations } from './audit-annotations';

/**
 * Admission, as k8s.io/apiserver's admission.Interface: after a request is authenticated,
 * authorized and decoded, plugins may mutate (`admit`) and then accept or refuse (`validate`)
 * the object before it is stored. A plugin refuses by throwing a `StatusError`
 * (usually `errors.forbiddenByAdmission`).
 */

export type AdmissionOperation = 'CREATE' | 'UPDATE' | 'DELETE';

export interface AdmissionAttributes {
  readonly operation: AdmissionOperation;
  readonly group: string;
  /** The version the request was made in; objects below are in the storage version. */
  readonly version: string;
  readonly kind: string;
  readonly resource: string;
  /** `status` for the status subresource, else empty. */
  readonly subresource: string;
  /** Empty for cluster-scoped kinds. */
  readonly namespace: string;
  /** Empty on a create that uses generateName (the name is generated after mutating admission). */
  readonly name: string;
  /**
   * The kind of `object` and `oldObject` when a subresource has a kind of its own, as
   * autoscaling/v1 Scale on `/scale` (upstream's attributes then name that kind, not the
   * resource's): the objects are of that kind, in that version, and not converted between the
   * resource's versions. @default - the resource's kind (`group`, `kind`), objects in its storage version
   */
  readonly objectKind?: { readonly group: string; readonly version: string; readonly kind: string };
  /**
   * The object to be stored, in the kind's storage version; `admit` may change it in place.
   * Absent for DELETE.
   */
  readonly object?: Record<string, unknown>;
  /** The stored object before an UPDATE or DELETE (frozen). */
  readonly oldObject?: Readonly<Record<string, unknown>>;
  readonly user: UserInfo;
  readonly dryRun: boolean;
  /**
   * The operation's options as the request gave them (metav1.CreateOptions, UpdateOptions or
   * DeleteOptions with apiVersion and kind), for admission webhooks.
   * @default - built from `dryRun` alone
   */
  readonly options?: Readonly<Record<string, unknown>>;
  /** Warnings for the client (Warning headers); plugins append to it. @default - none kept */
  readonly warnings?: string[];
  /** The request's audit annotations; plugins add to them. @default - none kept */
  readonly auditAnnotations?: AuditAnnotations;
}

/** What a plugin may read of the API it guards. */
export interface AdmissionContext {
  /** Every stored object of a kind of the group (all namespaces), in its storage version. */
  list(kind: string): Promise<readonly Readonly<Record<string, unknown>>[]>;
}

export interface AdmissionPlugin {
  /** As registered upstream, e.g. `NamespaceLifecycle`, `BanFlunder`. */
  readonly name: string;
  /** The operations the plugin looks at (admission.NewHandler(admission.Create, …)). */
  readonly operations: readonly AdmissionOperation[];
  /** Mutating phase: runs first, in plugin order. */
  admit?(attributes: AdmissionAttributes, context: AdmissionContext): Promise<void>;
  /** Validating phase: runs after mutation and schema validation, in plugin order. */
  validate?(attributes: AdmissionAttributes, context: AdmissionContext): Promise<void>;
}
