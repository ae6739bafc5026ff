/**
 * The write side of a connection as every adapter keeps it: the bytes
 * accepted and not yet handed to the system ({@linkcode WriteQueue}), whether
 * `write` still takes bytes, and what `end()` or `close()` asked to happen
 * once those bytes are out. The adapters differ only in how they write.
 *
 * @module
 */
import { WriteQueue } from "./_write_queue.ts";

/**
 * `write` reports backpressure past this many buffered bytes, in the
 * adapters whose writes all go through the outbox (Deno's, Node's).
 */
export const HIGH_WATER = 128 * 1024;

/** Nothing is due once the queue is empty. */
export const NOTHING = 0;
/** `end()` was called: send FIN once the queue is empty. */
export const END = 1;
/** `close()` was called: close once the queue is empty. */
export const CLOSE = 2;

/** What is due once the queue is empty: {@linkcode NOTHING}, {@linkcode END} or {@linkcode CLOSE}. */
export type Due = typeof NOTHING | typeof END | typeof CLOSE;

/**
 * A connection's pending writes and the end or close that follows them.
 *
 * The contract it implements for {@linkcode Conn.write}: once `end()`,
 * `close()` or `reset()` has been called, or the connection has closed,
 * `write` discards its bytes and returns false; it never throws.
 */
export class Outbox extends WriteQueue {
  /** Whether `write` takes bytes: true until end, close, reset or close by the peer. */
  accepting = true;
  #due: Due = NOTHING;
  #closeAsked = false;

  /** What is due once the queue is empty. */
  get due(): Due {
    return this.#due;
  }

  /**
   * Stops taking bytes and asks for FIN once the queue is empty.
   *
   * @returns false when the write side was already ended or closed: nothing to do
   */
  end(): boolean {
    if (!this.accepting) return false;
    this.accepting = false;
    this.#due = END;
    return true;
  }

  /**
   * Stops taking bytes and asks to close once the queue is empty (this
   * replaces an end still due: closing sends FIN too).
   *
   * @returns false when close was already asked or the connection is gone
   */
  close(): boolean {
    if (this.#closeAsked) return false;
    this.#closeAsked = true;
    this.accepting = false;
    this.#due = CLOSE;
    return true;
  }

  /** Returns what is due and forgets it: the caller does it now. */
  takeDue(): Due {
    const due = this.#due;
    this.#due = NOTHING;
    return due;
  }

  /** Drops every queued byte and takes no more (reset, or the connection closed). */
  override clear(): void {
    super.clear();
    this.accepting = false;
    this.#closeAsked = true;
    this.#due = NOTHING;
  }
}
