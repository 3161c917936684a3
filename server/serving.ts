import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { FSWatcher, readFileSync, watch } from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { RequestHandler } from './handler';

/**
 * HTTPS serving: TLS with a client certificate *requested* (not required: probes and token
 * clients send none) from the CAs authentication trusts, keep-alive, and the serving
 * certificate reloaded in place when its files change.
 *
 * The kubelet updates a mounted Secret by writing a new timestamped directory and renaming the
 * `..data` symlink over the old one, so the files' own inodes never change: the directories are
 * watched, and their content is also polled as a fallback (some filesystems send no events).
 * A new pair is used only when the key matches the certificate; otherwise the old one stays and
 * the error is logged. Open connections keep their session; new handshakes get the new pair.
 */

export interface ServingOptions {
  readonly bindAddress: string;
  /** 0 picks a free port. */
  readonly securePort: number;
  readonly tlsCertFile: string;
  readonly tlsPrivateKeyFile: string;
  readonly handler: RequestHandler;
  /** PEM CA certificates to request client certificates with (the TLS CertificateRequest lists them). */
  readonly clientCaBundle: () => readonly string[];
  readonly logger: Logger;
  /** How often the certificate files are re-read as a fallback to file events. @default 5000 */
  readonly certPollIntervalMs?: number;
}

/** A serving key pair, checked to belong together. */
export interface KeyPair {
  readonly cert: string;
  readonly key: string;
  /** SHA-256 of cert + key, to tell whether the files changed. */
  readonly fingerprint: string;
  /** The leaf's validity end, for logs. */
  readonly notAfter: string;
}

/** Reads and checks a certificate (chain) and its private key; throws a message naming the file. */
export function loadKeyPair(certFile: string, keyFile: string): KeyPair {
  const cert = readFileSync(certFile, 'utf8');
  const key = readFileSync(keyFile, 'utf8');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (error) {
    throw new Error(`--tls-cert-file "${certFile}" holds no PEM certificate: ${(error as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new Error(`--tls-private-key-file "${keyFile}" holds no PEM private key: ${(error as Error).message}`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new Error(`--tls-private-key-file "${keyFile}" does not match the certificate in --tls-cert-file "${certFile}" (subject ${leaf.subject.replace(/\n/g, ', ')})`);
  }
  return { cert, key, fingerprint: createHash('sha256').update(cert).update('\0').update(key).digest('hex'), notAfter: leaf.validTo };
}

export class SecureServing {
  private keyPair: KeyPair;
  private readonly server: https.Server;
  private readonly watchers: FSWatcher[] = [];
  private readonly poll: NodeJS.Timeout;
  private reloadTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(private readonly options: ServingOptions) {
    this.keyPair = loadKeyPair(options.tlsCertFile, options.tlsPrivateKeyFile);
    this.server = https.createServer(
      {
        ...this.secureContextOptions(),
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        // As Go's http.Server in k8s.io/apiserver: idle keep-alive 90 s, headers within 32 s, 1 MiB of headers.
        keepAlive: true,
        keepAliveTimeout: 90_000,
        headersTimeout: 32_000,
        requestTimeout: 0,
        maxHeaderSize: 1 << 20,
        noDelay: true,
      },
      options.handler,
    );
    this.server.on('tlsClientError', (error, socket) => {
      options.logger.debug({ err: error.message, remote: socket.remoteAddress }, 'TLS handshake failed');
    });
    this.server.on('clientError', (error, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      options.logger.debug({ err: error.message }, 'malformed HTTP request');
    });
    for (const dir of new Set([dirname(options.tlsCertFile), dirname(options.tlsPrivateKeyFile)])) {
      try {
        const watcher = watch(dir, { persistent: false }, () => this.scheduleReload());
        watcher.on('error', (error) => options.logger.warn({ err: error.message, dir }, 'cannot watch the certificate directory; polling only'));
        this.watchers.push(watcher);
      } catch (error) {
        options.logger.warn({ err: (error as Error).message, dir }, 'cannot watch the certificate directory; polling only');
      }
    }
    this.poll = setInterval(() => this.reloadCertificate(), options.certPollIntervalMs ?? 5000);
    this.poll.unref();
  }

  /** Listens on the configured address; resolves once bound. */
  static async start(options: ServingOptions): Promise<SecureServing> {
    const serving = new SecureServing(options);
    await new Promise<void>((resolve, reject) => {
      serving.server.once('error', reject);
      serving.server.listen(options.securePort, options.bindAddress, () => {
        serving.server.off('error', reject);
        resolve();
      });
    });
    options.logger.info({ address: options.bindAddress, port: serving.port, certNotAfter: serving.keyPair.notAfter }, 'serving HTTPS');
    return serving;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The certificate served to new connections, PEM. */
  get certificate(): string {
    return this.keyPair.cert;
  }

  private secureContextOptions(): { cert: string; key: string; ca?: string[] } {
    const ca = [...this.options.clientCaBundle()];
    return { cert: this.keyPair.cert, key: this.keyPair.key, ...(ca.length > 0 ? { ca } : {}) };
  }

  private scheduleReload(): void {
    // A Secret update renames several entries at once: read once things settle.
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.reloadCertificate(), 100);
    this.reloadTimer.unref();
  }

  /** Re-reads the certificate files; switches to them if they changed and are valid. Returns whether it switched. */
  reloadCertificate(): boolean {
    if (this.closed) return false;
    let next: KeyPair;
    try {
      next = loadKeyPair(this.options.tlsCertFile, this.options.tlsPrivateKeyFile);
    } catch (error) {
      // Mid-update (cert written, key not yet) or a bad Secret: keep serving the old pair.
      this.options.logger.error({ err: (error as Error).message }, 'serving certificate not reloaded; keeping the current one');
      return false;
    }
    if (next.fingerprint === this.keyPair.fingerprint) return false;
    this.keyPair = next;
    this.server.setSecureContext(this.secureContextOptions());
    this.options.logger.info({ certNotAfter: next.notAfter }, 'serving certificate reloaded');
    return true;
  }

  /** Rebuilds the TLS context after the client CAs changed (the auth ConfigMap was reloaded). */
  reloadClientCa(): void {
    if (this.closed) return;
    try {
      this.server.setSecureContext(this.secureContextOptions());
      this.options.logger.info({ clientCas: this.options.clientCaBundle().length }, 'client CA bundle reloaded');
    } catch (error) {
      this.options.logger.error({ err: (error as Error).message }, 'client CA bundle not applied; keeping the current TLS context');
    }
  }

  /**
   * Stops accepting connections and waits for the in-flight requests to finish, at most
   * `timeoutMs`; then cuts whatever is left. Idle keep-alive connections are closed at once.
   */
  async stop(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.poll);
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    for (const watcher of this.watchers) watcher.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // Connections that finish their request become idle: close them as they do.
    const sweep = setInterval(() => this.server.closeIdleConnections(), 50);
    const deadline = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref());
    const outcome = await Promise.race([closed.then(() => 'closed' as const), deadline]);
    clearInterval(sweep);
    if (outcome === 'timeout') {
      this.options.logger.warn({ timeoutMs }, 'in-flight requests did not finish in time; closing their connections');
      this.server.closeAllConnections();
      await closed;
    }
  }
}
