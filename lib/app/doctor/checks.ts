import { createHash, X509Certificate } from 'node:crypto';
import { describeDifference, driftOf } from './drift';
import { Installation, KubeObject, objectPath, objectRef } from './installation';
import { KubeClient, KubeResponse, statusMessage, Unstructured } from './kube';
import { daysLeft, issuerAmong, parsePemBundle, servingProblems, subjectOf } from './tls';

export type CheckStatus = 'PASS' | 'WARN' | 'FAIL' | 'SKIP';

/** One line of the report. */
export interface CheckResult {
  /** What was checked: `aggregation layer`, `APIService v1beta1.wardle.example.com`. */
  readonly check: string;
  readonly status: CheckStatus;
  /** What doctor found, in words. */
  readonly message: string;
  /** On WARN and FAIL: the command or change that fixes it. */
  readonly fix?: string;
  /** Evidence: the differing fields, a failing pod's last log lines. */
  readonly details?: readonly string[];
}

export interface DoctorContext {
  readonly client: KubeClient;
  readonly installation: Installation;
  /** Where the manifests are, for the fixes (`kubectl apply -f dist/`). */
  readonly manifestsDirectory?: string;
  /** Log lines shown of a failing pod. @default 10 */
  readonly logLines?: number;
  readonly now?: Date;
}

/**
 * The pod annotation holding the SHA-256 of the serving certificate's PEM, as lib/api-server-deployment.ts
 * stamps it; not imported from there, which loads cdk8s-plus (test/doctor.test.ts checks they agree).
 */
export const SERVING_CERT_CHECKSUM_ANNOTATION = 'apiextension.cdk8s.io/serving-cert-sha256';

/** Days before expiry that a certificate is warned about. */
export const EXPIRY_WARNING_DAYS = 30;

const AUTH_CONFIGMAP_PATH = '/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication';

/** The kube-apiserver flags of the aggregation layer (as kubeadm sets them). */
const AGGREGATION_FLAGS =
  'start kube-apiserver with the aggregation layer: --requestheader-client-ca-file=<front-proxy-ca.crt> --requestheader-allowed-names=front-proxy-client ' +
  '--requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group --requestheader-extra-headers-prefix=X-Remote-Extra- ' +
  '--proxy-client-cert-file=<front-proxy-client.crt> --proxy-client-key-file=<front-proxy-client.key> (kubeadm clusters have them; ' +
  '`npx cdk8s-api-extension front-proxy` makes the front-proxy CA and client certificate and prints these flags and a kubeadm patch)';

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function labelSelector(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([key, value]) => `${key}=${value}`)
    .join(',');
}

/**
 * Runs the checks in order: what later checks explain depends on what earlier ones found (a
 * FailedDiscoveryCheck is explained by the TLS lines below it). Reads only; the one POST is an
 * access review, which stores nothing.
 */
export class Doctor {
  private readonly live = new Map<string, Promise<KubeResponse>>();
  private readonly results: CheckResult[] = [];
  private readonly now: Date;
  private readonly apply: string;

  constructor(private readonly context: DoctorContext) {
    this.now = context.now ?? new Date();
    this.apply = `kubectl apply -f ${context.manifestsDirectory ?? '<the synth output>'}`;
  }

  async run(): Promise<CheckResult[]> {
    if (!(await this.checkCluster())) return this.results;
    await this.checkAggregationLayer();
    await this.checkObjects();
    await this.checkApiServices();
    const pods = await this.checkEndpointsAndPods();
    await this.checkTls(pods);
    await this.checkRbac();
    await this.checkDiscovery();
    await this.checkEtcd();
    return this.results;
  }

  private add(result: CheckResult): void {
    this.results.push(result);
  }

  private get(path: string): Promise<KubeResponse> {
    let response = this.live.get(path);
    if (!response) {
      response = this.context.client.get(path);
      this.live.set(path, response);
    }
    return response;
  }

  private get ns(): string {
    return this.context.installation.namespace;
  }

  private async checkCluster(): Promise<boolean> {
    const { client } = this.context;
    let response: KubeResponse;
    try {
      response = await client.get('/version');
    } catch (error) {
      this.add({ check: 'cluster', status: 'FAIL', message: `cannot reach ${client.describe()}: ${(error as Error).message}`, fix: 'check --kubeconfig and --context (kubectl cluster-info answers with the same ones)' });
      return false;
    }
    if (response.status === 401) {
      this.add({ check: 'cluster', status: 'FAIL', message: `${client.describe()} refuses the kubeconfig's credentials (401 Unauthorized)`, fix: 'renew the credentials of the kubeconfig user (kubectl get --raw /version fails the same way)' });
      return false;
    }
    const version = response.body?.gitVersion ? `Kubernetes ${response.body.gitVersion}` : `HTTP ${response.status} on /version`;
    this.add({ check: 'cluster', status: 'PASS', message: `${client.describe()}: ${version}; looking for ${this.context.installation.source}` });
    return true;
  }

  private async checkAggregationLayer(): Promise<void> {
    const check = 'aggregation layer';
    const response = await this.get(AUTH_CONFIGMAP_PATH);
    if (response.status === 404) {
      this.add({ check, status: 'FAIL', message: 'kube-system/extension-apiserver-authentication does not exist: kube-apiserver runs without the aggregation layer', fix: AGGREGATION_FLAGS });
      return;
    }
    if (response.status !== 200) {
      this.add({ check, status: 'WARN', message: `cannot read kube-system/extension-apiserver-authentication: ${statusMessage(response)}`, fix: 'run doctor as a user who may read ConfigMaps in kube-system' });
      return;
    }
    const data: Record<string, string> = response.body?.data ?? {};
    const caPem = data['requestheader-client-ca-file'];
    if (!caPem) {
      this.add({
        check,
        status: 'FAIL',
        message:
          'kube-system/extension-apiserver-authentication carries no requestheader-client-ca-file: kube-apiserver was started without --requestheader-client-ca-file, so the server cannot trust the requests the aggregator forwards ("Cluster doesn\'t provide requestheader-client-ca-file")',
        fix: AGGREGATION_FLAGS,
      });
      return;
    }
    let cas: X509Certificate[];
    try {
      cas = parsePemBundle(caPem);
      if (cas.length === 0) throw new Error('it holds no PEM certificate');
    } catch (error) {
      this.add({ check, status: 'FAIL', message: `requestheader-client-ca-file does not parse: ${(error as Error).message}`, fix: 'point kube-apiserver --requestheader-client-ca-file at the front-proxy CA certificate (PEM)' });
      return;
    }
    const expired = cas.filter((ca) => daysLeft(ca, this.now) < 0);
    if (expired.length === cas.length) {
      this.add({ check, status: 'FAIL', message: `the front-proxy CA ${subjectOf(cas[0])} expired on ${new Date(cas[0].validTo).toISOString()}`, fix: 'renew the front-proxy CA and client certificate (kubeadm certs renew front-proxy-client) and restart kube-apiserver' });
      return;
    }
    let allowedNames: string[] = [];
    try {
      allowedNames = JSON.parse(data['requestheader-allowed-names'] ?? '[]');
    } catch {
      allowedNames = [];
    }
    const caText = `front-proxy CA ${cas.map(subjectOf).join(' + ')}`;
    if (allowedNames.length === 0) {
      this.add({
        check,
        status: 'WARN',
        message: `${caText}; requestheader-allowed-names is empty: any client certificate that CA signed may assert users to the server`,
        fix: 'add --requestheader-allowed-names=front-proxy-client (the CN of --proxy-client-cert-file) to kube-apiserver',
      });
      return;
    }
    this.add({ check, status: 'PASS', message: `${caText}; allowed names: ${allowedNames.join(', ')}` });
  }

  private async checkObjects(): Promise<void> {
    const { objects } = this.context.installation;
    if (objects.length === 0) {
      this.add({ check: 'objects', status: 'SKIP', message: 'no manifests to compare with (give --dist, the synth output)' });
      return;
    }
    const responses = await Promise.all(objects.map((object) => this.get(objectPath(object)).then((response) => ({ object, response }))));
    const missing = responses.filter(({ response }) => response.status === 404).map(({ object }) => objectRef(object));
    const unreadable = responses.filter(({ response }) => response.status !== 404 && response.status !== 200);
    const drifted = responses
      .filter(({ response }) => response.status === 200)
      .map(({ object, response }) => ({ object, differences: driftOf(object, response.body as KubeObject) }))
      .filter(({ differences }) => differences.length > 0);
    if (missing.length > 0) {
      this.add({ check: 'objects', status: 'FAIL', message: `${missing.length} of ${objects.length} objects of the manifests are not in the cluster: ${missing.join(', ')}`, fix: this.apply });
    } else {
      this.add({ check: 'objects', status: 'PASS', message: `all ${objects.length} objects of the manifests are in the cluster` });
    }
    for (const { object, response } of unreadable) {
      this.add({ check: 'objects', status: 'WARN', message: `cannot read ${objectRef(object)}: ${statusMessage(response)}`, fix: 'run doctor as a user who may read it' });
    }
    for (const { object, differences } of drifted) {
      this.add({
        check: 'drift',
        status: 'WARN',
        message: `${objectRef(object)} differs from the manifests in ${plural(differences.length, 'field')}: ${differences.map((d) => d.path).join(', ')}`,
        fix: `${this.apply} (or, if the change is wanted, make it in the synth options and synth again)`,
        details: differences.slice(0, 10).map(describeDifference),
      });
    }
    if (drifted.length === 0 && responses.some(({ response }) => response.status === 200)) {
      this.add({ check: 'drift', status: 'PASS', message: 'no object in the cluster differs from the manifests in the fields they set' });
    }
  }

  private async liveApiServices(): Promise<{ name: string; response: KubeResponse }[]> {
    return Promise.all(
      this.context.installation.apiServices.map(async ({ name }) => ({ name, response: await this.get(`/apis/apiregistration.k8s.io/v1/apiservices/${name}`) })),
    );
  }

  private async checkApiServices(): Promise<void> {
    const { installation } = this.context;
    const service = `${installation.namespace}/${installation.serviceName}`;
    for (const { name, response } of await this.liveApiServices()) {
      const check = `APIService ${name}`;
      if (response.status !== 200) {
        this.add({ check, status: 'FAIL', message: response.status === 404 ? 'is not registered' : `cannot be read: ${statusMessage(response)}`, fix: this.apply });
        continue;
      }
      const available = (response.body.status?.conditions ?? []).find((condition: Unstructured) => condition.type === 'Available');
      if (!available) {
        this.add({ check, status: 'WARN', message: 'has no Available condition yet: the aggregator has not checked it (just applied?)', fix: `wait, then kubectl get apiservice ${name}` });
      } else if (available.status === 'True') {
        this.add({ check, status: 'PASS', message: `Available (${available.reason ?? 'Passed'})` });
      } else {
        const { meaning, fix } = explainUnavailable(available.reason, available.message ?? '', service, installation.namespace, this.apply);
        this.add({ check, status: 'FAIL', message: `not Available: ${available.reason}: ${meaning}`, fix, details: available.message ? [available.message] : undefined });
      }
    }
  }

  private async liveDeployment(): Promise<Unstructured> {
    const { installation } = this.context;
    const response = await this.get(`/apis/apps/v1/namespaces/${installation.namespace}/deployments/${installation.deploymentName}`);
    if (response.status === 200) return response.body;
    return installation.objects.find((o) => o.kind === 'Deployment' && o.metadata.name === installation.deploymentName);
  }

  private async checkEndpointsAndPods(): Promise<Unstructured[]> {
    const { installation } = this.context;
    const ns = this.ns;
    const slices = await this.get(`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices?labelSelector=${encodeURIComponent(`kubernetes.io/service-name=${installation.serviceName}`)}`);
    const endpoints = (slices.body?.items ?? []).flatMap((slice: Unstructured) => slice.endpoints ?? []);
    const ready = endpoints.filter((endpoint: Unstructured) => endpoint.conditions?.ready !== false);
    const deployment = await this.liveDeployment();
    const matchLabels: Record<string, string> = deployment?.spec?.selector?.matchLabels ?? {};
    if (Object.keys(matchLabels).length === 0) {
      // Without the Deployment's selector an empty one would list every pod of the namespace (etcd's too).
      this.add({ check: 'pods', status: 'FAIL', message: `Deployment ${ns}/${installation.deploymentName} is not in the cluster, nor a selector for its pods in the manifests`, fix: this.apply });
      return [];
    }
    const podList = await this.get(`/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(labelSelector(matchLabels))}`);
    const pods: Unstructured[] = podList.body?.items ?? [];
    const check = 'endpoints';
    const service = `Service ${ns}/${installation.serviceName}`;
    if (slices.status !== 200) {
      this.add({ check, status: 'WARN', message: `cannot list the EndpointSlices of ${service}: ${statusMessage(slices)}`, fix: 'run doctor as a user who may list endpointslices' });
    } else if (ready.length > 0) {
      this.add({ check, status: 'PASS', message: `${service} has ${plural(ready.length, 'ready endpoint')}${endpoints.length > ready.length ? ` (${endpoints.length - ready.length} not ready)` : ''}` });
    } else {
      const why =
        pods.length === 0
          ? 'no pod of the Deployment exists (see the pods line)'
          : endpoints.length === 0
            ? `its selector matches none of the ${plural(pods.length, 'pod')} of Deployment ${installation.deploymentName}, or they have no IP yet`
            : `none of its ${plural(endpoints.length, 'endpoint')} is ready: the pods fail their readiness probe (see the pods line)`;
      this.add({ check, status: 'FAIL', message: `${service} has no ready endpoints: ${why}; the aggregator answers 503 for the group`, fix: `kubectl -n ${ns} get pods -l ${labelSelector(matchLabels)} -o wide, and fix what the pods line says` });
    }
    await this.checkPods(pods, podList, deployment);
    return pods;
  }

  private async checkPods(pods: Unstructured[], podList: KubeResponse, deployment: Unstructured): Promise<void> {
    const ns = this.ns;
    const check = 'pods';
    const owner = `Deployment ${ns}/${this.context.installation.deploymentName}`;
    if (podList.status !== 200) {
      this.add({ check, status: 'WARN', message: `cannot list the pods of ${owner}: ${statusMessage(podList)}`, fix: 'run doctor as a user who may list pods' });
      return;
    }
    if (pods.length === 0) {
      const conditions = (deployment?.status?.conditions ?? []).filter((c: Unstructured) => c.status !== 'True').map((c: Unstructured) => `${c.type}: ${c.message ?? c.reason}`);
      this.add({
        check,
        status: 'FAIL',
        message: `${owner} has no pod${conditions.length > 0 ? ` (${conditions.join('; ')})` : ''}`,
        fix: `kubectl -n ${ns} describe deployment ${this.context.installation.deploymentName} (its events say why no pod is created: quota, admission, ServiceAccount)`,
      });
      return;
    }
    const wanted = deployment?.spec?.replicas;
    let allReady = true;
    const restarted: string[] = [];
    for (const pod of pods) {
      const statuses: Unstructured[] = pod.status?.containerStatuses ?? [];
      const restarts = statuses.reduce((sum, s) => sum + (s.restartCount ?? 0), 0);
      const readyCondition = (pod.status?.conditions ?? []).find((c: Unstructured) => c.type === 'Ready');
      if (readyCondition?.status === 'True') {
        if (restarts > 0) restarted.push(`${pod.metadata.name} (${plural(restarts, 'restart')}${lastTermination(statuses)})`);
        continue;
      }
      allReady = false;
      const reasons = statuses.map(containerState).filter(Boolean);
      const phase = pod.status?.phase ?? 'Unknown';
      const waiting = statuses.map((s) => s.state?.waiting?.reason).find(Boolean);
      const logs = await this.lastLogLines(pod, restarts > 0);
      this.add({
        check,
        status: 'FAIL',
        message: `${pod.metadata.name} is not ready (${phase}${reasons.length > 0 ? `; ${reasons.join('; ')}` : ''}${restarts > 0 ? `; ${plural(restarts, 'restart')}` : ''})`,
        fix:
          waiting === 'ImagePullBackOff' || waiting === 'ErrImagePull'
            ? 'the image cannot be pulled: build and push it, then synth with --image <registry>/<image>:<tag> and apply'
            : `read its log (below, or kubectl -n ${ns} logs ${pod.metadata.name}${restarts > 0 ? ' --previous' : ''}) and kubectl -n ${ns} describe pod ${pod.metadata.name}`,
        details: logs,
      });
    }
    if (!allReady) return;
    const count = `${owner}: ${pods.length}${wanted !== undefined ? ` of ${wanted}` : ''} ${pods.length === 1 && wanted === undefined ? 'pod' : 'pods'} ready`;
    if (restarted.length > 0) {
      this.add({ check, status: 'WARN', message: `${count}, but restarted: ${restarted.join(', ')}`, fix: `kubectl -n ${ns} logs <pod> --previous shows why` });
    } else if (wanted !== undefined && pods.length < wanted) {
      this.add({ check, status: 'WARN', message: `${count}`, fix: `kubectl -n ${ns} describe deployment ${this.context.installation.deploymentName}` });
    } else {
      this.add({ check, status: 'PASS', message: `${count}, no restarts` });
    }
  }

  private async lastLogLines(pod: Unstructured, previous: boolean): Promise<string[] | undefined> {
    const container = pod.spec?.containers?.[0]?.name;
    const query = `tailLines=${this.context.logLines ?? 10}${container ? `&container=${encodeURIComponent(container)}` : ''}${previous ? '&previous=true' : ''}`;
    try {
      const response = await this.context.client.get(`/api/v1/namespaces/${this.ns}/pods/${pod.metadata.name}/log?${query}`, 'text/plain');
      if (response.status !== 200) return [`(no log: ${statusMessage(response)})`];
      const lines = response.text.split('\n').filter((line) => line.trim() !== '');
      return lines.length > 0 ? lines.map((line) => `log: ${line}`) : undefined;
    } catch (error) {
      return [`(no log: ${(error as Error).message})`];
    }
  }

  /** The Secret whose tls.crt the server serves: the volume mounted where --tls-cert-file points. */
  private servingSecretName(deployment: Unstructured): string {
    const spec = deployment?.spec?.template?.spec;
    const container = spec?.containers?.[0];
    const certFile: string | undefined = (container?.args ?? []).map((arg: string) => /^--tls-cert-file=(.*)$/.exec(arg)?.[1]).find(Boolean);
    const mount = (container?.volumeMounts ?? []).find((m: Unstructured) => certFile?.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
    const volume = (spec?.volumes ?? []).find((v: Unstructured) => v.name === mount?.name);
    return volume?.secret?.secretName ?? `${this.context.installation.serviceName}-tls`;
  }

  private async checkTls(pods: Unstructured[]): Promise<void> {
    const { installation } = this.context;
    const host = `${installation.serviceName}.${installation.namespace}.svc`;
    // caBundle: what the aggregator trusts, read from the live APIServices.
    const bundles = new Map<string, X509Certificate[]>();
    let bundleProblem = false;
    for (const { name, response } of await this.liveApiServices()) {
      if (response.status !== 200) continue;
      const check = `caBundle of ${name}`;
      if (response.body.spec?.insecureSkipTLSVerify) {
        this.add({ check, status: 'FAIL', message: 'insecureSkipTLSVerify is set: the aggregator does not verify the server, and forwards users to whoever answers', fix: `${this.apply} (the manifests set a caBundle)` });
        bundleProblem = true;
        continue;
      }
      let certificates: X509Certificate[];
      try {
        certificates = parsePemBundle(Buffer.from(response.body.spec?.caBundle ?? '', 'base64').toString('utf8'));
        if (certificates.length === 0) throw new Error('it is empty');
      } catch (error) {
        this.add({ check, status: 'FAIL', message: `does not parse: ${(error as Error).message}; the aggregator cannot verify the server`, fix: this.apply });
        bundleProblem = true;
        continue;
      }
      bundles.set(name, certificates);
      const soonest = certificates.reduce((a, b) => (daysLeft(a, this.now) <= daysLeft(b, this.now) ? a : b));
      const left = daysLeft(soonest, this.now);
      const what = `${plural(certificates.length, 'CA')} (${certificates.map(subjectOf).join(' + ')})`;
      if (left < 0) {
        this.add({ check, status: 'FAIL', message: `${what}: ${subjectOf(soonest)} expired on ${new Date(soonest.validTo).toISOString()}`, fix: 'rotate the CA (synth again after it is renewed) and apply' });
        bundleProblem = true;
      } else if (left < EXPIRY_WARNING_DAYS) {
        this.add({ check, status: 'WARN', message: `${what}: ${subjectOf(soonest)} expires in ${plural(left, 'day')}`, fix: 'rotate the CA now: synth again (it starts an overlap) and apply' });
      } else {
        this.add({ check, status: 'PASS', message: `${what}, valid for ${plural(left, 'more day')}` });
      }
    }

    const deployment = await this.liveDeployment();
    const secretName = this.servingSecretName(deployment);
    const check = 'serving certificate';
    const secretRef = `Secret ${installation.namespace}/${secretName}`;
    const secret = await this.get(`/api/v1/namespaces/${installation.namespace}/secrets/${secretName}`);
    if (secret.status !== 200) {
      this.add({ check, status: secret.status === 404 ? 'FAIL' : 'WARN', message: secret.status === 404 ? `${secretRef} does not exist: the pods cannot start` : `cannot read ${secretRef}: ${statusMessage(secret)}`, fix: secret.status === 404 ? this.apply : 'run doctor as a user who may read Secrets in the namespace' });
      return;
    }
    const certPem = Buffer.from(secret.body.data?.['tls.crt'] ?? '', 'base64').toString('utf8');
    let chain: X509Certificate[];
    try {
      chain = parsePemBundle(certPem);
      if (chain.length === 0) throw new Error('tls.crt holds no certificate');
    } catch (error) {
      this.add({ check, status: 'FAIL', message: `tls.crt of ${secretRef} does not parse: ${(error as Error).message}`, fix: this.apply });
      return;
    }
    const leaf = chain[0];
    const problems = servingProblems(leaf, host, this.now);
    // The aggregator verifies each APIService with its own caBundle: the certificate must chain to every one.
    const unchained = [...bundles].filter(([, anchors]) => !chainsTo(chain, anchors));
    if (unchained.length > 0) {
      const issuer = leaf.issuer.split('\n').join(', ');
      const anchorSubjects = [...new Set(unchained.flatMap(([, anchors]) => anchors.map(subjectOf)))];
      const sameName = anchorSubjects.includes(issuer) ? ', a CA of the same name but another key: the caBundle and the Secret come from different synths or PKI directories' : '';
      problems.unshift(
        `it (issued by ${issuer}) does not chain to the caBundle of ${unchained.map(([name]) => name).join(', ')} (${anchorSubjects.join(' + ')}${sameName}); the aggregator fails with "x509: certificate signed by unknown authority"`,
      );
    }
    const left = daysLeft(leaf, this.now);
    const subject = `${secretRef}: ${subjectOf(leaf)}`;
    if (problems.length > 0) {
      const sanProblem = problems.some((p) => p.includes('DNS name'));
      this.add({
        check,
        status: 'FAIL',
        message: `${subject}: ${problems.join('; ')}`,
        fix: sanProblem
          ? `issue it for ${host} (synth makes it so; with --cert-mode existing, reissue the certificate with that SAN), apply, then kubectl -n ${installation.namespace} rollout restart deployment ${installation.deploymentName}`
          : unchained.length > 0
            ? `${this.apply}: it holds the caBundle and the Secret of one synth (a synth with another --pki-dir makes another CA); then kubectl -n ${installation.namespace} rollout restart deployment ${installation.deploymentName}`
            : `synth again (it renews or reissues the certificate and keeps the caBundle in step) and ${this.apply}, then kubectl -n ${installation.namespace} rollout restart deployment ${installation.deploymentName}`,
      });
    } else if (left < EXPIRY_WARNING_DAYS) {
      this.add({ check, status: 'WARN', message: `${subject} expires in ${plural(left, 'day')}`, fix: `synth again (it renews certificates near their end) and ${this.apply}` });
    } else {
      this.add({ check, status: 'PASS', message: `${subject} for ${host}, chains to the caBundle, serverAuth, valid for ${plural(left, 'more day')}` });
    }
    if (bundleProblem) return;

    // The constructs stamp the certificate's checksum on the pod template: a pod whose stamp
    // differs started with another certificate than the Secret holds now.
    const checksum = createHash('sha256').update(certPem).digest('hex');
    const stamped = pods.filter((pod) => pod.metadata?.annotations?.[SERVING_CERT_CHECKSUM_ANNOTATION] !== undefined);
    const stale = stamped.filter((pod) => pod.metadata.annotations[SERVING_CERT_CHECKSUM_ANNOTATION] !== checksum).map((pod) => pod.metadata.name);
    if (stamped.length === 0) {
      this.add({ check: 'pods serve the Secret', status: 'SKIP', message: `no pod carries ${SERVING_CERT_CHECKSUM_ANNOTATION} (cert-manager or existing Secret mode)` });
    } else if (stale.length > 0) {
      this.add({
        check: 'pods serve the Secret',
        status: 'WARN',
        message: `${stale.join(', ')} started with another serving certificate than the Secret holds now: they may still serve the old one`,
        fix: `${this.apply} (the Deployment carries the new checksum), or kubectl -n ${installation.namespace} rollout restart deployment ${installation.deploymentName}`,
      });
    } else {
      this.add({ check: 'pods serve the Secret', status: 'PASS', message: `${plural(stamped.length, 'pod')} started with the certificate the Secret holds` });
    }
  }

  private async checkRbac(): Promise<void> {
    const { installation } = this.context;
    const sa = installation.serviceAccountName;
    const user = `system:serviceaccount:${installation.namespace}:${sa}`;
    const subject = `--serviceaccount=${installation.namespace}:${sa}`;
    const asks: { check: string; attributes: Record<string, string>[]; fix: string }[] = [
      {
        check: 'RBAC auth ConfigMap',
        attributes: ['get', 'list', 'watch'].map((verb) => ({ namespace: 'kube-system', verb, resource: 'configmaps', name: 'extension-apiserver-authentication' })),
        fix: `kubectl -n kube-system create rolebinding ${sa}:extension-apiserver-authentication-reader --role=extension-apiserver-authentication-reader ${subject} (or ${this.apply})`,
      },
      {
        check: 'RBAC delegation',
        attributes: [
          { group: 'authentication.k8s.io', resource: 'tokenreviews', verb: 'create' },
          { group: 'authorization.k8s.io', resource: 'subjectaccessreviews', verb: 'create' },
        ],
        fix: `kubectl create clusterrolebinding ${sa}:system:auth-delegator --clusterrole=system:auth-delegator ${subject} (or ${this.apply})`,
      },
      this.serverReads(),
    ];
    const review = (attributes: Record<string, string>): Promise<KubeResponse> =>
      this.context.client.review('/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: { user, groups: ['system:serviceaccounts', `system:serviceaccounts:${installation.namespace}`, 'system:authenticated'], resourceAttributes: attributes },
      });
    // All reviews at once: each is a round trip, and they are independent.
    const answers = await Promise.all(asks.map((ask) => Promise.all(ask.attributes.map(review))));
    for (const [index, ask] of asks.entries()) {
      const denied: string[] = [];
      let unknown: string | undefined;
      for (const [i, attributes] of ask.attributes.entries()) {
        const response = answers[index][i];
        const describe = `${attributes.verb} ${attributes.resource}${attributes.name ? `/${attributes.name}` : ''}${attributes.namespace ? ` in ${attributes.namespace}` : ''}`;
        if (response.status !== 201 && response.status !== 200) {
          unknown = statusMessage(response);
          break;
        }
        if (response.body?.status?.allowed !== true) denied.push(`${describe}${response.body?.status?.reason ? ` (${response.body.status.reason})` : ''}`);
      }
      if (unknown !== undefined) {
        this.add({ check: ask.check, status: 'WARN', message: `cannot ask the cluster (SubjectAccessReview): ${unknown}`, fix: 'run doctor as a user who may create subjectaccessreviews' });
      } else if (denied.length > 0) {
        this.add({ check: ask.check, status: 'FAIL', message: `${user} may not ${denied.join(', ')}: the server fails to start or refuses every request`, fix: ask.fix });
      } else {
        this.add({ check: ask.check, status: 'PASS', message: `${user} may ${describeAll(ask.attributes)}` });
      }
    }
  }

  /**
   * What the server reads besides the auth ConfigMap: the rules of the ClusterRoles the manifests
   * bind to its ServiceAccount (namespaces for the bundled server; admission and flow-control
   * reads too for a Go k8s.io/apiserver image), or namespaces without manifests.
   */
  private serverReads(): { check: string; attributes: Record<string, string>[]; fix: string } {
    const { installation } = this.context;
    const { objects, namespace } = installation;
    const sa = installation.serviceAccountName;
    const roleNames = objects
      .filter((o) => o.kind === 'ClusterRoleBinding' && o.roleRef?.kind === 'ClusterRole')
      .filter((o) => (o.subjects ?? []).some((s: Unstructured) => s.kind === 'ServiceAccount' && s.name === sa && s.namespace === namespace))
      .map((o) => o.roleRef.name as string);
    const roles = objects.filter((o) => o.kind === 'ClusterRole' && roleNames.includes(o.metadata.name));
    const attributes = roles.flatMap((role) =>
      (role.rules ?? []).flatMap((rule: Unstructured) =>
        (rule.apiGroups ?? ['']).flatMap((group: string) =>
          (rule.resources ?? []).flatMap((resource: string) => (rule.verbs ?? []).map((verb: string) => ({ ...(group ? { group } : {}), resource, verb }))),
        ),
      ),
    );
    if (attributes.length === 0) {
      return {
        check: 'RBAC server reads',
        attributes: ['get', 'list', 'watch'].map((verb) => ({ resource: 'namespaces', verb })),
        fix: `${this.apply} (ClusterRole and ClusterRoleBinding ${installation.serviceName} grant get, list and watch on namespaces)`,
      };
    }
    return {
      check: 'RBAC server reads',
      attributes,
      fix: `${this.apply} (ClusterRole${roles.length > 1 ? 's' : ''} ${roles.map((r) => r.metadata.name).join(', ')} and the ClusterRoleBinding${roles.length > 1 ? 's' : ''} to ${namespace}/${sa})`,
    };
  }

  private async checkDiscovery(): Promise<void> {
    for (const { group, version } of this.context.installation.apiServices) {
      const path = `/apis/${group}/${version}`;
      const check = `GET ${path}`;
      let response: KubeResponse;
      try {
        response = await this.context.client.get(path);
      } catch (error) {
        this.add({ check, status: 'FAIL', message: `no answer: ${(error as Error).message}`, fix: 'see the APIService line above' });
        continue;
      }
      const ms = `${Math.round(response.latencyMs)} ms`;
      if (response.status !== 200 || response.body?.kind !== 'APIResourceList') {
        this.add({ check, status: 'FAIL', message: `answers ${response.status} in ${ms}: ${statusMessage(response)}`, fix: 'the aggregator cannot reach the server: see the APIService and TLS lines above' });
        continue;
      }
      const resources: string[] = (response.body.resources ?? []).map((r: Unstructured) => r.name).filter((name: string) => !name.includes('/'));
      if (resources.length === 0) {
        this.add({ check, status: 'WARN', message: `answers in ${ms} but lists no resource`, fix: 'the server serves the version without resources: check its --help and the APIs it was built with' });
      } else if (response.latencyMs > 1000) {
        this.add({ check, status: 'WARN', message: `answers in ${ms} (slow: kubectl waits this long for discovery), lists ${resources.join(', ')}`, fix: 'look at the server pods\' CPU and the network between the control plane and the pods' });
      } else {
        this.add({ check, status: 'PASS', message: `answers in ${ms}, lists ${resources.join(', ')}` });
      }
    }
  }

  private async checkEtcd(): Promise<void> {
    const name = this.context.installation.etcdStatefulSetName;
    if (name === undefined) {
      this.add({ check: 'etcd', status: 'SKIP', message: 'the installation deploys no etcd (memory or external-etcd storage)' });
      return;
    }
    const check = 'etcd';
    const statefulSet = `StatefulSet ${this.ns}/${name}`;
    const response = await this.get(`/apis/apps/v1/namespaces/${this.ns}/statefulsets/${name}`);
    if (response.status !== 200) {
      this.add({ check, status: 'FAIL', message: response.status === 404 ? `${statefulSet} does not exist` : `cannot read ${statefulSet}: ${statusMessage(response)}`, fix: this.apply });
      return;
    }
    const wanted: number = response.body.spec?.replicas ?? 1;
    const ready: number = response.body.status?.readyReplicas ?? 0;
    if (ready >= wanted) {
      this.add({ check, status: 'PASS', message: `${statefulSet}: ${ready} of ${wanted} members ready` });
      return;
    }
    const quorum = Math.floor(wanted / 2) + 1;
    this.add({
      check,
      status: ready >= quorum ? 'WARN' : 'FAIL',
      message: `${statefulSet}: ${ready} of ${wanted} members ready: ${ready >= quorum ? `quorum (${quorum}) holds, one more failure loses it` : `below quorum (${quorum}): the server cannot read or write`}`,
      fix: `kubectl -n ${this.ns} get pods -l app.kubernetes.io/name=${name} and kubectl -n ${this.ns} logs <member>`,
    });
  }
}

/** `get, list, watch configmaps/extension-apiserver-authentication in kube-system; create tokenreviews` */
function describeAll(attributes: readonly Record<string, string>[]): string {
  const byTarget = new Map<string, string[]>();
  for (const a of attributes) {
    const target = `${a.resource}${a.name ? `/${a.name}` : ''}${a.namespace ? ` in ${a.namespace}` : ''}`;
    byTarget.set(target, [...(byTarget.get(target) ?? []), a.verb]);
  }
  return [...byTarget].map(([target, verbs]) => `${verbs.join(', ')} ${target}`).join('; ');
}

/** True when `chain` (leaf first, then intermediates) leads to one of `anchors`. */
function chainsTo(chain: readonly X509Certificate[], anchors: readonly X509Certificate[]): boolean {
  let current = chain[0];
  for (let hops = 0; hops <= chain.length; hops++) {
    if (issuerAmong(current, anchors)) return true;
    const next = issuerAmong(current, chain.slice(1));
    if (!next || next === current) return false;
    current = next;
  }
  return false;
}

function containerState(status: Unstructured): string {
  const waiting = status.state?.waiting;
  if (waiting) return `${status.name} waiting: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ''}`;
  const terminated = status.state?.terminated;
  if (terminated) return `${status.name} terminated: ${terminated.reason} (exit ${terminated.exitCode})`;
  if (status.ready === false) return `${status.name} running, not ready: its readiness probe fails`;
  return '';
}

function lastTermination(statuses: Unstructured[]): string {
  const last = statuses.map((s) => s.lastState?.terminated).find(Boolean);
  return last ? `, last: ${last.reason} exit ${last.exitCode}${last.finishedAt ? ` at ${last.finishedAt}` : ''}` : '';
}

/** What an APIService's Available=False reason means, and what fixes it (the aggregator's reasons, k8s.io/kube-aggregator). */
export function explainUnavailable(reason: string, message: string, service: string, namespace: string, apply: string): { meaning: string; fix: string } {
  switch (reason) {
    case 'ServiceNotFound':
      return { meaning: `the Service ${service} does not exist`, fix: apply };
    case 'ServiceAccessError':
      return { meaning: `the aggregator cannot read the Service ${service}`, fix: 'check kube-apiserver can read Services (its RBAC) and the log of kube-apiserver' };
    case 'ServicePortError':
      return { meaning: `the APIService's service port is not a port of ${service}`, fix: apply };
    case 'EndpointsNotFound':
    case 'MissingEndpoints':
      return { meaning: `the Service ${service} has no ready endpoint: no server pod is ready`, fix: 'see the Service and pods lines below' };
    case 'EndpointsAccessError':
      return { meaning: 'the aggregator cannot read the Service\'s endpoints', fix: 'check kube-apiserver\'s RBAC on endpoints and endpointslices' };
    case 'FailedDiscoveryCheck': {
      const lower = message.toLowerCase();
      if (lower.includes('unknown authority') || lower.includes('x509: certificate signed by')) {
        return { meaning: 'the server\'s certificate does not chain to the APIService caBundle', fix: 'see the TLS lines below: caBundle and Secret must come from the same CA; synth, apply, restart the pods' };
      }
      if (lower.includes('certificate is valid for')) {
        return { meaning: 'the server\'s certificate does not carry the Service\'s DNS name', fix: 'see the serving certificate line below' };
      }
      if (lower.includes('expired') || lower.includes('not yet valid')) {
        return { meaning: 'the server\'s certificate is out of its validity period', fix: 'see the serving certificate line below' };
      }
      if (lower.includes('deadline exceeded') || lower.includes('timeout') || lower.includes('i/o timeout')) {
        return {
          meaning: 'kube-apiserver gets no answer from the pods: a NetworkPolicy or firewall blocks the control plane, or it cannot route to pod IPs',
          fix: `allow ingress to the server pods' port from the control plane in ${namespace}; when kube-proxy does not run on the control-plane hosts, start kube-apiserver with --enable-aggregator-routing=true`,
        };
      }
      if (lower.includes('connection refused')) {
        return { meaning: 'nothing listens on the Service\'s target port in the pods', fix: 'compare the Service targetPort with the server\'s --secure-port, and see the pods line' };
      }
      if (/\b(401|403)\b/.test(message)) {
        return { meaning: 'the server refuses the aggregator\'s requests: it does not trust the front-proxy client certificate or its name', fix: 'see the aggregation layer and RBAC lines: the server must read the auth ConfigMap' };
      }
      return { meaning: 'the aggregator reached the Service but discovery of the version failed', fix: 'see the TLS and pods lines below, and the server\'s log' };
    }
    default:
      return { meaning: message || 'the aggregator marks it unavailable', fix: 'kubectl get apiservice -o yaml, and the lines below' };
  }
}
