import { createHash } from 'node:crypto';
import { ApiObject } from 'cdk8s';
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _bootstrapCertManagerCa, _certManagerDurations, CertManagerIssuerRef, DEFAULT_CA_VALIDITY_DAYS, DEFAULT_CERT_VALIDITY_DAYS, DEFAULT_PKI_DIRECTORY, ICertificates } from './certificates';
import { _selfSignedPki } from './pki/self-signed-pki';
import { CertificateKeyPair, SelfSignedPki, splitPemBundle } from './pki';
import { _checkValidities, _MAX_COMMON_NAME_LENGTH } from './pki/_internal';

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
  /**
   * The app's PKI (see `Certificates.selfSigned`): read while the tree is built, written by the
   * app's `pki.save()`. Not with `pkiDirectory`, `certValidityDays`, `caValidityDays` or `now`.
   * @default - a PKI in `pkiDirectory`, written as the construct is built
   */
  readonly pki?: SelfSignedPki;
  /** PKI directory (without `pki`); each cluster's PKI lives in `<pkiDirectory>/<namespace>/<name>/<environment>`. @default '.pki' */
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
  /**
   * etcd's certificates made the way the server's serving certificates are: self-signed in the
   * same PKI directory with the same lifetimes, or by cert-manager with the same lifetimes (always
   * under an etcd CA of their own, never the serving issuer). Certificates given from outside
   * (PEM, files, a Secret) have no etcd counterpart: then `selfSigned()` with its defaults.
   */
  public static like(servingCertificates: ICertificates | undefined): IEtcdCertificates {
    const origin = servingCertificates?.origin;
    if (origin?.kind === 'cert-manager') {
      return EtcdCertificates.certManager({ certValidityDays: origin.options.certValidityDays, caValidityDays: origin.options.caValidityDays });
    }
    return EtcdCertificates.selfSigned(origin?.kind === 'self-signed' ? origin.options : {});
  }

  /**
   * The default: an etcd CA (separate from the serving CA) and its certificates made in code,
   * kept in `<pkiDirectory>/<namespace>/<name>` and reused while valid, so that the same inputs
   * give byte-identical output; renewed with overlap like the serving certificate. Emits one
   * `kubernetes.io/tls` Secret per member for each of its server and peer certificates, and the
   * client Secret, each with `ca.crt`; the CA key stays in the PKI directory.
   */
  public static selfSigned(options: SelfSignedEtcdCertificatesOptions = {}): IEtcdCertificates {
    const pkiFor = _selfSignedPki(options, { directory: DEFAULT_PKI_DIRECTORY, certValidityDays: DEFAULT_CERT_VALIDITY_DAYS, caValidityDays: DEFAULT_CA_VALIDITY_DAYS });
    return {
      bind(scope, request) {
        const store = pkiFor();
        const pki = store.etcdCertificates({
          namespace: request.namespace,
          name: request.name,
          caCommonName: _caCommonName(request),
          members: request.members.map((member) => ({
            name: member.memberName,
            serverDnsNames: member.serverDnsNames,
            peerDnsNames: member.peerDnsNames,
            ipAddresses: member.ipAddresses,
            serverSecretName: member.serverSecretName,
            peerSecretName: member.peerSecretName,
          })),
          clientCommonName: request.clientCommonName,
          clientSecretName: request.clientSecretName,
        });
        if (options.pki === undefined) store.save();
        const secret = (name: string, pair: CertificateKeyPair) => _tlsSecret(scope, name, request.namespace, pair, pki.caBundlePem);
        request.members.forEach((member, i) => {
          secret(member.serverSecretName, pki.members[i].server);
          secret(member.peerSecretName, pki.members[i].peer);
        });
        secret(request.clientSecretName, pki.client);
        const sha256 = (...parts: string[]) => parts.reduce((hash, part) => hash.update(part), createHash('sha256')).digest('hex');
        return {
          clientCertificateChecksum: sha256(pki.client.certPem, pki.caBundlePem),
          caBundleChecksum: sha256(pki.caBundlePem),
          certificatePems: [
            ...pki.members.flatMap((member) => [member.server.certPem, member.peer.certPem]),
            pki.client.certPem,
            ...splitPemBundle(pki.caBundlePem),
          ],
          pkiActions: pki.actions,
        };
      },
    };
  }

  /**
   * cert-manager issues and renews the certificates into the same Secrets; nothing secret is in
   * the output. Without an `issuerRef`, a self-signed Issuer bootstraps an etcd CA Certificate and
   * a CA Issuer. The members reload their own certificates on every handshake; the API server and
   * the backup job read the client Secret's files as they change.
   */
  public static certManager(options: CertManagerEtcdCertificatesOptions = {}): IEtcdCertificates {
    const certValidityDays = options.certValidityDays ?? DEFAULT_CERT_VALIDITY_DAYS;
    const caValidityDays = options.caValidityDays ?? DEFAULT_CA_VALIDITY_DAYS;
    _checkValidities(certValidityDays, caValidityDays);
    return {
      bind(scope, request) {
        const { name, namespace } = request;
        const certificate = (secretName: string, spec: Record<string, unknown>) =>
          new ApiObject(scope, `Certificate-${secretName}`, {
            apiVersion: 'cert-manager.io/v1',
            kind: 'Certificate',
            metadata: { name: secretName, namespace },
            spec: { secretName, ...spec },
          });
        const issuerRef = options.issuerRef ?? _bootstrapCertManagerCa(scope, { name, namespace, caCommonName: _caCommonName(request), caValidityDays });
        const leaf = {
          ..._certManagerDurations(certValidityDays),
          privateKey: { algorithm: 'RSA', size: 2048, rotationPolicy: 'Always' },
          issuerRef: { name: issuerRef.name, kind: issuerRef.kind, group: issuerRef.group ?? 'cert-manager.io' },
        };
        const memberUsages = ['server auth', 'client auth', 'digital signature', 'key encipherment'];
        for (const member of request.members) {
          const sans = { ipAddresses: [...member.ipAddresses] };
          certificate(member.serverSecretName, { commonName: member.memberName, dnsNames: [...member.serverDnsNames], ...sans, usages: memberUsages, ...leaf });
          certificate(member.peerSecretName, { commonName: member.memberName, dnsNames: [...member.peerDnsNames], ...sans, usages: memberUsages, ...leaf });
        }
        certificate(request.clientSecretName, { commonName: request.clientCommonName, usages: ['client auth', 'digital signature', 'key encipherment'], ...leaf });
        return { certificatePems: [], pkiActions: [] };
      },
    };
  }
}

function _caCommonName(request: EtcdCertificateRequest): string {
  return `${request.name}.${request.namespace} etcd CA`.slice(0, _MAX_COMMON_NAME_LENGTH);
}

function _tlsSecret(scope: Construct, name: string, namespace: string, pair: CertificateKeyPair, caBundlePem: string): k8s.KubeSecret {
  const base64 = (value: string): string => Buffer.from(value, 'utf8').toString('base64');
  return new k8s.KubeSecret(scope, `Secret-${name}`, {
    metadata: { name, namespace },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': base64(pair.certPem), 'tls.key': base64(pair.keyPem), 'ca.crt': base64(caBundlePem) },
  });
}
