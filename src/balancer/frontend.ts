/**
 * One frontend: its listener and the wiring between what it owns, the pool
 * of backends, admission, health checks and the live sessions. An accepted
 * connection goes through admission (served now, queued, or turned away),
 * then becomes a {@linkcode Session}.
 *
 * @module
 */
import { formatAddress } from "../config/address.ts";
import type { FrontendConfig } from "../config/config.ts";
import { reasonOf } from "../errors.ts";
import type { Conn, Endpoint, Listener, Net } from "../runtime/types.ts";
import { Admission } from "./admission.ts";
import type { Events } from "./events.ts";
import { HealthChecker } from "./health.ts";
import { Pool, type PoolChanges } from "./pool.ts";
import { Session, type SessionScope } from "./session.ts";
import { Sessions } from "./sessions.ts";

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
  #listener: Listener | undefined;
  /** The bound address, formatted; empty until listening. */
  localAddress = "";

  /**
   * @param config the frontend's config
   * @param net the runtime's sockets
   * @param events where everything that happens is reported
   */
  constructor(config: FrontendConfig, net: Net, events: Events) {
    this.config = config;
    this.net = net;
    this.events = events;
    this.pool = new Pool(config);
    this.sessions = new Sessions((session) => this.#ended(session));
    this.#admission = new Admission(this);
  }

  /** The frontend's name. */
  get name(): string {
    return this.config.name;
  }

  /** The bound address, once listening. */
  get address(): Endpoint | undefined {
    return this.#listener?.address;
  }

  /** Connections waiting in the queue. */
  get queued(): number {
    return this.#admission.queued;
  }

  /**
   * Binds the address, starts health checks and accepts connections.
   *
   * @returns the bound address
   * @throws {ListenError} when the address cannot be bound
   */
  listen(): Endpoint {
    try {
      this.#listener = this.net.listen({
        ...this.config.bindOn,
        onConnection: (conn) => this.#accept(conn),
      });
    } catch (error) {
      throw new ListenError(formatAddress(this.config.bindOn), this.name, error);
    }
    const bound = this.#listener.address;
    this.localAddress = formatAddress(bound);
    this.#startHealth();
    this.events.listening(this);
    return bound;
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
    const changes = this.pool.update(config);
    this.#health?.stop();
    this.#startHealth();
    // New room under new limits, or fewer full backends: serve who waits.
    this.#admission.next(this.#hasRoom, (conn, client) => this.#serve(conn, client));
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

  /** Stops accepting, stops health checks and turns the queue away; open sessions go on. */
  close(): void {
    this.#listener?.close();
    this.#health?.stop();
    this.#admission.closeAll();
  }

  #accept(conn: Conn): void {
    const client = this.#admission.admit(conn);
    if (client === false) return;
    const max = this.config.maxConnections;
    if (max !== undefined && this.sessions.size >= max) {
      this.#admission.hold(conn, client, "frontend_full");
    } else if (this.pool.allFull()) {
      // As HAProxy does: wait for a free slot rather than fail at once.
      this.#admission.hold(conn, client, "backends_full");
    } else {
      this.#serve(conn, client);
    }
  }

  #serve(conn: Conn, client: string | undefined): void {
    let session: Session | undefined;
    try {
      session = new Session(this, conn, client);
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
  }

  /** Whether a queued connection could be served now. */
  #hasRoom = (): boolean => {
    const max = this.config.maxConnections;
    return (max === undefined || this.sessions.size < max) && !this.pool.allFull();
  };

  #ended(session: Session): void {
    this.#admission.release(session.clientKey);
    if (this.#admission.queued > 0) {
      this.#admission.next(this.#hasRoom, (conn, client) => this.#serve(conn, client));
    }
  }
}
