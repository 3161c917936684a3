import { Construct } from 'constructs';
import { CertManagerIssuerRef } from './certificates';

/** One etcd member's certificates, as the cluster asks for them. */
export interface EtcdMemberCertificateRequest {
  /** The member's pod name, which is also its etcd member name, e.g. `wardle-apiserver-etcd-0`. */
  readonly memberName: string;
  /** `kubernetes.io/tls` Secret of the client-facing server certificate (`--cert-file`). */
  readonly serverSecretName: string;
  /** The names clients dial: the member's own DNS names and the client Service's, plus `localhost`. */
  readonly serverDnsNames: readonly string[];
  /** `kubernetes.io/tls` Secret of the peer certificate (`--peer-cert-file`), served to and presented to the other members. */
  readonly peerSecretName: string;
  /** The member's stable DNS names (`<pod>.<headless service>.<namespace>.svc[.<cluster domain>]`), plus `localhost`. */
  readonly peerDnsNames: readonly string[];
  /** IP SANs of both certificates: `127.0.0.1`, which etcd's own gRPC gateway and local tools dial. */
  readonly ipAddresses: readonly string[];
}

/** What an etcd certificate source needs to know about the cluster. */
export interface EtcdCertificateRequest {
  /** The StatefulSet's name; the PKI directory, Issuer and CA names derive from it. */
  readonly name: string;
  readonly namespace: string;
  readonly members: readonly EtcdMemberCertificateRequest[];
  /** `kubernetes.io/tls` Secret of the API server's etcd client certificate (`ca.crt` is the etcd CA bundle). */
  readonly clientSecretName: string;
  /** Common name of the client certificate (etcd logs it; with etcd auth on, it is the etcd user). */
  readonly clientCommonName: string;
}

/** The certificate material of one etcd cluster, as the other constructs consume it. */
export interface BoundEtcdCertificates {
  /** SHA-256 (hex) over the client certificate and the CA bundle; a pod annotation on the API server rolls it. @default - none (cert-manager renews in place) */
  readonly clientCertificateChecksum?: string;
  /**
   * SHA-256 (hex) of the CA bundle the members trust. etcd reads `--trusted-ca-file` once at
   * start (it reloads its own certificate on every handshake), so a new bundle must restart them.
   * @default - none
   */
  readonly caBundleChecksum?: string;
  /** Certificates written to the output (members' server and peer certificates, the client certificate, then the CA bundle). */
  readonly certificatePems: string[];
  /** What the PKI store did (created, reused, renewed …). @default [] */
  readonly pkiActions: readonly string[];
}

/** A source of etcd certificates; `bind` emits the Secrets (or what makes them) into `scope`. */
export interface IEtcdCertificates {
  bind(scope: Construct, request: EtcdCertificateRequest): BoundEtcdCertificates;
}

export interface SelfSignedEtcdCertificatesOptions {
  /** PKI directory; each cluster's PKI lives in `<pkiDirectory>/<namespace>/<name>`. @default '.pki' */
  readonly pkiDirectory?: string;
  /** @default 365 */
  readonly certValidityDays?: number;
  /** Must exceed certValidityDays. @default 3650 */
  readonly caValidityDays?: number;
  /** The clock, for tests. @default - the current time */
  readonly now?: Date;
}

export interface CertManagerEtcdCertificatesOptions {
  /**
   * The issuer that signs the members' and the client's certificates; it must put its CA in each
   * Secret's `ca.crt` (CA and self-signed issuers do): etcd and the API server trust that file.
   * @default - a self-signed Issuer bootstraps an etcd CA Certificate and a CA Issuer in the namespace
   */
  readonly issuerRef?: CertManagerIssuerRef;
  /** @default 365 */
  readonly certValidityDays?: number;
  /** @default 3650 */
  readonly caValidityDays?: number;
}

/** Where the etcd certificates come from. Neither mode ever writes the etcd CA's private key to the output. */
export class EtcdCertificates {
  /** An etcd CA and its certificates made in code, kept in the PKI directory and reused while valid. */
  public static selfSigned(options: SelfSignedEtcdCertificatesOptions = {}): IEtcdCertificates {
    void options;
    throw new Error('not implemented yet');
  }

  /** cert-manager issues and renews the certificates; nothing secret is in the output. */
  public static certManager(options: CertManagerEtcdCertificatesOptions = {}): IEtcdCertificates {
    void options;
    throw new Error('not implemented yet');
  }
}
