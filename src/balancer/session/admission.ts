/**
 * Admission: which accepted connections may be served now, which wait, and
 * which are turned away before any backend is touched: the allow and deny
 * lists, the connection rate per client (a token bucket per address), the
 * limit of open connections per client address, and the frontend's queue
 * (for a full frontend, or when every backend is full). The client's
 * address is the PROXY header's when one was read.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import { unmapIpv4 } from "../../address/cidr.ts";
import type { FrontendConfig, Rate } from "../../config/config.ts";
import type { Conn, Endpoint } from "../../runtime/types.ts";
import type { Events, FrontendInfo, Refusal } from "../events.ts";
import { DISCARD } from "./pipe.ts";
import type { Arrival } from "../listener/preamble.ts";
import type { Sessions } from "./sessions.ts";

/** A connection waiting for a free slot. */
interface Queued {
  conn: Conn;
  client: string | undefined;
  arrival: Arrival | undefined;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Token buckets per client address, for connection_rate_per_client. A
 * bucket holds `count` tokens and refills `count` per period; an accepted
 * connection takes one. A bucket untouched for a whole period is full again,
 * so it is forgotten: buckets live in two generations, swapped each period,
 * and memory stays bounded by the clients seen in the last two periods.
 */
export class RateBuckets {
  #current = new Map<string, { tokens: number; at: number }>();
  #previous = new Map<string, { tokens: number; at: number }>();
  #swappedAt: number;

  /** @param now performance.now(), or a test's clock */
  constructor(now = performance.now()) {
    this.#swappedAt = now;
  }

  /** Buckets held now (both generations), for tests. */
  get size(): number {
    return this.#current.size + this.#previous.size;
  }

  /**
   * Takes a token from `client`'s bucket.
   *
   * @param client the client's address
   * @param rate the rate allowed
   * @param now performance.now()
   * @returns false when the bucket is empty: the client is over its rate
   */
  take(client: string, rate: Rate, now = performance.now()): boolean {
    if (now - this.#swappedAt >= rate.perMs) {
      // Untouched for a period: full again, the same as forgotten.
      this.#previous = now - this.#swappedAt >= 2 * rate.perMs ? new Map() : this.#current;
      this.#current = new Map();
      this.#swappedAt = now;
    }
    let bucket = this.#current.get(client);
    if (bucket === undefined) {
      bucket = this.#previous.get(client);
      if (bucket !== undefined) this.#previous.delete(client);
      else bucket = { tokens: rate.count, at: now };
      this.#current.set(client, bucket);
    }
    bucket.tokens = Math.min(
      rate.count,
      bucket.tokens + (now - bucket.at) * rate.count / rate.perMs,
    );
    bucket.at = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
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
  readonly #rates = new RateBuckets();

  /** @param scope the frontend */
  constructor(scope: AdmissionScope) {
    this.#scope = scope;
  }

  /** Connections waiting in the queue. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Checks a new connection against the frontend's lists and rates, and
   * counts it against its client's limit, if there is one.
   *
   * @param conn the accepted connection
   * @param arrival its preamble, whose address is the client's when read
   * @param screened whether {@linkcode Admission.screen} already passed it
   * @returns the client's key (undefined without a limit), or false when the
   * connection was turned away
   */
  admit(conn: Conn, arrival: Arrival | undefined, screened = false): string | undefined | false {
    const config = this.#scope.config;
    const { deny, allow, connectionRatePerClient: rate, maxConnectionsPerClient: limit } = config;
    if (deny === undefined && allow === undefined && rate === undefined && limit === undefined) {
      return undefined; // the common case: nothing to look at
    }
    if (!screened && !this.screen(conn, arrival)) return false;
    const host = (arrival?.client ?? conn.remoteAddress).hostname;
    const over = this.#overLimit(host);
    if (over !== undefined) return this.#refuse(conn, arrival, over[0], over[1]);
    return this.#count(host);
  }

  /**
   * Checks a new connection against the allow and deny lists and the
   * client's connection rate (taking a token), and turns it away if it fails.
   * A frontend with several certificates screens before the TLS handshake.
   *
   * @param conn the accepted connection
   * @param arrival its preamble, whose address is the client's when read
   * @returns whether it may go on
   */
  screen(conn: Conn, arrival: Arrival | undefined): boolean {
    const { deny, allow, connectionRatePerClient: rate } = this.#scope.config;
    if (deny === undefined && allow === undefined && rate === undefined) return true;
    const verdict = this.#screened((arrival?.client ?? conn.remoteAddress).hostname);
    return verdict === undefined || this.#refuse(conn, arrival, verdict[0], verdict[1]);
  }

  /**
   * Admits a new UDP flow's client: the lists, its rate (taking a token) and
   * its limit of open flows, which it then counts against. A refusal is
   * told as for a connection; there is nothing to close.
   *
   * @param peer the client's address and port
   * @returns the client's key (undefined without a limit), or false when refused
   */
  admitPeer(peer: Endpoint): string | undefined | false {
    const config = this.#scope.config;
    const { deny, allow, connectionRatePerClient: rate, maxConnectionsPerClient: limit } = config;
    if (deny === undefined && allow === undefined && rate === undefined && limit === undefined) {
      return undefined;
    }
    const verdict = this.#screened(peer.hostname) ?? this.#overLimit(peer.hostname);
    if (verdict !== undefined) {
      const scope = this.#scope;
      scope.events.refused(scope, formatAddress(peer), verdict[0], verdict[1]);
      return false;
    }
    return this.#count(peer.hostname);
  }

  /** Why the lists or the rate turn `host` away (taking a rate token when not), if they do. */
  #screened(host: string): [Refusal, string] | undefined {
    const { deny, allow, connectionRatePerClient: rate } = this.#scope.config;
    if (deny?.has(host)) return ["denied", "the address is in deny"];
    if (allow !== undefined && !allow.has(host)) return ["denied", "the address is not in allow"];
    if (rate !== undefined && !this.#rates.take(unmapIpv4(host), rate)) {
      return ["rate_limited", `more than ${rate.text} from this client`];
    }
    return undefined;
  }

  /** Why `host` is over its limit of open connections, if it is. */
  #overLimit(host: string): [Refusal, string] | undefined {
    const limit = this.#scope.config.maxConnectionsPerClient;
    if (limit === undefined) return undefined;
    if ((this.#perClient.get(unmapIpv4(host)) ?? 0) < limit) return undefined;
    return [
      "client_limit",
      `more than ${limit} connection${limit === 1 ? "" : "s"} from this client`,
    ];
  }

  /** Counts one more open connection of `host` against its limit; its key, if limited. */
  #count(host: string): string | undefined {
    if (this.#scope.config.maxConnectionsPerClient === undefined) return undefined;
    const client = unmapIpv4(host);
    this.#perClient.set(client, (this.#perClient.get(client) ?? 0) + 1);
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
   * @param arrival its preamble, if one was read
   * @param why what it waits for
   */
  hold(conn: Conn, client: string | undefined, arrival: Arrival | undefined, why: Refusal): void {
    const scope = this.#scope;
    const timeoutMs = scope.config.queueTimeoutMs;
    if (timeoutMs === 0) {
      this.release(client);
      return void this.#refuse(conn, arrival, why, "no queue (queue_timeout is 0)");
    }
    conn.pause();
    const entry: Queued = {
      conn,
      client,
      arrival,
      timer: setTimeout(() => {
        scope.sessions.timers--;
        this.#queue.splice(this.#queue.indexOf(entry), 1);
        this.release(client);
        this.#refuse(conn, arrival, why, `waited ${timeoutMs}ms in the queue`);
      }, timeoutMs),
    };
    scope.sessions.timers++;
    this.#queue.push(entry);
    scope.events.queued(scope, formatAddress(arrival?.client ?? conn.remoteAddress), why);
  }

  /**
   * Serves queued connections, oldest first, while `canServe` says yes.
   *
   * @param canServe whether a slot is free now
   * @param serve serves one connection
   */
  next(
    canServe: () => boolean,
    serve: (conn: Conn, client: string | undefined, arrival: Arrival | undefined) => void,
  ): void {
    const queue = this.#queue;
    while (queue.length > 0 && canServe()) {
      const { conn, client, arrival, timer } = queue.shift()!;
      clearTimeout(timer);
      this.#scope.sessions.timers--;
      conn.resume();
      serve(conn, client, arrival);
    }
  }

  /**
   * Turns away a connection the program's admit hook refused (a close),
   * giving back its place under its client's limit.
   *
   * @param conn the accepted connection
   * @param client its admission key
   * @param arrival its preamble, if one was read
   * @param detail the hook's reason
   */
  refuseByHook(
    conn: Conn,
    client: string | undefined,
    arrival: Arrival | undefined,
    detail: string,
  ): void {
    this.release(client);
    this.#refuse(conn, arrival, "hook", detail);
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

  #refuse(conn: Conn, arrival: Arrival | undefined, why: Refusal, detail: string): false {
    const scope = this.#scope;
    scope.events.refused(scope, formatAddress(arrival?.client ?? conn.remoteAddress), why, detail);
    conn.setHandlers(DISCARD);
    // A policy's refusal is a close: when_all_down is about backends.
    if (why === "denied" || why === "rate_limited" || why === "hook") conn.close();
    else turnAway(conn, scope.config);
    return false;
  }
}
