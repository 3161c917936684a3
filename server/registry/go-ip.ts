/**
 * Go's textual IP address parsing, as the format checkers (formats.ts) and the email checker
 * (email.ts, net/mail's domain literals) need it: net.ParseIP (Go ≥ 1.22: netip.ParseAddr
 * without a zone, no leading zeros, at most 4 hex digits a field) and, `sloppy`, Go 1.16's parser
 * that k8s.io/utils/net ParseIPSloppy keeps (leading zeros allowed).
 */

export const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';
export const HEX_VALUE = (c: string | undefined): number => (c === undefined ? -1 : /^[0-9a-fA-F]$/.test(c) ? parseInt(c, 16) : -1);

/** Go's dtoi: decimal digits, at least one, below 0xFFFFFF; [value, digits] or undefined. */
export function dtoi(s: string): [number, number] | undefined {
  let n = 0;
  let i = 0;
  for (; isDigit(s[i]); i++) {
    n = n * 10 + Number(s[i]);
    if (n >= 0xffffff) return undefined;
  }
  return i === 0 ? undefined : [n, i];
}

/** An IPv4 dotted quad; `sloppy` allows leading zeros (Go < 1.17, k8s.io/utils/net). Returns the 4 bytes. */
export function parseIPv4(input: string, sloppy: boolean): number[] | undefined {
  let s = input;
  const bytes: number[] = [];
  for (let i = 0; i < 4; i++) {
    if (s.length === 0) return undefined;
    if (i > 0) {
      if (s[0] !== '.') return undefined;
      s = s.slice(1);
    }
    const parsed = dtoi(s);
    if (!parsed || parsed[0] > 0xff) return undefined;
    if (!sloppy && parsed[1] > 1 && s[0] === '0') return undefined;
    bytes.push(parsed[0]);
    s = s.slice(parsed[1]);
  }
  return s.length === 0 ? bytes : undefined;
}

/**
 * An IPv6 address (hex fields, one `::`, an IPv4 tail) as its 16 bytes. Fields have at most 4 hex
 * digits (netip.ParseAddr), any number when `sloppy` (Go 1.16's parser).
 */
export function parseIPv6(input: string, sloppy: boolean): number[] | undefined {
  const ip = new Array<number>(16).fill(0);
  let s = input;
  let ellipsis = -1;
  if (s.startsWith('::')) {
    ellipsis = 0;
    s = s.slice(2);
    if (s.length === 0) return ip;
  }
  let i = 0;
  while (i < 16) {
    let n = 0;
    let c = 0;
    for (; HEX_VALUE(s[c]) >= 0; c++) {
      n = n * 16 + HEX_VALUE(s[c]);
      if (n >= 0xffffff || (!sloppy && c >= 4)) return undefined;
    }
    if (c === 0 || n > 0xffff) return undefined;
    if (c < s.length && s[c] === '.') {
      if (ellipsis < 0 && i !== 12) return undefined;
      if (i + 4 > 16) return undefined;
      const v4 = parseIPv4(s, sloppy);
      if (!v4) return undefined;
      ip.splice(i, 4, ...v4);
      s = '';
      i += 4;
      break;
    }
    ip[i] = n >> 8;
    ip[i + 1] = n & 0xff;
    i += 2;
    s = s.slice(c);
    if (s.length === 0) break;
    if (s[0] !== ':' || s.length === 1) return undefined;
    s = s.slice(1);
    if (s[0] === ':') {
      if (ellipsis >= 0) return undefined;
      ellipsis = i;
      s = s.slice(1);
      if (s.length === 0) break;
    }
  }
  if (s.length !== 0) return undefined;
  if (i < 16) {
    if (ellipsis < 0) return undefined;
    // The `::` stands for the zero bytes between what came before and after it.
    const gap = 16 - i;
    for (let j = i - 1; j >= ellipsis; j--) ip[j + gap] = ip[j];
    for (let j = ellipsis + gap - 1; j >= ellipsis; j--) ip[j] = 0;
  } else if (ellipsis >= 0) {
    return undefined;
  }
  return ip;
}

/**
 * Go's ParseIP (either family): the first '.' or ':' decides. The address as 16 bytes, an IPv4
 * one in its IPv4-in-IPv6 form (as net.ParseIP returns it), or undefined.
 */
export function parseIP(s: string, sloppy: boolean): number[] | undefined {
  for (const c of s) {
    if (c === '.') {
      const v4 = parseIPv4(s, sloppy);
      return v4 && [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4];
    }
    if (c === ':') return parseIPv6(s, sloppy);
  }
  return undefined;
}

/** net.IP.To4 of 16 bytes: whether the address is IPv4 (in its IPv4-in-IPv6 form). */
export function isIPv4InIPv6(ip: readonly number[]): boolean {
  return ip.slice(0, 10).every((b) => b === 0) && ip[10] === 0xff && ip[11] === 0xff;
}
