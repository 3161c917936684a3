import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { ApiGroupDefinition, KindDefinition } from '../apis';
// The subresources a served version has, which the bundled server serves (apis/features.ts): grants follow what exists.
import { subresourcesOf } from '../apis/features';

export const AGGREGATE_TO_VIEW = 'rbac.authorization.k8s.io/aggregate-to-view';
export const AGGREGATE_TO_EDIT = 'rbac.authorization.k8s.io/aggregate-to-edit';
export const AGGREGATE_TO_ADMIN = 'rbac.authorization.k8s.io/aggregate-to-admin';

const READ_VERBS = ['get', 'list', 'watch'];
const WRITE_VERBS = ['create', 'update', 'patch', 'delete', 'deletecollection'];

export interface ApiResourceRolesProps {
  /** The API whose resources the roles cover. */
  readonly api: ApiGroupDefinition;
  /**
   * Prefix of the two ClusterRole names, `<prefix>:reader` and `<prefix>:editor`.
   * @default - the API group, e.g. `wardle.example.com`
   */
  readonly namePrefix?: string;
}

export interface IApiResourceRoles {
  readonly reader: k8s.KubeClusterRole;
  readonly editor: k8s.KubeClusterRole;
  /** Reads of the cluster-scoped kinds, not aggregated: bind it to who may see them. @default - none when every kind is namespaced */
  readonly clusterReader?: k8s.KubeClusterRole;
  /** Writes of the cluster-scoped kinds, not aggregated: bind it to who manages them. @default - none when every kind is namespaced */
  readonly clusterEditor?: k8s.KubeClusterRole;
}

/**
 * Step 10 (README, "The fifteen steps"), for the API's users: a reader and an editor ClusterRole
 * over the group's namespaced resources (with their `status` and `scale` subresources), labelled
 * so that Kubernetes aggregates them into the default user-facing roles: the reader into `view`,
 * the editor into `edit` and `admin`, as the Kubernetes documentation does for custom resources.
 *
 * Cluster-scoped kinds are left out of those: `view`, `edit` and `admin` are the roles handed out
 * per namespace, and a ClusterRoleBinding to `edit` (common for CI) would otherwise let its
 * holder create and delete objects that belong to no namespace. They get a `<prefix>:cluster-reader`
 * and a `<prefix>:cluster-editor` of their own, aggregated into nothing, for an explicit binding.
 *
 * Status is read-only for users: only the server (or a controller) writes it.
 */
export class ApiResourceRoles extends Construct implements IApiResourceRoles {
  public readonly reader: k8s.KubeClusterRole;
  public readonly editor: k8s.KubeClusterRole;
  public readonly clusterReader?: k8s.KubeClusterRole;
  public readonly clusterEditor?: k8s.KubeClusterRole;

  constructor(scope: Construct, id: string, props: ApiResourceRolesProps) {
    super(scope, id);
    const { group, kinds } = props.api;
    const prefix = props.namePrefix ?? group;
    const namespaced = kinds.filter((kind) => kind.scope === 'Namespaced');
    const clusterScoped = kinds.filter((kind) => kind.scope !== 'Namespaced');

    this.reader = new k8s.KubeClusterRole(this, 'Reader', {
      metadata: { name: `${prefix}:reader`, labels: { [AGGREGATE_TO_VIEW]: 'true' } },
      rules: readerRules(group, namespaced),
    });
    this.editor = new k8s.KubeClusterRole(this, 'Editor', {
      metadata: { name: `${prefix}:editor`, labels: { [AGGREGATE_TO_EDIT]: 'true', [AGGREGATE_TO_ADMIN]: 'true' } },
      rules: editorRules(group, namespaced),
    });
    if (clusterScoped.length > 0) {
      this.clusterReader = new k8s.KubeClusterRole(this, 'ClusterReader', {
        metadata: { name: `${prefix}:cluster-reader` },
        rules: readerRules(group, clusterScoped),
      });
      this.clusterEditor = new k8s.KubeClusterRole(this, 'ClusterEditor', {
        metadata: { name: `${prefix}:cluster-editor` },
        rules: editorRules(group, clusterScoped),
      });
    }
  }
}

/** Reads of the kinds and their subresources (none when there are no kinds: an empty rule would be invalid). */
function readerRules(group: string, kinds: readonly KindDefinition[]): k8s.PolicyRule[] {
  const readable = kinds.flatMap((kind) => [kind.plural, ...subresourcesOf(kind).map((sub) => `${kind.plural}/${sub}`)]);
  return readable.length > 0 ? [{ apiGroups: [group], resources: readable, verbs: READ_VERBS }] : [];
}

/** Reads, writes of the kinds (not of status), and scale updates. */
function editorRules(group: string, kinds: readonly KindDefinition[]): k8s.PolicyRule[] {
  const scalable = kinds.filter((kind) => subresourcesOf(kind).includes('scale')).map((kind) => `${kind.plural}/scale`);
  return [
    ...readerRules(group, kinds),
    ...(kinds.length > 0 ? [{ apiGroups: [group], resources: kinds.map((kind) => kind.plural), verbs: WRITE_VERBS }] : []),
    ...(scalable.length > 0 ? [{ apiGroups: [group], resources: scalable, verbs: ['update', 'patch'] }] : []),
  ];
}
