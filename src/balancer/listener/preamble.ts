/**
 * The preamble: what is read from a client before a frontend and a backend
 * are chosen. A PROXY protocol header (from a trusted proxy, with
 * `accept_proxy`) gives the real client's address; on an address shared by
 * several frontends (or one chosen by `protocol`, `sni`, `alpn` or
 * `http_host`), the first bytes after it tell the protocol and its names
 * (protocol/detect.ts: a TLS ClientHello's server name and ALPN, an HTTP
 * request's Host, an SSH banner, a PostgreSQL startup packet). Both must
 * arrive whole within `header_timeout`; a client that sends nothing at all
 * for `detect_timeout` (when the fallback sets one) is taken as silent. The
 * bytes after the PROXY header, the ones detection read included, are kept
 * and handed to the session untouched, once; the pipe never sees the
 * preamble.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import { detect, type Facts, type Wanted } from "../../protocol/detect.ts";
import { parseProxyHeader } from "../../protocol/proxy.ts";
import type { Conn, ConnHandlers, Endpoint } from "../../runtime/types.ts";

/** A client connection whose preamble has been read. */
export interface Arrival {
  /** The client's address: the PROXY header's source, else the socket's peer. */
  readonly client: Endpoint;
  /** The address the client connected to: the header's destination, else the socket's own. */
  readonly destination: Endpoint;
  /** The TLS server name the client asked for (lowercase), when it was read and sent. */
  readonly serverName: string | undefined;
  /** What the first bytes said (protocol, server name, ALPN, Host), when they were read. */
  readonly detected: Facts | undefined;
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
  /** Which protocols to tell apart by the first bytes (after the PROXY header, if any); undefined: none. */
  readonly detect: Wanted | undefined;
  /** How long the client may take, in milliseconds. */
  readonly timeoutMs: number;
  /** How long a client may send nothing after the PROXY header before it counts as silent; undefined: header_timeout. */
  readonly silentMs?: number;
  /** The preamble is read: the connection is the caller's again. */
  ready(preamble: Preamble): void;
  /**
   * The client sent a bad PROXY header (`bad_header`), or left or ran out
   * of time before its first bytes told a protocol (`undetected`): it is
   * being closed.
   */
  failed(preamble: Preamble, why: "bad_header" | "undetected", detail: string): void;
}

const PROXY = 0;
const DETECT = 1;
const DONE = 2;
const FAILED = 3;

/** What a client that sent nothing for detect_timeout is taken for. */
const SILENT: Facts = {
  protocol: undefined,
  reason: "the client sent nothing within detect_timeout",
};

/** What a client that ended its side before its first bytes told a protocol is taken for. */
const ENDED: Facts = {
  protocol: undefined,
  reason: "the client ended its side before its first bytes told a protocol",
};

/** Reads a client's preamble; see the module doc. */
export class Preamble implements ConnHandlers, Arrival {
  readonly conn: Conn;
  readonly #options: PreambleOptions;
  /** The addresses of a PROXY header, once read. */
  #client: Endpoint | undefined;
  #destination: Endpoint | undefined;
  /** What detection found, once done. */
  detected: Facts | undefined;
  #step: number;
  /** Bytes received and not yet taken by a parsed header. */
  #buffer = new Uint8Array(0);
  /**
   * Where #buffer lives, with room to grow: doubled when full, so that a
   * client sending its preamble a byte at a time costs linear copying, not
   * quadratic.
   */
  #store = new Uint8Array(0);
  /** Where #buffer starts in #store (past a parsed PROXY header). */
  #start = 0;
  /** How many bytes detection needs before it can decide anything (it said so last time). */
  #need = 1;
  /** After the preamble: bytes and events for whoever takes the connection. */
  #rest: Uint8Array[] = [];
  #ended = false;
  #closed = false;
  #error: Error | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Pending while a client with detect_timeout has sent nothing past its PROXY header. */
  #silence: ReturnType<typeof setTimeout> | undefined;

  /**
   * Starts reading; the options' `ready` or `failed` is called once.
   *
   * @param conn the accepted connection
   * @param options what to read
   */
  constructor(conn: Conn, options: PreambleOptions) {
    this.conn = conn;
    this.#options = options;
    this.#step = options.proxy ? PROXY : DETECT;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#fail(`nothing complete within header_timeout (${options.timeoutMs}ms)`);
    }, options.timeoutMs);
    if (this.#step === DETECT) this.#listenForSilence();
    conn.setHandlers(this);
  }

  /** The TLS server name, when detection read one. */
  get serverName(): string | undefined {
    return this.detected?.serverName;
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
    return this.#timer !== undefined || this.#silence !== undefined;
  }

  data(chunk: Uint8Array): void {
    if (this.#step === DONE) return void this.#rest.push(chunk.slice());
    if (this.#step === FAILED) return;
    this.#append(chunk);
    this.#advance();
  }

  end(): void {
    if (this.#step === DONE) this.#ended = true;
    else if (this.#step === DETECT && this.#options.detect !== undefined) {
      // No more bytes can come: what came is all there is to tell by.
      this.#ended = true;
      this.detected = ENDED;
      this.#finish();
    } else this.#fail("the client ended its side before a complete header");
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

  #append(chunk: Uint8Array): void {
    const length = this.#buffer.length;
    let end = this.#start + length;
    if (end + chunk.length > this.#store.length) {
      const store = new Uint8Array(Math.max(512, 2 * (length + chunk.length)));
      store.set(this.#buffer);
      this.#store = store;
      this.#start = 0;
      end = length;
    }
    this.#store.set(chunk, end);
    this.#buffer = this.#store.subarray(this.#start, end + chunk.length);
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
      this.#start += result.length;
      this.#buffer = this.#buffer.subarray(result.length);
      this.#step = DETECT;
      if (this.#buffer.length === 0) this.#listenForSilence();
    }
    if (this.#step === DETECT) {
      const wanted = this.#options.detect;
      if (wanted !== undefined) {
        if (this.#buffer.length < this.#need) return;
        this.#clearSilence();
        const result = detect(this.#buffer, wanted);
        if (result.status === "incomplete") {
          this.#need = result.need ?? this.#buffer.length + 1;
          return;
        }
        this.detected = result.facts;
      }
    }
    this.#finish();
  }

  /** The preamble is read: keeps what came after it and hands the connection back. */
  #finish(): void {
    this.#step = DONE;
    this.#clearTimer();
    // Before any end or close that came with it, which replay() hands on last.
    if (this.#buffer.length > 0) this.#rest.unshift(this.#buffer.slice());
    this.#release();
    this.#options.ready(this);
  }

  #fail(detail: string): void {
    const step = this.#step;
    if (step === DONE || step === FAILED) return;
    this.#step = FAILED;
    this.#clearTimer();
    this.#release();
    this.#options.failed(this, step === PROXY ? "bad_header" : "undetected", detail);
  }

  #release(): void {
    this.#buffer = this.#store = new Uint8Array(0);
    this.#start = 0;
  }

  /** Starts the detect_timeout wait, when there is one, for a client that has sent nothing yet. */
  #listenForSilence(): void {
    const silentMs = this.#options.silentMs;
    if (silentMs === undefined || this.#options.detect === undefined) return;
    this.#silence = setTimeout(() => {
      this.#silence = undefined;
      if (this.#step !== DETECT || this.#buffer.length > 0) return;
      this.detected = SILENT;
      this.#finish();
    }, silentMs);
  }

  #clearSilence(): void {
    if (this.#silence === undefined) return;
    clearTimeout(this.#silence);
    this.#silence = undefined;
  }

  #clearTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#clearSilence();
  }

  /** The client's address as logs show it (the header's, once read). */
  get peerAddress(): string {
    return formatAddress(this.client);
  }
}
