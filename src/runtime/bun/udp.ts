/**
 * {@linkcode Net.bindDatagram} over `Bun.udpSocket`.
 *
 * Bun 1.4 behaviour this relies on (checked with small experiments, see
 * /work/shared/RUNTIME-FACTS.md):
 * - `connect: { hostname, port }` gives a connected socket, which reports
 *   ICMP port unreachable as `ECONNREFUSED` to `error` and stays open;
 * - `error` is called with the error alone; with no `error` handler an ICMP
 *   error exits the process, so every socket gets one;
 * - each datagram's buffer is its own copy (safe to keep);
 * - a taken port throws synchronously (EADDRINUSE), not through the promise;
 * - `reusePort` is not an option of `Bun.udpSocket` (ignored: the second bind
 *   fails), but its undocumented `flags: 4` (uSockets' REUSE_PORT) sets
 *   SO_REUSEPORT: two sockets share the port and the kernel spreads 40
 *   senders over both (19 and 21); `flags: 16` is SO_REUSEADDR (all 40 to one).
 *
 * @module
 */
import { bindDatagramError } from "../_datagram.ts";
import type { DatagramOptions, DatagramSocket, Endpoint } from "../types.ts";
import { MAX_DATAGRAM_BYTES } from "../types.ts";

/** A `Bun.udpSocket` socket, as far as the adapter uses it. */
interface BunUdpSocket {
  readonly address: { address: string; port: number };
  send(data: Uint8Array, port?: number, address?: string): boolean;
  close(): void;
}

/** The part of the `Bun` global this file uses. */
interface BunUdpGlobal {
  udpSocket(options: {
    hostname: string;
    port: number;
    /** uSockets' flags, undocumented: 4 sets SO_REUSEPORT. */
    flags?: number;
    connect?: { hostname: string; port: number };
    socket: {
      data(
        socket: BunUdpSocket,
        data: Uint8Array,
        port: number,
        address: string,
        flags?: { truncated?: boolean },
      ): void;
      error(error: Error): void;
    };
  }): Promise<BunUdpSocket>;
}

declare const Bun: BunUdpGlobal;

/** The `Bun.udpSocket` flag that sets SO_REUSEPORT (uSockets' LIBUS_LISTEN_REUSE_PORT). */
const REUSE_PORT = 4;

/** Binds a UDP socket with `Bun.udpSocket`: the Bun adapter's `Net.bindDatagram`. */
export async function bunBindDatagram(options: DatagramOptions): Promise<DatagramSocket> {
  const { hostname, port, connect, reusePort, handlers } = options;
  const max = options.maxDatagramBytes ?? MAX_DATAGRAM_BYTES;
  let closed = false;
  let socket: BunUdpSocket;
  try {
    socket = await Bun.udpSocket({
      hostname,
      port,
      ...(reusePort ? { flags: REUSE_PORT } : {}),
      ...(connect === undefined
        ? {}
        : { connect: { hostname: connect.hostname, port: connect.port } }),
      socket: {
        data(_socket, data, fromPort, fromAddress, flags) {
          if (closed || flags?.truncated || data.byteLength > max) return;
          handlers.message(data, { hostname: fromAddress, port: fromPort });
        },
        // Always set: without it, an ICMP error exits the process.
        error(error) {
          if (!closed) handlers.error?.(error);
        },
      },
    });
  } catch (error) {
    throw bindDatagramError(options, error);
  }
  const address: Endpoint = { hostname: socket.address.address, port: socket.address.port };
  return {
    address,
    send(data: Uint8Array, to?: Endpoint): boolean {
      if (closed) return false;
      try {
        return to === undefined ? socket.send(data) : socket.send(data, to.port, to.hostname);
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
