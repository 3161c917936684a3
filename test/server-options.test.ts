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
      storage: 'memory',
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
    [['--storage=etcd'], /--storage="etcd" is not a storage backend: expected one of memory/],
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
