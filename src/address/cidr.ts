/**
 * CIDR ranges as the config writes them (`10.0.0.0/8`, `2001:db8::/32`, a
 * lone address), and a set of them that answers "is this client in it?" per
 * accepted connection without allocating.
 *
 * @module
 */
import {
  formatIpv4,
  formatIpv6,
  IPV4_INVALID,
  IPV4_PREFIX,
  isMappedIpv4,
  scanIpv4,
  scanIpv6,
  VALID,
} from "./ip.ts";

/** A parsed range. IPv4-mapped IPv6 ranges (`::ffff:10.0.0.0/104`) become their IPv4 form. */
export interface Cidr {
  /** The range as written in the config. */
  readonly text: string;
  /** 4 or 6. */
  readonly family: 4 | 6;
  /** The prefix length in bits, 0 to 32 or 0 to 128. */
  readonly prefixLength: number;
  /** The network address: one unsigned 32-bit word for IPv4, four for IPv6 (most significant first). */
  readonly words: readonly number[];
}

const ERROR = "must be an IP address or CIDR range";

/** Reused by every scan: JavaScript runs one parse at a time. */
const SCRATCH = new Uint16Array(8);

/** The mask of the first `bits` bits of a 32-bit word, as an unsigned number. */
function _mask(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

/**
 * Parses a CIDR range or a single address (a /32 or /128).
 *
 * @param text `10.0.0.0/8`, `192.168.1.7`, `2001:db8::/32`, `::1`
 * @returns the range
 * @throws {TypeError} with a message fit to follow a config path, such as
 *   `must be an IP address or CIDR range: the prefix /33 is longer than 32 bits`
 *   or `has bits set after the /24 prefix (did you mean 10.1.2.0/24?)`
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  if (address.includes("%")) {
    throw new TypeError(`${ERROR}: a zone id (%) cannot stand in a range`);
  }
  let family: 4 | 6;
  let words: number[];
  const ipv4 = address.includes(":") ? IPV4_INVALID : scanIpv4(address);
  if (ipv4 >= 0) {
    family = 4;
    words = [ipv4];
  } else if (scanIpv6(address, SCRATCH) === VALID) {
    family = 6;
    words = [0, 2, 4, 6].map((k) => SCRATCH[k]! * 65536 + SCRATCH[k + 1]!);
  } else {
    throw new TypeError(
      address === ""
        ? `${ERROR}: the address is empty`
        : ipv4 === IPV4_PREFIX || /^[\d.]+$/.test(address)
        ? `${ERROR}: an IPv4 address is four numbers 0 to 255 without leading zeros`
        : `${ERROR}: the address is neither IPv4 nor IPv6`,
    );
  }
  const maxBits = family === 4 ? 32 : 128;
  let prefixLength = maxBits;
  if (slash >= 0) {
    const bits = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(bits)) {
      throw new TypeError(`${ERROR}: the prefix after / must be a number of bits`);
    }
    prefixLength = Number(bits);
    if (prefixLength > maxBits) {
      throw new TypeError(
        `${ERROR}: the prefix /${prefixLength} is longer than ${maxBits} bits`,
      );
    }
  }
  const network = words.map((word, k) => (word & _mask(prefixLength - 32 * k)) >>> 0);
  if (network.some((word, k) => word !== words[k])) {
    const suggestion = family === 4 ? formatIpv4(network[0]!) : formatIpv6(_groups(network));
    throw new TypeError(
      `has bits set after the /${prefixLength} prefix (did you mean ${suggestion}/${prefixLength}?)`,
    );
  }
  if (family === 6 && prefixLength >= 96 && isMappedIpv4(_groups(network))) {
    return { text, family: 4, prefixLength: prefixLength - 96, words: [network[3]!] };
  }
  return { text, family, prefixLength, words: network };
}

function _groups(words: readonly number[]): number[] {
  return words.flatMap((word) => [word >>> 16, word & 0xffff]);
}

/**
 * A set of ranges to test addresses against quickly. IPv4 ranges are merged
 * into sorted intervals and searched by bisection; IPv6 ranges, rarer, are
 * compared word by word. An IPv6 range that holds all of ::ffff:0:0/96 (such
 * as `::/0`) also holds every IPv4 address, so a client matches the same way
 * whether its socket reports `10.1.2.3` or `::ffff:10.1.2.3`.
 *
 * @example
 * ```ts
 * import { parseConfig } from "mini-balancer";
 *
 * const config = parseConfig(`
 * [frontend]
 * bind_on = "127.0.0.1:7070"
 * allow = ["10.0.0.0/8", "::1"]
 * [[frontend.backend]]
 * forward_to = "127.0.0.1:8080"
 * `);
 * const allow = config.frontends[0]!.allow; // a CidrSet
 * allow?.has("10.1.2.3"); // true
 * ```
 */
export class CidrSet {
  /** How many ranges the set was built from. */
  readonly size: number;
  /** The ranges as written. */
  readonly #texts: readonly string[];
  /** Sorted, disjoint IPv4 intervals: starts and inclusive ends. */
  #starts: Float64Array;
  #ends: Float64Array;
  /** Per IPv6 range, eight words: the network's four, then the mask's four. */
  #ipv6: Uint32Array;

  /**
   * Builds the set.
   *
   * @param ranges ranges from {@linkcode parseCidr}
   */
  constructor(ranges: readonly Cidr[]) {
    this.size = ranges.length;
    this.#texts = ranges.map((range) => range.text);
    const intervals: [number, number][] = [];
    const ipv6: number[] = [];
    for (const range of ranges) {
      if (range.family === 4) {
        const start = range.words[0]!;
        intervals.push([start, start + 2 ** (32 - range.prefixLength) - 1]);
        continue;
      }
      const masks = [0, 1, 2, 3].map((k) => _mask(range.prefixLength - 32 * k));
      ipv6.push(...range.words, ...masks);
      const mapped = [0, 0, 0xffff, 0];
      if (
        range.prefixLength <= 96 && mapped.every((word, k) => (word & masks[k]!) === range.words[k])
      ) {
        intervals.push([0, 0xffffffff]);
      }
    }
    intervals.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const [start, end] of intervals) {
      const last = merged[merged.length - 1];
      if (last !== undefined && start <= last[1] + 1) last[1] = Math.max(last[1], end);
      else merged.push([start, end]);
    }
    this.#starts = Float64Array.from(merged, ([start]) => start);
    this.#ends = Float64Array.from(merged, ([, end]) => end);
    this.#ipv6 = Uint32Array.from(ipv6);
  }

  /**
   * Whether an address falls in one of the ranges.
   *
   * @param address an IP literal as a socket reports it (`127.0.0.1`, `::1`,
   *   `::ffff:10.1.2.3`, `fe80::1%eth0`); IPv4-mapped addresses match as IPv4
   * @returns false as well for anything that is not an IP literal (`""`, a unix path)
   */
  has(address: string): boolean {
    if (!address.includes(":")) {
      const ipv4 = scanIpv4(address);
      return ipv4 >= 0 && this.#has4(ipv4);
    }
    const zone = address.indexOf("%");
    if (scanIpv6(address, SCRATCH, 0, zone < 0 ? address.length : zone) !== VALID) return false;
    if (isMappedIpv4(SCRATCH)) return this.#has4(SCRATCH[6]! * 65536 + SCRATCH[7]!);
    const w0 = SCRATCH[0]! * 65536 + SCRATCH[1]!;
    const w1 = SCRATCH[2]! * 65536 + SCRATCH[3]!;
    const w2 = SCRATCH[4]! * 65536 + SCRATCH[5]!;
    const w3 = SCRATCH[6]! * 65536 + SCRATCH[7]!;
    const table = this.#ipv6;
    for (let i = 0; i < table.length; i += 8) {
      if (
        ((w0 & table[i + 4]!) >>> 0) === table[i] &&
        ((w1 & table[i + 5]!) >>> 0) === table[i + 1] &&
        ((w2 & table[i + 6]!) >>> 0) === table[i + 2] &&
        ((w3 & table[i + 7]!) >>> 0) === table[i + 3]
      ) return true;
    }
    return false;
  }

  /** The ranges as written, so that a config compares and prints as its file reads. */
  toJSON(): readonly string[] {
    return this.#texts;
  }

  /** The ranges as written, comma-separated. */
  toString(): string {
    return this.#texts.join(", ");
  }

  #has4(address: number): boolean {
    const starts = this.#starts;
    let low = 0;
    let high = starts.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (starts[middle]! > address) high = middle - 1;
      else low = middle + 1;
    }
    return high >= 0 && address <= this.#ends[high]!;
  }
}

/**
 * The IPv4 form of an IPv4-mapped IPv6 address, for keying per-client state.
 *
 * @param address an IP literal as a socket reports it
 * @returns `1.2.3.4` for `::ffff:1.2.3.4` (or `::ffff:102:304`), else the address unchanged
 */
export function unmapIpv4(address: string): string {
  if (!address.includes(":")) return address;
  if (scanIpv6(address, SCRATCH) !== VALID || !isMappedIpv4(SCRATCH)) return address;
  return formatIpv4(SCRATCH[6]! * 65536 + SCRATCH[7]!);
}
