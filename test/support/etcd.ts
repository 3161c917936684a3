/**
 * A real etcd (Debian's etcd-server, `/usr/bin/etcd`) for one test: a single member on
 * 127.0.0.1 with free ports and a temporary data directory, optionally with client TLS
 * (client-certificate authentication required). It can be stopped, killed and started again on
 * the same ports and data, and is removed with its data at the end.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { makeCa, makeLeaf, type TestCa, type TestCertificate } from './pki';
import { freePort } from './server-process';

/** The etcd binary: `$ETCD_BIN`, else Debian's. scripts/test.sh installs it when missing. */
function etcdBinary(): string {
  const binary = process.env.ETCD_BIN ?? '/usr/bin/etcd';
  if (!existsSync(binary)) throw new Error(`etcd not found at ${binary}: install Debian's etcd-server (scripts/test.sh does) or set ETCD_BIN`);
  return binary;
}

/** Client TLS material of an etcd started with `tls: true`, as files an API server is pointed at. */
export interface EtcdClientTls {
  readonly ca: TestCa;
  readonly server: TestCertificate;
  readonly client: TestCertificate;
  /** `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`. */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface EtcdOptions {
  /** Serve clients over TLS and require a client certificate signed by the test CA. @default false */
  readonly tls?: boolean;
  /** @default 15000 */
  readonly readyTimeoutMs?: number;
  /** etcd's `--quota-backend-bytes`. @default - etcd's (2 GiB) */
  readonly quotaBackendBytes?: number;
}

export class EtcdProcess {
  static async start(options: EtcdOptions = {}): Promise<EtcdProcess> {
    const dir = mkdtempSync(path.join(tmpdir(), 'etcd-test-'));
    let tls: EtcdClientTls | undefined;
    if (options.tls) {
      const ca = makeCa('etcd test CA');
      const server = makeLeaf(ca, { cn: 'etcd', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], extendedKeyUsages: ['serverAuth', 'clientAuth'] });
      const client = makeLeaf(ca, { cn: 'extension-apiserver', extendedKeyUsages: ['clientAuth'] });
      const file = (name: string, text: string, mode = 0o644) => {
        const p = path.join(dir, name);
        writeFileSync(p, text, { mode });
        return p;
      };
      file('server.crt', server.chainPem);
      file('server.key', server.keyPem, 0o600);
      tls = { ca, server, client, caFile: file('ca.crt', ca.certPem), certFile: file('client.crt', client.chainPem), keyFile: file('client.key', client.keyPem, 0o600) };
    }
    const etcd = new EtcdProcess(dir, await freePort(), await freePort(), tls, options.quotaBackendBytes);
    await etcd.startProcess(options.readyTimeoutMs ?? 15_000);
    return etcd;
  }

  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  /** etcd's own log (stderr), for failure messages. */
  log = '';

  private constructor(
    readonly dir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly tls: EtcdClientTls | undefined,
    private readonly quotaBackendBytes?: number,
  ) {}

  /** `http(s)://127.0.0.1:<port>`: what `--etcd-servers` takes. */
  get clientUrl(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.clientPort}`;
  }

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  /** Starts etcd again on the same ports and data (after stop or kill). */
  async restart(readyTimeoutMs = 15_000): Promise<void> {
    if (this.child) throw new Error('etcd is running');
    await this.startProcess(readyTimeoutMs);
  }

  /** SIGTERM, and waits for the process to exit. Keeps the data. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  /** SIGKILL, and waits for the process to exit. Keeps the data. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** The running etcd's process id (the benchmark reads its CPU time from /proc). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** SIGSTOP: etcd keeps its connections open and answers nothing (a hung peer) until resume(). */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** SIGCONT after pause(). */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Stops etcd and removes its data directory. */
  async remove(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    await this.exited;
  }

  private async startProcess(readyTimeoutMs: number): Promise<void> {
    const peerUrl = `http://127.0.0.1:${this.peerPort}`;
    const args = [
      '--name=test',
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.clientUrl}`,
      `--advertise-client-urls=${this.clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=test=${peerUrl}`,
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
      ...(this.quotaBackendBytes !== undefined ? [`--quota-backend-bytes=${this.quotaBackendBytes}`] : []),
      ...(this.tls
        ? [`--cert-file=${path.join(this.dir, 'server.crt')}`, `--key-file=${path.join(this.dir, 'server.key')}`, `--trusted-ca-file=${this.tls.caFile}`, '--client-cert-auth']
        : []),
    ];
    const child = spawn(etcdBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    });
    const deadline = Date.now() + readyTimeoutMs;
    while (Date.now() < deadline) {
      if (!this.child) throw new Error(`etcd exited at start:\n${this.log}`);
      if (await this.healthy()) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await this.kill();
    throw new Error(`etcd did not become healthy within ${readyTimeoutMs} ms:\n${this.log}`);
  }

  /** GET /health answers `"health":"true"`. */
  private healthy(): Promise<boolean> {
    return new Promise((resolve) => {
      const options = this.tls ? { ca: this.tls.ca.certPem, cert: this.tls.client.chainPem, key: this.tls.client.keyPem, timeout: 1000 } : { timeout: 1000 };
      const get = this.tls ? https.get : http.get;
      const req = get(`${this.clientUrl}/health`, options, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => {
        req.destroy();
        resolve(false);
      });
    });
  }
}
