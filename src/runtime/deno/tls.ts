/**
 * The Deno TLS listener's handshakes: a client is reported once its
 * handshake is done, never a silent or a plain-text one.
 *
 * @module
 */
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, isPlainText } from "../_listen.ts";
import type { ListenOptions } from "../types.ts";
import { DenoConn, endpointOf } from "./conn.ts";

/**
 * Reports a TLS client once its handshake is done. `Deno.listenTls`'s
 * accept returns at the TCP accept, before any TLS byte (the handshake
 * would run at the first read or write): a client that has not finished
 * within the deadline is closed and never reported, so it never gets a
 * session or a backend connection. (Its socket stays open until the peer
 * leaves, see `closesUnfinishedTls`: the core puts only its own loopback
 * router's connections here, and closes their other end itself.)
 */
export function handshake(conn: Deno.TlsConn, options: ListenOptions): void {
  const acceptedAt = performance.now();
  let over = false;
  const timer = setTimeout(() => {
    over = true;
    closeQuietly(conn);
  }, options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  conn.handshake().then(() => {
    clearTimeout(timer);
    if (!over) options.onConnection(new DenoConn(conn), acceptedAt);
  }, (error) => {
    clearTimeout(timer);
    if (over) return;
    if (options.onPlainText !== undefined && isPlainText(error)) {
      options.onPlainText(endpointOf(conn.remoteAddr));
    }
    closeQuietly(conn);
  });
}

/** Closes a Deno connection that may be closed already. */
function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already: nothing left to free.
  }
}
