/**
 * The weighted_round_robin algorithm: nginx's smooth weighted round-robin.
 *
 * @module
 */
import { type BackendState, settle, Weights } from "../backend.ts";
import type { Selector } from "./selector.ts";

/**
 * Smooth weighted round-robin, as nginx does it: each pick adds every
 * backend's weight to its running score, takes the highest score and
 * subtracts the total weight from it. Weights 5, 1, 1 give a a b a c a a,
 * never five in a row to one backend.
 */
export class WeightedRoundRobin implements Selector {
  readonly #backends: readonly BackendState[];
  readonly #scores: number[];
  readonly #weights: Weights;

  /**
   * @param backends the backends; each `config.weight` is its share
   * @param weights their flag of reduced weights @default one never set
   */
  constructor(backends: readonly BackendState[], weights: Weights = new Weights()) {
    this.#backends = backends;
    this.#weights = weights;
    this.#scores = backends.map(() => 0);
  }

  /** Returns the backend whose turn it is by weight. */
  pick(): BackendState | undefined {
    const backends = this.#backends;
    const scores = this.#scores;
    let best = -1;
    let total = 0;
    if (!this.#weights.reduced) {
      for (let i = 0; i < backends.length; i++) {
        const backend = backends[i]!;
        if (!backend.up) continue;
        total += backend.config.weight;
        scores[i]! += backend.config.weight;
        if (best < 0 || scores[i]! > scores[best]!) best = i;
      }
    } else {
      // A backend ramps or has an agent share: by effective weights.
      for (let i = 0; i < backends.length; i++) {
        const backend = backends[i]!;
        if (!backend.up) continue;
        const weight = backend.effectiveWeight;
        total += weight;
        scores[i]! += weight;
        if (best < 0 || scores[i]! > scores[best]!) best = i;
      }
      settle(backends, this.#weights);
    }
    if (best < 0) return undefined;
    scores[best]! -= total;
    return backends[best];
  }
}
