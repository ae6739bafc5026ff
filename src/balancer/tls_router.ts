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
 * @module
 */
import type {
  Conn,
  Endpoint,
  Listener,
  Net,
  TlsCertificate,
  TlsOptions,
} from "../runtime/types.ts";
import { bestMatch } from "./server_name.ts";
import { DISCARD, join, type PipeOwner, Side } from "./pipe.ts";
import type { Arrival } from "./preamble.ts";

/** How long an inner connection may wait for its outer one to claim it. */
const UNCLAIMED_MS = 5000;

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

  sideClosed(): void {
    this.#early = undefined;
  }

  tracePipeEvent(): void {}
}

/** The inner listeners of one TLS frontend with several certificates. */
export class CertificateRouter {
  readonly #net: Net;
  readonly #certificates: readonly TlsCertificate[];
  readonly #listeners: Listener[] = [];
  /** Outer arrivals by the local port of their inner connection. */
  readonly #pending = new Map<number, PlainArrival>();
  /** Inner connections accepted before their outer connect resolved. */
  readonly #early = new Map<number, Conn>();
  /** Hands a plaintext connection and its arrival to the frontend (set again when a reload adopts the router). */
  serve: (conn: Conn, arrival: Arrival) => void;

  /**
   * Binds one loopback TLS listener per certificate.
   *
   * @param net the runtime's sockets
   * @param tls the frontend's certificates
   * @param serve hands a plaintext connection and its arrival to the frontend
   * @throws {Error} when a certificate cannot be served (the listeners bound so far are closed)
   */
  constructor(net: Net, tls: TlsOptions, serve: (conn: Conn, arrival: Arrival) => void) {
    this.#net = net;
    this.#certificates = tls.certificates;
    this.serve = serve;
    try {
      for (const certificate of tls.certificates) {
        this.#listeners.push(net.listen({
          hostname: "127.0.0.1",
          port: 0,
          tls: { certificates: [certificate] },
          onConnection: (conn) => this.#accepted(conn),
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
    const listener = this.#listeners[certificateFor(this.#certificates, arrival.serverName)]!;
    this.#net.connect(listener.address).then((inner) => {
      if (splice.outer.closed) {
        inner.setHandlers(DISCARD);
        return inner.close();
      }
      const port = inner.localAddress.port;
      const plain: PlainArrival = {
        conn: arrival.conn,
        client: arrival.client,
        destination: arrival.destination,
        serverName: arrival.serverName,
        replay() {},
      };
      splice.connected(inner);
      const accepted = this.#early.get(port);
      if (accepted === undefined) return void this.#pending.set(port, plain);
      this.#early.delete(port);
      this.serve(accepted, plain);
    }, () => {
      arrival.conn.setHandlers(DISCARD);
      arrival.conn.reset();
    });
  }

  #accepted(conn: Conn): void {
    const port = conn.remoteAddress.port;
    const arrival = this.#pending.get(port);
    if (arrival === undefined) {
      // Its outer connect has not resolved yet, or it is no client of ours:
      // one that is not claimed soon is closed.
      this.#early.set(port, conn);
      setTimeout(() => {
        if (this.#early.get(port) !== conn) return;
        this.#early.delete(port);
        conn.close();
      }, UNCLAIMED_MS);
      return;
    }
    this.#pending.delete(port);
    this.serve(conn, arrival);
  }

  /** The inner listeners' addresses (for tests). */
  get addresses(): Endpoint[] {
    return this.#listeners.map((listener) => listener.address);
  }

  /** Closes the inner listeners; connections already spliced go on. */
  close(): void {
    for (const listener of this.#listeners) listener.close();
    this.#listeners.length = 0;
    for (const conn of this.#early.values()) conn.close();
    this.#early.clear();
    this.#pending.clear();
  }
}
