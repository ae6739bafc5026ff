/**
 * The Node TLS listener's handshakes: a client is handed over once its
 * handshake is done, never a failed or a plain-text one.
 *
 * @module
 */
import type net from "node:net";
import type tls from "node:tls";
import { isPlainText } from "../_listen.ts";
import type { ListenOptions } from "../types.ts";
import { NodeConn } from "./conn.ts";

/**
 * Hands a TLS listener's clients over once their handshake is done
 * (`secureConnection`): a failed one never reaches the core and is
 * destroyed, as is one that has not finished within the server's
 * `handshakeTimeout`. Each is reported with when its TCP connection was
 * accepted, stamped on the raw socket at `connection` (before Node wraps
 * it), which the TLSSocket names as `_parent` (as it has since Node 0.11;
 * were it gone, the stamp would be missing, nothing else).
 */
export function watchHandshakes(server: tls.Server, options: ListenOptions): void {
  const acceptedAt = new WeakMap<net.Socket, number>();
  server.prependListener("connection", (raw: net.Socket) => {
    acceptedAt.set(raw, performance.now());
  });
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    const raw = (socket as unknown as { _parent?: net.Socket })._parent;
    const at = raw === undefined ? undefined : acceptedAt.get(raw);
    options.onConnection(new NodeConn(socket, undefined, false), at);
  });
  // With a listener here, Node leaves the socket of a handshake that timed
  // out open (checked: Node 20): destroy every failed one.
  server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
    if (options.onPlainText !== undefined && isPlainText(error)) {
      const { remoteAddress, remotePort } = socket;
      options.onPlainText({ hostname: remoteAddress ?? "", port: remotePort ?? 0 });
    }
    socket.destroy();
  });
}
