/**
 * The floor Bun allows: a round-robin TCP proxy in a screenful, with callback
 * sockets and pause/resume, no config, no logs, no health, no timeouts. The
 * benchmark runs it as the `bun-minimal` reference so that the distance
 * between it and mini-balancer is our code's cost, not Bun's.
 *
 * Usage: bun bench/minimal_proxy.ts PORT BACKEND_PORT [BACKEND_PORT...]
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import process from "node:process";

declare const Bun: any;

interface Side {
  peer: any;
  pending: Uint8Array[];
}

const [port, ...backends] = process.argv.slice(2).map(Number);
let next = 0;

function write(socket: any, chunk: Uint8Array): void {
  const state: Side = socket.data;
  if (state.pending.length > 0) {
    state.pending.push(chunk.slice());
    return;
  }
  const written = socket.write(chunk);
  if (written < chunk.length) {
    state.pending.push(chunk.slice(Math.max(written, 0)));
    state.peer?.pause();
  }
}

const handlers = {
  binaryType: "uint8array",
  data(socket: any, chunk: Uint8Array) {
    const peer = socket.data.peer;
    if (peer) write(peer, chunk);
  },
  drain(socket: any) {
    const state: Side = socket.data;
    while (state.pending.length > 0) {
      const head = state.pending[0]!;
      const written = Math.max(socket.write(head), 0);
      if (written < head.length) {
        state.pending[0] = head.subarray(written);
        return;
      }
      state.pending.shift();
    }
    state.peer?.resume();
  },
  end(socket: any) {
    socket.data.peer?.shutdown();
  },
  close(socket: any) {
    socket.data.peer?.end();
  },
  error() {},
};

Bun.listen({
  hostname: "127.0.0.1",
  port,
  allowHalfOpen: true,
  socket: {
    ...handlers,
    open(client: any) {
      client.data = { peer: undefined, pending: [] };
      client.pause();
      const backend = backends[next++ % backends.length]!;
      Bun.connect({
        hostname: "127.0.0.1",
        port: backend,
        allowHalfOpen: true,
        socket: {
          ...handlers,
          open(server: any) {
            server.data = { peer: client, pending: [] };
            client.data.peer = server;
            client.resume();
          },
        },
      }).catch(() => client.end());
    },
  },
});
console.log(`listening on ${port}`);
