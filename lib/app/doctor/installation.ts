import * as fs from 'node:fs';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { DoctorUsageError } from './errors';
import type { Unstructured } from './kube';

/** A Kubernetes object as a manifest holds it. */
export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string>; readonly annotations?: Record<string, string> };
  readonly [field: string]: Unstructured;
}

export interface ApiServiceRef {
  /** `v1beta1.wardle.example.com` */
  readonly name: string;
  readonly group: string;
  readonly version: string;
}

/** What doctor looks for: one aggregated API server and the objects that make it. */
export interface Installation {
  /** Where the expectations came from, for the report: `dist/ (29 objects)`. */
  readonly source: string;
  readonly namespace: string;
  /** The Service the APIServices point at (and, by the constructs' naming, the Deployment's and ServiceAccount's name). */
  readonly serviceName: string;
  readonly apiServices: readonly ApiServiceRef[];
  /** The manifests to compare with the cluster; empty when doctor only has names. */
  readonly objects: readonly KubeObject[];
  readonly deploymentName: string;
  readonly serviceAccountName: string;
  /** The etcd StatefulSet deployed with the server, when the storage is etcd. */
  readonly etcdStatefulSetName?: string;
}

/** Every object of the YAML files of a synth's output directory. */
export function readManifests(directory: string): KubeObject[] {
  let files: string[];
  try {
    files = fs.readdirSync(directory).filter((file) => /\.ya?ml$/.test(file)).sort();
  } catch (error) {
    throw new DoctorUsageError(`--dist "${directory}" cannot be read: ${(error as Error).message} (expected the output directory of a synth, e.g. "dist")`);
  }
  if (files.length === 0) throw new DoctorUsageError(`--dist "${directory}" holds no .yaml file (expected the output directory of a synth: run "npm run synth" first)`);
  const objects: KubeObject[] = [];
  for (const file of files) {
    for (const document of YAML.parseAllDocuments(fs.readFileSync(path.join(directory, file), 'utf8'))) {
      const object = document.toJS() as KubeObject | null;
      if (object && typeof object === 'object' && typeof object.kind === 'string' && object.metadata?.name) objects.push(object);
    }
  }
  return objects;
}

/**
 * The installation in `objects` that `namespace`/`name` select (both optional when the output
 * holds one server): its APIServices, and the Deployment, ServiceAccount and etcd behind their Service.
 */
export function installationFromManifests(objects: readonly KubeObject[], source: string, namespace?: string, name?: string): Installation {
  const apiServices = objects.filter((o) => o.kind === 'APIService' && o.spec?.service);
  const servers = [...new Set(apiServices.map((o) => `${o.spec.service.namespace}/${o.spec.service.name}`))];
  const selected = servers.filter((server) => {
    const [ns, svc] = server.split('/');
    return (namespace === undefined || ns === namespace) && (name === undefined || svc === name);
  });
  if (selected.length === 0) {
    const wanted = [namespace !== undefined ? `--namespace ${namespace}` : '', name !== undefined ? `--name ${name}` : ''].filter(Boolean).join(' ');
    throw new DoctorUsageError(
      servers.length === 0
        ? `${source} holds no APIService backed by a Service: is it the output of this app's synth?`
        : `${source} holds no server matching ${wanted} (it holds: ${servers.join(', ')})`,
    );
  }
  if (selected.length > 1) throw new DoctorUsageError(`${source} holds ${selected.length} servers (${selected.join(', ')}): choose one with --namespace and --name`);
  const [ns, serviceName] = selected[0].split('/');
  const mine = apiServices.filter((o) => o.spec.service.namespace === ns && o.spec.service.name === serviceName);
  const service = objects.find((o) => o.kind === 'Service' && o.metadata.namespace === ns && o.metadata.name === serviceName);
  const selector: Record<string, string> = service?.spec?.selector ?? {};
  const deployment = objects.find(
    (o) =>
      o.kind === 'Deployment' &&
      o.metadata.namespace === ns &&
      Object.entries(selector).every(([key, value]) => o.spec?.template?.metadata?.labels?.[key] === value),
  );
  const deploymentName = deployment?.metadata.name ?? serviceName;
  const etcd = objects.find((o) => o.kind === 'StatefulSet' && o.metadata.namespace === ns && o.metadata.labels?.['app.kubernetes.io/component'] === 'etcd' && o.metadata.name.startsWith(`${deploymentName}-`));
  // With several servers in one output, compare only what belongs to this one: its namespace's
  // objects, and the cluster-wide ones named after it or its group.
  const groups = new Set(mine.map((o) => o.spec.group as string));
  const belongs = (o: KubeObject): boolean =>
    servers.length === 1 ||
    o.metadata.namespace === ns ||
    (o.kind === 'Namespace' && o.metadata.name === ns) ||
    o.metadata.name.startsWith(serviceName) ||
    [...groups].some((group) => o.metadata.name.includes(group)) ||
    (o.subjects ?? []).some((s: Unstructured) => s.kind === 'ServiceAccount' && s.namespace === ns);
  return {
    source,
    namespace: ns,
    serviceName,
    apiServices: mine.map((o) => ({ name: o.metadata.name, group: o.spec.group, version: o.spec.version })),
    objects: objects.filter(belongs),
    deploymentName,
    serviceAccountName: deployment?.spec?.template?.spec?.serviceAccountName ?? 'default',
    etcdStatefulSetName: etcd?.metadata.name,
  };
}

/** Kubernetes' own guess from a kind to its resource (meta.UnsafeGuessKindToResource): right for every kind the constructs emit. */
export function resourceOfKind(kind: string): string {
  const lower = kind.toLowerCase();
  if (lower.endsWith('s')) return `${lower}es`;
  if (lower.endsWith('y')) return `${lower.slice(0, -1)}ies`;
  return `${lower}s`;
}

/** The REST path of an object: `/api/v1/namespaces/wardle/services/wardle-apiserver`. */
export function objectPath(object: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): string {
  const base = object.apiVersion.includes('/') ? `/apis/${object.apiVersion}` : `/api/${object.apiVersion}`;
  const scope = object.metadata.namespace ? `/namespaces/${encodeURIComponent(object.metadata.namespace)}` : '';
  return `${base}${scope}/${resourceOfKind(object.kind)}/${encodeURIComponent(object.metadata.name)}`;
}

/** `Deployment wardle/wardle-apiserver`, `APIService v1beta1.wardle.example.com`. */
export function objectRef(object: Pick<KubeObject, 'kind' | 'metadata'>): string {
  return `${object.kind} ${object.metadata.namespace ? `${object.metadata.namespace}/` : ''}${object.metadata.name}`;
}
