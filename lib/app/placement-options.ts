import * as fs from 'node:fs';
import { k8s } from 'cdk8s-plus-28';
import * as YAML from 'yaml';
import { _checkDns1123Subdomain, _checkLabels } from '../_validate';
import { GENERIC_APISERVER_RULES } from '../api-server-cluster-role';
import { booleanOption, checkFlag, UsageError } from './options';

/**
 * The CLI's production knobs: whether the Namespace is emitted, labels on every object, where the
 * pods run (priority class, node selector, tolerations), image pull secrets, and the server's
 * extra RBAC rules. Each repeatable flag also takes a comma-separated list (as its APIEXT_
 * variable must) or, in a config file, a YAML list.
 */
export interface PlacementSynthOptions {
  /** @default - true, unless the namespace is one Kubernetes creates itself */
  readonly createNamespace?: boolean;
  readonly labels?: Readonly<Record<string, string>>;
  readonly priorityClassName?: string;
  readonly nodeSelector?: Readonly<Record<string, string>>;
  readonly tolerations?: readonly k8s.Toleration[];
  readonly imagePullSecrets?: readonly string[];
  readonly serverRules?: readonly k8s.PolicyRule[];
}

const GROUP = 'Placement and labels:';

/** The yargs declarations of these flags (strings: the parsers below give the errors). */
export const PLACEMENT_FLAGS = {
  'create-namespace': {
    type: 'string',
    group: GROUP,
    describe: 'emit the Namespace (labelled restricted); false when it exists already and is shared: then `kubectl delete -f dist/` leaves it alone',
    defaultDescription: 'true, except for default, kube-system, kube-public and kube-node-lease',
  },
  label: { type: 'string', group: GROUP, describe: 'key=value on every object (repeatable; e.g. to select them with kubectl apply --prune -l)' },
  'priority-class-name': { type: 'string', group: GROUP, describe: "the pods' PriorityClass (server and etcd)", defaultDescription: 'none' },
  'node-selector': { type: 'string', group: GROUP, describe: "key=value the pods' nodes must carry (repeatable; server and etcd)", defaultDescription: 'kubernetes.io/os=linux' },
  toleration: {
    type: 'string',
    group: GROUP,
    describe: 'a taint the pods tolerate, as kubectl taint writes it: key[=value][:effect] (repeatable; no value: any value; no effect: every effect)',
  },
  'image-pull-secret': { type: 'string', group: GROUP, describe: 'a docker-registry Secret in the namespace for pulling the images (repeatable)' },
  'server-rules': {
    type: 'string',
    group: GROUP,
    describe: 'more RBAC rules for the server: "generic-apiserver" (what a k8s.io/apiserver image reads: admission webhooks, flow control) or a YAML/JSON file of PolicyRules',
    defaultDescription: 'none: namespaces get/list/watch, all the bundled server reads',
  },
} as const;

type PlacementArgs = { readonly [flag in keyof typeof PLACEMENT_FLAGS]?: unknown };

/** A repeatable flag's values: repeated flags, comma-separated text, or a config file's list. */
function values(raw: unknown): string[] {
  if (raw === undefined) return [];
  const items = Array.isArray(raw) ? raw.map(String) : [String(raw)];
  return items.flatMap((item) => item.split(',')).map((item) => item.trim()).filter((item) => item !== '');
}

/** `key=value` pairs into a map; a key given twice is refused rather than silently overwritten. */
function keyValues(flag: string, raw: unknown): Record<string, string> | undefined {
  const pairs = values(raw);
  if (pairs.length === 0) return undefined;
  const map: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--${flag} "${pair}" is not key=value (e.g. --${flag} app.kubernetes.io/part-of=platform)`);
    const key = pair.slice(0, eq);
    if (key in map) throw new UsageError(`--${flag} gives "${key}" twice ("${key}=${map[key]}" and "${pair}")`);
    map[key] = pair.slice(eq + 1);
  }
  return checkFlag(() => _checkLabels(`--${flag}`, map)) as Record<string, string>;
}

const EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'];

/** `key[=value][:effect]`, as `kubectl taint` writes a taint. */
function toleration(text: string): k8s.Toleration {
  const example = '(expected key[=value][:effect], e.g. dedicated=platform:NoSchedule)';
  const colon = text.lastIndexOf(':');
  const effect = colon >= 0 ? text.slice(colon + 1) : undefined;
  if (effect !== undefined && !EFFECTS.includes(effect)) {
    throw new UsageError(`--toleration "${text}": the effect "${effect}" is not one of ${EFFECTS.join(', ')} ${example}`);
  }
  const taint = colon >= 0 ? text.slice(0, colon) : text;
  const eq = taint.indexOf('=');
  const key = eq >= 0 ? taint.slice(0, eq) : taint;
  if (key === '') throw new UsageError(`--toleration "${text}" has no key ${example}`);
  checkFlag(() => _checkLabels('--toleration', { [key]: eq >= 0 ? taint.slice(eq + 1) : '' }));
  return {
    key,
    ...(eq >= 0 ? { operator: 'Equal', value: taint.slice(eq + 1) } : { operator: 'Exists' }),
    ...(effect !== undefined ? { effect } : {}),
  };
}

/** A PolicyRule as RBAC takes it: verbs, and either API groups with resources or non-resource URLs. */
function policyRule(source: string, rule: unknown, i: number): k8s.PolicyRule {
  const where = `--server-rules "${source}": rule ${i + 1}`;
  if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw new UsageError(`${where} is not a mapping (expected e.g. {apiGroups: [""], resources: [configmaps], verbs: [get]})`);
  const r = rule as Record<string, unknown>;
  const known = ['apiGroups', 'resources', 'resourceNames', 'nonResourceURLs', 'verbs'];
  const unknown = Object.keys(r).find((key) => !known.includes(key));
  if (unknown !== undefined) throw new UsageError(`${where}: "${unknown}" is not a PolicyRule field (expected ${known.join(', ')})`);
  for (const key of known) {
    const value = r[key];
    if (value !== undefined && !(Array.isArray(value) && value.every((item) => typeof item === 'string'))) throw new UsageError(`${where}: ${key} is not a list of strings`);
  }
  const list = (key: string) => (r[key] as string[] | undefined) ?? [];
  if (list('verbs').length === 0) throw new UsageError(`${where} has no verbs`);
  if (list('nonResourceURLs').length > 0 ? list('resources').length > 0 : list('resources').length === 0 || r.apiGroups === undefined) {
    throw new UsageError(`${where} needs apiGroups and resources, or nonResourceURLs (not both)`);
  }
  return r as unknown as k8s.PolicyRule;
}

function serverRules(raw: unknown): k8s.PolicyRule[] | undefined {
  if (raw === undefined) return undefined;
  const source = String(raw);
  if (source === 'generic-apiserver') return [...GENERIC_APISERVER_RULES];
  let text: string;
  try {
    text = fs.readFileSync(source, 'utf8');
  } catch (error) {
    throw new UsageError(`--server-rules "${source}" is neither "generic-apiserver" nor a readable file: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = YAML.parse(text);
  } catch (error) {
    throw new UsageError(`--server-rules "${source}" is not valid YAML or JSON: ${(error as Error).message.split('\n')[0]}`);
  }
  if (!Array.isArray(parsed)) throw new UsageError(`--server-rules "${source}" must hold a list of PolicyRules (as a ClusterRole's rules)`);
  return parsed.map((rule, i) => policyRule(source, rule, i));
}

/** Parses the flags above; throws UsageError naming the flag, the value and what is expected. */
export function parsePlacementOptions(args: PlacementArgs): PlacementSynthOptions {
  const priorityClassName = args['priority-class-name'] === undefined ? undefined : String(args['priority-class-name']);
  if (priorityClassName !== undefined) checkFlag(() => _checkDns1123Subdomain('--priority-class-name', priorityClassName));
  const imagePullSecrets = values(args['image-pull-secret']);
  imagePullSecrets.forEach((name) => checkFlag(() => _checkDns1123Subdomain('--image-pull-secret', name)));
  const tolerations = values(args.toleration).map(toleration);
  return {
    createNamespace: args['create-namespace'] === undefined ? undefined : booleanOption('create-namespace', args['create-namespace']),
    labels: keyValues('label', args.label),
    priorityClassName,
    nodeSelector: keyValues('node-selector', args['node-selector']),
    tolerations: tolerations.length > 0 ? tolerations : undefined,
    imagePullSecrets: imagePullSecrets.length > 0 ? imagePullSecrets : undefined,
    serverRules: serverRules(args['server-rules']),
  };
}
