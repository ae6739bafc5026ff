/**
 * One UDP flow: a client's address and port, the backend its first
 * datagram chose, and a connected socket of its own to that backend, so
 * that the backend's replies come back to this client alone. Datagrams go
 * through whole, one `send` each; nothing is parsed or joined.
 *
 * A flow ends when its backend has answered `responses` times (DNS: once),
 * when no datagram went either way for idle_timeout, at max_lifetime, or
 * when it is cut (shutdown, `on_down`). Its activity is noted with a flag
 * per datagram, not a clock read: the frontend's periodic sweep turns the
 * flag into a time, so idle_timeout is kept to within one sweep (a quarter
 * of it, at most a second).
 *
 * An ICMP port unreachable on its socket (Bun and Node report it; Deno
 * cannot) counts against its backend as a failed connect does (passive
 * health), and its next datagram goes to another backend.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import type { FrontendConfig } from "../../config/config.ts";
import { reasonOf } from "../../errors.ts";
import type { DatagramSocket, Endpoint, Net } from "../../runtime/types.ts";
import type { DropReason, Events, FlowInfo, FlowOutcome, FrontendInfo } from "../events.ts";
import type { BackendState } from "../upstream/backend.ts";
import type { Pool } from "../upstream/pool.ts";
import type { Tracked } from "../session/sessions.ts";

/** What a flow needs from its frontend's flow table. */
export interface FlowScope {
  /** The frontend, as events name it. */
  readonly frontend: FrontendInfo;
  /** The runtime's sockets, to open the flow's socket with. */
  readonly net: Net;
  /** Where the flow reports what happens. */
  readonly events: Events;
  /** The frontend's backends. */
  readonly pool: Pool;
  /**
   * Sends a backend's reply to the client from the frontend's own socket.
   *
   * @returns false when the runtime dropped it
   */
  reply(data: Uint8Array, to: Endpoint): boolean;
  /** The flow ended: forget it. */
  ended(flow: Flow): void;
}

/** Datagrams a new flow holds while its socket opens; more are dropped. */
export const PENDING_DATAGRAMS = 64;

/** How often, at most, a flow that moved datagrams tells {@linkcode Events.flowProgress}. */
export const PROGRESS_EVERY_MS = 5000;

/** The wildcard address of `to`'s family, for a flow's socket to bind. */
function wildcardFor(to: Endpoint): string {
  return to.hostname.includes(":") ? "::" : "0.0.0.0";
}

/** A client's flow through a UDP frontend. */
export class Flow implements FlowInfo, Tracked {
  readonly frontend: FrontendInfo;
  /** Its key in the flow table: the client's address and port. */
  readonly key: string;
  /** The client's address and port. */
  readonly client: Endpoint;
  /** The admission key it counts against (the client's IP), if limited. */
  readonly clientKey: string | undefined;
  readonly peerAddress: string;
  target: BackendState;
  datagramsFromClient = 0;
  bytesFromClient = 0;
  datagramsFromBackend = 0;
  bytesFromBackend = 0;
  readonly startedAt: number;
  outcome: FlowOutcome | undefined;
  reason: string | undefined;
  readonly limitMs: number | undefined;
  readonly #scope: FlowScope;
  /** The frontend config it started with (a reload does not alter it). */
  readonly #config: FrontendConfig;
  #socket: DatagramSocket | undefined;
  /** Datagrams from the client while its socket opens; undefined once open. */
  #pending: Uint8Array[] | undefined = [];
  /** Which opening of a socket is the current one (a move opens another). */
  #opening = 0;
  /** A datagram went either way since the last sweep. */
  #stirred = false;
  /** When a datagram last went either way, as the sweeps saw it. */
  #lastAt: number;
  /** When {@linkcode Events.flowProgress} was last told, and the datagrams then. */
  #toldAt: number;
  #toldDatagrams = 0;
  /** Why its backend was found unreachable; its next datagram moves it. */
  #unreachable: string | undefined;
  /** The backends it was on, for a move to avoid. */
  #tried: BackendState[] | undefined;

  /**
   * Opens the flow's socket to `target` (counted in its `active` now).
   *
   * @param scope its flow table
   * @param config the frontend's config now
   * @param key the client's key in the table
   * @param client the client's address and port
   * @param clientKey its admission key
   * @param target the backend chosen for it
   */
  constructor(
    scope: FlowScope,
    config: FrontendConfig,
    key: string,
    client: Endpoint,
    clientKey: string | undefined,
    target: BackendState,
  ) {
    this.#scope = scope;
    this.#config = config;
    this.frontend = scope.frontend;
    this.key = key;
    this.client = client;
    this.clientKey = clientKey;
    this.peerAddress = formatAddress(client);
    this.target = target;
    const now = performance.now();
    this.startedAt = now;
    this.#lastAt = now;
    this.#toldAt = now;
    const { idleTimeoutMs: idle, maxLifetimeMs: lifetime } = config;
    this.limitMs = idle === undefined
      ? lifetime
      : lifetime === undefined
      ? idle
      : Math.min(idle, lifetime);
    target.active++;
  }

  /** Opens its socket to its backend; datagrams wait meanwhile. */
  open(): void {
    const net = this.#scope.net;
    const opening = ++this.#opening;
    const to = this.target.config.forwardTo;
    if (net.bindDatagram === undefined) {
      return this.#cannotOpen(opening, new Error("this runtime has no UDP sockets"));
    }
    net.bindDatagram({
      hostname: wildcardFor(to),
      port: 0,
      connect: to,
      handlers: {
        message: (data) => this.#fromBackend(data),
        error: (error) => this.#failed(error),
      },
    }).then((socket) => {
      if (opening !== this.#opening || this.outcome !== undefined) return socket.close();
      this.#socket = socket;
      const pending = this.#pending!;
      this.#pending = undefined;
      for (const data of pending) this.#send(data);
    }, (error) => this.#cannotOpen(opening, error));
  }

  /**
   * A datagram from the client: forwarded to its backend, or held while
   * the socket opens.
   *
   * @param data the datagram, whole
   */
  fromClient(data: Uint8Array): void {
    this.datagramsFromClient++;
    this.bytesFromClient += data.length;
    this.#stirred = true;
    if (this.#unreachable !== undefined && !this.#move()) return;
    if (this.#pending === undefined) return this.#send(data);
    if (this.#pending.length < PENDING_DATAGRAMS) this.#pending.push(data);
    else this.#drop("pending_full");
  }

  #send(data: Uint8Array): void {
    const socket = this.#socket;
    if (socket === undefined || !socket.send(data)) this.#drop("send_failed");
  }

  #fromBackend(data: Uint8Array): void {
    const first = this.datagramsFromBackend === 0;
    this.datagramsFromBackend++;
    this.bytesFromBackend += data.length;
    this.#stirred = true;
    const scope = this.#scope;
    if (first) scope.pool.connectSucceeded(this.target);
    if (!scope.reply(data, this.client)) this.#drop("send_failed");
    const responses = this.#config.responses;
    if (responses !== undefined && this.datagramsFromBackend >= responses) {
      this.end("served", `${responses} response${responses === 1 ? "" : "s"}`);
    }
  }

  #drop(why: DropReason): void {
    this.#scope.events.datagramDropped(this.frontend, this.peerAddress, why, this.target);
  }

  /**
   * The backend is unreachable (ICMP port unreachable on the socket): it
   * counts as a failed connect, and the next datagram goes elsewhere.
   */
  #failed(error: Error): void {
    if (this.outcome !== undefined || this.#unreachable !== undefined) return;
    this.#unreachable = reasonOf(error);
    this.#socket?.close();
    this.#socket = undefined;
    this.#pending = [];
    this.#scope.pool.connectFailed(this.target, this.#unreachable);
  }

  #cannotOpen(opening: number, error: unknown): void {
    if (opening !== this.#opening || this.outcome !== undefined) return;
    const reason = `cannot open a socket to ${this.target.config.address}: ${reasonOf(error)}`;
    this.end("failed", reason);
  }

  /**
   * Moves to another backend after its own was found unreachable.
   *
   * @returns false when none is left: the flow ended
   */
  #move(): boolean {
    const scope = this.#scope;
    const from = this.target;
    (this.#tried ??= []).push(from);
    const next = scope.pool.pickAnother({ client: this.client }, this.#tried);
    if (next === undefined) {
      this.#drop("no_backend");
      this.end("failed", `${this.#unreachable} (${from.config.address}), and no other backend`);
      return false;
    }
    // What moved so far is counted under the backend it went to.
    scope.events.flowProgress(this);
    this.#toldAt = performance.now();
    this.#toldDatagrams = this.datagramsFromClient + this.datagramsFromBackend;
    from.active--;
    next.active++;
    this.target = next;
    this.#unreachable = undefined;
    this.open();
    return true;
  }

  /**
   * Ends it when idle or alive too long, and tells the progress of a
   * long flow; called by every sweep.
   *
   * @param now performance.now()
   */
  checkTimeouts(now: number): void {
    if (this.#stirred) {
      this.#stirred = false;
      this.#lastAt = now;
    }
    const { idleTimeoutMs: idle, maxLifetimeMs: lifetime } = this.#config;
    if (idle !== undefined && now - this.#lastAt >= idle) {
      const answered = this.datagramsFromBackend > 0;
      return this.end(answered ? "served" : "timed_out", `idle for ${idle}ms`);
    }
    if (lifetime !== undefined && now - this.startedAt >= lifetime) {
      return this.end("timed_out", `max_lifetime of ${lifetime}ms reached`);
    }
    const moved = this.datagramsFromClient + this.datagramsFromBackend;
    if (moved !== this.#toldDatagrams && now - this.#toldAt >= PROGRESS_EVERY_MS) {
      this.#toldAt = now;
      this.#toldDatagrams = moved;
      this.#scope.events.flowProgress(this);
    }
  }

  /** Cuts it at once (the end of a shutdown's grace). */
  abort(): void {
    this.end("aborted", "cut at shutdown");
  }

  /**
   * Ends it because its backend was marked down (`on_down = "close_sessions"`).
   *
   * @returns whether it was open
   */
  closeForDown(): boolean {
    if (this.outcome !== undefined) return false;
    this.end("failed", "its backend was marked down");
    return true;
  }

  /**
   * Ends the flow: closes its socket, frees its backend's slot, and tells.
   * Calling it again does nothing.
   *
   * @param outcome how it went
   * @param reason why it ended
   */
  end(outcome: FlowOutcome, reason: string): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    this.reason = reason;
    this.#socket?.close();
    this.#socket = undefined;
    this.#pending = undefined;
    this.target.active--;
    this.#scope.events.flowClosed(this);
    this.#scope.ended(this);
  }
}
