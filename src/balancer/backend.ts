/**
 * A backend as a pool tracks it: its config, its live connection count and
 * its health state. The pool keeps one per backend name across config
 * updates, so a reload or a discovery update keeps counters and health.
 *
 * @module
 */
import type { BackendConfig } from "../config/config.ts";

/** A backend as the balancer tracks it: its config and live state. */
export class BackendState {
  /** The backend's config; replaced when an update changes it. */
  config: BackendConfig;
  /** Connections open to it now (and connects under way). */
  active = 0;
  /** Whether health checks let it take connections; selectors skip it when not. */
  up = true;
  /** Failures in a row (probes or real connects) while up. */
  failures = 0;
  /** Successful probes in a row while down. */
  successes = 0;
  /** Whether an update removed it: it takes no new connections, open ones finish. */
  removed = false;

  /** @param config the backend's config */
  constructor(config: BackendConfig) {
    this.config = config;
  }

  /** Whether it is at its `max_connections`. */
  get full(): boolean {
    const max = this.config.maxConnections;
    return max !== undefined && this.active >= max;
  }
}
