/**
 * The random algorithm, and the weighted draw that power_of_two shares.
 *
 * @module
 */
import type { BackendState } from "../backend.ts";
import type { Selector } from "./selector.ts";

/** A source of uniform numbers in [0, 1); tests pass a seeded one. */
export type RandomSource = () => number;

/**
 * Picks one backend that is up at random, with probability proportional to
 * its weight.
 *
 * @param backends the backends
 * @param random a uniform source in [0, 1)
 * @returns the backend, or undefined when there is none
 */
export function weightedRandom(
  backends: readonly BackendState[],
  random: RandomSource,
): BackendState | undefined {
  let total = 0;
  let last: BackendState | undefined;
  for (const backend of backends) {
    if (!backend.up) continue;
    total += backend.config.weight;
    last = backend;
  }
  let point = random() * total;
  for (const backend of backends) {
    if (!backend.up) continue;
    point -= backend.config.weight;
    if (point < 0) return backend;
  }
  return last;
}

/** Picks a backend at random, in proportion to the weights. */
export class Random implements Selector {
  readonly #backends: readonly BackendState[];
  readonly #random: RandomSource;

  /**
   * @param backends the backends
   * @param random a uniform source in [0, 1) @default Math.random
   */
  constructor(backends: readonly BackendState[], random: RandomSource = Math.random) {
    this.#backends = backends;
    this.#random = random;
  }

  /** Returns a random backend. */
  pick(): BackendState | undefined {
    return weightedRandom(this.#backends, this.#random);
  }
}
