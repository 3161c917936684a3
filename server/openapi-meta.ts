/**
 * The `io.k8s.apimachinery.pkg.apis.meta.v1.*` definitions the published specs refer to, in
 * OpenAPI v2 form (`#/definitions/…` references). Names, properties, types, formats, required
 * lists and `x-kubernetes-*` extensions follow the Go types of k8s.io/apimachinery; the
 * descriptions are this project's own, short ones. When kube-apiserver merges the spec and finds
 * a same-named definition with other content, it keeps both (renaming ours), so clients are
 * unaffected either way.
 */

type Schema = Record<string, unknown>;

const META = 'io.k8s.apimachinery.pkg.apis.meta.v1';
const ref = (name: string): Schema => ({ $ref: `#/definitions/${name}` });
const str = (description: string): Schema => ({ description, type: 'string' });
const int = (description: string, format: 'int32' | 'int64'): Schema => ({ description, format, type: 'integer' });
const bool = (description: string): Schema => ({ description, type: 'boolean' });
const stringMap = (description: string): Schema => ({ additionalProperties: { type: 'string' }, description, type: 'object' });
const stringList = (description: string, listType: 'atomic' | 'set'): Schema => ({ description, items: { type: 'string' }, type: 'array', 'x-kubernetes-list-type': listType });

const API_VERSION = str('APIVersion is the versioned schema of this representation of an object.');
const KIND = str('Kind is the REST resource this object represents, in CamelCase.');

/** A group/version/kind as the `x-kubernetes-group-version-kind` extension lists it. */
export interface Gvk {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

/**
 * The meta definitions. `DeleteOptions` and `WatchEvent` are registered in every served group
 * version (as the Go scheme registers them), so their GVK lists name `groupVersions` too.
 */
export function metaDefinitions(groupVersions: readonly { group: string; version: string }[]): Record<string, Schema> {
  const inEveryVersion = (kind: string): Gvk[] => [{ group: '', kind, version: 'v1' }, ...groupVersions.map((gv) => ({ group: gv.group, kind, version: gv.version }))];
  return {
    [`${META}.APIResource`]: {
      description: 'APIResource names a resource and tells whether it is namespaced.',
      properties: {
        categories: stringList('categories are the groupings the resource belongs to, e.g. all.', 'atomic'),
        group: str('group is the preferred group of the resource; empty means the group of the list.'),
        kind: str('kind is the kind of the resource.'),
        name: str('name is the plural name of the resource.'),
        namespaced: bool('namespaced tells whether the resource lives in a namespace.'),
        shortNames: stringList('shortNames are suggested short names of the resource.', 'atomic'),
        singularName: str('singularName is the singular name of the resource.'),
        storageVersionHash: str('storageVersionHash is an opaque hash of the storage version.'),
        verbs: { description: 'verbs are the kube verbs the resource supports.', items: { type: 'string' }, type: 'array' },
        version: str('version is the preferred version of the resource; empty means the version of the list.'),
      },
      required: ['name', 'singularName', 'namespaced', 'kind', 'verbs'],
      type: 'object',
    },
    [`${META}.APIResourceList`]: {
      description: 'APIResourceList lists the resources of one group version.',
      properties: {
        apiVersion: API_VERSION,
        groupVersion: str('groupVersion is the group and version this list is for.'),
        kind: KIND,
        resources: { description: 'resources are the resources of the group version.', items: ref(`${META}.APIResource`), type: 'array', 'x-kubernetes-list-type': 'atomic' },
      },
      required: ['groupVersion', 'resources'],
      type: 'object',
      'x-kubernetes-group-version-kind': [{ group: '', kind: 'APIResourceList', version: 'v1' }],
    },
    [`${META}.DeleteOptions`]: {
      description: 'DeleteOptions may be sent when deleting an object.',
      properties: {
        apiVersion: API_VERSION,
        dryRun: stringList('dryRun: All processes every stage without persisting.', 'atomic'),
        gracePeriodSeconds: int('gracePeriodSeconds is the time before the object is deleted; 0 deletes at once.', 'int64'),
        ignoreStoreReadErrorWithClusterBreakingPotential: bool('ignoreStoreReadErrorWithClusterBreakingPotential deletes an object that cannot be read from storage.'),
        kind: KIND,
        orphanDependents: bool('Deprecated: use propagationPolicy.'),
        preconditions: { ...ref(`${META}.Preconditions`), description: 'preconditions must hold for the deletion to proceed, else 409 Conflict.' },
        propagationPolicy: str('propagationPolicy: Orphan, Background or Foreground.'),
      },
      type: 'object',
      'x-kubernetes-group-version-kind': inEveryVersion('DeleteOptions'),
    },
    [`${META}.FieldsV1`]: {
      description: 'FieldsV1 is a set of fields in the JSON trie format of server-side apply.',
      type: 'object',
    },
    [`${META}.ListMeta`]: {
      description: 'ListMeta is the metadata of a list.',
      properties: {
        continue: str('continue is set when more items can be fetched with the same query.'),
        remainingItemCount: int('remainingItemCount is the number of items after this page, when known.', 'int64'),
        resourceVersion: str('resourceVersion is the revision of the list; opaque to clients.'),
        selfLink: str('Deprecated: selfLink is not set.'),
      },
      type: 'object',
    },
    [`${META}.ManagedFieldsEntry`]: {
      description: 'ManagedFieldsEntry records which manager owns which fields of an object.',
      properties: {
        apiVersion: str('apiVersion is the version of the fields set.'),
        fieldsType: str('fieldsType is the format of the fields set: FieldsV1.'),
        fieldsV1: { ...ref(`${META}.FieldsV1`), description: 'fieldsV1 holds the fields set.' },
        manager: str('manager is the identifier of the workflow managing these fields.'),
        operation: str('operation is Apply or Update.'),
        subresource: str('subresource is the subresource the object was updated through.'),
        time: { ...ref(`${META}.Time`), description: 'time is when the fields set last changed.' },
      },
      type: 'object',
    },
    [`${META}.ObjectMeta`]: {
      description: 'ObjectMeta is the metadata every persisted object has.',
      properties: {
        annotations: stringMap('annotations are arbitrary, unindexed key/value pairs.'),
        creationTimestamp: { ...ref(`${META}.Time`), description: 'creationTimestamp is when the object was created; set by the server.' },
        deletionGracePeriodSeconds: int('deletionGracePeriodSeconds is the grace period of a requested deletion.', 'int64'),
        deletionTimestamp: { ...ref(`${META}.Time`), description: 'deletionTimestamp is when the object will be deleted; set by the server.' },
        finalizers: { ...stringList('finalizers must be empty before the object is deleted.', 'set'), 'x-kubernetes-patch-strategy': 'merge' },
        generateName: str('generateName is a prefix the server completes to a unique name when name is empty.'),
        generation: int('generation counts changes to the desired state; set by the server.', 'int64'),
        labels: stringMap('labels are key/value pairs that selectors match.'),
        managedFields: { description: 'managedFields record the field managers; internal.', items: ref(`${META}.ManagedFieldsEntry`), type: 'array', 'x-kubernetes-list-type': 'atomic' },
        name: str('name is unique in its namespace (or cluster) for the resource.'),
        namespace: str('namespace is the namespace of the object; empty for cluster-scoped objects.'),
        ownerReferences: {
          description: 'ownerReferences name the objects this one depends on, for garbage collection.',
          items: ref(`${META}.OwnerReference`),
          type: 'array',
          'x-kubernetes-list-map-keys': ['uid'],
          'x-kubernetes-list-type': 'map',
          'x-kubernetes-patch-merge-key': 'uid',
          'x-kubernetes-patch-strategy': 'merge',
        },
        resourceVersion: str('resourceVersion is the revision of the object; opaque, for optimistic concurrency and watches.'),
        selfLink: str('Deprecated: selfLink is not set.'),
        uid: str('uid is unique in time and space for the object; set by the server.'),
      },
      type: 'object',
    },
    [`${META}.OwnerReference`]: {
      description: 'OwnerReference identifies an owner of an object.',
      properties: {
        apiVersion: str('apiVersion of the owner.'),
        blockOwnerDeletion: bool('blockOwnerDeletion keeps the owner from being deleted in the foreground before this object.'),
        controller: bool('controller marks the managing controller.'),
        kind: str('kind of the owner.'),
        name: str('name of the owner.'),
        uid: str('uid of the owner.'),
      },
      required: ['apiVersion', 'kind', 'name', 'uid'],
      type: 'object',
      'x-kubernetes-map-type': 'atomic',
    },
    [`${META}.Patch`]: {
      description: 'Patch is the body of a PATCH request.',
      type: 'object',
    },
    [`${META}.Preconditions`]: {
      description: 'Preconditions must hold before an operation.',
      properties: {
        resourceVersion: str('resourceVersion the object must have.'),
        uid: str('uid the object must have.'),
      },
      type: 'object',
    },
    [`${META}.Status`]: {
      description: 'Status is the result of an operation that returns no object, and every error.',
      properties: {
        apiVersion: API_VERSION,
        code: int('code is the HTTP status code.', 'int32'),
        details: { ...ref(`${META}.StatusDetails`), description: 'details add data about the reason.', 'x-kubernetes-list-type': 'atomic' },
        kind: KIND,
        message: str('message is a human-readable description.'),
        metadata: { ...ref(`${META}.ListMeta`), description: 'Standard list metadata.' },
        reason: str('reason is a machine-readable CamelCase cause, e.g. NotFound.'),
        status: str('status is Success or Failure.'),
      },
      type: 'object',
      'x-kubernetes-group-version-kind': [{ group: '', kind: 'Status', version: 'v1' }],
    },
    [`${META}.StatusCause`]: {
      description: 'StatusCause is one cause of an error.',
      properties: {
        field: str('field is the path of the field at fault, e.g. spec.referenceType.'),
        message: str('message is a human-readable description of the cause.'),
        reason: str('reason is a machine-readable description of the cause.'),
      },
      type: 'object',
    },
    [`${META}.StatusDetails`]: {
      description: 'StatusDetails add data to a Status.',
      properties: {
        causes: { description: 'causes list the individual problems.', items: ref(`${META}.StatusCause`), type: 'array', 'x-kubernetes-list-type': 'atomic' },
        group: str('group of the resource the status is about.'),
        kind: str('kind of the resource the status is about.'),
        name: str('name of the object the status is about.'),
        retryAfterSeconds: int('retryAfterSeconds suggests when to retry.', 'int32'),
        uid: str('uid of the object the status is about.'),
      },
      type: 'object',
    },
    [`${META}.Time`]: {
      description: 'Time is an RFC 3339 timestamp with second precision.',
      format: 'date-time',
      type: 'string',
    },
    [`${META}.WatchEvent`]: {
      description: 'WatchEvent is one event of a watch stream.',
      properties: {
        object: { ...ref('io.k8s.apimachinery.pkg.runtime.RawExtension'), description: 'object is the object of the event, or a Status for ERROR.' },
        type: str('type is ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.'),
      },
      required: ['type', 'object'],
      type: 'object',
      'x-kubernetes-group-version-kind': inEveryVersion('WatchEvent'),
    },
    'io.k8s.apimachinery.pkg.runtime.RawExtension': {
      description: 'RawExtension holds an embedded object.',
      type: 'object',
    },
  };
}

export const META_PREFIX = META;
