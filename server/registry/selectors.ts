import { errors } from '../status';
import { labelValueProblems, qualifiedNameProblems } from './metadata';

/**
 * Label and field selectors, parsed as k8s.io/apimachinery/pkg/labels and pkg/fields parse them.
 *
 * Label selector syntax (labels.Parse, its lexer and parser ported token for token): comma-separated
 * requirements, each `key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`,
 * `key>N`, `key<N`, `key` (exists) or `!key` (does not exist). Whitespace (' ', '\t', '\r', '\n'
 * only) separates tokens; `()` is the set of one empty value; `in`/`notin` are keywords only
 * where an operator is expected (`in in (in)` is valid).
 * Field selectors (fields.ParseSelector): `field=value`, `field==value`, `field!=value`, terms
 * split on commas not escaped with a backslash, values unescaped (`\,` `\=` `\\`), empty
 * terms skipped, nothing trimmed; the supported fields are `metadata.name` and `metadata.namespace`.
 */

type Labels = Readonly<Record<string, string>> | undefined;

type Operator = 'in' | 'notin' | 'exists' | '!' | '>' | '<';

interface Requirement {
  readonly key: string;
  readonly operator: Operator;
  readonly values: readonly string[];
}

export type Selector = (labels: Labels) => boolean;

function invalidSelector(selector: string, why: string): Error {
  return errors.badRequest(`unable to parse requirement: ${why} (in label selector "${selector}")`);
}

// ---- labels.Lexer ----

type TokenKind = 'id' | 'in' | 'notin' | '(' | ')' | ',' | '!' | '=' | '==' | '!=' | '>' | '<' | 'end' | 'error';

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
}

const SYMBOL_TOKENS: Readonly<Record<string, TokenKind>> = { '(': '(', ')': ')', ',': ',', '!': '!', '=': '=', '==': '==', '!=': '!=', '>': '>', '<': '<' };
const isWhitespace = (c: string) => c === ' ' || c === '\t' || c === '\r' || c === '\n';
const isSpecialSymbol = (c: string) => c === '=' || c === '!' || c === '(' || c === ')' || c === ',' || c === '>' || c === '<';

function lex(selector: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  for (;;) {
    while (i < selector.length && isWhitespace(selector[i])) i++;
    if (i >= selector.length) {
      tokens.push({ kind: 'end', text: '' });
      return tokens;
    }
    const start = i;
    if (isSpecialSymbol(selector[i])) {
      // The longest run of symbols that is a token (`!=`, `==`), as scanSpecialSymbol.
      let kind: TokenKind | undefined;
      let end = i;
      for (let j = i; j < selector.length && isSpecialSymbol(selector[j]); j++) {
        const candidate = SYMBOL_TOKENS[selector.slice(i, j + 1)];
        if (candidate) {
          kind = candidate;
          end = j + 1;
        } else if (kind) {
          break;
        }
      }
      if (!kind) {
        tokens.push({ kind: 'error', text: `error expected: keyword found '${selector.slice(i)}'` });
        return tokens;
      }
      tokens.push({ kind, text: selector.slice(i, end) });
      i = end;
      continue;
    }
    while (i < selector.length && !isWhitespace(selector[i]) && !isSpecialSymbol(selector[i])) i++;
    const text = selector.slice(start, i);
    tokens.push({ kind: text === 'in' ? 'in' : text === 'notin' ? 'notin' : 'id', text });
  }
}

// ---- labels.Parser ----

class LabelParser {
  private position = 0;
  constructor(
    private readonly selector: string,
    private readonly tokens: readonly Token[],
  ) {}

  /** The next token; `in`/`notin` are identifiers unless an operator is expected (the Values context). */
  private lookahead(operatorContext = false): Token {
    const token = this.tokens[Math.min(this.position, this.tokens.length - 1)];
    return !operatorContext && (token.kind === 'in' || token.kind === 'notin') ? { kind: 'id', text: token.text } : token;
  }

  private consume(operatorContext = false): Token {
    const token = this.lookahead(operatorContext);
    if (this.position < this.tokens.length - 1) this.position++;
    return token;
  }

  private fail(why: string): Error {
    return invalidSelector(this.selector, why);
  }

  parse(): Requirement[] {
    const requirements: Requirement[] = [];
    for (;;) {
      const next = this.lookahead();
      if (next.kind === 'end') return requirements;
      if (next.kind !== 'id' && next.kind !== '!') throw this.fail(`found '${next.text}', expected: !, identifier, or 'end of string'`);
      requirements.push(this.parseRequirement());
      const after = this.consume();
      if (after.kind === 'end') return requirements;
      if (after.kind !== ',') throw this.fail(`found '${after.text}', expected: ',' or 'end of string'`);
      const following = this.lookahead();
      if (following.kind !== 'id' && following.kind !== '!') throw this.fail(`found '${following.text}', expected: identifier after ','`);
    }
  }

  private parseRequirement(): Requirement {
    let token = this.consume();
    const doesNotExist = token.kind === '!';
    if (doesNotExist) token = this.consume();
    if (token.kind !== 'id') throw this.fail(`found '${token.text}', expected: identifier`);
    const key = token.text;
    this.checkKey(key);
    const next = this.lookahead().kind;
    if (doesNotExist) return { key, operator: '!', values: [] };
    if (next === 'end' || next === ',') return { key, operator: 'exists', values: [] };
    const operator = this.consume(true);
    switch (operator.kind) {
      case 'in':
      case 'notin':
        return this.requirement(key, operator.kind, this.parseValues());
      case '=':
      case '==':
        return this.requirement(key, 'in', this.parseExactValue());
      case '!=':
        return this.requirement(key, 'notin', this.parseExactValue());
      case '>':
      case '<':
        return this.requirement(key, operator.kind, this.parseExactValue());
      default:
        throw this.fail(`found '${operator.text}', expected: in, notin, =, ==, !=, gt, lt`);
    }
  }

  /** `(a,b)`; `()` and empty items are the empty value, as parseValues and parseIdentifiersList. */
  private parseValues(): string[] {
    const open = this.consume();
    if (open.kind !== '(') throw this.fail(`found '${open.text}' expected: '('`);
    const first = this.lookahead();
    if (first.kind === ')') {
      this.consume();
      return [''];
    }
    if (first.kind !== 'id' && first.kind !== ',') throw this.fail(`found '${first.text}', expected: ',', ')' or identifier`);
    const values = new Set<string>();
    for (;;) {
      const token = this.consume();
      if (token.kind === 'id') {
        values.add(token.text);
        const after = this.lookahead();
        if (after.kind === ')') {
          this.consume();
          return [...values];
        }
        if (after.kind !== ',') throw this.fail(`found '${after.text}', expected: ',' or ')'`);
      } else if (token.kind === ',') {
        if (values.size === 0) values.add(''); // `(,`
        const after = this.lookahead();
        if (after.kind === ')') {
          this.consume();
          values.add(''); // `,)`
          return [...values];
        }
        if (after.kind === ',') {
          this.consume();
          values.add(''); // `,,`
        }
      } else {
        throw this.fail(`found '${token.text}', expected: ',', or identifier`);
      }
    }
  }

  private parseExactValue(): string[] {
    const next = this.lookahead();
    if (next.kind === 'end' || next.kind === ',') return [''];
    const token = this.consume();
    if (token.kind !== 'id') throw this.fail(`found '${token.text}', expected: identifier`);
    return [token.text];
  }

  private checkKey(key: string): void {
    const problems = qualifiedNameProblems(key);
    if (problems.length > 0) throw this.fail(`invalid label key "${key}": ${problems.join('; ')}`);
  }

  /** labels.NewRequirement's checks of the values. */
  private requirement(key: string, operator: Operator, values: string[]): Requirement {
    if (operator === '>' || operator === '<') {
      if (!INTEGER.test(values[0]) || !isInt64(values[0])) throw this.fail(`invalid value "${values[0]}": for 'Gt', 'Lt' operators, the value must be an integer`);
      return { key, operator, values };
    }
    for (const value of values) {
      const problems = labelValueProblems(value);
      if (problems.length > 0) throw this.fail(`invalid label value: "${value}": ${problems.join('; ')}`);
    }
    return { key, operator, values };
  }
}

/** strconv.ParseInt(s, 10, 64)'s syntax. */
const INTEGER = /^[+-]?\d+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function isInt64(text: string): boolean {
  const value = BigInt(text);
  return value >= INT64_MIN && value <= INT64_MAX;
}

function matches(requirement: Requirement, labels: Labels): boolean {
  // Labels as stored: anything but a map (null, from an object written with "labels": null) is no labels.
  const has = typeof labels === 'object' && labels !== null && Object.prototype.hasOwnProperty.call(labels, requirement.key);
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
    case '>':
    case '<': {
      const actual = has ? labels![requirement.key] : '';
      if (!INTEGER.test(actual) || !isInt64(actual)) return false;
      const difference = BigInt(actual) - BigInt(requirement.values[0]);
      return requirement.operator === '>' ? difference > 0n : difference < 0n;
    }
  }
}

/** Parses a label selector; `undefined` when empty (everything matches). Throws a 400 StatusError. */
export function parseLabelSelector(selector: string | null | undefined): Selector | undefined {
  if (!selector) return undefined;
  const requirements = new LabelParser(selector, lex(selector)).parse();
  if (requirements.length === 0) return undefined;
  return (labels) => requirements.every((r) => matches(r, labels));
}

export interface FieldRequirement {
  readonly field: string;
  readonly equal: boolean;
  readonly value: string;
}

/** The fields every resource supports in field selectors (as for CRDs without selectableFields). */
const SELECTABLE_FIELDS = ['metadata.name', 'metadata.namespace'] as const;

/** Splits on commas not escaped with a backslash, as fields.splitTerms. */
function splitFieldTerms(selector: string): string[] {
  const terms: string[] = [];
  let start = 0;
  for (let i = 0; i < selector.length; i++) {
    if (selector[i] === '\\') i++;
    else if (selector[i] === ',') {
      terms.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(selector.slice(start));
  return terms;
}

const FIELD_OPERATORS = ['!=', '==', '='] as const;

/** The first operator of a term, escaped or not, as fields.splitTerm: `[field, operator, raw value]`. */
function splitFieldTerm(term: string): [string, string, string] | undefined {
  for (let i = 0; i < term.length; i++) {
    for (const operator of FIELD_OPERATORS) {
      if (term.startsWith(operator, i)) return [term.slice(0, i), operator, term.slice(i + operator.length)];
    }
  }
  return undefined;
}

/** fields.UnescapeValue: `\\`, `\,` and `\=` stand for the character; any other escape, or an unescaped `,` or `=`, is refused. */
function unescapeFieldValue(selector: string, value: string): string {
  if (!/[\\,=]/.test(value)) return value;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\') {
      const next = value[i + 1];
      if (next !== '\\' && next !== ',' && next !== '=') throw errors.badRequest(`invalid field selector: '${selector}': invalid escape sequence: \\${next ?? ''}`);
      out += next;
      i++;
    } else if (c === ',' || c === '=') {
      throw errors.badRequest(`invalid field selector: '${selector}': unescaped ${c} in a value`);
    } else {
      out += c;
    }
  }
  return out;
}

/**
 * Parses a field selector; `undefined` when empty. Throws 400 BadRequest for a syntax error or
 * a field other than `metadata.name` / `metadata.namespace` (`field label not supported: spec.x`,
 * as for a CRD). The requirements come sorted by their text, as fields.ParseSelector sorts them.
 */
export function parseFieldSelector(selector: string | null | undefined): FieldRequirement[] | undefined {
  if (!selector) return undefined;
  const requirements: FieldRequirement[] = [];
  for (const term of splitFieldTerms(selector).sort()) {
    if (term === '') continue;
    const split = splitFieldTerm(term);
    if (!split) throw errors.badRequest(`invalid selector: '${selector}'; can't understand '${term}'`);
    const [field, operator, rawValue] = split;
    const value = unescapeFieldValue(selector, rawValue);
    if (!(SELECTABLE_FIELDS as readonly string[]).includes(field)) {
      throw errors.badRequest(`field label not supported: ${field}`);
    }
    requirements.push({ field, equal: operator !== '!=', value });
  }
  return requirements.length > 0 ? requirements : undefined;
}

/** Whether an object's name and namespace satisfy the field requirements. */
export function matchesFields(requirements: readonly FieldRequirement[], name: string, namespace: string): boolean {
  return requirements.every((r) => {
    const actual = r.field === 'metadata.name' ? name : namespace;
    return (actual === r.value) === r.equal;
  });
}
