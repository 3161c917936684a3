/**
 * A local HTTPS admission webhook: it reads real `admission.k8s.io/v1` AdmissionReview JSON and
 * answers with the review a test's handler decides (allow, deny with a status, a JSON patch,
 * warnings), or not at all (a hang, to time a caller out). Every review received is recorded per
 * path, so a test can count calls and read what was sent. Its serving certificate comes from the
 * project's test PKI, for `localhost`, 127.0.0.1 and the service names given.
 */
import type { ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { makeCa, makeServerCert, type TestCa } from './pki';

/** The request part of an AdmissionReview, as sent. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AdmissionRequest = Record<string, any>;

export interface WebhookAnswer {
  readonly allowed: boolean;
  readonly status?: Record<string, unknown>;
  /** JSON patch operations, sent base64 with patchType JSONPatch. */
  readonly patch?: readonly Record<string, unknown>[];
  readonly warnings?: readonly string[];
  /** Replace the whole response (to send a malformed one). */
  readonly rawResponse?: Record<string, unknown>;
}

/** Decides the answer to one review (possibly later); `'hang'` never answers. */
export type WebhookHandler = (request: AdmissionRequest) => WebhookAnswer | 'hang' | Promise<WebhookAnswer>;

export class AdmissionWebhookServer {
  static async start(serviceNames: readonly string[] = []): Promise<AdmissionWebhookServer> {
    const server = new AdmissionWebhookServer(serviceNames);
    await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', resolve));
    return server;
  }

  readonly ca: TestCa;
  /** Reviews received, by path (`/deny`, `/mutate`, …), in arrival order. */
  readonly received = new Map<string, AdmissionRequest[]>();
  private readonly handlers = new Map<string, WebhookHandler>();
  private readonly server: https.Server;
  private readonly sockets = new Set<Socket>();
  /** TLS connections accepted so far. */
  connections = 0;
  /** Requests served per connection, to find a kept connection's second request. */
  private readonly requestsOn = new WeakMap<Socket, number>();
  private dropReusedOnce = false;

  private constructor(serviceNames: readonly string[]) {
    this.ca = makeCa('admission-webhook-test-ca');
    const serving = makeServerCert(this.ca, serviceNames);
    this.server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
      const served = (this.requestsOn.get(req.socket) ?? 0) + 1;
      this.requestsOn.set(req.socket, served);
      if (served > 1 && this.dropReusedOnce) {
        // As a webhook whose idle timeout closed the connection just as the request came.
        this.dropReusedOnce = false;
        req.socket.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const path = new URL(req.url ?? '/', 'https://webhook').pathname;
        let review: { apiVersion?: string; kind?: string; request?: AdmissionRequest };
        try {
          review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          res.writeHead(400).end('not JSON');
          return;
        }
        if (review.apiVersion !== 'admission.k8s.io/v1' || review.kind !== 'AdmissionReview' || !review.request) {
          res.writeHead(400).end(`not an admission.k8s.io/v1 AdmissionReview: ${JSON.stringify(review).slice(0, 200)}`);
          return;
        }
        const request = review.request;
        this.received.set(path, [...(this.received.get(path) ?? []), request]);
        const handler = this.handlers.get(path);
        const decided = handler ? handler(request) : { allowed: true };
        if (decided === 'hang') return;
        // A handler that gives up (rejects) answers nothing: the connection is cut, as a crashed webhook's.
        Promise.resolve(decided).then(
          (answer) => this.answer(res, request, answer),
          () => res.destroy(),
        );
      });
    });
    this.server.on('secureConnection', () => this.connections++);
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  private answer(res: ServerResponse, request: AdmissionRequest, answer: WebhookAnswer): void {
    const response = answer.rawResponse ?? {
      uid: request.uid,
      allowed: answer.allowed,
      ...(answer.status ? { status: answer.status } : {}),
      ...(answer.patch ? { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(answer.patch)).toString('base64') } : {}),
      ...(answer.warnings ? { warnings: answer.warnings } : {}),
    };
    const text = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) }).end(text);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The base64 CA bundle a webhook configuration names. */
  get caBundle(): string {
    return Buffer.from(this.ca.certPem).toString('base64');
  }

  url(path: string): string {
    return `https://127.0.0.1:${this.port}${path}`;
  }

  /** How `path` answers from now on (by default: allowed). */
  on(path: string, handler: WebhookHandler): this {
    this.handlers.set(path, handler);
    return this;
  }

  /** The next request that comes on a connection already used is dropped unread (the connection closed). */
  dropNextReusedRequest(): void {
    this.dropReusedOnce = true;
  }

  /** Forgets every handler (all paths allow again) and every review received. */
  reset(): void {
    this.handlers.clear();
    this.received.clear();
  }

  calls(path: string): AdmissionRequest[] {
    return this.received.get(path) ?? [];
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
