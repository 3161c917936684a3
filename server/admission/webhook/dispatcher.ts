/**
 * The MutatingAdmissionWebhook and ValidatingAdmissionWebhook plugins, as
 * k8s.io/apiserver/pkg/admission/plugin/webhook (generic.Webhook.ShouldCallHook, the mutating and
 * validating dispatchers): for each write, the webhooks whose rules match (matchPolicy Equivalent
 * also matching the kind's other served versions, the object then converted to that version),
 * whose namespaceSelector, objectSelector and matchConditions hold, are sent an
 * `admission.k8s.io/v1` AdmissionReview. Mutating webhooks run in order (their JSON patches
 * applied, pruned, defaulted and validated again, reinvoked once under `reinvocationPolicy:
 * IfNeeded`); validating webhooks run in parallel after validation. Refusals, call failures
 * (failurePolicy), dry-run refusals (sideEffects) and warnings are worded and surfaced as upstream.
 *
 * Not done: matchConditions have no `authorizer` variable; audit annotations are not recorded;
 * the in-tree plugins are not reinvoked after a webhook's change (only webhooks are).
 */
import { randomUUID } from 'node:crypto';
import { applyPatch, type Operation } from 'fast-json-patch';
import { CEL_PER_CALL_COST_LIMIT, CelMeter, isCelError, type CompiledCel } from '../../../apis/cel';
import type { ApiGroupDefinition } from '../../../apis/types';
import { StatusError, errors, type Status } from '../../status';
import { compileVersionCel, validateCelRules, type CelValidator } from '../../registry/cel';
import { KindCodec } from '../../registry/codec';
import { pruneObjectMeta, validateObjectMeta } from '../../registry/metadata';
import type { ApiRules, KubeObject } from '../../registry/rules';
import { pruneAndDefault, validateAgainstSchema } from '../../registry/schema';
import type { AdmissionAttributes, AdmissionOperation, AdmissionPlugin } from '../types';
import { clusterServiceResolver, callWebhook, WebhookCallError, type ServiceResolver } from './client';
import { recordAuditAnnotation } from '../audit-annotations';
import { jsonTypeName } from '../../registry/apply';
import type { CompiledWebhook, LabelMatcher, LabelSelector, Labels, RuleWithOperations } from './configuration';
import type { NamespaceLabels, WarnLogger, WebhookSource } from './source';

export interface WebhookAdmissionOptions {
  readonly api: ApiGroupDefinition;
  /** The kinds' conversion and defaulting rules (e.g. wardle's): conversion for Equivalent matches, defaulting after a patch. @default - the definition alone */
  readonly rules?: ApiRules;
  readonly mutating: WebhookSource;
  readonly validating: WebhookSource;
  readonly namespaces: NamespaceLabels;
  /** Where `service` references are dialled. @default `<name>.<namespace>.svc:<port>` */
  readonly resolveService?: ServiceResolver;
  /** How long a write waits for the first lists (upstream's WaitForReady: 10 s) before 403 `not yet ready to handle request`. @default 10000 */
  readonly readyTimeoutMs?: number;
  readonly logger?: WarnLogger;
}

/** The kind, resource and version a webhook is called with. */
interface Invocation {
  readonly webhook: CompiledWebhook;
  readonly version: string;
}

/** One kind's codec and each served version's compiled x-kubernetes-validations. */
interface KindEntry {
  readonly codec: KindCodec;
  readonly cel: ReadonlyMap<string, CelValidator | undefined>;
}

const SERVED_OPERATIONS: readonly AdmissionOperation[] = ['CREATE', 'UPDATE', 'DELETE'];

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === (b as unknown[]).length && a.every((v, i) => jsonEqual(v, (b as unknown[])[i]));
  const ak = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const bk = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return ak.length === bk.length && ak.every((k) => jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Upstream's NewInternalError: `Internal error occurred: <message>`, the message also its cause. */
export function internalError(message: string): StatusError {
  const base = errors.internal(message).status;
  return new StatusError({ ...base, details: { causes: [{ message }] } });
}

/** The name admission errors quote: the name, else the generateName, else `Unknown` (admission.extractResourceName). */
export function admissionName(attributes: AdmissionAttributes): string {
  if (attributes.name) return attributes.name;
  const metadata = ((attributes.object ?? attributes.oldObject)?.metadata ?? {}) as { name?: unknown; generateName?: unknown };
  if (typeof metadata.name === 'string' && metadata.name) return metadata.name;
  if (typeof metadata.generateName === 'string' && metadata.generateName) return metadata.generateName;
  return 'Unknown';
}

export function labelsOf(object: Readonly<Record<string, unknown>> | undefined): Labels | undefined {
  if (!object) return undefined;
  const labels = (object.metadata as { labels?: unknown } | undefined)?.labels;
  return typeof labels === 'object' && labels !== null ? (labels as Labels) : {};
}

/** rules.Matcher: operation, group, version, resource (with subresource) and scope. */
export function ruleMatches(rule: RuleWithOperations, attributes: AdmissionAttributes, version: string): boolean {
  const any = (values: readonly string[] | undefined, value: string) => (values ?? []).some((v) => v === '*' || v === value);
  if (!any(rule.operations, attributes.operation)) return false;
  if (!any(rule.apiGroups, attributes.group)) return false;
  if (!any(rule.apiVersions, version)) return false;
  const resourceMatches = (rule.resources ?? []).some((entry) => {
    const slash = entry.indexOf('/');
    const [resource, subresource] = slash < 0 ? [entry, ''] : [entry.slice(0, slash), entry.slice(slash + 1)];
    return (resource === '*' || resource === attributes.resource) && (subresource === '*' || subresource === attributes.subresource);
  });
  if (!resourceMatches) return false;
  switch (rule.scope ?? '*') {
    case 'Cluster':
      return attributes.namespace === '';
    case 'Namespaced':
      return attributes.namespace !== '';
    default:
      return true;
  }
}

/** A JSON value as CEL input: integers as int, objects as maps. */
export function celInput(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number') return Number.isInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map(celInput);
  if (typeof value === 'object') return new Map(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, celInput(v)]));
  return value;
}

/** Everything but metadata and status: what bumps `generation`. */
function specOf(object: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const { metadata: _m, apiVersion: _a, kind: _k, status: _s, ...rest } = object;
  return rest;
}

/**
 * An update whose spec a webhook changed gets the generation the store would have given it
 * (upstream's PrepareForUpdate runs after mutation; here the store ran first).
 */
function bumpGenerationOnSpecChange(patched: Record<string, unknown>, before: Readonly<Record<string, unknown>>, old: Readonly<Record<string, unknown>> | undefined): void {
  if (!old || jsonEqual(specOf(patched), specOf(before))) return;
  const meta = patched.metadata as Record<string, unknown>;
  const oldGeneration = (old.metadata as Record<string, unknown> | undefined)?.generation;
  if (typeof oldGeneration === 'number' && meta.generation === oldGeneration) meta.generation = oldGeneration + 1;
}

/** Replaces `target`'s content with `source`'s, keeping the `metadata` object itself (the store holds a reference to it). */
function replaceInPlace(target: Record<string, unknown>, source: Record<string, unknown>): void {
  const metadata = target.metadata as Record<string, unknown> | undefined;
  for (const key of Object.keys(target)) if (key !== 'metadata') delete target[key];
  for (const [key, value] of Object.entries(source)) if (key !== 'metadata') target[key] = value;
  const sourceMeta = (source.metadata ?? {}) as Record<string, unknown>;
  if (metadata && typeof metadata === 'object') {
    for (const key of Object.keys(metadata)) delete metadata[key];
    Object.assign(metadata, sourceMeta);
  } else {
    target.metadata = sourceMeta;
  }
}

/** MatchNamespaceSelector: cluster-scoped objects always match, as an empty selector; a missing namespace is 404. */
export async function matchNamespaceSelector(
  spec: LabelSelector | undefined,
  selector: LabelMatcher | Error,
  attributes: AdmissionAttributes,
  namespaces: NamespaceLabels,
): Promise<boolean | StatusError> {
  if (attributes.namespace === '') return true;
  if (selector instanceof Error) return internalError(selector.message);
  if (Object.keys(spec?.matchLabels ?? {}).length === 0 && (spec?.matchExpressions ?? []).length === 0) return true;
  try {
    const labels = await namespaces.labels(attributes.namespace);
    if (labels === undefined) return errors.notFound({ group: '', resource: 'namespaces' }, attributes.namespace);
    return selector(labels);
  } catch (error) {
    return error instanceof StatusError ? error : internalError((error as Error).message);
  }
}

/**
 * Upstream's matchconditions matcher over JSON bindings: false when a condition is false, else
 * the evaluation errors if any (`expression '…' resulted in error: …`), else true.
 */
export function evaluateMatchConditions(conditions: readonly { readonly program: CompiledCel }[], bindings: Readonly<Record<string, unknown>>): boolean | Error {
  const input = Object.fromEntries(Object.entries(bindings).map(([name, value]) => [name, celInput(value)]));
  const problems: string[] = [];
  for (const condition of conditions) {
    const result = evaluateCel(condition.program, input);
    if (result === false) return false;
    if (result === true) continue;
    problems.push(result instanceof Error ? result.message : `expression '${condition.program.source}' resulted in error: expected bool, got ${typeof result}`);
  }
  // utilerrors.NewAggregate's wording: one error as it is, several in brackets.
  if (problems.length > 0) return new Error(problems.length === 1 ? problems[0] : `[${problems.join(', ')}]`);
  return true;
}

/** Evaluates a compiled expression over CEL input with the per-call cost limit; an error is worded as upstream's filter words it. */
export function evaluateCel(program: CompiledCel, input: Readonly<Record<string, unknown>>): unknown {
  const meter = new CelMeter(CEL_PER_CALL_COST_LIMIT);
  let result: unknown;
  try {
    result = program.evaluate(input as never, meter);
  } catch (error) {
    result = error;
  }
  if (meter.exceeded) return new Error(`expression '${program.source}' resulted in error: operation cancelled: actual cost limit exceeded`);
  if (isCelError(result as never) || result instanceof Error) return new Error(`expression '${program.source}' resulted in error: ${(result as Error).message}`);
  return result;
}

/**
 * An object of the attributes as admission shows it in `version` (a copy): the resource's object
 * converted from its storage version, or a subresource's own object (`objectKind`) as it is.
 */
export function admissionObject(codec: KindCodec, attributes: AdmissionAttributes, object: Readonly<Record<string, unknown>> | undefined, version: string): KubeObject | null {
  if (!object) return null;
  return structuredClone(attributes.objectKind ? object : codec.fromStorage(object, version)) as KubeObject;
}

/** The AdmissionRequest (the review's `request`, and the `request` variable of CEL expressions). */
export function admissionRequest(
  attributes: AdmissionAttributes,
  kindName: string,
  version: string,
  uid: string,
  withObjects: boolean,
  object?: KubeObject | null,
  oldObject?: KubeObject | null,
): Record<string, unknown> {
  const group = attributes.group;
  const user = attributes.user;
  // A subresource of a kind of its own (autoscaling/v1 Scale) is that kind in whatever version was matched.
  const objectKind = attributes.objectKind;
  const options = attributes.options ?? {
    kind: attributes.operation === 'CREATE' ? 'CreateOptions' : attributes.operation === 'UPDATE' ? 'UpdateOptions' : 'DeleteOptions',
    apiVersion: 'meta.k8s.io/v1',
    ...(attributes.dryRun ? { dryRun: ['All'] } : {}),
  };
  return {
    uid,
    kind: objectKind ? { ...objectKind } : { group, version, kind: kindName },
    resource: { group, version, resource: attributes.resource },
    ...(attributes.subresource ? { subResource: attributes.subresource } : {}),
    requestKind: objectKind ? { ...objectKind } : { group, version: attributes.version, kind: kindName },
    requestResource: { group, version: attributes.version, resource: attributes.resource },
    ...(attributes.subresource ? { requestSubResource: attributes.subresource } : {}),
    ...(attributes.name ? { name: attributes.name } : {}),
    ...(attributes.namespace ? { namespace: attributes.namespace } : {}),
    operation: attributes.operation,
    userInfo: {
      username: user.name,
      ...(user.uid ? { uid: user.uid } : {}),
      ...(user.groups.length > 0 ? { groups: [...user.groups] } : {}),
      ...(Object.keys(user.extra).length > 0 ? { extra: Object.fromEntries(Object.entries(user.extra).map(([k, v]) => [k, [...v]])) } : {}),
    },
    ...(withObjects ? { object: object ?? null, oldObject: oldObject ?? null } : {}),
    dryRun: attributes.dryRun,
    options,
  };
}

class WebhookDispatcher {
  private readonly kinds = new Map<string, KindEntry>();
  private readonly resolveService: ServiceResolver;
  private readonly readyTimeoutMs: number;

  constructor(private readonly options: WebhookAdmissionOptions) {
    for (const kind of options.api.kinds) {
      const codec = new KindCodec(options.api.group, kind, options.rules?.[kind.kind]);
      const cel = new Map(kind.versions.filter((v) => v.served).map((v) => [v.name, compileVersionCel(kind.kind, v)] as const));
      this.kinds.set(kind.kind, { codec, cel });
    }
    this.resolveService = options.resolveService ?? clusterServiceResolver;
    this.readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
  }

  private kindOf(attributes: AdmissionAttributes): KindEntry | undefined {
    return attributes.group === this.options.api.group ? this.kinds.get(attributes.kind) : undefined;
  }

  /** WaitForReady: the configurations (and namespaces) listed once, within the bound; else 403. */
  async waitForReady(source: WebhookSource, attributes: AdmissionAttributes): Promise<void> {
    const ready = () => source.hasSynced() && this.options.namespaces.hasSynced();
    const deadline = Date.now() + this.readyTimeoutMs;
    while (!ready()) {
      if (Date.now() >= deadline) {
        throw errors.forbiddenByAdmission({ group: attributes.group, resource: attributes.resource }, admissionName(attributes), 'not yet ready to handle request');
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * ShouldCallHook: selectors, then the rules against the request's version, then (Equivalent)
   * against the kind's other served versions, then matchConditions over the object in the
   * matched version. Undefined when the webhook is not to be called.
   */
  async invocationFor(webhook: CompiledWebhook, attributes: AdmissionAttributes, kind: KindEntry): Promise<Invocation | undefined> {
    const namespaceMatch = await matchNamespaceSelector(webhook.spec.namespaceSelector, webhook.namespaceSelector, attributes, this.options.namespaces);
    if (namespaceMatch === false) return undefined;
    let objectMatch: boolean | StatusError;
    if (webhook.objectSelector instanceof Error) objectMatch = internalError(webhook.objectSelector.message);
    else {
      const selector = webhook.objectSelector;
      const labels = [labelsOf(attributes.object), labelsOf(attributes.oldObject)].filter((l): l is Labels => l !== undefined);
      objectMatch = labels.some((l) => selector(l));
    }
    if (objectMatch === false) return undefined;

    const rules = webhook.spec.rules ?? [];
    let version: string | undefined = rules.some((rule) => ruleMatches(rule, attributes, attributes.version)) ? attributes.version : undefined;
    if (version === undefined && webhook.matchPolicy === 'Equivalent') {
      const others = kind.codec.definition.versions.filter((v) => v.served && v.name !== attributes.version).map((v) => v.name);
      outer: for (const rule of rules) {
        for (const other of others) {
          if (ruleMatches(rule, attributes, other)) {
            version = other;
            break outer;
          }
        }
      }
    }
    if (version === undefined) return undefined;
    if (namespaceMatch instanceof StatusError) throw namespaceMatch;
    if (objectMatch instanceof StatusError) throw objectMatch;

    if (webhook.matchConditions instanceof Error || webhook.matchConditions.length > 0) {
      const matched = this.evaluateMatchConditions(webhook, attributes, kind, version);
      if (matched instanceof Error) {
        if (webhook.failurePolicy === 'Ignore') return undefined;
        throw errors.forbiddenByAdmission({ group: attributes.group, resource: attributes.resource }, admissionName(attributes), matched.message);
      }
      if (!matched) return undefined;
    }
    return { webhook, version };
  }

  private evaluateMatchConditions(webhook: CompiledWebhook, attributes: AdmissionAttributes, kind: KindEntry, version: string): boolean | Error {
    if (webhook.matchConditions instanceof Error) return webhook.matchConditions;
    return evaluateMatchConditions(webhook.matchConditions, {
      object: admissionObject(kind.codec, attributes, attributes.object, version),
      oldObject: admissionObject(kind.codec, attributes, attributes.oldObject, version),
      request: admissionRequest(attributes, kind.codec.kind, version, '', false),
    });
  }

  /**
   * Sends the review and checks the answer (VerifyAdmissionResponse); a failed call is returned
   * as the WebhookCallError for the caller to apply the failurePolicy.
   */
  async call(invocation: Invocation, attributes: AdmissionAttributes, kind: KindEntry, mutating: boolean, object: KubeObject | null): Promise<Record<string, unknown>> {
    const { webhook } = invocation;
    if (attributes.dryRun && !(webhook.sideEffects === 'None' || webhook.sideEffects === 'NoneOnDryRun')) {
      // A call failure (the failurePolicy applies), as upstream; admissionregistration/v1 requires the field anyway.
      if (webhook.sideEffects === undefined) throw new WebhookCallError('Webhook SideEffects is nil');
      throw errors.badRequest(`admission webhook "${webhook.spec.name}" does not support dry run`);
    }
    const reviewVersions = webhook.spec.admissionReviewVersions ?? ['v1'];
    if (!reviewVersions.includes('v1')) throw new WebhookCallError('could not create admission objects: webhook does not accept known AdmissionReview versions (v1)');
    const uid = randomUUID();
    const review = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: admissionRequest(attributes, kind.codec.kind, invocation.version, uid, true, object, admissionObject(kind.codec, attributes, attributes.oldObject, invocation.version)),
    };
    const answer = (await callWebhook(webhook.spec.clientConfig, review, webhook.timeoutMs, this.resolveService)) as Record<string, unknown>;
    const response = answer.response as Record<string, unknown> | undefined;
    if (!response || typeof response !== 'object') throw new WebhookCallError('webhook response was absent');
    if (response.uid !== uid) throw new WebhookCallError(`expected response.uid=${JSON.stringify(uid)}, got ${JSON.stringify(response.uid ?? '')}`);
    if (answer.apiVersion !== 'admission.k8s.io/v1' || answer.kind !== 'AdmissionReview') {
      const group = typeof answer.apiVersion === 'string' ? answer.apiVersion : '';
      throw new WebhookCallError(`expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got ${group}, Kind=${String(answer.kind ?? '')}`);
    }
    const hasPatch = typeof response.patch === 'string' && response.patch !== '';
    if (mutating) {
      if (hasPatch && response.patchType === undefined) throw new WebhookCallError('webhook returned response.patch but not response.patchType');
      if (!hasPatch && response.patchType !== undefined) throw new WebhookCallError('webhook returned response.patchType but not response.patch');
      if (response.patchType === '') throw new WebhookCallError('webhook returned invalid response.patchType of ""');
    } else {
      if (hasPatch) throw new WebhookCallError('validating webhook may not return response.patch');
      if (response.patchType !== undefined) throw new WebhookCallError('validating webhook may not return response.patchType');
    }
    this.recordAuditAnnotations(webhook, attributes, response.auditAnnotations, mutating);
    if (Array.isArray(response.warnings) && attributes.warnings) {
      // The warning recorder drops duplicates (a reinvoked webhook warns once).
      for (const warning of response.warnings) if (typeof warning === 'string' && warning.trim() !== '' && !attributes.warnings.includes(warning)) attributes.warnings.push(warning);
    }
    if (response.allowed !== true) throw denial(webhook.spec.name, response.status);
    return response;
  }

  /**
   * The webhook's `auditAnnotations`, as `<webhook name>/<key>` on the request (refused keys are
   * logged and left out, as upstream's dispatchers do). They decode as Go decodes them into a
   * map[string]string: null is an empty value, any other non-string fails the call.
   */
  private recordAuditAnnotations(webhook: CompiledWebhook, attributes: AdmissionAttributes, annotations: unknown, mutating: boolean): void {
    if (annotations === undefined || annotations === null) return;
    const cannotUnmarshal = (value: unknown, type: string) => new WebhookCallError(`json: cannot unmarshal ${jsonTypeName(value)} into Go struct field AdmissionResponse.response.auditAnnotations of type ${type}`);
    if (typeof annotations !== 'object' || Array.isArray(annotations)) throw cannotUnmarshal(annotations, 'map[string]string');
    const entries = Object.entries(annotations as Record<string, unknown>).map(([key, value]): [string, string] => {
      if (value !== null && typeof value !== 'string') throw cannotUnmarshal(value, 'string');
      return [key, value ?? ''];
    });
    for (const [key, value] of entries) this.annotate(attributes, `${webhook.spec.name}/${key}`, value, `${mutating ? 'mutating' : 'validating'} webhook ${webhook.spec.name}`);
  }

  private annotate(attributes: AdmissionAttributes, key: string, value: string, by: string): void {
    recordAuditAnnotation(attributes.auditAnnotations, key, value, by, this.options.logger);
  }

  /** Runs a call, applying the failurePolicy to a failed call (`failed calling webhook "x": …`). */
  async withFailurePolicy<T>(webhook: CompiledWebhook, run: () => Promise<T>, failedOpen?: () => void): Promise<T | undefined> {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof WebhookCallError)) throw error;
      const message = `failed calling webhook "${webhook.spec.name}": ${error.message}`;
      if (webhook.failurePolicy === 'Ignore') {
        this.options.logger?.warn({ webhook: webhook.spec.name, err: error.message }, 'Failed calling webhook, failing open');
        failedOpen?.();
        return undefined;
      }
      throw internalError(message);
    }
  }

  // ---- mutating -------------------------------------------------------------------------------

  async admit(attributes: AdmissionAttributes): Promise<void> {
    const kind = this.kindOf(attributes);
    if (!kind) return;
    await this.waitForReady(this.options.mutating, attributes);
    const webhooks = this.options.mutating.webhooks();
    // Reinvocation (webhookReinvokeContext): IfNeeded webhooks called before a change are called once more.
    let previouslyInvoked = new Set<string>();
    const reinvoke = new Set<string>();
    for (const round of [0, 1]) {
      if (round === 1 && reinvoke.size === 0) return;
      for (const [index, webhook] of webhooks.entries()) {
        if (round === 1 && !reinvoke.has(webhook.uid)) continue;
        const invocation = await this.invocationFor(webhook, attributes, kind);
        if (!invocation) continue;
        const changed = await this.callMutating(invocation, attributes, kind, round, index);
        if (changed && round === 0) {
          for (const uid of previouslyInvoked) reinvoke.add(uid);
          previouslyInvoked = new Set();
        }
        if (webhook.reinvoke && round === 0) previouslyInvoked.add(webhook.uid);
      }
    }
  }

  /**
   * Calls one mutating webhook and applies its patch; true when the object changed. The request's
   * audit event records the call (`mutation.webhook.admission.k8s.io/round_<r>_index_<i>`: the
   * configuration, the webhook and whether it mutated, however the call ended) and a call that
   * failed open (`failed-open.mutation.webhook.admission.k8s.io/…`: the webhook), as upstream's
   * webhookAnnotator does; `index` is the webhook's place among all mutating webhooks.
   */
  private async callMutating(invocation: Invocation, attributes: AdmissionAttributes, kind: KindEntry, round: number, index: number): Promise<boolean> {
    const { webhook } = invocation;
    const suffix = `round_${round}_index_${index}`;
    let changed = false;
    try {
      // A patch type that fails open answers undefined: not changed.
      changed =
        (await this.mutateOnce(invocation, attributes, kind, () =>
          this.annotate(attributes, `failed-open.mutation.webhook.admission.k8s.io/${suffix}`, webhook.spec.name, `mutating webhook ${webhook.spec.name}`),
        )) === true;
      return changed;
    } finally {
      const value = JSON.stringify({ configuration: webhook.configurationName, webhook: webhook.spec.name, mutated: changed });
      this.annotate(attributes, `mutation.webhook.admission.k8s.io/${suffix}`, value, `mutating webhook ${webhook.spec.name}`);
    }
  }

  private async mutateOnce(invocation: Invocation, attributes: AdmissionAttributes, kind: KindEntry, failedOpen: () => void): Promise<boolean> {
    const { webhook, version } = invocation;
    const object = admissionObject(kind.codec, attributes, attributes.object, version);
    const response = await this.withFailurePolicy(webhook, () => this.call(invocation, attributes, kind, true, object), failedOpen);
    if (!response || typeof response.patch !== 'string' || response.patch === '') return false;
    if (response.patchType !== 'JSONPatch') {
      return (await this.withFailurePolicy(
        webhook,
        async () => {
          throw new WebhookCallError(`unsupported patch type ${JSON.stringify(response.patchType)}`);
        },
        failedOpen,
      )) as never;
    }
    let operations: Operation[];
    try {
      operations = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as Operation[];
      if (!Array.isArray(operations)) throw new Error('a JSON patch must be an array of operations');
    } catch (error) {
      throw internalError((error as Error).message);
    }
    if (operations.length === 0) return false;
    if (!object || !attributes.object) throw internalError(`admission webhook "${webhook.spec.name}" attempted to modify the object, which is not supported for this operation`);
    let patched: KubeObject;
    try {
      patched = applyPatch(structuredClone(object), operations, true, false).newDocument;
    } catch (error) {
      throw internalError((error as Error).message);
    }
    if (typeof patched !== 'object' || patched === null || Array.isArray(patched)) throw internalError('the patched object is not a JSON object');
    if (attributes.objectKind) {
      // A subresource's own object (a Scale): the store writes it back to the resource and checks it there.
      if (jsonEqual(patched, object)) return false;
      replaceInPlace(attributes.object, patched);
      return true;
    }
    this.validatePatched(attributes, kind, version, patched);
    if (jsonEqual(patched, object)) return false;
    const stored = structuredClone(kind.codec.convert(patched, version, kind.codec.storageVersion)) as Record<string, unknown>;
    if (attributes.subresource === 'status') {
      // The status strategy keeps only .status of a status write (upstream runs it after mutation).
      const current = structuredClone(attributes.object);
      if (stored.status === undefined) delete current.status;
      else current.status = stored.status;
      replaceInPlace(attributes.object, current);
    } else {
      bumpGenerationOnSpecChange(stored, attributes.object, attributes.oldObject);
      replaceInPlace(attributes.object, stored);
    }
    return true;
  }

  /**
   * The patched object goes through what a written object goes through (pruning, defaulting, the
   * schema, ObjectMeta and CEL rules): the store validated the object before admission, so a
   * webhook's change is validated here (422, as the store words it).
   */
  private validatePatched(attributes: AdmissionAttributes, kind: KindEntry, version: string, patched: KubeObject): void {
    const schemaVersion = kind.codec.version(version);
    if (!schemaVersion) throw internalError(`version "${version}" of ${kind.codec.kind} is not served`);
    const meta = (typeof patched.metadata === 'object' && patched.metadata !== null ? patched.metadata : (patched.metadata = {})) as Record<string, unknown>;
    if (attributes.namespace !== '' && meta.namespace !== attributes.namespace) {
      throw errors.badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    pruneObjectMeta(meta);
    pruneAndDefault(patched as never, schemaVersion.schema);
    kind.codec.rules.default?.(patched, version);
    const oldMeta = (attributes.oldObject?.metadata ?? undefined) as Record<string, unknown> | undefined;
    const problems = [...validateObjectMeta(meta, { namespaced: kind.codec.namespaced }, oldMeta), ...validateAgainstSchema(patched as never, schemaVersion.schema)];
    const old = admissionObject(kind.codec, attributes, attributes.oldObject, version) ?? undefined;
    if (problems.length === 0) problems.push(...validateCelRules(kind.cel.get(version), patched, old));
    if (problems.length > 0) {
      const name = typeof meta.name === 'string' && meta.name ? meta.name : typeof meta.generateName === 'string' ? meta.generateName : '';
      throw errors.invalid(kind.codec.kind, kind.codec.group, name, problems);
    }
  }

  // ---- validating -----------------------------------------------------------------------------

  async validate(attributes: AdmissionAttributes): Promise<void> {
    const kind = this.kindOf(attributes);
    if (!kind) return;
    await this.waitForReady(this.options.validating, attributes);
    const invocations: Invocation[] = [];
    for (const webhook of this.options.validating.webhooks()) {
      const invocation = await this.invocationFor(webhook, attributes, kind);
      if (invocation) invocations.push(invocation);
    }
    // All at once, as upstream's validating dispatcher; the first refusal in webhook order is answered.
    const outcomes = await Promise.all(
      invocations.map((invocation, index) =>
        this.withFailurePolicy(
          invocation.webhook,
          () => this.call(invocation, attributes, kind, false, admissionObject(kind.codec, attributes, attributes.object, invocation.version)),
          // Upstream's index here is the webhook's place among those called.
          () => this.annotate(attributes, `failed-open.validating.webhook.admission.k8s.io/round_0_index_${index}`, invocation.webhook.spec.name, `validating webhook ${invocation.webhook.spec.name}`),
        ).then(
          () => undefined,
          (error: unknown) => error,
        ),
      ),
    );
    const failure = outcomes.find((outcome) => outcome !== undefined);
    if (failure !== undefined) throw failure;
  }
}

/** webhookerrors.ToStatusErr: the webhook's status, its message prefixed, at least 400. */
function denial(webhookName: string, result: unknown): StatusError {
  const status = (typeof result === 'object' && result !== null ? result : {}) as Partial<Status> & { code?: number; details?: Status['details'] };
  const deniedBy = `admission webhook "${webhookName}" denied the request`;
  const message = typeof status.message === 'string' && status.message !== '' ? `${deniedBy}: ${status.message}` : typeof status.reason === 'string' && status.reason !== '' ? `${deniedBy}: ${status.reason}` : `${deniedBy} without explanation`;
  const code = typeof status.code === 'number' && status.code >= 400 ? status.code : 403;
  return new StatusError({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: typeof status.reason === 'string' ? status.reason : '',
    ...(status.details && typeof status.details === 'object' ? { details: status.details } : {}),
    code,
  });
}

/**
 * The two plugins, MutatingAdmissionWebhook and ValidatingAdmissionWebhook, sharing one
 * dispatcher (its codecs and compiled rules).
 */
export function webhookAdmission(options: WebhookAdmissionOptions): { readonly mutating: AdmissionPlugin; readonly validating: AdmissionPlugin } {
  const dispatcher = new WebhookDispatcher(options);
  return {
    mutating: { name: 'MutatingAdmissionWebhook', operations: SERVED_OPERATIONS, admit: (attributes) => dispatcher.admit(attributes) },
    validating: { name: 'ValidatingAdmissionWebhook', operations: SERVED_OPERATIONS, validate: (attributes) => dispatcher.validate(attributes) },
  };
}
