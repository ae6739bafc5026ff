/**
 * The running balancer: every frontend of a config, started together,
 * swept for idle and lifetime limits and the progress of open connections
 * by one timer (none while nothing needs it), changed by a reload
 * frontend by frontend without touching an open connection, and stopped
 * together with a grace period.
 *
 * @module
 */
import { formatAddress } from "../address/address.ts";
import type { Config } from "../config/config.ts";
import type { Endpoint, Net } from "../runtime/types.ts";
import type { AdminState } from "./upstream/backend.ts";
import { Entrance } from "./listener/entrance.ts";
import { combineEvents, type Events } from "./events.ts";
import { Frontend, ListenError } from "./frontend.ts";
import { logEvents } from "./log_events.ts";
import type { HealthState } from "./health_state.ts";
import { prepareUnixSocket } from "./listener/unix_socket.ts";
import {
  type Door,
  emptySummary,
  groupByEntrance,
  reloadFrontends,
  type ReloadSummary,
} from "./reload.ts";
import { DatagramEntrance } from "./datagram/entrance.ts";
import { RuntimeBackends } from "./upstream/runtime_backends.ts";
import { FrontendBackends, UnknownFrontendError } from "./frontend_api.ts";
import { type BalancerStats, type FrontendStatus, frontendStatus } from "./status.ts";
import type { AdmitHook, Hooks, SelectHook } from "./hooks.ts";

export { ListenError } from "./frontend.ts";
export type { HealthState } from "./health_state.ts";
export type { ReloadSummary } from "./reload.ts";
export type { BackendStatus, BalancerStats, FrontendStatus } from "./status.ts";

/**
 * Options for {@linkcode Balancer.start}.
 *
 * @example
 * ```ts
 * import { Balancer, type BalancerOptions, logEvents } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * const options: BalancerOptions = {
 *   net,
 *   events: logEvents(),
 *   select: ({ backends }) => backends.find((backend) => backend.state === "up")?.name,
 * };
 * const balancer = await Balancer.start(config, options);
 * ```
 */
export interface BalancerOptions {
  /** The runtime's sockets. */
  net: Net;
  /**
   * Where connection and backend events go, all or some of them (the others
   * are ignored); their `close` is called when the balancer stops.
   * @default logging through LogTape, at the levels configured when the balancer starts
   */
  events?: Partial<Events>;
  /**
   * Listen with SO_REUSEPORT: this process is one of several workers
   * sharing every address. @default false
   */
  reusePort?: boolean;
  /**
   * Names the backend for each new connection or UDP flow before the
   * frontend's algorithm, synchronously; `undefined` lets the algorithm
   * choose (see {@linkcode SelectHook}).
   */
  select?: SelectHook;
  /**
   * Admits or refuses each new connection or UDP flow after the allow and
   * deny lists and the rates (see {@linkcode AdmitHook}).
   */
  admit?: AdmitHook;
}

/**
 * Options for {@linkcode Balancer.stop}.
 *
 * @example
 * ```ts
 * import type { StopOptions } from "mini-balancer";
 *
 * const options: StopOptions = { graceMs: 5000 }; // open connections get 5 s to finish
 * await balancer.stop(options);
 * ```
 */
export interface StopOptions {
  /**
   * How long open connections may go on before they are cut, in milliseconds.
   * @default 5000
   */
  graceMs?: number;
}

/** How often open connections are swept when nothing asks for sooner: their progress is told. */
const SWEEP_WHILE_OPEN_MS = 1000;

/** How often, and how far apart, a reload tries to bind again an address it just closed. */
const REBIND_ATTEMPTS = 40;
const REBIND_WAIT_MS = 25;

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
  /** The bound addresses, by entrance key. */
  #entrances = new Map<string, Door>();
  /** Frontends a reload removed, until their open connections finish. */
  readonly #retiring = new Map<Frontend, ReturnType<typeof setTimeout>>();
  readonly #net: Net;
  readonly #events: Events;
  readonly #reusePort: boolean;
  /** The program's select and admit hooks. */
  readonly #hooks: Hooks;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  /** The sweeper's period in milliseconds, while it runs. */
  #sweepEvery: number | undefined;
  #stopping: Promise<void> | undefined;
  /**
   * The backends added and patched through the admin API, merged into each
   * frontend config taken at start and at each reload.
   */
  readonly backends: RuntimeBackends = new RuntimeBackends(() => this.#frontends);

  private constructor(config: Config, options: BalancerOptions) {
    this.#net = options.net;
    // The sweeper wakes with the first connection: it tells their progress too.
    this.#events = combineEvents(options.events ?? logEvents(), { accepted: this.#accepted });
    this.#reusePort = options.reusePort ?? false;
    this.#hooks = { select: options.select, admit: options.admit };
    this.#frontends = config.frontends.map((frontend) =>
      new Frontend(this.backends.merge(frontend), this.#net, this.#events, this.#hooks)
    );
  }

  /** Every frontend with sessions to look after: serving ones and retiring ones. */
  #all(): Frontend[] {
    return [...this.#frontends, ...this.#retiring.keys()];
  }

  /**
   * Runs the periodic check of idle_timeout and max_lifetime while any
   * frontend sets one or any live session has one (a session keeps the
   * limits it started with across reloads, and a retiring frontend's
   * sessions keep theirs until they end), and of the progress of open
   * connections (log_interval, and /metrics' bytes) while any is open:
   * every quarter of the shortest, between 50 ms and 1 s. Called again at
   * each reload, each sweep and each accept, so the period follows the
   * sessions as they come and go; no timer while nothing needs one.
   */
  #startSweeper(): void {
    let shortest: number | undefined;
    const shorter = (ms: number | undefined) => {
      if (ms !== undefined && (shortest === undefined || ms < shortest)) shortest = ms;
    };
    for (const frontend of this.#frontends) {
      shorter(frontend.config.idleTimeoutMs);
      shorter(frontend.config.maxLifetimeMs);
    }
    let open = false;
    for (const frontend of this.#all()) {
      shorter(frontend.sessions.shortestLimitMs);
      open ||= frontend.sessions.size > 0;
    }
    // Open connections tell their progress (events.progress) from the sweeps.
    if (open) shorter(4 * SWEEP_WHILE_OPEN_MS);
    const every = shortest === undefined ? undefined : Math.min(1000, Math.max(50, shortest / 4));
    if (every === this.#sweepEvery) return;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    this.#sweepEvery = every;
    if (every !== undefined) this.#sweeper = setInterval(this.#sweep, every);
  }

  /**
   * A connection was accepted: the sweeps start if they were not running
   * (a running sweeper adopts its limits at its next sweep, within 1 s).
   */
  #accepted = (): void => {
    if (this.#sweepEvery === undefined && this.#stopping === undefined) this.#startSweeper();
  };

  /** Lets every session check its limits, then sizes the next sweeps. */
  #sweep = (): void => {
    const now = performance.now();
    for (const frontend of this.#all()) frontend.sessions.sweep(now);
    if (this.#stopping === undefined) this.#startSweeper();
  };

  /**
   * Binds every frontend of `config` and starts serving.
   *
   * @param config a validated config
   * @param options the runtime's sockets, and where events go
   * @returns the running balancer
   * @throws {ListenError} when a frontend cannot bind (the others are closed again)
   */
  static async start(config: Config, options: BalancerOptions): Promise<Balancer> {
    const balancer = new Balancer(config, options);
    try {
      // Names resolve before anything binds: a frontend none of whose names
      // resolves, and with no other backend, stops the start.
      await Promise.all(balancer.#frontends.map((frontend) => frontend.discover()));
      for (const [key, members] of groupByEntrance(balancer.#frontends)) {
        balancer.#entrances.set(key, await balancer.#open(members));
      }
      balancer.#startSweeper();
    } catch (error) {
      for (const entrance of balancer.#entrances.values()) entrance.close();
      for (const frontend of balancer.#frontends) frontend.close();
      throw error;
    }
    return balancer;
  }

  /**
   * Binds an entrance for `members` (replacing a stale Unix socket file first).
   *
   * @param members the frontends on one address
   * @param at the address to bind instead of their bind_on
   *
   * @throws {ListenError} when it cannot be bound
   */
  async #open(members: Frontend[], at?: Endpoint): Promise<Door> {
    const entrance = this.#entrance(members);
    const { bindOn, name } = members[0]!.config;
    if (bindOn.path !== undefined) {
      try {
        await prepareUnixSocket(this.#net, bindOn.path);
      } catch (error) {
        throw new ListenError(formatAddress(bindOn), name, error);
      }
    }
    // Bound again at once after a close, Deno's port is not free yet (its
    // listener goes when the runtime drops it, a tick or more later).
    for (let attempt = 1;; attempt++) {
      try {
        await entrance.listen(at);
        return entrance;
      } catch (error) {
        const inUse = (error as { cause?: { code?: string } }).cause?.code === "EADDRINUSE";
        if (at === undefined || !inUse || attempt === REBIND_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, REBIND_WAIT_MS));
      }
    }
  }

  /** A new, unbound entrance of the members' transport. */
  #entrance(members: Frontend[]): Door {
    const udp = members[0]!.config.transport === "udp";
    const Kind = udp ? DatagramEntrance : Entrance;
    return new Kind(this.#net, this.#events, members, this.#reusePort);
  }

  /** The addresses the frontends are bound to, in config order. */
  get addresses(): Endpoint[] {
    return this.#frontends.map((frontend) => frontend.address!);
  }

  /** Every serving frontend and its backends, now: what status pages and metrics show. */
  status(): FrontendStatus[] {
    return this.#frontends.map((frontend) => frontendStatus(frontend, this.backends));
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

  /**
   * A frontend's backends, to change from code: the admin API's backend
   * changes, through the same function, audited with `peer=library`.
   *
   * @example
   * ```ts
   * balancer.frontend("web").addBackend({ name: "c", forward_to: "127.0.0.1:8082" });
   * ```
   *
   * @param name the frontend's name
   * @returns its backends' changes
   * @throws {UnknownFrontendError} when no serving frontend has that name
   */
  frontend(name: string): FrontendBackends {
    if (!this.#frontends.some((frontend) => frontend.name === name)) {
      throw new UnknownFrontendError(name);
    }
    return new FrontendBackends(this, name, () => this.backends.changed());
  }

  /**
   * Sets a backend's health as another process's probes found it (the
   * supervisor of workers, which probes for all of them).
   *
   * @param state the frontend, the backend, and whether it is up
   * @returns false when no such backend exists
   */
  setHealth(state: HealthState): boolean {
    const frontend = this.#frontends.find((f) => f.name === state.frontend);
    return frontend?.setHealth(state.backend, state.up, state.agent) ?? false;
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
    for (const entrance of this.#entrances.values()) pendingTimers += entrance.timers;
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
   * @returns what changed, once new addresses are bound
   */
  async reload(config: Config, options: StopOptions = {}): Promise<ReloadSummary> {
    const graceMs = options.graceMs ?? 5000;
    if (this.#stopping !== undefined) {
      const summary = emptySummary();
      summary.failures.push("the balancer is stopping");
      return summary;
    }
    // The API's backends stay; a file backend of the same name replaces one.
    config = { ...config, frontends: config.frontends.map((f) => this.backends.merge(f)) };
    return await reloadFrontends(config, {
      frontends: this.#frontends,
      entrances: () => this.#entrances,
      create: (wanted) => new Frontend(wanted, this.#net, this.#events, this.#hooks),
      adopt: (members, before) => {
        const entrance = this.#entrance(members);
        // The same key, so the same transport.
        entrance.adopt(before as never);
        return entrance;
      },
      open: (members, at) => this.#open(members, at),
      retire: (frontend) => this.#retire(frontend, graceMs),
      commit: (serving, entrances) => {
        this.#frontends = serving;
        this.#entrances = entrances;
        this.#startSweeper();
      },
    });
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
    for (const entrance of this.#entrances.values()) entrance.close();
    for (const frontend of this.#frontends) frontend.close();
    try {
      await this.#drain(graceMs);
    } finally {
      clearInterval(this.#sweeper);
      this.backends.close();
      this.#events.close?.();
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
