import { describeClientsSuite } from './support/e2e-clients-suite';

// The bundled server storing in its memory; test/e2e-clients-etcd.test.ts runs the same suite on etcd.
describeClientsSuite('memory');
