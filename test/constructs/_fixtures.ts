import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Chart, Testing } from 'cdk8s';
import { Certificates, ICertificates } from '../../lib';
import { KubeObject } from './_kube-schemas';

const FIXTURES = join(__dirname, '..', 'fixtures', 'pki');

/** The fixed PEM fixtures for Service `wardle-apiserver` in namespace `wardle`. */
export const FIXTURE_PEMS = {
  caBundlePem: readFileSync(join(FIXTURES, 'ca.crt'), 'utf8'),
  tlsCertPem: readFileSync(join(FIXTURES, 'tls.crt'), 'utf8'),
  tlsKeyPem: readFileSync(join(FIXTURES, 'tls.key'), 'utf8'),
};

export function fixtureCertificates(): ICertificates {
  return Certificates.fromPem(FIXTURE_PEMS);
}

export function newChart(): Chart {
  return new Chart(Testing.app(), 'test');
}

export function synth(chart: Chart): KubeObject[] {
  return Testing.synth(chart) as KubeObject[];
}

export function decodeBase64(value: unknown): string {
  if (typeof value !== 'string') throw new Error(`expected a base64 string, got ${JSON.stringify(value)}`);
  return Buffer.from(value, 'base64').toString('utf8');
}
