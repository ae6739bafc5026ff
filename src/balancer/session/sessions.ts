/**
 * The live sessions of one frontend: registration, the periodic check of
 * idle_timeout and max_lifetime, draining at shutdown, and the counts that
 * tests and metrics read.
 *
 * @module
 */

/** What the registry needs of a session. */
export interface Tracked {
  /**
   * The shortest of its idle_timeout and max_lifetime (and a connection's
   * log_interval) in milliseconds, from the config it started with, when it
   * has any: how often it needs a check.
   */
  readonly limitMs: number | undefined;
  /** Closes it when idle or alive too long; called periodically. */
  checkTimeouts(now: number): void;
  /** Cuts both sides at once. */
  abort(): void;
  /** The backend it is connected or connecting to, if any. */
  readonly target?: unknown;
  /**
   * Closes it because its backend was marked down, if it is connected and
   * not closing already.
   *
   * @param reset whether to reset the client rather than send it a FIN
   * @returns whether it was closed
   */
  closeForDown(reset: boolean): boolean;
}

/** The live sessions of a frontend. */
export class Sessions<S extends Tracked = Tracked> {
  readonly #live = new Set<S>();
  readonly #onEnded: (session: S) => void;
  /**
   * How many live sessions have each limit ({@linkcode Tracked.limitMs}):
   * a reload changes the frontend's config, not the limits of the sessions
   * that started under the old one, so the sweep is sized from these.
   */
  readonly #limits = new Map<number, number>();
  #idle: (() => void) | undefined;
  /** Timers the sessions and the queue have pending (connect and queue timeouts). */
  timers = 0;

  /** @param onEnded called after each session ends and is forgotten */
  constructor(onEnded: (session: S) => void = () => {}) {
    this.#onEnded = onEnded;
  }

  /** Sessions being served now. */
  get size(): number {
    return this.#live.size;
  }

  /** Registers a new session. */
  add(session: S): void {
    this.#live.add(session);
    const limit = session.limitMs;
    if (limit !== undefined) this.#limits.set(limit, (this.#limits.get(limit) ?? 0) + 1);
  }

  /** The shortest limit among the live sessions, if any has one. */
  get shortestLimitMs(): number | undefined {
    let shortest: number | undefined;
    for (const limit of this.#limits.keys()) {
      if (shortest === undefined || limit < shortest) shortest = limit;
    }
    return shortest;
  }

  /**
   * Forgets an ended session.
   *
   * @returns whether it was registered
   */
  delete(session: S): boolean {
    if (!this.#live.delete(session)) return false;
    const limit = session.limitMs;
    if (limit !== undefined) {
      const left = this.#limits.get(limit)! - 1;
      if (left === 0) this.#limits.delete(limit);
      else this.#limits.set(limit, left);
    }
    if (this.#live.size === 0) this.#idle?.();
    this.#onEnded(session);
    return true;
  }

  /** Lets every session check its timeouts. */
  sweep(now: number): void {
    for (const session of this.#live) session.checkTimeouts(now);
  }

  /**
   * Closes every session connected to `backend` (`on_down =
   * "close_sessions"`).
   *
   * @param backend the backend marked down
   * @param reset whether to reset the client rather than send it a FIN
   * @returns how many were closed
   */
  closeOf(backend: S["target"], reset: boolean): number {
    let closed = 0;
    // Copied: a session may end, and leave the set, while this goes on.
    for (const session of [...this.#live]) {
      if (session.target === backend && session.closeForDown(reset)) closed++;
    }
    return closed;
  }

  /** Cuts every session at once. */
  abortAll(): void {
    for (const session of this.#live) session.abort();
  }

  /** Resolves once no session is left. */
  idle(): Promise<void> {
    if (this.#live.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#idle;
      this.#idle = () => {
        this.#idle = undefined;
        previous?.();
        resolve();
      };
    });
  }
}
