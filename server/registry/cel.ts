import { durationFromMs, timestampFromDate, type Duration, type Timestamp } from '@bufbuild/protobuf/wkt';
import { CEL_PER_CALL_COST_LIMIT, CEL_RUNTIME_COST_BUDGET, CelMeter, CompiledCel, compileCel, isCelError } from '../../apis/cel';
import type { JSONSchemaProps, KindVersion, ValidationRule } from '../../apis/types';
import { ApiDefinitionError, normalizeRuleFieldPath, validationRuleProblems } from '../../apis/validation';
import { FieldError, child, fieldErrors, index, key } from './field-errors';
import { isObject } from './rules';

/**
 * `x-kubernetes-validations` enforced on create and update, as kube-apiserver enforces them for
 * CRDs (k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go): each rule is
 * compiled once per schema node when the store is built, then evaluated with `self` bound to the
 * node's value and, for transition rules on update, `oldSelf` to its old value where the schema
 * correlates the two (object properties unless `x-kubernetes-map-type: atomic`; list items only
 * in `x-kubernetes-list-type: map` lists, by their keys). The CEL dialect (libraries, cost
 * metering, what is missing) is apis/cel.ts.
 *
 * Values are typed from the schema as kube-apiserver types them: `integer` as CEL int, `number`
 * as double (also when written without a fraction), objects with `properties` as maps of their
 * declared fields (names escaped: `foo-bar` is `self.foo__dash__bar`), `additionalProperties`
 * maps as maps, `format: date-time` strings as timestamps and `format: duration` ones as
 * durations, the resource root with `apiVersion`, `kind` and `metadata.name` /
 * `metadata.generateName` only.
 *
 * Ratcheting as kube-apiserver's CRDValidationRatcheting: on update, rules that do not use
 * `oldSelf` are skipped on a value that is unchanged (upstream reports them as warnings instead).
 *
 * Costs: each rule may spend `perCallLimit`, all the rules of one object together `budget`
 * (kube-apiserver's PerCallLimit and RuntimeCELCostBudget); past either, validation stops with
 * kube-apiserver's errors, so a rule cannot hold the server.
 */

export interface CelLimits {
  /** @default CEL_PER_CALL_COST_LIMIT (1,000,000) */
  readonly perCallLimit?: number;
  /** @default CEL_RUNTIME_COST_BUDGET (10,000,000) */
  readonly budget?: number;
}

interface CompiledRule {
  readonly rule: ValidationRule;
  readonly program: CompiledCel;
  readonly messageExpression?: CompiledCel;
  /** `fieldPath` as a field path under the node (`spec.replicas`, `labels[a.b]`), '' when unset. */
  readonly fieldPath: string;
}

/** The compiled rules of one schema node and of the nodes under it that have rules. */
export interface CelValidator {
  readonly schema: JSONSchemaProps;
  readonly rules: readonly CompiledRule[];
  readonly isResourceRoot: boolean;
  readonly properties: ReadonlyMap<string, CelValidator>;
  readonly additionalProperties?: CelValidator;
  readonly items?: CelValidator;
}

/**
 * Compiles the rules of one version of a kind, at start; undefined when it has none. A definition
 * whose rules apis/validation.ts refuses (a rule that does not compile, a bad fieldPath or
 * reason…) throws an ApiDefinitionError naming each, as the CRD construct refuses it.
 */
export function compileVersionCel(kind: string, version: KindVersion): CelValidator | undefined {
  const problems = validationRuleProblems(version.schema, `kind "${kind}", version "${version.name}": schema`);
  if (problems.length > 0) throw new ApiDefinitionError(`invalid x-kubernetes-validations:\n  - ${problems.join('\n  - ')}`);
  return compileCelValidator(version.schema);
}

/** Compiles the rules of a schema node and those under it; undefined when there are none. */
export function compileCelValidator(schema: JSONSchemaProps, isResourceRoot = true): CelValidator | undefined {
  const rules = (schema['x-kubernetes-validations'] ?? []).map((rule): CompiledRule => {
    try {
      return {
        rule,
        program: compileCel(rule.rule),
        messageExpression: rule.messageExpression !== undefined ? compileCel(rule.messageExpression) : undefined,
        fieldPath: rule.fieldPath ? normalizeRuleFieldPath(rule.fieldPath, schema) : '',
      };
    } catch (error) {
      throw new Error(`x-kubernetes-validations rule ${JSON.stringify(rule.rule)}: ${(error as Error).message}`);
    }
  });
  const properties = new Map<string, CelValidator>();
  for (const [name, propertySchema] of Object.entries(schema.properties ?? {})) {
    const validator = compileCelValidator(propertySchema, propertySchema['x-kubernetes-embedded-resource'] === true);
    if (validator) properties.set(name, validator);
  }
  const additional = typeof schema.additionalProperties === 'object' ? compileCelValidator(schema.additionalProperties, schema.additionalProperties['x-kubernetes-embedded-resource'] === true) : undefined;
  const items = schema.items ? compileCelValidator(schema.items, schema.items['x-kubernetes-embedded-resource'] === true) : undefined;
  if (rules.length === 0 && properties.size === 0 && !additional && !items) return undefined;
  return { schema, rules, isResourceRoot, properties, additionalProperties: additional, items };
}

/**
 * Evaluates every rule against `object` (and `old`, on update); returns the field errors of the
 * rules that failed, worded as kube-apiserver words them.
 */
export function validateCelRules(validator: CelValidator | undefined, object: unknown, old: unknown, limits: CelLimits = {}): FieldError[] {
  if (!validator) return [];
  const run: Run = { errors: [], remaining: limits.budget ?? CEL_RUNTIME_COST_BUDGET, perCallLimit: limits.perCallLimit ?? CEL_PER_CALL_COST_LIMIT };
  validateNode(run, validator, '', object, old);
  return run.errors;
}

interface Run {
  readonly errors: FieldError[];
  /** What is left of the budget; negative once validation stopped. */
  remaining: number;
  readonly perCallLimit: number;
}

const OUT_OF_BUDGET = 'validation failed due to running out of cost budget, no further validation rules will be run';

function validateNode(run: Run, validator: CelValidator, path: string, value: unknown, old: unknown): void {
  if (value === null || value === undefined || run.remaining < 0) return;
  if (old === null) old = undefined;
  validateRules(run, validator, path, value, old);
  if (run.remaining < 0) return;
  if (Array.isArray(value) && validator.items) {
    const oldItem = correlateListItems(validator.schema, Array.isArray(old) ? old : undefined);
    for (let i = 0; i < value.length && run.remaining >= 0; i++) validateNode(run, validator.items, index(path, i), value[i], oldItem(value[i]));
  } else if (isObject(value)) {
    const oldObject = isObject(old) && validator.schema['x-kubernetes-map-type'] !== 'atomic' ? old : undefined;
    for (const [name, propertyValue] of Object.entries(value)) {
      if (run.remaining < 0) return;
      const propertyValidator = validator.properties.get(name);
      if (propertyValidator) validateNode(run, propertyValidator, child(path, name), propertyValue, oldObject?.[name]);
      else if (validator.additionalProperties && !validator.schema.properties) validateNode(run, validator.additionalProperties, key(path, name), propertyValue, oldObject?.[name]);
    }
  }
}

/** Old list items are visible to transition rules only in `list-type: map` lists, matched by their keys. */
function correlateListItems(schema: JSONSchemaProps, old: readonly unknown[] | undefined): (item: unknown) => unknown {
  const keys = schema['x-kubernetes-list-map-keys'];
  if (!old || schema['x-kubernetes-list-type'] !== 'map' || !keys) return () => undefined;
  const identity = (item: unknown) => (isObject(item) ? JSON.stringify(keys.map((k) => item[k] ?? null)) : undefined);
  const byKey = new Map(old.map((item) => [identity(item), item]));
  return (item) => byKey.get(identity(item));
}

function validateRules(run: Run, validator: CelValidator, path: string, value: unknown, old: unknown): void {
  if (validator.rules.length === 0) return;
  const type = validator.schema.type ?? '';
  if (run.remaining <= 0) {
    run.errors.push(fieldErrors.invalid(path, type, OUT_OF_BUDGET));
    run.remaining = -1;
    return;
  }
  // Ratcheting (CRDValidationRatcheting, on by default since 1.30): a value an update left as it was
  // is not refused by the rules that do not use oldSelf, so a new rule does not lock existing objects.
  const unchanged = old !== undefined && JSON.stringify(value) === JSON.stringify(old);
  const self = celValue(value, validator.schema, validator.isResourceRoot);
  const oldSelf = old === undefined ? undefined : celValue(old, validator.schema, validator.isResourceRoot);
  for (const compiled of validator.rules) {
    const { rule, program } = compiled;
    const optionalOldSelf = rule.optionalOldSelf === true;
    // Transition rules run only on update, where there is an old value, unless oldSelf is optional.
    if (program.usesOldSelf && oldSelf === undefined && !optionalOldSelf) continue;
    if (!program.usesOldSelf && unchanged) continue;
    const bindings: Record<string, CelInputValue> = { self };
    if (optionalOldSelf) bindings.oldSelf = oldSelf === undefined ? [] : [oldSelf];
    else if (oldSelf !== undefined) bindings.oldSelf = oldSelf;
    const ruleText = ruleErrorString(rule);

    const meter = new CelMeter(Math.min(run.perCallLimit, run.remaining));
    const result = program.evaluate(bindings as never, meter);
    run.remaining -= meter.used;
    if (meter.exceeded) {
      run.errors.push(
        fieldErrors.invalid(
          path,
          type,
          meter.limit === run.perCallLimit ? `'${COST_LIMIT_ERROR}': no further validation rules will be run due to call cost exceeds limit for rule: ${ruleText}` : OUT_OF_BUDGET,
        ),
      );
      run.remaining = -1;
      return;
    }
    if (isCelError(result)) {
      // cel-go words a missing field `no such key: x`; @bufbuild/cel `field not found: x`.
      const message = result.message.replace(/^field not found: /, 'no such key: ');
      run.errors.push(
        fieldErrors.invalid(
          path,
          type,
          /^(found )?no (matching|such) overload/.test(message)
            ? `'${message}': call arguments did not match a supported operator, function or macro signature for rule: ${ruleText}`
            : `${message} evaluating rule: ${ruleText}`,
        ),
      );
      continue;
    }
    if (result === true) continue;
    if (typeof result !== 'boolean') {
      run.errors.push(fieldErrors.invalid(path, type, `cel expression must evaluate to a bool evaluating rule: ${ruleText}`));
      continue;
    }
    const fieldPath = compiled.fieldPath === '' ? path : child(path, compiled.fieldPath);
    let detail = ruleMessageOrDefault(rule);
    if (compiled.messageExpression) {
      const messageMeter = new CelMeter(Math.min(run.perCallLimit, run.remaining));
      const message = compiled.messageExpression.evaluate(bindings as never, messageMeter);
      run.remaining -= messageMeter.used;
      if (messageMeter.exceeded) {
        run.errors.push(
          fieldErrors.invalid(
            fieldPath,
            type,
            messageMeter.limit === run.perCallLimit
              ? `no further validation rules will be run due to call cost exceeds limit for messageExpression: ${JSON.stringify(rule.messageExpression)}`
              : 'messageExpression evaluation failed due to running out of cost budget, no further validation rules will be run',
          ),
        );
        run.remaining = -1;
        return;
      }
      // As upstream, a messageExpression that fails or gives no usable string falls back to message.
      if (typeof message === 'string' && message.trim() !== '' && !message.includes('\n') && Buffer.byteLength(message.trim()) <= MAX_MESSAGE_EXPRESSION_BYTES) {
        detail = message.trim();
      }
    }
    run.errors.push(fieldErrorForReason(fieldPath, type, detail, rule.reason));
  }
}

const COST_LIMIT_ERROR = 'operation cancelled: actual cost limit exceeded';
/** celconfig.MaxEvaluatedMessageExpressionSizeBytes */
const MAX_MESSAGE_EXPRESSION_BYTES = 5 * 1024;

function ruleErrorString(rule: ValidationRule): string {
  return rule.message ? rule.message.trim() : rule.rule.trim();
}

function ruleMessageOrDefault(rule: ValidationRule): string {
  return rule.message ? rule.message.trim() : `failed rule: ${rule.rule.trim()}`;
}

function fieldErrorForReason(path: string, type: string, detail: string, reason: ValidationRule['reason']): FieldError {
  switch (reason) {
    case 'FieldValueForbidden':
      return fieldErrors.forbidden(path, detail);
    case 'FieldValueRequired':
      return fieldErrors.required(path, detail);
    case 'FieldValueDuplicate':
      return { reason: 'FieldValueDuplicate', message: `Duplicate value: ${JSON.stringify(type)}`, field: path };
    default:
      return fieldErrors.invalid(path, type, detail);
  }
}

// ---- values -----------------------------------------------------------------------------------

type CelInputValue = null | boolean | bigint | number | string | Timestamp | Duration | readonly CelInputValue[] | ReadonlyMap<string, CelInputValue>;

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration string (`1h30m`, `-1.5s`) in milliseconds, as `format: duration` values are written. */
function goDurationMs(text: string): number | undefined {
  const match = /^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/.exec(text);
  if (!match) return text === '0' ? 0 : undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) total += Number(amount) * DURATION_UNITS_MS[unit];
  return match[1] === '-' ? -total : total;
}

const CEL_RESERVED = new Set([
  'true', 'false', 'null', 'in', 'as', 'break', 'const', 'continue', 'else', 'for', 'function', 'if', 'import', 'let', 'loop', 'package', 'namespace', 'return', 'var', 'void', 'while',
]);
const ESCAPABLE = /^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$/;

/**
 * A property name as CEL sees it (k8s.io/apiserver/pkg/cel Escape): keywords as `__x__`, `__`,
 * `.`, `-` and `/` spelled out; undefined for a name CEL cannot address.
 */
export function escapePropertyName(name: string): string | undefined {
  if (CEL_RESERVED.has(name)) return `__${name}__`;
  if (!ESCAPABLE.test(name)) return undefined;
  return name.replace(/__|[.\-/]/g, (m) => ({ __: '__underscores__', '.': '__dot__', '-': '__dash__', '/': '__slash__' })[m] as string);
}

/** A JSON value as CEL values, typed by its schema. */
function celValue(value: unknown, schema: JSONSchemaProps | undefined, isResourceRoot: boolean): CelInputValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') {
    const integer = schema?.type === 'integer' || schema?.['x-kubernetes-int-or-string'] === true || (schema?.type === undefined && Number.isInteger(value));
    return integer && Number.isInteger(value) ? BigInt(value) : value;
  }
  if (typeof value === 'string' && schema?.format === 'date-time' && !Number.isNaN(Date.parse(value))) return timestampFromDate(new Date(value));
  if (typeof value === 'string' && schema?.format === 'duration') {
    const ms = goDurationMs(value);
    if (ms !== undefined) return durationFromMs(ms);
  }
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (Array.isArray(value)) {
    const items = schema?.items;
    return value.map((item) => celValue(item, items, items?.['x-kubernetes-embedded-resource'] === true));
  }
  if (!isObject(value)) return null;
  const entries = new Map<string, CelInputValue>();
  if (isResourceRoot) {
    for (const name of ['apiVersion', 'kind'] as const) if (typeof value[name] === 'string') entries.set(name, value[name] as string);
    const meta = isObject(value.metadata) ? value.metadata : {};
    const visibleMeta = new Map<string, CelInputValue>();
    for (const name of ['name', 'generateName']) if (typeof meta[name] === 'string') visibleMeta.set(name, meta[name] as string);
    entries.set('metadata', visibleMeta);
  }
  if (schema?.properties) {
    for (const [name, propertySchema] of Object.entries(schema.properties)) {
      if (isResourceRoot && (name === 'apiVersion' || name === 'kind' || name === 'metadata')) continue;
      const escaped = escapePropertyName(name);
      if (escaped !== undefined && value[name] !== undefined) entries.set(escaped, celValue(value[name], propertySchema, propertySchema['x-kubernetes-embedded-resource'] === true));
    }
    return entries;
  }
  const additional = typeof schema?.additionalProperties === 'object' ? schema.additionalProperties : undefined;
  for (const [name, propertyValue] of Object.entries(value)) {
    if (isResourceRoot && (name === 'apiVersion' || name === 'kind' || name === 'metadata')) continue;
    if (propertyValue !== undefined) entries.set(name, celValue(propertyValue, additional, additional?.['x-kubernetes-embedded-resource'] === true));
  }
  return entries;
}
