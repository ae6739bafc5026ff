/**
 * The floor Bun allows: a round-robin TCP proxy in a screenful, with callback
 * sockets, no config, no logs, no health, no timeouts. The benchmark runs it
 * as the `bun-minimal` reference so that the distance between it and
 * mini-balancer is our code's cost, not Bun's.
 *
 * Lean on purpose, and still correct: a client is not paused while its
 * backend connects (its first bytes are kept), a FIN is passed on after the
 * bytes queued before it, and once both directions have ended it closes both
 * sockets itself rather than half-closing and waiting: `strace -c` under wrk
 * `Connection: close` counts 6 epoll_ctl and 4 setsockopt per proxied
 * connection, against 10 and 6 for the first version of this file.
 *
 * Usage: bun bench/minimal_proxy.ts PORT BACKEND_PORT [BACKEND_PORT...]
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import process from "node:process";

declare const Bun: any;

/** One socket's state. */
interface State {
  /** The other socket, once the backend is connected. */
  peer: any;
  /** Bytes the kernel did not take yet, in order. */
  pending: Uint8Array[] | undefined;
  /** Bytes read before the peer was there. */
  early: Uint8Array[] | undefined;
  /** This socket sent its FIN. */
  ended: boolean;
  /** The other side ended: our FIN to this socket goes out after `pending`. */
  finDue: boolean;
}

const state = (peer: any): State => ({
  peer,
  pending: undefined,
  early: undefined,
  ended: false,
  finDue: false,
});

const [port, ...backends] = process.argv.slice(2).map(Number);
let next = 0;

function write(socket: any, chunk: Uint8Array): void {
  const own: State = socket.data;
  if (own.pending !== undefined) {
    own.pending.push(chunk.slice());
    return;
  }
  const written = socket.write(chunk);
  if (written < chunk.length) {
    own.pending = [chunk.slice(Math.max(written, 0))];
    own.peer?.pause();
  }
}

/** Passes a FIN on to `socket`, or closes both when both directions are done. */
function passFin(socket: any): void {
  const own: State = socket.data;
  const peer = own.peer;
  if (own.ended && peer.data.pending === undefined) {
    socket.end();
    peer.end();
  } else socket.shutdown();
}

const handlers = {
  binaryType: "uint8array",
  data(socket: any, chunk: Uint8Array) {
    const own: State = socket.data;
    if (own.peer !== undefined) write(own.peer, chunk);
    else (own.early ??= []).push(chunk.slice());
  },
  drain(socket: any) {
    const own: State = socket.data;
    const pending = own.pending;
    if (pending === undefined) return;
    while (pending.length > 0) {
      const head = pending[0]!;
      const written = Math.max(socket.write(head), 0);
      if (written < head.length) {
        pending[0] = head.subarray(written);
        return;
      }
      pending.shift();
    }
    own.pending = undefined;
    if (own.finDue) passFin(socket);
    else own.peer?.resume();
  },
  end(socket: any) {
    const own: State = socket.data;
    own.ended = true;
    const peer = own.peer;
    if (peer === undefined) return; // passed on once connected
    if (peer.data.pending !== undefined) peer.data.finDue = true;
    else passFin(peer);
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
      const own = state(undefined);
      client.data = own;
      Bun.connect({
        hostname: "127.0.0.1",
        port: backends[next++ % backends.length]!,
        allowHalfOpen: true,
        socket: {
          ...handlers,
          open(server: any) {
            server.data = state(client);
            own.peer = server;
            const early = own.early;
            own.early = undefined;
            if (early !== undefined) { for (const chunk of early) write(server, chunk); }
            if (own.ended) handlers.end(client);
          },
        },
      }).catch(() => client.end());
    },
  },
});
console.log(`listening on ${port}`);
