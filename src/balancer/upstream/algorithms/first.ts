/**
 * The first algorithm: fills backends in config order up to their
 * max_connections.
 *
 * @module
 */
import type { BackendState } from "../backend.ts";
import type { Selector } from "./selector.ts";

/**
 * Fills backends in config order: the first one with a free slot under its
 * `max_connections` takes the connection (a backend without a limit is never
 * full, so the ones after it only see retries). Keeps the fewest backends
 * busy, so the others can be scaled down.
 */
export class First implements Selector {
  readonly #backends: readonly BackendState[];

  /** @param backends the backends, in the order they are filled */
  constructor(backends: readonly BackendState[]) {
    this.#backends = backends;
  }

  /** Returns the first backend that is not full. */
  pick(): BackendState | undefined {
    for (const backend of this.#backends) {
      if (!backend.up) continue;
      const max = backend.config.maxConnections;
      if (max === undefined || backend.active < max) return backend;
    }
    return undefined;
  }
}
