import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditAnnotations } from '../server/admission/audit-annotations';
import {
  AuditAttributes,
  AuditLog,
  AuditLevel,
  AuditPolicy,
  AuditPolicyChecker,
  AuditPolicyRule,
  AuditStage,
  auditEventLine,
  microTime,
  parseAuditPolicy,
  RotatingFile,
  sourceIPs,
} from '../server/audit';
import type { UserInfo } from '../server/auth/types';
import { configure } from '../server/config';
import { OptionsError, parseCommandLine } from '../server/options';
import { parseRequestInfo } from '../server/request-info';
import { Server } from '../server/server';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf, makeServerCert, type TestCa, type TestCertificate } from './support/pki';
import { memoryLogger, request } from './support/shell-fakes';

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
async function eventually<T>(check: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// ---- the policy checker, against the cases of upstream's checker_test.go -----------------------

const tim: UserInfo = { name: 'tim@k8s.io', groups: ['humans', 'developers'], extra: {} };

/** upstream's `attrs`; "Unauthorized" is the same request without a user. */
const ATTRS: Record<string, { user: UserInfo | undefined; attrs: AuditAttributes }> = {
  namespaced: { user: tim, attrs: { isResourceRequest: true, verb: 'get', namespace: 'default', apiGroup: '', resource: 'pods', subresource: '', name: 'busybox', path: '/api/v1/namespaces/default/pods/busybox' } },
  cluster: { user: tim, attrs: { isResourceRequest: true, verb: 'get', namespace: '', apiGroup: 'rbac.authorization.k8s.io', resource: 'clusterroles', subresource: '', name: 'edit', path: '/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/edit' } },
  nonResource: { user: tim, attrs: { isResourceRequest: false, verb: 'get', namespace: '', apiGroup: '', resource: '', subresource: '', name: '', path: '/logs/kubelet.log' } },
  subresource: { user: tim, attrs: { isResourceRequest: true, verb: 'get', namespace: 'default', apiGroup: '', resource: 'pods', subresource: 'log', name: 'busybox', path: '/api/v1/namespaces/default/pods/busybox' } },
  Unauthorized: { user: undefined, attrs: { isResourceRequest: true, verb: 'get', namespace: 'default', apiGroup: '', resource: 'pods', subresource: '', name: 'busybox', path: '/api/v1/namespaces/default/pods/busybox' } },
};

function rule(level: AuditLevel, fields: Partial<Omit<AuditPolicyRule, 'resources'>> & { resources?: { group?: string; resources?: string[]; resourceNames?: string[] }[] } = {}): AuditPolicyRule {
  return {
    level,
    users: fields.users ?? [],
    userGroups: fields.userGroups ?? [],
    verbs: fields.verbs ?? [],
    resources: (fields.resources ?? []).map((gr) => ({ group: gr.group ?? '', resources: gr.resources ?? [], resourceNames: gr.resourceNames ?? [] })),
    namespaces: fields.namespaces ?? [],
    nonResourceURLs: fields.nonResourceURLs ?? [],
    omitStages: fields.omitStages ?? [],
  };
}

/** upstream's `rules`. */
const RULES: Record<string, AuditPolicyRule> = {
  default: rule('Metadata'),
  create: rule('Request', { verbs: ['create'] }),
  tims: rule('Metadata', { users: ['tim@k8s.io'] }),
  humans: rule('Metadata', { userGroups: ['humans'] }),
  serviceAccounts: rule('Request', { userGroups: ['system:serviceaccounts'] }),
  getPods: rule('RequestResponse', { verbs: ['get'], resources: [{ resources: ['pods'] }] }),
  getPodLogs: rule('Request', { verbs: ['get'], resources: [{ resources: ['pods/log'] }] }),
  getPodWildcardMatching: rule('Request', { verbs: ['get'], resources: [{ resources: ['*'] }] }),
  getPodResourceWildcardMatching: rule('Request', { verbs: ['get'], resources: [{ resources: ['*/log'] }] }),
  getPodSubResourceWildcardMatching: rule('Request', { verbs: ['get'], resources: [{ resources: ['pods/*'] }] }),
  getClusterRoles: rule('RequestResponse', { verbs: ['get'], resources: [{ group: 'rbac.authorization.k8s.io', resources: ['clusterroles'] }], namespaces: [''] }),
  getLogs: rule('RequestResponse', { verbs: ['get'], nonResourceURLs: ['/logs*'] }),
  getMetrics: rule('Request', { verbs: ['get'], nonResourceURLs: ['/metrics'] }),
  clusterRoleEdit: rule('Request', { resources: [{ group: 'rbac.authorization.k8s.io', resources: ['clusterroles'], resourceNames: ['edit'] }] }),
  'omit RequestReceived': rule('Request', { omitStages: ['RequestReceived'] }),
  'only audit panic': rule('Request', { omitStages: ['RequestReceived', 'ResponseStarted', 'ResponseComplete'] }),
};

/** upstream's testAuditLevel: [request, expected level, rule names in order]. */
const LEVEL_CASES: [string, AuditLevel, string[]][] = [
  ['namespaced', 'Metadata', ['default']],
  ['namespaced', 'None', ['create']],
  ['namespaced', 'Metadata', ['tims']],
  ['namespaced', 'Metadata', ['humans']],
  ['namespaced', 'None', ['serviceAccounts']],
  ['namespaced', 'RequestResponse', ['getPods']],
  ['namespaced', 'None', ['getClusterRoles']],
  ['namespaced', 'None', ['getLogs']],
  ['namespaced', 'None', ['getMetrics']],
  ['namespaced', 'Metadata', ['getMetrics', 'serviceAccounts', 'default']],
  ['namespaced', 'RequestResponse', ['getMetrics', 'getPods', 'default']],
  ['namespaced', 'RequestResponse', ['getPodLogs', 'getPods']],

  ['cluster', 'Metadata', ['default']],
  ['cluster', 'None', ['create']],
  ['cluster', 'Metadata', ['tims']],
  ['cluster', 'Metadata', ['humans']],
  ['cluster', 'None', ['serviceAccounts']],
  ['cluster', 'None', ['getPods']],
  ['cluster', 'RequestResponse', ['getClusterRoles']],
  ['cluster', 'Request', ['clusterRoleEdit', 'getClusterRoles']],
  ['cluster', 'None', ['getLogs']],
  ['cluster', 'None', ['getMetrics']],
  ['cluster', 'Metadata', ['getMetrics', 'serviceAccounts', 'default']],
  ['cluster', 'RequestResponse', ['getMetrics', 'getClusterRoles', 'default']],
  ['cluster', 'None', ['getPodLogs', 'getPods']],

  ['nonResource', 'Metadata', ['default']],
  ['nonResource', 'None', ['create']],
  ['nonResource', 'Metadata', ['tims']],
  ['nonResource', 'Metadata', ['humans']],
  ['nonResource', 'None', ['serviceAccounts']],
  ['nonResource', 'None', ['getPods']],
  ['nonResource', 'None', ['getClusterRoles']],
  ['nonResource', 'RequestResponse', ['getLogs']],
  ['nonResource', 'None', ['getMetrics']],
  ['nonResource', 'Metadata', ['getMetrics', 'serviceAccounts', 'default']],
  ['nonResource', 'RequestResponse', ['getLogs', 'getClusterRoles', 'default']],
  ['nonResource', 'None', ['getPodLogs', 'getPods']],

  ['subresource', 'Request', ['getPodLogs', 'getPods']],
  ['subresource', 'Request', ['getPodWildcardMatching']],
  ['subresource', 'Request', ['getPodResourceWildcardMatching']],
  ['subresource', 'Request', ['getPodSubResourceWildcardMatching']],

  ['Unauthorized', 'None', ['tims']],
  ['Unauthorized', 'Metadata', ['tims', 'default']],
  ['Unauthorized', 'None', ['humans']],
  ['Unauthorized', 'Metadata', ['humans', 'default']],
];

function check(request: string, policyStages: AuditStage[], ruleNames: string[]): { level: AuditLevel; omitStages: AuditStage[] } {
  const policy: AuditPolicy = { rules: ruleNames.map((name) => RULES[name]), omitStages: policyStages };
  const { user, attrs } = ATTRS[request];
  const decision = new AuditPolicyChecker(policy).levelAndStages(user, attrs);
  return { level: decision.level, omitStages: [...decision.omitStages].sort() };
}

describe('policy checker (the cases of kube-apiserver\'s checker_test.go)', () => {
  for (const [name, policyStages] of [
    ['TestChecker', []],
    ['TestCheckerPolicyOmitStages', ['RequestReceived', 'ResponseStarted']],
  ] as [string, AuditStage[]][]) {
    test.each(LEVEL_CASES)(`${name}: %s with [%#] rules gives %s`, (request, level, ruleNames) => {
      // GIVEN the rules in order (and the policy-wide stages) WHEN the request is checked
      const decision = check(request, policyStages, ruleNames);
      // THEN the first matching rule's level, and the policy's stages
      expect(decision).toEqual({ level, omitStages: [...policyStages].sort() });
    });
  }

  test('TestChecker: omitStages of the matching rule', () => {
    for (const request of ['namespaced', 'cluster', 'nonResource']) {
      expect(check(request, [], ['omit RequestReceived', 'getPods', 'default'])).toEqual({ level: 'Request', omitStages: ['RequestReceived'] });
      expect(check(request, [], ['only audit panic', 'getPods', 'default'])).toEqual({ level: 'Request', omitStages: ['RequestReceived', 'ResponseComplete', 'ResponseStarted'] });
    }
  });

  test('TestCheckerPolicyOmitStages: the union of the policy\'s and the rule\'s stages', () => {
    const policyStages: AuditStage[] = ['RequestReceived', 'ResponseStarted'];
    for (const request of ['namespaced', 'cluster']) {
      expect(check(request, policyStages, ['omit RequestReceived', 'getPods', 'default'])).toEqual({ level: 'Request', omitStages: ['RequestReceived', 'ResponseStarted'] });
      expect(check(request, policyStages, ['only audit panic', 'getPods', 'default'])).toEqual({ level: 'Request', omitStages: ['RequestReceived', 'ResponseComplete', 'ResponseStarted'] });
    }
    expect(check('nonResource', policyStages, ['default', 'omit RequestReceived', 'getPods'])).toEqual({ level: 'Metadata', omitStages: ['RequestReceived', 'ResponseStarted'] });
    expect(check('nonResource', policyStages, ['only audit panic', 'getPods', 'default'])).toEqual({ level: 'Request', omitStages: ['RequestReceived', 'ResponseComplete', 'ResponseStarted'] });
  });

  test('no rule matching means None, with the policy\'s stages', () => {
    expect(check('namespaced', ['Panic'], ['getLogs'])).toEqual({ level: 'None', omitStages: ['Panic'] });
  });

  test('resourceNames narrow a group\'s resources; a non-resource rule never matches a resource request and the reverse', () => {
    // GIVEN requests parsed by the server itself
    const get = parseRequestInfo('GET', '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders/f1');
    const status = parseRequestInfo('PUT', '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders/f1/status');
    const healthz = parseRequestInfo('GET', '/healthz/ping');
    const levelOf = (rules: AuditPolicyRule[], info: AuditAttributes) => new AuditPolicyChecker({ rules, omitStages: [] }).levelAndStages(tim, info).level;
    // THEN
    const named = rule('Metadata', { resources: [{ group: 'wardle.example.com', resources: ['flunders'], resourceNames: ['f1'] }] });
    expect(levelOf([named], get)).toBe('Metadata');
    expect(levelOf([named], parseRequestInfo('GET', '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders/f2'))).toBe('None');
    expect(levelOf([named], status)).toBe('None');
    expect(levelOf([rule('Metadata', { resources: [{ group: 'wardle.example.com', resources: ['flunders/status'] }] })], status)).toBe('Metadata');
    expect(levelOf([rule('Metadata', { resources: [{ group: 'wardle.example.com' }] })], status)).toBe('Metadata');
    expect(levelOf([rule('Metadata', { resources: [{ group: '', resources: ['*'] }] })], get)).toBe('None');
    expect(levelOf([rule('Metadata', { namespaces: ['ns1'] })], get)).toBe('Metadata');
    expect(levelOf([rule('Metadata', { namespaces: ['ns1'] })], healthz)).toBe('None');
    expect(levelOf([rule('Metadata', { nonResourceURLs: ['/healthz*'] })], healthz)).toBe('Metadata');
    expect(levelOf([rule('Metadata', { nonResourceURLs: ['/healthz'] })], healthz)).toBe('None');
    expect(levelOf([rule('Metadata', { nonResourceURLs: ['*'] })], get)).toBe('None');
  });
});

// ---- reading a policy ----------------------------------------------------------------------------

const POLICY_HEAD = 'apiVersion: audit.k8s.io/v1\nkind: Policy\n';

describe('parseAuditPolicy', () => {
  test('reads every field of a Policy and its rules, with defaults for what is left out', () => {
    // GIVEN
    const text = `${POLICY_HEAD}omitStages: [RequestReceived]
rules:
  - level: None
    users: [system:kube-proxy]
    userGroups: [system:nodes]
    verbs: [watch]
    resources:
      - group: ""
        resources: [endpoints, services, services/status]
      - group: wardle.example.com
        resources: [flunders]
        resourceNames: [f1]
    namespaces: [kube-system, ""]
    omitStages: [ResponseStarted]
  - level: Metadata
    nonResourceURLs: [/healthz*, /version]
  - level: Metadata
`;
    // WHEN
    const { policy, warnings } = parseAuditPolicy(text);
    // THEN
    expect(warnings).toEqual([]);
    expect(policy.omitStages).toEqual(['RequestReceived']);
    expect(policy.rules).toEqual([
      {
        level: 'None',
        users: ['system:kube-proxy'],
        userGroups: ['system:nodes'],
        verbs: ['watch'],
        resources: [
          { group: '', resources: ['endpoints', 'services', 'services/status'], resourceNames: [] },
          { group: 'wardle.example.com', resources: ['flunders'], resourceNames: ['f1'] },
        ],
        namespaces: ['kube-system', ''],
        nonResourceURLs: [],
        omitStages: ['ResponseStarted'],
      },
      rule('Metadata', { nonResourceURLs: ['/healthz*', '/version'] }),
      rule('Metadata'),
    ]);
  });

  test('warns that Request and RequestResponse are written at Metadata, and about fields it ignores', () => {
    // WHEN
    const { policy, warnings } = parseAuditPolicy(`${POLICY_HEAD}omitManagedFields: true\nrules:\n  - level: RequestResponse\n    verb: [get]\n  - level: Request\n`);
    // THEN the levels are kept as written (the writer caps them), with one warning each
    expect(policy.rules.map((r) => r.level)).toEqual(['RequestResponse', 'Request']);
    expect(warnings).toEqual([
      'rules[0].verb is not a field of PolicyRule: ignored, as kube-apiserver ignores it',
      'rules[0].level is RequestResponse: logged at Metadata, as this server never writes request or response bodies',
      'rules[1].level is Request: logged at Metadata, as this server never writes request or response bodies',
    ]);
  });

  test.each([
    ['fails for text that is not YAML', 'rules: [', /^not valid YAML: /],
    ['fails for two documents', `${POLICY_HEAD}rules: [{level: None}]\n---\n${POLICY_HEAD}`, /^not valid YAML: Source contains multiple documents/],
    ['fails for a list', '- level: None\n', /^expected a mapping with apiVersion: audit.k8s.io\/v1, kind: Policy and rules$/],
    ['fails for another apiVersion', 'apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]\n', /^apiVersion is "audit.k8s.io\/v1beta1": expected audit.k8s.io\/v1$/],
    ['fails for another kind', 'apiVersion: audit.k8s.io/v1\nkind: Event\nrules: [{level: None}]\n', /^kind is "Event": expected Policy$/],
    ['fails for no rules', POLICY_HEAD, /^rules: the policy has no rules/],
    ['fails for a rule without a level', `${POLICY_HEAD}rules: [{users: [a]}]\n`, /^rules\[0\]\.level: Required value: one of None, Metadata, Request, RequestResponse$/],
    ['fails for an unknown level', `${POLICY_HEAD}rules: [{level: None}, {level: Everything}]\n`, /^rules\[1\]\.level: Unsupported value: "Everything": supported values: "None", "Metadata", "Request", "RequestResponse"$/],
    ['fails for an unknown stage in a rule', `${POLICY_HEAD}rules: [{level: None, omitStages: [Received]}]\n`, /^rules\[0\]\.omitStages\[0\]: Invalid value: "Received": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic$/],
    ['fails for an unknown stage of the policy', `${POLICY_HEAD}omitStages: [Done]\nrules: [{level: None}]\n`, /^omitStages\[0\]: Invalid value: "Done"/],
    ['fails for users that are not a list of strings', `${POLICY_HEAD}rules: [{level: None, users: alice}]\n`, /^rules\[0\]\.users: expected a list of strings, got "alice"$/],
    ['fails for a non-resource URL without a leading slash', `${POLICY_HEAD}rules: [{level: None, nonResourceURLs: [healthz]}]\n`, /^rules\[0\]\.nonResourceURLs\[0\]: Invalid value: "healthz": non-resource URL rules must begin with a '\/' character$/],
    ['fails for a wildcard before the end of a non-resource URL', `${POLICY_HEAD}rules: [{level: None, nonResourceURLs: ["/a*/b"]}]\n`, /wildcards '\*' must be the final character of the rule$/],
    ['fails for resources and non-resource URLs in one rule', `${POLICY_HEAD}rules: [{level: None, nonResourceURLs: [/x], namespaces: [a]}]\n`, /^rules\[0\]\.nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs$/],
    ['fails for resourceNames without resources', `${POLICY_HEAD}rules: [{level: None, resources: [{group: a.b, resourceNames: [x]}]}]\n`, /^rules\[0\]\.resources\[0\]\.resourceNames: Invalid value: using resourceNames requires at least one resource$/],
    ['fails for a group with a version', `${POLICY_HEAD}rules: [{level: None, resources: [{group: rbac.authorization.k8s.io/v1}]}]\n`, /^rules\[0\]\.resources\[0\]\.group: Invalid value: "rbac.authorization.k8s.io\/v1"/],
  ])('%s', (_name, text, message) => {
    expect(() => parseAuditPolicy(text)).toThrow(message);
  });
});

// ---- the flags ---------------------------------------------------------------------------------

describe('audit flags', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-flags-'));
    writeFileSync(join(dir, 'tls.crt'), 'x');
    writeFileSync(join(dir, 'tls.key'), 'x');
    writeFileSync(join(dir, 'policy.yaml'), `${POLICY_HEAD}rules: [{level: Metadata}]\n`);
    writeFileSync(join(dir, 'bad.yaml'), `${POLICY_HEAD}rules: [{level: Loud}]\n`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const run = (...flags: string[]) => {
    const parsed = parseCommandLine([`--tls-cert-file=${join(dir, 'tls.crt')}`, `--tls-private-key-file=${join(dir, 'tls.key')}`, ...flags]);
    if (parsed.kind !== 'run') throw new Error('expected a run');
    return parsed.config;
  };

  test('are read into the config, the policy parsed at once; none given means no audit', () => {
    // WHEN
    const config = run('--audit-log-path=/var/log/audit.log', `--audit-policy-file=${join(dir, 'policy.yaml')}`, '--audit-log-maxsize=10', '--audit-log-maxbackup=3', '--audit-log-maxage=7');
    // THEN
    expect(config.audit).toEqual({
      logPath: '/var/log/audit.log',
      maxAgeDays: 7,
      maxBackups: 3,
      maxSizeMegabytes: 10,
      policyFile: join(dir, 'policy.yaml'),
      policy: { policy: { rules: [rule('Metadata')], omitStages: [] }, warnings: [] },
    });
    expect(config.ignoredFlags).toEqual([]);
    expect(run().audit).toBeUndefined();
  });

  test('sample-apiserver\'s Deployment flags give a path without a policy (so, as kube-apiserver, nothing is written)', () => {
    const config = run('--audit-log-path=-', '--audit-log-maxage=0', '--audit-log-maxbackup=0');
    expect(config.audit).toEqual({ logPath: '-', maxAgeDays: 0, maxBackups: 0, maxSizeMegabytes: 0, policyFile: undefined, policy: undefined });
  });

  test('fails for a bad policy with one line naming the flag, the file and the problem', () => {
    const file = join(dir, 'bad.yaml');
    expect(() => run('--audit-log-path=-', `--audit-policy-file=${file}`)).toThrow(OptionsError);
    expect(() => run('--audit-log-path=-', `--audit-policy-file=${file}`)).toThrow(
      `--audit-policy-file="${file}" is not a valid audit.k8s.io/v1 Policy: rules[0].level: Unsupported value: "Loud": supported values: "None", "Metadata", "Request", "RequestResponse"`,
    );
  });

  test('fails for a policy file that cannot be read', () => {
    expect(() => run(`--audit-policy-file=${join(dir, 'missing.yaml')}`)).toThrow(`--audit-policy-file="${join(dir, 'missing.yaml')}" cannot be read: ENOENT`);
  });

  test('fails for a negative or non-integer size, count or age', () => {
    expect(() => run('--audit-log-maxsize=-1')).toThrow('--audit-log-maxsize="-1" is not a non-negative integer: expected a number of megabytes');
    expect(() => run('--audit-log-maxbackup=two')).toThrow('--audit-log-maxbackup="two" is not a non-negative integer: expected a number of files');
    expect(() => run('--audit-log-maxage=1.5')).toThrow('--audit-log-maxage="1.5" is not a non-negative integer: expected a number of days');
  });
});

// ---- the event line ------------------------------------------------------------------------------

function fakeRequest(url: string, headers: Record<string, string>, method = 'GET'): IncomingMessage {
  return { url, method, headers, socket: {} } as unknown as IncomingMessage;
}

describe('event line', () => {
  test('microTime: RFC 3339 in UTC with six fractional digits, as metav1.MicroTime', () => {
    expect(microTime(Date.UTC(2026, 11, 3, 13, 4, 5, 6) * 1000 + 789)).toBe('2026-12-03T13:04:05.006789Z');
    expect(microTime(0)).toBe('1970-01-01T00:00:00.000000Z');
  });

  test('sourceIPs: X-Forwarded-For, then X-Real-Ip unless listed, then the peer unless it is the last one', () => {
    expect(sourceIPs(fakeRequest('/', {}), '::ffff:10.0.0.1')).toEqual(['10.0.0.1']);
    expect(sourceIPs(fakeRequest('/', { 'x-forwarded-for': '1.2.3.4, bogus, 2001:DB8::1' }), '10.0.0.1')).toEqual(['1.2.3.4', '2001:db8::1', '10.0.0.1']);
    expect(sourceIPs(fakeRequest('/', { 'x-forwarded-for': '1.2.3.4', 'x-real-ip': '1.2.3.4' }), '1.2.3.4')).toEqual(['1.2.3.4']);
    expect(sourceIPs(fakeRequest('/', { 'x-real-ip': '5.6.7.8' }), undefined)).toEqual(['5.6.7.8']);
  });

  test('carries the fields of audit/v1 Event in their order, empty ones left out, the user agent truncated at 1024', () => {
    // GIVEN a finished resource request
    const info = parseRequestInfo('PUT', '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders/f1/status?fieldManager=x');
    const req = fakeRequest('/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders/f1/status?fieldManager=x', { 'user-agent': 'u'.repeat(1030), authorization: 'Bearer secret-token' }, 'PUT');
    const user: UserInfo = { name: 'alice', uid: 'u-1', groups: ['g1', 'system:authenticated'], extra: { zeta: ['z'], alpha: ['a', 'b'] } };
    // WHEN
    const line = auditEventLine(req, { auditID: 'id-1', info, user, decision: { allowed: true, reason: 'RBAC: allowed' }, code: 200, seconds: 0.001234, remote: '127.0.0.1' }, 'ResponseComplete', 1_700_000_000_123_456);
    // THEN
    expect(line.endsWith('\n')).toBe(true);
    expect(line).not.toContain('secret-token');
    const event = JSON.parse(line);
    expect(Object.keys(event)).toEqual(['kind', 'apiVersion', 'level', 'auditID', 'stage', 'requestURI', 'verb', 'user', 'sourceIPs', 'userAgent', 'objectRef', 'responseStatus', 'requestReceivedTimestamp', 'stageTimestamp', 'annotations']);
    expect(event).toEqual({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Metadata',
      auditID: 'id-1',
      stage: 'ResponseComplete',
      requestURI: '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders/f1/status?fieldManager=x',
      verb: 'update',
      user: { username: 'alice', uid: 'u-1', groups: ['g1', 'system:authenticated'], extra: { alpha: ['a', 'b'], zeta: ['z'] } },
      sourceIPs: ['127.0.0.1'],
      userAgent: `${'u'.repeat(1024)}...TRUNCATED`,
      objectRef: { resource: 'flunders', namespace: 'ns1', name: 'f1', apiGroup: 'wardle.example.com', apiVersion: 'v1alpha1', subresource: 'status' },
      responseStatus: { metadata: {}, code: 200 },
      requestReceivedTimestamp: '2023-11-14T22:13:20.122222Z',
      stageTimestamp: '2023-11-14T22:13:20.123456Z',
      annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': 'RBAC: allowed' },
    });
    expect(Object.keys(event.user.extra)).toEqual(['alpha', 'zeta']);
    expect(Object.keys(event.objectRef)).toEqual(['resource', 'namespace', 'name', 'apiGroup', 'apiVersion', 'subresource']);
  });

  test("admission's audit annotations join authorization's, keys sorted as Go writes a map; refused keys never arrive", () => {
    // GIVEN a write whose admission added annotations (one refused: not a qualified name; one refused: a second value)
    const info = parseRequestInfo('POST', '/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders');
    const req = fakeRequest('/apis/wardle.example.com/v1alpha1/namespaces/ns1/flunders', {}, 'POST');
    const annotations = new AuditAnnotations();
    expect(annotations.add('zz.example.com/last', 'z')).toBeUndefined();
    expect(annotations.add('mutation.webhook.admission.k8s.io/round_0_index_0', '{"configuration":"a","webhook":"w","mutated":true}')).toBeUndefined();
    expect(annotations.add('no-prefix', 'x')).toMatch(/^annotation key has invalid format, the right format is a DNS subdomain prefix and '\/' and key name/);
    expect(annotations.add('Bad_Prefix/key', 'x')).toMatch(/^annotation key has invalid format prefix part a lowercase RFC 1123 subdomain/);
    expect(annotations.add('zz.example.com/last', 'other')).toBe('admission annotations are not allowed to be overwritten, key:"zz.example.com/last", old value: "z", new value:"other"');
    expect(annotations.add('zz.example.com/last', 'z')).toBeUndefined(); // the same value again is fine
    // WHEN its event is written
    const line = auditEventLine(req, { auditID: 'id-3', info, user: { name: 'alice', groups: [], extra: {} }, decision: { allowed: true, reason: '' }, code: 201, seconds: 0, remote: '127.0.0.1', admissionAnnotations: annotations }, 'ResponseComplete', 1_700_000_000_000_000);
    // THEN every kept annotation, sorted by key
    const event = JSON.parse(line);
    expect(Object.entries(event.annotations)).toEqual([
      ['authorization.k8s.io/decision', 'allow'],
      ['authorization.k8s.io/reason', ''],
      ['mutation.webhook.admission.k8s.io/round_0_index_0', '{"configuration":"a","webhook":"w","mutated":true}'],
      ['zz.example.com/last', 'z'],
    ]);
  });

  test('a failed authentication: no user, the methods attempted (never the credential), no objectRef for a non-resource path', () => {
    // GIVEN
    const req = fakeRequest('/version', { authorization: 'Bearer secret-token' });
    // WHEN
    const line = auditEventLine(req, { auditID: 'id-2', info: parseRequestInfo('GET', '/version'), user: undefined, decision: undefined, code: 401, seconds: 0, remote: '::1' }, 'ResponseStarted', 1_700_000_000_000_000);
    // THEN
    expect(line).not.toContain('secret-token');
    expect(JSON.parse(line)).toEqual({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Metadata',
      auditID: 'id-2',
      stage: 'ResponseStarted',
      requestURI: '/version',
      verb: 'get',
      user: {},
      sourceIPs: ['::1'],
      responseStatus: { metadata: {}, message: 'Authentication failed, attempted: bearer', code: 401 },
      requestReceivedTimestamp: '2023-11-14T22:13:20.000000Z',
      stageTimestamp: '2023-11-14T22:13:20.000000Z',
    });
  });
});

// ---- the rotating file -------------------------------------------------------------------------

describe('RotatingFile', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-rotate-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const line = (i: number) => `${JSON.stringify({ i, pad: 'x'.repeat(80) })}\n`;

  test('rotates before a line would take the file past the limit, never splitting a line, named as lumberjack names backups', async () => {
    // GIVEN a 1000-byte limit and a clock
    const path = join(dir, 'audit.log');
    let now = Date.UTC(2026, 0, 2, 15, 4, 5, 0);
    const file = await RotatingFile.open(path, { maxBytes: 1000, maxBackups: 0, maxAgeDays: 0, logger: memoryLogger(), now: () => now });
    // WHEN 40 lines of ~100 bytes are written, the clock moving on
    for (let i = 0; i < 40; i++) {
      file.write(line(i));
      if (i % 10 === 9) await eventually(() => (existsSync(path) && statSync(path).size > 0 ? true : undefined), 'a write');
      now += 1000;
    }
    await file.close();
    // THEN every line is in exactly one file, in order, and no file is past the limit
    const names = readdirSync(dir).sort();
    expect(names[names.length - 1]).toBe('audit.log');
    for (const name of names.slice(0, -1)) expect(name).toMatch(/^audit-2026-01-02T15-0\d-\d\d\.\d{3}\.log$/);
    // (10 lines of 97 bytes fill a file)
    expect(names).toHaveLength(4);
    const backupsFirst = [...names.slice(0, -1), 'audit.log'];
    const all = backupsFirst.map((name) => readFileSync(join(dir, name), 'utf8'));
    for (const text of all) expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1000);
    expect(all.join('')).toBe(Array.from({ length: 40 }, (_, i) => line(i)).join(''));
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  test('keeps at most maxBackups rotated files, the newest', async () => {
    // GIVEN
    const path = join(dir, 'audit.log');
    let now = Date.UTC(2026, 0, 2, 0, 0, 0, 0);
    const file = await RotatingFile.open(path, { maxBytes: 150, maxBackups: 2, maxAgeDays: 0, logger: memoryLogger(), now: () => now });
    // WHEN 10 lines of 97 bytes (one per file)
    for (let i = 0; i < 10; i++) {
      file.write(line(i));
      now += 60_000;
    }
    await file.close();
    // THEN the current file and the two newest backups
    const names = readdirSync(dir).sort();
    expect(names).toHaveLength(3);
    expect(readFileSync(path, 'utf8')).toBe(line(9));
    expect(names.slice(0, 2).map((n) => readFileSync(join(dir, n), 'utf8'))).toEqual([line(7), line(8)]);
  });

  test('removes rotated files older than maxAgeDays by the time in their name, and leaves other files alone', async () => {
    // GIVEN old backups (and files that are not backups) beside the log
    const path = join(dir, 'audit.log');
    writeFileSync(join(dir, 'audit-2025-01-01T00-00-00.000.log'), 'old\n');
    writeFileSync(join(dir, 'audit-2026-01-01T12-00-00.000.log'), 'recent\n');
    writeFileSync(join(dir, 'other-2025-01-01T00-00-00.000.log'), 'not ours\n');
    writeFileSync(path, 'x'.repeat(150) + '\n');
    const now = Date.UTC(2026, 0, 2, 0, 0, 0, 0);
    // WHEN a write rotates the file
    const file = await RotatingFile.open(path, { maxBytes: 200, maxBackups: 0, maxAgeDays: 7, logger: memoryLogger(), now: () => now });
    file.write(line(1));
    await file.close();
    // THEN
    expect(readdirSync(dir).sort()).toEqual(['audit-2026-01-01T12-00-00.000.log', 'audit-2026-01-02T00-00-00.000.log', 'audit.log', 'other-2025-01-01T00-00-00.000.log']);
  });

  test('a failing write is logged once, does not throw, and the lines are counted as dropped', async () => {
    // GIVEN a file on a full device
    const lines: Record<string, unknown>[] = [];
    const file = await RotatingFile.open('/dev/full', { maxBytes: 1 << 30, maxBackups: 0, maxAgeDays: 0, logger: memoryLogger(lines) });
    // WHEN lines are written, one at a time
    for (let i = 0; i < 5; i++) {
      file.write(line(i));
      await eventually(() => (file.dropped > i ? true : undefined), `line ${i} to fail`);
    }
    await file.close();
    // THEN one error line, naming the file and the error
    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ path: '/dev/full', err: expect.stringContaining('ENOSPC') });
    expect(file.dropped).toBe(5);
  });

  test('creates the directory (0700) and the file (0600)', async () => {
    const path = join(dir, 'nested', 'deeper', 'audit.log');
    const file = await RotatingFile.open(path, { maxBytes: 1000, maxBackups: 0, maxAgeDays: 0, logger: memoryLogger() });
    file.write(line(0));
    await file.close();
    expect(readFileSync(path, 'utf8')).toBe(line(0));
    expect(statSync(join(dir, 'nested', 'deeper')).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  test('fails to open in a directory that is a file', async () => {
    mkdirSync(join(dir, 'd'));
    writeFileSync(join(dir, 'd', 'file'), '');
    await expect(RotatingFile.open(join(dir, 'd', 'file', 'audit.log'), { maxBytes: 1000, maxBackups: 0, maxAgeDays: 0, logger: memoryLogger() })).rejects.toThrow(/EEXIST|ENOTDIR/);
  });
});

// ---- end to end: the server in-process, real delegated auth against the kube-apiserver stand-in ----

describe('audit log of a running server', () => {
  const GROUP = 'wardle.example.com';
  const FLUNDERS = `/apis/${GROUP}/v1alpha1/namespaces/default/flunders`;
  const ALICE_TOKEN = 'alice-token-3b8e0c1d9f27a6';
  const WRONG_TOKEN = 'wrong-token-5c6d7e8f9a0b1c';
  const SPEC_VALUE = 'zebra-distinct-spec-value-7f3a9c';
  let dir: string;
  let fake: FakeKubeApiServer;
  let server: Server;
  let servingCa: TestCa;
  let admin: TestCertificate;
  const logLines: Record<string, unknown>[] = [];
  let auditPath: string;
  let startedAt: number;

  beforeAll(async () => {
    // GIVEN a policy: health checks and alice's fischers not audited, creates asked at RequestResponse, the rest at Metadata
    dir = mkdtempSync(join(tmpdir(), 'audit-e2e-'));
    servingCa = makeCa('serving-ca');
    const clientCa = makeCa('client-ca');
    admin = makeLeaf(clientCa, { cn: 'kubernetes-admin', organizations: ['system:masters'] });
    const serving = makeServerCert(servingCa);
    writeFileSync(join(dir, 'tls.crt'), serving.chainPem);
    writeFileSync(join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
    writeFileSync(
      join(dir, 'policy.yaml'),
      `${POLICY_HEAD}omitStages: [RequestReceived]
rules:
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
  - level: None
    users: [alice]
    resources: [{group: ${GROUP}, resources: [fischers]}]
  - level: RequestResponse
    verbs: [create]
    resources: [{group: ${GROUP}, resources: [flunders]}]
  - level: Metadata
`,
    );
    fake = await FakeKubeApiServer.start();
    fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: clientCa.certPem }));
    fake.setToken(ALICE_TOKEN, { user: { username: 'alice', uid: 'alice-uid', groups: ['developers', 'system:authenticated'], extra: { 'example.com/team': ['blue'] } } });
    fake.authorize = (spec) =>
      spec.user === 'alice' && spec.resourceAttributes?.namespace !== 'forbidden'
        ? { allowed: true, reason: 'RBAC: allowed by RoleBinding "alice-edit/default"' }
        : { allowed: false, reason: 'no RBAC policy matched' };
    auditPath = join(dir, 'audit', 'audit.log');
    const parsed = parseCommandLine([
      '--secure-port=0',
      '--bind-address=127.0.0.1',
      `--tls-cert-file=${join(dir, 'tls.crt')}`,
      `--tls-private-key-file=${join(dir, 'tls.key')}`,
      `--kubeconfig=${fake.writeKubeconfig(dir)}`,
      '--shutdown-delay-duration=0s',
      `--audit-log-path=${auditPath}`,
      `--audit-policy-file=${join(dir, 'policy.yaml')}`,
    ]);
    if (parsed.kind !== 'run') throw new Error('expected a run');
    // WHEN the server starts as main.ts starts it
    const logger = memoryLogger(logLines);
    const auditLog = await AuditLog.open(parsed.config.audit!, logger);
    const configured = await configure(parsed.config, logger);
    server = await Server.start({
      ...parsed.config,
      ...configured,
      auditLog,
      logger,
      onClose: async () => {
        await configured.onClose?.();
        await auditLog?.close();
      },
    });
    await eventually(async () => ((await request(server.port, '/readyz', { ca: servingCa.certPem })).status === 200 ? true : undefined), 'readiness');
    startedAt = Date.now();
  }, 60_000);

  afterAll(async () => {
    await server?.shutdown();
    await fake?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('one Metadata event per audited request, field by field; None rules suppress; no credential or body in the file', async () => {
    // WHEN the admin (client certificate) and alice (token) make requests, and a wrong token is tried
    const asAdmin = { ca: servingCa.certPem, cert: admin.chainPem, key: admin.keyPem };
    const asAlice = { ca: servingCa.certPem, headers: { authorization: `Bearer ${ALICE_TOKEN}` } };
    const ua = { 'user-agent': 'audit-e2e/1.0' };
    const flunder = JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Flunder', metadata: { name: 'f1' }, spec: { reference: SPEC_VALUE } });
    const created = await request(server.port, FLUNDERS, { ...asAdmin, method: 'POST', body: flunder, headers: { ...ua, 'audit-id': 'e2e-create', 'content-type': 'application/json' } });
    expect(created.status).toBe(201);
    expect((await request(server.port, `${FLUNDERS}/f1`, { ...asAlice, headers: { ...asAlice.headers, ...ua, 'audit-id': 'e2e-get' } })).status).toBe(200);
    expect((await request(server.port, `/apis/${GROUP}/v1alpha1/namespaces/forbidden/flunders`, { ...asAlice, headers: { ...asAlice.headers, 'audit-id': 'e2e-forbidden' } })).status).toBe(403);
    expect((await request(server.port, `/apis/${GROUP}/v1alpha1/fischers`, { ...asAlice, headers: { ...asAlice.headers, 'audit-id': 'e2e-fischers' } })).status).toBe(200);
    expect((await request(server.port, '/healthz', { ca: servingCa.certPem, headers: { 'audit-id': 'e2e-healthz' } })).status).toBe(200);
    expect((await request(server.port, `${FLUNDERS}?limit=5`, { ca: servingCa.certPem, headers: { authorization: `Bearer ${WRONG_TOKEN}`, 'audit-id': 'e2e-401' } })).status).toBe(401);
    expect((await request(server.port, '/version', { ...asAlice, headers: { ...asAlice.headers, 'audit-id': 'e2e-version', 'x-forwarded-for': '203.0.113.7' } })).status).toBe(200);
    expect((await request(server.port, `${FLUNDERS}/f1`, { ...asAdmin, method: 'DELETE', headers: { 'audit-id': 'e2e-delete' } })).status).toBe(200);
    const finishedAt = Date.now();

    // THEN the last event is written (off the request path), then every one is in the file
    const read = () => (existsSync(auditPath) ? readFileSync(auditPath, 'utf8') : '');
    await eventually(() => (read().includes('"auditID":"e2e-delete"') ? true : undefined), 'the last audit event');
    const text = read();
    const events = text.trimEnd().split('\n').map((line) => JSON.parse(line));
    const byId = Object.fromEntries(events.map((e) => [e.auditID, e]));
    expect(events.map((e) => e.auditID)).toEqual(['e2e-create', 'e2e-get', 'e2e-forbidden', 'e2e-401', 'e2e-version', 'e2e-delete']);

    // AND no credential, no body content
    for (const secret of [ALICE_TOKEN, WRONG_TOKEN, SPEC_VALUE, 'Bearer', admin.keyPem.split('\n')[1]]) expect(text).not.toContain(secret);
    expect(statSync(auditPath).mode & 0o777).toBe(0o600);

    // AND every event is a Metadata-level audit/v1 Event, its timestamps MicroTime within the test
    const micro = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
    for (const event of events) {
      expect(event).toMatchObject({ kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata' });
      expect(event.requestReceivedTimestamp).toMatch(micro);
      expect(event.stageTimestamp).toMatch(micro);
      expect(Date.parse(event.requestReceivedTimestamp)).toBeGreaterThanOrEqual(startedAt - 1);
      expect(Date.parse(event.requestReceivedTimestamp)).toBeLessThanOrEqual(Date.parse(event.stageTimestamp));
      expect(Date.parse(event.stageTimestamp)).toBeLessThanOrEqual(finishedAt + 1000);
      expect(Object.keys(event).slice(0, 8)).toEqual(['kind', 'apiVersion', 'level', 'auditID', 'stage', 'requestURI', 'verb', 'user']);
    }

    // AND the admin's create (asked at RequestResponse, written at Metadata)
    const { requestReceivedTimestamp: _r, stageTimestamp: _s, ...create } = byId['e2e-create'];
    expect(create).toEqual({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Metadata',
      auditID: 'e2e-create',
      stage: 'ResponseComplete',
      requestURI: FLUNDERS,
      verb: 'create',
      user: { username: 'kubernetes-admin', groups: ['system:masters', 'system:authenticated'] },
      sourceIPs: ['127.0.0.1'],
      userAgent: 'audit-e2e/1.0',
      objectRef: { resource: 'flunders', namespace: 'default', apiGroup: GROUP, apiVersion: 'v1alpha1' },
      responseStatus: { metadata: {}, code: 201 },
      annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' },
    });

    // AND alice's get, by token, with her groups and extra
    expect(byId['e2e-get']).toMatchObject({
      stage: 'ResponseComplete',
      requestURI: `${FLUNDERS}/f1`,
      verb: 'get',
      user: { username: 'alice', uid: 'alice-uid', groups: ['developers', 'system:authenticated'], extra: { 'example.com/team': ['blue'] } },
      objectRef: { resource: 'flunders', namespace: 'default', name: 'f1', apiGroup: GROUP, apiVersion: 'v1alpha1' },
      responseStatus: { metadata: {}, code: 200 },
      annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': 'RBAC: allowed by RoleBinding "alice-edit/default"' },
    });

    // AND the denied list: forbid, with the authorizer's reason
    expect(byId['e2e-forbidden']).toMatchObject({
      verb: 'list',
      user: { username: 'alice' },
      objectRef: { resource: 'flunders', namespace: 'forbidden', apiGroup: GROUP, apiVersion: 'v1alpha1' },
      responseStatus: { metadata: {}, code: 403 },
      annotations: { 'authorization.k8s.io/decision': 'forbid', 'authorization.k8s.io/reason': 'no RBAC policy matched' },
    });

    // AND the wrong token: ResponseStarted, no user, the method attempted, no annotations
    const { requestReceivedTimestamp: _r2, stageTimestamp: _s2, ...failed } = byId['e2e-401'];
    expect(failed).toEqual({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Metadata',
      auditID: 'e2e-401',
      stage: 'ResponseStarted',
      requestURI: `${FLUNDERS}?limit=5`,
      verb: 'list',
      user: {},
      sourceIPs: ['127.0.0.1'],
      objectRef: { resource: 'flunders', namespace: 'default', apiGroup: GROUP, apiVersion: 'v1alpha1' },
      responseStatus: { metadata: {}, message: 'Authentication failed, attempted: bearer', code: 401 },
    });

    // AND a non-resource request: no objectRef, the forwarded address first
    expect(byId['e2e-version']).toMatchObject({ verb: 'get', requestURI: '/version', sourceIPs: ['203.0.113.7', '127.0.0.1'], responseStatus: { code: 200 } });
    expect(byId['e2e-version'].objectRef).toBeUndefined();
    expect(byId['e2e-delete']).toMatchObject({ verb: 'delete', user: { username: 'kubernetes-admin' }, objectRef: { name: 'f1' }, responseStatus: { code: 200 } });

    // AND the start said where the log goes, and that the create rule's level is written lower
    expect(logLines.find((l) => l.msg === 'writing the audit log')).toMatchObject({ path: auditPath, rules: 4 });
    expect(logLines.find((l) => typeof l.msg === 'string' && l.msg.includes('rules[2].level is RequestResponse: logged at Metadata'))).toBeDefined();
  }, 60_000);

  test('requests over HTTP/2 are audited the same way; a client certificate that fails authentication is named as x509 (HTTP/1.1)', async () => {
    // GIVEN an HTTP/2 session as alice, and one with a certificate from a CA the server does not trust
    const stranger = makeLeaf(makeCa('unknown-ca'), { cn: 'mallory', organizations: ['system:masters'] });
    const get = (path: string, headers: Record<string, string>, identity: { cert?: string; key?: string } = {}) =>
      new Promise<number>((resolve, reject) => {
        const session = http2.connect(`https://127.0.0.1:${server.port}`, { ca: servingCa.certPem, servername: 'localhost', ...identity });
        session.on('error', reject);
        const stream = session.request({ ':path': path, ...headers });
        stream.on('response', (h) => {
          stream.resume();
          stream.on('end', () => {
            session.close();
            resolve(Number(h[':status']));
          });
        });
        stream.on('error', reject);
      });
    // WHEN
    expect(await get(`${FLUNDERS}?watch=0`, { authorization: `Bearer ${ALICE_TOKEN}`, 'user-agent': 'h2-client/2', 'audit-id': 'e2e-h2' })).toBe(200);
    expect(await get('/version', { 'audit-id': 'e2e-h2-x509' }, { cert: stranger.chainPem, key: stranger.keyPem })).toBe(401);
    // THEN
    const events = await eventually(() => {
      const found = readFileSync(auditPath, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line)).filter((e) => e.auditID.startsWith('e2e-h2'));
      return found.length === 2 ? found : undefined;
    }, 'the HTTP/2 events');
    expect(events[0]).toMatchObject({ stage: 'ResponseComplete', verb: 'list', user: { username: 'alice' }, sourceIPs: ['127.0.0.1'], userAgent: 'h2-client/2', responseStatus: { code: 200 } });
    expect(events[1]).toMatchObject({ stage: 'ResponseStarted', user: {}, responseStatus: { metadata: {}, code: 401 } });
    // (over HTTP/2 the stream's socket is gone when the event is written: the certificate is not named, see the HTTP/1.1 case)
    expect(events[1].responseStatus.message).toMatch(/^Authentication failed, /);
    // AND over HTTP/1.1 the same certificate is named as the method attempted
    expect((await request(server.port, '/version', { ca: servingCa.certPem, cert: stranger.chainPem, key: stranger.keyPem, headers: { 'audit-id': 'e2e-h1-x509' } })).status).toBe(401);
    const h1 = await eventually(() => readFileSync(auditPath, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line)).find((e) => e.auditID === 'e2e-h1-x509'), 'the HTTP/1.1 event');
    expect(h1.responseStatus).toEqual({ metadata: {}, message: 'Authentication failed, attempted: x509', code: 401 });
  }, 60_000);
});

describe('AuditLog.open', () => {
  const policy = parseAuditPolicy(`${POLICY_HEAD}rules: [{level: Metadata}]\n`);
  const done = { auditID: 'id-open', info: parseRequestInfo('GET', '/version'), user: tim, decision: { allowed: true, reason: '' }, code: 200, seconds: 0, remote: '127.0.0.1' };

  test('- writes through the logger\'s own destination (one writer on stdout: lines never interleave)', async () => {
    // GIVEN
    const lines: Record<string, unknown>[] = [];
    const log = await AuditLog.open({ logPath: '-', maxAgeDays: 0, maxBackups: 0, maxSizeMegabytes: 0, policy }, memoryLogger(lines));
    // WHEN
    log!.record(fakeRequest('/version', {}), done);
    await log!.close();
    // THEN the event is a line of its own on the logger's destination, the reason annotated even when empty (as upstream)
    expect(lines.find((l) => l.kind === 'Event')).toMatchObject({ auditID: 'id-open', verb: 'get', annotations: { 'authorization.k8s.io/decision': 'allow', 'authorization.k8s.io/reason': '' } });
  });

  test('a log path without a policy writes nothing, as kube-apiserver, and says so', async () => {
    const lines: Record<string, unknown>[] = [];
    expect(await AuditLog.open({ logPath: '-', maxAgeDays: 0, maxBackups: 0, maxSizeMegabytes: 0 }, memoryLogger(lines))).toBeUndefined();
    expect(lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('--audit-log-path is set without --audit-policy-file'))).toMatchObject({ level: 40 });
  });

  test('fails with a message naming the flag when the file cannot be opened', async () => {
    // GIVEN a path under a regular file
    const dir = mkdtempSync(join(tmpdir(), 'audit-open-'));
    writeFileSync(join(dir, 'file'), '');
    const path = join(dir, 'file', 'audit.log');
    try {
      // WHEN / THEN
      await expect(AuditLog.open({ logPath: path, maxAgeDays: 0, maxBackups: 0, maxSizeMegabytes: 0, policy }, memoryLogger())).rejects.toThrow(
        `--audit-log-path="${path}" cannot be opened for appending: EEXIST: file already exists, mkdir '${join(dir, 'file')}'`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('the README\'s example policy is one kube-apiserver would read', () => {
  // GIVEN the YAML block of the README's "Audit log" section
  const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Audit log'));
  const yaml = /```yaml\n([\s\S]*?)```/.exec(section)![1];
  // WHEN / THEN
  const { policy, warnings } = parseAuditPolicy(yaml);
  expect(warnings).toEqual([]);
  expect(policy.rules.map((r) => r.level)).toEqual(['None', 'None', 'Metadata']);
  expect(new AuditPolicyChecker(policy).levelAndStages(undefined, parseRequestInfo('GET', '/readyz')).level).toBe('None');
});
