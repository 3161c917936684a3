import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { k8s } from 'cdk8s-plus-28';
import { Construct } from 'constructs';
import { _checkDns1123Subdomain } from './_validate';
import { ETCD_CLIENT_CERT_DIRECTORY } from './api-server-deployment';
import { ICertificates } from './certificates';
import { EtcdCertificates } from './etcd-certificates';
import { EtcdCluster, EtcdClusterProps } from './etcd-cluster';
import { PodPlacement } from './pod-placement';
import { splitPemBundle } from './pki';

/** `Storage.etcdCluster()` names its EtcdCluster `<server name>` + this. */
export const ETCD_CLUSTER_NAME_SUFFIX = '-etcd';

/** What a storage choice needs to know about the server it serves. */
export interface StorageRequest {
  readonly namespace: string;
  /** The server's name: the etcd cluster and the client Secret are named after it. */
  readonly name: string;
  readonly clusterDomain: string;
  /** The labels of the server's pods: the only clients etcd's NetworkPolicy admits. */
  readonly serverPodLabels: Readonly<Record<string, string>>;
  /** Labels for every object the storage emits. */
  readonly labels: Readonly<Record<string, string>>;
  /** The server's serving certificates: an etcd deployed with it makes its own PKI the same way unless told otherwise. @default - self-signed in '.pki' */
  readonly servingCertificates?: ICertificates;
  /** Where the server's pods run and how their images are pulled: an etcd deployed with it does the same unless told otherwise. @default - DEFAULT_NODE_SELECTOR only */
  readonly podPlacement?: PodPlacement;
}

/** A storage choice, bound to one server: what its Deployment passes and mounts. */
export interface BoundStorage {
  /** The server's storage flags (before `extraArgs`). */
  readonly args: readonly string[];
  /** A `kubernetes.io/tls` Secret (tls.crt, tls.key, ca.crt) mounted read-only at `ETCD_CLIENT_CERT_DIRECTORY`. @default - none */
  readonly etcdClientSecretName?: string;
  /** A SHA-256 checksum of the client certificate (and, from an `EtcdCluster`, its CA bundle): a pod annotation, so new certificates roll the pods. @default - none */
  readonly etcdClientCertificateChecksum?: string;
  /** The etcd deployed with the server. @default - none */
  readonly etcdCluster?: EtcdCluster;
  /** What the etcd PKI store did. @default [] */
  readonly pkiActions?: readonly string[];
}

/** Where the server keeps its objects; `bind` emits whatever objects the choice needs into `scope`. */
export interface IStorage {
  /** Which choice this is: `custom` leaves the storage flags to `extraArgs`, the others set them. */
  readonly kind: 'etcd-cluster' | 'external-etcd' | 'memory' | 'custom';
  /** Whether the replicas share one store, so that more than one may run. */
  readonly shared: boolean;
  bind(scope: Construct, request: StorageRequest): BoundStorage;
}

/** `Storage.etcdCluster()`: the `EtcdCluster` props the server does not decide itself. */
export type EtcdClusterStorageOptions = Omit<EtcdClusterProps, 'namespace' | 'name' | 'clusterDomain' | 'clientPodLabels' | 'labels'>;

export interface ExternalEtcdStorageOptions {
  /** The etcd client URLs, `https://host:port`; the server fails over between them. */
  readonly servers: readonly string[];
  /**
   * The client TLS material in PEM: the CA bundle that verifies etcd's certificate, the client
   * certificate and its key. Checked: the key matches, the CA bundle verifies the certificate.
   * Emitted as a `kubernetes.io/tls` Secret `<name>-etcd-client`.
   * Exactly one of `pem`, `files` and `secretName`.
   */
  readonly pem?: { readonly caPem: string; readonly certPem: string; readonly keyPem: string };
  /** `pem`, read from files when bound. */
  readonly files?: { readonly caFile: string; readonly certFile: string; readonly keyFile: string };
  /** A `kubernetes.io/tls` Secret already in the namespace, holding `tls.crt`, `tls.key` and `ca.crt`; nothing is emitted or checked. */
  readonly secretName?: string;
}

export interface CustomStorageOptions {
  /** Whether the image's replicas share one store, so that more than one may run. */
  readonly shared: boolean;
}

/**
 * Where the server keeps its objects, in the manner of `Certificates`: an etcd cluster deployed
 * with the server (the default), an etcd you run, the server's memory (a demo), or whatever a
 * custom image's own flags say.
 */
export class Storage {
  /**
   * The default: an `EtcdCluster` named `<server name>-etcd` in the server's namespace (3 members,
   * TLS for clients and peers, a PodDisruptionBudget, a NetworkPolicy admitting only the server's
   * pods), and the server pointed at its client Service with its client certificate. Unless
   * `certificates` says otherwise, etcd's PKI is made like the server's serving certificates
   * (`EtcdCertificates.like`): self-signed in the same PKI directory, or by cert-manager.
   */
  public static etcdCluster(options: EtcdClusterStorageOptions = {}): IStorage {
    return {
      kind: 'etcd-cluster',
      shared: true,
      bind(scope, request) {
        const server = request.podPlacement ?? {};
        const cluster = new EtcdCluster(scope, 'EtcdCluster', {
          ...options,
          nodeSelector: options.nodeSelector ?? server.nodeSelector,
          tolerations: options.tolerations ?? server.tolerations,
          imagePullSecrets: options.imagePullSecrets ?? server.imagePullSecrets,
          priorityClassName: options.priorityClassName ?? server.priorityClassName,
          certificates: options.certificates ?? EtcdCertificates.like(request.servingCertificates),
          namespace: request.namespace,
          name: `${request.name}${ETCD_CLUSTER_NAME_SUFFIX}`,
          clusterDomain: request.clusterDomain,
          clientPodLabels: { ...request.serverPodLabels },
          labels: { ...request.labels },
        });
        return {
          args: _etcdArgs([cluster.clientUrl]),
          etcdClientSecretName: cluster.clientSecretName,
          etcdClientCertificateChecksum: cluster.clientCertificateChecksum,
          etcdCluster: cluster,
          pkiActions: cluster.pkiActions,
        };
      },
    };
  }

  /** An etcd you run: its client URLs and a client certificate it accepts. */
  public static externalEtcd(options: ExternalEtcdStorageOptions): IStorage {
    const servers = [...options.servers];
    if (servers.length === 0) throw new Error('servers is empty (expected the etcd client URLs, e.g. ["https://etcd-0.etcd.example:2379"])');
    for (const server of servers) _checkEtcdServerUrl('servers', server);
    const given = (['pem', 'files', 'secretName'] as const).filter((key) => options[key] !== undefined);
    if (given.length !== 1) {
      throw new Error(`externalEtcd takes exactly one of pem, files and secretName (got ${given.length === 0 ? 'none' : given.join(' and ')}): the server needs a client certificate etcd accepts`);
    }
    return {
      kind: 'external-etcd',
      shared: true,
      bind(scope, request) {
        if (options.secretName !== undefined) {
          _checkDns1123Subdomain('secretName', options.secretName);
          return { args: _etcdArgs(servers), etcdClientSecretName: options.secretName };
        }
        const pem = options.pem ?? _readPemFiles(options.files!);
        _checkEtcdClientCertificate(pem, { caPem: 'caPem', certPem: 'certPem', keyPem: 'keyPem' });
        const secret = new k8s.KubeSecret(scope, 'EtcdClientSecret', {
          metadata: { name: `${request.name}-etcd-client`, namespace: request.namespace },
          type: 'kubernetes.io/tls',
          data: { 'tls.crt': _base64(pem.certPem), 'tls.key': _base64(pem.keyPem), 'ca.crt': _base64(pem.caPem) },
        });
        return {
          args: _etcdArgs(servers),
          etcdClientSecretName: secret.name,
          etcdClientCertificateChecksum: createHash('sha256').update(pem.certPem).digest('hex'),
        };
      },
    };
  }

  /** The server's memory: a demo. One replica only, and every object is lost when the pod restarts. */
  public static memory(): IStorage {
    return { kind: 'memory', shared: false, bind: () => ({ args: ['--storage=memory'] }) };
  }

  /**
   * A custom image that stores where its own flags (`extraArgs`) or configuration say: no storage
   * flags are added. What `sharedStorage` meant before storage was a choice.
   */
  public static custom(options: CustomStorageOptions): IStorage {
    return { kind: 'custom', shared: options.shared, bind: () => ({ args: [] }) };
  }
}

/** The bundled server's flags (server/options.ts), with the client Secret's files. */
function _etcdArgs(servers: readonly string[]): string[] {
  return [
    '--storage=etcd',
    `--etcd-servers=${servers.join(',')}`,
    `--etcd-cafile=${ETCD_CLIENT_CERT_DIRECTORY}/ca.crt`,
    `--etcd-certfile=${ETCD_CLIENT_CERT_DIRECTORY}/tls.crt`,
    `--etcd-keyfile=${ETCD_CLIENT_CERT_DIRECTORY}/tls.key`,
  ];
}

function _base64(value: string): string {
  return Buffer.from(value, 'utf8').toString('base64');
}

function _readPemFiles(files: NonNullable<ExternalEtcdStorageOptions['files']>): { caPem: string; certPem: string; keyPem: string } {
  const read = (option: string, file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`files.${option} "${file}" cannot be read (${(e as Error).message})`);
    }
  };
  return { caPem: read('caFile', files.caFile), certPem: read('certFile', files.certFile), keyPem: read('keyFile', files.keyFile) };
}

/**
 * Fails unless `text` is a client URL the bundled server dials with a client certificate: https,
 * host and port only (the server refuses anything else at start); `prop` names the list it is in
 * (a prop, or a CLI flag).
 */
export function _checkEtcdServerUrl(prop: string, text: string): string {
  const expected = 'expected https://<host>:<port>, e.g. https://etcd-0.etcd.example:2379';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${prop} contains "${text}", which is not a URL (${expected})`);
  }
  if (url.protocol !== 'https:') throw new Error(`${prop} contains "${text}", which is not an https:// URL (${expected}: the client certificate needs TLS)`);
  if (url.port === '' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new Error(`${prop} contains "${text}", which is not a bare client URL with a port (${expected})`);
  }
  return text;
}

/**
 * Fails unless the PEMs are a client certificate, its key and a CA bundle that verifies it,
 * naming the option (a prop or a flag) that holds the fault.
 */
export function _checkEtcdClientCertificate(
  pem: { readonly caPem: string; readonly certPem: string; readonly keyPem: string },
  names: { readonly caPem: string; readonly certPem: string; readonly keyPem: string },
): void {
  // Both go verbatim into the Secret as tls.crt and ca.crt, which are public: nothing but certificates.
  const certificates = (name: string, bundle: string): X509Certificate[] => {
    let blocks: string[];
    try {
      blocks = splitPemBundle(bundle);
    } catch (e) {
      throw new Error(`${name} is not a PEM bundle (${(e as Error).message})`);
    }
    const otherType = blocks.map((block) => /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(block)?.[1]).find((type) => type !== 'CERTIFICATE');
    if (otherType !== undefined) {
      throw new Error(`${name} holds a PEM block of type ${otherType} (expected only "-----BEGIN CERTIFICATE-----" blocks: it is copied into the Secret as a certificate)`);
    }
    if (blocks.length === 0) throw new Error(`${name} holds no PEM certificate (expected one or more "-----BEGIN CERTIFICATE-----" blocks)`);
    try {
      return blocks.map((block) => new X509Certificate(block));
    } catch (e) {
      throw new Error(`${name} does not hold a valid PEM certificate (${(e as Error).message})`);
    }
  };
  const cas = certificates(names.caPem, pem.caPem);
  const [leaf] = certificates(names.certPem, pem.certPem);
  let key;
  try {
    key = createPrivateKey(pem.keyPem);
  } catch (e) {
    throw new Error(`${names.keyPem} does not hold a PEM private key (${(e as Error).message})`);
  }
  const der = (k: ReturnType<typeof createPublicKey>): Buffer => k.export({ type: 'spki', format: 'der' });
  if (!der(createPublicKey(key)).equals(der(leaf.publicKey))) {
    throw new Error(`${names.keyPem} does not match ${names.certPem} (expected the private key of the client certificate)`);
  }
  if (!cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey))) {
    throw new Error(
      `${names.certPem} (issuer ${leaf.issuer.replace(/\n/g, ', ')}) is not verified by ${names.caPem} ` +
        `(expected a certificate signed by one of: ${cas.map((ca) => ca.subject.replace(/\n/g, ', ')).join('; ')})`,
    );
  }
}
