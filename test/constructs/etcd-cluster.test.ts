import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CronJob } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { PersistentVolumeClaim } from 'kubernetes-models/v1';
import {
  ETCD_BACKUP_PRUNE_SCRIPT,
  ETCD_CA_CHECKSUM_ANNOTATION,
  EtcdCertificates,
  EtcdCluster,
  EtcdClusterProps,
} from '../../lib';
import { decodeBase64, newChart, synth } from './_fixtures';
import { findObject, KubeObject, validateKubeObject } from './_kube-schemas';

/* eslint-disable @typescript-eslint/no-explicit-any */

const NOW = new Date('2025-06-01T00:00:00Z');
const CLIENT_LABELS = { 'app.kubernetes.io/name': 'wardle-apiserver' };
const BASE: EtcdClusterProps = { namespace: 'wardle', name: 'wardle-apiserver-etcd', clientPodLabels: CLIENT_LABELS };

/** Kinds only the etcd cluster emits, validated here against the same 1.28 schemas (kubernetes-models). */
const ETCD_MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/StatefulSet': StatefulSet,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'batch/v1/CronJob': CronJob,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
};

function validate(object: KubeObject): void {
  const Model = ETCD_MODELS[`${object.apiVersion}/${object.kind}`];
  if (Model === undefined) validateKubeObject(object);
  else new Model(object as never).validate();
}

// One PKI directory for the suite: after the first synth the store reuses the keys (keys take seconds).
let pkiDirectory: string;
beforeAll(() => {
  pkiDirectory = mkdtempSync(join(tmpdir(), 'etcd-cluster-pki-'));
});
afterAll(() => rmSync(pkiDirectory, { recursive: true, force: true }));

function build(props: Partial<EtcdClusterProps> = {}): { cluster: EtcdCluster; objects: KubeObject[] } {
  const chart = newChart();
  const cluster = new EtcdCluster(chart, 'etcd', { ...BASE, certificates: EtcdCertificates.selfSigned({ pkiDirectory, now: NOW }), ...props });
  const objects = synth(chart);
  for (const object of objects) validate(object);
  return { cluster, objects };
}

function container(objects: KubeObject[]): any {
  return (findObject(objects, 'StatefulSet') as any).spec.template.spec.containers[0];
}

function flag(args: string[], name: string): string {
  const found = args.filter((arg) => arg.startsWith(`--${name}=`));
  if (found.length !== 1) throw new Error(`expected one --${name}, found ${found.length}`);
  return found[0].slice(name.length + 3);
}

describe('EtcdCluster', () => {
  test('emits a 3-member StatefulSet, its Services, PDB, NetworkPolicy and TLS Secrets, all valid 1.28 objects', () => {
    // GIVEN the defaults WHEN synthesized
    const { cluster, objects } = build();

    // THEN the kinds are exactly these, every one in the namespace
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      [
        'NetworkPolicy/wardle-apiserver-etcd',
        'PodDisruptionBudget/wardle-apiserver-etcd',
        'Secret/wardle-apiserver-etcd-0-peer-tls',
        'Secret/wardle-apiserver-etcd-0-server-tls',
        'Secret/wardle-apiserver-etcd-1-peer-tls',
        'Secret/wardle-apiserver-etcd-1-server-tls',
        'Secret/wardle-apiserver-etcd-2-peer-tls',
        'Secret/wardle-apiserver-etcd-2-server-tls',
        'Secret/wardle-apiserver-etcd-client-tls',
        'Service/wardle-apiserver-etcd-client',
        'Service/wardle-apiserver-etcd-peer',
        'StatefulSet/wardle-apiserver-etcd',
      ].sort(),
    );
    for (const object of objects) expect(object.metadata.namespace).toBe('wardle');
    expect(cluster.clientUrl).toBe('https://wardle-apiserver-etcd-client.wardle.svc:2379');
    expect(cluster.clientSecretName).toBe('wardle-apiserver-etcd-client-tls');
    expect(cluster.clientCertificateChecksum).toMatch(/^[0-9a-f]{64}$/);

    // The peers' Service is headless and publishes members before they are ready (bootstrap needs it).
    const peer = findObject(objects, 'Service', 'wardle-apiserver-etcd-peer') as any;
    expect(peer.spec.clusterIP).toBe('None');
    expect(peer.spec.publishNotReadyAddresses).toBe(true);
    const sts = findObject(objects, 'StatefulSet') as any;
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    expect(sts.spec.serviceName).toBe('wardle-apiserver-etcd-peer');
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('1Gi');
    expect(sts.spec.volumeClaimTemplates[0].spec.storageClassName).toBeUndefined();
    expect(sts.spec.template.metadata.annotations[ETCD_CA_CHECKSUM_ANNOTATION]).toMatch(/^[0-9a-f]{64}$/);
  });

  test('passes etcd the flags of a TLS cluster built from the members\' stable DNS names', () => {
    // GIVEN the defaults WHEN synthesized
    const args: string[] = container(build().objects).args;
    // THEN the initial cluster names each member by <pod>.<headless>.<ns>.svc.<domain>
    const host = (i: number) => `wardle-apiserver-etcd-${i}.wardle-apiserver-etcd-peer.wardle.svc.cluster.local`;
    expect(flag(args, 'initial-cluster')).toBe([0, 1, 2].map((i) => `wardle-apiserver-etcd-${i}=https://${host(i)}:2380`).join(','));
    expect(flag(args, 'name')).toBe('$(POD_NAME)');
    expect(flag(args, 'initial-cluster-state')).toBe('new');
    expect(flag(args, 'initial-advertise-peer-urls')).toBe('https://$(POD_NAME).wardle-apiserver-etcd-peer.wardle.svc.cluster.local:2380');
    expect(flag(args, 'client-cert-auth')).toBe('true');
    expect(flag(args, 'peer-client-cert-auth')).toBe('true');
    expect(flag(args, 'listen-metrics-urls')).toBe('http://0.0.0.0:2381');
    expect(flag(args, 'cert-file')).toBe('/etc/etcd/pki/$(POD_NAME)/server.crt');
    expect(flag(args, 'peer-trusted-ca-file')).toBe('/etc/etcd/pki/ca.crt');
    // 1Gi: 384Mi for the write-ahead log, half of the rest for the backend.
    expect(flag(args, 'quota-backend-bytes')).toBe(String(320 * 1024 * 1024));
    expect(flag(args, 'auto-compaction-mode')).toBe('periodic');
    expect(args.every((arg) => arg.startsWith('--'))).toBe(true);
  });

  test('caps the backend quota at 8Gi for a large volume', () => {
    // GIVEN a 100Gi volume WHEN synthesized THEN the quota is etcd's recommended maximum
    expect(flag(container(build({ storageSize: '100Gi' }).objects).args, 'quota-backend-bytes')).toBe(String(8 * 1024 ** 3));
  });

  test('runs as the restricted Pod Security profile asks, without a ServiceAccount token, probed over plain HTTP', () => {
    // GIVEN the defaults WHEN synthesized
    const { objects } = build();
    const pod = (findObject(objects, 'StatefulSet') as any).spec.template.spec;
    const etcd = pod.containers[0];
    // THEN
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.enableServiceLinks).toBe(false);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } });
    expect(etcd.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(etcd.imagePullPolicy).toBe('IfNotPresent');
    expect(etcd.image).toBe('registry.k8s.io/etcd:3.5.21-0');
    expect(etcd.resources).toEqual({ requests: { cpu: '100m', memory: '256Mi' } });
    expect(etcd.env).toEqual([{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }]);
    for (const probe of [etcd.startupProbe, etcd.livenessProbe, etcd.readinessProbe]) {
      expect(probe.httpGet).toMatchObject({ port: 'metrics', scheme: 'HTTP' });
      expect(probe.httpGet.path).toMatch(/^\/health/);
    }
    expect(etcd.livenessProbe.httpGet.path).toBe('/health?exclude=NOSPACE&serializable=true');
    expect(pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey).toBe('kubernetes.io/hostname');
    // Each member's certificates reach the path its $(POD_NAME) names.
    const projected = pod.volumes.find((v: any) => v.name === 'pki').projected;
    const paths = projected.sources.flatMap((source: any) => source.secret.items.map((item: any) => item.path));
    expect(paths).toContain('wardle-apiserver-etcd-2/peer.key');
    expect(paths).toContain('ca.crt');
  });

  test.each([
    [1, undefined],
    [3, 2],
    [5, 3],
  ])('keeps quorum with %d members: minAvailable %s', (replicas, minAvailable) => {
    // GIVEN n members WHEN synthesized
    const { cluster, objects } = build({ replicas });
    // THEN the budget keeps a quorum (none for one member: it would block every node drain)
    const budgets = objects.filter((o) => o.kind === 'PodDisruptionBudget') as any[];
    expect(budgets.map((b) => b.spec.minAvailable)).toEqual(minAvailable === undefined ? [] : [minAvailable]);
    expect(cluster.podDisruptionBudget === undefined).toBe(minAvailable === undefined);
    expect(flag(container(objects).args, 'initial-cluster').split(',')).toHaveLength(replicas);
  });

  test('going from 3 to 5 members changes only the StatefulSet\'s size, its initial cluster and mounts, the budget, and adds the new members\' Secrets', () => {
    // GIVEN 3 members WHEN synthesized again with 5
    const three = build().objects;
    const five = build({ replicas: 5 }).objects;
    const byName = (objects: KubeObject[]) => new Map(objects.map((o) => [`${o.kind}/${o.metadata.name}`, JSON.stringify(o)]));
    const before = byName(three);
    const after = byName(five);
    // THEN every object but the StatefulSet and the budget is byte-identical, Secrets included
    const changed = [...before.keys()].filter((key) => after.get(key) !== before.get(key));
    expect(changed.sort()).toEqual(['PodDisruptionBudget/wardle-apiserver-etcd', 'StatefulSet/wardle-apiserver-etcd']);
    expect([...after.keys()].filter((key) => !before.has(key)).sort()).toEqual([
      'Secret/wardle-apiserver-etcd-3-peer-tls',
      'Secret/wardle-apiserver-etcd-3-server-tls',
      'Secret/wardle-apiserver-etcd-4-peer-tls',
      'Secret/wardle-apiserver-etcd-4-server-tls',
    ]);
    // AND in the StatefulSet only the size, --initial-cluster and the certificate mounts differ
    const strip = (o: any) => {
      const copy = JSON.parse(JSON.stringify(o));
      delete copy.spec.replicas;
      copy.spec.template.spec.containers[0].args = copy.spec.template.spec.containers[0].args.filter((a: string) => !a.startsWith('--initial-cluster='));
      copy.spec.template.spec.volumes = copy.spec.template.spec.volumes.filter((v: any) => v.name !== 'pki');
      return copy;
    };
    expect(strip(findObject(five, 'StatefulSet'))).toEqual(strip(findObject(three, 'StatefulSet')));
  });

  test('admits clients only from the given pods on 2379 and peers only from members on 2380', () => {
    // GIVEN backups on WHEN synthesized
    const { objects } = build({ backupSchedule: '0 3 * * *' });
    const policy = findObject(objects, 'NetworkPolicy') as any;
    // THEN
    expect(policy.spec.podSelector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'wardle-apiserver-etcd', 'app.kubernetes.io/component': 'etcd' });
    expect(policy.spec.policyTypes).toEqual(['Ingress']);
    expect(policy.spec.ingress).toEqual([
      {
        from: [
          { podSelector: { matchLabels: CLIENT_LABELS } },
          { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'wardle-apiserver-etcd', 'app.kubernetes.io/component': 'etcd-backup' } } },
        ],
        ports: [{ protocol: 'TCP', port: 2379 }],
      },
      { from: [{ podSelector: { matchLabels: policy.spec.podSelector.matchLabels } }], ports: [{ protocol: 'TCP', port: 2380 }] },
    ]);
    // AND the backup pods carry the label the policy admits
    const cronJob = findObject(objects, 'CronJob') as any;
    expect(cronJob.spec.jobTemplate.spec.template.metadata.labels).toMatchObject({ 'app.kubernetes.io/component': 'etcd-backup' });
  });

  test('leaves the NetworkPolicy out with networkPolicy: false', () => {
    const { cluster, objects } = build({ networkPolicy: false });
    expect(objects.filter((o) => o.kind === 'NetworkPolicy')).toEqual([]);
    expect(cluster.networkPolicies).toEqual([]);
  });

  test('takes snapshots on the schedule with the client certificate, one at a time, restricted', () => {
    // GIVEN a schedule WHEN synthesized
    const { objects } = build({ backupSchedule: '0 3 * * *', backupRetention: 5 });
    const cronJob = findObject(objects, 'CronJob') as any;
    const pod = cronJob.spec.jobTemplate.spec.template.spec;
    // THEN
    expect(cronJob.spec.schedule).toBe('0 3 * * *');
    expect(cronJob.spec.concurrencyPolicy).toBe('Forbid');
    const [snapshot] = pod.initContainers;
    expect(snapshot.args).toEqual([
      '--endpoints=https://wardle-apiserver-etcd-client.wardle.svc:2379',
      '--cacert=/etc/etcd/client/ca.crt',
      '--cert=/etc/etcd/client/tls.crt',
      '--key=/etc/etcd/client/tls.key',
      '--dial-timeout=30s',
      '--command-timeout=30m',
      'snapshot',
      'save',
      '/backups/incoming.db',
    ]);
    expect(pod.volumes).toContainEqual({ name: 'client-cert', secret: { secretName: 'wardle-apiserver-etcd-client-tls', defaultMode: 0o440 } });
    expect(pod.containers[0].env).toContainEqual({ name: 'KEEP', value: '5' });
    for (const c of [...pod.initContainers, ...pod.containers]) expect(c.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true });
    // Room for 6 snapshots of a full 320Mi backend.
    expect((findObject(objects, 'PersistentVolumeClaim') as any).spec.resources.requests.storage).toBe('2Gi');
  });

  test('the backup pod\'s prune step names the snapshot by time and keeps the newest KEEP', () => {
    // GIVEN a backup directory with older snapshots and a new one just saved
    const dir = mkdtempSync(join(tmpdir(), 'etcd-backups-'));
    try {
      for (const name of ['snapshot-20240101T030000Z.db', 'snapshot-20240102T030000Z.db', 'snapshot-20240103T030000Z.db', 'notes.txt']) {
        writeFileSync(join(dir, name), 'old');
      }
      writeFileSync(join(dir, 'incoming.db'), 'new');
      writeFileSync(join(dir, 'incoming.db.part'), 'left by a failed run');
      // WHEN the script runs as the pod runs it (POSIX sh)
      const out = execFileSync('/bin/sh', ['-c', ETCD_BACKUP_PRUNE_SCRIPT], { env: { PATH: process.env.PATH, BACKUP_DIR: dir, KEEP: '2' }, encoding: 'utf8' });
      // THEN the new one and the newest old one remain, and nothing else of ours
      const left = readdirSync(dir).sort();
      expect(left).toHaveLength(3);
      expect(left).toContain('snapshot-20240103T030000Z.db');
      expect(left).toContain('notes.txt');
      expect(left.find((f) => /^snapshot-2\d{7}T\d{6}Z\.db$/.test(f) && !f.startsWith('snapshot-2024'))).toBeDefined();
      expect(out).toMatch(/removed .*snapshot-20240101T030000Z\.db/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('fails the prune step when no snapshot was saved', () => {
    const dir = mkdtempSync(join(tmpdir(), 'etcd-backups-'));
    try {
      writeFileSync(join(dir, 'snapshot-20240101T030000Z.db'), 'old');
      // WHEN the script runs without incoming.db THEN it fails and deletes nothing
      expect(() => execFileSync('/bin/sh', ['-c', ETCD_BACKUP_PRUNE_SCRIPT], { env: { PATH: process.env.PATH, BACKUP_DIR: dir, KEEP: '0' }, stdio: 'pipe' })).toThrow();
      expect(readdirSync(dir)).toEqual(['snapshot-20240101T030000Z.db']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('writes kubernetes.io/tls Secrets with ca.crt and never the CA key', () => {
    // GIVEN the defaults WHEN synthesized
    const { objects } = build();
    const secrets = objects.filter((o) => o.kind === 'Secret') as any[];
    // THEN each Secret is a TLS Secret whose certificate chains to its ca.crt
    for (const secret of secrets) {
      expect(secret.type).toBe('kubernetes.io/tls');
      expect(Object.keys(secret.data).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
      const ca = new X509Certificate(decodeBase64(secret.data['ca.crt']));
      expect(new X509Certificate(decodeBase64(secret.data['tls.crt'])).verify(ca.publicKey)).toBe(true);
    }
    // AND no line of the CA key (kept in the PKI directory) is in any Secret
    const caKeyLines = readFileSync(join(pkiDirectory, 'wardle', 'wardle-apiserver-etcd', 'cluster.local', 'ca.key'), 'utf8').split('\n').slice(2, -2);
    expect(caKeyLines.length).toBeGreaterThan(10);
    const decoded = secrets.flatMap((secret) => Object.values(secret.data).map(decodeBase64)).join('\n');
    for (const line of caKeyLines) expect(decoded).not.toContain(line);
  });

  test('adds the labels to every object', () => {
    const { objects } = build({ labels: { team: 'storage' }, backupSchedule: '@daily' });
    for (const object of objects) expect((object.metadata as any).labels).toMatchObject({ team: 'storage' });
  });

  test('in cert-manager mode emits Issuers and Certificates and no Secret (snapshot)', () => {
    // GIVEN cert-manager mode with backups WHEN synthesized
    const chart = newChart();
    const cluster = new EtcdCluster(chart, 'etcd', { ...BASE, certificates: EtcdCertificates.certManager(), backupSchedule: '0 3 * * *', storageClassName: 'fast' });
    const objects = synth(chart);
    for (const object of objects) validate(object);
    // THEN there is no Secret, no checksum, and Certificates for every member's server and peer and the client
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    expect(cluster.clientCertificateChecksum).toBeUndefined();
    const certificates = objects.filter((o) => o.kind === 'Certificate') as any[];
    expect(certificates.map((c) => c.spec.secretName).sort()).toEqual(
      [
        'wardle-apiserver-etcd-ca',
        'wardle-apiserver-etcd-client-tls',
        ...[0, 1, 2].flatMap((i) => [`wardle-apiserver-etcd-${i}-server-tls`, `wardle-apiserver-etcd-${i}-peer-tls`]),
      ].sort(),
    );
    const client = certificates.find((c) => c.spec.secretName === 'wardle-apiserver-etcd-client-tls');
    expect(client.spec.usages).toEqual(['client auth', 'digital signature', 'key encipherment']);
    expect(client.spec.dnsNames).toBeUndefined();
    expect((findObject(objects, 'StatefulSet') as any).spec.template.metadata.annotations).toBeUndefined();
    expect(objects).toMatchSnapshot();
  });
});

describe('EtcdCluster bad props', () => {
  let pkiDirectory: string;
  beforeEach(() => {
    pkiDirectory = mkdtempSync(join(tmpdir(), 'etcd-cluster-bad-'));
  });
  afterEach(() => rmSync(pkiDirectory, { recursive: true, force: true }));

  test.each<[Partial<EtcdClusterProps>, RegExp]>([
    [{ replicas: 2 }, /replicas 2 is not valid \(expected 1, 3 or 5/],
    [{ replicas: 7 }, /replicas 7 is not valid/],
    [{ replicas: 0 }, /replicas 0 is not valid/],
    [{ storageSize: '1GB' }, /storageSize "1GB" is not a Kubernetes quantity/],
    [{ storageSize: '100Mi' }, /storageSize "100Mi" is too small \(expected at least 512Mi/],
    [{ name: 'Etcd' }, /name "Etcd" is not a valid DNS-1035 label/],
    [{ name: `e${'x'.repeat(52)}` }, /name "ex+" is 53 characters long \(expected at most 52/],
    [{ namespace: 'Bad_NS' }, /namespace "Bad_NS" is not a valid DNS-1123 label/],
    [{ clientPodLabels: {} }, /clientPodLabels \{\} is empty/],
    [{ backupSchedule: 'daily' }, /backupSchedule "daily" is not a cron schedule/],
    [{ name: `e${'x'.repeat(45)}`, backupSchedule: '@daily' }, /name "ex+" is too long for backups \(expected at most 45 characters/],
    [{ backupSchedule: '0 3 * *' }, /backupSchedule "0 3 \* \*" is not a cron schedule/],
    [{ backupRetention: 0, backupSchedule: '@daily' }, /backupRetention 0 is not valid/],
    [{ image: 'registry.k8s.io/etcd: 3.5' }, /image "registry.k8s.io\/etcd: 3.5" is not a valid image reference/],
    [{ clusterDomain: 'Cluster.Local' }, /clusterDomain "Cluster.Local" is not a valid DNS-1123 subdomain/],
  ])('fails for %j', (props, message) => {
    // GIVEN a bad prop WHEN constructed THEN the error names it, and the PKI directory is untouched
    expect(() => new EtcdCluster(newChart(), 'etcd', { ...BASE, certificates: EtcdCertificates.selfSigned({ pkiDirectory, now: NOW }), ...props })).toThrow(message);
    expect(existsSync(join(pkiDirectory, 'wardle'))).toBe(false);
  });

  test('fails EtcdCertificates.selfSigned with a CA that does not outlive its certificates', () => {
    expect(() => EtcdCertificates.selfSigned({ certValidityDays: 400, caValidityDays: 300 })).toThrow(/caValidityDays 300 is not greater than certValidityDays 400/);
  });
});
