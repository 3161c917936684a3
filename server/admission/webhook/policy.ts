/**
 * The ValidatingAdmissionPolicy plugin, as k8s.io/apiserver/pkg/admission/plugin/policy/validating:
 * `ValidatingAdmissionPolicy` objects (admissionregistration.k8s.io/v1) bound to the request by
 * `ValidatingAdmissionPolicyBinding`s, their CEL `validations` run over `object`, `oldObject`,
 * `request`, `namespaceObject`, `variables` and `params` (always null here) after the object
 * was validated. A failed validation is acted on as the binding's `validationActions` say: Deny
 * (`<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '<p>' with binding '<b>' denied
 * request: <message>`, code from the validation's reason, 422 Invalid by default) and Warn (a
 * Warning header) and Audit (the `validation.policy.admission.k8s.io/validation_failure` audit
 * annotation); the policy's `auditAnnotations` are recorded as `<policy>/<key>`. Errors (an
 * expression that fails, a policy that does not compile) follow the policy's failurePolicy.
 *
 * Not done: `paramKind`/`paramRef` (a binding that names params fails as its failurePolicy says),
 * `authorizer` in expressions; expressions are not type-checked before they run.
 */
import { CelCompileError, celTypeName, compileCel, type CompiledCel } from '../../../apis/cel';
import type { ApiGroupDefinition } from '../../../apis/types';
import { KindCodec } from '../../registry/codec';
import type { ApiRules } from '../../registry/rules';
import { StatusError, errors } from '../../status';
import { recordAuditAnnotation } from '../audit-annotations';
import type { AdmissionAttributes, AdmissionPlugin } from '../types';
import { labelSelectorMatcher, type FailurePolicy, type LabelMatcher, type LabelSelector, type MatchCondition, type MatchPolicy, type RuleWithOperations } from './configuration';
import { admissionName, admissionObject, admissionRequest, celInput, evaluateCel, evaluateMatchConditions, labelsOf, matchNamespaceSelector, ruleMatches } from './dispatcher';
import { ReflectedCollection, type Named, type NamespaceLabels, type WarnLogger, type WatchingClient } from './source';
import type { SyncedInformer } from '../../health';

export const VALIDATING_ADMISSION_POLICIES = '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies';
export const VALIDATING_ADMISSION_POLICY_BINDINGS = '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings';

/** The variables a policy's expressions may use (upstream's `authorizer` is not offered). */
const POLICY_VARIABLES: ReadonlySet<string> = new Set(['object', 'oldObject', 'request', 'params', 'namespaceObject', 'variables']);

export interface NamedRuleWithOperations extends RuleWithOperations {
  readonly resourceNames?: readonly string[];
}

export interface MatchResources {
  readonly namespaceSelector?: LabelSelector;
  readonly objectSelector?: LabelSelector;
  readonly resourceRules?: readonly NamedRuleWithOperations[];
  readonly excludeResourceRules?: readonly NamedRuleWithOperations[];
  readonly matchPolicy?: MatchPolicy;
}

export interface Validation {
  readonly expression: string;
  readonly message?: string;
  readonly messageExpression?: string;
  readonly reason?: string;
}

export interface ValidatingAdmissionPolicyObject extends Named {
  readonly spec?: {
    readonly failurePolicy?: FailurePolicy;
    readonly matchConstraints?: MatchResources;
    readonly validations?: readonly Validation[];
    readonly variables?: readonly { readonly name: string; readonly expression: string }[];
    readonly matchConditions?: readonly MatchCondition[];
    readonly paramKind?: { readonly apiVersion?: string; readonly kind?: string };
    readonly auditAnnotations?: readonly { readonly key: string; readonly valueExpression: string }[];
  };
}

export interface ValidatingAdmissionPolicyBindingObject extends Named {
  readonly spec?: {
    readonly policyName?: string;
    readonly matchResources?: MatchResources;
    readonly validationActions?: readonly string[];
    readonly paramRef?: Record<string, unknown>;
  };
}

interface CompiledMatch {
  readonly spec: MatchResources;
  readonly namespaceSelector: LabelMatcher | Error;
  readonly objectSelector: LabelMatcher | Error;
}

export interface CompiledPolicy {
  readonly name: string;
  /** Of the policy object compiled (tests wait for a change to arrive). */
  readonly resourceVersion: string;
  readonly failurePolicy: FailurePolicy;
  readonly constraints: CompiledMatch;
  readonly usesParams: boolean;
  /** Everything compiled, or why the policy cannot be used ("failed to configure policy"). */
  readonly compiled:
    | {
        readonly matchConditions: readonly { readonly name: string; readonly program: CompiledCel }[];
        readonly variables: readonly { readonly name: string; readonly program: CompiledCel }[];
        readonly validations: readonly { readonly validation: Validation; readonly program: CompiledCel; readonly messageProgram?: CompiledCel }[];
        readonly auditAnnotations: readonly { readonly key: string; readonly program: CompiledCel }[];
      }
    | Error;
  readonly bindings: readonly { readonly name: string; readonly resourceVersion: string; readonly match?: CompiledMatch; readonly actions: readonly string[]; readonly paramRef: boolean }[];
}

function compileMatch(spec: MatchResources): CompiledMatch {
  const orError = (selector: LabelSelector | undefined): LabelMatcher | Error => {
    try {
      return labelSelectorMatcher(selector);
    } catch (error) {
      return error as Error;
    }
  };
  return { spec, namespaceSelector: orError(spec.namespaceSelector), objectSelector: orError(spec.objectSelector) };
}

function compileExpression(expression: string): CompiledCel {
  try {
    return compileCel(expression, POLICY_VARIABLES);
  } catch (error) {
    if (error instanceof CelCompileError) throw new Error(`expression '${expression}': ${error.message}`);
    throw error;
  }
}

/** The policies that have bindings, sorted by name, each with its bindings sorted by name. */
export function compilePolicies(policies: readonly ValidatingAdmissionPolicyObject[], bindings: readonly ValidatingAdmissionPolicyBindingObject[]): CompiledPolicy[] {
  const byName = (a: Named, b: Named) => ((a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : (a.metadata?.name ?? '') > (b.metadata?.name ?? '') ? 1 : 0);
  const compiled: CompiledPolicy[] = [];
  for (const policy of [...policies].sort(byName)) {
    const name = policy.metadata?.name ?? '';
    const spec = policy.spec ?? {};
    const bound = bindings.filter((b) => b.spec?.policyName === name).sort(byName);
    if (bound.length === 0) continue;
    let body: CompiledPolicy['compiled'];
    try {
      body = {
        matchConditions: (spec.matchConditions ?? []).map((c) => ({ name: c.name, program: compileExpression(c.expression) })),
        variables: (spec.variables ?? []).map((v) => ({ name: v.name, program: compileExpression(v.expression) })),
        validations: (spec.validations ?? []).map((validation) => ({
          validation,
          program: compileExpression(validation.expression),
          ...(validation.messageExpression ? { messageProgram: compileExpression(validation.messageExpression) } : {}),
        })),
        auditAnnotations: (spec.auditAnnotations ?? []).map((a) => ({ key: a.key, program: compileExpression(a.valueExpression) })),
      };
    } catch (error) {
      body = error as Error;
    }
    compiled.push({
      name,
      resourceVersion: policy.metadata?.resourceVersion ?? '',
      failurePolicy: spec.failurePolicy === 'Ignore' ? 'Ignore' : 'Fail',
      constraints: compileMatch(spec.matchConstraints ?? {}),
      usesParams: spec.paramKind !== undefined,
      compiled: body,
      bindings: bound.map((b) => ({
        name: b.metadata?.name ?? '',
        resourceVersion: b.metadata?.resourceVersion ?? '',
        ...(b.spec?.matchResources ? { match: compileMatch(b.spec.matchResources) } : {}),
        actions: b.spec?.validationActions ?? [],
        paramRef: b.spec?.paramRef !== undefined,
      })),
    });
  }
  return compiled;
}

/** Where the plugin reads policies and bindings from. */
export interface PolicySource {
  hasSynced(): boolean;
  policies(): readonly CompiledPolicy[];
}

/** Policies and bindings watched through a KubeClient; a cluster that does not serve admissionregistration.k8s.io/v1 policies (before 1.30) has none. */
export class WatchedPolicies implements PolicySource {
  private readonly policiesCollection: ReflectedCollection<ValidatingAdmissionPolicyObject>;
  private readonly bindingsCollection: ReflectedCollection<ValidatingAdmissionPolicyBindingObject>;
  private compiled: readonly CompiledPolicy[] = [];

  constructor(client: WatchingClient, logger: WarnLogger) {
    const recompile = () => {
      if (this.policiesCollection && this.bindingsCollection) this.compiled = compilePolicies([...this.policiesCollection.objects.values()], [...this.bindingsCollection.objects.values()]);
    };
    this.policiesCollection = new ReflectedCollection(client, VALIDATING_ADMISSION_POLICIES, logger, recompile, true);
    this.bindingsCollection = new ReflectedCollection(client, VALIDATING_ADMISSION_POLICY_BINDINGS, logger, recompile, true);
  }

  hasSynced(): boolean {
    return this.policiesCollection.synced && this.bindingsCollection.synced;
  }

  policies(): readonly CompiledPolicy[] {
    return this.compiled;
  }

  /** The two reflectors, for the `informer-sync` readiness check. */
  informers(): SyncedInformer[] {
    return [
      { type: '*v1.ValidatingAdmissionPolicy', hasSynced: () => this.policiesCollection.synced },
      { type: '*v1.ValidatingAdmissionPolicyBinding', hasSynced: () => this.bindingsCollection.synced },
    ];
  }

  close(): void {
    this.policiesCollection.stop();
    this.bindingsCollection.stop();
  }
}

export interface PolicyAdmissionOptions {
  readonly api: ApiGroupDefinition;
  readonly rules?: ApiRules;
  readonly policies: PolicySource;
  readonly namespaces: NamespaceLabels;
  /** How long a write waits for the first lists before 403 `not yet ready to handle request`. @default 10000 */
  readonly readyTimeoutMs?: number;
  /** Where an audit annotation the request refused is reported. @default - not reported */
  readonly logger?: WarnLogger;
}

/** The most of an audit annotation's value kept (upstream's maxAuditAnnotationValueLength). */
const MAX_AUDIT_ANNOTATION_VALUE_LENGTH = 10 * 1024;
/** Where a failed validation of a binding with the Audit action is recorded. */
const VALIDATION_FAILURE_ANNOTATION = 'validation.policy.admission.k8s.io/validation_failure';

/** A denial waiting to be answered: the first one (policy order) is. */
interface Denial {
  readonly policy: string;
  readonly binding: string;
  readonly message: string;
  readonly reason: string;
}

const REASON_CODES: Readonly<Record<string, number>> = { Forbidden: 403, Unauthorized: 401, RequestEntityTooLarge: 413, Invalid: 422 };

/** The ValidatingAdmissionPolicy plugin. */
export function validatingAdmissionPolicy(options: PolicyAdmissionOptions): AdmissionPlugin {
  const codecs = new Map(options.api.kinds.map((kind) => [kind.kind, new KindCodec(options.api.group, kind, options.rules?.[kind.kind])]));
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;

  /** Matcher.Matches: selectors, exclusions, then the rules (Equivalent: other served versions); the version matched, or undefined. */
  async function matches(match: CompiledMatch, attributes: AdmissionAttributes, codec: KindCodec, requireRules: boolean): Promise<string | undefined | StatusError> {
    const namespaceMatch = await matchNamespaceSelector(match.spec.namespaceSelector, match.namespaceSelector, attributes, options.namespaces);
    if (namespaceMatch === false) return undefined;
    let objectMatch: boolean | StatusError = true;
    if (match.objectSelector instanceof Error) objectMatch = errors.internal(match.objectSelector.message);
    else {
      const selector = match.objectSelector;
      objectMatch = [labelsOf(attributes.object), labelsOf(attributes.oldObject)].some((labels) => labels !== undefined && selector(labels));
    }
    if (objectMatch === false) return undefined;
    const versions = [attributes.version, ...codec.definition.versions.filter((v) => v.served && v.name !== attributes.version).map((v) => v.name)];
    const equivalent = (match.spec.matchPolicy ?? 'Equivalent') === 'Equivalent';
    const named = (rule: NamedRuleWithOperations) => (rule.resourceNames ?? []).length === 0 || (rule.resourceNames ?? []).includes(attributes.name);
    const ruleVersion = (rules: readonly NamedRuleWithOperations[]): string | undefined => {
      for (const version of equivalent ? versions : [attributes.version]) {
        if (rules.some((rule) => named(rule) && ruleMatches(rule, attributes, version))) return version;
      }
      return undefined;
    };
    if (ruleVersion(match.spec.excludeResourceRules ?? []) !== undefined) return undefined;
    const rules = match.spec.resourceRules ?? [];
    const version = rules.length === 0 && !requireRules ? attributes.version : ruleVersion(rules);
    if (version === undefined) return undefined;
    if (namespaceMatch instanceof StatusError) return namespaceMatch;
    if (objectMatch instanceof StatusError) return objectMatch;
    return version;
  }

  async function validate(attributes: AdmissionAttributes): Promise<void> {
    const codec = attributes.group === options.api.group ? codecs.get(attributes.kind) : undefined;
    if (!codec) return;
    const deadline = Date.now() + readyTimeoutMs;
    while (!(options.policies.hasSynced() && options.namespaces.hasSynced())) {
      if (Date.now() >= deadline) throw errors.forbiddenByAdmission(codec.gr, admissionName(attributes), 'not yet ready to handle request');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const denials: Denial[] = [];
    const annotate = (key: string, value: string, policy: string) => recordAuditAnnotation(attributes.auditAnnotations, key, value, `policy ${policy}`, options.logger);
    for (const policy of options.policies.policies()) {
      // The policy's auditAnnotations over all its bindings: a value once per key and value, distinct values joined.
      const auditValues = new Map<string, string[]>();
      const configError = (binding: string, why: string) => {
        if (policy.failurePolicy === 'Fail') denials.push({ policy: policy.name, binding, message: `failed to configure binding: ${why}`, reason: '' });
      };
      const version = await matches(policy.constraints, attributes, codec, true);
      if (version === undefined) continue;
      if (version instanceof StatusError) {
        configError(policy.bindings[0].name, version.message);
        continue;
      }
      for (const binding of policy.bindings) {
        if (binding.match) {
          const bindingMatch = await matches(binding.match, attributes, codec, false);
          if (bindingMatch === undefined) continue;
          if (bindingMatch instanceof StatusError) {
            configError(binding.name, bindingMatch.message);
            continue;
          }
        }
        if (policy.compiled instanceof Error) {
          configError(binding.name, policy.compiled.message);
          continue;
        }
        if (policy.usesParams && binding.paramRef) {
          configError(binding.name, 'paramKind and paramRef are not supported by this server');
          continue;
        }
        const convert = (object: Readonly<Record<string, unknown>> | undefined) => admissionObject(codec, attributes, object, version);
        const request = admissionRequest(attributes, codec.kind, version, '', false);
        const namespaceObject = attributes.namespace === '' ? null : ((await options.namespaces.namespace(attributes.namespace)) ?? null);
        const json = { object: convert(attributes.object), oldObject: convert(attributes.oldObject), request, params: null, namespaceObject };

        const matched = evaluateMatchConditions(policy.compiled.matchConditions, json);
        if (matched === false) continue;
        if (matched instanceof Error) {
          if (policy.failurePolicy === 'Fail') denials.push({ policy: policy.name, binding: binding.name, message: matched.message, reason: '' });
          continue;
        }
        // Variables in order, each seeing the ones before it; one that fails is left out (an expression using it then fails).
        const input = evaluateInput(json);
        const variables = new Map<string, unknown>();
        input.variables = variables;
        for (const variable of policy.compiled.variables) {
          const value = evaluateCel(variable.program, input);
          if (!(value instanceof Error)) variables.set(variable.name, value);
        }
        for (const [expressionIndex, { validation, program, messageProgram }] of policy.compiled.validations.entries()) {
          const result = evaluateCel(program, input);
          let failure: { message: string; reason: string } | undefined;
          if (result instanceof Error) {
            if (policy.failurePolicy === 'Fail') failure = { message: result.message, reason: '' };
          } else if (result !== true) {
            const fromExpression = messageProgram ? evaluateCel(messageProgram, input) : undefined;
            const message = typeof fromExpression === 'string' && fromExpression.trim() !== '' ? fromExpression.trim() : validation.message || `failed expression: ${validation.expression.trim()}`;
            failure = { message, reason: validation.reason ?? '' };
          }
          if (!failure) continue;
          for (const action of binding.actions) {
            if (action === 'Deny') denials.push({ policy: policy.name, binding: binding.name, ...failure });
            else if (action === 'Warn') {
              const warning = `Validation failed for ValidatingAdmissionPolicy '${policy.name}' with binding '${binding.name}': ${failure.message}`;
              if (attributes.warnings && !attributes.warnings.includes(warning)) attributes.warnings.push(warning);
            } else if (action === 'Audit') {
              // A list of one, as upstream writes it (a second failure's value is refused: the key is taken).
              const value = JSON.stringify([{ expressionIndex, message: failure.message, validationActions: binding.actions, binding: binding.name, policy: policy.name }]);
              annotate(VALIDATION_FAILURE_ANNOTATION, value, policy.name);
            }
          }
        }
        for (const { key, program } of policy.compiled.auditAnnotations) {
          const value = evaluateCel(program, input);
          if (value === null) continue;
          if (typeof value === 'string') {
            const values = auditValues.get(key) ?? [];
            const kept = value.slice(0, MAX_AUDIT_ANNOTATION_VALUE_LENGTH);
            if (!values.includes(kept)) auditValues.set(key, [...values, kept]);
            continue;
          }
          const message =
            value instanceof Error ? value.message : `valueExpression '${program.source}' resulted in unsupported return type: ${celTypeName(value)}. Return type must be either string or null.`;
          if (policy.failurePolicy === 'Fail') denials.push({ policy: policy.name, binding: binding.name, message, reason: '' });
        }
      }
      for (const [key, values] of auditValues) annotate(`${policy.name}/${key}`, values.join(', '), policy.name);
    }
    if (denials.length === 0) return;
    const [denial] = denials;
    const message = `ValidatingAdmissionPolicy '${denial.policy}' with binding '${denial.binding}' denied request: ${denial.message}`;
    const forbidden = errors.forbiddenByAdmission(codec.gr, admissionName(attributes), message).status;
    const reason = denial.reason || 'Invalid';
    throw new StatusError({ ...forbidden, reason, code: REASON_CODES[reason] ?? 422, details: { ...forbidden.details, causes: [{ message }] } });
  }

  return { name: 'ValidatingAdmissionPolicy', operations: ['CREATE', 'UPDATE', 'DELETE'], validate };
}

/** The JSON bindings as CEL input (a mutable record, so `variables` can be added). */
function evaluateInput(json: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(json).map(([name, value]) => [name, celInput(value)]));
}
