/**
 * {@linkcode Net.bindDatagram} over `Deno.listenDatagram` (needs
 * `--unstable-net`).
 *
 * Deno 2.9 behaviour this relies on (see /work/shared/RUNTIME-FACTS.md):
 * - there is no `connect()`: a connected socket is emulated, sending to the
 *   peer and dropping datagrams from anyone else (compared by address as
 *   received, so `connect.hostname` should be an IP literal);
 * - ICMP errors are not reported: `error` is never called for them;
 * - `receive()` with no buffer allocates 65,507 bytes per call, and a smaller
 *   buffer truncates larger datagrams silently: the loop receives into one
 *   buffer of `maxDatagramBytes` + 1 bytes and copies each datagram out,
 *   dropping one that fills it (larger than the limit, truncated);
 * - `close()` makes the pending `receive()` reject, which ends the loop;
 * - no SO_REUSEPORT: `reuseAddress: true` lets a second socket bind the port
 *   but every datagram goes to the last one bound (40 senders: 0 and 40), and
 *   Deno's `node:dgram` refuses `reusePort` (EADDRINUSE): `reusePort` is
 *   refused at bind.
 *
 * @module
 */
import { bindDatagramError, reusePortUnsupported } from "../_datagram.ts";
import type { DatagramOptions, DatagramSocket, Endpoint } from "../types.ts";
import { MAX_DATAGRAM_BYTES } from "../types.ts";
import { withCode } from "./conn.ts";

/** A UDP address as `Deno.listenDatagram` gives and takes it. */
interface DenoUdpAddr {
  transport: "udp";
  hostname: string;
  port: number;
}

/** A `Deno.DatagramConn`, as far as the adapter uses it. */
interface DenoDatagramConn {
  readonly addr: DenoUdpAddr;
  receive(buffer?: Uint8Array): Promise<[Uint8Array, DenoUdpAddr]>;
  send(data: Uint8Array, to: DenoUdpAddr): Promise<number>;
  close(): void;
}

/** `Deno.listenDatagram`, an unstable API the stable types leave out. */
type ListenDatagram = (options: DenoUdpAddr) => DenoDatagramConn;

/** Binds a UDP socket with `Deno.listenDatagram`: the Deno adapter's `Net.bindDatagram`. */
export function denoBindDatagram(options: DatagramOptions): Promise<DatagramSocket> {
  const { hostname, port, connect, reusePort, handlers } = options;
  const max = options.maxDatagramBytes ?? MAX_DATAGRAM_BYTES;
  const listenDatagram = (Deno as unknown as { listenDatagram?: ListenDatagram }).listenDatagram;
  if (listenDatagram === undefined) {
    return Promise.reject(
      new Error("UDP on Deno needs --unstable-net (Deno.listenDatagram is missing)"),
    );
  }
  if (reusePort) {
    return Promise.reject(
      reusePortUnsupported(options, "Deno cannot set SO_REUSEPORT on a UDP socket"),
    );
  }
  let conn: DenoDatagramConn;
  try {
    conn = listenDatagram({
      transport: "udp",
      hostname,
      port,
    });
  } catch (error) {
    return Promise.reject(bindDatagramError(options, withCode(error)));
  }
  let closed = false;
  const peer: DenoUdpAddr | undefined = connect === undefined
    ? undefined
    : { transport: "udp", hostname: connect.hostname, port: connect.port };
  // One byte more than accepted: a datagram that fills it was larger, and is dropped.
  const buffer = new Uint8Array(max + 1);
  (async () => {
    while (!closed) {
      let received: [Uint8Array, DenoUdpAddr];
      try {
        received = await conn.receive(buffer);
      } catch (error) {
        // close() rejects the pending receive: the loop ends quietly, as it
        // does on any error that says the socket is gone (no busy loop).
        if (
          closed || error instanceof Deno.errors.BadResource ||
          error instanceof Deno.errors.Interrupted
        ) return;
        handlers.error?.(error instanceof Error ? error : new Error(String(error)));
        continue;
      }
      if (closed) return;
      const [view, from] = received;
      if (view.byteLength > max) continue;
      if (peer !== undefined && (from.port !== peer.port || from.hostname !== peer.hostname)) {
        continue;
      }
      handlers.message(view.slice(), { hostname: from.hostname, port: from.port });
    }
  })();
  const { hostname: boundHost, port: boundPort } = conn.addr;
  const address: Endpoint = { hostname: boundHost, port: boundPort };
  const failed = (error: unknown) => {
    if (!closed) handlers.error?.(error instanceof Error ? error : new Error(String(error)));
  };
  return Promise.resolve({
    address,
    send(data: Uint8Array, to?: Endpoint): boolean {
      if (closed) return false;
      const target = to === undefined
        ? peer
        : { transport: "udp" as const, hostname: to.hostname, port: to.port };
      if (target === undefined) return false;
      try {
        conn.send(data, target).catch(failed);
        return true;
      } catch {
        return false;
      }
    },
    close(): void {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch {
        // Closing twice is harmless.
      }
    },
  });
}
