/**
 * Stand-ins for the server shell's collaborators (authentication, authorization, the registry),
 * and a small HTTPS client, for tests of the shell alone. The fakes keep to the contracts:
 * the authenticator reads the verified client certificate off the TLS socket, as the real x509
 * authenticator does.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { TLSSocket } from 'node:tls';
import pino from 'pino';
import { Writable } from 'node:stream';
import type { AuthenticationResult, Authenticator, Authorizer, AuthorizationDecision, UserInfo } from '../../server/auth/types';
import type { RequestInfo } from '../../server/request-info';
import type { DelegatedAuth } from '../../server/auth';
import { errors } from '../../server/status';

export const ANONYMOUS: UserInfo = { name: 'system:anonymous', groups: ['system:unauthenticated'], extra: {} };

/** x509 users (CN, O) when the client certificate verified against the requested CAs; `Bearer bad` is rejected. */
export const fakeAuthenticator: Authenticator = {
  async authenticate(req: IncomingMessage): Promise<AuthenticationResult> {
    if (req.headers.authorization === 'Bearer bad') return { outcome: 'rejected', reason: 'invalid bearer token' };
    const socket = req.socket as TLSSocket;
    const cert = socket.getPeerCertificate();
    if (socket.authorized && cert && cert.subject) {
      const o = cert.subject.O;
      const groups = o === undefined ? [] : Array.isArray(o) ? o : [o];
      return { outcome: 'authenticated', method: 'x509', user: { name: String(cert.subject.CN), groups: [...groups, 'system:authenticated'], extra: {} } };
    }
    return { outcome: 'authenticated', method: 'anonymous', user: ANONYMOUS };
  },
};

/** Allows probes' paths and system:masters; denies `alice` (with a reason) and anonymous users elsewhere. */
export function fakeAuthorizer(calls: RequestInfo[] = []): Authorizer {
  return {
    async authorize(user: UserInfo, info: RequestInfo): Promise<AuthorizationDecision> {
      calls.push(info);
      if (!info.isResourceRequest && /^\/(healthz|livez|readyz)(\/|$)/.test(info.path)) return { allowed: true, reason: '' };
      if (user.groups.includes('system:masters')) return { allowed: true, reason: '' };
      if (user.name === 'alice') return { allowed: false, reason: 'RBAC: no binding for alice' };
      if (user.name === 'system:anonymous') return { allowed: false, reason: '' };
      return { allowed: true, reason: '' };
    },
  };
}

export class FakeAuth implements DelegatedAuth {
  ready = true;
  readonly listeners: (() => void)[] = [];
  closed = false;
  constructor(
    public caBundle: string[],
    readonly authenticator: Authenticator = fakeAuthenticator,
    readonly authorizer: Authorizer = fakeAuthorizer(),
  ) {}
  clientCaBundle(): string[] {
    return this.caBundle;
  }
  onClientCaChange(listener: () => void): void {
    this.listeners.push(listener);
  }
  isReady(): boolean {
    return this.ready;
  }
  close(): void {
    this.closed = true;
  }
}

/**
 * Answers lists with an empty list, gets with 404, and watches by holding the stream open
 * (one ADDED event first) until `close()` ends it cleanly.
 */
export class FakeApiServing {
  ready = true;
  readonly watches = new Set<ServerResponse>();
  readonly handled: RequestInfo[] = [];

  async handle(_req: IncomingMessage, res: ServerResponse, info: RequestInfo, _user: UserInfo): Promise<void> {
    this.handled.push(info);
    if (info.verb === 'watch') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      res.write(`${JSON.stringify({ type: 'ADDED', object: { kind: 'Flunder', apiVersion: `${info.apiGroup}/${info.apiVersion}`, metadata: { name: 'a', namespace: info.namespace, resourceVersion: '1' } } })}\n`);
      this.watches.add(res);
      res.on('close', () => this.watches.delete(res));
      return;
    }
    if (info.verb === 'list') {
      const body = JSON.stringify({ kind: 'FlunderList', apiVersion: `${info.apiGroup}/${info.apiVersion}`, metadata: { resourceVersion: '1' }, items: [] });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    throw errors.notFound({ group: info.apiGroup, resource: info.resource }, info.name);
  }
  isReady(): boolean {
    return this.ready;
  }
  watchCount(): number {
    return this.watches.size;
  }
  async close(): Promise<void> {
    for (const res of this.watches) res.end();
  }
}

/** A pino logger writing JSON lines into `lines`. */
export function memoryLogger(lines: Record<string, unknown>[] = []): pino.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      callback();
    },
  });
  return pino({ level: 'debug' }, sink);
}

export interface Response {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  /** The body parsed as JSON (as loosely typed as JSON.parse). */
  readonly json: () => ReturnType<typeof JSON.parse>;
  readonly peerCertificate: string;
  readonly socketId: number;
}

let socketIds = 0;
const ids = new WeakMap<object, number>();

/** One HTTPS request; the server is checked against `ca`, and `cert`/`key` are sent when given. */
export function request(
  port: number,
  path: string,
  options: { ca: string; cert?: string; key?: string; method?: string; headers?: Record<string, string | string[]>; agent?: https.Agent; body?: string; servername?: string } = { ca: '' },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        headers: options.headers,
        agent: options.agent ?? false,
        servername: options.servername ?? 'localhost',
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        if (!ids.has(socket)) ids.set(socket, ++socketIds);
        const peerCertificate = socket.getPeerCertificate?.()?.fingerprint256 ?? '';
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json: () => JSON.parse(body),
            peerCertificate,
            socketId: ids.get(socket)!,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}
