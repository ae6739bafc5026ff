/**
 * The byte pipe: two {@linkcode Side}s, each reading from its connection and
 * writing to the other's, with backpressure (pause while the other side is
 * full, resume on its drain), half-close (a FIN ends the other side's write
 * side) and close propagation (an error resets the other side, a clean close
 * lets it flush). It knows nothing of backends, retries or configs.
 *
 * A side may be throttled (max_bytes_per_second): after a read past its
 * budget it pauses until the budget has refilled, so a fast peer waits in
 * the kernel's buffers, not in ours.
 *
 * This is the per-chunk hot path: one write per chunk, a pause when the
 * other side is full, no allocation and no logging.
 *
 * @module
 */
import type { Conn, ConnHandlers } from "../runtime/types.ts";
import type { PipeEvent } from "./events.ts";

/** What a side reports to, the session that owns the pipe. */
export interface PipeOwner {
  /** Bytes arrived before the side had a peer (the backend is connecting). */
  keepEarly(chunk: Uint8Array): void;
  /** A side's connection closed; `error` when it ended abnormally. */
  sideClosed(side: Side, error: Error | undefined): void;
  /** Whether pipe events are traced; read on the rare paths only. */
  readonly tracePipe: boolean;
  /** Reports a pipe event (only called when tracePipe). */
  tracePipeEvent(side: Side, event: PipeEvent): void;
}

/**
 * A token bucket of bytes for one side: refills `rate` bytes a second, holds
 * an eighth of a second's worth, and may go into debt by one read, which
 * the side then waits out with its reading paused.
 */
export class Throttle {
  /** Bytes per second. */
  readonly rate: number;
  readonly #burst: number;
  #tokens: number;
  #at = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** @param rate bytes per second */
  constructor(rate: number) {
    this.rate = rate;
    this.#burst = rate / 8;
    this.#tokens = this.#burst;
  }

  /** Whether the side waits for its budget. */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  /**
   * Spends `bytes`; when that leaves a debt, calls `resume` once it is paid.
   *
   * @param bytes bytes just read
   * @param side its `paid()` is called when reading may go on
   * @returns true when the side must pause until then
   */
  spend(bytes: number, side: { paid(): void }): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.rate / 1000);
    this.#at = now;
    this.#tokens -= bytes;
    if (this.#tokens >= 0 || this.#timer !== undefined) return this.#timer !== undefined;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      side.paid();
    }, Math.ceil(-this.#tokens * 1000 / this.rate));
    return true;
  }

  /** Forgets a pending wait (the side closed). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Handlers for a connection that is being thrown away. */
export const DISCARD: ConnHandlers = { data() {}, end() {}, drain() {}, close() {} };

/**
 * One side of a proxied connection: reads from `conn` and writes what it
 * reads to `peer`, the other side's connection.
 */
export class Side implements ConnHandlers {
  readonly owner: PipeOwner;
  readonly conn: Conn;
  /** Which end this is, for traces and errors. */
  readonly name: "client" | "backend";
  /** The connection this side's bytes go to; unset while the backend connects. */
  peer: Conn | undefined = undefined;
  /** The other side, whose connection feeds `conn`. */
  other: Side | undefined = undefined;
  /** Bytes read from `conn` so far. */
  bytes = 0;
  /** Whether `conn` sent its FIN (or closed). */
  ended = false;
  /** Whether `conn` is closed. */
  closed = false;

  /**
   * @param owner the session
   * @param conn the connection this side reads from
   * @param name which end it is
   */
  constructor(owner: PipeOwner, conn: Conn, name: "client" | "backend") {
    this.owner = owner;
    this.conn = conn;
    this.name = name;
  }

  data(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    const peer = this.peer;
    if (peer === undefined) this.owner.keepEarly(chunk);
    else if (!peer.write(chunk)) {
      this.conn.pause();
      this.blocked();
      if (this.owner.tracePipe) this.owner.tracePipeEvent(this, "pause");
    }
  }

  /** Reading paused because the peer is full (the rare path): a hook for subclasses. */
  blocked(): void {}

  drain(): void {
    // Our write buffer emptied: the side that fills it may read again.
    const other = this.other;
    if (other === undefined || other.ended) return;
    if (other.drained()) return;
    other.conn.resume();
    if (this.owner.tracePipe) this.owner.tracePipeEvent(other, "resume");
  }

  /**
   * The connection this side writes to drained.
   *
   * @returns true when the side stays paused for a reason of its own
   */
  drained(): boolean {
    return false;
  }

  end(): void {
    this.ended = true;
    const peer = this.peer;
    if (peer === undefined) return; // the session passes it on once connected
    peer.end();
    if (this.owner.tracePipe) this.owner.tracePipeEvent(this, "half-close");
  }

  close(error?: Error): void {
    this.closed = true;
    this.ended = true;
    const other = this.other;
    if (other !== undefined && !other.closed) {
      // Nothing more can reach this side: an error aborts the other side, a
      // clean close lets it flush what it holds and close.
      if (error !== undefined) other.conn.reset();
      else other.conn.close();
    }
    this.owner.sideClosed(this, error);
  }
}

/**
 * A side whose reads max_bytes_per_second limits: after a read past its
 * budget it pauses until the budget is paid back. A subclass, so that an
 * unlimited side carries no field for it.
 */
export class ThrottledSide extends Side {
  readonly #throttle: Throttle;
  /** Whether `peer` reported itself full and has not drained since. */
  #blocked = false;

  /**
   * @param owner the session
   * @param conn the connection this side reads from
   * @param name which end it is
   * @param rate bytes per second
   */
  constructor(owner: PipeOwner, conn: Conn, name: "client" | "backend", rate: number) {
    super(owner, conn, name);
    this.#throttle = new Throttle(rate);
  }

  /** Whether it waits for its budget. */
  get waiting(): boolean {
    return this.#throttle.waiting;
  }

  override data(chunk: Uint8Array): void {
    super.data(chunk);
    if (this.#throttle.spend(chunk.length, this)) this.conn.pause();
  }

  override blocked(): void {
    this.#blocked = true;
  }

  override drained(): boolean {
    this.#blocked = false;
    return this.#throttle.waiting; // its throttle resumes it
  }

  /** The throttle's debt is paid: read again unless the peer is still full. */
  paid(): void {
    if (!this.#blocked && !this.ended) this.conn.resume();
  }

  override close(error?: Error): void {
    this.#throttle.stop();
    super.close(error);
  }
}

/**
 * Joins a client side and a backend side into a pipe: from now on each
 * one's bytes go to the other's connection.
 *
 * @param client the client's side
 * @param backend the backend's side
 */
export function join(client: Side, backend: Side): void {
  client.peer = backend.conn;
  client.other = backend;
  backend.peer = client.conn;
  backend.other = client;
}
