import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';

export interface ApiServiceDeployerRoleProps {
  /** Name of the ClusterRole (and of its binding). */
  readonly name: string;
  /** The APIService names (`<version>.<group>`) the deployer may manage. */
  readonly apiServiceNames: readonly string[];
  /**
   * Who may deploy: a ClusterRoleBinding is created for them.
   * @default - no binding; bind the role yourself
   */
  readonly subjects?: readonly k8s.Subject[];
}

export interface IApiServiceDeployerRole {
  readonly clusterRole: k8s.KubeClusterRole;
  readonly clusterRoleBinding?: k8s.KubeClusterRoleBinding;
}

/**
 * Step 2 (README, "The fifteen steps"): the RBAC that lets a deployer (a CI ServiceAccount, a GitOps controller) register
 * this server's APIServices and nothing else.
 *
 * Kubernetes RBAC cannot restrict `create` by `resourceNames` (the name is not known when a
 * create is authorized), so `create` is granted on `apiservices` in general, while `get`,
 * `update`, `patch` and `delete` are limited to this server's names. A deployer can therefore
 * create another APIService but never change or delete one it does not own; pair it with an
 * admission policy if creation too must be fenced.
 */
export class ApiServiceDeployerRole extends Construct implements IApiServiceDeployerRole {
  public readonly clusterRole: k8s.KubeClusterRole;
  public readonly clusterRoleBinding?: k8s.KubeClusterRoleBinding;

  constructor(scope: Construct, id: string, props: ApiServiceDeployerRoleProps) {
    super(scope, id);
    if (props.apiServiceNames.length === 0) {
      throw new Error(`apiServiceNames of ApiServiceDeployerRole "${props.name}" is empty (expected at least one APIService name)`);
    }
    this.clusterRole = new k8s.KubeClusterRole(this, 'Resource', {
      metadata: { name: props.name },
      rules: [
        { apiGroups: ['apiregistration.k8s.io'], resources: ['apiservices'], verbs: ['create'] },
        {
          apiGroups: ['apiregistration.k8s.io'],
          resources: ['apiservices'],
          resourceNames: [...props.apiServiceNames],
          verbs: ['get', 'update', 'patch', 'delete'],
        },
      ],
    });
    if (props.subjects !== undefined && props.subjects.length > 0) {
      this.clusterRoleBinding = new k8s.KubeClusterRoleBinding(this, 'Binding', {
        metadata: { name: props.name },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: props.name },
        subjects: [...props.subjects],
      });
    }
  }
}
