import { CelScalar, celEnv, celFunc, celMethod, celType, isCelError, isCelList, isCelMap, listType, mapType, parse, plan } from '@bufbuild/cel';
import type { CelError, CelInput, CelList, CelValue } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { setFlagsFromString } from 'node:v8';
import { compiledRe2 } from './re2';

/**
 * The CEL dialect of `x-kubernetes-validations`, shared by definition-time validation
 * (apis/validation.ts: the CRD construct and the server refuse a rule that does not compile) and
 * the server's enforcement (server/registry/cel.ts).
 *
 * Why `@bufbuild/cel`: it is maintained (Buf ships it with protovalidate-es), implements the
 * cel-spec language from the spec's own protos (`@bufbuild/cel-spec`) with the cel-go `strings`
 * extension, and is plain JavaScript with CJS and ESM builds, so esbuild bundles it into the
 * server with no native code or WASM. Its regex engine is an RE2 port (linear time, like Go's
 * regexp behind kube-apiserver's `matches`), so an object cannot make a rule backtrack for ever.
 *
 * What it lacks, and how this module makes up for it:
 * - no cost tracking: rules are instrumented (every call and every comprehension step charges a
 *   `CelMeter`; string operands and results by length, the list of `in` by size) and evaluation
 *   stops at the meter's limit with kube-apiserver's error `operation cancelled: actual cost
 *   limit exceeded`;
 * - no public type checker: a rule is parsed and its identifiers and functions resolved at
 *   compile time (`undeclared reference to 'x'`), but type errors (`self.replicas > 'a'`) show at
 *   evaluation, as `no matching overload` errors, where kube-apiserver refuses them at CRD creation;
 * - no optional types (`.?x`, `optional.of`): `optionalOldSelf` rules get `oldSelf` with
 *   `hasValue()`, `value()` and `orValue(x)` only;
 * - Kubernetes' libraries are added here: lists (`isSorted`, `sum`, `min`, `max`, `indexOf`,
 *   `lastIndexOf`), regex (`find`, `findAll`) and quantity (`quantity`, `isQuantity`, and the
 *   methods; a quantity is a map holding its exact value, since the library has no custom
 *   types: `type(q)` is `map`); `url`, `ip`, `cidr`, `semver` and `format` are not implemented
 *   (a rule using them is refused at compile time).
 */

/** kube-apiserver's PerCallLimit (k8s.io/apiserver/pkg/apis/cel/config.go): ~0.1 s per rule. */
export const CEL_PER_CALL_COST_LIMIT = 1_000_000;
/** kube-apiserver's RuntimeCELCostBudget: all the rules of one object, ~1 s. */
export const CEL_RUNTIME_COST_BUDGET = 10_000_000;

/** A rule or messageExpression that does not compile; the message is kube-apiserver's (`compilation failed: ERROR: <input>:1:5: …`). */
export class CelCompileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CelCompileError';
  }
}

/** The error a cost-limited evaluation stops with, worded as cel-go's. */
export const COST_LIMIT_EXCEEDED = 'operation cancelled: actual cost limit exceeded';

/** Counts the cost of evaluations against a limit; shared by the rules of one object. */
export class CelMeter {
  used = 0;
  exceeded = false;
  constructor(public limit: number) {}

  charge(cost: number): void {
    this.used += cost;
    if (this.used > this.limit) {
      this.exceeded = true;
      throw new Error(COST_LIMIT_EXCEEDED);
    }
  }
}

/** The meter of the evaluation under way (evaluation is synchronous, so one at a time). */
let activeMeter: CelMeter | undefined;

function charge(cost: number): void {
  activeMeter?.charge(cost);
}

export interface CompiledCel {
  /** The source, as written. */
  readonly source: string;
  /** Whether it references `oldSelf` (a transition rule). */
  readonly usesOldSelf: boolean;
  /**
   * Evaluates against `bindings`, charging `meter`; a CEL error (not thrown) when evaluation
   * fails, `meter.exceeded` set when it stopped at the limit.
   */
  evaluate(bindings: Record<string, CelInput>, meter: CelMeter): CelValue | CelError;
}

// ---- Kubernetes' CEL libraries ----------------------------------------------------------------

const DYN = CelScalar.DYN;
const LIST = listType(DYN);

function listItems(list: CelList): CelValue[] {
  const items = [...list];
  charge(items.length);
  return items;
}

/** CEL's ordering of comparable scalars (int, uint, double, string, bool), as the lists library needs it. */
function compare(a: CelValue, b: CelValue): number {
  const comparable = (v: CelValue) => typeof v === 'bigint' || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean';
  if (!comparable(a) || !comparable(b)) throw new Error(`no such overload: ${typeof a} and ${typeof b} are not comparable`);
  const numeric = (v: CelValue) => typeof v === 'bigint' || typeof v === 'number';
  if (numeric(a) !== numeric(b) || (!numeric(a) && typeof a !== typeof b)) throw new Error('no such overload: list elements of different types');
  return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
}

function sameValue(a: CelValue, b: CelValue): boolean {
  if ((typeof a === 'bigint' || typeof a === 'number') && (typeof b === 'bigint' || typeof b === 'number')) return a == b; // eslint-disable-line eqeqeq
  return a === b;
}

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

const listsLibrary = [
  celMethod('isSorted', LIST, [], CelScalar.BOOL, function () {
    const items = listItems(this);
    return items.every((item, i) => i === 0 || compare(items[i - 1], item) <= 0);
  }),
  celMethod('sum', LIST, [], DYN, function () {
    const items = listItems(this);
    if (items.every((item) => typeof item === 'bigint')) {
      const total = (items as bigint[]).reduce((a, b) => a + b, 0n);
      if (total > INT64_MAX || total < INT64_MIN) throw new Error('integer overflow');
      return total;
    }
    if (items.every((item) => typeof item === 'number')) return (items as number[]).reduce((a, b) => a + b, 0);
    throw new Error('no such overload: sum() of a list that is not all int or all double');
  }),
  celMethod('min', LIST, [], DYN, function () {
    const items = listItems(this);
    if (items.length === 0) throw new Error('min called on empty list');
    return items.reduce((a, b) => (compare(b, a) < 0 ? b : a)) as CelInput;
  }),
  celMethod('max', LIST, [], DYN, function () {
    const items = listItems(this);
    if (items.length === 0) throw new Error('max called on empty list');
    return items.reduce((a, b) => (compare(b, a) > 0 ? b : a)) as CelInput;
  }),
  celMethod('indexOf', LIST, [DYN], CelScalar.INT, function (wanted) {
    return BigInt(listItems(this).findIndex((item) => sameValue(item, wanted)));
  }),
  celMethod('lastIndexOf', LIST, [DYN], CelScalar.INT, function (wanted) {
    const items = listItems(this);
    for (let i = items.length - 1; i >= 0; i--) if (sameValue(items[i], wanted)) return BigInt(i);
    return -1n;
  }),
];

let linearRegexpEnabled = false;

/**
 * A JavaScript RegExp for `find`/`findAll`, which need the matched text the RE2 port cannot give:
 * only V8's linear-time engine (the `l` flag) is used, never the backtracking one. Leftmost-first,
 * as Go's regexp. Patterns that engine cannot run (RE2-only syntax such as `(?i)`) are an error.
 */
function linearRegExp(pattern: string): RegExp {
  if (!linearRegexpEnabled) {
    setFlagsFromString('--enable-experimental-regexp-engine');
    linearRegexpEnabled = true;
  }
  try {
    // eslint-disable-next-line no-invalid-regexp -- `l` (linear) is V8's, enabled above
    return new RegExp(pattern, 'gl');
  } catch (error) {
    throw new Error(`regex ${JSON.stringify(pattern)} is not supported by find/findAll on this server: ${(error as Error).message}`);
  }
}

function findAll(text: string, pattern: string, limit: number): string[] {
  charge(Math.ceil(text.length / 10));
  if (limit === 0 || !compiledRe2(pattern).test(text)) return [];
  const found: string[] = [];
  for (const match of text.matchAll(linearRegExp(pattern))) {
    found.push(match[0]);
    if (found.length === limit) break;
  }
  return found;
}

const regexLibrary = [
  celMethod('find', CelScalar.STRING, [CelScalar.STRING], CelScalar.STRING, function (pattern) {
    return findAll(this, pattern, 1)[0] ?? '';
  }),
  celMethod('findAll', CelScalar.STRING, [CelScalar.STRING], LIST, function (pattern) {
    return findAll(this, pattern, -1);
  }),
  celMethod('findAll', CelScalar.STRING, [CelScalar.STRING, CelScalar.INT], LIST, function (pattern, limit) {
    return findAll(this, pattern, Number(limit));
  }),
];

/**
 * `optionalOldSelf`: `oldSelf` is an optional, given here as a list of no or one value (the
 * library has no optional type) with the optional methods rules use.
 */
const optionalLibrary = [
  celMethod('hasValue', LIST, [], CelScalar.BOOL, function () {
    return this.size > 0;
  }),
  celMethod('value', LIST, [], DYN, function () {
    if (this.size === 0) throw new Error('optional.none() dereference');
    return this.get(0) as CelInput;
  }),
  celMethod('orValue', LIST, [DYN], DYN, function (fallback) {
    return (this.size > 0 ? this.get(0) : fallback) as CelInput;
  }),
];

// ---- quantity (k8s.io/apiserver/pkg/cel/library/quantity.go) ---------------------------------

/** An exact resource.Quantity value: numerator / denominator, reduced, denominator > 0. */
interface Rational {
  readonly num: bigint;
  readonly den: bigint;
}

const QUANTITY_KEY = '@quantity';
const MAP = mapType(DYN, DYN);
const DECIMAL_SUFFIXES: Readonly<Record<string, number>> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const BINARY_SUFFIXES: Readonly<Record<string, number>> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const QUANTITY = /^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/;

function gcd(a: bigint, b: bigint): bigint {
  a = a < 0n ? -a : a;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

function rational(num: bigint, den: bigint): Rational {
  const divisor = gcd(num, den) || 1n;
  return { num: num / divisor, den: den / divisor };
}

/** Parses the canonical quantity grammar (resource.ParseQuantity), exactly; undefined when it is not one. */
export function parseQuantity(text: string): Rational | undefined {
  const match = QUANTITY.exec(text);
  if (!match) return undefined;
  const [, sign, number, suffix = ''] = match;
  const [whole, fraction = ''] = number.split('.');
  let num = BigInt(`${whole || '0'}${fraction}`) * (sign === '-' ? -1n : 1n);
  let den = 10n ** BigInt(fraction.length);
  const exponent = suffix in DECIMAL_SUFFIXES ? DECIMAL_SUFFIXES[suffix] : /^[eE]/.test(suffix) ? Number(suffix.slice(1)) : undefined;
  if (exponent !== undefined) {
    if (Math.abs(exponent) > 1000) return undefined;
    if (exponent >= 0) num *= 10n ** BigInt(exponent);
    else den *= 10n ** BigInt(-exponent);
  } else {
    num *= 2n ** BigInt(BINARY_SUFFIXES[suffix]);
  }
  return rational(num, den);
}

/** A quantity as a CEL value: a map holding its exact value (the library has no custom types), so equal quantities are equal. */
function quantityValue(value: Rational): CelInput {
  return new Map([[QUANTITY_KEY, `${value.num}/${value.den}`]]);
}

function quantityOf(value: CelValue): Rational {
  const text = isCelMap(value) ? value.get(QUANTITY_KEY) : undefined;
  if (typeof text !== 'string') throw new Error('no such overload: not a quantity');
  const [num, den] = text.split('/');
  return { num: BigInt(num), den: BigInt(den) };
}

function compareQuantities(a: Rational, b: Rational): bigint {
  const difference = a.num * b.den - b.num * a.den;
  return difference < 0n ? -1n : difference > 0n ? 1n : 0n;
}

function addQuantities(a: Rational, b: Rational, sign: bigint): CelInput {
  return quantityValue(rational(a.num * b.den + sign * b.num * a.den, a.den * b.den));
}

const quantityLibrary = [
  celFunc('quantity', [CelScalar.STRING], MAP, (text) => {
    const value = parseQuantity(text);
    // resource.ErrFormatWrong, as upstream's quantity() reports it
    if (value === undefined) throw new Error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
    return quantityValue(value) as never;
  }),
  celFunc('isQuantity', [CelScalar.STRING], CelScalar.BOOL, (text) => parseQuantity(text) !== undefined),
  celMethod('isInteger', MAP, [], CelScalar.BOOL, function () {
    return quantityOf(this).den === 1n;
  }),
  celMethod('asInteger', MAP, [], CelScalar.INT, function () {
    const value = quantityOf(this);
    if (value.den !== 1n || value.num > INT64_MAX || value.num < INT64_MIN) throw new Error('cannot convert value to integer');
    return value.num;
  }),
  celMethod('asApproximateFloat', MAP, [], CelScalar.DOUBLE, function () {
    const value = quantityOf(this);
    return Number(value.num) / Number(value.den);
  }),
  celMethod('sign', MAP, [], CelScalar.INT, function () {
    return compareQuantities(quantityOf(this), { num: 0n, den: 1n });
  }),
  celMethod('compareTo', MAP, [MAP], CelScalar.INT, function (other) {
    return compareQuantities(quantityOf(this), quantityOf(other));
  }),
  celMethod('isLessThan', MAP, [MAP], CelScalar.BOOL, function (other) {
    return compareQuantities(quantityOf(this), quantityOf(other)) < 0n;
  }),
  celMethod('isGreaterThan', MAP, [MAP], CelScalar.BOOL, function (other) {
    return compareQuantities(quantityOf(this), quantityOf(other)) > 0n;
  }),
  celMethod('add', MAP, [MAP], MAP, function (other) {
    return addQuantities(quantityOf(this), quantityOf(other), 1n) as never;
  }),
  celMethod('add', MAP, [CelScalar.INT], MAP, function (other) {
    return addQuantities(quantityOf(this), { num: other, den: 1n }, 1n) as never;
  }),
  celMethod('sub', MAP, [MAP], MAP, function (other) {
    return addQuantities(quantityOf(this), quantityOf(other), -1n) as never;
  }),
  celMethod('sub', MAP, [CelScalar.INT], MAP, function (other) {
    return addQuantities(quantityOf(this), { num: other, den: 1n }, -1n) as never;
  }),
];

const COST_FUNCTION = '@k8s_cost';
const STEP_FUNCTION = '@k8s_step';
const OPERAND_FUNCTION = '@k8s_operand';
const LIST_OPERAND_FUNCTION = '@k8s_list_operand';

const meteringLibrary = [
  // Every call: 1, and a string result by its length (kube-apiserver charges string work by size).
  celFunc(COST_FUNCTION, [DYN], DYN, (value) => {
    charge(typeof value === 'string' ? 1 + Math.floor(value.length / 10) : 1);
    return value as CelInput;
  }),
  // Every string operand of a function by its length (contains, ==, matches… scan it), as
  // cel-go's cost model does, so a cheap-looking call on a long string is not free.
  celFunc(OPERAND_FUNCTION, [DYN], DYN, (value) => {
    if (typeof value === 'string' || value instanceof Uint8Array) charge(Math.floor(value.length / 10));
    return value as CelInput;
  }),
  // The list searched by `in`, by its size.
  celFunc(LIST_OPERAND_FUNCTION, [DYN], DYN, (value) => {
    if (isCelList(value) || isCelMap(value)) charge(value.size);
    return value as CelInput;
  }),
  // Every comprehension step.
  celFunc(STEP_FUNCTION, [DYN], DYN, (value) => {
    charge(1);
    return value as CelInput;
  }),
];

const env = celEnv({
  funcs: [...strings, ...listsLibrary, ...regexLibrary, ...quantityLibrary, ...optionalLibrary, ...meteringLibrary],
  re2: {
    compile: (pattern: string) => {
      const compiled = compiledRe2(pattern);
      return {
        test: (text: string) => {
          charge(Math.ceil(text.length / 10));
          return compiled.test(text); // CEL's matches is a search, not a full match
        },
      };
    },
  },
});

// ---- compilation ------------------------------------------------------------------------------

/** Operators the planner implements itself rather than through functions. */
const BUILT_IN_OPERATORS = new Set(['_[_]', '_[?_]', '_?._', '_?_:_', '_&&_', '_||_', '@not_strictly_false', '__not_strictly_false__']);
/** Type names usable as values (`type(self) == map`). */
const TYPE_IDENTIFIERS = new Set(['int', 'uint', 'double', 'bool', 'string', 'bytes', 'list', 'map', 'null_type', 'type', 'dyn']);
const ROOT_VARIABLES = new Set(['self', 'oldSelf']);

type Parsed = ReturnType<typeof parse>;
type Expr = Parsed['expr'];

function location(parsed: Parsed, id: bigint, source: string): string {
  const info = parsed.sourceInfo;
  const offset = (info?.positions as Record<string, number> | undefined)?.[String(id)] ?? 0;
  const lineOffsets = info?.lineOffsets ?? [];
  let line = 1;
  let lineStart = 0;
  for (const lineOffset of lineOffsets) {
    if (lineOffset > offset) break;
    line++;
    lineStart = lineOffset;
  }
  const text = source.split('\n')[line - 1] ?? '';
  return `<input>:${line}:${offset - lineStart + 1}: %s\n | ${text}\n | ${' '.repeat(offset - lineStart)}^`;
}

/** Resolves every identifier and function as cel-go's checker would, and returns whether `oldSelf` is used. */
function resolveReferences(parsed: Parsed, source: string, rootVariables: ReadonlySet<string> = ROOT_VARIABLES): boolean {
  const problems: string[] = [];
  let usesOldSelf = false;
  const visit = (expr: Expr | undefined, scope: ReadonlySet<string>): void => {
    if (expr === undefined) return;
    const kind = expr.exprKind;
    switch (kind.case) {
      case 'identExpr': {
        const name = kind.value.name;
        if (name === 'oldSelf' && !scope.has(name)) usesOldSelf = true;
        if (!scope.has(name) && !rootVariables.has(name) && !TYPE_IDENTIFIERS.has(name)) {
          problems.push(location(parsed, expr.id, source).replace('%s', `undeclared reference to '${name}' (in container '')`));
        }
        return;
      }
      case 'selectExpr':
        return visit(kind.value.operand, scope);
      case 'callExpr': {
        const call = kind.value;
        if (!BUILT_IN_OPERATORS.has(call.function) && env.funcs.find(call.function) === undefined) {
          problems.push(location(parsed, expr.id, source).replace('%s', `undeclared reference to '${call.function}' (in container '')`));
        }
        visit(call.target, scope);
        for (const arg of call.args) visit(arg, scope);
        return;
      }
      case 'listExpr':
        for (const element of kind.value.elements) visit(element, scope);
        return;
      case 'structExpr':
        for (const entry of kind.value.entries) {
          if (entry.keyKind.case === 'mapKey') visit(entry.keyKind.value, scope);
          visit(entry.value, scope);
        }
        return;
      case 'comprehensionExpr': {
        const c = kind.value;
        visit(c.iterRange, scope);
        visit(c.accuInit, scope);
        const inner = new Set([...scope, c.iterVar, c.accuVar]);
        visit(c.loopCondition, inner);
        visit(c.loopStep, inner);
        visit(c.result, new Set([...scope, c.accuVar]));
        return;
      }
      default:
        return;
    }
  };
  visit(parsed.expr, new Set());
  if (problems.length > 0) throw new CelCompileError(`compilation failed: ${problems.map((p) => `ERROR: ${p}`).join('\n')}`);
  return usesOldSelf;
}

function call(id: bigint, fn: string, arg: Expr): Expr {
  return {
    $typeName: 'cel.expr.Expr',
    id,
    exprKind: { case: 'callExpr', value: { $typeName: 'cel.expr.Expr.Call', function: fn, args: [arg] } },
  } as Expr;
}

/** The expression with every call wrapped in a cost charge and every comprehension step in a step charge. */
function metered(expr: Expr | undefined): Expr | undefined {
  if (expr === undefined) return undefined;
  const kind = expr.exprKind;
  switch (kind.case) {
    case 'selectExpr':
      return { ...expr, exprKind: { case: 'selectExpr', value: { ...kind.value, operand: metered(kind.value.operand) } } };
    case 'callExpr': {
      const fn = kind.value.function;
      // The planner's own operators keep their operands as they are (it inspects them).
      const operand = (e: Expr | undefined, i: number): Expr | undefined =>
        e === undefined || BUILT_IN_OPERATORS.has(fn) ? metered(e) : call(e.id, fn === '@in' && i === 1 ? LIST_OPERAND_FUNCTION : OPERAND_FUNCTION, metered(e)!);
      const value = { ...kind.value, target: operand(kind.value.target, -1), args: kind.value.args.map((arg, i) => operand(arg, i)!) };
      return call(expr.id, COST_FUNCTION, { ...expr, exprKind: { case: 'callExpr', value } });
    }
    case 'listExpr':
      return { ...expr, exprKind: { case: 'listExpr', value: { ...kind.value, elements: kind.value.elements.map((e) => metered(e)!) } } };
    case 'structExpr': {
      const entries = kind.value.entries.map((entry) => ({
        ...entry,
        keyKind: entry.keyKind.case === 'mapKey' ? { case: 'mapKey' as const, value: metered(entry.keyKind.value)! } : entry.keyKind,
        value: metered(entry.value),
      }));
      return { ...expr, exprKind: { case: 'structExpr', value: { ...kind.value, entries } } };
    }
    case 'comprehensionExpr': {
      const c = kind.value;
      const loopCondition = call(expr.id, STEP_FUNCTION, metered(c.loopCondition)!);
      const value = { ...c, iterRange: metered(c.iterRange), accuInit: metered(c.accuInit), loopCondition, loopStep: metered(c.loopStep), result: metered(c.result) };
      return { ...expr, exprKind: { case: 'comprehensionExpr', value } };
    }
    default:
      return expr;
  }
}

/**
 * Compiles a rule or messageExpression once (parse, resolve references, instrument, plan); throws
 * `CelCompileError` worded as kube-apiserver words its compile errors. `rootVariables` are the
 * names an expression may reference (admission's matchConditions use `object`, `oldObject`, `request`).
 */
export function compileCel(source: string, rootVariables: ReadonlySet<string> = ROOT_VARIABLES): CompiledCel {
  let parsed: Parsed;
  try {
    parsed = parse(source);
  } catch (error) {
    throw new CelCompileError(`compilation failed: ERROR: ${(error as Error).message}`);
  }
  const usesOldSelf = resolveReferences(parsed, source, rootVariables);
  const program = plan(env, { ...parsed, expr: metered(parsed.expr) } as Parsed);
  return {
    source,
    usesOldSelf,
    evaluate(bindings, meter) {
      const previous = activeMeter;
      activeMeter = meter;
      try {
        return program(bindings);
      } finally {
        activeMeter = previous;
      }
    },
  };
}

export { isCelError, isCelList };

/** The CEL type name of a result, as cel-go's `Type()` prints it in errors (`int`, `map`, `google.protobuf.Duration`). */
export function celTypeName(value: unknown): string {
  return celType(value as CelValue).name;
}
