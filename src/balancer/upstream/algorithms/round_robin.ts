/**
 * The round_robin algorithm, in the original's exact order.
 *
 * @module
 */
import { type BackendState, settle, Weights } from "../backend.ts";
import type { Selector } from "./selector.ts";

/**
 * The original's round-robin: connection 1 goes to backend 1, …, connection
 * n to backend n, and connection n+1 to backend 1 again. A backend that is
 * down is skipped. While a backend ramps (slow start) or its agent gave it
 * a share, the turns go by smooth weighted round-robin on each backend's
 * share of its full weight instead, until every one is full again.
 */
export class RoundRobin implements Selector {
  #backends: readonly BackendState[];
  #next = 0;
  readonly #weights: Weights;
  readonly #scores: number[];

  /**
   * @param backends the backends, in the order they are visited
   * @param weights their flag of reduced weights @default one never set
   */
  constructor(backends: readonly BackendState[], weights: Weights = new Weights()) {
    this.#backends = backends;
    this.#weights = weights;
    this.#scores = backends.map(() => 0);
  }

  /** Returns the next backend in order that is up, wrapping after the last. */
  pick(): BackendState | undefined {
    if (this.#weights.reduced) {
      settle(this.#backends, this.#weights);
      if (this.#weights.reduced) return this.#pickShares();
    }
    const backends = this.#backends;
    for (let k = 0; k < backends.length; k++) {
      const backend = backends[this.#next]!;
      this.#next = (this.#next + 1) % backends.length;
      if (backend.up) return backend;
    }
    return undefined;
  }

  /** Smooth weighted round-robin on each backend's share of its full weight. */
  #pickShares(): BackendState | undefined {
    const backends = this.#backends;
    const scores = this.#scores;
    let best = -1;
    let total = 0;
    for (let i = 0; i < backends.length; i++) {
      const backend = backends[i]!;
      if (!backend.up) continue;
      const share = backend.effectiveWeight / backend.config.weight;
      total += share;
      scores[i]! += share;
      if (best < 0 || scores[i]! > scores[best]!) best = i;
    }
    if (best < 0) return undefined;
    scores[best]! -= total;
    return backends[best];
  }
}
