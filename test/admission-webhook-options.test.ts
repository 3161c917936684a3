/**
 * --enable-admission-plugins and --disable-admission-plugins, checked as upstream's
 * AdmissionOptions.Validate checks them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine } from '../server/options';

let dir: string;
let tls: string[];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'admission-options-'));
  writeFileSync(join(dir, 'tls.crt'), 'cert');
  writeFileSync(join(dir, 'tls.key'), 'key');
  tls = [`--tls-cert-file=${join(dir, 'tls.crt')}`, `--tls-private-key-file=${join(dir, 'tls.key')}`];
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function plugins(...args: string[]): readonly string[] | undefined {
  const result = parseCommandLine([...tls, ...args]);
  if (result.kind !== 'run') throw new Error(`expected a run config, got ${result.kind}`);
  return result.config.admissionPlugins;
}

describe('admission plugin flags', () => {
  test('the webhook and policy plugins are on by default, in upstream order', () => {
    expect(plugins()).toEqual(['NamespaceLifecycle', 'MutatingAdmissionWebhook', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionWebhook', 'BanFlunder']);
  });

  test('--disable-admission-plugins takes plugins out (comma lists and repeated flags)', () => {
    expect(plugins('--disable-admission-plugins=MutatingAdmissionWebhook', '--disable-admission-plugins', 'BanFlunder')).toEqual(['NamespaceLifecycle', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionWebhook']);
    expect(plugins('--disable-admission-plugins=ValidatingAdmissionPolicy,ValidatingAdmissionWebhook')).toEqual(['NamespaceLifecycle', 'MutatingAdmissionWebhook', 'BanFlunder']);
  });

  test('--enable-admission-plugins of a default plugin changes nothing', () => {
    expect(plugins('--enable-admission-plugins=ValidatingAdmissionWebhook,NamespaceLifecycle')).toEqual(['NamespaceLifecycle', 'MutatingAdmissionWebhook', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionWebhook', 'BanFlunder']);
  });

  test.each([
    [['--enable-admission-plugins=PodSecurity'], '--enable-admission-plugins plugin "PodSecurity" is unknown: expected some of NamespaceLifecycle, MutatingAdmissionWebhook, ValidatingAdmissionPolicy, ValidatingAdmissionWebhook, BanFlunder, comma-separated'],
    [['--disable-admission-plugins=mutatingadmissionwebhook'], '--disable-admission-plugins plugin "mutatingadmissionwebhook" is unknown: expected some of'],
    [['--enable-admission-plugins=BanFlunder', '--disable-admission-plugins=BanFlunder'], '[BanFlunder] in enable-admission-plugins and disable-admission-plugins overlapped'],
    [['--disable-admission-plugins=NamespaceLifecycle'], '--disable-admission-plugins plugin "NamespaceLifecycle" cannot be disabled here'],
  ])('fails for %j, naming the flag and the value', (args, message) => {
    expect(() => plugins(...args)).toThrow(message);
  });
});
