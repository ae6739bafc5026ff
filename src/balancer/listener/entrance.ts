/**
 * An entrance: one listening address and the frontends behind it. Usually
 * one frontend; several when the client's first bytes tell them apart
 * (`protocol`, `sni`, `alpn`, `http_host`, and one fallback). It binds the
 * address (TCP or a Unix socket, terminating TLS when the frontend says
 * so), reads the preamble the address asks for (a PROXY header from a
 * trusted proxy, then the first bytes when frontends are chosen by them),
 * chooses the frontend by protocol/matchers.ts's precedence, and hands
 * each connection to it. A chosen frontend that terminates TLS gets its
 * connections through its own {@linkcode CertificateRouter}, since the
 * bytes read to choose it must reach the TLS server too.
 *
 * A plain frontend's connections go straight through: no preamble, no
 * allocation beyond the frontend's own.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import type { FrontendConfig } from "../../config/config.ts";
import type { Conn, Endpoint, Listener, Net, TlsOptions } from "../../runtime/types.ts";
import type { Wanted } from "../../protocol/detect.ts";
import { choose, wantedBy } from "../../protocol/matchers.ts";
import type { Events, FrontendInfo, Refusal } from "../events.ts";
import { type Frontend, ListenError } from "../frontend.ts";
import { DISCARD } from "../session/pipe.ts";
import { Preamble } from "./preamble.ts";
import { CertificateRouter } from "./tls_router.ts";

/** A client's string as the log shows it: quoted, control characters escaped. */
const quote = (text: string): string => JSON.stringify(text);

/** What a shared address asks of TLS alone: the ClientHello, as before other protocols could be told. */
const TLS_ONLY: Wanted = { tls: true, http: "no", ssh: false, postgres: false };

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

/** The frontend whose settings an address's listener follows: the fallback, else the first. */
function leadOf<T extends { readonly config: FrontendConfig }>(members: readonly T[]): T {
  return members.find((f) => f.config.protocol === undefined) ?? members[0]!;
}

/** Whether an address's frontends are chosen by the client's first bytes. */
function detects(members: readonly { readonly config: FrontendConfig }[]): boolean {
  return members.length > 1 || members[0]!.config.protocol !== undefined;
}

/**
 * Whether an address's TLS is terminated behind routers (a loopback hop)
 * rather than by its listener: always when frontends are chosen by their
 * first bytes, and where {@linkcode terminatesBehindRouter} says so or the
 * runtime cannot close a client before its handshake.
 */
function routedAt(members: readonly { readonly config: FrontendConfig }[], net: Net): boolean {
  const lead = leadOf(members).config;
  return detects(members) || terminatesBehindRouter(lead) ||
    (lead.tls !== undefined && net.closesUnfinishedTls === false);
}

/**
 * What an address's listener and routers are made of: the file mode, the
 * TLS the listener terminates itself, and each router's certificates. An
 * entrance hands its socket to a new one of the same shape in a reload;
 * another shape binds the address again.
 */
function shapeOf(members: readonly { readonly config: FrontendConfig }[], net: Net): string {
  const lead = leadOf(members).config;
  const routed = routedAt(members, net);
  return JSON.stringify([
    lead.unixMode ?? null,
    routed ? null : tlsOptionsOf(lead) ?? null,
    routed ? members.map(({ config }) => [config.name, tlsOptionsOf(config) ?? null]) : [],
  ]);
}

/** One bound address and the frontends that share it. */
export class Entrance {
  readonly #net: Net;
  readonly #events: Events;
  readonly #reusePort: boolean;
  readonly #members: Frontend[];
  /** The frontend whose settings the listener follows: the fallback, else the first. */
  readonly #lead: Frontend;
  /**
   * What refusals before a frontend is chosen are told against: the lead
   * alone, or the address and every frontend sharing it.
   */
  readonly #place: FrontendInfo;
  /** What the first bytes are read for; undefined: nothing to choose, no detection. */
  #detect: Wanted | undefined;
  /** The members' configs, which {@linkcode choose} takes as matchers. */
  readonly #matchers: readonly FrontendConfig[];
  #listener: Listener | undefined;
  /**
   * Where the listener's connections go: this entrance, or the one that
   * adopted its listener in a reload (the listener's callback stays).
   */
  #door: { entrance: Entrance } = { entrance: this };
  /**
   * The TLS servers of the frontends that terminate behind a loopback hop
   * (several certificates, a preamble to read first, clients to screen
   * first, or chosen by their first bytes), by frontend name.
   */
  #routers = new Map<string, CertificateRouter>();
  /** What the listener and its routers were made of, once bound (see shapeOf). */
  #shape = "";
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
    const lead = leadOf(members);
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
    // A frontend chosen by its first bytes takes only those, even alone on its address.
    this.#matchers = members.map((frontend) => frontend.config);
    const wanted = detects(members) ? wantedBy(this.#matchers) : undefined;
    // A terminating frontend serves TLS only, the fallback too: its clients' hellos must be read.
    this.#detect = wanted !== undefined && members.some((f) => f.config.tls !== undefined)
      ? { ...wanted, tls: true }
      : wanted;
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
    // This listener reads the preamble and screens, a router terminates;
    // always where the runtime cannot close a client before its handshake,
    // and for every terminating frontend chosen by its first bytes.
    const routed = routedAt(this.#members, this.#net);
    const door = this.#door;
    try {
      if (routed) this.#openRouters();
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
      this.#closeRouters();
      throw new ListenError(formatAddress(config.bindOn), lead.name, error);
    }
    this.#shape = shapeOf(this.#members, this.#net);
    // A lone terminating frontend behind a router still reads the
    // ClientHello: its server name picks the certificate.
    if (routed && this.#detect === undefined && tls !== undefined) this.#detect = TLS_ONLY;
    this.#bound(this.#listener.address);
    return this.#listener.address;
  }

  /**
   * Whether a new entrance for `members` can take over this one's socket
   * and routers in a reload: the same shape (file mode and certificates).
   *
   * @param members the frontends the new entrance would serve
   * @returns true when {@linkcode Entrance.adopt} can be used
   */
  fits(members: readonly Frontend[]): boolean {
    return this.#listener !== undefined && this.#shape === shapeOf(members, this.#net);
  }

  /**
   * Gives each terminating member its router.
   *
   * @throws {Error} when a certificate cannot be served (the routers opened so far are closed)
   */
  #openRouters(): void {
    try {
      for (const frontend of this.#members) {
        const tls = tlsOptionsOf(frontend.config);
        if (tls === undefined) continue;
        this.#routers.set(
          frontend.name,
          new CertificateRouter(
            this.#net,
            tls,
            (conn, arrival) => frontend.accept(conn, arrival, true),
            frontend.config.headerTimeoutMs,
          ),
        );
      }
    } catch (error) {
      this.#closeRouters();
      throw error;
    }
  }

  #closeRouters(): void {
    for (const router of this.#routers.values()) router.close();
    this.#routers.clear();
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
    // The same shape: a router for each terminating member, by name.
    this.#routers = old.#routers;
    for (const frontend of this.#members) {
      const router = this.#routers.get(frontend.name);
      if (router === undefined) continue;
      router.serve = (conn, arrival) => frontend.accept(conn, arrival, true);
      router.handshakeTimeoutMs = frontend.config.headerTimeoutMs;
    }
    if (this.#routers.size > 0 && this.#detect === undefined) this.#detect = TLS_ONLY;
    this.#shape = old.#shape;
    old.#listener = undefined;
    old.#routers = new Map();
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
    this.#closeRouters();
    for (const preamble of this.#reading) {
      preamble.conn.setHandlers(DISCARD);
      preamble.conn.close();
    }
    this.#reading.clear();
  }

  #accept(conn: Conn): void {
    const lead = this.#lead;
    const config = lead.config;
    const detect = this.#detect;
    if (detect === undefined && !config.acceptProxy) return lead.accept(conn, undefined);
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
        detect,
        timeoutMs: config.headerTimeoutMs,
        silentMs: config.detectTimeoutMs,
        ready: (preamble) => {
          this.#reading.delete(preamble);
          this.#route(preamble);
        },
        failed: (preamble, why, detail) => {
          this.#reading.delete(preamble);
          const refusal = why === "bad_header" ? why : this.#undetected(undefined);
          this.#refuse(conn, preamble.peerAddress, refusal, detail);
        },
      }),
    );
  }

  /** Whether a PROXY header is taken from `peer`: a trusted address, or any peer of a Unix socket (whose file's mode says who may connect). */
  #trusts(peer: Endpoint): boolean {
    const trusted = this.#lead.config.trusted;
    return trusted === undefined ? peer.path !== undefined : trusted.has(peer.hostname);
  }

  /**
   * Hands a connection whose preamble is read to the frontend its first
   * bytes choose (through that frontend's router when it terminates TLS),
   * or refuses it when none takes it.
   */
  #route(preamble: Preamble): void {
    const conn = preamble.conn;
    const facts = preamble.detected;
    const members = this.#members;
    let frontend: Frontend | undefined = this.#lead;
    if (facts !== undefined) {
      const index = choose(this.#matchers, facts);
      frontend = index === undefined ? undefined : members[index];
      // A terminating frontend can serve only what its TLS server can read.
      if (frontend?.config.tls !== undefined && facts.protocol !== "tls") frontend = undefined;
    }
    if (frontend === undefined) {
      const [why, detail] = this.#unmatched(preamble);
      return this.#refuse(conn, preamble.peerAddress, why, detail);
    }
    const router = this.#routers.get(frontend.name);
    if (router === undefined) return frontend.accept(conn, preamble);
    // Lists and rates before the handshake: a denied client costs none.
    if (frontend.screen(conn, preamble)) router.route(preamble);
  }

  /** Why no frontend takes a connection whose first bytes were read, for the refusal. */
  #unmatched(preamble: Preamble): [Refusal, string] {
    const facts = preamble.detected!;
    if (facts.protocol === undefined) {
      const why = this.#undetected(facts.reason);
      return [why, facts.reason ?? "no frontend on the address takes it"];
    }
    const name = facts.serverName;
    if (facts.protocol === "tls" && this.#members.some((f) => f.config.sni !== undefined)) {
      return [
        "unknown_server_name",
        name === undefined ? "the client sent no server name" : `no frontend has sni "${name}"`,
      ];
    }
    const what = facts.protocol === "tls"
      ? `TLS${name === undefined ? "" : ` for "${name}"`}${
        // Quoted: a client's ALPN names are any bytes, and this goes to the log.
        facts.alpn === undefined ? "" : ` offering ALPN ${facts.alpn.map(quote).join(", ")}`}`
      : facts.protocol === "http"
      ? `HTTP${facts.httpHost === undefined ? " without a Host" : ` for Host "${facts.httpHost}"`}`
      : facts.protocol;
    return ["no_match", `no frontend on the address takes ${what}`];
  }

  /**
   * The refusal of a client whose first bytes told no protocol a frontend
   * takes: where only TLS is asked for, as before other protocols could be
   * told, `not_tls` for plain text and `bad_hello` for a broken, partial
   * or late handshake.
   *
   * @param reason why detection found no protocol, when it ran to the end
   */
  #undetected(reason: string | undefined): Refusal {
    const detect = this.#detect;
    const tlsOnly = detect !== undefined && detect.tls && detect.http === "no" && !detect.ssh &&
      !detect.postgres;
    if (!tlsOnly) return "no_match";
    return reason?.toLowerCase().startsWith("not tls") ? "not_tls" : "bad_hello";
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
