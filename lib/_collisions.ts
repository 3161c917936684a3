import { ApiObject } from 'cdk8s';
import { Construct, IConstruct } from 'constructs';

/**
 * One app may hold several servers and CRD sets; nothing in cdk8s stops two of them from
 * emitting the same object (servers for `widgets.acme.io` and `widgets.other.io` both default to
 * `widgets-apiserver`), and `kubectl apply` would then let the last file silently win. Checked
 * once per app, when it synthesizes, over every object of every chart.
 */

const CHECKED = Symbol.for('cdk8s-api-extension.collision-check');

/** Registers the check on the app that holds `scope` (once per app). */
export function _checkCollisionsAtSynth(scope: Construct): void {
  const root = scope.node.root as IConstruct & { [CHECKED]?: true };
  if (root[CHECKED]) return;
  Object.defineProperty(root, CHECKED, { value: true });
  root.node.addValidation({ validate: () => collisionErrors(root) });
}

function groupOf(apiVersion: string): string {
  return apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
}

function collisionErrors(root: IConstruct): string[] {
  const errors: string[] = [];
  const byIdentity = new Map<string, ApiObject>();
  const servedBy = new Map<string, { kind: string; path: string }>();
  for (const construct of root.node.findAll()) {
    if (!ApiObject.isApiObject(construct)) continue;
    const namespace = construct.metadata.namespace;
    const identity = `${groupOf(construct.apiVersion)}/${construct.kind}/${namespace ?? ''}/${construct.name}`;
    const first = byIdentity.get(identity);
    // Two servers sharing a namespace both emit it, alike: no conflict. Any other object twice is
    // one: even alike (two servers' Deployments with the default names), both APIServices would
    // send their groups to whichever Deployment the cluster ends up with.
    const sharedNamespace = construct.kind === 'Namespace' && first !== undefined && JSON.stringify(first.toJson()) === JSON.stringify(construct.toJson());
    if (first && !sharedNamespace) {
      errors.push(
        `${construct.kind} "${construct.name}"${namespace === undefined ? '' : ` in namespace "${namespace}"`} is emitted twice: by ${first.node.path} and by ${construct.node.path} ` +
          "(kubectl apply would let one overwrite the other; give the servers different names: AggregatedApiServer's name prop, or --name)",
      );
    } else if (!first) {
      byIdentity.set(identity, construct);
    }
    if (construct.kind === 'APIService' || construct.kind === 'CustomResourceDefinition') {
      const group = (construct.toJson() as { spec?: { group?: string } }).spec?.group;
      if (group === undefined) continue;
      const other = servedBy.get(group);
      if (other && other.kind !== construct.kind) {
        errors.push(
          `API group "${group}" is served both by an aggregated API server (APIService at ${other.kind === 'APIService' ? other.path : construct.node.path}) ` +
            `and by CRDs (CustomResourceDefinition at ${other.kind === 'APIService' ? construct.node.path : other.path}): kube-apiserver would route the group's ` +
            'versions to one or the other (expected one way to serve a group: put the CRDs in a group of their own)',
        );
      } else if (!other) {
        servedBy.set(group, { kind: construct.kind, path: construct.node.path });
      }
    }
  }
  return errors;
}
