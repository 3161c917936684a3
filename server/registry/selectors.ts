import { errors } from '../status';
import { labelValueProblems, qualifiedNameProblems } from './metadata';

/**
 * Label and field selectors, parsed as k8s.io/apimachinery/pkg/labels and pkg/fields parse them.
 *
 * Label selector syntax: comma-separated requirements, each `key=value`, `key==value`,
 * `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` (exists) or `!key` (does not exist).
 * Field selectors: `field=value`, `field==value`, `field!=value`; the supported fields are
 * `metadata.name` and `metadata.namespace`.
 */

type Labels = Readonly<Record<string, string>> | undefined;

interface Requirement {
  readonly key: string;
  readonly operator: 'in' | 'notin' | 'exists' | '!';
  readonly values: readonly string[];
}

export type Selector = (labels: Labels) => boolean;

function invalidSelector(selector: string, why: string): Error {
  return errors.badRequest(`unable to parse requirement: ${why} (in label selector "${selector}")`);
}

/** Splits on commas outside parentheses. */
function splitTerms(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      terms.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(selector.slice(start));
  return terms.map((t) => t.trim());
}

function checkKey(selector: string, key: string): void {
  const problems = qualifiedNameProblems(key);
  if (problems.length > 0) throw invalidSelector(selector, `invalid label key "${key}": ${problems.join('; ')}`);
}

function checkValue(selector: string, value: string): void {
  const problems = labelValueProblems(value);
  if (problems.length > 0) throw invalidSelector(selector, `invalid label value: "${value}": ${problems.join('; ')}`);
}

function parseRequirement(selector: string, term: string): Requirement {
  let match = /^!\s*([^\s=!(),]+)$/.exec(term);
  if (match) {
    checkKey(selector, match[1]);
    return { key: match[1], operator: '!', values: [] };
  }
  match = /^([^\s=!(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(term);
  if (match) {
    checkKey(selector, match[1]);
    const values = match[3].split(',').map((v) => v.trim());
    if (values.length === 1 && values[0] === '' && match[3].trim() === '') {
      throw invalidSelector(selector, `for '${match[2]}', 'notin' operators, values set can't be empty`);
    }
    values.forEach((v) => checkValue(selector, v));
    return { key: match[1], operator: match[2] as 'in' | 'notin', values };
  }
  match = /^([^\s=!(),]+)\s*(==|=|!=)\s*([^\s=!(),]*)$/.exec(term);
  if (match) {
    checkKey(selector, match[1]);
    checkValue(selector, match[3]);
    return { key: match[1], operator: match[2] === '!=' ? 'notin' : 'in', values: [match[3]] };
  }
  match = /^([^\s=!(),]+)$/.exec(term);
  if (match) {
    checkKey(selector, match[1]);
    return { key: match[1], operator: 'exists', values: [] };
  }
  throw invalidSelector(selector, `found '${term}', expected: key, !key, key=value, key!=value, key in (values) or key notin (values)`);
}

function matches(requirement: Requirement, labels: Labels): boolean {
  const has = labels !== undefined && Object.prototype.hasOwnProperty.call(labels, requirement.key);
  switch (requirement.operator) {
    case 'exists':
      return has;
    case '!':
      return !has;
    case 'in':
      return has && requirement.values.includes(labels![requirement.key]);
    case 'notin':
      // As upstream: `key!=value` and `key notin (...)` also match objects without the key.
      return !has || !requirement.values.includes(labels![requirement.key]);
  }
}

/** Parses a label selector; `undefined` when empty (everything matches). Throws a 400 StatusError. */
export function parseLabelSelector(selector: string | null | undefined): Selector | undefined {
  if (!selector || selector.trim() === '') return undefined;
  const requirements = splitTerms(selector).map((term) => parseRequirement(selector, term));
  return (labels) => requirements.every((r) => matches(r, labels));
}

export interface FieldRequirement {
  readonly field: string;
  readonly equal: boolean;
  readonly value: string;
}

/** The fields every resource supports in field selectors (as for CRDs without selectableFields). */
const SELECTABLE_FIELDS = ['metadata.name', 'metadata.namespace'] as const;

/**
 * Parses a field selector; `undefined` when empty. Throws 400 BadRequest for a syntax error or
 * a field other than `metadata.name` / `metadata.namespace` (`field label not supported: spec.x`,
 * as for a CRD).
 */
export function parseFieldSelector(selector: string | null | undefined): FieldRequirement[] | undefined {
  if (!selector || selector.trim() === '') return undefined;
  return selector.split(',').map((raw) => {
    const term = raw.trim();
    const match = /^([^=!]+)(==|=|!=)(.*)$/.exec(term);
    if (!match) throw errors.badRequest(`invalid selector: '${selector}'; can't understand '${term}'`);
    const field = match[1].trim();
    if (!(SELECTABLE_FIELDS as readonly string[]).includes(field)) {
      throw errors.badRequest(`field label not supported: ${field}`);
    }
    return { field, equal: match[2] !== '!=', value: match[3].trim() };
  });
}

/** Whether an object's name and namespace satisfy the field requirements. */
export function matchesFields(requirements: readonly FieldRequirement[], name: string, namespace: string): boolean {
  return requirements.every((r) => {
    const actual = r.field === 'metadata.name' ? name : namespace;
    return (actual === r.value) === r.equal;
  });
}
