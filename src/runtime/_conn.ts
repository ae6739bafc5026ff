/**
 * What every adapter's connection keeps alike ({@linkcode AdapterConn}): its
 * handlers, early events replayed to the first ones set, and its outbox;
 * and the addresses of Bun's and Node's sockets ({@linkcode SocketConn}).
 *
 * @module
 */
import { EarlyEvents } from "./_early.ts";
import { Outbox } from "./_outbox.ts";
import type { ConnHandlers, Endpoint } from "./types.ts";

/**
 * The part of {@linkcode Conn} every adapter shares: where events go, and
 * the bytes accepted and not yet written. Fields rather than `#private`
 * ones, so that each adapter's class reaches them on its hot path.
 */
export abstract class AdapterConn {
  /** The user's handlers, or an {@linkcode EarlyEvents} made at the first event before them. */
  #handlers: ConnHandlers | undefined;

  /**
   * Where events go. A connection's user sets its handlers as soon as it
   * has it (a session does so in the same call), so the early-event keeper
   * is made only for the rare event that comes first: two objects fewer per
   * proxied connection.
   */
  protected get handlers(): ConnHandlers {
    return this.#handlers ??= new EarlyEvents();
  }
  /** The write side: pending bytes and the end or close due after them. */
  protected readonly out: Outbox = new Outbox();

  /** Bytes accepted by `write` but not yet handed to the system. */
  get bufferedAmount(): number {
    return this.out.bytes;
  }

  /** Sets the callbacks, replaying to them what happened before. */
  setHandlers(handlers: ConnHandlers): void {
    const early = this.#handlers;
    this.#handlers = handlers;
    if (early instanceof EarlyEvents) early.replay(handlers);
  }
}

/** A connection whose close is reported later ({@linkcode deferClose}). */
export interface Closing {
  /** Reports the close to its handlers. */
  reportClose(): void;
}

/** Connections closed since the last {@linkcode reportClosed}, in order. */
const closing: Closing[] = [];

/**
 * Reports a connection's close in a microtask: runtimes close from inside
 * the calls that cause it (`end()`, `close()`), and handlers must never run
 * re-entrantly from a call on the same connection. One microtask serves
 * every close due, rather than a closure per connection.
 */
export function deferClose(conn: Closing): void {
  if (closing.push(conn) === 1) queueMicrotask(reportClosed);
}

/** Reports every close due, in the order they happened. */
function reportClosed(): void {
  // A handler may close another connection meanwhile: it is reported in turn.
  let next = 0;
  try {
    while (next < closing.length) closing[next++]!.reportClose();
  } finally {
    // Had a handler thrown, the closes after it are still reported.
    if (next === closing.length) closing.length = 0;
    else {
      closing.splice(0, next);
      queueMicrotask(reportClosed);
    }
  }
}

/** The addresses a Bun or Node socket names; none once the peer has reset it. */
export interface AddressedSocket {
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
}

/**
 * An {@linkcode AdapterConn} over a socket object that names its own
 * addresses (Bun's, Node's), read when asked rather than kept.
 */
export abstract class SocketConn<Socket extends AddressedSocket> extends AdapterConn {
  /** The runtime's socket. */
  protected readonly socket: Socket;
  /** Both addresses of a Unix socket, which neither runtime names. */
  readonly #unix: Endpoint | undefined;

  constructor(socket: Socket, unix: Endpoint | undefined) {
    super();
    this.socket = socket;
    this.#unix = unix;
  }

  // A socket the peer already reset names no address: "" and 0 then.
  get localAddress(): Endpoint {
    const socket = this.socket;
    return this.#unix ?? { hostname: socket.localAddress ?? "", port: socket.localPort ?? 0 };
  }
  get remoteAddress(): Endpoint {
    const socket = this.socket;
    return this.#unix ?? { hostname: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 };
  }
}
