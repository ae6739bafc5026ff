/**
 * The running balancer: every frontend of a config, started together,
 * swept for idle and lifetime limits by one timer, and stopped together
 * with a grace period. Reload will apply a new config here, frontend by
 * frontend.
 *
 * @module
 */
import type { Config } from "../config/config.ts";
import type { Endpoint, Net } from "../runtime/types.ts";
import type { Events } from "./events.ts";
import { Frontend } from "./frontend.ts";
import { logEvents } from "./log_events.ts";

export { ListenError } from "./frontend.ts";

/** Options for {@linkcode Balancer.start}. */
export interface BalancerOptions {
  /** The runtime's sockets. */
  net: Net;
  /**
   * Where connection and backend events go.
   * @default logging through LogTape, at the levels configured when the balancer starts
   */
  events?: Events;
}

/** Options for {@linkcode Balancer.stop}. */
export interface StopOptions {
  /**
   * How long open connections may go on before they are cut, in milliseconds.
   * @default 5000
   */
  graceMs?: number;
}

/** Live figures of a running balancer. */
export interface BalancerStats {
  /** Client connections being served now. */
  activeConnections: number;
  /** Timers still pending (connect and queue timeouts). */
  pendingTimers: number;
  /** Connections waiting in the frontends' queues. */
  queuedConnections: number;
}

/**
 * A running load balancer: every frontend of a config, bound and serving.
 *
 * @example
 * ```ts
 * const balancer = await Balancer.start(config, { net });
 * // … later
 * await balancer.stop({ graceMs: 1000 });
 * ```
 */
export class Balancer {
  readonly #frontends: Frontend[];
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(config: Config, options: BalancerOptions) {
    const events = options.events ?? logEvents();
    this.#frontends = config.frontends.map((frontend) =>
      new Frontend(frontend, options.net, events)
    );
  }

  /**
   * Starts the periodic check of idle_timeout and max_lifetime, when any
   * frontend sets one: every quarter of the shortest, between 50 ms and 1 s.
   */
  #startSweeper(): void {
    const limits = this.#frontends.flatMap((f) => [f.config.idleTimeoutMs, f.config.maxLifetimeMs])
      .filter((ms): ms is number => ms !== undefined);
    if (limits.length === 0) return;
    const every = Math.min(1000, Math.max(50, Math.min(...limits) / 4));
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const frontend of this.#frontends) frontend.sessions.sweep(now);
    }, every);
  }

  /**
   * Binds every frontend of `config` and starts serving.
   *
   * @param config a validated config
   * @param options the runtime's sockets, and where events go
   * @returns the running balancer
   * @throws {ListenError} when a frontend cannot bind (the others are closed again)
   */
  static start(config: Config, options: BalancerOptions): Promise<Balancer> {
    const balancer = new Balancer(config, options);
    try {
      for (const frontend of balancer.#frontends) frontend.listen();
      balancer.#startSweeper();
    } catch (error) {
      for (const frontend of balancer.#frontends) frontend.close();
      return Promise.reject(error);
    }
    return Promise.resolve(balancer);
  }

  /** The addresses the frontends are bound to, in config order. */
  get addresses(): Endpoint[] {
    return this.#frontends.map((frontend) => frontend.address!);
  }

  /** Live counters, for tests and metrics. */
  get stats(): BalancerStats {
    let activeConnections = 0;
    let pendingTimers = 0;
    let queuedConnections = 0;
    for (const frontend of this.#frontends) {
      activeConnections += frontend.sessions.size;
      pendingTimers += frontend.sessions.timers;
      queuedConnections += frontend.queued;
    }
    return { activeConnections, pendingTimers, queuedConnections };
  }

  /**
   * Stops accepting, lets open connections finish for up to `graceMs`, then
   * cuts the rest. Calling it again returns the same promise, and cuts every
   * connection at once when it asks for no grace.
   *
   * @param options the grace period
   * @returns when every connection is closed
   */
  stop(options: StopOptions = {}): Promise<void> {
    const graceMs = options.graceMs ?? 5000;
    if (this.#stopping === undefined) this.#stopping = this.#stop(graceMs);
    else if (graceMs === 0) this.#abortAll();
    return this.#stopping;
  }

  #abortAll(): void {
    for (const frontend of this.#frontends) frontend.sessions.abortAll();
  }

  async #stop(graceMs: number): Promise<void> {
    for (const frontend of this.#frontends) frontend.close();
    try {
      await this.#drain(graceMs);
    } finally {
      clearInterval(this.#sweeper);
    }
  }

  async #drain(graceMs: number): Promise<void> {
    const idle = Promise.all(this.#frontends.map((frontend) => frontend.sessions.idle()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<"expired">((resolve) => {
      timer = setTimeout(() => resolve("expired"), graceMs);
    });
    if (await Promise.race([idle, expired]) === "expired") {
      this.#abortAll();
      await idle;
    }
    clearTimeout(timer);
  }
}
