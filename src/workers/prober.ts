/**
 * One prober for every worker: the supervisor of `workers = N` runs the
 * active health checks (and agent checks) of every frontend itself, on
 * pools of its own, and tells each change (and, to a new worker, every state) so that workers
 * take backends in and out without probing them N times.
 *
 * @module
 */
import type { Config } from "../config/config.ts";
import type { Net } from "../runtime/types.ts";
import { combineEvents, type Events, NO_EVENTS } from "../balancer/events.ts";
import type { HealthState } from "../balancer/health_state.ts";
import { Upstream } from "../balancer/upstream/upstream.ts";

/** A probed frontend: its name and its upstream, with pools of the supervisor's own. */
interface Probed {
  readonly name: string;
  readonly upstream: Upstream;
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
      agentChanged: (frontend, backend, agent) =>
        changed({
          frontend: frontend.name,
          backend: backend.config.name,
          up: backend.healthy,
          agent,
        }),
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
      const kept = old.get(frontend.name);
      old.delete(frontend.name);
      if (kept !== undefined) {
        kept.upstream.update(frontend);
        return kept;
      }
      const upstream = new Upstream({
        config: frontend,
        net: this.#net,
        events: this.#events,
        frontend: { name: frontend.name, localAddress: "supervisor" },
      });
      // What the first resolution finds starts up, as in each worker.
      upstream.resolve().catch(() => {});
      upstream.check();
      return { name: frontend.name, upstream };
    });
    for (const gone of old.values()) gone.upstream.stop();
  }

  /** Every probed backend's state now, for a worker that just started. */
  states(): HealthState[] {
    return this.#frontends.flatMap(({ name, upstream }) =>
      upstream.pool.backends.map((backend) => ({
        frontend: name,
        backend: backend.config.name,
        up: backend.healthy,
        ...(backend.agent === undefined ? {} : { agent: backend.agent }),
      }))
    );
  }

  /** Stops every probe. */
  stop(): void {
    for (const probed of this.#frontends) probed.upstream.stop();
    this.#frontends = [];
  }
}
