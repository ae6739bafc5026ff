/**
 * The events seam: what happened, told by sessions, admission, pools and
 * health checks to whoever subscribes (logging now; metrics and access logs
 * later). Events are emitted per connection or per backend change, never per
 * chunk; the one exception, pipe events (pause, resume, half-close), are
 * emitted only when {@linkcode Events.tracePipe} asks for them.
 *
 * Subscribers get live views, not copies: read what you need during the
 * call, since the session goes on changing afterwards.
 *
 * @module
 */
import type { Resolution } from "../discovery/discovery.ts";
import type { BackendState } from "./upstream/backend.ts";

/** A frontend as events see it. */
export interface FrontendInfo {
  /** The frontend's name (`default` for the original `[frontend]`). */
  readonly name: string;
  /** The address it is bound to, formatted (`127.0.0.1:7070`). */
  readonly localAddress: string;
  /**
   * Every frontend on the address, by name, when the event came before one
   * of several sharing it (by `sni`) was chosen: a bad preamble or an
   * unknown server name belongs to the address, not to `name`.
   */
  readonly sharing?: readonly string[];
}

/**
 * How a connection ended: served (both sides closed cleanly), failed (no
 * backend could be connected), reset (a side errored mid-way), timed_out
 * (idle_timeout or max_lifetime), aborted (cut at the end of a shutdown).
 */
export type Outcome = "served" | "failed" | "reset" | "timed_out" | "aborted";

/** A session as events see it. */
export interface SessionInfo {
  /** The frontend that accepted it. */
  readonly frontend: FrontendInfo;
  /** The client's address, formatted. */
  readonly peerAddress: string;
  /** The backend it is connected or connecting to, if any. */
  readonly target: BackendState | undefined;
  /** Bytes received from the client so far. */
  readonly bytesFromClient: number;
  /** Bytes received from the backend so far. */
  readonly bytesFromBackend: number;
  /** When it was accepted, in `performance.now()` time. */
  readonly startedAt: number;
  /** Connect attempts so far: 1 for the first backend, 2 for the first retry, … */
  readonly attempts: number;
  /** When its current connect attempt started, in `performance.now()` time. */
  readonly attemptStartedAt: number;
  /** How it ended; set once it has. */
  readonly outcome: Outcome | undefined;
  /** Why it failed, was cut or timed out; undefined when served. */
  readonly reason: string | undefined;
}

/**
 * Why a client was turned away before any backend was tried: over its
 * limit, a full frontend or backends, a denied address, over its connection
 * rate, a PROXY header from an untrusted address, a bad or late PROXY header
 * or TLS ClientHello, a server name no frontend on the address takes, or a
 * plain-text client on a port that terminates TLS.
 */
export type Refusal =
  | "client_limit"
  | "frontend_full"
  | "backends_full"
  | "denied"
  | "rate_limited"
  | "untrusted"
  | "bad_header"
  | "bad_hello"
  | "unknown_server_name"
  | "not_tls";

/** What a side of the pipe did: the trace-level events. */
export type PipeEvent = "pause" | "resume" | "half-close";

/** Everything that happens to connections and backends, as it happens. */
export interface Events {
  /**
   * Whether {@linkcode Events.pipe} is wanted; read once per session, so
   * that the pipe's rare paths pay a field read and the per-chunk path
   * nothing.
   */
  readonly tracePipe: boolean;
  /** A frontend is bound and accepting. */
  listening(frontend: FrontendInfo): void;
  /** A connection was accepted and is being served. */
  accepted(session: SessionInfo): void;
  /** A connection waits in the frontend's queue (it is full, or every backend is). */
  queued(frontend: FrontendInfo, peerAddress: string, why: Refusal): void;
  /** A connection was turned away without trying a backend. */
  refused(frontend: FrontendInfo, peerAddress: string, why: Refusal, detail: string): void;
  /** Accepting a connection threw (a bug, or a socket gone at once). */
  acceptFailed(frontend: FrontendInfo, reason: string): void;
  /**
   * A backend was chosen for a connect attempt.
   *
   * @param why a short constant: "algorithm", "next not full", "retry", …
   */
  chosen(session: SessionInfo, backend: BackendState, why: string): void;
  /** The session's connect to its target succeeded; bytes now flow. */
  connected(session: SessionInfo): void;
  /** A connect failed; `next` is the backend tried instead, if any. */
  connectFailed(
    session: SessionInfo,
    backend: BackendState,
    reason: string,
    next: BackendState | undefined,
  ): void;
  /** Both sides are closed and everything is released; `outcome` says how it went. */
  closed(session: SessionInfo): void;
  /** A side of the pipe paused, resumed or half-closed (only when tracePipe). */
  pipe(session: SessionInfo, side: "client" | "backend", event: PipeEvent): void;
  /** A health probe finished; `failure` is why it failed, undefined when it passed. */
  probed(
    frontend: FrontendInfo,
    backend: BackendState,
    failure: string | undefined,
    ms: number,
  ): void;
  /** A backend was taken down (fall reached). */
  backendDown(frontend: FrontendInfo, backend: BackendState, reason: string): void;
  /** A backend came back (rise reached). */
  backendUp(frontend: FrontendInfo, backend: BackendState, reason: string): void;
  /** A discovered name was resolved (or failed to be): see {@linkcode Resolution}. */
  resolved(frontend: FrontendInfo, resolution: Resolution): void;
  /**
   * The balancer telling these events stopped: write what is held back
   * (a log summary) and clear any timer.
   */
  close?(): void;
}

/** Events nobody listens to, for embedders and tests that want silence. */
export const NO_EVENTS: Events = {
  tracePipe: false,
  listening() {},
  accepted() {},
  queued() {},
  refused() {},
  acceptFailed() {},
  chosen() {},
  connected() {},
  connectFailed() {},
  closed() {},
  pipe() {},
  probed() {},
  backendDown() {},
  backendUp() {},
  resolved() {},
};

/**
 * Tells every subscriber of `list` each event, in order: logging and
 * metrics side by side.
 *
 * @param list the subscribers
 * @returns one sink for all of them
 */
export function combineEvents(...list: Events[]): Events {
  if (list.length === 1) return list[0]!;
  // Fixed arity, no rest arguments: no array per event (no event takes more than four).
  type Handler = (a?: unknown, b?: unknown, c?: unknown, d?: unknown) => void;
  const each = <K extends keyof Omit<Events, "tracePipe">>(name: K) => {
    const handlers = list.map((events) => (events[name] as Handler).bind(events));
    return ((a?: unknown, b?: unknown, c?: unknown, d?: unknown) => {
      for (let i = 0; i < handlers.length; i++) handlers[i]!(a, b, c, d);
    }) as unknown as Events[K];
  };
  return {
    tracePipe: list.some((events) => events.tracePipe),
    listening: each("listening"),
    accepted: each("accepted"),
    queued: each("queued"),
    refused: each("refused"),
    acceptFailed: each("acceptFailed"),
    chosen: each("chosen"),
    connected: each("connected"),
    connectFailed: each("connectFailed"),
    closed: each("closed"),
    pipe: each("pipe"),
    probed: each("probed"),
    backendDown: each("backendDown"),
    backendUp: each("backendUp"),
    resolved: each("resolved"),
    close() {
      for (const events of list) events.close?.();
    },
  };
}
