/**
 * The metrics `/metrics` shows, declared in the order it renders them: the
 * tallies' counters (copied from plain numbers at each scrape), the ones
 * events move, the balancer's live gauges and the process's figures; and
 * the tallies the status API shows.
 *
 * @module
 */
import { readdir } from "node:fs/promises";
import process from "node:process";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { BackendStatus, FrontendStatus } from "../balancer/balancer.ts";
import { type Buckets, FastHistogram } from "./fast_histogram.ts";
import { VERSION } from "../version.ts";

/** What the status API shows of a frontend beyond its live state. */
export interface FrontendTally {
  /** Connections accepted (served, queued or refused). */
  accepted: number;
  bytesFromClient: number;
  bytesFromBackend: number;
}

/** What the status API shows of a backend beyond its live state. */
export interface BackendTally {
  /** Connections opened to it (connect attempts that succeeded). */
  total: number;
  bytesFromClient: number;
  bytesFromBackend: number;
  /** The last health probe: passed, why not, how long it took. */
  lastCheck: { ok: boolean; reason: string | null; duration_ms: number } | null;
}

/**
 * What a UDP frontend's or backend's flows moved, as far as the events
 * told (one flow's deltas at a time).
 */
export interface FlowTally {
  /** Flows opened. */
  opened: number;
  /** Closed flows by outcome. */
  closed: Record<string, number>;
  datagramsFromClient: number;
  datagramsFromBackend: number;
  bytesFromClient: number;
  bytesFromBackend: number;
}

/** A frontend's tallies and its duration histogram. */
export interface PerFrontend {
  name: string;
  tally: FrontendTally;
  /** Closed connections by outcome. */
  closed: Record<string, number>;
  duration: Buckets;
}

/** A backend's tallies. */
export interface PerBackend {
  frontend: string;
  backend: string;
  tally: BackendTally;
}

/** A UDP frontend's flow tallies and its drops. */
export interface PerFlowFrontend {
  name: string;
  tally: FlowTally;
  /** Datagrams dropped, by reason. */
  dropped: Record<string, number>;
}

/** A UDP backend's flow tallies. */
export interface PerFlowBackend {
  frontend: string;
  backend: string;
  tally: FlowTally;
}

/** Where the scraped metrics read their figures. */
export interface MetricSources {
  /** Every frontend's tallies. */
  frontends(): Iterable<PerFrontend>;
  /** Every backend's tallies. */
  backends(): Iterable<PerBackend>;
  /** Every UDP frontend's flow tallies, once it had a flow or a drop. */
  flowFrontends(): Iterable<PerFlowFrontend>;
  /** Every UDP backend's flow tallies, once it had a flow. */
  flowBackends(): Iterable<PerFlowBackend>;
  /** The balancer's live state, or none before one is attached. */
  status(): FrontendStatus[];
}

/** The metrics the events move, as {@linkcode defineMetrics} returns them. */
export interface EventMetrics {
  /** Connects to a backend that failed. */
  connectFailures: Counter<"frontend" | "backend">;
  /** Failed connects retried on another backend. */
  retries: Counter<"frontend">;
  /** Clients turned away without a backend, by reason. */
  refusals: Counter<"frontend" | "reason">;
  /** How long client connections lasted. */
  duration: FastHistogram;
  /** How long health probes took. */
  probeDuration: Histogram<"frontend" | "backend">;
  /** When the config was last reloaded. */
  reloadTime: Gauge;
  /** Whether the last reload was applied. */
  reloadSuccess: Gauge;
  /** Resolutions of discovered names, by result. */
  resolutions: Counter<"frontend" | "name" | "result">;
  /** Addresses in use for a discovered name. */
  dnsAddresses: Gauge<"frontend" | "name">;
}

/**
 * Registers every metric with `registry`.
 *
 * @param runtime the runtime's name, for the build info
 * @param registry the registry `/metrics` renders
 * @param sources where the scraped metrics read their figures
 * @returns the metrics the events move
 */
export function defineMetrics(
  runtime: string,
  registry: Registry,
  sources: MetricSources,
): EventMetrics {
  const registers = [registry];
  const prefix = "mini_balancer_";
  const { frontends, backends } = sources;
  new Counter({
    name: `${prefix}connections_accepted_total`,
    help: "Client connections accepted (served, queued or refused).",
    labelNames: ["frontend"],
    registers,
    collect() {
      this.reset();
      for (const f of frontends()) this.inc({ frontend: f.name }, f.tally.accepted);
    },
  });
  new Counter({
    name: `${prefix}connections_closed_total`,
    help: "Client connections closed, by outcome.",
    labelNames: ["frontend", "outcome"],
    registers,
    collect() {
      this.reset();
      for (const f of frontends()) {
        for (const [outcome, n] of Object.entries(f.closed)) {
          this.inc({ frontend: f.name, outcome }, n);
        }
      }
    },
  });
  new Counter({
    name: `${prefix}bytes_total`,
    help: "Bytes proxied, counted every few seconds while a connection is open and when it closes.",
    labelNames: ["frontend", "backend", "direction"],
    registers,
    collect() {
      this.reset();
      for (const { frontend, backend, tally } of backends()) {
        this.inc({ frontend, backend, direction: "from_client" }, tally.bytesFromClient);
        this.inc({ frontend, backend, direction: "from_backend" }, tally.bytesFromBackend);
      }
    },
  });
  udpMetrics(prefix, registers, sources);
  new Counter({
    name: `${prefix}backend_connections_total`,
    help: "Connections opened to a backend.",
    labelNames: ["frontend", "backend"],
    registers,
    collect() {
      this.reset();
      for (const { frontend, backend, tally } of backends()) {
        if (backend !== "") this.inc({ frontend, backend }, tally.total);
      }
    },
  });
  const connectFailures = new Counter({
    name: `${prefix}connect_failures_total`,
    help: "Connects to a backend that failed (refused, unreachable, timed out).",
    labelNames: ["frontend", "backend"],
    registers,
  });
  const retries = new Counter({
    name: `${prefix}retries_total`,
    help: "Failed connects retried on another backend.",
    labelNames: ["frontend"],
    registers,
  });
  const refusals = new Counter({
    name: `${prefix}refusals_total`,
    help: "Clients turned away without a backend, by reason.",
    labelNames: ["frontend", "reason"],
    registers,
  });
  const duration = new FastHistogram({
    name: `${prefix}connection_duration_seconds`,
    help: "How long client connections lasted.",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600],
    registers,
  });
  const probeDuration = new Histogram({
    name: `${prefix}health_check_duration_seconds`,
    help: "How long health probes took.",
    labelNames: ["frontend", "backend"],
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers,
  });
  const reloadTime = new Gauge({
    name: `${prefix}last_reload_timestamp_seconds`,
    help: "When the config was last reloaded (0: never).",
    registers,
  });
  const reloadSuccess = new Gauge({
    name: `${prefix}last_reload_success`,
    help: "Whether the last reload was applied (1) or rejected (0).",
    registers,
  });
  const resolutions = new Counter({
    name: `${prefix}dns_resolutions_total`,
    help: "Resolutions of discovered names, by result (ok, empty, failed).",
    labelNames: ["frontend", "name", "result"],
    registers,
  });
  const dnsAddresses = new Gauge({
    name: `${prefix}dns_addresses`,
    help: "Addresses in use for a discovered name (the last good set while it fails).",
    labelNames: ["frontend", "name"],
    registers,
  });
  liveGauges(prefix, registers, sources.status);
  processMetrics(runtime, registers);
  return {
    connectFailures,
    retries,
    refusals,
    duration,
    probeDuration,
    reloadTime,
    reloadSuccess,
    resolutions,
    dnsAddresses,
  };
}

/**
 * The gauges read from the balancer's live state at each scrape (their
 * collect() has the gauge as `this`: `status` brings the balancer).
 */
function liveGauges(prefix: string, registers: Registry[], status: () => FrontendStatus[]): void {
  new Gauge({
    name: `${prefix}active_connections`,
    help: "Client connections being served now.",
    labelNames: ["frontend"],
    registers,
    collect() {
      this.reset();
      for (const f of status()) this.set({ frontend: f.name }, f.active);
    },
  });
  new Gauge({
    name: `${prefix}queued_connections`,
    help: "Client connections waiting in the frontend's queue.",
    labelNames: ["frontend"],
    registers,
    collect() {
      this.reset();
      for (const f of status()) this.set({ frontend: f.name }, f.queued);
    },
  });
  /** A gauge with one sample per backend, read from the status at each scrape. */
  const perBackend = (
    name: string,
    help: string,
    labels: readonly string[],
    sample: (backend: BackendStatus) => [Record<string, string>, number],
  ) =>
    new Gauge({
      name: `${prefix}${name}`,
      help,
      labelNames: ["frontend", "backend", ...labels],
      registers,
      collect() {
        this.reset();
        for (const f of status()) {
          for (const b of f.backends) {
            const [extra, value] = sample(b);
            this.set({ frontend: f.name, backend: b.name, ...extra }, value);
          }
        }
      },
    });
  perBackend(
    "backend_up",
    "Whether a backend takes new connections (1) or not (0: down, draining, disabled).",
    ["state"],
    (b) => [{ state: b.state }, b.state === "up" ? 1 : 0],
  );
  perBackend(
    "backend_effective_weight",
    "A backend's weight now: its configured weight x its agent's share x its slow start ramp.",
    [],
    (b) => [{}, b.effectiveWeight],
  );
  perBackend(
    "backend_state",
    'A backend\'s state and what its agent said last (agent: "" without one), ' +
      "1 while it takes new connections.",
    ["state", "agent"],
    (b) => [
      { state: b.state, agent: b.agent ?? "" },
      b.state === "up" && b.effectiveWeight > 0 && !agentHolds(b.agent) ? 1 : 0,
    ],
  );
  perBackend(
    "backend_active_connections",
    "Connections open to a backend now.",
    [],
    (b) => [{}, b.active],
  );
}

/**
 * Whether a frontend of the status is a UDP one.
 *
 * @param frontend a frontend of the balancer's status
 * @returns true for a UDP frontend
 */
export function isUdp(frontend: FrontendStatus): boolean {
  return frontend.transport === "udp";
}

/**
 * The UDP metrics: datagrams, bytes and flows per backend copied from the
 * flow tallies at each scrape, drops per frontend, and the flows open now
 * read from the balancer's live state.
 */
function udpMetrics(prefix: string, registers: Registry[], sources: MetricSources): void {
  const { flowFrontends, flowBackends, status } = sources;
  /** A counter with a sample per direction of each backend that had flows. */
  const perDirection = (
    name: string,
    help: string,
    from: (flows: FlowTally) => [fromClient: number, fromBackend: number],
  ) =>
    new Counter({
      name: `${prefix}${name}`,
      help,
      labelNames: ["frontend", "backend", "direction"],
      registers,
      collect() {
        this.reset();
        for (const { frontend, backend, tally } of flowBackends()) {
          const [fromClient, fromBackend] = from(tally);
          this.inc({ frontend, backend, direction: "from_client" }, fromClient);
          this.inc({ frontend, backend, direction: "from_backend" }, fromBackend);
        }
      },
    });
  perDirection(
    "udp_datagrams_total",
    "UDP datagrams forwarded, counted while a flow is open (every few seconds) and when it ends.",
    (f) => [f.datagramsFromClient, f.datagramsFromBackend],
  );
  perDirection(
    "udp_bytes_total",
    "UDP bytes forwarded, counted while a flow is open (every few seconds) and when it ends.",
    (f) => [f.bytesFromClient, f.bytesFromBackend],
  );
  new Gauge({
    name: `${prefix}udp_flows`,
    help: "UDP flows open now (one per client address and port).",
    labelNames: ["frontend", "backend"],
    registers,
    collect() {
      this.reset();
      for (const f of status()) {
        if (!isUdp(f)) continue;
        for (const b of f.backends) this.set({ frontend: f.name, backend: b.name }, b.active);
      }
    },
  });
  new Counter({
    name: `${prefix}udp_flows_total`,
    help: "UDP flows ended, by outcome.",
    labelNames: ["frontend", "backend", "outcome"],
    registers,
    collect() {
      this.reset();
      for (const { frontend, backend, tally } of flowBackends()) {
        for (const [outcome, n] of Object.entries(tally.closed)) {
          this.inc({ frontend, backend, outcome }, n);
        }
      }
    },
  });
  new Counter({
    name: `${prefix}udp_dropped_total`,
    help: "UDP datagrams dropped rather than forwarded, by reason.",
    labelNames: ["frontend", "reason"],
    registers,
    collect() {
      this.reset();
      for (const f of flowFrontends()) {
        for (const [reason, n] of Object.entries(f.dropped)) {
          this.inc({ frontend: f.name, reason }, n);
        }
      }
    },
  });
}

/** The build info and the process's own figures (memory, CPU, start time, open files). */
function processMetrics(runtime: string, registers: Registry[]): void {
  const started = Date.now() / 1000 - process.uptime();
  new Gauge({
    name: "mini_balancer_build_info",
    help: "The version and runtime, as labels of a constant 1.",
    labelNames: ["version", "runtime"],
    registers,
  }).set({ version: VERSION, runtime }, 1);
  new Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers,
    collect() {
      this.set(process.memoryUsage().rss);
    },
  });
  new Counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  new Gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since the Unix epoch in seconds.",
    registers,
  }).set(started);
  // Only where /proc/self/fd can be read: Linux, and not under Deno, which
  // asks for --allow-all to read /proc/self (a missing figure beats a
  // wrong 0).
  readdir("/proc/self/fd").then(() => {
    new Gauge({
      name: "process_open_fds",
      help: "Number of open file descriptors.",
      registers,
      async collect() {
        this.set(await readdir("/proc/self/fd").then((fds) => fds.length, () => 0));
      },
    });
  }, () => {});
}

/** Whether an agent's words keep its backend from new connections. */
function agentHolds(agent: string | undefined): boolean {
  return agent !== undefined && /\b(down|drain|maint)\b|(^|\s)0%/.test(agent);
}
