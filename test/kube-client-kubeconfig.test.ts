/**
 * Kubeconfig loading as kubectl does it (KUBECONFIG merging, --context, relative paths per file)
 * and the token file's lifecycle (re-read, unreadable → logged once, last good token kept), against
 * the kube-apiserver stand-in. Exec plugins, auth providers and proxies: kube-client-plugins.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { configFromKubeconfig, loadKubeClient, type KubeClient } from '../server/kube-client';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';

let fake: FakeKubeApiServer;
let dir: string;
const clients: KubeClient[] = [];

function track(client: KubeClient): KubeClient {
  clients.push(client);
  return client;
}

beforeAll(async () => {
  fake = await FakeKubeApiServer.start();
});

afterAll(async () => {
  await fake.stop();
});

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'kube-client-kubeconfig-'));
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  rmSync(dir, { recursive: true, force: true });
});

function write(file: string, text: string): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

/**
 * Two kubeconfigs in their own directories, each naming its CA file (and B its token file)
 * relatively. Both define cluster "shared", user "u" and context "ctx-a": A's win. A sets the
 * current-context first: it wins over B's.
 */
function twoKubeconfigs(): { a: string; b: string } {
  write(path.join(dir, 'a', 'ca.crt'), fake.ca.certPem);
  write(path.join(dir, 'b', 'ca.crt'), `${fake.ca.certPem}# b\n`);
  write(path.join(dir, 'b', 'token'), fake.serviceAccountToken);
  const a = write(
    path.join(dir, 'a', 'config'),
    `current-context: ctx-a
clusters: [{name: shared, cluster: {server: "${fake.url}", certificate-authority: ca.crt}}]
users: [{name: u, user: {token: ${fake.serviceAccountToken}}}]
contexts: [{name: ctx-a, context: {cluster: shared, user: u}}]
`,
  );
  const b = write(
    path.join(dir, 'b', 'config'),
    `current-context: ctx-b
clusters:
- {name: shared, cluster: {server: "https://wrong.example:1"}}
- {name: other, cluster: {server: "${fake.url}", certificate-authority: ca.crt}}
users:
- {name: u, user: {token: wrong}}
- {name: v, user: {tokenFile: token}}
contexts:
- {name: ctx-a, context: {cluster: other, user: v}}
- {name: ctx-b, context: {cluster: other, user: v}}
`,
  );
  return { a, b };
}

describe('merging and --context', () => {
  test('the first file to define a name or a current-context wins, and paths are relative to the file that holds them', () => {
    // GIVEN two kubeconfigs that define the same names differently
    const { a, b } = twoKubeconfigs();

    // WHEN they are merged in the order KUBECONFIG lists them
    const config = configFromKubeconfig([a, b]);

    // THEN A's current-context, cluster and user are used, with A's CA file
    expect(config).toEqual({ server: fake.url, caPem: fake.ca.certPem, token: fake.serviceAccountToken });
  });

  test('--context picks a context defined only in a later file, with that file\'s relative paths', () => {
    // GIVEN the same two kubeconfigs
    const { a, b } = twoKubeconfigs();

    // WHEN context ctx-b is asked for
    const config = configFromKubeconfig([a, b], 'ctx-b');

    // THEN B's cluster "other" and user "v" are used, with B's CA and token files
    expect(config.caPem).toBe(`${fake.ca.certPem}# b\n`);
    expect(config.tokenFile).toBe(path.join(dir, 'b', 'token'));
    expect(config.token).toBeUndefined();
  });

  test('KUBECONFIG: files that do not exist are skipped, and the client works with the merged result', async () => {
    // GIVEN KUBECONFIG naming a missing file, then A, then B
    const { a, b } = twoKubeconfigs();
    const client = track(loadKubeClient({ env: { KUBECONFIG: [path.join(dir, 'missing'), a, b].join(path.delimiter) }, context: 'ctx-b' }));

    // WHEN it reads a namespace / THEN it is authenticated with B's token file
    expect((await client.request('GET', '/api/v1/namespaces/default')).status).toBe(200);
  });

  test('--kubeconfig wins over KUBECONFIG', () => {
    // GIVEN --kubeconfig=A and KUBECONFIG=B
    const { a, b } = twoKubeconfigs();

    // WHEN / THEN B is not read: its context is unknown
    expect(() => loadKubeClient({ kubeconfig: a, env: { KUBECONFIG: b }, context: 'ctx-b' })).toThrow(/context "ctx-b" not found \(expected one of: ctx-a\)/);
  });

  test('fails on a KUBECONFIG whose files all do not exist, naming it', () => {
    const value = [path.join(dir, 'x'), path.join(dir, 'y')].join(path.delimiter);
    expect(() => loadKubeClient({ env: { KUBECONFIG: value } })).toThrow(`KUBECONFIG="${value}" names no existing file`);
  });

  test('fails on --context without a kubeconfig (the in-cluster configuration has no contexts)', () => {
    const { serviceAccountDir, env } = fake.writeInClusterFiles(path.join(dir, 'sa'));
    expect(() => loadKubeClient({ serviceAccountDir, env, context: 'prod' })).toThrow(/--context="prod" needs a kubeconfig \(--kubeconfig or KUBECONFIG\)/);
  });

  test('fails on a proxy-url that is not a proxy URL, naming the cluster', () => {
    const file = write(
      path.join(dir, 'config'),
      `current-context: c\nclusters: [{name: k, cluster: {server: "https://10.0.0.1", proxy-url: "ftp://proxy:21"}}]\ncontexts: [{name: c, context: {cluster: k}}]\n`,
    );
    expect(() => configFromKubeconfig(file)).toThrow(/cluster "k" proxy-url "ftp:\/\/proxy:21" is not a proxy URL \(expected http:\/\/, https:\/\/, socks5:\/\/ or socks5h:\/\/\)/);
  });
});

describe('token file', () => {
  test('a token file that becomes unreadable is logged once, the last good token is kept, and a new file is read again', async () => {
    // GIVEN a client on a tokenFile kubeconfig that re-reads the file on every request
    const kubeconfig = fake.writeKubeconfig(dir, 'tokenFile');
    const tokenFile = path.join(dir, 'token');
    const warnings: { fields: Record<string, unknown>; message: string }[] = [];
    const client = track(loadKubeClient({ kubeconfig, tokenRefreshMs: 0, logger: { warn: (fields, message) => warnings.push({ fields, message }) } }));
    expect((await client.request('GET', '/api/v1/namespaces/default')).status).toBe(200);

    // WHEN the file disappears (an unmounted volume) and three requests follow
    rmSync(tokenFile);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await client.request('GET', '/api/v1/namespaces/default')).status);

    // THEN each used the last good token, and one warning named the file and the error
    expect(statuses).toEqual([200, 200, 200]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0].fields).toMatchObject({ tokenFile, err: { message: expect.stringMatching(/ENOENT/) } });
    expect(warnings[0].message).toMatch(/cannot read the bearer token file.*keeping the last token read/);

    // WHEN the file comes back with a rotated token (the old one revoked)
    fake.setToken('rotated-token', { user: fake.serviceAccountUser });
    fake.setToken(fake.serviceAccountToken, undefined);
    try {
      writeFileSync(tokenFile, 'rotated-token\n');

      // THEN the new token is used
      expect((await client.request('GET', '/api/v1/namespaces/default')).status).toBe(200);

      // AND a later failure is logged again, once
      rmSync(tokenFile);
      await client.request('GET', '/api/v1/namespaces/default');
      await client.request('GET', '/api/v1/namespaces/default');
      expect(warnings).toHaveLength(2);
    } finally {
      fake.setToken(fake.serviceAccountToken, { user: fake.serviceAccountUser });
      fake.setToken('rotated-token', undefined);
    }
  });

  test('is re-read only every tokenRefreshMs', async () => {
    // GIVEN a client that re-reads its token file at most every hour
    const kubeconfig = fake.writeKubeconfig(dir, 'tokenFile');
    const client = track(loadKubeClient({ kubeconfig, tokenRefreshMs: 3_600_000 }));

    // WHEN the file changes to a token the stand-in does not know
    writeFileSync(path.join(dir, 'token'), 'unknown-token');

    // THEN the token read at start is still used
    expect((await client.request('GET', '/api/v1/namespaces/default')).status).toBe(200);
  });

  test('fails at load when the token file cannot be read at all', () => {
    const kubeconfig = fake.writeKubeconfig(dir, 'tokenFile');
    rmSync(path.join(dir, 'token'));
    expect(() => loadKubeClient({ kubeconfig })).toThrow(/cannot read the bearer token file from ".*\/token": ENOENT/);
  });
});
