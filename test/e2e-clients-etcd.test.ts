import { describeClientsSuite } from './support/e2e-clients-suite';

// The bundled server storing in a real etcd (one started for this file): everything that passes on memory must pass here.
describeClientsSuite('etcd');
