import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WARDLE } from '../apis';
import type { UserInfo } from '../server/auth/types';
import type { RequestInfo } from '../server/request-info';
import { Server } from '../server/server';
import { makeCa, makeLeaf, makeServerCert } from './support/pki';
import { FakeApiServing, FakeAuth, memoryLogger, request } from './support/shell-fakes';

const GROUP = 'wardle.example.com';

/** Answers `flunders/slow` after a delay: an in-flight request during shutdown. */
class SlowApiServing extends FakeApiServing {
  override async handle(req: IncomingMessage, res: ServerResponse, info: RequestInfo, user: UserInfo): Promise<void> {
    if (info.name === 'slow') {
      await new Promise((resolve) => setTimeout(resolve, 400));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"kind":"Flunder"}');
      return;
    }
    return super.handle(req, res, info, user);
  }
}

test('graceful shutdown: unready at once, serving during the delay, in-flight requests finish, watches end cleanly, listener closed', async () => {
  // GIVEN a server with a watch open
  const dir = mkdtempSync(join(tmpdir(), 'server-shutdown-'));
  const ca = makeCa('serving-ca');
  const clientCa = makeCa('client-ca');
  const admin = makeLeaf(clientCa, { cn: 'admin', organizations: ['system:masters'] });
  const serving = makeServerCert(ca);
  writeFileSync(join(dir, 'tls.crt'), serving.chainPem);
  writeFileSync(join(dir, 'tls.key'), serving.keyPem);
  const auth = new FakeAuth([clientCa.certPem]);
  const apiServing = new SlowApiServing();
  const server = await Server.start({
    api: WARDLE,
    auth,
    apiServing: apiServing as never,
    logger: memoryLogger(),
    bindAddress: '127.0.0.1',
    securePort: 0,
    tlsCertFile: join(dir, 'tls.crt'),
    tlsPrivateKeyFile: join(dir, 'tls.key'),
    shutdownDelayMs: 300,
    shutdownTimeoutMs: 3000,
  });
  const port = server.port;
  const opts = { ca: ca.certPem, cert: admin.chainPem, key: admin.keyPem };
  const watchEnded = new Promise<{ lines: string[]; aborted: boolean }>((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: `/apis/${GROUP}/v1alpha1/namespaces/ns/flunders?watch=1`, ...opts, servername: 'localhost', agent: false }, (res) => {
      let text = '';
      let aborted = false;
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('aborted', () => (aborted = true));
      res.on('close', () => resolve({ lines: text.split('\n').filter(Boolean), aborted }));
    });
    req.on('error', reject);
  });
  for (let i = 0; i < 100 && apiServing.watchCount() === 0; i++) await new Promise((r) => setTimeout(r, 20));
  expect(apiServing.watchCount()).toBe(1);

  // WHEN shutdown begins, with a slow request in flight
  const slow = request(port, `/apis/${GROUP}/v1alpha1/namespaces/ns/flunders/slow`, opts);
  await new Promise((r) => setTimeout(r, 50));
  const stopped = server.shutdown();

  // THEN readiness fails at once while requests are still served during the delay
  const readyz = await request(port, '/readyz?verbose', { ca: ca.certPem });
  expect(readyz.status).toBe(500);
  expect(readyz.body).toContain('[-]shutdown failed: reason withheld\n');
  expect((await request(port, '/livez', { ca: ca.certPem })).status).toBe(200);

  // AND the in-flight request finishes, the watch ends cleanly, and shutdown completes
  expect((await slow).status).toBe(200);
  const watch = await watchEnded;
  expect(watch.aborted).toBe(false);
  expect(JSON.parse(watch.lines[0])).toMatchObject({ type: 'ADDED' });
  await stopped;
  expect(auth.closed).toBe(true);
  await expect(request(port, '/healthz', { ca: ca.certPem })).rejects.toThrow(/ECONNREFUSED/);
  rmSync(dir, { recursive: true, force: true });
});
