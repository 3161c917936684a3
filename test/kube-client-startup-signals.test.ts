/**
 * SIGTERM and SIGINT while the server is still starting (waiting for a kube-apiserver or an etcd
 * that accepts connections and never answers): the built server exits at once with code 0 and
 * says so in its log, instead of dying mid-line or hanging until its timeouts.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { makeCa, makeLeaf } from './support/pki';
import { freePort, serverBundle } from './support/server-process';
import { until } from './support/until';

/** Accepts TCP connections and never writes a byte. */
async function silentPeer(): Promise<{ port: number; accepted: () => number; close: () => void }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

let dir: string;

beforeAll(() => {
  serverBundle();
}, 120_000);

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'kube-client-startup-signals-'));
  const ca = makeCa('serving-ca');
  const serving = makeLeaf(ca, { cn: 'localhost', dnsNames: ['localhost'], extendedKeyUsages: ['serverAuth'] });
  writeFileSync(path.join(dir, 'tls.crt'), serving.chainPem);
  writeFileSync(path.join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function kubeconfigFor(port: number): string {
  const file = path.join(dir, 'kubeconfig');
  const ca = Buffer.from(makeCa('silent-ca').certPem).toString('base64');
  writeFileSync(
    file,
    `current-context: c\nclusters: [{name: k, cluster: {server: "https://127.0.0.1:${port}", certificate-authority-data: ${ca}}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n`,
    { mode: 0o600 },
  );
  return file;
}

/** Starts the built server, waits until `waitingOn` has accepted its connection, sends `signal`, and returns how it ended. */
async function signalDuringStartup(signal: NodeJS.Signals, extraArgs: string[], waitingOn: { accepted: () => number }, kubeApiserverPort: number) {
  const child = spawn(
    process.execPath,
    [
      serverBundle(),
      `--secure-port=${await freePort()}`,
      '--bind-address=127.0.0.1',
      `--tls-cert-file=${path.join(dir, 'tls.crt')}`,
      `--tls-private-key-file=${path.join(dir, 'tls.key')}`,
      `--kubeconfig=${kubeconfigFor(kubeApiserverPort)}`,
      ...extraArgs,
    ],
    { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, sig) => resolve({ code, signal: sig })));
  await until(() => waitingOn.accepted() > 0, 'the server to connect to the silent peer');
  const signalledAt = Date.now();
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const result = await exited;
  clearTimeout(timer);
  return { ...result, tookMs: Date.now() - signalledAt, output };
}

test.each(['SIGTERM', 'SIGINT'] as const)('%s while waiting for the auth ConfigMap from a kube-apiserver that never answers: exit 0 at once, with a log line', async (signal) => {
  // GIVEN a kube-apiserver that accepts the server's connection and never answers
  const kubeApiserver = await silentPeer();
  try {
    // WHEN the server is signalled while it waits for the ConfigMap
    const result = await signalDuringStartup(signal, [], kubeApiserver, kubeApiserver.port);

    // THEN it exits with 0, well before its 10 s request timeout, and says why
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(result.tookMs).toBeLessThan(5000);
    const line = result.output.split('\n').find((l) => l.includes('signal received during start-up'));
    expect(line && JSON.parse(line)).toMatchObject({ level: expect.anything(), signal, msg: 'signal received during start-up; exiting without serving' });
  } finally {
    kubeApiserver.close();
  }
});

test('SIGTERM while connecting to an etcd that never answers: exit 0 at once', async () => {
  // GIVEN an etcd and a kube-apiserver that accept connections and never answer
  const etcd = await silentPeer();
  const kubeApiserver = await silentPeer();
  try {
    // WHEN the server is signalled once it has reached for etcd
    const result = await signalDuringStartup('SIGTERM', [`--etcd-servers=http://127.0.0.1:${etcd.port}`], etcd, kubeApiserver.port);

    // THEN it exits with 0 at once
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(result.tookMs).toBeLessThan(5000);
    expect(result.output).toContain('signal received during start-up');
  } finally {
    etcd.close();
    kubeApiserver.close();
  }
});
