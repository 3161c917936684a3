import { StatusError, errors } from '../status';
import { FieldError, fieldErrors } from './field-errors';
import { FieldRequirement, Selector, matchesFields, parseFieldSelector, parseLabelSelector } from './selectors';

/**
 * ListOptions from the query string, validated as k8s.io/apimachinery's
 * metainternalversion/validation.ValidateListOptions (422 `ListOptions.meta.k8s.io "" is
 * invalid: …`), and continue tokens in kube-apiserver's format.
 */

export interface ListQuery {
  readonly labelSelector?: Selector;
  readonly fieldSelector?: readonly FieldRequirement[];
  readonly resourceVersion: string;
  readonly resourceVersionMatch: string;
  readonly limit?: number;
  readonly continueToken: string;
  readonly allowWatchBookmarks: boolean;
  /** `undefined` when not given (its absence and `false` differ). */
  readonly sendInitialEvents?: boolean;
  /** `undefined` when not given. */
  readonly timeoutSeconds?: number;
}

/** As the query parameter conversion (Convert_Slice_string_To_bool): "0" and "false" (any case) are false, anything else true. */
function parseBool(query: URLSearchParams, name: string): boolean | undefined {
  const value = query.get(name);
  if (value === null) return undefined;
  return value !== '0' && value.toLowerCase() !== 'false';
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * An integer query parameter as strconv.ParseInt(s, 10, 64) reads it (an optional sign, decimal
 * digits, within int64): 400 otherwise. Beyond Number.MAX_SAFE_INTEGER it is clamped to it
 * (no list is that long, no timeout that far).
 */
function parseInt64(query: URLSearchParams, name: string): number | undefined {
  const value = query.get(name);
  if (value === null || value === '') return undefined;
  if (!/^[+-]?\d+$/.test(value)) throw errors.badRequest(`${name}: invalid integer value "${value}"`);
  const parsed = BigInt(value);
  if (parsed < INT64_MIN || parsed > INT64_MAX) throw errors.badRequest(`${name}: integer value "${value}" is out of range`);
  return Number(parsed > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : parsed < BigInt(Number.MIN_SAFE_INTEGER) ? Number.MIN_SAFE_INTEGER : parsed);
}

/** The longest timeout node's timers take (2^31-1 ms, ~24.8 days): a longer one fires at once (TimeoutOverflowWarning), ending a watch as it starts. */
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

function clampToTimer(seconds: number | undefined): number | undefined {
  return seconds === undefined ? undefined : Math.min(seconds, MAX_TIMER_SECONDS);
}

function invalidListOptions(causes: FieldError[]): StatusError {
  return errors.invalid('ListOptions', 'meta.k8s.io', '', causes);
}

/**
 * The `resourceVersion` of a GET, LIST or WATCH: '' when not given; 400 unless a non-negative
 * integer that is a revision storage can hold (etcd's are int64; exact in a Number up to 2^53).
 */
export function parseResourceVersion(query: URLSearchParams): string {
  const resourceVersion = query.get('resourceVersion') ?? '';
  if (resourceVersion !== '' && (!/^\d+$/.test(resourceVersion) || !Number.isSafeInteger(Number(resourceVersion)))) {
    throw errors.badRequest(`invalid resource version "${resourceVersion}": a resourceVersion is a non-negative integer`);
  }
  return resourceVersion;
}

/**
 * What a read at `resourceVersion` asks of storage, as the cacher reads it: '' a consistent read
 * (no option), "0" any revision (`minRevision: 0`), N any revision not older than N.
 */
export function notOlderThan(resourceVersion: string): { readonly minRevision?: number } {
  return resourceVersion === '' ? {} : { minRevision: Number(resourceVersion) };
}

export function parseListQuery(query: URLSearchParams, watch: boolean): ListQuery {
  const parsed: ListQuery = {
    labelSelector: parseLabelSelector(query.get('labelSelector')),
    fieldSelector: parseFieldSelector(query.get('fieldSelector')),
    resourceVersion: parseResourceVersion(query),
    resourceVersionMatch: query.get('resourceVersionMatch') ?? '',
    limit: parseInt64(query, 'limit'),
    continueToken: query.get('continue') ?? '',
    allowWatchBookmarks: parseBool(query, 'allowWatchBookmarks') ?? false,
    sendInitialEvents: parseBool(query, 'sendInitialEvents'),
    timeoutSeconds: clampToTimer(parseInt64(query, 'timeoutSeconds')),
  };
  const problems = watch ? watchProblems(parsed) : listProblems(parsed);
  if (problems.length > 0) throw invalidListOptions(problems);
  if (!watch && parsed.continueToken && parsed.resourceVersion !== '' && parsed.resourceVersion !== '0') {
    throw errors.badRequest('specifying resource version is not allowed when using continue');
  }
  return parsed;
}

function listProblems(options: ListQuery): FieldError[] {
  const problems: FieldError[] = [];
  const match = options.resourceVersionMatch;
  if (match) {
    if (!options.resourceVersion) problems.push(fieldErrors.forbidden('resourceVersionMatch', 'resourceVersionMatch is forbidden unless resourceVersion is provided'));
    if (options.continueToken) problems.push(fieldErrors.forbidden('resourceVersionMatch', 'resourceVersionMatch is forbidden when continue is provided'));
    if (match !== 'Exact' && match !== 'NotOlderThan') problems.push(fieldErrors.notSupported('resourceVersionMatch', match, ['Exact', 'NotOlderThan', '']));
    if (match === 'Exact' && options.resourceVersion === '0') {
      problems.push(fieldErrors.forbidden('resourceVersionMatch', 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'));
    }
  }
  if (options.sendInitialEvents) problems.push(fieldErrors.forbidden('sendInitialEvents', 'sendInitialEvents is forbidden for list'));
  if (options.limit !== undefined && options.limit < 0) problems.push(fieldErrors.invalid('limit', options.limit, 'must be greater than or equal to 0'));
  return problems;
}

function watchProblems(options: ListQuery): FieldError[] {
  const problems: FieldError[] = [];
  const match = options.resourceVersionMatch;
  if (options.sendInitialEvents !== undefined) {
    if (match !== 'NotOlderThan') problems.push(fieldErrors.forbidden('resourceVersionMatch', 'sendInitialEvents requires setting resourceVersionMatch to NotOlderThan'));
    if (options.sendInitialEvents && !options.allowWatchBookmarks) {
      problems.push(fieldErrors.forbidden('allowWatchBookmarks', 'allowWatchBookmarks must be set to true when sendInitialEvents is set'));
    }
  }
  if (match) {
    if (options.sendInitialEvents === undefined) problems.push(fieldErrors.forbidden('resourceVersionMatch', 'resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided'));
    if (match !== 'NotOlderThan') problems.push(fieldErrors.notSupported('resourceVersionMatch', match, ['NotOlderThan']));
    if (options.continueToken) problems.push(fieldErrors.forbidden('resourceVersionMatch', 'resourceVersionMatch is forbidden when continue is provided'));
  }
  if (options.timeoutSeconds !== undefined && options.timeoutSeconds < 0) {
    problems.push(fieldErrors.invalid('timeoutSeconds', options.timeoutSeconds, 'must be greater than or equal to 0'));
  }
  return problems;
}

/** The storage filter for a label and field selector; `undefined` when there is none. */
export function selectorFilter(options: ListQuery): ((value: Readonly<Record<string, unknown>>) => boolean) | undefined {
  const { labelSelector, fieldSelector } = options;
  if (!labelSelector && !fieldSelector) return undefined;
  return (value) => {
    const metadata = (value.metadata ?? {}) as { name?: string; namespace?: string; labels?: Record<string, string> };
    if (labelSelector && !labelSelector(metadata.labels)) return false;
    if (fieldSelector && !matchesFields(fieldSelector, metadata.name ?? '', metadata.namespace ?? '')) return false;
    return true;
  };
}

/** A continue token: base64url JSON `{"v":"meta.k8s.io/v1","rv":N,"start":"<key after prefix>"}`, as storage.EncodeContinue. */
export function encodeContinue(revision: number, startKey: string, prefix: string): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: revision, start: startKey.slice(prefix.length) })).toString('base64url');
}

/** The revision (-1: the latest, after an expired token) and the key to continue from; 400 when malformed. */
export function decodeContinue(token: string, prefix: string): { revision: number; startKey: string } {
  let decoded: { v?: unknown; rv?: unknown; start?: unknown };
  try {
    decoded = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as typeof decoded;
  } catch {
    throw errors.badRequest('continue key is not valid: the continue token is not base64-encoded JSON');
  }
  if (decoded === null || typeof decoded !== 'object' || decoded.v !== 'meta.k8s.io/v1') {
    throw errors.badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
  }
  if (typeof decoded.rv !== 'number' || !Number.isSafeInteger(decoded.rv) || (decoded.rv < 1 && decoded.rv !== -1)) {
    throw errors.badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
  }
  if (typeof decoded.start !== 'string' || decoded.start === '') {
    throw errors.badRequest('continue key is not valid: encoded start key is empty');
  }
  if (decoded.start.startsWith('/') || decoded.start.split('/').includes('..')) {
    throw errors.badRequest('continue key is not valid: encoded start key escapes the listed prefix');
  }
  return { revision: decoded.rv, startKey: prefix + decoded.start };
}

/**
 * 410 Expired for a continue token whose snapshot was compacted, as etcd3's
 * handleCompactedErrorForPaging: with a new token in `metadata.continue` that continues from
 * the same key at the latest revision.
 */
export function expiredContinue(startKey: string, prefix: string): StatusError {
  const message =
    'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.';
  const gone = errors.gone(message);
  const token = encodeContinue(-1, startKey, prefix);
  // metav1.Status carries ListMeta; the catalogue's Status type has no room for it, hence the cast.
  return new StatusError({ ...gone.status, metadata: { continue: token } as unknown as Record<string, never> });
}
