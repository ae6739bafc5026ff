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
import type { BackendState } from "./upstream/backend.ts";
import type { Pool, PoolChanges } from "./upstream/pool.ts";
import { Upstream } from "./upstream/upstream.ts";
import type { Arrival } from "./listener/preamble.ts";
import { Session, type SessionScope } from "./session/session.ts";
import { Sessions } from "./session/sessions.ts";
import type { Flow } from "./datagram/flow.ts";
import { FlowTable } from "./datagram/flows.ts";
import { type AdmitHook, type Hooks, preambleOf, runAdmit } from "./hooks.ts";
import { DISCARD } from "./session/pipe.ts";

/**
 * A frontend could not bind its address.
 *
 * @example
 * ```ts
 * import { Balancer, ListenError } from "mini-balancer";
 *
 * try {
 *   await Balancer.start(config, { net });
 * } catch (error) {
 *   if (error instanceof ListenError) console.error(`${error.frontend} cannot bind ${error.address}`);
 *   else throw error;
 * }
 * ```
 */
export class ListenError extends Error {
  /** The address as written in the config. */
  readonly address: string;
  /** The frontend's name. */
  readonly frontend: string;

  /**
   * Says which address could not be bound, for whom, and why.
   *
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
  /** Its live sessions: connections, or a UDP frontend's flows. */
  readonly sessions: Sessions<Session | Flow>;
  /** A UDP frontend's flows by client; undefined for TCP. */
  readonly flows: FlowTable | undefined;
  readonly events: Events;
  readonly net: Net;
  readonly #admission: Admission;
  /** Its pool, discovery and health checks. */
  readonly #upstream: Upstream;
  /** The bound address, once listening. */
  address: Endpoint | undefined;
  /** The bound address, formatted; empty until listening. */
  localAddress = "";
  /**
   * The address every connection of this frontend arrives at, when one
   * address is bound (not a wildcard): read here, not from each socket.
   */
  fixedLocal: Endpoint | undefined;
  /** The program's select and admit hooks (none: `{}`). */
  readonly hooks: Hooks;
  /** Connections whose admit hook has not answered yet, with their admission keys. */
  readonly #admitting = new Map<Conn, string | undefined>();
  /** Ends the admit hooks' waits when the frontend stops; made with the first wait. */
  #stopAdmitting: AbortController | undefined;

  /**
   * @param config the frontend's config
   * @param net the runtime's sockets
   * @param events where everything that happens is reported
   * @param hooks the program's select and admit hooks
   */
  constructor(config: FrontendConfig, net: Net, events: Events, hooks: Hooks = {}) {
    this.config = config;
    this.net = net;
    this.events = events;
    this.hooks = hooks;
    this.#upstream = new Upstream({
      config,
      net,
      events,
      frontend: this,
      // Backends that appeared may serve who waits.
      changed: () => this.#admission.next(this.#hasRoom, this.#serve),
      down: (backend) => this.#backendDown(backend),
    });
    this.pool = this.#upstream.pool;
    this.sessions = new Sessions((session) => this.#ended(session));
    this.#admission = new Admission(this);
    this.flows = config.transport === "udp" ? new FlowTable(this) : undefined;
  }

  /**
   * Resolves its names once, before it serves: their addresses are its
   * backends from the first connection on.
   *
   * @throws {DiscoveryError} when a name gave nothing and it has no other backend
   */
  discover(): Promise<void> {
    return this.#upstream.resolve();
  }

  /**
   * Sets a backend's health as another process's probes found it; one not
   * discovered here yet takes it when it appears.
   *
   * @param agent what its agent said, when the other process polled it
   * @returns false when no such backend is configured or expected
   */
  setHealth(backend: string, up: boolean, agent?: string): boolean {
    return this.#upstream.setHealth(backend, up, agent);
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
    this.#upstream.check();
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
    const changes = this.#upstream.update(config);
    // New room under new limits, or fewer full backends: serve who waits.
    this.#admission.next(this.#hasRoom, this.#serve);
    return changes;
  }

  /**
   * Stops health checks and turns the queue away; open sessions go on. (Its
   * entrance stops accepting.)
   */
  close(): void {
    this.#upstream.stop();
    this.#admission.closeAll();
    this.flows?.close();
    for (const [conn, client] of this.#admitting) {
      this.#admission.release(client);
      conn.setHandlers(DISCARD);
      conn.close();
    }
    this.#admitting.clear();
    // Their timers go now, not at header_timeout.
    this.#stopAdmitting?.abort();
    this.#stopAdmitting = undefined;
  }

  /**
   * Admits a new UDP flow's client by the lists, its rate and its limit of
   * open flows, telling a refusal.
   *
   * @param peer the client's address and port
   * @returns its admission key (undefined without a limit), or false when refused
   */
  admitPeer(peer: Endpoint): string | undefined | false {
    return this.#admission.admitPeer(peer);
  }

  /**
   * Gives back a place {@linkcode Frontend.admitPeer} counted for a flow
   * that was not made.
   *
   * @param clientKey the key it returned
   */
  releasePeer(clientKey: string | undefined): void {
    this.#admission.release(clientKey);
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
    const admit = this.hooks.admit;
    if (admit !== undefined) return this.#askAdmit(admit, conn, client, arrival);
    this.#place(conn, client, arrival);
  }

  /**
   * Asks the program's admit hook about a connection the lists and rates
   * passed; a promise is waited for, the connection unread, for at most
   * header_timeout.
   */
  #askAdmit(
    admit: AdmitHook,
    conn: Conn,
    client: string | undefined,
    arrival: Arrival | undefined,
  ): void {
    const config = this.config;
    const context = {
      frontend: this.name,
      client: arrival?.client ?? conn.remoteAddress,
      preamble: preambleOf(arrival, config.acceptProxy),
      transport: "tcp" as const,
    };
    this.#stopAdmitting ??= new AbortController();
    const signal = this.#stopAdmitting.signal;
    const answer = runAdmit(admit, context, config.headerTimeoutMs, false, signal);
    if (!(answer instanceof Promise)) return this.#admitted(conn, client, arrival, answer);
    conn.pause();
    this.#admitting.set(conn, client);
    this.sessions.timers++;
    answer.then((refused) => {
      this.sessions.timers--;
      // Gone meanwhile: the frontend stopped and closed it.
      if (!this.#admitting.delete(conn)) return;
      conn.resume();
      this.#admitted(conn, client, arrival, refused);
    });
  }

  /** The admit hook answered: serve, queue, or turn the connection away with its reason. */
  #admitted(
    conn: Conn,
    client: string | undefined,
    arrival: Arrival | undefined,
    refused: string | undefined,
  ): void {
    if (refused === undefined) return this.#place(conn, client, arrival);
    this.#admission.refuseByHook(conn, client, arrival, refused);
  }

  /** Serves an admitted connection, or queues it while the frontend or its backends are full. */
  #place(conn: Conn, client: string | undefined, arrival: Arrival | undefined): void {
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

  /** A backend was marked down: with `on_down = "close_sessions"`, its connections go. */
  #backendDown(backend: BackendState): void {
    if (this.config.health.onDown !== "close_sessions") return;
    const closed = this.sessions.closeOf(backend, this.config.whenAllDown === "reset");
    if (closed > 0) this.events.sessionsClosed(this, backend, closed);
  }

  #ended(session: Session | Flow): void {
    this.#admission.release(session.clientKey);
    if (this.#admission.queued > 0) {
      this.#admission.next(this.#hasRoom, this.#serve);
    }
  }
}
