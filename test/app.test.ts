import { execFileSync, spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';

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
    const secret = find(objects, 'Secret')[0];
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
    fs.writeFileSync(certFile, Buffer.from(find(objects, 'Secret')[0].data['tls.crt'], 'base64'));
    const out = execFileSync('openssl', ['verify', '-CAfile', caFile, '-verify_hostname', 'wardle-apiserver.wardle.svc', '-purpose', 'sslserver', certFile], {
      encoding: 'utf8',
    });
    expect(out.trim()).toBe(`${certFile}: OK`);
    const wrongHost = spawnSync('openssl', ['verify', '-CAfile', caFile, '-verify_hostname', 'other.wardle.svc', certFile], { encoding: 'utf8' });
    expect(wrongHost.status).not.toBe(0);
  });

  test('the CA private key is nowhere in dist/, and the PKI key files are 0600', () => {
    const pkiFiles = fs.readdirSync(path.join(work, '.pki'), { recursive: true }) as string[];
    const caKeyFile = pkiFiles.find((f) => path.basename(f) === 'ca.key');
    expect(caKeyFile).toBeDefined();
    const caKey = fs.readFileSync(path.join(work, '.pki', caKeyFile!), 'utf8').trim();
    // A slice from the middle of the key: every RSA key's PEM starts alike.
    const caKeyMiddle = caKey.split('\n').slice(1, -1).join('').slice(400, 464);
    const texts: string[] = [];
    const collect = (value: unknown): void => {
      if (typeof value === 'string') texts.push(value, Buffer.from(value, 'base64').toString('utf8'));
      else if (value && typeof value === 'object') Object.values(value).forEach(collect);
    };
    collect(objects);
    expect(texts.filter((t) => t.replace(/\s/g, '').includes(caKeyMiddle))).toEqual([]);
    const servingKey = Buffer.from(find(objects, 'Secret')[0].data['tls.key'], 'base64').toString('utf8');
    expect(servingKey.replace(/\s/g, '')).toContain(fs.readFileSync(path.join(work, '.pki', 'wardle', 'wardle-apiserver', 'tls.key'), 'utf8').replace(/\s/g, '').slice(400, 464));
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
    expect(volume.secret.secretName).toBe(find(objects, 'Secret')[0].metadata.name);
    expect(container.ports).toEqual([expect.objectContaining({ containerPort: 10250 })]);
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(pod.securityContext?.runAsNonRoot ?? container.securityContext.runAsNonRoot).toBe(true);
    expect(container.livenessProbe.httpGet).toMatchObject({ path: '/livez', scheme: 'HTTPS' });
    expect(container.readinessProbe.httpGet).toMatchObject({ path: '/readyz', scheme: 'HTTPS' });
    const annotations = deployment.spec.template.metadata.annotations ?? {};
    const tlsCrt = Buffer.from(find(objects, 'Secret')[0].data['tls.crt'], 'base64');
    expect(Object.values(annotations)).toContain(crypto.createHash('sha256').update(tlsCrt).digest('hex'));
  });

  test('one replica (the bundled server stores in memory, per pod), no PodDisruptionBudget; the Service maps 443 to the secure port', () => {
    expect(find(objects, 'Deployment')[0].spec.replicas).toBe(1);
    expect(find(objects, 'PodDisruptionBudget')).toHaveLength(0);
    const [service] = find(objects, 'Service');
    expect(service.spec.ports).toEqual([expect.objectContaining({ port: 443, targetPort: 10250 })]);
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
    expect(find(objects, 'PodDisruptionBudget')).toEqual([expect.objectContaining({ spec: { minAvailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': 'flunder-api' } } } })]);
    expect(deployment.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution).toHaveLength(1);
    expect(find(objects, 'Service')[0].spec.ports[0].targetPort).toBe(8443);
    const cert = new crypto.X509Certificate(Buffer.from(find(objects, 'Secret')[0].data['tls.crt'], 'base64'));
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
    for (const flag of ['--namespace', '--name', '--image', '--replicas', '--shared-storage', '--secure-port', '--cert-mode', '--pki-dir', '--cert-validity-days', '--ca-validity-days', '--cluster-domain', '--output', '--config', '--help']) {
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
    expect(Buffer.from(find(objects, 'Secret')[0].data['tls.crt'], 'base64').toString()).toBe(fs.readFileSync(path.join(FIXTURES, 'tls.crt'), 'utf8'));
    expect(Buffer.from(find(objects, 'APIService')[0].spec.caBundle, 'base64').toString()).toBe(fs.readFileSync(path.join(FIXTURES, 'ca.crt'), 'utf8'));
  });

  test('existing mode with a Secret name emits no Secret and mounts the named one', () => {
    const run = synth(work, ['--cert-mode', 'existing', '--tls-secret-name', 'my-serving-cert', '--ca-bundle-file', path.join(FIXTURES, 'ca.crt')]);
    expect(run.stderr).toBe('');
    const objects = readObjects(path.join(work, 'dist'));
    expect(find(objects, 'Secret')).toHaveLength(0);
    const volumes = find(objects, 'Deployment')[0].spec.template.spec.volumes;
    expect(volumes.map((v: { secret?: { secretName: string } }) => v.secret?.secretName)).toContain('my-serving-cert');
  });
});

describe('bad input: one clear message, non-zero exit, dist/ untouched', () => {
  let work: string;
  let before: Record<string, string>;
  beforeAll(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-bad-'));
    expect(synth(work, []).status).toBe(0);
    before = snapshotTree(path.join(work, 'dist'));
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['a namespace that is not a DNS label', ['--namespace', 'Bad_NS'], {}, /--namespace "Bad_NS" is not a valid DNS-1123 label/],
    ['a name that cannot name a Service', ['--name', '9lives'], {}, /--name "9lives" is not a valid DNS-1035 label \(lowercase letters, digits and '-', starting with a letter/],
    ['negative replicas', ['--replicas', '-1'], {}, /--replicas "-1" is not a whole number of replicas from 1 to 1000/],
    ['non-numeric replicas', ['--replicas', 'three'], {}, /--replicas "three" is not a whole number/],
    ['two replicas without shared storage', ['--replicas', '2'], {}, /--replicas 2 needs --shared-storage: without shared storage each pod keeps its own objects/],
    ['zero certificate validity', ['--cert-validity-days', '0'], {}, /--cert-validity-days "0" is not a whole number of days/],
    ['a CA that does not outlive the certificate', ['--cert-validity-days', '400', '--ca-validity-days', '300'], {}, /--ca-validity-days "300" must be greater than --cert-validity-days "400"/],
    ['a port out of range', ['--secure-port', '70000'], {}, /--secure-port "70000" is not a port number/],
    ['an unknown cert mode', ['--cert-mode', 'magic'], {}, /--cert-mode "magic" is not one of self-signed, cert-manager, existing/],
    ['an unknown flag', ['--namespcae', 'x'], {}, /Unknown argument: namespcae/],
    ['a bad environment value', [], { APIEXT_NAMESPACE: 'UPPER' }, /--namespace "UPPER" is not a valid DNS-1123 label/],
    ['existing mode without files', ['--cert-mode', 'existing'], {}, /--cert-mode existing needs --ca-bundle-file/],
    ['a missing config file', ['--config', 'nope.yaml'], {}, /--config ".*nope\.yaml" cannot be read/],
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
