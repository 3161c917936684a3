import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { SERVING_CERT_CHECKSUM_ANNOTATION as CONSTRUCTS_ANNOTATION } from '../lib/api-server-deployment';
import { explainUnavailable, SERVING_CERT_CHECKSUM_ANNOTATION } from '../lib/app/doctor/checks';
import { driftOf } from '../lib/app/doctor/drift';
import { installationFromManifests, KubeObject } from '../lib/app/doctor/installation';
import { KubeApiServerStandIn, StoredObject } from './support/kube-apiserver-stand-in';
import { makeCa, makeLeaf, TestCa } from './support/pki';

/**
 * `doctor` end to end: the compiled CLI (build/lib/app/cli.js, built by `npx tsc -p .` as
 * `npm test` does: client-node is ESM only, so jest cannot load it in-process) against a local
 * HTTPS stand-in of kube-apiserver holding the objects of a real synth of this repository, healthy
 * or broken one way at a time.
 */
const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'build', 'lib', 'app', 'cli.js');
const MAIN = path.join(ROOT, 'build', 'main.js');
const NS = 'wardle';
const NAME = 'wardle-apiserver';
const HOST = `${NAME}.${NS}.svc`;

interface Check {
  check: string;
  status: 'PASS' | 'WARN' | 'FAIL' | 'SKIP';
  message: string;
  fix?: string;
  details?: string[];
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let work: string;
let dist: string;
let manifests: StoredObject[];
let servingCa: TestCa;
let standIn: KubeApiServerStandIn;
let kubeconfig: string;
let frontProxyCa: TestCa;

function doctor(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  // Asynchronous: the stand-in answers from this process's event loop.
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'doctor', ...args], { cwd: work, env: { PATH: process.env.PATH, HOME: work, ...env }, encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

async function doctorJson(args: readonly string[] = []): Promise<{ run: Run; checks: Check[] }> {
  const run = await doctor(['--dist', dist, '--kubeconfig', kubeconfig, '-o', 'json', ...args]);
  if (run.stdout.trim() === '') throw new Error(`doctor printed nothing (exit ${run.code}): ${run.stderr}`);
  return { run, checks: JSON.parse(run.stdout).checks };
}

function only(checks: Check[], name: string, status?: Check['status']): Check[] {
  return checks.filter((c) => c.check === name && (status === undefined || c.status === status));
}

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** The cluster as it is once dist/ is applied and everything came up: what kube-apiserver, controllers and kubelet add. */
function installHealthy(target: KubeApiServerStandIn): void {
  for (const object of manifests) target.put(object);
  target.put({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'extension-apiserver-authentication', namespace: 'kube-system' },
    data: {
      'client-ca-file': target.ca.certPem,
      'requestheader-client-ca-file': frontProxyCa.certPem,
      'requestheader-allowed-names': '["front-proxy-client"]',
      'requestheader-username-headers': '["X-Remote-User"]',
      'requestheader-group-headers': '["X-Remote-Group"]',
      'requestheader-extra-headers-prefix': '["X-Remote-Extra-"]',
    },
  });
  for (const apiService of manifests.filter((o) => o.kind === 'APIService')) {
    const live = target.get('APIService', apiService.metadata.name);
    live.status = { conditions: [{ type: 'Available', status: 'True', lastTransitionTime: now(), reason: 'Passed', message: 'all checks passed' }] };
    target.discovery.set(`/apis/${live.spec.group}/${live.spec.version}`, {
      status: 200,
      body: {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion: `${live.spec.group}/${live.spec.version}`,
        resources: [
          { name: 'flunders', singularName: 'flunder', namespaced: true, kind: 'Flunder', verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] },
          { name: 'flunders/status', singularName: '', namespaced: true, kind: 'Flunder', verbs: ['get', 'patch', 'update'] },
        ],
      },
    });
  }
  // Server-side defaults and status: not drift.
  const deployment = target.get('Deployment', NAME, NS);
  deployment.metadata.generation = 1;
  deployment.spec.revisionHistoryLimit = 10;
  deployment.spec.template.spec.containers[0].terminationMessagePath = '/dev/termination-log';
  deployment.spec.template.spec.schedulerName = 'default-scheduler';
  deployment.status = { observedGeneration: 1, replicas: 2, readyReplicas: 2, availableReplicas: 2, updatedReplicas: 2 };
  const etcd = target.get('StatefulSet', `${NAME}-etcd`, NS);
  etcd.status = { replicas: 3, readyReplicas: 3, currentReplicas: 3, updatedReplicas: 3, availableReplicas: 3 };
  const service = target.get('Service', NAME, NS);
  service.spec.clusterIP = '10.96.12.34';
  service.spec.clusterIPs = ['10.96.12.34'];
  service.spec.sessionAffinity = 'None';

  const template = deployment.spec.template;
  const podNames = [`${NAME}-6d8f9c7b5-2xk4q`, `${NAME}-6d8f9c7b5-h7wzp`];
  podNames.forEach((podName, index) => {
    target.put({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: podName, namespace: NS, labels: { ...template.metadata.labels, 'pod-template-hash': '6d8f9c7b5' }, annotations: { ...template.metadata.annotations } },
      spec: { ...template.spec, nodeName: `node-${index}` },
      status: {
        phase: 'Running',
        podIP: `10.244.${index}.7`,
        conditions: ['Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => ({ type, status: 'True', lastTransitionTime: now() })),
        containerStatuses: [{ name: 'apiserver', ready: true, started: true, restartCount: 0, image: template.spec.containers[0].image, state: { running: { startedAt: now() } } }],
      },
    });
    target.logs.set(`${NS}/${podName}`, { current: 'I1203 serving securely on [::]:10250\nI1203 etcd storage ready\n' });
  });
  target.put({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${NAME}-x8k2f`, namespace: NS, labels: { 'kubernetes.io/service-name': NAME, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' } },
    addressType: 'IPv4',
    endpoints: podNames.map((podName, index) => ({ addresses: [`10.244.${index}.7`], conditions: { ready: true, serving: true, terminating: false }, targetRef: { kind: 'Pod', namespace: NS, name: podName } })),
    ports: [{ name: 'https', port: 10250, protocol: 'TCP' }],
  });
}

/** Puts a new serving certificate in the Secret (the pods keep the old checksum). */
function replaceServingCertificate(certPem: string): void {
  const secret = standIn.get('Secret', `${NAME}-tls`, NS);
  secret.data['tls.crt'] = Buffer.from(certPem).toString('base64');
}

beforeAll(() => {
  if (!fs.existsSync(CLI) || !fs.existsSync(MAIN)) throw new Error(`${CLI} or ${MAIN} is missing: run "npx tsc -p ." first (npm test does)`);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'doctor-'));
  dist = path.join(work, 'dist');
  // GIVEN a real synth of this repository (self-signed PKI)
  execFileSync(process.execPath, [MAIN, '--output', dist, '--cert-mode', 'self-signed', '--pki-dir', path.join(work, 'pki')], {
    cwd: work,
    env: { PATH: process.env.PATH, HOME: work, CDK8S_CHECK_UPGRADE: 'false' },
    stdio: 'pipe',
  });
  manifests = fs
    .readdirSync(dist)
    .flatMap((file) => YAML.parseAllDocuments(fs.readFileSync(path.join(dist, file), 'utf8')).map((d) => d.toJS() as StoredObject))
    .filter(Boolean);
  const store = path.join(work, 'pki', NS, NAME, 'cluster.local');
  const caPem = fs.readFileSync(path.join(store, 'ca.crt'), 'utf8');
  frontProxyCa = makeCa('front-proxy-ca');
  servingCa = { certPem: caPem, keyPem: fs.readFileSync(path.join(store, 'ca.key'), 'utf8'), chainPem: caPem, subjectCn: 'serving CA', isCa: true };
}, 120_000);

beforeEach(async () => {
  standIn = await KubeApiServerStandIn.start();
  installHealthy(standIn);
  kubeconfig = standIn.writeKubeconfig(path.join(work, `kubeconfig-${Date.now()}`), { token: standIn.adminToken });
});

afterEach(async () => {
  await standIn.close();
});

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

describe('doctor', () => {
  test('passes every check on a healthy installation, and only reads', async () => {
    // WHEN doctor checks the healthy installation
    const { run, checks } = await doctorJson();

    // THEN every check passes and it exits 0
    expect(checks.filter((c) => c.status !== 'PASS')).toEqual([]);
    expect(run.code).toBe(0);
    expect(checks.map((c) => c.check)).toEqual([
      'cluster',
      'aggregation layer',
      'objects',
      'drift',
      'APIService v1beta1.wardle.example.com',
      'APIService v1alpha1.wardle.example.com',
      'endpoints',
      'pods',
      'caBundle of v1beta1.wardle.example.com',
      'caBundle of v1alpha1.wardle.example.com',
      'serving certificate',
      'pods serve the Secret',
      'RBAC auth ConfigMap',
      'RBAC delegation',
      'RBAC server reads',
      'GET /apis/wardle.example.com/v1beta1',
      'GET /apis/wardle.example.com/v1alpha1',
      'etcd',
    ]);
    expect(only(checks, 'objects')[0].message).toMatch(new RegExp(`all ${manifests.length} objects`));
    expect(only(checks, 'serving certificate')[0].message).toContain(`Secret ${NS}/${NAME}-tls: CN=${HOST} for ${HOST}, chains to the caBundle`);
    expect(only(checks, 'RBAC auth ConfigMap')[0].message).toBe(`system:serviceaccount:${NS}:${NAME} may get, list, watch configmaps/extension-apiserver-authentication in kube-system`);
    expect(only(checks, 'GET /apis/wardle.example.com/v1beta1')[0].message).toMatch(/answers in \d+ ms, lists flunders/);
    // AND it never changed the cluster: GETs, and POSTs of SubjectAccessReviews only
    const writes = standIn.requests.filter((r) => r.method !== 'GET');
    expect(writes.length).toBeGreaterThan(0);
    expect(new Set(writes.map((r) => `${r.method} ${r.path}`))).toEqual(new Set(['POST /apis/authorization.k8s.io/v1/subjectaccessreviews']));
  });

  test('prints a table without colour when stdout is not a terminal', async () => {
    // WHEN doctor runs with the default output into a pipe
    const run = await doctor(['--dist', dist, '--kubeconfig', kubeconfig]);

    // THEN one line per check, no escape codes, and the counts
    expect(run.code).toBe(0);
    expect(run.stdout).not.toContain('\u001b[');
    expect(run.stdout).toMatch(/^PASS {2}cluster +context "stand-in" \(https:\/\/127\.0\.0\.1:\d+\): Kubernetes v1\.31\.0/m);
    expect(run.stdout).toMatch(/^0 failed, 0 warned, 18 passed$/m);
  });

  test('colours the statuses on a terminal', async () => {
    // GIVEN a pseudo-terminal for stdout (util-linux script)
    const command = [process.execPath, CLI, 'doctor', '--dist', dist, '--kubeconfig', kubeconfig].map((arg) => `'${arg}'`).join(' ');
    const run = await new Promise<string>((resolve) => {
      execFile('script', ['-qec', command, '/dev/null'], { cwd: work, env: { PATH: process.env.PATH, HOME: work, TERM: 'xterm' }, encoding: 'utf8', timeout: 60_000 }, (_error, stdout) => resolve(stdout));
    });

    // THEN PASS is green
    expect(run).toContain('\u001b[32mPASS\u001b[0m  cluster');
  });

  test('finds the server by --namespace and --name without manifests, and reads --config as synth does', async () => {
    // WHEN doctor runs where there is no dist/, given the server's namespace and name
    const elsewhere = fs.mkdtempSync(path.join(work, 'elsewhere-'));
    const live = await new Promise<Run>((resolve) => {
      execFile(process.execPath, [CLI, 'doctor', '--namespace', NS, '--name', NAME, '--kubeconfig', kubeconfig, '-o', 'json'], { cwd: elsewhere, env: { PATH: process.env.PATH, HOME: work }, encoding: 'utf8' }, (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
      );
    });

    // THEN it finds both APIServices in the cluster, skips the comparison with manifests, and passes the rest
    const checks: Check[] = JSON.parse(live.stdout).checks;
    expect(live.code).toBe(0);
    expect(only(checks, 'objects')[0]).toMatchObject({ status: 'SKIP' });
    expect(checks.filter((c) => c.status !== 'PASS' && c.check !== 'objects')).toEqual([]);
    expect(checks.map((c) => c.check)).toEqual(expect.arrayContaining(['APIService v1beta1.wardle.example.com', 'APIService v1alpha1.wardle.example.com', 'etcd']));

    // WHEN a synth --config file names the output directory and the server
    const config = path.join(elsewhere, 'apiext.yaml');
    fs.writeFileSync(config, `namespace: ${NS}\nname: ${NAME}\noutput: ${dist}\ncert-mode: self-signed\n`);
    const fromConfig = await doctor(['--config', config, '--kubeconfig', kubeconfig, '-o', 'json']);

    // THEN it compares the cluster with that output
    expect(fromConfig.code).toBe(0);
    expect(only(JSON.parse(fromConfig.stdout).checks, 'objects')[0].message).toMatch(new RegExp(`all ${manifests.length} objects`));
  });

  test('the package command is in the tarball: bin names the compiled CLI, with its shebang, under "files"', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(manifest.bin).toEqual({ 'cdk8s-api-extension': 'build/lib/app/cli.js' });
    expect(manifest.files).toContain('build/lib');
    expect(fs.readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    // client-node is loaded at run time by the CLI: a runtime dependency, not a dev one
    expect(Object.keys(manifest.dependencies)).toContain('@kubernetes/client-node');
  });

  test('works with a kubeconfig whose user is an exec credential plugin', async () => {
    // GIVEN a plugin (a shell script) that prints an ExecCredential with a token only it knows
    const token = `exec-${Date.now()}`;
    standIn.tokens.clear();
    standIn.tokens.add(token);
    const plugin = path.join(work, 'credential-plugin.sh');
    fs.writeFileSync(plugin, `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"${token}"}}'\n`, { mode: 0o700 });
    const execConfig = standIn.writeKubeconfig(path.join(work, 'kubeconfig-exec'), { exec: { command: plugin } }, 'exec-context');

    // WHEN doctor uses it (through KUBECONFIG, merged with a file that has another context, and --context)
    const other = standIn.writeKubeconfig(path.join(work, 'kubeconfig-other'), { token: 'refused' }, 'other-context');
    const run = await doctor(['--dist', dist, '-o', 'json', '--context', 'exec-context'], { KUBECONFIG: `${other}:${execConfig}` });

    // THEN the plugin's token authenticates every request and all checks pass
    expect(run.stderr).toBe('');
    const checks: Check[] = JSON.parse(run.stdout).checks;
    expect(checks.filter((c) => c.status !== 'PASS')).toEqual([]);
    expect(run.code).toBe(0);
  });

  test('fails at the first line when the cluster refuses the credentials', async () => {
    // GIVEN a kubeconfig with a token the cluster does not know
    const refused = standIn.writeKubeconfig(path.join(work, 'kubeconfig-refused'), { token: 'not-a-known-token' });

    // WHEN doctor runs
    const run = await doctor(['--dist', dist, '--kubeconfig', refused, '-o', 'json']);

    // THEN it says the credentials were refused and stops
    const checks: Check[] = JSON.parse(run.stdout).checks;
    expect(run.code).toBe(1);
    expect(checks).toHaveLength(1);
    expect(checks[0]).toMatchObject({ check: 'cluster', status: 'FAIL' });
    expect(checks[0].message).toContain('401 Unauthorized');
  });

  test('fails on bad options naming the flag', async () => {
    const run = await doctor(['--dist', path.join(work, 'no-such-dir'), '--kubeconfig', kubeconfig]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--dist ".*no-such-dir" does not exist/);
    const context = await doctor(['--dist', dist, '--kubeconfig', kubeconfig, '--context', 'nope']);
    expect(context.code).toBe(2);
    expect(context.stderr).toContain('--context "nope" is not in the kubeconfig (its contexts: stand-in)');
    const none = await doctor(['--dist', dist]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no kubeconfig found ($KUBECONFIG is unset, ~/.kube/config does not exist');
  });

  test('fails when the auth ConfigMap lacks requestheader-client-ca-file, naming the kube-apiserver flags', async () => {
    // GIVEN kube-apiserver started without --requestheader-client-ca-file
    delete standIn.get('ConfigMap', 'extension-apiserver-authentication', 'kube-system').data['requestheader-client-ca-file'];

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN the aggregation layer line fails with the cause and the flags to add
    expect(run.code).toBe(1);
    const [line] = only(checks, 'aggregation layer');
    expect(line.status).toBe('FAIL');
    expect(line.message).toContain('carries no requestheader-client-ca-file');
    expect(line.fix).toContain('--requestheader-client-ca-file=');
    expect(line.fix).toContain('--proxy-client-cert-file=');
    expect(line.fix).toContain('npx cdk8s-api-extension front-proxy');
  });

  test('fails on an APIService in FailedDiscoveryCheck, explaining a timeout as the network', async () => {
    // GIVEN the aggregator times out reaching the pods
    const apiService = standIn.get('APIService', 'v1beta1.wardle.example.com');
    apiService.status.conditions[0] = {
      type: 'Available',
      status: 'False',
      lastTransitionTime: now(),
      reason: 'FailedDiscoveryCheck',
      message: `failing or missing response from https://10.244.0.7:10250/apis/wardle.example.com/v1beta1: Get "https://10.244.0.7:10250/apis/wardle.example.com/v1beta1": context deadline exceeded`,
    };
    standIn.discovery.set('/apis/wardle.example.com/v1beta1', {
      status: 503,
      body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the server is currently unable to handle the request', reason: 'ServiceUnavailable', code: 503 },
    });

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN the APIService line names the reason, what it means and the fix; discovery fails with the aggregator's 503
    expect(run.code).toBe(1);
    const [line] = only(checks, 'APIService v1beta1.wardle.example.com');
    expect(line.status).toBe('FAIL');
    expect(line.message).toContain('not Available: FailedDiscoveryCheck: kube-apiserver gets no answer from the pods');
    expect(line.fix).toContain('--enable-aggregator-routing=true');
    expect(line.details?.[0]).toContain('context deadline exceeded');
    const [discovery] = only(checks, 'GET /apis/wardle.example.com/v1beta1');
    expect(discovery.status).toBe('FAIL');
    expect(discovery.message).toMatch(/answers 503 in \d+ ms: the server is currently unable to handle the request/);
    expect(only(checks, 'APIService v1alpha1.wardle.example.com')[0].status).toBe('PASS');
  });

  test('fails when the Service has no ready endpoints, showing the failing pod and its last log lines', async () => {
    // GIVEN both pods fail their readiness probe, one after restarting; the slice lists them not ready
    for (const pod of [`${NAME}-6d8f9c7b5-2xk4q`, `${NAME}-6d8f9c7b5-h7wzp`]) {
      const live = standIn.get('Pod', pod, NS);
      live.status.conditions = live.status.conditions.map((c: { type: string }) => (c.type === 'Ready' || c.type === 'ContainersReady' ? { ...c, status: 'False', reason: 'ContainersNotReady' } : c));
      live.status.containerStatuses[0] = { ...live.status.containerStatuses[0], ready: false, restartCount: 4, lastState: { terminated: { reason: 'Error', exitCode: 1, finishedAt: now() } } };
      standIn.logs.set(`${NS}/${pod}`, { current: 'starting\n', previous: 'I1203 starting\nE1203 etcd: context deadline exceeded dialing wardle-apiserver-etcd-client.wardle.svc:2379\nF1203 storage is not ready: giving up\n' });
    }
    const slice = standIn.get('EndpointSlice', `${NAME}-x8k2f`, NS);
    slice.endpoints = slice.endpoints.map((e: object) => ({ ...e, conditions: { ready: false, serving: false, terminating: false } }));
    standIn.get('APIService', 'v1beta1.wardle.example.com').status.conditions[0] = {
      type: 'Available',
      status: 'False',
      lastTransitionTime: now(),
      reason: 'MissingEndpoints',
      message: 'endpoints for service/wardle-apiserver in "wardle" have no addresses with port name "https"',
    };

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN the Service line says no endpoint is ready and why; each pod line shows the restarts and the log
    expect(run.code).toBe(1);
    const [service] = only(checks, 'endpoints');
    expect(service.status).toBe('FAIL');
    expect(service.message).toContain('has no ready endpoints: none of its 2 endpoints is ready');
    const pods = only(checks, 'pods', 'FAIL');
    expect(pods).toHaveLength(2);
    expect(pods[0].message).toContain('is not ready (Running; apiserver running, not ready: its readiness probe fails; 4 restarts)');
    expect(pods[0].fix).toContain('--previous');
    expect(pods[0].details).toContain('log: F1203 storage is not ready: giving up');
    expect(only(checks, 'APIService v1beta1.wardle.example.com')[0].message).toContain('MissingEndpoints: the Service wardle/wardle-apiserver has no ready endpoint');
  });

  test('fails when the image cannot be pulled, saying to push it and synth with --image', async () => {
    // GIVEN the default image, which no registry holds: the pods wait in ImagePullBackOff
    for (const pod of [`${NAME}-6d8f9c7b5-2xk4q`, `${NAME}-6d8f9c7b5-h7wzp`]) {
      const live = standIn.get('Pod', pod, NS);
      live.status.phase = 'Pending';
      live.status.conditions = live.status.conditions.map((c: { type: string }) => (c.type === 'Ready' ? { ...c, status: 'False', reason: 'ContainersNotReady' } : c));
      live.status.containerStatuses[0] = {
        ...live.status.containerStatuses[0],
        ready: false,
        started: false,
        state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "cdk8s-api-extension/server:0.1.0"' } },
      };
      standIn.logs.delete(`${NS}/${pod}`);
    }

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN each pod line names the state and the fix
    expect(run.code).toBe(1);
    const pods = only(checks, 'pods', 'FAIL');
    expect(pods).toHaveLength(2);
    expect(pods[0].message).toContain('is not ready (Pending; apiserver waiting: ImagePullBackOff (Back-off pulling image "cdk8s-api-extension/server:0.1.0"))');
    expect(pods[0].fix).toContain('build and push it, then synth with --image');
    expect(pods[0].details).toEqual([`(no log: container "apiserver" in pod "${NAME}-6d8f9c7b5-2xk4q" is waiting to start: trying and failing to pull image)`]);
  });

  test('fails when the caBundle comes from another CA', async () => {
    // GIVEN an APIService whose caBundle is another CA's certificate
    const other = makeCa('some-other-ca');
    standIn.get('APIService', 'v1beta1.wardle.example.com').spec.caBundle = Buffer.from(other.certPem).toString('base64');

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN the serving certificate line says it does not chain, in the aggregator's words; drift names the field
    expect(run.code).toBe(1);
    const [line] = only(checks, 'serving certificate');
    expect(line.status).toBe('FAIL');
    expect(line.message).toContain('does not chain to the caBundle of v1beta1.wardle.example.com');
    expect(line.message).toContain('CN=some-other-ca');
    expect(line.message).toContain('x509: certificate signed by unknown authority');
    expect(line.fix).toContain(`kubectl apply -f ${dist}: it holds the caBundle and the Secret of one synth`);
    const drift = only(checks, 'drift', 'WARN');
    expect(drift.map((d) => d.message)).toEqual([expect.stringContaining('APIService v1beta1.wardle.example.com differs from the manifests in 1 field: spec.caBundle')]);
  });

  test('fails when the serving certificate lacks the Service DNS name', async () => {
    // GIVEN the Secret holds a certificate of the right CA but without <svc>.<ns>.svc
    replaceServingCertificate(makeLeaf(servingCa, { cn: HOST, dnsNames: ['wardle-apiserver.example.com'], extendedKeyUsages: ['serverAuth'] }).certPem);

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN the line names the missing SAN (Go ignores the CN) and how to reissue it; the pods are stale too
    expect(run.code).toBe(1);
    const [line] = only(checks, 'serving certificate');
    expect(line.status).toBe('FAIL');
    expect(line.message).toContain(`it does not carry the DNS name ${HOST} (its SANs: DNS:wardle-apiserver.example.com; Go ignores the CN)`);
    expect(line.fix).toContain(`issue it for ${HOST}`);
    expect(only(checks, 'pods serve the Secret')[0].status).toBe('WARN');
  });

  test('fails on an expired serving certificate, and warns on one that expires within 30 days', async () => {
    // GIVEN an expired certificate in the Secret
    const day = 86_400_000;
    replaceServingCertificate(
      makeLeaf(servingCa, { cn: HOST, dnsNames: [HOST], extendedKeyUsages: ['serverAuth'], notBefore: new Date(Date.now() - 400 * day), notAfter: new Date(Date.now() - 2 * day) }).certPem,
    );

    // WHEN doctor runs
    const expired = await doctorJson();

    // THEN it fails, saying when it expired
    expect(expired.run.code).toBe(1);
    const [line] = only(expired.checks, 'serving certificate');
    expect(line.status).toBe('FAIL');
    expect(line.message).toMatch(/it expired on \d{4}-\d\d-\d\dT/);
    expect(line.fix).toContain('synth again');

    // GIVEN one that expires in 10 days
    replaceServingCertificate(makeLeaf(servingCa, { cn: HOST, dnsNames: [HOST], extendedKeyUsages: ['serverAuth'], notAfter: new Date(Date.now() + 10.5 * day) }).certPem);
    const soon = await doctorJson();
    const [warning] = only(soon.checks, 'serving certificate');
    expect(warning.status).toBe('WARN');
    expect(warning.message).toContain('expires in 10 days');
  });

  test('fails on a serving certificate without serverAuth, and on etcd below quorum', async () => {
    // GIVEN a client-only certificate in the Secret, and one etcd member of three ready
    replaceServingCertificate(makeLeaf(servingCa, { cn: HOST, dnsNames: [HOST], extendedKeyUsages: ['clientAuth'] }).certPem);
    standIn.get('StatefulSet', `${NAME}-etcd`, NS).status.readyReplicas = 1;

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN both are named
    expect(run.code).toBe(1);
    expect(only(checks, 'serving certificate')[0].message).toContain('its extended key usage (1.3.6.1.5.5.7.3.2) lacks serverAuth');
    const [etcd] = only(checks, 'etcd');
    expect(etcd).toMatchObject({ status: 'FAIL', message: `StatefulSet ${NS}/${NAME}-etcd: 1 of 3 members ready: below quorum (2): the server cannot read or write` });
  });

  test('fails when the RoleBinding to the auth reader is missing: SubjectAccessReview denies the ServiceAccount', async () => {
    // GIVEN the RoleBinding in kube-system was never applied (or deleted)
    standIn.remove('RoleBinding', `${NAME}:extension-apiserver-authentication-reader`, 'kube-system');

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN the objects line names it missing, and the RBAC line says what the ServiceAccount may not do and the command that grants it
    expect(run.code).toBe(1);
    expect(only(checks, 'objects')[0].message).toContain(`RoleBinding kube-system/${NAME}:extension-apiserver-authentication-reader`);
    const [rbac] = only(checks, 'RBAC auth ConfigMap');
    expect(rbac.status).toBe('FAIL');
    expect(rbac.message).toContain(`system:serviceaccount:${NS}:${NAME} may not get configmaps/extension-apiserver-authentication in kube-system`);
    expect(rbac.fix).toContain(`kubectl -n kube-system create rolebinding ${NAME}:extension-apiserver-authentication-reader --role=extension-apiserver-authentication-reader --serviceaccount=${NS}:${NAME}`);
    expect(only(checks, 'RBAC delegation')[0].status).toBe('PASS');
  });

  test('fails when the ClusterRoleBinding of what the server reads is missing, asking for each rule of its ClusterRole', async () => {
    // GIVEN the ClusterRoleBinding wardle-apiserver was deleted
    standIn.remove('ClusterRoleBinding', NAME);

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN the line lists every verb of the ClusterRole the ServiceAccount may no longer use, and what to apply
    expect(run.code).toBe(1);
    const [reads] = only(checks, 'RBAC server reads');
    expect(reads.status).toBe('FAIL');
    expect(reads.message).toContain(`system:serviceaccount:${NS}:${NAME} may not get namespaces, list namespaces, watch namespaces`);
    expect(reads.fix).toBe(`kubectl apply -f ${dist} (ClusterRole ${NAME} and the ClusterRoleBinding to ${NS}/${NAME})`);
  });

  test('warns on a drifted Deployment, naming the fields and ignoring what the server sets', async () => {
    // GIVEN someone scaled the Deployment and changed its image by hand
    const deployment = standIn.get('Deployment', NAME, NS);
    deployment.spec.replicas = 5;
    deployment.spec.template.spec.containers[0].image = 'example.com/hand-edited:1';
    // AND replaced the serving key in the Secret
    const secret = standIn.get('Secret', `${NAME}-tls`, NS);
    const dataBefore = { ...secret.data };
    secret.data['tls.key'] = Buffer.from('not the key that was synthesized').toString('base64');

    // WHEN doctor runs
    const { run, checks } = await doctorJson();

    // THEN a drift line names the Deployment and exactly those two fields, with the values
    const drift = only(checks, 'drift', 'WARN');
    expect(drift).toHaveLength(2);
    // AND the Secret's line says which key differs without showing a value of it, before or after
    const secretLine = drift.find((d) => d.message.startsWith('Secret'))!;
    expect(secretLine.message).toBe(`Secret ${NS}/${NAME}-tls differs from the manifests in 1 field: data.tls.key`);
    expect(secretLine.details).toEqual(['data.tls.key: (secret value) in dist, (secret value) in the cluster']);
    expect(run.stdout).not.toContain(dataBefore['tls.key']);
    expect(run.stdout).not.toContain(secret.data['tls.key']);
    drift.splice(drift.indexOf(secretLine), 1);
    expect(drift[0].message).toBe(`Deployment ${NS}/${NAME} differs from the manifests in 2 fields: spec.replicas, spec.template.spec.containers[0].image`);
    expect(drift[0].details).toEqual(['spec.replicas: 2 in dist, 5 in the cluster', 'spec.template.spec.containers[0].image: "cdk8s-api-extension/server:0.1.0" in dist, "example.com/hand-edited:1" in the cluster']);
    expect(drift[0].fix).toContain(`kubectl apply -f ${dist}`);
    // AND drift alone is not a failure
    expect(run.code).toBe(0);
  });

  test('the pods annotation doctor reads is the constructs\' and holds the sha256 of the Secret tls.crt the synth wrote', () => {
    // GIVEN the synth output, WHEN the checksum of its Secret is computed as doctor does, THEN it is the Deployment's annotation
    const secret = manifests.find((o) => o.kind === 'Secret' && o.metadata.name === `${NAME}-tls`)!;
    const deployment = manifests.find((o) => o.kind === 'Deployment')!;
    const checksum = createHash('sha256').update(Buffer.from(secret.data['tls.crt'], 'base64').toString('utf8')).digest('hex');
    expect(deployment.spec.template.metadata.annotations[SERVING_CERT_CHECKSUM_ANNOTATION]).toBe(checksum);
    // AND doctor reads the annotation the constructs write
    expect(SERVING_CERT_CHECKSUM_ANNOTATION).toBe(CONSTRUCTS_ANNOTATION);
  });
});

describe('doctor, in-process parts', () => {
  const server = (ns: string, name: string): KubeObject[] => [
    { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { selector: { app: name } } },
    { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: ns }, spec: { template: { metadata: { labels: { app: name } }, spec: { serviceAccountName: `${name}-sa` } } } },
    { apiVersion: 'apiregistration.k8s.io/v1', kind: 'APIService', metadata: { name: `v1.${name}.io` }, spec: { group: `${name}.io`, version: 'v1', service: { namespace: ns, name } } },
  ];

  test('picks one server of an output that holds several, and its objects only', () => {
    // GIVEN an output with two servers
    const objects = [...server('a', 'alpha'), ...server('b', 'beta')];

    // WHEN --namespace b is given
    const installation = installationFromManifests(objects, 'dist/', 'b');

    // THEN it is beta, with beta's objects
    expect(installation).toMatchObject({ namespace: 'b', serviceName: 'beta', deploymentName: 'beta', serviceAccountName: 'beta-sa', apiServices: [{ name: 'v1.beta.io', group: 'beta.io', version: 'v1' }] });
    expect(installation.objects.map((o) => o.metadata.name)).toEqual(['beta', 'beta', 'v1.beta.io']);
  });

  test('fails on an output of several servers without a choice, or a choice it does not hold', () => {
    const objects = [...server('a', 'alpha'), ...server('b', 'beta')];
    expect(() => installationFromManifests(objects, 'dist/')).toThrow('dist/ holds 2 servers (a/alpha, b/beta): choose one with --namespace and --name');
    expect(() => installationFromManifests(objects, 'dist/', 'c')).toThrow('dist/ holds no server matching --namespace c (it holds: a/alpha, b/beta)');
  });

  test.each([
    ['FailedDiscoveryCheck', 'Get "https://10.96.0.5:443/apis/wardle.example.com/v1beta1": tls: failed to verify certificate: x509: certificate signed by unknown authority', 'does not chain to the APIService caBundle'],
    ['FailedDiscoveryCheck', 'x509: certificate is valid for wardle-apiserver.example.com, not wardle-apiserver.wardle.svc', 'does not carry the Service\'s DNS name'],
    ['FailedDiscoveryCheck', 'x509: certificate has expired or is not yet valid', 'out of its validity period'],
    ['FailedDiscoveryCheck', 'dial tcp 10.244.0.7:10250: connect: connection refused', 'nothing listens on the Service\'s target port'],
    ['FailedDiscoveryCheck', 'failing or missing response from https://10.96.0.5:443/apis/wardle.example.com/v1beta1, bad status from https://10.96.0.5:443/apis/wardle.example.com/v1beta1: 403', 'refuses the aggregator\'s requests'],
    ['ServiceNotFound', 'service/wardle-apiserver in "wardle" is not present', 'the Service wardle/wardle-apiserver does not exist'],
    ['ServicePortError', 'service/wardle-apiserver in "wardle" is not listening on port 443', 'not a port of wardle/wardle-apiserver'],
  ])('explains %s: %s', (reason, message, meaning) => {
    expect(explainUnavailable(reason, message, 'wardle/wardle-apiserver', 'wardle', 'kubectl apply -f dist').meaning).toContain(meaning);
  });

  test('drift: fields the server adds, zero values it drops and numbers as strings are not drift; changed list lengths are', () => {
    const manifest: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 's', labels: { a: '1' } }, spec: { externalIPs: [], ports: [{ port: 443, targetPort: 10250 }], publishNotReadyAddresses: false } };
    const live: KubeObject = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 's', labels: { a: '1', added: 'by someone' }, uid: 'x' } as KubeObject['metadata'],
      spec: { ports: [{ port: 443, targetPort: '10250', protocol: 'TCP' }], clusterIP: '10.0.0.1' },
      status: { loadBalancer: {} },
    };
    expect(driftOf(manifest, live)).toEqual([]);
    const twoPorts = { ...live, spec: { ports: [...live.spec.ports, { port: 80 }] } };
    expect(driftOf(manifest, twoPorts).map((d) => d.path)).toEqual(['spec.ports']);
  });
});
