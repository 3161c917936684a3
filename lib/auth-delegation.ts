import { k8s, IServiceAccount } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _rbacSubject } from './_subject';
import { _checkDns1123Label } from './_validate';

/** The namespace that holds the `extension-apiserver-authentication` ConfigMap. */
export const AUTHENTICATION_CONFIG_NAMESPACE = 'kube-system';

export interface AuthDelegationProps {
  /** The extension server's ServiceAccount. */
  readonly serviceAccount: IServiceAccount;
  /** Namespace of that ServiceAccount (used when the ServiceAccount does not name its own). */
  readonly namespace: string;
  /** Prefix of the binding names, usually the server's name. */
  readonly name: string;
}

export interface IAuthDelegation {
  readonly authDelegatorBinding: k8s.KubeClusterRoleBinding;
  readonly authenticationReaderBinding: k8s.KubeRoleBinding;
}

/**
 * Steps 12 and 13: what delegated authentication and authorization need.
 *
 * - A ClusterRoleBinding to `system:auth-delegator`, so the server may create TokenReviews and
 *   SubjectAccessReviews.
 * - A RoleBinding **in kube-system** (whatever the server's namespace) to the Role
 *   `extension-apiserver-authentication-reader`, so the server may read the ConfigMap
 *   `kube-system/extension-apiserver-authentication` (client CA, request-header CA and
 *   header names). Without it the server cannot trust the aggregator's proxy headers.
 */
export class AuthDelegation extends Construct implements IAuthDelegation {
  public readonly authDelegatorBinding: k8s.KubeClusterRoleBinding;
  public readonly authenticationReaderBinding: k8s.KubeRoleBinding;

  constructor(scope: Construct, id: string, props: AuthDelegationProps) {
    super(scope, id);
    const subject = _rbacSubject(props.serviceAccount, _checkDns1123Label('namespace', props.namespace));

    this.authDelegatorBinding = new k8s.KubeClusterRoleBinding(this, 'AuthDelegator', {
      metadata: { name: `${props.name}:system:auth-delegator` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' },
      subjects: [subject],
    });

    this.authenticationReaderBinding = new k8s.KubeRoleBinding(this, 'AuthenticationReader', {
      metadata: { name: `${props.name}:extension-apiserver-authentication-reader`, namespace: AUTHENTICATION_CONFIG_NAMESPACE },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'extension-apiserver-authentication-reader' },
      subjects: [subject],
    });
  }
}
