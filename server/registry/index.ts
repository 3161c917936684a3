import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { checkSupportedByBundledServer } from '../../apis/features';
import type { ApiGroupDefinition, KindDefinition, KindVersion } from '../../apis/types';
import { compareKubeVersions } from '../../apis/versions';
import type { AuditAnnotations } from '../admission/audit-annotations';
import { NamespaceLister, namespaceLifecycle } from '../admission/namespace-lifecycle';
import type { AdmissionContext, AdmissionPlugin } from '../admission/types';
import type { UserInfo } from '../auth/types';
import { RESOURCE_OFFERS, ResourceOutput, SUPPORTED_OUTPUT_TYPES, negotiate, parseAccept } from '../content';
import type { RequestInfo } from '../request-info';
import type { Storage } from '../storage/types';
import { StatusError, errors } from '../status';
import { KindCodec } from './codec';
import { Handler, HandlerDeps, warningHeader, RequestScope, createObject, deleteCollection, deleteObject, getObject, listObjects, patchObject, updateObject, watchObjects } from './handlers';
import type { ApiRules } from './rules';
import { getScale, patchScale, updateScale } from './scale';
import { GenericStore, StoreDeps } from './store';
import { WatchHub } from './watch';

export type { ApiRules, KindRules, KubeObject } from './rules';
export type { FieldError } from './field-errors';
export { fieldErrors } from './field-errors';
export { KindCodec, resourcePrefixes } from './codec';

/** Serves the resources of one API group: the contract between the server shell and the registry. */
export interface ApiServing {
  /**
   * Handles one resource request for the group (RequestInfo.isResourceRequest, apiGroup matches).
   * Writes the response (JSON / Table / PartialObjectMetadata / watch stream) or throws StatusError.
   */
  /** Serves one request; `auditAnnotations` collects what admission adds for its audit event. */
  handle(req: IncomingMessage, res: ServerResponse, info: RequestInfo, user: UserInfo, auditAnnotations?: AuditAnnotations): Promise<void>;
  /** Storage ready (a /readyz check). */
  isReady(): boolean;
  /** Open watch streams (for /metrics). */
  watchCount(): number;
  /** Ends every watch cleanly (graceful shutdown); the storage is not closed. */
  close(): Promise<void>;
}

export interface ApiServingOptions {
  readonly api: ApiGroupDefinition;
  readonly storage: Storage;
  /** NamespaceLifecycle runs first, over this lister. */
  readonly namespaces: NamespaceLister;
  /** Further plugins, after NamespaceLifecycle (e.g. BanFlunder). @default - none */
  readonly admission?: readonly AdmissionPlugin[];
  /** Per-kind conversion, defaulting and validation (e.g. wardle's). @default - the definition alone */
  readonly rules?: ApiRules;
  readonly logger: Logger;
  /** How often watchers that allow bookmarks get one. @default 60000 (the cacher's bookmark frequency) */
  readonly bookmarkIntervalMs?: number;
  /** `--min-request-timeout` in seconds: watches without `timeoutSeconds` last this × [1, 2). @default 1800 */
  readonly minRequestTimeoutSeconds?: number;
}

/** Verb → handler and what it may answer with; a verb without an entry is not allowed there (405). */
const COLLECTION_VERBS: Readonly<Record<string, readonly [Handler, keyof typeof RESOURCE_OFFERS]>> = {
  list: [listObjects, 'list'],
  watch: [watchObjects, 'watch'],
  create: [createObject, 'write'],
  deletecollection: [deleteCollection, 'list'],
};
const ITEM_VERBS: Readonly<Record<string, readonly [Handler, keyof typeof RESOURCE_OFFERS]>> = {
  get: [getObject, 'object'],
  update: [updateObject, 'write'],
  patch: [patchObject, 'write'],
  delete: [deleteObject, 'write'],
};
const STATUS_VERBS: Readonly<Record<string, readonly [Handler, keyof typeof RESOURCE_OFFERS]>> = {
  get: [getObject, 'object'],
  update: [updateObject, 'write'],
  patch: [patchObject, 'write'],
};

const SCALE_VERBS: Readonly<Record<string, readonly [Handler, keyof typeof RESOURCE_OFFERS]>> = {
  get: [getScale, 'write'],
  update: [updateScale, 'write'],
  patch: [patchScale, 'write'],
};

/** Whether the version serves the subresource (status, scale); '' is the resource itself. */
function servesSubresource(version: KindVersion, subresource: string): boolean {
  if (subresource === '') return true;
  if (subresource === 'status') return version.subresources?.status === true;
  if (subresource === 'scale') return version.subresources?.scale !== undefined;
  return false;
}

/**
 * The warning kube-apiserver adds to every request to a deprecated CRD version
 * (apiextensions-apiserver customresource_handler.go): the version's deprecationWarning, else
 * `<group>/<version> <Kind> is deprecated`, naming the most preferred served, non-deprecated
 * version newer than it when there is one.
 */
export function deprecationWarning(group: string, kind: KindDefinition, version: KindVersion): string | undefined {
  if (version.deprecated !== true) return undefined;
  if (version.deprecationWarning !== undefined) return version.deprecationWarning;
  const message = `${group}/${version.name} ${kind.kind} is deprecated`;
  const [preferred] = kind.versions
    .filter((v) => v.served && v.deprecated !== true && compareKubeVersions(v.name, version.name) < 0)
    .map((v) => v.name)
    .sort(compareKubeVersions);
  return preferred === undefined ? message : `${message}; use ${group}/${preferred} ${kind.kind}`;
}

/**
 * Builds the registry of an API group: one generic store per kind over one storage, with
 * NamespaceLifecycle and the given admission plugins, behind endpoint handlers for each served version.
 */
export function createApiServing(options: ApiServingOptions): ApiServing {
  const { api, storage, logger } = options;
  // One definition, one meaning: a feature this server does not honour stops it here, named (apis/features.ts).
  checkSupportedByBundledServer(api, `API group "${api.group}"`);
  const rules = options.rules ?? {};
  const codecs = new Map<string, KindCodec>(); // by plural
  const byKind = new Map<string, KindCodec>();
  const deprecations = new Map<KindCodec, Map<string, string>>();
  for (const kind of api.kinds) {
    const codec = new KindCodec(api.group, kind, rules[kind.kind]);
    codecs.set(kind.plural, codec);
    byKind.set(kind.kind, codec);
    const warnings = new Map<string, string>();
    for (const version of kind.versions) {
      const warning = deprecationWarning(api.group, kind, version);
      if (warning !== undefined) warnings.set(version.name, warning);
    }
    deprecations.set(codec, warnings);
  }
  for (const kindName of Object.keys(rules)) {
    if (!byKind.has(kindName)) throw new Error(`rules are given for kind "${kindName}", which API group "${api.group}" does not define (kinds: ${[...byKind.keys()].join(', ')})`);
  }

  const admissionContext: AdmissionContext = {
    async list(kind: string) {
      const codec = byKind.get(kind);
      if (!codec) throw errors.internal(`admission asked for kind "${kind}", which API group "${api.group}" does not define`);
      // As the Go plugins' listers (a shared informer's cache): any revision will do, so the watch
      // cache answers without asking etcd for its current revision on every write.
      const listed = await storage.list(codec.prefix(), { minRevision: 0 });
      return listed.items.map((item) => item.value);
    },
  };
  const storeDeps: StoreDeps = {
    storage,
    admission: [namespaceLifecycle(options.namespaces), ...(options.admission ?? [])],
    admissionContext,
  };
  const stores = new Map<KindCodec, GenericStore>([...codecs.values()].map((codec) => [codec, new GenericStore(codec, storeDeps)]));
  const hub = new WatchHub();
  const deps: HandlerDeps = { hub, watchSettings: { bookmarkIntervalMs: options.bookmarkIntervalMs ?? 60_000, minRequestTimeoutSeconds: options.minRequestTimeoutSeconds }, logger };

  async function handle(req: IncomingMessage, res: ServerResponse, info: RequestInfo, user: UserInfo, auditAnnotations?: AuditAnnotations): Promise<void> {
    const codec = codecs.get(info.resource);
    const version = codec?.version(info.apiVersion);
    if (!codec || !version || info.apiGroup !== api.group || info.parts.length > 0) throw errors.pathNotFound();
    if (!servesSubresource(version, info.subresource)) throw errors.pathNotFound();
    // A cluster-scoped kind has no namespaced path; a namespaced kind at the cluster path only lists and watches.
    if (!codec.namespaced && info.namespace !== '') throw errors.pathNotFound();
    if (codec.namespaced && info.namespace === '' && info.name !== '' && info.verb !== 'list' && info.verb !== 'watch') throw errors.pathNotFound();

    const table = info.subresource === 'status' ? STATUS_VERBS : info.subresource === 'scale' ? SCALE_VERBS : info.name === '' || info.verb === 'list' || info.verb === 'watch' ? COLLECTION_VERBS : ITEM_VERBS;
    const entry = Object.prototype.hasOwnProperty.call(table, info.verb) ? table[info.verb] : undefined;
    if (!entry) throw errors.methodNotAllowed(req.method ?? '');
    if (codec.namespaced && info.namespace === '' && (info.verb === 'create' || info.verb === 'deletecollection')) throw errors.methodNotAllowed(req.method ?? '');
    const [handler, offers] = entry;
    // Every request to a deprecated version carries the warning, errors included (sendJson keeps it beside its own).
    const deprecation = deprecations.get(codec)?.get(version.name);
    if (deprecation !== undefined) res.setHeader('Warning', [warningHeader(deprecation)]);

    const chosen = negotiate<ResourceOutput>(parseAccept(req.headers.accept), RESOURCE_OFFERS[offers]);
    if (!chosen) throw errors.notAcceptable(SUPPORTED_OUTPUT_TYPES);
    const scope: RequestScope = { req, res, info, user, query: info.query, codec, store: stores.get(codec)!, version, subresource: info.subresource, output: chosen.value, auditAnnotations };
    try {
      await handler(scope, deps);
    } catch (error) {
      // As responsewriters.ErrorNegotiated: a Status that says when to retry says it in Retry-After too.
      const retryAfter = error instanceof StatusError ? error.status.details?.retryAfterSeconds : undefined;
      if (retryAfter !== undefined && !res.headersSent) res.setHeader('Retry-After', String(retryAfter));
      throw error;
    }
  }

  return {
    handle,
    isReady: () => storage.isReady(),
    watchCount: () => hub.count(),
    async close() {
      hub.endAll();
    },
  };
}
