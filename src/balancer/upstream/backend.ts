/**
 * A backend as a pool tracks it: its config, its live connection count and
 * its health state. The pool keeps one per backend name across config
 * updates, so a reload or a discovery update keeps counters and health.
 *
 * @module
 */
import type { BackendConfig } from "../../config/config.ts";

/** What an operator set on a backend through the admin API. */
export type AdminState = "enabled" | "draining" | "disabled";

/** A backend as the balancer tracks it: its config and live state. */
export class BackendState {
  /** The backend's config; replaced when an update changes it. */
  config: BackendConfig;
  /** Connections open to it now (and connects under way). */
  active = 0;
  /**
   * Whether it takes new connections: healthy and enabled. Selectors read
   * this field alone; it follows {@linkcode BackendState.healthy} and
   * {@linkcode BackendState.admin}.
   */
  up = true;
  #healthy = true;
  #admin: AdminState = "enabled";
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

  /** Whether health checks find it healthy. */
  get healthy(): boolean {
    return this.#healthy;
  }
  set healthy(healthy: boolean) {
    this.#healthy = healthy;
    this.up = healthy && this.#admin === "enabled";
  }

  /**
   * What an operator set: enabled; draining (no new connections, open ones
   * finish, health checks go on); disabled (as draining, and no health checks).
   */
  get admin(): AdminState {
    return this.#admin;
  }
  set admin(admin: AdminState) {
    this.#admin = admin;
    this.up = this.#healthy && admin === "enabled";
  }

  /** Its state as status pages show it. */
  get state(): "up" | "down" | "draining" | "disabled" {
    if (this.#admin !== "enabled") return this.#admin;
    return this.#healthy ? "up" : "down";
  }

  /** Whether it is at its `max_connections`. */
  get full(): boolean {
    const max = this.config.maxConnections;
    return max !== undefined && this.active >= max;
  }
}
