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

/**
 * A frontend as events see it.
 *
 * @example
 * ```ts
 * import { Balancer, type FrontendInfo } from "mini-balancer";
 *
 * const balancer = await Balancer.start(config, {
 *   net,
 *   events: {
 *     listening(frontend: FrontendInfo) {
 *       console.log(`${frontend.name} listens on ${frontend.localAddress}`);
 *     },
 *   },
 * });
 * ```
 */
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
 *
 * @example
 * ```ts
 * import type { Outcome, SessionInfo } from "mini-balancer";
 *
 * const counts = new Map<Outcome, number>();
 * const events = {
 *   closed(session: SessionInfo) {
 *     const outcome = session.outcome ?? "aborted";
 *     counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
 *   },
 * };
 * ```
 */
export type Outcome = "served" | "failed" | "reset" | "timed_out" | "aborted";

/**
 * A session as events see it.
 *
 * @example
 * ```ts
 * import { Balancer, type SessionInfo } from "mini-balancer";
 *
 * const balancer = await Balancer.start(config, {
 *   net,
 *   events: {
 *     closed(session: SessionInfo) {
 *       const ms = Date.now() - session.startedAt;
 *       console.log(`${session.peerAddress} → ${session.target?.config.name}: ${session.outcome} in ${ms} ms`);
 *     },
 *   },
 * });
 * ```
 */
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
 * plain-text client on a port that terminates TLS, or the program's `admit`
 * hook said no.
 *
 * @example
 * ```ts
 * import type { FrontendInfo, Refusal } from "mini-balancer";
 *
 * const events = {
 *   refused(frontend: FrontendInfo, peerAddress: string, why: Refusal, detail: string) {
 *     if (why === "rate_limited") console.warn(`${peerAddress} is too fast for ${frontend.name}: ${detail}`);
 *   },
 * };
 * ```
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
  | "not_tls"
  | "no_match"
  | "hook";

/**
 * How a UDP flow ended: served (its backend answered: `responses` reached,
 * or quiet for idle_timeout after an answer), timed_out (no answer within
 * idle_timeout, or max_lifetime reached), failed (its backend's socket
 * could not be opened, or the backend was unreachable), aborted (cut at
 * the end of a shutdown or a reload's grace).
 *
 * @example
 * ```ts
 * import type { FlowInfo, FlowOutcome } from "mini-balancer";
 *
 * const timedOut: FlowOutcome = "timed_out";
 * const events = {
 *   flowClosed(flow: FlowInfo) {
 *     if (flow.outcome === timedOut) console.log(`${flow.peerAddress}: no reply from ${flow.target.config.name}`);
 *   },
 * };
 * ```
 */
export type FlowOutcome = "served" | "failed" | "timed_out" | "aborted";

/**
 * A UDP flow (one client address and port) as events see it.
 *
 * @example
 * ```ts
 * import { Balancer, type FlowInfo } from "mini-balancer";
 *
 * const balancer = await Balancer.start(config, {
 *   net,
 *   events: {
 *     flowClosed(flow: FlowInfo) {
 *       console.log(`${flow.peerAddress}: ${flow.datagramsFromClient} in, ${flow.datagramsFromBackend} out`);
 *     },
 *   },
 * });
 * ```
 */
export interface FlowInfo {
  /** The frontend that took it. */
  readonly frontend: FrontendInfo;
  /** The client's address and port, formatted. */
  readonly peerAddress: string;
  /** The backend its datagrams go to. */
  readonly target: BackendState;
  /** Datagrams received from the client so far. */
  readonly datagramsFromClient: number;
  /** Bytes received from the client so far. */
  readonly bytesFromClient: number;
  /** Datagrams received from the backend so far. */
  readonly datagramsFromBackend: number;
  /** Bytes received from the backend so far. */
  readonly bytesFromBackend: number;
  /** When its first datagram arrived, in `performance.now()` time. */
  readonly startedAt: number;
  /** How it ended; set once it has. */
  readonly outcome: FlowOutcome | undefined;
  /** Why it ended ("1 response", "idle for 30000ms", "ECONNREFUSED: …"); set once it has. */
  readonly reason: string | undefined;
}

/**
 * Why a datagram was dropped rather than forwarded (refusals of a new
 * flow's client go through {@linkcode Events.refused}): no backend up
 * (or every one full), the runtime's send buffer full, too many datagrams
 * waiting for a new flow's socket, or the frontend closing.
 *
 * @example
 * ```ts
 * import type { DropReason, FrontendInfo } from "mini-balancer";
 *
 * const drops = new Map<DropReason, number>();
 * const events = {
 *   datagramDropped(_frontend: FrontendInfo, _peer: string, why: DropReason) {
 *     drops.set(why, (drops.get(why) ?? 0) + 1); // count: a flood makes many
 *   },
 * };
 * ```
 */
export type DropReason = "no_backend" | "send_failed" | "pending_full" | "closing";

/**
 * What a side of the pipe did: the trace-level events.
 *
 * @example
 * ```ts
 * import type { PipeEvent, SessionInfo } from "mini-balancer";
 *
 * const events = {
 *   tracePipe: true, // pipe() is told only when this is true
 *   pipe(session: SessionInfo, side: "client" | "backend", event: PipeEvent) {
 *     if (event === "pause") console.log(`${session.peerAddress}: ${side} side paused`);
 *   },
 * };
 * ```
 */
export type PipeEvent = "pause" | "resume" | "half-close";

/**
 * Everything that happens to connections and backends, as it happens.
 *
 * @example
 * ```ts
 * import { Balancer, type Events } from "mini-balancer";
 *
 * const events: Partial<Events> = {
 *   backendDown(frontend, backend, reason) {
 *     console.warn(`${frontend.name}/${backend.config.name} is down: ${reason}`);
 *   },
 * };
 * const balancer = await Balancer.start(config, { net, events });
 * ```
 */
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
  /**
   * A connected session moved bytes since it was last told (every two
   * seconds at most, from the periodic sweep; never per chunk): counters
   * that follow long connections read it.
   */
  progress(session: SessionInfo): void;
  /**
   * A connected session has been open another `log_interval` (told only on
   * frontends that set one, from the periodic sweep, whether or not bytes
   * moved).
   */
  stillOpen(session: SessionInfo): void;
  /** Both sides are closed and everything is released; `outcome` says how it went. */
  closed(session: SessionInfo): void;
  /** A UDP flow's first datagram chose its backend; its socket to it is being opened. */
  flowOpened(flow: FlowInfo): void;
  /**
   * A UDP flow moved datagrams since it was last told (at most every few
   * seconds, from the periodic sweep; never per datagram): counters that
   * follow long flows read it.
   */
  flowProgress(flow: FlowInfo): void;
  /** A UDP flow ended and its socket is closed; `outcome` says how. */
  flowClosed(flow: FlowInfo): void;
  /**
   * Datagrams were dropped rather than forwarded; `backend` when the
   * drop was on the way to or from one. Told once per drop, which a flood
   * makes many: subscribers count, and log through a summary.
   */
  datagramDropped(
    frontend: FrontendInfo,
    peerAddress: string,
    why: DropReason,
    backend: BackendState | undefined,
  ): void;
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
  /**
   * The open connections of a backend just marked down were closed
   * (`on_down = "close_sessions"`); told once per backend going down.
   */
  sessionsClosed(frontend: FrontendInfo, backend: BackendState, count: number): void;
  /** A backend came back (rise reached). */
  backendUp(frontend: FrontendInfo, backend: BackendState, reason: string): void;
  /** What a backend's agent says changed (`50% drain`): its weight or state follows. */
  agentChanged(frontend: FrontendInfo, backend: BackendState, words: string): void;
  /** A discovered name was resolved (or failed to be): see {@linkcode Resolution}. */
  resolved(frontend: FrontendInfo, resolution: Resolution): void;
  /**
   * The balancer telling these events stopped: write what is held back
   * (a log summary) and clear any timer.
   */
  close?(): void;
}

/** The name of each event an {@linkcode Events} subscriber may hear. */
type EventName = Exclude<keyof Events, "tracePipe" | "close">;

/**
 * Every event, once: the type makes this list complete (a new member of
 * {@linkcode Events} does not compile until it is named here).
 */
const EVENT_NAMES = Object.keys(
  {
    listening: true,
    accepted: true,
    queued: true,
    refused: true,
    acceptFailed: true,
    chosen: true,
    connected: true,
    connectFailed: true,
    progress: true,
    stillOpen: true,
    closed: true,
    flowOpened: true,
    flowProgress: true,
    flowClosed: true,
    datagramDropped: true,
    pipe: true,
    probed: true,
    backendDown: true,
    sessionsClosed: true,
    backendUp: true,
    agentChanged: true,
    resolved: true,
  } satisfies Record<EventName, true>,
) as EventName[];

// Fixed arity, no rest arguments: no array per event (no event takes more than four).
type Handler = (a?: unknown, b?: unknown, c?: unknown, d?: unknown) => void;

/** The one handler that does nothing: left out when subscribers are combined. */
const IGNORE: Handler = () => {};

/**
 * Tells every subscriber of `list` each event it implements, in order:
 * logging and metrics side by side. A subscriber implements only the events
 * it wants (`Partial<Events>`); the gaps are filled here, once, so the
 * sessions call every event without checking for it. An event one
 * subscriber hears goes straight to it; an event nobody hears costs a call
 * to an empty function, as before.
 *
 * @param list the subscribers
 * @returns one sink for all of them (the subscriber itself when it is alone and complete)
 */
export function combineEvents(...list: Partial<Events>[]): Events {
  if (list.length === 1 && isComplete(list[0]!)) return list[0];
  const combined: Record<string, unknown> = {
    tracePipe: list.some((events) => events.tracePipe === true),
    close() {
      for (const events of list) events.close?.();
    },
  };
  for (const name of EVENT_NAMES) {
    const handlers: Handler[] = [];
    for (const events of list) {
      const handler = events[name] as Handler | undefined;
      if (handler !== undefined && handler !== IGNORE) handlers.push(handler.bind(events));
    }
    if (handlers.length === 0) combined[name] = IGNORE;
    else if (handlers.length === 1) combined[name] = handlers[0];
    else {
      combined[name] = (a?: unknown, b?: unknown, c?: unknown, d?: unknown) => {
        for (let i = 0; i < handlers.length; i++) handlers[i]!(a, b, c, d);
      };
    }
  }
  return combined as unknown as Events;
}

/** Whether a subscriber implements every event (and says whether it traces the pipe). */
function isComplete(events: Partial<Events>): events is Events {
  return typeof events.tracePipe === "boolean" &&
    EVENT_NAMES.every((name) => typeof events[name] === "function");
}

/**
 * Events nobody listens to, for embedders and tests that want silence.
 *
 * @example
 * ```ts
 * import { Balancer, NO_EVENTS } from "mini-balancer";
 * import { net } from "mini-balancer/bun";
 *
 * // No log line and no callback: a quiet balancer for a test.
 * const balancer = await Balancer.start(config, { net, events: NO_EVENTS });
 * ```
 */
export const NO_EVENTS: Events = combineEvents();
