import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { App, Chart } from 'cdk8s';
import { CelCompileError, compileCel } from '../apis/cel';
import type { ApiGroupDefinition, JSONSchemaProps, ValidationRule } from '../apis/types';
import { ApiDefinitionError, validateApiGroupDefinition } from '../apis/validation';
import { WARDLE } from '../apis/wardle';
import { CustomResourceDefinitions } from '../lib/custom-resource-definitions';
import { compileCelValidator, validateCelRules } from '../server/registry/cel';
import { FLUNDERS, FLUNDERS_BETA, RegistryServer, flunder } from './support/registry-server';
import { ServerEnvironment, startServerEnvironment } from './support/server-process';

/**
 * x-kubernetes-validations (CEL) as the bundled server enforces them. The unit cases are the
 * examples of the Kubernetes docs ("Validation rules" in "Extend the Kubernetes API with
 * CustomResourceDefinitions"), each with the verdict the docs give; the end-to-end cases go
 * through the registry over HTTP.
 */

const int: JSONSchemaProps = { type: 'integer' };
const str: JSONSchemaProps = { type: 'string' };

/** The errors of `value` (and `old`, for an update) against a schema node carrying `rules`. */
function verdict(schema: JSONSchemaProps, rules: ValidationRule[], value: unknown, old?: unknown, limits?: { perCallLimit?: number; budget?: number }) {
  const validator = compileCelValidator({ ...schema, 'x-kubernetes-validations': rules }, false);
  return validateCelRules(validator, value, old, limits);
}

describe('the Kubernetes docs examples', () => {
  const replicas: JSONSchemaProps = { type: 'object', properties: { minReplicas: int, replicas: int, maxReplicas: int } };
  const docsRules = [
    { rule: 'self.minReplicas <= self.replicas', message: 'replicas should be greater than or equal to minReplicas.' },
    { rule: 'self.replicas <= self.maxReplicas', message: 'replicas should be smaller than or equal to maxReplicas.' },
  ];

  test('minReplicas <= replicas <= maxReplicas: the docs object (0, 20, 10) fails the second rule only', () => {
    // GIVEN the docs' two rules WHEN replicas exceeds maxReplicas
    const errors = verdict(replicas, docsRules, { minReplicas: 0, replicas: 20, maxReplicas: 10 });
    // THEN one Invalid cause, the value shown as the schema type, the rule's message
    expect(errors).toEqual([{ reason: 'FieldValueInvalid', field: '', message: 'Invalid value: "object": replicas should be smaller than or equal to maxReplicas.' }]);
    expect(verdict(replicas, docsRules, { minReplicas: 0, replicas: 5, maxReplicas: 10 })).toEqual([]);
  });

  test.each([
    // [rule, schema, passing value, failing value]
    ["'Available' in self.stateCounts", { type: 'object', properties: { stateCounts: { type: 'object', additionalProperties: int } } }, { stateCounts: { Available: 1 } }, { stateCounts: { Pending: 1 } }],
    [
      '(size(self.list1) == 0) != (size(self.list2) == 0)',
      { type: 'object', properties: { list1: { type: 'array', items: str }, list2: { type: 'array', items: str } } },
      { list1: ['a'], list2: [] },
      { list1: ['a'], list2: ['b'] },
    ],
    ["!('MY_KEY' in self.map1) || self.map1['MY_KEY'].matches('^[a-zA-Z]*$')", { type: 'object', properties: { map1: { type: 'object', additionalProperties: str } } }, { map1: { MY_KEY: 'abc' } }, { map1: { MY_KEY: 'a1' } }],
    [
      "self.envars.filter(e, e.name == 'MY_ENV').all(e, e.value.matches('^[a-zA-Z]*$'))",
      { type: 'object', properties: { envars: { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items: { type: 'object', properties: { name: str, value: str } } } } },
      { envars: [{ name: 'MY_ENV', value: 'abc' }, { name: 'OTHER', value: '1' }] },
      { envars: [{ name: 'MY_ENV', value: 'a-b' }] },
    ],
    ["self.health.startsWith('ok')", { type: 'object', properties: { health: str } }, { health: 'ok now' }, { health: 'degraded' }],
    [
      "self.widgets.exists(w, w.key == 'x' && w.foo < 10)",
      { type: 'object', properties: { widgets: { type: 'array', items: { type: 'object', properties: { key: str, foo: int } } } } },
      { widgets: [{ key: 'x', foo: 9 }] },
      { widgets: [{ key: 'x', foo: 10 }, { key: 'y', foo: 1 }] },
    ],
    ["type(self.v) == string ? self.v == '100%' : self.v == 1000", { type: 'object', properties: { v: { 'x-kubernetes-int-or-string': true } } }, { v: 1000 }, { v: '99%' }],
    ["type(self.v) == string ? self.v == '100%' : self.v == 1000", { type: 'object', properties: { v: { 'x-kubernetes-int-or-string': true } } }, { v: '100%' }, { v: 999 }],
    [
      'self.set1.all(e, !(e in self.set2))',
      { type: 'object', properties: { set1: { type: 'array', 'x-kubernetes-list-type': 'set', items: str }, set2: { type: 'array', 'x-kubernetes-list-type': 'set', items: str } } },
      { set1: ['a'], set2: ['b'] },
      { set1: ['a', 'b'], set2: ['b'] },
    ],
    [
      'size(self.names) == size(self.details) && self.names.all(n, n in self.details)',
      { type: 'object', properties: { names: { type: 'array', items: str }, details: { type: 'object', additionalProperties: str } } },
      { names: ['a'], details: { a: 'x' } },
      { names: ['a'], details: { b: 'x' } },
    ],
    [
      'size(self.clusters.filter(c, c.name == self.primary)) == 1',
      { type: 'object', properties: { primary: str, clusters: { type: 'array', items: { type: 'object', properties: { name: str } } } } },
      { primary: 'a', clusters: [{ name: 'a' }, { name: 'b' }] },
      { primary: 'a', clusters: [{ name: 'a' }, { name: 'a' }] },
    ],
    [
      'has(self.expired) && self.created + self.ttl < self.expired',
      { type: 'object', properties: { created: { type: 'string', format: 'date-time' }, ttl: { type: 'string', format: 'duration' }, expired: { type: 'string', format: 'date-time' } } },
      { created: '2024-01-01T00:00:00Z', ttl: '1h30m', expired: '2024-01-01T02:00:00Z' },
      { created: '2024-01-01T00:00:00Z', ttl: '1h30m', expired: '2024-01-01T01:00:00Z' },
    ],
    ['has(self.expired) || self.ttl > 0', { type: 'object', properties: { expired: str, ttl: int } }, { expired: 'x', ttl: 0 }, { ttl: 0 }],
  ] as [string, JSONSchemaProps, unknown, unknown][])('%s', (rule, schema, passing, failing) => {
    // GIVEN a docs rule WHEN an object the docs accept, then one they refuse, is validated THEN the verdicts match
    expect(verdict(schema, [{ rule }], passing)).toEqual([]);
    expect(verdict(schema, [{ rule }], failing)).toEqual([{ reason: 'FieldValueInvalid', field: '', message: `Invalid value: "object": failed rule: ${rule}` }]);
  });

  test("self.metadata.name.startsWith(self.prefix) sees the resource root's metadata.name", () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { metadata: { type: 'object' }, prefix: str }, 'x-kubernetes-validations': [{ rule: 'self.metadata.name.startsWith(self.prefix)' }] };
    const validator = compileCelValidator(schema, true);
    expect(validateCelRules(validator, { metadata: { name: 'web-1', labels: { a: 'b' } }, prefix: 'web' }, undefined)).toEqual([]);
    expect(validateCelRules(validator, { metadata: { name: 'db-1' }, prefix: 'web' }, undefined)).toHaveLength(1);
  });

  test('integer fields are CEL ints and number fields doubles, as the schema types them', () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { count: int, ratio: { type: 'number' } } };
    expect(verdict(schema, [{ rule: 'type(self.count) == int && type(self.ratio) == double' }], { count: 3, ratio: 2 })).toEqual([]);
    expect(verdict(schema, [{ rule: 'self.count / 2 == 1' }], { count: 3 })).toEqual([]);
    expect(verdict(schema, [{ rule: 'self.ratio / 2.0 == 1.5' }], { ratio: 3 })).toEqual([]);
  });

  test('messageExpression: "x exceeded max limit of " + string(self.maxLimit)', () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { x: int, maxLimit: int } };
    const rules = [{ rule: 'self.x <= self.maxLimit', messageExpression: '"x exceeded max limit of " + string(self.maxLimit)' }];
    expect(verdict(schema, rules, { x: 11, maxLimit: 10 })).toEqual([{ reason: 'FieldValueInvalid', field: '', message: 'Invalid value: "object": x exceeded max limit of 10' }]);
  });

  test('a messageExpression that fails falls back to message, then to the default', () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { x: int } };
    expect(verdict(schema, [{ rule: 'self.x < 1', messageExpression: 'self.missing', message: 'too big' }], { x: 2 })[0].message).toBe('Invalid value: "object": too big');
    expect(verdict(schema, [{ rule: 'self.x < 1', messageExpression: "'two\\nlines'" }], { x: 2 })[0].message).toBe('Invalid value: "object": failed rule: self.x < 1');
  });

  test('fieldPath and reason place and type the error: .foo.test.x, FieldValueForbidden', () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { maxLimit: int, foo: { type: 'object', properties: { test: { type: 'object', properties: { x: int } } } } } };
    const validator = compileCelValidator({ type: 'object', properties: { spec: { ...schema, 'x-kubernetes-validations': [{ rule: 'self.foo.test.x <= self.maxLimit', fieldPath: '.foo.test.x', reason: 'FieldValueForbidden' }] } } }, false);
    expect(validateCelRules(validator, { spec: { maxLimit: 1, foo: { test: { x: 2 } } } }, undefined)).toEqual([
      { reason: 'FieldValueForbidden', field: 'spec.foo.test.x', message: 'Forbidden: failed rule: self.foo.test.x <= self.maxLimit' },
    ]);
    expect(verdict(schema, [{ rule: 'false', reason: 'FieldValueRequired', message: 'needed' }], {})).toEqual([{ reason: 'FieldValueRequired', field: '', message: 'Required value: needed' }]);
    expect(verdict(schema, [{ rule: 'false', reason: 'FieldValueDuplicate' }], {})).toEqual([{ reason: 'FieldValueDuplicate', field: '', message: 'Duplicate value: "object"' }]);
  });

  test('rules on nested nodes: fields, list items and map values report their own path', () => {
    const schema: JSONSchemaProps = {
      type: 'object',
      properties: {
        spec: {
          type: 'object',
          properties: {
            replicas: { type: 'integer', 'x-kubernetes-validations': [{ rule: 'self >= 0', message: 'must not be negative' }] },
            hosts: { type: 'array', items: { type: 'string', 'x-kubernetes-validations': [{ rule: 'self.lowerAscii() == self' }] } },
            labels: { type: 'object', additionalProperties: { type: 'string', 'x-kubernetes-validations': [{ rule: 'size(self) <= 3' }] } },
          },
        },
      },
    };
    const validator = compileCelValidator(schema, false);
    expect(validateCelRules(validator, { spec: { replicas: -1, hosts: ['ok', 'NotOk'], labels: { a: 'toolong' } } }, undefined)).toEqual([
      { reason: 'FieldValueInvalid', field: 'spec.replicas', message: 'Invalid value: "integer": must not be negative' },
      { reason: 'FieldValueInvalid', field: 'spec.hosts[1]', message: 'Invalid value: "string": failed rule: self.lowerAscii() == self' },
      { reason: 'FieldValueInvalid', field: 'spec.labels[a]', message: 'Invalid value: "string": failed rule: size(self) <= 3' },
    ]);
  });

  test("Kubernetes' string, list and regex libraries", () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { s: str, l: { type: 'array', items: int }, d: { type: 'array', items: { type: 'number' } } } };
    const value = { s: ' Hello, World ', l: [1, 2, 3], d: [1.5, 0.5] };
    for (const rule of [
      "self.s.trim().upperAscii() == 'HELLO, WORLD'",
      "self.s.trim().split(', ').join('+') == 'Hello+World'",
      "self.s.replace('World', 'CEL').contains('CEL') && self.s.indexOf('o') == 5",
      'self.l.isSorted() && self.l.sum() == 6 && self.l.min() == 1 && self.l.max() == 3 && self.l.indexOf(2) == 1',
      'self.d.sum() == 2.0 && !self.d.isSorted()',
      "self.s.find('[A-Z][a-z]+') == 'Hello' && self.s.findAll('[A-Z]') == ['H', 'W'] && self.s.matches('^ H')",
    ]) {
      expect({ rule, errors: verdict(schema, [{ rule }], value) }).toEqual({ rule, errors: [] });
    }
  });

  test("Kubernetes' quantity library", () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { memory: { 'x-kubernetes-int-or-string': true }, cpu: str } };
    const value = { memory: '1536Mi', cpu: '500m' };
    for (const rule of [
      "quantity(self.memory).isLessThan(quantity('2Gi')) && quantity(self.memory).isGreaterThan(quantity('1G'))",
      "quantity('1.5Gi') == quantity(self.memory) && quantity(self.memory).asInteger() == 1610612736",
      "!quantity(self.cpu).isInteger() && quantity(self.cpu).asApproximateFloat() == 0.5 && quantity(self.cpu).sign() == 1",
      "quantity(self.cpu).add(quantity('1500m')) == quantity('2') && quantity('3').sub(1).compareTo(quantity('2000m')) == 0",
      "isQuantity(self.cpu) && !isQuantity('five') && quantity('1e3') == quantity('1k')",
    ]) {
      expect({ rule, errors: verdict(schema, [{ rule }], value) }).toEqual({ rule, errors: [] });
    }
    expect(verdict(schema, [{ rule: "quantity(self.cpu).asInteger() > 0" }], value)[0].message).toContain('cannot convert value to integer evaluating rule');
  });

  test('regexes run in linear time: a pattern that backtracks for ever elsewhere answers at once', () => {
    // GIVEN (a+)+b, exponential for a backtracking engine, and 30,000 a's with no b
    const schema: JSONSchemaProps = { type: 'object', properties: { s: str } };
    const value = { s: `${'a'.repeat(30_000)}c` };
    const started = Date.now();
    // WHEN matches and find run THEN both answer (no match) quickly
    expect(verdict(schema, [{ rule: "!self.s.matches('(a+)+b') && self.s.find('(a+)+b') == ''" }], value)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5_000);
    // a pattern V8's linear engine cannot run is an error, never a backtracking match
    expect(verdict(schema, [{ rule: "self.s.find('(?i)A') == 'a'" }], value)[0].message).toMatch(/not supported by find\/findAll on this server/);
  });

  test('property names CEL cannot spell are escaped as upstream: foo-bar is self.foo__dash__bar', () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { 'foo-bar': int, 'a.b': int, namespace: int } };
    expect(verdict(schema, [{ rule: 'self.foo__dash__bar == 1 && self.a__dot__b == 2 && self.__namespace__ == 3' }], { 'foo-bar': 1, 'a.b': 2, namespace: 3 })).toEqual([]);
  });

  test('a runtime error is reported with the rule, as upstream', () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { a: int, b: int } };
    expect(verdict(schema, [{ rule: 'self.a / self.b > 0' }], { a: 1, b: 0 })).toEqual([{ reason: 'FieldValueInvalid', field: '', message: 'Invalid value: "object": int divide by zero evaluating rule: self.a / self.b > 0' }]);
    expect(verdict(schema, [{ rule: 'self.b > 0' }], { a: 1 })).toEqual([{ reason: 'FieldValueInvalid', field: '', message: 'Invalid value: "object": no such key: b evaluating rule: self.b > 0' }]);
    expect(verdict(schema, [{ rule: "self.a > 'x'" }], { a: 1 })[0].message).toMatch(/^Invalid value: "object": '.*no matching overload.*': call arguments did not match a supported operator, function or macro signature for rule: self.a > 'x'$/);
  });
});

describe('transition rules (oldSelf)', () => {
  const immutable: ValidationRule = { rule: 'self == oldSelf', message: 'Value is immutable' };

  test('self == oldSelf: skipped on create, enforced on update', () => {
    // GIVEN the docs' immutability rule on a string
    // WHEN created THEN it does not run; WHEN updated THEN a change fails and no change passes
    expect(verdict(str, [immutable], 'a')).toEqual([]);
    expect(verdict(str, [immutable], 'b', 'a')).toEqual([{ reason: 'FieldValueInvalid', field: '', message: 'Invalid value: "string": Value is immutable' }]);
    expect(verdict(str, [immutable], 'a', 'a')).toEqual([]);
  });

  test('self >= oldSelf (a value that may only grow), on a nested field', () => {
    const validator = compileCelValidator({ type: 'object', properties: { spec: { type: 'object', properties: { size: { ...int, 'x-kubernetes-validations': [{ rule: 'self >= oldSelf' }] } } } } }, false);
    expect(validateCelRules(validator, { spec: { size: 1 } }, { spec: { size: 2 } })).toEqual([{ reason: 'FieldValueInvalid', field: 'spec.size', message: 'Invalid value: "integer": failed rule: self >= oldSelf' }]);
    expect(validateCelRules(validator, { spec: { size: 3 } }, { spec: { size: 2 } })).toEqual([]);
    // an old object without the field: the rule does not run
    expect(validateCelRules(validator, { spec: { size: 1 } }, { spec: {} })).toEqual([]);
  });

  test('optionalOldSelf runs on create too, with oldSelf.hasValue() / value() / orValue()', () => {
    const rule: ValidationRule = { rule: '!oldSelf.hasValue() || self >= oldSelf.value()', optionalOldSelf: true };
    expect(verdict(int, [rule], 1)).toEqual([]);
    expect(verdict(int, [rule], 1, 2)).toHaveLength(1);
    expect(verdict(int, [{ rule: 'self <= oldSelf.orValue(5)', optionalOldSelf: true }], 6)).toHaveLength(1);
  });

  test('list items see their old value only in list-type map lists, by key', () => {
    const items: JSONSchemaProps = { type: 'object', properties: { name: str, port: { ...int, 'x-kubernetes-validations': [immutable] } } };
    const mapList = compileCelValidator({ type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items }, false);
    expect(validateCelRules(mapList, [{ name: 'b', port: 2 }, { name: 'a', port: 9 }], [{ name: 'a', port: 1 }, { name: 'b', port: 2 }])).toEqual([
      { reason: 'FieldValueInvalid', field: '[1].port', message: 'Invalid value: "integer": Value is immutable' },
    ]);
    const atomicList = compileCelValidator({ type: 'array', items }, false);
    expect(validateCelRules(atomicList, [{ name: 'a', port: 9 }], [{ name: 'a', port: 1 }])).toEqual([]);
  });

  test('ratcheting: on update, an unchanged value is not refused by a rule without oldSelf', () => {
    expect(verdict(int, [{ rule: 'self > 10' }], 5, 5)).toEqual([]);
    expect(verdict(int, [{ rule: 'self > 10' }], 6, 5)).toHaveLength(1);
  });
});

describe('cost limits', () => {
  const items: JSONSchemaProps = { type: 'object', properties: { l: { type: 'array', items: str } } };
  const cubic = 'self.l.all(a, self.l.all(b, self.l.all(c, a + b + c != "")))';
  const many = { l: Array.from({ length: 400 }, (_, i) => `item-${i}`) };

  test('fails a rule past the per-call limit with the budget error, in bounded time', () => {
    // GIVEN a rule cubic in a 400-item list (64 million steps)
    const started = Date.now();
    // WHEN it is evaluated THEN it stops at the per-call limit with kube-apiserver's error, well before finishing
    expect(verdict(items, [{ rule: cubic }], many)).toEqual([
      {
        reason: 'FieldValueInvalid',
        field: '',
        message: `Invalid value: "object": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: ${cubic}`,
      },
    ]);
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  test('fails the rules of an object past the per-object budget, and runs no further rule', () => {
    const quadratic = 'self.l.all(a, self.l.all(b, a != "x"))'; // 160,000 steps
    const errors = verdict(items, [{ rule: quadratic }, { rule: quadratic }, { rule: 'false' }], many, undefined, { perCallLimit: 1_000_000, budget: 300_000 });
    expect(errors).toEqual([{ reason: 'FieldValueInvalid', field: '', message: 'Invalid value: "object": validation failed due to running out of cost budget, no further validation rules will be run' }]);
  });

  test('fails a cheap-looking call repeated over a long string: string operands cost their length', () => {
    // GIVEN 1,000 items each looked up in a 3 MB string (3 billion characters scanned)
    const schema: JSONSchemaProps = { type: 'object', properties: { big: str, l: { type: 'array', items: str } } };
    const value = { big: 'x'.repeat(3_000_000), l: Array.from({ length: 1_000 }, (_, i) => `needle-${i}`) };
    const started = Date.now();
    // WHEN the rule runs THEN it stops at the per-call limit after a few lookups
    const errors = verdict(schema, [{ rule: 'self.l.all(n, !self.big.contains(n))' }], value);
    expect(errors[0].message).toContain("'operation cancelled: actual cost limit exceeded'");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test('a cheap rule costs little', () => {
    expect(verdict(items, [{ rule: 'size(self.l) > 0' }], many, undefined, { perCallLimit: 10, budget: 10 })).toEqual([]);
  });
});

describe('definition-time validation (the CRD construct and the server)', () => {
  const api = (rules: ValidationRule[]): ApiGroupDefinition => ({
    group: 'cel.example.com',
    kinds: [
      {
        kind: 'Widget',
        plural: 'widgets',
        singular: 'widget',
        scope: 'Cluster',
        versions: [{ name: 'v1', served: true, storage: true, schema: { type: 'object', properties: { spec: { type: 'object', properties: { x: int }, 'x-kubernetes-validations': rules } } } }],
      },
    ],
  });

  test('fails a rule that does not compile, naming the rule and the compiler message', () => {
    expect(() => compileCel('self.x +')).toThrow(CelCompileError);
    expect(() => validateApiGroupDefinition(api([{ rule: 'self.x > 0 &&' }]))).toThrow(/spec: x-kubernetes-validations\[0\]: rule "self.x > 0 &&": compilation failed: ERROR: <input>:1:/);
    expect(() => validateApiGroupDefinition(api([{ rule: 'selff.x > 0' }]))).toThrow(/undeclared reference to 'selff'/);
    expect(() => validateApiGroupDefinition(api([{ rule: "url('https://x').getHost() == ''" }]))).toThrow(/undeclared reference to 'url'/);
    expect(() => validateApiGroupDefinition(api([{ rule: 'true', messageExpression: "'a' +" }]))).toThrow(/messageExpression "'a' \+": compilation failed/);
  });

  test('fails a bad reason, fieldPath, message, or oldSelf where it cannot be used', () => {
    expect(() => validateApiGroupDefinition(api([{ rule: 'true', reason: 'Nope' as never }]))).toThrow(/reason "Nope" is not one of FieldValueInvalid/);
    expect(() => validateApiGroupDefinition(api([{ rule: 'true', fieldPath: '.y' }]))).toThrow(/fieldPath ".y": does not refer to a valid field/);
    expect(() => validateApiGroupDefinition(api([{ rule: 'true', message: 'two\nlines' }]))).toThrow(/must be non-empty and on one line/);
    expect(() => validateApiGroupDefinition(api([{ rule: 'true', optionalOldSelf: true }]))).toThrow(/optionalOldSelf may only be set on a rule that uses oldSelf/);
    const inList: ApiGroupDefinition = {
      ...api([]),
      kinds: [{ ...api([]).kinds[0], versions: [{ name: 'v1', served: true, storage: true, schema: { type: 'object', properties: { l: { type: 'array', items: { ...str, 'x-kubernetes-validations': [{ rule: 'self == oldSelf' }] } } } } }] }],
    };
    expect(() => validateApiGroupDefinition(inList)).toThrow(/oldSelf cannot be used on the uncorrelatable portion of the schema within l\[\*\]/);
  });

  test('the CRD construct refuses such a definition', () => {
    expect(() => new CustomResourceDefinitions(new Chart(new App(), 'crds'), 'x', { api: api([{ rule: 'self.x >' }]) })).toThrow(ApiDefinitionError);
  });

  test('the server refuses it at start', async () => {
    await expect(RegistryServer.start({ api: api([{ rule: 'self.x >' }]) })).rejects.toThrow(/compilation failed/);
  });

  test('the bundled definition is valid', () => {
    expect(() => validateApiGroupDefinition(WARDLE)).not.toThrow();
  });
});

describe('through the server', () => {
  let server: RegistryServer;

  afterEach(async () => {
    await server?.close();
  });

  test('fails a Flunder that references itself (the bundled rule) with 422 and the upstream cause, in both versions', async () => {
    server = await RegistryServer.start();
    // GIVEN the bundled server WHEN a Flunder referencing itself is created
    const alpha = await server.post(FLUNDERS, flunder('loop', { reference: 'loop' }));
    // THEN 422 Invalid, the cause at the fieldPath, the messageExpression's message
    expect(alpha.status).toBe(422);
    expect(alpha.body).toMatchObject({ kind: 'Status', reason: 'Invalid', message: expect.stringContaining('Flunder.wardle.example.com "loop" is invalid') });
    expect(alpha.body.details.causes).toEqual([{ reason: 'FieldValueInvalid', field: 'spec.reference', message: 'Invalid value: "object": Flunder loop cannot reference itself' }]);
    const beta = await server.post(FLUNDERS_BETA, { ...flunder('loop', { flunderReference: 'loop', referenceType: 'Flunder' }), apiVersion: 'wardle.example.com/v1beta1' });
    expect(beta.status).toBe(422);
    expect(beta.body.details.causes).toEqual([{ reason: 'FieldValueInvalid', field: 'spec.flunderReference', message: 'Invalid value: "object": Flunder loop cannot reference itself' }]);
    // a Fischer of the same name is not the Flunder itself
    expect((await server.post(FLUNDERS, flunder('loop', { reference: 'loop', referenceType: 'Fischer' }))).status).toBe(201);
  });

  test('a valid Flunder passes; an update to a self-reference fails', async () => {
    server = await RegistryServer.start();
    expect((await server.post(FLUNDERS, flunder('a', { reference: 'b' }))).status).toBe(201);
    const patched = await server.patch(`${FLUNDERS}/a`, { spec: { reference: 'a' } });
    expect(patched.status).toBe(422);
    expect(patched.body.details.causes).toEqual([{ reason: 'FieldValueInvalid', field: 'spec.reference', message: 'Invalid value: "object": Flunder a cannot reference itself' }]);
    expect((await server.patch(`${FLUNDERS}/a`, { spec: { reference: 'c' } })).status).toBe(200);
  });

  const widgets = '/apis/cel.example.com/v1/widgets';
  const widgetApi: ApiGroupDefinition = {
    group: 'cel.example.com',
    kinds: [
      {
        kind: 'Widget',
        plural: 'widgets',
        singular: 'widget',
        scope: 'Cluster',
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: {
              type: 'object',
              properties: {
                apiVersion: str,
                kind: str,
                metadata: { type: 'object' },
                spec: {
                  type: 'object',
                  'x-kubernetes-validations': [{ rule: 'self.minReplicas <= self.replicas', message: 'replicas should be greater than or equal to minReplicas.' }],
                  properties: {
                    minReplicas: int,
                    replicas: int,
                    class: { ...str, 'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'Value is immutable' }] },
                    tags: { type: 'array', items: str, 'x-kubernetes-validations': [{ rule: 'self.all(a, self.all(b, self.all(c, a + b + c != "")))' }] },
                  },
                },
              },
            },
          },
        ],
      },
    ],
  };
  const widget = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'cel.example.com/v1', kind: 'Widget', metadata: { name }, spec });

  test('fails an update that breaks a transition rule (immutable field), passes one that keeps it', async () => {
    server = await RegistryServer.start({ api: widgetApi });
    expect((await server.post(widgets, widget('w', { minReplicas: 1, replicas: 2, class: 'gold' }))).status).toBe(201);
    const changed = await server.put(`${widgets}/w`, widget('w', { minReplicas: 1, replicas: 2, class: 'silver' }));
    expect(changed.status).toBe(422);
    expect(changed.body.details.causes).toEqual([{ reason: 'FieldValueInvalid', field: 'spec.class', message: 'Invalid value: "string": Value is immutable' }]);
    expect((await server.put(`${widgets}/w`, widget('w', { minReplicas: 1, replicas: 3, class: 'gold' }))).status).toBe(200);
    const tooFew = await server.post(widgets, widget('v', { minReplicas: 3, replicas: 2 }));
    expect(tooFew.status).toBe(422);
    expect(tooFew.body.details.causes).toEqual([{ reason: 'FieldValueInvalid', field: 'spec', message: 'Invalid value: "object": replicas should be greater than or equal to minReplicas.' }]);
  });

  test('fails a rule that would run too long with the budget error, and keeps answering', async () => {
    server = await RegistryServer.start({ api: widgetApi });
    // GIVEN a cubic rule over 400 tags WHEN created THEN 422 with the cost error, not a hung request
    const reply = await server.post(widgets, widget('slow', { minReplicas: 0, replicas: 0, tags: Array.from({ length: 400 }, (_, i) => `t${i}`) }));
    expect(reply.status).toBe(422);
    expect(reply.body.details.causes).toEqual([
      expect.objectContaining({ reason: 'FieldValueInvalid', field: 'spec.tags', message: expect.stringContaining("Invalid value: \"array\": 'operation cancelled: actual cost limit exceeded'") }),
    ]);
    expect((await server.get(widgets)).status).toBe(200);
  });
});

describe('the bundled server process, with kubectl', () => {
  let env: ServerEnvironment;
  let kubeconfig: string;

  beforeAll(async () => {
    env = await startServerEnvironment();
    kubeconfig = env.kubeconfigFor({ cn: 'admin', organizations: ['system:masters'] });
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
  });

  function kubectl(version: string, args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = execFile(
        `/usr/lib/google-cloud-sdk/bin/kubectl.${version}`,
        [`--kubeconfig=${kubeconfig}`, `--cache-dir=${join(env.dir, `cache-${version}`)}`, ...args],
        { timeout: 60_000 },
        (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      child.stdin!.end(input);
    });
  }

  const manifest = (name: string, reference: string) =>
    JSON.stringify({ apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name, namespace: 'default' }, spec: { reference } });

  test.each(['1.28', '1.33'])('kubectl %s: a self-referencing Flunder is refused with the rule\'s message, a valid one created', async (version) => {
    // GIVEN the bundle as it ships WHEN kubectl creates a Flunder that references itself
    const refused = await kubectl(version, ['create', '-f', '-'], manifest(`loop-${version}`, `loop-${version}`));
    // THEN kubectl prints the cause as it prints kube-apiserver's
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(`The Flunder "loop-${version}" is invalid: spec.reference: Invalid value: "object": Flunder loop-${version} cannot reference itself`);
    const created = await kubectl(version, ['create', '-f', '-'], manifest(`ok-${version}`, 'other'));
    expect(created).toMatchObject({ code: 0, stdout: expect.stringContaining(`flunder.wardle.example.com/ok-${version} created`) });
  });
});
