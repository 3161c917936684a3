/**
 * Runs a synthesized EtcdCluster as real etcd processes (Debian's etcd-server, `/usr/bin/etcd`):
 * one per StatefulSet replica, each with exactly the container's command args and env, and the
 * Secrets' files laid out as the kubelet mounts the pod's volumes. Only what the cluster would
 * answer is stood in for:
 * - `$(VAR)` references are expanded from the container's env as the kubelet does (`POD_NAME`
 *   from `metadata.name` is the pod's name, `<statefulset>-<ordinal>`);
 * - a URL whose host is a member's stable DNS name (`<pod>.<headless service>.<ns>.svc[.<domain>]`)
 *   becomes `127.0.0.1` and a port of that member's own, and `0.0.0.0` (listen on the pod's
 *   interfaces) becomes `127.0.0.1` and the member's port: the members share one host here, so
 *   each container port is given a free port per member. The certificates still verify: the
 *   members' server and peer certificates carry the IP SAN `127.0.0.1`;
 * - a volume's mount path becomes a directory under `directory`, and the image's `/usr/local/bin/etcd`
 *   the local binary.
 * Anything else in an arg (a DNS name of something else, an unknown `$(VAR)`) is an error, so the
 * processes never run flags other than the StatefulSet's.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { freePort } from './server-process';

/* eslint-disable @typescript-eslint/no-explicit-any -- parsed manifests of any kind */

/** A synthesized object, e.g. parsed from `dist/*.yaml`. */
export interface ManifestObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: any;
}

export interface StartSynthesizedEtcdOptions {
  /** Every synthesized object (the StatefulSet, its Secrets …). */
  readonly objects: readonly ManifestObject[];
  /** Where the members' volumes go; created, and removed by `stop()`. */
  readonly directory: string;
  /** @default - the only StatefulSet with a container named `etcd` */
  readonly statefulSetName?: string;
  /** How long all members may take to pass their readiness probe. @default 60000 */
  readonly readyTimeoutMs?: number;
}

/** One member: a process with the StatefulSet container's args for pod `<statefulset>-<ordinal>`. */
export interface SynthesizedEtcdMember {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly metricsPort: number;
  /** `https://127.0.0.1:<clientPort>`. */
  readonly clientUrl: string;
  /** The container's args as this process got them (after the substitutions above). */
  readonly args: readonly string[];
  /** The container's args as synthesized, with `$(VAR)` expanded (before any substitution). */
  readonly podArgs: readonly string[];
  readonly running: boolean;
  /** etcd's stderr (the last 20,000 characters). */
  readonly log: string;
  /** SIGKILL, and waits for the exit; the data stays. */
  kill(): Promise<void>;
  /** Starts the process again with the same args and data. */
  restart(): Promise<void>;
  /** Resolves once the container's readiness probe answers 200 (or rejects after `timeoutMs`). */
  waitUntilReady(timeoutMs?: number): Promise<void>;
  /** GET of one of the container's probes (`startup`, `liveness`, `readiness`): the status code. */
  probe(kind: 'startup' | 'liveness' | 'readiness'): Promise<number>;
}

export interface SynthesizedEtcd {
  readonly members: readonly SynthesizedEtcdMember[];
  /** Every member's client URL, for an etcd client's endpoints. */
  readonly clientUrls: readonly string[];
  /** The client Secret (`<statefulset>-client-tls`) as a pod mounts it: `ca.crt`, `tls.crt`, `tls.key`. */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Kills every member and removes `directory`. */
  stop(): Promise<void>;
}

const MEMBER_PORT_NAMES = { client: 2379, peer: 2380, metrics: 2381 } as const;

function etcdBinary(): string {
  const binary = process.env.ETCD_BIN ?? '/usr/bin/etcd';
  if (!existsSync(binary)) throw new Error(`etcd not found at ${binary}: install Debian's etcd-server (scripts/test.sh does) or set ETCD_BIN`);
  return binary;
}

/** Starts every member of the synthesized StatefulSet and waits until each passes its readiness probe. */
export async function startSynthesizedEtcd(options: StartSynthesizedEtcdOptions): Promise<SynthesizedEtcd> {
  // A free port is found by binding port 0 and closing it, so another test's process can take it
  // before etcd binds it: start again on other ports (each attempt starts from a clean directory).
  for (let attempt = 1; ; attempt++) {
    try {
      return await startSynthesizedEtcdOnce(options);
    } catch (error) {
      if (attempt >= 3 || !/bind: address already in use/.test((error as Error).message)) throw error;
    }
  }
}

async function startSynthesizedEtcdOnce(options: StartSynthesizedEtcdOptions): Promise<SynthesizedEtcd> {
  const sts = _findStatefulSet(options.objects, options.statefulSetName);
  const namespace = sts.metadata.namespace;
  if (namespace === undefined) throw new Error(`StatefulSet ${sts.metadata.name} has no namespace`);
  const pod = sts.spec.template.spec;
  const container = pod.containers.find((c: any) => c.name === 'etcd');
  const replicas: number = sts.spec.replicas;
  const podNames = Array.from({ length: replicas }, (_, i) => `${sts.metadata.name}-${i}`);
  const secretData = (name: string): Record<string, string> => {
    const secret = options.objects.find((o) => o.kind === 'Secret' && o.metadata.name === name && o.metadata.namespace === namespace);
    if (secret === undefined) throw new Error(`Secret ${namespace}/${name} is not among the objects`);
    return secret.data as Record<string, string>;
  };

  mkdirSync(options.directory, { recursive: true });
  const containerPorts: Record<string, number> = Object.fromEntries(container.ports.map((p: any) => [p.name, p.containerPort]));
  for (const [name, port] of Object.entries(MEMBER_PORT_NAMES)) {
    if (containerPorts[name] !== port) throw new Error(`the etcd container's port "${name}" is ${containerPorts[name]} (expected ${port})`);
  }
  // Each member's own port for each container port.
  const ports: Array<Record<number, number>> = [];
  for (let i = 0; i < replicas; i++) {
    ports.push({ 2379: await freePort(), 2380: await freePort(), 2381: await freePort() });
  }
  const memberHost = new RegExp(`^${_escape(sts.metadata.name)}-(\\d+)\\.${_escape(sts.spec.serviceName)}\\.${_escape(namespace)}\\.svc(\\.[a-z0-9.-]+)?$`);

  const members = podNames.map((podName, ordinal) => {
    const root = path.join(options.directory, podName);
    // The pod's volumes, where the container mounts them.
    const mounts: Array<{ mountPath: string; local: string }> = [];
    for (const mount of container.volumeMounts as Array<{ name: string; mountPath: string }>) {
      const local = path.join(root, 'volumes', mount.name);
      mounts.push({ mountPath: mount.mountPath, local });
      const volume = pod.volumes?.find((v: any) => v.name === mount.name);
      const claim = sts.spec.volumeClaimTemplates?.find((t: any) => t.metadata.name === mount.name);
      if (volume?.projected !== undefined) {
        const files: Array<{ path: string; content: string }> = [];
        for (const source of volume.projected.sources) {
          if (source.secret === undefined) throw new Error(`projected volume ${mount.name} has a source that is not a Secret`);
          const data = secretData(source.secret.name);
          for (const item of source.secret.items) {
            if (data[item.key] === undefined) throw new Error(`Secret ${source.secret.name} has no key ${item.key}`);
            files.push({ path: item.path, content: data[item.key] });
          }
        }
        _writeAtomicVolume(local, files, volume.projected.defaultMode ?? 0o644);
      } else if (volume?.secret !== undefined) {
        const data = secretData(volume.secret.secretName);
        _writeAtomicVolume(local, Object.entries(data).map(([key, content]) => ({ path: key, content })), volume.secret.defaultMode ?? 0o644);
      } else if (claim !== undefined) {
        mkdirSync(local, { recursive: true });
      } else {
        throw new Error(`volume ${mount.name} is neither a projected Secret volume, a Secret nor a claim template`);
      }
    }
    const env = _containerEnv(container, podName, namespace);
    const podArgs: string[] = (container.args as string[]).map((arg) => _expand(arg, env));
    const args = podArgs.map((arg) => _rewriteMounts(_rewriteUrls(arg, ordinal, ports, memberHost), mounts));
    const [command, ...commandArgs] = container.command as string[];
    if (command !== '/usr/local/bin/etcd') throw new Error(`the etcd container's command is ${JSON.stringify(container.command)} (expected ["/usr/local/bin/etcd"])`);
    return new EtcdMemberProcess(podName, [...commandArgs, ...args], podArgs, env, ports[ordinal], container);
  });

  const clientVolume = path.join(options.directory, 'client-secret');
  const clientData = secretData(`${sts.metadata.name}-client-tls`);
  _writeAtomicVolume(clientVolume, Object.entries(clientData).map(([key, content]) => ({ path: key, content })), 0o440);

  const etcd: SynthesizedEtcd = {
    members,
    clientUrls: members.map((m) => m.clientUrl),
    caFile: path.join(clientVolume, 'ca.crt'),
    certFile: path.join(clientVolume, 'tls.crt'),
    keyFile: path.join(clientVolume, 'tls.key'),
    async stop() {
      await Promise.all(members.map((m) => m.kill()));
      rmSync(options.directory, { recursive: true, force: true });
    },
  };
  try {
    // Parallel, as the StatefulSet's podManagementPolicy: no member is ready before a quorum has started.
    for (const member of members) member.start();
    await Promise.all(members.map((m) => m.waitUntilReady(options.readyTimeoutMs ?? 60_000)));
  } catch (e) {
    await etcd.stop();
    throw e;
  }
  return etcd;
}

class EtcdMemberProcess implements SynthesizedEtcdMember {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  log = '';

  constructor(
    readonly name: string,
    readonly args: readonly string[],
    readonly podArgs: readonly string[],
    private readonly env: Record<string, string>,
    private readonly ports: Record<number, number>,
    private readonly container: any,
  ) {}

  get clientPort(): number {
    return this.ports[2379];
  }

  get peerPort(): number {
    return this.ports[2380];
  }

  get metricsPort(): number {
    return this.ports[2381];
  }

  get clientUrl(): string {
    return `https://127.0.0.1:${this.clientPort}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  start(): void {
    if (this.child) throw new Error(`${this.name} is running`);
    // Only the container's env (plus PATH): etcd reads ETCD_* variables as flags.
    const child = spawn(etcdBinary(), this.args, { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...this.env } });
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
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  async restart(): Promise<void> {
    this.start();
    await this.waitUntilReady(60_000);
  }

  async waitUntilReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.child) throw new Error(`etcd member ${this.name} exited:\n${this.log}`);
      if ((await this.probe('readiness')) === 200) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`etcd member ${this.name} did not pass its readiness probe within ${timeoutMs} ms:\n${this.log}`);
  }

  probe(kind: 'startup' | 'liveness' | 'readiness'): Promise<number> {
    const probe = this.container[`${kind}Probe`];
    if (probe?.httpGet === undefined) throw new Error(`the etcd container has no ${kind} httpGet probe`);
    const { path: probePath, port, scheme } = probe.httpGet;
    if (scheme !== 'HTTP') throw new Error(`the ${kind} probe's scheme is ${scheme} (expected HTTP: the kubelet has no etcd client certificate)`);
    const containerPort = typeof port === 'number' ? port : this.container.ports.find((p: any) => p.name === port)?.containerPort;
    const local = this.ports[containerPort];
    if (local === undefined) throw new Error(`the ${kind} probe's port ${port} is not one of the container's`);
    return new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: local, path: probePath, timeout: (probe.timeoutSeconds ?? 1) * 1000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', () => resolve(0));
      req.on('timeout', () => {
        req.destroy();
        resolve(0);
      });
    });
  }
}

function _findStatefulSet(objects: readonly ManifestObject[], name: string | undefined): ManifestObject {
  const found = objects.filter(
    (o) => o.kind === 'StatefulSet' && (name === undefined ? o.spec.template.spec.containers.some((c: any) => c.name === 'etcd') : o.metadata.name === name),
  );
  if (found.length !== 1) throw new Error(`expected one etcd StatefulSet${name === undefined ? '' : ` "${name}"`} among the objects, found ${found.length}`);
  return found[0];
}

/** The container's env as the kubelet resolves it (literal values, and the downward API's pod name and namespace). */
function _containerEnv(container: any, podName: string, namespace: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = _expand(variable.value, env);
    else if (variable.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[variable.name] = podName;
    else if (variable.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[variable.name] = namespace;
    else throw new Error(`env ${variable.name} comes from ${JSON.stringify(variable.valueFrom)}, which this stand-in cannot resolve`);
  }
  return env;
}

/** `$(VAR)` from the env; `$$(VAR)` is a literal `$(VAR)`, as in Kubernetes. Unknown references fail here (the kubelet would pass them on). */
function _expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_match, name: string | undefined) => {
    if (name === undefined) return '$';
    if (env[name] === undefined) throw new Error(`"${value}" refers to $(${name}), which the container's env does not define`);
    return env[name];
  });
}

/** Member DNS names and 0.0.0.0 → 127.0.0.1 with that member's own port for the container port. */
function _rewriteUrls(arg: string, ordinal: number, ports: ReadonlyArray<Record<number, number>>, memberHost: RegExp): string {
  return arg.replace(/\b(https?):\/\/([^/:,\s]+):(\d+)/g, (url, scheme: string, host: string, port: string) => {
    const member = host === '0.0.0.0' ? ordinal : Number(memberHost.exec(host)?.[1] ?? NaN);
    const local = ports[member]?.[Number(port)];
    if (local === undefined) throw new Error(`${url} in "${arg}" is neither a member's address nor 0.0.0.0 on one of its ports`);
    return `${scheme}://127.0.0.1:${local}`;
  });
}

function _rewriteMounts(arg: string, mounts: ReadonlyArray<{ mountPath: string; local: string }>): string {
  let rewritten = arg;
  for (const { mountPath, local } of mounts) {
    rewritten = rewritten.replace(new RegExp(`(^|=)${_escape(mountPath)}(?=/|$)`), (_, prefix: string) => `${prefix}${local}`);
  }
  return rewritten;
}

/**
 * A Secret or projected volume as the kubelet's atomic writer lays it out: the files in a
 * timestamped directory, `..data` linking to it, and each top-level entry linking through `..data`.
 */
function _writeAtomicVolume(dir: string, files: ReadonlyArray<{ path: string; content: string }>, mode: number): void {
  const stamp = `..${new Date().toISOString().replace(/[-:.]/g, '_')}`;
  for (const file of files) {
    const target = path.join(dir, stamp, file.path);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, Buffer.from(file.content, 'base64'), { mode });
  }
  symlinkSync(stamp, path.join(dir, '..data'));
  for (const top of new Set(files.map((file) => file.path.split('/')[0]))) symlinkSync(path.join('..data', top), path.join(dir, top));
}

function _escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
