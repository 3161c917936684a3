/**
 * The one error catalogue: every failure the server answers is a `metav1.Status` built here,
 * with the reason, code and message wording of k8s.io/apimachinery/pkg/api/errors.
 */

/** metav1.StatusCause: its Go field Type is `reason` on the wire. */
export interface StatusCause {
  readonly reason?: string;
  readonly message?: string;
  readonly field?: string;
}

export interface StatusDetails {
  readonly name?: string;
  readonly group?: string;
  readonly kind?: string;
  readonly uid?: string;
  readonly causes?: readonly StatusCause[];
  readonly retryAfterSeconds?: number;
}

export interface Status {
  readonly kind: 'Status';
  readonly apiVersion: 'v1';
  readonly metadata: Record<string, never>;
  readonly status: 'Failure' | 'Success';
  readonly message: string;
  readonly reason: string;
  readonly details?: StatusDetails;
  readonly code: number;
}

/** An error that carries the Status to answer with. Throw it anywhere in request handling. */
export class StatusError extends Error {
  constructor(readonly status: Status) {
    super(status.message);
    this.name = 'StatusError';
  }
  get code(): number {
    return this.status.code;
  }
}

/** A group-qualified resource as errors name it: `flunders.wardle.example.com`. */
export interface GroupResource {
  readonly group: string;
  readonly resource: string;
}

function qualified(gr: GroupResource): string {
  return gr.group ? `${gr.resource}.${gr.group}` : gr.resource;
}

function failure(code: number, reason: string, message: string, details?: StatusDetails): StatusError {
  return new StatusError({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code });
}

export const errors = {
  badRequest: (message: string) => failure(400, 'BadRequest', message),
  unauthorized: (message = 'Unauthorized') => failure(401, 'Unauthorized', message),
  /** `User "alice" cannot list resource "flunders" in API group "wardle.example.com" in the namespace "ns"` + `: reason`. */
  forbidden: (gr: GroupResource, name: string, message: string) =>
    failure(403, 'Forbidden', message, { ...(name ? { name } : {}), group: gr.group, kind: gr.resource }),
  /** Admission refusal: `flunders.wardle.example.com "x" is forbidden: <reason>`. */
  forbiddenByAdmission: (gr: GroupResource, name: string, reason: string) =>
    failure(403, 'Forbidden', `${qualified(gr)} "${name}" is forbidden: ${reason}`, { name, group: gr.group, kind: gr.resource }),
  notFound: (gr: GroupResource, name: string) =>
    failure(404, 'NotFound', `${qualified(gr)} "${name}" not found`, { name, group: gr.group, kind: gr.resource }),
  pathNotFound: () => failure(404, 'NotFound', 'the server could not find the requested resource'),
  alreadyExists: (gr: GroupResource, name: string) =>
    failure(409, 'AlreadyExists', `${qualified(gr)} "${name}" already exists`, { name, group: gr.group, kind: gr.resource }),
  conflict: (gr: GroupResource, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again') =>
    failure(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(gr)} "${name}": ${why}`, { name, group: gr.group, kind: gr.resource }),
  /** 422 with one cause per field: `Flunder.wardle.example.com "x" is invalid: spec.referenceType: Unsupported value: …`. */
  invalid: (kind: string, group: string, name: string, causes: readonly StatusCause[]) =>
    failure(
      422,
      'Invalid',
      `${group ? `${kind}.${group}` : kind} "${name}" is invalid: ${causes.length === 1 ? `${causes[0].field}: ${causes[0].message}` : `[${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}]`}`,
      { name, group, kind, causes },
    ),
  methodNotAllowed: (method: string) =>
    failure(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${method})`),
  notAcceptable: (accepted: readonly string[]) =>
    failure(406, 'NotAcceptable', `only the following media types are accepted: ${accepted.join(', ')}`),
  unsupportedMediaType: (contentType: string, supported: readonly string[]) =>
    failure(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${supported.join(', ')}`, {
      causes: [{ reason: 'UnsupportedMediaType', message: contentType }],
    }),
  gone: (message: string) => failure(410, 'Expired', message),
  requestEntityTooLarge: (message = 'the request is too large') => failure(413, 'RequestEntityTooLarge', message),
  /**
   * A list or watch at a resourceVersion the store has not reached within its wait, as
   * storage.NewTooLargeResourceVersionError: `Timeout: Too large resource version: 12, current: 10`,
   * with the `ResourceVersionTooLarge` cause client-go's reflector looks for.
   */
  tooLargeResourceVersion: (requested: number, current: number) =>
    failure(504, 'Timeout', `Timeout: Too large resource version: ${requested}, current: ${current}`, {
      causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
      retryAfterSeconds: 1,
    }),
  /** The storage cannot be reached (nothing was written): 503, retry after `retryAfterSeconds` (the Retry-After header). */
  serviceUnavailable: (message: string, retryAfterSeconds = 1) => failure(503, 'ServiceUnavailable', message, { retryAfterSeconds }),
  /**
   * The storage did not answer a request that may have taken effect, as NewServerTimeout's
   * wording: `The create operation against flunders.wardle.example.com could not be completed
   * at this time, please try again.` Upstream answers it with 500; the code here is 504 (the
   * gateway, etcd, timed out), so that clients and load balancers see a timeout.
   */
  serverTimeout: (gr: GroupResource, operation: string, retryAfterSeconds = 2) =>
    failure(504, 'ServerTimeout', `The ${operation} operation against ${qualified(gr)} could not be completed at this time, please try again.`, {
      name: operation,
      group: gr.group,
      kind: gr.resource,
      retryAfterSeconds,
    }),
  internal: (message: string) => failure(500, 'InternalError', `Internal error occurred: ${message}`),
  /**
   * The store has no room for the write. kube-apiserver passes etcd's "etcdserver: mvcc: database
   * space exceeded" on as an error that is not a Status: 500, no reason, the message as it is.
   */
  storageQuotaExceeded: (message: string) => failure(500, '', message),
};
