/**
 * The power_of_two algorithm: the less loaded of two random draws.
 *
 * @module
 */
import type { BackendState } from "../backend.ts";
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

  /**
   * @param backends the backends, with their live `active` counts
   * @param random a uniform source in [0, 1) @default Math.random
   */
  constructor(backends: readonly BackendState[], random: RandomSource = Math.random) {
    this.#backends = backends;
    this.#random = random;
  }

  /** Returns the less loaded of two random backends. */
  pick(): BackendState | undefined {
    const backends = this.#backends;
    const first = weightedRandom(backends, this.#random);
    if (first === undefined) return undefined;
    const others = backends.filter((backend) => backend !== first);
    const second = weightedRandom(others, this.#random);
    if (second === undefined) return first;
    const load = (backend: BackendState) => backend.active / backend.config.weight;
    return load(second) < load(first) ? second : first;
  }
}
