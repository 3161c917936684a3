/**
 * Request-header authentication (k8s.io/apiserver pkg/authentication/request/headerrequest,
 * wrapped in the x509 verifier as `NewDynamicVerifierForRequestHeader`): the user named in
 * X-Remote-* headers, trusted only when the connection's client certificate chains to the
 * requestheader CA with EKU clientAuth and, if allowed-names is set, has one of those CNs. From
 * any other client the headers are ignored: a forged X-Remote-User never becomes the user.
 */
import type { IncomingMessage } from 'node:http';
import type { RequestHeaderConfig } from './auth-config';
import type { ChainAuthenticator, ChainResult } from './authenticator';
import { ConnectionVerifier } from './cert-pool';

const NONE: ChainResult = { kind: 'none' };

/**
 * Every header line as received, by lowercased name, one value per line. Read from `rawHeaders`:
 * node:http2's compatibility request has no `headersDistinct` (Node 20), and its `headers` join
 * repeated lines with ", " as node:http's do; HTTP/2 pseudo-headers (`:path`…) are skipped.
 */
function headerLines(req: IncomingMessage): NodeJS.Dict<string[]> {
  const lines = Object.create(null) as NodeJS.Dict<string[]>;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (name.startsWith(':')) continue;
    (lines[name] ??= []).push(raw[i + 1]);
  }
  return lines;
}

/** The first non-empty first value among `names` (upstream `headerValue`: `h.Get(name)` in order). */
function firstValue(headers: NodeJS.Dict<string[]>, names: readonly string[]): string {
  for (const name of names) {
    const value = headers[name]?.[0];
    if (value) return value;
  }
  return '';
}

/** Every non-empty value of every header in `names`, each header line one value (never comma-split). */
function allValues(headers: NodeJS.Dict<string[]>, names: readonly string[]): string[] {
  const values: string[] = [];
  for (const name of names) for (const value of headers[name] ?? []) if (value) values.push(value);
  return values;
}

/** Upstream `unescapeExtraKey`: URL path unescaping, the raw key when it is not valid escaping. */
function unescapeExtraKey(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return encoded;
  }
}

/** `X-Remote-Extra-<key>` headers: key lowercased then unescaped, one value per header line. */
function extraValues(headers: NodeJS.Dict<string[]>, prefixes: readonly string[]): Record<string, string[]> {
  const extra: Record<string, string[]> = {};
  if (prefixes.length === 0) return extra;
  for (const [name, values] of Object.entries(headers)) {
    for (const prefix of prefixes) {
      if (!name.startsWith(prefix) || name.length === prefix.length) continue;
      const key = unescapeExtraKey(name.slice(prefix.length));
      (extra[key] ??= []).push(...(values ?? []));
    }
  }
  return extra;
}

export function createRequestHeaderAuthenticator(config: () => RequestHeaderConfig | undefined, now: () => number = Date.now): ChainAuthenticator {
  const verifier = new ConnectionVerifier();
  return {
    method: 'request-header',
    authenticate(req: IncomingMessage): ChainResult {
      const rh = config();
      if (!rh) return NONE;
      const verdict = verifier.verify(req, rh.pool, now());
      if (!verdict) return NONE;
      if (!verdict.ok) return { kind: 'error', error: `request-header: ${verdict.error}` };
      if (rh.allowedNames.length > 0 && !rh.allowedNames.includes(verdict.client.commonName)) {
        return { kind: 'error', error: `request-header: x509: subject with cn=${verdict.client.commonName} is not in the allowed list` };
      }
      const headers = headerLines(req);
      const name = firstValue(headers, rh.usernameHeaders);
      if (!name) return NONE;
      const uid = firstValue(headers, rh.uidHeaders);
      return {
        kind: 'user',
        user: { name, ...(uid ? { uid } : {}), groups: allValues(headers, rh.groupHeaders), extra: extraValues(headers, rh.extraHeaderPrefixes) },
      };
    },
  };
}
