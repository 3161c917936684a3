/**
 * The configuration stage, as k8s.io/apiserver's RecommendedOptions.ApplyTo: from the validated
 * options, build each shared dependency once — the kube clients, the storage, the metrics — and
 * hand them to delegated auth, admission and the registry, which build none of their own.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { ApiDefinitionError, ApiGroupDefinition, WARDLE, validateApiGroupDefinition } from '../apis';
import { checkSupportedByBundledServer } from '../apis/features';
import { KubeNamespaceLister } from './admission/namespace-lifecycle';
import type { AdmissionPlugin } from './admission/types';
import { validatingAdmissionPolicy, WatchedPolicies, WatchedWebhookConfigurations, webhookAdmission, type NamespaceLabels } from './admission/webhook';
import { startDelegatedAuth } from './auth';
import { informerSyncCheck, type SyncedInformer } from './health';
import { loadKubeClient, type KubeClient } from './kube-client';
import { Metrics } from './metrics';
import { DEFAULT_ADMISSION_PLUGINS, type ServerConfig } from './options';
import { createApiServing } from './registry';
import { resourcePrefixes } from './registry/codec';
import { wardleAdmission, wardleRules } from './registry/wardle';
import type { ServerOptions } from './server';
import { createStorage, type ServerStorage } from './storage';

/** Everything Server.start needs beyond the serving flags. */
export type ConfiguredServer = Pick<ServerOptions, 'api' | 'auth' | 'apiServing' | 'metrics' | 'storageChecks' | 'readyChecks' | 'onClose'>;

/**
 * Builds the server's parts for `config`. Rejects with a one-line Error when a part cannot start
 * (bad etcd TLS files, an unreadable kubeconfig, the auth ConfigMap forbidden), after releasing
 * what was already built.
 */
export async function configure(config: ServerConfig, logger: Logger): Promise<ConfiguredServer> {
  const api = config.apiDefinitionFile === undefined ? WARDLE : loadApiDefinition(config.apiDefinitionFile);
  // Wardle's conversion, defaulting, validation and BanFlunder belong to the bundled API only.
  const rules = api === WARDLE ? wardleRules : {};
  if (config.ignoredFlags.length > 0) logger.info({ flags: config.ignoredFlags }, 'flags accepted for compatibility with the Go apiservers and ignored');
  const clients = new KubeClients(config.kubeconfigContext, logger);
  const metrics = new Metrics();
  const prefixes = resourcePrefixes(api);
  // `/wardle.example.com/flunders/` → `flunders.wardle.example.com`, as upstream labels resources.
  const resourceOf = (prefix: string) => {
    const [, group, plural] = prefix.split('/');
    return `${plural}.${group}`;
  };
  // EtcdStorage reports the registry key (or prefix) of each request: its resource's label, found once per request.
  const labels = prefixes.map((prefix) => [prefix, resourceOf(prefix)] as const);
  const resourceOfKey = (key: string) => labels.find(([prefix]) => key.startsWith(prefix))?.[1] ?? '';
  const releases: Array<() => void | Promise<void>> = [() => clients.close()];
  const release = async () => {
    for (const close of releases.reverse()) await close();
  };
  try {
    const storage: ServerStorage = await createStorage(config.storage, {
      resourcePrefixes: prefixes,
      logger,
      observeEtcdRequest: (operation, seconds, ok, key?: string) => metrics.observeEtcdRequest(operation, key === undefined ? '' : resourceOfKey(key), seconds, ok),
    });
    releases.push(() => storage.close());
    const auth = await startDelegatedAuth(config.auth, logger, {
      clients: { authentication: clients.for(config.auth.authenticationKubeconfig), authorization: clients.for(config.auth.authorizationKubeconfig) },
    });
    releases.push(() => auth.close());
    const namespaces = new KubeNamespaceLister(clients.for(config.kubeconfig), logger);
    releases.push(() => namespaces.close());
    const admission = admissionChain(config, clients.for(config.kubeconfig), namespaces, logger, api);
    releases.push(() => admission.close());
    const apiServing = createApiServing({ api, storage: storage.storage, namespaces, admission: admission.plugins, rules, logger, minRequestTimeoutSeconds: config.minRequestTimeoutSeconds });
    metrics.readFrom({ watchCount: () => apiServing.watchCount(), cacheStats: () => storage.cacheStats(), resourceOf });
    return {
      api,
      auth,
      apiServing,
      metrics,
      storageChecks: storage.readyChecks,
      readyChecks: [informerSyncCheck([{ type: '*v1.Namespace', hasSynced: () => namespaces.hasSynced() }, ...admission.informers])],
      // After the listener closed and auth stopped: the namespace watch, the clients, then storage.
      onClose: async () => {
        namespaces.close();
        admission.close();
        clients.close();
        await storage.close();
      },
    };
  } catch (error) {
    await release();
    throw error;
  }
}

/**
 * The admission plugins after NamespaceLifecycle (which createApiServing runs first), in
 * upstream's order: MutatingAdmissionWebhook, BanFlunder, ValidatingAdmissionPolicy,
 * ValidatingAdmissionWebhook, each only when enabled. The webhook and policy plugins watch their
 * configurations, and read namespaces (labels, namespaceObject) from NamespaceLifecycle's reflector.
 */
function admissionChain(config: ServerConfig, client: KubeClient, namespaces: NamespaceLabels, logger: Logger, api: ApiGroupDefinition = WARDLE): { plugins: AdmissionPlugin[]; informers: SyncedInformer[]; close(): void } {
  const enabled = new Set(config.admissionPlugins ?? DEFAULT_ADMISSION_PLUGINS);
  if (api !== WARDLE) enabled.delete('BanFlunder');
  const rules = api === WARDLE ? wardleRules : {};
  const none = { hasSynced: () => true, webhooks: () => [] };
  const mutating = enabled.has('MutatingAdmissionWebhook') ? new WatchedWebhookConfigurations(client, 'mutating', logger) : undefined;
  const validating = enabled.has('ValidatingAdmissionWebhook') ? new WatchedWebhookConfigurations(client, 'validating', logger) : undefined;
  const policies = enabled.has('ValidatingAdmissionPolicy') ? new WatchedPolicies(client, logger) : undefined;
  const webhooks = mutating || validating ? webhookAdmission({ api, rules, mutating: mutating ?? none, validating: validating ?? none, namespaces, logger }) : undefined;
  return {
    plugins: [
      ...(mutating && webhooks ? [webhooks.mutating] : []),
      ...(enabled.has('BanFlunder') ? wardleAdmission() : []),
      ...(policies ? [validatingAdmissionPolicy({ api, rules, policies, namespaces, logger })] : []),
      ...(validating && webhooks ? [webhooks.validating] : []),
    ],
    informers: [
      ...(mutating ? [{ type: '*v1.MutatingWebhookConfiguration', hasSynced: () => mutating.hasSynced() }] : []),
      ...(validating ? [{ type: '*v1.ValidatingWebhookConfiguration', hasSynced: () => validating.hasSynced() }] : []),
      ...(policies ? policies.informers() : []),
    ],
    close: () => {
      mutating?.close();
      validating?.close();
      policies?.close();
    },
  };
}

/** One KubeClient per kubeconfig file (in-cluster when none): the same file given to several flags is one client. */
class KubeClients {
  private readonly clients = new Map<string, KubeClient>();

  constructor(
    private readonly context: string | undefined,
    private readonly logger: Logger,
  ) {}

  for(kubeconfig: string | undefined): KubeClient {
    const key = kubeconfig === undefined ? '' : resolve(kubeconfig);
    let client = this.clients.get(key);
    if (!client) {
      client = loadKubeClient({ kubeconfig, context: this.context, logger: this.logger });
      this.clients.set(key, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
  }
}

/**
 * The ApiGroupDefinition of `--api-definition-file` (JSON), checked as the constructs check one
 * (validateApiGroupDefinition), and refused when it declares what this server does not honour (apis/features.ts).
 */
function loadApiDefinition(file: string): ApiGroupDefinition {
  let definition: ApiGroupDefinition;
  try {
    definition = JSON.parse(readFileSync(file, 'utf8')) as ApiGroupDefinition;
  } catch (error) {
    throw new Error(`--api-definition-file="${file}" is not a JSON ApiGroupDefinition: ${(error as Error).message}`);
  }
  try {
    validateApiGroupDefinition(definition);
  } catch (error) {
    if (error instanceof ApiDefinitionError) throw new Error(`--api-definition-file="${file}": ${error.message}`);
    throw error;
  }
  // Before anything connects anywhere: one line per feature this server does not honour.
  checkSupportedByBundledServer(definition, `--api-definition-file="${file}"`);
  // The bundled API given as a file is the bundled API, with its rules and BanFlunder.
  return JSON.stringify(definition) === JSON.stringify(WARDLE) ? WARDLE : definition;
}
