/**
 * Dead-peer detection on watches to kube-apiserver: a connection that goes silent (a crashed node,
 * a NAT entry dropped, a proxy that blackholes) is taken for dead after the idle timeout and the
 * watch re-established from its last resourceVersion. The peer is a TCP proxy in front of the
 * kube-apiserver stand-in that can stop forwarding on the connections it holds, keeping them open.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadKubeClient, type KubeClient, type KubeWatchEvent } from '../server/kube-client';
import { AUTH_CONFIGMAP_NAME, FakeKubeApiServer } from './support/fake-kube-apiserver';
import { until } from './support/until';

const CM_PATH = `/api/v1/namespaces/kube-system/configmaps?fieldSelector=${encodeURIComponent(`metadata.name=${AUTH_CONFIGMAP_NAME}`)}`;

/** Forwards TCP to a port; blackhole() makes every connection open so far drop all bytes both ways, without closing it. */
class BlackholingProxy {
  static async start(targetPort: number): Promise<BlackholingProxy> {
    const proxy = new BlackholingProxy(targetPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  accepted = 0;
  private readonly open = new Set<{ client: net.Socket; upstream: net.Socket; dead: boolean }>();
  private readonly server: net.Server;

  private constructor(targetPort: number) {
    this.server = net.createServer((client) => {
      this.accepted++;
      const upstream = net.connect(targetPort, '127.0.0.1');
      const connection = { client, upstream, dead: false };
      this.open.add(connection);
      client.on('data', (chunk) => connection.dead || upstream.write(chunk));
      upstream.on('data', (chunk) => connection.dead || client.write(chunk));
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.open.delete(connection);
      };
      // A dead peer does not close either: only the proxy's own end does.
      client.on('close', close);
      upstream.on('close', () => connection.dead || close());
      client.on('error', close);
      upstream.on('error', () => undefined);
    });
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  blackhole(): void {
    for (const connection of this.open) connection.dead = true;
  }

  async stop(): Promise<void> {
    for (const { client, upstream } of this.open) {
      client.destroy();
      upstream.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }
}

let fake: FakeKubeApiServer;
let proxy: BlackholingProxy;
let dir: string;
const clients: KubeClient[] = [];

beforeAll(async () => {
  fake = await FakeKubeApiServer.start();
  proxy = await BlackholingProxy.start(fake.port);
});

afterAll(async () => {
  await proxy.stop();
  await fake.stop();
});

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'kube-client-watch-'));
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A client of the stand-in through the proxy. */
function clientThroughProxy(watchIdleTimeoutMs: number): KubeClient {
  const file = fake.writeKubeconfig(dir);
  writeFileSync(file, readFileSync(file, 'utf8').replace(fake.url, `https://127.0.0.1:${proxy.port}`));
  const client = loadKubeClient({ kubeconfig: file, watchIdleTimeoutMs, watchBackoffMs: 20, maxWatchBackoffMs: 100 });
  clients.push(client);
  return client;
}

test('a watch whose peer goes silent is re-established after the idle timeout, from its resourceVersion (no relist)', async () => {
  // GIVEN a running watch through the proxy, with a 1 s idle timeout
  fake.setAuthConfigMap({ v: 'before' });
  const client = clientThroughProxy(1000);
  const events: KubeWatchEvent[] = [];
  const errors: Error[] = [];
  const watchesBefore = fake.calls.configMapWatches;
  const w = client.watch(CM_PATH, (e) => events.push(e), { onError: (e) => errors.push(e) });
  await until(() => events.length === 1 && fake.calls.configMapWatches > watchesBefore, 'the SYNC and the watch');
  // (The stand-in sends the watch's response head with its first event; kube-apiserver flushes it at once.)
  fake.setAuthConfigMap({ v: 'watching' });
  await until(() => events.length === 2, 'the first event');
  const listsBefore = fake.calls.configMapLists;
  const acceptedBefore = proxy.accepted;

  // WHEN every connection goes silent, and the ConfigMap changes meanwhile
  proxy.blackhole();
  const silentSince = Date.now();
  fake.setAuthConfigMap({ v: 'while-silent' });

  // THEN the change arrives over a new connection, after the idle timeout and well within a few
  await until(() => events.length === 3, 'the change made while the old connection was silent');
  const tookMs = Date.now() - silentSince;
  expect(events[2]).toMatchObject({ type: 'MODIFIED', object: { data: { v: 'while-silent' } } });
  expect(tookMs).toBeGreaterThanOrEqual(900);
  expect(tookMs).toBeLessThan(15_000);
  expect(proxy.accepted).toBeGreaterThan(acceptedBefore);
  // AND the watch resumed from its resourceVersion instead of listing again
  expect(fake.calls.configMapLists).toBe(listsBefore);
  expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/no bytes \(not even a bookmark\) for 1000 ms: taking the connection for dead and watching again/)]);
  w.stop();
  await w.done;
});

test('a watch that keeps receiving events is not cut by the idle timeout', async () => {
  // GIVEN a watch with a 1.5 s idle timeout
  fake.setAuthConfigMap({ n: '0' });
  const client = clientThroughProxy(1500);
  const events: KubeWatchEvent[] = [];
  const errors: Error[] = [];
  const watchesBefore = fake.calls.configMapWatches;
  const w = client.watch(CM_PATH, (e) => events.push(e), { onError: (e) => errors.push(e) });
  await until(() => events.length === 1 && fake.calls.configMapWatches > watchesBefore, 'the SYNC and the watch');
  const watchesAfterStart = fake.calls.configMapWatches;

  // WHEN the ConfigMap changes every 200 ms for 4 s (more than two idle timeouts)
  for (let i = 1; i <= 20; i++) {
    fake.setAuthConfigMap({ n: String(i) });
    await new Promise((r) => setTimeout(r, 200));
  }
  await until(() => events.length === 21, 'every change');

  // THEN the one watch connection carried them all
  expect(errors).toEqual([]);
  expect(fake.calls.configMapWatches).toBe(watchesAfterStart);
  w.stop();
  await w.done;
});
