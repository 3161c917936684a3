import { RE2JS } from '@bufbuild/re2';
import { isEmail } from './email';
import { dtoi, HEX_VALUE, isDigit, parseIP, parseIPv4, parseIPv6 } from './go-ip';

/**
 * The string formats kube-apiserver checks in CRD objects, ported from their Go sources so the
 * bundled server gives the same verdicts (apis/features.ts lists which formats are checked, which
 * are accepted unchecked, and which are refused):
 * - kube-openapi pkg/validation/strfmt: default.go (hostname, uuid*, the govalidator checkers),
 *   time.go (IsDateTime), date.go (IsDate: time.Parse("2006-01-02")), duration.go (ParseDuration:
 *   Go's time.ParseDuration, else the Scala-style "<n> <unit>" matcher), bson.go (ObjectIDFromHex);
 * - kube-openapi pkg/internal/third_party/govalidator (patterns.go, validator.go); uri is its
 *   IsRequestURI, Go's net/url.ParseRequestURI;
 * - ipv4 and cidr: k8s.io/utils/net ParseIPSloppy / ParseCIDRSloppy (Go 1.16's parser: leading
 *   zeros allowed); ipv6: net.ParseIP (Go ≥ 1.22: netip.ParseAddr without a zone) (go-ip.ts);
 * - email: IsEmail, Go's net/mail.ParseAddress (email.ts).
 * Go works on bytes: the regular expressions run with RE2 semantics (@bufbuild/re2), lengths are
 * UTF-8 byte counts.
 */

/** Compiled on first use: HOSTNAME's Unicode classes alone take ~150 ms at start and keep their tables in memory. */
function re2(pattern: string): { test(text: string): boolean } {
  let compiled: RE2JS | undefined;
  return { test: (text) => (compiled ??= RE2JS.compile(pattern)).test(text) };
}

const HOSTNAME = re2(
  '^([a-zA-Z0-9\\p{S}\\p{L}]((-?[a-zA-Z0-9\\p{S}\\p{L}]{0,62})?)|([a-zA-Z0-9\\p{S}\\p{L}](([a-zA-Z0-9-\\p{S}\\p{L}]{0,61}[a-zA-Z0-9\\p{S}\\p{L}])?)(\\.)){1,}([a-zA-Z0-9\\p{S}\\p{L}])(-?[a-zA-Z0-9\\p{S}\\p{L}]){1,62})$',
);
const UUID = re2('(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$');
const UUID3 = re2('(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$');
const UUID4 = re2('(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$');
const UUID5 = re2('(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$');
const CREDIT_CARD = re2('^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\\d{3})\\d{11})$');
const ISBN10 = re2('^(?:[0-9]{9}X|[0-9]{10})$');
const ISBN13 = re2('^(?:[0-9]{13})$');
const HEX_COLOR = re2('^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$');
const RGB_COLOR = re2('^rgb\\(\\s*(0|[1-9]\\d?|1\\d\\d?|2[0-4]\\d|25[0-5])\\s*,\\s*(0|[1-9]\\d?|1\\d\\d?|2[0-4]\\d|25[0-5])\\s*,\\s*(0|[1-9]\\d?|1\\d\\d?|2[0-4]\\d|25[0-5])\\s*\\)$');
const BASE64 = re2('^(?:[A-Za-z0-9+\\/]{4})*(?:[A-Za-z0-9+\\/]{2}==|[A-Za-z0-9+\\/]{3}=|[A-Za-z0-9+\\/]{4})$');
const SSN = re2('^\\d{3}[- ]?\\d{2}[- ]?\\d{4}$');
/** time.go's DateTimePattern; Go's `.` is any character but a newline (JS's would also refuse \r, U+2028, U+2029). */
const DATE_TIME_CLOCK = /^([0-9]{2}):([0-9]{2}):([0-9]{2})([^\n][0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$/u;

const byteLength = (s: string) => Buffer.byteLength(s, 'utf8');

/** IsHostname: the pattern, at most 255 bytes, labels at most 63 bytes. */
function isHostname(s: string): boolean {
  return HOSTNAME.test(s) && byteLength(s) <= 255 && s.split('.').every((label) => byteLength(label) <= 63);
}

/** govalidator.IsCreditCard: the digits (anything else dropped) match a card pattern and pass Luhn. */
function isCreditCard(s: string): boolean {
  const digits = s.replace(/[^0-9]+/g, '');
  if (!CREDIT_CARD.test(digits)) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let n = Number(digits[i]);
    if (double) {
      n *= 2;
      sum += n >= 10 ? (n % 10) + 1 : n;
    } else {
      sum += n;
    }
    double = !double;
  }
  return sum % 10 === 0;
}

/** govalidator.IsISBN: whitespace and '-' dropped (Go's \s: ASCII space, \t \n \f \r), then the checksum. */
function isIsbn(s: string, version: 10 | 13): boolean {
  const sanitized = s.replace(/[\t\n\f\r -]+/g, '');
  if (version === 10) {
    if (!ISBN10.test(sanitized)) return false;
    let checksum = 0;
    for (let i = 0; i < 9; i++) checksum += (i + 1) * Number(sanitized[i]);
    checksum += sanitized[9] === 'X' ? 100 : 10 * Number(sanitized[9]);
    return checksum % 11 === 0;
  }
  if (!ISBN13.test(sanitized)) return false;
  let checksum = 0;
  for (let i = 0; i < 12; i++) checksum += (i % 2 === 0 ? 1 : 3) * Number(sanitized[i]);
  return Number(sanitized[12]) - ((10 - (checksum % 10)) % 10) === 0;
}

/** govalidator.IsSSN: exactly 11 bytes and the pattern. */
function isSsn(s: string): boolean {
  return byteLength(s) === 11 && SSN.test(s);
}

// ---- dates and times ---------------------------------------------------------------------------

function daysIn(month: number, year: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** IsDate: time.Parse("2006-01-02", s): four-digit year, two-digit month 01-12, a day that month has. */
export function isDate(s: string): boolean {
  const match = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/.exec(s);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return month >= 1 && month <= 12 && day >= 1 && day <= daysIn(month, year);
}

/**
 * IsDateTime: at least 4 bytes; lower-cased and split at every "t": the first part a date, the
 * second (only) `hh:mm:ss[.frac](z|±hh:mm)` with hh ≤ 23, mm ≤ 59, ss ≤ 59 (compared as text).
 */
export function isDateTime(s: string): boolean {
  if (byteLength(s) < 4) return false;
  const parts = s.toLowerCase().split('t');
  if (parts.length < 2 || !isDate(parts[0])) return false;
  const clock = DATE_TIME_CLOCK.exec(parts[1]);
  return clock !== null && clock[1] <= '23' && clock[2] <= '59' && clock[3] <= '59';
}

const GO_UNITS: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5
  'μs': 1_000n, // U+03BC
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const MAX = 1n << 63n;

/** Go's time.ParseDuration, for its verdict only (overflow included). */
function isGoDuration(input: string): boolean {
  let s = input;
  let negative = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    negative = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return true;
  if (s === '') return false;
  let total = 0n;
  while (s !== '') {
    if (!(s[0] === '.' || isDigit(s[0]))) return false;
    let i = 0;
    let whole = 0n;
    for (; isDigit(s[i]); i++) {
      if (whole > MAX / 10n) return false;
      whole = whole * 10n + BigInt(s[i]);
      if (whole > MAX) return false;
    }
    const pre = i > 0;
    s = s.slice(i);
    let fraction = 0n;
    let scale = 1;
    let post = false;
    if (s[0] === '.') {
      s = s.slice(1);
      let j = 0;
      let overflow = false;
      for (; isDigit(s[j]); j++) {
        if (overflow) continue;
        if (fraction > (MAX - 1n) / 10n) {
          overflow = true;
          continue;
        }
        const next = fraction * 10n + BigInt(s[j]);
        if (next > MAX) {
          overflow = true;
          continue;
        }
        fraction = next;
        scale *= 10;
      }
      post = j > 0;
      s = s.slice(j);
    }
    if (!pre && !post) return false;
    let u = 0;
    while (u < s.length && !(s[u] === '.' || isDigit(s[u]))) u++;
    if (u === 0) return false;
    const unit = GO_UNITS[s.slice(0, u)];
    s = s.slice(u);
    if (unit === undefined) return false;
    if (whole > MAX / unit) return false;
    let value = whole * unit;
    if (fraction > 0n) {
      value += BigInt(Math.floor(Number(fraction) * (Number(unit) / scale)));
      if (value > MAX) return false;
    }
    total += value;
    if (total > MAX) return false;
  }
  return negative || total <= MAX - 1n;
}

const SCALA_UNITS: readonly (readonly string[])[] = [['ns', 'nano'], ['us', 'µs', 'micro'], ['ms', 'milli'], ['s', 'sec'], ['m', 'min'], ['h', 'hr', 'hour'], ['d', 'day'], ['w', 'wk', 'week']];
const INT64_MAX = (1n << 63n) - 1n;

/** strfmt.ParseDuration: Go's syntax, else every `<digits> <letters>` in it (unanchored) with a known unit. */
export function isDuration(s: string): boolean {
  if (isGoDuration(s)) return true;
  let ok = false;
  for (const match of s.matchAll(/([0-9]+)[\t\n\f\r ]*([A-Za-zµ]+)/g)) {
    if (BigInt(match[1]) > INT64_MAX) return false; // strconv.Atoi: out of range
    const unit = match[2].toLowerCase();
    for (const variants of SCALA_UNITS) {
      variants.forEach((variant, i) => {
        if ((i === variants.length - 1 && unit.startsWith(variant)) || variant === unit) ok = true;
      });
    }
  }
  return ok;
}

// ---- addresses ---------------------------------------------------------------------------------

function isIP(s: string, sloppy: boolean): boolean {
  return parseIP(s, sloppy) !== undefined;
}

/** ParseCIDRSloppy: `<address>/<prefix>`, the prefix decimal and at most the address's bits. */
function isCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const address = s.slice(0, slash);
  const mask = s.slice(slash + 1);
  let bits = 32;
  let valid = parseIPv4(address, true) !== undefined;
  if (!valid) {
    bits = 128;
    valid = parseIPv6(address, true) !== undefined;
  }
  const parsed = dtoi(mask);
  return valid && parsed !== undefined && parsed[1] === mask.length && parsed[0] <= bits;
}

/** net.ParseMAC: 6, 8 or 20 octets as `xx:xx…`, `xx-xx…` or `xxxx.xxxx…`. */
function isMac(s: string): boolean {
  const bytes = Buffer.from(s, 'utf8').toString('latin1'); // Go indexes bytes
  const hex2 = (at: number) => HEX_VALUE(bytes[at]) >= 0 && HEX_VALUE(bytes[at + 1]) >= 0;
  if (bytes.length < 14) return false;
  if (bytes[2] === ':' || bytes[2] === '-') {
    if ((bytes.length + 1) % 3 !== 0) return false;
    const n = (bytes.length + 1) / 3;
    if (n !== 6 && n !== 8 && n !== 20) return false;
    for (let i = 0, x = 0; i < n; i++, x += 3) {
      if (!hex2(x) || (x + 2 < bytes.length && bytes[x + 2] !== bytes[2])) return false;
    }
    return true;
  }
  if (bytes[4] === '.') {
    if ((bytes.length + 1) % 5 !== 0) return false;
    const n = (2 * (bytes.length + 1)) / 5;
    if (n !== 6 && n !== 8 && n !== 20) return false;
    for (let i = 0, x = 0; i < n; i += 2, x += 5) {
      if (!hex2(x) || !hex2(x + 2) || (x + 4 < bytes.length && bytes[x + 4] !== '.')) return false;
    }
    return true;
  }
  return false;
}

// ---- uri: Go's net/url.ParseRequestURI (govalidator.IsRequestURI) ----------------------------

type UrlEncoding = 'path' | 'host' | 'zone' | 'userPassword';

const isAlphanumeric = (c: string) => /^[a-zA-Z0-9]$/.test(c);

/** net/url's shouldEscape, for the modes parsing uses. */
function shouldEscape(c: string, mode: UrlEncoding): boolean {
  if (isAlphanumeric(c)) return false;
  if ((mode === 'host' || mode === 'zone') && `!$&'()*+,;=:[]<>"`.includes(c)) return false;
  if ('-_.~'.includes(c)) return false;
  if ('$&+,/:;=?@'.includes(c)) {
    if (mode === 'path') return c === '?';
    if (mode === 'userPassword') return c === '@' || c === '/' || c === '?' || c === ':';
  }
  return true;
}

/** net/url's unescape, for its verdict: well-formed %XX, and in a host only what a host may hold. */
function unescapes(s: string, mode: UrlEncoding): boolean {
  for (let i = 0; i < s.length; ) {
    const c = s[i];
    if (c === '%') {
      if (i + 2 >= s.length || HEX_VALUE(s[i + 1]) < 0 || HEX_VALUE(s[i + 2]) < 0) return false;
      // In a host, %-encoding is for non-ASCII bytes only (and %25, a zone's percent sign).
      if (mode === 'host' && HEX_VALUE(s[i + 1]) < 8 && s.slice(i, i + 3) !== '%25') return false;
      if (mode === 'zone') {
        const byte = String.fromCharCode(HEX_VALUE(s[i + 1]) * 16 + HEX_VALUE(s[i + 2]));
        if (s.slice(i, i + 3) !== '%25' && byte !== ' ' && shouldEscape(byte, 'host')) return false;
      }
      i += 3;
    } else {
      if ((mode === 'host' || mode === 'zone') && c.charCodeAt(0) < 0x80 && shouldEscape(c, mode)) return false;
      i++;
    }
  }
  return true;
}

/** `""` or `:` followed by digits. */
function validOptionalPort(port: string): boolean {
  return port === '' || /^:[0-9]*$/.test(port);
}

function parsesHost(host: string): boolean {
  if (host.startsWith('[')) {
    const close = host.lastIndexOf(']');
    if (close < 0 || !validOptionalPort(host.slice(close + 1))) return false;
    const zone = host.slice(0, close).indexOf('%25');
    if (zone >= 0) return unescapes(host.slice(0, zone), 'host') && unescapes(host.slice(zone, close), 'zone') && unescapes(host.slice(close), 'host');
  } else {
    const colon = host.lastIndexOf(':');
    if (colon >= 0 && !validOptionalPort(host.slice(colon))) return false;
  }
  return unescapes(host, 'host');
}

/** validUserinfo: letters, digits and `-._:~!$&'()*+,;=%@` only (runes: anything non-ASCII is refused). */
function validUserinfo(userinfo: string): boolean {
  return /^[A-Za-z0-9\-._:~!$&'()*+,;=%@]*$/.test(userinfo);
}

function parsesAuthority(authority: string): boolean {
  const at = authority.lastIndexOf('@');
  if (!parsesHost(at < 0 ? authority : authority.slice(at + 1))) return false;
  if (at < 0) return true;
  const userinfo = authority.slice(0, at);
  if (!validUserinfo(Buffer.from(userinfo, 'latin1').toString('utf8'))) return false;
  const colon = userinfo.indexOf(':');
  return colon < 0 ? unescapes(userinfo, 'userPassword') : unescapes(userinfo.slice(0, colon), 'userPassword') && unescapes(userinfo.slice(colon + 1), 'userPassword');
}

/**
 * url.ParseRequestURI's verdict (Go's net/url parse with viaRequest): an absolute URI (a scheme,
 * then an opaque part or `//authority/path`) or an absolute path, no control characters, valid
 * %-escapes, a valid host and port. Works on the UTF-8 bytes, as Go does.
 */
export function isRequestUri(input: string): boolean {
  const raw = Buffer.from(input, 'utf8').toString('latin1');
  if ([...raw].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return false; // invalid control character
  if (raw === '') return false;
  if (raw === '*') return true;
  let scheme = '';
  let rest = raw;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (/[a-zA-Z]/.test(c)) continue;
    if (/[0-9+\-.]/.test(c)) {
      if (i === 0) break;
      continue;
    }
    if (c === ':') {
      if (i === 0) return false; // missing protocol scheme
      scheme = raw.slice(0, i);
      rest = raw.slice(i + 1);
    }
    break;
  }
  if (rest.endsWith('?') && rest.split('?').length === 2) rest = rest.slice(0, -1);
  else if (rest.includes('?')) rest = rest.slice(0, rest.indexOf('?'));
  if (!rest.startsWith('/')) return scheme !== ''; // opaque with a scheme; else "invalid URI for request"
  if (scheme !== '' && rest.startsWith('//')) {
    let authority = rest.slice(2);
    rest = '';
    const slash = authority.indexOf('/');
    if (slash >= 0) {
      rest = authority.slice(slash);
      authority = authority.slice(0, slash);
    }
    if (!parsesAuthority(authority)) return false;
  }
  return unescapes(rest, 'path');
}

/** The checker of each validated format, by normalized name (apis/features.ts VALIDATED_STRING_FORMATS). */
const CHECKERS: Readonly<Record<string, (value: string) => boolean>> = {
  bsonobjectid: (s) => /^[0-9a-fA-F]{24}$/.test(s),
  uri: isRequestUri,
  email: isEmail,
  hostname: isHostname,
  ipv4: (s) => isIP(s, true) && s.includes('.'),
  ipv6: (s) => isIP(s, false) && s.includes(':'),
  cidr: isCidr,
  mac: isMac,
  uuid: (s) => UUID.test(s),
  uuid3: (s) => UUID3.test(s),
  uuid4: (s) => UUID4.test(s),
  uuid5: (s) => UUID5.test(s),
  isbn: (s) => isIsbn(s, 10) || isIsbn(s, 13),
  isbn10: (s) => isIsbn(s, 10),
  isbn13: (s) => isIsbn(s, 13),
  creditcard: isCreditCard,
  ssn: isSsn,
  hexcolor: (s) => HEX_COLOR.test(s),
  rgbcolor: (s) => RGB_COLOR.test(s),
  byte: (s) => BASE64.test(s),
  password: () => true,
  date: isDate,
  duration: isDuration,
  datetime: isDateTime,
};

/**
 * Whether a string is valid for a format, as kube-apiserver's CRD validation judges it; `true` for
 * a format with no checker (kube-openapi skips formats its registry does not know).
 */
export function matchesFormat(format: string, value: string): boolean {
  const checker = CHECKERS[format.replace(/-/g, '')];
  return checker === undefined || checker(value);
}

/** The normalized names of the formats with a checker (kept equal to VALIDATED_STRING_FORMATS by a test). */
export const CHECKED_FORMATS: readonly string[] = Object.keys(CHECKERS);
