/**
 * One frontend's upstream side: its pool of backends, the discovery that
 * keeps its names resolved (when it has any) and its health checks, kept
 * together through start, reload and stop. A frontend serves from it; the
 * supervisor of `workers = N` probes with one of its own per frontend, for
 * every worker. What a backend that appears goes through is written here
 * once: found after the first resolution, with health checks on, it starts
 * down and is probed at once.
 *
 * @module
 */
import type { FrontendConfig } from "../../config/config.ts";
import type { Net } from "../../runtime/types.ts";
import {
  discovers,
  Discovery,
  isDiscoveredName,
  type Resolution,
} from "../../discovery/discovery.ts";
import type { Events, FrontendInfo } from "../events.ts";
import { AgentChecker, parseAgentLine } from "./agent.ts";
import { HealthChecker } from "./health.ts";
import type { BackendState } from "./backend.ts";
import { Pool, type PoolChanges, type PoolConfig } from "./pool.ts";

/** Options for {@linkcode Upstream}. */
export interface UpstreamOptions {
  /** The frontend's config. */
  config: FrontendConfig;
  /** The runtime's sockets, to probe and resolve with. */
  net: Net;
  /** Where probes, changes and resolutions are reported. */
  events: Events;
  /** The frontend, as events name it. */
  frontend: FrontendInfo;
  /**
   * Told after discovery changed the pool (the frontend serves who waits).
   *
   * @default nothing
   */
  changed?: (changes: PoolChanges) => void;
  /**
   * Told right after a backend is marked down, by its probes, real
   * connects, or another process's probes (for `on_down`).
   *
   * @default nothing
   */
  down?: (backend: BackendState) => void;
}

/** A frontend's pool, discovery and health checks, owned together. */
export class Upstream {
  /** The backends and their live state. */
  readonly pool: Pool;
  readonly #net: Net;
  readonly #events: Events;
  readonly #frontend: FrontendInfo;
  readonly #changed: ((changes: PoolChanges) => void) | undefined;
  readonly #down: ((backend: BackendState) => void) | undefined;
  #config: FrontendConfig;
  /** Keeps the names among its backends resolved, when it has any. */
  #discovery: Discovery | undefined;
  #health: HealthChecker | undefined;
  #agents: AgentChecker | undefined;
  /** Whether the first resolution is over: backends found later are new arrivals. */
  #settled = false;
  /** Health told by another process for backends not discovered here yet, by name. */
  readonly #told = new Map<string, boolean>();

  /** @param options the frontend and where to report */
  constructor(options: UpstreamOptions) {
    this.#config = options.config;
    this.#net = options.net;
    this.#events = options.events;
    this.#frontend = options.frontend;
    this.#changed = options.changed;
    this.#down = options.down;
    if (discovers(options.config)) this.#discovery = this.#newDiscovery();
    this.pool = new Pool(this.#poolConfig());
  }

  /** Whether it has names to keep resolved. */
  get discovers(): boolean {
    return this.#discovery !== undefined;
  }

  /**
   * Resolves its names once (nothing to do without names): what this first
   * resolution finds starts up, as fixed backends do.
   *
   * @throws {DiscoveryError} when a name gave nothing and it has no other backend
   */
  async resolve(): Promise<void> {
    try {
      await this.#discovery?.start();
    } finally {
      this.#settled = true;
    }
  }

  /** Starts health checks on the backends it has now (again, on new settings). */
  check(): void {
    this.#health?.stop();
    this.#health = new HealthChecker({
      config: this.#config.health,
      net: this.#net,
      pool: this.pool,
      events: this.#events,
      frontend: this.#frontend,
      down: this.#down,
    });
    this.#health.start();
    this.#agents?.stop();
    this.#agents = undefined;
    if (this.#config.health.agentPort === undefined) {
      for (const backend of this.pool.backends) backend.clearAgent();
    }
    // A worker is told what its supervisor's agent polls found (setHealth).
    if (this.#config.health.agentPort !== undefined && this.#config.health.remote !== true) {
      this.#agents = new AgentChecker({
        config: this.#config.health,
        net: this.#net,
        pool: this.pool,
        events: this.#events,
        frontend: this.#frontend,
      });
      this.#agents.start();
    }
  }

  /**
   * Takes a new config for the same frontend (a reload): backends are
   * matched by name and keep their state; names new to it are resolved in
   * the background; health checks restart on the new settings.
   *
   * @param config the frontend's new config
   * @returns the backends added and removed
   */
  update(config: FrontendConfig): PoolChanges {
    this.#config = config;
    if (this.#discovery === undefined && discovers(config)) {
      this.#discovery = this.#newDiscovery();
      this.#settled = false;
      void this.resolve().catch(() => {}); // reported through events
    } else if (this.#discovery !== undefined && !discovers(config)) {
      this.#discovery.stop();
      this.#discovery = undefined;
    } else this.#discovery?.update(config);
    const changes = this.pool.update(this.#poolConfig());
    this.check();
    return changes;
  }

  /**
   * Sets a backend's health as another process's probes found it; one not
   * discovered here yet takes it when it appears.
   *
   * @param backend the backend's name
   * @param up whether it is up
   * @param agent what its agent said, when the other process polled it
   * @returns false when no such backend is configured or expected
   */
  setHealth(backend: string, up: boolean, agent?: string): boolean {
    const found = this.pool.backends.find((b) => b.config.name === backend);
    if (found === undefined) {
      if (this.#discovery === undefined || !isDiscoveredName(backend)) return false;
      this.#told.set(backend, up);
      return true;
    }
    const wasUp = found.healthy;
    found.healthy = up;
    if (up) found.failures = 0;
    const answer = agent === undefined ? undefined : parseAgentLine(agent);
    if (answer !== undefined && answer.shown !== found.agent) {
      found.setAgent(answer.words, answer.shown);
    } else if (wasUp) this.#down?.(found);
    return true;
  }

  /** Stops discovery and every probe; open connections are not its business. */
  stop(): void {
    this.#discovery?.stop();
    this.#health?.stop();
    this.#agents?.stop();
  }

  #newDiscovery(): Discovery {
    return new Discovery(this.#config, this.#net, {
      changed: () => {
        const changes = this.pool.update(this.#poolConfig(), this.#settled);
        this.#appeared(changes.added);
        this.#changed?.(changes);
        return changes;
      },
      resolved: (resolution: Resolution) => this.#events.resolved(this.#frontend, resolution),
    });
  }

  /** What the pool is built from: the config, its named backends expanded. */
  #poolConfig(): PoolConfig {
    const config = this.#config;
    const discovery = this.#discovery;
    return discovery === undefined ? config : {
      algorithm: config.algorithm,
      backends: discovery.backends(),
      hashBalanceFactor: config.hashBalanceFactor,
      slowStartMs: config.slowStartMs,
    };
  }

  /**
   * Backends that appeared while serving: with health checks on (here or
   * in another process), each starts down and comes up once it passes them.
   */
  #appeared(names: readonly string[]): void {
    if (names.length === 0) return;
    const added = this.pool.backends.filter((backend) => names.includes(backend.config.name));
    const health = this.#config.health;
    if (this.#settled && (health.active || health.remote === true)) {
      for (const backend of added) {
        const told = this.#told.get(backend.config.name);
        this.#told.delete(backend.config.name);
        backend.healthy = told ?? false;
      }
    }
    this.#health?.added(added);
    this.#agents?.added(added);
  }
}
