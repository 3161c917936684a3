import { qualifiedNameProblems } from '../registry/metadata';

/**
 * The audit annotations admission adds to one request, as admission.Attributes.AddAnnotation
 * keeps them: a key is `<DNS subdomain prefix>/<name>` (a qualified name), and once set it keeps
 * its value (another value for it is refused). They reach the request's audit event beside
 * authorization's (audit.ts). Upstream's Request-level annotations (webhook patches) are not
 * kept: the audit log here records Metadata only.
 */
export class AuditAnnotations {
  private values: Map<string, string> | undefined;

  /** Adds one; why it was refused (the caller logs it, as upstream's plugins log it), or undefined. */
  add(key: string, value: string): string | undefined {
    if (key.split('/').length !== 2) {
      return "annotation key has invalid format, the right format is a DNS subdomain prefix and '/' and key name. (e.g. 'podsecuritypolicy.admission.k8s.io/admit-policy')";
    }
    const problems = qualifiedNameProblems(key);
    if (problems.length > 0) return `annotation key has invalid format ${problems.join(',')}. A qualified name like 'podsecuritypolicy.admission.k8s.io/admit-policy' is required.`;
    this.values ??= new Map();
    const old = this.values.get(key);
    if (old !== undefined && old !== value) return `admission annotations are not allowed to be overwritten, key:${JSON.stringify(key)}, old value: ${JSON.stringify(old)}, new value:${JSON.stringify(value)}`;
    this.values.set(key, value);
    return undefined;
  }

  entries(): readonly (readonly [string, string])[] {
    return this.values ? [...this.values] : [];
  }
}

/** Adds an audit annotation for `by` (a webhook, a policy); one the request refuses is logged, as upstream logs it. */
export function recordAuditAnnotation(
  annotations: AuditAnnotations | undefined,
  key: string,
  value: string,
  by: string,
  logger: { warn(fields: object, message: string): void } | undefined,
): void {
  const refused = annotations?.add(key, value);
  if (refused !== undefined) logger?.warn({ key, value, err: refused }, `failed to set admission audit annotation for ${by}`);
}
