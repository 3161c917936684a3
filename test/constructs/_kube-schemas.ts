import { APIService } from 'kubernetes-models/apiregistration.k8s.io/v1';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { CronJob } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ClusterRole, ClusterRoleBinding, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';

/** A synthesized object, as `Testing.synth` returns it. */
export type KubeObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [key: string]: unknown }; [key: string]: unknown };

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/CronJob': CronJob,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'apiregistration.k8s.io/v1/APIService': APIService,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
};

/** Kinds that are not Kubernetes' own (cert-manager): no built-in schema to check them against. */
const FOREIGN_API_VERSIONS = ['cert-manager.io/v1'];

/**
 * Validates an object against the Kubernetes OpenAPI schema (kubernetes-models); throws for an
 * invalid object and for a kind this helper does not know, so a new kind cannot slip past.
 */
export function validateKubeObject(object: KubeObject): void {
  if (FOREIGN_API_VERSIONS.includes(object.apiVersion)) return;
  const Model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (Model === undefined) throw new Error(`no schema for ${object.apiVersion} ${object.kind} in the test helper`);
  new Model(object as never).validate();
}

/** Objects that Kubernetes keeps at the cluster scope: they must carry no namespace. */
export const CLUSTER_SCOPED_KINDS = ['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'APIService', 'CustomResourceDefinition'];

export function findObject(objects: KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name === undefined ? '' : ` "${name}"`}, found ${found.length}`);
  return found[0];
}
