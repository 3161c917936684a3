import { k8s, IServiceAccount } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _rbacSubject } from './_subject';
import { _checkDns1123Label } from './_validate';

/**
 * What the bundled server reads from the cluster by itself: namespaces, for the
 * NamespaceLifecycle admission rule and admission selectors (as kubernetes/sample-apiserver's
 * RBAC grants), and what its MutatingAdmissionWebhook, ValidatingAdmissionWebhook and
 * ValidatingAdmissionPolicy plugins watch. Delegated authentication and authorization are
 * granted apart (`AuthDelegation`).
 */
export const API_SERVER_RULES: readonly k8s.PolicyRule[] = [
  { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] },
  {
    apiGroups: ['admissionregistration.k8s.io'],
    resources: ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations', 'validatingadmissionpolicies', 'validatingadmissionpolicybindings'],
    verbs: ['get', 'list', 'watch'],
  },
];

/**
 * What a server built on the Go library k8s.io/apiserver (e.g. kubernetes/sample-apiserver)
 * also reads, as the aggregator e2e test grants it: the admission webhook and policy
 * configurations, and the API Priority and Fairness objects. Pass them as `serverRules` when
 * `image` is such a server; the bundled server reads the admission ones too (in
 * `API_SERVER_RULES`), not the flow-control ones.
 */
export const GENERIC_APISERVER_RULES: readonly k8s.PolicyRule[] = [
  {
    apiGroups: ['admissionregistration.k8s.io'],
    resources: [
      'mutatingwebhookconfigurations',
      'validatingwebhookconfigurations',
      'validatingadmissionpolicies',
      'validatingadmissionpolicybindings',
    ],
    verbs: ['get', 'list', 'watch'],
  },
  { apiGroups: ['flowcontrol.apiserver.k8s.io'], resources: ['prioritylevelconfigurations', 'flowschemas'], verbs: ['get', 'list', 'watch'] },
];

export interface ApiServerClusterRoleProps {
  /** The extension server's ServiceAccount. */
  readonly serviceAccount: IServiceAccount;
  /** Namespace of that ServiceAccount (used when the ServiceAccount does not name its own). */
  readonly namespace: string;
  /** Name of the ClusterRole and its ClusterRoleBinding, usually the server's name. */
  readonly name: string;
  /**
   * Rules beyond `API_SERVER_RULES`, for a server that reads more (e.g. `GENERIC_APISERVER_RULES`).
   * @default - none
   */
  readonly extraRules?: readonly k8s.PolicyRule[];
}

export interface IApiServerClusterRole {
  readonly clusterRole: k8s.KubeClusterRole;
  readonly clusterRoleBinding: k8s.KubeClusterRoleBinding;
}

/** Steps 10 and 11: a ClusterRole for what the server itself reads, bound to its ServiceAccount. */
export class ApiServerClusterRole extends Construct implements IApiServerClusterRole {
  public readonly clusterRole: k8s.KubeClusterRole;
  public readonly clusterRoleBinding: k8s.KubeClusterRoleBinding;

  constructor(scope: Construct, id: string, props: ApiServerClusterRoleProps) {
    super(scope, id);
    const subject = _rbacSubject(props.serviceAccount, _checkDns1123Label('namespace', props.namespace));

    this.clusterRole = new k8s.KubeClusterRole(this, 'Resource', {
      metadata: { name: props.name },
      rules: [...API_SERVER_RULES, ...(props.extraRules ?? [])],
    });
    this.clusterRoleBinding = new k8s.KubeClusterRoleBinding(this, 'Binding', {
      metadata: { name: props.name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: props.name },
      subjects: [subject],
    });
  }
}
