/**
 * The random algorithm, and the weighted draw that power_of_two shares.
 *
 * @module
 */
import { type BackendState, settle, weightOf, Weights } from "../backend.ts";
import type { Selector } from "./selector.ts";

/** A flag never set, for draws over backends without a pool. */
const NEVER_REDUCED = new Weights();

/** A source of uniform numbers in [0, 1); tests pass a seeded one. */
export type RandomSource = () => number;

/**
 * Picks one backend that is up at random, with probability proportional to
 * its weight.
 *
 * @param backends the backends
 * @param random a uniform source in [0, 1)
 * @param weights their flag of reduced weights @default one never set
 * @returns the backend, or undefined when there is none
 */
export function weightedRandom(
  backends: readonly BackendState[],
  random: RandomSource,
  weights: Weights = NEVER_REDUCED,
): BackendState | undefined {
  // The plain path, as before effective weights, when none is reduced.
  if (!weights.reduced) return plainDraw(backends, random);
  let total = 0;
  let last: BackendState | undefined;
  for (const backend of backends) {
    if (!backend.up) continue;
    total += weightOf(backend, weights);
    last = backend;
  }
  let point = random() * total;
  for (const backend of backends) {
    if (!backend.up) continue;
    point -= weightOf(backend, weights);
    if (point < 0) return backend;
  }
  return last;
}

/** {@linkcode weightedRandom} by the configured weights. */
function plainDraw(
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
  readonly #weights: Weights;

  /**
   * @param backends the backends
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

  /** Returns a random backend. */
  pick(): BackendState | undefined {
    if (!this.#weights.reduced) return plainDraw(this.#backends, this.#random);
    const picked = weightedRandom(this.#backends, this.#random, this.#weights);
    settle(this.#backends, this.#weights);
    return picked;
  }
}
