import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { FSWatcher, readFileSync, watch } from 'node:fs';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { RequestHandler } from './handler';

/**
 * HTTPS serving: TLS with a client certificate *requested* (not required: probes and token
 * clients send none) from the CAs authentication trusts, keep-alive, and the serving
 * certificate reloaded in place when its files change.
 *
 * HTTP/2 and HTTP/1.1 on one port, chosen by ALPN (`h2` first, as Go's server offers them; a
 * client without ALPN gets HTTP/1.1). HTTP/2 requests reach the handler through node:http2's
 * compatibility API; the limits are k8s.io/apiserver's (secure_serving.go): 100 concurrent
 * streams, 256 KiB stream windows and frames, a connection window of 100 × 256 KiB, 1 MiB of
 * headers, and a connection idle for 90 s (no open stream) closed with GOAWAY.
 *
 * Against slow or silent clients (slowloris), Go's http.Server timeouts as k8s.io/apiserver sets
 * them: the TLS handshake and an HTTP/1.1 request's headers must arrive within ReadHeaderTimeout
 * (32 s; else 408 and the connection is closed); an HTTP/1.1 keep-alive connection idle for
 * IdleTimeout (90 s) is closed; an HTTP/2 connection without an open stream for IdleTimeout gets
 * GOAWAY and is closed a second later (x/net/http2's goAwayTimeout), pings or not. A request whose
 * headers arrived but whose body does not is ended by the request timeout (flow-control.ts).
 *
 * The kubelet updates a mounted Secret by writing a new timestamped directory and renaming the
 * `..data` symlink over the old one, so the files' own inodes never change: the directories are
 * watched, and their content is also polled as a fallback (some filesystems send no events).
 * A new pair is used only when the key matches the certificate; otherwise the old one stays and
 * the error is logged. Open connections keep their session; new handshakes get the new pair.
 */

/** As Go's http.Server in k8s.io/apiserver: IdleTimeout 90 s, ReadHeaderTimeout 32 s, MaxHeaderBytes 1 MiB. */
export const IDLE_TIMEOUT_MS = 90_000;
export const READ_HEADER_TIMEOUT_MS = 32_000;
/** x/net/http2: after GOAWAY for idleness, the connection is closed this much later whatever the peer does. */
const H2_GOAWAY_TIMEOUT_MS = 1000;
/**
 * How often node checks HTTP/1.1 connections for headers that are late (it checks them only at
 * this interval: node's default, 30 s, would let a slowloris hold a connection for ~62 s).
 */
const MAX_HEADER_CHECK_INTERVAL_MS = 1000;
const MAX_HEADER_BYTES = 1 << 20;
/** k8s.io/apiserver's HTTP2Config: MaxConcurrentStreams 100, 256 KiB per stream (window and frame), 100 × that per connection. */
const H2_MAX_CONCURRENT_STREAMS = 100;
const H2_STREAM_BUFFER_BYTES = 256 * 1024;
/**
 * node:http2's per-session memory cap in MiB (default 10): past it the session refuses new streams
 * (ENHANCE_YOUR_CALM) until its queued output drains; streams already open go on. Sized for a
 * 256 MiB pod: one connection may hold a full LIST at the memory store's quota (32 MiB of JSON)
 * queued, not the 1 GiB it could before; watches are cut at their own queue bound first.
 */
const H2_MAX_SESSION_MEMORY_MB = 64;

/**
 * The HTTP/1.1 settings node:http2 reads from the server object for connections that fall back to
 * HTTP/1.1 (`createSecureServer` does not take them as options).
 */
interface Http1Settings {
  keepAliveTimeout: number;
  headersTimeout: number;
  requestTimeout: number;
  maxHeaderSize: number;
  /** Read when the server starts listening. */
  connectionsCheckingInterval: number;
}

/** Go's http.Server timeouts; tests shorten them. */
export interface ServingTimeouts {
  /** The TLS handshake and an HTTP/1.1 request's headers must arrive within this. @default 32000 (ReadHeaderTimeout) */
  readonly readHeaderTimeoutMs?: number;
  /** An HTTP/1.1 keep-alive connection, or an HTTP/2 one without open streams, is closed after this. @default 90000 (IdleTimeout) */
  readonly idleTimeoutMs?: number;
}

/** `closeIdleConnections` of the HTTP/1.1 fallback: in node:http2 since 20.x/22.x, absent from older typings. */
interface ClosesIdleConnections {
  closeIdleConnections?: () => void;
}

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
  /** @default - Go's: 32 s for the handshake and headers, 90 s idle */
  readonly timeouts?: ServingTimeouts;
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
function loadKeyPair(certFile: string, keyFile: string): KeyPair {
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
  private readonly server: http2.Http2SecureServer & Partial<Http1Settings> & ClosesIdleConnections;
  /** Open HTTP/2 sessions (sent GOAWAY on stop) and every TLS connection (cut when stop times out). */
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly sockets = new Set<TLSSocket>();
  private readonly watchers: FSWatcher[] = [];
  private readonly poll: NodeJS.Timeout;
  private reloadTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly readHeaderTimeoutMs: number;
  private readonly idleTimeoutMs: number;

  private constructor(private readonly options: ServingOptions) {
    this.readHeaderTimeoutMs = options.timeouts?.readHeaderTimeoutMs ?? READ_HEADER_TIMEOUT_MS;
    this.idleTimeoutMs = options.timeouts?.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    this.keyPair = loadKeyPair(options.tlsCertFile, options.tlsPrivateKeyFile);
    // Both protocols hand the handler the members it uses (method, url, headers, rawHeaders,
    // httpVersion, socket, the readable body; statusCode, setHeader, writeHead, write, end,
    // headersSent, writable*, destroy, 'close'): node:http2's compatibility objects implement them
    // for HTTP/2, node:http's own objects serve the HTTP/1.1 fallback. What differs (the peer
    // certificate's socket, repeated headers, connection headers) is read protocol-neutrally
    // where it is used (auth/cert-pool.ts, auth/request-header.ts, registry/body.ts).
    const handler = options.handler as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;
    this.server = http2.createSecureServer(
      {
        ...this.secureContextOptions(),
        allowHTTP1: true,
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        keepAlive: true,
        noDelay: true,
        // Go bounds the handshake by ReadHeaderTimeout (http.Server.tlsHandshakeTimeout); node's default is 120 s.
        handshakeTimeout: this.readHeaderTimeoutMs,
        // node:http2 refuses new streams (ENHANCE_YOUR_CALM) while a session's queued output exceeds
        // this; Go's server has no such cap and only flow-controls. The output is ours and bounded
        // per stream (a response body, or a watch's buffer limit); 64 MiB leaves room for the
        // aggregator's many LISTs and watches on one connection and stays well inside a 256 MiB pod.
        maxSessionMemory: H2_MAX_SESSION_MEMORY_MB,
        settings: {
          maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
          initialWindowSize: H2_STREAM_BUFFER_BYTES,
          maxFrameSize: H2_STREAM_BUFFER_BYTES,
          maxHeaderListSize: MAX_HEADER_BYTES,
        },
      },
      handler,
    );
    const http1: Http1Settings = {
      keepAliveTimeout: this.idleTimeoutMs,
      headersTimeout: this.readHeaderTimeoutMs,
      requestTimeout: 0,
      maxHeaderSize: MAX_HEADER_BYTES,
      connectionsCheckingInterval: Math.min(MAX_HEADER_CHECK_INTERVAL_MS, Math.max(10, Math.floor(this.readHeaderTimeoutMs / 4))),
    };
    Object.assign(this.server, http1);
    this.server.on('secureConnection', (socket: TLSSocket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.server.on('session', (session) => this.trackSession(session));
    this.server.on('sessionError', (error) => {
      options.logger.debug({ err: error.message }, 'HTTP/2 session error');
    });
    this.server.on('tlsClientError', (error, socket) => {
      options.logger.debug({ err: error.message, remote: socket.remoteAddress }, 'TLS handshake failed');
    });
    // Also reached (through node:http2) by TLS handshake failures and timeouts: only a connection
    // that got as far as HTTP/1.1 is answered; any other is closed, as node does without a listener.
    this.server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
      const code = error.code ?? '';
      if (code === 'ERR_HTTP_REQUEST_TIMEOUT' || code.startsWith('HPE_')) {
        if (socket.writable && socket.bytesWritten === 0) socket.write(code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        options.logger.debug({ err: error.message }, code.startsWith('HPE_') ? 'malformed HTTP request' : 'HTTP request headers not received in time');
      } else {
        options.logger.debug({ err: error.message }, 'connection failed before HTTP');
      }
      socket.destroy();
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

  /**
   * An HTTP/2 session: its connection window sized for its streams, closed with GOAWAY after the
   * idle timeout without an open stream (a quiet watch keeps it open; pings do not), or at once
   * if the server is stopping.
   */
  private trackSession(session: http2.ServerHttp2Session): void {
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    if (this.closed) {
      session.close();
      return;
    }
    session.setLocalWindowSize(H2_STREAM_BUFFER_BYTES * H2_MAX_CONCURRENT_STREAMS);
    // As x/net/http2's idle timer: idleness is time without an open stream, not without traffic
    // (node's session.setTimeout counts any frame, so a client pinging would never be idle).
    const idleTimeoutMs = this.idleTimeoutMs;
    let openStreams = 0;
    let idleSince = performance.now();
    session.on('stream', (stream) => {
      openStreams += 1;
      stream.once('close', () => {
        openStreams -= 1;
        if (openStreams === 0) idleSince = performance.now();
      });
    });
    const checkIdle = (): void => {
      if (session.closed || session.destroyed) return;
      const idleFor = performance.now() - idleSince;
      if (openStreams > 0 || idleFor < idleTimeoutMs) {
        idleTimer = setTimeout(checkIdle, openStreams > 0 ? idleTimeoutMs : idleTimeoutMs - idleFor);
        return;
      }
      session.close();
      setTimeout(() => session.destroy(), H2_GOAWAY_TIMEOUT_MS).unref();
    };
    let idleTimer = setTimeout(checkIdle, idleTimeoutMs);
    session.once('close', () => clearTimeout(idleTimer));
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
   * `timeoutMs`; then cuts whatever is left. HTTP/2 sessions get GOAWAY at once (no new streams;
   * open ones, watches included, run until they end); idle HTTP/1.1 keep-alive connections are
   * closed at once, busy ones as soon as their request is done.
   */
  async stop(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.poll);
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    for (const watcher of this.watchers) watcher.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.close();
    this.server.closeIdleConnections?.();
    // Connections that finish their request become idle: close them as they do.
    const sweep = setInterval(() => this.server.closeIdleConnections?.(), 50);
    const deadline = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref());
    const outcome = await Promise.race([closed.then(() => 'closed' as const), deadline]);
    clearInterval(sweep);
    if (outcome === 'timeout') {
      this.options.logger.warn({ timeoutMs }, 'in-flight requests did not finish in time; closing their connections');
      for (const session of this.sessions) session.destroy();
      for (const socket of this.sockets) socket.destroy();
      await closed;
    }
  }
}
