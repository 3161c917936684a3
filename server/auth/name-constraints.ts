/**
 * Name constraints on a certificate's SANs, as crypto/x509's verify.go checks them below a
 * constrained CA (DNS, email, URI and IP subtrees; at most MAX_CONSTRAINT_COMPARISONS comparisons).
 */
import { isIP } from 'node:net';
import { domainToReverseLabels, parseMailbox, type CertificateFacts, type Mailbox } from './x509-facts';

/** crypto/x509's default `MaxConstraintComparisions`. */
const MAX_CONSTRAINT_COMPARISONS = 250_000;

const equalFold = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** Go's matchDomainConstraint: a leading "." needs at least one more label; labels compared ASCII case-insensitively. */
function matchDomainConstraint(domain: string, constraint: string): boolean {
  if (constraint === '') return true;
  const domainLabels = domainToReverseLabels(domain);
  if (!domainLabels) throw new Error(`x509: internal error: cannot parse domain ${JSON.stringify(domain)}`);
  const mustHaveSubdomains = constraint.startsWith('.');
  const constraintLabels = domainToReverseLabels(mustHaveSubdomains ? constraint.slice(1) : constraint);
  if (!constraintLabels) throw new Error(`x509: internal error: cannot parse domain ${JSON.stringify(constraint)}`);
  if (domainLabels.length < constraintLabels.length || (mustHaveSubdomains && domainLabels.length === constraintLabels.length)) return false;
  return constraintLabels.every((label, i) => equalFold(label, domainLabels[i]));
}

function matchEmailConstraint(mailbox: Mailbox, constraint: string): boolean {
  if (constraint.includes('@')) {
    const wanted = parseMailbox(constraint);
    if (!wanted) throw new Error(`x509: internal error: cannot parse constraint ${JSON.stringify(constraint)}`);
    return mailbox.local === wanted.local && equalFold(mailbox.domain, wanted.domain);
  }
  return matchDomainConstraint(mailbox.domain, constraint);
}

function matchUriConstraint(uri: URL, constraint: string): boolean {
  const host = uri.hostname;
  if (host === '') throw new Error(`URI with empty host (${JSON.stringify(uri.href)}) cannot be matched against constraints`);
  if ((host.startsWith('[') && host.endsWith(']')) || isIP(host) !== 0) throw new Error(`URI with IP (${JSON.stringify(uri.href)}) cannot be matched against constraints`);
  return matchDomainConstraint(host, constraint);
}

function matchIpConstraint(ip: Buffer, constraint: { ip: Buffer; mask: Buffer }): boolean {
  if (ip.length !== constraint.ip.length) return false;
  for (let i = 0; i < ip.length; i++) if ((ip[i] & constraint.mask[i]) !== (constraint.ip[i] & constraint.mask[i])) return false;
  return true;
}

function formatIp(ip: Buffer): string {
  if (ip.length === 4) return [...ip].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(ip.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** Go's checkNameConstraints: excluded first, then at least one permitted of that kind when there are any. */
function checkNameConstraint<N, C>(
  comparisons: { count: number },
  nameType: string,
  name: string,
  parsed: N,
  match: (parsed: N, constraint: C) => boolean,
  permitted: readonly C[],
  excluded: readonly C[],
  show: (constraint: C) => string,
): string | undefined {
  const notAuthorized = 'x509: a root or intermediate certificate is not authorized to sign for this name: ';
  comparisons.count += excluded.length + permitted.length;
  if (comparisons.count > MAX_CONSTRAINT_COMPARISONS) return 'x509: too many name constraint comparisons';
  try {
    for (const constraint of excluded) {
      if (match(parsed, constraint)) return `${notAuthorized}${nameType} ${JSON.stringify(name)} is excluded by constraint ${JSON.stringify(show(constraint))}`;
    }
    if (permitted.length > 0 && !permitted.some((constraint) => match(parsed, constraint))) {
      return `${notAuthorized}${nameType} ${JSON.stringify(name)} is not permitted by any constraint`;
    }
  } catch (error) {
    return `${notAuthorized}${(error as Error).message}`;
  }
  return undefined;
}

/** The SANs of every certificate below the constrained CA `c` (Go: every certificate of the chain so far that has a SAN extension). */
export function checkNameConstraints(c: CertificateFacts, chain: readonly CertificateFacts[]): string | undefined {
  const { permitted, excluded } = c.nameConstraints!;
  const comparisons = { count: 0 };
  const same = (s: string) => s;
  for (const below of chain) {
    for (const name of below.san?.names ?? []) {
      let error: string | undefined;
      if (name.kind === 'email') {
        const mailbox = parseMailbox(name.value);
        if (!mailbox) return `x509: cannot parse rfc822Name ${JSON.stringify(name.value)}`;
        error = checkNameConstraint(comparisons, 'email address', name.value, mailbox, matchEmailConstraint, permitted.email, excluded.email, same);
      } else if (name.kind === 'dns') {
        if (!domainToReverseLabels(name.value)) return `x509: cannot parse dnsName ${JSON.stringify(name.value)}`;
        error = checkNameConstraint(comparisons, 'DNS name', name.value, name.value, matchDomainConstraint, permitted.dns, excluded.dns, same);
      } else if (name.kind === 'uri') {
        let uri: URL;
        try {
          uri = new URL(name.value);
        } catch {
          return `x509: internal error: URI SAN ${JSON.stringify(name.value)} failed to parse`;
        }
        error = checkNameConstraint(comparisons, 'URI', name.value, uri, matchUriConstraint, permitted.uri, excluded.uri, same);
      } else if (name.kind === 'ip') {
        const show = (net: { ip: Buffer; mask: Buffer }) => `${formatIp(net.ip)}/${[...net.mask].reduce((bits, b) => bits + b.toString(2).replace(/0/g, '').length, 0)}`;
        error = checkNameConstraint(comparisons, 'IP address', formatIp(name.value), name.value, matchIpConstraint, permitted.ip, excluded.ip, show);
      }
      if (error) return error;
    }
  }
  return undefined;
}

