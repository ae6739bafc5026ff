/**
 * The HAProxy PROXY protocol, versions 1 and 2
 * (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt): the types a
 * parse answers with, and one entry point that tells the versions apart by
 * their first bytes. The formats themselves live in `proxy_v1.ts` and
 * `proxy_v2.ts`.
 *
 * @module
 */
import type { Endpoint } from "../runtime/types.ts";
import { MAX_PROXY_V1_BYTES, parseProxyV1 } from "./proxy_v1.ts";
import { MAX_PROXY_V2_BYTES, parseProxyV2 } from "./proxy_v2.ts";

export { encodeProxyV1, MAX_PROXY_V1_BYTES } from "./proxy_v1.ts";
export {
  encodeProxyV2,
  MAX_PROXY_V2_ADDRESS_BYTES,
  MAX_PROXY_V2_BYTES,
  PROXY_V2_SIGNATURE,
} from "./proxy_v2.ts";

/** What a PROXY header says about the connection it precedes. */
export interface ProxyHeader {
  /** The protocol version the header was written in. */
  readonly version: 1 | 2;
  /**
   * `"proxy"`: the addresses, when present, are the original client's and
   * the address it connected to. `"local"` (v2 LOCAL): a health check or the
   * proxy's own connection; use the real socket addresses.
   */
  readonly command: "proxy" | "local";
  /** The original client; undefined for v1 UNKNOWN, v2 AF_UNSPEC or AF_UNIX, and LOCAL. */
  readonly source?: Endpoint;
  /** The address the client connected to; undefined exactly when `source` is. */
  readonly destination?: Endpoint;
}

/** The answer of a PROXY header parser for the bytes received so far. */
export type ProxyParse =
  /** The bytes are a strict prefix of a possibly valid header: wait for more. */
  | { readonly status: "incomplete" }
  /** The bytes can no longer become a valid header; `reason` says why, for logs. */
  | { readonly status: "invalid"; readonly reason: string }
  /** A whole header: it took the first `length` bytes; the rest is payload. */
  | { readonly status: "done"; readonly header: ProxyHeader; readonly length: number };

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
