/**
 * The balancing algorithms, one file each beside this one, and the factory
 * that builds a frontend's selector from the name its config gives.
 *
 * @module
 */
import type { Algorithm } from "../../../config/config.ts";
import type { BackendState } from "../backend.ts";
import { First } from "./first.ts";
import { LeastConnections } from "./least_connections.ts";
import { PowerOfTwo } from "./power_of_two.ts";
import { Random } from "./random.ts";
import { RoundRobin } from "./round_robin.ts";
import type { Selector } from "./selector.ts";
import { SourceHash } from "./source_hash.ts";
import { WeightedRoundRobin } from "./weighted_round_robin.ts";

const FACTORIES: Record<
  Algorithm,
  (backends: readonly BackendState[], hashBalanceFactor?: number) => Selector
> = {
  round_robin: (backends: readonly BackendState[]) => new RoundRobin(backends),
  weighted_round_robin: (backends: readonly BackendState[]) => new WeightedRoundRobin(backends),
  least_connections: (backends: readonly BackendState[]) => new LeastConnections(backends),
  random: (backends: readonly BackendState[]) => new Random(backends),
  power_of_two: (backends: readonly BackendState[]) => new PowerOfTwo(backends),
  source_hash: (backends: readonly BackendState[], hashBalanceFactor?: number) =>
    new SourceHash(backends, hashBalanceFactor),
  first: (backends: readonly BackendState[]) => new First(backends),
};

/**
 * Builds the selector for an algorithm.
 *
 * @param algorithm its name
 * @param backends the frontend's backends
 * @param hashBalanceFactor `hash_balance_factor`: bounds source_hash's loads
 * @returns the selector
 */
export function createSelector(
  algorithm: Algorithm,
  backends: readonly BackendState[],
  hashBalanceFactor?: number,
): Selector {
  return FACTORIES[algorithm](backends, hashBalanceFactor);
}
