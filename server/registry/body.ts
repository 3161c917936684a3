import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { mediaTypeOf, parseContentType } from '../content';
import { errors } from '../status';
import { isObject } from './rules';

/**
 * Request bodies: read with kube-apiserver's 3 MiB limit (413 beyond it) and decoded as JSON
 * or YAML (400 when malformed, 415 for other media types).
 */

/** `maxRequestBodyBytes` of k8s.io/apiserver: 3 MiB. */
const MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024;

function tooLarge(req: IncomingMessage, res: ServerResponse, limit: number): Error {
  // The rest of the body is discarded; an HTTP/1.1 connection is not reused for it (HTTP/2 has no
  // connection header: the stream's remaining data is read and dropped).
  if (!res.headersSent && req.httpVersionMajor === 1) res.setHeader('Connection', 'close');
  return errors.requestEntityTooLarge(`Request entity too large: limit is ${limit}`);
}

/** Reads the whole body; 413 RequestEntityTooLarge beyond `limit` bytes, without buffering more. */
export function readBody(req: IncomingMessage, res: ServerResponse, limit = MAX_REQUEST_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(tooLarge(req, res, limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(tooLarge(req, res, limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks, size));
    });
    req.on('error', (error) => {
      if (!failed) reject(error);
      failed = true;
    });
  });
}

/** The media types create and update accept. */
const OBJECT_BODY_TYPES = ['application/json', 'application/yaml'];

/** Parses JSON or YAML text into a value; 400 BadRequest naming the problem when malformed. */
export function parseBody(body: Buffer, mediaType: string): unknown {
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
