/**
 * {@linkcode Net.bindDatagram} over `node:dgram`.
 *
 * Node 20 behaviour this relies on: a connected socket (`connect()`) emits
 * `error` with `ECONNREFUSED` on ICMP port unreachable and stays open; an
 * unconnected one reports nothing. `send()` is asynchronous: a datagram the
 * system drops is reported to its callback, so `send` returns true unless
 * the socket is closed. `dgram.createSocket`'s `reusePort` came in Node
 * 22.12 (Node 20 ignores it, and a second bind fails): on an older Node,
 * `reusePort` is refused at bind.
 *
 * @module
 */
import dgram from "node:dgram";
import { isIPv6 } from "node:net";
import process from "node:process";
import { bindDatagramError, reusePortUnsupported } from "../_datagram.ts";
import type { DatagramOptions, DatagramSocket, Endpoint } from "../types.ts";
import { MAX_DATAGRAM_BYTES } from "../types.ts";

/** Binds a UDP socket with `node:dgram`: the Node adapter's `Net.bindDatagram`. */
export async function nodeBindDatagram(options: DatagramOptions): Promise<DatagramSocket> {
  const { hostname, port, connect, reusePort, handlers } = options;
  const max = options.maxDatagramBytes ?? MAX_DATAGRAM_BYTES;
  if (reusePort && !hasReusePort()) {
    throw reusePortUnsupported(
      options,
      `Node ${process.versions.node} cannot (dgram's reusePort needs Node 22.12 or later)`,
    );
  }
  const socket = dgram.createSocket({
    type: isIPv6(hostname) ? "udp6" : "udp4",
    ...(reusePort ? { reusePort: true } : {}),
  } as dgram.SocketOptions);
  let closed = false;
  const ignore = () => {};
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind({ address: hostname, port, exclusive: true }, () => {
        if (connect === undefined) return resolve();
        socket.connect(connect.port, connect.hostname, () => resolve());
      });
    }).finally(() => socket.removeAllListeners("error"));
  } catch (error) {
    socket.on("error", ignore);
    socket.close();
    throw bindDatagramError(options, error);
  }
  socket.on("error", (error: Error) => {
    if (!closed) handlers.error?.(error);
  });
  socket.on("message", (data: Uint8Array, from: dgram.RemoteInfo) => {
    if (closed || data.byteLength > max) return;
    handlers.message(data, { hostname: from.address, port: from.port });
  });
  const bound = socket.address();
  const address: Endpoint = { hostname: bound.address, port: bound.port };
  const sent = (error: Error | null) => {
    if (error !== null && !closed) handlers.error?.(error);
  };
  return {
    address,
    send(data: Uint8Array, to?: Endpoint): boolean {
      if (closed) return false;
      try {
        if (to === undefined) socket.send(data, sent);
        else socket.send(data, to.port, to.hostname, sent);
        return true;
      } catch {
        return false;
      }
    },
    close(): void {
      if (closed) return;
      closed = true;
      socket.close();
    },
  };
}

/** Whether this Node's `dgram.createSocket` takes `reusePort` (22.12 and later, 23.1 and later). */
function hasReusePort(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}
