import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';

/**
 * The CLI's production knobs (issue 9, items 4 and 5): --create-namespace, --label,
 * --priority-class-name, --node-selector, --toleration, --image-pull-secret, --server-rules.
 * Runs the compiled `build/main.js`, as `npm run synth` does.
 */

const MAIN = path.resolve(__dirname, '..', 'build', 'main.js');

/* eslint-disable @typescript-eslint/no-explicit-any */

function synth(cwd: string, args: string[], env: Record<string, string> = {}): SpawnSyncReturns<string> {
  const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('APIEXT_') && k !== 'CDK8S_OUTDIR'));
  // cert-manager mode: no keys are made, so each synth is quick and writes no PKI.
  return spawnSync(process.execPath, [MAIN, '--cert-mode', 'cert-manager', ...args], { cwd, env: { ...cleanEnv, CDK8S_CHECK_UPGRADE: 'false', ...env }, encoding: 'utf8' });
}

function objectsIn(dir: string): any[] {
  return fs
    .readdirSync(dir)
    .flatMap((file) => YAML.parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8')).map((doc) => doc.toJS()))
    .filter((object) => object);
}

let work: string;
beforeEach(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'apiext-placement-'));
});
afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

test('the flags reach every object and pod they are about', () => {
  // GIVEN every knob, some from the environment and some repeated
  fs.writeFileSync(path.join(work, 'rules.yaml'), '- apiGroups: [""]\n  resources: [configmaps]\n  verbs: [get, list, watch]\n');
  const run = synth(
    work,
    ['--create-namespace', 'false', '--label', 'app.kubernetes.io/part-of=platform', '--label', 'team=infra', '--priority-class-name', 'platform-critical', '--toleration', 'dedicated=platform:NoSchedule', '--server-rules', 'rules.yaml'],
    { APIEXT_NODE_SELECTOR: 'node-role.example.com/platform=true', APIEXT_IMAGE_PULL_SECRET: 'registry-a,registry-b', APIEXT_TOLERATION: 'maintenance:NoExecute' },
  );
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  const objects = objectsIn(path.join(work, 'dist'));

  // THEN no Namespace is emitted, and every object carries the labels
  expect(objects.filter((o) => o.kind === 'Namespace')).toEqual([]);
  for (const object of objects) expect(object.metadata.labels).toEqual(expect.objectContaining({ 'app.kubernetes.io/part-of': 'platform', team: 'infra' }));
  // AND the server's and etcd's pods are placed and pull as told (the command line's toleration and the environment's: a flag wins over its variable)
  const deployment = objects.find((o) => o.kind === 'Deployment').spec.template.spec;
  const statefulSet = objects.find((o) => o.kind === 'StatefulSet').spec.template.spec;
  for (const spec of [deployment, statefulSet]) {
    expect(spec.priorityClassName).toBe('platform-critical');
    expect(spec.nodeSelector).toEqual({ 'node-role.example.com/platform': 'true' });
    expect(spec.tolerations).toEqual([{ key: 'dedicated', operator: 'Equal', value: 'platform', effect: 'NoSchedule' }]);
    expect(spec.imagePullSecrets).toEqual([{ name: 'registry-a' }, { name: 'registry-b' }]);
  }
  // AND the server's ClusterRole holds the extra rule beside its own
  const serverRole = objects.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'wardle-apiserver');
  expect(serverRole.rules).toEqual(expect.arrayContaining([{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }]));
});

test('synth warns when the image is the unpublished default, and not when --image names one', () => {
  const byDefault = synth(work, []);
  expect(byDefault.status).toBe(0);
  expect(byDefault.stdout).toMatch(/warning: the server image is the default "cdk8s-api-extension\/server:0\.1\.0", which is not published: build and push it, then synth with --image \(README, "Build the image and point the synth at it"\)/);
  const named = synth(work, ['--image', 'registry.example.com/wardle-apiserver:0.1.0']);
  expect(named.status).toBe(0);
  expect(named.stdout).not.toContain('warning');
});

test('--server-rules generic-apiserver adds what a k8s.io/apiserver image reads', () => {
  const run = synth(work, ['--server-rules', 'generic-apiserver', '--toleration', 'gpu']);
  expect(run.status).toBe(0);
  const objects = objectsIn(path.join(work, 'dist'));
  const resources = objects.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'wardle-apiserver').rules.flatMap((r: any) => r.resources ?? []);
  expect(resources).toEqual(expect.arrayContaining(['namespaces', 'mutatingwebhookconfigurations', 'validatingwebhookconfigurations']));
  // A bare key tolerates the taint with any value and effect.
  expect(objects.find((o) => o.kind === 'Deployment').spec.template.spec.tolerations).toEqual([{ key: 'gpu', operator: 'Exists' }]);
});

test.each([
  ['a toleration with an unknown effect', ['--toleration', 'dedicated=platform:NoRun'], /--toleration "dedicated=platform:NoRun": the effect "NoRun" is not one of NoSchedule, PreferNoSchedule, NoExecute/],
  ['a label that is not key=value', ['--label', 'team'], /--label "team" is not key=value/],
  ['a label key given twice', ['--label', 'team=a', '--label', 'team=b'], /--label gives "team" twice/],
  ['a label value with a space', ['--label', 'team=platform infra'], /--label: value "platform infra" of "team" is not a label value/],
  ['a node selector key that is no label key', ['--node-selector', 'Bad Key=x'], /--node-selector: key "Bad Key" is not a label key/],
  ['a pull secret that is no Secret name', ['--image-pull-secret', 'Registry_A'], /--image-pull-secret "Registry_A" is not a valid DNS-1123 subdomain/],
  ['a priority class that is no name', ['--priority-class-name', 'Critical!'], /--priority-class-name "Critical!" is not a valid DNS-1123 subdomain/],
  ['--create-namespace that is no boolean', ['--create-namespace', 'maybe'], /--create-namespace "maybe" is not true or false/],
  ['server rules from a missing file', ['--server-rules', 'nope.yaml'], /--server-rules "nope\.yaml" is neither "generic-apiserver" nor a readable file/],
])('fails for %s, naming the flag', (_what, args, message) => {
  const run = synth(work, args);
  expect(run.status).toBe(2);
  expect(run.stderr).toMatch(message);
  expect(fs.existsSync(path.join(work, 'dist'))).toBe(false);
});

test.each([
  ['not a list', 'apiGroups: [""]\n', /must hold a list of PolicyRules/],
  ['a rule without verbs', '- apiGroups: [""]\n  resources: [configmaps]\n', /rule 1 has no verbs/],
  ['a rule with a misspelt field', '- apiGroup: [""]\n  resources: [configmaps]\n  verbs: [get]\n', /rule 1: "apiGroup" is not a PolicyRule field/],
  ['a rule with resources and no apiGroups', '- resources: [configmaps]\n  verbs: [get]\n', /rule 1 needs apiGroups and resources, or nonResourceURLs/],
])('fails for a --server-rules file with %s', (_what, text, message) => {
  fs.writeFileSync(path.join(work, 'rules.yaml'), text);
  const run = synth(work, ['--server-rules', 'rules.yaml']);
  expect(run.status).toBe(2);
  expect(run.stderr).toMatch(message);
});
