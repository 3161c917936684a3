/**
 * Merge, ownership and conflicts, case by case from structured-merge-diff's merge/*_test.go
 * (each test names the upstream TestX / "case"). The upstream fixture applies and updates bare
 * values; here they go through FieldManager, so each object is wrapped in apiVersion, kind and
 * metadata (never owned) and the managers are read back from metadata.managedFields.
 */
import type { JSONSchemaProps } from '../apis/types';
import { ApplyConflictError, FieldManager, ManagedFieldsEntry, Obj } from '../server/fieldmanager';
import fc from 'fast-check';
import { FieldSet } from '../server/fieldmanager/field-set';
import { fieldElement, keyElement, valueElement } from '../server/fieldmanager/path-element';
import { compileRootSchema } from '../server/fieldmanager/schema';
import { extractItems, removeItems, toFieldSet } from '../server/fieldmanager/typed';

const API_VERSION = 'example.com/v1';

/** The SMD fixture's State: a live object, applies and updates by manager, one second apart. */
class State {
  live: Obj | undefined;
  private seconds = 0;
  constructor(private readonly fieldManager: FieldManager) {}

  private wrap(body: Obj): Obj {
    return { apiVersion: API_VERSION, kind: 'Thing', metadata: { name: 'x' }, ...body };
  }

  private next(): Date {
    return new Date(Date.UTC(2026, 0, 1, 0, 0, this.seconds++));
  }

  apply(manager: string, body: Obj, force = false): void {
    const stored = this.fieldManager.apply(this.live, this.wrap(body), manager, force, '', this.next());
    this.live = { ...stored, metadata: { ...(stored.metadata as Obj), uid: 'uid-1' } };
  }

  update(manager: string, body: Obj): void {
    const meta = this.live?.metadata as Obj | undefined;
    const stored = this.fieldManager.update(this.live, { ...this.wrap(body), metadata: { ...meta } }, manager, '', this.next());
    this.live = { ...stored, metadata: { ...(stored.metadata as Obj), uid: 'uid-1' } };
  }

  /** The object without apiVersion, kind and metadata. */
  object(): Obj {
    const rest = { ...this.live };
    delete rest.apiVersion;
    delete rest.kind;
    delete rest.metadata;
    return rest;
  }

  /** `manager/Operation` → owned paths, one per line as Go prints them. */
  managed(): Record<string, string[]> {
    const entries = ((this.live?.metadata as Obj | undefined)?.managedFields ?? []) as ManagedFieldsEntry[];
    return Object.fromEntries(entries.map((e) => [`${e.manager}/${e.operation}`, FieldSet.fromFieldsV1(e.fieldsV1).toString().split('\n')]));
  }
}

function state(schema: JSONSchemaProps): State {
  return new State(new FieldManager({ schema, apiVersion: API_VERSION }));
}

function conflictOf(run: () => void): ApplyConflictError {
  try {
    run();
  } catch (e) {
    if (e instanceof ApplyConflictError) return e;
    throw e;
  }
  throw new Error('expected an ApplyConflictError');
}

const leafFields: JSONSchemaProps = {
  type: 'object',
  properties: { numeric: { type: 'integer' }, string: { type: 'string' }, bool: { type: 'boolean' } },
};

describe('leaf fields (leaf_test.go TestUpdateLeaf)', () => {
  test('"apply_twice": the second apply owns what it applies', () => {
    // GIVEN an apply of numeric and string
    const s = state(leafFields);
    s.apply('default', { numeric: 1, string: 'string' });
    // WHEN the same manager applies again with a new value and a new field
    s.apply('default', { numeric: 2, string: 'string', bool: false });
    // THEN the object has both and the manager owns the three fields
    expect(s.object()).toEqual({ numeric: 2, string: 'string', bool: false });
    expect(s.managed()).toEqual({ 'default/Apply': ['.bool', '.numeric', '.string'] });
  });

  test('"apply_update_apply_no_conflict": an updater keeps the field it added', () => {
    // GIVEN an apply, then an update adding bool
    const s = state(leafFields);
    s.apply('default', { numeric: 1, string: 'string' });
    s.update('controller', { numeric: 1, string: 'string', bool: true });
    // WHEN the applier changes only its own field
    s.apply('default', { numeric: 2, string: 'string' });
    // THEN no conflict; the controller still owns bool
    expect(s.object()).toEqual({ numeric: 2, string: 'string', bool: true });
    expect(s.managed()).toEqual({ 'default/Apply': ['.numeric', '.string'], 'controller/Update': ['.bool'] });
  });

  test('"apply_update_apply_with_conflict": fails with a conflict on the field an updater changed, force takes it', () => {
    // GIVEN an updater changed the applier's string
    const s = state(leafFields);
    s.apply('default', { numeric: 1, string: 'string' });
    s.update('controller', { numeric: 1, string: 'controller string', bool: true });
    expect(s.managed()).toEqual({ 'default/Apply': ['.numeric'], 'controller/Update': ['.bool', '.string'] });
    // WHEN the applier applies another value
    const conflict = conflictOf(() => s.apply('default', { numeric: 2, string: 'user string' }));
    // THEN it conflicts with the controller on .string, worded as kube-apiserver
    expect(conflict.conflicts).toEqual([expect.objectContaining({ manager: 'controller', field: '.string', operation: 'Update' })]);
    expect(conflict.message).toBe('Apply failed with 1 conflict: conflict with "controller" using example.com/v1: .string');
    // WHEN it forces
    s.apply('default', { numeric: 2, string: 'user string' }, true);
    // THEN it wins the field; the controller keeps bool
    expect(s.object()).toEqual({ numeric: 2, string: 'user string', bool: true });
    expect(s.managed()).toEqual({ 'default/Apply': ['.numeric', '.string'], 'controller/Update': ['.bool'] });
  });

  test('"apply_twice_remove": fields the applier stops applying are removed', () => {
    const s = state(leafFields);
    s.apply('default', { numeric: 1, string: 'string', bool: false });
    s.apply('default', { string: 'new string' });
    expect(s.object()).toEqual({ string: 'new string' });
    expect(s.managed()).toEqual({ 'default/Apply': ['.string'] });
  });

  test('"update_apply_omits": a field an updater took over stays when the applier drops it', () => {
    // GIVEN an updater changed the applied numeric (and so took it over)
    const s = state(leafFields);
    s.apply('default', { numeric: 2 });
    s.update('controller', { numeric: 1 });
    // WHEN the applier applies nothing
    s.apply('default', {});
    // THEN numeric stays, owned by the controller alone
    expect(s.object()).toEqual({ numeric: 1 });
    expect(s.managed()).toEqual({ 'controller/Update': ['.numeric'] });
  });
});

const setList: JSONSchemaProps = {
  type: 'object',
  properties: { list: { type: 'array', 'x-kubernetes-list-type': 'set', items: { type: 'string' } } },
};

describe('set lists (set_test.go TestUpdateSet)', () => {
  test('"apply_update_apply_no_overlap": items interleave as Go orders them, each owned by who added it', () => {
    // GIVEN an applier's a, c and an updater's b, d
    const s = state(setList);
    s.apply('default', { list: ['a', 'c'] });
    s.update('controller', { list: ['a', 'b', 'c', 'd'] });
    // WHEN the applier adds aprime and cprime
    s.apply('default', { list: ['a', 'aprime', 'c', 'cprime'] });
    // THEN the merged order is upstream's, and ownership is by item
    expect(s.object()).toEqual({ list: ['a', 'b', 'aprime', 'c', 'd', 'cprime'] });
    expect(s.managed()).toEqual({
      'default/Apply': ['.list[="a"]', '.list[="aprime"]', '.list[="c"]', '.list[="cprime"]'],
      'controller/Update': ['.list[="b"]', '.list[="d"]'],
    });
  });
});

const associativeList: JSONSchemaProps = {
  type: 'object',
  properties: {
    list: {
      type: 'array',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
      items: { type: 'object', properties: { name: { type: 'string' }, value: { type: 'string' } } },
    },
  },
};

describe('several appliers (multiple_appliers_test.go TestMultipleAppliersSet)', () => {
  test('"remove_one": an applier removes only its own item', () => {
    const s = state(associativeList);
    s.apply('apply-one', { list: [{ name: 'a' }, { name: 'b' }] });
    s.apply('apply-two', { list: [{ name: 'c' }] });
    s.apply('apply-one', { list: [{ name: 'a' }] });
    expect(s.object()).toEqual({ list: [{ name: 'a' }, { name: 'c' }] });
    expect(s.managed()).toEqual({
      'apply-one/Apply': ['.list[name="a"]', '.list[name="a"].name'],
      'apply-two/Apply': ['.list[name="c"]', '.list[name="c"].name'],
    });
  });

  test('"same_value_no_conflict": two appliers of the same value both own it', () => {
    const s = state(associativeList);
    s.apply('apply-one', { list: [{ name: 'a', value: '0' }] });
    s.apply('apply-two', { list: [{ name: 'a', value: '0' }] });
    const owned = ['.list[name="a"]', '.list[name="a"].name', '.list[name="a"].value'];
    expect(s.managed()).toEqual({ 'apply-one/Apply': owned, 'apply-two/Apply': owned });
  });

  test('"change_value_yes_conflict": fails when a second applier changes the first one\'s value', () => {
    const s = state(associativeList);
    s.apply('apply-one', { list: [{ name: 'a', value: '0' }] });
    const conflict = conflictOf(() => s.apply('apply-two', { list: [{ name: 'a', value: '1' }] }));
    expect(conflict.conflicts.map((c) => [c.manager, c.field])).toEqual([['apply-one', '.list[name="a"].value']]);
    // An Apply owner is printed without an apiVersion.
    expect(conflict.message).toBe('Apply failed with 1 conflict: conflict with "apply-one": .list[name="a"].value');
    expect(s.object()).toEqual({ list: [{ name: 'a', value: '0' }] });
  });

  test('"remove_one_keep_one": an item both applied stays when one of them drops it', () => {
    const s = state(associativeList);
    s.apply('apply-one', { list: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] });
    s.apply('apply-two', { list: [{ name: 'c' }, { name: 'd' }] });
    s.apply('apply-one', { list: [{ name: 'a' }] });
    expect(s.object()).toEqual({ list: [{ name: 'a' }, { name: 'c' }, { name: 'd' }] });
  });
});

const structSchema: JSONSchemaProps = {
  type: 'object',
  properties: {
    struct: { type: 'object', properties: { name: { type: 'string' }, value: { type: 'integer' }, scalarField: { type: 'string' } } },
  },
};

describe('unsetting fields (multiple_appliers_test.go TestMultipleAppliersFieldUnsetting)', () => {
  test('"unset_scalar_sole_owner": the sole owner drops a field: it goes', () => {
    const s = state(structSchema);
    s.apply('apply-one', { struct: { name: 'a', scalarField: 'a' } });
    s.apply('apply-one', { struct: { name: 'a' } });
    expect(s.object()).toEqual({ struct: { name: 'a' } });
    expect(s.managed()).toEqual({ 'apply-one/Apply': ['.struct.name'] });
  });

  test('"unset_scalar_shared_with_applier": another applier owns it too: it stays', () => {
    const s = state(structSchema);
    s.apply('apply-one', { struct: { name: 'a', scalarField: 'a' } });
    s.apply('apply-two', { struct: { scalarField: 'a' } });
    s.apply('apply-one', { struct: { name: 'a' } });
    expect(s.object()).toEqual({ struct: { name: 'a', scalarField: 'a' } });
    expect(s.managed()).toEqual({ 'apply-one/Apply': ['.struct.name'], 'apply-two/Apply': ['.struct.scalarField'] });
  });

  test('"unset_scalar_shared_with_updater": an updater set it first: it stays, the updater owns it', () => {
    // GIVEN an updater created the struct, then an applier applied the same values
    const s = state(structSchema);
    s.update('updater', { struct: { name: 'a', scalarField: 'a' } });
    s.apply('applier', { struct: { name: 'a', scalarField: 'a' } });
    // WHEN the applier stops applying scalarField
    s.apply('applier', { struct: { name: 'a' } });
    // THEN the field stays; the updater (which created the struct) still owns it
    expect(s.object()).toEqual({ struct: { name: 'a', scalarField: 'a' } });
    expect(s.managed()).toEqual({ 'applier/Apply': ['.struct.name'], 'updater/Update': ['.struct', '.struct.name', '.struct.scalarField'] });
  });

  test('an Update that writes the same values takes nothing', () => {
    const s = state(structSchema);
    s.apply('apply-one', { struct: { name: 'a', scalarField: 'a' } });
    s.update('updater', { struct: { name: 'a', scalarField: 'a' } });
    expect(Object.keys(s.managed())).toEqual(['apply-one/Apply']);
  });
});

describe('nested types (nested_test.go TestUpdateNestedType)', () => {
  test('"struct_apply_update_took_over": applying a null struct keeps what the updater set', () => {
    const s = state(structSchema);
    s.apply('default', { struct: { name: 'a' } });
    s.update('controller', { struct: { name: 'b', value: 1 } });
    s.apply('default', { struct: null });
    expect(s.object()).toEqual({ struct: { name: 'b', value: 1 } });
  });

  const mapOfMaps: JSONSchemaProps = {
    type: 'object',
    properties: { mapOfMaps: { type: 'object', additionalProperties: { type: 'object', additionalProperties: { type: 'string' } } } },
  };

  test('"mapOfMaps_change_value": granular maps conflict on the one value changed', () => {
    const s = state(mapOfMaps);
    s.apply('default', { mapOfMaps: { b: { a: 'x', c: 'z' } } });
    const conflict = conflictOf(() => s.apply('other', { mapOfMaps: { b: { a: 'y' } } }));
    expect(conflict.conflicts.map((c) => c.field)).toEqual(['.mapOfMaps.b.a']);
    // The keys of a map are members of the set (they are not named fields).
    expect(s.managed()).toEqual({ 'default/Apply': ['.mapOfMaps.b', '.mapOfMaps.b.a', '.mapOfMaps.b.c'] });
  });
});

describe('atomic lists and maps', () => {
  const atomic: JSONSchemaProps = {
    type: 'object',
    properties: {
      args: { type: 'array', items: { type: 'string' } },
      selector: { type: 'object', 'x-kubernetes-map-type': 'atomic', additionalProperties: { type: 'string' } },
    },
  };

  test('an atomic list (no list-type) is one field: replaced whole, owned whole (TestMultipleApplierAtomicMaps, for lists)', () => {
    const s = state(atomic);
    s.apply('one', { args: ['a', 'b'], selector: { app: 'x' } });
    expect(s.managed()).toEqual({ 'one/Apply': ['.args', '.selector'] });
    // WHEN another applier applies a different list
    const conflict = conflictOf(() => s.apply('two', { args: ['c'] }));
    // THEN the whole list conflicts
    expect(conflict.conflicts.map((c) => c.field)).toEqual(['.args']);
    s.apply('two', { args: ['c'], selector: { other: 'y' } }, true);
    // AND forced, it replaces the list and the atomic map whole
    expect(s.object()).toEqual({ args: ['c'], selector: { other: 'y' } });
    expect(s.managed()).toEqual({ 'two/Apply': ['.args', '.selector'] });
  });
});

describe('defaulted keys (default_keys_test.go TestDefaultKeysFlat)', () => {
  const ports: JSONSchemaProps = {
    type: 'object',
    properties: {
      containerPorts: {
        type: 'array',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['port', 'protocol'],
        items: { type: 'object', properties: { port: { type: 'integer' }, protocol: { type: 'string', default: 'TCP' }, name: { type: 'string' } } },
      },
    },
  };

  test('"apply_missing_defaulted_key_B": a missing key field takes its default in the item\'s key', () => {
    const s = state(ports);
    s.apply('default', { containerPorts: [{ port: 80 }, { port: 80, protocol: 'UDP' }] });
    expect(s.managed()).toEqual({
      'default/Apply': [
        '.containerPorts[port=80,protocol="TCP"]',
        '.containerPorts[port=80,protocol="UDP"]',
        '.containerPorts[port=80,protocol="TCP"].port',
        '.containerPorts[port=80,protocol="UDP"].port',
        '.containerPorts[port=80,protocol="UDP"].protocol',
      ],
    });
  });
});

describe('preserve-unknown-fields (preserve_unknown_test.go TestPreserveUnknownFields)', () => {
  test('"preserve_unknown_fields": unknown fields are owned like declared ones', () => {
    const schema: JSONSchemaProps = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true, properties: { num: { type: 'integer' } } };
    const s = state(schema);
    s.apply('default', { num: 5, unknown: 'value' });
    s.apply('default', { num: 6, unknown: 'new' });
    expect(s.object()).toEqual({ num: 6, unknown: 'new' });
    expect(s.managed()).toEqual({ 'default/Apply': ['.num', '.unknown'] });
  });

  test('deduced types below preserve-unknown-fields: maps granular, lists atomic (deduced_test.go TestDeduced)', () => {
    const schema: JSONSchemaProps = { type: 'object', properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } };
    const s = state(schema);
    s.apply('one', { spec: { nested: { a: '1' }, list: [1, 2] } });
    s.apply('two', { spec: { nested: { b: '2' } } });
    expect(s.object()).toEqual({ spec: { nested: { a: '1', b: '2' }, list: [1, 2] } });
    expect(s.managed()).toEqual({
      'one/Apply': ['.spec.list', '.spec.nested', '.spec.nested.a'],
      'two/Apply': ['.spec.nested', '.spec.nested.b'],
    });
    // A list is atomic: another applier's list conflicts whole.
    expect(conflictOf(() => s.apply('two', { spec: { list: [3] } })).conflicts.map((c) => c.field)).toEqual(['.spec.list']);
  });
});

describe('Update taking ownership', () => {
  test('an Update never conflicts: it takes the fields it changes from appliers (leaf_test.go "apply_update_apply_with_conflict", step 2)', () => {
    const s = state(leafFields);
    s.apply('a', { numeric: 1, string: 'x' });
    s.apply('b', { string: 'x' });
    s.update('controller', { numeric: 2, string: 'y' });
    expect(s.managed()).toEqual({ 'controller/Update': ['.numeric', '.string'] });
  });
});

describe('schema changes (schema_change_test.go TestGranularToAtomicSchemaChanges)', () => {
  test('"to-atomic": fails with a conflict on the now-atomic struct, force takes it whole', () => {
    // GIVEN "one" applied struct.numeric while struct was granular
    const granular: JSONSchemaProps = { type: 'object', properties: { struct: { type: 'object', properties: { numeric: { type: 'integer' }, string: { type: 'string' } } } } };
    const atomic: JSONSchemaProps = { ...granular, properties: { struct: { ...(granular.properties?.struct as JSONSchemaProps), 'x-kubernetes-map-type': 'atomic' } } };
    const before = state(granular);
    before.apply('one', { struct: { numeric: 1 } });
    // WHEN the schema makes struct atomic and "two" applies another struct
    const after = new State(new FieldManager({ schema: atomic, apiVersion: API_VERSION }));
    after.live = before.live;
    const conflict = conflictOf(() => after.apply('two', { struct: { string: 'string' } }));
    // THEN the conflict is on the struct as a whole
    expect(conflict.conflicts.map((c) => [c.manager, c.field])).toEqual([['one', '.struct']]);
    // WHEN forced, "two" owns the struct, "one" nothing
    after.apply('two', { struct: { string: 'string' } }, true);
    expect(after.object()).toEqual({ struct: { string: 'string' } });
    expect(after.managed()).toEqual({ 'two/Apply': ['.struct'] });
  });
});

describe('duplicated items in live lists (duplicates_test.go TestDuplicates)', () => {
  const schema: JSONSchemaProps = {
    type: 'object',
    properties: {
      set: { type: 'array', 'x-kubernetes-list-type': 'set', items: { type: 'integer' } },
      list: {
        type: 'array',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
        items: { type: 'object', properties: { name: { type: 'string' }, value1: { type: 'integer' }, value2: { type: 'integer' } } },
      },
    },
  };

  test('"sets/merging/remove_duplicate": a duplicated value is owned whole; a forced apply makes it single', () => {
    // GIVEN an updater wrote a set with 1 twice
    const s = state(schema);
    s.update('updater', { set: [1, 1, 3, 4] });
    expect(s.managed()).toEqual({ 'updater/Update': ['.set', '.set[=1]', '.set[=3]', '.set[=4]'] });
    // WHEN an applier applies [1]: the duplicate changes, a conflict
    const conflict = conflictOf(() => s.apply('applier', { set: [1] }));
    expect(conflict.conflicts.map((c) => [c.manager, c.field])).toEqual([['updater', '.set[=1]']]);
    // WHEN forced
    s.apply('applier', { set: [1] }, true);
    // THEN the value is single and the applier's
    expect(s.object()).toEqual({ set: [1, 3, 4] });
    expect(s.managed()).toEqual({ 'applier/Apply': ['.set[=1]'], 'updater/Update': ['.set', '.set[=3]', '.set[=4]'] });
  });

  test('"list/merge/change_duplicated_item": a duplicated key is one owned item, replaced by a forced apply', () => {
    const s = state(schema);
    s.update('updater', {
      list: [
        { name: 'a', value1: 1 },
        { name: 'a', value1: 2 },
        { name: 'b', value1: 3 },
      ],
    });
    expect(s.managed()).toEqual({ 'updater/Update': ['.list', '.list[name="a"]', '.list[name="b"]', '.list[name="b"].name', '.list[name="b"].value1'] });
    const conflict = conflictOf(() => s.apply('applier', { list: [{ name: 'a', value1: 3 }] }));
    expect(conflict.conflicts.map((c) => [c.manager, c.field])).toEqual([['updater', '.list[name="a"]']]);
    s.apply('applier', { list: [{ name: 'a', value1: 3 }] }, true);
    expect(s.object()).toEqual({
      list: [
        { name: 'a', value1: 3 },
        { name: 'b', value1: 3 },
      ],
    });
    expect(s.managed()).toEqual({
      'applier/Apply': ['.list[name="a"]', '.list[name="a"].name', '.list[name="a"].value1'],
      'updater/Update': ['.list', '.list[name="b"]', '.list[name="b"].name', '.list[name="b"].value1'],
    });
  });
});

describe('removeItems and extractItems (typed/remove.go)', () => {
  const schema: JSONSchemaProps = {
    type: 'object',
    properties: {
      spec: {
        type: 'object',
        properties: {
          replicas: { type: 'integer' },
          tags: { type: 'array', 'x-kubernetes-list-type': 'set', items: { type: 'string' } },
          ports: {
            type: 'array',
            'x-kubernetes-list-type': 'map',
            'x-kubernetes-list-map-keys': ['name'],
            items: { type: 'object', properties: { name: { type: 'string' }, port: { type: 'integer' } } },
          },
          settings: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
    },
  };
  const type = compileRootSchema(schema);
  const spec = { replicas: 2, tags: ['a', 'b'], ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }], settings: { x: '1', y: '2' } };

  test('extracting some fields keeps them (and the keys of the items they are in), removing them drops them', () => {
    // GIVEN the fields .spec.ports[name="https"].port and .spec.tags[="a"]
    const items = FieldSet.of(
      [fieldElement('spec'), fieldElement('ports'), keyElement([['name', 'https']]), fieldElement('port')],
      [fieldElement('spec'), fieldElement('tags'), valueElement('a')],
    );
    // THEN extract keeps only those, remove keeps the rest
    expect(extractItems(type, { spec }, items)).toEqual({ spec: { ports: [{ port: 443 }], tags: ['a'] } });
    expect(removeItems(type, { spec }, items)).toEqual({ spec: { replicas: 2, tags: ['b'], ports: [{ name: 'http', port: 80 }, { name: 'https' }], settings: { x: '1', y: '2' } } });
  });

  test('property: extracting every field a value sets gives the value back; removing them all leaves no value (emptied maps become null, as in Go)', () => {
    const onlyNulls = (v: unknown): boolean =>
      v === null || (typeof v === 'object' && (Array.isArray(v) ? v.every(onlyNulls) : Object.values(v as object).every(onlyNulls)));
    const key = fc.constantFrom('a', 'b', 'c');
    const specArb = fc.record(
      {
        replicas: fc.integer({ min: 0, max: 3 }),
        tags: fc.uniqueArray(key, { minLength: 1 }),
        ports: fc.uniqueArray(fc.record({ name: key, port: fc.integer({ min: 1, max: 3 }) }), { selector: (p) => p.name, minLength: 1 }),
        settings: fc.dictionary(key, key, { minKeys: 1 }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(specArb, (value) => {
        const object = { spec: value };
        const all = toFieldSet(type, object);
        expect(extractItems(type, object, all)).toEqual(Object.keys(value).length === 0 ? { spec: {} } : object);
        expect(onlyNulls(removeItems(type, object, all))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});

describe('ObjectMeta', () => {
  test('labels are granular, finalizers a set, ownerReferences keyed by uid: at the root and in an embedded resource', () => {
    const schema: JSONSchemaProps = {
      type: 'object',
      properties: { spec: { type: 'object', properties: { template: { type: 'object', 'x-kubernetes-embedded-resource': true, 'x-kubernetes-preserve-unknown-fields': true } } } },
    };
    const s = state(schema);
    s.apply('one', { metadata: { name: 'x', labels: { a: '1' }, finalizers: ['f1'] }, spec: { template: { metadata: { labels: { a: '1' } } } } });
    s.apply('two', {
      metadata: { name: 'x', labels: { b: '2' }, finalizers: ['f2'], ownerReferences: [{ apiVersion: 'v1', kind: 'K', name: 'n', uid: 'u1' }] },
      spec: { template: { metadata: { labels: { b: '2' } } } },
    });
    expect((s.live?.metadata as Obj).labels).toEqual({ a: '1', b: '2' });
    expect((s.live?.metadata as Obj).finalizers).toEqual(['f1', 'f2']);
    expect(s.object()).toEqual({ spec: { template: { metadata: { labels: { a: '1', b: '2' } } } } });
    expect(s.managed()['two/Apply']).toEqual([
      '.metadata.finalizers[="f2"]',
      '.metadata.labels.b',
      '.metadata.ownerReferences[uid="u1"]',
      '.metadata.ownerReferences[uid="u1"].apiVersion',
      '.metadata.ownerReferences[uid="u1"].kind',
      '.metadata.ownerReferences[uid="u1"].name',
      '.metadata.ownerReferences[uid="u1"].uid',
      '.spec.template.metadata.labels.b',
    ]);
  });
});
