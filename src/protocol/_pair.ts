/**
 * The address pair a PROXY header encoder writes: both endpoints as IPv4,
 * both as IPv6, or none when either is missing or not an IP literal.
 *
 * @module
 */
import type { Endpoint } from "../runtime/types.ts";
import { isMappedIpv4, scanIpv4, scanIpv6, VALID } from "../address/ip.ts";

/** Two endpoints of the same family, ready to encode. */
export type AddressPair =
  | {
    readonly family: 4;
    /** Source and destination as unsigned 32-bit numbers. */
    readonly addresses: readonly [number, number];
    readonly ports: readonly [number, number];
  }
  | {
    readonly family: 6;
    /** Source and destination as eight 16-bit groups each. */
    readonly addresses: readonly [Uint16Array, Uint16Array];
    readonly ports: readonly [number, number];
  };

/** An IPv4 address as a number, an IPv6 one as groups, or undefined for anything else. */
function _address(hostname: string): number | Uint16Array | undefined {
  if (!hostname.includes(":")) {
    const ipv4 = scanIpv4(hostname);
    return ipv4 >= 0 ? ipv4 : undefined;
  }
  // A link-local address comes with its zone (fe80::1%eth0); the header has no room for it.
  const zone = hostname.indexOf("%");
  const words = new Uint16Array(8);
  if (scanIpv6(hostname, words, 0, zone < 0 ? hostname.length : zone) !== VALID) return undefined;
  return isMappedIpv4(words) ? words[6]! * 65536 + words[7]! : words;
}

function _mapped(address: number | Uint16Array): Uint16Array {
  return typeof address === "number"
    ? Uint16Array.of(0, 0, 0, 0, 0, 0xffff, address >>> 16, address & 0xffff)
    : address;
}

function _port(endpoint: Endpoint): number {
  const { port } = endpoint;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`a PROXY header port must be 0 to 65535: current value is ${port}`);
  }
  return port;
}

/**
 * Pairs two endpoints for a PROXY header: IPv4 when both are IPv4 (IPv4-mapped
 * IPv6 counts as IPv4), else IPv6 with any IPv4 side written IPv4-mapped.
 *
 * @param source the client's endpoint as its socket reports it
 * @param destination the endpoint the client connected to
 * @returns the pair, or undefined when either side is missing or not an IP literal
 * @throws {RangeError} when a port is not 0 to 65535
 */
export function addressPair(
  source: Endpoint | undefined,
  destination: Endpoint | undefined,
): AddressPair | undefined {
  if (source === undefined || destination === undefined) return undefined;
  const from = _address(source.hostname);
  const to = _address(destination.hostname);
  if (from === undefined || to === undefined) return undefined;
  const ports = [_port(source), _port(destination)] as const;
  if (typeof from === "number" && typeof to === "number") {
    return { family: 4, addresses: [from, to], ports };
  }
  return { family: 6, addresses: [_mapped(from), _mapped(to)], ports };
}
