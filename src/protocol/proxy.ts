/**
 * The HAProxy PROXY protocol, versions 1 and 2
 * (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt): the types a
 * parse answers with (defined in `proxy_header.ts`), and one entry point that tells the versions apart by
 * their first bytes. The formats themselves live in `proxy_v1.ts` and
 * `proxy_v2.ts`.
 *
 * @module
 */
import type { ProxyParse } from "./proxy_header.ts";
import { MAX_PROXY_V1_BYTES, parseProxyV1 } from "./proxy_v1.ts";
import { MAX_PROXY_V2_BYTES, parseProxyV2, PROXY_V2_SIGNATURE } from "./proxy_v2.ts";

export type { ProxyHeader, ProxyParse } from "./proxy_header.ts";
export { encodeProxyV1, MAX_PROXY_V1_BYTES } from "./proxy_v1.ts";
export {
  encodeProxyV2,
  MAX_PROXY_V2_ADDRESS_BYTES,
  MAX_PROXY_V2_BYTES,
  PROXY_V2_SIGNATURE,
} from "./proxy_v2.ts";

/** The most bytes a header this parser accepts may take: v2's 16 plus its address cap. */
export const MAX_PROXY_HEADER_BYTES: number = Math.max(MAX_PROXY_V1_BYTES, MAX_PROXY_V2_BYTES);

/**
 * Parses a PROXY header of either version, told apart by the first byte
 * (`P` for v1's `PROXY `, CR for v2's signature). Answers "invalid" as soon as
 * the bytes seen cannot begin a valid header, and "incomplete" only while
 * they still can.
 *
 * @param bytes everything received on the connection so far
 * @returns incomplete, invalid with a reason, or done with the header and its length
 */
export function parseProxyHeader(bytes: Uint8Array): ProxyParse {
  if (bytes.length === 0) return { status: "incomplete" };
  if (bytes[0] === 0x50) return parseProxyV1(bytes);
  if (bytes[0] === 0x0d) return parseProxyV2(bytes);
  return { status: "invalid", reason: "not a PROXY protocol header" };
}

/**
 * The PROXY header a connection of the proxy's own (a health check) starts
 * with, carrying no client: v1 `PROXY UNKNOWN`, or v2 with the LOCAL command,
 * which tells the receiver to use the connection's real addresses. Backends
 * that require a header reject anything else, probes included.
 *
 * @param version the backend's `send_proxy`
 * @returns the header's bytes (15 for v1, 16 for v2)
 */
export function encodeProxyLocal(version: "v1" | "v2"): Uint8Array {
  if (version === "v1") return new TextEncoder().encode("PROXY UNKNOWN\r\n");
  const out = new Uint8Array(16);
  out.set(PROXY_V2_SIGNATURE);
  // Version 2, command LOCAL (0); family AF_UNSPEC and no address block.
  out[12] = 0x20;
  return out;
}
