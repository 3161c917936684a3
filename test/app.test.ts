import { execFileSync, spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { makeCa, makeLeaf } from './support/pki';

/**
 * The app end to end: the compiled `build/main.js` (what `npm run synth` runs) in a temporary
 * directory, its YAML parsed and checked against everything issue 2 asks of the output.
 */

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'build', 'main.js');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'pki');

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML of any kind
  [key: string]: any;
}

function synth(cwd: string, args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('APIEXT_') && k !== 'CDK8S_OUTDIR'));
  return spawnSync(process.execPath, [MAIN, ...args], { cwd, env: { ...cleanEnv, ...env }, encoding: 'utf8' });
}

function readObjects(dir: string): K8sObject[] {
  return fs
    .readdirSync(dir)
    .sort()
    .flatMap((f) => YAML.parseAllDocuments(fs.readFileSync(path.join(dir, f), 'utf8')).map((d) => d.toJS() as K8sObject))
    .filter((o) => o);
}

/** Every file under `dir` with its bytes, to show that a failed synth changed nothing. */
function snapshotTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const full = path.join(dir, entry);
    if (fs.statSync(full).isFile()) out[entry] = crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex');
  }
  return out;
}

function find(objects: K8sObject[], kind: string, predicate: (o: K8sObject) => boolean = () => true): K8sObject[] {
  return objects.filter((o) => o.kind === kind && predicate(o));
}

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'APIService', 'CustomResourceDefinition']);

/** The serving certificate's Secret, by its name (etcd's Secrets are kubernetes.io/tls too). */
function servingSecret(objects: K8sObject[], name = 'wardle-apiserver'): K8sObject {
  return find(objects, 'Secret', (o) => o.metadata.name === `${name}-tls`)[0];
}

/** The objects of a synth, each as `<kind>/<name>` → its YAML, to tell what a change of input changed. */
function objectTexts(dir: string): Map<string, string> {
  return new Map(readObjects(dir).map((o) => [`${o.kind}/${o.metadata.name}`, YAML.stringify(o)]));
}

/** The container args of the server's Deployment as `--flag` → value. */
function serverArgs(objects: K8sObject[]): Map<string, string> {
  const [container] = find(objects, 'Deployment')[0].spec.template.spec.containers;
  return new Map((container.args as string[]).map((arg) => [arg.split('=')[0], arg.slice(arg.indexOf('=') + 1)]));
}

beforeAll(() => {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" (npm test does) before jest`);
});

describe('npm run synth on the defaults', () => {
  let work: string;
  let objects: K8sObject[];
  let run: SpawnSyncReturns<string>;

  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-app-'));
    run = synth(work, []);
    objects = readObjects(path.join(work, 'dist'));
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  test('exits 0 and reports files, objects and certificates', () => {
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^Synthesized \d+ objects into dist\//);
    expect(run.stdout).toMatch(/APIService v1alpha1\.wardle\.example\.com/);
    expect(run.stdout).toMatch(/CA .*SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2} {2}expires \d{4}-/);
    expect(run.stdout).toMatch(/serving .*SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2} {2}expires \d{4}-/);
  });

  test('the reported serving fingerprint is the one openssl computes for tls.crt', () => {
    const secret = servingSecret(objects);
    const certFile = path.join(work, 'tls.crt');
    fs.writeFileSync(certFile, Buffer.from(secret.data['tls.crt'], 'base64'));
    const openssl = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', certFile], { encoding: 'utf8' });
    const fingerprint = openssl.trim().split('=')[1];
    expect(run.stdout).toContain(`SHA-256 ${fingerprint}`);
  });

  test('one APIService per served version, caBundle set, TLS verified', () => {
    const apiServices = find(objects, 'APIService');
    expect(apiServices.map((a) => a.metadata.name).sort()).toEqual(['v1alpha1.wardle.example.com', 'v1beta1.wardle.example.com']);
    for (const a of apiServices) {
      expect(a.spec.insecureSkipTLSVerify).toBeUndefined();
      expect(a.spec.caBundle).toMatch(/^[A-Za-z0-9+/=]+$/);
      expect(a.spec.service).toEqual({ name: 'wardle-apiserver', namespace: 'wardle', port: 443 });
      expect(a.spec.groupPriorityMinimum).toBe(1000);
      expect(a.spec.versionPriority).toBeGreaterThanOrEqual(1);
    }
    const preferred = apiServices.find((a) => a.spec.version === 'v1beta1')!;
    const other = apiServices.find((a) => a.spec.version === 'v1alpha1')!;
    expect(preferred.spec.versionPriority).toBeGreaterThan(other.spec.versionPriority);
  });

  test('openssl verifies tls.crt against the caBundle for <svc>.<ns>.svc as a TLS server', () => {
    const caFile = path.join(work, 'ca-bundle.pem');
    const certFile = path.join(work, 'serving.pem');
    fs.writeFileSync(caFile, Buffer.from(find(objects, 'APIService')[0].spec.caBundle, 'base64'));
    fs.writeFileSync(certFile, Buffer.from(servingSecret(objects).data['tls.crt'], 'base64'));
    const out = execFileSync('openssl', ['verify', '-CAfile', caFile, '-verify_hostname', 'wardle-apiserver.wardle.svc', '-purpose', 'sslserver', certFile], {
      encoding: 'utf8',
    });
    expect(out.trim()).toBe(`${certFile}: OK`);
    const wrongHost = spawnSync('openssl', ['verify', '-CAfile', caFile, '-verify_hostname', 'other.wardle.svc', certFile], { encoding: 'utf8' });
    expect(wrongHost.status).not.toBe(0);
  });

  test('no CA private key (serving or etcd) is anywhere in dist/, and the PKI key files are 0600', () => {
    const pkiFiles = fs.readdirSync(path.join(work, '.pki'), { recursive: true }) as string[];
    const caKeyFiles = pkiFiles.filter((f) => /(^|[-_/])ca\.key$/.test(f));
    // The serving CA and etcd's CA.
    expect(caKeyFiles.length).toBeGreaterThanOrEqual(2);
    const texts: string[] = [];
    const collect = (value: unknown): void => {
      if (typeof value === 'string') texts.push(value, Buffer.from(value, 'base64').toString('utf8'));
      else if (value && typeof value === 'object') Object.values(value).forEach(collect);
    };
    collect(objects);
    for (const caKeyFile of caKeyFiles) {
      const caKey = fs.readFileSync(path.join(work, '.pki', caKeyFile), 'utf8').trim();
      // A slice from the middle of the key: every RSA key's PEM starts alike.
      const caKeyMiddle = caKey.split('\n').slice(1, -1).join('').slice(400, 464);
      expect({ caKeyFile, inDist: texts.filter((t) => t.replace(/\s/g, '').includes(caKeyMiddle)) }).toEqual({ caKeyFile, inDist: [] });
    }
    const servingKey = Buffer.from(servingSecret(objects).data['tls.key'], 'base64').toString('utf8');
    expect(servingKey.replace(/\s/g, '')).toContain(fs.readFileSync(path.join(work, '.pki', 'wardle', 'wardle-apiserver', 'cluster.local', 'tls.key'), 'utf8').replace(/\s/g, '').slice(400, 464));
    for (const f of pkiFiles.filter((f) => f.endsWith('.key'))) {
      expect((fs.statSync(path.join(work, '.pki', f)).mode & 0o777).toString(8)).toBe('600');
    }
  });

  test('cluster-scoped objects carry no namespace; namespaced ones do', () => {
    for (const o of objects) {
      if (CLUSTER_SCOPED.has(o.kind)) expect({ kind: o.kind, namespace: o.metadata.namespace }).toEqual({ kind: o.kind, namespace: undefined });
      else expect({ kind: o.kind, name: o.metadata.name, hasNamespace: !!o.metadata.namespace }).toEqual({ kind: o.kind, name: o.metadata.name, hasNamespace: true });
    }
  });

  test('auth-delegator and auth-reader bindings are where kube-apiserver looks', () => {
    const delegator = find(objects, 'ClusterRoleBinding', (b) => b.roleRef.name === 'system:auth-delegator');
    expect(delegator).toHaveLength(1);
    expect(delegator[0].subjects).toEqual([{ kind: 'ServiceAccount', name: 'wardle-apiserver', namespace: 'wardle' }]);
    const reader = find(objects, 'RoleBinding', (b) => b.roleRef.name === 'extension-apiserver-authentication-reader');
    expect(reader).toHaveLength(1);
    expect(reader[0].metadata.namespace).toBe('kube-system');
    expect(reader[0].roleRef.kind).toBe('Role');
  });

  test('the Deployment mounts the serving certificate and the ServiceAccount token, and runs restricted', () => {
    const [deployment] = find(objects, 'Deployment');
    const pod = deployment.spec.template.spec;
    const [container] = pod.containers;
    expect(pod.serviceAccountName).toBe('wardle-apiserver');
    expect(pod.automountServiceAccountToken).not.toBe(false);
    expect(container.args).toEqual(expect.arrayContaining(['--secure-port=10250']));
    const certArg = container.args.find((a: string) => a.startsWith('--tls-cert-file='));
    const keyArg = container.args.find((a: string) => a.startsWith('--tls-private-key-file='));
    const mount = container.volumeMounts.find((m: { mountPath: string }) => certArg.slice('--tls-cert-file='.length).startsWith(m.mountPath));
    expect(mount).toBeDefined();
    expect(keyArg.slice('--tls-private-key-file='.length).startsWith(mount.mountPath)).toBe(true);
    const volume = pod.volumes.find((v: { name: string }) => v.name === mount.name);
    expect(volume.secret.secretName).toBe(servingSecret(objects).metadata.name);
    expect(container.ports).toEqual([expect.objectContaining({ containerPort: 10250 })]);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(pod.securityContext?.runAsNonRoot ?? container.securityContext.runAsNonRoot).toBe(true);
    expect(container.livenessProbe.httpGet).toMatchObject({ path: '/livez', scheme: 'HTTPS' });
    expect(container.readinessProbe.httpGet).toMatchObject({ path: '/readyz', scheme: 'HTTPS' });
    const annotations = deployment.spec.template.metadata.annotations ?? {};
    const tlsCrt = Buffer.from(servingSecret(objects).data['tls.crt'], 'base64');
    expect(Object.values(annotations)).toContain(crypto.createHash('sha256').update(tlsCrt).digest('hex'));
  });

  test('two server replicas on shared storage, with a PodDisruptionBudget and anti-affinity; the Service maps 443 to the secure port', () => {
    const [deployment] = find(objects, 'Deployment');
    expect(deployment.spec.replicas).toBe(2);
    expect(find(objects, 'PodDisruptionBudget', (p) => p.metadata.name === 'wardle-apiserver')).toEqual([
      expect.objectContaining({ spec: { minAvailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': 'wardle-apiserver' } } } }),
    ]);
    expect(deployment.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution).toHaveLength(1);
    const [service] = find(objects, 'Service', (o) => o.metadata.name === 'wardle-apiserver');
    expect(service.spec.ports).toEqual([expect.objectContaining({ port: 443, targetPort: 10250 })]);
  });

  test('an etcd cluster of 3 members is deployed with the server, fenced by NetworkPolicies, without backups', () => {
    const [statefulSet] = find(objects, 'StatefulSet');
    expect(statefulSet.metadata).toMatchObject({ name: 'wardle-apiserver-etcd', namespace: 'wardle' });
    expect(statefulSet.spec.replicas).toBe(3);
    expect(statefulSet.spec.template.spec.containers[0].image).toBe('registry.k8s.io/etcd:3.5.21-0');
    expect(find(objects, 'Service').map((o) => o.metadata.name).sort()).toEqual(['wardle-apiserver', 'wardle-apiserver-etcd-client', 'wardle-apiserver-etcd-peer']);
    expect(find(objects, 'PodDisruptionBudget', (p) => p.metadata.name !== 'wardle-apiserver')).toHaveLength(1);
    expect(find(objects, 'NetworkPolicy').length).toBeGreaterThan(0);
    expect(find(objects, 'CronJob')).toHaveLength(0);
  });

  test('the server stores in that etcd: exactly the bundled server\'s flags, the client certificate mounted read-only, its checksum on the pod', () => {
    const [deployment] = find(objects, 'Deployment');
    const pod = deployment.spec.template.spec;
    const [container] = pod.containers;
    const args = serverArgs(objects);
    expect(args.get('--storage')).toBe('etcd');
    expect(args.get('--etcd-servers')).toBe('https://wardle-apiserver-etcd-client.wardle.svc:2379');
    const mount = container.volumeMounts.find((m: { mountPath: string }) => args.get('--etcd-certfile')!.startsWith(`${m.mountPath}/`));
    expect(mount).toMatchObject({ readOnly: true });
    for (const [flag, key] of [['--etcd-cafile', 'ca.crt'], ['--etcd-certfile', 'tls.crt'], ['--etcd-keyfile', 'tls.key']]) expect(args.get(flag)).toBe(`${mount.mountPath}/${key}`);
    const volume = pod.volumes.find((v: { name: string }) => v.name === mount.name);
    const clientSecret = find(objects, 'Secret', (o) => o.metadata.name === volume.secret.secretName)[0];
    expect(clientSecret).toMatchObject({ type: 'kubernetes.io/tls', metadata: { namespace: 'wardle' } });
    // THEN openssl verifies the client certificate against the etcd CA for client use
    const caFile = path.join(work, 'etcd-ca.pem');
    const certFile = path.join(work, 'etcd-client.pem');
    fs.writeFileSync(caFile, Buffer.from(clientSecret.data['ca.crt'], 'base64'));
    fs.writeFileSync(certFile, Buffer.from(clientSecret.data['tls.crt'], 'base64'));
    expect(execFileSync('openssl', ['verify', '-CAfile', caFile, '-purpose', 'sslclient', certFile], { encoding: 'utf8' }).trim()).toBe(`${certFile}: OK`);
    // AND a new client certificate rolls the pods
    expect(Object.values(deployment.spec.template.metadata.annotations)).toHaveLength(2);
  });

  test('objects come in apply order: Namespace first, etcd\'s Secrets before etcd, etcd before the server, APIServices last', () => {
    const order = objects.map((o) => o.kind);
    const index = (kind: string, predicate: (o: K8sObject) => boolean = () => true) => objects.findIndex((o) => o.kind === kind && predicate(o));
    expect(order[0]).toBe('Namespace');
    const etcdSecrets = objects.map((o, i) => (o.kind === 'Secret' && o.metadata.name.startsWith('wardle-apiserver-etcd') ? i : -1)).filter((i) => i >= 0);
    expect(Math.max(...etcdSecrets)).toBeLessThan(index('StatefulSet'));
    expect(index('StatefulSet')).toBeLessThan(index('Deployment'));
    expect(order.slice(-2)).toEqual(['APIService', 'APIService']);
  });

  test('reports etcd\'s certificates with fingerprint and expiry, and what the PKI store did', () => {
    // One line per Secret: each member's server and peer certificate, and the server's client certificate
    const etcdSecrets = find(objects, 'Secret', (o) => o.metadata.name.startsWith('wardle-apiserver-etcd')).map((o) => o.metadata.name);
    expect(etcdSecrets).toHaveLength(3 * 2 + 1);
    for (const secretName of etcdSecrets) {
      expect(run.stdout).toMatch(new RegExp(`^ {2}etcd {4}CN=\\S+ \\(Secret ${secretName}\\) {2}SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2} {2}expires \\d{4}-`, 'm'));
    }
    expect(run.stdout.match(/^ {2}etcd CA CN=.*SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2} {2}expires \d{4}-/gm)).toHaveLength(1);
    // AND the fingerprint of the client certificate is the one openssl computes
    const clientCert = path.join(work, 'etcd-client-fingerprint.pem');
    fs.writeFileSync(clientCert, Buffer.from(find(objects, 'Secret', (o) => o.metadata.name === 'wardle-apiserver-etcd-client-tls')[0].data['tls.crt'], 'base64'));
    const fingerprint = execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', clientCert], { encoding: 'utf8' }).trim().split('=')[1];
    expect(run.stdout).toContain(`(Secret wardle-apiserver-etcd-client-tls)  SHA-256 ${fingerprint}`);
    // AND what each PKI store did, named by its directory: namespace, name, environment (cluster domain)
    expect(run.stdout).toMatch(/^PKI:\n {2}\.pki\/wardle\/wardle-apiserver\/cluster\.local: created CA; created serving certificate$/m);
    expect(run.stdout).toMatch(/^ {2}\.pki\/wardle\/wardle-apiserver-etcd\/cluster\.local: created CA; .*created client certificate$/m);
  });

  test('every object validates against the Kubernetes 1.28 schemas', () => {
    for (const o of objects) {
      const group = o.apiVersion.includes('/') ? o.apiVersion : `v1`;
      // kubernetes-models keeps one module per apiVersion; core objects live in "v1".
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const models = require(`kubernetes-models/${group}`);
      const Model = models[o.kind];
      expect(Model).toBeDefined();
      expect(() => new Model(o).validate()).not.toThrow();
    }
  });

  test('a second synth with the same PKI directory is byte-identical', () => {
    const before = snapshotTree(path.join(work, 'dist'));
    const again = synth(work, []);
    expect(again.status).toBe(0);
    expect(snapshotTree(path.join(work, 'dist'))).toEqual(before);
  });
});

describe('options from flags, environment and config file', () => {
  let work: string;
  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-opts-'));
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  test('flags set namespace, name, replicas, port and output', () => {
    const run = synth(work, ['--namespace', 'tenant-a', '--name', 'flunder-api', '--replicas', '2', '--shared-storage', '--secure-port', '8443', '--output', 'out', '--cluster-domain', 'corp.example']);
    expect(run.stderr).toBe('');
    const objects = readObjects(path.join(work, 'out'));
    const [deployment] = find(objects, 'Deployment');
    expect(deployment.metadata).toMatchObject({ name: 'flunder-api', namespace: 'tenant-a' });
    expect(deployment.spec.replicas).toBe(2);
    expect(find(objects, 'PodDisruptionBudget', (p) => p.metadata.name === 'flunder-api')).toEqual([
      expect.objectContaining({ spec: { minAvailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': 'flunder-api' } } } }),
    ]);
    expect(deployment.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution).toHaveLength(1);
    expect(find(objects, 'Service', (o) => o.metadata.name === 'flunder-api')[0].spec.ports[0].targetPort).toBe(8443);
    expect(serverArgs(objects).get('--etcd-servers')).toBe('https://flunder-api-etcd-client.tenant-a.svc:2379');
    const cert = new crypto.X509Certificate(Buffer.from(servingSecret(objects, 'flunder-api').data['tls.crt'], 'base64'));
    expect(cert.subjectAltName).toContain('DNS:flunder-api.tenant-a.svc.corp.example');
  });

  test('APIEXT_* environment variables set options, and flags win over them', () => {
    const run = synth(work, ['--name', 'from-flag'], { APIEXT_NAMESPACE: 'from-env', APIEXT_NAME: 'from-env-name', APIEXT_REPLICAS: '3', APIEXT_SHARED_STORAGE: 'true' });
    expect(run.stderr).toBe('');
    const [deployment] = find(readObjects(path.join(work, 'dist')), 'Deployment');
    expect(deployment.metadata).toMatchObject({ name: 'from-flag', namespace: 'from-env' });
    expect(deployment.spec.replicas).toBe(3);
  });

  test('a YAML config file sets options, below the environment', () => {
    fs.writeFileSync(path.join(work, 'apiext.yaml'), 'namespace: from-config\nname: config-api\nreplicas: 4\nsecure-port: 9443\n');
    const run = synth(work, ['--config', 'apiext.yaml'], { APIEXT_REPLICAS: '1' });
    expect(run.stderr).toBe('');
    const [deployment] = find(readObjects(path.join(work, 'dist')), 'Deployment');
    expect(deployment.metadata).toMatchObject({ name: 'config-api', namespace: 'from-config' });
    expect(deployment.spec.replicas).toBe(1);
  });

  test('a JSON config file sets options', () => {
    fs.writeFileSync(path.join(work, 'apiext.json'), JSON.stringify({ namespace: 'json-ns', 'cert-mode': 'cert-manager' }));
    const run = synth(work, ['--config', 'apiext.json']);
    expect(run.stderr).toBe('');
    const objects = readObjects(path.join(work, 'dist'));
    expect(find(objects, 'Deployment')[0].metadata.namespace).toBe('json-ns');
    expect(find(objects, 'Certificate').length).toBeGreaterThan(0);
  });

  test('--help prints every flag and exits 0 without writing', () => {
    const run = synth(work, ['--help']);
    expect(run.status).toBe(0);
    for (const flag of [
      '--namespace', '--name', '--image', '--replicas', '--shared-storage', '--storage', '--etcd-replicas', '--etcd-image', '--etcd-storage-size', '--etcd-storage-class',
      '--network-policy', '--etcd-backup-schedule', '--etcd-servers', '--etcd-ca-file', '--etcd-cert-file', '--etcd-key-file',
      '--secure-port', '--cert-mode', '--pki-dir', '--cert-validity-days', '--ca-validity-days', '--cluster-domain', '--output', '--config', '--help',
    ]) {
      expect(run.stdout).toContain(flag);
    }
    expect(fs.existsSync(path.join(work, 'dist'))).toBe(false);
  });
});

describe('certificate modes', () => {
  let work: string;
  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-modes-'));
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  test('cert-manager mode: Issuer and Certificate objects, inject-ca-from, no private key in dist/', () => {
    const run = synth(work, ['--cert-mode', 'cert-manager']);
    expect(run.stderr).toBe('');
    const objects = readObjects(path.join(work, 'dist'));
    expect(find(objects, 'Issuer').length).toBeGreaterThan(0);
    const certificates = find(objects, 'Certificate');
    const serving = certificates.find((c) => (c.spec.dnsNames ?? []).includes('wardle-apiserver.wardle.svc'))!;
    expect(serving).toBeDefined();
    for (const a of find(objects, 'APIService')) {
      expect(a.metadata.annotations!['cert-manager.io/inject-ca-from']).toBe(`wardle/${serving.metadata.name}`);
      expect(a.spec.caBundle).toBeUndefined();
    }
    const dist = fs.readdirSync(path.join(work, 'dist')).map((f) => fs.readFileSync(path.join(work, 'dist', f), 'utf8')).join('');
    expect(dist).not.toMatch(/PRIVATE KEY|LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVk|LS0tLS1CRUdJTiBQUklWQVRFIEtFWS/);
    expect(fs.existsSync(path.join(work, '.pki'))).toBe(false);
    // AND etcd's certificates come from cert-manager too
    expect(find(objects, 'Secret')).toHaveLength(0);
    expect(certificates.filter((c) => c.spec.secretName.startsWith('wardle-apiserver-etcd')).length).toBeGreaterThan(0);
  });

  test('existing mode with PEM files puts them in the Secret and caBundle as given', () => {
    const run = synth(work, [
      '--cert-mode', 'existing',
      '--tls-cert-file', path.join(FIXTURES, 'tls.crt'),
      '--tls-key-file', path.join(FIXTURES, 'tls.key'),
      '--ca-bundle-file', path.join(FIXTURES, 'ca.crt'),
    ]);
    expect(run.stderr).toBe('');
    const objects = readObjects(path.join(work, 'dist'));
    expect(Buffer.from(servingSecret(objects).data['tls.crt'], 'base64').toString()).toBe(fs.readFileSync(path.join(FIXTURES, 'tls.crt'), 'utf8'));
    expect(Buffer.from(find(objects, 'APIService')[0].spec.caBundle, 'base64').toString()).toBe(fs.readFileSync(path.join(FIXTURES, 'ca.crt'), 'utf8'));
  });

  test('existing mode with a Secret name emits no serving Secret and mounts the named one', () => {
    const run = synth(work, ['--cert-mode', 'existing', '--tls-secret-name', 'my-serving-cert', '--ca-bundle-file', path.join(FIXTURES, 'ca.crt')]);
    expect(run.stderr).toBe('');
    const objects = readObjects(path.join(work, 'dist'));
    expect(find(objects, 'Secret').filter((o) => !o.metadata.name.startsWith('wardle-apiserver-etcd'))).toHaveLength(0);
    const volumes = find(objects, 'Deployment')[0].spec.template.spec.volumes;
    expect(volumes.map((v: { secret?: { secretName: string } }) => v.secret?.secretName)).toContain('my-serving-cert');
  });
});

describe('storage choices', () => {
  let work: string;
  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-storage-'));
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  test('etcd flags size, place, fence and back up the cluster', () => {
    // GIVEN every etcd flag
    const run = synth(work, [
      '--etcd-replicas', '5', '--etcd-image', 'registry.example.com/etcd:3.5.21', '--etcd-storage-size', '8Gi', '--etcd-storage-class', 'fast-ssd',
      '--network-policy', 'false', '--etcd-backup-schedule', '0 3 * * *',
    ]);
    expect(run.stderr).toBe('');
    // THEN the StatefulSet has them, no NetworkPolicy is emitted, a CronJob takes snapshots
    const objects = readObjects(path.join(work, 'dist'));
    const [statefulSet] = find(objects, 'StatefulSet');
    expect(statefulSet.spec.replicas).toBe(5);
    expect(statefulSet.spec.template.spec.containers[0].image).toBe('registry.example.com/etcd:3.5.21');
    expect(statefulSet.spec.volumeClaimTemplates[0].spec).toMatchObject({ storageClassName: 'fast-ssd', resources: { requests: { storage: '8Gi' } } });
    expect(find(objects, 'NetworkPolicy')).toHaveLength(0);
    expect(find(objects, 'CronJob')).toEqual([expect.objectContaining({ spec: expect.objectContaining({ schedule: '0 3 * * *' }) })]);
  });

  test('etcd flags from the environment and from a config file, flags over environment over file', () => {
    // GIVEN a config file, overridden in part by the environment
    fs.writeFileSync(path.join(work, 'apiext.yaml'), 'etcd-replicas: 5\nnetwork-policy: false\netcd-backup-schedule: "@daily"\netcd-storage-size: 2Gi\n');
    const run = synth(work, ['--config', 'apiext.yaml', '--etcd-storage-size', '4Gi'], { APIEXT_ETCD_REPLICAS: '1', APIEXT_ETCD_STORAGE_CLASS: 'standard', APIEXT_NETWORK_POLICY: 'true' });
    expect(run.stderr).toBe('');
    // THEN each comes from the highest source that sets it
    const objects = readObjects(path.join(work, 'dist'));
    const [statefulSet] = find(objects, 'StatefulSet');
    expect(statefulSet.spec.replicas).toBe(1);
    expect(statefulSet.spec.volumeClaimTemplates[0].spec).toMatchObject({ storageClassName: 'standard', resources: { requests: { storage: '4Gi' } } });
    expect(find(objects, 'NetworkPolicy')).toHaveLength(1);
    expect(find(objects, 'CronJob')[0].spec.schedule).toBe('@daily');
  });

  test('memory: one replica told --storage=memory, and no etcd at all', () => {
    const run = synth(work, [], { APIEXT_STORAGE: 'memory' });
    expect(run.stderr).toBe('');
    const objects = readObjects(path.join(work, 'dist'));
    expect(find(objects, 'Deployment')[0].spec.replicas).toBe(1);
    expect([...serverArgs(objects).entries()].filter(([flag]) => flag === '--storage' || flag.startsWith('--etcd'))).toEqual([['--storage', 'memory']]);
    expect(find(objects, 'StatefulSet')).toHaveLength(0);
    expect(find(objects, 'PodDisruptionBudget')).toHaveLength(0);
    expect(find(objects, 'Secret').map((o) => o.metadata.name)).toEqual(['wardle-apiserver-tls']);
    expect(run.stdout).not.toMatch(/etcd/);
  });

  test('--shared-storage (deprecated) still parses: it changes nothing on etcd', () => {
    const withFlag = synth(work, ['--shared-storage', '--output', 'with']);
    const without = synth(work, ['--output', 'without']);
    expect(withFlag.stderr).toBe('');
    expect(without.status).toBe(0);
    expect(snapshotTree(path.join(work, 'with'))).toEqual(snapshotTree(path.join(work, 'without')));
  });

  describe('external-etcd', () => {
    const ca = makeCa('external etcd CA');
    const client = makeLeaf(ca, { cn: 'wardle-apiserver', extendedKeyUsages: ['clientAuth'] });
    const other = makeLeaf(makeCa('someone else'), { cn: 'stranger' });
    const write = (name: string, text: string) => fs.writeFileSync(path.join(work, name), text, { mode: 0o600 });
    beforeEach(() => {
      write('ca.crt', ca.certPem);
      write('client.crt', client.certPem);
      write('client.key', client.keyPem);
      write('other.crt', other.certPem);
      write('other.key', other.keyPem);
    });

    test('the files go into a client Secret the server mounts, pointed at the given servers; no etcd is deployed', () => {
      // GIVEN an etcd of one's own, its servers as a list in the config file
      fs.writeFileSync(path.join(work, 'apiext.yaml'), 'storage: external-etcd\netcd-servers:\n  - https://etcd-a.example:2379\n  - https://etcd-b.example:2379\n');
      const run = synth(work, ['--config', 'apiext.yaml', '--etcd-ca-file', 'ca.crt', '--etcd-cert-file', 'client.crt', '--etcd-key-file', 'client.key']);
      expect(run.stderr).toBe('');
      // THEN the server has exactly the flags, the Secret holds the files as given, replicas are 2
      const objects = readObjects(path.join(work, 'dist'));
      const args = serverArgs(objects);
      expect(args.get('--storage')).toBe('etcd');
      expect(args.get('--etcd-servers')).toBe('https://etcd-a.example:2379,https://etcd-b.example:2379');
      const [secret] = find(objects, 'Secret', (o) => o.metadata.name === 'wardle-apiserver-etcd-client');
      const decode = (key: string) => Buffer.from(secret.data[key], 'base64').toString('utf8');
      expect([decode('ca.crt'), decode('tls.crt'), decode('tls.key')]).toEqual([ca.certPem, client.certPem, client.keyPem]);
      const pod = find(objects, 'Deployment')[0].spec.template.spec;
      expect(pod.volumes.map((v: { secret?: { secretName: string } }) => v.secret?.secretName)).toContain('wardle-apiserver-etcd-client');
      expect(find(objects, 'Deployment')[0].spec.replicas).toBe(2);
      expect(find(objects, 'StatefulSet')).toHaveLength(0);
      expect(run.stdout).toMatch(/^ {2}etcd {4}CN=wardle-apiserver \(Secret wardle-apiserver-etcd-client\) {2}SHA-256/m);
      expect(run.stdout).toMatch(/^ {2}etcd CA CN=external etcd CA {2}SHA-256/m);
    });

    test('every external-etcd option from the environment', () => {
      const run = synth(work, [], {
        APIEXT_STORAGE: 'external-etcd',
        APIEXT_ETCD_SERVERS: 'https://etcd-a.example:2379,https://etcd-b.example:2379',
        APIEXT_ETCD_CA_FILE: 'ca.crt',
        APIEXT_ETCD_CERT_FILE: 'client.crt',
        APIEXT_ETCD_KEY_FILE: 'client.key',
      });
      expect(run.stderr).toBe('');
      const objects = readObjects(path.join(work, 'dist'));
      expect(serverArgs(objects).get('--etcd-servers')).toBe('https://etcd-a.example:2379,https://etcd-b.example:2379');
      expect(find(objects, 'Secret', (o) => o.metadata.name === 'wardle-apiserver-etcd-client')).toHaveLength(1);
    });

    test.each([
      ['no servers', ['--storage', 'external-etcd'], /--storage external-etcd needs --etcd-servers/],
      ['an http:// server', ['--storage', 'external-etcd', '--etcd-servers', 'http://etcd.example:2379'], /--etcd-servers contains "http:\/\/etcd\.example:2379", which is not an https:\/\/ URL/],
      ['a server without a port', ['--storage', 'external-etcd', '--etcd-servers', 'https://etcd.example'], /--etcd-servers contains "https:\/\/etcd\.example", which is not a bare client URL with a port/],
      ['no key file', ['--storage', 'external-etcd', '--etcd-servers', 'https://e:2379', '--etcd-ca-file', 'ca.crt', '--etcd-cert-file', 'client.crt'], /--storage external-etcd needs --etcd-key-file/],
      ['a key that is not the certificate\'s', ['--storage', 'external-etcd', '--etcd-servers', 'https://e:2379', '--etcd-ca-file', 'ca.crt', '--etcd-cert-file', 'client.crt', '--etcd-key-file', 'other.key'], /--etcd-key-file "other\.key" does not match --etcd-cert-file "client\.crt"/],
      ['a certificate the CA does not verify', ['--storage', 'external-etcd', '--etcd-servers', 'https://e:2379', '--etcd-ca-file', 'ca.crt', '--etcd-cert-file', 'other.crt', '--etcd-key-file', 'other.key'], /--etcd-cert-file "other\.crt" \(issuer CN=someone else\) is not verified by --etcd-ca-file "ca\.crt"/],
      ['a key file that is no key', ['--storage', 'external-etcd', '--etcd-servers', 'https://e:2379', '--etcd-ca-file', 'ca.crt', '--etcd-cert-file', 'client.crt', '--etcd-key-file', 'ca.crt'], /--etcd-key-file "ca\.crt" does not hold a PEM private key/],
      ['a CA file that holds a private key', ['--storage', 'external-etcd', '--etcd-servers', 'https://e:2379', '--etcd-ca-file', 'client.key', '--etcd-cert-file', 'client.crt', '--etcd-key-file', 'client.key'], /--etcd-ca-file "client\.key" holds a PEM block of type (?:RSA )?PRIVATE KEY \(expected only/],
      ['a missing CA file', ['--storage', 'external-etcd', '--etcd-servers', 'https://e:2379', '--etcd-ca-file', 'nope.crt', '--etcd-cert-file', 'client.crt', '--etcd-key-file', 'client.key'], /--etcd-ca-file "nope\.crt" cannot be read/],
      ['an etcd-mode flag', ['--storage', 'external-etcd', '--etcd-servers', 'https://e:2379', '--etcd-replicas', '3'], /--etcd-replicas is only used with --storage etcd \(got --storage external-etcd\)/],
    ])('fails for %s, leaving dist/ as it was', (_what, args, message) => {
      // GIVEN a previous output
      expect(synth(work, ['--storage', 'memory']).status).toBe(0);
      const before = snapshotTree(path.join(work, 'dist'));
      // WHEN the synth is refused
      const run = synth(work, args);
      // THEN the message names the flag, and dist/ is unchanged
      expect(run.status).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(snapshotTree(path.join(work, 'dist'))).toEqual(before);
    });
  });
});

describe('--etcd-replicas 3 → 5 changes only what it must', () => {
  test('the StatefulSet, its PodDisruptionBudget and the new members\' Secrets; the server and the other members untouched', () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-grow-'));
    try {
      // GIVEN a synth with 3 members, and one with 5 from the same PKI directory
      expect(synth(work, ['--output', 'three']).status).toBe(0);
      expect(synth(work, ['--output', 'five', '--etcd-replicas', '5']).status).toBe(0);
      const three = objectTexts(path.join(work, 'three'));
      const five = objectTexts(path.join(work, 'five'));
      // THEN nothing was removed, only Secrets were added, and only the StatefulSet and etcd's budget changed
      expect([...three.keys()].filter((key) => !five.has(key))).toEqual([]);
      const added = [...five.keys()].filter((key) => !three.has(key));
      expect(added.length).toBeGreaterThan(0);
      expect(added.filter((key) => !/^Secret\/wardle-apiserver-etcd-[34]\b/.test(key))).toEqual([]);
      const changed = [...three.keys()].filter((key) => five.get(key) !== three.get(key)).sort();
      expect(changed).toEqual(['PodDisruptionBudget/wardle-apiserver-etcd', 'StatefulSet/wardle-apiserver-etcd']);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('bad input: one clear message, non-zero exit, dist/ untouched', () => {
  let work: string;
  let before: Record<string, string>;
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-bad-'));
    fs.writeFileSync(path.join(work, 'seven.yaml'), 'etcd-replicas: 7\n');
    expect(synth(work, []).status).toBe(0);
    before = snapshotTree(path.join(work, 'dist'));
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['a namespace that is not a DNS label', ['--namespace', 'Bad_NS'], {}, /--namespace "Bad_NS" is not a valid DNS-1123 label/],
    ['a name that cannot name a Service', ['--name', '9lives'], {}, /--name "9lives" is not a valid DNS-1035 label \(lowercase letters, digits and '-', starting with a letter/],
    ['negative replicas', ['--replicas', '-1'], {}, /--replicas "-1" is not a whole number of replicas from 1 to 1000/],
    ['non-numeric replicas', ['--replicas', 'three'], {}, /--replicas "three" is not a whole number/],
    ['two replicas on memory storage', ['--storage', 'memory', '--replicas', '2'], {}, /--replicas 2 needs shared storage, and --storage memory keeps each pod's objects in that pod/],
    ['zero certificate validity', ['--cert-validity-days', '0'], {}, /--cert-validity-days "0" is not a whole number of days/],
    ['a CA that does not outlive the certificate', ['--cert-validity-days', '400', '--ca-validity-days', '300'], {}, /--ca-validity-days "300" must be greater than --cert-validity-days "400"/],
    ['a port out of range', ['--secure-port', '70000'], {}, /--secure-port "70000" is not a port number/],
    ['an unknown cert mode', ['--cert-mode', 'magic'], {}, /--cert-mode "magic" is not one of self-signed, cert-manager, existing/],
    ['an unknown flag', ['--namespcae', 'x'], {}, /Unknown argument: namespcae/],
    ['a bad environment value', [], { APIEXT_NAMESPACE: 'UPPER' }, /--namespace "UPPER" is not a valid DNS-1123 label/],
    ['existing mode without files', ['--cert-mode', 'existing'], {}, /--cert-mode existing needs --ca-bundle-file/],
    ['a missing config file', ['--config', 'nope.yaml'], {}, /--config ".*nope\.yaml" cannot be read/],
    ['an unknown storage', ['--storage', 'postgres'], {}, /--storage "postgres" is not one of etcd, external-etcd, memory/],
    ['a name too long to name the etcd cluster', ['--name', `a${'b'.repeat(47)}`], {}, /--name "ab{47}" is too long for --storage etcd: the etcd StatefulSet is named "ab{47}-etcd" \(53 characters, at most 52\) \(expected a --name of at most 47 characters\)/],
    ['a name too long to name the backup CronJob', ['--name', `a${'b'.repeat(40)}`, '--etcd-backup-schedule', '@daily'], {}, /--name "ab{40}" is too long for --storage etcd with --etcd-backup-schedule: etcd's backup CronJob is named "ab{40}-etcd-backup" \(53 characters, at most 52\) \(expected a --name of at most 40 characters\)/],
    ['2 etcd members', ['--etcd-replicas', '2'], {}, /--etcd-replicas 2 is not valid \(expected 1, 3 or 5/],
    ['7 etcd members from the config file', ['--config', 'seven.yaml'], {}, /--etcd-replicas 7 is not valid \(expected 1, 3 or 5/],
    ['non-numeric etcd members', ['--etcd-replicas', 'three'], {}, /--etcd-replicas "three" is not a whole number/],
    ['4 etcd members from the environment', [], { APIEXT_ETCD_REPLICAS: '4' }, /--etcd-replicas 4 is not valid \(expected 1, 3 or 5/],
    ['a storage size in bytes-with-a-typo', ['--etcd-storage-size', '1GB'], {}, /--etcd-storage-size "1GB" is not a Kubernetes quantity/],
    ['a zero storage size', ['--etcd-storage-size', '0Gi'], {}, /--etcd-storage-size "0Gi" is too small \(expected at least 512Mi/],
    ['a storage size below etcd\'s write-ahead log', ['--etcd-storage-size', '100Mi'], {}, /--etcd-storage-size "100Mi" is too small \(expected at least 512Mi/],
    ['a storage class that is no name', ['--etcd-storage-class', 'Fast_SSD'], {}, /--etcd-storage-class "Fast_SSD" is not a StorageClass name/],
    ['an etcd image with a space', ['--etcd-image', 'etcd 3.5'], {}, /--etcd-image "etcd 3\.5" is not a valid image reference/],
    ['a backup schedule of 3 fields', ['--etcd-backup-schedule', '0 3 *'], {}, /--etcd-backup-schedule "0 3 \*" is not a cron schedule: it has 3 fields/],
    ['a backup minute out of range', ['--etcd-backup-schedule', '61 * * * *'], {}, /--etcd-backup-schedule "61 \* \* \* \*" is not a cron schedule: the minute "61" is not from 0 to 59/],
    ['an unknown backup macro', ['--etcd-backup-schedule', '@often'], {}, /--etcd-backup-schedule "@often" is not a cron schedule: "@often" is not a known macro/],
    ['a backup schedule with seconds', ['--etcd-backup-schedule', '0 0 3 * * *'], {}, /--etcd-backup-schedule "0 0 3 \* \* \*" is not a cron schedule: it has 6 fields \(expected 5 fields/],
    ['a backup schedule with a time zone', ['--etcd-backup-schedule', 'CRON_TZ=Europe/Paris 0 3 * * *'], {}, /--etcd-backup-schedule "CRON_TZ=Europe\/Paris 0 3 \* \* \*" is not a cron schedule: Kubernetes refuses TZ= and CRON_TZ=/],
    ['a server image with a space', ['--image', 'my image'], {}, /--image "my image" is not a valid image reference \(expected e\.g\. "registry\.example\.com\/wardle-apiserver:1\.0", no spaces\)/],
    ['an external-etcd flag with etcd', ['--etcd-servers', 'https://etcd.example:2379'], {}, /--etcd-servers is only used with --storage external-etcd \(got --storage etcd\)/],
    ['an etcd flag with memory', ['--storage', 'memory', '--etcd-replicas', '3'], {}, /--etcd-replicas is only used with --storage etcd \(got --storage memory\)/],
    ['--network-policy with memory', ['--storage', 'memory', '--network-policy', 'false'], {}, /--network-policy is only used with --storage etcd \(got --storage memory\)/],
    ['--shared-storage with memory', ['--storage', 'memory', '--shared-storage'], {}, /--shared-storage true contradicts --storage memory/],
    ['a --network-policy that is not a boolean', ['--network-policy', 'maybe'], {}, /--network-policy "maybe" is not true or false/],
    ['a network policy from the environment that is not a boolean', [], { APIEXT_NETWORK_POLICY: 'off' }, /--network-policy "off" is not true or false/],
    ['a stray argument', ['--etcd-replicas', '3', '5'], {}, /Unknown argument: 5/],
  ];

  test.each(cases)('fails for %s', (_what, args, env, message) => {
    const run = synth(work, args, env);
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(message);
    expect(run.stderr.trim().split('\n')[0]).toMatch(/^error: /);
    expect(snapshotTree(path.join(work, 'dist'))).toEqual(before);
  });

  test('fails for a config file that does not parse', () => {
    fs.writeFileSync(path.join(work, 'broken.yaml'), 'namespace: [unclosed\n');
    const run = synth(work, ['--config', 'broken.yaml']);
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/--config ".*broken\.yaml" is not valid YAML or JSON/);
    expect(snapshotTree(path.join(work, 'dist'))).toEqual(before);
  });

  test('fails for a PEM file that is not a certificate, leaving dist/ as it was', () => {
    fs.writeFileSync(path.join(work, 'junk.pem'), 'not a certificate\n');
    const run = synth(work, ['--cert-mode', 'existing', '--tls-cert-file', 'junk.pem', '--tls-key-file', path.join(FIXTURES, 'tls.key'), '--ca-bundle-file', path.join(FIXTURES, 'ca.crt')]);
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/junk\.pem/);
    expect(snapshotTree(path.join(work, 'dist'))).toEqual(before);
  });

  test('fails for an output directory holding anything a synth does not write, deleting nothing', () => {
    // GIVEN the work directory holds dist/, .pki/ and files of the user's
    fs.writeFileSync(path.join(work, 'notes.txt'), 'mine\n');
    const tree = snapshotTree(work);
    // WHEN the output is the work directory itself, or an existing file
    const here = synth(work, ['--output', '.']);
    const file = synth(work, ['--output', 'notes.txt']);
    // THEN both fail naming --output, and nothing was removed or replaced
    expect(here.status).toBe(2);
    expect(here.stderr).toMatch(/--output "\." holds \.pki, .*, which a synth does not write/);
    expect(file.status).toBe(2);
    expect(file.stderr).toMatch(/--output "notes\.txt" is not a directory/);
    expect(snapshotTree(work)).toEqual(tree);
  });

  test('fails for a PKI directory inside the output directory', () => {
    const run = synth(work, ['--pki-dir', path.join('dist', '.pki')]);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/--pki-dir "dist\/\.pki" is inside --output "dist" \(expected a directory outside it/);
    expect(snapshotTree(path.join(work, 'dist'))).toEqual(before);
  });

  test('leaves no staging directory behind', () => {
    expect(fs.readdirSync(work).filter((f) => f.includes('staging') || f.includes('previous'))).toEqual([]);
  });
});

describe('npx cdk8s synth', () => {
  test('writes dist/ on the defaults with no arguments', () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-cli-'));
    try {
      fs.writeFileSync(path.join(work, 'cdk8s.yaml'), `language: typescript\napp: node ${MAIN}\noutput: dist\n`);
      const cli = path.join(ROOT, 'node_modules', '.bin', 'cdk8s');
      const run = spawnSync(cli, ['synth'], { cwd: work, encoding: 'utf8', env: { ...process.env, CDK8S_CHECK_UPGRADE: 'false' } });
      expect(run.status).toBe(0);
      const objects = readObjects(path.join(work, 'dist'));
      expect(find(objects, 'APIService')).toHaveLength(2);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});
