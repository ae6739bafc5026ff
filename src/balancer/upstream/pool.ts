/**
 * A frontend's backends: primaries and backups, their live state (health,
 * open connections), and the choice of one for each connection. `update` is
 * the one door through which the backend list changes at run time (reload,
 * service discovery): backends are matched by name and keep their state.
 *
 * @module
 */
import type { Algorithm, BackendConfig } from "../../config/config.ts";
import { createSelector } from "./algorithms/mod.ts";
import type { PickContext, Selector } from "./algorithms/selector.ts";
import { BackendState, Weights } from "./backend.ts";

/** What a pool is built from: a frontend config fits. */
export interface PoolConfig {
  /** How backends are chosen. */
  readonly algorithm: Algorithm;
  /** The backends, in config order. */
  readonly backends: readonly BackendConfig[];
  /** How far above the average source_hash may load a backend; `undefined`: no bound. */
  readonly hashBalanceFactor?: number | undefined;
  /** The slow start of backends that set none, in milliseconds. @default 0: none */
  readonly slowStartMs?: number;
}

/** What {@linkcode Pool.update} changed, by backend name. */
export interface PoolChanges {
  /** Backends that are new. */
  readonly added: string[];
  /** Backends that are gone (their open connections finish). */
  readonly removed: string[];
}

/** Why the last pick chose its backend: constant strings, for debug logs. */
export type PickReason =
  | "algorithm"
  | "backup, no primary up"
  | "next not full"
  | "next untried"
  | "select hook";

/**
 * The backends of one frontend and how to choose among them. Backups are
 * chosen only while no primary is up; a backend at its max_connections is
 * passed over for the next one in config order.
 */
export class Pool {
  #backends: BackendState[] = [];
  #primaries!: Selector;
  #backups!: Selector;
  /** Whether any backend has a max_connections: when none has, none is ever full. */
  #limited = false;
  /** Whether the first update is over: backends added later ramp up (slow start). */
  #serving = false;
  /** The primaries' flag of reduced weights, and the backups'. */
  readonly #weights = { primaries: new Weights(), backups: new Weights() };
  /** Why the last successful pick chose its backend. */
  why: PickReason = "algorithm";
  /** Told of each real connect that failed (passive health checks). */
  onConnectFailed: ((backend: BackendState, reason: string) => void) | undefined;

  /** @param config the algorithm and the backends */
  constructor(config: PoolConfig) {
    this.update(config);
  }

  /** The backends, in config order (removed ones are not listed). */
  get backends(): readonly BackendState[] {
    return this.#backends;
  }

  /**
   * Replaces the backend list and algorithm. A backend whose name is still
   * there keeps its state (health, open connections) and takes its new
   * settings; a removed one is marked so and gets no new connection.
   *
   * @param config the new algorithm and backends
   * @param serving whether backends it adds start a slow start (false: a
   *   first resolution, whose backends start at full weight as fixed ones do)
   * @returns the names added and removed
   */
  update(config: PoolConfig, serving = true): PoolChanges {
    const old = new Map(this.#backends.map((backend) => [backend.config.name, backend]));
    const added: string[] = [];
    this.#backends = config.backends.map((backendConfig) => {
      const kept = old.get(backendConfig.name);
      old.delete(backendConfig.name);
      const weights = backendConfig.backup ? this.#weights.backups : this.#weights.primaries;
      const slowStartMs = backendConfig.slowStartMs ?? config.slowStartMs ?? 0;
      if (kept === undefined) {
        added.push(backendConfig.name);
        const backend = new BackendState(backendConfig, weights);
        backend.slowStartMs = slowStartMs;
        // Not at process start: every backend starts at full weight then.
        if (this.#serving && serving) backend.rampUp();
        return backend;
      }
      kept.config = backendConfig;
      kept.weights = weights;
      kept.slowStartMs = slowStartMs;
      // It may be mid-ramp or have an agent share, and change sets.
      if (kept.reduced) weights.reduced = true;
      return kept;
    });
    this.#serving = true;
    for (const gone of old.values()) gone.removed = true;
    this.#primaries = createSelector(
      config.algorithm,
      this.#backends.filter((b) => !b.config.backup),
      this.#weights.primaries,
      config.hashBalanceFactor,
    );
    this.#backups = createSelector(
      config.algorithm,
      this.#backends.filter((b) => b.config.backup),
      this.#weights.backups,
      config.hashBalanceFactor,
    );
    this.#limited = this.#backends.some((b) => b.config.maxConnections !== undefined);
    return { added, removed: [...old.keys()] };
  }

  #select(context: PickContext): BackendState | undefined {
    const primary = this.#primaries.pick(context);
    if (primary !== undefined) {
      this.why = "algorithm";
      return primary;
    }
    this.why = "backup, no primary up";
    return this.#backups.pick(context);
  }

  /**
   * Chooses the backend for a new connection: the algorithm's choice, or
   * when that one is full, the next available one in config order.
   *
   * @param context the connection's facts
   * @returns the backend, or undefined when none is up and free
   */
  pick(context: PickContext): BackendState | undefined {
    const choice = this.#select(context);
    if (choice === undefined || !this.#limited || !choice.full) return choice;
    this.why = "next not full";
    return this.#nextAvailable(choice, [choice]);
  }

  /**
   * Chooses a backend not in `tried`, after a failed connect: the
   * algorithm's own next choice when it offers an untried backend
   * (round-robin moves on), else the next available one in config order (a
   * hash would keep answering the same backend).
   *
   * @param context the connection's facts
   * @param tried the backends already tried, the last one last
   * @returns the backend, or undefined when none is left
   */
  pickAnother(context: PickContext, tried: readonly BackendState[]): BackendState | undefined {
    const choice = this.#select(context);
    if (choice !== undefined && !tried.includes(choice) && !choice.full) return choice;
    this.why = "next untried";
    return this.#nextAvailable(tried[tried.length - 1]!, tried);
  }

  /**
   * A real connect to `backend` failed: passive health checks count it.
   *
   * @param backend the backend
   * @param reason why it failed
   */
  connectFailed(backend: BackendState, reason: string): void {
    this.onConnectFailed?.(backend, reason);
  }

  /**
   * A real connect to `backend` worked: its failure streak ends.
   *
   * @param backend the backend
   */
  connectSucceeded(backend: BackendState): void {
    if (backend.healthy) backend.failures = 0;
  }

  /** Whether any backend that could take a connection is up. */
  anyUp(): boolean {
    return this.#backends.some((backend) => backend.up);
  }

  /**
   * Whether every backend that is up is at its max_connections (and at least
   * one is up): new connections should wait for a free slot.
   */
  allFull(): boolean {
    if (!this.#limited) return false;
    let anyUp = false;
    for (const backend of this.#backends) {
      if (!backend.up) continue;
      if (!backend.full) return false;
      anyUp = true;
    }
    return anyUp;
  }

  /**
   * The first backend after `after`, in config order, that is up and neither
   * tried nor full; a primary if there is one, else a backup.
   */
  #nextAvailable(after: BackendState, tried: readonly BackendState[]): BackendState | undefined {
    const backends = this.#backends;
    const start = backends.indexOf(after);
    let backup: BackendState | undefined;
    for (let k = 1; k <= backends.length; k++) {
      const backend = backends[(start + k) % backends.length]!;
      if (!backend.up || tried.includes(backend) || backend.full) continue;
      if (!backend.config.backup) return backend;
      backup ??= backend;
    }
    return backup;
  }
}
