/**
 * The types a PROXY protocol parse answers with, shared by the entry point
 * (`proxy.ts`) and the two formats (`proxy_v1.ts`, `proxy_v2.ts`), in a file
 * of their own so that the formats do not import the entry point that
 * imports them.
 *
 * @module
 */
import type { Endpoint } from "../runtime/types.ts";

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
