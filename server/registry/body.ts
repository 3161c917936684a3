import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as http2Constants, type ServerHttp2Stream } from 'node:http2';
import { parse as parseYaml } from 'yaml';
import { mediaTypeOf, parseContentType } from '../content';
import { StatusError, errors } from '../status';
import { isObject } from './rules';

/**
 * Request bodies: read with kube-apiserver's 3 MiB limit (413 beyond it) and decoded as JSON
 * or YAML (400 when malformed, 415 for other media types).
 *
 * Every body also counts against one budget of bytes in flight for the whole process
 * (`--max-request-body-bytes-inflight`; kube-apiserver has no such flag: its max-in-flight counts
 * requests, which bounds memory only when bodies are small). A body is counted from the moment it
 * is read until its response ends (the decoded object lives that long too); one that does not fit
 * is refused with 429 TooManyRequests and Retry-After before any of it is buffered, as the Go
 * servers refuse a request over max-in-flight. 300 concurrent 3 MiB creates would otherwise hold
 * ~900 MiB of bodies and several times that decoded, in a pod limited to 256 MiB.
 */

/** `maxRequestBodyBytes` of k8s.io/apiserver: 3 MiB. */
export const MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024;

/**
 * The default budget: two bodies of the largest size at once. A decoded body takes several times
 * its bytes while it is handled (the text, the parsed object, its pruned and defaulted copy), so
 * this keeps bodies to a few tens of MiB of a 256 MiB pod; objects of a few KiB fit by thousands.
 * The flood test (test/flood.test.ts) measured 16 MiB at ~190 MiB peak RSS, 8 MiB at ~155 MiB.
 */
export const DEFAULT_MAX_REQUEST_BODY_BYTES_INFLIGHT = 8 * 1024 * 1024;

/** The flag that sets the budget, as the 429 names it. */
const BUDGET_FLAG = '--max-request-body-bytes-inflight';
/** What the 429 tells clients to wait (client-go retries after Retry-After). */
const RETRY_AFTER_SECONDS = 1;

/** Bytes of request bodies being read or handled, against a limit (0: no limit). */
export class RequestBodyBudget {
  private used = 0;

  constructor(readonly limitBytes: number) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes < 0) throw new Error(`request body budget ${limitBytes} is not a non-negative integer`);
  }

  /** Bytes counted now. */
  inFlightBytes(): number {
    return this.used;
  }

  /** Counts `bytes` if they fit; false (nothing counted) if they do not. */
  tryReserve(bytes: number): boolean {
    if (this.limitBytes > 0 && this.used + bytes > this.limitBytes) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

let budget = new RequestBodyBudget(DEFAULT_MAX_REQUEST_BODY_BYTES_INFLIGHT);

/** Sets the process-wide budget (`--max-request-body-bytes-inflight`; 0: no limit). Bodies counted before keep their count. */
export function setRequestBodyBudget(limitBytes: number): void {
  budget = new RequestBodyBudget(limitBytes);
}

/** The process-wide budget, for /metrics and tests. */
export function requestBodyBudget(): RequestBodyBudget {
  return budget;
}

function overBudget(req: IncomingMessage, res: ServerResponse, bytes: number, declared: boolean): Error {
  refuseRest(req, res);
  const size = declared ? `its body of ${bytes} bytes` : 'its body';
  return new StatusError({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: `Too many requests: request bodies in flight would pass the limit of ${budget.limitBytes} bytes (${BUDGET_FLAG}) with ${size}, please try again later`,
    reason: 'TooManyRequests',
    details: { retryAfterSeconds: RETRY_AFTER_SECONDS },
    code: 429,
  });
}

/**
 * A body that will not be read: over HTTP/1.1 the connection is not reused (Node reads the rest
 * and drops it); over HTTP/2 the stream is reset with NO_ERROR once the answer is sent, which
 * tells the client to stop sending (RFC 9113 §8.1, as Go's server does) instead of streaming
 * megabytes that would only be decrypted and dropped.
 */
function refuseRest(req: IncomingMessage, res: ServerResponse): void {
  const stream = (req as unknown as { stream?: ServerHttp2Stream }).stream;
  if (stream === undefined) {
    if (!res.headersSent) res.setHeader('Connection', 'close');
    return;
  }
  res.once('finish', () => {
    if (!stream.closed && !stream.destroyed) stream.close(http2Constants.NGHTTP2_NO_ERROR);
  });
}

function tooLarge(req: IncomingMessage, res: ServerResponse, limit: number): Error {
  refuseRest(req, res);
  return errors.requestEntityTooLarge(`Request entity too large: limit is ${limit}`);
}

/**
 * Reads the whole body; 413 RequestEntityTooLarge beyond `limit` bytes, 429 TooManyRequests when
 * it does not fit the budget of bodies in flight, without buffering more in either case. The
 * bytes stay counted until the response ends.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, limit = MAX_REQUEST_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  const known = req.headers['content-length'] !== undefined && Number.isFinite(declared);
  if (known && declared > limit) {
    req.resume();
    return Promise.reject(tooLarge(req, res, limit));
  }
  const owner = budget;
  let counted = 0;
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    owner.release(counted);
  };
  const count = (bytes: number): boolean => {
    if (released || !owner.tryReserve(bytes)) return false;
    counted += bytes;
    return true;
  };
  res.once('close', release);
  res.once('finish', release);
  if (known && !count(declared)) {
    release();
    req.resume();
    return Promise.reject(overBudget(req, res, declared, true));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    const fail = (error: Error): void => {
      failed = true;
      chunks.length = 0;
      release();
      reject(error);
    };
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) return fail(tooLarge(req, res, limit));
      // Without a Content-Length, each chunk is counted as it arrives; beyond the declared length, the rest.
      const uncounted = size - counted;
      if (uncounted > 0 && !count(uncounted)) return fail(overBudget(req, res, size, false));
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks, size));
    });
    req.on('error', (error) => {
      if (!failed) fail(error);
    });
  });
}

/**
 * The largest YAML body decoded (JSON bodies have only the 3 MiB limit). The YAML parser takes
 * ~1.4 s per MiB on the server's one thread (JSON.parse: ~10 ms), so a 3 MiB YAML body would stall
 * every other request for seconds; kubectl, client-go, Helm, Flux and Argo CD send JSON.
 */
export const MAX_YAML_BODY_BYTES = 256 * 1024;

/** 413 for a YAML body over MAX_YAML_BODY_BYTES, before it is parsed. */
export function checkYamlBodySize(body: Buffer): void {
  if (body.length > MAX_YAML_BODY_BYTES) {
    throw errors.requestEntityTooLarge(`Request entity too large: a YAML body is limited to ${MAX_YAML_BODY_BYTES} bytes (this one has ${body.length}): send it as JSON`);
  }
}

/** The media types create and update accept. */
const OBJECT_BODY_TYPES = ['application/json', 'application/yaml'];

/** Parses JSON or YAML text into a value; 400 BadRequest naming the problem when malformed. */
export function parseBody(body: Buffer, mediaType: string): unknown {
  if (mediaType === 'application/yaml') checkYamlBodySize(body);
  const text = body.toString('utf8');
  try {
    if (mediaType === 'application/yaml') return parseYaml(text, { schema: 'core', merge: false, maxAliasCount: 100 });
    return JSON.parse(text);
  } catch (error) {
    const kind = mediaType === 'application/yaml' ? 'YAML' : 'JSON';
    throw errors.badRequest(`the body of the request could not be decoded as ${kind}: ${(error as Error).message}`);
  }
}

/**
 * Reads and decodes the object of a create or update: a JSON (default) or YAML object.
 * 415 for another Content-Type, 400 for a body that is not one object.
 */
export async function readObject(req: IncomingMessage, res: ServerResponse): Promise<Record<string, unknown>> {
  const contentType = parseContentType(req.headers['content-type']);
  const mediaType = contentType ? mediaTypeOf(contentType) : 'application/json';
  if (!OBJECT_BODY_TYPES.includes(mediaType)) throw errors.unsupportedMediaType(req.headers['content-type'] ?? '', OBJECT_BODY_TYPES);
  const body = await readBody(req, res);
  if (body.length === 0) throw errors.badRequest('the body of the request is empty: an object was expected');
  const value = parseBody(body, mediaType);
  if (!isObject(value)) {
    throw errors.badRequest(`the body of the request must be a JSON object, not ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
  }
  return value;
}
