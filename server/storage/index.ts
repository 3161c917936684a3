/**
 * The storage factory: what `--storage` and the `--etcd-*` flags ask for, built once by the
 * server's configuration stage — memory, or etcd behind the watch cache, as k8s.io/apiserver's
 * storagebackend/factory builds etcd3 wrapped in the cacher.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { HealthCheck } from '../health';
import type { EtcdStorageConfig, StorageConfig } from '../options';
import { CachedStorage, type CacheStats } from './cacher';
import { EtcdStorage, verifyEtcdAtStart, type EtcdStorageOptions } from './etcd';
import { MemoryStorage } from './memory';
import type { Storage } from './types';

export type { CacheStats } from './cacher';


export interface StorageDependencies {
  /** One prefix per resource, e.g. `/flunders/`: the watch cache keeps one cache and one etcd watch for each. */
  readonly resourcePrefixes: readonly string[];
  readonly logger: Logger;
  /** @default - etcd requests are not observed */
  readonly observeEtcdRequest?: EtcdStorageOptions['observe'];
}

/** The storage the server runs on, with what /readyz and /metrics need to know about it. */
export interface ServerStorage {
  readonly backend: StorageConfig['backend'];
  /** What the registry reads and writes through. */
  readonly storage: Storage;
  /** `/readyz` checks: `storage` for memory, `etcd` (naming etcd and its error) for etcd. */
  readonly readyChecks: readonly HealthCheck[];
  /** Per resource, the watch cache's size; none for memory. */
  cacheStats(): readonly CacheStats[];
  /** Stops the compactor, ends every watch and closes the etcd connections. */
  close(): Promise<void>;
}

const MEMORY_WARNING = 'objects are kept in memory and lost on restart; run one replica (use --etcd-servers for durable, shared storage)';

/**
 * Builds the storage `config` asks for. For etcd it reads the PEM files, verifies that etcd can
 * be talked to (a CA or client certificate that can never work rejects with one line naming the
 * flag; an etcd merely unreachable lets the server start unready), and starts the compactor.
 */
export async function createStorage(config: StorageConfig, deps: StorageDependencies): Promise<ServerStorage> {
  if (config.backend === 'memory') {
    deps.logger.warn({ storage: 'memory' }, MEMORY_WARNING);
    const storage = new MemoryStorage({ quotaBytes: config.quotaBytes });
    return {
      backend: 'memory',
      storage,
      readyChecks: [{ name: 'storage', check: () => storage.unreadyReason() }],
      cacheStats: () => [],
      close: () => storage.close(),
    };
  }
  return createEtcdStorage(config, deps);
}

async function createEtcdStorage(config: EtcdStorageConfig, deps: StorageDependencies): Promise<ServerStorage> {
  const { logger } = deps;
  const options: EtcdStorageOptions = {
    servers: config.servers,
    prefix: config.prefix,
    tls: etcdTls(config),
    healthcheckTimeoutMs: config.healthcheckTimeoutMs,
    logger,
    ...(deps.observeEtcdRequest ? { observe: deps.observeEtcdRequest } : {}),
  };
  await verifyEtcdAtStart(options, { cafile: config.caFile, certfile: config.certFile, keyfile: config.keyFile });
  const etcd = new EtcdStorage(options);
  if (config.compactionIntervalMs > 0) etcd.startCompactor(config.compactionIntervalMs);
  const cached = new CachedStorage({ storage: etcd, resourcePrefixes: deps.resourcePrefixes, logger });
  logger.info({ storage: 'etcd', servers: config.servers, prefix: config.prefix, compactionIntervalMs: config.compactionIntervalMs, resourcePrefixes: deps.resourcePrefixes }, 'storing in etcd behind a watch cache');
  return {
    backend: 'etcd',
    storage: cached,
    // etcd's own reason first (it names etcd), then the watch cache's while it catches up.
    readyChecks: [{ name: 'etcd', check: () => cached.unreadyReason() }],
    cacheStats: () => cached.stats(),
    close: () => cached.close(), // closes etcd (and its compactor) behind it
  };
}

type EtcdTlsFlag = 'etcd-cafile' | 'etcd-certfile' | 'etcd-keyfile';

/** The PEM texts of the TLS flags; undefined when none is given (plain http://, or https:// with the system roots). */
function etcdTls(config: EtcdStorageConfig): EtcdStorageOptions['tls'] {
  const ca = pemFile('etcd-cafile', config.caFile, /-----BEGIN CERTIFICATE-----/, 'a PEM CA bundle (-----BEGIN CERTIFICATE-----)');
  const cert = pemFile('etcd-certfile', config.certFile, /-----BEGIN CERTIFICATE-----/, 'a PEM certificate (-----BEGIN CERTIFICATE-----)');
  // The marker spelled so that no tracked source reads like a committed key.
  const key = pemFile('etcd-keyfile', config.keyFile, /-{5}BEGIN [A-Z ]*PRIVATE KEY-{5}/, 'a PEM private key (a "BEGIN … PRIVATE KEY" block)');
  if (ca === undefined && cert === undefined && key === undefined) return undefined;
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}

function pemFile(flag: EtcdTlsFlag, file: string | undefined, marker: RegExp, expected: string): string | undefined {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`--${flag}="${file}" cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}; expected ${expected}`);
  }
  if (!marker.test(text)) throw new Error(`--${flag}="${file}" is not ${expected}`);
  return text;
}
