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

/** How many distinct managedFields lists `shareManagedFields` remembers (the oldest forgotten first). */
const SHARED_MANAGED_FIELDS = 1024;
const sharedManagedFields = new Map<string, unknown>();

/**
 * Replaces `metadata.managedFields` of a freshly decoded value with an equal, frozen list decoded
 * before, when there is one: objects written by the same manager in the same second, with the same
 * fields (a controller's or a bulk load's), then hold one list between them instead of ~0.5 KiB of
 * their own each. Safe because stored values are frozen. Costs one JSON.stringify of the list.
 */
export function shareManagedFields(metadata: Record<string, unknown>): void {
  const managedFields = metadata.managedFields;
  if (!Array.isArray(managedFields) || managedFields.length === 0) return;
  const key = JSON.stringify(managedFields);
  const shared = sharedManagedFields.get(key);
  if (shared !== undefined) {
    metadata.managedFields = shared;
    return;
  }
  if (sharedManagedFields.size >= SHARED_MANAGED_FIELDS) sharedManagedFields.delete(sharedManagedFields.keys().next().value as string);
  sharedManagedFields.set(key, deepFreeze(managedFields));
}
