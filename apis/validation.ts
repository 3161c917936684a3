import { CelCompileError, compileCel } from './cel';
import { ApiGroupDefinition, JSONSchemaProps, KindDefinition } from './types';
import { KUBE_VERSION_PATTERN } from './versions';

/** Thrown for a definition that Kubernetes would refuse; names the field, the value and the rule. */
export class ApiDefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ApiDefinitionError';
  }
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const UPPER_CAMEL_CASE = /^[A-Z][A-Za-z0-9]*$/;
const PRINTER_COLUMN_TYPES = ['integer', 'number', 'string', 'boolean', 'date'];

export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}

/** A DNS-1035 label: a DNS-1123 label that starts with a letter, as Service names must be. */
export function isDns1035Label(value: string): boolean {
  return value.length <= 63 && DNS1035_LABEL.test(value);
}

export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && DNS1123_SUBDOMAIN.test(value);
}

/**
 * Checks a definition against the rules the Kubernetes API server applies to APIServices and
 * CRDs, and throws an `ApiDefinitionError` listing every problem found.
 */
export function validateApiGroupDefinition(api: ApiGroupDefinition): void {
  const problems: string[] = [];
  if (!isDns1123Subdomain(api.group) || !api.group.includes('.')) {
    problems.push(
      `group "${api.group}" is not a DNS subdomain with at least one dot ` +
        `(lowercase letters, digits, '-' and '.', at most 253 characters, e.g. "wardle.example.com")`,
    );
  }
  if (api.kinds.length === 0) problems.push(`group "${api.group}" defines no kinds (expected at least one)`);

  const seen = new Map<string, string>();
  const kindNames = new Set<string>();
  for (const kind of api.kinds) {
    problems.push(...kindProblems(kind));
    if (kindNames.has(kind.kind)) problems.push(`kind "${kind.kind}" is defined twice (kinds must be unique in a group)`);
    kindNames.add(kind.kind);
    for (const name of [kind.plural, kind.singular, ...(kind.shortNames ?? [])]) {
      const owner = seen.get(name);
      if (owner !== undefined && owner !== kind.kind) {
        problems.push(`kinds "${owner}" and "${kind.kind}" both use the resource name "${name}" (names must be unique in a group)`);
      }
      seen.set(name, kind.kind);
    }
  }
  if (problems.length > 0) {
    throw new ApiDefinitionError(`invalid API definition "${api.group}":\n  - ${problems.join('\n  - ')}`);
  }
}

function kindProblems(kind: KindDefinition): string[] {
  const problems: string[] = [];
  const where = `kind "${kind.kind}"`;
  if (!UPPER_CAMEL_CASE.test(kind.kind)) {
    problems.push(`${where}: kind "${kind.kind}" is not UpperCamelCase (expected a capital letter, then letters and digits)`);
  }
  if (kind.listKind !== undefined && !UPPER_CAMEL_CASE.test(kind.listKind)) {
    problems.push(`${where}: listKind "${kind.listKind}" is not UpperCamelCase`);
  }
  for (const field of ['plural', 'singular'] as const) {
    if (!isDns1123Label(kind[field])) {
      problems.push(`${where}: ${field} "${kind[field]}" is not a lowercase DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)`);
    }
  }
  for (const shortName of kind.shortNames ?? []) {
    if (!isDns1123Label(shortName)) problems.push(`${where}: shortName "${shortName}" is not a lowercase DNS-1123 label`);
  }
  if (kind.scope !== 'Namespaced' && kind.scope !== 'Cluster') {
    problems.push(`${where}: scope "${String(kind.scope)}" is not one of "Namespaced", "Cluster"`);
  }
  if (kind.versions.length === 0) problems.push(`${where}: no versions (expected at least one)`);

  const names = new Set<string>();
  for (const version of kind.versions) {
    if (!KUBE_VERSION_PATTERN.test(version.name)) {
      problems.push(`${where}: version "${version.name}" does not match v<N>, v<N>alpha<M> or v<N>beta<M> (e.g. "v1", "v1beta2")`);
    }
    if (names.has(version.name)) problems.push(`${where}: version "${version.name}" is listed twice`);
    names.add(version.name);
    if (version.schema.type !== 'object') {
      problems.push(`${where}, version "${version.name}": schema.type is "${String(version.schema.type)}" (expected "object")`);
    }
    problems.push(...validationRuleProblems(version.schema, `${where}, version "${version.name}": schema`));
    for (const column of version.printerColumns ?? []) {
      if (!PRINTER_COLUMN_TYPES.includes(column.type)) {
        problems.push(`${where}, version "${version.name}": printer column "${column.name}" has type "${column.type}" (expected one of ${PRINTER_COLUMN_TYPES.join(', ')})`);
      }
      if (!column.jsonPath.startsWith('.')) {
        problems.push(`${where}, version "${version.name}": printer column "${column.name}" jsonPath "${column.jsonPath}" must start with "."`);
      }
    }
  }
  const storage = kind.versions.filter((v) => v.storage).map((v) => v.name);
  if (storage.length !== 1) {
    problems.push(`${where}: ${storage.length} storage versions [${storage.join(', ')}] (expected exactly one)`);
  }
  if (!kind.versions.some((v) => v.served)) problems.push(`${where}: no version is served (expected at least one)`);
  return problems;
}

const RULE_REASONS = ['FieldValueInvalid', 'FieldValueForbidden', 'FieldValueRequired', 'FieldValueDuplicate'];

/**
 * The problems of a schema's `x-kubernetes-validations`, as kube-apiserver refuses them in a CRD:
 * a rule or messageExpression that does not compile (with the compiler's message), an unknown
 * reason, a fieldPath that names no field, a message with line breaks, optionalOldSelf without
 * oldSelf, and oldSelf where the old value cannot be found (list items outside
 * `x-kubernetes-list-type: map` lists, under an atomic map).
 */
export function validationRuleProblems(schema: JSONSchemaProps, where: string): string[] {
  const problems: string[] = [];
  const visit = (node: JSONSchemaProps, path: string, correlatable: boolean): void => {
    (node['x-kubernetes-validations'] ?? []).forEach((rule, i) => {
      const at = `${where} ${path || '<root>'}: x-kubernetes-validations[${i}]`;
      if (rule.rule.trim() === '') {
        problems.push(`${at}: rule is empty (expected a CEL expression)`);
        return;
      }
      let usesOldSelf = false;
      try {
        usesOldSelf = compileCel(rule.rule).usesOldSelf;
      } catch (error) {
        if (!(error instanceof CelCompileError)) throw error;
        problems.push(`${at}: rule ${JSON.stringify(rule.rule)}: ${error.message}`);
      }
      if (rule.messageExpression !== undefined) {
        try {
          compileCel(rule.messageExpression);
        } catch (error) {
          if (!(error instanceof CelCompileError)) throw error;
          problems.push(`${at}: messageExpression ${JSON.stringify(rule.messageExpression)}: ${error.message}`);
        }
      }
      if (rule.message !== undefined && (rule.message.trim() === '' || /[\r\n]/.test(rule.message))) {
        problems.push(`${at}: message ${JSON.stringify(rule.message)} must be non-empty and on one line`);
      }
      if (rule.reason !== undefined && !RULE_REASONS.includes(rule.reason)) {
        problems.push(`${at}: reason ${JSON.stringify(rule.reason)} is not one of ${RULE_REASONS.join(', ')}`);
      }
      if (rule.fieldPath !== undefined) {
        try {
          normalizeRuleFieldPath(rule.fieldPath, node);
        } catch (error) {
          problems.push(`${at}: fieldPath ${JSON.stringify(rule.fieldPath)}: ${(error as Error).message}`);
        }
      }
      if (rule.optionalOldSelf === true && !usesOldSelf) problems.push(`${at}: optionalOldSelf may only be set on a rule that uses oldSelf`);
      if (usesOldSelf && !correlatable) {
        problems.push(`${at}: oldSelf cannot be used on the uncorrelatable portion of the schema within ${path || '<root>'} (list items are correlated only in x-kubernetes-list-type: map lists)`);
      }
    });
    const mapCorrelatable = correlatable && node['x-kubernetes-map-type'] !== 'atomic';
    for (const [name, property] of Object.entries(node.properties ?? {})) visit(property, path ? `${path}.${name}` : name, mapCorrelatable);
    if (typeof node.additionalProperties === 'object') visit(node.additionalProperties, `${path}[*]`, mapCorrelatable);
    if (node.items) visit(node.items, `${path}[*]`, correlatable && node['x-kubernetes-list-type'] === 'map');
  };
  visit(schema, '', true);
  return problems;
}

/**
 * A rule's `fieldPath` checked against the schema of the rule's node and rendered as the field
 * path it adds to errors (`.spec.replicas` → `spec.replicas`, `.labels['a.b']` → `labels[a.b]`), as
 * apiextensions' ValidFieldPath. Throws naming what is wrong.
 */
export function normalizeRuleFieldPath(fieldPath: string, schema: JSONSchemaProps): string {
  let rest = fieldPath;
  let node: JSONSchemaProps | undefined = schema;
  let out = '';
  const step = (name: string) => {
    if (node?.properties) {
      node = node.properties[name];
      if (node === undefined) throw new Error(`does not refer to a valid field (no property "${name}")`);
      out += out === '' ? name : `.${name}`;
    } else if (typeof node?.additionalProperties === 'object') {
      node = node.additionalProperties;
      out += `[${name}]`;
    } else {
      throw new Error(`does not refer to a valid field ("${name}" is under a value without properties)`);
    }
  };
  if (rest === '') throw new Error('is empty (expected a path such as ".spec.replicas")');
  while (rest !== '') {
    const named = /^\.([^.[\]]+)/.exec(rest);
    const quoted = /^\['((?:[^'\\]|\\.)*)'\]/.exec(rest);
    if (named) {
      step(named[1]);
      rest = rest.slice(named[0].length);
    } else if (quoted) {
      step(quoted[1].replace(/\\(.)/g, '$1'));
      rest = rest.slice(quoted[0].length);
    } else {
      throw new Error(`expected ".<field>" or "['<key>']" at ${JSON.stringify(rest)}`);
    }
  }
  return out;
}
