import { isDns1035Label, isDns1123Label, isDns1123Subdomain } from '../apis';

/**
 * Constructor-time checks shared by the constructs. Each throws an error that names the prop,
 * the value received and what is expected, so a bad input fails at synth, not in the cluster.
 */

export function _checkDns1123Label(prop: string, value: string): string {
  if (!isDns1123Label(value)) {
    throw new Error(`${prop} "${value}" is not a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)`);
  }
  return value;
}

/** Service names are DNS-1035 labels: kube-apiserver refuses a Service named "9lives". */
export function _checkDns1035Label(prop: string, value: string): string {
  if (!isDns1035Label(value)) {
    throw new Error(
      `${prop} "${value}" is not a valid DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters; it names a Service)`,
    );
  }
  return value;
}

export function _checkDns1123Subdomain(prop: string, value: string): string {
  if (!isDns1123Subdomain(value)) {
    throw new Error(
      `${prop} "${value}" is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)`,
    );
  }
  return value;
}

export function _checkIntegerInRange(prop: string, value: number, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
    throw new Error(`${prop} ${String(value)} is not valid (expected ${range})`);
  }
  return value;
}
