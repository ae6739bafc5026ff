/**
 * `Net.connectTls` over `node:tls`, for Node and for Deno: Deno's
 * own `Deno.connectTls` always verifies the certificate (and takes the name
 * it checks from the address it connects to), while Deno 2.9's `node:tls`
 * honours `rejectUnauthorized: false` and `servername` (checked with a small
 * experiment against a self-signed certificate).
 *
 * @module
 */
import tls from "node:tls";
import { NodeConn } from "./node/conn.ts";
import type { Conn, Endpoint, TlsConnectOptions } from "./types.ts";

/**
 * Connects over TCP and completes a TLS client handshake.
 *
 * @see `Net.connectTls` in ../types.ts
 */
export function nodeConnectTls(endpoint: Endpoint, options: TlsConnectOptions): Promise<Conn> {
  const { signal } = options;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    const socket = tls.connect({
      host: endpoint.hostname,
      port: endpoint.port,
      servername: options.serverName,
      rejectUnauthorized: options.verify,
    });
    socket.setNoDelay(true);
    const abort = () => {
      socket.destroy();
      reject(aborted());
    };
    signal?.addEventListener("abort", abort, { once: true });
    const failed = (error: Error) => {
      signal?.removeEventListener("abort", abort);
      socket.destroy();
      reject(error);
    };
    socket.once("error", failed);
    socket.once("secureConnect", () => {
      signal?.removeEventListener("abort", abort);
      socket.off("error", failed);
      resolve(new NodeConn(socket, undefined, false));
    });
  });
}

/** The error of a handshake abandoned through its signal. */
export function aborted(): Error {
  return Object.assign(new Error("TLS handshake abandoned"), { code: "ABORT_ERR" });
}
