import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { _checkCommonName, _checkNow, _checkValidities } from './_internal';
import { CertificateKeyPair } from './certificate-authority';
import { PkiError } from './pki-error';
import { _commitStore, _planStore, _StorePlan } from './store';

/**
 * The front-proxy PKI: what kube-apiserver needs to run the aggregation layer when the cluster was
 * set up without it. A CA that extension API servers trust for request-header authentication
 * (`--requestheader-client-ca-file`, published to them in `kube-system/extension-apiserver-authentication`)
 * and the client certificate the aggregator presents when it proxies (`--proxy-client-cert-file`),
 * whose common name must be one of `--requestheader-allowed-names`.
 */
export interface FrontProxyPkiOptions {
  /** The store's directory, e.g. `.pki/front-proxy`. Created 0700; keys 0600. */
  readonly directory: string;
  /** Common name of the client certificate: the name `--requestheader-allowed-names` must hold. @default 'front-proxy-client' */
  readonly clientCommonName?: string;
  /** Common name of a CA this store creates. @default 'front-proxy-ca' */
  readonly caCommonName?: string;
  /** @default 365 */
  readonly certValidityDays?: number;
  /** Must exceed certValidityDays. @default 3650 */
  readonly caValidityDays?: number;
  /** @default - the current time */
  readonly now?: Date;
}

export interface FrontProxyPkiMaterial {
  /**
   * `--requestheader-client-ca-file`: the CA, the next CA once staged, and retired CAs a client
   * certificate still in use chains to. Written to `FRONT_PROXY_PKI_FILES.requestHeaderCaBundle`.
   */
  readonly caBundlePem: string;
  readonly caCertPem: string;
  /** `--proxy-client-cert-file` / `--proxy-client-key-file`: clientAuth only, no SANs. */
  readonly client: CertificateKeyPair;
  /** What was done, e.g. `created CA`, `reused client certificate`. */
  readonly actions: readonly string[];
}

/** The files of a front-proxy store a control-plane host needs, relative to its directory (besides the store's ca.crt and ca.key). */
export const FRONT_PROXY_PKI_FILES = {
  /** The CA bundle for `--requestheader-client-ca-file`. */
  requestHeaderCaBundle: 'requestheader-client-ca.crt',
  clientCert: 'front-proxy-client.crt',
  clientKey: 'front-proxy-client.key',
  /** The last client certificates each retired CA signed: how long that CA stays in the bundle. */
  retiredClientCerts: 'front-proxy-client-retired.crt',
} as const;

export const DEFAULT_FRONT_PROXY_CLIENT_NAME = 'front-proxy-client';
export const DEFAULT_FRONT_PROXY_CA_NAME = 'front-proxy-ca';

/**
 * Loads or creates the front-proxy PKI in `options.directory` and writes back only what changed
 * (each file atomically): with the same options and an unchanged directory, nothing is written and
 * the PEMs are byte-identical. Renewal and rotation are the store's (see `ensurePki`), with the next
 * CA staged in the bundle a certificate lifetime before it signs, as for etcd: extension API
 * servers learn the bundle from a ConfigMap some time after kube-apiserver reloads it, so a new CA
 * must be trusted before a client certificate it signed is presented.
 */
export function ensureFrontProxyPki(options: FrontProxyPkiOptions): FrontProxyPkiMaterial {
  const plan = _planFrontProxyPki(options);
  _commitStore(plan.store);
  return plan.material;
}

/** `ensureFrontProxyPki` without writing. */
export function _planFrontProxyPki(options: FrontProxyPkiOptions): { readonly store: _StorePlan; readonly material: FrontProxyPkiMaterial } {
  if (typeof options.directory !== 'string' || options.directory.trim() === '') {
    throw new PkiError(`directory ${JSON.stringify(options.directory)} is empty (expected a path, e.g. ".pki/front-proxy")`);
  }
  const clientCommonName = options.clientCommonName ?? DEFAULT_FRONT_PROXY_CLIENT_NAME;
  const caCommonName = options.caCommonName ?? DEFAULT_FRONT_PROXY_CA_NAME;
  _checkCommonName('clientCommonName', clientCommonName);
  _checkCommonName('caCommonName', caCommonName);
  const certValidityDays = options.certValidityDays ?? 365;
  const caValidityDays = options.caValidityDays ?? 3650;
  _checkValidities(certValidityDays, caValidityDays);
  const now = _checkNow(options.now);
  const store = _planStore({
    directory: options.directory,
    caCommonName,
    certValidityDays,
    caValidityDays,
    now,
    leafNoun: 'client certificate',
    retiredLeavesFile: FRONT_PROXY_PKI_FILES.retiredClientCerts,
    stageNextCa: true,
    leaves: [
      {
        stem: FRONT_PROXY_PKI_FILES.clientCert.replace(/\.crt$/, ''),
        label: 'client certificate',
        commonName: clientCommonName,
        dnsNames: [],
        ipAddresses: [],
        extendedKeyUsages: ['clientAuth'],
      },
    ],
  });
  const { result } = store;
  // The bundle file is written with the store's files, and only when its content changes.
  const bundlePath = join(options.directory, FRONT_PROXY_PKI_FILES.requestHeaderCaBundle);
  let current: string | undefined;
  try {
    current = readFileSync(bundlePath, 'utf8');
  } catch {
    current = undefined;
  }
  const writes = new Map(store.writes);
  if (current !== result.caBundlePem) writes.set(bundlePath, { content: result.caBundlePem, mode: 0o644 });
  return {
    store: { ...store, writes },
    material: { caBundlePem: result.caBundlePem, caCertPem: result.caCertPem, client: result.leaves[0], actions: result.actions },
  };
}
