/**
 * x509 client-certificate authentication (k8s.io/apiserver pkg/authentication/request/x509):
 * a client certificate chaining to the client CA with EKU clientAuth is the user CN in the
 * groups O. A certificate that does not verify is an error (401 unless a later authenticator
 * succeeds); a verified one with an empty CN is no opinion.
 */
import type { IncomingMessage } from 'node:http';
import type { ChainAuthenticator, ChainResult } from './authenticator';
import { ConnectionVerifier, type CertPool } from './cert-pool';

const NONE: ChainResult = { kind: 'none' };

export function createX509Authenticator(clientCa: () => CertPool | undefined, now: () => number = Date.now): ChainAuthenticator {
  const verifier = new ConnectionVerifier();
  return {
    method: 'x509',
    authenticate(req: IncomingMessage): ChainResult {
      const pool = clientCa();
      if (!pool) return NONE;
      const verdict = verifier.verify(req, pool, now());
      if (!verdict) return NONE;
      if (!verdict.ok) return { kind: 'error', error: `x509: verifying client certificate failed: ${verdict.error}` };
      if (!verdict.client.commonName) return NONE;
      return { kind: 'user', user: { name: verdict.client.commonName, groups: [...verdict.client.organizations], extra: {} } };
    },
  };
}
