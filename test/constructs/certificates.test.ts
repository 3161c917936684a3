import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Construct } from 'constructs';
import * as YAML from 'yaml';
import {
  AggregatedApiServer,
  CertificateRequest,
  Certificates,
  createCertificateAuthority,
  issueServingCertificate,
  servingDnsNames,
  Storage,
  WARDLE,
} from '../../lib';
import { findObject, KubeObject, validateKubeObject } from './_kube-schemas';
import { decodeBase64, FIXTURE_PEMS, newChart, synth } from './_fixtures';

/* eslint-disable @typescript-eslint/no-explicit-any */

const REQUEST: CertificateRequest = {
  serviceName: 'wardle-apiserver',
  namespace: 'wardle',
  dnsNames: servingDnsNames('wardle-apiserver', 'wardle'),
  name: 'wardle-apiserver',
};

function bind(certificates: ReturnType<typeof Certificates.fromPem>): { bound: ReturnType<typeof certificates.bind>; objects: KubeObject[] } {
  const chart = newChart();
  const bound = certificates.bind(new Construct(chart, 'Certificates'), REQUEST);
  return { bound, objects: synth(chart) };
}

describe('Certificates.selfSigned', () => {
  let pkiDirectory: string;
  beforeEach(() => {
    pkiDirectory = mkdtempSync(join(tmpdir(), 'certificates-pki-'));
  });
  afterEach(() => rmSync(pkiDirectory, { recursive: true, force: true }));

  function synthYaml(now: Date): { yaml: string; server: AggregatedApiServer } {
    const chart = newChart();
    const server = new AggregatedApiServer(chart, 'wardle', { api: WARDLE, certificates: Certificates.selfSigned({ pkiDirectory, now }) });
    const objects = synth(chart);
    for (const object of objects) validateKubeObject(object);
    return { yaml: objects.map((o) => YAML.stringify(o)).join('---\n'), server };
  }

  test('stores the PKI under <dir>/<namespace>/<name>/<cluster domain> and gives byte-identical output on the next synth', () => {
    // GIVEN an empty PKI directory WHEN synthesized twice
    const first = synthYaml(new Date('2025-06-01T00:00:00Z'));
    const second = synthYaml(new Date('2025-06-02T00:00:00Z'));
    // THEN the second synth reused the PKI and wrote the same bytes
    expect(second.yaml).toBe(first.yaml);
    expect(first.server.pkiActions.join(' ')).toMatch(/created CA/);
    expect(second.server.pkiActions.join(' ')).toMatch(/reused CA/);
    const store = join(pkiDirectory, 'wardle', 'wardle-apiserver', 'cluster.local');
    expect(readdirSync(store).length).toBeGreaterThan(0);
    for (const file of readdirSync(store).filter((f) => f.endsWith('.key'))) {
      expect(statSync(join(store, file)).mode & 0o777).toBe(0o600);
    }
  });

  test('never writes the CA private key to the output', () => {
    const { yaml, server } = synthYaml(new Date('2025-06-01T00:00:00Z'));
    const store = join(pkiDirectory, 'wardle', 'wardle-apiserver', 'cluster.local');
    const keys = readdirSync(store).filter((f) => f.endsWith('.key'));
    expect(keys.length).toBeGreaterThanOrEqual(2);
    const decodedOutput = yaml + YAML.parseAllDocuments(yaml)
      .map((d) => d.toJS())
      .filter((o) => o.kind === 'Secret')
      .flatMap((o) => Object.values(o.data as Record<string, string>).map(decodeBase64))
      .join('\n');
    // THEN the only keys in it are leaf keys: the serving key and etcd's (members' and client's),
    // none of them a CA key kept in the PKI directory
    const privateKeys = decodedOutput.match(/-{5}BEGIN [A-Z ]*PRIVATE KEY-{5}[^-]+-{5}END [A-Z ]*PRIVATE KEY-{5}/g) ?? [];
    expect(privateKeys).toHaveLength(1 + 3 * 2 + 1);
    const caKeys = [join(store, 'ca.key'), join(pkiDirectory, 'wardle', 'wardle-apiserver-etcd', 'cluster.local', 'ca.key')].map((file) => readFileSync(file, 'utf8').trim());
    expect(caKeys.every((key) => key.length > 0)).toBe(true);
    for (const caKey of caKeys) expect(privateKeys).not.toContain(caKey);
    // the CA certificate is in caBundle, and it signed the serving certificate
    expect(server.certificatePems).toHaveLength(2);
    expect(server.caBundlePem).toContain('-----BEGIN CERTIFICATE-----');
  });

  test('works for the longest names (common names are kept within 64 characters)', () => {
    // GIVEN a 63-character name and namespace
    const long = 'a'.repeat(60) + '-ns';
    const chart = newChart();
    const server = new AggregatedApiServer(chart, 'long', {
      api: WARDLE,
      namespace: long,
      name: long,
      certificates: Certificates.selfSigned({ pkiDirectory, now: new Date('2025-06-01T00:00:00Z') }),
      // (an etcd cluster's names would be too long: `<name>-etcd` is refused beyond 52 characters)
      storage: Storage.memory(),
    });
    // THEN a valid certificate for <svc>.<ns>.svc is issued
    const [tls] = server.certificatePems;
    expect(new X509Certificate(tls).checkHost(`${long}.${long}.svc`, { subject: 'never' })).toBe(`${long}.${long}.svc`);
  });

  test('fails when the CA would not outlive the serving certificate', () => {
    expect(() => Certificates.selfSigned({ certValidityDays: 365, caValidityDays: 365 })).toThrow(
      /caValidityDays 365 is not greater than certValidityDays 365 \(expected the CA to outlive the serving certificates it signs\)/,
    );
  });

  test('fails for a certValidityDays of 0', () => {
    expect(() => Certificates.selfSigned({ certValidityDays: 0 })).toThrow(/certValidityDays 0 is not a positive integer \(expected a whole number of days, at least 1\)/);
  });
});

describe('Certificates.fromPem', () => {
  test('emits the TLS Secret and a checksum of the serving certificate', () => {
    const { bound, objects } = bind(Certificates.fromPem(FIXTURE_PEMS));
    expect(bound.secretName).toBe('wardle-apiserver-tls');
    expect(bound.servingCertificateChecksum).toMatch(/^[0-9a-f]{64}$/);
    expect(bound.apiServiceAnnotations).toEqual({});
    const secret = findObject(objects, 'Secret') as any;
    expect(decodeBase64(secret.data['tls.crt'])).toBe(FIXTURE_PEMS.tlsCertPem);
    expect(decodeBase64(secret.data['tls.key'])).toBe(FIXTURE_PEMS.tlsKeyPem);
    expect(decodeBase64(secret.data['ca.crt'])).toBe(FIXTURE_PEMS.caBundlePem);
  });

  describe('with certificates made to be wrong', () => {
    const now = new Date();
    const ca = createCertificateAuthority({ commonName: 'test-ca', validityDays: 30, now });
    const otherCa = createCertificateAuthority({ commonName: 'other-ca', validityDays: 30, now });
    const good = issueServingCertificate({ ca, commonName: 'x', dnsNames: REQUEST.dnsNames, validityDays: 10, now });

    test('accepts a correct set (control)', () => {
      expect(() => bind(Certificates.fromPem({ caBundlePem: ca.certPem, tlsCertPem: good.certPem, tlsKeyPem: good.keyPem }))).not.toThrow();
    });

    test('accepts a bundle holding an old and a new CA', () => {
      const bundle = otherCa.certPem + ca.certPem;
      expect(() => bind(Certificates.fromPem({ caBundlePem: bundle, tlsCertPem: good.certPem, tlsKeyPem: good.keyPem }))).not.toThrow();
    });

    test('fails when the certificate does not chain to the bundle', () => {
      expect(() => bind(Certificates.fromPem({ caBundlePem: otherCa.certPem, tlsCertPem: good.certPem, tlsKeyPem: good.keyPem }))).toThrow(
        /tlsCertPem \(issuer CN=test-ca\) does not chain to caBundlePem \(expected it to be signed by one of: CN=other-ca\)/,
      );
    });

    test('fails when the key is not the certificate\'s', () => {
      expect(() => bind(Certificates.fromPem({ caBundlePem: ca.certPem, tlsCertPem: good.certPem, tlsKeyPem: otherCa.keyPem }))).toThrow(
        /tlsKeyPem does not match tlsCertPem/,
      );
    });

    test('fails when the certificate lacks the <svc>.<ns>.svc name (CN is ignored)', () => {
      const cnOnly = issueServingCertificate({ ca, commonName: 'wardle-apiserver.wardle.svc', dnsNames: ['wardle-apiserver.wardle'], validityDays: 10, now });
      expect(() => bind(Certificates.fromPem({ caBundlePem: ca.certPem, tlsCertPem: cnOnly.certPem, tlsKeyPem: cnOnly.keyPem }))).toThrow(
        /tlsCertPem is not valid for "wardle-apiserver.wardle.svc" \(its names: DNS:wardle-apiserver.wardle; expected a DNS subject alternative name/,
      );
    });

    test('fails when the certificate has expired', () => {
      const later = new Date(now.getTime() + 20 * 24 * 3600 * 1000);
      expect(() => bind(Certificates.fromPem({ caBundlePem: ca.certPem, tlsCertPem: good.certPem, tlsKeyPem: good.keyPem, now: later }))).toThrow(
        /tlsCertPem is valid from .* to .*, not now/,
      );
    });

    test('fails for a bundle without a certificate and a key that does not parse', () => {
      expect(() => bind(Certificates.fromPem({ caBundlePem: 'nothing here', tlsCertPem: good.certPem, tlsKeyPem: good.keyPem }))).toThrow(
        /caBundlePem holds no PEM certificate/,
      );
      expect(() => bind(Certificates.fromPem({ caBundlePem: ca.certPem, tlsCertPem: good.certPem, tlsKeyPem: 'not a key' }))).toThrow(
        /tlsKeyPem is not a valid PEM private key/,
      );
    });
  });
});

describe('Certificates.fromFiles', () => {
  test('reads the PEM files, and names a file that cannot be read', () => {
    // GIVEN the fixtures copied to files
    const dir = mkdtempSync(join(tmpdir(), 'certificates-files-'));
    try {
      writeFileSync(join(dir, 'ca.crt'), FIXTURE_PEMS.caBundlePem);
      writeFileSync(join(dir, 'tls.crt'), FIXTURE_PEMS.tlsCertPem);
      writeFileSync(join(dir, 'tls.key'), FIXTURE_PEMS.tlsKeyPem, { mode: 0o600 });
      const files = { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
      // THEN the Secret holds them
      const { objects } = bind(Certificates.fromFiles(files));
      expect(decodeBase64((findObject(objects, 'Secret') as any).data['tls.key'])).toBe(FIXTURE_PEMS.tlsKeyPem);
      // AND a missing file is named
      expect(() => bind(Certificates.fromFiles({ ...files, keyFile: join(dir, 'missing.key') }))).toThrow(/keyFile ".*missing.key" cannot be read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Certificates.fromSecret', () => {
  test('emits nothing and points the pod and caBundle at what exists', () => {
    const chart = newChart();
    const server = new AggregatedApiServer(chart, 'wardle', {
      api: WARDLE,
      certificates: Certificates.fromSecret({ secretName: 'my-tls', caBundlePem: FIXTURE_PEMS.caBundlePem }),
      storage: Storage.memory(),
    });
    const objects = synth(chart);
    expect(objects.filter((o) => o.kind === 'Secret')).toHaveLength(0);
    expect(server.secretName).toBe('my-tls');
    const volumes = (findObject(objects, 'Deployment') as any).spec.template.spec.volumes;
    expect(volumes.find((v: any) => v.secret !== undefined).secret.secretName).toBe('my-tls');
    for (const apiService of objects.filter((o) => o.kind === 'APIService') as any[]) {
      expect(decodeBase64(apiService.spec.caBundle)).toBe(FIXTURE_PEMS.caBundlePem);
    }
    // no certificate checksum: the Secret's content is not known at synth
    expect((findObject(objects, 'Deployment') as any).spec.template.metadata.annotations).toBeUndefined();
  });
});

describe('Certificates.certManager', () => {
  /** The etcd deployed with the server makes its certificates with cert-manager too, under its own names. */
  const isEtcds = (object: KubeObject) => object.metadata.name.startsWith('wardle-apiserver-etcd-');

  test('bootstraps a CA with cert-manager, annotates the APIServices, emits no key and no caBundle', () => {
    // GIVEN cert-manager mode with the defaults
    const chart = newChart();
    new AggregatedApiServer(chart, 'wardle', { api: WARDLE, certificates: Certificates.certManager() });
    const objects = synth(chart);
    for (const object of objects) validateKubeObject(object);

    // THEN the self-signed Issuer → CA Certificate → CA Issuer → serving Certificate chain
    const issuers = objects.filter((o) => o.kind === 'Issuer' && !isEtcds(o)) as any[];
    expect(issuers.map((i) => [i.metadata.name, Object.keys(i.spec)[0]])).toEqual([
      ['wardle-apiserver-selfsigned', 'selfSigned'],
      ['wardle-apiserver-ca', 'ca'],
    ]);
    const ca = findObject(objects, 'Certificate', 'wardle-apiserver-ca') as any;
    expect(ca.apiVersion).toBe('cert-manager.io/v1');
    expect(ca.spec).toMatchObject({ isCA: true, secretName: 'wardle-apiserver-ca', duration: '87600h', issuerRef: { name: 'wardle-apiserver-selfsigned', kind: 'Issuer' } });
    // a renewed CA keeps its key, so certificates it signed before still chain to the injected caBundle
    expect(ca.spec.privateKey).toEqual({ algorithm: 'RSA', size: 2048, rotationPolicy: 'Never' });
    expect(findObject(objects, 'Issuer', 'wardle-apiserver-ca')).toMatchObject({ spec: { ca: { secretName: 'wardle-apiserver-ca' } } });
    const serving = findObject(objects, 'Certificate', 'wardle-apiserver-serving') as any;
    expect(serving.metadata.namespace).toBe('wardle');
    expect(serving.spec).toMatchObject({
      secretName: 'wardle-apiserver-tls',
      dnsNames: servingDnsNames('wardle-apiserver', 'wardle'),
      duration: '8760h',
      renewBefore: '2920h',
      usages: ['server auth', 'digital signature', 'key encipherment'],
      privateKey: { algorithm: 'RSA', size: 2048, rotationPolicy: 'Always' },
      issuerRef: { name: 'wardle-apiserver-ca', kind: 'Issuer', group: 'cert-manager.io' },
    });
    expect(serving.spec.isCA).toBeUndefined();

    // AND each APIService gets inject-ca-from <ns>/<certificate>, without a caBundle
    for (const apiService of objects.filter((o) => o.kind === 'APIService') as any[]) {
      expect(apiService.metadata.annotations).toEqual({ 'cert-manager.io/inject-ca-from': 'wardle/wardle-apiserver-serving' });
      expect(apiService.spec.caBundle).toBeUndefined();
      expect(apiService.spec.insecureSkipTLSVerify).toBeUndefined();
    }
    // AND etcd's certificates are cert-manager's too, under an etcd CA of its own
    const etcdCa = findObject(objects, 'Certificate', 'wardle-apiserver-etcd-ca') as any;
    expect(etcdCa.spec).toMatchObject({ isCA: true });
    expect(findObject(objects, 'Certificate', 'wardle-apiserver-etcd-client-tls') as any).toMatchObject({
      spec: { issuerRef: { name: 'wardle-apiserver-etcd-ca', kind: 'Issuer' } },
    });
    // AND no Secret, no key, and the pod mounts the Secret cert-manager writes
    expect(objects.filter((o) => o.kind === 'Secret')).toHaveLength(0);
    expect(JSON.stringify(objects)).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
    const volumes = (findObject(objects, 'Deployment') as any).spec.template.spec.volumes;
    expect(volumes.find((v: any) => v.secret !== undefined).secret.secretName).toBe('wardle-apiserver-tls');
  });

  test('uses a given ClusterIssuer and creates no Issuer', () => {
    const chart = newChart();
    new AggregatedApiServer(chart, 'wardle', { api: WARDLE, certificates: Certificates.certManager({ issuerRef: { name: 'corp-ca', kind: 'ClusterIssuer' } }) });
    const objects = synth(chart);
    expect(objects.filter((o) => o.kind === 'Issuer' && !isEtcds(o))).toHaveLength(0);
    expect(objects.filter((o) => o.kind === 'Certificate' && !isEtcds(o)).map((o) => o.metadata.name)).toEqual(['wardle-apiserver-serving']);
    expect((findObject(objects, 'Certificate', 'wardle-apiserver-serving') as any).spec.issuerRef).toEqual({ name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  });
});
