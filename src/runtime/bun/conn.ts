/**
 * {@linkcode BunConn}, a {@linkcode Conn} over a Bun socket, and the socket
 * handlers that make one: at an accept, a connect and a dial (Bun's
 * behaviour it relies on is listed in ./index.ts).
 *
 * @module
 */
import { deferClose, SocketConn } from "../_conn.ts";
import { CLOSE, END } from "../_outbox.ts";
import { release } from "../_release.ts";
import { descriptorsExhausted } from "../_accept_pause.ts";
import type { Conn, Dialer, Endpoint } from "../types.ts";

// Bun's socket API as far as used here, declared locally (see ./api.ts) so `deno check` covers it.
/** A socket of `Bun.listen` or `Bun.connect`, its `data` the adapter's connection. */
export interface BunSocket {
  data: BunConn;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  write(data: Uint8Array): number;
  shutdown(halfClose?: boolean): void;
  end(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
}
/** The callbacks `Bun.listen` and `Bun.connect` call on a socket's events. */
export interface BunSocketHandler {
  binaryType: "uint8array";
  open(socket: BunSocket): void;
  connectError?(socket: BunSocket, error: Error): void;
  data(socket: BunSocket, chunk: Uint8Array): void;
  drain(socket: BunSocket): void;
  end(socket: BunSocket): void;
  error(socket: BunSocket, error: Error): void;
  close(socket: BunSocket, error?: Error): void;
  /** A TLS socket's handshake ended: `success` says whether it completed. */
  handshake?(socket: BunSocket, success: boolean, authorizationError: Error | null): void;
}

/** A {@linkcode Conn} over a Bun socket; `BunConn.handlers` drive it from the socket's events. */
export class BunConn extends SocketConn<BunSocket> implements Conn {
  #closed = false;
  #error: Error | undefined;
  /** Our FIN is out and nothing closed the socket on our side since. */
  #finSent = false;
  /** The peer's FIN was reported. */
  #peerEnded = false;
  /** Why it closed, once closed: undefined for a clean close. */
  #reason: Error | undefined;
  /** Whether its close came from the peer's FIN after ours: an `end` is reported first. */
  #peerFin = false;

  /** Reports its close to the handlers (see {@linkcode deferClose}). */
  reportClose(): void {
    if (this.#peerFin) this.handlers.end();
    this.handlers.close(this.#reason);
  }

  constructor(socket: BunSocket, unix?: Endpoint) {
    super(socket, unix);
    // No setNoDelay: Bun's sockets already have TCP_NODELAY on (strace shows
    // the setsockopt after accept and connect), and calling it again cost
    // about a sixth of the CPU on a new-connection load.
  }

  write(chunk: Uint8Array): boolean {
    const out = this.out;
    if (!out.accepting) return false;
    if (out.bytes === 0) {
      const written = this.socket.write(chunk);
      if (written === chunk.length) return true;
      // The chunk's memory may be reused once we return: the outbox copies.
      out.push(written > 0 ? chunk.subarray(written) : chunk);
      return false;
    }
    out.push(chunk);
    return false;
  }

  pause(): void {
    if (!this.#closed) this.socket.pause();
  }
  resume(): void {
    if (!this.#closed) this.socket.resume();
  }

  end(): void {
    const out = this.out;
    if (!out.end() || out.bytes > 0) return; // FIN after the flush, on drain
    out.takeDue();
    this.#shutdown();
  }
  close(): void {
    const out = this.out;
    if (!out.close()) return;
    this.#finSent = false;
    if (out.bytes > 0) return; // closes after the flush, on drain
    out.takeDue();
    this.socket.end();
  }
  reset(): void {
    if (this.#closed) return;
    this.#finSent = false;
    this.out.clear();
    this.socket.terminate();
  }

  #flush(): void {
    const out = this.out;
    for (let head = out.head(); head !== undefined; head = out.head()) {
      const written = this.socket.write(head);
      if (written > 0) out.written(written);
      if (written < head.length) return;
    }
    const due = out.takeDue();
    if (due === END) this.#shutdown();
    else if (due === CLOSE) return this.socket.end();
    this.handlers.drain();
  }

  #shutdown(): void {
    // After the peer's FIN, our FIN finishes both directions: close at once.
    // A shutdown here cost a syscall and an epoll re-arm per proxied
    // connection (strace under wrk: 23.3 syscalls per connection against
    // 22.3 before the adapters shared their write side).
    if (this.#peerEnded) return this.socket.end();
    this.#finSent = true;
    this.socket.shutdown();
  }

  static readonly handlers: Omit<BunSocketHandler, "open"> = {
    // Plain Uint8Array chunks: no Buffer prototype to set up per read.
    binaryType: "uint8array",
    data(socket, chunk) {
      socket.data.handlers.data(chunk);
      // Bun gives every read an ArrayBuffer of its own, and the chunk is only
      // valid during the call (see ConnHandlers): give its memory back now.
      release(chunk, false);
    },
    drain(socket) {
      const conn = socket.data;
      if (conn.out.bytes > 0) conn.#flush();
    },
    end(socket) {
      const conn = socket.data;
      conn.#peerEnded = true;
      conn.handlers.end();
    },
    error(socket, error) {
      const conn = socket.data;
      if (conn !== undefined) conn.#error ??= error;
    },
    close(socket, error) {
      const conn = socket.data;
      if (conn === undefined || conn.#closed) return;
      conn.#closed = true;
      conn.out.clear();
      conn.#reason = error ?? conn.#error;
      // Closed cleanly after our FIN, by nothing we did: the peer's FIN did it.
      conn.#peerFin = conn.#reason === undefined && conn.#finSent && !conn.#peerEnded;
      // Bun calls close from inside end()/terminate(): report it later, so
      // handlers never run re-entrantly from a call on the same connection.
      deferClose(conn);
    },
  };
}

/** The handlers of a connection made by `bunNet.connect` to a TCP endpoint. */
export const connectHandlers: BunSocketHandler = {
  ...BunConn.handlers,
  open(socket) {
    socket.data = new BunConn(socket);
  },
};

/** Who waits for a dial, carried as the socket's data until it opens. */
export class Dialing {
  readonly to: Dialer;
  readonly tag: number;
  readonly unix: Endpoint | undefined;
  constructor(to: Dialer, tag: number, unix: Endpoint | undefined) {
    this.to = to;
    this.tag = tag;
    this.unix = unix;
  }
}

/**
 * Handlers for `bunNet.dial`: the outcome goes to the dialer from
 * Bun's own open and connectError callbacks, so the promise Bun.connect
 * returns is left alone (with connectError set it never rejects unhandled).
 */
export const dialHandlers: BunSocketHandler = {
  ...BunConn.handlers,
  open(socket) {
    const dialing = socket.data as unknown as Dialing;
    const conn = new BunConn(socket, dialing.unix);
    socket.data = conn;
    dialing.to.dialed(conn, dialing.tag);
  },
  connectError(socket, error) {
    const dialing = socket.data as unknown as Dialing;
    // Bun fails a Unix path that does not exist from inside Bun.connect:
    // report later, never from within dial (the rare path, so always).
    const reported = localCause(error);
    queueMicrotask(() => dialing.to.dialFailed(reported, dialing.tag));
  },
};

/**
 * Bun 1.4 reports a connect that failed for want of file descriptors
 * (`socket()` failing with EMFILE) as ECONNREFUSED, "Failed to connect":
 * when no descriptor can be had right now, say what it was, so that the
 * backend is not blamed for it.
 */
export function localCause(error: Error): Error {
  if ((error as { code?: unknown }).code !== "ECONNREFUSED" || !descriptorsExhausted()) {
    return error;
  }
  return Object.assign(new Error("Failed to connect: out of file descriptors", { cause: error }), {
    code: "EMFILE",
  });
}
