/**
 * {@linkcode NodeConn}, a {@linkcode Conn} over a `net.Socket` (or a
 * `tls.TLSSocket`) that writes copies of its own, one at a time (Node's
 * behaviour it relies on is listed in ./index.ts).
 *
 * @module
 */
import type net from "node:net";
import { SocketConn } from "../_conn.ts";
import { CLOSE, END, HIGH_WATER } from "../_outbox.ts";
import type { Conn, Endpoint } from "../types.ts";

/** A {@linkcode Conn} over a Node socket; `canReset` says whether a TCP reset can be sent. */
export class NodeConn extends SocketConn<net.Socket> implements Conn {
  /** Bytes of the write Node holds now (the head of the outbox), 0 when none. */
  #writing = 0;
  #wantDrain = false;
  /** reset() was called or the socket closed: nothing more to write or report but `close`. */
  #dead = false;
  #error: Error | undefined;
  /** Plain TCP, where a reset can be sent (not Unix, not TLS). */
  #canReset: boolean;

  constructor(socket: net.Socket, unix: Endpoint | undefined, canReset: boolean) {
    super(socket, unix);
    this.#canReset = canReset;
    socket.on("data", (chunk: Uint8Array) => this.handlers.data(chunk));
    socket.on("end", () => this.handlers.end());
    socket.on("error", (error: Error) => {
      if (!this.#dead) this.#error ??= error;
    });
    socket.on("close", () => {
      this.#dead = true;
      this.out.clear();
      // Node emits `close` on a later tick than the call that destroyed the
      // socket: handlers never run re-entrantly.
      this.handlers.close(this.#error);
    });
  }

  write(chunk: Uint8Array): boolean {
    const out = this.out;
    if (!out.accepting) return false;
    // Node would keep `chunk` itself, whose memory the caller may reuse: the outbox copies.
    out.push(chunk);
    if (this.#writing === 0) this.#flush();
    if (out.bytes < HIGH_WATER) return true;
    this.#wantDrain = true;
    return false;
  }

  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }

  end(): void {
    if (this.out.end() && this.#writing === 0) this.#flush();
  }
  close(): void {
    if (this.out.close() && this.#writing === 0) this.#flush();
  }
  reset(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.out.clear();
    if (this.#canReset) this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  /** Hands the outbox's head to Node, or does what is due once it is empty. */
  #flush(): void {
    const out = this.out;
    const head = out.head();
    if (head !== undefined) {
      this.#writing = head.length;
      this.socket.write(head, this.#written);
      return;
    }
    const due = out.takeDue();
    if (due === END) this.socket.end();
    else if (due === CLOSE) return void this.socket.end(this.#destroy);
    if (this.#wantDrain) {
      this.#wantDrain = false;
      this.handlers.drain();
    }
  }

  /** Node is done with the head: one callback per connection, not one per write. */
  #written = (error?: Error | null): void => {
    const n = this.#writing;
    this.#writing = 0;
    // A failed write destroys the socket: its `error` and `close` follow.
    if (this.#dead || error) return;
    this.out.written(n);
    this.#flush();
  };

  /** Closes both directions once the FIN of close() is out. */
  #destroy = (): void => void this.socket.destroy();
}
