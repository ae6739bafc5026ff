/**
 * TLS termination behind the frontend's own plain listener: one TLS
 * listener per certificate on a loopback port; the frontend's listener
 * reads the preamble (a PROXY header, the ClientHello), screens the client
 * (allow, deny, rates), picks the certificate for the name, and splices the
 * raw bytes, ClientHello included, to that listener. What the inner
 * listener accepts is the plaintext connection, handed to the frontend with
 * the outer connection's arrival (the real client's address).
 *
 * The runtimes' TLS listeners choose no certificate by name, cannot read a
 * PROXY header before the TLS bytes, and handshake before our code sees the
 * connection. This path does all three, for a loopback connection per
 * client, so only the frontends that need it take it (see
 * `terminatesBehindRouter` in entrance.ts).
 *
 * Pairing. Any local process can connect to an inner listener, so an inner
 * connection is served only when it provably is the other end of one of
 * ours: it came to the same inner listener from the same address (IP and
 * port) as an inner connection we opened and have not paired yet (the same
 * TCP 4-tuple), and it was accepted after we started opening ours. Anything else is closed at once,
 * before any byte of it reaches a backend. Why no one can forge that:
 * - The listeners report a connection only after its handshake, and ours
 *   cannot finish before we have written the client's ClientHello, which
 *   we do only after registering its address as pending.
 * - While our connection is open, the kernel gives no other connection to
 *   the same listener the same source address (a TCP 4-tuple is unique), so
 *   a stranger's live connection cannot carry a pending 4-tuple. (To another
 *   inner listener it can: the listener is part of the key.)
 * - A stranger's connection from that address that ended before ours took
 *   it (its port freed and reused for us) may still be reported late, its
 *   handshake finished from bytes already queued. But it finished a
 *   handshake, so our listener had accepted it and answered its ClientHello
 *   before it ended, hence before we started to connect: its accept time
 *   gives it away.
 *
 * @module
 */
import type {
  Conn,
  Endpoint,
  Listener,
  Net,
  TlsCertificate,
  TlsOptions,
} from "../../runtime/types.ts";
import { bestMatch } from "../../protocol/server_name.ts";
import { DISCARD, join, type PipeOwner, Side } from "../session/pipe.ts";
import type { Arrival } from "./preamble.ts";

/** An arrival whose bytes have been passed on: nothing to replay. */
interface PlainArrival extends Arrival {
  readonly conn: Conn;
}

/**
 * The index of the certificate for a server name: the first listing it,
 * else the longest wildcard that matches, else the first (the default).
 *
 * @param certificates the frontend's certificates
 * @param name the client's server name, if it sent one
 * @returns an index into `certificates`
 */
export function certificateFor(
  certificates: readonly TlsCertificate[],
  name: string | undefined,
): number {
  const best = bestMatch(certificates, (certificate) => certificate.serverNames, name);
  return best === undefined ? 0 : certificates.indexOf(best);
}

/** Two raw connections spliced together until both are closed. */
class Splice implements PipeOwner {
  readonly tracePipe = false;
  #early: Uint8Array[] | undefined = [];
  readonly outer: Side;
  #inner: Side | undefined;
  /** Called once when the inner connection is closed: forgets its pending pairing. */
  onInnerClosed: (() => void) | undefined;

  constructor(outer: Conn) {
    this.outer = new Side(this, outer, "client");
  }

  keepEarly(chunk: Uint8Array): void {
    this.#early?.push(chunk.slice());
  }

  connected(conn: Conn): void {
    const inner = new Side(this, conn, "backend");
    this.#inner = inner;
    join(this.outer, inner);
    conn.setHandlers(inner);
    for (const chunk of this.#early ?? []) conn.write(chunk);
    this.#early = undefined;
    if (this.outer.ended) conn.end();
    if (this.outer.closed) conn.close();
  }

  sideClosed(side: Side): void {
    this.#early = undefined;
    if (side !== this.#inner) return;
    this.onInnerClosed?.();
    this.onInnerClosed = undefined;
  }

  tracePipeEvent(): void {}
}

/** An outer client whose inner connection is open and not yet paired. */
interface Pending {
  readonly arrival: PlainArrival;
  /** When we started to open its inner connection, in `performance.now()` time. */
  readonly since: number;
  /** Closes both connections when the inner handshake has not ended in time. */
  readonly timer: ReturnType<typeof setTimeout>;
}

/**
 * The key of an inner connection for pairing: the inner listener it goes
 * to (an index) and its source address, IP and port; the full 4-tuple, the
 * listener's IP being 127.0.0.1. Undefined when the address is not known (a
 * socket already reset names none).
 */
function keyOf(listener: number, source: Endpoint): string | undefined {
  const { hostname, port } = source;
  return hostname === "" || port === 0 ? undefined : `${listener} ${hostname} ${port}`;
}

/** The inner listeners of one TLS frontend with several certificates. */
export class CertificateRouter {
  readonly #net: Net;
  readonly #certificates: readonly TlsCertificate[];
  readonly #listeners: Listener[] = [];
  /** Outer clients by the full local address (IP and port) of their inner connection. */
  readonly #pending = new Map<string, Pending>();
  /** Hands a plaintext connection and its arrival to the frontend (set again when a reload adopts the router). */
  serve: (conn: Conn, arrival: Arrival) => void;
  /** The handshake deadline of the inner listeners, read at each accept (header_timeout). */
  handshakeTimeoutMs: number;

  /**
   * Binds one loopback TLS listener per certificate.
   *
   * @param net the runtime's sockets
   * @param tls the frontend's certificates
   * @param serve hands a plaintext connection and its arrival to the frontend
   * @param handshakeTimeoutMs how long an inner handshake may take (header_timeout)
   * @throws {Error} when a certificate cannot be served (the listeners bound so far are closed)
   */
  constructor(
    net: Net,
    tls: TlsOptions,
    serve: (conn: Conn, arrival: Arrival) => void,
    handshakeTimeoutMs: number,
  ) {
    this.#net = net;
    this.#certificates = tls.certificates;
    this.serve = serve;
    this.handshakeTimeoutMs = handshakeTimeoutMs;
    const timeout = () => this.handshakeTimeoutMs;
    try {
      for (const [index, certificate] of tls.certificates.entries()) {
        this.#listeners.push(net.listen({
          hostname: "127.0.0.1",
          port: 0,
          tls: { certificates: [certificate] },
          get handshakeTimeoutMs() {
            return timeout();
          },
          onConnection: (conn, acceptedAt) => this.#accepted(conn, acceptedAt, index),
        }));
      }
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /**
   * Passes a client whose ClientHello was read to the listener of its certificate.
   *
   * @param arrival the outer connection, its preamble read
   */
  route(arrival: Arrival & { readonly conn: Conn }): void {
    const splice = new Splice(arrival.conn);
    arrival.conn.setHandlers(splice.outer);
    arrival.replay(splice.outer);
    const index = certificateFor(this.#certificates, arrival.serverName);
    const since = performance.now();
    this.#net.connect(this.#listeners[index]!.address).then((inner) => {
      const key = keyOf(index, inner.localAddress);
      if (splice.outer.closed || key === undefined || this.#pending.has(key)) {
        inner.setHandlers(DISCARD);
        inner.close();
        if (!splice.outer.closed) splice.outer.conn.reset();
        return;
      }
      const plain: PlainArrival = {
        conn: arrival.conn,
        client: arrival.client,
        destination: arrival.destination,
        serverName: arrival.serverName,
        replay() {},
      };
      // The inner listener closes a handshake that takes longer, but Deno's
      // keeps the socket until its peer leaves: that peer is ours, close it.
      const timer = setTimeout(() => {
        if (this.#pending.get(key) !== pending) return;
        this.#pending.delete(key);
        inner.reset();
        arrival.conn.reset();
      }, this.handshakeTimeoutMs);
      const pending: Pending = { arrival: plain, since, timer };
      // Pending before the ClientHello goes out: its handshake cannot end sooner.
      this.#pending.set(key, pending);
      splice.onInnerClosed = () => {
        if (this.#pending.get(key) !== pending) return;
        this.#pending.delete(key);
        clearTimeout(timer);
      };
      splice.connected(inner);
    }, () => {
      arrival.conn.setHandlers(DISCARD);
      arrival.conn.reset();
    });
  }

  #accepted(conn: Conn, acceptedAt: number | undefined, listener: number): void {
    const key = keyOf(listener, conn.remoteAddress);
    const pending = key === undefined ? undefined : this.#pending.get(key);
    // Accepted before we started to connect: a connection that held the
    // address before ours did (see the module's comment).
    if (pending === undefined || (acceptedAt !== undefined && acceptedAt < pending.since)) {
      conn.setHandlers(DISCARD);
      return conn.reset();
    }
    this.#pending.delete(key!);
    clearTimeout(pending.timer);
    this.serve(conn, pending.arrival);
  }

  /** The inner listeners' addresses (for tests). */
  get addresses(): Endpoint[] {
    return this.#listeners.map((listener) => listener.address);
  }

  /** Closes the inner listeners; connections already spliced go on. */
  close(): void {
    for (const listener of this.#listeners) listener.close();
    this.#listeners.length = 0;
    // Clients still in their handshake finish it, or their timer cuts them.
  }
}
