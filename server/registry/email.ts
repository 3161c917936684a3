import { isIPv4InIPv6, parseIP } from './go-ip';

/**
 * `format: email`, as kube-openapi's strfmt.IsEmail judges it: Go's net/mail.ParseAddress accepts
 * the string as exactly one address (RFC 5322 with RFC 6532's UTF-8: `a@b`, `Name <a@b>`,
 * `a@b (Name)`, quoted local parts, RFC 2047 encoded words in names, domain literals such as
 * `a@[192.0.2.1]`), ported from Go 1.24's src/net/mail/message.go (kube-apiserver 1.33). Go
 * before 1.23 refuses domain literals, and 1.23 takes `[IPv6 address]` without the `IPv6:` tag:
 * older kube-apiservers refuse a few addresses with `[...]` that this accepts.
 *
 * JavaScript strings hold UTF-16; Go's parser reads UTF-8 runes. Every rune at or above 0x80 is
 * treated alike by the parser (RFC 6532's UTF8-non-ascii), so reading code points gives the same
 * verdicts; a lone surrogate stands where Go's JSON decoding puts U+FFFD, also non-ASCII.
 */
export function isEmail(text: string): boolean {
  try {
    parseSingleAddress(new AddressParser(text));
    return true;
  } catch (error) {
    if (error instanceof MailError) return false;
    throw error;
  }
}

/** A parse failure (Go returns an error): the address is not valid. */
class MailError extends Error {}

function fail(message: string): never {
  throw new MailError(`mail: ${message}`);
}

/** isVchar: visible US-ASCII, or any multi-byte rune (RFC 6532). */
const isVchar = (r: number): boolean => (r >= 0x21 && r <= 0x7e) || r >= 0x80;
const isWSP = (r: number): boolean => r === 0x20 || r === 0x09;
const SPECIALS = new Set([...'()<>[]:;@\\,"'].map((c) => c.codePointAt(0)!));
/** isAtext: RFC 5322 atext; `.` only in a dot-atom. */
const isAtext = (r: number, dot: boolean): boolean => (r === 0x2e ? dot : !SPECIALS.has(r) && isVchar(r));
const isQtext = (r: number): boolean => r !== 0x5c && r !== 0x22 && isVchar(r);
const isDtext = (r: number): boolean => r !== 0x5b && r !== 0x5d && r !== 0x5c && isVchar(r);

class AddressParser {
  constructor(public s: string) {}

  empty(): boolean {
    return this.s.length === 0;
  }

  peek(): string {
    return this.s[0];
  }

  consume(c: string): boolean {
    if (this.empty() || this.peek() !== c) return false;
    this.s = this.s.slice(1);
    return true;
  }

  skipSpace(): void {
    this.s = this.s.replace(/^[ \t]+/, '');
  }

  /** The code point at `index` and its length in UTF-16 units (0 at the end). */
  runeAt(index: number): [number, number] {
    const r = this.s.codePointAt(index);
    return r === undefined ? [0, 0] : [r, r > 0xffff ? 2 : 1];
  }

  /** skipCFWS: spaces and parenthetical comments; false for a comment left open. */
  skipCFWS(): boolean {
    this.skipSpace();
    while (this.consume('(')) {
      if (this.consumeComment() === undefined) return false;
      this.skipSpace();
    }
    return true;
  }

  /** consumeComment, after its '(': the text up to the matching ')', or undefined when unclosed. */
  consumeComment(): string | undefined {
    let depth = 1;
    let comment = '';
    while (!this.empty() && depth > 0) {
      if (this.peek() === '\\' && this.s.length > 1) this.s = this.s.slice(1);
      else if (this.peek() === '(') depth++;
      else if (this.peek() === ')') depth--;
      if (depth > 0) comment += this.s[0];
      this.s = this.s.slice(1);
    }
    return depth === 0 ? comment : undefined;
  }

  consumeQuotedString(): string {
    let i = 1; // past the opening quote
    let text = '';
    let escaped = false;
    for (;;) {
      const [r, size] = this.runeAt(i);
      if (size === 0) fail('unclosed quoted-string');
      if (escaped) {
        if (!isVchar(r) && !isWSP(r)) fail('bad character in quoted-string');
        text += String.fromCodePoint(r);
        escaped = false;
      } else if (isQtext(r) || isWSP(r)) {
        text += String.fromCodePoint(r);
      } else if (r === 0x22) {
        break;
      } else if (r === 0x5c) {
        escaped = true;
      } else {
        fail('bad character in quoted-string');
      }
      i += size;
    }
    this.s = this.s.slice(i + 1);
    return text;
  }

  /** consumeAtom: a (dot-)atom; not `permissive`: no leading, trailing or double dot. */
  consumeAtom(dot: boolean, permissive: boolean): string {
    let i = 0;
    for (;;) {
      const [r, size] = this.runeAt(i);
      if (size === 0 || !isAtext(r, dot)) break;
      i += size;
    }
    if (i === 0) fail('invalid string');
    const atom = this.s.slice(0, i);
    this.s = this.s.slice(i);
    if (!permissive && (atom.startsWith('.') || atom.includes('..') || atom.endsWith('.'))) fail('dot in the wrong place in atom');
    return atom;
  }

  /** consumeDomainLiteral: `[dtext]`, an IPv4 address or `IPv6:` and an address of 16 bytes. */
  consumeDomainLiteral(): string {
    if (!this.consume('[')) fail('missing "[" in domain-literal');
    let dtext = '';
    for (;;) {
      if (this.empty()) fail('unclosed domain-literal');
      if (this.peek() === ']') break;
      const [r, size] = this.runeAt(0);
      if (!isDtext(r)) fail('bad character in domain-literal');
      dtext += this.s.slice(0, size);
      this.s = this.s.slice(size);
    }
    this.consume(']');
    if (dtext.startsWith('IPv6:')) {
      // len(net.ParseIP(addr)) == IPv6len: any address Go parses, an IPv4 one included.
      if (parseIP(dtext.slice(5), false) === undefined) fail('invalid IPv6 address in domain-literal');
    } else {
      const ip = parseIP(dtext, false);
      if (ip === undefined || !isIPv4InIPv6(ip)) fail('invalid IP address in domain-literal');
    }
    return `[${dtext}]`;
  }

  /** consumeAddrSpec: local-part `@` domain; on failure the input is left as it was. */
  consumeAddrSpec(): string {
    const orig = this.s;
    try {
      this.skipSpace();
      if (this.empty()) fail('no addr-spec');
      let localPart: string;
      if (this.peek() === '"') {
        localPart = this.consumeQuotedString();
        if (localPart === '') fail('empty quoted string in addr-spec');
      } else {
        localPart = this.consumeAtom(true, false);
      }
      if (!this.consume('@')) fail('missing @ in addr-spec');
      this.skipSpace();
      if (this.empty()) fail('no domain in addr-spec');
      const domain = this.peek() === '[' ? this.consumeDomainLiteral() : this.consumeAtom(true, false);
      return `${localPart}@${domain}`;
    } catch (error) {
      this.s = orig;
      throw error;
    }
  }

  /** consumePhrase: one or more words (atoms, quoted strings, encoded words), CFWS between them. */
  consumePhrase(): void {
    let words = 0;
    for (;;) {
      if (words > 0 && !this.skipCFWS()) fail('misformatted parenthetical comment');
      this.skipSpace();
      if (this.empty()) return;
      try {
        if (this.peek() === '"') this.consumeQuotedString();
        else checkEncodedWord(this.consumeAtom(true, true));
      } catch (error) {
        if (!(error instanceof MailError)) throw error;
        // Go ignores the error once it has a word.
        if (words === 0) fail('missing word in phrase');
        return;
      }
      words++;
    }
  }

  /** consumeDisplayNameComment: `(Name)` after an addr-spec; its encoded words must have a charset Go decodes. */
  consumeDisplayNameComment(): void {
    if (!this.consume('(')) fail('comment does not start with (');
    const comment = this.consumeComment();
    if (comment === undefined) fail('misformatted parenthetical comment');
    for (const word of comment.split(/[ \t]+/)) if (word !== '') checkEncodedWord(word);
  }

  /** parseAddress: a mailbox (addr-spec, or name and angle-addr), or, `handleGroup`, a group. */
  parseAddress(handleGroup: boolean): number {
    this.skipSpace();
    if (this.empty()) fail('no address');
    // addr-spec is more restricted than name-addr: tried first.
    let spec: string | undefined;
    try {
      spec = this.consumeAddrSpec();
    } catch (error) {
      if (!(error instanceof MailError)) throw error;
    }
    if (spec !== undefined) {
      this.skipSpace();
      if (!this.empty() && this.peek() === '(') this.consumeDisplayNameComment();
      return 1;
    }
    if (this.peek() !== '<') this.consumePhrase();
    this.skipSpace();
    if (handleGroup && this.consume(':')) return this.consumeGroupList();
    if (!this.consume('<')) fail('no angle-addr');
    this.consumeAddrSpec();
    if (!this.consume('>')) fail('unclosed angle-addr');
    return 1;
  }

  /** consumeGroupList, after `name:`: addresses up to `;`; how many. */
  consumeGroupList(): number {
    let count = 0;
    this.skipSpace();
    if (this.consume(';')) {
      if (!this.skipCFWS()) fail('misformatted parenthetical comment');
      return 0;
    }
    for (;;) {
      this.skipSpace();
      count += this.parseAddress(false);
      if (!this.skipCFWS()) fail('misformatted parenthetical comment');
      if (this.consume(';')) {
        if (!this.skipCFWS()) fail('misformatted parenthetical comment');
        return count;
      }
      if (!this.consume(',')) fail('expected comma');
    }
  }
}

/** parseSingleAddress: exactly one address and nothing after it but CFWS. */
function parseSingleAddress(p: AddressParser): void {
  const count = p.parseAddress(true);
  if (!p.skipCFWS()) fail('misformatted parenthetical comment');
  if (!p.empty()) fail('expected single address');
  if (count === 0) fail('empty group');
  if (count > 1) fail('group with multiple addresses');
}

/**
 * decodeRFC2047Word with Go's default decoder, for its verdict only (the parser's names are not
 * kept): a well-formed encoded word (`=?charset?B|Q?text?=`) of a charset other than UTF-8,
 * ISO-8859-1 or US-ASCII fails (Go: "charset not supported"); anything else passes, a malformed
 * encoded word as a plain word.
 */
function checkEncodedWord(word: string): void {
  // mime.WordDecoder.Decode: len(word) counts bytes.
  if (Buffer.byteLength(word) < 8 || !word.startsWith('=?') || !word.endsWith('?=') || word.split('?').length !== 5) return;
  const [charset, encoding, text] = word.slice(2, -2).split('?');
  if (charset === '' || Buffer.byteLength(encoding) !== 1 || !isEncodedText(encoding, text)) return;
  if (!['utf-8', 'iso-8859-1', 'us-ascii'].includes(goFold(charset))) fail('charset not supported');
}

/** Whether an encoded word's text decodes: base64 (padded), or Q. */
function isEncodedText(encoding: string, text: string): boolean {
  // base64.StdEncoding: the standard alphabet, padded to a multiple of 4.
  if (encoding === 'B' || encoding === 'b') return /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text);
  if (encoding !== 'Q' && encoding !== 'q') return false;
  // qDecode: `=` and two hex digits, or printable ASCII, tab, CR, LF.
  return /^(?:=[0-9A-Fa-f]{2}|[\x20-\x3c\x3e-\x7e\t\r\n])*$/.test(text);
}

/** A charset name as strings.EqualFold compares it with ASCII names: case, and ſ (U+017F) as s. */
function goFold(name: string): string {
  return name.replace(/\u017f/g, 's').replace(/[A-Z]/g, (c) => c.toLowerCase());
}
