/**
 * The power_of_two algorithm: the less loaded of two random draws.
 *
 * @module
 */
import { type BackendState, settle, weightOf, Weights } from "../backend.ts";
import { type RandomSource, weightedRandom } from "./random.ts";
import type { Selector } from "./selector.ts";

/**
 * The power of two random choices: draw two different backends (by weight)
 * and send the connection to the one with fewer open connections for its
 * weight. Nearly as even as least-connections, without every balancer
 * process herding onto the same least loaded backend.
 */
export class PowerOfTwo implements Selector {
  readonly #backends: readonly BackendState[];
  readonly #random: RandomSource;
  readonly #weights: Weights;

  /**
   * @param backends the backends, with their live `active` counts
   * @param random a uniform source in [0, 1) @default Math.random
   * @param weights their flag of reduced weights @default one never set
   */
  constructor(
    backends: readonly BackendState[],
    random: RandomSource = Math.random,
    weights: Weights = new Weights(),
  ) {
    this.#backends = backends;
    this.#random = random;
    this.#weights = weights;
  }

  /** Returns the less loaded of two random backends. */
  pick(): BackendState | undefined {
    const backends = this.#backends;
    const weights = this.#weights;
    const first = weightedRandom(backends, this.#random, weights);
    if (first === undefined) return undefined;
    const others = backends.filter((backend) => backend !== first);
    const second = weightedRandom(others, this.#random, weights);
    if (weights.reduced) settle(backends, weights);
    if (second === undefined) return first;
    if (!weights.reduced) {
      return second.active / second.config.weight < first.active / first.config.weight
        ? second
        : first;
    }
    const load = (backend: BackendState) => backend.active / weightOf(backend, weights);
    return load(second) < load(first) ? second : first;
  }
}
