import { FieldError, fieldErrors } from '../field-errors';
import { KindRules, KubeObject, isObject } from '../rules';

/**
 * Flunder, as kubernetes/sample-apiserver defines it (pkg/apis/wardle):
 *
 * - internal form (= v1beta1's spec): `{flunderReference, fischerReference, referenceType}`;
 * - v1alpha1: `{reference, referenceType}` — `referenceType` says which reference `reference` is,
 *   converted as v1alpha1/conversion.go does, and defaulted to `Flunder` when `reference` is set
 *   (v1alpha1/defaults.go);
 * - validation of the internal form: validation/validation.go's ValidateFlunderSpec, messages verbatim.
 */

type Spec = Record<string, unknown>;

const FLUNDER = 'Flunder';
const FISCHER = 'Fischer';

function specOf(object: Readonly<KubeObject>): Spec {
  return isObject(object.spec) ? object.spec : {};
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** `target[key] = value` as a spread defines it: an own "__proto__" key (JSON.parse makes them) stays a key, not the prototype. */
function define(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

/**
 * A copy of `object` with `spec` in its place when the source had one; Go's omitempty drops empty
 * strings. Copied key by key, not spread (see versioned in server/storage/memory.ts).
 */
function withSpec(object: Readonly<KubeObject>, spec: Spec): KubeObject {
  const copy: KubeObject = {};
  for (const key of Object.keys(object)) define(copy, key, object[key]);
  if (object.spec === undefined) return copy;
  const compact: Spec = {};
  for (const key of Object.keys(spec)) {
    const value = spec[key];
    if (value !== '' && value !== undefined) define(compact, key, value);
  }
  copy.spec = compact;
  return copy;
}

export const flunderRules: KindRules = {
  toInternal(object, version) {
    if (version !== 'v1alpha1') return object as KubeObject;
    const spec = specOf(object);
    const referenceType = str(spec.referenceType);
    const reference = str(spec.reference);
    // Convert_v1alpha1_FlunderSpec_To_wardle_FlunderSpec: an unknown referenceType converts to nothing.
    if (referenceType === FLUNDER) return withSpec(object, { flunderReference: reference, referenceType });
    if (referenceType === FISCHER) return withSpec(object, { fischerReference: reference, referenceType });
    return withSpec(object, {});
  },

  fromInternal(object, version) {
    if (version !== 'v1alpha1') return object as KubeObject;
    const spec = specOf(object);
    const referenceType = str(spec.referenceType);
    if (referenceType === FLUNDER) return withSpec(object, { reference: str(spec.flunderReference), referenceType });
    if (referenceType === FISCHER) return withSpec(object, { reference: str(spec.fischerReference), referenceType });
    return withSpec(object, {});
  },

  default(object, version) {
    if (version !== 'v1alpha1') return;
    const spec = specOf(object);
    // SetDefaults_FlunderSpec
    if (object.spec === spec && !str(spec.referenceType) && str(spec.reference)) spec.referenceType = FLUNDER;
  },

  validate(object): FieldError[] {
    const spec = specOf(object);
    const flunderReference = str(spec.flunderReference);
    const fischerReference = str(spec.fischerReference);
    const referenceType = str(spec.referenceType);
    const errors: FieldError[] = [];
    if (flunderReference && fischerReference) {
      errors.push(fieldErrors.invalid('spec.fischerReference', fischerReference, 'cannot be set with flunderReference at the same time'));
    } else if (flunderReference && referenceType !== FLUNDER) {
      errors.push(fieldErrors.invalid('spec.flunderReference', flunderReference, 'cannot be set if referenceType is not Flunder'));
    } else if (fischerReference && referenceType !== FISCHER) {
      errors.push(fieldErrors.invalid('spec.fischerReference', fischerReference, 'cannot be set if referenceType is not Fischer'));
    } else if (!fischerReference && referenceType === FISCHER) {
      errors.push(fieldErrors.required('spec.fischerReference', 'cannot be empty if referenceType is Fischer'));
    } else if (!flunderReference && referenceType === FLUNDER) {
      errors.push(fieldErrors.required('spec.flunderReference', 'cannot be empty if referenceType is Flunder'));
    }
    if (referenceType && referenceType !== FISCHER && referenceType !== FLUNDER) {
      errors.push(fieldErrors.invalid('spec.referenceType', referenceType, 'must be Flunder or Fischer'));
    }
    return errors;
  },
};
