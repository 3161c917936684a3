import fc from 'fast-check';
import { UNCHECKED_FORMATS, unsupportedFeatures, VALIDATED_STRING_FORMATS } from '../apis/features';
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

/** kube-openapi's own test cases, as they stand in its tests (strfmt/default_test.go, time_test.go, duration_test.go at d427ff9). */
const B64_TEXT = 'This is a byte array with unprintable chars, but it also isn';
const UPSTREAM_VALID: Readonly<Record<string, readonly string[]>> = {
  hostname: [
    'somewhere.com', '888.com', 'a.com', 'a.b.com', 'a.b.c.com', 'a.b.c.d.com', 'a.b.c.d.e.com', '1.com', '1.2.com', '1.2.3.com', '1.2.3.4.com',
    '99.domain.com', '99.99.domain.com', '1wwworg.example.com', '1000wwworg.example.com', 'xn--bcher-kva.example.com', 'xn-80ak6aa92e.co',
    'xn-80ak6aa92e.com', 'xn--ls8h.la', '☁→❄→☃→☀→☺→☂→☹→✝.ws', 'www.example.onion', 'www.example.ôlà', 'ôlà.ôlà', 'ôlà.ôlà.ôlà', 'ex$ample',
    'localhost', 'example', 'x', 'x-y', 'a.b.c.dot', 'www.example.org', 'a.b.c.d.e.f.g.dot', 'ex=ample.com', '<foo>', 'www.example-hyphenated.org',
    'www.詹姆斯.org', 'www.élégigôö.org', 'www.詹姆斯.london',
  ],
  email: ['somebodyelse@somewhere.com'],
  ipv4: ['192.168.254.1', '127.0.0.1', '192.168.1.1', '192.168.1.01'],
  ipv6: ['::1', '::2'],
  cidr: ['192.168.254.1/24', '192.0.2.1/24', '192.0.02.1/24', '2001:db8:a0b:12f0::1/32'],
  mac: ['01:02:03:04:05:06', '06:05:04:03:02:01'],
  isbn: ['0321751043'],
  isbn10: ['0321751043'],
  isbn13: ['978-0321751041'],
  hexcolor: ['#FFFFFF', '#000000'],
  rgbcolor: ['rgb(255,255,255)', 'rgb(0,0,0)'],
  ssn: ['111-11-1111', '999 99 9999'],
  creditcard: ['4111-1111-1111-1111', '4012-8888-8888-1881'],
  password: ['super secret stuff here', 'even more secret'],
  // base64.URLEncoding of the text (with padding), as the Go test encodes it
  byte: [Buffer.from(B64_TEXT).toString('base64').replace(/\+/g, '-').replace(/\//g, '_')],
  datetime: ['2014-12-15T08:00:00.000Z', '2011-08-18T19:03:37.000+01:00', '2014-12-15T19:30:20.000Z', '0001-01-01T00:00:00.000Z'],
  duration: [
    '0ms', '2ms', '1ns', '1us', '1µs', '1ms', '1s', '1m', '1h', '1hr', '1d', '1w', '1wk', '1nanoseconds', '1nanos', '1microseconds', '1micros', '1millis',
    '1milliseconds', '1second', '1sec', '1min', '1minute', '1hour', '1day', '1week', '1  ns', '1  us', '1  µs', '1  ms', '1  s', '1  m', '1  h', '1  hr',
    '1  d', '1  w', '1  wk', '1  nanoseconds', '1  nanos', '1  microseconds', '1  micros', '1  millis', '1  milliseconds', '1  second', '1  sec', '1  min',
    '1  minute', '1  hour', '1  day', '1  week', '45 weeks', '45 weekz', '12 hours', '12 minutes',
  ],
};
const UPSTREAM_INVALID: Readonly<Record<string, readonly string[]>> = {
  hostname: [
    'somewhere.com!', 'user@email.domain', '1.1.1.1', 'a'.repeat(256), `x.y.${'a'.repeat(64)}`, 'www.example-.org', 'www.--example.org', '-www.example.org',
    'www-.example.org', 'www.d-.org', 'www.-d.org', 'www-', '-www', 'www.ex ample.org', '_www.example.org', 'www.ex;ample.org', 'www.example_underscored.org',
    'www.詹姆斯.x', 'a.b.c.d', '-xyz', 'xyz-', 'x.', 'a.b.c.dot-', 'a.b.c.é;ö',
  ],
  email: ['somebody@somewhere@com'],
  ipv4: ['198.168.254.2.2'],
  ipv6: ['127.0.0.1'],
  cidr: ['198.168.254.2', '2001:db8:a0b:12f0::1'],
  mac: ['01:02:03:04:05'],
  uuid: ['not-a-uuid'],
  uuid3: ['not-a-uuid'],
  uuid4: ['not-a-uuid'],
  uuid5: ['not-a-uuid'],
  isbn: ['836217463'],
  isbn10: ['836217463'],
  isbn13: ['978-0321751042'],
  hexcolor: ['#fffffffz'],
  rgbcolor: ['rgb(300,0,0)'],
  ssn: ['999 99 999'],
  creditcard: ['9999-9999-9999-999'],
  byte: ['ZWxpemFiZXRocG9zZXk'],
  datetime: ['zor', 'zorg', 'zorgTx', '1972-12-31Tx', '1972-12-31T24:40:00.000Z', '1972-12-31T23:63:00.000Z', '1972-12-31T23:59:60.000Z'],
  duration: ['yada', 'three week', '9999999999999999999999999999999999999999999999999999999 weeks', '12 parsecs', '12 y', '45 wekk', '45 weeekks', '12 phours'],
};

describe("kube-openapi's own format test cases give the same verdicts here", () => {
  test.each(Object.entries(UPSTREAM_VALID).flatMap(([format, values]) => values.map((value) => [format, value] as const)))('%s %j is valid', (format, value) => {
    // GIVEN a value upstream's tests call valid WHEN judged THEN valid
    expect(matchesFormat(format, value)).toBe(true);
  });
  test.each(Object.entries(UPSTREAM_INVALID).flatMap(([format, values]) => values.map((value) => [format, value] as const)))('fails %s %j', (format, value) => {
    // GIVEN a value upstream's tests call invalid WHEN judged THEN invalid
    expect(matchesFormat(format, value)).toBe(false);
  });
});

/** Go's own ParseRequestURI cases (net/url url_test.go, parseRequestURLTests): uri is govalidator.IsRequestURI. */
const REQUEST_URI_CASES: readonly [string, boolean][] = [
  ['http://foo.com', true], ['http://foo.com/', true], ['http://foo.com/path', true], ['/', true],
  ['//not.a.user@%66%6f%6f.com/just/a/path/also', true], ['*', true], ['http://192.168.0.1/', true], ['http://192.168.0.1:8080/', true],
  ['http://[fe80::1]/', true], ['http://[fe80::1]:8080/', true], ['http://[fe80::1%25en0]/', true], ['http://[fe80::1%25en0]:8080/', true],
  ['http://[fe80::1%25%65%6e%301-._~]/', true], ['http://[fe80::1%25%65%6e%301-._~]:8080/', true],
  ['foo.html', false], ['../dir/', false], [' http://foo.com', false], ['http://192.168.0.%31/', false], ['http://192.168.0.%31:8080/', false],
  ['http://[fe80::%31]/', false], ['http://[fe80::%31]:8080/', false], ['http://[fe80::%31%25en0]/', false], ['http://[fe80::%31%25en0]:8080/', false],
  ['http://[fe80::1%en0]/', false], ['http://[fe80::1%en0]:8080/', false],
  // and from the parser's code: opaque URIs, ports, userinfo, escapes, control characters
  ['mailto:someone@example.com', true], ['urn:isbn:0451450523', true], ['http://host:port/', false], ['http://us er@host/', false],
  ['http://user:p%41ss@host/', true], ['/a%zz', false], ['http://host/a\nb', false], [':foo', false], ['', false],
];

/**
 * email is strfmt.IsEmail: Go's net/mail.ParseAddress accepts exactly one address. Go's own cases
 * (src/net/mail/message_test.go: TestAddressParsing, TestAddressParsingAndFormatting,
 * TestAddressParsingError, TestAddressFormattingAndParsing's formatted names), then cases read off
 * Go 1.24's parser (groups, comments, domain literals, encoded words).
 */
const EMAIL_VALID: readonly string[] = [
  'jdoe@machine.example', 'John Doe <jdoe@machine.example>', '"Joe Q. Public" <john.q.public@example.com>',
  '=?iso-8859-1?q?J=F6rg_Doe?= <joerg@example.com>', '=?us-ascii?q?J=6Frg_Doe?= <joerg@example.com>', '=?utf-8?q?J=C3=B6rg_Doe?= <joerg@example.com>',
  '=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>', '=?ISO-8859-1?B?SvZyZw==?= <joerg@example.com>', '=?UTF-8?B?SsO2cmc=?= <joerg@example.com>',
  'Asem H. <noreply@example.com>', '"Gø Pher" <gopher@example.com>', 'µ <micro@example.com>', 'Micro <µ@example.com>', 'Micro <micro@µ.example.com>',
  '<Bob@example.com>', '<".bob"@example.com>', '<" "@example.com>', '<"dot.and space"@example.com>', '<admin@mailserver1>',
  "<#!$%&'*+-/=?^_`{}|~@example.org>", '<"very.(),:;<>[]\\".VERY.\\"very@\\\\ \\"very\\".unusual"@strange.example.com>', '<"Abc\\\\@def"@example.com>',
  '<test1/test2=test3@example.com>', '<joe@uk>', '<"john..doe"@example.com>', '<"0:"@0>',
  '=?utf-8?q?B=C3=B6b_Jac=C3=B6b?= <bob@example.com>', '=?utf-8?b?QsO2YiwgSmFjw7Zi?= <bob@example.com>', '"=??Q?x?=" <hello@world.com>',
  // read off the parser
  'a@b (Alice)', 'a@b (=?utf-8?q?J=C3=B6rg?=)', '  a@b  ', 'a@b (one) (two)', 'Team: a@b;', 'Team: <a@b> (c);',
  'Alice (x) Smith <a@b>', 'a@[192.0.2.1]', 'a@[::ffff:192.0.2.1]', 'a@[IPv6:2001:db8::1]', 'a@[IPv6:192.0.2.1]',
  // an unsupported charset after the first word ends the phrase (Go ignores the error once it has a word)
  'Name =?koi8-r?q?x?= <a@b>', '=?utf-8?q?bad=ZZ?= <a@b>', 'a\ud800b@c',
];
const EMAIL_INVALID: readonly string[] = [
  '=?iso-8859-2?Q?Bogl=E1rka_Tak=E1cs?= <unknown@gmail.com>', 'a@gmail.com b@gmail.com', '"\u0000" <null@example.net>', '"\\\u0000" <escaped-null@example.net>',
  '<Abc.example.com>', '<A@b@c@example.com>', '<a"b(c)d,e:f;g<h>i[j\\k]l@example.com>', '<just"not"right@example.com>', '<john..doe@example.com>',
  '<john.doe@example..com>', '<john.doe.@example.com>', '<.john.doe@example.com>', '<@example.com>', '<test@.>', '< @example.com>', '<""@0>',
  '', 'NotAnEmail', '@NotAnEmail', 'not_an_email@somewhere.', 'somebody@somewhere@com',
  // read off the parser
  'Team: ;', 'Team: a@b, c@d;', 'a@b (unclosed', 'a@b (=?koi8-r?q?x?=)', 'Alice <a@b', 'a@[300.0.0.1]', 'a@[2001:db8::1]', 'a@[IPv6:zz]', 'a@[1.2.3.4',
  'a@b\tc', 'a@b\nc', 'Name <a@b> trailing', 'Name =?koi8-r?q?x?= More <a@b>',
];

describe("email: Go's net/mail.ParseAddress verdicts (strfmt.IsEmail)", () => {
  test.each(EMAIL_VALID)('%j is valid', (value) => {
    expect(matchesFormat('email', value)).toBe(true);
  });
  test.each(EMAIL_INVALID)('fails %j', (value) => {
    expect(matchesFormat('email', value)).toBe(false);
  });

  test('any string gets a verdict: the parser neither throws nor loops (property, the characters its grammar turns on)', () => {
    const pieces = fc.constantFrom(...'ab.@<>()[]:;,"\\ \t=?_', 'µ', '=?utf-8?q?x?=', '=?koi8-r?b?eA==?=', 'IPv6:', '::1', '192.0.2.1', '\ud800');
    fc.assert(
      fc.property(fc.array(pieces, { maxLength: 40 }), (parts) => {
        expect(typeof matchesFormat('email', parts.join(''))).toBe('boolean');
      }),
      { numRuns: 3000, seed: 20261204 },
    );
  });

  test('every dot-atom local part @ dot-atom domain is an address, with or without a display name (property)', () => {
    const atom = fc.stringMatching(/^[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,8}$/);
    const dotAtom = fc.array(atom, { minLength: 1, maxLength: 3 }).map((atoms) => atoms.join('.'));
    fc.assert(
      fc.property(dotAtom, dotAtom, fc.stringMatching(/^[A-Za-z]{1,8}( [A-Za-z]{1,8})?$/), (local, domain, name) => {
        expect(matchesFormat('email', `${local}@${domain}`)).toBe(true);
        expect(matchesFormat('email', `${name} <${local}@${domain}>`)).toBe(true);
        expect(matchesFormat('email', `${local}@${domain}@${domain}`)).toBe(false);
      }),
      { numRuns: 500, seed: 20261204 },
    );
  });
});

describe("uri: Go's net/url.ParseRequestURI verdicts", () => {
  test.each(REQUEST_URI_CASES)('%j → %s', (value, valid) => {
    // GIVEN a value from Go's tests WHEN judged as format uri THEN as Go judges it
    expect(matchesFormat('uri', value)).toBe(valid);
  });
});

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
    expect(problems).toEqual([{ reason: 'FieldValueTypeInvalid', field: 'spec.address', message: 'Invalid value: "300.1.1.1": spec.address in body must be of type ipv4: "300.1.1.1"' }]);
  });

  test('a definition may use format email: the server accepts it and refuses a field that is not one address', () => {
    // GIVEN a schema with an email field (refused by the bundled server before Go's net/mail was ported)
    const schema = { type: 'object' as const, properties: { contact: { type: 'string' as const, format: 'email' } } };
    // WHEN validated THEN an address (with a display name) passes, two addresses do not
    expect(unsupportedFeatures({ group: 'x.example.com', kinds: [{ kind: 'T', plural: 'ts', singular: 't', scope: 'Namespaced', versions: [{ name: 'v1', served: true, storage: true, schema }] }] })).toEqual([]);
    expect(validateAgainstSchema({ contact: 'Ops Team <ops@example.com>' }, schema)).toEqual([]);
    expect(validateAgainstSchema({ contact: 'a@example.com, b@example.com' }, schema)).toEqual([
      { reason: 'FieldValueTypeInvalid', field: 'contact', message: 'Invalid value: "a@example.com, b@example.com": contact in body must be of type email: "a@example.com, b@example.com"' },
    ]);
  });

  test('fails a value outside an RE2 Unicode class (\\pL), reading the pattern as Go\'s regexp does', () => {
    // GIVEN a pattern with RE2's one-letter Unicode class (a JS RegExp without the u flag reads \pL as "pL")
    const schema = { type: 'object' as const, properties: { name: { type: 'string' as const, pattern: '^\\pL+$' } } };
    // WHEN validated THEN RE2 semantics apply (\pL is a letter class in RE2, a literal "pL" would be JS's reading)
    expect(validateAgainstSchema({ name: 'Ünïcode' }, schema)).toEqual([]);
    expect(validateAgainstSchema({ name: 'x1' }, schema)).toHaveLength(1);
  });
});
