/**
 * The few Bun APIs the Bun adapter uses, declared here rather than taken
 * from Bun's own types, so that `deno check` covers the adapter too (a
 * socket's own API is beside its connection, in ./conn.ts); and where a
 * socket goes ({@linkcode bunAddress}).
 *
 * @module
 */
import type { Endpoint } from "../types.ts";
import type { BunSocket, BunSocketHandler } from "./conn.ts";

/** What `Bun.listen` returns. */
export interface BunServer {
  readonly hostname: string;
  readonly port: number;
  stop(closeActiveConnections?: boolean): void;
}
/** What `Bun.serve` returns. */
export interface BunHttpServer {
  readonly hostname: string;
  readonly port: number;
  stop(closeActiveConnections?: boolean): Promise<void>;
  requestIP(request: Request): { address: string; port: number } | null;
}
/** Where `Bun.listen` and `Bun.connect` go: a host and port, or a Unix socket. */
export type BunAddress = { hostname: string; port: number } | { unix: string };
/**
 * The `Bun` global, as far as the adapter uses it: each file that calls it
 * declares `declare const Bun: BunGlobal;`.
 */
export interface BunGlobal {
  serve(options: {
    hostname: string;
    port: number;
    /** Seconds. */
    idleTimeout?: number;
    fetch(request: Request, server: BunHttpServer): Response | Promise<Response>;
  }): BunHttpServer;
  listen(
    options: BunAddress & {
      allowHalfOpen: boolean;
      reusePort?: boolean;
      tls?: { cert: string; key: string };
      socket: BunSocketHandler;
    },
  ): BunServer;
  connect(
    options: BunAddress & {
      allowHalfOpen: boolean;
      socket: BunSocketHandler;
      data?: unknown;
      /** A TLS client: `rejectUnauthorized` verifies the certificate. */
      tls?: { rejectUnauthorized: boolean; serverName?: string };
    },
  ): Promise<BunSocket>;
  /** Standard input, read as a stream by a worker (./stdin.ts). */
  readonly stdin: { stream(): ReadableStream<Uint8Array> };
}

/** Where `Bun.listen` and `Bun.connect` go for `endpoint`. */
export function bunAddress(endpoint: Endpoint): BunAddress {
  const { path } = endpoint;
  return path === undefined ? { hostname: endpoint.hostname, port: endpoint.port } : { unix: path };
}
