import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Size } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import {
  AggregatedApiServer,
  AggregatedApiServerProps,
  Certificates,
  DEFAULT_SERVER_IMAGE,
  ETCD_CLIENT_CERT_CHECKSUM_ANNOTATION,
  EtcdCertificates,
  FLUNDER,
  GENERIC_APISERVER_RULES,
  SERVING_CERT_CHECKSUM_ANNOTATION,
  Storage,
  WARDLE,
} from '../../lib';
import { makeCa, makeLeaf } from '../support/pki';
import { CLUSTER_SCOPED_KINDS, findObject, KubeObject, validateKubeObject } from './_kube-schemas';
import { decodeBase64, fixtureCertificates, FIXTURE_PEMS, newChart, synth } from './_fixtures';

/* eslint-disable @typescript-eslint/no-explicit-any */

/** The default storage, with etcd's certificates from cert-manager: no keys are made, so the output is stable and nothing is written to disk. */
function etcdStorage() {
  return Storage.etcdCluster({ certificates: EtcdCertificates.certManager() });
}

/** The flags by which the props chose storage before `storage` existed. */
const LEGACY_STORAGE_ARG = /^--(storage|etcd-servers)(=|$)/;

function synthServer(props: Partial<AggregatedApiServerProps> = {}): { server: AggregatedApiServer; objects: KubeObject[] } {
  const chart = newChart();
  const ownStorage = props.storage !== undefined || props.sharedStorage !== undefined || (props.extraArgs ?? []).some((arg) => LEGACY_STORAGE_ARG.test(arg));
  const server = new AggregatedApiServer(chart, 'wardle', { api: WARDLE, certificates: fixtureCertificates(), ...(ownStorage ? {} : { storage: etcdStorage() }), ...props });
  return { server, objects: synth(chart) };
}

/** etcd's objects are EtcdCluster's to test; here they are told apart by name. */
function isEtcdObject(object: KubeObject): boolean {
  return object.metadata.name.startsWith('wardle-apiserver-etcd');
}

const ETCD_ARGS = [
  '--storage=etcd',
  '--etcd-servers=https://wardle-apiserver-etcd-client.wardle.svc:2379',
  '--etcd-cafile=/var/run/apiserver/etcd-client/ca.crt',
  '--etcd-certfile=/var/run/apiserver/etcd-client/tls.crt',
  '--etcd-keyfile=/var/run/apiserver/etcd-client/tls.key',
];

function podSpecOf(objects: KubeObject[]): any {
  return (findObject(objects, 'Deployment') as any).spec.template.spec;
}

function containerOf(objects: KubeObject[]): any {
  const containers = podSpecOf(objects).containers;
  expect(containers).toHaveLength(1);
  return containers[0];
}

describe('AggregatedApiServer with the defaults', () => {
  // GIVEN the bundled wardle API and the fixed PEM fixtures
  // WHEN it is synthesized
  const { server, objects } = synthServer();

  test('matches the snapshot', () => {
    // THEN the whole output is as reviewed (etcd's objects are in EtcdCluster's snapshot)
    expect(objects.filter((o) => !isEtcdObject(o))).toMatchSnapshot();
  });

  test('emits exactly the expected objects', () => {
    // THEN every step of the table is there, once, and an etcd cluster beside them
    expect(objects.filter((o) => !isEtcdObject(o)).map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort()).toEqual(
      [
        'APIService//v1alpha1.wardle.example.com',
        'APIService//v1beta1.wardle.example.com',
        'ClusterRole//wardle-apiserver',
        'ClusterRole//wardle.example.com:cluster-editor',
        'ClusterRole//wardle.example.com:cluster-reader',
        'ClusterRole//wardle.example.com:editor',
        'ClusterRole//wardle.example.com:reader',
        'ClusterRoleBinding//wardle-apiserver',
        'ClusterRoleBinding//wardle-apiserver:system:auth-delegator',
        'Deployment/wardle/wardle-apiserver',
        'Namespace//wardle',
        'PodDisruptionBudget/wardle/wardle-apiserver',
        'RoleBinding/kube-system/wardle-apiserver:extension-apiserver-authentication-reader',
        'Secret/wardle/wardle-apiserver-tls',
        'Service/wardle/wardle-apiserver',
        'ServiceAccount/wardle/wardle-apiserver',
      ].sort(),
    );
    expect(objects.filter(isEtcdObject).map((o) => o.kind)).toEqual(expect.arrayContaining(['StatefulSet', 'Service', 'PodDisruptionBudget', 'NetworkPolicy']));
  });

  test('etcd comes before the server in the output (apply order), the APIServices last', () => {
    const kinds = objects.map((o) => o.kind);
    expect(objects.findIndex((o) => o.kind === 'StatefulSet')).toBeLessThan(kinds.indexOf('Deployment'));
    expect(kinds.slice(-2)).toEqual(['APIService', 'APIService']);
  });

  test('every object validates against the Kubernetes schemas', () => {
    // THEN kubernetes-models accepts each one
    for (const object of objects) expect(() => validateKubeObject(object)).not.toThrow();
  });

  test('the schema check can fail', () => {
    // GIVEN a Deployment with a string where the schema wants an integer
    const broken = { ...findObject(objects, 'Deployment'), spec: { ...(findObject(objects, 'Deployment') as any).spec, replicas: 'two' } };
    // THEN the helper the other tests rely on rejects it
    expect(() => validateKubeObject(broken)).toThrow(/replicas/);
  });

  test('cluster-scoped objects carry no namespace, namespaced ones do', () => {
    for (const object of objects) {
      if (CLUSTER_SCOPED_KINDS.includes(object.kind)) expect(object.metadata.namespace).toBeUndefined();
      else expect(object.metadata.namespace).toBeDefined();
    }
  });

  test('exposes its names and children', () => {
    expect(server.namespace).toBe('wardle');
    expect(server.name).toBe('wardle-apiserver');
    expect(server.serviceName).toBe('wardle-apiserver');
    expect(server.secretName).toBe('wardle-apiserver-tls');
    expect(server.caBundlePem).toBe(FIXTURE_PEMS.caBundlePem);
    expect(server.apiServices.map((a) => a.name)).toEqual(['v1beta1.wardle.example.com', 'v1alpha1.wardle.example.com']);
    expect(server.podDisruptionBudget?.name).toBe('wardle-apiserver'); // two replicas
    expect(server.certificatePems).toHaveLength(2);
    expect(server.etcdCluster?.name).toBe('wardle-apiserver-etcd');
    expect(server.storage.etcdClientSecretName).toBe(server.etcdCluster?.clientSecretName);
  });

  test('registers one APIService per served version, verified against the CA', () => {
    const apiServices = objects.filter((o) => o.kind === 'APIService') as any[];
    expect(apiServices.map((a) => a.metadata.name).sort()).toEqual(['v1alpha1.wardle.example.com', 'v1beta1.wardle.example.com']);
    for (const apiService of apiServices) {
      expect(apiService.metadata.name).toBe(`${apiService.spec.version}.${apiService.spec.group}`);
      expect(apiService.spec.service).toEqual({ name: 'wardle-apiserver', namespace: 'wardle', port: 443 });
      expect(decodeBase64(apiService.spec.caBundle)).toBe(FIXTURE_PEMS.caBundlePem);
      expect(apiService.spec.insecureSkipTLSVerify).toBeUndefined();
      expect(apiService.spec.groupPriorityMinimum).toBe(1000);
    }
    // THEN the preferred version (v1beta1) has the highest versionPriority
    expect(apiServices.find((a) => a.spec.version === 'v1beta1').spec.versionPriority).toBe(15);
    expect(apiServices.find((a) => a.spec.version === 'v1alpha1').spec.versionPriority).toBe(14);
  });

  test('the Secret is a kubernetes.io/tls Secret that openssl verifies against the caBundle', () => {
    const secret = findObject(objects, 'Secret', 'wardle-apiserver-tls') as any;
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(Object.keys(secret.data).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
    const caBundle = decodeBase64((findObject(objects, 'APIService', 'v1beta1.wardle.example.com') as any).spec.caBundle);
    expect(decodeBase64(secret.data['ca.crt'])).toBe(caBundle);

    // THEN openssl, as the aggregator would, accepts tls.crt for wardle-apiserver.wardle.svc
    const dir = mkdtempSync(join(tmpdir(), 'aggregated-api-server-'));
    try {
      writeFileSync(join(dir, 'ca.crt'), caBundle);
      writeFileSync(join(dir, 'tls.crt'), decodeBase64(secret.data['tls.crt']));
      const out = execFileSync(
        'openssl',
        ['verify', '-CAfile', join(dir, 'ca.crt'), '-verify_hostname', 'wardle-apiserver.wardle.svc', '-purpose', 'sslserver', join(dir, 'tls.crt')],
        { encoding: 'utf8' },
      );
      expect(out).toMatch(/: OK/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // AND tls.key is the serving certificate's key
    const key = createPrivateKey(decodeBase64(secret.data['tls.key']));
    const cert = new X509Certificate(decodeBase64(secret.data['tls.crt']));
    expect(createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(cert.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
  });

  test('the only private key in the output is the serving key (never the CA key)', () => {
    const text = JSON.stringify(objects);
    const decoded = objects
      .filter((o) => o.kind === 'Secret')
      .flatMap((o) => Object.values((o as any).data as Record<string, string>).map((v) => Buffer.from(v, 'base64').toString('utf8')));
    const privateKeys = [text, ...decoded].flatMap((s) => s.match(/-{5}BEGIN [A-Z ]*PRIVATE KEY-{5}/g) ?? []);
    expect(privateKeys).toHaveLength(1);
    expect(decoded.join('\n')).toContain(FIXTURE_PEMS.tlsKeyPem.trim());
  });

  test('the ServiceAccount token is mounted into the pod', () => {
    const serviceAccount = findObject(objects, 'ServiceAccount', 'wardle-apiserver') as any;
    expect(serviceAccount.automountServiceAccountToken).toBe(true);
    expect(podSpecOf(objects).automountServiceAccountToken).toBe(true);
    expect(podSpecOf(objects).serviceAccountName).toBe('wardle-apiserver');
  });

  test('binds system:auth-delegator and the authentication reader in kube-system', () => {
    const subject = { kind: 'ServiceAccount', name: 'wardle-apiserver', namespace: 'wardle' };
    const delegator = findObject(objects, 'ClusterRoleBinding', 'wardle-apiserver:system:auth-delegator') as any;
    expect(delegator.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' });
    expect(delegator.subjects).toEqual([subject]);

    const reader = findObject(objects, 'RoleBinding') as any;
    expect(reader.metadata.namespace).toBe('kube-system');
    expect(reader.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'extension-apiserver-authentication-reader' });
    expect(reader.subjects).toEqual([subject]);
  });

  test('grants the server what it reads itself and nothing more: namespaces and admission webhook configurations and policies, get/list/watch', () => {
    const role = findObject(objects, 'ClusterRole', 'wardle-apiserver') as any;
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] },
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations', 'validatingadmissionpolicies', 'validatingadmissionpolicybindings'],
        verbs: ['get', 'list', 'watch'],
      },
    ]);
    const binding = findObject(objects, 'ClusterRoleBinding', 'wardle-apiserver') as any;
    expect(binding.roleRef.name).toBe('wardle-apiserver');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'wardle-apiserver', namespace: 'wardle' }]);
  });

  test('reader and editor roles cover the namespaced resources and aggregate into view, edit and admin', () => {
    const reader = findObject(objects, 'ClusterRole', 'wardle.example.com:reader') as any;
    expect(reader.metadata.labels).toEqual({ 'rbac.authorization.k8s.io/aggregate-to-view': 'true' });
    expect(reader.rules).toEqual([{ apiGroups: ['wardle.example.com'], resources: ['flunders', 'flunders/status'], verbs: ['get', 'list', 'watch'] }]);

    const editor = findObject(objects, 'ClusterRole', 'wardle.example.com:editor') as any;
    expect(editor.metadata.labels).toEqual({
      'rbac.authorization.k8s.io/aggregate-to-edit': 'true',
      'rbac.authorization.k8s.io/aggregate-to-admin': 'true',
    });
    const verbsOf = (role: any, resource: string): string[] => role.rules.filter((r: any) => r.resources.includes(resource)).flatMap((r: any) => r.verbs).sort();
    expect(verbsOf(editor, 'flunders')).toEqual(['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']);
    // status is written by the server, not by users
    expect(verbsOf(editor, 'flunders/status')).toEqual(['get', 'list', 'watch']);
  });

  test('cluster-scoped kinds are in roles of their own, aggregated into nothing', () => {
    // THEN no aggregated role (view, edit, admin: handed out per namespace) reaches the cluster-scoped fischers
    const aggregated = objects.filter((o) => o.kind === 'ClusterRole' && Object.keys(o.metadata.labels ?? {}).some((l) => l.startsWith('rbac.authorization.k8s.io/aggregate-to-')));
    expect(aggregated.flatMap((role: any) => role.rules.flatMap((r: any) => r.resources)).filter((r: string) => r.startsWith('fischers'))).toEqual([]);
    // AND cluster-reader and cluster-editor cover them, without aggregation labels
    const clusterReader = findObject(objects, 'ClusterRole', 'wardle.example.com:cluster-reader') as any;
    const clusterEditor = findObject(objects, 'ClusterRole', 'wardle.example.com:cluster-editor') as any;
    expect(clusterReader.metadata.labels).toBeUndefined();
    expect(clusterEditor.metadata.labels).toBeUndefined();
    expect(clusterReader.rules).toEqual([{ apiGroups: ['wardle.example.com'], resources: ['fischers'], verbs: ['get', 'list', 'watch'] }]);
    const verbs = clusterEditor.rules.filter((r: any) => r.resources.includes('fischers')).flatMap((r: any) => r.verbs).sort();
    expect(verbs).toEqual(['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']);
  });

  test('the container loads the mounted certificates, stores in the etcd cluster and listens on 10250', () => {
    const container = containerOf(objects);
    expect(container.image).toBe(DEFAULT_SERVER_IMAGE);
    expect(container.imagePullPolicy).toBe('IfNotPresent');
    expect(container.args).toEqual([
      '--secure-port=10250',
      '--tls-cert-file=/var/run/apiserver/serving-cert/tls.crt',
      '--tls-private-key-file=/var/run/apiserver/serving-cert/tls.key',
      ...ETCD_ARGS,
    ]);
    const etcdMount = container.volumeMounts.find((m: any) => m.mountPath === '/var/run/apiserver/etcd-client');
    expect(etcdMount.readOnly).toBe(true);
    expect(podSpecOf(objects).volumes.find((v: any) => v.name === etcdMount.name).secret).toEqual({ secretName: 'wardle-apiserver-etcd-client-tls', defaultMode: 0o440 });
    expect(container.ports).toEqual([{ containerPort: 10250, name: 'https' }]);
    const certMount = container.volumeMounts.find((m: any) => m.mountPath === '/var/run/apiserver/serving-cert');
    expect(certMount.readOnly).toBe(true);
    const certVolume = podSpecOf(objects).volumes.find((v: any) => v.name === certMount.name);
    expect(certVolume.secret.secretName).toBe('wardle-apiserver-tls');
    const tmpMount = container.volumeMounts.find((m: any) => m.mountPath === '/tmp');
    expect(podSpecOf(objects).volumes.find((v: any) => v.name === tmpMount.name).emptyDir).toEqual({});
  });

  test('probes /livez and /readyz over HTTPS on the secure port', () => {
    const container = containerOf(objects);
    expect(container.livenessProbe.httpGet).toEqual({ path: '/livez', port: 10250, scheme: 'HTTPS' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 10250, scheme: 'HTTPS' });
    expect(container.startupProbe).toBeUndefined();
  });

  test('meets the restricted Pod Security Standard', () => {
    const container = containerOf(objects);
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(container.securityContext.capabilities.add).toBeUndefined();
    expect(podSpecOf(objects).securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } });
    expect(podSpecOf(objects).hostNetwork).toBe(false);
    expect((findObject(objects, 'Namespace') as any).metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  test('requests resources sized for the server, with no CPU limit', () => {
    expect(containerOf(objects).resources).toEqual({ requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } });
  });

  test('annotates the pod template with the serving certificate checksum', () => {
    const template = (findObject(objects, 'Deployment') as any).spec.template;
    expect(template.metadata.annotations[SERVING_CERT_CHECKSUM_ANNOTATION]).toBe(createHash('sha256').update(FIXTURE_PEMS.tlsCertPem).digest('hex'));
  });

  test('runs two replicas by default: they share the etcd cluster', () => {
    const deployment = findObject(objects, 'Deployment') as any;
    expect(deployment.spec.replicas).toBe(2);
    expect((findObject(objects, 'PodDisruptionBudget', 'wardle-apiserver') as any).spec.minAvailable).toBe(1);
  });

  test('the Service forwards 443 to the secure port of the pods', () => {
    const service = findObject(objects, 'Service', 'wardle-apiserver') as any;
    expect(service.spec.ports).toEqual([{ name: 'https', port: 443, targetPort: 10250 }]);
    const podLabels = (findObject(objects, 'Deployment') as any).spec.template.metadata.labels;
    expect(Object.keys(service.spec.selector).length).toBeGreaterThan(0);
    expect(podLabels).toMatchObject(service.spec.selector);
  });
});

describe('AggregatedApiServer options', () => {
  test('storage flags in extraArgs (as before storage was a prop): two replicas, a PodDisruptionBudget and preferred anti-affinity, no etcd deployed', () => {
    // GIVEN the bundled server on an etcd of one's own WHEN synthesized without replicas
    const { objects } = synthServer({ extraArgs: ['--etcd-servers=https://etcd.wardle.svc:2379'] });
    // THEN
    expect(objects.filter(isEtcdObject)).toEqual([]);
    expect(containerOf(objects).args.filter((arg: string) => arg.startsWith('--etcd') || arg.startsWith('--storage'))).toEqual(['--etcd-servers=https://etcd.wardle.svc:2379']);
    const deployment = findObject(objects, 'Deployment') as any;
    expect(deployment.spec.replicas).toBe(2);
    const pdb = findObject(objects, 'PodDisruptionBudget') as any;
    expect(pdb.apiVersion).toBe('policy/v1');
    expect(pdb.spec).toEqual({ minAvailable: 1, selector: { matchLabels: deployment.spec.selector.matchLabels } });
    const [term] = deployment.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution;
    expect(term.podAffinityTerm).toEqual({ labelSelector: { matchLabels: deployment.spec.selector.matchLabels }, topologyKey: 'kubernetes.io/hostname' });
    expect(deployment.spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution).toBeUndefined();
  });

  test('sharedStorage: true allows more than one replica of any image', () => {
    const { objects } = synthServer({ image: 'registry.example.com/go-apiserver:1.0', sharedStorage: true, replicas: 3 });
    expect((findObject(objects, 'Deployment') as any).spec.replicas).toBe(3);
  });

  test('replicas 1: no PodDisruptionBudget, no anti-affinity', () => {
    // GIVEN replicas 1 WHEN synthesized
    const { server, objects } = synthServer({ replicas: 1 });
    // THEN
    expect(objects.filter((o) => o.kind === 'PodDisruptionBudget' && !isEtcdObject(o))).toHaveLength(0);
    expect(server.podDisruptionBudget).toBeUndefined();
    expect(podSpecOf(objects).affinity).toBeUndefined();
    expect((findObject(objects, 'Deployment') as any).spec.replicas).toBe(1);
  });

  test('replicas 3: PodDisruptionBudget minAvailable 1 and anti-affinity', () => {
    const { objects } = synthServer({ replicas: 3, sharedStorage: true });
    expect((findObject(objects, 'Deployment') as any).spec.replicas).toBe(3);
    expect((findObject(objects, 'PodDisruptionBudget') as any).spec.minAvailable).toBe(1);
    expect(podSpecOf(objects).affinity.podAntiAffinity).toBeDefined();
  });

  test('createNamespace false: no Namespace object', () => {
    const { objects } = synthServer({ createNamespace: false });
    expect(objects.filter((o) => o.kind === 'Namespace')).toHaveLength(0);
    expect(findObject(objects, 'Deployment').metadata.namespace).toBe('wardle');
  });

  test('a namespace Kubernetes creates itself is not emitted (nor relabelled restricted)', () => {
    // GIVEN the server in kube-system, with certificates that exist there
    const certificates = Certificates.fromSecret({ secretName: 'wardle-apiserver-tls', caBundlePem: FIXTURE_PEMS.caBundlePem });
    // WHEN synthesized without createNamespace
    const { server, objects } = synthServer({ namespace: 'kube-system', certificates });
    // THEN no Namespace object, and everything namespaced is in kube-system
    expect(objects.filter((o) => o.kind === 'Namespace')).toHaveLength(0);
    expect(server.namespaceResource).toBeUndefined();
    expect(findObject(objects, 'Deployment').metadata.namespace).toBe('kube-system');
  });

  test('serverRules: a k8s.io/apiserver server also reads admission and flow-control configuration', () => {
    // GIVEN an image built on k8s.io/apiserver WHEN its rules are added
    const { objects } = synthServer({ serverRules: GENERIC_APISERVER_RULES });
    // THEN the server's ClusterRole grants them after the namespaces rule, read-only
    const role = findObject(objects, 'ClusterRole', 'wardle-apiserver') as any;
    const allows = (group: string, resource: string, verb: string): boolean =>
      role.rules.some((r: any) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
    for (const verb of ['get', 'list', 'watch']) {
      expect(allows('', 'namespaces', verb)).toBe(true);
      expect(allows('admissionregistration.k8s.io', 'mutatingwebhookconfigurations', verb)).toBe(true);
      expect(allows('admissionregistration.k8s.io', 'validatingwebhookconfigurations', verb)).toBe(true);
      expect(allows('flowcontrol.apiserver.k8s.io', 'flowschemas', verb)).toBe(true);
      expect(allows('flowcontrol.apiserver.k8s.io', 'prioritylevelconfigurations', verb)).toBe(true);
    }
    expect(role.rules.flatMap((r: any) => r.verbs)).not.toContain('create');
  });

  test('brings its own ServiceAccount', () => {
    // GIVEN a ServiceAccount made elsewhere
    const chart = newChart();
    const serviceAccount = kplus.ServiceAccount.fromServiceAccountName(chart, 'Existing', 'platform-apiserver', { namespaceName: 'wardle' });
    new AggregatedApiServer(chart, 'wardle', { api: WARDLE, certificates: fixtureCertificates(), serviceAccount, storage: etcdStorage() });
    const objects = synth(chart);
    // THEN none is created, and the pod and every binding use it
    expect(objects.filter((o) => o.kind === 'ServiceAccount')).toHaveLength(0);
    expect(podSpecOf(objects).serviceAccountName).toBe('platform-apiserver');
    expect(podSpecOf(objects).automountServiceAccountToken).toBe(true);
    for (const binding of objects.filter((o) => o.kind.endsWith('Binding')) as any[]) {
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'platform-apiserver', namespace: 'wardle' }]);
    }
  });

  test('a custom port, image, pull policy, priorities, resources, labels and extras', () => {
    // GIVEN every option set (the certificate must then be for the new Service name)
    const chart = newChart();
    new AggregatedApiServer(chart, 'custom', {
      api: WARDLE,
      namespace: 'wardle',
      name: 'wardle-apiserver',
      image: 'registry.example.com/wardle:1.2.3',
      imagePullPolicy: kplus.ImagePullPolicy.ALWAYS,
      securePort: 8443,
      groupPriorityMinimum: 2000,
      versionPriority: 100,
      certificates: fixtureCertificates(),
      storage: etcdStorage(),
      priorityClassName: 'system-cluster-critical',
      extraArgs: ['--v=2'],
      env: { LOG_LEVEL: 'debug' },
      labels: { 'example.com/team': 'platform' },
      resources: { cpu: { request: kplus.Cpu.millis(250) }, memory: { request: Size.mebibytes(256), limit: Size.mebibytes(512) } },
    });
    const objects = synth(chart);
    for (const object of objects) expect(() => validateKubeObject(object)).not.toThrow();
    const container = containerOf(objects);
    // THEN
    expect(container.image).toBe('registry.example.com/wardle:1.2.3');
    expect(container.imagePullPolicy).toBe('Always');
    expect(container.args).toEqual([
      '--secure-port=8443',
      '--tls-cert-file=/var/run/apiserver/serving-cert/tls.crt',
      '--tls-private-key-file=/var/run/apiserver/serving-cert/tls.key',
      ...ETCD_ARGS,
      '--v=2',
    ]);
    expect(container.env).toEqual([{ name: 'LOG_LEVEL', value: 'debug' }]);
    expect(container.ports).toEqual([{ containerPort: 8443, name: 'https' }]);
    expect(container.livenessProbe.httpGet.port).toBe(8443);
    expect(container.readinessProbe.httpGet.port).toBe(8443);
    expect((findObject(objects, 'Service', 'wardle-apiserver') as any).spec.ports).toEqual([{ name: 'https', port: 443, targetPort: 8443 }]);
    expect(podSpecOf(objects).priorityClassName).toBe('system-cluster-critical');
    expect(container.resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '512Mi' } });
    const apiServices = objects.filter((o) => o.kind === 'APIService') as any[];
    expect(apiServices.map((a) => [a.spec.version, a.spec.groupPriorityMinimum, a.spec.versionPriority])).toEqual([
      ['v1beta1', 2000, 100],
      ['v1alpha1', 2000, 99],
    ]);
    for (const object of objects) expect(object.metadata.labels).toMatchObject({ 'example.com/team': 'platform' });
  });

  test('versionPriority never drops below 1', () => {
    const { objects } = synthServer({ versionPriority: 1 });
    expect(objects.filter((o) => o.kind === 'APIService').map((a: any) => a.spec.versionPriority)).toEqual([1, 1]);
  });

  test('only served versions get an APIService', () => {
    // GIVEN v1beta1 of Flunder no longer served
    const api = { ...WARDLE, kinds: WARDLE.kinds.map((k) => (k === FLUNDER ? { ...k, versions: k.versions.map((v) => ({ ...v, served: v.name !== 'v1beta1' })) } : k)) };
    const { objects } = synthServer({ api });
    expect(objects.filter((o) => o.kind === 'APIService').map((a) => a.metadata.name)).toEqual(['v1alpha1.wardle.example.com']);
  });

  test('deployer: a ClusterRole limited to this server\'s APIServices, bound to the given subjects', () => {
    const { objects } = synthServer({ deployer: { subjects: [{ kind: 'ServiceAccount', name: 'ci', namespace: 'ci' }] } });
    const role = findObject(objects, 'ClusterRole', 'wardle-apiserver:apiservice-deployer') as any;
    const named = role.rules.find((r: any) => r.resourceNames !== undefined);
    expect(named).toEqual({
      apiGroups: ['apiregistration.k8s.io'],
      resources: ['apiservices'],
      resourceNames: ['v1beta1.wardle.example.com', 'v1alpha1.wardle.example.com'],
      verbs: ['get', 'update', 'patch', 'delete'],
    });
    // create cannot be limited by name in RBAC; it is the only unnamed verb
    expect(role.rules.filter((r: any) => r.resourceNames === undefined).flatMap((r: any) => r.verbs)).toEqual(['create']);
    const binding = findObject(objects, 'ClusterRoleBinding', 'wardle-apiserver:apiservice-deployer') as any;
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'ci', namespace: 'ci' }]);
    for (const object of objects) expect(() => validateKubeObject(object)).not.toThrow();
  });

  test('deployer true: the role without a binding; default: neither', () => {
    const withRole = synthServer({ deployer: true }).objects;
    expect(withRole.filter((o) => o.metadata.name === 'wardle-apiserver:apiservice-deployer').map((o) => o.kind)).toEqual(['ClusterRole']);
    expect(synthServer().objects.filter((o) => o.metadata.name === 'wardle-apiserver:apiservice-deployer')).toHaveLength(0);
  });
});

describe('AggregatedApiServer storage', () => {
  test('the default: an etcd cluster named after the server, its client certificate mounted and its checksum on the pod', () => {
    // GIVEN no storage prop, and etcd's PKI in a temporary directory
    const pkiDirectory = mkdtempSync(join(tmpdir(), 'aggregated-api-server-etcd-'));
    try {
      const chart = newChart();
      const server = new AggregatedApiServer(chart, 'wardle', { api: WARDLE, certificates: fixtureCertificates(), storage: Storage.etcdCluster({ certificates: EtcdCertificates.selfSigned({ pkiDirectory }) }) });
      const objects = synth(chart);
      // THEN the server stores in it, and a new client certificate rolls the pods
      const cluster = server.etcdCluster!;
      expect(cluster.clientUrl).toBe('https://wardle-apiserver-etcd-client.wardle.svc:2379');
      expect(containerOf(objects).args).toEqual(expect.arrayContaining(ETCD_ARGS));
      const template = (findObject(objects, 'Deployment') as any).spec.template;
      expect(cluster.clientCertificateChecksum).toMatch(/^[0-9a-f]{64}$/);
      expect(template.metadata.annotations[ETCD_CLIENT_CERT_CHECKSUM_ANNOTATION]).toBe(cluster.clientCertificateChecksum);
      const clientSecret = findObject(objects, 'Secret', cluster.clientSecretName) as any;
      expect(Object.keys(clientSecret.data).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
      // AND what etcd's PKI store did is the storage's to report
      expect(server.storage.pkiActions).toEqual(cluster.pkiActions);
      expect(cluster.pkiActions.length).toBeGreaterThan(0);
      // AND only the server's pods are etcd's clients: its NetworkPolicies select them by the server's labels
      const selector = (findObject(objects, 'Deployment') as any).spec.selector.matchLabels;
      const policies = JSON.stringify(objects.filter((o) => o.kind === 'NetworkPolicy'));
      expect(policies).toContain(JSON.stringify(selector).slice(1, -1));
      for (const object of objects) expect(() => validateKubeObject(object)).not.toThrow();
    } finally {
      rmSync(pkiDirectory, { recursive: true, force: true });
    }
  });

  test('the default without a storage prop is Storage.etcdCluster()', () => {
    // GIVEN no storage, sharedStorage or storage flags
    const chart = newChart();
    const pkiDirectory = mkdtempSync(join(tmpdir(), 'aggregated-api-server-default-'));
    const cwd = process.cwd();
    try {
      // (EtcdCertificates.selfSigned() keeps its PKI in .pki/ of the working directory)
      process.chdir(pkiDirectory);
      const server = new AggregatedApiServer(chart, 'wardle', { api: WARDLE, certificates: fixtureCertificates() });
      // THEN
      expect(server.etcdCluster?.statefulSet).toBeDefined();
      expect(server.deployment.replicas).toBe(2);
    } finally {
      process.chdir(cwd);
      rmSync(pkiDirectory, { recursive: true, force: true });
    }
  });

  describe('an external etcd', () => {
    const ca = makeCa('external etcd CA');
    const client = makeLeaf(ca, { cn: 'wardle-apiserver', extendedKeyUsages: ['clientAuth'] });
    const stranger = makeLeaf(makeCa('someone else'), { cn: 'stranger' });
    const servers = ['https://etcd-0.example:2379', 'https://etcd-1.example:2379'];

    test('from PEM: a client Secret the pods mount, its checksum on the pod, the servers in --etcd-servers, no etcd deployed', () => {
      const { server, objects } = synthServer({ storage: Storage.externalEtcd({ servers, pem: { caPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem } }) });
      expect(server.etcdCluster).toBeUndefined();
      expect(objects.filter((o) => o.kind === 'StatefulSet')).toEqual([]);
      const secret = findObject(objects, 'Secret', 'wardle-apiserver-etcd-client') as any;
      expect(secret.type).toBe('kubernetes.io/tls');
      expect([decodeBase64(secret.data['ca.crt']), decodeBase64(secret.data['tls.crt']), decodeBase64(secret.data['tls.key'])]).toEqual([ca.certPem, client.certPem, client.keyPem]);
      expect(containerOf(objects).args).toEqual(expect.arrayContaining(['--storage=etcd', `--etcd-servers=${servers.join(',')}`, '--etcd-certfile=/var/run/apiserver/etcd-client/tls.crt']));
      const template = (findObject(objects, 'Deployment') as any).spec.template;
      expect(template.metadata.annotations[ETCD_CLIENT_CERT_CHECKSUM_ANNOTATION]).toBe(createHash('sha256').update(client.certPem).digest('hex'));
      expect(template.spec.volumes.map((v: any) => v.secret?.secretName)).toContain('wardle-apiserver-etcd-client');
      expect(template.spec.replicas ?? (findObject(objects, 'Deployment') as any).spec.replicas).toBe(2);
      for (const object of objects) expect(() => validateKubeObject(object)).not.toThrow();
    });

    test('from files, read when bound', () => {
      const dir = mkdtempSync(join(tmpdir(), 'aggregated-api-server-external-'));
      try {
        writeFileSync(join(dir, 'ca.crt'), ca.certPem);
        writeFileSync(join(dir, 'client.crt'), client.certPem);
        writeFileSync(join(dir, 'client.key'), client.keyPem, { mode: 0o600 });
        const { objects } = synthServer({ storage: Storage.externalEtcd({ servers, files: { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'client.crt'), keyFile: join(dir, 'client.key') } }) });
        expect(decodeBase64((findObject(objects, 'Secret', 'wardle-apiserver-etcd-client') as any).data['tls.crt'])).toBe(client.certPem);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test('from an existing Secret: nothing emitted, the named Secret mounted, no checksum to roll on', () => {
      const { objects } = synthServer({ storage: Storage.externalEtcd({ servers, secretName: 'etcd-client-cert' }) });
      expect(objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name)).toEqual(['wardle-apiserver-tls']);
      const template = (findObject(objects, 'Deployment') as any).spec.template;
      expect(template.spec.volumes.map((v: any) => v.secret?.secretName)).toContain('etcd-client-cert');
      expect(template.metadata.annotations[ETCD_CLIENT_CERT_CHECKSUM_ANNOTATION]).toBeUndefined();
    });

    test.each([
      ['a key that is not the certificate\'s', { caPem: ca.certPem, certPem: client.certPem, keyPem: stranger.keyPem }, /keyPem does not match certPem/],
      ['a certificate the CA does not verify', { caPem: ca.certPem, certPem: stranger.certPem, keyPem: stranger.keyPem }, /certPem \(issuer CN=someone else\) is not verified by caPem/],
      ['a CA bundle without a certificate', { caPem: 'junk', certPem: client.certPem, keyPem: client.keyPem }, /caPem holds no PEM certificate/],
      ['a CA bundle that holds a private key', { caPem: `${ca.certPem}${client.keyPem}`, certPem: client.certPem, keyPem: client.keyPem }, /caPem holds a PEM block of type (?:RSA )?PRIVATE KEY \(expected only/],
      ['a certificate file that holds its key', { caPem: ca.certPem, certPem: `${client.certPem}${client.keyPem}`, keyPem: client.keyPem }, /certPem holds a PEM block of type (?:RSA )?PRIVATE KEY/],
      ['a key that is no key', { caPem: ca.certPem, certPem: client.certPem, keyPem: 'junk' }, /keyPem does not hold a PEM private key/],
    ])('fails for %s', (_what, pem, message) => {
      expect(() => synthServer({ storage: Storage.externalEtcd({ servers, pem }) })).toThrow(message);
    });
  });

  test('memory: one replica told --storage=memory, no etcd, no PodDisruptionBudget', () => {
    const { server, objects } = synthServer({ storage: Storage.memory() });
    expect(containerOf(objects).args).toEqual([
      '--secure-port=10250',
      '--tls-cert-file=/var/run/apiserver/serving-cert/tls.crt',
      '--tls-private-key-file=/var/run/apiserver/serving-cert/tls.key',
      '--storage=memory',
    ]);
    expect((findObject(objects, 'Deployment') as any).spec.replicas).toBe(1);
    expect(objects.filter((o) => o.kind === 'PodDisruptionBudget' || isEtcdObject(o))).toEqual([]);
    expect(server.etcdCluster).toBeUndefined();
  });

  test('custom: a shared store of the image\'s own, no storage flags added', () => {
    const { objects } = synthServer({ image: 'registry.example.com/go-apiserver:1.0', storage: Storage.custom({ shared: true }), extraArgs: ['--etcd-servers=https://etcd:2379'], replicas: 3 });
    expect(containerOf(objects).args.slice(3)).toEqual(['--etcd-servers=https://etcd:2379']);
    expect((findObject(objects, 'Deployment') as any).spec.replicas).toBe(3);
    expect(objects.filter(isEtcdObject)).toEqual([]);
  });
});

describe('AggregatedApiServer validation', () => {
  const cases: [string, Partial<AggregatedApiServerProps>, RegExp][] = [
    ['a namespace that is not a DNS-1123 label', { namespace: 'Bad_NS' }, /namespace "Bad_NS" is not a valid DNS-1123 label \(lowercase letters, digits and '-', at most 63 characters\)/],
    ['a name that is not a DNS-1035 label', { name: 'wardle.apiserver' }, /name "wardle.apiserver" is not a valid DNS-1035 label/],
    ['a name starting with a digit (Service names are DNS-1035 labels)', { name: '9lives' }, /name "9lives" is not a valid DNS-1035 label \(lowercase letters, digits and '-', starting with a letter/],
    ['a label that would weaken the Namespace\'s Pod Security Standard', { labels: { 'pod-security.kubernetes.io/enforce': 'baseline' } }, /labels "pod-security.kubernetes.io\/enforce" would override the Namespace's Pod Security Standard "restricted"/],
    ['createNamespace true for kube-system', { namespace: 'kube-system', createNamespace: true }, /createNamespace is true for namespace "kube-system", which Kubernetes creates itself/],
    ['replicas 0', { replicas: 0 }, /replicas 0 is not valid \(expected an integer >= 1\)/],
    ['two replicas in memory', { replicas: 2, storage: Storage.memory() }, /replicas 2 needs shared storage, and storage Storage.memory\(\) keeps each pod's objects in that pod/],
    ['two replicas of a custom image that does not share', { replicas: 2, sharedStorage: false }, /replicas 2 needs shared storage, and storage Storage.custom\(\{ shared: false \}\)/],
    ['two replicas, sharedStorage false despite --etcd-servers', { replicas: 2, sharedStorage: false, extraArgs: ['--etcd-servers=http://etcd:2379'] }, /replicas 2 needs shared storage/],
    ['storage flags in extraArgs beside storage', { storage: Storage.memory(), extraArgs: ['--etcd-servers=https://etcd:2379'] }, /extraArgs "--etcd-servers=https:\/\/etcd:2379" conflicts with storage, which sets the server's storage flags/],
    ['storage and sharedStorage both', { storage: Storage.memory(), sharedStorage: true }, /sharedStorage true and storage are both set/],
    ['replicas -1', { replicas: -1 }, /replicas -1 is not valid \(expected an integer >= 1\)/],
    ['fractional replicas', { replicas: 1.5 }, /replicas 1.5 is not valid/],
    ['securePort 0', { securePort: 0 }, /securePort 0 is not valid \(expected an integer from 1 to 65535\)/],
    ['securePort 70000', { securePort: 70000 }, /securePort 70000 is not valid \(expected an integer from 1 to 65535\)/],
    ['groupPriorityMinimum 0', { groupPriorityMinimum: 0 }, /groupPriorityMinimum 0 is not valid \(expected an integer from 1 to 20000\)/],
    ['groupPriorityMinimum 20001', { groupPriorityMinimum: 20001 }, /groupPriorityMinimum 20001 is not valid \(expected an integer from 1 to 20000\)/],
    ['versionPriority 0', { versionPriority: 0 }, /versionPriority 0 is not valid \(expected an integer from 1 to 1000\)/],
    ['versionPriority 1001', { versionPriority: 1001 }, /versionPriority 1001 is not valid \(expected an integer from 1 to 1000\)/],
    ['a clusterDomain that is not a DNS subdomain', { clusterDomain: 'Cluster_Local' }, /clusterDomain "Cluster_Local" is not a valid DNS-1123 subdomain/],
    ['an invalid API definition', { api: { ...WARDLE, group: 'wardle' } }, /group "wardle" is not a DNS subdomain with at least one dot/],
    ['an image with spaces', { image: 'my image' }, /image "my image" is not a valid image reference/],
  ];
  test.each(cases)('fails for %s', (_what, props, message) => {
    // GIVEN a bad prop WHEN constructed THEN the error names the prop, the value and the expectation
    expect(() => synthServer(props)).toThrow(message);
  });

  test.each([
    ['without servers', () => Storage.externalEtcd({ servers: [], secretName: 'etcd-client' }), /servers is empty/],
    ['over http', () => Storage.externalEtcd({ servers: ['http://etcd:2379'], secretName: 'etcd-client' }), /servers contains "http:\/\/etcd:2379", which is not an https:\/\/ URL/],
    ['without a port', () => Storage.externalEtcd({ servers: ['https://etcd'], secretName: 'etcd-client' }), /servers contains "https:\/\/etcd", which is not a bare client URL with a port/],
    ['without a client certificate', () => Storage.externalEtcd({ servers: ['https://etcd:2379'] }), /externalEtcd takes exactly one of pem, files and secretName \(got none\)/],
    ['with a Secret and files', () => Storage.externalEtcd({ servers: ['https://etcd:2379'], secretName: 's', files: { caFile: 'a', certFile: 'b', keyFile: 'c' } }), /got files and secretName/],
  ])('fails for an external etcd %s', (_what, make, message) => {
    expect(make).toThrow(message);
  });

  test('fails when the certificate is not for the Service (wrong namespace)', () => {
    // GIVEN fixtures made for wardle-apiserver.wardle.svc, deployed in another namespace
    expect(() => synthServer({ namespace: 'other' })).toThrow(/tlsCertPem is not valid for "wardle-apiserver.other.svc"/);
  });
});
