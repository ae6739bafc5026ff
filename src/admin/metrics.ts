/**
 * Metrics as a subscriber of the events: Prometheus counters, gauges and
 * histograms (through prom-client, which runs on Bun and Deno), and the
 * plain tallies the status API shows. Counters move per connection event,
 * never per chunk: bytes are added when a connection closes. The busy
 * counters are plain numbers in the tallies, copied into Prometheus's
 * counters when it scrapes: prom-client hashes the label set of every inc()
 * (half a microsecond each, five per connection).
 *
 * @module
 */
import { readdir } from "node:fs/promises";
import process from "node:process";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Balancer } from "../balancer/balancer.ts";
import type { BackendState } from "../balancer/upstream/backend.ts";
import type { Events, FrontendInfo, SessionInfo } from "../balancer/events.ts";
import type { Resolution } from "../discovery/discovery.ts";
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

/** One label set's share of a {@linkcode FastHistogram}. */
interface Buckets {
  labels: Record<string, string>;
  /** Observations per bucket, not cumulative; the last is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram for the per-connection path: observing is a short scan of
 * the bounds and three additions, where prom-client's hashes the label set
 * each time (0.6 us). Registered with prom-client as a custom metric, so
 * `/metrics` renders it like any other.
 */
class FastHistogram {
  readonly type = "histogram";
  readonly name: string;
  readonly help: string;
  readonly #bounds: readonly number[];
  readonly #series: Buckets[] = [];

  constructor(options: { name: string; help: string; buckets: number[]; registers: Registry[] }) {
    this.name = options.name;
    this.help = options.help;
    this.#bounds = options.buckets;
    for (const registry of options.registers) registry.registerMetric(this as never);
  }

  /** A label set's buckets, to observe into. */
  series(labels: Record<string, string>): Buckets {
    const series = { labels, counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 };
    this.#series.push(series);
    return series;
  }

  /** Counts one observation. */
  observe(series: Buckets, value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    series.counts[i]!++;
    series.sum += value;
    series.count++;
  }

  /** The samples, as prom-client's registry renders them. */
  get() {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] =
      [];
    for (const { labels, counts, sum, count } of this.#series) {
      let cumulative = 0;
      this.#bounds.forEach((bound, i) => {
        cumulative += counts[i]!;
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { ...labels, le: bound },
          value: cumulative,
        });
      });
      values.push({
        metricName: `${this.name}_bucket`,
        labels: { ...labels, le: "+Inf" },
        value: count,
      });
      values.push({ metricName: `${this.name}_sum`, labels, value: sum });
      values.push({ metricName: `${this.name}_count`, labels, value: count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: "sum" };
  }
}

/** A frontend's tallies and its duration histogram. */
interface PerFrontend {
  name: string;
  tally: FrontendTally;
  /** Closed connections by outcome. */
  closed: Record<string, number>;
  duration: Buckets;
}

/** A backend's tallies. */
interface PerBackend {
  frontend: string;
  backend: string;
  tally: BackendTally;
}

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
    const registers = [this.registry];
    const prefix = "mini_balancer_";
    const frontends = () => this.#frontends.values();
    const backends = () => this.#backends.values();
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
      help: "Bytes proxied, counted when a connection closes.",
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
    this.#connectFailures = new Counter({
      name: `${prefix}connect_failures_total`,
      help: "Connects to a backend that failed (refused, unreachable, timed out).",
      labelNames: ["frontend", "backend"],
      registers,
    });
    this.#retries = new Counter({
      name: `${prefix}retries_total`,
      help: "Failed connects retried on another backend.",
      labelNames: ["frontend"],
      registers,
    });
    this.#refusals = new Counter({
      name: `${prefix}refusals_total`,
      help: "Clients turned away without a backend, by reason.",
      labelNames: ["frontend", "reason"],
      registers,
    });
    this.#duration = new FastHistogram({
      name: `${prefix}connection_duration_seconds`,
      help: "How long client connections lasted.",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600],
      registers,
    });
    this.#probeDuration = new Histogram({
      name: `${prefix}health_check_duration_seconds`,
      help: "How long health probes took.",
      labelNames: ["frontend", "backend"],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    });
    this.#reloadTime = new Gauge({
      name: `${prefix}last_reload_timestamp_seconds`,
      help: "When the config was last reloaded (0: never).",
      registers,
    });
    this.#reloadSuccess = new Gauge({
      name: `${prefix}last_reload_success`,
      help: "Whether the last reload was applied (1) or rejected (0).",
      registers,
    });
    this.#resolutions = new Counter({
      name: `${prefix}dns_resolutions_total`,
      help: "Resolutions of discovered names, by result (ok, empty, failed).",
      labelNames: ["frontend", "name", "result"],
      registers,
    });
    this.#dnsAddresses = new Gauge({
      name: `${prefix}dns_addresses`,
      help: "Addresses in use for a discovered name (the last good set while it fails).",
      labelNames: ["frontend", "name"],
      registers,
    });
    this.#liveGauges(prefix, registers);
    this.#processMetrics(runtime, registers);
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

  #liveGauges(prefix: string, registers: Registry[]): void {
    // The gauges' collect() has the gauge as `this`; the balancer comes from here.
    const status = () => this.#balancer?.status() ?? [];
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
    new Gauge({
      name: `${prefix}backend_up`,
      help: "Whether a backend takes new connections (1) or not (0: down, draining, disabled).",
      labelNames: ["frontend", "backend", "state"],
      registers,
      collect() {
        this.reset();
        for (const f of status()) {
          for (const b of f.backends) {
            this.set(
              { frontend: f.name, backend: b.name, state: b.state },
              b.state === "up" ? 1 : 0,
            );
          }
        }
      },
    });
    new Gauge({
      name: `${prefix}backend_active_connections`,
      help: "Connections open to a backend now.",
      labelNames: ["frontend", "backend"],
      registers,
      collect() {
        this.reset();
        for (const f of status()) {
          for (const b of f.backends) this.set({ frontend: f.name, backend: b.name }, b.active);
        }
      },
    });
  }

  #processMetrics(runtime: string, registers: Registry[]): void {
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

  accepted(session: SessionInfo): void {
    this.#perFrontend(session.frontend.name).tally.accepted++;
  }

  refused(frontend: FrontendInfo, _peer: string, why: string): void {
    const per = this.#perFrontend(frontend.name);
    per.tally.accepted++;
    per.closed.refused = (per.closed.refused ?? 0) + 1;
    this.#refusals.inc({ frontend: frontend.name, reason: why });
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
    const fromClient = session.bytesFromClient;
    const fromBackend = session.bytesFromBackend;
    per.tally.bytesFromClient += fromClient;
    per.tally.bytesFromBackend += fromBackend;
    // Bytes of a connection no backend took are counted under backend="".
    const backend = this.#perBackend(frontend, session.target?.config.name ?? "").tally;
    backend.bytesFromClient += fromClient;
    backend.bytesFromBackend += fromBackend;
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
