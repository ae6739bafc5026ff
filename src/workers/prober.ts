/**
 * One prober for every worker: the supervisor of `workers = N` runs the
 * active health checks of every frontend itself, on pools of its own, and
 * tells each change (and, to a new worker, every state) so that workers
 * take backends in and out without probing them N times.
 *
 * @module
 */
import type { Config, FrontendConfig } from "../config/config.ts";
import type { Net } from "../runtime/types.ts";
import { combineEvents, type Events, type FrontendInfo, NO_EVENTS } from "../balancer/events.ts";
import { discovers, Discovery } from "../discovery/discovery.ts";
import { HealthChecker } from "../balancer/upstream/health.ts";
import type { HealthState } from "../balancer/health_state.ts";
import { Pool, type PoolChanges, type PoolConfig } from "../balancer/upstream/pool.ts";

interface Probed {
  readonly name: string;
  readonly info: FrontendInfo;
  readonly pool: Pool;
  config: FrontendConfig;
  checker: HealthChecker | undefined;
  /** Keeps the frontend's names resolved, as each worker does. */
  discovery: Discovery | undefined;
  /** Whether its first resolution is over: backends found later start down. */
  settled: boolean;
}

/** A probed frontend's backends: its config's, names expanded. */
function expanded(probed: Probed): PoolConfig {
  const { config, discovery } = probed;
  return { algorithm: config.algorithm, backends: discovery?.backends() ?? config.backends };
}

/** The supervisor's health checks. */
export class Prober {
  readonly #net: Net;
  readonly #events: Events;
  #frontends: Probed[] = [];

  /**
   * @param net the runtime's sockets, to probe with
   * @param events where probes and changes are logged
   * @param changed hears each backend that goes up or down
   */
  constructor(net: Net, events: Events, changed: (state: HealthState) => void) {
    this.#net = net;
    const tell =
      (up: boolean) => (frontend: { name: string }, backend: { config: { name: string } }) =>
        changed({ frontend: frontend.name, backend: backend.config.name, up });
    this.#events = combineEvents(events, {
      ...NO_EVENTS,
      backendDown: tell(false),
      backendUp: tell(true),
    });
  }

  /** Whether any frontend of `config` has active health checks. */
  static wanted(config: Config): boolean {
    return config.frontends.some((frontend) => frontend.health.active);
  }

  /**
   * Probes what `config` asks for (again, after a reload: backends are
   * matched by name and keep their state).
   *
   * @param config the validated config
   */
  update(config: Config): void {
    const old = new Map(this.#frontends.map((probed) => [probed.name, probed]));
    this.#frontends = config.frontends.filter((f) => f.health.active).map((frontend) => {
      const probed = old.get(frontend.name) ?? this.#probed(frontend);
      old.delete(frontend.name);
      probed.checker?.stop();
      probed.config = frontend;
      if (!discovers(frontend)) {
        probed.discovery?.stop();
        probed.discovery = undefined;
      } else if (probed.discovery === undefined) {
        probed.discovery = new Discovery(frontend, this.#net, {
          changed: () => this.#discovered(probed),
          resolved: (resolution) => this.#events.resolved(probed.info, resolution),
        });
        // What the first resolution finds starts up, as in each worker.
        probed.settled = false;
        probed.discovery.start().catch(() => {}).finally(() => (probed.settled = true));
      } else probed.discovery.update(frontend);
      probed.pool.update(expanded(probed));
      probed.checker = new HealthChecker({
        config: frontend.health,
        net: this.#net,
        pool: probed.pool,
        events: this.#events,
        frontend: probed.info,
      });
      probed.checker.start();
      return probed;
    });
    for (const gone of old.values()) {
      gone.checker?.stop();
      gone.discovery?.stop();
    }
  }

  /** A frontend to probe, before its backends are known. */
  #probed(config: FrontendConfig): Probed {
    const pool = new Pool({ algorithm: config.algorithm, backends: [] });
    const info = { name: config.name, localAddress: "supervisor" };
    return {
      name: config.name,
      info,
      pool,
      config,
      checker: undefined,
      discovery: undefined,
      settled: false,
    };
  }

  /**
   * A probed frontend's names gave other backends: a new one is probed at
   * once, down until it passes, and each worker hears when it comes up.
   */
  #discovered(probed: Probed): PoolChanges {
    const changes = probed.pool.update(expanded(probed));
    const added = probed.pool.backends.filter((b) => changes.added.includes(b.config.name));
    if (probed.settled) { for (const backend of added) backend.healthy = false; }
    probed.checker?.added(added);
    return changes;
  }

  /** Every probed backend's state now, for a worker that just started. */
  states(): HealthState[] {
    return this.#frontends.flatMap(({ name, pool }) =>
      pool.backends.map((backend) => ({
        frontend: name,
        backend: backend.config.name,
        up: backend.healthy,
      }))
    );
  }

  /** Stops every probe. */
  stop(): void {
    for (const probed of this.#frontends) {
      probed.checker?.stop();
      probed.discovery?.stop();
    }
    this.#frontends = [];
  }
}
