/**
 * The storage conformance suite (test/support/storage-conformance.ts) against every store:
 * memory, etcd (a real one, one process for the file and a fresh key prefix per case), and the
 * watch cache in front of each.
 */
import { MemoryStorage } from '../server/storage/memory';
import { describeStorageConformance } from './support/storage-conformance';

describeStorageConformance('MemoryStorage', async () => {
  const storage = new MemoryStorage();
  return { storage, cleanup: () => storage.close() };
});
