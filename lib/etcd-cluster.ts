import { ApiObject, JsonPatch, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _checkDns1035Label, _checkDns1123Label, _checkDns1123Subdomain, _checkIntegerInRange } from './_validate';
import { EtcdCertificates, EtcdMemberCertificateRequest, IEtcdCertificates } from './etcd-certificates';
import { DEFAULT_CLUSTER_DOMAIN, servingDnsNames } from './pki';

/** etcd 3.5, the minor kube-apiserver 1.28–1.33 runs; every flag the StatefulSet passes also exists in 3.4. */
export const DEFAULT_ETCD_IMAGE = 'registry.k8s.io/etcd:3.5.21-0';
/** Only pulled when `backupSchedule` is set: the backup pod's pruning step needs `sh`, `date`, `ls` and `rm`, which the etcd image lacks. */
export const DEFAULT_ETCD_BACKUP_TOOLS_IMAGE = 'docker.io/library/busybox:1.36.1';
export const DEFAULT_ETCD_REPLICAS = 3;
export const DEFAULT_ETCD_STORAGE_SIZE = '1Gi';
export const DEFAULT_ETCD_BACKUP_RETENTION = 7;
export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;
/** Plain HTTP, `/health` and `/metrics` only: what the kubelet probes (it holds no client certificate). */
export const ETCD_METRICS_PORT = 2381;
/** The non-root user and group etcd and the backup job run as. */
export const ETCD_USER_ID = 65532;
/** Where each member's PVC is mounted; etcd keeps its data in `data/` below it (etcd wants a 0700 directory it owns). */
export const ETCD_DATA_MOUNT_PATH = '/var/lib/etcd';
/** Where the members' certificates are mounted (`<pod>/server.crt`, `<pod>/peer.crt` …, `ca.crt`). */
export const ETCD_PKI_MOUNT_PATH = '/etc/etcd/pki';
/** Where the backup job mounts the client certificate Secret. */
export const ETCD_BACKUP_CLIENT_CERT_PATH = '/etc/etcd/client';
/** Where the backup job mounts its PVC. */
export const ETCD_BACKUP_MOUNT_PATH = '/backups';
/** Pod-template annotation: SHA-256 of the CA bundle the members trust (etcd reads it only at start). */
export const ETCD_CA_CHECKSUM_ANNOTATION = 'apiextension.cdk8s.io/etcd-ca-sha256';
/** Name of the etcd container in the StatefulSet's pods. */
export const ETCD_CONTAINER_NAME = 'etcd';

/** Requests only: a memory limit below the database size gets etcd (which maps its database into memory) OOM-killed. */
export const DEFAULT_ETCD_RESOURCES: kplus.ContainerResources = {
  cpu: { request: kplus.Cpu.millis(100) },
  memory: { request: Size.mebibytes(256) },
};

export interface EtcdClusterProps {
  readonly namespace: string;
  /** StatefulSet name; Services, Secrets and the PKI directory derive from it. At most 52 characters. */
  readonly name: string;
  /**
   * 1, 3 or 5 members. Changing it on a running cluster is not a scale operation: etcd members
   * join with `etcdctl member add` (see the README), the StatefulSet alone does not do it.
   * @default 3
   */
  readonly replicas?: number;
  /** @default DEFAULT_ETCD_IMAGE */
  readonly image?: string;
  /** Size of each member's volume, a Kubernetes quantity of at least 512Mi; the backend quota derives from it. @default '1Gi' */
  readonly storageSize?: string;
  /** @default - the cluster's default StorageClass (no storageClassName) */
  readonly storageClassName?: string;
  /** @default 'cluster.local' */
  readonly clusterDomain?: string;
  /** @default EtcdCertificates.selfSigned() (PKI in '.pki') */
  readonly certificates?: IEtcdCertificates;
  /** Common name of the API server's client certificate (etcd logs it; with etcd auth on it is the user). @default - `<name>-client` */
  readonly clientCommonName?: string;
  /** Labels of the pods allowed to connect as clients (the API server's selector labels); the NetworkPolicy admits only them. */
  readonly clientPodLabels: Readonly<Record<string, string>>;
  /** @default true */
  readonly networkPolicy?: boolean;
  /** A cron schedule for `etcdctl snapshot save` into a PVC. @default - no backups */
  readonly backupSchedule?: string;
  /** How many snapshots the backup PVC keeps (older ones are deleted). @default 7 */
  readonly backupRetention?: number;
  /** @default - room for backupRetention + 1 snapshots of a full backend (the quota), in whole Gi */
  readonly backupStorageSize?: string;
  /** @default - storageClassName */
  readonly backupStorageClassName?: string;
  /** An image with a POSIX `sh`, `date`, `ls`, `mv` and `rm`, for pruning. @default DEFAULT_ETCD_BACKUP_TOOLS_IMAGE */
  readonly backupToolsImage?: string;
  /** Labels added to every object. @default {} */
  readonly labels?: Readonly<Record<string, string>>;
  /** @default - requests cpu 100m / memory 256Mi, no limits */
  readonly resources?: kplus.ContainerResources;
}

/**
 * An etcd cluster for the API server's storage: a StatefulSet of 1, 3 or 5 members on PVCs,
 * TLS with client-certificate authentication for clients and peers, a PodDisruptionBudget that
 * keeps quorum, a NetworkPolicy, and optional snapshots on a schedule.
 */
export class EtcdCluster extends Construct {
  public readonly namespace: string;
  public readonly name: string;
  public readonly replicas: number;
  /** e.g. 'https://wardle-apiserver-etcd-client.wardle.svc:2379': what the API server's --etcd-servers gets. */
  public readonly clientUrl: string;
  public readonly clientServiceName: string;
  public readonly peerServiceName: string;
  /** kubernetes.io/tls Secret in the namespace: tls.crt/tls.key = the API server's etcd client certificate, ca.crt = the etcd CA bundle. */
  public readonly clientSecretName: string;
  /** SHA-256 hex over the client certificate and CA bundle; a pod annotation on the API server rolls it. Undefined in cert-manager mode. */
  public readonly clientCertificateChecksum?: string;
  /** The certificates written (for the synth summary: fingerprint, expiry). */
  public readonly certificatePems: readonly string[];
  /** What the PKI store did (empty in cert-manager mode). */
  public readonly pkiActions: readonly string[];
  /** The labels that select the members. */
  public readonly selectorLabels: Readonly<Record<string, string>>;
  public readonly statefulSet: k8s.KubeStatefulSet;
  public readonly clientService: k8s.KubeService;
  public readonly peerService: k8s.KubeService;
  /** None for a single member: a budget that never allows an eviction would block every node drain. */
  public readonly podDisruptionBudget?: k8s.KubePodDisruptionBudget;
  public readonly networkPolicies: readonly k8s.KubeNetworkPolicy[];
  public readonly backupCronJob?: k8s.KubeCronJob;
  public readonly backupVolumeClaim?: k8s.KubePersistentVolumeClaim;

  constructor(scope: Construct, id: string, props: EtcdClusterProps) {
    super(scope, id);
    this.namespace = _checkDns1123Label('namespace', props.namespace);
    this.name = props.name;
    this.replicas = props.replicas ?? DEFAULT_ETCD_REPLICAS;
    this.clientServiceName = `${this.name}-client`;
    this.peerServiceName = `${this.name}-peer`;
    this.clientSecretName = `${this.name}-client-tls`;
    this.clientUrl = `https://${this.clientServiceName}.${this.namespace}.svc:${ETCD_CLIENT_PORT}`;
    this.selectorLabels = { 'app.kubernetes.io/name': this.name, 'app.kubernetes.io/component': 'etcd' };
    void _checkDns1035Label;
    void _checkDns1123Subdomain;
    void _checkIntegerInRange;
    void DEFAULT_CLUSTER_DOMAIN;
    void servingDnsNames;
    void ApiObject;
    void JsonPatch;
    const members: EtcdMemberCertificateRequest[] = [];
    const bound = (props.certificates ?? EtcdCertificates.selfSigned()).bind(new Construct(this, 'Certificates'), {
      name: this.name,
      namespace: this.namespace,
      members,
      clientSecretName: this.clientSecretName,
      clientCommonName: props.clientCommonName ?? `${this.name}-client`,
    });
    this.clientCertificateChecksum = bound.clientCertificateChecksum;
    this.certificatePems = bound.certificatePems;
    this.pkiActions = bound.pkiActions;
    this.statefulSet = new k8s.KubeStatefulSet(this, 'Resource', { metadata: { name: this.name, namespace: this.namespace }, spec: { selector: {}, serviceName: this.peerServiceName, template: {} } });
    this.clientService = new k8s.KubeService(this, 'ClientService', { metadata: { name: this.clientServiceName, namespace: this.namespace } });
    this.peerService = new k8s.KubeService(this, 'PeerService', { metadata: { name: this.peerServiceName, namespace: this.namespace } });
    this.networkPolicies = [];
  }
}
