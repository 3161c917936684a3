import type { Logger } from 'pino';
import { StatusError, errors } from '../status';
import type { AdmissionAttributes, AdmissionPlugin } from './types';
import { ReflectedCollection, type NamespaceLabels } from './webhook/source';

/**
 * NamespaceLifecycle, as k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle: namespaced
 * objects may only be created in a namespace that exists and is not being terminated, and only
 * updated in one that exists. Deletes are always allowed (the namespace controller deletes the
 * content of terminating namespaces).
 *
 * Refusals, worded as upstream:
 * - missing namespace → 404 NotFound `namespaces "x" not found`;
 * - terminating namespace on create → 403 Forbidden
 *   `flunders.wardle.example.com "f" is forbidden: unable to create new content in namespace x
 *   because it is being terminated`, with the cause `NamespaceTerminating` on `metadata.namespace`.
 */

export type NamespacePhase = 'Active' | 'Terminating';

/** Answers what phase a namespace is in; `undefined` when it does not exist. */
export interface NamespaceLister {
  phase(name: string): Promise<NamespacePhase | undefined>;
}

/** A NamespaceLister over a fixed, editable set of namespaces (tests, and servers run without a cluster). */
export class FixedNamespaceLister implements NamespaceLister {
  private readonly phases = new Map<string, NamespacePhase>();

  /** @param namespaces names (Active) or name → phase. */
  constructor(namespaces: readonly string[] | Readonly<Record<string, NamespacePhase>> = []) {
    const entries: [string, NamespacePhase][] = Array.isArray(namespaces)
      ? (namespaces as readonly string[]).map((n) => [n, 'Active'])
      : Object.entries(namespaces as Record<string, NamespacePhase>);
    for (const [name, phase] of entries) this.phases.set(name, phase);
  }

  /** Sets a namespace's phase, or removes it with `undefined`. */
  set(name: string, phase: NamespacePhase | undefined): void {
    if (phase) this.phases.set(name, phase);
    else this.phases.delete(name);
  }

  async phase(name: string): Promise<NamespacePhase | undefined> {
    return this.phases.get(name);
  }
}

/** The part of server/kube-client.ts's KubeClient this module uses. */
export interface NamespaceClient {
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  watch(path: string, onEvent: (event: { readonly type: string; readonly object: unknown }) => void, options?: { onError?: (error: Error) => void }): { stop(): void; readonly done: Promise<void> };
}

export interface KubeNamespaceListerOptions {
  /**
   * How long a create into a namespace missing from the cache waits for the cache to see it,
   * before asking kube-apiserver directly (upstream's missingNamespaceWait).
   * @default 50
   */
  readonly missingNamespaceWaitMs?: number;
}

interface NamespaceObject {
  readonly metadata?: { readonly name?: string; readonly labels?: Readonly<Record<string, string>> };
  readonly status?: { readonly phase?: string };
}

function phaseOf(namespace: NamespaceObject): NamespacePhase {
  return namespace.status?.phase === 'Terminating' ? 'Terminating' : 'Active';
}

/**
 * The server's one reflector on `/api/v1/namespaces` (list, then watch; relisted by the client on
 * 410), falling back to a live GET for a namespace the cache does not know, as upstream does. It
 * answers NamespaceLifecycle (phase) and the webhook and policy plugins (labels for
 * namespaceSelector, the object for namespaceObject), as Go's plugins share one namespace
 * informer. Needs `get`, `list` and `watch` on namespaces.
 */
export class KubeNamespaceLister implements NamespaceLister, NamespaceLabels {
  private readonly namespaces: ReflectedCollection<NamespaceObject>;
  private readonly missingNamespaceWaitMs: number;

  constructor(
    private readonly client: NamespaceClient,
    logger: Logger,
    options: KubeNamespaceListerOptions = {},
  ) {
    this.missingNamespaceWaitMs = options.missingNamespaceWaitMs ?? 50;
    this.namespaces = new ReflectedCollection<NamespaceObject>(client, '/api/v1/namespaces', logger, () => undefined);
  }

  /** Whether the first list has been received. */
  hasSynced(): boolean {
    return this.namespaces.synced;
  }

  async phase(name: string): Promise<NamespacePhase | undefined> {
    const namespace = await this.lookup(name);
    return namespace === undefined ? undefined : phaseOf(namespace);
  }

  async labels(name: string): Promise<Readonly<Record<string, string>> | undefined> {
    const namespace = await this.lookup(name);
    return namespace === undefined ? undefined : (namespace.metadata?.labels ?? {});
  }

  async namespace(name: string): Promise<Record<string, unknown> | undefined> {
    return (await this.lookup(name)) as Record<string, unknown> | undefined;
  }

  /** The cached namespace; else, after a moment for the watch to deliver one created just before, a live GET (undefined on 404). */
  private async lookup(name: string): Promise<NamespaceObject | undefined> {
    const cached = this.namespaces.objects.get(name);
    if (cached) return cached;
    if (this.namespaces.synced) {
      await new Promise((resolve) => setTimeout(resolve, this.missingNamespaceWaitMs));
      const late = this.namespaces.objects.get(name);
      if (late) return late;
    }
    const response = await this.client.request<NamespaceObject>('GET', `/api/v1/namespaces/${encodeURIComponent(name)}`);
    if (response.status === 404) return undefined;
    if (response.status !== 200) {
      throw errors.internal(`unable to look up namespace "${name}": kube-apiserver answered ${response.status}`);
    }
    return response.body;
  }

  close(): void {
    this.namespaces.stop();
  }
}

/** The NamespaceLifecycle plugin over a lister. */
export function namespaceLifecycle(lister: NamespaceLister): AdmissionPlugin {
  return {
    name: 'NamespaceLifecycle',
    operations: ['CREATE', 'UPDATE'],
    async admit(attributes: AdmissionAttributes): Promise<void> {
      if (attributes.namespace === '') return;
      const phase = await lister.phase(attributes.namespace);
      if (phase === undefined) throw errors.notFound({ group: '', resource: 'namespaces' }, attributes.namespace);
      if (attributes.operation === 'CREATE' && phase === 'Terminating') {
        const gr = { group: attributes.group, resource: attributes.resource };
        const refused = errors.forbiddenByAdmission(
          gr,
          admissionName(attributes),
          `unable to create new content in namespace ${attributes.namespace} because it is being terminated`,
        );
        throw new StatusError({
          ...refused.status,
          details: {
            ...refused.status.details,
            causes: [{ reason: 'NamespaceTerminating', message: `namespace ${attributes.namespace} is being terminated`, field: 'metadata.namespace' }],
          },
        });
      }
    },
  };
}

/**
 * The name admission errors quote (admission.extractResourceName): the name, else the
 * generateName (names are generated after admission), else `Unknown`.
 */
function admissionName(attributes: AdmissionAttributes): string {
  if (attributes.name) return attributes.name;
  const metadata = (attributes.object?.metadata ?? {}) as { name?: unknown; generateName?: unknown };
  if (typeof metadata.name === 'string' && metadata.name) return metadata.name;
  if (typeof metadata.generateName === 'string' && metadata.generateName) return metadata.generateName;
  return 'Unknown';
}
