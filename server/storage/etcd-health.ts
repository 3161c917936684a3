/**
 * etcd's own health endpoint (`GET /health` on the client URL, which also serves gRPC), asked over
 * plain HTTP(S) so that the answer names what failed: the TCP connection, the TLS verification of
 * etcd's certificate, etcd's verdict on our client certificate, or etcd itself. Used by the
 * background health check of `EtcdStorage` and by `verifyEtcdAtStart`.
 */
import * as http from 'node:http';
import * as https from 'node:https';

export interface EtcdTlsPem {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/**
 * - `unreachable`: no connection or no answer in time (retrying may help);
 * - `unhealthy`: etcd answered that it cannot serve (no leader, alarm);
 * - `untrusted`: the CA does not verify etcd's certificate;
 * - `wrong-name`: etcd's certificate does not name the host of the URL;
 * - `client-rejected`: etcd refused our client certificate (or we sent none);
 * - `client-unusable`: our certificate and key cannot be used (they do not match, or do not parse).
 */
export type EtcdProbeFailure = 'unreachable' | 'unhealthy' | 'untrusted' | 'wrong-name' | 'client-rejected' | 'client-unusable';

export type EtcdProbeResult =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly failure: EtcdProbeFailure;
      /** One line naming the server and what failed, for /readyz. */
      readonly reason: string;
      /** What TLS or the connection said (OpenSSL's reason), for start-up messages that name the server themselves. */
      readonly detail: string;
    };

/** OpenSSL's verification results for a server certificate that does not chain to the CA. */
const UNTRUSTED_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'INVALID_CA',
]);

/** TLS alerts a server sends when it refuses the client's certificate (or its absence). */
const CLIENT_REJECTED = /ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|ACCESS_DENIED|HANDSHAKE_FAILURE)/;

/** `connect ECONNREFUSED 127.0.0.1:2379` → `connect ECONNREFUSED`: the URL is said once, elsewhere. */
function shortCause(error: NodeJS.ErrnoException): string {
  if (error.syscall && error.code) return `${error.syscall} ${error.code}`;
  return opensslReason(error.message);
}

/**
 * OpenSSL's reason without its error-queue noise: `80..:error:0A000412:SSL routines:ssl3_read_bytes:sslv3
 * alert bad certificate:../deps/...:SSL alert number 42` → `sslv3 alert bad certificate`.
 */
export function opensslReason(message: string): string {
  return message
    .replace(/\b[0-9A-F]+:error:[0-9A-F]+:[^:]*:[^:]*:([^:]+):\S+?:\d+(:SSL alert number \d+)?/g, '$1')
    .replace(/\s+/g, ' ')
    .trim();
}

function classify(url: string, error: NodeJS.ErrnoException & { reason?: string }, timeoutSeconds: string): EtcdProbeResult {
  const code = error.code ?? '';
  const detail = opensslReason(typeof error.reason === 'string' ? error.reason : error.message);
  if (UNTRUSTED_CODES.has(code)) return { ok: false, failure: 'untrusted', detail, reason: `the certificate of ${url} is not verified by the CA (${detail})` };
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return { ok: false, failure: 'wrong-name', detail, reason: `the certificate of ${url} does not name it (${detail})` };
  if (CLIENT_REJECTED.test(code)) return { ok: false, failure: 'client-rejected', detail, reason: `${url} does not accept the client certificate (${detail})` };
  if (code.startsWith('ERR_OSSL_')) return { ok: false, failure: 'client-unusable', detail, reason: `the client certificate and key cannot be used (${detail})` };
  return { ok: false, failure: 'unreachable', detail, reason: `no answer from ${url} within ${timeoutSeconds} (${shortCause(error)})` };
}

/** One `GET <url>/health` with a deadline; never rejects. */
export function probeEtcd(url: string, tls: EtcdTlsPem | undefined, timeoutMs: number): Promise<EtcdProbeResult> {
  const timeoutSeconds = `${timeoutMs / 1000}s`;
  return new Promise((resolve) => {
    let settled = false;
    const settle = (result: EtcdProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request?.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => settle({ ok: false, failure: 'unreachable', detail: 'timeout', reason: `no answer from ${url} within ${timeoutSeconds}` }), timeoutMs);
    let request: http.ClientRequest | undefined;
    try {
      const target = new URL('/health', url);
      const onResponse = (response: http.IncomingMessage) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body = (body + chunk).slice(0, 4096)));
        response.on('error', (error) => settle(classify(url, error, timeoutSeconds)));
        response.on('end', () => {
          if (response.statusCode === 200 && /"health"\s*:\s*"true"/.test(body)) return settle({ ok: true });
          const said = /"reason"\s*:\s*"([^"]*)"/.exec(body)?.[1];
          const detail = `HTTP ${response.statusCode}${said ? `: ${said}` : ''}`;
          settle({ ok: false, failure: 'unhealthy', detail, reason: `${url} reports unhealthy (${detail})` });
        });
      };
      request =
        target.protocol === 'https:'
          ? https.get(target, { agent: false, ca: tls?.ca, cert: tls?.cert, key: tls?.key }, onResponse)
          : http.get(target, { agent: false }, onResponse);
      request.on('error', (error) => settle(classify(url, error, timeoutSeconds)));
    } catch (error) {
      // A certificate and key that do not belong together fail when the TLS context is built.
      settle(classify(url, error as NodeJS.ErrnoException, timeoutSeconds));
    }
  });
}

/**
 * grpc-js's message on one line: `14 UNAVAILABLE: No connection established. Last error: connect
 * ECONNREFUSED 127.0.0.1:2379 (2026-…Z). Resolution note: ` → without the time stamp and the empty note.
 */
export function grpcReason(error: unknown): string {
  return opensslReason(
    (error instanceof Error ? error.message : String(error))
      .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '')
      .replace(/\.?\s*Resolution note:\s*$/, ''),
  );
}
