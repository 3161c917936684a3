/**
 * Kubeconfigs as users have them, through the built server (the esbuild bundle the image runs,
 * where @kubernetes/client-node's KubeConfig is bundled; jest cannot load that ESM package): exec
 * credential plugins (real scripts), an OIDC auth-provider, a proxy-url, and --context, each
 * against the kube-apiserver stand-in, which authenticates only the credential the plugin hands out.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FakeKubeApiServer } from './support/fake-kube-apiserver';
import { makeCa, makeLeaf, type TestCa } from './support/pki';
import { freePort, serverBundle, ServerProcess } from './support/server-process';
import { until } from './support/until';

const SERVER_NAME = 'wardle-apiserver.wardle.svc';
let fake: FakeKubeApiServer;
let dir: string;
let servingCa: TestCa;
const b64 = (s: string) => Buffer.from(s).toString('base64');

beforeAll(async () => {
  serverBundle();
  fake = await FakeKubeApiServer.start();
  fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: makeCa('client-ca').certPem }));
  fake.authorize = () => ({ allowed: true });
  servingCa = makeCa('serving-ca');
}, 120_000);

afterAll(async () => {
  await fake.stop();
});

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'kube-client-plugins-'));
  const serving = makeLeaf(servingCa, { cn: SERVER_NAME, dnsNames: [SERVER_NAME], extendedKeyUsages: ['serverAuth'] });
  writeFileSync(path.join(dir, 'tls.crt'), serving.chainPem);
  writeFileSync(path.join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A kubeconfig for the stand-in with the given users (YAML of the `user:` mappings) and one context per user, named after it. */
function writeKubeconfig(users: Record<string, string>, options: { currentContext?: string; clusterExtra?: string } = {}): string {
  const names = Object.keys(users);
  const text =
    `apiVersion: v1\nkind: Config\ncurrent-context: ${options.currentContext ?? names[0]}\n` +
    `clusters:\n- name: fake\n  cluster:\n    server: ${fake.url}\n    certificate-authority-data: ${b64(fake.ca.certPem)}\n${options.clusterExtra ?? ''}` +
    `users:\n${names.map((n) => `- name: ${n}\n  user:\n${users[n].replace(/^/gm, '    ')}\n`).join('')}` +
    `contexts:\n${names.map((n) => `- name: ${n}\n  context: {cluster: fake, user: ${n}}\n`).join('')}`;
  const file = path.join(dir, 'kubeconfig');
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

/** A credential plugin script (sh) in the test directory, as `aws eks get-token` or `kubelogin` would be. */
function writePlugin(name: string, body: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

function serverArgs(port: number, extra: string[]): string[] {
  return [
    `--secure-port=${port}`,
    '--bind-address=127.0.0.1',
    `--tls-cert-file=${path.join(dir, 'tls.crt')}`,
    `--tls-private-key-file=${path.join(dir, 'tls.key')}`,
    '--shutdown-delay-duration=0s',
    ...extra,
  ];
}

/** Starts the server and waits until it is ready: it read the auth ConfigMap with the credentials under test. */
async function startReady(extra: string[], env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  return ServerProcess.start({ args: serverArgs(await freePort(), extra), ca: servingCa.certPem, serverName: SERVER_NAME, env, readyTimeoutMs: 30_000 });
}

describe('exec credential plugins', () => {
  test.each(['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'])('the token a %s plugin prints is what the server sends', async (apiVersion) => {
    // GIVEN a plugin (named relative to the kubeconfig, with args and env from it) that prints an
    // ExecCredential whose token only the stand-in knows
    const token = `exec-token-${apiVersion.split('/')[1]}-${Date.now()}`;
    writePlugin(
      'get-token.sh',
      `[ "$1" = "--cluster" ] && [ "$2" = "fake" ] || { echo "unexpected args: $*" >&2; exit 2; }\n` +
        `printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"%s"}}' "${apiVersion}" "$TOKEN_PREFIX-${token}"`,
    );
    fake.setToken(`from-env-${token}`, { user: fake.serviceAccountUser });
    const unauthenticatedBefore = fake.calls.unauthenticated;
    const readsBefore = fake.calls.configMapGets + fake.calls.configMapLists;
    const kubeconfig = writeKubeconfig({
      'exec-user': `exec:\n  apiVersion: ${apiVersion}\n  command: ./get-token.sh\n  args: [--cluster, fake]\n  env: [{name: TOKEN_PREFIX, value: from-env}]\n  interactiveMode: Never`,
    });

    // WHEN the server starts with it
    const server = await startReady([`--kubeconfig=${kubeconfig}`]);
    try {
      // THEN it read the auth ConfigMap authenticated by the plugin's token, and never without it
      expect(fake.calls.configMapGets + fake.calls.configMapLists).toBeGreaterThan(readsBefore);
      expect(fake.calls.unauthenticated).toBe(unauthenticatedBefore);
    } finally {
      expect(await server.stop()).toBe(0);
      fake.setToken(`from-env-${token}`, undefined);
    }
  });

  test('a client certificate a plugin prints is what the server presents', async () => {
    // GIVEN a plugin that prints an ExecCredential with a client certificate and key the stand-in trusts (and no token)
    const credential = {
      apiVersion: 'client.authentication.k8s.io/v1',
      kind: 'ExecCredential',
      status: { clientCertificateData: fake.clientCert.certPem, clientKeyData: fake.clientCert.keyPem },
    };
    writeFileSync(path.join(dir, 'credential.json'), JSON.stringify(credential), { mode: 0o600 });
    writePlugin('get-cert.sh', `cat "${path.join(dir, 'credential.json')}"`);
    const kubeconfig = writeKubeconfig({ 'exec-user': 'exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: ./get-cert.sh' });
    const unauthenticatedBefore = fake.calls.unauthenticated;

    // WHEN the server starts with it / THEN it is ready: the ConfigMap was read as the certificate's user
    const server = await startReady([`--kubeconfig=${kubeconfig}`]);
    expect(fake.calls.unauthenticated).toBe(unauthenticatedBefore);
    expect(await server.stop()).toBe(0);
  });

  test('after a 401 the plugin is run again and the request retried with the new token', async () => {
    // GIVEN a plugin that prints the token in a file, and counts its runs
    const tokenFile = path.join(dir, 'current-token');
    const runs = path.join(dir, 'runs');
    writePlugin('rotating.sh', `echo run >> "${runs}"\nprintf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$(cat "${tokenFile}")"`);
    const first = `first-${Date.now()}`;
    const second = `second-${Date.now()}`;
    writeFileSync(tokenFile, first);
    fake.setToken(first, { user: fake.serviceAccountUser });
    const kubeconfig = writeKubeconfig({ 'exec-user': 'exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: ./rotating.sh' });
    const server = await startReady([`--kubeconfig=${kubeconfig}`]);
    try {
      // Ready means the reflectors have listed; each opens its watch right after. The one request
      // that may meet the revoked token must be the TokenReview, so let the six watches (auth
      // ConfigMap, namespaces, four admissionregistration collections) open first.
      await until(() => fake.openWatches() === 6, 'the server\'s six watches to open');
      expect(readFileSync(runs, 'utf8')).toBe('run\n');

      // WHEN kube-apiserver stops accepting the first token, the plugin would now hand out a
      // second one, and a client's bearer token makes the server ask for a TokenReview
      fake.setToken(first, undefined);
      fake.setToken(second, { user: fake.serviceAccountUser });
      writeFileSync(tokenFile, second);
      fake.setToken('client-token', { user: { username: 'alice', groups: ['system:authenticated'] } });
      const unauthenticatedBefore = fake.calls.unauthenticated;
      const reviewsBefore = fake.tokenReviewSpecs.length;
      const status = await new Promise<number>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port: server.port, path: '/apis/wardle.example.com/v1alpha1/namespaces/default/flunders', ca: servingCa.certPem, servername: SERVER_NAME, headers: { Authorization: 'Bearer client-token' }, agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          })
          .on('error', reject);
      });

      // THEN the client is served: the server's first TokenReview got 401, the plugin ran again and the review was retried
      expect(status).toBe(200);
      expect(fake.calls.unauthenticated).toBe(unauthenticatedBefore + 1);
      expect(fake.tokenReviewSpecs.slice(reviewsBefore).map((r) => r.token)).toEqual(['client-token']);
      expect(readFileSync(runs, 'utf8')).toBe('run\nrun\n');
    } finally {
      expect(await server.stop()).toBe(0);
      fake.setToken(second, undefined);
      fake.setToken('client-token', undefined);
    }
  });

  test('fails with the plugin named and its stderr when the plugin fails, sending no request without credentials', async () => {
    // GIVEN a plugin that exits 1 (expired cloud credentials)
    writePlugin('expired.sh', 'echo "error: the SSO session has expired; run aws sso login" >&2\nexit 1');
    const kubeconfig = writeKubeconfig({ 'exec-user': 'exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: ./expired.sh' });
    const unauthenticatedBefore = fake.calls.unauthenticated;

    // WHEN the server starts with it
    const child = spawn(process.execPath, [serverBundle(), ...serverArgs(await freePort(), [`--kubeconfig=${kubeconfig}`])], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      // THEN the log says which plugin of which user failed, with what the plugin said
      const message = `exec credential plugin "${path.join(dir, 'expired.sh')}" of user "exec-user" failed: error: the SSO session has expired; run aws sso login`;
      // As it appears in a JSON log line.
      const logged = JSON.stringify(message).slice(1, -1);
      await until(() => output.includes(logged), `the plugin's error in the log; got:\n${output}`);
      // AND nothing was sent to kube-apiserver without credentials
      expect(fake.calls.unauthenticated).toBe(unauthenticatedBefore);
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });
});

describe('auth providers', () => {
  test('an oidc auth-provider with an unexpired id-token sends that id-token', async () => {
    // GIVEN an oidc user whose id-token (a JWT, exp in an hour) only the stand-in knows
    const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const idToken = `${part({ alg: 'RS256' })}.${part({ iss: 'https://issuer.example', sub: 'wardle', exp: Math.floor(Date.now() / 1000) + 3600 })}.c2lnbmF0dXJl`;
    fake.setToken(idToken, { user: fake.serviceAccountUser });
    const unauthenticatedBefore = fake.calls.unauthenticated;
    const kubeconfig = writeKubeconfig({
      'oidc-user': `auth-provider:\n  name: oidc\n  config:\n    client-id: kubernetes\n    idp-issuer-url: https://issuer.example\n    id-token: ${idToken}`,
    });

    // WHEN the server starts with it / THEN it is ready: the ConfigMap was read with the id-token
    const server = await startReady([`--kubeconfig=${kubeconfig}`]);
    expect(fake.calls.unauthenticated).toBe(unauthenticatedBefore);
    expect(await server.stop()).toBe(0);
    fake.setToken(idToken, undefined);
  });
});

/** A SOCKS5 proxy (no authentication, CONNECT only) that records the destinations asked for. */
async function socks5Proxy(): Promise<{ url: string; destinations: string[]; close: () => void }> {
  const destinations: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    let stage: 'greeting' | 'request' | 'open' = 'greeting';
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (stage === 'greeting' && buffered.length >= 2 && buffered.length >= 2 + buffered[1]) {
        buffered = buffered.subarray(2 + buffered[1]);
        client.write(Buffer.from([5, 0]));
        stage = 'request';
      }
      if (stage !== 'request' || buffered.length < 5) return;
      const type = buffered[3];
      const addressLength = type === 1 ? 4 : type === 4 ? 16 : 1 + buffered[4];
      if (buffered.length < 4 + addressLength + 2) return;
      const host = type === 1 ? [...buffered.subarray(4, 8)].join('.') : type === 3 ? buffered.subarray(5, 5 + buffered[4]).toString() : '';
      const port = buffered.readUInt16BE(4 + addressLength);
      const rest = buffered.subarray(4 + addressLength + 2);
      stage = 'open';
      client.off('data', onData);
      destinations.push(`${host}:${port}`);
      const upstream = net.connect(port, host, () => {
        client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
        upstream.write(rest);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `socks5://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    destinations,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('--context, KUBECONFIG and proxy-url', () => {
  test('--context picks a context other than the current one, from the files of KUBECONFIG', async () => {
    // GIVEN a kubeconfig whose current context has a token the stand-in does not know, and
    // another context with the ServiceAccount token, named by KUBECONFIG with a missing file first
    const kubeconfig = writeKubeconfig({ stranger: 'token: not-a-known-token', wardle: `token: ${fake.serviceAccountToken}` }, { currentContext: 'stranger' });

    // WHEN the server starts with --context=wardle and KUBECONFIG, no --kubeconfig
    const server = await startReady(['--context=wardle'], { KUBECONFIG: `${path.join(dir, 'missing')}:${kubeconfig}` });

    // THEN it is ready: it used the context named
    expect(await server.stop()).toBe(0);
  });

  test("the cluster's proxy-url carries every connection to kube-apiserver (HTTP CONNECT)", async () => {
    // GIVEN an HTTP proxy that tunnels CONNECT requests and records them
    const connects: string[] = [];
    const proxy = http.createServer((_req, res) => res.writeHead(405).end());
    proxy.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      connects.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    const kubeconfig = writeKubeconfig({ wardle: `token: ${fake.serviceAccountToken}` }, { clusterExtra: `    proxy-url: ${proxyUrl}\n` });
    let server: ServerProcess | undefined;
    try {
      // WHEN the server starts with it
      server = await startReady([`--kubeconfig=${kubeconfig}`]);

      // THEN it reached the stand-in (it is ready) through the proxy
      expect(connects.length).toBeGreaterThan(0);
      expect(new Set(connects)).toEqual(new Set([`127.0.0.1:${fake.port}`]));
    } finally {
      if (server) expect(await server.stop()).toBe(0);
      proxy.close();
      proxy.closeAllConnections?.();
    }
  });

  test('a socks5:// proxy-url carries the connections too', async () => {
    // GIVEN a SOCKS5 proxy
    const proxy = await socks5Proxy();
    const kubeconfig = writeKubeconfig({ wardle: `token: ${fake.serviceAccountToken}` }, { clusterExtra: `    proxy-url: ${proxy.url}\n` });
    let server: ServerProcess | undefined;
    try {
      // WHEN the server starts with it
      server = await startReady([`--kubeconfig=${kubeconfig}`]);

      // THEN it reached the stand-in through the proxy
      expect(new Set(proxy.destinations)).toEqual(new Set([`127.0.0.1:${fake.port}`]));
    } finally {
      if (server) expect(await server.stop()).toBe(0);
      proxy.close();
    }
  });
});
