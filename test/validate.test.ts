import { _checkCronSchedule, _checkImageReference, _quantityValue } from '../lib/_validate';
import { parseSynthOptions, UsageError } from '../lib/app/options';
import { EtcdCertificates } from '../lib/etcd-certificates';
import { EtcdCluster, MAX_ETCD_OBJECT_NAME_LENGTH, MIN_ETCD_STORAGE_BYTES } from '../lib/etcd-cluster';
import { Storage } from '../lib/storage';
import { newChart } from './constructs/_fixtures';

// What Kubernetes accepts as a CronJob's spec.schedule on create: robfig/cron v3's ParseStandard
// (cases after its parser_test.go) and no "TZ" anywhere (pkg/apis/batch/validation).
const ACCEPTED_SCHEDULES = [
  '0 3 * * *',
  '* * * * *',
  '*/15 * * * *',
  '5/15 * * * *',
  '0-59/10 0-23 1-31 1-12 0-6',
  '0 0 * * mon-fri',
  '0 0 1 jan,Apr,JUL,oct *',
  '0 0 ? * SUN',
  '? ? ? ? ?',
  '1,2,3 4 5 6 0',
  '  0 3 * * *  ',
  '0\t3 * * *',
  '+5 +3 * * *',
  '05 03 * * *',
  '*-5 * * * *',
  '*/61 * * * *',
  '1,,2 * * * *',
  ',5 * * * *',
  '@yearly',
  '@annually',
  '@monthly',
  '@weekly',
  '@daily',
  '@midnight',
  '@hourly',
  '@every 1h30m',
  '@every 5m',
  '@every 1.5h',
  '@every 0',
  '@every -5m',
];

const REFUSED_SCHEDULES: readonly [string, RegExp][] = [
  ['', /it is empty/],
  ['   ', /it has 0 fields/],
  ['0 3 *', /it has 3 fields/],
  ['0 0 3 * * *', /it has 6 fields/],
  ['0 0 3 * * * 2030', /it has 7 fields/],
  ['61 * * * *', /the minute "61" is not from 0 to 59/],
  ['* 24 * * *', /the hour "24" is not from 0 to 23/],
  ['* * 0 * *', /the day of month "0" is not from 1 to 31/],
  ['* * * 13 *', /the month "13" is not from 1 to 12/],
  ['* * * * 7', /the day of week "7" is not from 0 to 6/],
  ['* * * * mon-7', /the day of week "mon-7" is not from 0 to 6/],
  ['5-1 * * * *', /the minute range "5-1" runs backwards/],
  ['*/0 * * * *', /step in "\*\/0" is 0/],
  ['*/-1 * * * *', /step "-1" is not a number/],
  ['1/2/3 * * * *', /more than one "\/"/],
  ['1-2-3 * * * *', /more than one "-"/],
  ['-5 * * * *', /the minute "" is not a number/],
  [', * * * *', /the minute field "," has no value/],
  ['jan * * * *', /the minute "jan" is not a number/],
  ['* * * mon *', /the month "mon" is not a number or a name/],
  ['* * L * *', /the day of month "L" is not a number/],
  ['* * * * 1#2', /the day of week "1#2" is not a number/],
  ['* * 15W * *', /the day of month "15W" is not a number/],
  ['@often', /"@often" is not a known macro/],
  ['@DAILY', /"@DAILY" is not a known macro/],
  ['@daily ', /"@daily " is not a known macro/],
  [' @daily', /it has 1 field/],
  ['@every', /"@every" is not a known macro/],
  ['@every 5', /"5" is not a duration/],
  ['@every 1d', /"1d" is not a duration/],
  ['@every 9999999999h', /longer than a Go duration holds/],
  ['CRON_TZ=UTC 0 3 * * *', /Kubernetes refuses TZ= and CRON_TZ=/],
  ['TZ=Europe/Paris @daily', /Kubernetes refuses TZ= and CRON_TZ=/],
];

describe('_checkCronSchedule: what the Kubernetes API accepts as a CronJob schedule', () => {
  test.each(ACCEPTED_SCHEDULES)('accepts %j', (schedule) => {
    // GIVEN a schedule robfig/cron's ParseStandard parses WHEN checked THEN it passes unchanged
    expect(_checkCronSchedule('schedule', schedule)).toBe(schedule);
  });

  test.each(REFUSED_SCHEDULES)('fails for %j', (schedule, why) => {
    // GIVEN a schedule the API refuses WHEN checked THEN the error names the prop, the value, why and what is expected
    expect(() => _checkCronSchedule('backupSchedule', schedule)).toThrow(why);
    expect(() => _checkCronSchedule('backupSchedule', schedule)).toThrow(`backupSchedule ${JSON.stringify(schedule)} is not a cron schedule: `);
    expect(() => _checkCronSchedule('backupSchedule', schedule)).toThrow(/\(expected 5 fields "minute hour day-of-month month day-of-week", e\.g\. "0 3 \* \* \*", or one of @yearly/);
  });

  test('every minute, hour, day, month and weekday in range is accepted, and the first value past each end is refused', () => {
    // GIVEN each field's bounds WHEN every single value from one below to one above is checked THEN exactly the bounds pass
    const bounds = [
      [0, 59],
      [0, 23],
      [1, 31],
      [1, 12],
      [0, 6],
    ];
    bounds.forEach(([min, max], field) => {
      for (let value = Math.max(0, min - 1); value <= max + 1; value++) {
        const fields = ['*', '*', '*', '*', '*'];
        fields[field] = String(value);
        const check = () => _checkCronSchedule('schedule', fields.join(' '));
        if (value >= min && value <= max) expect(check).not.toThrow();
        else expect(check).toThrow(/is not from/);
      }
    });
  });
});

describe('_quantityValue: the Kubernetes quantity grammar', () => {
  test.each<[string, number]>([
    ['1Gi', 2 ** 30],
    ['512Mi', 512 * 2 ** 20],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['2G', 2e9],
    ['500M', 5e8],
    ['1k', 1000],
    ['1073741824', 2 ** 30],
    ['1e9', 1e9],
    ['1E3', 1000],
    ['1E', 1e18],
    ['.5Gi', 2 ** 29],
    ['1.Gi', 2 ** 30],
    ['+1Gi', 2 ** 30],
    ['1500m', 2],
    ['0', 0],
  ])('%s is %d', (text, value) => {
    // GIVEN a quantity Kubernetes parses WHEN read THEN its value in the base unit, rounded up
    expect(_quantityValue('size', text)).toBe(value);
  });

  test.each(['1GB', '1gi', '1 Gi', 'Gi', '', '1K', '1e', '1e1.5', '1Gi1', '1..5Gi', '.Gi', '0x10'])('fails for %j', (text) => {
    // GIVEN text that is no quantity WHEN read THEN the error names the prop, the value and what is expected
    expect(() => _quantityValue('storageSize', text)).toThrow(`storageSize ${JSON.stringify(text)} is not a Kubernetes quantity (expected a number with an optional suffix, e.g. "1Gi"`);
  });
});

describe('_checkImageReference', () => {
  test.each(['', ' ', 'etcd 3.5', 'etcd\t3.5', 'registry.k8s.io/etcd:3.5\n'])('fails for %j', (image) => {
    expect(() => _checkImageReference('image', image, 'registry.k8s.io/etcd:3.5.21-0')).toThrow(`image ${JSON.stringify(image)} is not a valid image reference (expected e.g. "registry.k8s.io/etcd:3.5.21-0", no spaces)`);
  });

  test('accepts a reference with a registry port and a digest', () => {
    const image = `registry.example.com:5000/etcd@sha256:${'a'.repeat(64)}`;
    expect(_checkImageReference('image', image, 'x')).toBe(image);
  });
});

/**
 * The CLI and the constructs share their checks: whatever one refuses the other refuses, and the
 * CLI's message is the construct's with the flag where the construct names its prop.
 */
describe('the CLI refuses exactly what EtcdCluster and Storage refuse', () => {
  // Values are given as --flag=value: yargs would read a value starting with "-" as a flag.
  const cliError = (argv: string[]): string | undefined => {
    try {
      parseSynthOptions(argv);
      return undefined;
    } catch (error) {
      expect(error).toBeInstanceOf(UsageError);
      return (error as Error).message;
    }
  };
  const constructError = (props: Record<string, unknown>): string | undefined => {
    try {
      // cert-manager certificates: nothing touches a PKI directory
      new EtcdCluster(newChart(), 'etcd', { namespace: 'wardle', name: 'wardle-apiserver-etcd', clientPodLabels: { app: 'wardle' }, certificates: EtcdCertificates.certManager(), ...props });
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  };

  test.each([...ACCEPTED_SCHEDULES.filter((s) => s.trim() !== ''), ...REFUSED_SCHEDULES.map(([s]) => s)])('--etcd-backup-schedule and backupSchedule agree on %j', (schedule) => {
    // GIVEN one schedule WHEN given to the CLI and to the construct THEN both accept it, or both refuse it with the same reason
    const cli = cliError([`--etcd-backup-schedule=${schedule}`]);
    const construct = constructError({ backupSchedule: schedule });
    expect(cli === undefined).toBe(construct === undefined);
    if (cli !== undefined) expect(cli).toBe(construct!.replace(/^backupSchedule /, '--etcd-backup-schedule '));
  });

  test.each(['1Gi', '512Mi', '511Mi', '0', '536870912', '536870911', '1GB', '0.5Gi', '1e9', '-1Gi'])('--etcd-storage-size and storageSize agree on %j', (size) => {
    const cli = cliError([`--etcd-storage-size=${size}`]);
    const construct = constructError({ storageSize: size });
    expect(cli === undefined).toBe(construct === undefined);
    if (cli !== undefined) expect(cli).toBe(construct!.replace(/^storageSize /, '--etcd-storage-size '));
  });

  test.each([0, 1, 2, 3, 4, 5, 6, 7])('--etcd-replicas and replicas agree on %d', (replicas) => {
    const cli = cliError(['--etcd-replicas', String(replicas)]);
    const construct = constructError({ replicas });
    expect(cli === undefined).toBe(construct === undefined);
    if (cli !== undefined) expect(cli).toBe(construct!.replace(/^replicas /, '--etcd-replicas '));
  });

  test.each(['etcd 3.5', ' ', 'registry.k8s.io/etcd:3.5.21-0'])('--etcd-image and image agree on %j', (image) => {
    const cli = cliError(['--etcd-image', image]);
    const construct = constructError({ image });
    expect(cli === undefined).toBe(construct === undefined);
    if (cli !== undefined) expect(cli).toBe(construct!.replace(/^image /, '--etcd-image '));
  });

  test.each(['https://etcd:2379', 'http://etcd:2379', 'https://etcd', 'https://etcd:2379/path', 'https://user:pw@etcd:2379', 'https://etcd:2379?x=1', 'etcd:2379', 'not a url'])(
    '--etcd-servers and servers agree on %j',
    (server) => {
      const cli = cliError(['--storage', 'external-etcd', '--etcd-servers', server, '--etcd-ca-file', 'ca', '--etcd-cert-file', 'c', '--etcd-key-file', 'k']);
      let construct: string | undefined;
      try {
        Storage.externalEtcd({ servers: [server], secretName: 'etcd-client' });
      } catch (error) {
        construct = (error as Error).message;
      }
      expect(cli === undefined).toBe(construct === undefined);
      if (cli !== undefined) expect(cli).toBe(construct!.replace(/^servers /, '--etcd-servers '));
    },
  );

  test('the CLI refuses a --name whose etcd StatefulSet name the construct would refuse', () => {
    // GIVEN the longest --name the CLI takes with --storage etcd WHEN the etcd cluster is named after it THEN the construct takes it too
    const longest = `a${'b'.repeat(MAX_ETCD_OBJECT_NAME_LENGTH - '-etcd'.length - 1)}`;
    expect(cliError(['--name', longest])).toBeUndefined();
    expect(constructError({ name: `${longest}-etcd` })).toBeUndefined();
    expect(cliError(['--name', `${longest}b`])).toMatch(/is too long for --storage etcd/);
    expect(constructError({ name: `${longest}b-etcd` })).toMatch(/characters long \(expected at most 52/);
    expect(MIN_ETCD_STORAGE_BYTES).toBe(512 * 2 ** 20);
  });
});
