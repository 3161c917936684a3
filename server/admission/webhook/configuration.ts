/**
 * The admissionregistration.k8s.io/v1 webhook configurations, as the webhook admission plugins
 * read them: the wire types (the fields this server honours), their defaults (as
 * admissionregistration/v1's SetDefaults_*), and each webhook compiled once when its
 * configuration arrives (selectors parsed, matchConditions compiled), as upstream's accessors do.
 */
import { CelCompileError, compileCel, type CompiledCel } from '../../../apis/cel';

export type FailurePolicy = 'Fail' | 'Ignore';
export type MatchPolicy = 'Exact' | 'Equivalent';
export type SideEffectClass = 'Unknown' | 'None' | 'Some' | 'NoneOnDryRun';

export interface ServiceReference {
  readonly namespace: string;
  readonly name: string;
  readonly path?: string;
  /** @default 443 */
  readonly port?: number;
}

export interface WebhookClientConfig {
  readonly url?: string;
  readonly service?: ServiceReference;
  /** Base64 PEM bundle; absent: the system roots. */
  readonly caBundle?: string;
}

export interface RuleWithOperations {
  readonly operations?: readonly string[];
  readonly apiGroups?: readonly string[];
  readonly apiVersions?: readonly string[];
  readonly resources?: readonly string[];
  /** `*` (default), `Cluster` or `Namespaced`. */
  readonly scope?: string;
}

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: string;
  readonly values?: readonly string[];
}

export interface LabelSelector {
  readonly matchLabels?: Readonly<Record<string, string>>;
  readonly matchExpressions?: readonly LabelSelectorRequirement[];
}

export interface MatchCondition {
  readonly name: string;
  readonly expression: string;
}

/** A MutatingWebhook or ValidatingWebhook (reinvocationPolicy is the mutating one's alone). */
export interface WebhookSpec {
  readonly name: string;
  readonly clientConfig: WebhookClientConfig;
  readonly rules?: readonly RuleWithOperations[];
  readonly failurePolicy?: FailurePolicy;
  readonly matchPolicy?: MatchPolicy;
  readonly namespaceSelector?: LabelSelector;
  readonly objectSelector?: LabelSelector;
  readonly sideEffects?: SideEffectClass;
  readonly timeoutSeconds?: number;
  readonly admissionReviewVersions?: readonly string[];
  readonly reinvocationPolicy?: 'Never' | 'IfNeeded';
  readonly matchConditions?: readonly MatchCondition[];
}

export interface WebhookConfigurationObject {
  readonly metadata?: { readonly name?: string; readonly uid?: string };
  readonly webhooks?: readonly WebhookSpec[];
}

export type Labels = Readonly<Record<string, string>>;

/** Matches labels; throws on a selector that is not valid (unknown operator, values where none belong). */
export type LabelMatcher = (labels: Labels) => boolean;

/** The variables matchConditions may use (upstream's `authorizer` is not offered). */
export const MATCH_CONDITION_VARIABLES: ReadonlySet<string> = new Set(['object', 'oldObject', 'request']);

/** A webhook ready to match and call. */
export interface CompiledWebhook {
  /** Unique within the plugin: `<configuration>/<index>`, for reinvocation bookkeeping. */
  readonly uid: string;
  readonly configurationName: string;
  readonly spec: WebhookSpec;
  readonly failurePolicy: FailurePolicy;
  readonly matchPolicy: MatchPolicy;
  readonly sideEffects: SideEffectClass | undefined;
  readonly timeoutMs: number;
  readonly reinvoke: boolean;
  /** Either matcher, or why the selector cannot be used (the call then fails as its failurePolicy says). */
  readonly namespaceSelector: LabelMatcher | Error;
  readonly objectSelector: LabelMatcher | Error;
  readonly matchConditions: readonly { readonly name: string; readonly program: CompiledCel }[] | Error;
}

/** metav1.LabelSelectorAsSelector: matchLabels and matchExpressions, all of them must hold; `{}` matches everything. */
export function labelSelectorMatcher(selector: LabelSelector | undefined): LabelMatcher {
  const terms: ((labels: Labels) => boolean)[] = [];
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {})) terms.push((labels) => labels[key] === value);
  for (const requirement of selector?.matchExpressions ?? []) {
    const { key, operator } = requirement;
    const values = requirement.values ?? [];
    switch (operator) {
      case 'In':
      case 'NotIn':
        if (values.length === 0) throw new Error(`key "${key}": for 'in', 'notin' operators, values set can't be empty`);
        terms.push(operator === 'In' ? (labels) => key in labels && values.includes(labels[key]) : (labels) => !(key in labels) || !values.includes(labels[key]));
        break;
      case 'Exists':
      case 'DoesNotExist':
        if (values.length > 0) throw new Error(`key "${key}": values set must be empty for exists and does not exist`);
        terms.push(operator === 'Exists' ? (labels) => key in labels : (labels) => !(key in labels));
        break;
      default:
        throw new Error(`"${operator}" is not a valid label selector operator`);
    }
  }
  return (labels) => terms.every((term) => term(labels));
}

function compiledOrError<T>(build: () => T): T | Error {
  try {
    return build();
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/**
 * The webhooks of configurations in the order upstream calls them: configurations sorted by
 * name, then each one's webhooks in order. Defaults are admissionregistration/v1's.
 */
export function compileWebhooks(configurations: readonly WebhookConfigurationObject[], mutating: boolean): CompiledWebhook[] {
  // By name in byte order, as Go's sort of strings.
  const nameOf = (c: WebhookConfigurationObject) => c.metadata?.name ?? '';
  const sorted = [...configurations].sort((a, b) => (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0));
  const compiled: CompiledWebhook[] = [];
  for (const configuration of sorted) {
    const configurationName = configuration.metadata?.name ?? '';
    (configuration.webhooks ?? []).forEach((spec, index) => {
      const timeoutSeconds = typeof spec.timeoutSeconds === 'number' ? Math.min(30, Math.max(1, spec.timeoutSeconds)) : 10;
      compiled.push({
        uid: `${configurationName}/${index}`,
        configurationName,
        spec,
        failurePolicy: spec.failurePolicy === 'Ignore' ? 'Ignore' : 'Fail',
        matchPolicy: spec.matchPolicy === 'Exact' ? 'Exact' : 'Equivalent',
        sideEffects: spec.sideEffects,
        timeoutMs: timeoutSeconds * 1000,
        reinvoke: mutating && spec.reinvocationPolicy === 'IfNeeded',
        namespaceSelector: compiledOrError(() => labelSelectorMatcher(spec.namespaceSelector)),
        objectSelector: compiledOrError(() => labelSelectorMatcher(spec.objectSelector)),
        matchConditions: compiledOrError(() =>
          (spec.matchConditions ?? []).map((condition) => {
            try {
              return { name: condition.name, program: compileCel(condition.expression, MATCH_CONDITION_VARIABLES) };
            } catch (error) {
              if (error instanceof CelCompileError) throw new Error(`matchCondition "${condition.name}": ${error.message}`);
              throw error;
            }
          }),
        ),
      });
    });
  }
  return compiled;
}
