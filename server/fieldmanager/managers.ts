/**
 * The wrappers kube-apiserver puts around the structured merge (NewDefaultFieldManager in
 * k8s.io/apimachinery/pkg/util/managedfields/internal): stripmeta.go, capmanagers.go,
 * fieldmanager.go's decodeLiveOrNew, lastappliedupdater.go, and the encoding into metadata.
 */
import { FieldSet } from './field-set';
import type { Obj } from './index';
import { decodeManagedFields, emptyManaged, encodeManagedFields, Managed, managerIdentifier, VersionedSet } from './managed-fields';
import { compareStrings, fieldElement, goJson } from './path-element';

function isRecord(value: unknown): value is Obj {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** kubectl's client-side apply annotation, which server-side apply by `kubectl` keeps up to date. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/** DefaultMaxUpdateManagers: beyond this many Update entries, the oldest merge into `ancient-changes`. */
export const MAX_UPDATE_MANAGERS = 10;

/** Paths that are never owned (stripmeta.go). */
export const STRIP_SET = FieldSet.of(
  [fieldElement('apiVersion')],
  [fieldElement('kind')],
  [fieldElement('metadata')],
  ...['name', 'namespace', 'creationTimestamp', 'selfLink', 'uid', 'clusterName', 'generation', 'managedFields', 'resourceVersion'].map((f) => [
    fieldElement('metadata'),
    fieldElement(f),
  ]),
);

const ANCIENT_CHANGES = 'ancient-changes';
/** ValidateAnnotationsSize's limit (TotalAnnotationSizeLimitB). */
const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

/** decodeLiveOrNew: the request's managedFields if they decode to something (`[]` or `[{}]` reset them), else live's. */
export function decodeLiveOrNew(liveFields: unknown, newFields: unknown, ignoreNew: boolean): Managed {
  const fromLive = () => {
    try {
      return decodeManagedFields(liveFields);
    } catch {
      return emptyManaged();
    }
  };
  if (ignoreNew) return fromLive();
  if (Array.isArray(newFields) && (newFields.length === 0 || (newFields.length === 1 && isRecord(newFields[0]) && Object.keys(newFields[0]).length === 0))) {
    return emptyManaged();
  }
  try {
    const managed = decodeManagedFields(newFields);
    if (managed.fields.size > 0) return managed;
  } catch {
    // fall back to live's, so a client that does not understand managedFields cannot drop them
  }
  return fromLive();
}

/** stripMetaManager: the manager's set without the fields nobody owns; an emptied entry goes. */
export function stripFields(fields: Map<string, VersionedSet>, manager: string): void {
  const v = fields.get(manager);
  if (!v) return;
  const set = v.set.difference(STRIP_SET);
  if (set.empty()) fields.delete(manager);
  else fields.set(manager, { ...v, set });
}

/** A copy whose maps can change without touching the original. */
export function cloneManaged(managed: Managed): Managed {
  return { fields: new Map(managed.fields), times: new Map(managed.times) };
}

/** EncodeObjectManagedFields: the entries into metadata, or none at all. */
export function setManagedFields(meta: Obj, managed: Managed): void {
  const entries = encodeManagedFields(managed);
  if (entries.length > 0) meta.managedFields = entries;
  else delete meta.managedFields;
}

/** capManagersManager: merges the oldest Update entries, per apiVersion, into `ancient-changes`. */
export function capUpdateManagers(managed: Managed, max: number): void {
  const { fields, times } = managed;
  const updaters = [...fields].filter(([, v]) => !v.applied).map(([id]) => id);
  if (updaters.length <= max) return;
  const seconds = (id: string) => {
    const t = times.get(id);
    const ms = t ? Date.parse(t) : NaN;
    return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
  };
  updaters.sort((a, b) => seconds(a) - seconds(b) || compareStrings(a, b));
  const versionToFirstManager = new Map<string, string>();
  let length = updaters.length;
  for (let i = 0; i < updaters.length && length > max; i++) {
    const manager = updaters[i];
    const versioned = fields.get(manager) as VersionedSet;
    const time = times.get(manager);
    const version = versioned.apiVersion;
    const bucket = managerIdentifier({ manager: ANCIENT_CHANGES, operation: 'Update', apiVersion: version });
    const first = versionToFirstManager.get(version);
    if (first === undefined) {
      versionToFirstManager.set(version, manager);
      continue;
    }
    if (!fields.has(bucket)) {
      const firstSet = fields.get(first) as VersionedSet;
      fields.delete(first);
      fields.set(bucket, firstSet);
    }
    fields.set(bucket, { set: versioned.set.union((fields.get(bucket) as VersionedSet).set), apiVersion: version, applied: false });
    fields.delete(manager);
    length--;
    times.set(bucket, time);
  }
}

/** lastAppliedUpdater: rewrites an existing last-applied annotation from the applied configuration. */
export function syncLastApplied(result: Obj, applied: Obj): void {
  const meta = result.metadata;
  if (!isRecord(meta) || !isRecord(meta.annotations)) return;
  const existing = meta.annotations[LAST_APPLIED_ANNOTATION];
  if (typeof existing !== 'string' || existing === '') return;
  const config = structuredClone(applied);
  const configMeta = config.metadata;
  if (isRecord(configMeta) && isRecord(configMeta.annotations)) delete configMeta.annotations[LAST_APPLIED_ANNOTATION];
  // runtime.Encode with UnstructuredJSONScheme: sorted keys, then json.Encoder's newline.
  const annotations: Obj = { ...meta.annotations, [LAST_APPLIED_ANNOTATION]: `${goJson(config)}\n` };
  let size = 0;
  for (const [k, v] of Object.entries(annotations)) size += Buffer.byteLength(k) + Buffer.byteLength(String(v));
  if (size > TOTAL_ANNOTATION_SIZE_LIMIT) delete annotations[LAST_APPLIED_ANNOTATION];
  meta.annotations = annotations;
}
