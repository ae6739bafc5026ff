/**
 * What a connection reports before its user has set its handlers, kept and
 * replayed in order ({@linkcode EarlyEvents}). Shared by both adapters.
 *
 * @module
 */
import type { ConnHandlers } from "./types.ts";

/**
 * Handlers that keep what a connection reports before its user has set its
 * own, then replay it in order. Only the few events between accept (or
 * connect) and `setHandlers` pass through here, never the hot path.
 */
export class EarlyEvents implements ConnHandlers {
  #chunks: Uint8Array[] | undefined;
  #ended = false;
  #drained = false;
  #closed = false;
  #error: Error | undefined;

  data(chunk: Uint8Array): void {
    (this.#chunks ??= []).push(chunk.slice());
  }
  end(): void {
    this.#ended = true;
  }
  drain(): void {
    this.#drained = true;
  }
  close(error?: Error): void {
    this.#closed = true;
    this.#error = error;
  }

  /** Replays everything kept, in the order it happened, to `handlers`. */
  replay(handlers: ConnHandlers): void {
    const chunks = this.#chunks;
    this.#chunks = undefined;
    if (chunks !== undefined) { for (const chunk of chunks) handlers.data(chunk); }
    if (this.#ended) handlers.end();
    if (this.#drained) handlers.drain();
    if (this.#closed) handlers.close(this.#error);
  }
}
