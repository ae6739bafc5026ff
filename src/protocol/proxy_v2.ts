/**
 * PROXY protocol version 2: a 16-byte binary header (signature, version and
 * command, family and protocol, length) then an address block and TLVs;
 * parsed incrementally with TCP over IPv4 and IPv6 understood, and written.
 *
 * @module
 */
import type { Endpoint } from "../runtime/types.ts";
import { addressPair } from "./_pair.ts";
import { formatIpv4, formatIpv6 } from "../address/ip.ts";
import type { ProxyHeader, ProxyParse } from "./proxy_header.ts";

/** The 12 bytes every v2 header starts with. */
export const PROXY_V2_SIGNATURE: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);

/**
 * The most bytes we accept after the 16-byte header (addresses plus TLVs).
 * The spec has the sender emit the header in one segment ("always smaller
 * than an MSS"); 1024 holds the largest address block (AF_UNIX, 216) and the
 * registered TLVs senders use (unique id up to 128, authority, SSL details,
 * cloud endpoint ids) with room to spare, and stays under any MSS.
 */
export const MAX_PROXY_V2_ADDRESS_BYTES = 1024;

/** The longest v2 header we accept. */
export const MAX_PROXY_V2_BYTES: number = 16 + MAX_PROXY_V2_ADDRESS_BYTES;

const LOCAL_HEADER: ProxyHeader = { version: 2, command: "local" };
const UNSPEC_HEADER: ProxyHeader = { version: 2, command: "proxy" };

/** Address block sizes by family and protocol byte, for the ones we accept. */
const BLOCKS: ReadonlyMap<number, readonly [number, string]> = new Map([
  [0x00, [0, "UNSPEC"]],
  [0x11, [12, "TCP4"]],
  [0x21, [36, "TCP6"]],
  [0x31, [216, "UNIX"]],
]);

function _invalid(reason: string): ProxyParse {
  return { status: "invalid", reason };
}

function _hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

/** Why the TLVs in `[start, end)` overrun `end`, or undefined while they fit (as far as seen). */
function _tlvError(bytes: Uint8Array, start: number, end: number): string | undefined {
  let at = start;
  while (at < end) {
    if (end - at < 3) return "v2 TLV header runs past the header length";
    if (at + 3 > bytes.length) return undefined;
    at += 3 + (bytes[at + 1]! << 8 | bytes[at + 2]!);
    if (at > end) return "v2 TLV value runs past the header length";
  }
  return undefined;
}

function _endpoint(bytes: Uint8Array, at: number, size: 4 | 16, portAt: number): Endpoint {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const port = view.getUint16(portAt);
  if (size === 4) return { hostname: formatIpv4(view.getUint32(at)), port };
  const words = new Uint16Array(8);
  for (let k = 0; k < 8; k++) words[k] = view.getUint16(at + 2 * k);
  return { hostname: formatIpv6(words), port };
}

/**
 * Parses a v2 header from the first bytes of a connection. LOCAL ignores its
 * address block; AF_UNSPEC and AF_UNIX stream give no addresses; UDP and
 * unknown families are invalid.
 *
 * @param bytes everything received so far
 * @returns incomplete, invalid with a reason, or done with the header and its length
 */
export function parseProxyV2(bytes: Uint8Array): ProxyParse {
  const seen = bytes.length;
  for (let i = 0; i < PROXY_V2_SIGNATURE.length && i < seen; i++) {
    if (bytes[i] !== PROXY_V2_SIGNATURE[i]) return _invalid("not a PROXY protocol header");
  }
  if (seen < 13) return { status: "incomplete" };
  const version = bytes[12]! >> 4;
  const command = bytes[12]! & 0x0f;
  if (version !== 2) return _invalid(`v2 version must be 2: current value is ${version}`);
  if (command > 1) {
    return _invalid(`v2 command must be LOCAL (0) or PROXY (1): current value is ${command}`);
  }
  if (seen < 14) return { status: "incomplete" };
  const family = bytes[13]!;
  const block = command === 1 ? BLOCKS.get(family) : [0, "LOCAL"] as const;
  if (block === undefined) {
    return _invalid(
      family === 0x12 || family === 0x22 || family === 0x32
        ? `v2 protocol ${_hex(family)} is not TCP`
        : `v2 address family and protocol ${_hex(family)} is unknown`,
    );
  }
  if (seen < 16) return { status: "incomplete" };
  const length = bytes[14]! << 8 | bytes[15]!;
  if (length > MAX_PROXY_V2_ADDRESS_BYTES) {
    return _invalid(`v2 header oversized: ${16 + length} bytes, more than ${MAX_PROXY_V2_BYTES}`);
  }
  const [addressBytes, name] = block;
  if (length < addressBytes) return _invalid(`v2 address block too short for ${name}`);
  const end = 16 + length;
  if (command === 1 && family !== 0x00) {
    const error = _tlvError(bytes, 16 + addressBytes, end);
    if (error !== undefined) return _invalid(error);
  }
  if (seen < end) return { status: "incomplete" };
  let header: ProxyHeader;
  if (command === 0) header = LOCAL_HEADER;
  else if (family === 0x11) {
    header = {
      version: 2,
      command: "proxy",
      source: _endpoint(bytes, 16, 4, 24),
      destination: _endpoint(bytes, 20, 4, 26),
    };
  } else if (family === 0x21) {
    header = {
      version: 2,
      command: "proxy",
      source: _endpoint(bytes, 16, 16, 48),
      destination: _endpoint(bytes, 32, 16, 50),
    };
  } else header = UNSPEC_HEADER;
  return { status: "done", header, length: end };
}

/**
 * Writes a v2 PROXY header: TCP over IPv4 when both sides are IPv4, TCP over
 * IPv6 otherwise, AF_UNSPEC with an empty block when either side is missing
 * or not an IP literal. No TLVs.
 *
 * @param source the client's endpoint as its socket reports it
 * @param destination the endpoint the client connected to
 * @returns the header
 * @throws {RangeError} when a port is not 0 to 65535
 */
export function encodeProxyV2(
  source: Endpoint | undefined,
  destination: Endpoint | undefined,
): Uint8Array {
  const pair = addressPair(source, destination);
  const blockBytes = pair === undefined ? 0 : pair.family === 4 ? 12 : 36;
  const out = new Uint8Array(16 + blockBytes);
  out.set(PROXY_V2_SIGNATURE);
  out[12] = 0x21;
  const view = new DataView(out.buffer);
  view.setUint16(14, blockBytes);
  if (pair === undefined) return out;
  if (pair.family === 4) {
    out[13] = 0x11;
    view.setUint32(16, pair.addresses[0]);
    view.setUint32(20, pair.addresses[1]);
  } else {
    out[13] = 0x21;
    pair.addresses.forEach((words, side) => {
      for (let k = 0; k < 8; k++) view.setUint16(16 + 16 * side + 2 * k, words[k]!);
    });
  }
  view.setUint16(16 + blockBytes - 4, pair.ports[0]);
  view.setUint16(16 + blockBytes - 2, pair.ports[1]);
  return out;
}
