/**
 * Ownership bookkeeping of one write, as structured-merge-diff's merge.Updater (merge/update.go):
 * `update` for ordinary writes, `apply` for server-side apply (merge, prune what the applier
 * stopped applying, detect conflicts). Every manager's set is compared as recorded, whatever
 * apiVersion it was written in: this server does not convert managed fields between versions
 * (see index.ts).
 */
import { FieldSet } from './field-set';
import type { VersionedSet } from './managed-fields';
import { jsonEquals, Path, pathToString } from './path-element';
import type { TypeNode } from './schema';
import { compareObjects, Comparison, ensureNamedFieldsAreMembers, mergeObjects, reconcileFieldSetWithSchema, removeItems, toFieldSet } from './typed';

/** One field another manager owns that the write would change. */
export interface Conflict {
  /** The owner's manager identifier. */
  readonly identifier: string;
  readonly path: Path;
}

/** merge.Conflicts: the write changes fields other managers own. */
export class ConflictsError extends Error {
  constructor(readonly conflicts: readonly Conflict[]) {
    super(conflicts.map((c) => `conflict with ${c.identifier}: ${pathToString(c.path)}`).join('\n'));
    this.name = 'ConflictsError';
  }
}

export class Updater {
  /**
   * @param type the object's type
   * @param ignored fields a write may not own (the reset fields of its subresource), removed
   *   recursively from comparisons and owned sets (Go's IgnoreFilter)
   */
  constructor(
    private readonly type: TypeNode,
    private readonly ignored: FieldSet | undefined,
  ) {}

  private filter(set: FieldSet): FieldSet {
    return this.ignored ? set.recursiveDifference(this.ignored) : set;
  }

  private compare(oldObject: unknown, newObject: unknown): Comparison {
    const c = compareObjects(this.type, oldObject, newObject);
    return { removed: this.filter(c.removed), modified: this.filter(c.modified), added: this.filter(c.added) };
  }

  /**
   * Updater.update: takes changed fields from the other managers (or reports them as conflicts
   * unless force) and drops removed fields from everyone. Modifies managers.
   */
  private updateOwners(oldObject: unknown, newObject: unknown, managers: Map<string, VersionedSet>, workflow: string, force: boolean): Comparison {
    const compare = this.compare(oldObject, newObject);
    const changed = compare.modified.union(compare.added);
    const conflicts = new Map<string, FieldSet>();
    const removedFrom: string[] = [];
    for (const [manager, versioned] of managers) {
      if (manager === workflow) continue;
      const conflictSet = versioned.set.intersection(changed);
      if (!conflictSet.empty()) conflicts.set(manager, conflictSet);
      if (!compare.removed.empty()) removedFrom.push(manager);
    }
    if (!force && conflicts.size > 0) {
      const list: Conflict[] = [];
      for (const manager of [...conflicts.keys()].sort()) {
        for (const path of (conflicts.get(manager) as FieldSet).paths()) list.push({ identifier: manager, path });
      }
      throw new ConflictsError(list);
    }
    for (const [manager, conflictSet] of conflicts) {
      const v = managers.get(manager) as VersionedSet;
      managers.set(manager, { ...v, set: v.set.difference(conflictSet) });
    }
    for (const manager of removedFrom) {
      const v = managers.get(manager) as VersionedSet;
      managers.set(manager, { ...v, set: v.set.difference(compare.removed) });
    }
    for (const [manager, v] of managers) if (v.set.empty()) managers.delete(manager);
    return compare;
  }

  /** reconcileManagedFieldsWithSchemaChanges: sets recorded before a field became atomic own the field. */
  private reconcile(managers: Map<string, VersionedSet>): void {
    for (const [manager, versioned] of managers) {
      const reconciled = reconcileFieldSetWithSchema(versioned.set, this.type);
      if (reconciled) managers.set(manager, { ...versioned, set: reconciled });
    }
  }

  /** Updater.Update: manager now owns what it changed or added, besides what it owned and did not remove. */
  update(liveObject: unknown, newObject: unknown, version: string, managers: Map<string, VersionedSet>, manager: string): void {
    this.reconcile(managers);
    const compare = this.updateOwners(liveObject, newObject, managers, manager, true);
    const previous = managers.get(manager)?.set ?? new FieldSet();
    const set = this.filter(previous.difference(compare.removed).union(compare.modified).union(compare.added));
    if (set.empty()) managers.delete(manager);
    else managers.set(manager, { set, apiVersion: version, applied: false });
  }

  /**
   * Updater.Apply: merges config over the live object, records config's fields as manager's
   * Apply set, prunes what manager applied last time and no longer does, then takes ownership
   * (throwing ConflictsError unless force). Returns undefined when the object does not change.
   */
  apply(liveObject: unknown, config: unknown, version: string, managers: Map<string, VersionedSet>, manager: string, force: boolean): unknown {
    this.reconcile(managers);
    let newObject = mergeObjects(this.type, liveObject, config);
    const lastSet = managers.get(manager);
    managers.set(manager, { set: this.filter(toFieldSet(this.type, config)), apiVersion: version, applied: true });
    newObject = this.prune(newObject, managers, lastSet);
    this.updateOwners(liveObject, newObject, managers, manager, force);
    return jsonEquals(liveObject, newObject) ? undefined : newObject;
  }

  /** Removes a field iff manager applied it last time, does not apply it now, and no one else owns it. */
  private prune(merged: unknown, managers: Map<string, VersionedSet>, lastSet: VersionedSet | undefined): unknown {
    if (!lastSet || lastSet.set.empty()) return merged;
    const ensure = (s: FieldSet) => ensureNamedFieldsAreMembers(s, this.type);
    const last = ensure(lastSet.set);
    let pruned = removeItems(this.type, merged, last);
    // addBackOwnedItems: every field someone (the applier's new set included) owns comes back.
    let managed = new FieldSet();
    for (const v of managers.values()) managed = managed.union(v.set);
    const mergedSet = ensure(toFieldSet(this.type, merged));
    let prunedSet = ensure(toFieldSet(this.type, pruned));
    pruned = removeItems(this.type, merged, mergedSet.difference(prunedSet.union(ensure(managed))));
    // addBackDanglingItems: only fields the applier owned last time may go.
    prunedSet = ensure(toFieldSet(this.type, pruned));
    return removeItems(this.type, merged, mergedSet.difference(prunedSet).intersection(last));
  }
}
