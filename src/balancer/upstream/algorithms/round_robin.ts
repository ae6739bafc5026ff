/**
 * The round_robin algorithm, in the original's exact order.
 *
 * @module
 */
import type { BackendState } from "../backend.ts";
import type { Selector } from "./selector.ts";

/**
 * The original's round-robin: connection 1 goes to backend 1, …, connection
 * n to backend n, and connection n+1 to backend 1 again. A backend that is
 * down is skipped.
 */
export class RoundRobin implements Selector {
  #backends: readonly BackendState[];
  #next = 0;

  /** @param backends the backends, in the order they are visited */
  constructor(backends: readonly BackendState[]) {
    this.#backends = backends;
  }

  /** Returns the next backend in order that is up, wrapping after the last. */
  pick(): BackendState | undefined {
    const backends = this.#backends;
    for (let k = 0; k < backends.length; k++) {
      const backend = backends[this.#next]!;
      this.#next = (this.#next + 1) % backends.length;
      if (backend.up) return backend;
    }
    return undefined;
  }
}
