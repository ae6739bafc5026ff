/**
 * Addresses as the config writes them: `host:port`, bracketed IPv6, host
 * names, `unix:/path`; parsed into endpoints and formatted back for logs.
 *
 * @module
 */
import { scanIpv4 } from "./ip.ts";
import type { Endpoint } from "../runtime/types.ts";

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const UNIX = "unix:";
const UDP = "udp:";
/** A URL's scheme (`http://`, `tcp://`): an address is written without one. */
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
/** `sun_path` holds 108 bytes, the last one the terminating NUL. */
const MAX_UNIX_PATH_BYTES = 107;

/**
 * Parses `host:port`, where host is a name, an IPv4 address or a bracketed
 * IPv6 address (`[::1]:7070`), or `unix:path` for a Unix stream socket
 * (`unix:/run/lb.sock`, or a path relative to the working directory).
 *
 * @param text the address as written in the config
 * @param options.allowPortZero accept port 0 (a free port, for listening)
 * @returns the endpoint, IPv6 hosts without brackets; `{ hostname: "", port: 0, path }` for `unix:`
 * @throws {TypeError} when the text is not of the form host:port (a URL with a scheme included), or the Unix path is empty or holds a NUL
 * @throws {RangeError} when the port is out of range, or the Unix path is longer than 107 bytes
 *
 * @example
 * ```ts
 * import { parseAddress } from "mini-balancer";
 *
 * parseAddress("127.0.0.1:7070"); // { hostname: "127.0.0.1", port: 7070 }
 * parseAddress("[::1]:53"); // { hostname: "::1", port: 53 }
 * parseAddress("unix:/run/lb.sock"); // { hostname: "", port: 0, path: "/run/lb.sock" }
 * parseAddress("127.0.0.1:0", { allowPortZero: true }); // a free port, to listen on
 * ```
 */
export function parseAddress(text: string, options: { allowPortZero?: boolean } = {}): Endpoint {
  if (text.startsWith(UNIX)) return parseUnixAddress(text.slice(UNIX.length));
  // `http://host:80` would otherwise read as an IPv6 address without brackets.
  if (SCHEME.test(text)) throw new TypeError("must be host:port without a scheme");
  // Read as a host, "udp" would give the confusing "an IPv6 address needs brackets".
  if (text.startsWith(UDP)) {
    throw new TypeError('must be host:port: "udp:" is written on a frontend\'s bind_on only');
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) throw new TypeError("must be host:port");
  let host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (host.startsWith("[") && host.endsWith("]")) {
    host = host.slice(1, -1);
    if (!IPV6.test(host) || !host.includes(":")) {
      throw new TypeError("must be host:port: the brackets hold no IPv6 address");
    }
  } else if (host.includes(":")) {
    throw new TypeError("must be host:port: an IPv6 address needs brackets, as in [::1]:7070");
  } else if (!HOSTNAME.test(host)) {
    throw new TypeError(
      host === ""
        ? "must be host:port: the host is empty"
        : "must be host:port: the host is not a valid name or address",
    );
  } else if (/^[0-9.]+$/.test(host) && scanIpv4(host) < 0) {
    // No top-level domain is all digits, so this was meant as an address.
    throw new TypeError("must be host:port: the host is not a valid IPv4 address");
  }
  if (!/^\d{1,5}$/.test(portText)) {
    throw new TypeError("must be host:port: the port is not a number");
  }
  const port = Number(portText);
  const lowest = options.allowPortZero ? 0 : 1;
  if (port < lowest || port > 65535) {
    throw new RangeError(`must be host:port: the port must be between ${lowest} and 65535`);
  }
  return { hostname: host, port };
}

/** The transports a listening address can name: `udp:` before it makes it UDP. */
export type BindTransport = "tcp" | "udp";

/**
 * Parses a frontend's listening address: what {@linkcode parseAddress}
 * takes, or `udp:host:port` for a UDP socket (the endpoint is then the
 * address without the prefix).
 *
 * @param text the address as written in the config
 * @param options.allowPortZero accept port 0 (a free port)
 * @returns the transport and the endpoint
 * @throws {TypeError} as parseAddress does, and for `udp:unix:path` (UDP is not served on Unix sockets)
 * @throws {RangeError} as parseAddress does
 */
export function parseBindAddress(
  text: string,
  options: { allowPortZero?: boolean } = {},
): { transport: BindTransport; endpoint: Endpoint } {
  // `udp://host:53` is a URL: parseAddress says to write it without a scheme.
  if (!text.startsWith(UDP) || SCHEME.test(text)) {
    return { transport: "tcp", endpoint: parseAddress(text, options) };
  }
  const rest = text.slice(UDP.length);
  if (rest.startsWith(UNIX)) {
    throw new TypeError("must be udp:host:port: UDP is not served on Unix sockets");
  }
  try {
    return { transport: "udp", endpoint: parseAddress(rest, options) };
  } catch (error) {
    // "must be host:port: the port is not a number" names the form the user wrote.
    const message = (error as Error).message.replace(/^must be host:port/, "must be udp:host:port");
    throw error instanceof RangeError ? new RangeError(message) : new TypeError(message);
  }
}

/**
 * Formats a listening address the way it is written in the config: as
 * {@linkcode formatAddress}, with `udp:` before a UDP one.
 *
 * @param endpoint the endpoint
 * @param transport its transport
 * @returns `host:port`, `udp:host:port`, `[v6]:port` or `unix:path`
 */
export function formatBindAddress(endpoint: Endpoint, transport: BindTransport): string {
  return transport === "udp" ? UDP + formatAddress(endpoint) : formatAddress(endpoint);
}

function parseUnixAddress(path: string): Endpoint {
  if (path === "") throw new TypeError("must be unix:path: the path is empty");
  if (path.includes("\0")) throw new TypeError("must be unix:path: the path holds a NUL byte");
  const size = new TextEncoder().encode(path).length;
  if (size > MAX_UNIX_PATH_BYTES) {
    throw new RangeError(
      `must be unix:path: the path must be at most ${MAX_UNIX_PATH_BYTES} bytes, not ${size}`,
    );
  }
  return { hostname: "", port: 0, path };
}

/**
 * Whether a host is a wildcard that binds every address: `0.0.0.0` (every
 * IPv4 one) or `::` in any spelling (every one, IPv4 included on Linux).
 *
 * @param host a host name or IP literal, IPv6 without brackets
 * @returns true for a wildcard
 */
export function isWildcardHost(host: string): boolean {
  return host === "0.0.0.0" || (host.includes(":") && /^[0:]+$/.test(host));
}

/**
 * Whether a host (as {@linkcode parseAddress} accepts it) is a name to
 * resolve rather than an IP address.
 *
 * @param host a host name or IP literal, IPv6 without brackets
 * @returns true for a name such as `web.internal` or `localhost`
 */
export function isHostName(host: string): boolean {
  return host !== "" && !host.includes(":") && scanIpv4(host) < 0;
}

/**
 * Formats an endpoint the way it is written in the config, brackets around IPv6.
 *
 * @param endpoint the endpoint
 * @returns `host:port`, `[v6]:port`, or `unix:path`
 *
 * @example
 * ```ts
 * import { formatAddress } from "mini-balancer";
 *
 * formatAddress({ hostname: "::1", port: 53 }); // "[::1]:53"
 * formatAddress({ hostname: "", port: 0, path: "/run/lb.sock" }); // "unix:/run/lb.sock"
 * ```
 */
export function formatAddress(endpoint: Endpoint): string {
  const { hostname, port, path } = endpoint;
  if (path !== undefined) return UNIX + path;
  if (hostname === "") return "unknown"; // a socket reset before it was looked at
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}
