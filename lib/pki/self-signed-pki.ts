import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { _checkNow, _checkValidities } from './_internal';
import { _planEtcdPki, EtcdPkiMaterial, EtcdPkiMember } from './etcd';
import { inspectCertificate, splitPemBundle } from './inspect';
import { PkiError } from './pki-error';
import { _commitStore, _planServingPki, _StorePlan, PKI_STORE_FILES, PkiMaterial } from './store';

export interface SelfSignedPkiOptions {
  /**
   * The PKI directory, e.g. `.pki`. Each server's PKI is kept in
   * `<directory>/<namespace>/<name>/<environment>` (see `pkiEnvironmentOf`). It holds CA private
   * keys: keep it out of version control (a directory this object creates ignores itself).
   */
  readonly directory: string;
  /** @default 365 */
  readonly certValidityDays?: number;
  /** Must exceed certValidityDays. @default 3650 */
  readonly caValidityDays?: number;
  /** The clock, for tests. @default - the current time */
  readonly now?: Date;
}

/** What one server's serving PKI is asked for. */
export interface ServingPkiRequest {
  readonly namespace: string;
  /** The server's name: with the namespace, the store's directory. */
  readonly name: string;
  readonly caCommonName: string;
  readonly servingCommonName: string;
  /** The serving certificate's DNS SANs: with the namespace, they decide the environment. */
  readonly dnsNames: readonly string[];
  /** The Secret the certificate goes into, for the report. */
  readonly secretName: string;
}

/** What one etcd cluster's PKI is asked for. */
export interface EtcdPkiRequest {
  readonly namespace: string;
  /** The cluster's name (its StatefulSet's): with the namespace, the store's directory. */
  readonly name: string;
  readonly caCommonName: string;
  readonly members: readonly (EtcdPkiMember & { readonly serverSecretName: string; readonly peerSecretName: string })[];
  readonly clientCommonName: string;
  readonly clientSecretName: string;
}

/** A certificate handed out, as a synth reports it. */
export interface PkiCertificate {
  /** `serving` and `CA` for a server's certificate and its CA bundle; `etcd` and `etcd CA` for etcd's. */
  readonly role: 'serving' | 'CA' | 'etcd' | 'etcd CA';
  /** One PEM certificate. */
  readonly certPem: string;
  /** The Secret it is in (etcd's certificates). */
  readonly secretName?: string;
}

/** The file a PKI directory this library creates gets, so that git never picks up its keys. */
export const PKI_GITIGNORE = '.gitignore';
const GITIGNORE_TEXT = '# Made by cdk8s-api-extension: this directory holds CA private keys. Never commit it.\n*\n';

/**
 * The self-signed PKI of an app, created by the app and handed to `Certificates.selfSigned({ pki })`
 * and `EtcdCertificates.selfSigned({ pki })`. Building the construct tree only reads the PKI
 * directory; what is new or renewed is kept in memory until `save()`, which the app calls once
 * it has synthesized: a synth that fails changes nothing, and the app decides when the PKI is
 * written.
 *
 * Environments are kept apart: each server's PKI (CA included) lives in a subdirectory named after
 * what its certificates depend on beyond namespace and name (`pkiEnvironmentOf`: the cluster
 * domain, and a hash of any other SANs), so that two synths with different inputs sharing one
 * PKI directory never change each other's certificates.
 */
export class SelfSignedPki {
  public readonly directory: string;
  public readonly certValidityDays: number;
  public readonly caValidityDays: number;
  private readonly now?: Date;
  private readonly plans = new Map<string, { readonly key: string; readonly store: _StorePlan; readonly material: unknown; readonly label: string }>();
  private readonly issued: PkiCertificate[] = [];

  constructor(options: SelfSignedPkiOptions) {
    const unsafe = typeof options.directory === 'string' ? _unsafePkiDirectoryReason(options.directory) : 'is not a path';
    if (unsafe !== undefined) {
      throw new PkiError(`directory ${JSON.stringify(options.directory)} ${unsafe} (expected a directory of its own for the PKI, e.g. ".pki")`);
    }
    this.directory = options.directory;
    this.certValidityDays = options.certValidityDays ?? 365;
    this.caValidityDays = options.caValidityDays ?? 3650;
    _checkValidities(this.certValidityDays, this.caValidityDays);
    if (options.now !== undefined) this.now = _checkNow(options.now);
  }

  /** The CA and serving certificate of one server, reused from the directory or made (written by `save()`). */
  public servingCertificate(request: ServingPkiRequest): PkiMaterial {
    const environment = pkiEnvironmentOf(request.namespace, request.dnsNames, { service: request.name });
    const directory = join(this.directory, request.namespace, request.name, environment);
    const key = JSON.stringify(['serving', request.caCommonName, request.servingCommonName, [...request.dnsNames].sort()]);
    const readFrom = _adoptableLegacyStore(directory, environment, ['tls.crt'], (names) => pkiEnvironmentOf(request.namespace, names, { service: request.name }));
    const material = this.plan(directory, key, () =>
      _planServingPki({
        directory: readFrom,
        caCommonName: request.caCommonName,
        servingCommonName: request.servingCommonName,
        dnsNames: request.dnsNames,
        certValidityDays: this.certValidityDays,
        caValidityDays: this.caValidityDays,
        now: this.now,
      }),
    ) as PkiMaterial;
    this.issued.push(
      { role: 'serving', certPem: splitPemBundle(material.tlsCertPem)[0], secretName: request.secretName },
      ...splitPemBundle(material.caBundlePem).map((certPem) => ({ role: 'CA' as const, certPem })),
    );
    return material;
  }

  /** The etcd CA and the members' and client's certificates of one etcd cluster (written by `save()`). */
  public etcdCertificates(request: EtcdPkiRequest): EtcdPkiMaterial {
    const names = request.members.flatMap((member) => [...member.serverDnsNames, ...member.peerDnsNames]);
    const environment = pkiEnvironmentOf(request.namespace, names);
    const directory = join(this.directory, request.namespace, request.name, environment);
    const key = JSON.stringify(['etcd', request]);
    const readFrom = _adoptableLegacyStore(directory, environment, request.members.map((member) => `${member.name}-server.crt`), (names) => pkiEnvironmentOf(request.namespace, names));
    const material = this.plan(directory, key, () =>
      _planEtcdPki({
        directory: readFrom,
        caCommonName: request.caCommonName,
        members: request.members.map(({ name, serverDnsNames, peerDnsNames, ipAddresses }) => ({ name, serverDnsNames, peerDnsNames, ipAddresses })),
        clientCommonName: request.clientCommonName,
        certValidityDays: this.certValidityDays,
        caValidityDays: this.caValidityDays,
        now: this.now,
      }),
    ) as EtcdPkiMaterial;
    request.members.forEach((member, i) => {
      this.issued.push(
        { role: 'etcd', certPem: splitPemBundle(material.members[i].server.certPem)[0], secretName: member.serverSecretName },
        { role: 'etcd', certPem: splitPemBundle(material.members[i].peer.certPem)[0], secretName: member.peerSecretName },
      );
    });
    this.issued.push(
      { role: 'etcd', certPem: splitPemBundle(material.client.certPem)[0], secretName: request.clientSecretName },
      ...splitPemBundle(material.caBundlePem).map((certPem) => ({ role: 'etcd CA' as const, certPem })),
    );
    return material;
  }

  /** Every certificate handed out so far, in the order asked. */
  public get certificates(): readonly PkiCertificate[] {
    return [...this.issued];
  }

  /** What each store did (or will do on `save()`), one line per store: `<store directory>: created CA; …`. */
  public get actions(): readonly string[] {
    return [...this.plans.values()].map((plan) => `${plan.label}: ${plan.store.result.actions.join('; ')}`);
  }

  /** The store directories handed out so far, relative to `directory`. */
  public get stores(): readonly string[] {
    return [...this.plans.values()].map((plan) => plan.label);
  }

  /**
   * Writes what was made or renewed (each store's files atomically; directories 0700, keys
   * 0600). A PKI directory this creates gets a `.gitignore` that ignores everything in it.
   * Saving twice writes nothing more. Returns what it wrote beyond the stores (the `.gitignore`).
   */
  public save(): readonly string[] {
    const created = !existsSync(this.directory);
    const done: string[] = [];
    for (const plan of this.plans.values()) {
      if (plan.store.writes.size > 0 || plan.store.restrict.length > 0) _commitStore(plan.store);
    }
    if (created && existsSync(this.directory) && readdirSync(this.directory).every((name) => name !== PKI_GITIGNORE)) {
      writeFileSync(join(this.directory, PKI_GITIGNORE), GITIGNORE_TEXT, { mode: 0o644 });
      done.push(`${join(this.directory, PKI_GITIGNORE)}: created, so that git ignores the PKI directory`);
    }
    // A second save must not write the same files again (the directory now holds them).
    for (const [directory, plan] of this.plans) this.plans.set(directory, { ...plan, store: { ...plan.store, writes: new Map(), restrict: [] } });
    return done;
  }

  private plan(directory: string, key: string, make: () => { store: _StorePlan; material: unknown }): unknown {
    const planned = this.plans.get(directory);
    if (planned !== undefined) {
      if (planned.key !== key) {
        throw new PkiError(
          `the PKI store ${directory} is asked for twice with different certificates (expected each server and etcd cluster ` +
            'once per namespace and name: two servers with one name would share a store)',
        );
      }
      return planned.material;
    }
    const made = make();
    const store = made.store.spec.directory === directory ? made.store : _retarget(made.store, directory);
    const label = relative(this.directory, directory) || '.';
    this.plans.set(directory, { key, store, material: made.material, label });
    return made.material;
  }
}

/**
 * Where a store is read from: its own directory, or — when that holds no CA yet — the directory
 * above it, where stores were kept before environments (`<pki>/<namespace>/<name>`), if the
 * certificates there (`probes`, the first that exists) were issued for this environment. Adopting
 * it keeps an upgrade from rotating every CA; another environment starts a store of its own.
 */
function _adoptableLegacyStore(directory: string, environment: string, probes: readonly string[], environmentOf: (dnsNames: readonly string[]) => string): string {
  const legacy = dirname(directory);
  if (existsSync(join(directory, PKI_STORE_FILES.caCert)) || !existsSync(join(legacy, PKI_STORE_FILES.caCert))) return directory;
  const probe = probes.map((file) => join(legacy, file)).find((file) => existsSync(file));
  if (probe === undefined) return directory;
  try {
    return environmentOf(inspectCertificate(readFileSync(probe, 'utf8')).dnsNames) === environment ? legacy : directory;
  } catch {
    return directory; // unreadable: not adopted; the store starts afresh beside it
  }
}

/** A plan made from a legacy store, writing into `directory`: every file of the legacy store copied, then the plan's changes. */
function _retarget(store: _StorePlan, directory: string): _StorePlan {
  const from = store.spec.directory;
  const writes = new Map<string, { content: string; mode: number }>();
  for (const name of readdirSync(from).sort()) {
    if (/\.(crt|key)$/.test(name) && statSync(join(from, name)).isFile()) {
      writes.set(join(directory, name), { content: readFileSync(join(from, name), 'utf8'), mode: name.endsWith('.key') ? 0o600 : 0o644 });
    }
  }
  for (const [path, write] of store.writes) writes.set(join(directory, basename(path)), write);
  const adopted = `adopted the store ${from} (kept there as it was, no longer used)`;
  return { spec: { ...store.spec, directory }, result: { ...store.result, actions: [adopted, ...store.result.actions] }, writes, restrict: [] };
}

/**
 * The PKI a self-signed certificate source reads (`Certificates.selfSigned`,
 * `EtcdCertificates.selfSigned`): the app's (`pki`), or one of its own in `pkiDirectory`, made
 * when bound (and saved right after, as before `pki` existed). Options are checked now.
 */
export function _selfSignedPki(
  options: {
    readonly pki?: SelfSignedPki;
    readonly pkiDirectory?: string;
    readonly certValidityDays?: number;
    readonly caValidityDays?: number;
    readonly now?: Date;
  },
  defaults: { readonly directory: string; readonly certValidityDays: number; readonly caValidityDays: number },
): () => SelfSignedPki {
  const { pki } = options;
  if (pki !== undefined) {
    const both = (['pkiDirectory', 'certValidityDays', 'caValidityDays', 'now'] as const).find((key) => options[key] !== undefined);
    if (both !== undefined) throw new PkiError(`pki and ${both} are both set (expected ${both} on the SelfSignedPki: its directory and lifetimes apply)`);
    return () => pki;
  }
  const certValidityDays = options.certValidityDays ?? defaults.certValidityDays;
  const caValidityDays = options.caValidityDays ?? defaults.caValidityDays;
  _checkValidities(certValidityDays, caValidityDays);
  return () => new SelfSignedPki({ directory: options.pkiDirectory ?? defaults.directory, certValidityDays, caValidityDays, now: options.now });
}

/**
 * The environment a set of SANs belongs to, which names the subdirectory its PKI is kept in:
 * the cluster domain the names end in (`<x>.<namespace>.svc.<domain>`), e.g. `cluster.local`.
 * When `service` is given and the names are not exactly the four a Service answers to in that
 * domain, a hash of the names is appended (`cluster.local-1a2b3c4d5e6f`): other SANs are another
 * environment. Names that end in no domain or in several give `sans-<hash>`.
 */
export function pkiEnvironmentOf(namespace: string, dnsNames: readonly string[], options: { readonly service?: string } = {}): string {
  const marker = `.${namespace}.svc.`;
  const domains = new Set(dnsNames.filter((name) => name.includes(marker)).map((name) => name.slice(name.indexOf(marker) + marker.length)));
  const hash = createHash('sha256').update([...new Set(dnsNames)].sort().join('\n')).digest('hex').slice(0, 12);
  if (domains.size !== 1) return `sans-${hash}`;
  const [domain] = domains;
  if (options.service === undefined) return domain;
  const { service } = options;
  const standard = [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.${domain}`].sort().join('\n');
  return [...new Set(dnsNames)].sort().join('\n') === standard ? domain : `${domain}-${hash}`;
}

/**
 * Whether `directory` is one a PKI may be kept in, or why not: not empty, not the filesystem
 * root, the home directory, `cwd` or a directory above it (the CA keys would land among the
 * project's files, e.g. `./wardle/wardle-apiserver/ca.key`), not a file.
 */
export function _unsafePkiDirectoryReason(directory: string, cwd: string = process.cwd(), home: string = process.env.HOME ?? ''): string | undefined {
  if (directory.trim() === '') return 'is empty (the CA private keys would be written into the working directory)';
  const absolute = resolve(cwd, directory);
  if (absolute === resolve('/')) return 'is the filesystem root';
  if (home !== '' && absolute === resolve(home)) return 'is the home directory';
  const fromHere = relative(absolute, resolve(cwd));
  if (fromHere === '' || (!fromHere.startsWith('..') && !isAbsolute(fromHere))) {
    return 'is the working directory or a directory above it (the CA private keys would be written among the project\'s files)';
  }
  if (existsSync(absolute)) {
    try {
      readdirSync(absolute);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') return 'is a file, not a directory';
      return `cannot be read (${code ?? (e as Error).message})`;
    }
  }
  return undefined;
}
