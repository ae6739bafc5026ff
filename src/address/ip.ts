/**
 * IP literals as text: strict IPv4 dotted quads and IPv6 in every valid text
 * form, parsed into numbers without allocating, and formatted back in the
 * canonical form of RFC 5952. Shared by the PROXY protocol and CIDR ranges.
 *
 * @module
 */

/** The text cannot be, nor begin, an address of that family. */
export const INVALID = 0;
/** The text is not an address yet, but some continuation of it is. */
export const PREFIX = 1;
/** The text is a whole address (a longer text may be one too). */
export const VALID = 2;
/** What {@linkcode scanIpv6} found: {@linkcode INVALID}, {@linkcode PREFIX} or {@linkcode VALID}. */
export type Scan = typeof INVALID | typeof PREFIX | typeof VALID;

/** {@linkcode scanIpv4} found no address and no prefix of one. */
export const IPV4_INVALID = -1;
/** {@linkcode scanIpv4} found a prefix of an address. */
export const IPV4_PREFIX = -2;

const DOT = 0x2e;
const COLON = 0x3a;
const ZERO = 0x30;

/**
 * Reads a dotted quad: exactly four decimal numbers 0 to 255 without leading
 * zeros (they would read as octal elsewhere), nothing else.
 *
 * @param text the text holding the address
 * @param start where the address begins
 * @param end where it ends (exclusive)
 * @returns the address as an unsigned 32-bit number, {@linkcode IPV4_PREFIX}
 *   when the text is only the beginning of one, else {@linkcode IPV4_INVALID}
 */
export function scanIpv4(text: string, start = 0, end: number = text.length): number {
  let address = 0;
  let dots = 0;
  let octet = 0;
  let digits = 0;
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code === DOT) {
      if (digits === 0 || dots === 3) return IPV4_INVALID;
      address = address * 256 + octet;
      dots++;
      octet = 0;
      digits = 0;
    } else {
      const digit = code - ZERO;
      if (digit < 0 || digit > 9 || (digits > 0 && octet === 0)) return IPV4_INVALID;
      octet = octet * 10 + digit;
      digits++;
      if (octet > 255) return IPV4_INVALID;
    }
  }
  return dots === 3 && digits > 0 ? address * 256 + octet : IPV4_PREFIX;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * Reads IPv6 text: groups of one to four hex digits, at most one `::`
 * standing for one or more zero groups, optionally ending in a dotted quad;
 * no zone id. Also says whether a text that is not an address can still
 * become one, for parsers that see bytes as they arrive.
 *
 * @param text the text holding the address
 * @param words where to write the eight 16-bit groups when the text is {@linkcode VALID}
 * @param start where the address begins
 * @param end where it ends (exclusive)
 * @returns {@linkcode VALID}, {@linkcode PREFIX} or {@linkcode INVALID}
 */
export function scanIpv6(
  text: string,
  words: Uint16Array | undefined,
  start = 0,
  end: number = text.length,
): Scan {
  let count = 0;
  let gap = -1;
  let i = start;
  if (i === end) return PREFIX;
  if (text.charCodeAt(i) === COLON) {
    if (i + 1 === end) return PREFIX;
    if (text.charCodeAt(i + 1) !== COLON) return INVALID;
    gap = 0;
    i += 2;
    if (i === end) return _close(words, count, gap);
  }
  for (;;) {
    const groupStart = i;
    let value = 0;
    while (i < end && i - groupStart < 5) {
      const digit = hexValue(text.charCodeAt(i));
      if (digit < 0) break;
      value = value * 16 + digit;
      i++;
    }
    if (i < end && text.charCodeAt(i) === DOT) {
      // The last 32 bits as a dotted quad: two groups, and nothing after.
      if (gap < 0 ? count !== 6 : count > 5) return INVALID;
      const ipv4 = scanIpv4(text, groupStart, end);
      if (ipv4 === IPV4_INVALID) return INVALID;
      if (ipv4 === IPV4_PREFIX) return PREFIX;
      if (words !== undefined) {
        words[count] = ipv4 >>> 16;
        words[count + 1] = ipv4 & 0xffff;
      }
      return _close(words, count + 2, gap);
    }
    const digits = i - groupStart;
    if (digits === 0) return i === end ? PREFIX : INVALID;
    if (digits > 4 || count === (gap < 0 ? 8 : 7)) return INVALID;
    if (words !== undefined) words[count] = value;
    count++;
    if (i === end) return gap >= 0 || count === 8 ? _close(words, count, gap) : PREFIX;
    if (text.charCodeAt(i) !== COLON) return INVALID;
    i++;
    if (i === end) return count < (gap < 0 ? 8 : 7) ? PREFIX : INVALID;
    if (text.charCodeAt(i) === COLON) {
      if (gap >= 0 || count === 8) return INVALID;
      gap = count;
      i++;
      if (i === end) return _close(words, count, gap);
    }
  }
}

/** Moves the groups after `::` to the end and fills the gap with zeros. */
function _close(words: Uint16Array | undefined, count: number, gap: number): Scan {
  if (words === undefined || gap < 0) return VALID;
  const tail = count - gap;
  for (let k = 1; k <= tail; k++) words[8 - k] = words[count - k]!;
  for (let k = gap; k < 8 - tail; k++) words[k] = 0;
  return VALID;
}

/**
 * Whether eight groups are an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
 *
 * @param words the eight 16-bit groups
 * @returns true for ::ffff:0:0/96
 */
export function isMappedIpv4(words: ArrayLike<number>): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 0 &&
    words[4] === 0 && words[5] === 0xffff;
}

/**
 * Formats an unsigned 32-bit number as a dotted quad.
 *
 * @param address the address
 * @returns text such as `10.0.0.1`
 */
export function formatIpv4(address: number): string {
  return `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${address & 255}`;
}

/**
 * Formats eight groups as RFC 5952 says: lowercase, no leading zeros, the
 * longest run of two or more zero groups (the first of equals) as `::`, and
 * an IPv4-mapped address with its last 32 bits as a dotted quad, the way
 * dual-stack sockets report them.
 *
 * @param words the eight 16-bit groups
 * @param options.mixed write IPv4-mapped addresses as `::ffff:a.b.c.d`
 * @returns text such as `2001:db8::1`
 */
export function formatIpv6(words: ArrayLike<number>, options: { mixed?: boolean } = {}): string {
  if ((options.mixed ?? true) && isMappedIpv4(words)) {
    return `::ffff:${formatIpv4(words[6]! * 65536 + words[7]!)}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => {
    const parts: string[] = [];
    for (let k = from; k < to; k++) parts.push(words[k]!.toString(16));
    return parts.join(":");
  };
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}
