/**
 * A backend as a pool tracks it: its config, its live connection count and
 * its health state. The pool keeps one per backend name across config
 * updates, so a reload or a discovery update keeps counters and health.
 *
 * @module
 */
import type { BackendConfig } from "../../config/config.ts";

/**
 * What an operator set on a backend through the admin API.
 *
 * @example
 * ```ts
 * import type { AdminState } from "mini-balancer";
 *
 * const state: AdminState = "draining"; // no new connection; open ones finish
 * balancer.setBackendState("web", "a", state); // false when there is no such backend
 * ```
 */
export type AdminState = "enabled" | "draining" | "disabled";

/** The smallest share of its weight a backend starts a slow start with (1/20). */
export const SLOW_START_FLOOR = 0.05;

/**
 * Shared by a pool's backends and selectors: whether some backend's
 * effective weight may be below its configured one now. While it is false
 * the selectors take their plain path and read no clock.
 *
 * @example
 * ```ts
 * import type { BackendState } from "mini-balancer";
 *
 * // Each backend's Weights is shared with its pool; programs only read it.
 * function mayBeReduced(backend: BackendState): boolean {
 *   return backend.weights.reduced;
 * }
 * ```
 */
export class Weights {
  /** Set when a backend starts a slow start or an agent lowers its share; cleared by a pick that finds none. */
  reduced = false;
  /** The clock, in milliseconds; tests pass their own. */
  now: () => number = () => performance.now();
}

/**
 * The weight a selector reads: the configured one while no backend of its
 * set ramps or has an agent share (no clock read), else the effective one.
 *
 * @param backend the backend
 * @param weights its set's flag
 * @returns the weight to balance by
 */
export function weightOf(backend: BackendState, weights: Weights): number {
  return weights.reduced ? backend.effectiveWeight : backend.config.weight;
}

/**
 * Clears the flag when no backend of the set is below its weight any more:
 * the next picks take the plain path again.
 *
 * @param backends the selector's backends
 * @param weights their flag
 */
export function settle(backends: readonly BackendState[], weights: Weights): void {
  if (!weights.reduced) return;
  for (const backend of backends) if (backend.reduced) return;
  weights.reduced = false;
}

/**
 * What a backend's agent said last (HAProxy's agent-check words).
 *
 * @example
 * ```ts
 * import type { AgentWords, BackendState } from "mini-balancer";
 *
 * // What an agent line "50% drain" says, applied to a backend.
 * const words: AgentWords = { share: 0.5, administrative: "drain" };
 * function apply(backend: BackendState) {
 *   backend.setAgent(words, "50% drain");
 * }
 * ```
 */
export interface AgentWords {
  /** `up`/`down`, when it said one. */
  readonly operational?: "up" | "down";
  /** `ready`/`drain`/`maint`, when it said one. */
  readonly administrative?: "ready" | "drain" | "maint";
  /** `NN%`: the share of the configured weight, 0 to 1, when it said one. */
  readonly share?: number;
}

/**
 * A backend as the balancer tracks it: its config and live state.
 *
 * @example
 * ```ts
 * import { Balancer, type BackendState } from "mini-balancer";
 *
 * const balancer = await Balancer.start(config, {
 *   net,
 *   events: {
 *     backendDown(frontend, backend: BackendState, reason) {
 *       console.warn(`${frontend.name}: ${backend.config.name} (${backend.state}, ${backend.active} open): ${reason}`);
 *     },
 *   },
 * });
 * ```
 */
export class BackendState {
  /** The backend's config; replaced when an update changes it. */
  config: BackendConfig;
  /** Connections open to it now (and connects under way). */
  active = 0;
  /**
   * Whether it takes new connections: healthy and enabled. Selectors read
   * this field alone; it follows {@linkcode BackendState.healthy} and
   * {@linkcode BackendState.admin}.
   */
  up = true;
  #healthy = true;
  #admin: AdminState = "enabled";
  /** Failures in a row (probes or real connects) while up. */
  failures = 0;
  /** Successful probes in a row while down. */
  successes = 0;
  /** Whether an update removed it: it takes no new connections, open ones finish. */
  removed = false;

  /** The pool's shared flag and clock. */
  weights: Weights;
  /** How long a backend that comes up ramps to its full weight, in milliseconds; 0: not at all. */
  slowStartMs = 0;
  /** When its slow start began (the `weights` clock), undefined when none is under way. */
  #rampStart: number | undefined;
  /** The agent's share of the configured weight (1 without an agent). */
  #share = 1;
  /** Whether the agent keeps it from new connections (down, drain, maint, 0%). */
  #agentHeld = false;
  /** What the agent said, as status pages show it; undefined without an agent answer. */
  agent: string | undefined;

  /**
   * A backend up and idle, as one starts.
   *
   * @param config the backend's config
   * @param weights the pool's shared flag and clock @default a flag of its own
   */
  constructor(config: BackendConfig, weights: Weights = new Weights()) {
    this.config = config;
    this.weights = weights;
  }

  /** Whether health checks find it healthy. */
  get healthy(): boolean {
    return this.#healthy;
  }
  set healthy(healthy: boolean) {
    this.#healthy = healthy;
    this.#update();
  }

  /** Recomputes `up`, and starts a slow start when it comes up. */
  #update(): void {
    const was = this.up;
    this.up = this.#healthy && this.#admin === "enabled" && !this.#agentHeld;
    if (this.up && !was) this.rampUp();
  }

  /** Starts a slow start now, if it has one (it came up, or was added while serving). */
  rampUp(): void {
    if (this.slowStartMs <= 0) return;
    this.#rampStart = this.weights.now();
    this.weights.reduced = true;
  }

  /**
   * Takes what its agent said, each answer whole (a word it leaves out
   * takes its default: up, ready, 100%): `down`, `drain`, `maint` and `0%`
   * keep it from new connections (open ones stay), `NN%` sets its share of
   * the configured weight.
   *
   * @param words the agent's words, as {@linkcode parseAgentLine} gives them
   * @param line the line as shown in status pages
   */
  setAgent(words: AgentWords, line: string): void {
    this.agent = line;
    this.#share = words.share ?? 1;
    this.#agentHeld = words.operational === "down" ||
      (words.administrative ?? "ready") !== "ready" || this.#share === 0;
    if (this.#share < 1) this.weights.reduced = true;
    this.#update();
  }

  /** Forgets what its agent said (agent checks were turned off): full share, not held. */
  clearAgent(): void {
    if (this.agent === undefined) return;
    this.agent = undefined;
    this.#share = 1;
    this.#agentHeld = false;
    this.#update();
  }

  /**
   * Its weight now: the configured weight × the agent's share × the slow
   * start ramp (from {@linkcode SLOW_START_FLOOR} to 1, linear over
   * `slowStartMs`). Never 0 while it is up.
   */
  get effectiveWeight(): number {
    const weight = this.config.weight;
    let factor = this.#share;
    if (this.#rampStart !== undefined) {
      const elapsed = (this.weights.now() - this.#rampStart) / this.slowStartMs;
      // Over, or a reload turned slow start off (0/0 is NaN) or the clock went back.
      if (!(elapsed >= 0 && elapsed < 1)) this.#rampStart = undefined;
      else factor *= Math.max(SLOW_START_FLOOR, elapsed);
    }
    return factor === 1 ? weight : weight * factor;
  }

  /** Whether its effective weight is below its configured one now. */
  get reduced(): boolean {
    return this.effectiveWeight < this.config.weight;
  }

  /**
   * What an operator set: enabled; draining (no new connections, open ones
   * finish, health checks go on); disabled (as draining, and no health checks).
   */
  get admin(): AdminState {
    return this.#admin;
  }
  set admin(admin: AdminState) {
    this.#admin = admin;
    this.#update();
  }

  /** Its state as status pages show it. */
  get state(): "up" | "down" | "draining" | "disabled" {
    if (this.#admin !== "enabled") return this.#admin;
    return this.#healthy ? "up" : "down";
  }

  /** Whether it is at its `max_connections`. */
  get full(): boolean {
    const max = this.config.maxConnections;
    return max !== undefined && this.active >= max;
  }
}
