import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { ApiGroupDefinition, JSONSchemaProps, KindVersion, listKindOf, validateApiGroupDefinition } from '../apis';

export interface CustomResourceDefinitionsProps {
  /** The API group; one CRD is emitted per kind. */
  readonly api: ApiGroupDefinition;
}

export interface ICustomResourceDefinitions {
  /** The CRDs, in the order of the definition's kinds. */
  readonly definitions: readonly k8s.KubeCustomResourceDefinition[];
}

/**
 * The other way to extend the API: one `apiextensions.k8s.io/v1` CustomResourceDefinition per
 * kind, named `<plural>.<group>`, with the kind's names, scope, versions (served, storage,
 * deprecation), structural `openAPIV3Schema`, `status`/`scale` subresources and
 * `additionalPrinterColumns`.
 *
 * Conversion is `None`: kube-apiserver then only rewrites `apiVersion` between versions, which is
 * right only when every version has the same schema. Versions whose schemas differ need a
 * conversion webhook. The bundled wardle API is such a case: Flunder `v1alpha1` has
 * `spec.reference` where `v1beta1` has `spec.flunderReference`/`spec.fischerReference`, so
 * as CRDs the two versions do not convert into each other (the aggregated server does).
 */
export class CustomResourceDefinitions extends Construct implements ICustomResourceDefinitions {
  public readonly definitions: readonly k8s.KubeCustomResourceDefinition[];

  constructor(scope: Construct, id: string, props: CustomResourceDefinitionsProps) {
    super(scope, id);
    validateApiGroupDefinition(props.api);
    const { group } = props.api;
    this.definitions = props.api.kinds.map(
      (kind) =>
        new k8s.KubeCustomResourceDefinition(this, kind.kind, {
          metadata: { name: `${kind.plural}.${group}` },
          spec: {
            group,
            names: {
              kind: kind.kind,
              listKind: listKindOf(kind),
              plural: kind.plural,
              singular: kind.singular,
              shortNames: kind.shortNames === undefined ? undefined : [...kind.shortNames],
              categories: kind.categories === undefined ? undefined : [...kind.categories],
            },
            scope: kind.scope,
            versions: kind.versions.map(crdVersion),
            conversion: { strategy: 'None' },
          },
        }),
    );
  }
}

function crdVersion(version: KindVersion): k8s.CustomResourceDefinitionVersion {
  const { status, scale } = version.subresources ?? {};
  return {
    name: version.name,
    served: version.served,
    storage: version.storage,
    deprecated: version.deprecated,
    deprecationWarning: version.deprecationWarning,
    schema: { openApiv3Schema: toL1Schema(version.schema) },
    subresources:
      status === true || scale !== undefined
        ? { status: status === true ? {} : undefined, scale: scale === undefined ? undefined : { ...scale } }
        : undefined,
    additionalPrinterColumns: version.printerColumns?.map((column) => ({ ...column })),
  };
}

/**
 * The definition's schema (wire names, as in JSON) in the shape of the cdk8s L1 binding, which
 * spells the `x-kubernetes-*` keywords in camelCase and writes them back on synth. The binding
 * passes `items`, `additionalProperties` and `default` through untouched, so those stay in wire
 * form.
 */
function toL1Schema(schema: JSONSchemaProps): k8s.JsonSchemaProps {
  return {
    type: schema.type,
    format: schema.format,
    description: schema.description,
    properties:
      schema.properties === undefined
        ? undefined
        : Object.fromEntries(Object.entries(schema.properties).map(([name, property]) => [name, toL1Schema(property)])),
    additionalProperties: schema.additionalProperties,
    items: schema.items,
    required: schema.required === undefined ? undefined : [...schema.required],
    enum: schema.enum === undefined ? undefined : [...schema.enum],
    default: schema.default,
    nullable: schema.nullable,
    pattern: schema.pattern,
    minimum: schema.minimum,
    maximum: schema.maximum,
    minLength: schema.minLength,
    maxLength: schema.maxLength,
    minItems: schema.minItems,
    maxItems: schema.maxItems,
    xKubernetesPreserveUnknownFields: schema['x-kubernetes-preserve-unknown-fields'],
    xKubernetesIntOrString: schema['x-kubernetes-int-or-string'],
    xKubernetesEmbeddedResource: schema['x-kubernetes-embedded-resource'],
    xKubernetesListType: schema['x-kubernetes-list-type'],
    xKubernetesListMapKeys: schema['x-kubernetes-list-map-keys'] === undefined ? undefined : [...schema['x-kubernetes-list-map-keys']],
    xKubernetesMapType: schema['x-kubernetes-map-type'],
    xKubernetesValidations: schema['x-kubernetes-validations']?.map((rule) => ({ ...rule })),
  };
}
