/**
 * The balancing algorithms, one file each beside this one, and the factory
 * that builds a frontend's selector from the name its config gives.
 *
 * @module
 */
import type { Algorithm } from "../../../config/config.ts";
import { type BackendState, Weights } from "../backend.ts";
import { First } from "./first.ts";
import { LeastConnections } from "./least_connections.ts";
import { PowerOfTwo } from "./power_of_two.ts";
import { Random } from "./random.ts";
import { RoundRobin } from "./round_robin.ts";
import type { Selector } from "./selector.ts";
import { SourceHash } from "./source_hash.ts";
import { WeightedRoundRobin } from "./weighted_round_robin.ts";

type Factory = (
  backends: readonly BackendState[],
  weights: Weights,
  hashBalanceFactor?: number,
) => Selector;

const FACTORIES: Record<Algorithm, Factory> = {
  round_robin: (backends, weights) => new RoundRobin(backends, weights),
  weighted_round_robin: (backends, weights) => new WeightedRoundRobin(backends, weights),
  least_connections: (backends, weights) => new LeastConnections(backends, weights),
  random: (backends, weights) => new Random(backends, Math.random, weights),
  power_of_two: (backends, weights) => new PowerOfTwo(backends, Math.random, weights),
  source_hash: (backends, _weights, hashBalanceFactor) =>
    new SourceHash(backends, hashBalanceFactor),
  first: (backends: readonly BackendState[]) => new First(backends),
};

/**
 * Builds the selector for an algorithm.
 *
 * @param algorithm its name
 * @param backends the frontend's backends
 * @param weights their flag of reduced weights (slow start, agent shares) @default one never set
 * @param hashBalanceFactor `hash_balance_factor`: bounds source_hash's loads
 * @returns the selector
 */
export function createSelector(
  algorithm: Algorithm,
  backends: readonly BackendState[],
  weights: Weights = new Weights(),
  hashBalanceFactor?: number,
): Selector {
  return FACTORIES[algorithm](backends, weights, hashBalanceFactor);
}
