/**
 * The audit log, as kube-apiserver writes it with `--audit-log-path` and `--audit-policy-file`:
 * one `audit.k8s.io/v1` Event per request as a JSON line, at the level the first matching policy
 * rule gives (k8s.io/apiserver/pkg/audit/policy/checker.go), rotated by size as lumberjack does
 * for the Go servers.
 *
 * What this server writes, and what it leaves out:
 * - Only the Metadata level: never a request or response body (rules asking for `Request` or
 *   `RequestResponse` are logged at Metadata, with a warning at start), never a credential (the
 *   Authorization header and client certificates are not part of an Event).
 * - One event per request, at stage `ResponseComplete` (`ResponseStarted` for a failed
 *   authentication, as upstream's WithFailedAuthenticationAudit); the `RequestReceived` and
 *   long-running `ResponseStarted` events upstream adds are not written, `Panic` does not apply.
 * - No policy file, no events: kube-apiserver writes nothing to the log backend without one.
 *
 * Events are queued and written off the request path; a full queue drops events and a failing
 * write is logged once (until writes succeed again), never thrown at a request.
 */
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { basename, dirname, extname, join } from 'node:path';
import pino, { type Logger } from 'pino';
import { parseDocument } from 'yaml';
import type { AuditAnnotations } from './admission/audit-annotations';
import type { AuthorizationDecision, UserInfo } from './auth/types';
import type { RequestInfo } from './request-info';

export const AUDIT_LEVELS = ['None', 'Metadata', 'Request', 'RequestResponse'] as const;
export type AuditLevel = (typeof AUDIT_LEVELS)[number];
export const AUDIT_STAGES = ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'] as const;
export type AuditStage = (typeof AUDIT_STAGES)[number];

/** `audit.k8s.io/v1` GroupResources. */
export interface AuditGroupResources {
  readonly group: string;
  readonly resources: readonly string[];
  readonly resourceNames: readonly string[];
}

/** `audit.k8s.io/v1` PolicyRule: every non-empty list must match (an intersection). */
export interface AuditPolicyRule {
  readonly level: AuditLevel;
  readonly users: readonly string[];
  readonly userGroups: readonly string[];
  readonly verbs: readonly string[];
  readonly resources: readonly AuditGroupResources[];
  readonly namespaces: readonly string[];
  readonly nonResourceURLs: readonly string[];
  readonly omitStages: readonly AuditStage[];
}

/** `audit.k8s.io/v1` Policy, as read from `--audit-policy-file`. */
export interface AuditPolicy {
  readonly rules: readonly AuditPolicyRule[];
  readonly omitStages: readonly AuditStage[];
}

/** A policy and what a reader should be told about it at start (levels logged lower, fields ignored). */
export interface LoadedAuditPolicy {
  readonly policy: AuditPolicy;
  readonly warnings: readonly string[];
}

/** Thrown for a policy kube-apiserver would refuse; the message names the field and what is expected. */
export class AuditPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditPolicyError';
  }
}

const POLICY_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'rules', 'omitStages', 'omitManagedFields']);
const RULE_FIELDS = new Set(['level', 'users', 'userGroups', 'verbs', 'resources', 'namespaces', 'nonResourceURLs', 'omitStages', 'omitManagedFields']);
const GROUP_RESOURCES_FIELDS = new Set(['group', 'resources', 'resourceNames']);
/** apimachinery's IsDNS1123Subdomain. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new AuditPolicyError(`${field}: expected a list of strings, got ${JSON.stringify(value)}`);
  return value;
}

function stages(value: unknown, field: string): AuditStage[] {
  const list = stringList(value, field);
  list.forEach((stage, i) => {
    if (!(AUDIT_STAGES as readonly string[]).includes(stage)) throw new AuditPolicyError(`${field}[${i}]: Invalid value: "${stage}": allowed stages are ${AUDIT_STAGES.join(',')}`);
  });
  return list as AuditStage[];
}

function unknownFields(value: Record<string, unknown>, known: ReadonlySet<string>, field: string, kind: string, warnings: string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) warnings.push(`${field}${key} is not a field of ${kind}: ignored, as kube-apiserver ignores it`);
  }
}

function groupResources(value: unknown, field: string, warnings: string[]): AuditGroupResources {
  if (!isMapping(value)) throw new AuditPolicyError(`${field}: expected a mapping with group, resources and resourceNames, got ${JSON.stringify(value)}`);
  unknownFields(value, GROUP_RESOURCES_FIELDS, `${field}.`, 'GroupResources', warnings);
  const group = value.group ?? '';
  if (typeof group !== 'string') throw new AuditPolicyError(`${field}.group: expected a string, got ${JSON.stringify(group)}`);
  // The empty group is the core API group.
  if (group !== '' && (group.length > 253 || !DNS_SUBDOMAIN.test(group))) {
    throw new AuditPolicyError(`${field}.group: Invalid value: "${group}": an API group is a lowercase DNS subdomain, without a version (e.g. wardle.example.com)`);
  }
  const resources = stringList(value.resources, `${field}.resources`);
  const resourceNames = stringList(value.resourceNames, `${field}.resourceNames`);
  if (resourceNames.length > 0 && resources.length === 0) throw new AuditPolicyError(`${field}.resourceNames: Invalid value: using resourceNames requires at least one resource`);
  return { group, resources, resourceNames };
}

function policyRule(value: unknown, field: string, warnings: string[]): AuditPolicyRule {
  if (!isMapping(value)) throw new AuditPolicyError(`${field}: expected a mapping (a PolicyRule), got ${JSON.stringify(value)}`);
  unknownFields(value, RULE_FIELDS, `${field}.`, 'PolicyRule', warnings);
  const level = value.level;
  if (level === undefined || level === null || level === '') throw new AuditPolicyError(`${field}.level: Required value: one of ${AUDIT_LEVELS.join(', ')}`);
  if (typeof level !== 'string' || !(AUDIT_LEVELS as readonly string[]).includes(level)) {
    throw new AuditPolicyError(`${field}.level: Unsupported value: ${JSON.stringify(level)}: supported values: ${AUDIT_LEVELS.map((l) => `"${l}"`).join(', ')}`);
  }
  if (level === 'Request' || level === 'RequestResponse') {
    warnings.push(`${field}.level is ${level}: logged at Metadata, as this server never writes request or response bodies`);
  }
  if (!Array.isArray(value.resources ?? [])) throw new AuditPolicyError(`${field}.resources: expected a list of GroupResources, got ${JSON.stringify(value.resources)}`);
  const resources = ((value.resources ?? []) as unknown[]).map((gr, i) => groupResources(gr, `${field}.resources[${i}]`, warnings));
  const namespaces = stringList(value.namespaces, `${field}.namespaces`);
  const nonResourceURLs = stringList(value.nonResourceURLs, `${field}.nonResourceURLs`);
  nonResourceURLs.forEach((url, i) => {
    if (url === '*') return;
    if (!url.startsWith('/')) throw new AuditPolicyError(`${field}.nonResourceURLs[${i}]: Invalid value: "${url}": non-resource URL rules must begin with a '/' character`);
    if (url.slice(0, -1).includes('*')) throw new AuditPolicyError(`${field}.nonResourceURLs[${i}]: Invalid value: "${url}": non-resource URL wildcards '*' must be the final character of the rule`);
  });
  if (nonResourceURLs.length > 0 && (resources.length > 0 || namespaces.length > 0)) {
    throw new AuditPolicyError(`${field}.nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs`);
  }
  return {
    level: level as AuditLevel,
    users: stringList(value.users, `${field}.users`),
    userGroups: stringList(value.userGroups, `${field}.userGroups`),
    verbs: stringList(value.verbs, `${field}.verbs`),
    resources,
    namespaces,
    nonResourceURLs,
    omitStages: stages(value.omitStages, `${field}.omitStages`),
  };
}

/**
 * Reads an `audit.k8s.io/v1` Policy from YAML (or JSON) text, validated as kube-apiserver's
 * policy reader and validation do: a known level on every rule, at least one rule, valid stages,
 * `nonResourceURLs` starting with '/' and with '*' only last, not mixed with resources. Throws
 * AuditPolicyError naming the field.
 */
export function parseAuditPolicy(text: string): LoadedAuditPolicy {
  const document = parseDocument(text);
  if (document.errors.length > 0) throw new AuditPolicyError(`not valid YAML: ${document.errors[0].message.split('\n')[0]}`);
  const value: unknown = document.toJS();
  if (!isMapping(value)) throw new AuditPolicyError('expected a mapping with apiVersion: audit.k8s.io/v1, kind: Policy and rules');
  if (value.apiVersion !== 'audit.k8s.io/v1') throw new AuditPolicyError(`apiVersion is ${JSON.stringify(value.apiVersion ?? '')}: expected audit.k8s.io/v1`);
  if (value.kind !== 'Policy') throw new AuditPolicyError(`kind is ${JSON.stringify(value.kind ?? '')}: expected Policy`);
  const warnings: string[] = [];
  unknownFields(value, POLICY_FIELDS, '', 'Policy', warnings);
  if (value.rules !== undefined && value.rules !== null && !Array.isArray(value.rules)) throw new AuditPolicyError(`rules: expected a list of PolicyRules, got ${JSON.stringify(value.rules)}`);
  const rules = ((value.rules ?? []) as unknown[]).map((rule, i) => policyRule(rule, `rules[${i}]`, warnings));
  if (rules.length === 0) throw new AuditPolicyError('rules: the policy has no rules (kube-apiserver refuses a policy with 0 rules); add e.g. "- level: Metadata"');
  return { policy: { rules, omitStages: stages(value.omitStages, 'omitStages') }, warnings };
}

/** Reads and parses `--audit-policy-file`; the error names the file and the problem. */
export function loadAuditPolicyFile(path: string): LoadedAuditPolicy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new AuditPolicyError(`cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  return parseAuditPolicy(text);
}

/** What a policy rule is matched against: the request's authorizer attributes. */
export type AuditAttributes = Pick<RequestInfo, 'isResourceRequest' | 'path' | 'verb' | 'apiGroup' | 'namespace' | 'resource' | 'subresource' | 'name'>;

export interface AuditDecision {
  readonly level: AuditLevel;
  readonly omitStages: ReadonlySet<AuditStage>;
}

/** upstream pathMatches: `*`, exact, or a trailing `*` matching any path with that prefix. */
function pathMatches(path: string, spec: string): boolean {
  if (spec === '*' || spec === path) return true;
  return spec.endsWith('*') && path.startsWith(spec.replace(/\*+$/, ''));
}

function ruleMatchesResource(rule: AuditPolicyRule, attrs: AuditAttributes): boolean {
  if (!attrs.isResourceRequest) return false;
  // Cluster-scoped resources have the empty namespace, which a rule lists as "".
  if (rule.namespaces.length > 0 && !rule.namespaces.includes(attrs.namespace)) return false;
  if (rule.resources.length === 0) return true;
  const { apiGroup, resource, subresource, name } = attrs;
  const combined = subresource ? `${resource}/${subresource}` : resource;
  for (const gr of rule.resources) {
    if (gr.group !== apiGroup) continue;
    if (gr.resources.length === 0) return true;
    if (gr.resourceNames.length > 0 && !gr.resourceNames.includes(name)) continue;
    for (const res of gr.resources) {
      if (res === combined || res === '*') return true;
      if (subresource && res.startsWith('*/') && res.slice(2) === subresource) return true;
      if (res.endsWith('/*') && res.slice(0, -2) === resource) return true;
    }
  }
  return false;
}

function ruleMatches(rule: AuditPolicyRule, user: UserInfo | undefined, attrs: AuditAttributes): boolean {
  if (rule.users.length > 0 && (!user || !rule.users.includes(user.name))) return false;
  if (rule.userGroups.length > 0 && (!user || !user.groups.some((g) => rule.userGroups.includes(g)))) return false;
  if (rule.verbs.length > 0 && !rule.verbs.includes(attrs.verb)) return false;
  if (rule.namespaces.length > 0 || rule.resources.length > 0) return ruleMatchesResource(rule, attrs);
  if (rule.nonResourceURLs.length > 0) return !attrs.isResourceRequest && rule.nonResourceURLs.some((spec) => pathMatches(attrs.path, spec));
  return true;
}

/**
 * kube-apiserver's policy checker: the first matching rule gives the level, and the stages to
 * omit are the rule's together with the policy's; no rule matching means level None.
 */
export class AuditPolicyChecker {
  private readonly rules: readonly { readonly rule: AuditPolicyRule; readonly decision: AuditDecision }[];
  private readonly fallback: AuditDecision;

  constructor(policy: AuditPolicy) {
    this.rules = policy.rules.map((rule) => ({ rule, decision: { level: rule.level, omitStages: new Set([...policy.omitStages, ...rule.omitStages]) } }));
    this.fallback = { level: 'None', omitStages: new Set(policy.omitStages) };
  }

  /** `user` is undefined when authentication failed. */
  levelAndStages(user: UserInfo | undefined, attrs: AuditAttributes): AuditDecision {
    for (const { rule, decision } of this.rules) {
      if (ruleMatches(rule, user, attrs)) return decision;
    }
    return this.fallback;
  }
}

/** `--audit-log-*` and `--audit-policy-file`, validated. */
export interface AuditOptions {
  /** `--audit-log-path`: a file, or `-` for standard output. */
  readonly logPath?: string;
  /** `--audit-log-maxage`: days to keep rotated files, by the time in their name; 0 keeps them. */
  readonly maxAgeDays: number;
  /** `--audit-log-maxbackup`: rotated files to keep; 0 keeps them all. */
  readonly maxBackups: number;
  /** `--audit-log-maxsize`: megabytes (MiB) before the file is rotated; 0 means 100, as lumberjack. */
  readonly maxSizeMegabytes: number;
  /** `--audit-policy-file`, as read at start. */
  readonly policyFile?: string;
  readonly policy?: LoadedAuditPolicy;
}

/** What the handler knows of a request once its response is done. */
export interface AuditedRequest {
  readonly auditID: string;
  /** Undefined when the path could not be parsed. */
  readonly info: RequestInfo | undefined;
  /** Undefined until authentication succeeded. */
  readonly user: UserInfo | undefined;
  /** Undefined when authorization was not asked. */
  readonly decision: AuthorizationDecision | undefined;
  readonly code: number;
  /** From the request's arrival to its end. */
  readonly seconds: number;
  /** The connection's remote address, read when the request arrived. */
  readonly remote: string | undefined;
  /** What admission added (webhooks' and policies' audit annotations). */
  readonly admissionAnnotations?: AuditAnnotations;
}

/** A line-oriented destination that never blocks its caller. */
interface LineSink {
  write(line: string): void;
  close(): Promise<void>;
}

const MAX_USER_AGENT_LENGTH = 1024;
/** lumberjack's default when MaxSize is 0. */
const DEFAULT_MAX_SIZE_MEGABYTES = 100;
const MEGABYTE = 1024 * 1024;
/** Events waiting for the disk beyond this are dropped (upstream's batch buffer holds 10,000 events). */
const MAX_QUEUED_BYTES = 16 * MEGABYTE;

/** Wall-clock microseconds: Date.now()'s millisecond, with the microseconds within it from the monotonic clock. */
function nowMicros(): number {
  return Date.now() * 1000 + Number(process.hrtime.bigint() / 1000n % 1000n);
}

let cachedSecond = NaN;
let cachedSecondText = '';

/** metav1.MicroTime's JSON: RFC 3339 in UTC with six fractional digits. The date and time of day are formatted once per second. */
export function microTime(micros: number): string {
  const us = Math.round(micros);
  const second = Math.floor(us / 1e6);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedSecondText = new Date(second * 1000).toISOString().slice(0, 19);
  }
  return `${cachedSecondText}.${String(us - second * 1e6).padStart(6, '0')}Z`;
}

/** The last peer address and its text: most requests come from a few connections (kube-apiserver's). */
let lastPeer: string | undefined;
let lastPeerText: string | undefined;

function peerText(remote: string): string | undefined {
  if (remote !== lastPeer) {
    lastPeerText = ipText(remote);
    lastPeer = remote;
  }
  return lastPeerText;
}

/** Go's net.IP String(): an IPv4-mapped IPv6 address prints as IPv4. */
function ipText(text: string): string | undefined {
  const trimmed = text.trim();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(trimmed);
  if (mapped) return mapped[1];
  const kind = isIP(trimmed);
  if (kind === 4) return trimmed;
  return kind === 6 ? trimmed.toLowerCase() : undefined;
}

/** k8s.io/apimachinery utilnet.SourceIPs: X-Forwarded-For, then X-Real-Ip if not listed, then the peer unless it is the last one. */
export function sourceIPs(req: IncomingMessage, remote: string | undefined): string[] {
  const ips: string[] = [];
  const forwarded = req.headers['x-forwarded-for'];
  if (forwarded !== undefined) {
    for (const part of (Array.isArray(forwarded) ? forwarded.join(',') : forwarded).split(',')) {
      const ip = part.trim() === '' ? undefined : ipText(part);
      if (ip) ips.push(ip);
    }
  }
  const realIpHeader = req.headers['x-real-ip'];
  const realIp = typeof realIpHeader === 'string' && realIpHeader !== '' ? ipText(realIpHeader) : undefined;
  if (realIp && !ips.includes(realIp)) ips.push(realIp);
  const peer = remote === undefined ? undefined : peerText(remote);
  if (peer && ips[ips.length - 1] !== peer) ips.push(peer);
  return ips;
}

/** upstream getAuthMethods: which credentials a request that failed authentication presented (never their values). */
function authMethods(req: IncomingMessage): string {
  const methods: string[] = [];
  const authorization = (req.headers.authorization ?? '').trim();
  const [scheme, rest] = [authorization.split(' ')[0] ?? '', authorization.split(' ').slice(1)];
  if (/^basic$/i.test(scheme) && rest.length > 0) methods.push('basic');
  if (/^bearer$/i.test(scheme) && rest.length > 0) methods.push('bearer');
  try {
    if (new URL(req.url ?? '/', 'https://localhost').searchParams.get('access_token')?.trim()) methods.push('access_token');
  } catch {
    // An unparsable URL presented no access_token.
  }
  try {
    // Over HTTP/2 the stream's socket view may be gone once the stream closed: then x509 is not known.
    const socket = req.socket as unknown as { getPeerCertificate?: () => { raw?: Buffer } };
    if (socket?.getPeerCertificate?.()?.raw) methods.push('x509');
  } catch {
    // As above.
  }
  return methods.length > 0 ? `Authentication failed, attempted: ${methods.join(', ')}` : 'Authentication failed, no credentials provided';
}

function userJson(user: UserInfo | undefined): Record<string, unknown> {
  if (!user) return {};
  const extraKeys = Object.keys(user.extra).sort();
  return {
    username: user.name || undefined,
    uid: user.uid || undefined,
    groups: user.groups.length > 0 ? user.groups : undefined,
    extra: extraKeys.length > 0 ? Object.fromEntries(extraKeys.map((k) => [k, user.extra[k]])) : undefined,
  };
}

/**
 * The Event's JSON line, fields in the order of audit/v1 Event and empty ones left out as Go's
 * omitempty does. Nothing of the request's headers but the User-Agent and forwarding addresses.
 */
export function auditEventLine(req: IncomingMessage, done: AuditedRequest, stage: AuditStage, stageMicros: number): string {
  const { info, user } = done;
  const resource = info?.isResourceRequest ? info : undefined;
  const userAgentHeader = req.headers['user-agent'] ?? '';
  const userAgent = userAgentHeader.length > MAX_USER_AGENT_LENGTH ? `${userAgentHeader.slice(0, MAX_USER_AGENT_LENGTH)}...TRUNCATED` : userAgentHeader;
  const ips = sourceIPs(req, done.remote);
  const failedAuthentication = stage === 'ResponseStarted';
  const event = {
    kind: 'Event',
    apiVersion: 'audit.k8s.io/v1',
    level: 'Metadata',
    auditID: done.auditID,
    stage,
    requestURI: req.url ?? '',
    verb: info?.verb ?? (req.method ?? '').toLowerCase(),
    user: userJson(user),
    sourceIPs: ips.length > 0 ? ips : undefined,
    userAgent: userAgent || undefined,
    objectRef: resource
      ? {
          resource: resource.resource || undefined,
          namespace: resource.namespace || undefined,
          name: resource.name || undefined,
          apiGroup: resource.apiGroup || undefined,
          apiVersion: resource.apiVersion || undefined,
          subresource: resource.subresource || undefined,
        }
      : undefined,
    responseStatus: { metadata: {}, message: failedAuthentication ? authMethods(req) : undefined, code: done.code || undefined },
    requestReceivedTimestamp: microTime(stageMicros - Math.round(done.seconds * 1e6)),
    stageTimestamp: microTime(stageMicros),
    annotations: eventAnnotations(done),
  };
  return `${JSON.stringify(event)}\n`;
}

/**
 * The event's annotations: authorization's decision and reason (as upstream's WithAuthorization,
 * empty or not), then admission's; keys sorted, as Go writes a map.
 */
function eventAnnotations(done: AuditedRequest): Record<string, string> | undefined {
  const entries: (readonly [string, string])[] = [...(done.admissionAnnotations?.entries() ?? [])];
  if (done.decision) entries.push(['authorization.k8s.io/decision', done.decision.allowed ? 'allow' : 'forbid'], ['authorization.k8s.io/reason', done.decision.reason]);
  if (entries.length === 0) return undefined;
  return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** lumberjack's backup name: `<name>-<UTC time as 2006-01-02T15-04-05.000><ext>` beside the file. */
function backupName(path: string, ms: number): string {
  const ext = extname(path);
  const prefix = basename(path, ext);
  const stamp = new Date(ms).toISOString().slice(0, 23).replace(/:/g, '-');
  return join(dirname(path), `${prefix}-${stamp}${ext}`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Reports a failing operation once per run of failures, and when it works again. */
class FailureReport {
  private failing = false;

  constructor(
    private readonly logger: Logger,
    private readonly what: string,
  ) {}

  failed(error: unknown, fields: Record<string, unknown> = {}): void {
    if (this.failing) return;
    this.failing = true;
    this.logger.error({ ...fields, err: (error as Error)?.message ?? String(error) }, `${this.what} failed; further failures are not logged until it works again`);
  }

  succeeded(): void {
    if (!this.failing) return;
    this.failing = false;
    this.logger.info(`${this.what} works again`);
  }
}

export interface RotatingFileOptions {
  /** Rotate before a write would take the file past this. */
  readonly maxBytes: number;
  /** 0: keep every rotated file. */
  readonly maxBackups: number;
  /** 0: keep rotated files whatever their age. */
  readonly maxAgeDays: number;
  readonly logger: Logger;
  /** @default Date.now */
  readonly now?: () => number;
}

/**
 * An append-only file (mode 0600) written from a queue, off the caller's path, rotated by size as
 * lumberjack rotates the Go servers' audit log: before a write that would take the file past
 * `maxBytes` it is renamed to a backup named by the time, a new file is opened, and backups
 * beyond `maxBackups` or older than `maxAgeDays` are removed. A line is never split across files.
 */
export class RotatingFile implements LineSink {
  static async open(path: string, options: RotatingFileOptions): Promise<RotatingFile> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const handle = await open(path, 'a', 0o600);
    const { size } = await handle.stat();
    return new RotatingFile(path, options, handle, size);
  }

  /** Events dropped because the queue was full or their write failed. */
  dropped = 0;
  private queue: string[] = [];
  private queuedBytes = 0;
  private pumping: Promise<void> | undefined;
  private closed = false;
  private lastBackupMs = 0;
  private readonly writeFailures: FailureReport;
  private readonly queueFull: FailureReport;
  private readonly rotateFailures: FailureReport;
  private readonly now: () => number;

  private constructor(
    private readonly path: string,
    private readonly options: RotatingFileOptions,
    private handle: FileHandle | undefined,
    private size: number,
  ) {
    this.writeFailures = new FailureReport(options.logger, `writing the audit log ${path}`);
    this.queueFull = new FailureReport(options.logger, `queueing audit events for ${path} (the disk is slower than the requests; events are dropped)`);
    this.rotateFailures = new FailureReport(options.logger, `rotating the audit log ${path}`);
    this.now = options.now ?? Date.now;
  }

  write(line: string): void {
    if (this.closed) return;
    const bytes = Buffer.byteLength(line);
    if (this.queuedBytes + bytes > MAX_QUEUED_BYTES) {
      this.dropped++;
      this.queueFull.failed('queue full', { queuedBytes: this.queuedBytes });
      return;
    }
    this.queueFull.succeeded();
    this.queue.push(line);
    this.queuedBytes += bytes;
    this.pumping ??= this.pump().finally(() => (this.pumping = undefined));
  }

  /** Writes what is queued, then closes the file. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.pumping) await this.pumping;
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
  }

  private async pump(): Promise<void> {
    while (this.queue.length > 0) {
      // Rotate before a line that would take the file past the limit: a line never spans two files.
      if (this.size > 0 && this.size + Buffer.byteLength(this.queue[0]) > this.options.maxBytes) await this.rotate();
      // Then the lines that fit (at least one: a line larger than the limit is written alone).
      let bytes = 0;
      let count = 0;
      while (count < this.queue.length) {
        const next = Buffer.byteLength(this.queue[count]);
        if (count > 0 && this.size + bytes + next > this.options.maxBytes) break;
        bytes += next;
        count++;
      }
      const lines = this.queue.splice(0, count);
      this.queuedBytes -= bytes;
      try {
        this.handle ??= await open(this.path, 'a', 0o600);
        const chunk = Buffer.from(lines.join(''));
        let written = 0;
        while (written < chunk.length) written += (await this.handle.write(chunk, written)).bytesWritten;
        this.size += chunk.length;
        this.writeFailures.succeeded();
      } catch (error) {
        this.dropped += lines.length;
        this.writeFailures.failed(error, { path: this.path });
      }
    }
  }

  /** Renames the file to its backup name and starts a new one; on failure the file goes on growing (and the failure is logged once). */
  private async rotate(): Promise<void> {
    try {
      const handle = this.handle;
      this.handle = undefined;
      await handle?.close();
      const ms = Math.max(this.now(), this.lastBackupMs + 1);
      this.lastBackupMs = ms;
      await rename(this.path, backupName(this.path, ms));
      this.size = 0;
      await this.removeOldBackups();
      this.rotateFailures.succeeded();
    } catch (error) {
      this.rotateFailures.failed(error, { path: this.path });
    }
  }

  private async removeOldBackups(): Promise<void> {
    const { maxBackups, maxAgeDays } = this.options;
    if (maxBackups === 0 && maxAgeDays === 0) return;
    const ext = extname(this.path);
    const pattern = new RegExp(`^${escapeRegExp(basename(this.path, ext))}-(\\d{4}-\\d{2}-\\d{2})T(\\d{2})-(\\d{2})-(\\d{2}\\.\\d{3})${escapeRegExp(ext)}$`);
    const backups = (await readdir(dirname(this.path)))
      .map((name) => ({ name, match: pattern.exec(name) }))
      .filter((b) => b.match)
      .map((b) => ({ name: b.name, ms: Date.parse(`${b.match![1]}T${b.match![2]}:${b.match![3]}:${b.match![4]}Z`) }))
      .sort((a, b) => b.ms - a.ms);
    const oldest = this.now() - maxAgeDays * 24 * 3600 * 1000;
    for (const [i, backup] of backups.entries()) {
      if ((maxBackups > 0 && i >= maxBackups) || (maxAgeDays > 0 && backup.ms < oldest)) await unlink(join(dirname(this.path), backup.name));
    }
  }
}

/** Standard output through the logger's own destination, so that audit and log lines never interleave mid-line. */
function loggerDestination(logger: Logger): LineSink {
  const stream = (logger as unknown as Record<symbol, { write(text: string): unknown }>)[pino.symbols.streamSym];
  return {
    write: (line) => void stream.write(line),
    close: async () => undefined,
  };
}

/**
 * The audit backend: the policy decides, the sink writes. `record` is called once per request when
 * its response is done and never throws.
 */
export class AuditLog {
  /**
   * The audit log the options ask for, or undefined when nothing is to be written: no log path,
   * or (as kube-apiserver) a log path without a policy file. Rejects when the file cannot be opened.
   */
  static async open(options: AuditOptions, logger: Logger): Promise<AuditLog | undefined> {
    for (const warning of options.policy?.warnings ?? []) logger.warn({ policyFile: options.policyFile }, `--audit-policy-file: ${warning}`);
    if (!options.logPath) {
      if (options.policy) logger.info({ policyFile: options.policyFile }, 'audit policy read, but no --audit-log-path: no audit events are written');
      return undefined;
    }
    if (!options.policy) {
      logger.warn({ path: options.logPath }, '--audit-log-path is set without --audit-policy-file: as kube-apiserver, no audit events are written (give a policy, e.g. one rule "- level: Metadata")');
      return undefined;
    }
    let sink: LineSink;
    if (options.logPath === '-') {
      sink = loggerDestination(logger);
    } else {
      try {
        sink = await RotatingFile.open(options.logPath, {
          maxBytes: (options.maxSizeMegabytes || DEFAULT_MAX_SIZE_MEGABYTES) * MEGABYTE,
          maxBackups: options.maxBackups,
          maxAgeDays: options.maxAgeDays,
          logger,
        });
      } catch (error) {
        throw new Error(`--audit-log-path="${options.logPath}" cannot be opened for appending: ${(error as Error)?.message ?? String(error)}`);
      }
    }
    logger.info({ path: options.logPath, policyFile: options.policyFile, rules: options.policy.policy.rules.length }, 'writing the audit log');
    return new AuditLog(new AuditPolicyChecker(options.policy.policy), sink, logger);
  }

  private readonly failures: FailureReport;

  constructor(
    private readonly checker: AuditPolicyChecker,
    private readonly sink: LineSink,
    logger: Logger,
  ) {
    this.failures = new FailureReport(logger, 'building an audit event');
  }

  record(req: IncomingMessage, done: AuditedRequest): void {
    try {
      const attrs: AuditAttributes = done.info ?? { isResourceRequest: false, path: (req.url ?? '').split('?')[0], verb: (req.method ?? '').toLowerCase(), apiGroup: '', namespace: '', resource: '', subresource: '', name: '' };
      const { level, omitStages } = this.checker.levelAndStages(done.user, attrs);
      if (level === 'None') return;
      // A failed authentication ends at ResponseStarted upstream (WithFailedAuthenticationAudit).
      const stage: AuditStage = done.user === undefined && done.code === 401 ? 'ResponseStarted' : 'ResponseComplete';
      if (omitStages.has(stage)) return;
      this.sink.write(auditEventLine(req, done, stage, nowMicros()));
    } catch (error) {
      this.failures.failed(error, { auditID: done.auditID });
    }
  }

  /** Writes what is queued and closes the file. */
  close(): Promise<void> {
    return this.sink.close();
  }
}
