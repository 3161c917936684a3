/**
 * Jest's globalSetup: one temporary directory for the whole run, made the workers' TMPDIR (so every
 * temporary file the tests make lands in it: etcd data, kubeconfigs, kubectl caches, cdk8s's
 * Testing.app() directories), and the server bundle built into it once. globalTeardown removes it:
 * a run leaves nothing in the system's temporary directory (each test file used to bundle the
 * server anew, ~9 MB, and never remove it).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { buildServerBundle, SERVER_BUNDLE_ENV } from './server-process';

/** Where globalSetup put the run's directory, for globalTeardown (same process). */
export const RUN_TMPDIR_ENV = 'CDK8S_API_EXTENSION_TEST_TMPDIR';

export default function globalSetup(): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'cdk8s-api-extension-test-'));
  process.env[RUN_TMPDIR_ENV] = dir;
  // Read by os.tmpdir() in the workers, which inherit this process's environment.
  process.env.TMPDIR = dir;
  process.env[SERVER_BUNDLE_ENV] = buildServerBundle(path.join(dir, 'server-bundle', 'server.js'));
}
