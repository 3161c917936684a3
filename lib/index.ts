export * from '../apis';
export * from './aggregated-api-server';
export * from './api-resource-roles';
export * from './api-server-cluster-role';
export * from './api-server-deployment';
export * from './api-service';
export * from './api-service-deployer-role';
export * from './auth-delegation';
// Named, not `export *`: the modules' `_`-prefixed functions are shared inside the package, not part of it.
export {
  CERT_MANAGER_INJECT_CA_FROM,
  Certificates,
  DEFAULT_CA_VALIDITY_DAYS,
  DEFAULT_CERT_VALIDITY_DAYS,
  DEFAULT_PKI_DIRECTORY,
  type BoundCertificates,
  type CertificateRequest,
  type CertificatesOrigin,
  type CertManagerCertificatesOptions,
  type CertManagerIssuerRef,
  type FileCertificatesOptions,
  type ICertificates,
  type PemCertificatesOptions,
  type SecretCertificatesOptions,
  type SelfSignedCertificatesOptions,
} from './certificates';
export * from './custom-resource-definitions';
export * from './pki';
export * from './etcd-certificates';
export {
  DEFAULT_ETCD_BACKUP_RETENTION,
  DEFAULT_ETCD_BACKUP_TOOLS_IMAGE,
  DEFAULT_ETCD_IMAGE,
  DEFAULT_ETCD_REPLICAS,
  DEFAULT_ETCD_RESOURCES,
  DEFAULT_ETCD_STORAGE_SIZE,
  ETCD_BACKUP_CLIENT_CERT_PATH,
  ETCD_BACKUP_INCOMING_FILE,
  ETCD_BACKUP_MOUNT_PATH,
  ETCD_BACKUP_NAME_SUFFIX,
  ETCD_BACKUP_PRUNE_SCRIPT,
  ETCD_CA_CHECKSUM_ANNOTATION,
  ETCD_CLIENT_PORT,
  ETCD_CONTAINER_NAME,
  ETCD_DATA_MOUNT_PATH,
  ETCD_METRICS_PORT,
  ETCD_PEER_PORT,
  ETCD_PKI_MOUNT_PATH,
  ETCD_REPLICA_COUNTS,
  ETCD_USER_ID,
  EtcdCluster,
  MAX_ETCD_OBJECT_NAME_LENGTH,
  MIN_ETCD_STORAGE_BYTES,
  MIN_ETCD_STORAGE_SIZE,
  type EtcdClusterProps,
} from './etcd-cluster';
export { DEFAULT_NODE_SELECTOR, type PodPlacement } from './pod-placement';
// Not `export *`: _checkEtcdClientCertificate is the CLI's, not the package's.
export { Storage } from './storage';
export type { BoundStorage, CustomStorageOptions, EtcdClusterStorageOptions, ExternalEtcdStorageOptions, IStorage, StorageRequest } from './storage';
