import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ApiObject } from 'cdk8s';
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { SelfSignedPki, splitPemBundle } from './pki';
import { _selfSignedPki } from './pki/self-signed-pki';
import { _checkServingCertificate, _PROP_NAMES, _ServingInputNames } from './pki/_check-serving';
import { _checkValidities, _MAX_COMMON_NAME_LENGTH } from './pki/_internal';

/** Where `Certificates.selfSigned()` keeps the PKI between synths. */
export const DEFAULT_PKI_DIRECTORY = '.pki';
export const DEFAULT_CERT_VALIDITY_DAYS = 365;
export const DEFAULT_CA_VALIDITY_DAYS = 3650;
/** The annotation by which cert-manager's cainjector fills an APIService's `caBundle`. */
export const CERT_MANAGER_INJECT_CA_FROM = 'cert-manager.io/inject-ca-from';

/** What a certificate source needs to know about the server it serves. */
export interface CertificateRequest {
  /** The Service the aggregator dials; the certificate must be valid for `<serviceName>.<namespace>.svc`. */
  readonly serviceName: string;
  readonly namespace: string;
  /** Every DNS name the serving certificate holds (`servingDnsNames`). */
  readonly dnsNames: string[];
  /** The server's name: Secret, Issuer and Certificate names derive from it. */
  readonly name: string;
}

/** The certificate material for one server, as the other constructs consume it. */
export interface BoundCertificates {
  /** The `kubernetes.io/tls` Secret the pod mounts. */
  readonly secretName: string;
  /** PEM bundle of the CA certificate(s) for the APIService `caBundle`. @default - filled by cert-manager */
  readonly caBundlePem?: string;
  /** Annotations for each APIService (cert-manager's inject-ca-from). */
  readonly apiServiceAnnotations: Record<string, string>;
  /** SHA-256 (hex) of `tls.crt`; a pod-template annotation, so a new certificate rolls the pods. @default - none */
  readonly servingCertificateChecksum?: string;
  /** Certificates written to the output (serving certificate first, then the CA bundle), for summaries. */
  readonly certificatePems: string[];
  /** What the PKI store did (created, reused, renewed …), in self-signed mode. @default [] */
  readonly pkiActions?: readonly string[];
}

/**
 * How a source makes its certificates, so that the server's other PKI (etcd's) can be made the
 * same way when nothing else is said: in the same PKI directory, or by cert-manager.
 */
export type CertificatesOrigin =
  | { readonly kind: 'self-signed'; readonly options: SelfSignedCertificatesOptions }
  | { readonly kind: 'cert-manager'; readonly options: CertManagerCertificatesOptions };

/** A source of serving certificates; `bind` emits whatever objects the source needs into `scope`. */
export interface ICertificates {
  /** @default - certificates given from outside (PEM, files, a Secret): there is nothing to imitate */
  readonly origin?: CertificatesOrigin;
  bind(scope: Construct, request: CertificateRequest): BoundCertificates;
}

export interface SelfSignedCertificatesOptions {
  /**
   * The app's PKI: the construct reads its certificates from it, and the app writes what is new
   * with `pki.save()` after `app.synth()`, so that building the construct tree writes nothing.
   * Its directory and lifetimes apply; `pkiDirectory`, `certValidityDays`, `caValidityDays` and
   * `now` must not be given with it.
   * @default - a PKI in `pkiDirectory`, written as the construct is built
   */
  readonly pki?: SelfSignedPki;
  /**
   * PKI directory (without `pki`); each server's PKI lives in
   * `<pkiDirectory>/<namespace>/<name>/<environment>` (see `SelfSignedPki`).
   * @default '.pki'
   */
  readonly pkiDirectory?: string;
  /** @default 365 */
  readonly certValidityDays?: number;
  /** Must exceed certValidityDays: the CA outlives the certificates it signs. @default 3650 */
  readonly caValidityDays?: number;
  /** The clock, for tests. @default - the current time */
  readonly now?: Date;
}

export interface PemCertificatesOptions {
  /** The CA certificate(s) the serving certificate chains to. */
  readonly caBundlePem: string;
  /** The serving certificate, optionally followed by intermediates. */
  readonly tlsCertPem: string;
  /** The serving certificate's private key. */
  readonly tlsKeyPem: string;
  /** The clock the expiry check uses. @default - the current time */
  readonly now?: Date;
}

export interface FileCertificatesOptions {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface SecretCertificatesOptions {
  /** An existing `kubernetes.io/tls` Secret in the server's namespace. */
  readonly secretName: string;
  /** The CA certificate(s) that Secret's certificate chains to. */
  readonly caBundlePem: string;
}

export interface CertManagerIssuerRef {
  readonly name: string;
  readonly kind: 'Issuer' | 'ClusterIssuer';
  /** @default 'cert-manager.io' */
  readonly group?: string;
}

export interface CertManagerCertificatesOptions {
  /**
   * The issuer that signs the serving certificate. It must put its CA in the Secret's `ca.crt`
   * (CA and self-signed issuers do), since cainjector copies that into `caBundle`.
   * @default - a self-signed Issuer bootstraps a CA Certificate and a CA Issuer in the namespace
   */
  readonly issuerRef?: CertManagerIssuerRef;
  /** @default 365 */
  readonly certValidityDays?: number;
  /** Validity of the bootstrapped CA. @default 3650 */
  readonly caValidityDays?: number;
}

/**
 * Where the serving certificate comes from (steps 4–6). Every mode gives the APIService a CA to
 * verify against; none ever sets `insecureSkipTLSVerify`, and no mode writes a CA private key.
 */
export class Certificates {
  /**
   * The default: a CA and a serving certificate made in code, persisted in a PKI directory and
   * reused while valid, so that the same inputs give byte-identical output. Emits the Secret
   * (`tls.crt`, `tls.key`, `ca.crt`); the CA key stays in the PKI directory.
   */
  public static selfSigned(options: SelfSignedCertificatesOptions = {}): ICertificates {
    const pkiFor = _selfSignedPki(options, { directory: DEFAULT_PKI_DIRECTORY, certValidityDays: DEFAULT_CERT_VALIDITY_DAYS, caValidityDays: DEFAULT_CA_VALIDITY_DAYS });
    return {
      origin: { kind: 'self-signed', options },
      bind(scope, request) {
        const pki = pkiFor();
        const material = pki.servingCertificate({
          namespace: request.namespace,
          name: request.name,
          caCommonName: _caCommonName(request),
          servingCommonName: _servingCommonName(request),
          dnsNames: request.dnsNames,
          secretName: _tlsSecretName(request),
        });
        if (options.pki === undefined) pki.save();
        return { ..._emitTlsSecret(scope, request, material.caBundlePem, material.tlsCertPem, material.tlsKeyPem), pkiActions: material.actions };
      },
    };
  }

  /**
   * Certificates you already have. Checked at synth: the key matches the certificate, the
   * certificate is valid for `<service>.<namespace>.svc` and now, and it chains to the bundle.
   */
  public static fromPem(options: PemCertificatesOptions): ICertificates {
    return _pemCertificates(options, _PROP_NAMES);
  }

  /** `fromPem` with the PEMs read from files (when bound). */
  public static fromFiles(options: FileCertificatesOptions): ICertificates {
    return {
      bind(scope, request) {
        const read = (option: string, file: string): string => {
          try {
            return readFileSync(file, 'utf8');
          } catch (e) {
            throw new Error(`${option} "${file}" cannot be read (${(e as Error).message})`);
          }
        };
        const pems = { caBundlePem: read('caFile', options.caFile), tlsCertPem: read('certFile', options.certFile), tlsKeyPem: read('keyFile', options.keyFile) };
        const names = { caBundlePem: `caFile "${options.caFile}"`, tlsCertPem: `certFile "${options.certFile}"`, tlsKeyPem: `keyFile "${options.keyFile}"` };
        return _pemCertificates(pems, names).bind(scope, request);
      },
    };
  }

  /** A `kubernetes.io/tls` Secret that already exists in the namespace; nothing is emitted. */
  public static fromSecret(options: SecretCertificatesOptions): ICertificates {
    return {
      bind() {
        const certificatePems = _caCertificates('caBundlePem', options.caBundlePem);
        return { secretName: options.secretName, caBundlePem: options.caBundlePem, apiServiceAnnotations: {}, certificatePems };
      },
    };
  }

  /**
   * cert-manager issues and renews the serving certificate; its cainjector fills each
   * APIService's `caBundle` from the annotation `cert-manager.io/inject-ca-from:
   * <namespace>/<certificate>`. No key is in the output, which suits GitOps. The pods are not
   * rolled on renewal: the server reloads the mounted files when they change.
   */
  public static certManager(options: CertManagerCertificatesOptions = {}): ICertificates {
    const certValidityDays = options.certValidityDays ?? DEFAULT_CERT_VALIDITY_DAYS;
    const caValidityDays = options.caValidityDays ?? DEFAULT_CA_VALIDITY_DAYS;
    _checkValidities(certValidityDays, caValidityDays);
    return {
      origin: { kind: 'cert-manager', options },
      bind(scope, request) {
        const { name, namespace } = request;
        const issuerRef = options.issuerRef ?? _bootstrapCertManagerCa(scope, { name, namespace, caCommonName: _caCommonName(request), caValidityDays });
        const certificateName = `${name}-serving`;
        const secretName = `${name}-tls`;
        new ApiObject(scope, 'ServingCertificate', {
          apiVersion: 'cert-manager.io/v1',
          kind: 'Certificate',
          metadata: { name: certificateName, namespace },
          spec: {
            secretName,
            commonName: _servingCommonName(request),
            dnsNames: request.dnsNames,
            ..._certManagerDurations(certValidityDays),
            privateKey: { algorithm: 'RSA', size: 2048, rotationPolicy: 'Always' },
            usages: ['server auth', 'digital signature', 'key encipherment'],
            issuerRef: { name: issuerRef.name, kind: issuerRef.kind, group: issuerRef.group ?? 'cert-manager.io' },
          },
        });
        return { secretName, apiServiceAnnotations: { [CERT_MANAGER_INJECT_CA_FROM]: `${namespace}/${certificateName}` }, certificatePems: [] };
      },
    };
  }
}

/**
 * Certificates given as PEM, checked when bound as the aggregator's Go TLS client would check
 * them (see `_checkServingCertificate`); `names` are how the messages call each input.
 */
function _pemCertificates(options: PemCertificatesOptions, names: _ServingInputNames): ICertificates {
  return {
    bind(scope, request) {
      _checkServingCertificate(options, request, options.now ?? new Date(), names);
      return _emitTlsSecret(scope, request, options.caBundlePem, options.tlsCertPem, options.tlsKeyPem);
    },
  };
}

function _tlsSecretName(request: CertificateRequest): string {
  return `${request.name}-tls`;
}

function _caCommonName(request: CertificateRequest): string {
  return `${request.name}.${request.namespace} aggregated API CA`.slice(0, _MAX_COMMON_NAME_LENGTH);
}

/** Clients ignore the CN (they check the SANs); it names the Service for people reading the certificate. */
function _servingCommonName(request: CertificateRequest): string {
  const host = `${request.serviceName}.${request.namespace}.svc`;
  return host.length <= _MAX_COMMON_NAME_LENGTH ? host : request.serviceName;
}

/** cert-manager durations; renewal when a third of the life remains, as the self-signed store does. */
/**
 * cert-manager's CA bootstrap in `namespace`: a self-signed Issuer `<name>-selfsigned` signs a CA
 * Certificate `<name>-ca` (Secret of the same name), and a CA Issuer `<name>-ca` signs with it.
 * The renewed CA keeps its key (and so its subject key identifier), so certificates it signed
 * before still verify against the CA certificate their peers loaded: the caBundle cainjector
 * updates, or the CA file etcd read at start (it does not reload `--trusted-ca-file`).
 */
export function _bootstrapCertManagerCa(
  scope: Construct,
  ca: { readonly name: string; readonly namespace: string; readonly caCommonName: string; readonly caValidityDays: number },
): CertManagerIssuerRef {
  const { name, namespace } = ca;
  new ApiObject(scope, 'SelfSignedIssuer', {
    apiVersion: 'cert-manager.io/v1',
    kind: 'Issuer',
    metadata: { name: `${name}-selfsigned`, namespace },
    spec: { selfSigned: {} },
  });
  new ApiObject(scope, 'CaCertificate', {
    apiVersion: 'cert-manager.io/v1',
    kind: 'Certificate',
    metadata: { name: `${name}-ca`, namespace },
    spec: {
      isCA: true,
      commonName: ca.caCommonName,
      secretName: `${name}-ca`,
      ..._certManagerDurations(ca.caValidityDays),
      privateKey: { algorithm: 'RSA', size: 2048, rotationPolicy: 'Never' },
      issuerRef: { name: `${name}-selfsigned`, kind: 'Issuer', group: 'cert-manager.io' },
    },
  });
  new ApiObject(scope, 'CaIssuer', {
    apiVersion: 'cert-manager.io/v1',
    kind: 'Issuer',
    metadata: { name: `${name}-ca`, namespace },
    spec: { ca: { secretName: `${name}-ca` } },
  });
  return { name: `${name}-ca`, kind: 'Issuer' };
}

/** cert-manager durations; renewal when a third of the life remains, as the PKI store does. */
export function _certManagerDurations(days: number): { duration: string; renewBefore: string } {
  const hours = days * 24;
  return { duration: `${hours}h`, renewBefore: `${Math.floor(hours / 3)}h` };
}

function _emitTlsSecret(scope: Construct, request: CertificateRequest, caBundlePem: string, tlsCertPem: string, tlsKeyPem: string): BoundCertificates {
  const secretName = _tlsSecretName(request);
  const base64 = (value: string): string => Buffer.from(value, 'utf8').toString('base64');
  new k8s.KubeSecret(scope, 'Secret', {
    metadata: { name: secretName, namespace: request.namespace },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': base64(tlsCertPem), 'tls.key': base64(tlsKeyPem), 'ca.crt': base64(caBundlePem) },
  });
  return {
    secretName,
    caBundlePem,
    apiServiceAnnotations: {},
    servingCertificateChecksum: createHash('sha256').update(tlsCertPem).digest('hex'),
    certificatePems: [...splitPemBundle(tlsCertPem), ...splitPemBundle(caBundlePem)],
  };
}

function _caCertificates(option: string, bundle: string): string[] {
  const pems = splitPemBundle(bundle).filter((block) => block.startsWith('-----BEGIN CERTIFICATE-----'));
  if (pems.length === 0) throw new Error(`${option} holds no PEM certificate (expected one or more "-----BEGIN CERTIFICATE-----" blocks)`);
  return pems;
}
