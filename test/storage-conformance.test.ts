/**
 * The storage conformance suite (test/support/storage-conformance.ts) against every store:
 * memory, etcd (a real one, one process for the file and a fresh key prefix per case), and the
 * watch cache in front of each.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { CachedStorage } from '../server/storage/cacher';
import { EtcdStorage } from '../server/storage/etcd';
import { MemoryStorage } from '../server/storage/memory';
import { EtcdProcess } from './support/etcd';
import { CONFORMANCE_RESOURCE_PREFIXES, describeStorageConformance } from './support/storage-conformance';

const logger = pino({ level: 'silent' });

describeStorageConformance('MemoryStorage', async () => {
  const storage = new MemoryStorage();
  return { storage, cleanup: () => storage.close() };
});

describeStorageConformance('CachedStorage over MemoryStorage', async () => {
  const behind = new MemoryStorage();
  const storage = new CachedStorage({ storage: behind, resourcePrefixes: CONFORMANCE_RESOURCE_PREFIXES, logger });
  return { storage, peer: behind, cleanup: () => storage.close() };
});

describe('on a real etcd', () => {
  let etcd: EtcdProcess | undefined;

  beforeAll(async () => {
    etcd = await EtcdProcess.start();
  }, 30_000);

  afterAll(async () => {
    await etcd?.remove();
  });

  /** A store on its own key prefix, so that no case sees another's keys (`prefix`: another client of one). */
  function etcdStorage(prefix = `/registry/test-${randomBytes(6).toString('hex')}`): EtcdStorage {
    return new EtcdStorage({ servers: [etcd!.clientUrl], prefix, logger });
  }

  describeStorageConformance('EtcdStorage', async () => {
    const prefix = `/registry/test-${randomBytes(6).toString('hex')}`;
    const storage = etcdStorage(prefix);
    const peer = etcdStorage(prefix);
    return {
      storage,
      peer,
      cleanup: async () => {
        await peer.close();
        await storage.close();
      },
    };
  });

  describeStorageConformance('CachedStorage over EtcdStorage', async () => {
    const behind = etcdStorage();
    const storage = new CachedStorage({ storage: behind, resourcePrefixes: CONFORMANCE_RESOURCE_PREFIXES, logger });
    return { storage, peer: behind, cleanup: () => storage.close() };
  });
});
