/**
 * fieldpath: path elements, sets and the FieldsV1 encoding, against structured-merge-diff's
 * fieldpath tests and the FieldsV1 that kube-apiserver writes.
 */
import fc from 'fast-check';
import { FieldSet, FieldsV1Error } from '../server/fieldmanager/field-set';
import {
  compareElements,
  fieldElement,
  indexElement,
  keyElement,
  parsePathElement,
  Path,
  pathToString,
  valueElement,
} from '../server/fieldmanager/path-element';

const f = fieldElement;
const k = (fields: Record<string, string | number | boolean>) => keyElement(Object.entries(fields));

describe('path elements', () => {
  test('serialize as Go writes them (serialize-pe_test.go TestPathElementRoundTrip)', () => {
    // GIVEN the element kinds of TestPathElementRoundTrip
    const cases = [
      'i:0',
      'i:1234',
      'f:',
      'f:spec',
      'f:more-complicated-string',
      'f: string-with-spaces ',
      'f:abc\u{1F47B}',
      'k:{"name":"my-container"}',
      'k:{"port":"8080","protocol":"TCP"}',
      'k:{"optionalField":null}',
      'k:{"jsonField":{"A":1,"B":null,"C":"D","E":{"F":"G"}}}',
      'k:{"listField":["1","2","3"]}',
      'v:null',
      'v:"some-string"',
      'v:1234',
      'v:{"some":"json"}',
    ];
    for (const text of cases) {
      // WHEN parsed and written again
      const pe = parsePathElement(text);
      // THEN the text is the same
      expect(pe?.id).toBe(text);
    }
  });

  test('key fields are sorted by name and strings escaped as encoding/json does', () => {
    // GIVEN key fields out of order, one value with characters Go escapes
    const pe = keyElement([
      ['protocol', 'TCP'],
      ['port', 443],
      ['name', '<a&b>'],
    ]);
    // THEN the element is written sorted, with <, > and & as \u escapes
    expect(pe.id).toBe('k:{"name":"\\u003ca\\u0026b\\u003e","port":443,"protocol":"TCP"}');
  });

  test('print as Go prints paths in conflicts (path_test.go)', () => {
    // GIVEN a path through a field, a map-list key, a set value and an index
    const path: Path = [f('spec'), f('containers'), k({ name: 'x' }), f('ports'), indexElement(0), f('args'), valueElement('a')];
    // THEN it reads as fieldpath.Path.String
    expect(pathToString(path)).toBe('.spec.containers[name="x"].ports[0].args[="a"]');
    expect(pathToString([f('spec'), k({ port: 443, protocol: 'TCP' })])).toBe('.spec[port=443,protocol="TCP"]');
  });

  test('order: fields, then keys, values, indexes; values numbers < strings < booleans (element_test.go)', () => {
    // GIVEN elements of each kind, shuffled
    const elements = [indexElement(1), valueElement(true), valueElement('a'), valueElement(2), k({ name: 'b' }), k({ name: 'a' }), f('b'), f('a')];
    // WHEN sorted
    const sorted = [...elements].sort(compareElements).map((pe) => pe.id);
    // THEN Go's PathElement.Compare order
    expect(sorted).toEqual(['f:a', 'f:b', 'k:{"name":"a"}', 'k:{"name":"b"}', 'v:2', 'v:"a"', 'v:true', 'i:1']);
  });

  test('fails on a key too short, without a colon, or with bad JSON', () => {
    expect(() => parsePathElement('f')).toThrow(/key must be 2 characters long/);
    expect(() => parsePathElement('fspec')).toThrow(/missing colon: fspec/);
    expect(() => parsePathElement('k:{"name":')).toThrow(/k:\{"name":/);
    expect(() => parsePathElement('i:x')).toThrow(/an index element must hold an integer/);
  });

  test('an unknown element type is dropped, not an error (a newer server may write one)', () => {
    expect(parsePathElement('z:anything')).toBeUndefined();
  });
});

describe('FieldsV1', () => {
  // serialize_test.go TestSerializeV1GoldenData: sets read and written back byte for byte.
  const golden = [
    `{"f:aaa":{},"f:aab":{},"f:aac":{},"f:aad":{},"f:aae":{},"f:aaf":{},"k:{\\"name\\":\\"first\\"}":{},"k:{\\"name\\":\\"second\\"}":{},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{},"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{},"v:1":{},"v:2":{},"v:3":{},"v:\\"aa\\"":{},"v:\\"ab\\"":{},"v:true":{},"i:1":{},"i:2":{},"i:3":{},"i:4":{}}`,
    `{"f:aaa":{"k:{\\"name\\":\\"second\\"}":{"v:3":{"f:aab":{}}},"v:3":{},"v:true":{}},"f:aab":{"f:aaa":{},"f:aaf":{"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{}}},"k:{\\"name\\":\\"first\\"}":{}},"f:aac":{"f:aaa":{"v:1":{}},"f:aac":{},"v:3":{"k:{\\"name\\":\\"second\\"}":{}}},"f:aad":{"f:aac":{"v:1":{}},"f:aaf":{"k:{\\"name\\":\\"first\\"}":{"k:{\\"name\\":\\"first\\"}":{}}},"i:1":{"i:1":{},"i:3":{"v:true":{}}}},"f:aae":{"f:aae":{},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{}},"i:4":{"f:aaf":{}}},"f:aaf":{"i:1":{"f:aac":{}},"i:2":{},"i:3":{}},"k:{\\"name\\":\\"first\\"}":{"f:aad":{"f:aaf":{}}},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{"f:aaa":{"f:aad":{}}},"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{"f:aac":{},"k:{\\"name\\":\\"first\\"}":{"i:3":{}},"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{"i:4":{}}},"v:1":{"f:aac":{"i:4":{}},"f:aaf":{},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{}},"v:2":{"f:aad":{"f:aaf":{}},"i:1":{}},"v:3":{"f:aaa":{},"k:{\\"name\\":\\"first\\"}":{},"i:2":{}},"v:\\"aa\\"":{"f:aab":{"f:aaf":{}},"f:aae":{},"k:{\\"name\\":\\"first\\"}":{"f:aad":{}},"i:2":{}},"v:\\"ab\\"":{"f:aaf":{"i:4":{}},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{},"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{},"v:1":{"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{}},"i:1":{"f:aae":{"i:4":{}}}},"v:true":{"k:{\\"name\\":\\"second\\"}":{"f:aaa":{}},"i:2":{"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{}}},"i:1":{"i:3":{"f:aaf":{}}},"i:2":{"f:aae":{},"k:{\\"port\\":443,\\"protocol\\":\\"tcp\\"}":{"v:1":{}}},"i:3":{"f:aab":{"v:true":{"v:\\"aa\\"":{}}},"f:aaf":{},"i:1":{}},"i:4":{"v:\\"aa\\"":{"f:aab":{"k:{\\"name\\":\\"second\\"}":{}}}}}`,
    `{"f:spec":{".":{},"f:apps":{".":{},"k:{\\"name\\":\\" app-💻\\"}":{".":{},"f:container":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\\"name\\":\\"port 🔑\\"}":{".":{},"f:containerPort":{},"f:name":{}}}},"f:name":{}},"k:{\\"name\\":\\" app-🚀\\"}":{".":{},"f:container":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\\"name\\":\\"port-✅ \\"}":{".":{},"f:containerPort":{},"f:name":{}}}},"f:name":{}}}}}`,
  ];

  test.each(golden.map((text, i) => [i, text]))('golden set %i reads and writes back byte for byte (TestSerializeV1GoldenData)', (_i, text) => {
    // WHEN the FieldsV1 is decoded and encoded again
    const set = FieldSet.fromFieldsV1(JSON.parse(text as string));
    // THEN the JSON is the same, byte for byte
    expect(JSON.stringify(set.toFieldsV1())).toBe(text);
  });

  test('a Deployment applied by kubectl, as kube-apiserver stores it', () => {
    // GIVEN the fieldsV1 of `kubectl apply --server-side` of the nginx Deployment (real kube-apiserver output)
    const real =
      '{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"nginx\\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\\"containerPort\\":80,\\"protocol\\":\\"TCP\\"}":{".":{},"f:containerPort":{}}}}}}}}}';
    // THEN it round-trips byte for byte, and the set holds what it says
    const set = FieldSet.fromFieldsV1(JSON.parse(real));
    expect(JSON.stringify(set.toFieldsV1())).toBe(real);
    expect(set.has([f('spec'), f('template'), f('spec'), f('containers'), k({ name: 'nginx' })])).toBe(true);
    expect(set.has([f('spec'), f('template'), f('spec'), f('containers'), k({ name: 'nginx' }), f('image')])).toBe(true);
    expect(set.has([f('spec'), f('template')])).toBe(false);
  });

  test('non-normalized input is normalized (TestDeserializeForValidNonNormalized)', () => {
    // GIVEN keys out of order, a key element with spaces and reordered fields, a value with a space
    const input = JSON.parse(`{
      "f:aad": {}, "f:aaa": {},
      "k:{ \\"protocol\\":\\"udp\\",\\"port\\":443}": {}, "k:{\\"name\\":\\"first\\"}": {},
      "v: 3": {}, "v:\\"aa\\"": {}, "i:4": {}, "i:1": {}
    }`);
    // THEN it is written in Go's order and form
    expect(JSON.stringify(FieldSet.fromFieldsV1(input).toFieldsV1())).toBe(
      '{"f:aaa":{},"f:aad":{},"k:{\\"name\\":\\"first\\"}":{},"k:{\\"port\\":443,\\"protocol\\":\\"udp\\"}":{},"v:3":{},"v:\\"aa\\"":{},"i:1":{},"i:4":{}}',
    );
  });

  test('fails on FieldsV1 that is not an object, or with a malformed key, naming where', () => {
    expect(() => FieldSet.fromFieldsV1([])).toThrow(FieldsV1Error);
    expect(() => FieldSet.fromFieldsV1({ 'f:spec': { 'f:x': 'no' } })).toThrow(/f:spec\/f:x: expected a JSON object, got string "no"/);
    expect(() => FieldSet.fromFieldsV1({ 'f:spec': { fx: {} } })).toThrow(/f:spec\/"fx": missing colon: fx/);
    expect(() => FieldSet.fromFieldsV1({ 'k:{': {} })).toThrow(/"k:\{":/);
  });
});

describe('set operations (set_test.go)', () => {
  const a = FieldSet.of([f('a')], [f('b'), f('c')], [f('b'), f('d')], [f('e'), k({ name: 'x' })]);
  const b = FieldSet.of([f('b'), f('c')], [f('e')], [f('z')]);

  test('union, intersection, difference', () => {
    expect(a.union(b).toString()).toBe('.a\n.e\n.z\n.b.c\n.b.d\n.e[name="x"]');
    expect(a.intersection(b).toString()).toBe('.b.c');
    expect(a.difference(b).toString()).toBe('.a\n.b.d\n.e[name="x"]');
  });

  test('recursive difference also removes what is below a member (TestSetRecursiveDifference)', () => {
    // GIVEN b has .e as a member; a has .e[name="x"] below it
    // THEN difference keeps it, recursive difference drops it
    expect(a.difference(b).has([f('e'), k({ name: 'x' })])).toBe(true);
    expect(a.recursiveDifference(b).has([f('e'), k({ name: 'x' })])).toBe(false);
  });

  test('leaves are members without children (TestSetLeaves)', () => {
    const s = FieldSet.of([f('a')], [f('a'), f('b')], [f('c')]);
    expect(s.leaves().toString()).toBe('.c\n.a.b');
  });

  test('operations leave their inputs alone', () => {
    const before = a.toString();
    a.union(b);
    a.difference(b);
    a.recursiveDifference(b);
    expect(a.toString()).toBe(before);
  });
});

describe('properties', () => {
  const elementArb = fc.oneof(
    fc.string({ maxLength: 6 }).map(fieldElement),
    fc.record({ name: fc.string({ maxLength: 4 }), port: fc.integer({ min: 0, max: 70000 }) }).map((r) => keyElement(Object.entries(r))),
    fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.boolean()).map(valueElement),
    fc.nat(20).map(indexElement),
  );
  const setArb = fc.array(fc.array(elementArb, { minLength: 1, maxLength: 4 }), { maxLength: 20 }).map((paths) => FieldSet.of(...paths));

  test('FieldsV1 encode then decode gives the same set, and the same bytes (TestSerializeV1)', () => {
    fc.assert(
      fc.property(setArb, (set) => {
        const text = JSON.stringify(set.toFieldsV1());
        const back = FieldSet.fromFieldsV1(JSON.parse(text));
        return back.equals(set) && JSON.stringify(back.toFieldsV1()) === text;
      }),
      { numRuns: 300 },
    );
  });

  test('set algebra: (a ∪ b) − b ⊆ a, a ∩ b ⊆ a, a − a is empty', () => {
    fc.assert(
      fc.property(setArb, setArb, (x, y) => {
        const sub = (p: FieldSet, q: FieldSet) => p.difference(q).empty();
        return sub(x.union(y).difference(y), x) && sub(x.intersection(y), x) && x.difference(x).empty() && x.union(y).equals(y.union(x));
      }),
      { numRuns: 300 },
    );
  });
});

describe('string order', () => {
  test('is Go\'s byte order: a character beyond U+FFFF sorts after U+FFFD, as in UTF-8', () => {
    // GIVEN field names with U+FFFD and an emoji (U+1F680, a surrogate pair in JavaScript)
    const set = FieldSet.of([f('\u{1F680}')], [f('\uFFFD')], [f('z')]);
    // THEN they are written in code point order, as Go sorts UTF-8 bytes
    expect(Object.keys(set.toFieldsV1())).toEqual(['f:z', 'f:\uFFFD', 'f:\u{1F680}']);
  });
});
