import type { Logger } from "@logtape/logtape";
import { formatAddress } from "../config/address.ts";
import type { Config, FrontendConfig } from "../config/config.ts";
import { getLog } from "../log.ts";
import type { Conn, Endpoint, Listener, Net } from "../runtime/types.ts";
import { createSelector } from "./algorithms.ts";
import { BackendState } from "./backend.ts";
import { reasonOf } from "./reason.ts";
import type { PickContext, Selector } from "./selector.ts";
import { Session, type SessionHost } from "./session.ts";

/** A frontend could not bind its address. */
export class ListenError extends Error {
  /** The address as written in the config. */
  readonly address: string;

  /**
   * @param address the address that could not be bound
   * @param cause what the runtime threw
   */
  constructor(address: string, cause: unknown) {
    super(`cannot listen on ${address}: ${reasonOf(cause)}`, { cause });
    this.name = "ListenError";
    this.address = address;
  }
}

/** Options for {@linkcode Balancer.start}. */
export interface BalancerOptions {
  /** The runtime's sockets. */
  net: Net;
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
  /** Timers still pending (connect timeouts). */
  pendingTimers: number;
}

class Frontend implements SessionHost {
  readonly config: FrontendConfig;
  readonly backends: BackendState[];
  readonly selector: Selector;
  log: Logger;
  logInfo = false;
  readonly connectTimeoutMs: number;
  readonly retries: number;
  readonly idleTimeoutMs: number | undefined;
  readonly maxLifetimeMs: number | undefined;
  readonly #balancer: Balancer;
  readonly #net: Net;
  listener: Listener | undefined;

  constructor(config: FrontendConfig, net: Net, balancer: Balancer) {
    this.config = config;
    this.#net = net;
    this.#balancer = balancer;
    this.connectTimeoutMs = config.connectTimeoutMs;
    this.retries = config.retries;
    this.idleTimeoutMs = config.idleTimeoutMs;
    this.maxLifetimeMs = config.maxLifetimeMs;
    this.backends = config.backends.map((backend) => new BackendState(backend));
    this.selector = createSelector(config.algorithm, this.backends);
    this.log = getLog("frontend");
  }

  listen(): Endpoint {
    const address = formatAddress(this.config.bindOn);
    try {
      this.listener = this.#net.listen({
        ...this.config.bindOn,
        onConnection: (conn) => this.#accept(conn),
      });
    } catch (error) {
      throw new ListenError(address, error);
    }
    const bound = this.listener.address;
    this.log = this.log.with({ local_address: formatAddress(bound) });
    this.logInfo = this.log.isEnabledFor("info");
    // A named frontend says its name; the original's single one keeps its line.
    const name = this.config.name;
    this.log.info("listening for connections", name === "frontend" ? {} : { frontend: name });
    return bound;
  }

  #accept(conn: Conn): void {
    try {
      this.#balancer.track(new Session(this, conn));
    } catch (error) {
      // A bug or a socket gone before we looked at it: lose this connection,
      // never the process.
      this.log.error("failed to accept connection", { reason: reasonOf(error) });
      conn.reset();
    }
  }

  connect(backend: BackendState): Promise<Conn> {
    return this.#net.connect(backend.config.forwardTo);
  }
  pick(context: PickContext): BackendState | undefined {
    return this.selector.pick(context);
  }
  pickAnother(context: PickContext, tried: readonly BackendState[]): BackendState | undefined {
    // The algorithm's own next choice when it offers an untried backend
    // (round-robin moves on); else the first untried one after the last tried,
    // in config order (a hash would keep answering the same backend).
    const choice = this.selector.pick(context);
    if (choice !== undefined && !tried.includes(choice)) return choice;
    const backends = this.backends;
    const start = backends.indexOf(tried[tried.length - 1]!);
    for (let k = 1; k <= backends.length; k++) {
      const backend = backends[(start + k) % backends.length]!;
      if (!tried.includes(backend)) return backend;
    }
    return undefined;
  }
  ended(session: Session): void {
    this.#balancer.untrack(session);
  }
  timerStarted(): void {
    this.#balancer.timers++;
  }
  timerCleared(): void {
    this.#balancer.timers--;
  }
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
  readonly #sessions = new Set<Session>();
  #idle: (() => void) | undefined;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #stopping: Promise<void> | undefined;
  /** Pending timers; see {@linkcode BalancerStats.pendingTimers}. */
  timers = 0;

  private constructor(config: Config, net: Net) {
    this.#frontends = config.frontends.map((frontend) => new Frontend(frontend, net, this));
  }

  /**
   * Starts the periodic check of idle_timeout and max_lifetime, when any
   * frontend sets one: every quarter of the shortest, between 50 ms and 1 s.
   */
  #startSweeper(): void {
    const limits = this.#frontends.flatMap((f) => [f.idleTimeoutMs, f.maxLifetimeMs])
      .filter((ms): ms is number => ms !== undefined);
    if (limits.length === 0) return;
    const every = Math.min(1000, Math.max(50, Math.min(...limits) / 4));
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const session of this.#sessions) session.checkTimeouts(now);
    }, every);
  }

  /**
   * Binds every frontend of `config` and starts serving.
   *
   * @param config a validated config
   * @param options the runtime's sockets
   * @returns the running balancer
   * @throws {ListenError} when a frontend cannot bind (the others are closed again)
   */
  static start(config: Config, options: BalancerOptions): Promise<Balancer> {
    const balancer = new Balancer(config, options.net);
    try {
      for (const frontend of balancer.#frontends) frontend.listen();
      balancer.#startSweeper();
    } catch (error) {
      for (const frontend of balancer.#frontends) frontend.listener?.close();
      return Promise.reject(error);
    }
    return Promise.resolve(balancer);
  }

  /** The addresses the frontends are bound to, in config order. */
  get addresses(): Endpoint[] {
    return this.#frontends.map((frontend) => frontend.listener!.address);
  }

  /** Live counters, for tests and metrics. */
  get stats(): BalancerStats {
    return { activeConnections: this.#sessions.size, pendingTimers: this.timers };
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
    for (const session of this.#sessions) session.abort();
  }

  async #stop(graceMs: number): Promise<void> {
    for (const frontend of this.#frontends) frontend.listener?.close();
    try {
      await this.#drain(graceMs);
    } finally {
      clearInterval(this.#sweeper);
    }
  }

  async #drain(graceMs: number): Promise<void> {
    if (this.#sessions.size === 0) return;
    const idle = new Promise<void>((resolve) => (this.#idle = resolve));
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

  /** Registers a new session. */
  track(session: Session): void {
    this.#sessions.add(session);
  }

  /** Forgets an ended session. */
  untrack(session: Session): void {
    this.#sessions.delete(session);
    if (this.#sessions.size === 0) this.#idle?.();
  }
}
