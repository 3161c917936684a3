import { App, Chart } from 'cdk8s';
import { AggregatedApiServer, Certificates, CustomResourceDefinitions, EtcdCertificates, FISCHER, Storage, WARDLE } from 'cdk8s-api-extension';

const app = new App();
const chart = new Chart(app, 'platform');

// The bundled wardle.example.com server in its own namespace, with a certificate from cert-manager,
// on an etcd cluster deployed with it (the default storage) whose certificates cert-manager makes too.
const wardle = new AggregatedApiServer(chart, 'Wardle', {
  api: WARDLE,
  namespace: 'wardle-system',
  image: 'registry.example.com/platform/wardle-apiserver:0.1.0',
  replicas: 1, // 2 by default; any number share the etcd cluster
  certificates: Certificates.certManager(),
  storage: Storage.etcdCluster({ certificates: EtcdCertificates.certManager() }),
  priorityClassName: 'platform-critical',
});

// The other way to extend the API: a definition as CRDs, in a group of their own. (Flunder's two
// versions have different schemas: as CRDs they would need a conversion webhook, `conversion`.)
new CustomResourceDefinitions(chart, 'FischerCrds', { api: { group: 'wardle.crd.example.com', kinds: [FISCHER] } });

console.log(`APIServices: ${wardle.apiServices.map((a) => a.name).join(', ')}`);
app.synth();
