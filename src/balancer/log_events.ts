/**
 * Logging as a subscriber of the events: the original's lines at INFO
 * (`listening for connections`, `serving connection`, `opened client
 * connection`, `served connection`, with `local_address`, `peer_address` and
 * `target_address` as the spans), `connection in progress` every
 * log_interval while one is open, failures at WARN, the backend chosen and
 * why, connect times and health probes at DEBUG, and pipe events at TRACE.
 *
 * Refusals, which any client can trigger, are summarised: the first few
 * lines of each kind (reason and address) per window, then one line saying
 * how many more there were (see {@linkcode LogSummary}).
 *
 * UDP flows log as connections do (`listening for datagrams`, `serving
 * flow`, `served flow` with datagrams and bytes each way). What a stranger
 * can cause once per datagram is never a line per datagram: dropped
 * datagrams are only counted, one line per kind and window; failed flows
 * (a new source port costs nothing) are summarised as refusals are.
 *
 * Levels are read once, when the subscriber is made: LogTape's own check
 * costs more than the rest of a connection's bookkeeping, and an event below
 * the level costs one call and one test.
 *
 * @module
 */
import { getLog } from "../log.ts";
import type { BackendState } from "./upstream/backend.ts";
import type {
  DropReason,
  Events,
  FlowInfo,
  FrontendInfo,
  PipeEvent,
  Refusal,
  SessionInfo,
} from "./events.ts";
import { formatWindow, LogSummary, type LogSummaryOptions } from "./log_summary.ts";

const REFUSALS: Record<Refusal, string> = {
  client_limit: "refused connection: too many from this client",
  frontend_full: "refused connection: frontend full",
  backends_full: "refused connection: all backends full",
  denied: "refused connection: address denied",
  rate_limited: "refused connection: client over its connection rate",
  untrusted: "refused connection: PROXY header expected from a trusted address only",
  bad_header: "refused connection: bad PROXY header",
  bad_hello: "refused connection: bad TLS ClientHello",
  unknown_server_name: "refused connection: no frontend for this server name",
  not_tls: "refused connection: not TLS",
  no_match: "refused connection: no frontend takes it",
  hook: "refused connection: the admit hook said no",
};

/**
 * Refusals that are policy working as meant, or a client at the wrong port
 * (plain text to TLS, a protocol no frontend takes), logged at INFO rather
 * than WARN.
 */
const EXPECTED: ReadonlySet<Refusal> = new Set([
  "denied",
  "rate_limited",
  "not_tls",
  "no_match",
  "hook",
]);

/** Only the limits queue a connection. */
const QUEUED: Partial<Record<Refusal, string>> = {
  client_limit: "queued connection: too many from this client",
  frontend_full: "queued connection: frontend full",
  backends_full: "queued connection: all backends full",
};

/** What a dropped datagram's summary says after `dropped N datagrams`. */
const DROPS: Record<DropReason, string> = {
  no_backend: "no backend up",
  send_failed: "send failed",
  pending_full: "too many waiting for a new flow's socket",
  closing: "frontend closing",
};

const PIPE: Record<PipeEvent, string> = {
  pause: "paused reading: the other side is full",
  resume: "resumed reading: the other side drained",
  "half-close": "half-closed: passing the end of stream on",
};

/** The fields that place a session, as the original's spans. */
function where(session: SessionInfo, target = session.target) {
  return {
    local_address: session.frontend.localAddress,
    peer_address: session.peerAddress,
    target_address: target?.config.address,
  };
}

/** The frontend's and backend's names, after the other fields. */
function names(frontend: FrontendInfo, backend: BackendState | undefined) {
  return { frontend: frontend.name, backend: backend?.config.name };
}

/** Where a refusal happened: the address, and its frontend or every frontend sharing it. */
function placeOf(frontend: FrontendInfo) {
  const local_address = frontend.localAddress;
  const sharing = frontend.sharing;
  return sharing === undefined
    ? { local_address, frontend: frontend.name }
    : { local_address, frontends: sharing.join(",") };
}

/** The fields that place a flow, as a session's spans. */
function flowWhere(flow: FlowInfo) {
  return {
    local_address: flow.frontend.localAddress,
    peer_address: flow.peerAddress,
    target_address: flow.target.config.address,
  };
}

/** A kind of dropped datagram, or of failed flow, as its summary line tells it. */
interface FlowKind {
  readonly why: DropReason | "failed";
  readonly frontend: FrontendInfo;
}

/** A kind of refusal, as its summary line tells it. */
interface RefusalKind {
  readonly why: Refusal;
  readonly expected: boolean;
  readonly place: ReturnType<typeof placeOf>;
}

/**
 * Options for {@linkcode logEvents}.
 *
 * @example
 * ```ts
 * import { type LogEventsOptions, logEvents } from "mini-balancer";
 *
 * // At most 3 refusal lines of each kind per minute; the rest are summarised.
 * const options: LogEventsOptions = { summary: { lines: 3, windowMs: 60_000 } };
 * const balancer = await Balancer.start(config, { net, events: logEvents(options) });
 * ```
 */
export interface LogEventsOptions {
  /**
   * How refusals are summarised: lines of each kind per window, and the
   * window's length. @default 5 lines per 10 s
   */
  readonly summary?: LogSummaryOptions;
}

/**
 * Makes the logging subscriber, at the levels configured now.
 *
 * @param options how refusals are summarised
 * @returns events that log; their `close` writes the summaries still held
 *
 * @example
 * ```ts
 * import { Balancer, configureLogging, logEvents } from "mini-balancer";
 * import { net } from "mini-balancer/deno";
 *
 * configureLogging({ verbosity: 1 });
 * const balancer = await Balancer.start(config, { net, events: logEvents() });
 * ```
 */
export function logEvents(options: LogEventsOptions = {}): Events {
  const log = getLog("frontend");
  const refusals = new LogSummary<RefusalKind>((kind, held, windowMs) => {
    const plural = held === 1 ? "refusal" : "refusals";
    const message = `… and ${held} more ${kind.why} ${plural} in the last ${
      formatWindow(windowMs)
    }`;
    const fields = { ...kind.place, reason: kind.why, suppressed: held, window_ms: windowMs };
    if (kind.expected) log.info(message, fields);
    else log.warn(message, fields);
  }, options.summary);
  // Drops are counted, never logged one by one: no full lines, one summary per window.
  const drops = new LogSummary<FlowKind>(({ why, frontend }, held, windowMs) => {
    const message = `dropped ${held} datagram${held === 1 ? "" : "s"}: ${
      DROPS[why as DropReason]
    } in the last ${formatWindow(windowMs)}`;
    const fields = {
      local_address: frontend.localAddress,
      reason: why,
      dropped: held,
      window_ms: windowMs,
      ...names(frontend, undefined),
    };
    if (why === "closing") log.info(message, fields);
    else log.warn(message, fields);
  }, { windowMs: options.summary?.windowMs, lines: 0 });
  const failedFlows = new LogSummary<FlowKind>(({ frontend }, held, windowMs) => {
    log.warn(
      `… and ${held} more failed flow${held === 1 ? "" : "s"} in the last ${
        formatWindow(windowMs)
      }`,
      {
        local_address: frontend.localAddress,
        suppressed: held,
        window_ms: windowMs,
        ...names(frontend, undefined),
      },
    );
  }, options.summary);
  const info = log.isEnabledFor("info");
  const debug = log.isEnabledFor("debug");
  const trace = log.isEnabledFor("trace");
  /** A backend's health changed: always worth a WARN line. */
  const health = (message: string, frontend: FrontendInfo, backend: BackendState, reason: string) =>
    log.warn(message, {
      local_address: frontend.localAddress,
      target_address: backend.config.address,
      reason,
      ...names(frontend, backend),
    });
  return {
    tracePipe: trace,
    flowOpened(flow) {
      if (!info) return;
      log.info("serving flow", { ...flowWhere(flow), ...names(flow.frontend, flow.target) });
    },
    // Read by the metrics; a line every few seconds per flow would be noise.
    flowProgress() {},
    flowClosed(flow) {
      const outcome = flow.outcome;
      const fields = {
        ...flowWhere(flow),
        reason: flow.reason,
        ...flowCounts(flow),
        ...names(flow.frontend, flow.target),
      };
      if (outcome === "failed") {
        // Shown at the default level, but summarised: a stranger opens a flow per datagram.
        const frontend = flow.frontend;
        const key = `${frontend.localAddress} ${frontend.name}`;
        if (failedFlows.admit(key, { why: "failed", frontend })) {
          log.warn("failed to serve flow", fields);
        }
      } else if (!info) {
        return;
      } else if (outcome === "served") {
        log.info("served flow", fields);
      } else {
        log.info("failed to serve flow", fields);
      }
    },
    datagramDropped(frontend, _peerAddress, why) {
      drops.admit(`${why} ${frontend.localAddress} ${frontend.name}`, { why, frontend });
    },
    listening(frontend) {
      const udp = frontend.localAddress.startsWith("udp:");
      log.info(udp ? "listening for datagrams" : "listening for connections", {
        local_address: frontend.localAddress,
        ...names(frontend, undefined),
      });
    },
    accepted(session) {
      if (!info) return;
      log.info("serving connection", {
        local_address: session.frontend.localAddress,
        peer_address: session.peerAddress,
        ...names(session.frontend, undefined),
      });
    },
    queued(frontend, peerAddress, why) {
      if (!info) return;
      log.info(QUEUED[why] ?? `queued connection: ${why}`, {
        local_address: frontend.localAddress,
        peer_address: peerAddress,
        ...names(frontend, undefined),
      });
    },
    refused(frontend, peerAddress, why, detail) {
      const expected = EXPECTED.has(why);
      if (expected && !info) return;
      const { local_address, ...who } = placeOf(frontend);
      const key = `${why} ${local_address} ${frontend.name}`;
      if (!refusals.admit(key, { why, expected, place: { local_address, ...who } })) return;
      const fields = { local_address, peer_address: peerAddress, reason: detail, ...who };
      if (expected) log.info(REFUSALS[why], fields);
      else log.warn(REFUSALS[why], fields);
    },
    acceptFailed(frontend, reason) {
      log.error("failed to accept connection", {
        local_address: frontend.localAddress,
        reason,
        ...names(frontend, undefined),
      });
    },
    chosen(session, backend, why) {
      if (!debug) return;
      log.debug("chose backend", {
        ...where(session, backend),
        reason: why,
        attempt: session.attempts,
        active: backend.active,
        ...names(session.frontend, backend),
      });
    },
    connected(session) {
      if (debug) {
        log.debug("connected to backend", {
          ...where(session),
          connect_ms: Math.round((performance.now() - session.attemptStartedAt) * 100) / 100,
          ...names(session.frontend, session.target),
        });
      }
      if (!info) return;
      log.info("opened client connection", {
        ...where(session),
        ...names(session.frontend, session.target),
      });
    },
    connectFailed(session, backend, reason, next) {
      if (next === undefined) {
        // The session gives up: its closing line says why, once.
        if (debug) {
          log.debug("connect to backend failed, none left to try", {
            ...where(session, backend),
            reason,
            ...names(session.frontend, backend),
          });
        }
        return;
      }
      log.warn("connect to backend failed, trying another", {
        ...where(session, backend),
        reason,
        next_target: next.config.address,
        ...names(session.frontend, backend),
        next_backend: next.config.name,
      });
    },
    // Read by the metrics; the lines are stillOpen's, at the frontend's log_interval.
    progress() {},
    stillOpen(session) {
      if (!info) return;
      log.info("connection in progress", {
        ...where(session),
        bytes_from_client: session.bytesFromClient,
        bytes_from_backend: session.bytesFromBackend,
        duration_ms: Math.round(performance.now() - session.startedAt),
        ...names(session.frontend, session.target),
      });
    },
    closed(session) {
      const outcome = session.outcome;
      if (outcome === "failed") {
        // Shown at the default level: a client that could not be served.
        log.warn("failed to serve connection", {
          ...where(session),
          reason: session.reason,
          ...counts(session),
          ...names(session.frontend, session.target),
        });
      } else if (!info) {
        return;
      } else if (outcome === "served") {
        log.info("served connection", {
          ...where(session),
          ...counts(session),
          ...names(session.frontend, session.target),
        });
      } else {
        log.info("failed to serve connection", {
          ...where(session),
          reason: session.reason,
          ...counts(session),
          ...names(session.frontend, session.target),
        });
      }
    },
    pipe(session, side, event) {
      log.trace(PIPE[event], {
        ...where(session),
        side,
        ...names(session.frontend, session.target),
      });
    },
    probed(frontend, backend, failure, ms) {
      if (!debug) return;
      const fields = {
        local_address: frontend.localAddress,
        target_address: backend.config.address,
        duration_ms: Math.round(ms * 100) / 100,
        ...names(frontend, backend),
      };
      if (failure === undefined) log.debug("health check passed", fields);
      else log.debug("health check failed", { ...fields, reason: failure });
    },
    backendDown: (frontend, backend, reason) =>
      health("backend is down", frontend, backend, reason),
    sessionsClosed: (frontend, backend, count) =>
      log.warn(
        `closed ${count} connection${
          count === 1 ? "" : "s"
        } of backend ${backend.config.name}: it is down`,
        {
          local_address: frontend.localAddress,
          target_address: backend.config.address,
          connections: count,
          ...names(frontend, backend),
        },
      ),
    backendUp: (frontend, backend, reason) => health("backend is up", frontend, backend, reason),
    agentChanged(frontend, backend, words) {
      log.info("backend weight changed by agent", {
        local_address: frontend.localAddress,
        target_address: backend.config.address,
        agent: words,
        effective_weight: Math.round(backend.effectiveWeight * 100) / 100,
        ...names(frontend, backend),
      });
    },
    resolved(frontend, resolution) {
      const { news, name, added, removed } = resolution;
      const fields = { frontend: frontend.name, name, addresses: resolution.addresses };
      if (news === "failing") {
        // Once per episode: a name that stays down is not repeated, whatever its reasons.
        log.warn("name resolution failed", { ...fields, reason: resolution.reason });
      } else if (news === "recovered") log.info("name resolution recovered", fields);
      if (added.length > 0 || removed.length > 0) {
        log.info("discovered backends changed", { ...fields, added, removed });
      }
    },
    close() {
      refusals.close();
      failedFlows.close();
      drops.close();
    },
  };
}

/** Bytes each way, how long it lasted and how it ended: the access log's fields. */
function counts(session: SessionInfo) {
  return {
    bytes_from_client: session.bytesFromClient,
    bytes_from_backend: session.bytesFromBackend,
    duration_ms: Math.round(performance.now() - session.startedAt),
    outcome: session.outcome,
  };
}

/** Datagrams and bytes each way, how long it lasted and how it ended: a flow's access log fields. */
function flowCounts(flow: FlowInfo) {
  return {
    datagrams_from_client: flow.datagramsFromClient,
    bytes_from_client: flow.bytesFromClient,
    datagrams_from_backend: flow.datagramsFromBackend,
    bytes_from_backend: flow.bytesFromBackend,
    duration_ms: Math.round(performance.now() - flow.startedAt),
    outcome: flow.outcome,
  };
}
