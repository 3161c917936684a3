/**
 * The memory bounds' parts, one by one (test/flood.test.ts proves them together against the
 * server process): the memory store's quota and byte-bounded history, and the budget of request
 * bodies in flight.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULT_MAX_REQUEST_BODY_BYTES_INFLIGHT, readBody, requestBodyBudget, setRequestBodyBudget } from '../server/registry/body';
import { StatusError } from '../server/status';
import { MemoryStorage, OBJECT_OVERHEAD_BYTES } from '../server/storage/memory';
import { ExpiredError, StorageEvent, StorageQuotaExceededError } from '../server/storage/types';
import { FLUNDERS, RegistryServer, flunder } from './support/registry-server';

/** An object whose JSON is about `bytes` long. */
function sized(name: string, bytes: number): Record<string, unknown> {
  return { metadata: { name }, data: 'x'.repeat(bytes) };
}

describe('MemoryStorage quota', () => {
  let storage: MemoryStorage;

  beforeEach(() => {
    storage = new MemoryStorage({ quotaBytes: 12_000 });
  });

  afterEach(async () => {
    await storage.close();
  });

  test('fails a create past the quota with StorageQuotaExceededError, writing nothing: no revision, no event, the objects as they were', async () => {
    // GIVEN 10 KB stored and a watch
    const kept = await storage.create('/r/a', sized('a', 10_000));
    const events: StorageEvent[] = [];
    storage.watch('/r/', await storage.currentRevision(), { onEvent: (e) => events.push(e) });
    const revision = await storage.currentRevision();
    const used = storage.storedBytes().used;

    // WHEN 3 KB more are created
    const refused = storage.create('/r/b', sized('b', 3000));

    // THEN
    await expect(refused).rejects.toThrow(StorageQuotaExceededError);
    await expect(refused).rejects.toThrow(/^database space exceeded: the write needs \d+ more bytes, \d+ of the quota of 12000 bytes are used$/);
    expect(await storage.currentRevision()).toBe(revision);
    expect(events).toEqual([]);
    expect(storage.storedBytes()).toEqual({ used, quota: 12_000 });
    expect((await storage.list('/r/')).items.map((i) => i.value)).toEqual([kept.value]);
  });

  test('counts each object as its key, its JSON and OBJECT_OVERHEAD_BYTES, and frees what deletes and shrinking updates release', async () => {
    // GIVEN
    const cost = (key: string, value: unknown) => key.length + Buffer.byteLength(JSON.stringify(value)) + OBJECT_OVERHEAD_BYTES;
    const a = await storage.create('/r/a', sized('a', 4000));
    const expected = cost('/r/a', a.value);
    expect(storage.storedBytes().used).toBe(expected);

    // WHEN an update grows it past the quota THEN it fails and the object stays
    await expect(storage.update('/r/a', sized('a', 12_000), a.modRevision)).rejects.toThrow(StorageQuotaExceededError);
    expect((await storage.get('/r/a'))?.value).toBe(a.value);

    // WHEN a second object fills the store THEN a shrinking update and a delete still work, and free space
    const b = await storage.create('/r/b', sized('b', 5000));
    await expect(storage.create('/r/c', sized('c', 2000))).rejects.toThrow(StorageQuotaExceededError);
    const shrunk = await storage.update('/r/b', sized('b', 10), b.modRevision);
    expect(storage.storedBytes().used).toBe(expected + cost('/r/b', shrunk.value));
    await storage.delete('/r/a', a.modRevision);
    expect(storage.storedBytes().used).toBe(cost('/r/b', shrunk.value));
    await expect(storage.create('/r/c', sized('c', 2000))).resolves.toBeDefined();
  });

  test('fails to construct with a quota that is not a positive integer', () => {
    expect(() => new MemoryStorage({ quotaBytes: 0 })).toThrow(/^quotaBytes 0 is not a positive integer$/);
    expect(() => new MemoryStorage({ historyMaxBytes: 1.5 })).toThrow(/^historyMaxBytes 1.5 is not a positive integer$/);
  });
});

describe('MemoryStorage history bounded by bytes', () => {
  test('keeps at most historyMaxBytes of events (always the newest), compacting the rest: a watch from before them gets ExpiredError', async () => {
    // GIVEN a history of at most 10 KB
    const storage = new MemoryStorage({ historyMaxBytes: 10_000, quotaBytes: 1_000_000 });
    const start = await storage.currentRevision();

    // WHEN ten objects of ~3 KB are written
    for (let i = 0; i < 10; i++) await storage.create(`/r/${i}`, sized(String(i), 3000));

    // THEN three events remain (~9 KB), the store's revision is unchanged, and older revisions are compacted
    expect(storage.historySize().events).toBe(3);
    expect(storage.historySize().bytes).toBeLessThanOrEqual(10_000);
    expect(storage.compactedRevision()).toBe(start + 7);
    expect(() => storage.watch('/r/', start + 6, { onEvent: () => undefined })).toThrow(ExpiredError);
    const replayed: number[] = [];
    storage.watch('/r/', start + 7, { onEvent: (e) => replayed.push(e.revision) });
    expect(replayed).toEqual([start + 8, start + 9, start + 10]);

    // AND one event larger than the bound is still kept (a watch from just before it must get it)
    await storage.create('/r/huge', sized('huge', 20_000));
    expect(storage.historySize().events).toBe(1);
    await storage.close();
  });
});

describe('request bodies in flight', () => {
  let server: http.Server;
  let port: number;
  /** Requests whose body was read, not yet answered: the test answers them. */
  const held: http.ServerResponse[] = [];

  beforeAll(async () => {
    setRequestBodyBudget(1000);
    server = http.createServer((req, res) => {
      readBody(req, res).then(
        () => held.push(res),
        (error: StatusError) => {
          res.writeHead(error.status.code, { 'Content-Type': 'application/json', 'Retry-After': String(error.status.details?.retryAfterSeconds ?? '') });
          res.end(JSON.stringify(error.status));
        },
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const res of held) res.end();
    await new Promise((resolve) => server.close(resolve));
    setRequestBodyBudget(DEFAULT_MAX_REQUEST_BODY_BYTES_INFLIGHT);
  });

  function post(bytes: number, chunked = false): Promise<{ status: number; retryAfter?: string; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false, headers: chunked ? {} : { 'content-length': bytes } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body }));
      });
      req.on('error', reject);
      if (chunked) {
        req.write('x'.repeat(bytes / 2));
        setTimeout(() => req.end('x'.repeat(bytes / 2)), 20);
      } else req.end('x'.repeat(bytes));
    });
  }

  async function heldCount(n: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (held.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(held).toHaveLength(n);
  }

  test('a body that does not fit the budget gets 429 TooManyRequests with Retry-After, naming the limit; bytes are counted until the response ends', async () => {
    // GIVEN a body of 600 bytes read and its request not answered yet
    void post(600);
    await heldCount(1);
    expect(requestBodyBudget().inFlightBytes()).toBe(600);

    // WHEN another of 600 bytes comes (declared, then chunked without a length)
    const declared = await post(600);
    const chunked = await post(600, true);

    // THEN both are refused before being buffered, as a Status naming the flag
    for (const answer of [declared, chunked]) {
      expect(answer.status).toBe(429);
      expect(answer.retryAfter).toBe('1');
      expect(JSON.parse(answer.body)).toMatchObject({ kind: 'Status', reason: 'TooManyRequests', code: 429, details: { retryAfterSeconds: 1 } });
    }
    expect(JSON.parse(declared.body).message).toBe('Too many requests: request bodies in flight would pass the limit of 1000 bytes (--max-request-body-bytes-inflight) with its body of 600 bytes, please try again later');
    expect(requestBodyBudget().inFlightBytes()).toBe(600);

    // WHEN the first is answered THEN its bytes are released and the next body fits
    held.shift()!.end();
    const deadline = Date.now() + 10_000;
    while (requestBodyBudget().inFlightBytes() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(requestBodyBudget().inFlightBytes()).toBe(0);
    void post(600, true);
    await heldCount(1);
    expect(requestBodyBudget().inFlightBytes()).toBe(600);
    held.shift()!.end();
  });
});

describe('a watch\'s initial events', () => {
  test('wait for a client that does not read instead of being queued at once: ~10 MiB of them do not close the watch, and the client gets them all once it reads', async () => {
    // GIVEN 100 Flunders of 100 KiB (far more than a watch may queue, 1 MiB, and than the sockets buffer)
    const server = await RegistryServer.start();
    const connections: http.ClientRequest[] = [];
    try {
      const names = Array.from({ length: 100 }, (_, i) => `big-${String(i).padStart(3, '0')}`);
      for (const name of names) expect((await server.post(FLUNDERS, flunder(name, { reference: 'r'.repeat(100 * 1024) }))).status).toBe(201);

      // WHEN a watch from resourceVersion "" (every object as ADDED first) is not read for a while
      const received: Buffer[] = [];
      let ended = false;
      const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.get(`${server.url}${FLUNDERS}?watch=1&timeoutSeconds=30`, { agent: false }, resolve);
        connections.push(req);
        req.on('error', reject);
      });
      response.pause();
      response.on('close', () => (ended = true));
      await new Promise((r) => setTimeout(r, 1000));

      // THEN the watch is still open and, once read, delivers every initial event
      expect(ended).toBe(false);
      response.on('data', (chunk: Buffer) => received.push(chunk));
      response.resume();
      const deadline = Date.now() + 30_000;
      // Whole lines only: the last chunk may end inside an event.
      const lines = () => {
        const text = Buffer.concat(received).toString('utf8');
        return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean);
      };
      const added = () => lines().filter((line) => line.startsWith('{"type":"ADDED"')).length;
      while (added() < 100 && !ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const events = lines().map((line) => JSON.parse(line) as { type: string; object: { metadata: { name: string } } });
      expect(events.filter((e) => e.type === 'ADDED').map((e) => e.object.metadata.name)).toEqual(names);
      expect(ended).toBe(false);
    } finally {
      for (const req of connections) req.destroy();
      await server.close();
    }
  }, 60_000);
});
