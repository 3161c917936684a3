import { RE2JS } from '@bufbuild/re2';
import { ApiGroupDefinition, JSONSchemaProps, KindDefinition, KindVersion } from './types';

/**
 * What the bundled server supports of an `ApiGroupDefinition`: the one list both sides read. The
 * server refuses to start with a definition that uses anything else (server/registry/index.ts),
 * and the construct that deploys the bundled server refuses it at synth (lib/aggregated-api-server.ts),
 * with the same lines. The CRD construct (lib/custom-resource-definitions.ts) emits every field
 * listed here, so a definition means the same through a CRD and through the bundled server.
 *
 * README, "What a definition means", says per field what both sides do.
 */

/**
 * String formats kube-apiserver validates in CRDs (k8s 1.28-1.33): apiextensions-apiserver's
 * `supportedVersionedFormats` (pkg/apiserver/validation/formats.go, the 1.0 set) that kube-openapi's
 * `strfmt.Default` registry has a checker for. Names are compared with `-` removed, as strfmt's
 * DefaultNameNormalizer does (`date-time` is `datetime`). The bundled server checks each the same
 * way (server/registry/formats.ts).
 */
export const VALIDATED_STRING_FORMATS: readonly string[] = [
  'bsonobjectid', 'uri', 'email', 'hostname', 'ipv4', 'ipv6', 'cidr', 'mac', 'uuid', 'uuid3', 'uuid4', 'uuid5', 'isbn', 'isbn10', 'isbn13',
  'creditcard', 'ssn', 'hexcolor', 'rgbcolor', 'byte', 'password', 'date', 'duration', 'datetime',
];

/**
 * Formats kube-apiserver accepts in a CRD but checks nothing for: `quantity` is in the supported
 * set but strfmt.Default has no checker for it (kube-openapi's validator skips formats it does not
 * know); numeric formats are kept for clients and never validated. The bundled server does the same.
 */
export const UNCHECKED_FORMATS: Readonly<Record<string, readonly string[]>> = {
  string: ['quantity'],
  integer: ['int32', 'int64'],
  number: ['float', 'double'],
};

/** Formats kube-apiserver validates that the bundled server does not (yet), with why: refused rather than checked differently. */
export const REFUSED_FORMATS: Readonly<Record<string, string>> = {
  k8sshortname: 'kube-apiserver validates it only from 1.34 (ignored before); the bundled server does not',
  k8slongname: 'kube-apiserver validates it only from 1.34 (ignored before); the bundled server does not',
};

/** The schema keywords of `JSONSchemaProps`: the only ones a definition may use (the CRD construct emits exactly these). */
export const SCHEMA_KEYWORDS: readonly (keyof JSONSchemaProps)[] = [
  'type', 'format', 'description', 'properties', 'additionalProperties', 'items', 'required', 'enum', 'default', 'nullable',
  'pattern', 'minimum', 'maximum', 'minLength', 'maxLength', 'minItems', 'maxItems',
  'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-int-or-string', 'x-kubernetes-embedded-resource',
  'x-kubernetes-list-type', 'x-kubernetes-list-map-keys', 'x-kubernetes-map-type', 'x-kubernetes-validations',
];

/** The fields of a KindVersion, of a KindDefinition and of the scale subresource the bundled server honours. */
export const KIND_FIELDS: readonly string[] = ['kind', 'listKind', 'plural', 'singular', 'shortNames', 'categories', 'scope', 'versions'];
export const VERSION_FIELDS: readonly string[] = ['name', 'served', 'storage', 'schema', 'subresources', 'printerColumns', 'deprecated', 'deprecationWarning'];
export const SUBRESOURCE_FIELDS: readonly string[] = ['status', 'scale'];
export const SCALE_FIELDS: readonly string[] = ['specReplicasPath', 'statusReplicasPath', 'labelSelectorPath'];
export const RULE_FIELDS: readonly string[] = ['rule', 'message', 'messageExpression', 'reason', 'fieldPath', 'optionalOldSelf'];
export const PRINTER_COLUMN_FIELDS: readonly string[] = ['name', 'type', 'jsonPath', 'description', 'format', 'priority'];

/** The subresources the bundled server serves (and the generated RBAC may grant). */
export const SERVED_SUBRESOURCES = ['status', 'scale'] as const;
export type ServedSubresource = (typeof SERVED_SUBRESOURCES)[number];

/** The subresources a served version of the kind has, in SERVED_SUBRESOURCES order. */
export function subresourcesOf(kind: KindDefinition): ServedSubresource[] {
  const served = kind.versions.filter((version) => version.served);
  const has = (name: ServedSubresource) =>
    served.some((version) => (name === 'status' ? version.subresources?.status === true : version.subresources?.scale !== undefined));
  return SERVED_SUBRESOURCES.filter(has);
}

/** One thing a definition declares that the bundled server does not honour. */
export interface UnsupportedFeature {
  readonly kind: string;
  /** '' for a kind-level field. */
  readonly version: string;
  /** Where in the definition, e.g. `schema.properties.spec.properties.email.format`. */
  readonly field: string;
  /** What, and why it is refused. */
  readonly problem: string;
}

/** The one line both sides print: kind, version, field path and the feature. */
export function describeUnsupportedFeature(feature: UnsupportedFeature): string {
  const version = feature.version === '' ? '' : `, version ${feature.version}`;
  return `kind ${feature.kind}${version}, field ${feature.field}: ${feature.problem}`;
}

/**
 * A JSONPath of a scale subresource as apiextensions validates it (validateCustomResourceDefinitionSubresources):
 * `.spec.<field>…` for specReplicasPath, `.status.<field>…` for statusReplicasPath, either for
 * labelSelectorPath; simple field names only (no indexes, no wildcards).
 */
export function scalePathProblem(path: string, roots: readonly ('spec' | 'status')[]): string | undefined {
  const match = /^\.(spec|status)((?:\.[A-Za-z0-9_-]+)+)$/.exec(path);
  if (!match || !roots.includes(match[1] as 'spec' | 'status')) return `should be a json path under ${roots.map((r) => `.${r}`).join(' or ')}`;
  return undefined;
}

/** Splits a scale JSONPath (`.spec.replicas`) into its fields. */
export function scalePathFields(path: string): string[] {
  return path.replace(/^\./, '').split('.');
}

/** The schema node a simple path leads to, or undefined. */
function schemaAt(schema: JSONSchemaProps, fields: readonly string[]): JSONSchemaProps | undefined {
  let node: JSONSchemaProps | undefined = schema;
  for (const field of fields) node = node?.properties?.[field];
  return node;
}

/** Whether the regular expression compiles with RE2 (Go's regexp), as kube-apiserver compiles `pattern`. */
export function re2Problem(pattern: string): string | undefined {
  try {
    RE2JS.compile(pattern);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

function normalizedFormat(format: string): string {
  return format.replace(/-/g, '');
}

function schemaProblems(schema: JSONSchemaProps, path: string, report: (field: string, problem: string) => void): void {
  for (const key of Object.keys(schema)) {
    if (!(SCHEMA_KEYWORDS as readonly string[]).includes(key)) {
      report(`${path}.${key}`, `schema keyword "${key}" is not supported by the bundled server (supported: the keywords of JSONSchemaProps in apis/types.ts)`);
    }
  }
  if (schema.format !== undefined) {
    const type = schema.type ?? 'string';
    const normalized = normalizedFormat(schema.format);
    const refused = type === 'string' ? REFUSED_FORMATS[normalized] : undefined;
    const known =
      (type === 'string' && VALIDATED_STRING_FORMATS.includes(normalized)) || (UNCHECKED_FORMATS[type] ?? []).includes(type === 'string' ? normalized : schema.format);
    if (refused) report(`${path}.format`, `format "${schema.format}" is not supported by the bundled server: ${refused}`);
    else if (!known) {
      report(
        `${path}.format`,
        `format "${schema.format}" is not a format kube-apiserver recognizes for type ${type} (it would ignore it with a warning); ` +
          `expected one of ${type === 'string' ? [...VALIDATED_STRING_FORMATS, ...UNCHECKED_FORMATS.string].join(', ') : (UNCHECKED_FORMATS[type] ?? []).join(', ') || 'none for this type'}`,
      );
    }
  }
  if (schema.pattern !== undefined) {
    const problem = re2Problem(schema.pattern);
    if (problem) report(`${path}.pattern`, `pattern ${JSON.stringify(schema.pattern)} is not a valid RE2 regular expression (as Go's regexp compiles it): ${problem}`);
  }
  (schema['x-kubernetes-validations'] ?? []).forEach((rule, i) => {
    for (const key of Object.keys(rule)) {
      if (!RULE_FIELDS.includes(key)) report(`${path}.x-kubernetes-validations[${i}].${key}`, `validation rule field "${key}" is not supported by the bundled server`);
    }
  });
  for (const [name, property] of Object.entries(schema.properties ?? {})) schemaProblems(property, `${path}.properties.${name}`, report);
  if (typeof schema.additionalProperties === 'object') schemaProblems(schema.additionalProperties, `${path}.additionalProperties`, report);
  if (schema.items) schemaProblems(schema.items, `${path}.items`, report);
}

function versionProblems(version: KindVersion, report: (field: string, problem: string) => void): void {
  for (const key of Object.keys(version)) if (!VERSION_FIELDS.includes(key)) report(key, `version field "${key}" is not supported by the bundled server`);
  schemaProblems(version.schema, 'schema', report);
  version.printerColumns?.forEach((column, i) => {
    for (const key of Object.keys(column)) if (!PRINTER_COLUMN_FIELDS.includes(key)) report(`printerColumns[${i}].${key}`, `printer column field "${key}" is not supported by the bundled server`);
  });
  const subresources = version.subresources;
  if (subresources === undefined) return;
  for (const key of Object.keys(subresources)) if (!SUBRESOURCE_FIELDS.includes(key)) report(`subresources.${key}`, `subresource "${key}" is not served by the bundled server (served: ${SERVED_SUBRESOURCES.join(', ')})`);
  const scale = subresources.scale;
  if (scale === undefined) return;
  for (const key of Object.keys(scale)) if (!SCALE_FIELDS.includes(key)) report(`subresources.scale.${key}`, `scale field "${key}" is not supported by the bundled server`);
  const paths: [keyof typeof scale, string | undefined, readonly ('spec' | 'status')[]][] = [
    ['specReplicasPath', scale.specReplicasPath, ['spec']],
    ['statusReplicasPath', scale.statusReplicasPath, ['status']],
    ['labelSelectorPath', scale.labelSelectorPath, ['spec', 'status']],
  ];
  for (const [name, path, roots] of paths) {
    if (path === undefined) {
      if (name !== 'labelSelectorPath') report(`subresources.scale.${name}`, `scale ${name} is required`);
      continue;
    }
    const problem = scalePathProblem(path, roots);
    if (problem) {
      report(`subresources.scale.${name}`, `scale ${name} ${JSON.stringify(path)} ${problem}`);
      continue;
    }
    // As apiextensions: a replicas path the schema defines must be an integer, a selector path a string.
    const node = schemaAt(version.schema, scalePathFields(path));
    const expected = name === 'labelSelectorPath' ? 'string' : 'integer';
    if (node?.type !== undefined && node.type !== expected) {
      report(`subresources.scale.${name}`, `scale ${name} ${JSON.stringify(path)} must point to a field of type ${expected} (the schema says ${node.type})`);
    }
  }
}

/**
 * Everything in the definition the bundled server does not honour (empty when it honours it all),
 * each with its kind, version and field path.
 */
export function unsupportedFeatures(api: ApiGroupDefinition): UnsupportedFeature[] {
  const found: UnsupportedFeature[] = [];
  for (const kind of api.kinds) {
    for (const key of Object.keys(kind)) {
      if (!KIND_FIELDS.includes(key)) found.push({ kind: kind.kind, version: '', field: key, problem: `kind field "${key}" is not supported by the bundled server` });
    }
    for (const version of kind.versions) {
      versionProblems(version, (field, problem) => found.push({ kind: kind.kind, version: version.name, field, problem }));
    }
  }
  return found;
}

/** Thrown for a definition the bundled server cannot honour; one line per feature. */
export class UnsupportedFeatureError extends Error {
  constructor(readonly features: readonly UnsupportedFeature[], context: string) {
    super(`${context}: the bundled server does not support ${features.length === 1 ? 'this feature' : 'these features'} of the definition:\n  - ${features.map(describeUnsupportedFeature).join('\n  - ')}`);
    this.name = 'UnsupportedFeatureError';
  }
}

/** Throws an UnsupportedFeatureError when the bundled server cannot honour the definition. */
export function checkSupportedByBundledServer(api: ApiGroupDefinition, context: string): void {
  const features = unsupportedFeatures(api);
  if (features.length > 0) throw new UnsupportedFeatureError(features, context);
}
