/**
 * What status pages, metrics and the notify protocol show of a running
 * frontend and its backends, built from their live state.
 *
 * @module
 */
import type { Transport } from "../config/config.ts";
import type { Frontend } from "./frontend.ts";
import type { RuntimeBackends } from "./upstream/runtime_backends.ts";

/**
 * A backend as a status page shows it.
 *
 * @example
 * ```ts
 * import type { BackendStatus } from "mini-balancer";
 *
 * const backends: BackendStatus[] = balancer.status().flatMap((frontend) => frontend.backends);
 * for (const { name, state, active, effectiveWeight } of backends) {
 *   console.log(`${name}: ${state}, ${active} open, weight ${effectiveWeight}`);
 * }
 * ```
 */
export interface BackendStatus {
  /** The backend's name (its `name` key, else its address as written). */
  name: string;
  /** Its address as written (`127.0.0.1:8080`). */
  address: string;
  /** Whether it takes new connections, and if not why: its health or an operator's drain or disable. */
  state: "up" | "down" | "draining" | "disabled";
  /** Its configured weight. */
  weight: number;
  /** Its weight now: the configured one × its agent's share × its slow start ramp. */
  effectiveWeight: number;
  /** What its agent said last (`50% drain`); absent without an agent answer. */
  agent?: string;
  /** Whether it is a backup, used only while no primary is up. */
  backup: boolean;
  /** Connections open to it now. */
  active: number;
  /** Whether the admin API added it (`"api"`) or the config file (`"config"`); status() always sets it. */
  source?: "api" | "config";
  /** Deleted through the API: it goes once its open connections end. */
  removing?: boolean;
}

/**
 * A frontend as a status page shows it.
 *
 * @example
 * ```ts
 * import type { FrontendStatus } from "mini-balancer";
 *
 * const frontends: FrontendStatus[] = balancer.status();
 * for (const { name, address, active, queued } of frontends) {
 *   console.log(`${name} on ${address}: ${active} open, ${queued} queued`);
 * }
 * ```
 */
export interface FrontendStatus {
  /** The frontend's name. */
  name: string;
  /** The bound address (`udp:HOST:PORT` for UDP). */
  address: string;
  /** What it serves: TCP connections, or UDP flows (`active` then counts flows). */
  transport: Transport;
  /** How it chooses backends (`round_robin`, …). */
  algorithm: string;
  /** Connections served now (open flows on UDP). */
  active: number;
  /** Connections waiting in its queue. */
  queued: number;
  /** Its backends, in config order (API-made ones after them). */
  backends: BackendStatus[];
}

/**
 * Live figures of a running balancer.
 *
 * @example
 * ```ts
 * import type { BalancerStats } from "mini-balancer";
 *
 * const { activeConnections, queuedConnections }: BalancerStats = balancer.stats;
 * console.log(`${activeConnections} open, ${queuedConnections} queued`);
 * ```
 */
export interface BalancerStats {
  /** Client connections being served now. */
  activeConnections: number;
  /** Timers still pending (connect and queue timeouts). */
  pendingTimers: number;
  /** Connections waiting in the frontends' queues. */
  queuedConnections: number;
}

/**
 * A frontend's status now.
 *
 * @param frontend the serving frontend
 * @param backends the run-time changes, which say each backend's source
 * @returns what a status page shows of it
 */
export function frontendStatus(frontend: Frontend, backends: RuntimeBackends): FrontendStatus {
  return {
    name: frontend.name,
    address: frontend.localAddress,
    transport: frontend.config.transport,
    algorithm: frontend.config.algorithm,
    active: frontend.sessions.size,
    queued: frontend.queued,
    backends: frontend.pool.backends.map((backend) => ({
      name: backend.config.name,
      address: backend.config.address,
      state: backend.state,
      weight: backend.config.weight,
      effectiveWeight: Math.round(backend.effectiveWeight * 100) / 100,
      ...(backend.agent === undefined ? {} : { agent: backend.agent }),
      backup: backend.config.backup === true,
      active: backend.active,
      source: backends.source(frontend.name, backend.config.name),
      ...(backends.removing(frontend.name, backend.config.name) && { removing: true }),
    })),
  };
}
