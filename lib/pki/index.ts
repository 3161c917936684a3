export * from './pki-error';
export * from './certificate-authority';
export * from './serving-certificate';
export { inspectCertificate, isIssuedBy, splitPemBundle, type CertificateInfo } from './inspect';
export { ensurePki, PKI_STORE_FILES, type PkiMaterial, type PkiStoreOptions } from './store';
export { ensureEtcdPki, ETCD_PKI_STORE_FILES, type EtcdMemberPki, type EtcdPkiMaterial, type EtcdPkiMember, type EtcdPkiOptions } from './etcd';
export { pkiEnvironmentOf, PKI_GITIGNORE, SelfSignedPki, type EtcdPkiRequest, type PkiCertificate, type SelfSignedPkiOptions, type ServingPkiRequest } from './self-signed-pki';
export { protectSynthOutput } from './protect-output';
