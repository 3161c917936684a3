import { k8s, ISubject } from 'cdk8s-plus-28';

/** The RBAC subject for a cdk8s-plus subject; a ServiceAccount without a namespace gets `defaultNamespace`. */
export function _rbacSubject(subject: ISubject, defaultNamespace: string): k8s.Subject {
  const config = subject.toSubjectConfiguration();
  if (config.kind === 'ServiceAccount') {
    // RBAC refuses any apiGroup but "" for ServiceAccount subjects; cdk8s-plus says "core".
    return { kind: 'ServiceAccount', name: config.name, namespace: config.namespace ?? defaultNamespace };
  }
  return { kind: config.kind, name: config.name, apiGroup: config.apiGroup, namespace: config.namespace };
}
