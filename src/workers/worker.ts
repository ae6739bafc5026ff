/**
 * The control channel between a supervisor and its workers, both ends: the
 * lines a supervisor writes on a worker's standard input (its admin token,
 * whether the supervisor probes, then each backend's health), the report a
 * worker writes back on its standard output (the port its admin listener
 * bound), and the config a worker runs when its supervisor probes for it.
 *
 * @module
 */
import type { Balancer } from "../balancer/balancer.ts";
import type { AdminConfig, Config } from "../config/config.ts";
import { getLog } from "../log.ts";
import type { HealthState } from "../balancer/health_state.ts";
import type { OverlayState } from "../balancer/upstream/runtime_backends.ts";

/**
 * What a worker hears from its supervisor on its standard input, one JSON
 * object a line: first `{ adminToken?, probes }` (the token of its admin
 * listener, and whether the supervisor probes the backends for everyone),
 * then `{ frontend, backend, up }` for each backend's health.
 */
export interface WorkerControl {
  /**
   * Its admin listener when the config has `[admin]`: on a loopback port
   * the worker binds itself (port 0) and reports (see {@linkcode workerReport}).
   */
  readonly admin: AdminConfig | undefined;
  /** The supervisor runs the active health checks: this worker runs none. */
  readonly probes: boolean;
  /** Applies what the API changed (kept by the supervisor) and the health it tells, from now on, to `balancer`. */
  apply(balancer: Balancer): void;
}

/**
 * Waits for a worker's first control line and listens for the rest.
 *
 * @param onControlLine the runtime's reader of control lines (without it, a
 * worker hears nothing and probes for itself)
 */
export function workerControl(
  onControlLine: ((line: (text: string) => void) => () => void) | undefined,
): Promise<WorkerControl> {
  const log = getLog("main");
  return new Promise((resolve) => {
    let target: Balancer | undefined;
    const pending: HealthState[] = [];
    let first = true;
    if (onControlLine === undefined) {
      return resolve({ admin: undefined, probes: false, apply() {} });
    }
    onControlLine((text) => {
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(text);
      } catch {
        // Never quote it: the first control line carries the internal admin token.
        return log.warn("ignored a control line that is not JSON", { bytes: text.length });
      }
      if (first) {
        first = false;
        const { adminToken, probes, state } = message;
        return resolve({
          admin: typeof adminToken === "string"
            ? {
              bindOn: { hostname: "127.0.0.1", port: 0 },
              token: adminToken,
              allowedHosts: [],
            }
            : undefined,
          probes: probes === true,
          apply(balancer) {
            target = balancer;
            // What the admin API changed, as the supervisor keeps it (checked there).
            if (state !== undefined) balancer.backends.restore(state as OverlayState);
            for (const state of pending.splice(0)) balancer.setHealth(state);
          },
        });
      }
      const state = message as unknown as HealthState;
      if (target === undefined) pending.push(state);
      else target.setHealth(state);
    });
  });
}

/**
 * The line a worker writes on its standard output once its admin listener
 * listens: the port it bound, for its supervisor's listener to reach it.
 */
export function workerReport(adminPort: number): string {
  return JSON.stringify({ adminPort });
}

/**
 * Reads a worker's report line (see {@linkcode workerReport}).
 *
 * @returns the port its admin listener bound, or undefined when the line is no report
 */
export function readWorkerReport(line: string): number | undefined {
  let message: unknown;
  try {
    message = JSON.parse(line);
  } catch {
    return undefined;
  }
  const port = (message as { adminPort?: unknown } | null)?.adminPort;
  return typeof port === "number" && Number.isInteger(port) && port > 0 && port < 65536
    ? port
    : undefined;
}

/** The config with no active health checks: a worker's, when its supervisor probes. */
export function withoutProbes(config: Config): Config {
  return {
    ...config,
    frontends: config.frontends.map((frontend) => ({
      ...frontend,
      health: { ...frontend.health, active: false, remote: frontend.health.active },
    })),
  };
}
