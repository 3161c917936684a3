import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * `/healthz`, `/livez` and `/readyz`, answered as k8s.io/apiserver/pkg/server/healthz does:
 * `ok`; `?verbose` lists `[+]<check> ok` lines then `<endpoint> check passed`; a failing check
 * gives 500 with `[-]<check> failed: reason withheld` (the root endpoints are public: no details)
 * then `<endpoint> check failed`; `?exclude=<check>` skips a check; `/<endpoint>/<check>` runs
 * one check and, being explicitly asked for, gives its reason.
 */

/** One named check: undefined when healthy, else the reason. */
export interface HealthCheck {
  readonly name: string;
  check(): string | undefined;
}

export const ping: HealthCheck = { name: 'ping', check: () => undefined };

/** The logger writes asynchronously and never blocks; nothing can wedge it but the process. */
export const log: HealthCheck = { name: 'log', check: () => undefined };

/** A check from a predicate and the reason to give while it is false. */
export function checkOf(name: string, ready: () => boolean, reason: string): HealthCheck {
  return { name, check: () => (ready() ? undefined : reason) };
}

/** A reflector the server lists and watches, named as Go names an informer's type (`*v1.Namespace`). */
export interface SyncedInformer {
  readonly type: string;
  hasSynced(): boolean;
}

/**
 * k8s.io/apiserver's `informer-sync` readiness check (healthz.NewInformerSyncHealthz): ready once
 * every informer of the shared factory (namespaces, the webhook configurations, the policies and
 * bindings) has its first list, so a new replica joins the Service only when admission can answer
 * writes instead of holding them.
 */
export function informerSyncCheck(informers: readonly SyncedInformer[]): HealthCheck {
  return {
    name: 'informer-sync',
    check: () => {
      const notStarted = informers.filter((informer) => !informer.hasSynced()).map((informer) => informer.type);
      return notStarted.length === 0 ? undefined : `${notStarted.length} informers not started yet: [${notStarted.join(' ')}]`;
    },
  };
}

export type HealthEndpoint = 'healthz' | 'livez' | 'readyz';

function plain(res: ServerResponse, code: number, body: string): void {
  res.statusCode = code;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

export class Health {
  constructor(private readonly checks: Readonly<Record<HealthEndpoint, readonly HealthCheck[]>>) {}

  /** Whether `path` is a health endpoint or one of its checks. */
  handles(path: string): boolean {
    const [, endpoint, check, ...rest] = path.split('/');
    if (rest.length > 0 || !(endpoint in this.checks)) return false;
    return check === undefined || check === '' || this.checks[endpoint as HealthEndpoint].some((c) => c.name === check);
  }

  serve(req: IncomingMessage, res: ServerResponse, path: string): void {
    const [, endpoint, name] = path.split('/') as [string, HealthEndpoint, string | undefined];
    const checks = this.checks[endpoint];
    if (name) {
      const reason = checks.find((c) => c.name === name)!.check();
      if (reason === undefined) plain(res, 200, 'ok');
      else plain(res, 500, `internal server error: ${reason}\n`);
      return;
    }
    const query = new URL(req.url ?? '/', 'https://localhost').searchParams;
    const excluded = new Set(query.getAll('exclude').flatMap((e) => e.split(',')));
    let lines = '';
    let failed = false;
    for (const check of checks) {
      if (excluded.delete(check.name)) {
        lines += `[+]${check.name} excluded: ok\n`;
        continue;
      }
      if (check.check() === undefined) {
        lines += `[+]${check.name} ok\n`;
      } else {
        failed = true;
        lines += `[-]${check.name} failed: reason withheld\n`;
      }
    }
    if (excluded.size > 0) lines += `warn: some health checks cannot be excluded: no matches for ${[...excluded].map((e) => `"${e}"`).join(',')}\n`;
    if (failed) {
      plain(res, 500, `${lines}${endpoint} check failed\n`);
      return;
    }
    plain(res, 200, query.has('verbose') ? `${lines}${endpoint} check passed\n` : 'ok');
  }
}
