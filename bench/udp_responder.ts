/**
 * The UDP bench's backend: answers every datagram with a 128-byte reply to
 * its sender, the query's first 8 bytes (the load generator's client and
 * sequence numbers) copied into it, as a DNS server answers a query.
 *
 * Binds COUNT unconnected sockets on 127.0.0.1, ephemeral ports, and prints
 * `ports P1 P2 ...` once they are bound.
 *
 * Usage: bun bench/udp_responder.ts [COUNT]
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import process from "node:process";

declare const Bun: any;

/** The size of every reply. */
export const REPLY_BYTES = 128;

const count = Number(process.argv[2] ?? 2);
const ports: number[] = [];
for (let i = 0; i < count; i++) {
  const reply = new Uint8Array(REPLY_BYTES).fill(0x72);
  const socket = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket: any, data: Uint8Array, port: number, address: string) {
        reply.set(data.subarray(0, 8));
        socket.send(reply, port, address);
      },
      // A client that went away before its reply: ICMP unreachable, ignored.
      error() {},
    },
  });
  ports.push(socket.port);
}
console.log(`ports ${ports.join(" ")}`);
