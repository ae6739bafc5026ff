/**
 * The config's defaults and limits, by table: the numbers every sub-schema
 * checks against and the docs page shows.
 *
 * @module
 */

/** Every default of the config, by table, written the way the file writes them. */
export const DEFAULTS = {
  frontend: {
    name: "default",
    algorithm: "round_robin",
    connect_timeout: "5s",
    when_all_down: "close",
    accept_proxy: false,
    header_timeout: "5s",
    min_ttl: "1s",
    max_ttl: "5m",
  },
  backend: { weight: 1, backup: false },
  health: { interval: "2s", timeout: "1s", rise: 2, fall: 3 },
  admin: { bind_on: "127.0.0.1:9901" },
  workers: 1,
} as const;

/**
 * A UDP frontend's `idle_timeout` when the file gives none: a flow has no
 * close, so without one every client port would hold a socket forever
 * (TCP frontends keep no default, as the original). nginx's `proxy_timeout`
 * is 10m; 30s frees a resolver's sockets sooner and still outlasts a slow answer.
 */
export const UDP_IDLE_TIMEOUT = "30s";

/** The largest `responses` a UDP frontend may wait for. */
export const MAX_RESPONSES = 1_000_000;

/** The largest connection limit accepted in a config. */
export const MAX_CONNECTIONS_LIMIT = 1_000_000;

/** The most retries a frontend may ask for. */
export const MAX_RETRIES = 100;

/**
 * The retries of a frontend with discovered backends and no `retries`:
 * HAProxy's default (the fixed list's "each backend once" has no count).
 */
export const DISCOVERED_RETRIES = 3;

/** The largest backend weight, as in HAProxy. */
export const MAX_WEIGHT = 256;

/** The shortest time between two probes of one backend. */
export const MIN_HEALTH_INTERVAL_MS = 10;

/** The largest `rise` and `fall` of a health check. */
export const MAX_HEALTH_COUNT = 100;

/** The most worker processes a config may ask for. */
export const MAX_WORKERS = 256;
