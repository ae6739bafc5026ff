/**
 * One client connection through its whole life: choose a backend, connect
 * within the timeout (retrying on another backend), hand the two
 * connections to the pipe, enforce idle_timeout and max_lifetime, and report
 * how it went. The pipe itself lives in `pipe.ts`.
 *
 * What is read before a frontend is chosen (a PROXY header, a TLS
 * ClientHello) comes in an {@linkcode Arrival} (preamble.ts): the real
 * client's address, and the bytes after the header, replayed as if they had
 * just arrived. A backend with `send_proxy` gets a PROXY header before any
 * client byte.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import type { FrontendConfig } from "../../config/config.ts";
import { isLocalShortage, reasonOf } from "../../errors.ts";
import { encodeProxyV1, encodeProxyV2 } from "../../protocol/proxy.ts";
import { type Conn, dial, type Dialer, type Endpoint, type Net } from "../../runtime/types.ts";
import type { PickContext } from "../upstream/algorithms/selector.ts";
import type { BackendState } from "../upstream/backend.ts";
import type { Events, FrontendInfo, Outcome, PipeEvent, SessionInfo } from "../events.ts";
import { turnAway } from "./admission.ts";
import { DISCARD, join, type PipeOwner, Side, ThrottledSide } from "./pipe.ts";
import type { Pool } from "../upstream/pool.ts";
import type { Arrival } from "../listener/preamble.ts";
import type { Sessions } from "./sessions.ts";
import { type Hooks, preambleOf, runSelect } from "../hooks.ts";

/** What a session needs from the frontend that accepted it. */
export interface SessionScope extends FrontendInfo {
  /** The frontend's config; a session keeps the one it started with. */
  readonly config: FrontendConfig;
  /** The frontend's backends. */
  readonly pool: Pool;
  /** Where the session reports what happens. */
  readonly events: Events;
  /** The address its connections arrive at, when one address is bound (not a wildcard). */
  readonly fixedLocal?: Endpoint;
  /** The runtime's sockets, to connect to backends. */
  readonly net: Net;
  /** The frontend's live sessions (and its timer count). */
  readonly sessions: Pick<Sessions<Session>, "add" | "delete" | "timers" | "size">;
  /** The program's hooks: `select` may name the backend before the algorithm. */
  readonly hooks?: Hooks;
}

/**
 * Bytes a client may send before its backend is connected, kept by the
 * session; past this the client is paused. Most clients send their first
 * request at once, so not pausing by default saves two system calls per
 * connection.
 */
const EARLY_BYTES = 64 * 1024;

/**
 * How often, at most, a connected session that moved bytes tells
 * {@linkcode Events.progress}: /metrics shows a long connection's bytes
 * this late at most, plus one sweep.
 */
export const PROGRESS_EVERY_MS = 2000;

/** `a` then `b`, in one new array. */
function joinBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** The shorter of two optional durations. */
function shorter(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || (b !== undefined && b < a) ? b : a;
}

/** Fires a session's connect timeout; each attempt clears its timer, so it is the current one's. */
function connectTimedOut(session: Session): void {
  session.connectTimedOut();
}

/** A client connection being served. */
export class Session implements Dialer, PickContext, PipeOwner, SessionInfo {
  readonly #scope: SessionScope;
  /** The frontend config this session started with (a reload does not alter it). */
  readonly #config: FrontendConfig;
  readonly #client: Side;
  #backend: Side | undefined;
  /** The admission key it counts against (the client's IP), if limited. */
  readonly clientKey: string | undefined;
  /** What was read before it was handed over, if anything (the PROXY header's addresses). */
  readonly #arrival: Arrival | undefined;
  target: BackendState | undefined;
  /** The client's address as text, once read (the socket forgets it on close). */
  #peerAddress: string | undefined;
  /** Connect attempts so far. */
  attempts = 0;
  #tried: BackendState[] | undefined;
  #early: Uint8Array[] | undefined;
  #earlyBytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #connecting = false;
  #error: { side: string; error: Error } | undefined;
  #done = false;
  outcome: Outcome | undefined;
  reason: string | undefined;
  readonly startedAt = performance.now();
  attemptStartedAt = this.startedAt;
  readonly tracePipe: boolean;

  /**
   * Takes over an accepted connection; {@linkcode Session.start} serves it.
   *
   * @param scope the frontend's collaborators
   * @param client the accepted connection
   * @param clientKey what the connection counts against in admission, if anything
   * @param arrival its preamble, when one was read
   */
  constructor(
    scope: SessionScope,
    client: Conn,
    clientKey: string | undefined,
    arrival: Arrival | undefined,
  ) {
    this.#scope = scope;
    this.#config = scope.config;
    this.#logDue = this.startedAt + (scope.config.logIntervalMs ?? 0);
    this.clientKey = clientKey;
    this.#arrival = arrival;
    this.tracePipe = scope.events.tracePipe;
    const rate = scope.config.maxBytesPerSecond;
    this.#client = rate === undefined
      ? new Side(this, client, "client")
      : new ThrottledSide(this, client, "client", rate);
    client.setHandlers(this.#client);
  }

  /** The frontend that accepted it. */
  get frontend(): FrontendInfo {
    return this.#scope;
  }

  /** The client's address (the PROXY header's, when one was read), for selectors that need it. */
  get client(): Endpoint {
    return this.#arrival?.client ?? this.#client.conn.remoteAddress;
  }

  /** The client's address, formatted once. */
  get peerAddress(): string {
    return this.#peerAddress ??= formatAddress(this.client);
  }

  get bytesFromClient(): number {
    return this.#client.bytes;
  }

  get bytesFromBackend(): number {
    return this.#backend?.bytes ?? 0;
  }

  /** Registers the session and starts serving: choose a backend and connect. */
  start(): void {
    const scope = this.#scope;
    scope.sessions.add(this);
    scope.events.accepted(this);
    // The bytes after the preamble, and what happened since, as if just arrived.
    this.#arrival?.replay(this.#client);
    if (this.#client.closed) return; // gone already: the close ended the session
    const select = scope.hooks?.select;
    // The hook's choice when it names a backend that can take it; retries use the algorithm.
    const target = (select === undefined ? undefined : this.#selected(select)) ??
      scope.pool.pick(this);
    if (target === undefined) {
      const reason = scope.pool.anyUp() ? "all backends full" : "no backend available";
      return this.#giveUp(reason);
    }
    this.#attempt(target);
  }

  /** The backend the program's select hook names, when it can take a connection. */
  #selected(select: NonNullable<Hooks["select"]>): BackendState | undefined {
    const scope = this.#scope;
    const context = {
      client: this.client,
      preamble: preambleOf(this.#arrival, this.#config.acceptProxy),
      transport: "tcp" as const,
    };
    const chosen = runSelect(select, scope.name, scope.pool, context);
    if (chosen !== undefined) scope.pool.why = "select hook";
    return chosen;
  }

  /**
   * The shortest of its idle_timeout, max_lifetime and log_interval, as it
   * started with them: how often it needs a check ({@linkcode Sessions}).
   */
  get limitMs(): number | undefined {
    const { idleTimeoutMs, maxLifetimeMs, logIntervalMs } = this.#config;
    return shorter(shorter(idleTimeoutMs, maxLifetimeMs), logIntervalMs);
  }

  /** Bytes moved either way at the last check. */
  #lastBytes = 0;
  /** When bytes last moved, in performance.now() time. */
  #lastActive = this.startedAt;
  /** When {@linkcode Events.progress} was last told, and the bytes received either way then. */
  #toldAt = this.startedAt;
  #toldBytes = 0;
  /** When the next `connection in progress` line is due (with log_interval), in performance.now() time. */
  #logDue: number;

  /**
   * Closes both sides when the connection has been idle or alive too long,
   * and tells the progress of a long one. Called periodically; cheaper than
   * touching a timer on every chunk.
   *
   * @param now performance.now()
   */
  checkTimeouts(now: number): void {
    const backend = this.#backend;
    if (backend === undefined || this.#done) return; // connect_timeout governs
    const config = this.#config;
    const bytes = this.#client.moved + backend.moved;
    if (bytes !== this.#lastBytes) {
      this.#lastBytes = bytes;
      this.#lastActive = now;
    }
    let reason: string | undefined;
    if (config.idleTimeoutMs !== undefined && now - this.#lastActive >= config.idleTimeoutMs) {
      reason = `idle for ${config.idleTimeoutMs}ms`;
    } else if (
      config.maxLifetimeMs !== undefined && now - this.startedAt >= config.maxLifetimeMs
    ) {
      reason = `reached max_lifetime of ${config.maxLifetimeMs}ms`;
    }
    if (reason === undefined) {
      if (this.outcome === undefined) this.#tellProgress(now, backend);
      return;
    }
    if (this.outcome !== undefined) return;
    this.outcome = "timed_out";
    this.reason = reason;
    backend.conn.close();
    this.#client.conn.close();
  }

  /**
   * Tells {@linkcode Events.progress} when bytes were received since it was
   * last told, two seconds ago or more, and {@linkcode Events.stillOpen}
   * each log_interval: a sweep's one check per session.
   */
  #tellProgress(now: number, backend: Side): void {
    const received = this.#client.bytes + backend.bytes;
    if (received !== this.#toldBytes && now - this.#toldAt >= PROGRESS_EVERY_MS) {
      this.#toldAt = now;
      this.#toldBytes = received;
      this.#scope.events.progress(this);
    }
    const every = this.#config.logIntervalMs;
    if (every === undefined || now < this.#logDue) return;
    // On the interval's beat from the accept; a beat missed (a stalled loop) is not made up.
    this.#logDue += every;
    if (this.#logDue <= now) this.#logDue = now + every;
    this.#scope.events.stillOpen(this);
  }

  /** Aborts both sides at once (the end of a shutdown grace period). */
  abort(): void {
    if (this.outcome === undefined) {
      this.outcome = this.#backend === undefined ? "failed" : "aborted";
      this.reason = "balancer shutting down";
    }
    this.#clearTimer();
    this.#connecting = false;
    this.#backend?.conn.reset();
    this.#client.conn.reset();
  }

  /**
   * Closes a connected session because its backend was marked down
   * (`on_down = "close_sessions"`): FIN to both, or resets with `reset`.
   *
   * @param reset whether to reset rather than close
   * @returns whether it was closed (false: not connected yet, or ending)
   */
  closeForDown(reset: boolean): boolean {
    const backend = this.#backend;
    if (backend === undefined || this.#done || this.outcome !== undefined) return false;
    this.outcome = "aborted";
    this.reason = `backend ${this.target!.config.name} is down`;
    if (reset) {
      backend.conn.reset();
      this.#client.conn.reset();
    } else {
      backend.conn.close();
      this.#client.conn.close();
    }
    return true;
  }

  /** Keeps bytes that arrived before the backend was connected. */
  keepEarly(chunk: Uint8Array): void {
    (this.#early ??= []).push(chunk.slice());
    this.#earlyBytes += chunk.length;
    // Enough kept: let the kernel hold the rest until the backend is there.
    if (this.#earlyBytes >= EARLY_BYTES) this.#client.conn.pause();
  }

  tracePipeEvent(side: Side, event: PipeEvent): void {
    this.#scope.events.pipe(this, side.name, event);
  }

  /** Connects to `target`, within the connect timeout. */
  #attempt(target: BackendState): void {
    const scope = this.#scope;
    const attempt = ++this.attempts;
    if (attempt > 1) this.attemptStartedAt = performance.now();
    this.target = target;
    // The list of tried backends is made at the first retry: most connect at once.
    this.#tried?.push(target);
    target.active++;
    scope.events.chosen(this, target, scope.pool.why);
    this.#connecting = true;
    // A shared function and the session as its argument: no closure per connection.
    this.#timer = setTimeout(connectTimedOut, this.#config.connectTimeoutMs, this);
    scope.sessions.timers++;
    dial(scope.net, target.config.forwardTo, this, attempt);
  }

  /** The connect for attempt `attempt` succeeded ({@linkcode Dialer}). */
  dialed(conn: Conn, attempt: number): void {
    this.#connected(conn, attempt);
  }

  /** The connect for attempt `attempt` failed ({@linkcode Dialer}). */
  dialFailed(error: unknown, attempt: number): void {
    this.#connectFailed(attempt, reasonOf(error), isLocalShortage(error));
  }

  /** The connect timeout of the attempt under way fired (see {@linkcode connectTimedOut}). */
  connectTimedOut(): void {
    this.#timer = undefined;
    this.#scope.sessions.timers--;
    const timeoutMs = this.#config.connectTimeoutMs;
    this.#connectFailed(this.attempts, `connect timed out after ${timeoutMs}ms`);
  }

  /**
   * A connect failed or timed out: try another backend while retries and
   * untried backends last, else give the client up. Out of file
   * descriptors here (`local`) is no fault of the backend's, and any other
   * backend would fail alike: the client is given up at once, and passive
   * health checks do not count it.
   */
  #connectFailed(attempt: number, reason: string, local = false): void {
    if (attempt !== this.attempts || !this.#connecting) return; // an old attempt
    this.#clearTimer();
    const scope = this.#scope;
    const failed = this.target!;
    if (!local) scope.pool.connectFailed(failed, reason);
    const next = local || this.#client.closed || this.attempts > this.#config.retries
      ? undefined
      : scope.pool.pickAnother(this, this.#tried ??= [failed]);
    // Read now: the socket forgets the address once closed.
    this.#peerAddress ??= formatAddress(this.client);
    scope.events.connectFailed(this, failed, reason, next);
    if (next === undefined) return this.#giveUp(reason);
    failed.active--;
    this.#attempt(next);
  }

  #clearTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#scope.sessions.timers--;
  }

  #connected(conn: Conn, attempt: number): void {
    const client = this.#client;
    if (attempt !== this.attempts || !this.#connecting) {
      // An attempt already given up on (timed out, or aborted): another may
      // be under way, so touch nothing but this connection.
      conn.setHandlers(DISCARD);
      conn.reset();
      return;
    }
    this.#clearTimer();
    this.#connecting = false;
    if (client.closed) {
      // The client went away while we connected.
      conn.setHandlers(DISCARD);
      conn.reset();
      return this.#maybeEnd();
    }
    this.#scope.pool.connectSucceeded(this.target!);
    const rate = this.#config.maxBytesPerSecond;
    const backend = rate === undefined
      ? new Side(this, conn, "backend")
      : new ThrottledSide(this, conn, "backend", rate);
    this.#backend = backend;
    join(client, backend);
    conn.setHandlers(backend);
    this.#scope.events.connected(this);
    const early = this.#early;
    const sendProxy = this.target!.config.sendProxy;
    if (sendProxy !== undefined) {
      // One write with the client's first bytes: one segment, one syscall.
      const header = this.#proxyHeader(sendProxy);
      if (early === undefined) conn.write(header);
      else early[0] = joinBytes(header, early[0]!);
    }
    this.#early = undefined;
    // A throttled client's early bytes, and its FIN after them, go at its pace.
    if (client instanceof ThrottledSide) {
      return client.connected(early, this.#earlyBytes >= EARLY_BYTES);
    }
    if (early !== undefined) {
      let writable = true;
      for (const chunk of early) writable = conn.write(chunk) && writable;
      // Paused for having sent too much early: read again once the backend
      // has taken it (its drain resumes us otherwise).
      if (writable && this.#earlyBytes >= EARLY_BYTES && !client.ended) client.conn.resume();
    }
    if (client.ended) conn.end();
  }

  /**
   * The PROXY header for a backend: the client's address and the one it
   * connected to (both as a trusted PROXY header gave them, if one did).
   */
  #proxyHeader(version: "v1" | "v2"): Uint8Array {
    const conn = this.#client.conn;
    // The socket's own address costs Bun two system calls: the bound one is known.
    const destination = this.#arrival?.destination ?? this.#scope.fixedLocal ?? conn.localAddress;
    return version === "v1"
      ? encodeProxyV1(this.client, destination)
      : encodeProxyV2(this.client, destination);
  }

  /** No backend can take the client: turn it away as the frontend says. */
  #giveUp(reason: string): void {
    this.#clearTimer();
    if (this.#backend !== undefined || this.#done) return;
    this.#connecting = false;
    if (this.outcome === undefined) {
      this.outcome = "failed";
      this.reason = reason;
    }
    this.#peerAddress ??= formatAddress(this.client);
    turnAway(this.#client.conn, this.#config);
    this.#maybeEnd();
  }

  sideClosed(side: Side, error: Error | undefined): void {
    if (error !== undefined && this.#error === undefined) this.#error = { side: side.name, error };
    this.#maybeEnd();
  }

  #maybeEnd(): void {
    if (this.#done || this.#connecting || !this.#client.closed) return;
    if (this.#backend !== undefined && !this.#backend.closed) return;
    this.#done = true;
    this.#clearTimer();
    if (this.target !== undefined) this.target.active--;
    if (this.outcome === undefined) {
      // A client that leaves before its backend is connected was served as
      // far as it asked to be; one that reset was not.
      if (this.#error === undefined) this.outcome = "served";
      else {
        this.outcome = "reset";
        this.reason = `${this.#error.side} ${reasonOf(this.#error.error)}`;
      }
    }
    const scope = this.#scope;
    scope.events.closed(this);
    scope.sessions.delete(this);
  }
}
