import { ApiObject, Duration, JsonPatch, Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _checkDns1123Label, _checkIntegerInRange } from './_validate';
import { _podPlacementSpec, PodPlacement } from './pod-placement';

/** Where the serving certificate Secret is mounted; `--tls-cert-file` and `--tls-private-key-file` point here. */
export const SERVING_CERT_DIRECTORY = '/var/run/apiserver/serving-cert';
/** Pod-template annotation holding the SHA-256 of the serving certificate file's PEM text (not the certificate's fingerprint): any change of `tls.crt` rolls the pods. */
export const SERVING_CERT_CHECKSUM_ANNOTATION = 'apiextension.cdk8s.io/serving-cert-sha256';
/** Where the etcd client Secret is mounted; `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile` point here. */
export const ETCD_CLIENT_CERT_DIRECTORY = '/var/run/apiserver/etcd-client';
/** Pod-template annotation holding a SHA-256 of the etcd client certificate's PEM text (and its CA bundle's): a new certificate rolls the pods (the server reads it at start). */
export const ETCD_CLIENT_CERT_CHECKSUM_ANNOTATION = 'apiextension.cdk8s.io/etcd-client-cert-sha256';
/** The container's HTTPS port: GKE private clusters open only 443 and 10250 to the control plane. */
/** Where the definition ConfigMap is mounted; `--api-definition-file` points at `api.json` in it. */
export const API_DEFINITION_DIRECTORY = '/etc/apiserver/api-definition';
/** Pod annotation: SHA-256 of the definition served, so that a changed definition rolls the pods. */
export const API_DEFINITION_CHECKSUM_ANNOTATION = 'apiextension.cdk8s.io/api-definition-sha256';
export const DEFAULT_SECURE_PORT = 10250;
/** The non-root user and group the server runs as (numeric, so `runAsNonRoot` can be checked). */
export const SERVER_USER_ID = 65532;
/** Name of the container in the pod. */
export const SERVER_CONTAINER_NAME = 'apiserver';
/** The label that selects the server's pods. */
export const SERVER_NAME_LABEL = 'app.kubernetes.io/name';

/** Requests 100m CPU and 128Mi memory; limit 256Mi memory and no CPU limit (throttling slows discovery). */
export const DEFAULT_SERVER_RESOURCES: kplus.ContainerResources = {
  cpu: { request: kplus.Cpu.millis(100) },
  memory: { request: Size.mebibytes(128), limit: Size.mebibytes(256) },
};

/** The Deployment; where its pods run (`nodeSelector`, `tolerations`, `priorityClassName`) and how their image is pulled (`imagePullSecrets`) come from `PodPlacement`. */
export interface ApiServerDeploymentProps extends PodPlacement {
  /** Name of the Deployment and value of its `app.kubernetes.io/name` selector label. */
  readonly name: string;
  /** Namespace of the Deployment. */
  readonly namespace: string;
  /** The server's container image. */
  readonly image: string;
  /** @default IF_NOT_PRESENT */
  readonly imagePullPolicy?: kplus.ImagePullPolicy;
  /**
   * Number of pods; more than one also creates a PodDisruptionBudget (minAvailable 1) and a
   * preferred anti-affinity that spreads the pods over nodes.
   * @default 2
   */
  readonly replicas?: number;
  /**
   * The HTTPS port the server listens on (`--secure-port`), named `https`.
   * @default 10250
   */
  readonly securePort?: number;
  /** The `kubernetes.io/tls` Secret mounted read-only at `SERVING_CERT_DIRECTORY`. */
  readonly servingCertSecretName: string;
  /** The ServiceAccount the pods run as; its token is mounted. */
  readonly serviceAccount: kplus.IServiceAccount;
  /** @default DEFAULT_SERVER_RESOURCES */
  readonly resources?: kplus.ContainerResources;
  /**
   * Arguments after the TLS and port flags.
   * @default []
   */
  readonly extraArgs?: readonly string[];
  /** @default {} */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Labels on the Deployment and its pods (the selector label is added).
   * @default {}
   */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * SHA-256 (hex) of the serving certificate file's PEM text (not the certificate's fingerprint,
   * which synth prints), written to the pod template so that any change of `tls.crt` rolls the pods.
   * @default - no annotation (the certificate is rotated in place, e.g. by cert-manager)
   */
  readonly servingCertificateChecksum?: string;
  /**
   * A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`, `ca.crt`) mounted read-only at
   * `ETCD_CLIENT_CERT_DIRECTORY`, for the server's `--etcd-*file` flags (in `extraArgs`).
   * @default - none
   */
  readonly etcdClientSecretName?: string;
  /**
   * SHA-256 (hex) of the etcd client certificate's PEM text (with its CA bundle's), written to
   * the pod template so that a new certificate rolls the pods.
   * @default - no annotation
   */
  readonly etcdClientCertificateChecksum?: string;
  /**
   * A ConfigMap holding `api.json`, the ApiGroupDefinition the bundled server serves, mounted
   * read-only at `API_DEFINITION_DIRECTORY` and given as `--api-definition-file`.
   * @default - none: the image serves its own API (the bundled server: wardle.example.com)
   */
  readonly apiDefinitionConfigMapName?: string;
  /** SHA-256 (hex) of `api.json`, on the pod template so a new definition rolls the pods. @default - no annotation */
  readonly apiDefinitionChecksum?: string;
}

export interface IApiServerDeployment {
  readonly deployment: kplus.Deployment;
  readonly selectorLabels: Readonly<Record<string, string>>;
  readonly securePort: number;
  readonly podDisruptionBudget?: k8s.KubePodDisruptionBudget;
}

/**
 * Steps 7 and 8: the Deployment that runs the extension server.
 *
 * The container reads its certificate from the mounted Secret
 * (`--tls-cert-file`, `--tls-private-key-file`), listens on `securePort`, is probed over HTTPS
 * on `/livez` and `/readyz` (anonymous paths for a delegated-auth server), and meets the
 * `restricted` Pod Security Standard. cdk8s-plus defaults are overridden where the server needs
 * otherwise: the ServiceAccount token is mounted (TokenReview, SubjectAccessReview and the
 * authentication ConfigMap need it), images are pulled IfNotPresent, resources are sized for
 * the server, and the root filesystem is read-only with an emptyDir at `/tmp`.
 */
export class ApiServerDeployment extends Construct implements IApiServerDeployment {
  public readonly deployment: kplus.Deployment;
  public readonly selectorLabels: Readonly<Record<string, string>>;
  public readonly securePort: number;
  public readonly podDisruptionBudget?: k8s.KubePodDisruptionBudget;

  constructor(scope: Construct, id: string, props: ApiServerDeploymentProps) {
    super(scope, id);
    const name = _checkDns1123Label('name', props.name);
    const namespace = _checkDns1123Label('namespace', props.namespace);
    const replicas = _checkIntegerInRange('replicas', props.replicas ?? 2, 1);
    this.securePort = _checkIntegerInRange('securePort', props.securePort ?? DEFAULT_SECURE_PORT, 1, 65535);
    if (props.image.trim() === '' || /\s/.test(props.image)) {
      throw new Error(`image "${props.image}" is not a valid image reference (expected e.g. "registry.example.com/server:1.0", no spaces)`);
    }
    this.selectorLabels = { [SERVER_NAME_LABEL]: name };
    const labels = { ...props.labels, ...this.selectorLabels };

    this.deployment = new kplus.Deployment(this, 'Resource', {
      metadata: { name, namespace, labels },
      replicas,
      select: false,
      podMetadata: { labels, annotations: _checksumAnnotations(props) },
      serviceAccount: props.serviceAccount,
      automountServiceAccountToken: true,
      securityContext: { ensureNonRoot: true, user: SERVER_USER_ID, group: SERVER_USER_ID, fsGroup: SERVER_USER_ID },
      containers: [
        {
          name: SERVER_CONTAINER_NAME,
          image: props.image,
          imagePullPolicy: props.imagePullPolicy ?? kplus.ImagePullPolicy.IF_NOT_PRESENT,
          args: [
            `--secure-port=${this.securePort}`,
            `--tls-cert-file=${SERVING_CERT_DIRECTORY}/tls.crt`,
            `--tls-private-key-file=${SERVING_CERT_DIRECTORY}/tls.key`,
            ...(props.apiDefinitionConfigMapName !== undefined ? [`--api-definition-file=${API_DEFINITION_DIRECTORY}/api.json`] : []),
            ...(props.extraArgs ?? []),
          ],
          envVariables: Object.fromEntries(Object.entries(props.env ?? {}).map(([key, value]) => [key, kplus.EnvValue.fromValue(value)])),
          ports: [{ number: this.securePort, name: 'https' }],
          liveness: kplus.Probe.fromHttpGet('/livez', {
            port: this.securePort,
            scheme: kplus.ConnectionScheme.HTTPS,
            periodSeconds: Duration.seconds(10),
            timeoutSeconds: Duration.seconds(5),
            failureThreshold: 6,
          }),
          readiness: kplus.Probe.fromHttpGet('/readyz', {
            port: this.securePort,
            scheme: kplus.ConnectionScheme.HTTPS,
            periodSeconds: Duration.seconds(5),
            timeoutSeconds: Duration.seconds(5),
            failureThreshold: 3,
          }),
          resources: props.resources ?? DEFAULT_SERVER_RESOURCES,
          securityContext: {
            ensureNonRoot: true,
            user: SERVER_USER_ID,
            group: SERVER_USER_ID,
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            privileged: false,
            capabilities: { drop: [kplus.Capability.ALL] },
            seccompProfile: { type: kplus.SeccompProfileType.RUNTIME_DEFAULT },
          },
        },
      ],
    });
    this.deployment.select(kplus.LabelSelector.of({ labels: this.selectorLabels }));

    const [container] = this.deployment.containers;
    const servingCert = kplus.Secret.fromSecretName(this, 'ServingCertSecret', props.servingCertSecretName);
    container.mount(SERVING_CERT_DIRECTORY, kplus.Volume.fromSecret(this, 'ServingCert', servingCert, { name: 'serving-cert', defaultMode: 0o440 }), {
      readOnly: true,
    });
    if (props.etcdClientSecretName !== undefined) {
      const etcdClientCert = kplus.Secret.fromSecretName(this, 'EtcdClientCertSecret', props.etcdClientSecretName);
      container.mount(ETCD_CLIENT_CERT_DIRECTORY, kplus.Volume.fromSecret(this, 'EtcdClientCert', etcdClientCert, { name: 'etcd-client-cert', defaultMode: 0o440 }), {
        readOnly: true,
      });
    }
    if (props.apiDefinitionConfigMapName !== undefined) {
      const definition = kplus.ConfigMap.fromConfigMapName(this, 'ApiDefinitionConfigMap', props.apiDefinitionConfigMapName);
      container.mount(API_DEFINITION_DIRECTORY, kplus.Volume.fromConfigMap(this, 'ApiDefinition', definition, { name: 'api-definition', defaultMode: 0o444 }), { readOnly: true });
    }
    container.mount('/tmp', kplus.Volume.fromEmptyDir(this, 'Tmp', 'tmp'));

    const apiObject = ApiObject.of(this.deployment);
    // cdk8s-plus labels every pod with a hash of the construct path even when it does not select
    // on it; moving the construct would then roll the pods for nothing.
    apiObject.addJsonPatch(JsonPatch.remove(`/spec/template/metadata/labels/${kplus.Pod.ADDRESS_LABEL.replace(/\//g, '~1')}`));
    // cdk8s-plus has no pod-level seccompProfile; the restricted profile accepts either level, set both.
    apiObject.addJsonPatch(JsonPatch.add('/spec/template/spec/securityContext/seccompProfile', { type: 'RuntimeDefault' }));
    for (const [field, value] of Object.entries(_podPlacementSpec('ApiServerDeployment', props))) {
      apiObject.addJsonPatch(JsonPatch.add(`/spec/template/spec/${field}`, value));
    }

    if (replicas > 1) {
      // Written directly: cdk8s-plus's spread() selects on a label derived from the construct path.
      apiObject.addJsonPatch(
        JsonPatch.add('/spec/template/spec/affinity', {
          podAntiAffinity: {
            preferredDuringSchedulingIgnoredDuringExecution: [
              { weight: 100, podAffinityTerm: { labelSelector: { matchLabels: { ...this.selectorLabels } }, topologyKey: 'kubernetes.io/hostname' } },
            ],
          },
        }),
      );
      this.podDisruptionBudget = new k8s.KubePodDisruptionBudget(this, 'DisruptionBudget', {
        metadata: { name, namespace, labels },
        spec: { minAvailable: k8s.IntOrString.fromNumber(1), selector: { matchLabels: { ...this.selectorLabels } } },
      });
    }
  }
}

function _checksumAnnotations(props: ApiServerDeploymentProps): Record<string, string> | undefined {
  const annotations: Record<string, string> = {};
  if (props.servingCertificateChecksum !== undefined) annotations[SERVING_CERT_CHECKSUM_ANNOTATION] = props.servingCertificateChecksum;
  if (props.etcdClientCertificateChecksum !== undefined) annotations[ETCD_CLIENT_CERT_CHECKSUM_ANNOTATION] = props.etcdClientCertificateChecksum;
  if (props.apiDefinitionChecksum !== undefined) annotations[API_DEFINITION_CHECKSUM_ANNOTATION] = props.apiDefinitionChecksum;
  return Object.keys(annotations).length > 0 ? annotations : undefined;
}
