import { applyPatch, Operation, validate as validateJsonPatch } from 'fast-json-patch';
import { StatusError, errors } from '../status';
import { isObject } from './rules';

/**
 * PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902, via fast-json-patch); apply
 * patches (server-side apply) are apply.ts's. Strategic merge patch needs Go struct tags a custom
 * type does not have: it is answered 415, as kube-apiserver answers it for CRDs.
 */

export const MERGE_PATCH = 'application/merge-patch+json';
export const JSON_PATCH = 'application/json-patch+json';
export const APPLY_PATCH = 'application/apply-patch+yaml';
/** In the order kube-apiserver lists them for a custom resource (its 415 names them). */
export const SUPPORTED_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH];

export type PatchType = typeof MERGE_PATCH | typeof JSON_PATCH;

/**
 * RFC 7386: objects merge recursively, `null` deletes, anything else replaces. Returns a new value.
 * Keys are own properties whatever their name: a `"__proto__"` key (JSON.parse makes it an own
 * property) is merged as a key, never read from or written to the prototype.
 */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const result: Record<string, unknown> = {};
  if (isObject(target)) for (const name of Object.keys(target)) setOwn(result, name, target[name]);
  for (const name of Object.keys(patch)) {
    const value = patch[name];
    if (value === null) delete result[name];
    else setOwn(result, name, mergePatch(Object.prototype.hasOwnProperty.call(result, name) ? result[name] : undefined, value));
  }
  return result;
}

function setOwn(object: Record<string, unknown>, name: string, value: unknown): void {
  if (name === '__proto__') Object.defineProperty(object, name, { value, enumerable: true, writable: true, configurable: true });
  else object[name] = value;
}

/** 422 as kube-apiserver answers a patch that cannot be applied (NewGenericServerResponse). */
function unprocessable(message: string): StatusError {
  return new StatusError({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'the server rejected our request due to an error in our request',
    reason: 'Invalid',
    details: { causes: [{ reason: 'UnexpectedServerResponse', message }] },
    code: 422,
  });
}

/** Checks the patch document's shape before any object is read: 400 when it is not a patch of its type. */
export function checkPatch(type: PatchType, patch: unknown): void {
  if (type === MERGE_PATCH) {
    if (!isObject(patch)) throw errors.badRequest('a merge patch must be a JSON object');
    return;
  }
  if (!Array.isArray(patch)) throw errors.badRequest('a JSON patch must be a JSON array of operations');
  const problem = validateJsonPatch(patch as Operation[]);
  if (problem) throw errors.badRequest(`invalid JSON patch: ${problem.message.split('\n')[0]}`);
}

/** Applies a patch to an object the caller owns (a JSON patch changes it in place); 422 when the operations do not apply. */
export function applyObjectPatch(type: PatchType, object: Record<string, unknown>, patch: unknown): Record<string, unknown> {
  let result: unknown;
  if (type === MERGE_PATCH) {
    result = mergePatch(object, patch);
  } else {
    // RFC 6902 4.4: a move into its own value (`from` a proper prefix of `path`) is an error; fast-json-patch
    // performs it, leaving a document that contains itself (a 500 when stored).
    for (const operation of patch as Operation[]) {
      if (operation.op === 'move' && (operation.from === '' ? operation.path !== '' : operation.path.startsWith(`${operation.from}/`))) {
        throw unprocessable(`move operation does not apply: "from" ${JSON.stringify(operation.from)} is a proper prefix of "path" ${JSON.stringify(operation.path)}`);
      }
    }
    try {
      result = applyPatch(object, patch as Operation[], true, true).newDocument;
    } catch (error) {
      throw unprocessable((error as Error).message.split('\n')[0]);
    }
  }
  if (!isObject(result)) throw unprocessable('the patch does not leave an object');
  return result;
}
