/**
 * The live sessions of one frontend: registration, the periodic check of
 * idle_timeout and max_lifetime, draining at shutdown, and the counts that
 * tests and metrics read.
 *
 * @module
 */

/** What the registry needs of a session. */
export interface Tracked {
  /** Closes it when idle or alive too long; called periodically. */
  checkTimeouts(now: number): void;
  /** Cuts both sides at once. */
  abort(): void;
}

/** The live sessions of a frontend. */
export class Sessions<S extends Tracked = Tracked> {
  readonly #live = new Set<S>();
  readonly #onEnded: (session: S) => void;
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
  }

  /**
   * Forgets an ended session.
   *
   * @returns whether it was registered
   */
  delete(session: S): boolean {
    if (!this.#live.delete(session)) return false;
    if (this.#live.size === 0) this.#idle?.();
    this.#onEnded(session);
    return true;
  }

  /** Lets every session check its timeouts. */
  sweep(now: number): void {
    for (const session of this.#live) session.checkTimeouts(now);
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
