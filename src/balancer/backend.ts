import type { BackendConfig } from "../config/config.ts";

/** A backend as the balancer tracks it: its config and live counters. */
export class BackendState {
  /** The backend's config. */
  readonly config: BackendConfig;
  /** Connections open to it now. */
  active = 0;
  /** Connections opened to it since start. */
  total = 0;
  /** Whether health checks let it take connections; selectors skip it when not. */
  up = true;

  /** @param config the backend's config */
  constructor(config: BackendConfig) {
    this.config = config;
  }
}
