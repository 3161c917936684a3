import { UNCHECKED_FORMATS, VALIDATED_STRING_FORMATS } from '../apis/features';
import { CHECKED_FORMATS, matchesFormat } from '../server/registry/formats';
import { validateAgainstSchema } from '../server/registry/schema';

/**
 * Format verdicts as kube-apiserver gives them for CRD objects. Each expected verdict follows from
 * the Go source named beside it (kube-openapi at d427ff9, pkg/validation/strfmt and
 * pkg/internal/third_party/govalidator; Go's time and net packages; k8s.io/utils/net for the
 * sloppy IPv4 parser). Several rows are the upstream test files' own cases (strfmt/default_test.go,
 * time_test.go, duration_test.go).
 */
const CASES: readonly [format: string, value: string, valid: boolean, why: string][] = [
  // time.go IsDateTime: date before the first "t", then hh:mm:ss[.frac](z|±hh:mm), compared as text.
  ['date-time', '2014-12-15T19:30:20.000Z', true, 'RFC 3339 with millis'],
  ['date-time', '2014-12-15t19:30:20z', true, 'lower case t and z (the string is lower-cased)'],
  ['date-time', '2014-12-15T19:30:20+01:00', true, 'offset'],
  ['date-time', '2014-12-15T19:30:20', false, 'no zone: the clock pattern requires z or an offset'],
  ['date-time', '2014-12-15T24:00:00Z', false, 'hour "24" > "23"'],
  ['date-time', '2014-02-30T10:00:00Z', false, 'IsDate: February has no 30th'],
  ['date-time', '2014-12-15 19:30:20Z', false, 'no "t": one part only'],
  ['datetime', '2014-12-15T19:30:20Z', true, 'normalized name: "-" removed'],
  // date.go IsDate: time.Parse("2006-01-02").
  ['date', '2024-02-29', true, 'leap day'],
  ['date', '2023-02-29', false, 'not a leap year: day out of range'],
  ['date', '2024-1-01', false, 'month must be two digits'],
  ['date', '2024-13-01', false, 'month out of range'],
  // duration.go ParseDuration: Go's time.ParseDuration, else "<n> <unit>" anywhere in the string.
  ['duration', '1h30m', true, 'time.ParseDuration'],
  ['duration', '-1.5h', true, 'sign and fraction'],
  ['duration', '0', true, 'the special "0"'],
  ['duration', '3 days', true, 'Scala-style: last variant "day" is a prefix of "days"'],
  ['duration', 'in 5 weeks', true, 'the matcher is unanchored'],
  ['duration', '1 fortnight', false, 'no unit matches'],
  ['duration', '', false, 'empty'],
  ['duration', '99999999999999999999 s', false, 'strconv.Atoi out of range'],
  // default.go: UUID patterns.
  ['uuid', 'a8098c1a-f86e-11da-bd1a-00112444be1e', true, 'UUIDPattern'],
  ['uuid', 'A8098C1AF86E11DABD1A00112444BE1E', true, 'dashes optional, case-insensitive'],
  ['uuid', 'a8098c1a-f86e-11da-bd1a-00112444be1', false, 'one digit short'],
  ['uuid3', 'bcd02e22-68f0-3046-a512-327cca9def8f', true, 'version 3'],
  ['uuid4', '025b0d74-00a2-4048-bf57-227c5111bb34', true, 'version 4, variant 8-b'],
  ['uuid4', '025b0d74-00a2-4048-cf57-227c5111bb34', false, 'variant c'],
  ['uuid5', '886313e1-3b8a-5372-9b90-0c9aee199e5d', true, 'version 5'],
  // default.go IsHostname.
  ['hostname', 'somewhere.com', true, 'HostnamePattern'],
  ['hostname', 'ex-ample.com', true, 'inner dash'],
  ['hostname', '-example.com', false, 'leading dash'],
  ['hostname', 'www.exa_mple.com', false, 'underscore'],
  ['hostname', `${'a'.repeat(64)}.com`, false, 'label over 63 bytes'],
  // ipv4: ParseIPSloppy (leading zeros allowed) and a '.'.
  ['ipv4', '192.168.254.1', true, 'dotted quad'],
  ['ipv4', '010.0.0.1', true, 'sloppy: leading zeros allowed'],
  ['ipv4', '256.0.0.1', false, 'octet > 255'],
  ['ipv4', '::ffff:10.0.0.1', true, 'an IPv6 text with a "." passes (ParseIPSloppy && contains ".")'],
  // ipv6: net.ParseIP (netip) and a ':'.
  ['ipv6', '::1', true, 'loopback'],
  ['ipv6', '2001:db8::68', true, 'compressed'],
  ['ipv6', 'fe80::1%eth0', false, 'zones refused by net.ParseIP'],
  ['ipv6', '1.2.3.4', false, 'no ":"'],
  ['ipv6', '::ffff:010.0.0.1', false, 'strict: leading zero in the IPv4 tail'],
  ['ipv6', '1:2:3:4:5:6:7:8::', false, ':: must stand for at least one group'],
  // cidr: ParseCIDRSloppy.
  ['cidr', '192.168.0.0/16', true, 'IPv4'],
  ['cidr', '2001:db8::/32', true, 'IPv6'],
  ['cidr', '10.0.0.0/33', false, 'prefix > 32'],
  ['cidr', '10.0.0.0', false, 'no "/"'],
  // mac: net.ParseMAC.
  ['mac', '00:00:5e:00:53:01', true, 'colons'],
  ['mac', '00-00-5E-00-53-01', true, 'dashes'],
  ['mac', '0000.5e00.5301', true, 'dotted'],
  ['mac', '00:00:5e:00:53', false, 'five octets'],
  ['mac', '00:00-5e:00:53:01', false, 'mixed separators'],
  // govalidator (patterns.go, validator.go).
  ['isbn10', '3836221195', true, 'checksum'],
  ['isbn10', '3-8362-2119-5', true, 'dashes dropped'],
  ['isbn10', '3836221194', false, 'bad checksum'],
  ['isbn13', '978-3-8362-2119-1', true, 'checksum'],
  ['isbn13', '9783836221190', false, 'bad checksum'],
  ['isbn', '3836221195', true, 'either'],
  ['creditcard', '4111-1111-1111-1111', true, 'Visa test number, non-digits dropped, Luhn'],
  ['creditcard', '4111111111111112', false, 'Luhn fails'],
  ['ssn', '111-11-1111', true, '11 bytes'],
  ['ssn', '111111111', false, 'not 11 bytes'],
  ['hexcolor', '#FFF', true, 'three digits'],
  ['hexcolor', '#ggg', false, 'not hex'],
  ['rgbcolor', 'rgb(255, 0, 255)', true, 'spaces allowed'],
  ['rgbcolor', 'rgb(256,0,0)', false, '> 255'],
  ['byte', 'aGVsbG8=', true, 'standard base64'],
  ['byte', 'aGVsbG8', false, 'unpadded'],
  ['password', 'anything at all', true, 'never checked'],
  ['bsonobjectid', '507f1f77bcf86cd799439011', true, '12 bytes of hex'],
  ['bsonobjectid', '507f1f77bcf86cd79943901', false, 'odd length'],
  // Accepted unchecked: no checker in strfmt.Default (apiextensions formats.go lists quantity).
  ['quantity', 'not a quantity', true, 'no checker'],
];

describe('string formats (kube-apiserver verdicts)', () => {
  test.each(CASES)('%s %j → %s (%s)', (format, value, valid) => {
    // GIVEN a format and a value WHEN judged THEN as kube-apiserver judges it
    expect(matchesFormat(format, value)).toBe(valid);
  });

  test('the checked formats are exactly the list both sides read (apis/features.ts)', () => {
    // GIVEN the server's checkers and the shared list WHEN compared THEN equal
    expect([...CHECKED_FORMATS].sort()).toEqual([...VALIDATED_STRING_FORMATS].sort());
    expect(UNCHECKED_FORMATS.string).toEqual(['quantity']);
  });

  test('fails an object whose field breaks its format, worded as kube-openapi words it', () => {
    // GIVEN a schema with an ipv4 field WHEN an invalid address is validated
    const schema = { type: 'object' as const, properties: { spec: { type: 'object' as const, properties: { address: { type: 'string' as const, format: 'ipv4' } } } } };
    const problems = validateAgainstSchema({ spec: { address: '300.1.1.1' } }, schema);
    // THEN one TypeInvalid cause naming the field and the format
    expect(problems).toEqual([{ type: 'FieldValueTypeInvalid', field: 'spec.address', message: 'Invalid value: "300.1.1.1": spec.address in body must be of type ipv4: "300.1.1.1"' }]);
  });

  test('fails a value outside an RE2 Unicode class (\\pL), reading the pattern as Go\'s regexp does', () => {
    // GIVEN a pattern with RE2's one-letter Unicode class (a JS RegExp without the u flag reads \pL as "pL")
    const schema = { type: 'object' as const, properties: { name: { type: 'string' as const, pattern: '^\\pL+$' } } };
    // WHEN validated THEN RE2 semantics apply (\pL is a letter class in RE2, a literal "pL" would be JS's reading)
    expect(validateAgainstSchema({ name: 'Ünïcode' }, schema)).toEqual([]);
    expect(validateAgainstSchema({ name: 'x1' }, schema)).toHaveLength(1);
  });
});
