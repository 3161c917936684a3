/**
 * Calls one webhook: POST of an AdmissionReview as JSON over HTTPS, as upstream's webhook client
 * (k8s.io/apiserver/pkg/util/webhook) does: `url`, or a `service` dialled as
 * `<name>.<namespace>.svc:<port>` and verified under that name; the `caBundle` (else the system
 * roots) always verified; `?timeout=<n>s` on the URL and the call abandoned at that deadline.
 * Errors are worded as Go's http client words them (`Post "<url>": context deadline exceeded`).
 *
 * Connections are kept alive between calls, as upstream's webhook ClientManager keeps one client
 * (and its transport's idle connections) per configuration: one agent per host, port, TLS name and
 * CA bundle, at most 25 idle connections each (utilnet.SetTransportDefaults' MaxIdleConnsPerHost),
 * closed after 90 s idle (Go's IdleConnTimeout) or sooner when the webhook announces `Keep-Alive:
 * timeout=` (node's agent then closes them a second early). A call whose reused connection the
 * webhook closed before answering is sent once more on a new one.
 *
 * The server presents no client certificate to webhooks (upstream's --admission-control-config-file
 * kubeconfig for webhook authentication is not implemented).
 */
import * as https from 'node:https';
import type { ServiceReference, WebhookClientConfig } from './configuration';

/** Where a service reference is dialled; the TLS name stays `<name>.<namespace>.svc`. */
export type ServiceResolver = (service: ServiceReference) => { readonly host: string; readonly port: number };

/** In a cluster the service's DNS name resolves. */
export const clusterServiceResolver: ServiceResolver = (service) => ({ host: `${service.name}.${service.namespace}.svc`, port: service.port ?? 443 });

/** Idle connections kept per agent, and how long (Go: MaxIdleConnsPerHost 25, IdleConnTimeout 90 s). */
const MAX_IDLE_CONNECTIONS = 25;
const IDLE_TIMEOUT_MS = 90_000;
/** Agents kept (least recently used dropped first): webhooks' configurations, not their calls, bound it. */
const MAX_AGENTS = 64;

const agents = new Map<string, https.Agent>();

/**
 * The keep-alive agent for connections to `host`:`port` verified as `servername` under `ca`. A
 * dropped agent is not destroyed (its calls in flight finish); its idle connections time out.
 */
function agentFor(host: string, port: number, servername: string | undefined, ca: string | undefined): https.Agent {
  const key = JSON.stringify([host, port, servername ?? '', ca ?? '']);
  let agent = agents.get(key);
  if (agent) {
    agents.delete(key);
  } else {
    agent = new https.Agent({ keepAlive: true, maxFreeSockets: MAX_IDLE_CONNECTIONS, timeout: IDLE_TIMEOUT_MS, scheduling: 'lifo' });
    if (agents.size >= MAX_AGENTS) agents.delete(agents.keys().next().value as string);
  }
  agents.set(key, agent);
  return agent;
}

/** The largest answer read from a webhook (a response is a review, not a payload). */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** A call that got no usable answer: the failurePolicy decides. */
export class WebhookCallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookCallError';
  }
}

/** The URL a webhook is called at (shown in errors) and where its connection goes. */
export function webhookTarget(config: WebhookClientConfig, timeoutMs: number, resolve: ServiceResolver): { url: URL; shown: string; host: string; port: number; servername: string } {
  let url: URL;
  let host: string;
  let port: number;
  if (config.url !== undefined) {
    url = new URL(config.url);
    host = url.hostname.replace(/^\[|\]$/g, '');
    port = url.port === '' ? 443 : Number(url.port);
  } else if (config.service !== undefined) {
    const service = config.service;
    const servicePort = service.port ?? 443;
    url = new URL(`https://${service.name}.${service.namespace}.svc:${servicePort}${service.path ?? ''}`);
    ({ host, port } = resolve(service));
  } else {
    throw new WebhookCallError('webhook has no clientConfig.url or clientConfig.service');
  }
  if (url.protocol !== 'https:') throw new WebhookCallError(`webhook URL ${JSON.stringify(config.url)} must use the https scheme`);
  url.searchParams.set('timeout', `${Math.round(timeoutMs / 1000)}s`);
  // Go names the port even when it is https' default (the service client's host is name.namespace.svc:port).
  const shown = config.service !== undefined && url.port === '' ? url.href.replace(`//${url.host}`, `//${url.host}:443`) : url.href;
  return { url, shown, host, port, servername: url.hostname.replace(/^\[|\]$/g, '') };
}

/** Go's wording of a failed dial or handshake, from Node's error. */
function describeFailure(error: NodeJS.ErrnoException, host: string, port: number, servername: string): string {
  switch (error.code) {
    case 'ECONNREFUSED':
      return `dial tcp ${host}:${port}: connect: connection refused`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `dial tcp: lookup ${host}: no such host`;
    case 'ECONNRESET':
      return 'read: connection reset by peer';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return 'tls: failed to verify certificate: x509: certificate signed by unknown authority';
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return 'tls: failed to verify certificate: x509: certificate has expired or is not yet valid';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `tls: failed to verify certificate: x509: certificate is not valid for ${servername}`;
    default:
      return error.message;
  }
}

/**
 * POSTs `review` and resolves with the decoded answer of a 200; rejects with a WebhookCallError
 * (`failed to call webhook: …`, upstream's wording) on any other outcome.
 */
export function callWebhook(config: WebhookClientConfig, review: unknown, timeoutMs: number, resolve: ServiceResolver = clusterServiceResolver): Promise<unknown> {
  const target = webhookTarget(config, timeoutMs, resolve);
  const post = `Post "${target.shown}"`;
  const ca = config.caBundle ? Buffer.from(config.caBundle, 'base64').toString('utf8') : undefined;
  const body = Buffer.from(JSON.stringify(review));
  const servername = /^[\d.]+$|:/.test(target.servername) ? undefined : target.servername;
  const agent = agentFor(target.host, target.port, servername, ca);
  return new Promise((resolvePromise, reject) => {
    let settled = false;
    let current: ReturnType<typeof https.request> | undefined;
    const fail = (message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new WebhookCallError(`failed to call webhook: ${message}`));
    };
    const send = (attempt: number) => {
      let answered = false;
      const request = https.request(
        {
          host: target.host,
          port: target.port,
          servername,
          path: `${target.url.pathname}${target.url.search}`,
          method: 'POST',
          // Verification is never skipped: the caBundle when given, else Node's (system) roots.
          ...(ca ? { ca } : {}),
          rejectUnauthorized: true,
          agent,
          headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Content-Length': body.length },
        },
        (response) => {
          answered = true;
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              fail(`${post}: the response is larger than ${MAX_RESPONSE_BYTES} bytes`);
              request.destroy();
              return;
            }
            chunks.push(chunk);
          });
          response.on('error', (error) => fail(`${post}: ${error.message}`));
          response.on('end', () => {
            if (settled) return;
            const text = Buffer.concat(chunks).toString('utf8');
            const code = response.statusCode ?? 0;
            if (code < 200 || code > 299) {
              fail(text.trim() ? `an error on the server (${JSON.stringify(text.trim().slice(0, 1024))}) has prevented the request from succeeding` : `the server responded with the status code ${code} but did not return more information`);
              return;
            }
            let decoded: unknown;
            try {
              decoded = JSON.parse(text);
            } catch (error) {
              fail(`${post}: the answer is not JSON: ${(error as Error).message}`);
              return;
            }
            settled = true;
            clearTimeout(timer);
            resolvePromise(decoded);
          });
        },
      );
      current = request;
      request.on('error', (error: NodeJS.ErrnoException) => {
        // A kept connection the webhook closed as this call went out (its idle timeout): the call
        // never reached a handler that answered; once more on a new connection (webhooks are
        // called again anyway under reinvocation, and must be idempotent).
        if (!settled && !answered && attempt === 1 && request.reusedSocket && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) {
          send(2);
          return;
        }
        fail(`${post}: ${describeFailure(error, target.host, target.port, target.servername)}`);
      });
      request.end(body);
    };
    const timer = setTimeout(() => {
      fail(`${post}: context deadline exceeded`);
      current?.destroy();
    }, timeoutMs);
    send(1);
  });
}
