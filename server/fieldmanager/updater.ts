/**
 * Ownership bookkeeping of one write, as structured-merge-diff's merge.Updater (merge/update.go):
 * `update` for ordinary writes, `apply` for server-side apply (merge, prune what the applier
 * stopped applying, detect conflicts). A manager's set recorded in another apiVersion is compared
 * in that version when the kind's versions and a conversion are known (Versions); otherwise every
 * set is compared as recorded.
 */
import { FieldSet } from './field-set';
import type { VersionedSet } from './managed-fields';
import { compareStrings, jsonEquals, Path, pathToString } from './path-element';
import type { TypeNode } from './schema';
import { compareObjects, Comparison, ensureNamedFieldsAreMembers, mergeObjects, reconcileFieldSetWithSchema, removeItems, toFieldSet } from './typed';

/** One field another manager owns that the write would change. */
export interface Conflict {
  /** The owner's manager identifier. */
  readonly identifier: string;
  /** In the owner's apiVersion. */
  readonly path: Path;
}

/** merge.Conflicts: the write changes fields other managers own. */
export class ConflictsError extends Error {
  constructor(readonly conflicts: readonly Conflict[]) {
    super(conflicts.map((c) => `conflict with ${c.identifier}: ${pathToString(c.path)}`).join('\n'));
    this.name = 'ConflictsError';
  }
}

/**
 * The kind's versions as the updater needs them (Go's Converter): the type of each apiVersion,
 * and a conversion of a whole object into one. `typeOf` undefined = the version does not exist
 * (Go then forgets the managers recorded in it); `convert` throwing = likewise.
 */
export interface Versions {
  readonly current: string;
  typeOf(apiVersion: string): TypeNode | undefined;
  convert(object: unknown, apiVersion: string): unknown;
}

class MissingVersion extends Error {}

export class Updater {
  /**
   * @param versions the current apiVersion and the others (see Versions)
   * @param ignored fields a write may not own (the reset fields of its subresource), removed
   *   recursively from comparisons and owned sets (Go's IgnoreFilter)
   */
  constructor(
    private readonly versions: Versions,
    private readonly ignored: FieldSet | undefined,
  ) {}

  private get type(): TypeNode {
    return this.versions.typeOf(this.versions.current) as TypeNode;
  }

  private filter(set: FieldSet): FieldSet {
    return this.ignored ? set.recursiveDifference(this.ignored) : set;
  }

  /**
   * The object in apiVersion, with its type; throws MissingVersion when there is none. An object
   * already in that version, or with no apiVersion (the empty live object of a create), is as it is.
   */
  private inVersion(object: unknown, apiVersion: string): { type: TypeNode; object: unknown } {
    const type = this.versions.typeOf(apiVersion);
    if (!type) throw new MissingVersion(apiVersion);
    const own = object !== null && typeof object === 'object' ? (object as Record<string, unknown>).apiVersion : undefined;
    if (own === undefined || own === apiVersion) return { type, object };
    try {
      return { type, object: this.versions.convert(object, apiVersion) };
    } catch {
      throw new MissingVersion(apiVersion);
    }
  }

  private compareIn(apiVersion: string, oldObject: unknown, newObject: unknown): Comparison {
    const old = this.inVersion(oldObject, apiVersion);
    const c = compareObjects(old.type, old.object, this.inVersion(newObject, apiVersion).object);
    return { removed: this.filter(c.removed), modified: this.filter(c.modified), added: this.filter(c.added) };
  }

  /** reconcileManagedFieldsWithSchemaChanges: sets recorded before a field became atomic own the field. */
  private reconcile(managers: Map<string, VersionedSet>): void {
    for (const [manager, versioned] of managers) {
      const type = this.versions.typeOf(versioned.apiVersion);
      if (!type) continue;
      const reconciled = reconcileFieldSetWithSchema(versioned.set, type);
      if (reconciled) managers.set(manager, { ...versioned, set: reconciled });
    }
  }

  /**
   * Updater.update: takes changed fields from the other managers (or reports them as conflicts
   * unless force) and drops removed fields from everyone, each compared in its own apiVersion.
   * Modifies managers. Returns the comparison in the current version.
   */
  private updateOwners(oldObject: unknown, newObject: unknown, managers: Map<string, VersionedSet>, workflow: string, force: boolean): Comparison {
    const current = this.compareIn(this.versions.current, oldObject, newObject);
    const byVersion = new Map<string, Comparison>([[this.versions.current, current]]);
    const conflicts = new Map<string, FieldSet>();
    const removed = new Map<string, FieldSet>();
    for (const [manager, versioned] of managers) {
      if (manager === workflow) continue;
      let compare = byVersion.get(versioned.apiVersion);
      if (!compare) {
        try {
          compare = this.compareIn(versioned.apiVersion, oldObject, newObject);
        } catch (e) {
          if (!(e instanceof MissingVersion)) throw e;
          managers.delete(manager);
          continue;
        }
        byVersion.set(versioned.apiVersion, compare);
      }
      const conflictSet = versioned.set.intersection(compare.modified.union(compare.added));
      if (!conflictSet.empty()) conflicts.set(manager, conflictSet);
      if (!compare.removed.empty()) removed.set(manager, compare.removed);
    }
    if (!force && conflicts.size > 0) {
      const list: Conflict[] = [];
      for (const manager of [...conflicts.keys()].sort(compareStrings)) {
        for (const path of (conflicts.get(manager) as FieldSet).paths()) list.push({ identifier: manager, path });
      }
      throw new ConflictsError(list);
    }
    for (const [manager, conflictSet] of conflicts) {
      const v = managers.get(manager) as VersionedSet;
      managers.set(manager, { ...v, set: v.set.difference(conflictSet) });
    }
    for (const [manager, removedSet] of removed) {
      const v = managers.get(manager) as VersionedSet;
      managers.set(manager, { ...v, set: v.set.difference(removedSet) });
    }
    for (const [manager, v] of managers) if (v.set.empty()) managers.delete(manager);
    return current;
  }

  /** Updater.Update: manager now owns what it changed or added, besides what it owned and did not remove. */
  update(liveObject: unknown, newObject: unknown, managers: Map<string, VersionedSet>, manager: string): void {
    this.reconcile(managers);
    const compare = this.updateOwners(liveObject, newObject, managers, manager, true);
    const previous = managers.get(manager)?.set ?? new FieldSet();
    const set = this.filter(previous.difference(compare.removed).union(compare.modified).union(compare.added));
    if (set.empty()) managers.delete(manager);
    else managers.set(manager, { set, apiVersion: this.versions.current, applied: false });
  }

  /**
   * Updater.Apply: merges config over the live object, records config's fields as manager's
   * Apply set, prunes what manager applied last time and no longer does, then takes ownership
   * (throwing ConflictsError unless force). Returns undefined when the object does not change.
   */
  apply(liveObject: unknown, config: unknown, managers: Map<string, VersionedSet>, manager: string, force: boolean): unknown {
    this.reconcile(managers);
    let newObject = mergeObjects(this.type, liveObject, config);
    const lastSet = managers.get(manager);
    managers.set(manager, { set: this.filter(toFieldSet(this.type, config)), apiVersion: this.versions.current, applied: true });
    newObject = this.prune(newObject, managers, lastSet);
    this.updateOwners(liveObject, newObject, managers, manager, force);
    return jsonEquals(liveObject, newObject) ? undefined : newObject;
  }

  /**
   * Removes a field iff the applier applied it last time, does not apply it now, and no one else
   * owns it; worked out in the version of the applier's last set, as Go converts to it.
   */
  private prune(merged: unknown, managers: Map<string, VersionedSet>, lastSet: VersionedSet | undefined): unknown {
    if (!lastSet || lastSet.set.empty()) return merged;
    let atLast: { type: TypeNode; object: unknown };
    try {
      atLast = this.inVersion(merged, lastSet.apiVersion);
    } catch (e) {
      if (e instanceof MissingVersion) return merged;
      throw e;
    }
    const ensure = (s: FieldSet, type: TypeNode) => ensureNamedFieldsAreMembers(s, type);
    const last = ensure(lastSet.set, atLast.type);
    let pruned = removeItems(atLast.type, atLast.object, last);
    const prunedVersion = lastSet.apiVersion;

    // addBackOwnedItems: every field someone (the applier's new set included) owns comes back,
    // the managers grouped by version, the pruned version first.
    const managedAtVersion = new Map<string, FieldSet>();
    for (const v of managers.values()) managedAtVersion.set(v.apiVersion, (managedAtVersion.get(v.apiVersion) ?? new FieldSet()).union(v.set));
    const order = [...managedAtVersion.keys()].sort((a, b) => (a === prunedVersion ? -1 : b === prunedVersion ? 1 : 0));
    for (const version of order) {
      let mergedThere: { type: TypeNode; object: unknown };
      let prunedThere: unknown;
      try {
        mergedThere = this.inVersion(atLast.object, version);
        prunedThere = this.inVersion(pruned, version).object;
      } catch (e) {
        if (e instanceof MissingVersion) continue;
        throw e;
      }
      const { type } = mergedThere;
      const mergedSet = ensure(toFieldSet(type, mergedThere.object), type);
      const prunedSet = ensure(toFieldSet(type, prunedThere), type);
      pruned = removeItems(type, mergedThere.object, mergedSet.difference(prunedSet.union(ensure(managedAtVersion.get(version) as FieldSet, type))));
    }

    // addBackDanglingItems: only fields the applier owned last time may go.
    let prunedAtLast: unknown;
    try {
      prunedAtLast = this.inVersion(pruned, lastSet.apiVersion).object;
    } catch (e) {
      if (e instanceof MissingVersion) return merged;
      throw e;
    }
    const prunedSet = ensure(toFieldSet(atLast.type, prunedAtLast), atLast.type);
    const mergedSet = ensure(toFieldSet(atLast.type, atLast.object), atLast.type);
    const result = removeItems(atLast.type, atLast.object, mergedSet.difference(prunedSet).intersection(last));
    try {
      return this.inVersion(result, this.versions.current).object;
    } catch (e) {
      if (e instanceof MissingVersion) throw new Error(`failed to prune fields: failed to convert the pruned object to ${this.versions.current}`);
      throw e;
    }
  }
}
