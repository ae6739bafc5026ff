import type { Logger } from "@logtape/logtape";
import { formatAddress } from "../config/address.ts";
import type { Config, FrontendConfig } from "../config/config.ts";
import { getLog } from "../log.ts";
import type { Conn, Endpoint, Listener, Net } from "../runtime/types.ts";
import { createSelector } from "./algorithms/mod.ts";
import { HealthChecker } from "./health.ts";
import { BackendState } from "./backend.ts";
import { reasonOf } from "../errors.ts";
import type { PickContext, Selector } from "./algorithms/selector.ts";
import { DISCARD, Session, type SessionHost } from "./session.ts";

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

/** A connection waiting for a free slot under max_connections. */
interface Queued {
  conn: Conn;
  client: string | undefined;
  timer: ReturnType<typeof setTimeout>;
}

/** Whether a backend is at its max_connections. */
function isFull(backend: BackendState): boolean {
  const max = backend.config.maxConnections;
  return max !== undefined && backend.active >= max;
}

class Frontend implements SessionHost {
  readonly config: FrontendConfig;
  readonly backends: BackendState[];
  readonly #primaries: Selector;
  readonly #backups: Selector;
  health: HealthChecker | undefined;
  log: Logger;
  logInfo = false;
  readonly connectTimeoutMs: number;
  readonly retries: number;
  readonly refuseWith: "close" | "reset";
  readonly idleTimeoutMs: number | undefined;
  readonly maxLifetimeMs: number | undefined;
  readonly #balancer: Balancer;
  readonly #net: Net;
  listener: Listener | undefined;
  /** Sessions being served by this frontend. */
  #active = 0;
  readonly #queue: Queued[] = [];
  readonly #perClient = new Map<string, number>();
  readonly #clientOf = new Map<Session, string>();

  constructor(config: FrontendConfig, net: Net, balancer: Balancer) {
    this.config = config;
    this.#net = net;
    this.#balancer = balancer;
    this.connectTimeoutMs = config.connectTimeoutMs;
    this.retries = config.retries;
    this.refuseWith = config.whenAllDown;
    this.idleTimeoutMs = config.idleTimeoutMs;
    this.maxLifetimeMs = config.maxLifetimeMs;
    this.backends = config.backends.map((backend) => new BackendState(backend));
    this.#primaries = createSelector(
      config.algorithm,
      this.backends.filter((b) => !b.config.backup),
    );
    this.#backups = createSelector(config.algorithm, this.backends.filter((b) => b.config.backup));
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
    this.health = new HealthChecker({
      config: this.config.health,
      net: this.#net,
      log: this.log,
      backends: this.backends,
    });
    this.health.start();
    // A named frontend says its name; the original's single one keeps its line.
    const name = this.config.name;
    this.log.info("listening for connections", name === "frontend" ? {} : { frontend: name });
    return bound;
  }

  #accept(conn: Conn): void {
    const client = this.#admitClient(conn);
    if (client === false) return;
    const max = this.config.maxConnections;
    if (max !== undefined && this.#active >= max) this.#enqueue(conn, client);
    else this.#serve(conn, client);
  }

  /**
   * Counts the connection against its client's limit, if there is one.
   * Returns the client's key, undefined without a limit, or false (and
   * closes the connection) when the client is over it.
   */
  #admitClient(conn: Conn): string | undefined | false {
    const limit = this.config.maxConnectionsPerClient;
    if (limit === undefined) return undefined;
    const client = conn.remoteAddress.hostname;
    const count = this.#perClient.get(client) ?? 0;
    if (count >= limit) {
      this.log.warn("refused connection: too many from this client", {
        peer_address: formatAddress(conn.remoteAddress),
        limit,
      });
      conn.setHandlers(DISCARD);
      conn.close();
      return false;
    }
    this.#perClient.set(client, count + 1);
    return client;
  }

  #releaseClient(client: string | undefined): void {
    if (client === undefined) return;
    const count = this.#perClient.get(client)! - 1;
    if (count === 0) this.#perClient.delete(client);
    else this.#perClient.set(client, count);
  }

  #serve(conn: Conn, client: string | undefined): void {
    try {
      const session = new Session(this, conn);
      this.#active++;
      if (client !== undefined) this.#clientOf.set(session, client);
      this.#balancer.track(session);
    } catch (error) {
      // A bug or a socket gone before we looked at it: lose this connection,
      // never the process.
      this.#releaseClient(client);
      this.log.error("failed to accept connection", { reason: reasonOf(error) });
      conn.reset();
    }
  }

  /** Holds a connection past max_connections, unread, until a slot frees. */
  #enqueue(conn: Conn, client: string | undefined): void {
    const timeoutMs = this.config.queueTimeoutMs;
    const refuse = (reason: string) => {
      this.#releaseClient(client);
      this.log.warn("refused connection: frontend full", {
        peer_address: formatAddress(conn.remoteAddress),
        max_connections: this.config.maxConnections,
        reason,
      });
      conn.setHandlers(DISCARD);
      conn.close();
    };
    if (timeoutMs === 0) return refuse("no queue");
    conn.pause();
    const entry: Queued = {
      conn,
      client,
      timer: setTimeout(() => {
        this.timerCleared();
        this.#queue.splice(this.#queue.indexOf(entry), 1);
        refuse(`waited ${timeoutMs}ms in the queue`);
      }, timeoutMs),
    };
    this.timerStarted();
    this.#queue.push(entry);
  }

  /** Serves queued connections while there are free slots. */
  #dequeue(): void {
    const max = this.config.maxConnections ?? Infinity;
    while (this.#queue.length > 0 && this.#active < max) {
      const { conn, client, timer } = this.#queue.shift()!;
      clearTimeout(timer);
      this.timerCleared();
      conn.resume();
      this.#serve(conn, client);
    }
  }

  /** Closes every queued connection (the balancer is stopping). */
  closeQueue(): void {
    for (const { conn, client, timer } of this.#queue.splice(0)) {
      clearTimeout(timer);
      this.timerCleared();
      this.#releaseClient(client);
      conn.setHandlers(DISCARD);
      conn.close();
    }
  }

  connect(backend: BackendState): Promise<Conn> {
    return this.#net.connect(backend.config.forwardTo);
  }
  #select(context: PickContext): BackendState | undefined {
    // Backups only while no primary is up.
    return this.#primaries.pick(context) ?? this.#backups.pick(context);
  }
  pick(context: PickContext): BackendState | undefined {
    const choice = this.#select(context);
    if (choice === undefined || !isFull(choice)) return choice;
    return this.#nextAvailable(choice, [choice]);
  }
  pickAnother(context: PickContext, tried: readonly BackendState[]): BackendState | undefined {
    // The algorithm's own next choice when it offers an untried backend
    // (round-robin moves on); else the next available one in config order
    // (a hash would keep answering the same backend).
    const choice = this.#select(context);
    if (choice !== undefined && !tried.includes(choice) && !isFull(choice)) return choice;
    return this.#nextAvailable(tried[tried.length - 1]!, tried);
  }

  /**
   * The first backend after `after`, in config order, that is up and neither
   * tried nor full; a primary if there is one, else a backup.
   */
  #nextAvailable(after: BackendState, tried: readonly BackendState[]): BackendState | undefined {
    const backends = this.backends;
    const start = backends.indexOf(after);
    let backup: BackendState | undefined;
    for (let k = 1; k <= backends.length; k++) {
      const backend = backends[(start + k) % backends.length]!;
      if (!backend.up || tried.includes(backend) || isFull(backend)) continue;
      if (!backend.config.backup) return backend;
      backup ??= backend;
    }
    return backup;
  }

  connectFailed(backend: BackendState, reason: string): void {
    this.health?.connectFailed(backend, reason);
  }
  connectSucceeded(backend: BackendState): void {
    this.health?.connectSucceeded(backend);
  }

  ended(session: Session): void {
    this.#active--;
    const client = this.#clientOf.get(session);
    if (client !== undefined) {
      this.#clientOf.delete(session);
      this.#releaseClient(client);
    }
    this.#balancer.untrack(session);
    this.#dequeue();
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
      for (const frontend of balancer.#frontends) {
        frontend.listener?.close();
        frontend.health?.stop();
      }
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
    for (const frontend of this.#frontends) {
      frontend.listener?.close();
      frontend.health?.stop();
      frontend.closeQueue();
    }
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
