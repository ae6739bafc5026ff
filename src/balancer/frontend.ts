/**
 * One frontend: the wiring between what it owns, the pool of backends,
 * admission, health checks and the live sessions. Its entrance (the
 * listener it may share with other frontends, entrance.ts) hands it each
 * connection, which goes through admission (served now, queued, or turned
 * away), then becomes a {@linkcode Session}.
 *
 * @module
 */
import { isWildcardHost } from "../address/address.ts";
import type { FrontendConfig } from "../config/config.ts";
import { reasonOf } from "../errors.ts";
import type { Conn, Endpoint, Net } from "../runtime/types.ts";
import { Admission } from "./session/admission.ts";
import type { Events } from "./events.ts";
import { discovers, Discovery, isDiscoveredName, type Resolution } from "../discovery/discovery.ts";
import { HealthChecker } from "./upstream/health.ts";
import { Pool, type PoolChanges } from "./upstream/pool.ts";
import type { Arrival } from "./listener/preamble.ts";
import { Session, type SessionScope } from "./session/session.ts";
import { Sessions } from "./session/sessions.ts";

/** A frontend could not bind its address. */
export class ListenError extends Error {
  /** The address as written in the config. */
  readonly address: string;
  /** The frontend's name. */
  readonly frontend: string;

  /**
   * @param address the address that could not be bound
   * @param frontend the frontend's name
   * @param cause what the runtime threw
   * @param owner what wanted the address, for the message @default `frontend "NAME"`
   */
  constructor(address: string, frontend: string, cause: unknown, owner = `frontend "${frontend}"`) {
    super(`cannot listen on ${address} for ${owner}: ${reasonOf(cause)}`, { cause });
    this.name = "ListenError";
    this.address = address;
    this.frontend = frontend;
  }
}

/** A frontend: a listening address, its backends, and the connections it serves. */
export class Frontend implements SessionScope {
  /** The live config: new connections follow it, open ones keep theirs. */
  config: FrontendConfig;
  readonly pool: Pool;
  readonly sessions: Sessions<Session>;
  readonly events: Events;
  readonly net: Net;
  readonly #admission: Admission;
  #health: HealthChecker | undefined;
  /** Keeps the names among its backends resolved, when it has any. */
  #discovery: Discovery | undefined;
  /** Health told by another process for backends not discovered here yet, by name. */
  readonly #toldHealth = new Map<string, boolean>();
  /** The bound address, once listening. */
  address: Endpoint | undefined;
  /** The bound address, formatted; empty until listening. */
  localAddress = "";
  /**
   * The address every connection of this frontend arrives at, when one
   * address is bound (not a wildcard): read here, not from each socket.
   */
  fixedLocal: Endpoint | undefined;

  /**
   * @param config the frontend's config
   * @param net the runtime's sockets
   * @param events where everything that happens is reported
   */
  constructor(config: FrontendConfig, net: Net, events: Events) {
    this.config = config;
    this.net = net;
    this.events = events;
    if (discovers(config)) this.#discovery = new Discovery(config, net, this.#discovered);
    this.pool = new Pool(this.#poolConfig());
    this.sessions = new Sessions((session) => this.#ended(session));
    this.#admission = new Admission(this);
  }

  /** What the pool is built from: the config, its named backends expanded. */
  #poolConfig(): { algorithm: FrontendConfig["algorithm"]; backends: FrontendConfig["backends"] } {
    const config = this.config;
    const discovery = this.#discovery;
    return discovery === undefined
      ? config
      : { algorithm: config.algorithm, backends: discovery.backends() };
  }

  /**
   * Resolves its names once, before it serves: their addresses are its
   * backends from the first connection on.
   *
   * @throws {DiscoveryError} when a name gave nothing and it has no other backend
   */
  async discover(): Promise<void> {
    try {
      await this.#discovery?.start();
    } finally {
      this.#settled = true;
    }
  }

  /** Whether the first resolution is over: backends found later are new arrivals. */
  #settled = false;

  /** What its Discovery reports to. */
  #discovered = {
    changed: () => {
      const changes = this.pool.update(this.#poolConfig());
      this.#appeared(changes.added);
      this.#admission.next(this.#hasRoom, this.#serve);
      return changes;
    },
    resolved: (resolution: Resolution) => this.events.resolved(this, resolution),
  };

  /**
   * Backends that appeared while serving: with health checks on (here or
   * in the supervisor), each starts down and comes up once it passes them.
   */
  #appeared(names: readonly string[]): void {
    if (names.length === 0) return;
    const added = this.pool.backends.filter((backend) => names.includes(backend.config.name));
    const health = this.config.health;
    // What the first resolution finds starts up, as fixed backends do.
    if (this.#settled && (health.active || health.remote === true)) {
      for (const backend of added) {
        const told = this.#toldHealth.get(backend.config.name);
        this.#toldHealth.delete(backend.config.name);
        backend.healthy = told ?? false;
      }
    }
    this.#health?.added(added);
  }

  /**
   * Sets a backend's health as another process's probes found it; one not
   * discovered here yet takes it when it appears.
   *
   * @returns false when no such backend is configured or expected
   */
  setHealth(backend: string, up: boolean): boolean {
    const found = this.pool.backends.find((b) => b.config.name === backend);
    if (found === undefined) {
      if (this.#discovery === undefined || !isDiscoveredName(backend)) return false;
      this.#toldHealth.set(backend, up);
      return true;
    }
    found.healthy = up;
    if (up) found.failures = 0;
    return true;
  }

  /** The frontend's name. */
  get name(): string {
    return this.config.name;
  }

  /** Connections waiting in the queue. */
  get queued(): number {
    return this.#admission.queued;
  }

  /**
   * Its entrance is bound: starts health checks and tells the world.
   *
   * @param address the bound address
   * @param local the same, formatted
   */
  bound(address: Endpoint, local: string): void {
    const first = this.address === undefined;
    this.address = address;
    this.localAddress = local;
    const wildcard = address.path === undefined && isWildcardHost(address.hostname);
    this.fixedLocal = wildcard ? undefined : address;
    if (!first) return;
    this.#startHealth();
    this.events.listening(this);
  }

  /**
   * Takes a new config for the same name and address: new connections follow
   * it, open ones keep the one they started with. Backends are matched by
   * name and keep their state (health, open connections); health checks
   * restart on the new settings.
   *
   * @param config the frontend's new config (same name and bind_on)
   * @returns the backends added and removed
   */
  update(config: FrontendConfig): PoolChanges {
    this.config = config;
    if (this.#discovery === undefined && discovers(config)) {
      this.#discovery = new Discovery(config, this.net, this.#discovered);
      this.#settled = false;
      void this.discover().catch(() => {}); // reported through events
    } else if (this.#discovery !== undefined && !discovers(config)) {
      this.#discovery.stop();
      this.#discovery = undefined;
    } else this.#discovery?.update(config);
    const changes = this.pool.update(this.#poolConfig());
    this.#health?.stop();
    this.#startHealth();
    // New room under new limits, or fewer full backends: serve who waits.
    this.#admission.next(this.#hasRoom, this.#serve);
    return changes;
  }

  #startHealth(): void {
    this.#health = new HealthChecker({
      config: this.config.health,
      net: this.net,
      pool: this.pool,
      events: this.events,
      frontend: this,
    });
    this.#health.start();
  }

  /**
   * Stops health checks and turns the queue away; open sessions go on. (Its
   * entrance stops accepting.)
   */
  close(): void {
    this.#discovery?.stop();
    this.#health?.stop();
    this.#admission.closeAll();
  }

  /**
   * Serves an accepted connection, queues it or turns it away.
   *
   * @param conn the client's connection
   * @param arrival its preamble, when one was read (the real client's address)
   * @param screened whether {@linkcode Frontend.screen} already passed it
   */
  accept(conn: Conn, arrival: Arrival | undefined, screened = false): void {
    const client = this.#admission.admit(conn, arrival, screened);
    if (client === false) return;
    const max = this.config.maxConnections;
    if (max !== undefined && this.sessions.size >= max) {
      this.#admission.hold(conn, client, arrival, "frontend_full");
    } else if (this.pool.allFull()) {
      // As HAProxy does: wait for a free slot rather than fail at once.
      this.#admission.hold(conn, client, arrival, "backends_full");
    } else {
      this.#serve(conn, client, arrival);
    }
  }

  #serve = (conn: Conn, client: string | undefined, arrival: Arrival | undefined): void => {
    let session: Session | undefined;
    try {
      session = new Session(this, conn, client, arrival);
      session.start();
    } catch (error) {
      // A bug or a socket gone before we looked at it: lose this connection,
      // never the process. Forgetting a registered session releases its client.
      if (session === undefined || !this.sessions.delete(session)) {
        this.#admission.release(client);
      }
      this.events.acceptFailed(this, reasonOf(error));
      conn.reset();
    }
  };

  /**
   * Checks a connection against the allow and deny lists and the rate per
   * client before anything is spent on it (a TLS handshake); turns it away
   * if it fails.
   *
   * @param conn the client's connection
   * @param arrival its preamble
   * @returns whether it may go on
   */
  screen(conn: Conn, arrival: Arrival): boolean {
    return this.#admission.screen(conn, arrival);
  }

  /** Whether a queued connection could be served now. */
  #hasRoom = (): boolean => {
    const max = this.config.maxConnections;
    return (max === undefined || this.sessions.size < max) && !this.pool.allFull();
  };

  #ended(session: Session): void {
    this.#admission.release(session.clientKey);
    if (this.#admission.queued > 0) {
      this.#admission.next(this.#hasRoom, this.#serve);
    }
  }
}
