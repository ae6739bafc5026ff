/**
 * The byte pipe: two {@linkcode Side}s, each reading from its connection and
 * writing to the other's, with backpressure (pause while the other side is
 * full, resume on its drain), half-close (a FIN ends the other side's write
 * side) and close propagation (an error resets the other side, a clean close
 * lets it flush). It knows nothing of backends, retries or configs.
 *
 * A side may be throttled (max_bytes_per_second, {@linkcode ThrottledSide}):
 * its bytes are written at the pace a token bucket allows, and its reading
 * pauses while it holds bytes the bucket has not paid for, so a fast peer
 * waits in the kernel's buffers, not in ours.
 *
 * This is the per-chunk hot path: one write per chunk, a pause when the
 * other side is full, no allocation and no logging.
 *
 * @module
 */
import type { Conn, ConnHandlers } from "../../runtime/types.ts";
import type { PipeEvent } from "../events.ts";

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

  /** A count that changes whenever bytes move through this side (what idle_timeout watches). */
  get moved(): number {
    return this.bytes;
  }

  data(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    const peer = this.peer;
    if (peer === undefined) this.owner.keepEarly(chunk);
    else if (!peer.write(chunk)) {
      this.conn.pause();
      if (this.owner.tracePipe) this.owner.tracePipeEvent(this, "pause");
    }
  }

  drain(): void {
    // Our write buffer emptied: the side that fills it may read again.
    const other = this.other;
    if (other === undefined || other.ended) return;
    other.conn.resume();
    if (this.owner.tracePipe) this.owner.tracePipeEvent(other, "resume");
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

/** The share of a second's worth of bytes a throttled side may send at once. */
const BURST_SECONDS = 0.1;

/** A throttled side's timer fired: its next bytes are due. */
function paceLater(side: ThrottledSide): void {
  side.due();
}

/**
 * A side whose bytes max_bytes_per_second paces, with a token bucket that
 * refills `rate` bytes a second and holds a tenth of a second's worth. A
 * chunk the bucket cannot pay for whole is written as far as it pays, and
 * the rest is kept (a copy: the runtime reuses a chunk's memory) with
 * reading paused, then written piece by piece as the bucket refills, on a
 * timer; reading resumes once nothing is kept. A runtime hands over a read
 * of 64 KiB or more at once, so pausing reads alone would let a whole one
 * through: what a side keeps is at most what arrived before its pause took
 * hold. Its FIN, and a clean close, are passed on after the kept bytes.
 *
 * A subclass, so that an unlimited side carries none of this.
 */
export class ThrottledSide extends Side {
  /** Pace timers pending in this process: none is left once its connections close (for tests). */
  static timers = 0;
  /** Bytes per second. */
  readonly #rate: number;
  /** The most the bucket holds: what may be written at once. */
  readonly #burst: number;
  #tokens: number;
  /** When the bucket was last refilled, in performance.now() time. */
  #refilled = performance.now();
  /** Kept bytes written so far: they move while reading is paused. */
  #paced = 0;
  /** Bytes read and not written yet, oldest first. */
  #kept: Uint8Array[] = [];
  /** Their total length. */
  #keptBytes = 0;
  /** The wait for the bucket to pay for the next kept bytes. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Whether `peer` reported itself full and has not drained since. */
  #blocked = false;
  /** Whether reading is paused (for the bucket or for a full peer). */
  #paused = false;
  /** The connection sent its FIN: pass it on once the kept bytes are written. */
  #endDue = false;
  /** The connection closed cleanly: close the peer once the kept bytes are written. */
  #closeDue = false;

  /**
   * @param owner the session
   * @param conn the connection this side reads from
   * @param name which end it is
   * @param rate bytes per second
   */
  constructor(owner: PipeOwner, conn: Conn, name: "client" | "backend", rate: number) {
    super(owner, conn, name);
    this.#rate = rate;
    this.#burst = Math.max(1, Math.floor(rate * BURST_SECONDS));
    this.#tokens = this.#burst;
  }

  /** Reads, and kept bytes written: a side pacing out what it keeps is not idle. */
  override get moved(): number {
    return this.bytes + this.#paced;
  }

  override data(chunk: Uint8Array): void {
    const peer = this.peer;
    if (peer === undefined) return super.data(chunk); // the session keeps it
    this.bytes += chunk.length;
    if (this.#keptBytes === 0 && !this.#blocked) {
      this.#refill();
      if (this.#tokens >= chunk.length) {
        this.#tokens -= chunk.length;
        if (!peer.write(chunk)) {
          this.#blocked = true;
          this.#pause();
        }
        return;
      }
    }
    // More than the bucket holds now: keep it, and write it as it refills.
    this.#kept.push(chunk.slice());
    this.#keptBytes += chunk.length;
    this.#pause();
    this.#pace();
  }

  /**
   * The backend is connected: writes what the client sent meanwhile (kept
   * by the session, copies already) at the pace, then its FIN if it sent one.
   *
   * @param early the bytes, in order
   * @param paused whether the session paused reading for having kept too much
   */
  connected(early: Uint8Array[] | undefined, paused: boolean): void {
    if (paused) this.#paused = true;
    if (early !== undefined) {
      for (const chunk of early) {
        this.#kept.push(chunk);
        this.#keptBytes += chunk.length;
      }
    }
    if (this.ended) this.#endDue = true;
    this.#pace();
    if (this.#keptBytes > 0 || this.#blocked) this.#pause();
  }

  /** The bucket's wait is over ({@linkcode paceLater}). */
  due(): void {
    this.#timer = undefined;
    ThrottledSide.timers--;
    this.#pace();
  }

  /**
   * Writes kept bytes as far as the bucket pays and the peer takes them;
   * waits for the bucket (a timer) or for the peer's drain for the rest.
   * Once all are written, passes on a FIN or close that came meanwhile, or
   * reads again.
   */
  #pace(): void {
    if (this.#timer !== undefined || this.#blocked) return; // a wait is under way
    const peer = this.peer!;
    if (this.#keptBytes > 0) {
      this.#refill();
      const kept = this.#kept;
      while (this.#keptBytes > 0 && this.#tokens >= 1) {
        const head = kept[0]!;
        const budget = Math.floor(this.#tokens);
        let piece = head;
        if (head.length <= budget) kept.shift();
        else {
          piece = head.subarray(0, budget);
          kept[0] = head.subarray(budget);
        }
        this.#keptBytes -= piece.length;
        this.#tokens -= piece.length;
        this.#paced += piece.length;
        if (!peer.write(piece)) {
          this.#blocked = true;
          return; // its drain goes on
        }
      }
      if (this.#keptBytes > 0) {
        // Wait until the bucket pays for a full burst (or what is left).
        const want = Math.min(this.#burst, this.#keptBytes) - this.#tokens;
        const ms = Math.max(1, Math.ceil(want * 1000 / this.#rate));
        this.#timer = setTimeout(paceLater, ms, this);
        ThrottledSide.timers++;
        return;
      }
    }
    if (this.#closeDue) {
      this.#closeDue = false;
      const other = this.other;
      if (other !== undefined && !other.closed) other.conn.close();
    } else if (this.#endDue) {
      this.#endDue = false;
      peer.end();
      if (this.owner.tracePipe) this.owner.tracePipeEvent(this, "half-close");
    } else if (this.#paused && !this.ended) {
      this.#paused = false;
      this.conn.resume();
      if (this.owner.tracePipe) this.owner.tracePipeEvent(this, "resume");
    }
  }

  #refill(): void {
    const now = performance.now();
    const tokens = this.#tokens + (now - this.#refilled) * this.#rate / 1000;
    this.#tokens = tokens < this.#burst ? tokens : this.#burst;
    this.#refilled = now;
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.conn.pause();
    if (this.owner.tracePipe) this.owner.tracePipeEvent(this, "pause");
  }

  /** Forgets what it keeps and any wait (what it kept can no longer be written). */
  #drop(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      ThrottledSide.timers--;
    }
    this.#kept = [];
    this.#keptBytes = 0;
    this.#endDue = false;
    this.#closeDue = false;
  }

  override drain(): void {
    // Our connection took what the other side wrote: it may write more.
    const other = this.other;
    if (!(other instanceof ThrottledSide)) return super.drain();
    if (!other.#blocked) return;
    other.#blocked = false;
    if (other.closed && !other.#closeDue) return;
    other.#pace();
  }

  override end(): void {
    if (this.peer === undefined || this.#keptBytes === 0) return super.end();
    this.ended = true;
    this.#endDue = true; // after the kept bytes
  }

  override close(error?: Error): void {
    const other = this.other;
    // What the other side keeps was for this connection, which is gone.
    if (other instanceof ThrottledSide) other.#drop();
    if (error === undefined && this.#keptBytes > 0 && other !== undefined && !other.closed) {
      // A clean close with bytes still kept: write them, then close the peer.
      this.closed = true;
      this.ended = true;
      this.#endDue = false;
      this.#closeDue = true;
      this.owner.sideClosed(this, undefined);
      return;
    }
    this.#drop();
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
