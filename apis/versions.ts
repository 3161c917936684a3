import { ApiGroupDefinition, KindDefinition, KindVersion } from './types';

/** `v<N>`, optionally followed by `alpha<M>` or `beta<M>` (N, M ≥ 1, no leading zeros). */
export const KUBE_VERSION_PATTERN = /^v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?$/;

const STABILITY_RANK: Record<string, number> = { '': 3, beta: 2, alpha: 1 };

/**
 * Orders version names the way Kubernetes prefers them (GA before beta before alpha, higher
 * numbers first), as `version.CompareKubeAwareVersionStrings` in apimachinery does.
 * Negative when `a` is preferred over `b`.
 */
export function compareKubeVersions(a: string, b: string): number {
  const ma = KUBE_VERSION_PATTERN.exec(a);
  const mb = KUBE_VERSION_PATTERN.exec(b);
  if (!ma || !mb) {
    if (ma) return -1;
    if (mb) return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  const stability = STABILITY_RANK[mb[2] ?? ''] - STABILITY_RANK[ma[2] ?? ''];
  if (stability !== 0) return stability;
  const major = Number(mb[1]) - Number(ma[1]);
  if (major !== 0) return major;
  return Number(mb[3] ?? 0) - Number(ma[3] ?? 0);
}

/** The versions the group serves (any kind served in it), most preferred first. */
export function servedVersions(api: ApiGroupDefinition): string[] {
  const names = new Set<string>();
  for (const kind of api.kinds) {
    for (const version of kind.versions) {
      if (version.served) names.add(version.name);
    }
  }
  return [...names].sort(compareKubeVersions);
}

/** The version discovery advertises as `preferredVersion`. */
export function preferredVersion(api: ApiGroupDefinition): string {
  const [first] = servedVersions(api);
  if (!first) throw new Error(`API group "${api.group}" serves no version`);
  return first;
}

/** The kinds served in `version`, each with its definition for that version. */
export function kindsInVersion(api: ApiGroupDefinition, version: string): { kind: KindDefinition; version: KindVersion }[] {
  const result: { kind: KindDefinition; version: KindVersion }[] = [];
  for (const kind of api.kinds) {
    const match = kind.versions.find((v) => v.name === version && v.served);
    if (match) result.push({ kind, version: match });
  }
  return result;
}

/** The version a kind is stored in. */
export function storageVersion(kind: KindDefinition): KindVersion {
  const stored = kind.versions.find((v) => v.storage);
  if (!stored) throw new Error(`kind "${kind.kind}" has no storage version`);
  return stored;
}

/** `listKind`, defaulted as CRDs default it. */
export function listKindOf(kind: KindDefinition): string {
  return kind.listKind ?? `${kind.kind}List`;
}
