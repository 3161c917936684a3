/**
 * The shape of an API group definition: the one source of truth that both the construct
 * library (`lib/`: APIServices, RBAC, CRDs) and the bundled server (`server/`: discovery,
 * OpenAPI, storage) read. Pure data; it imports nothing.
 *
 * The vocabulary is Kubernetes' own, as in `apiextensions.k8s.io/v1` CustomResourceDefinition,
 * so that a definition maps one to one onto a CRD.
 *
 * Every field means the same through the CRD construct and through the bundled server; what the
 * server does not honour is refused by both (apis/features.ts; README, "What a definition means").
 */

/** Whether objects of a kind live in a namespace or at the cluster scope. */
export type ResourceScope = 'Namespaced' | 'Cluster';

/**
 * An OpenAPI v3 schema with the Kubernetes extensions, as accepted in a CRD's
 * `openAPIV3Schema` (a structural schema).
 */
export interface JSONSchemaProps {
  readonly type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  /**
   * Checked as kube-apiserver checks CRD formats (apis/features.ts VALIDATED_STRING_FORMATS, e.g.
   * `date-time`, `ipv4`, `uuid`, `email`, `duration`); `k8s-short-name`/`k8s-long-name` (validated
   * from 1.34 only) and formats kube-apiserver does not recognize for the type are refused.
   */
  readonly format?: string;
  readonly description?: string;
  readonly properties?: Readonly<Record<string, JSONSchemaProps>>;
  readonly additionalProperties?: JSONSchemaProps | boolean;
  readonly items?: JSONSchemaProps;
  readonly required?: readonly string[];
  readonly enum?: readonly unknown[];
  readonly default?: unknown;
  readonly nullable?: boolean;
  /** A Go (RE2) regular expression, matched anywhere in the string unless anchored. */
  readonly pattern?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly 'x-kubernetes-preserve-unknown-fields'?: boolean;
  readonly 'x-kubernetes-int-or-string'?: boolean;
  readonly 'x-kubernetes-embedded-resource'?: boolean;
  readonly 'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  readonly 'x-kubernetes-list-map-keys'?: readonly string[];
  readonly 'x-kubernetes-map-type'?: 'atomic' | 'granular';
  /** CEL rules, enforced by kube-apiserver for the CRD and by the bundled server alike. */
  readonly 'x-kubernetes-validations'?: readonly ValidationRule[];
}

/** Why a rule failed, as the `type` of the field error it gives. */
export type FieldValueErrorReason = 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';

/** One `x-kubernetes-validations` rule, as `apiextensions.k8s.io/v1` ValidationRule. */
export interface ValidationRule {
  /**
   * A CEL expression that must be true, `self` bound to the value of the schema node it is on. A
   * rule that references `oldSelf` is a transition rule: it runs only on update, with `oldSelf`
   * the old value, e.g. `self == oldSelf` for an immutable field.
   */
  readonly rule: string;
  /** The error message when the rule is false. @default - `failed rule: <rule>` */
  readonly message?: string;
  /** A CEL expression giving the error message (a string), with the rule's variables; falls back to `message`. @default - none */
  readonly messageExpression?: string;
  /** The error type of a failure. @default 'FieldValueInvalid' */
  readonly reason?: FieldValueErrorReason;
  /**
   * Where a failure points, relative to the node: a path of fields and map keys, e.g.
   * `.spec.replicas` or `.labels['app']` (no list indexes). @default - the node itself
   */
  readonly fieldPath?: string;
  /**
   * Run a transition rule on create too, `oldSelf` then an optional (`oldSelf.hasValue()`,
   * `oldSelf.value()`, `oldSelf.orValue(x)`). Only with a rule that references `oldSelf`. @default false
   */
  readonly optionalOldSelf?: boolean;
}

/** A column of `kubectl get` output, as in a CRD's `additionalPrinterColumns`. */
export interface PrinterColumn {
  readonly name: string;
  readonly type: 'integer' | 'number' | 'string' | 'boolean' | 'date';
  /** A simple JSONPath into the object, e.g. `.spec.referenceType`. */
  readonly jsonPath: string;
  readonly description?: string;
  readonly format?: string;
  /** 0 shows in the default view; higher only with `-o wide`. @default 0 */
  readonly priority?: number;
}

/**
 * The scale subresource, as in a CRD (`<plural>/<name>/scale`): an `autoscaling/v1` Scale read
 * from and written to the object at these paths (`kubectl scale`, HorizontalPodAutoscaler).
 */
export interface ScaleSubresource {
  /** A `.spec.…` path to an integer field, e.g. `.spec.replicas`: what a Scale's spec.replicas writes. */
  readonly specReplicasPath: string;
  /** A `.status.…` path to an integer field: the Scale's status.replicas. */
  readonly statusReplicasPath: string;
  /** A `.spec.…` or `.status.…` path to a string field: the Scale's status.selector. @default - none */
  readonly labelSelectorPath?: string;
}

export interface Subresources {
  /** Serve `<plural>/status`; the main resource then ignores changes to `.status`. @default false */
  readonly status?: boolean;
  readonly scale?: ScaleSubresource;
}

/** One version of a kind. */
export interface KindVersion {
  /** `v1`, `v1beta1`, `v2alpha3` … */
  readonly name: string;
  /** Whether the version is served over the API. */
  readonly served: boolean;
  /** Whether objects are stored in this version. Exactly one version of a kind stores. */
  readonly storage: boolean;
  /** The schema of the whole object (apiVersion, kind, metadata, spec, status …). */
  readonly schema: JSONSchemaProps;
  readonly subresources?: Subresources;
  /** Columns beyond Name (first) and Age (last) in `kubectl get`. @default - none */
  readonly printerColumns?: readonly PrinterColumn[];
  /** Requests to the version answer with a `Warning` header (kubectl prints it). @default false */
  readonly deprecated?: boolean;
  /** The warning's text. @default - `<group>/<version> <Kind> is deprecated; use <group>/<newer> <Kind>` (kube-apiserver's) */
  readonly deprecationWarning?: string;
}

/** One kind of the group and every version it is served in. */
export interface KindDefinition {
  /** UpperCamelCase, e.g. `Flunder`. */
  readonly kind: string;
  /** @default - `<kind>List` */
  readonly listKind?: string;
  /** Lowercase DNS-1123 label, e.g. `flunders`. */
  readonly plural: string;
  /** Lowercase DNS-1123 label, e.g. `flunder`. */
  readonly singular: string;
  readonly shortNames?: readonly string[];
  /** Groupings such as `all`, so `kubectl get all` includes the kind. */
  readonly categories?: readonly string[];
  readonly scope: ResourceScope;
  readonly versions: readonly KindVersion[];
}

/** An API group: what one aggregated API server (or one set of CRDs) serves. */
export interface ApiGroupDefinition {
  /** A DNS subdomain with at least one dot, e.g. `wardle.example.com`. */
  readonly group: string;
  readonly kinds: readonly KindDefinition[];
}
