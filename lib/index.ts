export * from '../apis';
export * from './aggregated-api-server';
export * from './api-resource-roles';
export * from './api-server-cluster-role';
export * from './api-server-deployment';
export * from './api-service';
export * from './api-service-deployer-role';
export * from './auth-delegation';
export * from './certificates';
export * from './custom-resource-definitions';
export * from './pki';
export * from './etcd-certificates';
export * from './etcd-cluster';
export { DEFAULT_NODE_SELECTOR, type PodPlacement } from './pod-placement';
// Not `export *`: _checkEtcdClientCertificate is the CLI's, not the package's.
export { Storage } from './storage';
export type { BoundStorage, CustomStorageOptions, EtcdClusterStorageOptions, ExternalEtcdStorageOptions, IStorage, StorageRequest } from './storage';
