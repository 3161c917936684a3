import { k8s } from 'cdk8s-plus-28';
import { _checkDns1123Subdomain, _checkLabels } from './_validate';

/**
 * Where a workload's pods may run and how their images are pulled: the knobs a platform sets for
 * every workload it installs (metrics-server's manifests carry the same).
 */
export interface PodPlacement {
  /** @default DEFAULT_NODE_SELECTOR: Linux nodes only (the images are Linux images) */
  readonly nodeSelector?: Readonly<Record<string, string>>;
  /** @default - none */
  readonly tolerations?: readonly k8s.Toleration[];
  /** Secrets of type `kubernetes.io/dockerconfigjson` in the namespace, for a private registry. @default - none */
  readonly imagePullSecrets?: readonly string[];
  /** @default - none */
  readonly priorityClassName?: string;
}

/** The pods' node selector unless one is given: a Windows node cannot run the images. */
export const DEFAULT_NODE_SELECTOR: Readonly<Record<string, string>> = { 'kubernetes.io/os': 'linux' };

const TOLERATION_EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'];

/**
 * The pod-spec fields of `placement`, checked (`what` names the prop in errors), to spread into
 * a pod template's spec; fields not set are absent.
 */
export function _podPlacementSpec(what: string, placement: PodPlacement = {}): Pick<k8s.PodSpec, 'nodeSelector' | 'tolerations' | 'imagePullSecrets' | 'priorityClassName'> {
  const nodeSelector = placement.nodeSelector ?? DEFAULT_NODE_SELECTOR;
  _checkLabels(`${what}.nodeSelector`, nodeSelector);
  placement.tolerations?.forEach((toleration, i) => {
    if (toleration.effect !== undefined && !TOLERATION_EFFECTS.includes(toleration.effect)) {
      throw new Error(`${what}.tolerations[${i}].effect "${toleration.effect}" is not one of ${TOLERATION_EFFECTS.join(', ')} (or unset for every effect)`);
    }
    if (toleration.operator === 'Exists' && toleration.value !== undefined) {
      throw new Error(`${what}.tolerations[${i}] has operator Exists and value "${toleration.value}": Exists takes no value`);
    }
    if (toleration.key === undefined && toleration.operator !== 'Exists') {
      throw new Error(`${what}.tolerations[${i}] has no key: only operator Exists may leave it out (it then tolerates every taint)`);
    }
  });
  placement.imagePullSecrets?.forEach((name, i) => _checkDns1123Subdomain(`${what}.imagePullSecrets[${i}]`, name));
  if (placement.priorityClassName !== undefined) _checkDns1123Subdomain(`${what}.priorityClassName`, placement.priorityClassName);
  return {
    ...(Object.keys(nodeSelector).length > 0 ? { nodeSelector: { ...nodeSelector } } : {}),
    ...(placement.tolerations && placement.tolerations.length > 0 ? { tolerations: placement.tolerations.map((t) => ({ ...t })) } : {}),
    ...(placement.imagePullSecrets && placement.imagePullSecrets.length > 0 ? { imagePullSecrets: placement.imagePullSecrets.map((name) => ({ name })) } : {}),
    ...(placement.priorityClassName !== undefined ? { priorityClassName: placement.priorityClassName } : {}),
  };
}
