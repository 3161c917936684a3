import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _checkCollisionsAtSynth } from './_collisions';
import { ApiGroupDefinition, JSONSchemaProps, KindDefinition, KindVersion, listKindOf, validateApiGroupDefinition } from '../apis';
import { _checkDns1123Label, _checkIntegerInRange } from './_validate';

/** A conversion webhook (`apiextensions.k8s.io/v1` `ConversionReview`) behind a Service. */
export interface CrdConversionWebhook {
  /** Name of the Service in front of the webhook server. */
  readonly serviceName: string;
  /** Namespace of that Service. */
  readonly serviceNamespace: string;
  /** @default '/convert' */
  readonly path?: string;
  /** @default 443 */
  readonly port?: number;
  /** PEM CA bundle that signed the webhook's serving certificate (for `<service>.<namespace>.svc`). */
  readonly caBundlePem: string;
}

export interface CustomResourceDefinitionsProps {
  /** The API group; one CRD is emitted per kind. */
  readonly api: ApiGroupDefinition;
  /**
   * How kube-apiserver converts objects between a kind's versions.
   *
   * `'None'` only rewrites `apiVersion`: kube-apiserver prunes every object against the storage
   * version's schema, so the fields that exist only in another version's schema are silently
   * dropped. That is safe only when all versions share one schema; otherwise give a webhook.
   *
   * @default - `'None'` when every version of each kind has the same schema (descriptions
   * aside); a kind whose versions' schemas differ is refused with an error naming them.
   */
  readonly conversion?: 'None' | CrdConversionWebhook;
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
 * Versions whose schemas differ need a conversion webhook (`conversion`). The bundled wardle
 * API is such a case: Flunder `v1alpha1` has `spec.reference` where `v1beta1` has
 * `spec.flunderReference`/`spec.fischerReference`; the aggregated server converts between them,
 * CRDs need a webhook that does.
 */
export class CustomResourceDefinitions extends Construct implements ICustomResourceDefinitions {
  public readonly definitions: readonly k8s.KubeCustomResourceDefinition[];

  constructor(scope: Construct, id: string, props: CustomResourceDefinitionsProps) {
    super(scope, id);
    _checkCollisionsAtSynth(this);
    validateApiGroupDefinition(props.api);
    const { group } = props.api;
    const conversion = props.conversion === undefined || props.conversion === 'None' ? undefined : _webhookConversion(props.conversion);
    if (props.conversion === undefined) props.api.kinds.forEach(_checkConvertibleWithoutWebhook);
    this.definitions = props.api.kinds.map((kind) => {
      const crd = new _KubeCustomResourceDefinition(this, kind.kind, kind, {
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
            conversion: conversion ?? { strategy: 'None' },
          },
      });
      return crd;
    });
  }
}

function _webhookConversion(webhook: CrdConversionWebhook): k8s.CustomResourceConversion {
  if (!/-----BEGIN CERTIFICATE-----/.test(webhook.caBundlePem)) {
    throw new Error('conversion.caBundlePem holds no PEM certificate (expected the CA bundle that signed the webhook\'s serving certificate)');
  }
  const path = webhook.path ?? '/convert';
  if (!path.startsWith('/')) throw new Error(`conversion.path "${path}" must start with "/"`);
  return {
    strategy: 'Webhook',
    webhook: {
      conversionReviewVersions: ['v1'],
      clientConfig: {
        caBundle: Buffer.from(webhook.caBundlePem).toString('base64'),
        service: {
          name: _checkDns1123Label('conversion.serviceName', webhook.serviceName),
          namespace: _checkDns1123Label('conversion.serviceNamespace', webhook.serviceNamespace),
          path,
          port: _checkIntegerInRange('conversion.port', webhook.port ?? 443, 1, 65535),
        },
      },
    },
  };
}

/** The schema's structure: what kube-apiserver prunes against (descriptions do not matter). */
function _structure(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(_structure);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(
    Object.entries(schema)
      .filter(([key]) => key !== 'description')
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, value]) => [key, _structure(value)]),
  );
}

function _checkConvertibleWithoutWebhook(kind: KindDefinition): void {
  const [storage] = kind.versions.filter((v) => v.storage);
  const expected = JSON.stringify(_structure(storage.schema));
  const differing = kind.versions.filter((v) => JSON.stringify(_structure(v.schema)) !== expected).map((v) => v.name);
  if (differing.length > 0) {
    throw new Error(
      `kind "${kind.kind}": versions [${differing.join(', ')}] have a schema other than the storage version "${storage.name}"'s, ` +
        'so conversion "None" would silently drop their fields when kube-apiserver prunes against the storage schema ' +
        '(expected a conversion webhook in "conversion", or conversion: \'None\' to accept that loss)',
    );
  }
}

/**
 * The L1 CRD, with `optionalOldSelf` put back on the rules of the schema nodes the binding
 * rewrites (the root and `properties`, recursively): cdk8s-plus-28's ValidationRule predates the
 * field (Kubernetes 1.29) and its serializer drops it, and without it kube-apiserver would not run
 * on create a rule the bundled server runs. `items` and `additionalProperties` pass through the
 * binding untouched, the field with them.
 */
class _KubeCustomResourceDefinition extends k8s.KubeCustomResourceDefinition {
  constructor(scope: Construct, id: string, private readonly _kind: KindDefinition, props: k8s.KubeCustomResourceDefinitionProps) {
    super(scope, id, props);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the signature of ApiObject.toJson it overrides
  public toJson(): any {
    const json = super.toJson();
    const versions = (json.spec?.versions ?? []) as { schema?: { openAPIV3Schema?: Record<string, unknown> } }[];
    this._kind.versions.forEach((version, i) => {
      const emitted = versions[i]?.schema?.openAPIV3Schema;
      if (emitted) _restoreOptionalOldSelf(version.schema, emitted);
    });
    return json;
  }
}

function _restoreOptionalOldSelf(schema: JSONSchemaProps, emitted: Record<string, unknown>): void {
  const rules = emitted['x-kubernetes-validations'] as Record<string, unknown>[] | undefined;
  (schema['x-kubernetes-validations'] ?? []).forEach((rule, j) => {
    if (rule.optionalOldSelf !== undefined && rules?.[j]) rules[j].optionalOldSelf = rule.optionalOldSelf;
  });
  const properties = emitted.properties as Record<string, Record<string, unknown>> | undefined;
  for (const [name, property] of Object.entries(schema.properties ?? {})) {
    if (properties?.[name]) _restoreOptionalOldSelf(property, properties[name]);
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
