import { errors } from '../status';
import type { AdmissionAttributes, AdmissionContext, AdmissionPlugin } from './types';

/**
 * BanFlunder, as kubernetes/sample-apiserver's plugin/banflunder: creating a Flunder whose
 * name is listed in any Fischer's `disallowedFlunders` is refused with 403 Forbidden
 * `flunders.wardle.example.com "x" is forbidden: this name may not be used, please change the
 * resource name`. Only creates are checked, as upstream.
 */

export interface BanFlunderOptions {
  /** @default 'wardle.example.com' */
  readonly group?: string;
  /** The kind that is checked. @default 'Flunder' */
  readonly kind?: string;
  /** The kind listing banned names in `disallowedFlunders`. @default 'Fischer' */
  readonly banningKind?: string;
}

export function banFlunder(options: BanFlunderOptions = {}): AdmissionPlugin {
  const group = options.group ?? 'wardle.example.com';
  const kind = options.kind ?? 'Flunder';
  const banningKind = options.banningKind ?? 'Fischer';
  return {
    name: 'BanFlunder',
    operations: ['CREATE'],
    async admit(attributes: AdmissionAttributes, context: AdmissionContext): Promise<void> {
      if (attributes.group !== group || attributes.kind !== kind) return;
      const metadata = (attributes.object?.metadata ?? {}) as { name?: unknown };
      const name = typeof metadata.name === 'string' ? metadata.name : '';
      for (const fischer of await context.list(banningKind)) {
        const disallowed = fischer.disallowedFlunders;
        if (Array.isArray(disallowed) && disallowed.includes(name)) {
          throw errors.forbiddenByAdmission({ group, resource: attributes.resource }, name, 'this name may not be used, please change the resource name');
        }
      }
    },
  };
}
