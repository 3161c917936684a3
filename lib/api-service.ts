import { ApiObjectMetadata } from 'cdk8s';
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _checkDns1035Label, _checkDns1123Label, _checkDns1123Subdomain, _checkIntegerInRange } from './_validate';

/** The port of the Service the aggregator proxies to. */
export const API_SERVICE_PORT = 443;
/** APIService `groupPriorityMinimum` unless given (sample-apiserver's value). */
export const DEFAULT_GROUP_PRIORITY_MINIMUM = 1000;
/** APIService `versionPriority` of the preferred version unless given (sample-apiserver's value). */
export const DEFAULT_VERSION_PRIORITY = 15;

export interface ApiServiceProps {
  /** The API group, e.g. `wardle.example.com`. */
  readonly group: string;
  /** The version of the group this APIService registers, e.g. `v1alpha1`. */
  readonly version: string;
  /** Name of the Service in front of the extension server. */
  readonly serviceName: string;
  /** Namespace of that Service. */
  readonly serviceNamespace: string;
  /**
   * Port of that Service.
   * @default 443
   */
  readonly servicePort?: number;
  /**
   * PEM bundle of the CA certificate(s) the serving certificate chains to; written base64 into
   * `spec.caBundle`. Leave it out only when something else fills `caBundle` (cert-manager's
   * `cert-manager.io/inject-ca-from` annotation).
   * @default - no caBundle
   */
  readonly caBundlePem?: string;
  /**
   * Priority of the group among all groups (1–20000); higher comes first in discovery.
   * @default 1000
   */
  readonly groupPriorityMinimum?: number;
  /**
   * Priority of this version within its group (1–1000); higher is preferred.
   * @default 15
   */
  readonly versionPriority?: number;
  /**
   * Extra annotations and labels.
   * @default - none
   */
  readonly metadata?: Pick<ApiObjectMetadata, 'annotations' | 'labels'>;
}

export interface IApiService {
  /** `<version>.<group>`, the name Kubernetes requires. */
  readonly name: string;
  readonly group: string;
  readonly version: string;
}

/**
 * Step 14 (README, "The fifteen steps"): an `apiregistration.k8s.io/v1` APIService that tells kube-apiserver to proxy
 * `/apis/<group>/<version>` to a Service. TLS to the Service is always verified against
 * `caBundle` for the name `<service>.<namespace>.svc`; `insecureSkipTLSVerify` is never set.
 */
export class ApiService extends Construct implements IApiService {
  public readonly name: string;
  public readonly group: string;
  public readonly version: string;
  public readonly resource: k8s.KubeApiService;

  constructor(scope: Construct, id: string, props: ApiServiceProps) {
    super(scope, id);
    this.group = _checkDns1123Subdomain('group', props.group);
    this.version = _checkDns1123Label('version', props.version);
    this.name = `${this.version}.${this.group}`;
    const groupPriorityMinimum = _checkIntegerInRange('groupPriorityMinimum', props.groupPriorityMinimum ?? DEFAULT_GROUP_PRIORITY_MINIMUM, 1, 20000);
    const versionPriority = _checkIntegerInRange('versionPriority', props.versionPriority ?? DEFAULT_VERSION_PRIORITY, 1, 1000);
    const port = _checkIntegerInRange('servicePort', props.servicePort ?? API_SERVICE_PORT, 1, 65535);
    if (props.caBundlePem !== undefined && !props.caBundlePem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new Error(`caBundlePem of APIService "${this.name}" holds no PEM certificate (expected one or more "-----BEGIN CERTIFICATE-----" blocks)`);
    }

    this.resource = new k8s.KubeApiService(this, 'Resource', {
      metadata: { name: this.name, ...props.metadata },
      spec: {
        group: this.group,
        version: this.version,
        groupPriorityMinimum,
        versionPriority,
        service: {
          name: _checkDns1035Label('serviceName', props.serviceName),
          namespace: _checkDns1123Label('serviceNamespace', props.serviceNamespace),
          port,
        },
        caBundle: props.caBundlePem === undefined ? undefined : Buffer.from(props.caBundlePem, 'utf8').toString('base64'),
      },
    });
  }
}
