import { now } from '../server/registry/metadata';
import { flunderRules } from '../server/registry/wardle/flunder';
import { deepFreeze } from '../server/storage/frozen';

/** Helpers every create runs, rewritten for speed: they must answer as the plain versions did. */

describe('now', () => {
  afterEach(() => jest.useRealTimers());

  test('is the current second in RFC 3339, and moves on with the clock', () => {
    // GIVEN a clock just before a second ends
    jest.useFakeTimers({ now: Date.parse('2026-12-03T11:59:59.998Z') });
    // WHEN it is read, the clock moves within the second, then past it
    const first = now();
    jest.setSystemTime(Date.parse('2026-12-03T11:59:59.999Z'));
    const sameSecond = now();
    jest.setSystemTime(Date.parse('2026-12-03T12:00:00.000Z'));
    const nextSecond = now();
    jest.setSystemTime(Date.parse('2025-01-01T00:00:00.500Z'));
    const clockWentBack = now();
    // THEN each answer is its own second, without milliseconds
    expect([first, sameSecond, nextSecond, clockWentBack]).toEqual(['2026-12-03T11:59:59Z', '2026-12-03T11:59:59Z', '2026-12-03T12:00:00Z', '2025-01-01T00:00:00Z']);
  });
});

describe('Flunder conversion copies', () => {
  test('keep the key order of the object, drop empty spec fields and leave the source alone', () => {
    // GIVEN a v1alpha1 Flunder whose spec is not its last key
    const source = { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', spec: { reference: 'x', referenceType: 'Flunder' }, metadata: { name: 'a' } };
    // WHEN converted to the internal form
    const internal = flunderRules.toInternal!(source, 'v1alpha1');
    // THEN it is a new object in the same key order, its spec converted; the source is unchanged
    expect(Object.keys(internal)).toEqual(['apiVersion', 'kind', 'spec', 'metadata']);
    expect(internal.spec).toEqual({ flunderReference: 'x', referenceType: 'Flunder' });
    expect(internal).not.toBe(source);
    expect(source.spec).toEqual({ reference: 'x', referenceType: 'Flunder' });
    // AND an unknown referenceType converts to an empty spec; no spec stays no spec
    expect(flunderRules.toInternal!({ ...source, spec: { reference: 'x', referenceType: 'Other' } }, 'v1alpha1').spec).toEqual({});
    expect('spec' in flunderRules.toInternal!({ kind: 'Flunder', metadata: {} }, 'v1alpha1')).toBe(false);
  });

  test('keep an own "__proto__" key (as JSON.parse makes it) a key, as an object spread does', () => {
    // GIVEN a decoded body with a "__proto__" key
    const source = JSON.parse('{"kind":"Flunder","__proto__":{"polluted":true},"spec":{"reference":"x","referenceType":"Fischer"}}') as Record<string, unknown>;
    // WHEN converted
    const internal = flunderRules.toInternal!(source, 'v1alpha1');
    // THEN the copy has it as an own key and an ordinary prototype, as { ...source } would
    expect(Object.getPrototypeOf(internal)).toBe(Object.prototype);
    expect(JSON.stringify(internal)).toBe(JSON.stringify({ ...source, spec: { fischerReference: 'x', referenceType: 'Fischer' } }));
  });
});

describe('deepFreeze', () => {
  test('freezes objects and arrays at every depth', () => {
    // GIVEN a value with objects in arrays in objects
    const value = { a: [{ b: { c: [1, { d: 2 }] } }], e: { f: null } };
    // WHEN frozen
    deepFreeze(value);
    // THEN nothing in it can change
    const nested = [value, value.a, value.a[0], value.a[0].b, value.a[0].b.c, value.a[0].b.c[1], value.e];
    expect(nested.every((o) => Object.isFrozen(o))).toBe(true);
  });
});
