import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiGroupDefinition, KindDefinition, KindVersion, kindsInVersion, preferredVersion, servedVersions, storageVersion } from '../apis';
import { formatMediaType, MediaOffer, negotiate, parseAccept } from './content';
import { errors } from './status';

/**
 * API discovery, as k8s.io/apiserver serves it for one group:
 * - legacy: `/apis` (APIGroupList), `/apis/<g>` (APIGroup), `/apis/<g>/<v>` (APIResourceList);
 * - aggregated: `/apis` with `Accept: application/json;g=apidiscovery.k8s.io;v=<v2|v2beta1>;as=APIGroupDiscoveryList`.
 *
 * kube-apiserver 1.28 asks for v2beta1 and falls back to the legacy documents only on 406;
 * current releases ask for v2. Every document is built once, at start: the definition is fixed.
 */

/** Verbs of a resource backed by storage, sorted as upstream lists them. */
const RESOURCE_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] as const;
const STATUS_VERBS = ['get', 'patch', 'update'] as const;
/** A scale subresource answers `autoscaling/v1` Scale, as a CRD's does. */
const SCALE_KIND = { group: 'autoscaling', version: 'v1', kind: 'Scale' } as const;
const AGGREGATED_GROUP = 'apidiscovery.k8s.io';
const AGGREGATED_KIND = 'APIGroupDiscoveryList';
/** The aggregated discovery versions served, most preferred first. */
const AGGREGATED_VERSIONS = ['v2', 'v2beta1'] as const;

/** What `/apis` can answer: aggregated discovery in each version, or the legacy APIGroupList. */
const ROOT_OFFERS: readonly MediaOffer<string | undefined>[] = [
  ...AGGREGATED_VERSIONS.map((v) => ({ type: 'application', subtype: 'json', params: { g: AGGREGATED_GROUP, v, as: AGGREGATED_KIND }, value: v })),
  { type: 'application', subtype: 'json', value: undefined },
];
/** As upstream's aggregated discovery handler (ServeHTTPWithETag) answers, with the ETag. */
const AGGREGATED_CACHE_HEADERS = { Vary: 'Accept', 'Cache-Control': 'public' };
/** Plain JSON: every other discovery document, and the OpenAPI documents. */
export const JSON_OFFERS: readonly MediaOffer<undefined>[] = [{ type: 'application', subtype: 'json', value: undefined }];

interface GroupVersionForDiscovery {
  readonly groupVersion: string;
  readonly version: string;
}

/** A response body serialized once, with its strong ETag. */
interface Document {
  readonly body: Buffer;
  readonly etag: string;
}

function document(value: unknown): Document {
  const body = Buffer.from(JSON.stringify(value));
  return { body, etag: `"${createHash('sha256').update(body).digest('hex')}"` };
}

/** `base64(sha256("<group>/<version>/<kind>")[:8])`, as discovery.StorageVersionHash computes it. */
export function storageVersionHash(group: string, version: string, kind: string): string {
  return createHash('sha256').update(`${group}/${version}/${kind}`).digest().subarray(0, 8).toString('base64');
}

function hasStatus(version: KindVersion): boolean {
  return version.subresources?.status === true;
}

function hasScale(version: KindVersion): boolean {
  return version.subresources?.scale !== undefined;
}

function apiResources(api: ApiGroupDefinition, version: string): unknown[] {
  const resources: unknown[] = [];
  for (const { kind, version: kv } of kindsInVersion(api, version)) {
    const namespaced = kind.scope === 'Namespaced';
    resources.push({
      name: kind.plural,
      singularName: kind.singular,
      namespaced,
      kind: kind.kind,
      verbs: RESOURCE_VERBS,
      ...(kind.shortNames?.length ? { shortNames: kind.shortNames } : {}),
      ...(kind.categories?.length ? { categories: kind.categories } : {}),
      storageVersionHash: storageVersionHash(api.group, storageVersion(kind).name, kind.kind),
    });
    if (hasStatus(kv)) resources.push({ name: `${kind.plural}/status`, singularName: '', namespaced, kind: kind.kind, verbs: STATUS_VERBS });
    if (hasScale(kv)) resources.push({ name: `${kind.plural}/scale`, singularName: '', namespaced, group: SCALE_KIND.group, version: SCALE_KIND.version, kind: SCALE_KIND.kind, verbs: STATUS_VERBS });
  }
  return resources;
}

function aggregatedResource(api: ApiGroupDefinition, version: string, kind: KindDefinition, kv: KindVersion): unknown {
  const responseKind = { group: api.group, version, kind: kind.kind };
  const subresources = [
    ...(hasStatus(kv) ? [{ subresource: 'status', responseKind, verbs: STATUS_VERBS }] : []),
    ...(hasScale(kv) ? [{ subresource: 'scale', responseKind: SCALE_KIND, verbs: STATUS_VERBS }] : []),
  ];
  return {
    resource: kind.plural,
    responseKind,
    scope: kind.scope,
    singularResource: kind.singular,
    verbs: RESOURCE_VERBS,
    ...(kind.shortNames?.length ? { shortNames: kind.shortNames } : {}),
    ...(kind.categories?.length ? { categories: kind.categories } : {}),
    ...(subresources.length > 0 ? { subresources } : {}),
  };
}

/** Answers the discovery paths of one API group. */
export class Discovery {
  private readonly group: string;
  private readonly versions: ReadonlySet<string>;
  private readonly groupList: Document;
  private readonly apiGroup: Document;
  private readonly resourceLists = new Map<string, Document>();
  private readonly aggregated = new Map<string, Document>();

  constructor(api: ApiGroupDefinition) {
    this.group = api.group;
    const versions = servedVersions(api);
    this.versions = new Set(versions);
    const preferred = preferredVersion(api);
    const gv = (version: string): GroupVersionForDiscovery => ({ groupVersion: `${api.group}/${version}`, version });
    const group = { name: api.group, versions: versions.map(gv), preferredVersion: gv(preferred) };
    this.groupList = document({ kind: 'APIGroupList', apiVersion: 'v1', groups: [group] });
    this.apiGroup = document({ kind: 'APIGroup', apiVersion: 'v1', ...group });
    for (const version of versions) {
      this.resourceLists.set(version, document({ kind: 'APIResourceList', apiVersion: 'v1', groupVersion: `${api.group}/${version}`, resources: apiResources(api, version) }));
    }
    const item = {
      metadata: { name: api.group, creationTimestamp: null },
      versions: versions.map((version) => ({
        version,
        resources: kindsInVersion(api, version).map(({ kind, version: kv }) => aggregatedResource(api, version, kind, kv)),
        freshness: 'Current',
      })),
    };
    for (const version of AGGREGATED_VERSIONS) {
      this.aggregated.set(version, document({ kind: AGGREGATED_KIND, apiVersion: `${AGGREGATED_GROUP}/${version}`, metadata: {}, items: [item] }));
    }
  }

  /** Whether `path` is one of the discovery paths this group answers. */
  handles(path: string): boolean {
    const parts = path.split('/').filter((p) => p.length > 0);
    if (parts[0] !== 'apis' || parts.length > 3) return false;
    if (parts.length === 1) return true;
    if (parts[1] !== this.group) return false;
    return parts.length === 2 || this.versions.has(parts[2]);
  }

  /**
   * Writes the discovery document for `path` (one `handles` accepted), negotiated from the
   * Accept header. Throws StatusError 406 when nothing acceptable can be produced.
   */
  serve(req: IncomingMessage, res: ServerResponse, path: string): void {
    const parts = path.split('/').filter((p) => p.length > 0);
    const accept = parseAccept(req.headers.accept);
    if (parts.length === 1) {
      const offer = negotiate(accept, ROOT_OFFERS);
      if (!offer) throw errors.notAcceptable(ROOT_OFFERS.map(formatMediaType));
      if (offer.value === undefined) writeDocument(req, res, this.groupList, 'application/json');
      else writeDocument(req, res, this.aggregated.get(offer.value)!, formatMediaType(offer), AGGREGATED_CACHE_HEADERS);
      return;
    }
    if (!negotiate(accept, JSON_OFFERS)) throw errors.notAcceptable(['application/json']);
    const doc = parts.length === 2 ? this.apiGroup : this.resourceLists.get(parts[2])!;
    writeDocument(req, res, doc, 'application/json');
  }
}

/**
 * 200 with the body, or 304 when If-None-Match names its ETag. `cacheHeaders` are for documents
 * clients revalidate: with them the ETag is sent and If-None-Match honoured; without, neither.
 */
export function writeDocument(req: IncomingMessage, res: ServerResponse, doc: Document, contentType: string, cacheHeaders?: Readonly<Record<string, string>>): void {
  if (cacheHeaders) {
    res.setHeader('ETag', doc.etag);
    for (const [name, value] of Object.entries(cacheHeaders)) res.setHeader(name, value);
    const ifNoneMatch = req.headers['if-none-match'];
    if (ifNoneMatch !== undefined && ifNoneMatch.split(',').some((tag) => tag.trim() === doc.etag || tag.trim() === '*')) {
      res.statusCode = 304;
      res.end();
      return;
    }
  }
  res.statusCode = 200;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', doc.body.length);
  res.end(req.method === 'HEAD' ? undefined : doc.body);
}

export type { Document as SerializedDocument };
