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

const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;

/**
 * Label keys and values as the API server checks them (apimachinery's IsQualifiedName and
 * IsValidLabelValue): a key is an optional DNS-1123 subdomain prefix and `/`, then a name of at
 * most 63 characters; a value is empty or such a name.
 */
export function _checkLabels(prop: string, labels: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  for (const [key, value] of Object.entries(labels)) {
    const slash = key.lastIndexOf('/');
    const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
    const name = key.slice(slash + 1);
    if ((prefix !== undefined && !isDns1123Subdomain(prefix)) || name.length > 63 || !LABEL_NAME.test(name)) {
      throw new Error(
        `${prop}: key "${key}" is not a label key (expected an optional DNS-1123 subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. "app.kubernetes.io/part-of")`,
      );
    }
    if (typeof value !== 'string' || (value !== '' && (value.length > 63 || !LABEL_NAME.test(value)))) {
      throw new Error(`${prop}: value "${String(value)}" of "${key}" is not a label value (expected at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, or empty)`);
    }
  }
  return labels;
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

/** What a container image reference needs before Kubernetes (or a registry) can look at it: text without spaces. */
export function _checkImageReference(prop: string, value: string, example: string): string {
  if (typeof value !== 'string' || value.trim() === '' || /\s/.test(value)) {
    throw new Error(`${prop} ${JSON.stringify(value)} is not a valid image reference (expected e.g. "${example}", no spaces)`);
  }
  return value;
}

/**
 * Kubernetes' quantity grammar (k8s.io/apimachinery resource.Quantity): a signed decimal number,
 * then a binary suffix (Ki … Ei), a decimal one (n, u, m, k, M, G, T, P, E) or an exponent
 * (e3, E-2: a whole number). "E" alone is exa; "1E3" is 1000.
 */
const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([eE][+-]?\d+)|(n|u|m|k|M|G|T|P|E)?)$/;
const QUANTITY_MULTIPLIERS: Readonly<Record<string, number>> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

/**
 * The value of a Kubernetes quantity such as `1Gi`, `500M`, `1.5e9` or `1073741824`, in its base
 * unit (bytes for a volume), rounded up to a whole unit as Kubernetes rounds a storage request.
 */
export function _quantityValue(prop: string, value: string): number {
  const match = typeof value === 'string' ? QUANTITY.exec(value) : null;
  if (match === null) {
    throw new Error(`${prop} ${JSON.stringify(value)} is not a Kubernetes quantity (expected a number with an optional suffix, e.g. "1Gi", "512Mi" or "2G")`);
  }
  const [, number, binary, exponent, decimal] = match;
  const scaled = exponent !== undefined ? Number(`${number}${exponent}`) : Number(number) * QUANTITY_MULTIPLIERS[binary ?? decimal ?? ''];
  return Math.ceil(scaled);
}

export const CRON_MACROS = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'] as const;

/** The five fields of a CronJob schedule, with the bounds and names robfig/cron v3 (Kubernetes' parser) gives them. */
const CRON_FIELDS: readonly { readonly name: string; readonly min: number; readonly max: number; readonly names?: readonly string[]; readonly firstName?: number }[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'], firstName: 1 },
  { name: 'day of week', min: 0, max: 6, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'], firstName: 0 },
];

/** Go's time.ParseDuration syntax (what `@every` takes): "0", or numbers each with a unit, e.g. "1h30m". */
const GO_DURATION = /^[-+]?(?:0|(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)$/;
const GO_DURATION_UNIT_NANOSECONDS: Readonly<Record<string, number>> = { ns: 1, us: 1e3, '\u00b5s': 1e3, '\u03bcs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
const GO_MAX_DURATION_NANOSECONDS = 2 ** 63 - 1;

/**
 * Fails unless a CronJob's `spec.schedule` is one the Kubernetes API accepts on create: what
 * robfig/cron v3's `ParseStandard` parses (5 fields; `*` or `?`; numbers, month and weekday
 * names, ranges, steps and lists; the macros; `@every <duration>`), and no `TZ` (the API refuses
 * `TZ=`/`CRON_TZ=` prefixes in favour of `spec.timeZone`). Its quirks are kept: `?` is allowed in
 * every field, a range starting with `*` ignores the rest, empty list items are skipped, weekdays
 * run 0-6 (7 is refused), and seconds (6 fields), `L`, `W` and `#` are refused. One stricter
 * refusal: a field of commas alone (accepted by the API, but the CronJob would never run).
 */
export function _checkCronSchedule(prop: string, schedule: string): string {
  const refuse = (why: string): never => {
    throw new Error(
      `${prop} ${JSON.stringify(schedule)} is not a cron schedule: ${why} (expected 5 fields "minute hour day-of-month month day-of-week", e.g. "0 3 * * *", or one of ${CRON_MACROS.join(', ')})`,
    );
  };
  if (typeof schedule !== 'string' || schedule === '') return refuse('it is empty');
  if (schedule.includes('TZ')) refuse('Kubernetes refuses TZ= and CRON_TZ= in a schedule (it has a timeZone field instead)');
  if (schedule.startsWith('@')) {
    if ((CRON_MACROS as readonly string[]).includes(schedule)) return schedule;
    if (schedule.startsWith('@every ')) {
      const duration = schedule.slice('@every '.length);
      if (!GO_DURATION.test(duration)) refuse(`"${duration}" is not a duration (expected e.g. "@every 1h30m")`);
      const nanoseconds = [...duration.matchAll(/(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/g)].reduce(
        (sum, [, amount, unit]) => sum + Number(amount) * GO_DURATION_UNIT_NANOSECONDS[unit],
        0,
      );
      if (nanoseconds > GO_MAX_DURATION_NANOSECONDS) refuse(`"${duration}" is longer than a Go duration holds (about 292 years)`);
      return schedule;
    }
    return refuse(`"${schedule}" is not a known macro`);
  }
  const fields = schedule.trim() === '' ? [] : schedule.trim().split(/\s+/);
  if (fields.length !== CRON_FIELDS.length) refuse(`it has ${fields.length} field${fields.length === 1 ? '' : 's'}`);
  fields.forEach((field, index) => {
    const spec = CRON_FIELDS[index];
    // Go's strconv.Atoi: an optional sign, then decimal digits.
    const integer = (text: string): number => (/^[+-]?\d+$/.test(text) ? Number(text) : NaN);
    const value = (text: string): number => {
      const named = spec.names?.indexOf(text.toLowerCase()) ?? -1;
      const number = named >= 0 ? named + (spec.firstName ?? 0) : integer(text);
      if (Number.isNaN(number)) refuse(`the ${spec.name} "${text}" is not a number${spec.names ? ' or a name' : ''}`);
      if (number < 0) refuse(`the ${spec.name} "${text}" is negative`);
      return number;
    };
    // Like robfig's strings.FieldsFunc, empty list items are skipped ("1,,2" is "1,2"); a field of
    // commas alone, which the API accepts but which would never fire, is refused.
    const items = field.split(',').filter((item) => item !== '');
    if (items.length === 0) refuse(`the ${spec.name} field "${field}" has no value`);
    for (const item of items) {
      const rangeAndStep = item.split('/');
      if (rangeAndStep.length > 2) refuse(`the ${spec.name} "${item}" has more than one "/"`);
      const lowAndHigh = rangeAndStep[0].split('-');
      let [start, end] = [spec.min, spec.max];
      if (lowAndHigh[0] !== '*' && lowAndHigh[0] !== '?') {
        if (lowAndHigh.length > 2) refuse(`the ${spec.name} "${item}" has more than one "-"`);
        start = value(lowAndHigh[0]);
        end = lowAndHigh.length === 2 ? value(lowAndHigh[1]) : start;
      }
      if (rangeAndStep.length === 2) {
        const step = integer(rangeAndStep[1]);
        if (Number.isNaN(step) || step < 0) refuse(`the ${spec.name} step "${rangeAndStep[1]}" is not a number`);
        if (step === 0) refuse(`the ${spec.name} step in "${item}" is 0 (expected a positive number)`);
        // "N/step" means "N-max/step".
        if (lowAndHigh.length === 1) end = spec.max;
      }
      if (start < spec.min || end > spec.max) refuse(`the ${spec.name} "${item}" is not from ${spec.min} to ${spec.max}`);
      if (start > end) refuse(`the ${spec.name} range "${item}" runs backwards`);
    }
  });
  return schedule;
}
