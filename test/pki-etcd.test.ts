import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Chart, Testing } from 'cdk8s';
import {
  createCertificateAuthority,
  ensureEtcdPki,
  EtcdCertificates,
  EtcdCluster,
  EtcdPkiMaterial,
  EtcdPkiMember,
  EtcdPkiOptions,
  issueCertificate,
  splitPemBundle,
} from '../lib';
import { openssl } from './fixtures/pki/openssl';

const T0 = new Date('2031-03-01T00:00:00Z');
const DAY = 24 * 60 * 60 * 1000;
const at = (days: number) => new Date(T0.getTime() + days * DAY);
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function member(i: number): EtcdPkiMember {
  const host = `etcd-${i}.etcd-peer.wardle.svc`;
  return {
    name: `etcd-${i}`,
    serverDnsNames: [host, `${host}.cluster.local`, 'etcd-client', 'etcd-client.wardle', 'etcd-client.wardle.svc', 'etcd-client.wardle.svc.cluster.local', 'localhost'],
    peerDnsNames: [host, `${host}.cluster.local`, 'localhost'],
    ipAddresses: ['127.0.0.1'],
  };
}

let root: string;
let options: EtcdPkiOptions;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'pki-etcd-'));
  options = {
    directory: join(root, 'wardle', 'etcd'),
    caCommonName: 'etcd.wardle etcd CA',
    members: [0, 1, 2].map(member),
    clientCommonName: 'wardle-apiserver',
    certValidityDays: 365,
    caValidityDays: 3650,
    now: T0,
  };
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const files = () => Object.fromEntries(readdirSync(options.directory).map((name) => [name, readFileSync(join(options.directory, name), 'utf8')]));

/** openssl verify of `certPem` for `purpose` (sslserver, sslclient) against the bundle, at `when`, optionally for a host or IP. */
function verify(m: EtcdPkiMaterial, certPem: string, purpose: 'sslserver' | 'sslclient', when: Date, name?: { host?: string; ip?: string }): boolean {
  const check = name?.host !== undefined ? ['-verify_hostname', name.host] : name?.ip !== undefined ? ['-verify_ip', name.ip] : [];
  const result = openssl(['verify', '-CAfile', '{ca.pem}', '-purpose', purpose, ...check, '-attime', String(Math.floor(when.getTime() / 1000)), '{cert.pem}'], {
    'ca.pem': m.caBundlePem,
    'cert.pem': certPem,
  });
  return result.status === 0;
}

describe('ensureEtcdPki', () => {
  test('issues per member a server and a peer certificate that openssl verifies for each of its names, both ways', () => {
    // GIVEN an empty directory WHEN the etcd PKI is ensured
    const m = ensureEtcdPki(options);
    // THEN every member's server certificate verifies for every name clients dial, as server and as client (etcd's gateway dials itself with it)
    for (const [i, { server, peer }] of m.members.entries()) {
      for (const host of member(i).serverDnsNames) expect(verify(m, server.certPem, 'sslserver', T0, { host })).toBe(true);
      expect(verify(m, server.certPem, 'sslserver', T0, { ip: '127.0.0.1' })).toBe(true);
      expect(verify(m, server.certPem, 'sslclient', T0)).toBe(true);
      // AND the peer certificate for the member's names, and as a client of the other members
      for (const host of member(i).peerDnsNames) expect(verify(m, peer.certPem, 'sslserver', T0, { host })).toBe(true);
      expect(verify(m, peer.certPem, 'sslserver', T0, { ip: '127.0.0.1' })).toBe(true);
      expect(verify(m, peer.certPem, 'sslclient', T0)).toBe(true);
      // AND not for another member's or the client Service's name
      expect(verify(m, peer.certPem, 'sslserver', T0, { host: `etcd-${(i + 1) % 3}.etcd-peer.wardle.svc` })).toBe(false);
      expect(verify(m, peer.certPem, 'sslserver', T0, { host: 'etcd-client.wardle.svc' })).toBe(false);
      for (const pem of [server.certPem, peer.certPem]) {
        const x509 = new X509Certificate(pem);
        expect(x509.keyUsage?.sort()).toEqual([SERVER_AUTH, CLIENT_AUTH]);
        expect(x509.subject).toBe(`CN=etcd-${i}`);
      }
    }
    expect(m.actions).toEqual([
      'created CA',
      ...[0, 1, 2].flatMap((i) => [`created server certificate of etcd-${i}`, `created peer certificate of etcd-${i}`]),
      'created client certificate',
    ]);
  });

  test('issues the client certificate for client use only, without names, signed by the etcd CA', () => {
    // GIVEN / WHEN
    const m = ensureEtcdPki(options);
    const client = new X509Certificate(m.client.certPem);
    // THEN it verifies against the etcd CA as a client, never as a server
    expect(verify(m, m.client.certPem, 'sslclient', T0)).toBe(true);
    expect(verify(m, m.client.certPem, 'sslserver', T0)).toBe(false);
    expect(client.keyUsage).toEqual([CLIENT_AUTH]);
    expect(client.subjectAltName).toBeUndefined();
    expect(client.subject).toBe('CN=wardle-apiserver');
    expect(client.verify(new X509Certificate(m.caCertPem).publicKey)).toBe(true);
    // AND the etcd CA is its own (not a serving CA) and a CA
    expect(new X509Certificate(m.caCertPem).subject).toBe('CN=etcd.wardle etcd CA');
    expect(new X509Certificate(m.caCertPem).ca).toBe(true);
  });

  test('keeps keys 0600 in a 0700 directory and hands out no CA key', () => {
    const m = ensureEtcdPki(options);
    expect(statSync(options.directory).mode & 0o777).toBe(0o700);
    const keys = readdirSync(options.directory).filter((name) => name.endsWith('.key'));
    expect(keys.sort()).toEqual(['ca.key', 'client.key', ...[0, 1, 2].flatMap((i) => [`etcd-${i}-peer.key`, `etcd-${i}-server.key`])].sort());
    for (const key of keys) expect(statSync(join(options.directory, key)).mode & 0o777).toBe(0o600);
    const caKeyLines = readFileSync(join(options.directory, 'ca.key'), 'utf8').split('\n').slice(2, -2);
    const handedOut = JSON.stringify(m).replace(/\\n/g, '\n');
    for (const line of caKeyLines) expect(handedOut).not.toContain(line);
  });

  test('gives byte-identical output and writes nothing on the next run', () => {
    // GIVEN a store
    const first = ensureEtcdPki(options);
    const before = files();
    const mtimes = readdirSync(options.directory).map((name) => statSync(join(options.directory, name)).mtimeMs);
    // WHEN ensured again a day later
    const second = ensureEtcdPki({ ...options, now: at(1) });
    // THEN
    expect(second).toEqual({ ...first, actions: second.actions });
    expect(second.actions.every((action) => action.startsWith('reused '))).toBe(true);
    expect(files()).toEqual(before);
    expect(readdirSync(options.directory).map((name) => statSync(join(options.directory, name)).mtimeMs)).toEqual(mtimes);
  });

  test('going from 3 to 5 members issues only the new members\' certificates', () => {
    // GIVEN 3 members
    const three = ensureEtcdPki(options);
    const before = files();
    // WHEN there are 5
    const five = ensureEtcdPki({ ...options, members: [0, 1, 2, 3, 4].map(member) });
    // THEN members 0–2, the client and the CA are reused byte for byte, 3 and 4 are new
    expect(five.actions).toEqual([
      'reused CA',
      ...[0, 1, 2].flatMap((i) => [`reused server certificate of etcd-${i}`, `reused peer certificate of etcd-${i}`]),
      ...[3, 4].flatMap((i) => [`created server certificate of etcd-${i}`, `created peer certificate of etcd-${i}`]),
      'reused client certificate',
    ]);
    expect(five.members.slice(0, 3)).toEqual(three.members);
    expect(five.client).toEqual(three.client);
    const after = files();
    for (const [name, content] of Object.entries(before)) expect(after[name]).toBe(content);
    expect(Object.keys(after).filter((name) => !(name in before)).sort()).toEqual(['etcd-3-peer.crt', 'etcd-3-peer.key', 'etcd-3-server.crt', 'etcd-3-server.key', 'etcd-4-peer.crt', 'etcd-4-peer.key', 'etcd-4-server.crt', 'etcd-4-server.key']);
  });

  test('renews each certificate when a third of its life remains, under the same CA', () => {
    // GIVEN certificates of 300 days
    const first = ensureEtcdPki({ ...options, certValidityDays: 300 });
    // WHEN 199 days later THEN all are reused; at 200 days all are renewed, the CA kept
    expect(ensureEtcdPki({ ...options, certValidityDays: 300, now: at(199) }).actions.every((a) => a.startsWith('reused '))).toBe(true);
    const renewed = ensureEtcdPki({ ...options, certValidityDays: 300, now: at(200) });
    expect(renewed.actions[0]).toBe('reused CA');
    expect(renewed.actions.slice(1)).toEqual([
      ...[0, 1, 2].flatMap((i) => [`renewed server certificate of etcd-${i}: 100 of 300 days left`, `renewed peer certificate of etcd-${i}: 100 of 300 days left`]),
      'renewed client certificate: 100 of 300 days left',
    ]);
    expect(renewed.caBundlePem).toBe(first.caBundlePem);
    expect(renewed.client.certPem).not.toBe(first.client.certPem);
    // AND the old and new certificates both verify (the old ones until they expire)
    expect(verify(renewed, first.client.certPem, 'sslclient', at(200))).toBe(true);
    expect(verify(renewed, renewed.client.certPem, 'sslclient', at(200))).toBe(true);
  });

  test('stages the next CA in the bundle a certificate lifetime before it signs, then rotates to it, keeping the old CA while its certificates live', () => {
    // GIVEN a CA of 400 days and certificates of 100
    const short = { ...options, certValidityDays: 100, caValidityDays: 400 };
    const first = ensureEtcdPki(short);
    expect(ensureEtcdPki({ ...short, now: at(150) }).caBundlePem).toBe(first.caCertPem);
    // WHEN the CA has less than two certificate lifetimes left (day 250; the certificates are renewed too, valid until day 350)
    const staged = ensureEtcdPki({ ...short, now: at(250) });
    // THEN a next CA joins the bundle, but the current CA still signs everything
    expect(staged.actions[0]).toBe('reused CA');
    expect(staged.actions[1]).toMatch(/^staged the next CA "etcd.wardle etcd CA" \(serial [0-9A-F]+\) in the CA bundle: the CA expires at /);
    const [current, next] = splitPemBundle(staged.caBundlePem);
    expect(current).toBe(first.caCertPem);
    expect(new X509Certificate(staged.client.certPem).checkIssued(new X509Certificate(current))).toBe(true);
    expect(statSync(join(options.directory, 'ca-next.key')).mode & 0o777).toBe(0o600);
    expect(ensureEtcdPki({ ...short, now: at(251) }).caBundlePem).toBe(staged.caBundlePem);

    // WHEN at day 310 the CA would not outlive a certificate issued now
    const rotated = ensureEtcdPki({ ...short, now: at(310) });
    // THEN the next CA becomes the CA, every certificate is reissued by it, and the old CA stays while the old certificates live
    expect(rotated.actions[0]).toMatch(/^rotated CA to the next CA "etcd.wardle etcd CA" \(serial [0-9A-F]+\): it expires at /);
    expect(rotated.caCertPem).toBe(next);
    expect(rotated.actions.filter((a) => a.endsWith(': it is not issued by the current CA'))).toHaveLength(7);
    expect(rotated.actions[rotated.actions.length - 1]).toBe(
      `kept retired CA "etcd.wardle etcd CA" (serial ${new X509Certificate(first.caCertPem).serialNumber.toUpperCase()}) in the CA bundle until ${at(350).toISOString()}`,
    );
    expect(rotated.caBundlePem).toBe(next + first.caCertPem);
    expect(readdirSync(options.directory)).not.toContain('ca-next.crt');
    // AND a member not yet restarted (trusting the staged bundle) accepts the new certificates
    expect(verify(staged, rotated.members[0].peer.certPem, 'sslclient', at(310))).toBe(true);
    expect(verify(staged, rotated.members[1].server.certPem, 'sslserver', at(310), { ip: '127.0.0.1' })).toBe(true);
    expect(verify(staged, rotated.client.certPem, 'sslclient', at(310))).toBe(true);
    // AND the new bundle accepts a member still serving its old certificate, and the API server's old client certificate
    expect(verify(rotated, staged.members[0].peer.certPem, 'sslclient', at(310))).toBe(true);
    expect(verify(rotated, staged.client.certPem, 'sslclient', at(310))).toBe(true);

    // WHEN the old certificates have expired THEN the old CA leaves the bundle
    const later = ensureEtcdPki({ ...short, now: at(351) });
    expect(later.actions[later.actions.length - 1]).toMatch(/^dropped retired CA "etcd.wardle etcd CA" \(serial [0-9A-F]+\): no certificate it signed is still valid$/);
    expect(later.caBundlePem).toBe(rotated.caCertPem);
  });

  test('rotates to a new CA at once when none was staged (the CA expired between two runs)', () => {
    const short = { ...options, certValidityDays: 100, caValidityDays: 400 };
    const first = ensureEtcdPki(short);
    const m = ensureEtcdPki({ ...short, now: at(401) });
    expect(m.actions[0]).toBe(`rotated CA: it expired at ${new Date(new X509Certificate(first.caCertPem).validTo).toISOString()}`);
    expect(m.caBundlePem).toBe(m.caCertPem);
  });

  test('renews a certificate whose names changed (e.g. another cluster domain), and only that one', () => {
    ensureEtcdPki(options);
    const moved = { ...member(1), peerDnsNames: ['etcd-1.etcd-peer.wardle.svc', 'etcd-1.etcd-peer.wardle.svc.example.org', 'localhost'] };
    const m = ensureEtcdPki({ ...options, members: [member(0), moved, member(2)] });
    expect(m.actions.filter((a) => !a.startsWith('reused '))).toEqual([
      expect.stringMatching(/^renewed peer certificate of etcd-1: its DNS names \[.*\] differ from \[.*example\.org.*\]$/),
    ]);
  });
});

describe('ensureEtcdPki failures', () => {
  test.each<[string, (o: EtcdPkiOptions) => EtcdPkiOptions, RegExp]>([
    ['no members', (o) => ({ ...o, members: [] }), /members \[\] is empty \(expected at least one etcd member\)/],
    ['a member twice', (o) => ({ ...o, members: [member(0), member(0)] }), /members entry name "etcd-0" appears twice/],
    ['a member named like a store file', (o) => ({ ...o, members: [{ ...member(0), name: 'client' }] }), /members entry name "client" is not valid/],
    ['a member name that is no DNS label', (o) => ({ ...o, members: [{ ...member(0), name: 'Etcd_0' }] }), /members entry name "Etcd_0" is not valid/],
    ['a member without server names', (o) => ({ ...o, members: [{ ...member(0), serverDnsNames: [] }] }), /members entry "etcd-0" serverDnsNames \[\] is empty/],
    ['a bad IP address', (o) => ({ ...o, members: [{ ...member(0), ipAddresses: ['127.0.0.256'] }] }), /ipAddresses entry "127.0.0.256" is not an IP address/],
    ['a CA that does not outlive the certificates', (o) => ({ ...o, caValidityDays: 300, certValidityDays: 365 }), /caValidityDays 300 is not greater than certValidityDays 365/],
    ['an empty client common name', (o) => ({ ...o, clientCommonName: '' }), /clientCommonName "" is not a valid common name/],
  ])('fails for %s', (_, change, message) => {
    expect(() => ensureEtcdPki(change(options))).toThrow(message);
  });

  test('fails on a certificate file it cannot read, naming it, and writes nothing', () => {
    // GIVEN a store whose peer certificate was damaged
    ensureEtcdPki(options);
    const damaged = join(options.directory, 'etcd-1-peer.crt');
    writeFileSync(damaged, 'not a certificate');
    const before = files();
    // WHEN / THEN
    expect(() => ensureEtcdPki(options)).toThrow(`${damaged} is not a PEM certificate`);
    expect(files()).toEqual(before);
  });

  test('fails to issue a serverAuth certificate without any name', () => {
    const ca = createCertificateAuthority({ commonName: 'ca', validityDays: 10, now: T0 });
    expect(() => issueCertificate({ ca, commonName: 'x', extendedKeyUsages: ['serverAuth'], validityDays: 1, now: T0 })).toThrow(/has no dnsNames or ipAddresses/);
    expect(() => issueCertificate({ ca, commonName: 'x', extendedKeyUsages: [], validityDays: 1, now: T0 })).toThrow(/extendedKeyUsages \[\] is not valid/);
  });
});

describe('EtcdCertificates.selfSigned through the construct', () => {
  test('keeps the etcd PKI in <pkiDirectory>/<namespace>/<name>, apart from the serving PKI, and synthesizes the same bytes twice', () => {
    // GIVEN a PKI directory WHEN an EtcdCluster is synthesized twice
    const pkiDirectory = join(root, '.pki');
    const synthYaml = () => {
      const chart = new Chart(Testing.app(), 'test');
      const cluster = new EtcdCluster(chart, 'etcd', {
        namespace: 'wardle',
        name: 'wardle-apiserver-etcd',
        replicas: 1,
        clientPodLabels: { app: 'x' },
        certificates: EtcdCertificates.selfSigned({ pkiDirectory }),
      });
      return { yaml: JSON.stringify(Testing.synth(chart)), cluster };
    };
    const first = synthYaml();
    const second = synthYaml();
    // THEN
    expect(second.yaml).toBe(first.yaml);
    expect(first.cluster.pkiActions[0]).toBe('created CA');
    expect(second.cluster.pkiActions.every((a) => a.startsWith('reused '))).toBe(true);
    expect(readdirSync(join(pkiDirectory, 'wardle', 'wardle-apiserver-etcd', 'cluster.local'))).toContain('ca.key');
    // AND no line of the CA key is in a Secret (the first line is skipped: every PKCS#8 RSA key starts alike)
    const decoded = (JSON.parse(first.yaml) as Array<{ kind: string; data?: Record<string, string> }>)
      .filter((o) => o.kind === 'Secret')
      .flatMap((o) => Object.values(o.data ?? {}).map((v) => Buffer.from(v, 'base64').toString('utf8')))
      .join('\n');
    const caKeyLines = readFileSync(join(pkiDirectory, 'wardle', 'wardle-apiserver-etcd', 'cluster.local', 'ca.key'), 'utf8').split('\n').slice(2, -2);
    expect(caKeyLines.length).toBeGreaterThan(10);
    for (const line of caKeyLines) expect(decoded).not.toContain(line);
    // AND the synth summary gets member, client and CA certificates
    expect(first.cluster.certificatePems).toHaveLength(4);
  });
});
