/** Jest's globalTeardown: removes the run's temporary directory (see global-setup.ts). */
import { rmSync } from 'node:fs';
import { RUN_TMPDIR_ENV } from './global-setup';

export default function globalTeardown(): void {
  const dir = process.env[RUN_TMPDIR_ENV];
  if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
