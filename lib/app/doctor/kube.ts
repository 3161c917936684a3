import * as http from 'node:http';
import * as https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { DoctorUsageError } from './errors';

/**
 * An object as the API server sends it, read field by field without a schema (client-go's
 * unstructured.Unstructured): doctor reads what it finds and words what is missing.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Unstructured = any;

/** An answer of kube-apiserver: the status, the parsed JSON body (or the text), and how long it took. */
export interface KubeResponse {
  readonly status: number;
  readonly body: Unstructured;
  readonly text: string;
  readonly latencyMs: number;
}

/** Where to find the cluster: a kubeconfig file and context, or the defaults (KUBECONFIG, ~/.kube/config, in-cluster). */
export interface KubeTarget {
  readonly kubeconfig?: string;
  readonly context?: string;
  /** Per request. @default 10000 */
  readonly timeoutMs?: number;
}

/**
 * client-node 1.x is ESM only; this package is CommonJS. TypeScript rewrites `import()` to
 * `require()` under "module": "commonjs", which cannot load ESM, so the import is built at run time.
 */
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Unstructured>;

/** The only writes doctor makes: reviews, which ask a question and store nothing. */
const REVIEW_PATHS = new Set(['/apis/authorization.k8s.io/v1/subjectaccessreviews', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews']);

/**
 * A read-only client of kube-apiserver built on client-node's KubeConfig, so that every way a
 * kubeconfig authenticates (tokens, client certificates, exec plugins, in-cluster) works as in
 * kubectl. It refuses any method but GET, and POST of an access review: doctor never changes the cluster.
 */
export class KubeClient {
  static async connect(target: KubeTarget): Promise<KubeClient> {
    const { KubeConfig: KubeConfigClass } = await importEsm('@kubernetes/client-node');
    const config: KubeConfig = new KubeConfigClass();
    if (target.kubeconfig !== undefined) {
      try {
        config.loadFromFile(target.kubeconfig);
      } catch (error) {
        throw new DoctorUsageError(`--kubeconfig "${target.kubeconfig}" cannot be read as a kubeconfig: ${(error as Error).message}`);
      }
    } else {
      try {
        config.loadFromDefault();
      } catch (error) {
        const where = process.env.KUBECONFIG ? `KUBECONFIG "${process.env.KUBECONFIG}"` : 'the default kubeconfig (~/.kube/config)';
        throw new DoctorUsageError(`${where} cannot be loaded: ${(error as Error).message}`);
      }
    }
    if (target.context !== undefined) {
      if (!config.getContextObject(target.context)) {
        const known = config.getContexts().map((context) => context.name);
        throw new DoctorUsageError(`--context "${target.context}" is not in the kubeconfig (its contexts: ${known.length > 0 ? known.join(', ') : 'none'})`);
      }
      config.setCurrentContext(target.context);
    }
    const cluster = config.getCurrentCluster();
    // client-node's last resort when it finds no kubeconfig and no ServiceAccount: kubectl refuses it too.
    if (target.kubeconfig === undefined && !process.env.KUBECONFIG && cluster?.name === 'cluster' && cluster.server === 'http://localhost:8080') {
      throw new DoctorUsageError('no kubeconfig found ($KUBECONFIG is unset, ~/.kube/config does not exist, and this is not a pod with a ServiceAccount token): pass --kubeconfig');
    }
    if (!cluster) throw new DoctorUsageError(`the kubeconfig's current context "${config.getCurrentContext()}" names no cluster: pass --context or --kubeconfig`);
    return new KubeClient(config, cluster.server, target.timeoutMs ?? 10_000);
  }

  private constructor(
    private readonly config: KubeConfig,
    /** The API server's URL, as the kubeconfig gives it. */
    readonly server: string,
    private readonly timeoutMs: number,
  ) {}

  /** Who this kubeconfig names: `<context> (<server>)`. */
  describe(): string {
    return `context "${this.config.getCurrentContext()}" (${this.server})`;
  }

  get(path: string, accept = 'application/json'): Promise<KubeResponse> {
    return this.request('GET', path, undefined, accept);
  }

  /** POSTs an access review (SubjectAccessReview or SelfSubjectAccessReview); nothing else may be posted. */
  review(path: string, body: unknown): Promise<KubeResponse> {
    if (!REVIEW_PATHS.has(path)) throw new Error(`doctor only reads: refusing to POST ${path}`);
    return this.request('POST', path, JSON.stringify(body), 'application/json');
  }

  private async request(method: 'GET' | 'POST', path: string, payload: string | undefined, accept: string): Promise<KubeResponse> {
    const url = new URL(this.server.replace(/\/+$/, '') + path);
    const options: https.RequestOptions = {
      method,
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || (url.protocol === 'https:' ? 443 : 80),
      path: url.pathname + url.search,
      headers: { Accept: accept, 'User-Agent': 'cdk8s-api-extension-doctor', ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      timeout: this.timeoutMs,
    };
    await this.config.applyToHTTPSOptions(options);
    const started = process.hrtime.bigint();
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = (url.protocol === 'http:' ? http : https).request(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
    const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
    let body: Unstructured = undefined;
    try {
      body = JSON.parse(text);
    } catch {
      // a log, or a proxy's plain-text error: the caller reads `text`
    }
    return { status, body, text, latencyMs };
  }
}

/** The message of a metav1.Status body, or the start of the text. */
export function statusMessage(response: KubeResponse): string {
  const message = response.body?.message;
  if (typeof message === 'string' && message !== '') return message;
  return response.text.trim().slice(0, 200) || `HTTP ${response.status}`;
}
