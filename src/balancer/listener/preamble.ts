/**
 * The preamble: what is read from a client before a frontend and a backend
 * are chosen. A PROXY protocol header (from a trusted proxy, with
 * `accept_proxy`) gives the real client's address; a TLS ClientHello (on an
 * address shared by `sni`) gives the server name that picks the frontend.
 * Both must arrive whole within `header_timeout`. The bytes after the PROXY
 * header, the ClientHello included, are kept and handed to the session
 * untouched; the pipe never sees the preamble.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import { MAX_CLIENT_HELLO_BYTES, parseClientHello } from "../../protocol/client_hello.ts";
import { parseProxyHeader } from "../../protocol/proxy.ts";
import type { Conn, ConnHandlers, Endpoint } from "../../runtime/types.ts";
import type { Refusal } from "../events.ts";

/** A client connection whose preamble has been read. */
export interface Arrival {
  /** The client's address: the PROXY header's source, else the socket's peer. */
  readonly client: Endpoint;
  /** The address the client connected to: the header's destination, else the socket's own. */
  readonly destination: Endpoint;
  /** The TLS server name the client asked for (lowercase), when it was read and sent. */
  readonly serverName: string | undefined;
  /**
   * Hands the connection's bytes past the preamble, and whatever happened
   * to it since, to `handlers`, in order. Call it right after setting them.
   */
  replay(handlers: ConnHandlers): void;
}

/** What to read, and what to tell when it is read or fails. */
export interface PreambleOptions {
  /** Read a PROXY header (v1 or v2) first. */
  readonly proxy: boolean;
  /** Read a TLS ClientHello (after the PROXY header, if any). */
  readonly hello: boolean;
  /** How long the client may take, in milliseconds. */
  readonly timeoutMs: number;
  /** The preamble is read: the connection is the caller's again. */
  ready(preamble: Preamble): void;
  /** The client sent a bad preamble, or none in time, or left: it is being closed. */
  failed(preamble: Preamble, why: Refusal, detail: string): void;
}

const PROXY = 0;
const HELLO = 1;
const DONE = 2;
const FAILED = 3;

/** Reads a client's preamble; see the module doc. */
export class Preamble implements ConnHandlers, Arrival {
  readonly conn: Conn;
  readonly #options: PreambleOptions;
  /** The addresses of a PROXY header, once read. */
  #client: Endpoint | undefined;
  #destination: Endpoint | undefined;
  serverName: string | undefined;
  #step: number;
  /** Bytes received and not yet taken by a parsed header. */
  #buffer = new Uint8Array(0);
  /** After the preamble: bytes and events for whoever takes the connection. */
  #rest: Uint8Array[] = [];
  #ended = false;
  #closed = false;
  #error: Error | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Starts reading; the options' `ready` or `failed` is called once.
   *
   * @param conn the accepted connection
   * @param options what to read
   */
  constructor(conn: Conn, options: PreambleOptions) {
    this.conn = conn;
    this.#options = options;
    this.#step = options.proxy ? PROXY : HELLO;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#fail(`nothing complete within header_timeout (${options.timeoutMs}ms)`);
    }, options.timeoutMs);
    conn.setHandlers(this);
  }

  // Read from the socket only when asked: each costs Bun two system calls.
  get client(): Endpoint {
    return this.#client ?? this.conn.remoteAddress;
  }

  get destination(): Endpoint {
    return this.#destination ?? this.conn.localAddress;
  }

  /** Whether its timer is still pending. */
  get waiting(): boolean {
    return this.#timer !== undefined;
  }

  data(chunk: Uint8Array): void {
    if (this.#step === DONE) return void this.#rest.push(chunk.slice());
    if (this.#step === FAILED) return;
    const buffer = new Uint8Array(this.#buffer.length + chunk.length);
    buffer.set(this.#buffer);
    buffer.set(chunk, this.#buffer.length);
    this.#buffer = buffer;
    this.#advance();
  }

  end(): void {
    if (this.#step === DONE) this.#ended = true;
    else this.#fail("the client ended its side before a complete header");
  }

  drain(): void {}

  close(error?: Error): void {
    if (this.#step === DONE) {
      this.#closed = true;
      this.#error = error;
    } else this.#fail("the client closed before a complete header");
  }

  replay(handlers: ConnHandlers): void {
    const rest = this.#rest;
    this.#rest = [];
    for (const chunk of rest) handlers.data(chunk);
    if (this.#ended) handlers.end();
    if (this.#closed) handlers.close(this.#error);
  }

  /** Parses what has arrived, as far as it goes. */
  #advance(): void {
    if (this.#step === PROXY) {
      const result = parseProxyHeader(this.#buffer);
      if (result.status === "incomplete") return;
      if (result.status === "invalid") return this.#fail(result.reason);
      const { header } = result;
      if (header.command === "proxy" && header.source !== undefined) {
        this.#client = header.source;
        this.#destination = header.destination;
      }
      this.#buffer = this.#buffer.subarray(result.length);
      this.#step = this.#options.hello ? HELLO : DONE;
    }
    if (this.#step === HELLO) {
      if (this.#buffer.length === 0) return;
      const result = parseClientHello(this.#buffer);
      if (result.status === "incomplete") {
        if (this.#buffer.length <= MAX_CLIENT_HELLO_BYTES) return;
        return this.#fail(`ClientHello larger than ${MAX_CLIENT_HELLO_BYTES} bytes`);
      }
      if (result.status === "invalid") {
        // A client that speaks no TLS at all is at the wrong port: not_tls.
        return this.#fail(
          result.reason,
          result.reason.startsWith("not TLS") ? "not_tls" : undefined,
        );
      }
      this.serverName = result.serverName;
      this.#step = DONE;
    }
    this.#clearTimer();
    if (this.#buffer.length > 0) this.#rest.push(this.#buffer.slice());
    this.#buffer = new Uint8Array(0);
    this.#options.ready(this);
  }

  #fail(detail: string, why?: Refusal): void {
    const step = this.#step;
    if (step === DONE || step === FAILED) return;
    this.#step = FAILED;
    this.#clearTimer();
    this.#buffer = new Uint8Array(0);
    this.#options.failed(this, why ?? (step === PROXY ? "bad_header" : "bad_hello"), detail);
  }

  #clearTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The client's address as logs show it (the header's, once read). */
  get peerAddress(): string {
    return formatAddress(this.client);
  }
}
