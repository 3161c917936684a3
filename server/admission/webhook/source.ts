/**
 * What the webhook plugins read from kube-apiserver, kept current by reflectors as Go's shared
 * informers keep the plugins' listers: the MutatingWebhookConfigurations and the
 * ValidatingWebhookConfigurations. Namespaces (for namespaceSelector and namespaceObject) come from
 * NamespaceLifecycle's reflector (KubeNamespaceLister), which implements NamespaceLabels.
 */
import { compileWebhooks, type CompiledWebhook, type Labels, type WebhookConfigurationObject } from './configuration';

/** The part of server/kube-client.ts's KubeClient the sources use. */
export interface WatchingClient {
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  watch(path: string, onEvent: (event: { readonly type: string; readonly object: unknown }) => void, options?: { onError?: (error: Error) => void }): { stop(): void; readonly done: Promise<void> };
}

export interface WarnLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

export const MUTATING_WEBHOOK_CONFIGURATIONS = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';
export const VALIDATING_WEBHOOK_CONFIGURATIONS = '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations';

export interface Named {
  readonly metadata?: { readonly name?: string; readonly labels?: Labels; readonly resourceVersion?: string };
}

/**
 * A reflector's store: the objects of one collection by name, replaced by every SYNC (a list,
 * first or after a 410) and kept by the events between. With `notServedIsEmpty`, a collection
 * the cluster does not serve (404 to the list: an API version it does not have yet) counts as
 * listed and empty, while the reflector keeps retrying.
 */
export class ReflectedCollection<T extends Named> {
  readonly objects = new Map<string, T>();
  synced = false;
  private readonly watch: { stop(): void };

  constructor(client: WatchingClient, path: string, logger: WarnLogger, onChange: () => void, notServedIsEmpty = false) {
    this.watch = client.watch(
      path,
      (event) => {
        const object = event.object as T & { items?: T[] };
        switch (event.type) {
          case 'SYNC':
            this.objects.clear();
            for (const item of object.items ?? []) if (item.metadata?.name) this.objects.set(item.metadata.name, item);
            this.synced = true;
            break;
          case 'ADDED':
          case 'MODIFIED':
            if (object.metadata?.name) this.objects.set(object.metadata.name, object);
            break;
          case 'DELETED':
            if (object.metadata?.name) this.objects.delete(object.metadata.name);
            break;
          default:
            return;
        }
        onChange();
      },
      {
        onError: (error) => {
          if (notServedIsEmpty && (error as { status?: unknown }).status === 404) {
            if (!this.synced || this.objects.size > 0) {
              this.objects.clear();
              this.synced = true;
              onChange();
            }
            return;
          }
          logger.warn({ err: error, path }, 'watch failed; retrying');
        },
      },
    );
  }

  stop(): void {
    this.watch.stop();
  }
}

/** The webhooks of one kind of configuration, and whether they are known yet. */
export interface WebhookSource {
  /** Whether the first list arrived (writes wait for it). */
  hasSynced(): boolean;
  /** The webhooks in calling order. */
  webhooks(): readonly CompiledWebhook[];
}

/** A configuration collection watched through a KubeClient; its webhooks compiled on each change. */
export class WatchedWebhookConfigurations implements WebhookSource {
  private readonly collection: ReflectedCollection<WebhookConfigurationObject & Named>;
  private compiled: readonly CompiledWebhook[] = [];

  constructor(client: WatchingClient, kind: 'mutating' | 'validating', logger: WarnLogger) {
    const path = kind === 'mutating' ? MUTATING_WEBHOOK_CONFIGURATIONS : VALIDATING_WEBHOOK_CONFIGURATIONS;
    this.collection = new ReflectedCollection(client, path, logger, () => {
      this.compiled = compileWebhooks([...this.collection.objects.values()], kind === 'mutating');
    });
  }

  hasSynced(): boolean {
    return this.collection.synced;
  }

  webhooks(): readonly CompiledWebhook[] {
    return this.compiled;
  }

  close(): void {
    this.collection.stop();
  }
}

/** A fixed set of configurations (a server run without a cluster, tests of the matching alone). */
export class FixedWebhookConfigurations implements WebhookSource {
  private compiled: readonly CompiledWebhook[];

  constructor(
    private readonly kind: 'mutating' | 'validating',
    configurations: readonly WebhookConfigurationObject[] = [],
  ) {
    this.compiled = compileWebhooks(configurations, kind === 'mutating');
  }

  set(configurations: readonly WebhookConfigurationObject[]): void {
    this.compiled = compileWebhooks(configurations, this.kind === 'mutating');
  }

  hasSynced(): boolean {
    return true;
  }

  webhooks(): readonly CompiledWebhook[] {
    return this.compiled;
  }
}

/** Answers a namespace's labels; `undefined` when the namespace does not exist. */
export interface NamespaceLabels {
  hasSynced(): boolean;
  labels(namespace: string): Promise<Labels | undefined>;
  /** The whole Namespace object (ValidatingAdmissionPolicy's `namespaceObject`); `undefined` when it does not exist. */
  namespace(namespace: string): Promise<Record<string, unknown> | undefined>;
}

export class FixedNamespaceLabels implements NamespaceLabels {
  constructor(readonly namespaces: Record<string, Labels> = {}) {}

  hasSynced(): boolean {
    return true;
  }

  async labels(namespace: string): Promise<Labels | undefined> {
    return this.namespaces[namespace];
  }

  async namespace(namespace: string): Promise<Record<string, unknown> | undefined> {
    const labels = this.namespaces[namespace];
    return labels === undefined ? undefined : { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels }, status: { phase: 'Active' } };
  }
}
