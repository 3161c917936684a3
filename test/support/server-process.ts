/**
 * The real extension API server as a child process: the esbuild bundle of server/main.ts (what
 * the image runs, built fresh from the working tree once per test file), started with a command
 * line, waited for until /readyz answers 200, and stopped with SIGTERM.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as https from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FakeKubeApiServer } from './fake-kube-apiserver';
import { makeCa, makeLeaf, type TestCa, type TestCertificate } from './pki';

/** The checkout: the nearest directory up from here with server/build.mjs (this file also runs compiled, from build/test/support). */
function findRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'server', 'build.mjs'))) return dir;
  }
  throw new Error(`no server/build.mjs above ${__dirname}`);
}
const ROOT = findRoot();
let bundle: string | undefined;

/** Names the bundle jest's globalSetup built for the whole run (test/support/global-setup.ts). */
export const SERVER_BUNDLE_ENV = 'CDK8S_API_EXTENSION_SERVER_BUNDLE';

/** Bundles server/main.ts with server/build.mjs into `out`; returns `out`. */
export function buildServerBundle(out: string): string {
  execFileSync(process.execPath, [path.join(ROOT, 'server', 'build.mjs'), '--outfile', out], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  return out;
}

/**
 * The server bundle: the one jest's globalSetup built for the run, else (the benchmarks) one built
 * into a temporary directory once per process.
 */
export function serverBundle(): string {
  bundle ??= process.env[SERVER_BUNDLE_ENV] || buildServerBundle(path.join(mkdtempSync(path.join(tmpdir(), 'server-bundle-')), 'server.js'));
  return bundle;
}

/** Resident set size of process `pid` in KiB (VmRSS of /proc/<pid>/status). */
export function processRssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface ServerProcessOptions {
  /** The server's command line (after the script). Must include --secure-port. */
  readonly args: readonly string[];
  /** Extra environment. @default - none (the parent's PATH and HOME only) */
  readonly env?: NodeJS.ProcessEnv;
  /** To check readiness with: the CA that signed the serving certificate, and the name to verify. */
  readonly ca: string;
  readonly serverName: string;
  /** Node flags (e.g. `--cpu-prof`). @default [] */
  readonly nodeArgs?: readonly string[];
  /** @default 15000 */
  readonly readyTimeoutMs?: number;
  /** Keep the server's stdout (JSON logs) in logLines, or send it to /dev/null (benchmarks). @default 'capture' */
  readonly logs?: 'capture' | 'discard';
  /** Resolve once /readyz answers 200; false: as soon as the process is spawned (call waitReady()). @default true */
  readonly waitReady?: boolean;
}

export class ServerProcess {
  /** Starts the server and resolves once GET /readyz (anonymous, as the kubelet's probe) answers 200. */
  static async start(options: ServerProcessOptions): Promise<ServerProcess> {
    const portArg = options.args.find((a) => a.startsWith('--secure-port='));
    if (!portArg) throw new Error('ServerProcess.start: args must include --secure-port=<port>');
    const port = Number(portArg.split('=')[1]);
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), serverBundle(), ...options.args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env },
      stdio: ['ignore', options.logs === 'discard' ? 'ignore' : 'pipe', 'pipe'],
    });
    const server = new ServerProcess(child, port, options.ca, options.serverName);
    if (options.waitReady ?? true) await server.waitReady(options.readyTimeoutMs ?? 15_000);
    return server;
  }

  /** stdout, one JSON log line each. */
  readonly logLines: string[] = [];
  stderr = '';
  private exit: Promise<number | null>;
  private exited = false;
  private partial = '';

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    private readonly ca: string,
    private readonly serverName: string,
  ) {
    child.stdout?.on('data', (chunk: Buffer) => {
      const text = this.partial + chunk.toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      this.logLines.push(...lines.filter((l) => l.length > 0));
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString('utf8')));
    this.exit = new Promise((resolve) =>
      child.on('exit', (code) => {
        this.exited = true;
        resolve(code);
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The parsed JSON log lines (pino), those that parse. */
  logs(): Record<string, unknown>[] {
    return this.logLines.flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  /** GET a path anonymously over TLS (serving CA checked for serverName); resolves status and body. */
  probe(pathName: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: this.port, path: pathName, ca: this.ca, servername: this.serverName, agent: false, timeout: 2000 }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('probe timed out')));
      req.on('error', reject);
    });
  }

  /** Resolves once GET /readyz answers 200; rejects after `timeoutMs` with the last answer. */
  async waitReady(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (this.exited) throw new Error(`the server exited before it was ready: ${await this.exit}\n${this.stderr}\n${this.logLines.slice(-10).join('\n')}`);
      try {
        const res = await this.probe('/readyz?verbose');
        if (res.status === 200) return;
        last = `${res.status} ${res.body}`;
      } catch (error) {
        last = (error as Error).message;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.stop();
    throw new Error(`the server was not ready within ${timeoutMs} ms: ${last}\n${this.stderr}\n${this.logLines.slice(-10).join('\n')}`);
  }

  /** Resident set size of the server process in KiB. */
  rssKiB(): number {
    return processRssKiB(this.pid);
  }

  /** SIGTERM (graceful shutdown), then SIGKILL after `graceMs`; resolves the exit code. */
  async stop(graceMs = 10_000): Promise<number | null> {
    if (!this.exited) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!this.exited) this.child.kill('SIGKILL');
      }, graceMs);
      const code = await this.exit;
      clearTimeout(timer);
      return code;
    }
    return this.exit;
  }
}

/** Everything an end-to-end test of the server needs: the PKI, kube-apiserver's stand-in and the running server. */
export interface ServerEnvironment {
  readonly dir: string;
  readonly fake: FakeKubeApiServer;
  readonly server: ServerProcess;
  /** Signs the serving certificate: the APIService caBundle. */
  readonly servingCa: TestCa;
  readonly serverName: string;
  /** The ConfigMap's client-ca-file: x509 users. */
  readonly clientCa: TestCa;
  /** The ConfigMap's requestheader-client-ca-file, and the front proxy's certificate signed by it (CN front-proxy-client). */
  readonly requestheaderCa: TestCa;
  readonly frontProxyClient: TestCertificate;
  /** A kubeconfig (written in `dir`) for an x509 user of the server: client-certificate-data signed by clientCa. */
  kubeconfigFor(user: { cn: string; organizations?: string[] }, fileName?: string): string;
  stop(): Promise<void>;
}

export interface ServerEnvironmentOptions {
  /** Extra flags for the server. @default [] */
  readonly extraArgs?: readonly string[];
  /** Allowed front-proxy CNs in the ConfigMap. @default ['front-proxy-client'] */
  readonly allowedNames?: readonly string[];
  readonly nodeArgs?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** @default 'capture' */
  readonly logs?: 'capture' | 'discard';
  /** Where the server keeps objects: its memory, or a real etcd started for it (removed by stop()). @default 'memory' */
  readonly storage?: 'memory' | 'etcd';
  /** Called with the stand-in before the server starts (what it answers from the first request). */
  readonly prepareFake?: (fake: FakeKubeApiServer) => void;
  /** Wait for the server's /readyz. @default true */
  readonly waitReady?: boolean;
}

/**
 * Starts kube-apiserver's stand-in (auth ConfigMap with a client CA and a request-header CA,
 * SubjectAccessReviews allowed unless a test says otherwise) and the server against it, with a
 * serving certificate for `<name>.<namespace>.svc` (wardle-apiserver.wardle.svc).
 */
export async function startServerEnvironment(options: ServerEnvironmentOptions = {}): Promise<ServerEnvironment> {
  const dir = mkdtempSync(path.join(tmpdir(), 'e2e-server-'));
  const serverName = 'wardle-apiserver.wardle.svc';
  const servingCa = makeCa('wardle-serving-ca');
  const serving = makeLeaf(servingCa, { cn: serverName, dnsNames: [serverName], extendedKeyUsages: ['serverAuth'] });
  const clientCa = makeCa('client-ca');
  const requestheaderCa = makeCa('front-proxy-ca');
  const frontProxyClient = makeLeaf(requestheaderCa, { cn: 'front-proxy-client' });
  writeFileSync(path.join(dir, 'tls.crt'), serving.chainPem);
  writeFileSync(path.join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });

  // Imported when used: etcd.ts imports freePort from this module.
  const etcd = options.storage === 'etcd' ? await (await import('./etcd')).EtcdProcess.start() : undefined;
  const fake = await FakeKubeApiServer.start();
  fake.setAuthConfigMap(FakeKubeApiServer.authConfigMapData({ clientCaPem: clientCa.certPem, requestheaderCaPem: requestheaderCa.certPem, allowedNames: options.allowedNames }));
  fake.authorize = () => ({ allowed: true, reason: 'allowed by the e2e stand-in' });
  options.prepareFake?.(fake);
  const kubeconfig = fake.writeKubeconfig(dir);
  const port = await freePort();
  let server: ServerProcess;
  try {
    server = await ServerProcess.start({
      args: [
        `--secure-port=${port}`,
        '--bind-address=127.0.0.1',
        `--tls-cert-file=${path.join(dir, 'tls.crt')}`,
        `--tls-private-key-file=${path.join(dir, 'tls.key')}`,
        `--kubeconfig=${kubeconfig}`,
        '--shutdown-delay-duration=0s',
        ...(etcd ? [`--etcd-servers=${etcd.clientUrl}`] : []),
        ...(options.extraArgs ?? []),
      ],
      ca: servingCa.certPem,
      serverName,
      nodeArgs: options.nodeArgs,
      env: options.env,
      logs: options.logs,
      waitReady: options.waitReady,
    });
  } catch (error) {
    await fake.stop();
    await etcd?.remove();
    throw error;
  }
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return {
    dir,
    fake,
    server,
    servingCa,
    serverName,
    clientCa,
    requestheaderCa,
    frontProxyClient,
    kubeconfigFor(user, fileName = `kubeconfig-${user.cn}`) {
      const cert = makeLeaf(clientCa, { cn: user.cn, organizations: user.organizations ?? [] });
      const text =
        `apiVersion: v1\nkind: Config\ncurrent-context: wardle\n` +
        `clusters:\n- name: wardle\n  cluster:\n    server: https://127.0.0.1:${port}\n    tls-server-name: ${serverName}\n    certificate-authority-data: ${b64(servingCa.certPem)}\n` +
        `users:\n- name: ${user.cn}\n  user:\n    client-certificate-data: ${b64(cert.chainPem)}\n    client-key-data: ${b64(cert.keyPem)}\n` +
        `contexts:\n- name: wardle\n  context:\n    cluster: wardle\n    user: ${user.cn}\n    namespace: default\n`;
      const file = path.join(dir, fileName);
      writeFileSync(file, text, { mode: 0o600 });
      return file;
    },
    async stop() {
      await server.stop();
      await fake.stop();
      await etcd?.remove();
    },
  };
}
