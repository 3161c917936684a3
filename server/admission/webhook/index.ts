export { webhookAdmission, type WebhookAdmissionOptions } from './dispatcher';
export { callWebhook, clusterServiceResolver, WebhookCallError, type ServiceResolver } from './client';
export { compileWebhooks, labelSelectorMatcher, type CompiledWebhook, type WebhookConfigurationObject, type WebhookSpec } from './configuration';
export {
  FixedNamespaceLabels,
  FixedWebhookConfigurations,
  MUTATING_WEBHOOK_CONFIGURATIONS,
  VALIDATING_WEBHOOK_CONFIGURATIONS,
  WatchedWebhookConfigurations,
  type NamespaceLabels,
  type WebhookSource,
} from './source';
export { validatingAdmissionPolicy, WatchedPolicies, compilePolicies, type PolicySource, type PolicyAdmissionOptions } from './policy';
