import { X509Certificate } from 'node:crypto';

const DAY_MS = 86_400_000;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

/** The certificates of a PEM bundle; the error says which block does not parse. */
export function parsePemBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new Error(`certificate ${index + 1} of ${blocks.length} does not parse: ${(error as Error).message}`);
    }
  });
}

export function daysLeft(certificate: X509Certificate, now = new Date()): number {
  return Math.floor((new Date(certificate.validTo).getTime() - now.getTime()) / DAY_MS);
}

/** `CN=wardle-apiserver.wardle.svc` */
export function subjectOf(certificate: X509Certificate): string {
  return certificate.subject.split('\n').join(', ');
}

/** The certificate of `anchors` that issued and signed `leaf`, if any. */
export function issuerAmong(leaf: X509Certificate, anchors: readonly X509Certificate[]): X509Certificate | undefined {
  return anchors.find((anchor) => leaf.checkIssued(anchor) && leaf.verify(anchor.publicKey));
}

/**
 * Why Go's TLS client (the aggregator) would refuse `leaf` as the server `host`, or undefined:
 * the SAN (Go has ignored the CN since 1.15), the extended key usage, the dates.
 */
export function servingProblems(leaf: X509Certificate, host: string, now = new Date()): string[] {
  const problems: string[] = [];
  if (leaf.checkHost(host, { subject: 'never' }) === undefined) {
    problems.push(`it does not carry the DNS name ${host} (its SANs: ${leaf.subjectAltName ?? 'none'}; Go ignores the CN)`);
  }
  const usages = leaf.keyUsage; // Node names the extended key usage OIDs `keyUsage`; undefined without the extension
  if (usages && !usages.includes(SERVER_AUTH) && !usages.includes(ANY_EXTENDED_KEY_USAGE)) {
    problems.push(`its extended key usage (${usages.join(', ')}) lacks serverAuth`);
  }
  if (new Date(leaf.validFrom) > now) problems.push(`it is not valid before ${new Date(leaf.validFrom).toISOString()}`);
  if (new Date(leaf.validTo) <= now) problems.push(`it expired on ${new Date(leaf.validTo).toISOString()}`);
  return problems;
}
