import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ApiGroupDefinition, servedVersions } from '../apis';
import { AuditAnnotations } from './admission/audit-annotations';
import type { AuditLog } from './audit';
import { forbiddenError } from './auth/authorizer';
import type { AuthorizationDecision, Authenticator, Authorizer, UserInfo } from './auth/types';
import { Discovery } from './discovery';
import { FLOW_CONTROL_DEFAULTS, FlowControl, FlowControlOptions } from './flow-control';
import { Health } from './health';
import { requestLogWriter } from './logging';
import { Metrics, RequestLabels } from './metrics';
import { OpenApi } from './openapi';
import type { ApiServing } from './registry';
import { RequestInfo, parseRequestInfo } from './request-info';
import { Status, StatusError, errors } from './status';
import { SERVER_VERSION } from './version';

/**
 * The request pipeline, in the order of k8s.io/apiserver's handler chain:
 * request info → authentication (401) → authorization (403) → route → one log line and metrics.
 *
 * Nothing here reads a request body: the registry (`ApiServing`) reads and bounds bodies of
 * resource requests; every other path answers without consuming one.
 */

export interface HandlerOptions {
  readonly api: ApiGroupDefinition;
  readonly authenticator: Authenticator;
  readonly authorizer: Authorizer;
  readonly apiServing: ApiServing;
  readonly health: Health;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Where each finished request's audit event goes (--audit-log-path). @default - no audit log */
  readonly audit?: AuditLog;
  /** Max in-flight limits and the request timeout (flow-control.ts). @default - the Go kube-apiserver's: 400, 200, 60 s */
  readonly flowControl?: Omit<FlowControlOptions, 'onAdmitted'>;
}

/**
 * Serves one request. Over HTTP/2 the objects are node:http2's compatibility request and
 * response, which implement every member the server uses (see serving.ts).
 */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

const METRIC_VERBS: Record<string, string> = { create: 'POST', update: 'PUT' };

/** Writes a metav1.Status as the response (if nothing was written yet), with the Audit-Id unless already set. */
function writeStatus(res: ServerResponse, status: Status, auditId: string): void {
  if (res.headersSent) {
    // A stream already started (a watch): the only honest signal left is to cut it.
    res.destroy();
    return;
  }
  const body = JSON.stringify(status);
  if (!res.hasHeader('Audit-Id')) res.setHeader('Audit-Id', auditId);
  res.statusCode = status.code;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-cache, private');
  // As responsewriters.ErrorNegotiated: a Status that says when to retry (429, 503) says it in Retry-After too.
  const retryAfter = status.details?.retryAfterSeconds;
  if (retryAfter !== undefined && !res.hasHeader('Retry-After')) res.setHeader('Retry-After', String(retryAfter));
  res.end(body);
}

/**
 * Reads of resources (GET and LIST) are answered by the registry with every header in one
 * `writeHead` list, Audit-Id included (`RequestInfo.auditID`): node's fast path, which a header set
 * before (`setHeader`) turns into a `setHeader` per header. Every other answer gets the Audit-Id
 * set up front.
 */
function writesOwnAuditId(info: RequestInfo): boolean {
  return info.isResourceRequest && (info.verb === 'get' || info.verb === 'list');
}

function scopeOf(info: RequestInfo): string {
  if (info.name) return 'resource';
  return info.namespace ? 'namespace' : 'cluster';
}

/** Builds the per-request handler. Discovery and OpenAPI documents are built here, once. */
export function createHandler(options: HandlerOptions): RequestHandler {
  const { api, authenticator, authorizer, apiServing, health, metrics, logger, audit } = options;
  const discovery = new Discovery(api);
  const openapi = new OpenApi(api);
  const versions = new Set(servedVersions(api));
  const resources = new Set(api.kinds.map((k) => k.plural));
  const versionBody = JSON.stringify(SERVER_VERSION, null, 2);
  const logRequest = requestLogWriter(logger);
  // The in-flight gauge counts what the limits count: admitted requests that are not long-running.
  const flowControl = new FlowControl({ ...FLOW_CONTROL_DEFAULTS, ...options.flowControl, onAdmitted: (mutating) => metrics.started(mutating) });

  /** Non-resource endpoints answer GET and HEAD only. */
  function readOnly(req: IncomingMessage): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw errors.methodNotAllowed(req.method ?? '');
  }

  /** Serves the request; a promise only for what answers asynchronously (resources, /metrics). Throws StatusError. */
  function route(req: IncomingMessage, res: ServerResponse, info: RequestInfo, user: UserInfo, auditAnnotations: AuditAnnotations | undefined): Promise<void> | undefined {
    if (info.isResourceRequest) {
      if (info.apiGroup === api.group && versions.has(info.apiVersion)) return apiServing.handle(req, res, info, user, auditAnnotations);
      throw errors.pathNotFound();
    }
    const path = info.path;
    if (health.handles(path)) {
      readOnly(req);
      health.serve(req, res, path);
    } else if (discovery.handles(path)) {
      readOnly(req);
      discovery.serve(req, res, path);
    } else if (openapi.handles(path)) {
      readOnly(req);
      openapi.serve(req, res, path);
    } else if (path === '/version' || path === '/version/') {
      readOnly(req);
      res.statusCode = 200;
      res.setHeader('Content-Type', 'application/json');
      res.end(versionBody);
    } else if (path === '/metrics') {
      readOnly(req);
      return metrics.serve(req, res);
    } else {
      throw errors.pathNotFound();
    }
    return undefined;
  }

  async function handle(req: IncomingMessage, res: ServerResponse, start: bigint, auditId: string): Promise<void> {
    let info: RequestInfo | undefined;
    let user: UserInfo | undefined;
    let decision: AuthorizationDecision | undefined;
    let done: (() => void) | undefined;
    let clearDeadline: (() => void) | undefined;
    let closed = false;
    // Read now: under HTTP/2 the socket is a per-stream view that forgets the connection once the stream closes.
    const remote = req.socket.remoteAddress;
    // What admission adds for the audit event; kept only when there is an audit log to write it to.
    const auditAnnotations = audit ? new AuditAnnotations() : undefined;
    res.once('close', () => {
      closed = true;
      clearDeadline?.();
      done?.();
      const code = res.statusCode;
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      const served = info?.isResourceRequest && info.apiGroup === api.group && versions.has(info.apiVersion) && resources.has(info.resource) ? info : undefined;
      // One object literal of one shape (no spread per request); unserved requests get empty labels.
      const labels: RequestLabels = {
        verb: info ? (METRIC_VERBS[info.verb] ?? info.verb.toUpperCase()) : (req.method ?? '').toUpperCase(),
        group: served ? served.apiGroup : '',
        version: served ? served.apiVersion : '',
        resource: served ? served.resource : '',
        subresource: served ? served.subresource : '',
        scope: served ? scopeOf(served) : '',
      };
      metrics.observe(labels, code, seconds);
      const resource = info?.isResourceRequest ? info : undefined;
      audit?.record(req, { auditID: auditId, info, user, decision, code, seconds, remote, admissionAnnotations: auditAnnotations });
      logRequest({
        auditID: auditId,
        user: user?.name,
        verb: info?.verb ?? req.method,
        group: resource?.apiGroup,
        version: resource?.apiVersion,
        resource: resource?.resource,
        // Empty ones are left out.
        subresource: resource?.subresource || undefined,
        namespace: resource?.namespace || undefined,
        name: resource?.name || undefined,
        path: resource ? undefined : info?.path,
        code,
        latencyMs: Math.round(seconds * 1e6) / 1e3,
        aborted: res.writableFinished ? undefined : true,
        userAgent: req.headers['user-agent'],
        protocol: `HTTP/${req.httpVersion}`,
        remote,
      });
    });

    try {
      try {
        info = parseRequestInfo(req.method ?? 'GET', req.url ?? '/', auditId);
      } catch {
        throw errors.badRequest(`malformed request path: ${JSON.stringify(req.url)}`);
      }
      if (!writesOwnAuditId(info)) res.setHeader('Audit-Id', auditId);
      clearDeadline = flowControl.startDeadline(req, res, info, start);
      // Cached reviews answer synchronously: await only promises (each await is a trip through the microtask queue).
      const authenticated = authenticator.authenticate(req);
      const authn = authenticated instanceof Promise ? await authenticated : authenticated;
      if (authn.outcome === 'rejected') {
        logger.debug({ auditID: auditId, reason: authn.reason }, 'authentication rejected');
        throw errors.unauthorized();
      }
      user = authn.user;
      // Timed out (a 504 was sent) or the client left while authenticating: nothing left to serve or count.
      if (closed || res.writableEnded) return;
      done = flowControl.admit(info, user);
      const authorized = authorizer.authorize(user, info);
      decision = authorized instanceof Promise ? await authorized : authorized;
      if (!decision.allowed) throw forbiddenError(user, info, decision.reason);
      if (closed || res.writableEnded) return;
      const routed = route(req, res, info, user, auditAnnotations);
      if (routed) await routed;
    } catch (error) {
      if (error instanceof StatusError) {
        writeStatus(res, error.status, auditId);
      } else {
        logger.error({ auditID: auditId, err: error }, 'request failed');
        writeStatus(res, errors.internal('an unexpected error occurred while serving the request').status, auditId);
      }
    }
  }

  return (req, res) => {
    const start = process.hrtime.bigint();
    const header = req.headers['audit-id'];
    const auditId = typeof header === 'string' && header.length > 0 && header.length <= 128 ? header : randomUUID();
    void handle(req, res, start, auditId);
  };
}
