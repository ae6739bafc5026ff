/**
 * The running balancer: every frontend of a config, started together,
 * swept for idle and lifetime limits by one timer, changed by a reload
 * frontend by frontend without touching an open connection, and stopped
 * together with a grace period.
 *
 * @module
 */
import type { Config } from "../config/config.ts";
import type { Endpoint, Net } from "../runtime/types.ts";
import type { AdminState } from "./backend.ts";
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

/** What a reload changed, by name (backends as `frontend/backend`). */
export interface ReloadSummary {
  /** Frontends that are new and bound. */
  frontendsAdded: string[];
  /** Frontends that stopped accepting; their open connections finish. */
  frontendsRemoved: string[];
  /** Frontends whose settings, backends or address changed. */
  frontendsChanged: string[];
  /** Backends that are new. */
  backendsAdded: string[];
  /** Backends that get no new connections; their open ones finish. */
  backendsRemoved: string[];
  /** Frontends that could not bind their new address, and why; they stay as they were. */
  failures: string[];
}

/** A backend as a status page shows it. */
export interface BackendStatus {
  name: string;
  address: string;
  state: "up" | "down" | "draining" | "disabled";
  weight: number;
  backup: boolean;
  /** Connections open to it now. */
  active: number;
}

/** A frontend as a status page shows it. */
export interface FrontendStatus {
  name: string;
  /** The bound address. */
  address: string;
  algorithm: string;
  /** Connections served now. */
  active: number;
  /** Connections waiting in its queue. */
  queued: number;
  backends: BackendStatus[];
}

/** Whether two endpoints are the same address. */
function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.hostname === b.hostname && a.port === b.port;
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
  #frontends: Frontend[];
  /** Frontends a reload removed, until their open connections finish. */
  readonly #retiring = new Map<Frontend, ReturnType<typeof setTimeout>>();
  readonly #net: Net;
  readonly #events: Events;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(config: Config, options: BalancerOptions) {
    this.#net = options.net;
    this.#events = options.events ?? logEvents();
    this.#frontends = config.frontends.map((frontend) =>
      new Frontend(frontend, this.#net, this.#events)
    );
  }

  /** Every frontend with sessions to look after: serving ones and retiring ones. */
  #all(): Frontend[] {
    return [...this.#frontends, ...this.#retiring.keys()];
  }

  /**
   * Starts the periodic check of idle_timeout and max_lifetime, when any
   * frontend sets one: every quarter of the shortest, between 50 ms and 1 s.
   */
  #startSweeper(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    const limits = this.#frontends.flatMap((f) => [f.config.idleTimeoutMs, f.config.maxLifetimeMs])
      .filter((ms): ms is number => ms !== undefined);
    if (limits.length === 0) return;
    const every = Math.min(1000, Math.max(50, Math.min(...limits) / 4));
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const frontend of this.#all()) frontend.sessions.sweep(now);
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

  /** Every serving frontend and its backends, now: what status pages and metrics show. */
  status(): FrontendStatus[] {
    return this.#frontends.map((frontend) => ({
      name: frontend.name,
      address: frontend.localAddress,
      algorithm: frontend.config.algorithm,
      active: frontend.sessions.size,
      queued: frontend.queued,
      backends: frontend.pool.backends.map((backend) => ({
        name: backend.config.name,
        address: backend.config.address,
        state: backend.state,
        weight: backend.config.weight,
        backup: backend.config.backup === true,
        active: backend.active,
      })),
    }));
  }

  /**
   * Drains, disables or enables a backend, as an operator asks: a draining
   * or disabled backend gets no new connections while its open ones finish;
   * a disabled one is not probed either. It lasts until changed again (a
   * reload keeps it).
   *
   * @param frontend the frontend's name
   * @param backend the backend's name
   * @param state the state to set
   * @returns false when no such backend exists
   */
  setBackendState(frontend: string, backend: string, state: AdminState): boolean {
    const found = this.#frontends.find((f) => f.name === frontend)?.pool.backends.find((b) =>
      b.config.name === backend
    );
    if (found === undefined) return false;
    found.admin = state;
    return true;
  }

  /** Live counters, for tests and metrics. */
  get stats(): BalancerStats {
    let activeConnections = 0;
    let pendingTimers = 0;
    let queuedConnections = 0;
    for (const frontend of this.#all()) {
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

  /**
   * Applies a new config as a difference, never as a restart: frontends that
   * appear bind; frontends that disappear stop accepting and their open
   * connections finish (cut after `graceMs`); a changed bind_on binds the new
   * address, then retires the old one; a frontend that keeps its name and
   * address takes its new settings for new connections, its backends matched
   * by name (see {@linkcode Frontend.update}). An open connection is never
   * cut or altered by a reload. A frontend that cannot bind stays as it was.
   *
   * @param config a validated config
   * @param options how long removed frontends' connections may go on
   * @returns what changed
   */
  reload(config: Config, options: StopOptions = {}): ReloadSummary {
    const graceMs = options.graceMs ?? 5000;
    const summary: ReloadSummary = {
      frontendsAdded: [],
      frontendsRemoved: [],
      frontendsChanged: [],
      backendsAdded: [],
      backendsRemoved: [],
      failures: [],
    };
    if (this.#stopping !== undefined) {
      summary.failures.push("the balancer is stopping");
      return summary;
    }
    const old = new Map(this.#frontends.map((frontend) => [frontend.name, frontend]));
    const next: Frontend[] = [];
    for (const wanted of config.frontends) {
      const current = old.get(wanted.name);
      old.delete(wanted.name);
      if (current !== undefined && sameEndpoint(current.config.bindOn, wanted.bindOn)) {
        const before = JSON.stringify(current.config);
        const { added, removed } = current.update(wanted);
        if (before !== JSON.stringify(wanted)) summary.frontendsChanged.push(wanted.name);
        summary.backendsAdded.push(...added.map((name) => `${wanted.name}/${name}`));
        summary.backendsRemoved.push(...removed.map((name) => `${wanted.name}/${name}`));
        next.push(current);
        continue;
      }
      const fresh = new Frontend(wanted, this.#net, this.#events);
      try {
        fresh.listen();
      } catch (error) {
        fresh.close();
        summary.failures.push((error as Error).message);
        if (current !== undefined) next.push(current);
        continue;
      }
      if (current === undefined) summary.frontendsAdded.push(wanted.name);
      else {
        this.#retire(current, graceMs);
        summary.frontendsChanged.push(wanted.name);
      }
      next.push(fresh);
    }
    for (const gone of old.values()) {
      this.#retire(gone, graceMs);
      summary.frontendsRemoved.push(gone.name);
    }
    this.#frontends = next;
    this.#startSweeper();
    return summary;
  }

  /** Stops a frontend accepting and forgets it once its sessions are done. */
  #retire(frontend: Frontend, graceMs: number): void {
    frontend.close();
    const timer = setTimeout(() => frontend.sessions.abortAll(), graceMs);
    this.#retiring.set(frontend, timer);
    frontend.sessions.idle().then(() => {
      clearTimeout(timer);
      this.#retiring.delete(frontend);
    });
  }

  #abortAll(): void {
    for (const frontend of this.#all()) frontend.sessions.abortAll();
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
    const idle = Promise.all(this.#all().map((frontend) => frontend.sessions.idle()));
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
