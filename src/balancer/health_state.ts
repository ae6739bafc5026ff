/**
 * A backend's health as another process found it: what the supervisor of
 * `workers = N` tells its workers (its prober probes for all of them), and
 * what `Balancer.setHealth` takes. The balancer owns the shape, so
 * that it depends on no supervisor.
 *
 * @module
 */

/**
 * A backend's health: its frontend, its name, and whether it is up.
 *
 * @example
 * ```ts
 * import type { HealthState } from "mini-balancer";
 *
 * const state: HealthState = { frontend: "web", backend: "a", up: false };
 * balancer.setHealth(state); // false when the balancer has no such backend
 * ```
 */
export interface HealthState {
  /** The frontend's name. */
  readonly frontend: string;
  /** The backend's name. */
  readonly backend: string;
  /** Whether it is up. */
  readonly up: boolean;
  /** What its agent said last (`50% drain`), when the other process polls agents too. */
  readonly agent?: string;
}
