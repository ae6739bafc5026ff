/**
 * The socket handlers of a Bun TLS listener: a client is reported once its
 * handshake is done, never a silent or a plain-text one.
 *
 * @module
 */
import type { AcceptPause } from "../_accept_pause.ts";
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, isPlainText } from "../_listen.ts";
import type { ListenOptions } from "../types.ts";
import { BunConn, type BunSocketHandler } from "./conn.ts";

/** A TLS client accepted and still in its handshake. */
interface Handshaking {
  readonly acceptedAt: number;
  readonly timer: ReturnType<typeof setTimeout>;
}

/**
 * The handlers of a TLS listener: `Bun.listen` calls `open` at the TCP
 * accept, before any TLS byte, and `handshake` once the handshake is over
 * (`success` false when it failed, also when the client left first, with
 * the reason as `authorizationError`; after a success that argument is the
 * client certificate's verification, which means nothing to a server that
 * asks for none). The connection is reported only after a successful
 * handshake; one that has not finished within the deadline is closed, so a
 * silent client costs a socket for that long only.
 */
export function tlsHandlers(options: ListenOptions, pause: AcceptPause): BunSocketHandler {
  const { onConnection } = options;
  const handshaking = new Map<BunConn, Handshaking>();
  /** Forgets a client's handshake; returns when it was accepted, if it was still under way. */
  const done = (conn: BunConn | undefined): Handshaking | undefined => {
    const entry = conn === undefined ? undefined : handshaking.get(conn);
    if (entry === undefined) return undefined;
    clearTimeout(entry.timer);
    handshaking.delete(conn!);
    return entry;
  };
  return {
    ...BunConn.handlers,
    open(socket) {
      if (pause.failing) pause.accepted();
      const conn = new BunConn(socket);
      socket.data = conn;
      const ms = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
      const timer = setTimeout(() => {
        if (done(conn) !== undefined) conn.reset();
      }, ms);
      handshaking.set(conn, { acceptedAt: performance.now(), timer });
    },
    handshake(socket, success, error) {
      const conn = socket.data;
      const entry = done(conn);
      if (entry === undefined) return; // not the first handshake, or timed out
      if (success) return onConnection(conn, entry.acceptedAt);
      // On a failure, Bun passes its reason as `authorizationError`.
      if (options.onPlainText !== undefined && isPlainText(error)) {
        options.onPlainText(conn.remoteAddress);
      }
      conn.reset();
    },
    close(socket, error) {
      done(socket.data);
      BunConn.handlers.close(socket, error);
    },
  };
}
