/**
 * A model of k8s.io/apimachinery's label selector requirements, for property tests that compare
 * the server's selectors with Go's: what a requirement is, and labels.Requirement.Matches.
 */
export type LabelRequirement =
  | { op: 'exists' | '!'; key: string }
  | { op: '=' | '==' | '!='; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: '>' | '<'; key: string; value: string };

/** labels.Requirement.Matches; `in ()` and `notin ()` are the set {""}, as Go's parser reads them. */
export function goMatches(r: LabelRequirement, labels: Record<string, string>): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, r.key);
  switch (r.op) {
    case 'exists':
      return has;
    case '!':
      return !has;
    case '=':
    case '==':
      return has && labels[r.key] === r.value;
    case '!=':
      return !has || labels[r.key] !== r.value;
    case 'in':
      return has && (r.values.length === 0 ? [''] : r.values).includes(labels[r.key]);
    case 'notin':
      return !has || !(r.values.length === 0 ? [''] : r.values).includes(labels[r.key]);
    case '>':
    case '<': {
      if (!has || !/^[+-]?\d+$/.test(labels[r.key])) return false;
      const actual = Number(labels[r.key]);
      return r.op === '>' ? actual > Number(r.value) : actual < Number(r.value);
    }
  }
}
