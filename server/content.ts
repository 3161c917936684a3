/**
 * Content negotiation: `Accept` and `Content-Type` parsing and matching, with the media type
 * parameters Kubernetes uses to ask for a transformed response (`as`, `g`, `v`), as
 * k8s.io/apiserver/pkg/endpoints/handlers/negotiation does it.
 *
 * The server speaks JSON only. Clients that prefer protobuf (the garbage collector, the
 * namespace controller) list it first and JSON after it; the protobuf clauses simply match no
 * offer and the JSON ones win.
 */

/** One clause of an `Accept` header, or a `Content-Type`. Type, subtype and parameter names are lowercased. */
export interface MediaRange {
  readonly type: string;
  readonly subtype: string;
  /** Parameters other than `q`, names lowercased, values as sent (unquoted). */
  readonly params: Readonly<Record<string, string>>;
  /** Quality, 0–1. @default 1 */
  readonly q: number;
}

/** A media type a handler can produce; `params` must all be matched exactly by a clause that names them. */
export interface MediaOffer<T = unknown> {
  readonly type: string;
  readonly subtype: string;
  readonly params?: Readonly<Record<string, string>>;
  /** What the handler needs to know when this offer is chosen. */
  readonly value: T;
}

function parseClause(clause: string): MediaRange | undefined {
  const [mediaType, ...rawParams] = clause.split(';');
  const [type, subtype] = mediaType.trim().toLowerCase().split('/');
  if (!type || !subtype) return undefined;
  const params: Record<string, string> = {};
  let q = 1;
  for (const raw of rawParams) {
    const eq = raw.indexOf('=');
    if (eq < 0) continue;
    const name = raw.slice(0, eq).trim().toLowerCase();
    let value = raw.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (name === 'q') {
      const parsed = Number(value);
      q = Number.isFinite(parsed) ? Math.min(Math.max(parsed, 0), 1) : 1;
    } else if (name) {
      params[name] = value;
    }
  }
  return { type, subtype, params, q };
}

/** Parsed `Accept` headers by text: clients send few distinct ones, and every request carries one. Bounded; cleared when full. */
const parsedAccepts = new Map<string, readonly MediaRange[]>();
const MAX_PARSED_ACCEPTS = 256;

/**
 * Parses an `Accept` header into its clauses, most preferred first: by `q`, then in the order
 * sent (a stable sort, as goautoneg does for equal quality). An absent or empty header is `*\/*`;
 * one with no well-formed clause of positive quality (`garbage`) has none, and accepts nothing.
 * The result is shared between requests with the same header, and frozen.
 */
export function parseAccept(header: string | readonly string[] | undefined): readonly MediaRange[] {
  const text = Array.isArray(header) ? header.join(',') : (header as string | undefined) ?? '';
  let parsed = parsedAccepts.get(text);
  if (!parsed) {
    if (parsedAccepts.size >= MAX_PARSED_ACCEPTS) parsedAccepts.clear();
    parsed = Object.freeze(parseAcceptText(text).map((clause) => Object.freeze({ ...clause, params: Object.freeze(clause.params) })));
    parsedAccepts.set(text, parsed);
  }
  return parsed;
}

function parseAcceptText(text: string): MediaRange[] {
  if (text.trim() === '') return [{ type: '*', subtype: '*', params: {}, q: 1 }];
  // As goautoneg: a clause without a type and subtype is skipped (`*` alone is `*/*`); a header left
  // with none accepts nothing (406), as NegotiateMediaTypeOptions answers it.
  const clauses = text
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c.length > 0)
    .map((c) => parseClause(c.split(';')[0].trim() === '*' ? `*/*${c.slice(c.indexOf('*') + 1)}` : c))
    .filter((c): c is MediaRange => c !== undefined && c.q > 0);
  return clauses
    .map((clause, index) => ({ clause, index }))
    .sort((a, b) => b.clause.q - a.clause.q || a.index - b.index)
    .map(({ clause }) => clause);
}

/** RFC 7230 tokens: what mime.ParseMediaType takes as a type and a subtype. */
const MEDIA_TYPE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A Content-Type that does not parse: it names no media type, so a request body in it is answered 415, as Go's NegotiateInputSerializer does. */
const MALFORMED_CONTENT_TYPE: MediaRange = Object.freeze({ type: '', subtype: '', params: Object.freeze({}), q: 1 });

/**
 * Parses a `Content-Type` header; `undefined` when absent (the default, JSON, applies). A
 * malformed one (`garbage`, `application/`, `a/b/c`) is a range with an empty type and subtype,
 * which matches no media type (415), as mime.ParseMediaType's error is answered upstream.
 */
export function parseContentType(header: string | undefined): MediaRange | undefined {
  if (!header || header.trim() === '') return undefined;
  const parsed = parseClause(header);
  if (!parsed || !MEDIA_TYPE.test(header.split(';')[0].trim())) return MALFORMED_CONTENT_TYPE;
  return parsed;
}

/** `type/subtype` without parameters. */
export function mediaTypeOf(range: Pick<MediaRange, 'type' | 'subtype'>): string {
  return `${range.type}/${range.subtype}`;
}

/**
 * Whether a clause accepts an offer: the type and subtype match (`*` matches anything), and
 * the transform parameters agree. A clause naming `as`, `g` or `v` asks for exactly that
 * representation; an offer carrying them is only chosen by a clause that asks for them.
 * Other parameters (`pretty`, `stream`, `charset`) are ignored.
 */
export function accepts(clause: MediaRange, offer: MediaOffer): boolean {
  if (clause.type !== '*' && clause.type !== offer.type) return false;
  if (clause.subtype !== '*' && clause.subtype !== offer.subtype) return false;
  const offered = offer.params ?? {};
  for (const name of TRANSFORM_PARAMS) {
    if ((clause.params[name] ?? '') !== (offered[name] ?? '')) return false;
  }
  return true;
}

const TRANSFORM_PARAMS = ['as', 'g', 'v'] as const;

/** The first offer accepted by the most preferred clause that accepts any; `undefined` → answer 406. */
export function negotiate<T>(accept: readonly MediaRange[], offers: readonly MediaOffer<T>[]): MediaOffer<T> | undefined {
  for (const clause of accept) {
    const match = offers.find((offer) => accepts(clause, offer));
    if (match) return match;
  }
  return undefined;
}

/** The `Content-Type` value that names an offer, with its transform parameters. */
export function formatMediaType(offer: Pick<MediaOffer, 'type' | 'subtype' | 'params'>): string {
  const params = Object.entries(offer.params ?? {}).map(([k, v]) => `;${k}=${v}`);
  return `${offer.type}/${offer.subtype}${params.join('')}`;
}

/** The representations the REST endpoints of a resource can produce. */
export type ResourceOutput =
  | { readonly as: 'Object' }
  | { readonly as: 'Table'; readonly version: 'v1' | 'v1beta1' }
  | { readonly as: 'PartialObjectMetadata'; readonly version: 'v1' | 'v1beta1' }
  | { readonly as: 'PartialObjectMetadataList'; readonly version: 'v1' | 'v1beta1' };

const META_VERSIONS = ['v1', 'v1beta1'] as const;

function transformOffers(as: 'Table' | 'PartialObjectMetadata' | 'PartialObjectMetadataList'): MediaOffer<ResourceOutput>[] {
  return META_VERSIONS.map((version) => ({
    type: 'application',
    subtype: 'json',
    params: { as, g: 'meta.k8s.io', v: version },
    value: { as, version },
  }));
}

const OBJECT_OFFER: MediaOffer<ResourceOutput> = { type: 'application', subtype: 'json', value: { as: 'Object' } };

/** What each kind of request may be answered with: a list may be a PartialObjectMetadataList, a single object or a watch event a PartialObjectMetadata. */
export const RESOURCE_OFFERS = {
  object: [OBJECT_OFFER, ...transformOffers('Table'), ...transformOffers('PartialObjectMetadata')],
  list: [OBJECT_OFFER, ...transformOffers('Table'), ...transformOffers('PartialObjectMetadataList')],
  watch: [OBJECT_OFFER, ...transformOffers('Table'), ...transformOffers('PartialObjectMetadata')],
  /** Writes answer the object written, or a Table of it; nothing else. */
  write: [OBJECT_OFFER, ...transformOffers('Table')],
} as const;

/** The media types a 406 names as acceptable. */
export const SUPPORTED_OUTPUT_TYPES = ['application/json', 'application/json;as=Table;v=v1;g=meta.k8s.io', 'application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io'];
