/**
 * Metrics as a subscriber of the events: Prometheus counters, gauges and
 * histograms (through prom-client, which runs on Bun and Deno), and the
 * plain tallies the status API shows. Counters move per connection event,
 * never per chunk: a connection's bytes are added by their delta since it
 * was last counted, at each `progress` (every two seconds while it moves)
 * and when it closes, so a long connection shows while open. The busy
 * counters are plain numbers in the tallies, copied into Prometheus's
 * counters when it scrapes: prom-client hashes the label set of every inc()
 * (half a microsecond each, five per connection).
 *
 * A UDP flow's datagrams and bytes are counted by their delta since the
 * flow was last counted, at each `flowProgress` (every few seconds while it
 * moves) and at `flowClosed`: a long flow shows in `/metrics` while open,
 * and each datagram is counted once.
 *
 * @module
 */
import { type Counter, type Gauge, type Histogram, Registry } from "prom-client";
import type { Balancer } from "../balancer/balancer.ts";
import type { BackendState } from "../balancer/upstream/backend.ts";
import type {
  DropReason,
  Events,
  FlowInfo,
  FrontendInfo,
  SessionInfo,
} from "../balancer/events.ts";
import type { Resolution } from "../discovery/discovery.ts";
import type { FastHistogram } from "./fast_histogram.ts";
import {
  type BackendTally,
  defineMetrics,
  type FlowTally,
  type FrontendTally,
  type PerBackend,
  type PerFlowBackend,
  type PerFlowFrontend,
  type PerFrontend,
} from "./metric_definitions.ts";

export type { BackendTally, FlowTally, FrontendTally } from "./metric_definitions.ts";

/** What of a flow was counted already. */
interface Counted {
  datagramsFromClient: number;
  datagramsFromBackend: number;
  bytesFromClient: number;
  bytesFromBackend: number;
}

/** What of a connection's bytes was counted already. */
interface CountedBytes {
  fromClient: number;
  fromBackend: number;
}

const NOTHING_COUNTED: Counted = {
  datagramsFromClient: 0,
  datagramsFromBackend: 0,
  bytesFromClient: 0,
  bytesFromBackend: 0,
};

/**
 * Prometheus metrics and status tallies, fed by the events they count (the
 * others are left out: `combineEvents` fills the gaps).
 */
export class Metrics implements Partial<Events> {
  /** The registry `/metrics` renders. */
  readonly registry = new Registry();
  readonly tracePipe = false;
  /** By name, so that a reload keeps them. */
  readonly #frontends = new Map<string, PerFrontend>();
  /** By frontend and backend name, so that a reload keeps them. */
  readonly #backends = new Map<string, PerBackend>();
  /** UDP frontends by name, and UDP backends by frontend and backend name: a reload keeps them. */
  readonly #flowFrontends = new Map<string, PerFlowFrontend>();
  readonly #flowBackends = new Map<string, PerFlowBackend>();
  /** Each open flow's figures as last counted, so that the next count adds only what is new. */
  readonly #counted = new WeakMap<FlowInfo, Counted>();
  /** Each open connection's bytes as last counted, so that the next count adds only what is new. */
  readonly #countedBytes = new WeakMap<SessionInfo, CountedBytes>();
  #balancer: Balancer | undefined;
  readonly #connectFailures: Counter<"frontend" | "backend">;
  readonly #retries: Counter<"frontend">;
  readonly #refusals: Counter<"frontend" | "reason">;
  readonly #duration: FastHistogram;
  readonly #probeDuration: Histogram<"frontend" | "backend">;
  readonly #reloadTime: Gauge;
  readonly #reloadSuccess: Gauge;
  readonly #resolutions: Counter<"frontend" | "name" | "result">;
  readonly #dnsAddresses: Gauge<"frontend" | "name">;

  /** @param runtime the runtime's name, for the build info */
  constructor(runtime: string) {
    const metrics = defineMetrics(runtime, this.registry, {
      frontends: () => this.#frontends.values(),
      backends: () => this.#backends.values(),
      flowFrontends: () => this.#flowFrontends.values(),
      flowBackends: () => this.#flowBackends.values(),
      status: () => this.#balancer?.status() ?? [],
    });
    this.#connectFailures = metrics.connectFailures;
    this.#retries = metrics.retries;
    this.#refusals = metrics.refusals;
    this.#duration = metrics.duration;
    this.#probeDuration = metrics.probeDuration;
    this.#reloadTime = metrics.reloadTime;
    this.#reloadSuccess = metrics.reloadSuccess;
    this.#resolutions = metrics.resolutions;
    this.#dnsAddresses = metrics.dnsAddresses;
  }

  /** Reads the balancer's live state (active connections, queues, backend health) at each scrape. */
  attach(balancer: Balancer): void {
    this.#balancer = balancer;
  }

  /** Records a reload's result. */
  reloaded(success: boolean): void {
    this.#reloadTime.set(Date.now() / 1000);
    this.#reloadSuccess.set(success ? 1 : 0);
  }

  /** A frontend's tallies, by name. */
  frontendTally(name: string): FrontendTally {
    return this.#perFrontend(name).tally;
  }

  /** A backend's tallies, by its frontend's name and its own. */
  backendTally(frontend: string, backend: string): BackendTally {
    return this.#perBackend(frontend, backend).tally;
  }

  /**
   * A UDP frontend's flow tallies, or one of its backends', by name.
   *
   * @param frontend the frontend's name
   * @param backend the backend's name; the frontend's own when left out
   * @returns the tallies, undefined before the first flow
   */
  flowTally(frontend: string, backend?: string): FlowTally | undefined {
    return backend === undefined
      ? this.#flowFrontends.get(frontend)?.tally
      : this.#flowBackends.get(`${frontend}\0${backend}`)?.tally;
  }

  #perFrontend(frontend: string): PerFrontend {
    let per = this.#frontends.get(frontend);
    if (per === undefined) {
      per = {
        name: frontend,
        tally: { accepted: 0, bytesFromClient: 0, bytesFromBackend: 0 },
        closed: {},
        duration: this.#duration.series({ frontend }),
      };
      this.#frontends.set(frontend, per);
    }
    return per;
  }

  #perBackend(frontend: string, backend: string): PerBackend {
    const key = `${frontend}\0${backend}`;
    let per = this.#backends.get(key);
    if (per === undefined) {
      per = {
        frontend,
        backend,
        tally: { total: 0, bytesFromClient: 0, bytesFromBackend: 0, lastCheck: null },
      };
      this.#backends.set(key, per);
    }
    return per;
  }

  accepted(session: SessionInfo): void {
    this.#perFrontend(session.frontend.name).tally.accepted++;
  }

  refused(frontend: FrontendInfo, _peer: string, why: string): void {
    this.#refusals.inc({ frontend: frontend.name, reason: why });
    // A refused UDP flow is no connection: only refusals_total counts it.
    if (frontend.localAddress.startsWith("udp:")) return;
    const per = this.#perFrontend(frontend.name);
    per.tally.accepted++;
    per.closed.refused = (per.closed.refused ?? 0) + 1;
  }

  connected(session: SessionInfo): void {
    this.#perBackend(session.frontend.name, session.target!.config.name).tally.total++;
  }

  connectFailed(
    session: SessionInfo,
    backend: BackendState,
    _reason: string,
    next: BackendState | undefined,
  ): void {
    const frontend = session.frontend.name;
    this.#connectFailures.inc({ frontend, backend: backend.config.name });
    if (next !== undefined) this.#retries.inc({ frontend });
  }

  closed(session: SessionInfo): void {
    const frontend = session.frontend.name;
    const outcome = session.outcome ?? "served";
    const per = this.#perFrontend(frontend);
    per.closed[outcome] = (per.closed[outcome] ?? 0) + 1;
    if (outcome === "failed" && session.reason === "no backend available") {
      this.#refusals.inc({ frontend, reason: "all_down" });
    }
    this.#duration.observe(per.duration, (performance.now() - session.startedAt) / 1000);
    this.#countBytes(session, per);
    this.#countedBytes.delete(session);
  }

  progress(session: SessionInfo): void {
    this.#countBytes(session, this.#perFrontend(session.frontend.name));
  }

  /** Adds the bytes the session moved since it was last counted to its frontend and backend. */
  #countBytes(session: SessionInfo, per: PerFrontend): void {
    const last = this.#countedBytes.get(session);
    const fromClient = session.bytesFromClient;
    const fromBackend = session.bytesFromBackend;
    if (last === undefined) {
      // Most connections close before their first progress: nothing kept for them.
      if (session.outcome === undefined) {
        this.#countedBytes.set(session, { fromClient, fromBackend });
      }
      this.#addBytes(session, per, fromClient, fromBackend);
      return;
    }
    this.#addBytes(session, per, fromClient - last.fromClient, fromBackend - last.fromBackend);
    last.fromClient = fromClient;
    last.fromBackend = fromBackend;
  }

  #addBytes(session: SessionInfo, per: PerFrontend, fromClient: number, fromBackend: number) {
    per.tally.bytesFromClient += fromClient;
    per.tally.bytesFromBackend += fromBackend;
    // Bytes of a connection no backend took are counted under backend="".
    const backend = this.#perBackend(per.name, session.target?.config.name ?? "").tally;
    backend.bytesFromClient += fromClient;
    backend.bytesFromBackend += fromBackend;
  }

  #flowFrontend(frontend: string): PerFlowFrontend {
    let per = this.#flowFrontends.get(frontend);
    if (per === undefined) {
      per = { name: frontend, tally: flowTally(), dropped: {} };
      this.#flowFrontends.set(frontend, per);
    }
    return per;
  }

  #flowBackend(frontend: string, backend: string): PerFlowBackend {
    const key = `${frontend}\0${backend}`;
    let per = this.#flowBackends.get(key);
    if (per === undefined) {
      per = { frontend, backend, tally: flowTally() };
      this.#flowBackends.set(key, per);
    }
    return per;
  }

  /**
   * Adds what the flow moved since it was last counted to its frontend and
   * its backend now.
   *
   * @returns its backend's tallies
   */
  #count(flow: FlowInfo): FlowTally {
    const last = this.#counted.get(flow) ?? NOTHING_COUNTED;
    const now: Counted = {
      datagramsFromClient: flow.datagramsFromClient,
      datagramsFromBackend: flow.datagramsFromBackend,
      bytesFromClient: flow.bytesFromClient,
      bytesFromBackend: flow.bytesFromBackend,
    };
    this.#counted.set(flow, now);
    const frontend = this.#flowFrontend(flow.frontend.name).tally;
    const backend = this.#flowBackend(flow.frontend.name, flow.target.config.name).tally;
    for (const tally of [frontend, backend]) {
      tally.datagramsFromClient += now.datagramsFromClient - last.datagramsFromClient;
      tally.datagramsFromBackend += now.datagramsFromBackend - last.datagramsFromBackend;
      tally.bytesFromClient += now.bytesFromClient - last.bytesFromClient;
      tally.bytesFromBackend += now.bytesFromBackend - last.bytesFromBackend;
    }
    return backend;
  }

  flowOpened(flow: FlowInfo): void {
    this.#flowFrontend(flow.frontend.name).tally.opened++;
    this.#flowBackend(flow.frontend.name, flow.target.config.name).tally.opened++;
  }

  flowProgress(flow: FlowInfo): void {
    this.#count(flow);
  }

  flowClosed(flow: FlowInfo): void {
    const closed = this.#count(flow).closed;
    const outcome = flow.outcome ?? "served";
    closed[outcome] = (closed[outcome] ?? 0) + 1;
    this.#counted.delete(flow);
  }

  datagramDropped(frontend: FrontendInfo, _peer: string, why: DropReason): void {
    const dropped = this.#flowFrontend(frontend.name).dropped;
    dropped[why] = (dropped[why] ?? 0) + 1;
  }

  probed(frontend: FrontendInfo, backend: BackendState, failure: string | undefined, ms: number) {
    this.#probeDuration.observe(
      { frontend: frontend.name, backend: backend.config.name },
      ms / 1000,
    );
    this.backendTally(frontend.name, backend.config.name).lastCheck = {
      ok: failure === undefined,
      reason: failure ?? null,
      duration_ms: Math.round(ms * 100) / 100,
    };
  }

  resolved(frontend: FrontendInfo, resolution: Resolution): void {
    const labels = { frontend: frontend.name, name: resolution.name };
    this.#resolutions.inc({ ...labels, result: resolution.result });
    this.#dnsAddresses.set(labels, resolution.addresses);
  }
}

/** A UDP frontend's or backend's tallies before its first flow. */
function flowTally(): FlowTally {
  return {
    opened: 0,
    closed: {},
    datagramsFromClient: 0,
    datagramsFromBackend: 0,
    bytesFromClient: 0,
    bytesFromBackend: 0,
  };
}
