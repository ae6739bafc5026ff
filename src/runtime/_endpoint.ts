/**
 * The endpoint the adapters give a Unix socket: neither Bun, Deno nor Node
 * names a Unix socket's addresses, so a connection over one reports the
 * socket's path as both its local and its remote address.
 *
 * @module
 */
import type { Endpoint } from "./types.ts";

/** An {@linkcode Endpoint} that is a Unix socket: its path set, "" and 0 for the rest. */
export type UnixEndpoint = Endpoint & { readonly path: string };

/**
 * Returns the endpoint of the Unix socket at `path` (`{ hostname: "", port: 0, path }`),
 * or undefined when there is no path (a TCP endpoint).
 *
 * @param path the socket's file, or undefined for TCP
 */
export function unixEndpoint(path: string): UnixEndpoint;
export function unixEndpoint(path: string | undefined): UnixEndpoint | undefined;
export function unixEndpoint(path: string | undefined): UnixEndpoint | undefined {
  return path === undefined ? undefined : { hostname: "", port: 0, path };
}
