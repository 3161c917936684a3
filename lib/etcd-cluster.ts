import { ApiObject, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _checkCronSchedule, _checkDns1035Label, _checkDns1123Label, _checkDns1123Subdomain, _checkImageReference, _checkIntegerInRange, _quantityValue } from './_validate';
import { _podPlacementSpec, PodPlacement } from './pod-placement';
import { EtcdCertificates, EtcdMemberCertificateRequest, IEtcdCertificates } from './etcd-certificates';
import { DEFAULT_CLUSTER_DOMAIN, servingDnsNames } from './pki';

/** The etcd kubeadm pins for Kubernetes 1.31–1.33; every flag the StatefulSet passes also exists in etcd 3.4. */
export const DEFAULT_ETCD_IMAGE = 'registry.k8s.io/etcd:3.5.21-0';
/** Only pulled when `backupSchedule` is set: the backup pod's pruning step needs `sh`, `date`, `ls` and `rm`, which the etcd image lacks. */
export const DEFAULT_ETCD_BACKUP_TOOLS_IMAGE = 'docker.io/library/busybox:1.36.1';
export const DEFAULT_ETCD_REPLICAS = 3;
export const DEFAULT_ETCD_STORAGE_SIZE = '1Gi';
export const DEFAULT_ETCD_BACKUP_RETENTION = 7;
/** The member counts an EtcdCluster takes: odd, so that a quorum survives; more than 5 only slows writes. */
export const ETCD_REPLICA_COUNTS: readonly number[] = [1, 3, 5];
/** The smallest `storageSize`: etcd preallocates 64Mi write-ahead-log files and keeps several. */
export const MIN_ETCD_STORAGE_SIZE = '512Mi';
export const MIN_ETCD_STORAGE_BYTES = 512 * 2 ** 20;
/**
 * The longest `name`, and the longest backup CronJob name (`<name>-backup`): the StatefulSet's
 * pods carry a `<name>-<10-character revision hash>` label, and a CronJob's Jobs are named
 * `<name>-<11 characters>`, both at most 63 characters.
 */
export const MAX_ETCD_OBJECT_NAME_LENGTH = 52;
/** The backup CronJob and its PVC are named `<name>` + this. */
export const ETCD_BACKUP_NAME_SUFFIX = '-backup';
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

export interface EtcdClusterProps extends PodPlacement {
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
  /**
   * A CronJob schedule for `etcdctl snapshot save` into a PVC, checked as the Kubernetes API checks
   * it: 5 fields, a macro such as `@daily`, or `@every <duration>`; no `TZ=`. @default - no backups
   */
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
    // Everything is checked before the certificates are bound: a bad prop must not touch the PKI directory.
    this.namespace = _checkDns1123Label('namespace', props.namespace);
    this.name = _checkName(props.name);
    this.replicas = _checkEtcdReplicas('replicas', props.replicas ?? DEFAULT_ETCD_REPLICAS);
    const image = _checkImageReference('image', props.image ?? DEFAULT_ETCD_IMAGE, DEFAULT_ETCD_IMAGE);
    const placement = _podPlacementSpec('EtcdCluster', props);
    const storageSize = props.storageSize ?? DEFAULT_ETCD_STORAGE_SIZE;
    const storageBytes = _checkEtcdStorageSize('storageSize', storageSize);
    const quotaBackendBytes = _quotaBackendBytes(storageBytes);
    const clusterDomain = _checkDns1123Subdomain('clusterDomain', props.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN);
    if (props.storageClassName !== undefined) _checkDns1123Subdomain('storageClassName', props.storageClassName);
    const clientPodLabels = _checkClientPodLabels(props.clientPodLabels);
    const backupRetention = _checkIntegerInRange('backupRetention', props.backupRetention ?? DEFAULT_ETCD_BACKUP_RETENTION, 1, 1000);
    if (props.backupSchedule !== undefined) {
      _checkCronSchedule('backupSchedule', props.backupSchedule);
      const cronJobName = `${this.name}${ETCD_BACKUP_NAME_SUFFIX}`;
      if (cronJobName.length > MAX_ETCD_OBJECT_NAME_LENGTH) {
        throw new Error(
          `name "${this.name}" is too long for backups (expected at most ${MAX_ETCD_OBJECT_NAME_LENGTH - ETCD_BACKUP_NAME_SUFFIX.length} characters with backupSchedule: ` +
            `the CronJob "${cronJobName}" may have at most ${MAX_ETCD_OBJECT_NAME_LENGTH}, its Jobs append an 11-character suffix)`,
        );
      }
    }
    const backupStorageSize = props.backupStorageSize ?? `${Math.ceil(((backupRetention + 1) * quotaBackendBytes) / GIBIBYTE)}Gi`;
    if (_quantityValue('backupStorageSize', backupStorageSize) <= 0) {
      throw new Error(`backupStorageSize "${backupStorageSize}" is not positive (expected a size such as "8Gi")`);
    }
    if (props.backupStorageClassName !== undefined) _checkDns1123Subdomain('backupStorageClassName', props.backupStorageClassName);
    const backupToolsImage = _checkImageReference('backupToolsImage', props.backupToolsImage ?? DEFAULT_ETCD_BACKUP_TOOLS_IMAGE, DEFAULT_ETCD_BACKUP_TOOLS_IMAGE);

    this.clientServiceName = `${this.name}-client`;
    this.peerServiceName = `${this.name}-peer`;
    this.clientSecretName = `${this.name}-client-tls`;
    this.clientUrl = `https://${this.clientServiceName}.${this.namespace}.svc:${ETCD_CLIENT_PORT}`;
    this.selectorLabels = { 'app.kubernetes.io/name': this.name, 'app.kubernetes.io/component': 'etcd' };
    const backupSelectorLabels = { 'app.kubernetes.io/name': this.name, 'app.kubernetes.io/component': 'etcd-backup' };
    const labels = { ...props.labels };
    const namespace = this.namespace;

    const memberNames = Array.from({ length: this.replicas }, (_, i) => `${this.name}-${i}`);
    const memberHost = (member: string) => `${member}.${this.peerServiceName}.${namespace}.svc`;
    const members: EtcdMemberCertificateRequest[] = memberNames.map((member) => ({
      memberName: member,
      serverSecretName: `${member}-server-tls`,
      peerSecretName: `${member}-peer-tls`,
      serverDnsNames: [memberHost(member), `${memberHost(member)}.${clusterDomain}`, ...servingDnsNames(this.clientServiceName, namespace, clusterDomain), 'localhost'],
      peerDnsNames: [memberHost(member), `${memberHost(member)}.${clusterDomain}`, 'localhost'],
      ipAddresses: ['127.0.0.1'],
    }));
    const bound = (props.certificates ?? EtcdCertificates.selfSigned()).bind(new Construct(this, 'Certificates'), {
      name: this.name,
      namespace,
      members,
      clientSecretName: this.clientSecretName,
      clientCommonName: props.clientCommonName ?? `${this.name}-client`,
    });
    this.clientCertificateChecksum = bound.clientCertificateChecksum;
    this.certificatePems = bound.certificatePems;
    this.pkiActions = bound.pkiActions;

    this.peerService = new k8s.KubeService(this, 'PeerService', {
      metadata: { name: this.peerServiceName, namespace, labels: { ...labels, ...this.selectorLabels } },
      spec: {
        clusterIp: 'None',
        // Members find each other by DNS before any of them is ready: a member is ready only once a quorum has formed.
        publishNotReadyAddresses: true,
        selector: { ...this.selectorLabels },
        ports: [
          { name: 'client', port: ETCD_CLIENT_PORT, targetPort: k8s.IntOrString.fromString('client') },
          { name: 'peer', port: ETCD_PEER_PORT, targetPort: k8s.IntOrString.fromString('peer') },
        ],
      },
    });
    this.clientService = new k8s.KubeService(this, 'ClientService', {
      metadata: { name: this.clientServiceName, namespace, labels: { ...labels, ...this.selectorLabels } },
      spec: {
        selector: { ...this.selectorLabels },
        ports: [{ name: 'client', port: ETCD_CLIENT_PORT, targetPort: k8s.IntOrString.fromString('client') }],
      },
    });

    const peerUrl = (host: string) => `https://${host}.${clusterDomain}:${ETCD_PEER_PORT}`;
    const pki = (file: string) => `${ETCD_PKI_MOUNT_PATH}/${file}`;
    const args = [
      '--name=$(POD_NAME)',
      `--data-dir=${ETCD_DATA_MOUNT_PATH}/data`,
      `--listen-client-urls=https://0.0.0.0:${ETCD_CLIENT_PORT}`,
      `--advertise-client-urls=https://${memberHost('$(POD_NAME)')}.${clusterDomain}:${ETCD_CLIENT_PORT}`,
      `--listen-peer-urls=https://0.0.0.0:${ETCD_PEER_PORT}`,
      `--initial-advertise-peer-urls=${peerUrl(memberHost('$(POD_NAME)'))}`,
      `--initial-cluster=${memberNames.map((member) => `${member}=${peerUrl(memberHost(member))}`).join(',')}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${this.name}.${namespace}`,
      `--listen-metrics-urls=http://0.0.0.0:${ETCD_METRICS_PORT}`,
      `--cert-file=${pki('$(POD_NAME)/server.crt')}`,
      `--key-file=${pki('$(POD_NAME)/server.key')}`,
      `--trusted-ca-file=${pki('ca.crt')}`,
      '--client-cert-auth=true',
      `--peer-cert-file=${pki('$(POD_NAME)/peer.crt')}`,
      `--peer-key-file=${pki('$(POD_NAME)/peer.key')}`,
      `--peer-trusted-ca-file=${pki('ca.crt')}`,
      '--peer-client-cert-auth=true',
      `--quota-backend-bytes=${quotaBackendBytes}`,
      // The API server compacts every few minutes itself; this bounds the history if it does not.
      '--auto-compaction-mode=periodic',
      '--auto-compaction-retention=1h',
      '--logger=zap',
    ];
    // The kubelet holds no etcd client certificate: it probes the plain-HTTP metrics listener.
    // Liveness asks only whether this member serves (`serializable`, without NOSPACE) so that a
    // lost quorum or a full backend does not restart every member; readiness asks for a leader.
    const probe = (path: string, periodSeconds: number, failureThreshold: number): k8s.Probe => ({
      httpGet: { path, port: k8s.IntOrString.fromString('metrics'), scheme: 'HTTP' },
      periodSeconds,
      timeoutSeconds: 5,
      failureThreshold,
    });
    const restrictedContainer: k8s.SecurityContext = {
      runAsNonRoot: true,
      runAsUser: ETCD_USER_ID,
      runAsGroup: ETCD_USER_ID,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    };
    const restrictedPod: k8s.PodSecurityContext = {
      runAsNonRoot: true,
      runAsUser: ETCD_USER_ID,
      runAsGroup: ETCD_USER_ID,
      fsGroup: ETCD_USER_ID,
      fsGroupChangePolicy: 'OnRootMismatch',
      seccompProfile: { type: 'RuntimeDefault' },
    };

    // Every member mounts every member's certificates (a StatefulSet has one pod template) and picks
    // its own by `$(POD_NAME)`; the members trust each other fully anyway: each holds all the data.
    const pkiSources: k8s.VolumeProjection[] = members.flatMap((member, i) => [
      {
        secret: {
          name: member.serverSecretName,
          items: [
            { key: 'tls.crt', path: `${member.memberName}/server.crt` },
            { key: 'tls.key', path: `${member.memberName}/server.key` },
            ...(i === 0 ? [{ key: 'ca.crt', path: 'ca.crt' }] : []),
          ],
        },
      },
      {
        secret: {
          name: member.peerSecretName,
          items: [
            { key: 'tls.crt', path: `${member.memberName}/peer.crt` },
            { key: 'tls.key', path: `${member.memberName}/peer.key` },
          ],
        },
      },
    ]);

    this.statefulSet = new k8s.KubeStatefulSet(this, 'Resource', {
      metadata: { name: this.name, namespace, labels: { ...labels, ...this.selectorLabels } },
      spec: {
        replicas: this.replicas,
        serviceName: this.peerServiceName,
        // All members start together: the first cannot become ready until a quorum has joined it.
        podManagementPolicy: 'Parallel',
        updateStrategy: { type: 'RollingUpdate' },
        selector: { matchLabels: { ...this.selectorLabels } },
        template: {
          metadata: {
            labels: { ...labels, ...this.selectorLabels },
            annotations: bound.caBundleChecksum === undefined ? undefined : { [ETCD_CA_CHECKSUM_ANNOTATION]: bound.caBundleChecksum },
          },
          spec: {
            automountServiceAccountToken: false,
            // Service environment variables named ETCD_* would be read by etcd as flags.
            enableServiceLinks: false,
            securityContext: restrictedPod,
            affinity: {
              podAntiAffinity: {
                preferredDuringSchedulingIgnoredDuringExecution: [
                  { weight: 100, podAffinityTerm: { labelSelector: { matchLabels: { ...this.selectorLabels } }, topologyKey: 'kubernetes.io/hostname' } },
                ],
              },
            },
            terminationGracePeriodSeconds: 30,
            ...placement,
            containers: [
              {
                name: ETCD_CONTAINER_NAME,
                image,
                imagePullPolicy: 'IfNotPresent',
                command: ['/usr/local/bin/etcd'],
                args,
                env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
                ports: [
                  { name: 'client', containerPort: ETCD_CLIENT_PORT },
                  { name: 'peer', containerPort: ETCD_PEER_PORT },
                  { name: 'metrics', containerPort: ETCD_METRICS_PORT },
                ],
                startupProbe: probe('/health?serializable=true', 5, 60),
                livenessProbe: probe('/health?exclude=NOSPACE&serializable=true', 10, 6),
                readinessProbe: probe('/health', 5, 3),
                resources: _resourceRequirements(props.resources ?? DEFAULT_ETCD_RESOURCES),
                securityContext: restrictedContainer,
                volumeMounts: [
                  { name: 'data', mountPath: ETCD_DATA_MOUNT_PATH },
                  { name: 'pki', mountPath: ETCD_PKI_MOUNT_PATH, readOnly: true },
                ],
              },
            ],
            // 0440: readable by the fsGroup etcd runs in, not by others.
            volumes: [{ name: 'pki', projected: { defaultMode: 0o440, sources: pkiSources } }],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: 'data', labels: { ...labels, ...this.selectorLabels } },
            spec: {
              accessModes: ['ReadWriteOnce'],
              storageClassName: props.storageClassName,
              resources: { requests: { storage: k8s.Quantity.fromString(storageSize) } },
            },
          },
        ],
      },
    });

    const quorum = Math.floor(this.replicas / 2) + 1;
    if (this.replicas > 1) {
      this.podDisruptionBudget = new k8s.KubePodDisruptionBudget(this, 'DisruptionBudget', {
        metadata: { name: this.name, namespace, labels: { ...labels, ...this.selectorLabels } },
        spec: { minAvailable: k8s.IntOrString.fromNumber(quorum), selector: { matchLabels: { ...this.selectorLabels } } },
      });
    }

    if (props.backupSchedule !== undefined) {
      this.backupVolumeClaim = new k8s.KubePersistentVolumeClaim(this, 'BackupVolume', {
        metadata: { name: `${this.name}${ETCD_BACKUP_NAME_SUFFIX}`, namespace, labels: { ...labels, ...backupSelectorLabels } },
        spec: {
          accessModes: ['ReadWriteOnce'],
          storageClassName: props.backupStorageClassName ?? props.storageClassName,
          resources: { requests: { storage: k8s.Quantity.fromString(backupStorageSize) } },
        },
      });
      const client = (file: string) => `${ETCD_BACKUP_CLIENT_CERT_PATH}/${file}`;
      this.backupCronJob = new k8s.KubeCronJob(this, 'Backup', {
        metadata: { name: `${this.name}${ETCD_BACKUP_NAME_SUFFIX}`, namespace, labels: { ...labels, ...backupSelectorLabels } },
        spec: {
          schedule: props.backupSchedule,
          concurrencyPolicy: 'Forbid',
          startingDeadlineSeconds: 600,
          successfulJobsHistoryLimit: 3,
          failedJobsHistoryLimit: 3,
          jobTemplate: {
            metadata: { labels: { ...labels, ...backupSelectorLabels } },
            spec: {
              backoffLimit: 3,
              activeDeadlineSeconds: 3600,
              template: {
                metadata: { labels: { ...labels, ...backupSelectorLabels } },
                spec: {
                  restartPolicy: 'OnFailure',
                  ...placement,
                  automountServiceAccountToken: false,
                  enableServiceLinks: false,
                  securityContext: restrictedPod,
                  // The snapshot is taken with the etcd image's etcdctl, then renamed and pruned with
                  // a shell (the etcd image has none).
                  initContainers: [
                    {
                      name: 'snapshot',
                      image,
                      imagePullPolicy: 'IfNotPresent',
                      command: ['/usr/local/bin/etcdctl'],
                      args: [
                        `--endpoints=${this.clientUrl}`,
                        `--cacert=${client('ca.crt')}`,
                        `--cert=${client('tls.crt')}`,
                        `--key=${client('tls.key')}`,
                        '--dial-timeout=30s',
                        '--command-timeout=30m',
                        'snapshot',
                        'save',
                        `${ETCD_BACKUP_MOUNT_PATH}/${ETCD_BACKUP_INCOMING_FILE}`,
                      ],
                      resources: _resourceRequirements(BACKUP_RESOURCES),
                      securityContext: restrictedContainer,
                      volumeMounts: [
                        { name: 'backups', mountPath: ETCD_BACKUP_MOUNT_PATH },
                        { name: 'client-cert', mountPath: ETCD_BACKUP_CLIENT_CERT_PATH, readOnly: true },
                      ],
                    },
                  ],
                  containers: [
                    {
                      name: 'prune',
                      image: backupToolsImage,
                      imagePullPolicy: 'IfNotPresent',
                      command: ['/bin/sh', '-c', ETCD_BACKUP_PRUNE_SCRIPT],
                      env: [
                        { name: 'BACKUP_DIR', value: ETCD_BACKUP_MOUNT_PATH },
                        { name: 'KEEP', value: String(backupRetention) },
                      ],
                      resources: _resourceRequirements(BACKUP_RESOURCES),
                      securityContext: restrictedContainer,
                      volumeMounts: [{ name: 'backups', mountPath: ETCD_BACKUP_MOUNT_PATH }],
                    },
                  ],
                  volumes: [
                    { name: 'backups', persistentVolumeClaim: { claimName: `${this.name}${ETCD_BACKUP_NAME_SUFFIX}` } },
                    // The API server's client certificate: etcd (without its own auth) gives every
                    // certificate the CA signed the same rights, so a second one would add no limit.
                    { name: 'client-cert', secret: { secretName: this.clientSecretName, defaultMode: 0o440 } },
                  ],
                },
              },
            },
          },
        },
      });
    }

    const networkPolicies: k8s.KubeNetworkPolicy[] = [];
    if (props.networkPolicy ?? true) {
      // Ingress only; the metrics port is open to no pod. The kubelet's probes come from the node,
      // which most network plugins (Calico, Cilium, the cloud ones) do not subject to NetworkPolicy.
      const clients: k8s.NetworkPolicyPeer[] = [{ podSelector: { matchLabels: { ...clientPodLabels } } }];
      if (props.backupSchedule !== undefined) clients.push({ podSelector: { matchLabels: { ...backupSelectorLabels } } });
      networkPolicies.push(
        new k8s.KubeNetworkPolicy(this, 'NetworkPolicy', {
          metadata: { name: this.name, namespace, labels: { ...labels, ...this.selectorLabels } },
          spec: {
            podSelector: { matchLabels: { ...this.selectorLabels } },
            policyTypes: ['Ingress'],
            ingress: [
              { from: clients, ports: [{ protocol: 'TCP', port: k8s.IntOrString.fromNumber(ETCD_CLIENT_PORT) }] },
              { from: [{ podSelector: { matchLabels: { ...this.selectorLabels } } }], ports: [{ protocol: 'TCP', port: k8s.IntOrString.fromNumber(ETCD_PEER_PORT) }] },
            ],
          },
        }),
      );
    }
    this.networkPolicies = networkPolicies;

    // Labels reach the Secrets and Certificates the certificate source emitted too.
    for (const child of this.node.findAll()) {
      if (ApiObject.isApiObject(child)) {
        for (const [key, value] of Object.entries(labels)) child.metadata.addLabel(key, value);
      }
    }
  }
}

const GIBIBYTE = 1024 ** 3;
/** etcd's own recommended maximum backend size. */
const MAX_QUOTA_BACKEND_BYTES = 8 * GIBIBYTE;
/** Room for the write-ahead log: 64Mi files, 5 kept (`--max-wals`) and one being filled. */
const WAL_RESERVE_BYTES = 6 * 64 * 1024 ** 2;

/** The snapshot's name while it is taken; the prune step gives it its timestamped name. */
export const ETCD_BACKUP_INCOMING_FILE = 'incoming.db';

/**
 * The backup pod's second step: name the new snapshot by the time (UTC), keep the newest
 * `$KEEP`, delete the older ones and any snapshot a failed run left half-written.
 */
export const ETCD_BACKUP_PRUNE_SCRIPT = [
  'set -eu',
  'cd "$BACKUP_DIR"',
  `test -s ${ETCD_BACKUP_INCOMING_FILE}`,
  'name="snapshot-$(date -u +%Y%m%dT%H%M%SZ).db"',
  `mv ${ETCD_BACKUP_INCOMING_FILE} "$name"`,
  'echo "saved $BACKUP_DIR/$name"',
  `rm -f ${ETCD_BACKUP_INCOMING_FILE}.part`,
  'ls -1 | grep -E "^snapshot-[0-9]{8}T[0-9]{6}Z\\.db$" | sort -r | tail -n +$((KEEP + 1)) | while read -r old; do rm -f -- "$old"; echo "removed $BACKUP_DIR/$old"; done',
].join('\n');

const BACKUP_RESOURCES: kplus.ContainerResources = { cpu: { request: kplus.Cpu.millis(50) }, memory: { request: Size.mebibytes(64) } };

/**
 * The backend quota from the volume: room for the write-ahead log, then half of the rest, since a
 * member sending a snapshot to a lagging peer holds a second copy of the database. Capped at 8Gi.
 */
function _quotaBackendBytes(storageBytes: number): number {
  return Math.min(MAX_QUOTA_BACKEND_BYTES, Math.floor((storageBytes - WAL_RESERVE_BYTES) / 2 / (1024 * 1024)) * 1024 * 1024);
}

/** Fails unless `value` is an etcd member count EtcdCluster takes (1, 3 or 5); `prop` names it (a prop, or a CLI flag). */
export function _checkEtcdReplicas(prop: string, value: number): number {
  if (!ETCD_REPLICA_COUNTS.includes(value)) {
    throw new Error(
      `${prop} ${String(value)} is not valid (expected 1, 3 or 5: an etcd cluster needs an odd number of members for a quorum; 3 survives the loss of one member, 5 of two, and more only slows writes)`,
    );
  }
  return value;
}

/** The bytes of a member's volume, or an error naming `prop` unless it is a quantity of at least MIN_ETCD_STORAGE_SIZE. */
export function _checkEtcdStorageSize(prop: string, value: string): number {
  const bytes = _quantityValue(prop, value);
  if (bytes < MIN_ETCD_STORAGE_BYTES) {
    throw new Error(`${prop} ${JSON.stringify(value)} is too small (expected at least ${MIN_ETCD_STORAGE_SIZE}: etcd preallocates 64Mi write-ahead-log files and keeps several)`);
  }
  return bytes;
}

function _checkName(value: string): string {
  _checkDns1035Label('name', value);
  if (value.length > MAX_ETCD_OBJECT_NAME_LENGTH) {
    throw new Error(`name "${value}" is ${value.length} characters long (expected at most ${MAX_ETCD_OBJECT_NAME_LENGTH}: the StatefulSet's pods carry "<name>-<revision hash>" labels)`);
  }
  return value;
}

function _checkClientPodLabels(labels: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  if (labels === null || typeof labels !== 'object' || Object.keys(labels).length === 0) {
    throw new Error(`clientPodLabels ${JSON.stringify(labels)} is empty (expected the API server pods' selector labels: an empty selector would admit every pod)`);
  }
  return labels;
}

/** cdk8s-plus's ContainerResources as a Kubernetes ResourceRequirements, as cdk8s-plus writes it. */
function _resourceRequirements(resources: kplus.ContainerResources): k8s.ResourceRequirements {
  const requests: Record<string, k8s.Quantity> = {};
  const limits: Record<string, k8s.Quantity> = {};
  if (resources.cpu?.request) requests.cpu = k8s.Quantity.fromString(resources.cpu.request.amount);
  if (resources.cpu?.limit) limits.cpu = k8s.Quantity.fromString(resources.cpu.limit.amount);
  if (resources.memory?.request) requests.memory = k8s.Quantity.fromString(`${resources.memory.request.toMebibytes()}Mi`);
  if (resources.memory?.limit) limits.memory = k8s.Quantity.fromString(`${resources.memory.limit.toMebibytes()}Mi`);
  return {
    requests: Object.keys(requests).length > 0 ? requests : undefined,
    limits: Object.keys(limits).length > 0 ? limits : undefined,
  };
}
