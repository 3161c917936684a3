import { describeKubectlSuite } from './support/e2e-kubectl-suite';

// The bundled server storing in its memory; test/e2e-kubectl-etcd.test.ts runs the same suite on etcd.
describeKubectlSuite('memory');
