import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OptionsError, parseCommandLine, parseDuration, ServerConfig } from '../server/options';

let dir: string;
let cert: string;
let key: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'server-options-'));
  cert = join(dir, 'tls.crt');
  key = join(dir, 'tls.key');
  writeFileSync(cert, 'cert');
  writeFileSync(key, 'key');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function config(...args: string[]): ServerConfig {
  const result = parseCommandLine([`--tls-cert-file=${cert}`, `--tls-private-key-file=${key}`, ...args]);
  if (result.kind !== 'run') throw new Error(`expected a run config, got ${result.kind}`);
  return result.config;
}

describe('parseDuration', () => {
  test.each([
    ['10s', 10_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1.5h', 5_400_000],
    ['0', 0],
    ['0s', 0],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each(['10', 's', '10 s', '-1s', '1d', ''])('fails for %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('parseCommandLine', () => {
  test('defaults match the Go apiservers', () => {
    // WHEN
    const c = config();

    // THEN
    expect(c).toEqual({
      securePort: 10250,
      bindAddress: '0.0.0.0',
      tlsCertFile: cert,
      tlsPrivateKeyFile: key,
      kubeconfig: undefined,
      auth: {
        authenticationKubeconfig: undefined,
        authorizationKubeconfig: undefined,
        authenticationSkipLookup: false,
        clientCaFile: undefined,
        requestheaderClientCaFile: undefined,
        requestheaderUsernameHeaders: undefined,
        requestheaderUidHeaders: undefined,
        requestheaderGroupHeaders: undefined,
        requestheaderExtraHeadersPrefix: undefined,
        requestheaderAllowedNames: undefined,
        authenticationTokenCacheTtlSeconds: 10,
        authorizationAllowedCacheTtlSeconds: 10,
        authorizationDeniedCacheTtlSeconds: 10,
        alwaysAllowPaths: ['/healthz', '/readyz', '/livez'],
        alwaysAllowGroups: ['system:masters'],
      },
      shutdownDelayMs: 5000,
      shutdownTimeoutMs: 20000,
      logLevel: 'info',
      storage: { backend: 'memory', quotaBytes: 16 * 1024 * 1024 },
      maxRequestBodyBytesInflight: 8 * 1024 * 1024,
      flowControl: { maxRequestsInflight: 400, maxMutatingRequestsInflight: 200, requestTimeoutMs: 60_000 },
      minRequestTimeoutSeconds: 1800,
      admissionPlugins: ['NamespaceLifecycle', 'MutatingAdmissionWebhook', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionWebhook', 'BanFlunder'],
      ignoredFlags: [],
    });
  });

  test('reads every flag, comma lists and repeated flags, in both --flag=value and --flag value forms', () => {
    // WHEN
    const c = config(
      '--secure-port', '8443',
      '--bind-address=127.0.0.1',
      `--kubeconfig=${cert}`,
      `--authorization-kubeconfig=${key}`,
      '--authentication-skip-lookup',
      `--client-ca-file=${cert}`,
      `--requestheader-client-ca-file=${key}`,
      '--requestheader-username-headers=X-Remote-User,X-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-group-headers=X-Group',
      '--requestheader-uid-headers=X-Remote-Uid',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      '--requestheader-allowed-names=front-proxy-client,aggregator',
      '--authentication-token-webhook-cache-ttl=1m',
      '--authorization-webhook-cache-authorized-ttl=30s',
      '--authorization-webhook-cache-unauthorized-ttl=2s',
      '--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics',
      '--shutdown-delay-duration=0s',
      '--log-level=debug',
      '--storage=memory',
    );

    // THEN
    expect(c.securePort).toBe(8443);
    expect(c.bindAddress).toBe('127.0.0.1');
    expect(c.kubeconfig).toBe(cert);
    expect(c.shutdownDelayMs).toBe(0);
    expect(c.logLevel).toBe('debug');
    expect(c.auth).toMatchObject({
      authenticationKubeconfig: cert, // completed from --kubeconfig
      authorizationKubeconfig: key,
      authenticationSkipLookup: true,
      clientCaFile: cert,
      requestheaderClientCaFile: key,
      requestheaderUsernameHeaders: ['X-Remote-User', 'X-User'],
      requestheaderGroupHeaders: ['X-Remote-Group', 'X-Group'],
      requestheaderUidHeaders: ['X-Remote-Uid'],
      requestheaderExtraHeadersPrefix: ['X-Remote-Extra-'],
      requestheaderAllowedNames: ['front-proxy-client', 'aggregator'],
      authenticationTokenCacheTtlSeconds: 60,
      authorizationAllowedCacheTtlSeconds: 30,
      authorizationDeniedCacheTtlSeconds: 2,
      alwaysAllowPaths: ['/healthz', '/readyz', '/livez', '/metrics'],
    });
  });

  test('--help and --version print instead of running', () => {
    const help = parseCommandLine(['--help']);
    expect(help.kind).toBe('help');
    expect(help.kind === 'help' && help.text).toContain('--requestheader-allowed-names');
    expect(parseCommandLine(['--version'])).toEqual({ kind: 'version', text: expect.stringMatching(/^v\d+\.\d+\.\d+/) });
  });

  test.each([
    [['--secure-port=70000'], /--secure-port=70000 is not a port: expected an integer from 1 to 65535/],
    [['--secure-port=abc'], /--secure-port=abc is not a port/],
    [['--bind-address=localhost'], /--bind-address="localhost" is not an IP address/],
    [['--authentication-token-webhook-cache-ttl=10'], /--authentication-token-webhook-cache-ttl="10" is not a duration: expected a number with a unit, e.g. 10s/],
    [['--shutdown-delay-duration=soon'], /--shutdown-delay-duration="soon" is not a duration/],
    [['--log-level=loud'], /--log-level="loud" is not a level: expected one of fatal, error, warn, info, debug, trace, silent/],
    [['--storage=sqlite'], /--storage="sqlite" is not a storage backend: expected one of memory, etcd/],
    [['--client-ca-file=/nonexistent/ca.crt'], /--client-ca-file="\/nonexistent\/ca.crt" cannot be read: ENOENT; expected a readable file/],
    [['--authorization-always-allow-paths=healthz'], /--authorization-always-allow-paths contains "healthz": expected absolute paths/],
    [['--no-such-flag'], /Unknown argument: no-such-flag/],
    [['serve'], /Unknown argument: serve/],
  ])('fails for %j', (args, message) => {
    expect(() => config(...args)).toThrow(OptionsError);
    expect(() => config(...args)).toThrow(message);
  });

  test('fails without the serving certificate, naming the flag', () => {
    expect(() => parseCommandLine([`--tls-private-key-file=${key}`])).toThrow(/--tls-cert-file is required/);
    expect(() => parseCommandLine([`--tls-cert-file=${cert}`])).toThrow(/--tls-private-key-file is required/);
  });
});

describe('storage flags', () => {
  test('without etcd flags the storage is memory', () => {
    expect(config().storage).toEqual({ backend: 'memory', quotaBytes: 16 * 1024 * 1024 });
    expect(config('--storage=memory').storage).toEqual({ backend: 'memory', quotaBytes: 16 * 1024 * 1024 });
  });

  test('--etcd-servers alone chooses etcd with the Go apiservers\' defaults', () => {
    // WHEN sample-apiserver's Deployment flag is the only storage flag
    const c = config('--etcd-servers=http://localhost:2379');

    // THEN
    expect(c.storage).toEqual({
      backend: 'etcd',
      servers: ['http://localhost:2379'],
      prefix: '/registry/wardle.example.com',
      caFile: undefined,
      certFile: undefined,
      keyFile: undefined,
      compactionIntervalMs: 300_000,
      healthcheckTimeoutMs: 2000,
    });
  });

  test('reads every etcd flag: comma lists and repeats, TLS files, durations', () => {
    // GIVEN PEM files (only their readability is checked here)
    const ca = join(dir, 'etcd-ca.crt');
    const clientCert = join(dir, 'etcd-client.crt');
    const clientKey = join(dir, 'etcd-client.key');
    for (const file of [ca, clientCert, clientKey]) writeFileSync(file, 'pem');

    // WHEN
    const c = config(
      '--storage=etcd',
      '--etcd-servers=https://etcd-0.etcd:2379,https://etcd-1.etcd:2379',
      '--etcd-servers', 'https://10.0.0.3:2379/',
      '--etcd-prefix=/registry/custom/',
      `--etcd-cafile=${ca}`,
      `--etcd-certfile=${clientCert}`,
      `--etcd-keyfile=${clientKey}`,
      '--etcd-compaction-interval=0',
      '--etcd-healthcheck-timeout=500ms',
    );

    // THEN URLs are normalized to their origin and the prefix loses its trailing slash
    expect(c.storage).toEqual({
      backend: 'etcd',
      servers: ['https://etcd-0.etcd:2379', 'https://etcd-1.etcd:2379', 'https://10.0.0.3:2379'],
      prefix: '/registry/custom',
      caFile: ca,
      certFile: clientCert,
      keyFile: clientKey,
      compactionIntervalMs: 0,
      healthcheckTimeoutMs: 500,
    });
  });

  test('accepts the flags sample-apiserver\'s Deployments pass and lists those it ignores', () => {
    // WHEN the arguments of sample-apiserver's e2e Deployment (test/e2e/apimachinery/aggregator.go)
    const c = config('--etcd-servers=http://localhost:2379', '--audit-log-path=-', '--audit-log-maxage=0', '--audit-log-maxbackup=0', '-v=5');

    // THEN (the audit flags are read: test/audit.test.ts)
    expect(c.storage.backend).toBe('etcd');
    expect(c.audit?.logPath).toBe('-');
    expect(c.ignoredFlags).toEqual(['--v=5']);
  });

  test('memory bounds: --storage-quota-bytes (memory storage) and --max-request-body-bytes-inflight (0: no limit)', () => {
    // WHEN / THEN
    expect(config('--storage-quota-bytes=1048576').storage).toEqual({ backend: 'memory', quotaBytes: 1048576 });
    expect(config('--max-request-body-bytes-inflight=3145728').maxRequestBodyBytesInflight).toBe(3145728);
    expect(config('--max-request-body-bytes-inflight=0').maxRequestBodyBytesInflight).toBe(0);
    const help = parseCommandLine(['--help']);
    expect(help.kind === 'help' && help.text).toMatch(/--storage-quota-bytes .*database space exceeded/);
    expect(help.kind === 'help' && help.text).toMatch(/--max-request-body-bytes-inflight .*429/);
  });

  test('--help lists the storage flags', () => {
    const help = parseCommandLine(['--help']);
    for (const flag of ['--storage', '--etcd-servers', '--etcd-prefix', '--etcd-cafile', '--etcd-certfile', '--etcd-keyfile', '--etcd-compaction-interval', '--etcd-healthcheck-timeout']) {
      expect(help.kind === 'help' && help.text).toContain(flag);
    }
  });

  test.each([
    [['--storage=etcd'], /^--storage=etcd needs --etcd-servers: expected the etcd client URLs/],
    [['--storage=etcd', '--etcd-servers='], /^--storage=etcd needs --etcd-servers/],
    [['--storage=memory', '--etcd-servers=http://localhost:2379'], /^--storage=memory and --etcd-servers="http:\/\/localhost:2379" exclude each other/],
    [['--etcd-servers=notaurl'], /^--etcd-servers contains "notaurl", which is not a URL: expected http:\/\/ or https:\/\/ URLs separated by commas, e.g. http:\/\/localhost:2379$/],
    [['--etcd-servers=http://localhost:2379,localhost:2380'], /^--etcd-servers contains "localhost:2380", which is not an http:\/\/ or https:\/\/ URL/],
    [['--etcd-servers=unix:///run/etcd.sock'], /^--etcd-servers contains "unix:\/\/\/run\/etcd.sock", which is not an http:\/\/ or https:\/\/ URL/],
    [['--etcd-servers=http://localhost:99999'], /^--etcd-servers contains "http:\/\/localhost:99999", which is not a URL/],
    [['--etcd-servers=http://localhost:2379/v3?x=1'], /^--etcd-servers contains "http:\/\/localhost:2379\/v3\?x=1", which is not a bare client URL/],
    [['--etcd-servers=http://localhost:2379', '--etcd-prefix=registry'], /^--etcd-prefix="registry" does not start with "\/": expected a key prefix such as \/registry\/wardle.example.com$/],
    [['--etcd-servers=http://localhost:2379', '--etcd-cafile=/nonexistent/ca.crt'], /^--etcd-cafile="\/nonexistent\/ca.crt" cannot be read: ENOENT; expected a readable file$/],
    [['--etcd-servers=http://localhost:2379', '--etcd-certfile=CERT'], /^--etcd-certfile is given without --etcd-keyfile: expected both/],
    [['--etcd-servers=http://localhost:2379', '--etcd-keyfile=KEY'], /^--etcd-keyfile is given without --etcd-certfile: expected both/],
    [['--etcd-cafile=CERT'], /^--etcd-cafile="[^"]+" needs --etcd-servers: without it objects are kept in memory/],
    [['--etcd-servers=http://localhost:2379', '--etcd-compaction-interval=5'], /^--etcd-compaction-interval="5" is not a duration: expected a number with a unit/],
    [['--etcd-servers=http://localhost:2379', '--etcd-healthcheck-timeout=soon'], /^--etcd-healthcheck-timeout="soon" is not a duration/],
    [['--etcd-servers=http://localhost:2379', '--etcd-healthcheck-timeout=0s'], /^--etcd-healthcheck-timeout="0s" is not positive: expected a duration above zero/],
    [['--storage-quota-bytes=lots'], /^--storage-quota-bytes="lots" is not a number of bytes: expected a decimal integer, e.g. 33554432 for 32 MiB$/],
    [['--storage-quota-bytes=0'], /^--storage-quota-bytes=0 is below 1: expected at least 1 bytes$/],
    [['--etcd-servers=http://localhost:2379', '--storage-quota-bytes=1048576'], /^--storage-quota-bytes="1048576" applies to --storage=memory only: etcd enforces its own quota/],
    [['--max-request-body-bytes-inflight=1048576'], /^--max-request-body-bytes-inflight=1048576 is below 3145728: expected at least 3145728 bytes \(or 0 for no limit\)$/],
    [['--max-request-body-bytes-inflight=-1'], /^--max-request-body-bytes-inflight="-1" is not a number of bytes/],
  ])('fails for %j with one line naming the flag and the value', (args, message) => {
    // GIVEN CERT and KEY stand for readable files
    const resolved = args.map((a) => a.replace('CERT', cert).replace('KEY', key));

    // WHEN / THEN
    let error: unknown;
    try {
      config(...resolved);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(OptionsError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
  });
});
