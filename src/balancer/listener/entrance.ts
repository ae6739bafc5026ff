/**
 * An entrance: one listening address and the frontends behind it. Usually
 * one frontend; several when they route TLS by server name (`sni`). It
 * binds the address (TCP or a Unix socket, terminating TLS when the
 * frontend says so), reads the preamble a frontend asks for (a PROXY
 * header from a trusted proxy, the ClientHello when routing by name), and
 * hands each connection to its frontend.
 *
 * A plain frontend's connections go straight through: no preamble, no
 * allocation beyond the frontend's own.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import type { FrontendConfig } from "../../config/config.ts";
import type { Conn, Endpoint, Listener, Net, TlsOptions } from "../../runtime/types.ts";
import type { Events, FrontendInfo, Refusal } from "../events.ts";
import { type Frontend, ListenError } from "../frontend.ts";
import { DISCARD } from "../session/pipe.ts";
import { type Arrival, Preamble } from "./preamble.ts";
import { bestMatch } from "../../protocol/server_name.ts";
import { CertificateRouter } from "./tls_router.ts";

/**
 * The TLS options a listener takes for a frontend's certificates.
 *
 * @param config the frontend's config
 * @returns the runtime's TLS options, or undefined for plain TCP
 */
export function tlsOptionsOf(config: FrontendConfig): TlsOptions | undefined {
  const tls = config.tls;
  if (tls === undefined) return undefined;
  return {
    certificates: tls.certificates.map(({ cert, key, names }) => ({
      cert,
      key,
      serverNames: names,
    })),
  };
}

/**
 * Whether a TLS frontend terminates behind a {@linkcode CertificateRouter}
 * rather than on its own listener: with several certificates (the runtimes
 * choose none by name), with a PROXY header to read before the TLS bytes,
 * or with clients to screen (allow, deny, rates) before any handshake is
 * spent on them.
 *
 * @param config the frontend's config
 * @returns true for the loopback hop
 */
export function terminatesBehindRouter(config: FrontendConfig): boolean {
  const tls = config.tls;
  if (tls === undefined) return false;
  return tls.certificates.length > 1 || config.acceptProxy || config.allow !== undefined ||
    config.deny !== undefined || config.connectionRatePerClient !== undefined;
}

/** One bound address and the frontends that share it. */
export class Entrance {
  readonly #net: Net;
  readonly #events: Events;
  readonly #reusePort: boolean;
  readonly #members: Frontend[];
  /** The frontend whose settings the listener follows: the one without `sni`, else the first. */
  readonly #lead: Frontend;
  /**
   * What refusals before a frontend is chosen are told against: the lead
   * alone, or the address and every frontend sharing it.
   */
  readonly #place: FrontendInfo;
  /** Whether a ClientHello picks the frontend or the certificate. */
  #hello: boolean;
  #listener: Listener | undefined;
  /**
   * Where the listener's connections go: this entrance, or the one that
   * adopted its listener in a reload (the listener's callback stays).
   */
  #door: { entrance: Entrance } = { entrance: this };
  /** The inner listeners of a frontend with several certificates. */
  #router: CertificateRouter | undefined;
  /** The config the listener was bound with (its TLS certificates and mode). */
  boundWith: FrontendConfig | undefined;
  /** Connections whose preamble is being read (shared with an entrance this one adopts). */
  #reading = new Set<Preamble>();

  /**
   * @param net the runtime's sockets
   * @param events where refusals before a frontend is chosen are told
   * @param members the frontends on this address, in config order
   * @param reusePort listen with SO_REUSEPORT (one of several workers)
   */
  constructor(net: Net, events: Events, members: Frontend[], reusePort = false) {
    this.#reusePort = reusePort;
    this.#net = net;
    this.#events = events;
    this.#members = members;
    const lead = members.find((f) => f.config.sni === undefined) ?? members[0]!;
    this.#lead = lead;
    this.#place = members.length === 1 ? lead : {
      get name() {
        return lead.name;
      },
      get localAddress() {
        return lead.localAddress;
      },
      sharing: members.map((frontend) => frontend.name),
    };
    // A frontend with sni takes only its names, even alone on its address.
    this.#hello = members.length > 1 || members[0]!.config.sni !== undefined;
  }

  /** The frontends behind this address. */
  get members(): readonly Frontend[] {
    return this.#members;
  }

  /** The address as written, the key entrances are matched by. */
  get key(): string {
    return formatAddress(this.#lead.config.bindOn);
  }

  /** Preamble timers pending, for the balancer's leak checks. */
  get timers(): number {
    let count = 0;
    for (const preamble of this.#reading) if (preamble.waiting) count++;
    return count;
  }

  /** The bound address, while listening. */
  get address(): Endpoint | undefined {
    return this.#listener?.address;
  }

  /**
   * Binds the address and starts accepting.
   *
   * @param at where to bind instead of bind_on: the port an earlier listener
   *   got for port 0, bound again for new certificates
   * @returns the bound address
   * @throws {ListenError} when it cannot be bound
   */
  listen(at?: Endpoint): Endpoint {
    const lead = this.#lead;
    const config = lead.config;
    const tls = tlsOptionsOf(config);
    // This listener reads the preamble and screens, the router terminates;
    // always where the runtime cannot close a client before its handshake.
    const routed = terminatesBehindRouter(config) ||
      (tls !== undefined && this.#net.closesUnfinishedTls === false);
    const door = this.#door;
    try {
      if (routed) {
        this.#router = new CertificateRouter(
          this.#net,
          tls!,
          (conn, arrival) => this.#lead.accept(conn, arrival, true),
          config.headerTimeoutMs,
        );
      }
      this.#listener = this.#net.listen({
        ...(at ?? config.bindOn),
        mode: config.unixMode,
        tls: routed ? undefined : tls,
        // header_timeout bounds the handshake too, as a reload sets it.
        get handshakeTimeoutMs() {
          return door.entrance.#lead.config.headerTimeoutMs;
        },
        onPlainText: (peer) => door.entrance.#plainText(peer),
        reusePort: this.#reusePort,
        onConnection: (conn) => door.entrance.#accept(conn),
      });
    } catch (error) {
      this.#router?.close();
      this.#router = undefined;
      throw new ListenError(formatAddress(config.bindOn), lead.name, error);
    }
    this.boundWith = config;
    this.#hello ||= routed;
    this.#bound(this.#listener.address);
    return this.#listener.address;
  }

  /**
   * Takes over the listener of an entrance on the same address (a reload):
   * the socket stays open, the frontends behind it change.
   *
   * @param old the entrance it replaces
   */
  adopt(old: Entrance): void {
    this.#listener = old.#listener;
    this.#door = old.#door;
    this.#door.entrance = this;
    this.#router = old.#router;
    if (this.#router !== undefined) {
      this.#router.serve = (conn, arrival) => this.#lead.accept(conn, arrival, true);
      this.#router.handshakeTimeoutMs = this.#lead.config.headerTimeoutMs;
      this.#hello = true;
    }
    this.boundWith = old.boundWith;
    old.#listener = undefined;
    old.#router = undefined;
    // Preambles under way finish where they started; the set is shared so
    // that their end removes them here too.
    this.#reading = old.#reading;
    this.#bound(this.#listener!.address);
  }

  #bound(address: Endpoint): void {
    const local = formatAddress(address);
    for (const frontend of this.#members) frontend.bound(address, local);
  }

  /** Stops accepting and closes connections still in their preamble. */
  close(): void {
    this.#listener?.close();
    this.#listener = undefined;
    this.#router?.close();
    this.#router = undefined;
    for (const preamble of this.#reading) {
      preamble.conn.setHandlers(DISCARD);
      preamble.conn.close();
    }
    this.#reading.clear();
  }

  #accept(conn: Conn): void {
    const lead = this.#lead;
    const config = lead.config;
    const hello = this.#hello;
    if (!hello && !config.acceptProxy) return lead.accept(conn, undefined);
    if (config.acceptProxy && !this.#trusts(conn.remoteAddress)) {
      return this.#refuse(
        conn,
        formatAddress(conn.remoteAddress),
        "untrusted",
        "accept_proxy is on and the address is not in trusted",
      );
    }
    this.#reading.add(
      new Preamble(conn, {
        proxy: config.acceptProxy,
        hello,
        timeoutMs: config.headerTimeoutMs,
        ready: (preamble) => {
          this.#reading.delete(preamble);
          const router = this.#router;
          if (router === undefined) return this.#route(preamble);
          // Lists and rates before the handshake: a denied client costs none.
          if (this.#lead.screen(preamble.conn, preamble)) router.route(preamble);
        },
        failed: (preamble, why, detail) => {
          this.#reading.delete(preamble);
          this.#refuse(conn, preamble.peerAddress, why, detail);
        },
      }),
    );
  }

  /** Whether a PROXY header is taken from `peer`: a trusted address, or any peer of a Unix socket (whose file's mode says who may connect). */
  #trusts(peer: Endpoint): boolean {
    const trusted = this.#lead.config.trusted;
    return trusted === undefined ? peer.path !== undefined : trusted.has(peer.hostname);
  }

  /** Hands a connection whose preamble is read to the frontend for its server name. */
  #route(arrival: Arrival & { conn: Conn; peerAddress: string }): void {
    const frontend = this.#frontendFor(arrival.serverName);
    if (frontend === undefined) {
      const name = arrival.serverName;
      return this.#refuse(
        arrival.conn,
        arrival.peerAddress,
        "unknown_server_name",
        name === undefined ? "the client sent no server name" : `no frontend has sni "${name}"`,
      );
    }
    frontend.accept(arrival.conn, arrival);
  }

  /**
   * The frontend for a server name: the one listing it, else the longest
   * wildcard that matches, else the one without `sni`.
   */
  #frontendFor(name: string | undefined): Frontend | undefined {
    const members = this.#members;
    return bestMatch(members, (frontend) => frontend.config.sni, name) ??
      members.find((frontend) => frontend.config.sni === undefined);
  }

  /** A plain-text client at a port that terminates TLS: the listener closed it. */
  #plainText(peer: Endpoint): void {
    this.#events.refused(
      this.#lead,
      formatAddress(peer),
      "not_tls",
      "the client sent no TLS handshake, and the port terminates TLS",
    );
  }

  #refuse(conn: Conn, peer: string, why: Refusal, detail: string): void {
    this.#events.refused(this.#place, peer, why, detail);
    conn.setHandlers(DISCARD);
    conn.close();
  }
}
