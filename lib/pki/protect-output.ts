import { chmodSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A manifest line holding a Secret's private key (`tls.key: <base64>`), as cdk8s writes it. */
const KEY_IN_MANIFEST = /^\s+tls\.key: \S/m;

/**
 * Restricts a synth output directory that holds private keys (the self-signed and external-etcd
 * Secrets): the directory becomes 0700 and each file holding a `tls.key` 0600, whatever the umask
 * made them (cdk8s writes 0755 and 0644). Call it after `app.synth()`, e.g.
 * `protectSynthOutput(app.outdir)`. Returns the files it restricted.
 */
export function protectSynthOutput(directory: string): string[] {
  chmodSync(directory, 0o700);
  const restricted: string[] = [];
  for (const name of readdirSync(directory).sort()) {
    const file = join(directory, name);
    if (statSync(file).isFile() && KEY_IN_MANIFEST.test(readFileSync(file, 'utf8'))) {
      chmodSync(file, 0o600);
      restricted.push(file);
    }
  }
  return restricted;
}
