import { describeKubectlSuite } from './support/e2e-kubectl-suite';

// The bundled server storing in a real etcd (one started for this file): everything that passes on memory must pass here.
describeKubectlSuite('etcd');
