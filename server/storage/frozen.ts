/**
 * Freezes a stored value and everything in it: values handed out by a store are shared (the
 * registry caches their serializations), so nobody may change one.
 */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as object)) deepFreeze(child);
  }
  return value;
}
