/**
 * Freezes a stored value and everything in it: values handed out by a store are shared (the
 * registry caches their serializations), so nobody may change one.
 */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    // Walked without Object.values' array per object (one per nested object of every write).
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) deepFreeze(value[i]);
    } else {
      const object = value as Record<string, unknown>;
      for (const key of Object.keys(object)) deepFreeze(object[key]);
    }
  }
  return value;
}

/** The byte length of each stored value's JSON, where the store that decoded it knew it. */
const encodedSizes = new WeakMap<object, number>();

/** Records the byte length of the JSON `value` was decoded from (a store knows it; the watch cache bounds its history by it). */
export function recordEncodedSize(value: object, bytes: number): void {
  encodedSizes.set(value, bytes);
}

/** The byte length of `value`'s JSON: as recorded by the store that decoded it, else by encoding it. */
export function encodedSize(value: object): number {
  return encodedSizes.get(value) ?? Buffer.byteLength(JSON.stringify(value));
}
