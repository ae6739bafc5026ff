import type { Logger } from "@logtape/logtape";
import { formatAddress } from "../config/address.ts";
import type { Conn, ConnHandlers, Endpoint } from "../runtime/types.ts";
import type { BackendState } from "./backend.ts";
import type { PickContext } from "./algorithms/selector.ts";
import { reasonOf } from "../errors.ts";

/** What a session needs from the frontend that accepted it. */
export interface SessionHost {
  /** Opens a connection to a backend. */
  connect(backend: BackendState): Promise<Conn>;
  /** Picks the backend for a new connection. */
  pick(context: PickContext): BackendState | undefined;
  /** Picks a backend not in `tried`, after a failed connect. */
  pickAnother(context: PickContext, tried: readonly BackendState[]): BackendState | undefined;
  /** How many other backends a failed connect may be retried on. */
  readonly retries: number;
  /** How a client is turned away when no backend can take it. */
  readonly refuseWith: "close" | "reset";
  /** A real connect failed: health checks count it. */
  connectFailed(backend: BackendState, reason: string): void;
  /** A real connect worked. */
  connectSucceeded(backend: BackendState): void;
  /** Idle time after which both sides close, in milliseconds, if any. */
  readonly idleTimeoutMs: number | undefined;
  /** Longest life of a connection, in milliseconds, if limited. */
  readonly maxLifetimeMs: number | undefined;
  /** How long a connect may take, in milliseconds. */
  readonly connectTimeoutMs: number;
  /** The frontend's logger, already carrying `local_address`. */
  readonly log: Logger;
  /**
   * Whether info lines are logged, read once at start: LogTape's own check
   * costs more than the rest of a connection's bookkeeping.
   */
  readonly logInfo: boolean;
  /** Called once when both sides are closed and every timer is cleared. */
  ended(session: Session): void;
  /** Counts timers so that tests can see every one of them cleared. */
  timerStarted(): void;
  /** See {@linkcode SessionHost.timerStarted}. */
  timerCleared(): void;
}

/**
 * Bytes a client may send before its backend is connected, kept by the
 * session; past this the client is paused. Most clients send their first
 * request at once, so not pausing by default saves two system calls per
 * connection.
 */
const EARLY_BYTES = 64 * 1024;

/** Handlers for a connection that is being thrown away. */
export const DISCARD: ConnHandlers = { data() {}, end() {}, drain() {}, close() {} };

/**
 * One side of a proxied connection: reads from `conn` and writes what it
 * reads to the other side's connection. This is the per-chunk hot path:
 * one call to write, and a pause when the other side is full.
 */
class Side implements ConnHandlers {
  readonly session: Session;
  readonly conn: Conn;
  /** The connection this side's bytes go to; unset while the backend connects. */
  peer: Conn | undefined = undefined;
  /** The other side, whose connection feeds `conn`. */
  other: Side | undefined = undefined;
  bytes = 0;
  ended = false;
  closed = false;

  constructor(session: Session, conn: Conn) {
    this.session = session;
    this.conn = conn;
  }

  data(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    const peer = this.peer;
    if (peer === undefined) this.session.keepEarly(chunk);
    else if (!peer.write(chunk)) this.conn.pause();
  }

  drain(): void {
    // Our write buffer emptied: the side that fills it may read again.
    const other = this.other;
    if (other !== undefined && !other.ended) other.conn.resume();
  }

  end(): void {
    this.ended = true;
    this.peer?.end();
  }

  close(error?: Error): void {
    this.closed = true;
    this.ended = true;
    this.session.sideClosed(this, error);
  }
}

/**
 * One client connection through its whole life: pick a backend, connect
 * within the timeout, pipe both ways with backpressure and half-close, log
 * the outcome, and release everything.
 */
export class Session implements PickContext {
  readonly #host: SessionHost;
  readonly #client: Side;
  #backend: Side | undefined;
  #target: BackendState | undefined;
  #log: Logger;
  /** The logger with the client's address, before any backend's. */
  #peerLog: Logger;
  /** The client's address as text, once read (the socket forgets it on close). */
  #peerAddress: string | undefined;
  #attempts = 0;
  #tried: BackendState[] | undefined;
  #early: Uint8Array[] | undefined;
  #earlyBytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #connecting = false;
  #failure: string | undefined;
  #error: { side: string; error: Error } | undefined;
  #done = false;
  readonly #started = performance.now();

  /**
   * Takes over an accepted connection and starts serving it.
   *
   * @param host the frontend's services
   * @param client the accepted connection
   */
  constructor(host: SessionHost, client: Conn) {
    this.#host = host;
    this.#client = new Side(this, client);
    this.#log = host.log;
    if (host.logInfo) {
      this.#peerAddress = formatAddress(client.remoteAddress);
      this.#log = host.log.with({ peer_address: this.#peerAddress });
      this.#log.info("serving connection");
    }
    this.#peerLog = this.#log;
    client.setHandlers(this.#client);
    this.#start();
  }

  /** The client's address, for selectors that need it. */
  get client(): Endpoint {
    return this.#client.conn.remoteAddress;
  }

  /** Bytes moved either way so far. */
  #lastBytes = 0;
  /** When bytes last moved, in performance.now() time. */
  #lastActive = this.#started;

  /**
   * Closes both sides when the connection has been idle or alive too long.
   * Called periodically; cheaper than touching a timer on every chunk.
   *
   * @param now performance.now()
   */
  checkTimeouts(now: number): void {
    const backend = this.#backend;
    if (backend === undefined || this.#done) return; // connect_timeout governs
    const host = this.#host;
    const bytes = this.#client.bytes + backend.bytes;
    if (bytes !== this.#lastBytes) {
      this.#lastBytes = bytes;
      this.#lastActive = now;
    }
    let reason: string | undefined;
    if (host.idleTimeoutMs !== undefined && now - this.#lastActive >= host.idleTimeoutMs) {
      reason = `idle for ${host.idleTimeoutMs}ms`;
    } else if (host.maxLifetimeMs !== undefined && now - this.#started >= host.maxLifetimeMs) {
      reason = `reached max_lifetime of ${host.maxLifetimeMs}ms`;
    }
    if (reason === undefined || this.#failure !== undefined) return;
    this.#failure = reason;
    backend.conn.close();
    this.#client.conn.close();
  }

  /** Aborts both sides at once (the end of a shutdown grace period). */
  abort(): void {
    this.#failure ??= "balancer shutting down";
    this.#clearTimer();
    this.#connecting = false;
    this.#backend?.conn.reset();
    this.#client.conn.reset();
  }

  /** Keeps bytes that arrived before the backend was connected. */
  keepEarly(chunk: Uint8Array): void {
    (this.#early ??= []).push(chunk.slice());
    this.#earlyBytes += chunk.length;
    // Enough kept: let the kernel hold the rest until the backend is there.
    if (this.#earlyBytes >= EARLY_BYTES) this.#client.conn.pause();
  }

  #start(): void {
    const target = this.#host.pick(this);
    if (target === undefined) {
      return this.#giveUp("no backend available", this.#host.refuseWith === "reset");
    }
    this.#attempt(target);
  }

  /** Connects to `target`, within the connect timeout. */
  #attempt(target: BackendState): void {
    const host = this.#host;
    const attempt = ++this.#attempts;
    this.#target = target;
    (this.#tried ??= []).push(target);
    target.active++;
    target.total++;
    if (host.logInfo) this.#log = this.#peerLog.with({ target_address: target.config.address });
    this.#connecting = true;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      host.timerCleared();
      this.#connectFailed(attempt, `connect timed out after ${host.connectTimeoutMs}ms`);
    }, host.connectTimeoutMs);
    host.timerStarted();
    host.connect(target).then(
      (conn) => this.#connected(conn, attempt),
      (error) => this.#connectFailed(attempt, reasonOf(error)),
    );
  }

  /**
   * A connect failed or timed out: try another backend while retries and
   * untried backends last, else give the client up.
   */
  #connectFailed(attempt: number, reason: string): void {
    if (attempt !== this.#attempts || !this.#connecting) return; // an old attempt
    this.#clearTimer();
    const failed = this.#target!;
    this.#host.connectFailed(failed, reason);
    const next = this.#client.closed || this.#attempts > this.#host.retries
      ? undefined
      : this.#host.pickAnother(this, this.#tried!);
    if (next === undefined) return this.#giveUp(reason);
    failed.active--;
    this.#log.warn("connect to backend failed, trying another", {
      peer_address: this.#peerAddress ??= formatAddress(this.client),
      target_address: failed.config.address,
      reason,
      next_target: next.config.address,
    });
    this.#attempt(next);
  }

  #clearTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#host.timerCleared();
  }

  #connected(conn: Conn, attempt: number): void {
    const client = this.#client;
    if (attempt !== this.#attempts || !this.#connecting) {
      // An attempt already given up on (timed out, or aborted): another may
      // be under way, so touch nothing but this connection.
      conn.setHandlers(DISCARD);
      conn.reset();
      return;
    }
    if (client.closed) {
      // The client went away while we connected.
      this.#clearTimer();
      conn.setHandlers(DISCARD);
      conn.reset();
      this.#connecting = false;
      return this.#maybeEnd();
    }
    this.#clearTimer();
    this.#connecting = false;
    this.#host.connectSucceeded(this.#target!);
    const backend = new Side(this, conn);
    this.#backend = backend;
    backend.peer = client.conn;
    backend.other = client;
    client.peer = conn;
    client.other = backend;
    conn.setHandlers(backend);
    if (this.#host.logInfo) this.#log.info("opened client connection");
    const early = this.#early;
    if (early !== undefined) {
      let writable = true;
      for (const chunk of early) writable = conn.write(chunk) && writable;
      this.#early = undefined;
      // Paused for having sent too much early: read again once the backend
      // has taken it (its drain resumes us otherwise).
      if (writable && this.#earlyBytes >= EARLY_BYTES && !client.ended) client.conn.resume();
    }
    if (client.ended) conn.end();
  }

  #giveUp(reason: string, reset = false): void {
    this.#clearTimer();
    if (this.#backend !== undefined || this.#done) return;
    this.#connecting = false;
    this.#failure ??= reason;
    this.#peerAddress ??= formatAddress(this.client);
    if (reset) this.#client.conn.reset();
    else this.#client.conn.close();
    this.#maybeEnd();
  }

  /** Called by a side when its connection has closed. */
  sideClosed(side: Side, error: Error | undefined): void {
    if (error !== undefined && this.#error === undefined) {
      this.#error = { side: side === this.#client ? "client" : "backend", error };
    }
    const other = side.other;
    if (other !== undefined && !other.closed) {
      // Nothing more can reach the closed side: an error aborts the other
      // side, a clean close lets it flush what it holds and close.
      if (error !== undefined) other.conn.reset();
      else other.conn.close();
    }
    this.#maybeEnd();
  }

  #maybeEnd(): void {
    if (this.#done || this.#connecting || !this.#client.closed) return;
    if (this.#backend !== undefined && !this.#backend.closed) return;
    this.#done = true;
    this.#clearTimer();
    if (this.#target !== undefined) this.#target.active--;
    this.#report();
    this.#host.ended(this);
  }

  #report(): void {
    const log = this.#log;
    const fields = () => ({
      bytes_from_client: this.#client.bytes,
      bytes_from_backend: this.#backend?.bytes ?? 0,
      duration_ms: Math.round(performance.now() - this.#started),
    });
    if (this.#failure !== undefined && this.#backend === undefined) {
      log.warn("failed to serve connection", {
        // Named here as well: below info level the logger carries neither.
        peer_address: this.#peerAddress,
        target_address: this.#target?.config.address,
        reason: this.#failure,
        ...fields(),
      });
    } else if (this.#error !== undefined || this.#failure !== undefined) {
      if (!this.#host.logInfo) return;
      const reason = this.#failure ??
        `${this.#error!.side} ${reasonOf(this.#error!.error)}`;
      log.info("failed to serve connection", { reason, ...fields() });
    } else if (this.#host.logInfo) {
      log.info("served connection", fields());
    }
  }
}
