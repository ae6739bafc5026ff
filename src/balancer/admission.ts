/**
 * Admission: which accepted connections may be served now, which wait, and
 * which are turned away before any backend is touched. Today: the limit per
 * client address and the frontend's queue (for a full frontend, or when
 * every backend is full). Allow/deny lists and rate limits join here.
 *
 * @module
 */
import { formatAddress } from "../config/address.ts";
import type { FrontendConfig } from "../config/config.ts";
import type { Conn } from "../runtime/types.ts";
import type { Events, FrontendInfo, Refusal } from "./events.ts";
import { DISCARD } from "./pipe.ts";
import type { Sessions } from "./sessions.ts";

/** A connection waiting for a free slot. */
interface Queued {
  conn: Conn;
  client: string | undefined;
  timer: ReturnType<typeof setTimeout>;
}

/** What admission needs from its frontend. */
export interface AdmissionScope extends FrontendInfo {
  /** The frontend's live config. */
  readonly config: FrontendConfig;
  /** Where refusals and queueing are reported. */
  readonly events: Events;
  /** The frontend's sessions, whose timer count the queue's timers join. */
  readonly sessions: Pick<Sessions, "timers">;
}

/**
 * Turns a client away that cannot be served (every backend down, full or
 * failing, a queue timeout, a limit): a reset when the frontend says
 * `when_all_down = "reset"`, else a close.
 *
 * @param conn the client's connection
 * @param config the frontend's config
 */
export function turnAway(conn: Conn, config: FrontendConfig): void {
  if (config.whenAllDown === "reset") conn.reset();
  else conn.close();
}

/** The admission rules of one frontend. */
export class Admission {
  readonly #scope: AdmissionScope;
  readonly #queue: Queued[] = [];
  readonly #perClient = new Map<string, number>();

  /** @param scope the frontend */
  constructor(scope: AdmissionScope) {
    this.#scope = scope;
  }

  /** Connections waiting in the queue. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Counts a new connection against its client's limit, if there is one.
   *
   * @param conn the accepted connection
   * @returns the client's key (undefined without a limit), or false when the
   * client is over its limit and the connection was turned away
   */
  admit(conn: Conn): string | undefined | false {
    const config = this.#scope.config;
    const limit = config.maxConnectionsPerClient;
    if (limit === undefined) return undefined;
    const client = conn.remoteAddress.hostname;
    const count = this.#perClient.get(client) ?? 0;
    if (count >= limit) {
      this.#refuse(conn, "client_limit", `more than ${limit} connections from this client`);
      return false;
    }
    this.#perClient.set(client, count + 1);
    return client;
  }

  /**
   * Gives back a connection's place under its client's limit.
   *
   * @param client the key {@linkcode Admission.admit} returned
   */
  release(client: string | undefined): void {
    if (client === undefined) return;
    const count = this.#perClient.get(client)! - 1;
    if (count === 0) this.#perClient.delete(client);
    else this.#perClient.set(client, count);
  }

  /**
   * Holds a connection, unread, until {@linkcode Admission.next} serves it,
   * for at most queue_timeout; then it is turned away.
   *
   * @param conn the accepted connection
   * @param client its admission key
   * @param why what it waits for
   */
  hold(conn: Conn, client: string | undefined, why: Refusal): void {
    const scope = this.#scope;
    const timeoutMs = scope.config.queueTimeoutMs;
    if (timeoutMs === 0) {
      this.release(client);
      return this.#refuse(conn, why, "no queue (queue_timeout is 0)");
    }
    conn.pause();
    const entry: Queued = {
      conn,
      client,
      timer: setTimeout(() => {
        scope.sessions.timers--;
        this.#queue.splice(this.#queue.indexOf(entry), 1);
        this.release(client);
        this.#refuse(conn, why, `waited ${timeoutMs}ms in the queue`);
      }, timeoutMs),
    };
    scope.sessions.timers++;
    this.#queue.push(entry);
    scope.events.queued(scope, formatAddress(conn.remoteAddress), why);
  }

  /**
   * Serves queued connections, oldest first, while `canServe` says yes.
   *
   * @param canServe whether a slot is free now
   * @param serve serves one connection
   */
  next(canServe: () => boolean, serve: (conn: Conn, client: string | undefined) => void): void {
    const queue = this.#queue;
    while (queue.length > 0 && canServe()) {
      const { conn, client, timer } = queue.shift()!;
      clearTimeout(timer);
      this.#scope.sessions.timers--;
      conn.resume();
      serve(conn, client);
    }
  }

  /** Closes every queued connection (the frontend is stopping). */
  closeAll(): void {
    for (const { conn, client, timer } of this.#queue.splice(0)) {
      clearTimeout(timer);
      this.#scope.sessions.timers--;
      this.release(client);
      conn.setHandlers(DISCARD);
      conn.close();
    }
  }

  #refuse(conn: Conn, why: Refusal, detail: string): void {
    const scope = this.#scope;
    scope.events.refused(scope, formatAddress(conn.remoteAddress), why, detail);
    conn.setHandlers(DISCARD);
    turnAway(conn, scope.config);
  }
}
