import { banFlunder } from '../../admission/ban-flunder';
import type { AdmissionPlugin } from '../../admission/types';
import type { ApiRules } from '../rules';
import { flunderRules } from './flunder';

/**
 * The per-kind rules and admission of `wardle.example.com`, as kubernetes/sample-apiserver has
 * them. Fischer needs no rules: its definition says everything.
 */
export const wardleRules: ApiRules = { Flunder: flunderRules };

/** sample-apiserver's admission chain after NamespaceLifecycle. */
export function wardleAdmission(): AdmissionPlugin[] {
  return [banFlunder()];
}

export { flunderRules };
