import { k8s, ISubject } from 'cdk8s-plus-28';

/** An RBAC subject for a cdk8s-plus subject; a ServiceAccount without a namespace gets `defaultNamespace`. */
export function _rbacSubject(subject: ISubject, defaultNamespace: string): k8s.Subject {
  const config = subject.toSubjectConfiguration();
  return {
    kind: config.kind,
    name: config.name,
    apiGroup: config.apiGroup,
    namespace: config.kind === 'ServiceAccount' ? (config.namespace ?? defaultNamespace) : config.namespace,
  };
}
