import { AggregatedApiServer, AggregatedApiServerProps, EtcdCertificates, Storage, WARDLE } from '../../lib';
import { findObject, KubeObject, validateKubeObject } from './_kube-schemas';
import { fixtureCertificates, newChart, synth } from './_fixtures';

/* eslint-disable @typescript-eslint/no-explicit-any */

/** Where the server's and etcd's pods run, and how their images are pulled (issue 9, item 5). */

function synthServer(props: Partial<AggregatedApiServerProps> = {}): KubeObject[] {
  const chart = newChart();
  new AggregatedApiServer(chart, 'wardle', {
    api: WARDLE,
    certificates: fixtureCertificates(),
    storage: Storage.etcdCluster({ certificates: EtcdCertificates.certManager(), backupSchedule: '@daily' }),
    ...props,
  });
  return synth(chart);
}

const podSpecs = (objects: KubeObject[]) => ({
  server: (findObject(objects, 'Deployment', 'wardle-apiserver') as any).spec.template.spec,
  etcd: (findObject(objects, 'StatefulSet', 'wardle-apiserver-etcd') as any).spec.template.spec,
  backup: (objects.find((o) => o.kind === 'CronJob') as any).spec.jobTemplate.spec.template.spec,
});

const TOLERATION = { key: 'dedicated', operator: 'Equal', value: 'platform', effect: 'NoSchedule' };

describe('pod placement', () => {
  test('by default every pod runs on Linux nodes, with no tolerations, pull secrets or priority class', () => {
    const specs = podSpecs(synthServer());
    for (const spec of Object.values(specs)) {
      expect(spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
      expect(spec.tolerations).toBeUndefined();
      expect(spec.imagePullSecrets).toBeUndefined();
      expect(spec.priorityClassName).toBeUndefined();
    }
  });

  test("the server's placement reaches its pods and etcd's, and the objects validate", () => {
    // GIVEN placement on the server only
    const objects = synthServer({
      nodeSelector: { 'node-role.example.com/platform': 'true' },
      tolerations: [TOLERATION],
      imagePullSecrets: ['registry-credentials'],
      priorityClassName: 'platform-critical',
    });
    // THEN the server, the etcd members and the backup job all carry it
    for (const spec of Object.values(podSpecs(objects))) {
      expect(spec.nodeSelector).toEqual({ 'node-role.example.com/platform': 'true' });
      expect(spec.tolerations).toEqual([TOLERATION]);
      expect(spec.imagePullSecrets).toEqual([{ name: 'registry-credentials' }]);
      expect(spec.priorityClassName).toBe('platform-critical');
    }
    for (const object of objects) validateKubeObject(object);
  });

  test("etcd's own placement wins over the server's, field by field", () => {
    const chart = newChart();
    new AggregatedApiServer(chart, 'wardle', {
      api: WARDLE,
      certificates: fixtureCertificates(),
      tolerations: [TOLERATION],
      priorityClassName: 'platform-critical',
      storage: Storage.etcdCluster({ certificates: EtcdCertificates.certManager(), priorityClassName: 'system-cluster-critical', nodeSelector: {} }),
    });
    const { server, etcd } = podSpecs([...synth(chart), { kind: 'CronJob', spec: { jobTemplate: { spec: { template: { spec: {} } } } } } as any]);
    expect(server.priorityClassName).toBe('platform-critical');
    expect(etcd.priorityClassName).toBe('system-cluster-critical');
    expect(etcd.tolerations).toEqual([TOLERATION]);
    // An empty selector is the way to say "any node".
    expect(etcd.nodeSelector).toBeUndefined();
    expect(server.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
  });

  test.each([
    ['an unknown toleration effect', { tolerations: [{ key: 'k', effect: 'NoRun' }] }, /AggregatedApiServer\.tolerations\[0\]\.effect "NoRun" is not one of NoSchedule, PreferNoSchedule, NoExecute/],
    ['an Exists toleration with a value', { tolerations: [{ key: 'k', operator: 'Exists', value: 'v' }] }, /tolerations\[0\] has operator Exists and value "v"/],
    ['a toleration without key that is not Exists', { tolerations: [{ operator: 'Equal', value: 'v' }] }, /tolerations\[0\] has no key: only operator Exists may leave it out/],
    ['a pull secret that is no Secret name', { imagePullSecrets: ['Registry_Creds'] }, /imagePullSecrets\[0\] "Registry_Creds" is not a valid DNS-1123 subdomain/],
    ['a priority class that is no name', { priorityClassName: 'Critical!' }, /priorityClassName "Critical!" is not a valid DNS-1123 subdomain/],
  ])('fails for %s, naming the prop', (_what, props, message) => {
    expect(() => synthServer(props as Partial<AggregatedApiServerProps>)).toThrow(message);
  });
});
