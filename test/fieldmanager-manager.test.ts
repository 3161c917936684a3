/**
 * FieldManager as kube-apiserver's chain of managers (k8s.io/apimachinery
 * pkg/util/managedfields/internal): entries byte for byte against objects a real kube-apiserver
 * stored, the 409 Status, strip/sort/cap/before-first-apply, reset fields and subresources,
 * kubectl's upgrade from client-side apply, and the errors.
 */
import fc from 'fast-check';
import type { JSONSchemaProps } from '../apis/types';
import { FLUNDER } from '../apis/wardle';
import {
  ApplyConflictError,
  FieldManager,
  LAST_APPLIED_ANNOTATION,
  ManagedFieldsEntry,
  ManagedFieldsError,
  MAX_UPDATE_MANAGERS,
  Obj,
  TypedPatchError,
} from '../server/fieldmanager';
import { FieldSet } from '../server/fieldmanager/field-set';
import { STRIP_SET } from '../server/fieldmanager/managers';
import type { Path } from '../server/fieldmanager/path-element';
import { compileRootSchema } from '../server/fieldmanager/schema';
import { toFieldSet } from '../server/fieldmanager/typed';
import { encodeManagedFields, managerIdentifier } from '../server/fieldmanager/managed-fields';
import { StatusError } from '../server/status';

const str: JSONSchemaProps = { type: 'string' };
const int: JSONSchemaProps = { type: 'integer' };

/** The part of core/v1 Pod's OpenAPI the samples below touch, with its list types and key defaults. */
const POD: JSONSchemaProps = {
  type: 'object',
  properties: {
    apiVersion: str,
    kind: str,
    metadata: { type: 'object' },
    spec: {
      type: 'object',
      properties: {
        containers: {
          type: 'array',
          'x-kubernetes-list-type': 'map',
          'x-kubernetes-list-map-keys': ['name'],
          items: {
            type: 'object',
            properties: {
              name: str,
              image: str,
              imagePullPolicy: str,
              ports: {
                type: 'array',
                'x-kubernetes-list-type': 'map',
                'x-kubernetes-list-map-keys': ['containerPort', 'protocol'],
                items: { type: 'object', properties: { containerPort: int, protocol: { type: 'string', default: 'TCP' }, name: str } },
              },
              resources: { type: 'object', properties: { limits: { type: 'object', additionalProperties: str }, requests: { type: 'object', additionalProperties: str } } },
              terminationMessagePath: str,
              terminationMessagePolicy: str,
            },
          },
        },
        dnsPolicy: str,
        enableServiceLinks: { type: 'boolean' },
        restartPolicy: str,
        schedulerName: str,
        securityContext: { type: 'object', properties: { runAsUser: int } },
        terminationGracePeriodSeconds: int,
      },
    },
    status: { type: 'object', properties: { phase: str } },
  },
};

/** What runtime.DefaultUnstructuredConverter makes of an empty v1.Pod: the `live` of a create in Go. */
const EMPTY_TYPED_POD: Obj = { metadata: { creationTimestamp: null }, spec: { containers: null }, status: {} };

function entries(object: Obj): ManagedFieldsEntry[] {
  return ((object.metadata as Obj).managedFields ?? []) as ManagedFieldsEntry[];
}

function owned(entry: ManagedFieldsEntry | undefined): string[] {
  return entry ? FieldSet.fromFieldsV1(entry.fieldsV1).toString().split('\n') : [];
}

function statusOf(run: () => unknown): StatusError {
  try {
    run();
  } catch (e) {
    if (e instanceof StatusError) return e;
    if (e instanceof ApplyConflictError || e instanceof TypedPatchError) return e.toStatus();
    throw e;
  }
  throw new Error('expected an error');
}

describe('entries as a real kube-apiserver writes them', () => {
  const pods = new FieldManager({ schema: POD, apiVersion: 'v1', kind: 'Pod', resetFields: { '': [['status']], status: [['spec']] } });

  test('a ReplicaSet\'s pod created by kube-controller-manager: the Update entry, byte for byte', () => {
    // GIVEN the pod as the controller sent it (spark-deploy-7b4fc6bdc7-64g7z, stored by kube-apiserver 2022-08-23)
    const pod: Obj = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        generateName: 'spark-deploy-7b4fc6bdc7-',
        namespace: 'ctf',
        labels: { app: 'spark', 'pod-template-hash': '7b4fc6bdc7' },
        ownerReferences: [
          { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'spark-deploy-7b4fc6bdc7', uid: '4d451b5a-c85c-4949-8154-cec202f4f09f', controller: true, blockOwnerDeletion: true },
        ],
      },
      spec: {
        containers: [
          {
            name: 'easyspark',
            image: 'wmctf2022/easyspark',
            ports: [{ containerPort: 8080, protocol: 'TCP' }],
            resources: {},
            terminationMessagePath: '/dev/termination-log',
            terminationMessagePolicy: 'File',
            imagePullPolicy: 'Never',
          },
        ],
        restartPolicy: 'Always',
        terminationGracePeriodSeconds: 30,
        dnsPolicy: 'ClusterFirst',
        securityContext: {},
        schedulerName: 'default-scheduler',
        enableServiceLinks: true,
      },
    };
    // WHEN it is created (live: the empty typed Pod, as Go's create handler passes)
    const stored = pods.update(EMPTY_TYPED_POD, pod, 'kube-controller-manager', '', new Date('2022-08-23T02:00:01.734Z'));
    // THEN the entry is the one kube-apiserver stored, to the byte
    expect(JSON.stringify(entries(stored))).toBe(
      '[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2022-08-23T02:00:01Z","fieldsType":"FieldsV1","fieldsV1":' +
        '{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\\"uid\\":\\"4d451b5a-c85c-4949-8154-cec202f4f09f\\"}":{".":{},"f:apiVersion":{},"f:blockOwnerDeletion":{},"f:controller":{},"f:kind":{},"f:name":{},"f:uid":{}}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"easyspark\\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\\"containerPort\\":8080,\\"protocol\\":\\"TCP\\"}":{".":{},"f:containerPort":{},"f:protocol":{}}},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}]',
    );
    // AND the input is left alone
    expect((pod.metadata as Obj).managedFields).toBeUndefined();
  });

  test('`kubectl apply --server-side` of a pod made by `kubectl run`: the Apply entry and the last-applied annotation, byte for byte', () => {
    // GIVEN the nginx pod of a real `kubectl -v8` log (kube-apiserver, 2023-10-26): created by kubectl-run, annotated
    const kubectlRun: ManagedFieldsEntry = {
      manager: 'kubectl-run',
      operation: 'Update',
      apiVersion: 'v1',
      time: '2023-10-26T03:22:48Z',
      fieldsType: 'FieldsV1',
      fieldsV1: JSON.parse(
        '{"f:metadata":{"f:labels":{".":{},"f:run":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"nginx\\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}',
      ),
    };
    const live: Obj = {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: {
        name: 'nginx',
        namespace: 'default',
        uid: '2c5e7503-d9a8-43d2-8281-4d186e552c37',
        resourceVersion: '7519',
        creationTimestamp: '2023-10-26T03:22:48Z',
        labels: { run: 'nginx' },
        annotations: { [LAST_APPLIED_ANNOTATION]: '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"nginx"}}\n' },
        managedFields: [kubectlRun],
      },
      spec: {
        containers: [{ name: 'nginx', image: 'nginx', resources: {}, terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File', imagePullPolicy: 'Always' }],
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 30,
        dnsPolicy: 'ClusterFirst',
        securityContext: {},
        schedulerName: 'default-scheduler',
        enableServiceLinks: true,
      },
      status: { phase: 'Running' },
    };
    // The configuration kubectl sent (the annotation in the log holds it).
    const config: Obj = JSON.parse(
      '{"apiVersion":"v1","kind":"Pod","metadata":{"creationTimestamp":null,"labels":{"run":"nginx"},"name":"nginx","namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"nginx","resources":{}}],"dnsPolicy":"ClusterFirst","restartPolicy":"Never"},"status":{}}',
    );
    // WHEN kubectl applies it server-side
    const stored = pods.apply(live, config, 'kubectl', false, '', new Date('2023-10-26T03:24:46Z'));
    // THEN the entries are Apply first, then Update, as kube-apiserver answered
    const [apply, update] = entries(stored);
    expect(JSON.stringify(apply)).toBe(
      '{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":"2023-10-26T03:24:46Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{"f:run":{}}},"f:spec":{"f:containers":{"k:{\\"name\\":\\"nginx\\"}":{".":{},"f:image":{},"f:name":{},"f:resources":{}}},"f:dnsPolicy":{},"f:restartPolicy":{}}}}',
    );
    expect(update).toEqual(kubectlRun);
    // AND the last-applied annotation is rewritten as Go encodes it (sorted keys, a newline), the string of the log
    expect(((stored.metadata as Obj).annotations as Obj)[LAST_APPLIED_ANNOTATION]).toBe(
      '{"apiVersion":"v1","kind":"Pod","metadata":{"creationTimestamp":null,"labels":{"run":"nginx"},"name":"nginx","namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"nginx","resources":{}}],"dnsPolicy":"ClusterFirst","restartPolicy":"Never"},"status":{}}\n',
    );
    // AND status, a reset field of the main resource, keeps its live value
    expect(stored.status).toEqual({ phase: 'Running' });
  });
});

describe('conflicts', () => {
  const flunders = new FieldManager({ schema: FLUNDER.versions[0].schema, apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder' });
  const flunder = (spec: Obj, labels?: Obj): Obj => ({
    apiVersion: 'wardle.example.com/v1alpha1',
    kind: 'Flunder',
    metadata: { name: 'f', namespace: 'ns', ...(labels ? { labels } : {}) },
    spec,
  });

  test('fails with the 409 Status kube-apiserver answers, causes per field (conflict_test.go TestNewConflictError)', () => {
    // GIVEN an Update owner of spec.reference and an Apply owner of a label
    let live = flunders.update(undefined, flunder({ reference: 'a' }), 'kubectl-create');
    live = { ...live, metadata: { ...(live.metadata as Obj), uid: 'u' } };
    live = flunders.apply(live, flunder({}, { app: 'x' }), 'bar', false);
    // WHEN a third manager applies other values for both
    const status = statusOf(() => flunders.apply(live, flunder({ reference: 'b' }, { app: 'y' }), 'foo', false));
    // THEN one Status names both, managers sorted in the message, as Go words them
    expect(status.status).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message:
        'Apply failed with 2 conflicts: conflicts with "bar":\n- .metadata.labels.app\nconflicts with "kubectl-create" using wardle.example.com/v1alpha1:\n- .spec.reference',
      reason: 'Conflict',
      details: {
        causes: [
          { reason: 'FieldManagerConflict', message: 'conflict with "bar"', field: '.metadata.labels.app' },
          { reason: 'FieldManagerConflict', message: 'conflict with "kubectl-create" using wardle.example.com/v1alpha1', field: '.spec.reference' },
        ],
      },
      code: 409,
    });
  });

  test('force takes the fields over: the others lose them, the applier owns them', () => {
    let live = flunders.update(undefined, flunder({ reference: 'a', referenceType: 'Flunder' }), 'kubectl-create');
    live = { ...live, metadata: { ...(live.metadata as Obj), uid: 'u' } };
    const forced = flunders.apply(live, flunder({ reference: 'b' }), 'foo', true);
    expect((forced.spec as Obj).reference).toBe('b');
    const [apply, update] = entries(forced);
    expect([apply.manager, owned(apply)]).toEqual(['foo', ['.spec.reference']]);
    expect([update.manager, owned(update)]).toEqual(['kubectl-create', ['.spec', '.spec.referenceType']]);
  });

  test('a conflict on a subresource owner is printed with it (conflict_test.go, subresource case)', () => {
    const withStatus = new FieldManager({ schema: POD, apiVersion: 'v1' });
    let live = withStatus.update(undefined, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, status: { phase: 'Running' } }, 'kubelet', 'status');
    live = { ...live, metadata: { ...(live.metadata as Obj), uid: 'u' } };
    expect(entries(live)[0].subresource).toBe('status');
    const status = statusOf(() => withStatus.apply(live, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, status: { phase: 'Failed' } }, 'me', false, 'status'));
    expect(status.status.message).toBe('Apply failed with 1 conflict: conflict with "kubelet" with subresource "status" using v1: .status.phase');
  });
});

describe('the chain of managers', () => {
  const schema: JSONSchemaProps = {
    type: 'object',
    properties: { spec: { type: 'object', additionalProperties: { type: 'string' } }, status: { type: 'object', additionalProperties: { type: 'string' } } },
  };
  const fm = new FieldManager({ schema, apiVersion: 'example.com/v1', resetFields: { '': [['status']], status: [['spec'], ['metadata']] } });
  const obj = (spec: Obj, extra: Obj = {}): Obj => ({ apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 'x', namespace: 'ns' }, spec, ...extra });
  const withUid = (o: Obj): Obj => ({ ...o, metadata: { ...(o.metadata as Obj), uid: 'uid-1', resourceVersion: '5', creationTimestamp: '2026-01-01T00:00:00Z' } });

  test('metadata identity fields are never owned (stripmeta.go)', () => {
    const created = fm.apply(undefined, obj({ a: '1' }, { metadata: { name: 'x', namespace: 'ns', labels: { l: 'v' } } }), 'me', false);
    expect(owned(entries(created)[0])).toEqual(['.metadata.labels.l', '.spec.a']);
  });

  test('an unchanged write keeps the entries and their times; a change updates the time (managedfieldsupdater.go)', () => {
    const live = withUid(fm.update(undefined, obj({ a: '1' }), 'writer', '', new Date('2026-01-01T00:00:00Z')));
    const same = fm.update(live, obj({ a: '1' }, { metadata: live.metadata }), 'writer', '', new Date('2026-01-02T00:00:00Z'));
    expect(entries(same)[0].time).toBe('2026-01-01T00:00:00Z');
    const changed = fm.update(live, obj({ a: '2' }, { metadata: live.metadata }), 'writer', '', new Date('2026-01-02T00:00:00Z'));
    expect(entries(changed)[0].time).toBe('2026-01-02T00:00:00Z');
  });

  test('applying the same configuration again changes nothing, not even the time', () => {
    const first = withUid(fm.apply(undefined, obj({ a: '1' }), 'me', false, '', new Date('2026-01-01T00:00:00Z')));
    const again = fm.apply(first, obj({ a: '1' }), 'me', false, '', new Date('2026-02-01T00:00:00Z'));
    expect(again).toEqual(first);
  });

  test('entries sort Apply first, then by time, manager, apiVersion, subresource (managedfields_test.go TestSortEncodedManagedFields "manager sorted")', () => {
    // GIVEN the upstream case's managers, times and operations
    const managed = { fields: new Map(), times: new Map<string, string | undefined>() };
    const cases: [string, 'Apply' | 'Update', string | undefined][] = [
      ['c', 'Update', '2001-01-01T01:00:00Z'],
      ['a', 'Apply', undefined],
      ['g', 'Apply', undefined],
      ['f', 'Update', '2002-01-01T01:00:00Z'],
      ['i', 'Apply', undefined],
      ['d', 'Update', '2002-01-01T01:00:00Z'],
      ['h', 'Apply', undefined],
      ['e', 'Update', '2003-01-01T01:00:00Z'],
      ['b', 'Apply', undefined],
    ];
    for (const [manager, operation, time] of cases) {
      const id = managerIdentifier({ manager, operation, apiVersion: 'v1' });
      managed.fields.set(id, { set: FieldSet.of(), apiVersion: 'v1', applied: operation === 'Apply' });
      managed.times.set(id, time);
    }
    // THEN the order is upstream's expected one
    expect(encodeManagedFields(managed).map((e) => e.manager)).toEqual(['a', 'b', 'g', 'h', 'i', 'c', 'd', 'f', 'e']);
  });

  test(`more than ${MAX_UPDATE_MANAGERS} Update managers: the oldest merge into ancient-changes (capmanagers_test.go)`, () => {
    // GIVEN twelve managers, each updating its own field one second after the other
    let live = withUid(fm.update(undefined, obj({}), 'creator', '', new Date(Date.UTC(2026, 0, 1))));
    for (let i = 1; i <= 12; i++) {
      const spec = { ...(live.spec as Obj), [`f${i}`]: 'v' };
      live = withUid(fm.update(live, obj(spec, { metadata: live.metadata }), `m${i}`, '', new Date(Date.UTC(2026, 0, 1, 0, 0, i))));
    }
    // THEN ten Update entries remain, the oldest four (the creator's .spec and m1-m3) in ancient-changes
    const list = entries(live);
    expect(list).toHaveLength(MAX_UPDATE_MANAGERS);
    const ancient = list.find((e) => e.manager === 'ancient-changes');
    expect(owned(ancient)).toEqual(['.spec', '.spec.f1', '.spec.f2', '.spec.f3']);
    expect(list.map((e) => e.manager)).toEqual(['ancient-changes', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9', 'm10', 'm11', 'm12']);
  });

  test('an object nobody tracked stays untracked on update, and its first apply records before-first-apply (skipnonapplied.go)', () => {
    // GIVEN an object stored before managedFields existed
    const old = withUid(obj({ a: '1', b: '2' }));
    // WHEN it is updated
    expect((fm.update(old, obj({ a: '1', b: '3' }, { metadata: old.metadata }), 'writer').metadata as Obj).managedFields).toBeUndefined();
    // WHEN it is applied to
    const applied = fm.apply(old, obj({ a: '1' }), 'me', false);
    // THEN the existing fields belong to before-first-apply (as a create would have recorded them), so b stays
    const list = entries(applied);
    expect(list.map((e) => [e.manager, e.operation, owned(e)])).toEqual([
      ['me', 'Apply', ['.spec.a']],
      ['before-first-apply', 'Update', ['.spec', '.spec.a', '.spec.b']],
    ]);
    expect(applied.spec).toEqual({ a: '1', b: '2' });
  });

  test('reset fields: a main-resource apply may not set status, a status write may not own spec (ResetFieldsStrategy)', () => {
    // GIVEN a create by apply whose body has a status: it is dropped (Go's CRD strategy clears it on create)
    const created = withUid(fm.apply(undefined, obj({ a: '1' }, { status: { s: 'mine' } }), 'me', false));
    expect(created.status).toBeUndefined();
    // GIVEN a status written through the status subresource
    const live = withUid(fm.update(created, { ...created, status: { s: 'live' } }, 'controller', 'status'));
    // WHEN the main resource is applied with another status
    const again = withUid(fm.apply(live, obj({ a: '1' }, { status: { s: 'mine' } }), 'me', false));
    // THEN status keeps its live value, and no conflict: the applier neither changes nor owns it
    expect(again.status).toEqual({ s: 'live' });
    expect(owned(entries(again).find((e) => e.manager === 'me'))).toEqual(['.spec.a']);
    // A status apply owns status, never spec, and spec keeps its live value.
    const status = fm.apply(again, obj({ a: 'changed' }, { status: { s: 'ok' } }), 'controller', true, 'status');
    expect(status.status).toEqual({ s: 'ok' });
    expect(status.spec).toEqual({ a: '1' });
    const controller = entries(status).find((e) => e.manager === 'controller' && e.operation === 'Apply');
    expect([controller?.subresource, owned(controller)]).toEqual(['status', ['.status.s']]);
  });

  test('managedFields sent in an update replace the stored ones; [] resets them; undecodable ones are ignored (fieldmanager.go decodeLiveOrNew)', () => {
    const live = withUid(fm.update(undefined, obj({ a: '1' }), 'writer'));
    const rewritten: ManagedFieldsEntry = { manager: 'someone', operation: 'Apply', apiVersion: 'example.com/v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:a': {} } } };
    const meta = live.metadata as Obj;
    expect(entries(fm.update(live, obj({ a: '1' }, { metadata: { ...meta, managedFields: [rewritten] } }), 'writer')).map((e) => e.manager)).toEqual(['someone']);
    expect(entries(fm.update(live, obj({ a: '1' }, { metadata: { ...meta, managedFields: [] } }), 'writer'))).toEqual([]);
    const bad = [{ manager: 'x', operation: 'Sideways', apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: {} }];
    expect(entries(fm.update(live, obj({ a: '1' }, { metadata: { ...meta, managedFields: bad } }), 'writer'))).toEqual(entries(live));
  });
});

describe('kubectl\'s upgrade from client-side apply (lastappliedmanager.go)', () => {
  const schema: JSONSchemaProps = { type: 'object', properties: { spec: { type: 'object', properties: { replicas: int, image: str } } } };
  const fm = new FieldManager({ schema, apiVersion: 'example.com/v1' });
  const obj = (spec: Obj, annotations?: Obj): Obj => ({
    apiVersion: 'example.com/v1',
    kind: 'Thing',
    metadata: { name: 'x', ...(annotations ? { annotations } : {}) },
    spec,
  });

  function clientSideApplied(): Obj {
    // GIVEN `kubectl apply` (client-side): an Update by kubectl-client-side-apply and the annotation
    const lastApplied = '{"apiVersion":"example.com/v1","kind":"Thing","metadata":{"annotations":{},"name":"x"},"spec":{"image":"a","replicas":1}}\n';
    const created = fm.update(undefined, obj({ replicas: 1, image: 'a' }, { [LAST_APPLIED_ANNOTATION]: lastApplied }), 'kubectl-client-side-apply');
    return { ...created, metadata: { ...(created.metadata as Obj), uid: 'u' } };
  }

  test('kubectl applying server-side takes over what it applied client-side, without conflicts', () => {
    const live = clientSideApplied();
    // WHEN kubectl applies a new image server-side
    const stored = fm.apply(live, obj({ replicas: 1, image: 'b' }), 'kubectl', false);
    // THEN no conflict: the image changes, kubectl owns it
    expect((stored.spec as Obj).image).toBe('b');
    const apply = entries(stored).find((e) => e.operation === 'Apply');
    expect(owned(apply)).toEqual(['.spec.image', '.spec.replicas']);
  });

  test('fails for any other manager: the fields belong to kubectl-client-side-apply', () => {
    const live = clientSideApplied();
    expect(() => fm.apply(live, obj({ replicas: 1, image: 'b' }), 'flux', false)).toThrow(
      'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using example.com/v1: .spec.image',
    );
  });

  test('fails when a field differs from what was last applied (someone else changed it since)', () => {
    const live = clientSideApplied();
    // GIVEN someone edited the image after the client-side apply
    const changedByEdit = fm.update(live, { ...live, spec: { replicas: 1, image: 'edited' } }, 'kubectl-edit');
    // WHEN kubectl applies: the field no longer matches the annotation, so it is a real conflict
    expect(() => fm.apply({ ...changedByEdit, metadata: { ...(changedByEdit.metadata as Obj), uid: 'u' } }, obj({ replicas: 1, image: 'b' }), 'kubectl', false)).toThrow(
      /conflict with "kubectl-edit" using example.com\/v1: .spec.image/,
    );
  });
});

describe('errors', () => {
  const fm = new FieldManager({ schema: FLUNDER.versions[0].schema, apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder' });
  const base = { apiVersion: 'wardle.example.com/v1alpha1', kind: 'Flunder', metadata: { name: 'f', namespace: 'ns' } };

  test('fails with 400 for another kind or apiVersion (versioncheck.go)', () => {
    const status = statusOf(() => fm.apply(undefined, { ...base, apiVersion: 'wardle.example.com/v1beta1' }, 'me', false));
    expect([status.code, status.status.reason, status.message]).toEqual([400, 'BadRequest', 'invalid object type: wardle.example.com/v1beta1, Kind=Flunder']);
    const noKind = new FieldManager({ schema: FLUNDER.versions[0].schema, apiVersion: 'wardle.example.com/v1alpha1' });
    expect(statusOf(() => noKind.apply(undefined, { ...base, apiVersion: 'v9' }, 'me', false)).message).toBe(
      'Incorrect version specified in apply patch. Specified patch version: v9, expected: wardle.example.com/v1alpha1',
    );
  });

  test('fails with 400 when the applied object carries managedFields (structuredmerge.go)', () => {
    const status = statusOf(() => fm.apply(undefined, { ...base, metadata: { ...base.metadata, managedFields: [] } }, 'me', false));
    expect([status.code, status.message]).toEqual([400, 'metadata.managedFields must be nil']);
  });

  test('fails with Go\'s "failed to create typed patch object" for a field the schema does not declare, answered 500', () => {
    const status = statusOf(() => fm.apply(undefined, { ...base, spec: { reference: 'x', bogus: 1 } }, 'me', false));
    expect([status.code, status.status.reason, status.message]).toEqual([
      500,
      '',
      'failed to create typed patch object (ns/f; wardle.example.com/v1alpha1, Kind=Flunder): .spec.bogus: field not declared in schema',
    ]);
  });

  test('fails on duplicate or keyless items of an associative list, all errors listed', () => {
    const schema: JSONSchemaProps = {
      type: 'object',
      properties: { list: { type: 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'], items: { type: 'object', properties: { name: str } } } },
    };
    const lists = new FieldManager({ schema, apiVersion: 'v1' });
    expect(() => lists.apply(undefined, { apiVersion: 'v1', kind: 'T', metadata: { name: 'a' }, list: [{ name: 'x' }, { name: 'x' }, {}] }, 'me', false)).toThrow(
      'failed to create typed patch object (/a; /v1, Kind=T): errors:\n  .list: duplicate entries for key [name="x"]\n  .list: element 2: associative list with keys has an element that omits all key fields ["name"] (and doesn\'t have default values for any key fields)',
    );
  });

  test('fails when the live object\'s managedFields cannot be read, naming the entry', () => {
    const live = { ...base, metadata: { ...base.metadata, uid: 'u', managedFields: [{ manager: 'm', operation: 'Update', apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { nope: {} } } }] } };
    expect(() => fm.apply(live, base, 'me', false)).toThrow(ManagedFieldsError);
    expect(() => fm.apply(live, base, 'me', false)).toThrow(/failed to decode managed fields: .*entry 0 .*"nope": missing colon: nope/);
  });
});

/** The schema of the property tests: a scalar, a set, an atomic list, a keyed list and a map. */
const PROPERTY_SCHEMA: JSONSchemaProps = {
  type: 'object',
  properties: {
    spec: {
      type: 'object',
      properties: {
        replicas: int,
        tags: { type: 'array', 'x-kubernetes-list-type': 'set', items: str },
        args: { type: 'array', items: str },
        ports: {
          type: 'array',
          'x-kubernetes-list-type': 'map',
          'x-kubernetes-list-map-keys': ['name'],
          items: { type: 'object', properties: { name: str, port: int } },
        },
        settings: { type: 'object', additionalProperties: str },
      },
    },
  },
};

describe('properties', () => {
  const fm = new FieldManager({ schema: PROPERTY_SCHEMA, apiVersion: 'example.com/v1' });
  const key = fc.constantFrom('a', 'b', 'c', 'd');
  const specArb = fc.record(
    {
      replicas: fc.integer({ min: 0, max: 5 }),
      tags: fc.uniqueArray(key),
      args: fc.array(key, { maxLength: 3 }),
      ports: fc.uniqueArray(fc.record({ name: key, port: fc.integer({ min: 1, max: 3 }) }), { selector: (p) => p.name, maxLength: 3 }),
      settings: fc.dictionary(key, key, { maxKeys: 3 }),
    },
    { requiredKeys: [] },
  );
  const thing = (spec: Obj): Obj => ({ apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 'x' }, spec });
  const withUid = (o: Obj): Obj => ({ ...o, metadata: { ...(o.metadata as Obj), uid: 'u' } });

  test('applying the same configuration twice is a no-op, whatever was applied before by others', () => {
    fc.assert(
      fc.property(specArb, specArb, (other, mine) => {
        const live = withUid(fm.apply(undefined, thing(other), 'other', false));
        const once = withUid(fm.apply(live, thing(mine), 'me', true, '', new Date(Date.UTC(2026, 0, 1))));
        const twice = withUid(fm.apply(once, thing(mine), 'me', false, '', new Date(Date.UTC(2026, 5, 1))));
        return JSON.stringify(twice) === JSON.stringify(once);
      }),
      { numRuns: 200 },
    );
  });

  test('after a forced apply the object holds every applied value, and the applier owns exactly what it applied', () => {
    fc.assert(
      fc.property(specArb, specArb, (other, mine) => {
        const live = withUid(fm.apply(undefined, thing(other), 'other', false));
        const stored = fm.apply(live, thing(mine), 'me', true);
        const spec = (stored.spec ?? {}) as Obj;
        for (const [k, v] of Object.entries(mine)) {
          if (k === 'replicas' || k === 'args') expect(spec[k]).toEqual(v);
          if (k === 'settings') expect(spec.settings).toEqual(expect.objectContaining(v as Obj));
        }
        const mineEntry = entries(stored).find((e) => e.manager === 'me');
        const expected = toFieldSet(compileRootSchema(PROPERTY_SCHEMA), thing(mine)).difference(STRIP_SET);
        return expected.empty() ? mineEntry === undefined : mineEntry !== undefined && FieldSet.fromFieldsV1(mineEntry.fieldsV1).equals(expected);
      }),
      { numRuns: 200 },
    );
  });
});

describe('entries recorded in another apiVersion (merge.Updater with a Converter; multiple_appliers_test.go TestMultipleAppliersFieldRenameConversions)', () => {
  // v1 calls the field `a`, v2 calls it `b`; the conversion renames it.
  const v1: JSONSchemaProps = { type: 'object', properties: { spec: { type: 'object', properties: { a: str, keep: str } } } };
  const v2: JSONSchemaProps = { type: 'object', properties: { spec: { type: 'object', properties: { b: str, keep: str } } } };
  const convert = (object: Obj, to: string): Obj => {
    const spec = { ...((object.spec ?? {}) as Obj) };
    if (to === 'example.com/v2' && 'a' in spec) {
      spec.b = spec.a;
      delete spec.a;
    }
    if (to === 'example.com/v1' && 'b' in spec) {
      spec.a = spec.b;
      delete spec.b;
    }
    return { ...object, apiVersion: to, ...(object.spec === undefined ? {} : { spec }) };
  };
  const inV1 = new FieldManager({ schema: v1, apiVersion: 'example.com/v1', otherVersions: { 'example.com/v2': v2 }, convert });
  const inV2 = new FieldManager({ schema: v2, apiVersion: 'example.com/v2', otherVersions: { 'example.com/v1': v1 }, convert });
  const at = (apiVersion: string, spec: Obj): Obj => ({ apiVersion, kind: 'Thing', metadata: { name: 'x' }, spec });
  const withUid = (o: Obj): Obj => ({ ...o, metadata: { ...(o.metadata as Obj), uid: 'u' } });

  test('fails with a conflict on a renamed field, named in the owner\'s version; force takes it', () => {
    // GIVEN "old" applied spec.a through v1
    const live = withUid(inV1.apply(undefined, at('example.com/v1', { a: '1' }), 'old', false));
    // WHEN "new" applies another value of the same field, spec.b, through v2 (live given in v2)
    const liveV2 = convert(live, 'example.com/v2');
    const conflict = (() => {
      try {
        inV2.apply(liveV2, at('example.com/v2', { b: '2' }), 'new', false);
      } catch (e) {
        return e as ApplyConflictError;
      }
      throw new Error('expected a conflict');
    })();
    // THEN the conflict names the field as its owner recorded it
    expect(conflict.message).toBe('Apply failed with 1 conflict: conflict with "old": .spec.a');
    // WHEN forced, "old" loses the field: nothing left, its entry goes
    const forced = inV2.apply(liveV2, at('example.com/v2', { b: '2' }), 'new', true);
    expect(entries(forced).map((e) => [e.manager, e.apiVersion, owned(e)])).toEqual([['new', 'example.com/v2', ['.spec.b']]]);
  });

  test('without the versions, entries are compared as recorded: the renamed field is not seen as owned', () => {
    const plainV2 = new FieldManager({ schema: v2, apiVersion: 'example.com/v2' });
    const live = withUid(inV1.apply(undefined, at('example.com/v1', { a: '1' }), 'old', false));
    const stored = plainV2.apply(convert(live, 'example.com/v2'), at('example.com/v2', { b: '2' }), 'new', false);
    expect(entries(stored).map((e) => e.manager)).toEqual(['new', 'old']);
  });

  test('an applier that switches version still prunes what it stopped applying (prune in the last set\'s version)', () => {
    // GIVEN "me" applied a and keep through v1
    const live = withUid(inV1.apply(undefined, at('example.com/v1', { a: '1', keep: 'k' }), 'me', false));
    // WHEN it applies through v2 with only b (the same field as a)
    const stored = inV2.apply(convert(live, 'example.com/v2'), at('example.com/v2', { b: '1' }), 'me', false);
    // THEN keep, which it no longer applies, is gone; b stays
    expect(stored.spec).toEqual({ b: '1' });
    expect(entries(stored).map((e) => [e.manager, e.apiVersion, owned(e)])).toEqual([['me', 'example.com/v2', ['.spec.b']]]);
  });

  test('an entry in a version the kind does not have is dropped (Go\'s missing-version rule)', () => {
    const created = withUid(inV1.update(undefined, at('example.com/v1', { a: '1' }), 'writer'));
    const ghost: ManagedFieldsEntry = { manager: 'ghost', operation: 'Update', apiVersion: 'example.com/v0', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:keep': {} } } };
    const live = { ...created, metadata: { ...(created.metadata as Obj), managedFields: [...entries(created), ghost] } };
    const stored = inV1.update(live, { ...live, spec: { a: '2' } }, 'writer');
    expect(entries(stored).map((e) => e.manager)).toEqual(['writer']);
  });
});

describe('validation of the applied object (typed/validate.go)', () => {
  const schema: JSONSchemaProps = { type: 'object', properties: { spec: { type: 'object', properties: { replicas: int, name: str, on: { type: 'boolean' } } } } };
  const fm = new FieldManager({ schema, apiVersion: 'v1' });
  const apply = (spec: Obj) => () => fm.apply(undefined, { apiVersion: 'v1', kind: 'T', metadata: { name: 'a' }, spec }, 'me', false);

  test('fails on a scalar of the wrong type, worded as validateScalar', () => {
    expect(apply({ replicas: 'three' })).toThrow('(/a; /v1, Kind=T): .spec.replicas: expected numeric (int or float), got string');
    expect(apply({ name: 1 })).toThrow('.spec.name: expected string, got &value.valueUnstructured{Value:1}');
    expect(apply({ on: 'yes' })).toThrow('.spec.on: expected boolean, got &{yes}');
  });

  test('fails on the first undeclared field of a map only, as Go stops there', () => {
    expect(apply({ x: 1, y: 2 })).toThrow(/: \.spec\.x: field not declared in schema$/);
  });

  test('null is a valid value of any field', () => {
    expect(() => apply({ replicas: null, name: null })()).not.toThrow();
  });
});

describe('property: ownership never outlives the field', () => {
  const fm = new FieldManager({ schema: PROPERTY_SCHEMA, apiVersion: 'example.com/v1' });
  const key = fc.constantFrom('a', 'b', 'c');
  const specArb = fc.record(
    {
      replicas: fc.integer({ min: 0, max: 2 }),
      tags: fc.uniqueArray(key),
      args: fc.array(key, { maxLength: 2 }),
      ports: fc.uniqueArray(fc.record({ name: key, port: fc.integer({ min: 1, max: 2 }) }, { requiredKeys: ['name'] }), { selector: (p) => p.name, maxLength: 3 }),
      settings: fc.dictionary(key, key, { maxKeys: 2 }),
    },
    { requiredKeys: [] },
  );
  const opArb = fc.record({ manager: fc.constantFrom('a', 'b', 'c'), kind: fc.constantFrom('apply', 'force', 'update'), spec: specArb });

  /** Whether the path leads to something in the object (a field, a keyed item, a set value, an index). */
  function exists(value: unknown, path: Path): boolean {
    let here: unknown = value;
    for (const pe of path) {
      if (pe.kind === 'field') {
        if (here === null || typeof here !== 'object' || Array.isArray(here) || !(pe.name in (here as Obj))) return false;
        here = (here as Obj)[pe.name];
      } else if (pe.kind === 'key') {
        if (!Array.isArray(here)) return false;
        here = here.find((item) => pe.fields.every(([k, v]) => (item as Obj)[k] === v));
        if (here === undefined) return false;
      } else if (pe.kind === 'value') {
        if (!Array.isArray(here) || !here.includes(pe.value)) return false;
        here = pe.value;
      } else {
        if (!Array.isArray(here) || pe.index >= here.length) return false;
        here = here[pe.index];
      }
    }
    return true;
  }

  test('after any sequence of applies and updates by several managers, every owned field exists', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 6 }), (ops) => {
        let live: Obj | undefined;
        for (const op of ops) {
          // GIVEN a write: an update carries the live metadata (as a PUT of what was read), an apply only a name
          const body: Obj = { apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 'x' }, spec: op.spec };
          try {
            const stored =
              op.kind === 'update'
                ? fm.update(live, { ...body, metadata: { ...((live?.metadata as Obj) ?? { name: 'x' }) } }, op.manager)
                : fm.apply(live, body, op.manager, op.kind === 'force');
            live = { ...stored, metadata: { ...(stored.metadata as Obj), uid: 'u' } };
          } catch (e) {
            if (!(e instanceof ApplyConflictError)) throw e;
          }
          // THEN every path any entry owns is in the object
          for (const entry of entries(live as Obj)) {
            for (const path of FieldSet.fromFieldsV1(entry.fieldsV1).paths()) {
              if (!exists(live, path)) throw new Error(`${entry.manager}/${entry.operation} owns ${path.map((pe) => pe.id).join(' ')}, which is not in ${JSON.stringify(live)}`);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
