/**
 * The least_connections algorithm: fewest open connections per unit of
 * weight, ties in turn.
 *
 * @module
 */
import { type BackendState, settle, Weights } from "../backend.ts";
import type { Selector } from "./selector.ts";

/**
 * Picks the backend with the fewest open connections for its weight
 * (`active / weight`). Ties go round-robin, so an idle pool is spread
 * evenly rather than filling the first backend.
 */
export class LeastConnections implements Selector {
  readonly #backends: readonly BackendState[];
  #next = 0;
  readonly #weights: Weights;

  /**
   * @param backends the backends, with their live `active` counts
   * @param weights their flag of reduced weights @default one never set
   */
  constructor(backends: readonly BackendState[], weights: Weights = new Weights()) {
    this.#backends = backends;
    this.#weights = weights;
  }

  /** Returns the least loaded backend. */
  pick(): BackendState | undefined {
    const backends = this.#backends;
    const count = backends.length;
    let best: BackendState | undefined;
    let bestLoad = Infinity;
    if (!this.#weights.reduced) {
      for (let k = 0; k < count; k++) {
        const backend = backends[(this.#next + k) % count]!;
        if (!backend.up) continue;
        const load = backend.active / backend.config.weight;
        if (load < bestLoad) {
          best = backend;
          bestLoad = load;
        }
      }
    } else {
      // A backend ramps or has an agent share: by effective weights.
      for (let k = 0; k < count; k++) {
        const backend = backends[(this.#next + k) % count]!;
        if (!backend.up) continue;
        const load = backend.active / backend.effectiveWeight;
        if (load < bestLoad) {
          best = backend;
          bestLoad = load;
        }
      }
      settle(backends, this.#weights);
    }
    if (count > 0) this.#next = (this.#next + 1) % count;
    return best;
  }
}
