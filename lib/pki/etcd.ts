import { isDns1123Label } from '../../apis/validation';
import { _checkCommonName, _checkNow, _checkValidities } from './_internal';
import { CertificateKeyPair } from './certificate-authority';
import { PkiError } from './pki-error';
import { _commitStore, _LeafSpec, _planStore, _StorePlan } from './store';

/** One etcd member, as its certificates need it. */
export interface EtcdPkiMember {
  /** The member's name (its pod name), e.g. `wardle-apiserver-etcd-0`: the certificates' common name and file names. */
  readonly name: string;
  /** SANs of the client-facing server certificate: the member's DNS names, the client Service's, `localhost`. */
  readonly serverDnsNames: readonly string[];
  /** SANs of the peer certificate: the member's stable DNS names, `localhost`. */
  readonly peerDnsNames: readonly string[];
  /** IP SANs of both, e.g. `127.0.0.1`. @default [] */
  readonly ipAddresses?: readonly string[];
}

export interface EtcdPkiOptions {
  /** Directory that holds the etcd PKI between synths, e.g. `.pki/wardle/wardle-apiserver-etcd`; not the serving PKI's. */
  readonly directory: string;
  /** Common name of the etcd CA this store creates. */
  readonly caCommonName: string;
  readonly members: readonly EtcdPkiMember[];
  /** Common name of the API server's client certificate. */
  readonly clientCommonName: string;
  readonly certValidityDays: number;
  /** Must be greater than `certValidityDays`. */
  readonly caValidityDays: number;
  /** @default - new Date() */
  readonly now?: Date;
}

export interface EtcdMemberPki {
  readonly name: string;
  /** `--cert-file` / `--key-file`: serverAuth and clientAuth (etcd's gRPC gateway dials the member with it). */
  readonly server: CertificateKeyPair;
  /** `--peer-cert-file` / `--peer-key-file`: serverAuth and clientAuth (a peer connection is TLS both ways). */
  readonly peer: CertificateKeyPair;
}

/** What the etcd PKI store hands to the constructs. Never holds the CA private key. */
export interface EtcdPkiMaterial {
  /** The current etcd CA first, then the next CA once staged, then retired CAs a certificate still in use chains to. */
  readonly caBundlePem: string;
  readonly caCertPem: string;
  /** In the order of the options' members. */
  readonly members: readonly EtcdMemberPki[];
  /** The API server's client certificate: clientAuth only, no SANs. */
  readonly client: CertificateKeyPair;
  readonly actions: readonly string[];
}

/** Files of an etcd PKI store besides `ca.crt`, `ca.key`, `ca-next.crt`, `ca-next.key` and `ca-retired.crt` (`<member>` is a member's name). */
export const ETCD_PKI_STORE_FILES = {
  serverCert: (member: string) => `${member}-server.crt`,
  serverKey: (member: string) => `${member}-server.key`,
  peerCert: (member: string) => `${member}-peer.crt`,
  peerKey: (member: string) => `${member}-peer.key`,
  clientCert: 'client.crt',
  clientKey: 'client.key',
  /** The last certificates each retired CA signed: how long that CA stays in the bundle. */
  retiredCerts: 'certs-retired.crt',
} as const;

/**
 * `ensurePki` for an etcd cluster: one etcd CA (separate from any serving CA), a server and a peer
 * certificate per member, and one client certificate for the API server, kept in `directory`,
 * reused while valid (byte-identical output for the same inputs), each renewed on its own when a
 * third of its life remains or its names change, and the CA rotated with overlap both ways: etcd
 * reads its trusted CAs only at start, so the next CA is staged in the bundle two certificate
 * lifetimes before the CA's end (the bundle's checksum rolls the members then) and signs only a
 * lifetime later; the old CA stays in the bundle while certificates it signed live. Adding members
 * issues only theirs; a member no longer asked for keeps its files (not emitted), for a later
 * scale-up.
 */
export function ensureEtcdPki(options: EtcdPkiOptions): EtcdPkiMaterial {
  const plan = _planEtcdPki(options);
  _commitStore(plan.store);
  return plan.material;
}

/** `ensureEtcdPki` without writing: the material, and the plan `_commitStore` writes. */
export function _planEtcdPki(options: EtcdPkiOptions): { readonly store: _StorePlan; readonly material: EtcdPkiMaterial } {
  const now = _checkEtcdOptions(options);
  const leaves: _LeafSpec[] = [];
  for (const member of options.members) {
    const ipAddresses = member.ipAddresses ?? [];
    const both = ['serverAuth', 'clientAuth'] as const;
    leaves.push(
      { stem: `${member.name}-server`, label: `server certificate of ${member.name}`, commonName: member.name, dnsNames: member.serverDnsNames, ipAddresses, extendedKeyUsages: both },
      { stem: `${member.name}-peer`, label: `peer certificate of ${member.name}`, commonName: member.name, dnsNames: member.peerDnsNames, ipAddresses, extendedKeyUsages: both },
    );
  }
  leaves.push({ stem: 'client', label: 'client certificate', commonName: options.clientCommonName, dnsNames: [], ipAddresses: [], extendedKeyUsages: ['clientAuth'] });

  const store = _planStore({
    directory: options.directory,
    caCommonName: options.caCommonName,
    certValidityDays: options.certValidityDays,
    caValidityDays: options.caValidityDays,
    now,
    leaves,
    leafNoun: 'certificate',
    stageNextCa: true,
    retiredLeavesFile: ETCD_PKI_STORE_FILES.retiredCerts,
  });
  const { result } = store;
  const material: EtcdPkiMaterial = {
    caBundlePem: result.caBundlePem,
    caCertPem: result.caCertPem,
    members: options.members.map((member, i) => ({ name: member.name, server: result.leaves[2 * i], peer: result.leaves[2 * i + 1] })),
    client: result.leaves[leaves.length - 1],
    actions: result.actions,
  };
  return { store, material };
}

/** Everything checked before the directory is touched. */
function _checkEtcdOptions(options: EtcdPkiOptions): Date {
  if (typeof options.directory !== 'string' || options.directory.trim() === '') {
    throw new PkiError(`directory ${JSON.stringify(options.directory)} is empty (expected a path, e.g. ".pki/wardle/wardle-apiserver-etcd")`);
  }
  _checkCommonName('caCommonName', options.caCommonName);
  _checkCommonName('clientCommonName', options.clientCommonName);
  _checkValidities(options.certValidityDays, options.caValidityDays);
  if (!Array.isArray(options.members) || options.members.length === 0) {
    throw new PkiError(`members ${JSON.stringify(options.members)} is empty (expected at least one etcd member)`);
  }
  const seen = new Set<string>();
  for (const member of options.members) {
    // The name becomes file names and a common name: a DNS label keeps it to both.
    if (!isDns1123Label(member.name) || member.name === 'client' || member.name === 'ca') {
      throw new PkiError(`members entry name ${JSON.stringify(member.name)} is not valid (expected a DNS-1123 label such as a pod name, not "ca" or "client")`);
    }
    if (seen.has(member.name)) throw new PkiError(`members entry name "${member.name}" appears twice (expected each member once)`);
    seen.add(member.name);
    for (const [field, names] of [['serverDnsNames', member.serverDnsNames], ['peerDnsNames', member.peerDnsNames]] as const) {
      if (!Array.isArray(names) || names.length === 0) {
        throw new PkiError(`members entry "${member.name}" ${field} ${JSON.stringify(names)} is empty (expected the DNS names clients dial)`);
      }
    }
  }
  return _checkNow(options.now);
}
