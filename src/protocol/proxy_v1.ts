/**
 * PROXY protocol version 1: one line of text, `PROXY TCP4 src dst sport
 * dport\r\n`, parsed strictly and incrementally, and written.
 *
 * @module
 */
import type { Endpoint } from "../runtime/types.ts";
import { addressPair } from "./_pair.ts";
import { formatIpv4, formatIpv6, INVALID, scanIpv4, scanIpv6, VALID } from "../address/ip.ts";
import type { ProxyHeader, ProxyParse } from "./proxy_header.ts";

/** The longest v1 line, CRLF included: `PROXY UNKNOWN` with two full IPv6 addresses and ports. */
export const MAX_PROXY_V1_BYTES = 107;

const START = "PROXY ";
const FIELDS = [
  "protocol",
  "source address",
  "destination address",
  "source port",
  "destination port",
];
const PORT = /^(0|[1-9]\d{0,4})$/;
const TOO_LONG = `v1 header longer than ${MAX_PROXY_V1_BYTES} bytes`;
const UNKNOWN_HEADER: ProxyHeader = { version: 1, command: "proxy" };

function _invalid(reason: string): ProxyParse {
  return { status: "invalid", reason };
}

/** A complete field, or undefined when it is not one. */
function _field(index: number, text: string, ipv6: boolean): string | number | undefined {
  if (index >= 3) {
    const port = PORT.test(text) ? Number(text) : 65536;
    return port <= 65535 ? port : undefined;
  }
  if (!ipv6) {
    const address = scanIpv4(text);
    return address >= 0 ? formatIpv4(address) : undefined;
  }
  const words = new Uint16Array(8);
  return scanIpv6(text, words) === VALID ? formatIpv6(words) : undefined;
}

/** Whether a field's text could still grow into a valid field. */
function _fieldPrefix(index: number, text: string, ipv6: boolean): boolean {
  if (index >= 3) return text === "" || _field(index, text, ipv6) !== undefined;
  return ipv6 ? scanIpv6(text, undefined) !== INVALID : scanIpv4(text) !== -1;
}

function _fieldError(index: number, ipv6: boolean): string {
  const what = index >= 3
    ? "a number 0 to 65535 without leading zeros"
    : ipv6
    ? "an IPv6 address"
    : "an IPv4 address without leading zeros";
  return `v1 ${FIELDS[index]} is not ${what}`;
}

function _protocolError(protocol: string): string | undefined {
  return protocol === "TCP4" || protocol === "TCP6"
    ? undefined
    : "v1 protocol must be TCP4, TCP6 or UNKNOWN";
}

/** The header a whole line (after `PROXY `, before CRLF) says, or why it says none. */
function _line(rest: string): ProxyHeader | string {
  if (rest === "UNKNOWN" || rest.startsWith("UNKNOWN ")) return UNKNOWN_HEADER;
  const fields = rest.split(" ");
  const protocolError = _protocolError(fields[0]!);
  if (protocolError !== undefined) return protocolError;
  const ipv6 = fields[0] === "TCP6";
  if (fields.length !== 5) {
    return "v1 line must hold protocol, two addresses and two ports, separated by single spaces";
  }
  const values: (string | number)[] = [];
  for (let index = 1; index < 5; index++) {
    const value = _field(index, fields[index]!, ipv6);
    if (value === undefined) return _fieldError(index, ipv6);
    values.push(value);
  }
  const [sourceHost, destinationHost, sourcePort, destinationPort] = values as [
    string,
    string,
    number,
    number,
  ];
  return {
    version: 1,
    command: "proxy",
    source: { hostname: sourceHost, port: sourcePort },
    destination: { hostname: destinationHost, port: destinationPort },
  };
}

/**
 * For a line seen only in part (after `PROXY `, no CRLF yet): why no line
 * that starts so can be valid, or the fewest bytes still to come.
 */
function _partial(rest: string): string | number {
  const fields = rest.split(" ");
  const protocol = fields[0]!;
  if (fields.length === 1) {
    const possible = ["TCP4", "TCP6", "UNKNOWN"].some((name) => name.startsWith(protocol));
    return possible ? 2 : "v1 protocol must be TCP4, TCP6 or UNKNOWN";
  }
  if (protocol === "UNKNOWN") return 2;
  const protocolError = _protocolError(protocol);
  if (protocolError !== undefined) return protocolError;
  const ipv6 = protocol === "TCP6";
  if (fields.length > 5) return "v1 line has a field after the destination port";
  const last = fields.length - 1;
  for (let index = 1; index < last; index++) {
    if (_field(index, fields[index]!, ipv6) === undefined) return _fieldError(index, ipv6);
  }
  if (!_fieldPrefix(last, fields[last]!, ipv6)) return _fieldError(last, ipv6);
  // The fewest bytes that can follow: end this field, then the shortest of each next one, then CRLF.
  let needed = _field(last, fields[last]!, ipv6) === undefined ? 1 : 0;
  for (let index = last + 1; index < 5; index++) needed += 1 + (index >= 3 ? 1 : ipv6 ? 2 : 7);
  return needed + 2;
}

/**
 * Parses a v1 header from the first bytes of a connection.
 *
 * @param bytes everything received so far
 * @returns incomplete, invalid with a reason, or done with the header and its length
 */
export function parseProxyV1(bytes: Uint8Array): ProxyParse {
  const seen = Math.min(bytes.length, MAX_PROXY_V1_BYTES);
  const text = String.fromCharCode(...bytes.subarray(0, seen));
  const head = Math.min(seen, START.length);
  if (text.slice(0, head) !== START.slice(0, head)) return _invalid("not a PROXY protocol header");
  if (seen <= START.length) return { status: "incomplete" };
  const end = text.indexOf("\r\n", START.length);
  if (end >= 0) {
    const header = _line(text.slice(START.length, end));
    return typeof header === "string"
      ? _invalid(header)
      : { status: "done", header, length: end + 2 };
  }
  if (text.endsWith("\r")) {
    // The LF may be next: what precedes the CR must be a whole line.
    const header = _line(text.slice(START.length, -1));
    if (typeof header === "string") return _invalid(header);
    return seen < MAX_PROXY_V1_BYTES ? { status: "incomplete" } : _invalid(TOO_LONG);
  }
  const needed = _partial(text.slice(START.length));
  if (typeof needed === "string") return _invalid(needed);
  return seen + needed <= MAX_PROXY_V1_BYTES ? { status: "incomplete" } : _invalid(TOO_LONG);
}

/**
 * Writes a v1 header: `TCP4` when both sides are IPv4, `TCP6` otherwise
 * (IPv6 always in hex groups, as the spec writes it), `UNKNOWN` when either
 * side is missing or not an IP literal.
 *
 * @param source the client's endpoint as its socket reports it
 * @param destination the endpoint the client connected to
 * @returns the line, CRLF included
 * @throws {RangeError} when a port is not 0 to 65535
 */
export function encodeProxyV1(
  source: Endpoint | undefined,
  destination: Endpoint | undefined,
): Uint8Array {
  const pair = addressPair(source, destination);
  let line: string;
  if (pair === undefined) {
    line = "PROXY UNKNOWN\r\n";
  } else {
    const [from, to] = pair.family === 4
      ? pair.addresses.map(formatIpv4)
      : pair.addresses.map((words) => formatIpv6(words, { mixed: false }));
    line = `PROXY TCP${pair.family} ${from} ${to} ${pair.ports[0]} ${pair.ports[1]}\r\n`;
  }
  return new TextEncoder().encode(line);
}
