import { App, Chart, Testing } from 'cdk8s';
import { AggregatedApiServer, Certificates, CustomResourceDefinitions, EtcdCertificates, FISCHER, Storage, WARDLE } from '../../lib';

/** Objects two constructs of one app would both emit, and groups served two ways (issue 9, item 4). */

const WIDGETS_ACME = { ...WARDLE, group: 'widgets.acme.io' };
const WIDGETS_OTHER = { ...WARDLE, group: 'widgets.other.io' };

function server(chart: Chart, id: string, api: typeof WARDLE, props: { name?: string; namespace?: string } = {}): AggregatedApiServer {
  return new AggregatedApiServer(chart, id, { api, certificates: Certificates.certManager(), storage: Storage.etcdCluster({ certificates: EtcdCertificates.certManager() }), ...props });
}

describe('one app, several servers', () => {
  test('fails for two servers whose default names collide, naming both', () => {
    // GIVEN servers for widgets.acme.io and widgets.other.io: both default to widgets-apiserver in namespace widgets
    const app = Testing.app();
    const chart = new Chart(app, 'platform');
    server(chart, 'Acme', WIDGETS_ACME);
    server(chart, 'Other', WIDGETS_OTHER);
    // WHEN the app synthesizes THEN it refuses, naming the object and both constructs
    expect(() => app.synthYaml()).toThrow(/ClusterRole "widgets-apiserver" is emitted twice: by platform\/Acme\/.* and by platform\/Other\/.*give the servers different names/);
  });

  test('fails across charts too', () => {
    const app = Testing.app();
    server(new Chart(app, 'acme'), 'Server', WIDGETS_ACME);
    server(new Chart(app, 'other'), 'Server', WIDGETS_OTHER);
    expect(() => app.synthYaml()).toThrow(/is emitted twice: by acme\/Server\/.* and by other\/Server\//);
  });

  test('two servers with names of their own in one shared namespace synthesize (the Namespace, emitted twice alike, is no conflict)', () => {
    const app = Testing.app();
    const chart = new Chart(app, 'platform');
    server(chart, 'Acme', WIDGETS_ACME, { name: 'acme-widgets', namespace: 'platform' });
    server(chart, 'Other', WIDGETS_OTHER, { name: 'other-widgets', namespace: 'platform' });
    expect(() => app.synthYaml()).not.toThrow();
  });

  test('the same server in two apps is no conflict', () => {
    for (const app of [new App(), new App()]) server(new Chart(app, 'c'), 'Server', WARDLE);
  });
});

describe('one group, one way to serve it', () => {
  test('fails for an APIService and CRDs of the same group, naming both', () => {
    const app = Testing.app();
    const chart = new Chart(app, 'platform');
    server(chart, 'Wardle', WARDLE);
    new CustomResourceDefinitions(chart, 'Crds', { api: { group: WARDLE.group, kinds: [FISCHER] } });
    expect(() => app.synthYaml()).toThrow(/API group "wardle\.example\.com" is served both by an aggregated API server \(APIService at platform\/Wardle\/.*\) and by CRDs \(CustomResourceDefinition at platform\/Crds\/.*\)/);
  });

  test('CRDs in a group of their own beside the server synthesize', () => {
    const app = Testing.app();
    const chart = new Chart(app, 'platform');
    server(chart, 'Wardle', WARDLE);
    new CustomResourceDefinitions(chart, 'Crds', { api: { group: 'wardle.crd.example.com', kinds: [FISCHER] } });
    expect(() => app.synthYaml()).not.toThrow();
  });
});
