/**
 * The bundled extension API server: flags → config → run, serving `wardle.example.com`.
 * `npm run server -- --help` from a checkout; the image runs the esbuild bundle of this file.
 */
import { setFlagsFromString } from 'node:v8';
import type { Logger } from 'pino';
import { AuditLog } from './audit';
import { configure } from './config';
import { createLogger } from './logging';
import { pinNextTickShape } from './next-tick-shape';
import { OptionsError, parseCommandLine, ServerConfig } from './options';
import { setRequestBodyBudget } from './registry/body';
import { Server } from './server';

/**
 * V8 grows the old generation to a multiple of what survived the last full GC (up to 4× on a
 * small heap) and keeps what it grew: after 10,000 creates on etcd this process held ~195 MiB for
 * ~30 MiB of live objects (the garbage of the writes' gRPC calls and watch events, promoted
 * under load). Growing by 50% keeps it at ~137 MiB (by 10%, ~132 MiB, but with ~17% more CPU per
 * create in full GCs). Set here, not as a node flag, so the image, `npm run server`, the tests and
 * the benchmark all run with it; a --heap-growing-percent given to node wins.
 */
const HEAP_GROWING_PERCENT = 50;
if (!process.execArgv.some((arg) => /^--heap[-_]growing[-_]percent\b/.test(arg))) setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);

// Before any idle time: an idle spell would otherwise leave every later nextTick on V8's slow path.
pinNextTickShape();

/** Options → config (clients, storage, auth, registry, each built once) → a running server. */
async function run(config: ServerConfig, logger: Logger): Promise<Server> {
  setRequestBodyBudget(config.maxRequestBodyBytesInflight);
  const auditLog = config.audit && (await AuditLog.open(config.audit, logger));
  let configured;
  try {
    configured = await configure(config, logger);
  } catch (error) {
    await auditLog?.close();
    throw error;
  }
  // The audit log is flushed and closed last, after the requests it records.
  const onClose = async () => {
    await configured.onClose?.();
    await auditLog?.close();
  };
  try {
    return await Server.start({ ...config, ...configured, onClose, auditLog, logger });
  } catch (error) {
    // Serving could not start (a bad certificate, the port taken): release what configure built.
    configured.auth.close();
    await onClose();
    throw error;
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    process.stderr.write(`Error: ${error.message}\nRun with --help to list the flags.\n`);
    return 1;
  }
  if (parsed.kind !== 'run') {
    process.stdout.write(`${parsed.text}\n`);
    return 0;
  }
  const logger = createLogger(parsed.config.logLevel);
  // Taken from here on: a signal during start-up (waiting for kube-apiserver or etcd, which may
  // never answer) ends the process at once and cleanly, instead of killing it mid-line.
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  let server: Server;
  try {
    const started = await Promise.race([run(parsed.config, logger), signalled]);
    if (typeof started === 'string') {
      logger.info({ signal: started }, 'signal received during start-up; exiting without serving');
      await flush(logger);
      return 0;
    }
    server = started;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    logger.fatal({ err: message }, 'cannot start');
    await flush(logger);
    process.stderr.write(`Error: ${message}\n`);
    return 1;
  }
  const signal = await signalled;
  logger.info({ signal }, 'signal received');
  // A second signal while draining: stop at once, as the Go servers do.
  process.once('SIGTERM', () => process.exit(1));
  process.once('SIGINT', () => process.exit(1));
  await server.shutdown();
  await flush(logger);
  return 0;
}

function flush(logger: Logger): Promise<void> {
  return new Promise((resolve) => logger.flush(() => resolve()));
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`fatal: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
