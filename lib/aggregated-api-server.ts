import { ApiObject } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _checkCollisionsAtSynth } from './_collisions';
import { createHash } from 'node:crypto';
import { ApiGroupDefinition, WARDLE, servedVersions, validateApiGroupDefinition } from '../apis';
import { checkSupportedByBundledServer } from '../apis/features';
import { _checkDns1035Label, _checkDns1123Label, _checkDns1123Subdomain, _checkIntegerInRange, _checkLabels } from './_validate';
import { API_SERVICE_PORT, ApiService, DEFAULT_GROUP_PRIORITY_MINIMUM, DEFAULT_VERSION_PRIORITY } from './api-service';
import { ApiServiceDeployerRole } from './api-service-deployer-role';
import { ApiResourceRoles } from './api-resource-roles';
import { ApiServerClusterRole } from './api-server-cluster-role';
import { ApiServerDeployment, DEFAULT_SECURE_PORT, SERVER_NAME_LABEL } from './api-server-deployment';
import { AuthDelegation } from './auth-delegation';
import { Certificates, ICertificates } from './certificates';
import { EtcdCluster } from './etcd-cluster';
import { DEFAULT_CLUSTER_DOMAIN, servingDnsNames } from './pki';
import { _podPlacementSpec, PodPlacement } from './pod-placement';
import { BoundStorage, IStorage, Storage } from './storage';

/** Namespaces Kubernetes creates itself; emitting one would relabel it (e.g. kube-system to `restricted`). */
const SYSTEM_NAMESPACES: readonly string[] = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

/** The image of the bundled extension server: published nowhere, build and push it (README, "Build the image and point the synth at it") and pass `image`. */
export const DEFAULT_SERVER_IMAGE = 'cdk8s-api-extension/server:0.1.0';

/** The labels that set a namespace's Pod Security Standard; the created Namespace enforces `restricted`. */
const POD_SECURITY_LABEL_PREFIX = 'pod-security.kubernetes.io/';

/** The server; `nodeSelector`, `tolerations`, `imagePullSecrets` and `priorityClassName` (`PodPlacement`) apply to its pods and, unless `Storage.etcdCluster()` is given its own, to etcd's. */
export interface AggregatedApiServerProps extends PodPlacement {
  /** The API the server serves; one APIService is registered per served version. */
  readonly api: ApiGroupDefinition;
  /** @default - the first label of the group, e.g. `wardle` */
  readonly namespace?: string;
  /**
   * Emit the Namespace (labelled to enforce the `restricted` Pod Security Standard). Never for
   * the namespaces Kubernetes creates itself (default, kube-system, kube-public, kube-node-lease).
   * @default - true, unless the namespace is one Kubernetes creates itself
   */
  readonly createNamespace?: boolean;
  /**
   * Name of the server; the Service, Deployment, ServiceAccount, Secret and RBAC names derive
   * from it. Cluster-scoped names too, so it must be unique in the cluster.
   * @default - `<first label of the group>-apiserver`, e.g. `wardle-apiserver`
   */
  readonly name?: string;
  /** @default DEFAULT_SERVER_IMAGE */
  readonly image?: string;
  /**
   * Whether `image` is this package's bundled server. Its support for what `api` declares is then
   * checked at synth against the list it reads itself (apis/features.ts), and a feature it does not
   * honour is refused, naming kind, version, field and feature (the lines it would print at
   * start). `false` for an image of your own (e.g. built on k8s.io/apiserver): nothing is checked.
   * @default true
   */
  readonly bundledServer?: boolean;
  /** @default IF_NOT_PRESENT */
  readonly imagePullPolicy?: kplus.ImagePullPolicy;
  /**
   * At least 1; more than 1 adds a PodDisruptionBudget and pod anti-affinity, and needs shared
   * storage: replicas that each keep their own store answer differently.
   * @default - 2 with shared storage (etcd), else 1
   */
  readonly replicas?: number;
  /**
   * Where the server keeps its objects: `Storage.etcdCluster()` deploys an etcd cluster with it,
   * `Storage.externalEtcd()` points it at yours, `Storage.memory()` is a one-replica demo, and
   * `Storage.custom()` adds no flags for an image that stores where its own `extraArgs` say.
   * @default - `Storage.etcdCluster()`; `Storage.custom()` when `sharedStorage` is set or
   * `extraArgs` carry `--storage` or `--etcd-servers` (how storage was chosen before this prop)
   */
  readonly storage?: IStorage;
  /**
   * Whether the server's replicas share one store, for an image that stores where its own
   * `extraArgs` say.
   * @deprecated use `storage: Storage.custom({ shared })`, which this is short for; with the
   * bundled server, `storage: Storage.etcdCluster()` or `Storage.externalEtcd()`
   * @default - unset: `storage` decides
   */
  readonly sharedStorage?: boolean;
  /** The container's HTTPS port (GKE private clusters open only 443 and 10250 to the control plane). @default 10250 */
  readonly securePort?: number;
  /** 1–20000. @default 1000 */
  readonly groupPriorityMinimum?: number;
  /** 1–1000; the preferred version gets it, each next version one less (never below 1). @default 15 */
  readonly versionPriority?: number;
  /** @default Certificates.selfSigned() (PKI persisted in `.pki/`) */
  readonly certificates?: ICertificates;
  /** @default 'cluster.local' */
  readonly clusterDomain?: string;
  /** Bring your own; its token must be mountable. @default - one is created, token mounted */
  readonly serviceAccount?: kplus.IServiceAccount;
  /** @default - requests cpu 100m / memory 128Mi, limits memory 256Mi (no CPU limit) */
  readonly resources?: kplus.ContainerResources;
  /** @default [] */
  readonly extraArgs?: readonly string[];
  /**
   * What the server reads from the cluster beyond namespaces, e.g. `GENERIC_APISERVER_RULES`
   * for a server built on k8s.io/apiserver.
   * @default - none: `API_SERVER_RULES` only (namespaces, admission webhook configurations and policies, get/list/watch), all the bundled server reads
   */
  readonly serverRules?: readonly k8s.PolicyRule[];
  /** @default {} */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Step 2 (README, "The fifteen steps"): a ClusterRole that may create APIServices and update or delete only this server's
   * (`true`), plus a ClusterRoleBinding when subjects are given.
   * @default false
   */
  readonly deployer?: { readonly subjects: readonly k8s.Subject[] } | boolean;
  /** Labels added to every object. @default {} */
  readonly labels?: Readonly<Record<string, string>>;
}

/**
 * Everything an aggregated API server needs, in the order of the fifteen steps: Namespace, PKI
 * and TLS Secret, ServiceAccount, the server's RBAC, delegated-auth bindings (the reader one in
 * kube-system), users' reader/editor roles, Deployment, Service and one APIService per served
 * version with `caBundle` set. Cluster-scoped objects carry no namespace.
 */
export class AggregatedApiServer extends Construct {
  public readonly api: ApiGroupDefinition;
  public readonly namespace: string;
  public readonly name: string;
  public readonly serviceName: string;
  public readonly clusterDomain: string;
  public readonly namespaceResource?: kplus.Namespace;
  public readonly serviceAccount: kplus.IServiceAccount;
  public readonly secretName: string;
  public readonly caBundlePem?: string;
  /** The certificates written to the output, serving certificate first (empty in cert-manager and Secret modes). */
  public readonly certificatePems: readonly string[];
  /** What the self-signed PKI store did (empty in other modes); etcd's is in `storage.pkiActions`. */
  public readonly pkiActions: readonly string[];
  /** Where the server keeps its objects, as bound to this server. */
  public readonly storage: BoundStorage;
  /** The etcd deployed with the server (`Storage.etcdCluster()`). */
  public readonly etcdCluster?: EtcdCluster;
  public readonly serverRole: ApiServerClusterRole;
  public readonly authDelegation: AuthDelegation;
  public readonly resourceRoles: ApiResourceRoles;
  public readonly deployerRole?: ApiServiceDeployerRole;
  public readonly serverDeployment: ApiServerDeployment;
  public readonly deployment: kplus.Deployment;
  public readonly podDisruptionBudget?: k8s.KubePodDisruptionBudget;
  public readonly service: kplus.Service;
  public readonly apiServices: k8s.KubeApiService[];

  constructor(scope: Construct, id: string, props: AggregatedApiServerProps) {
    super(scope, id);
    _checkCollisionsAtSynth(this);
    validateApiGroupDefinition(props.api);
    if (props.bundledServer !== false) checkSupportedByBundledServer(props.api, `AggregatedApiServer api "${props.api.group}" (bundledServer: false for an image that is not the bundled server)`);
    this.api = props.api;
    const firstLabel = props.api.group.split('.')[0];
    this.namespace = _checkDns1123Label('namespace', props.namespace ?? firstLabel);
    this.name = _checkDns1035Label('name', props.name ?? `${firstLabel}-apiserver`);
    this.serviceName = this.name;
    this.clusterDomain = _checkDns1123Subdomain('clusterDomain', props.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN);
    // Everything is checked before the certificates are bound: a bad prop must not touch the PKI directory.
    const storageChoice = _storageChoice(props);
    const replicas = _checkIntegerInRange('replicas', props.replicas ?? (storageChoice.shared ? 2 : 1), 1);
    if (replicas > 1 && !storageChoice.shared) {
      throw new Error(
        `replicas ${replicas} needs shared storage, and storage ${storageChoice.kind === 'memory' ? 'Storage.memory()' : 'Storage.custom({ shared: false })'} keeps each pod's objects in that pod: the replicas would answer from different stores ` +
          `(expected replicas 1, or storage: Storage.etcdCluster() or Storage.externalEtcd({ ... }), or Storage.custom({ shared: true }) for an image whose replicas share their store)`,
      );
    }
    const securePort = _checkIntegerInRange('securePort', props.securePort ?? DEFAULT_SECURE_PORT, 1, 65535);
    const groupPriorityMinimum = _checkIntegerInRange('groupPriorityMinimum', props.groupPriorityMinimum ?? DEFAULT_GROUP_PRIORITY_MINIMUM, 1, 20000);
    const versionPriority = _checkIntegerInRange('versionPriority', props.versionPriority ?? DEFAULT_VERSION_PRIORITY, 1, 1000);
    const labels = { ..._checkLabels('labels', props.labels ?? {}) };
    const podSecurityLabel = Object.keys(labels).find((key) => key.startsWith(POD_SECURITY_LABEL_PREFIX));
    if (podSecurityLabel !== undefined) {
      throw new Error(
        `labels "${podSecurityLabel}" would override the Namespace's Pod Security Standard "restricted" ` +
          `(expected labels outside ${POD_SECURITY_LABEL_PREFIX}: labels reach every object, the Namespace included)`,
      );
    }

    const systemNamespace = SYSTEM_NAMESPACES.includes(this.namespace);
    if (props.createNamespace === true && systemNamespace) {
      throw new Error(
        `createNamespace is true for namespace "${this.namespace}", which Kubernetes creates itself ` +
          `(expected false or unset: applying it would label the namespace to enforce the restricted Pod Security Standard)`,
      );
    }
    if (props.createNamespace ?? !systemNamespace) {
      this.namespaceResource = new kplus.Namespace(this, 'Namespace', {
        metadata: { name: this.namespace, labels: { [`${POD_SECURITY_LABEL_PREFIX}enforce`]: 'restricted' } },
      });
    }

    this.serviceAccount =
      props.serviceAccount ??
      new kplus.ServiceAccount(this, 'ServiceAccount', { metadata: { name: this.name, namespace: this.namespace }, automountToken: true });

    const servingCertificates = props.certificates ?? Certificates.selfSigned();
    const certificates = servingCertificates.bind(new Construct(this, 'Certificates'), {
      serviceName: this.serviceName,
      namespace: this.namespace,
      dnsNames: servingDnsNames(this.serviceName, this.namespace, this.clusterDomain),
      name: this.name,
    });
    this.secretName = certificates.secretName;
    this.caBundlePem = certificates.caBundlePem;
    this.certificatePems = certificates.certificatePems;
    this.pkiActions = certificates.pkiActions ?? [];

    const rbac = { serviceAccount: this.serviceAccount, namespace: this.namespace, name: this.name };
    this.serverRole = new ApiServerClusterRole(this, 'ServerRole', { ...rbac, extraRules: props.serverRules });
    this.authDelegation = new AuthDelegation(this, 'AuthDelegation', rbac);
    this.resourceRoles = new ApiResourceRoles(this, 'ResourceRoles', { api: props.api });

    // Bound before the Deployment, so that etcd comes before the server in the output (apply order).
    const podPlacement: PodPlacement = { nodeSelector: props.nodeSelector, tolerations: props.tolerations, imagePullSecrets: props.imagePullSecrets, priorityClassName: props.priorityClassName };
    // Checked here, so that an error names the props the user gave (etcd inherits them).
    _podPlacementSpec('AggregatedApiServer', podPlacement);
    this.storage = storageChoice.bind(new Construct(this, 'Storage'), {
      namespace: this.namespace,
      name: this.name,
      clusterDomain: this.clusterDomain,
      serverPodLabels: { [SERVER_NAME_LABEL]: this.name },
      labels,
      servingCertificates,
      podPlacement,
    });
    this.etcdCluster = this.storage.etcdCluster;

    // The bundled server serves wardle.example.com unless told otherwise: any other API goes to it as a file.
    const definitionConfigMap = props.bundledServer !== false && JSON.stringify(props.api) !== JSON.stringify(WARDLE) ? this._apiDefinitionConfigMap(props.api) : undefined;
    this.serverDeployment = new ApiServerDeployment(this, 'Deployment', {
      name: this.name,
      namespace: this.namespace,
      image: props.image ?? DEFAULT_SERVER_IMAGE,
      imagePullPolicy: props.imagePullPolicy,
      replicas,
      securePort,
      servingCertSecretName: this.secretName,
      serviceAccount: this.serviceAccount,
      resources: props.resources,
      ...podPlacement,
      extraArgs: [...this.storage.args, ...(props.extraArgs ?? [])],
      env: props.env,
      labels,
      servingCertificateChecksum: certificates.servingCertificateChecksum,
      etcdClientSecretName: this.storage.etcdClientSecretName,
      etcdClientCertificateChecksum: this.storage.etcdClientCertificateChecksum,
      ...(definitionConfigMap ? { apiDefinitionConfigMapName: definitionConfigMap.name, apiDefinitionChecksum: definitionConfigMap.checksum } : {}),
    });
    this.deployment = this.serverDeployment.deployment;
    this.podDisruptionBudget = this.serverDeployment.podDisruptionBudget;

    this.service = new kplus.Service(this, 'Service', {
      metadata: { name: this.serviceName, namespace: this.namespace },
      ports: [{ name: 'https', port: API_SERVICE_PORT, targetPort: securePort }],
    });
    for (const [key, value] of Object.entries(this.serverDeployment.selectorLabels)) this.service.selectLabel(key, value);

    this.apiServices = servedVersions(props.api).map(
      (version, index) =>
        new ApiService(this, `ApiService-${version}`, {
          group: props.api.group,
          version,
          serviceName: this.serviceName,
          serviceNamespace: this.namespace,
          caBundlePem: certificates.caBundlePem,
          groupPriorityMinimum,
          versionPriority: Math.max(1, versionPriority - index),
          metadata: { annotations: certificates.apiServiceAnnotations },
        }).resource,
    );

    if (props.deployer !== undefined && props.deployer !== false) {
      this.deployerRole = new ApiServiceDeployerRole(this, 'DeployerRole', {
        name: `${this.name}:apiservice-deployer`,
        apiServiceNames: this.apiServices.map((apiService) => apiService.name),
        subjects: props.deployer === true ? undefined : props.deployer.subjects,
      });
    }

    // `labels` reach every object here; only the Deployment is given them, for its pod template.
    for (const child of this.node.findAll()) {
      if (ApiObject.isApiObject(child)) {
        for (const [key, value] of Object.entries(labels)) child.metadata.addLabel(key, value);
      }
    }
  }

  /** `<name>-api-definition`: `api.json`, the definition the bundled server reads at start (`--api-definition-file`). */
  private _apiDefinitionConfigMap(api: ApiGroupDefinition): { name: string; checksum: string } {
    const json = JSON.stringify(api);
    // A ConfigMap holds at most 1 MiB (kube-apiserver refuses more).
    if (Buffer.byteLength(json) > 1024 * 1024) throw new Error(`api "${api.group}" is ${Buffer.byteLength(json)} bytes as JSON, more than the 1 MiB a ConfigMap holds (expected a smaller definition, or bundledServer: false for an image that carries its own)`);
    const configMap = new kplus.ConfigMap(this, 'ApiDefinition', { metadata: { name: `${this.name}-api-definition`, namespace: this.namespace }, data: { 'api.json': json } });
    return { name: configMap.name, checksum: createHash('sha256').update(json).digest('hex') };
  }
}

/** The server flags that choose storage; with one in `extraArgs`, storage is the image's business. */
const STORAGE_FLAG = /^--(storage|etcd-servers)(=|$)/;

/**
 * `storage`, or what the props meant before it existed: `sharedStorage`, or storage flags in
 * `extraArgs`, leave storage to the image (`Storage.custom`).
 */
function _storageChoice(props: AggregatedApiServerProps): IStorage {
  const storageArg = (props.extraArgs ?? []).find((arg) => STORAGE_FLAG.test(arg));
  if (props.storage !== undefined && props.sharedStorage !== undefined) {
    throw new Error(`sharedStorage ${props.sharedStorage} and storage are both set (expected storage alone: sharedStorage is short for storage: Storage.custom({ shared }))`);
  }
  if (props.storage !== undefined && props.storage.kind !== 'custom' && storageArg !== undefined) {
    throw new Error(
      `extraArgs "${storageArg}" conflicts with storage, which sets the server's storage flags (expected storage: Storage.custom({ shared }) to pass your own storage flags in extraArgs)`,
    );
  }
  if (props.storage !== undefined) return props.storage;
  if (props.sharedStorage !== undefined) return Storage.custom({ shared: props.sharedStorage });
  if (storageArg !== undefined) return Storage.custom({ shared: (props.extraArgs ?? []).some((arg) => /^--etcd-servers(=|$)/.test(arg)) });
  return Storage.etcdCluster();
}
