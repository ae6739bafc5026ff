/**
 * The schema of one frontend table (`[frontend]` or an entry of
 * `[[frontends]]`) and how a valid one becomes a {@linkcode FrontendConfig}.
 *
 * @module
 */
import * as v from "valibot";
import { isHostName } from "../address/address.ts";
import {
  ALGORITHMS,
  type FrontendConfig,
  type HealthConfig,
  MATCH_PROTOCOLS,
  type Transport,
} from "./config.ts";
import { backends, HEALTH, PASSIVE_HEALTH, toHealthConfig } from "./schema_backend.ts";
import { parseDuration } from "./duration.ts";
import {
  DEFAULTS,
  DISCOVERED_RETRIES,
  MAX_RESPONSES,
  MAX_RETRIES,
  UDP_IDLE_TIMEOUT,
} from "./schema_defaults.ts";
import {
  ALPN_NAMES,
  BYTES_PER_SECOND,
  CIDRS,
  FILE_MODE,
  HOST_NAMES,
  SERVER_NAMES,
  TLS,
} from "./schema_edge.ts";
import {
  bindAddress,
  BOOLEAN,
  duration,
  integer,
  isTable,
  keyItem,
  lazily,
  LIMIT,
  oneOf,
  parsed,
  RESOLVER,
  STRING,
  table,
  withValue,
} from "./schema_values.ts";
import { parseRate } from "./units.ts";

/** A frontend's name: it appears in logs, so it stays a plain word. */
const NAME = v.pipe(
  STRING,
  v.regex(/^[A-Za-z0-9_.-]+$/, withValue("must be letters, digits, '_', '.' or '-'")),
);

/** `discover`: "srv:" and an SRV name; the output is the name. */
const DISCOVER = lazily(() =>
  parsed((text) => {
    const name = text.startsWith("srv:") ? text.slice(4).replace(/\.$/, "") : "";
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(name)) {
      throw new TypeError('must be "srv:" and an SRV name, as in "srv:_web._tcp.service.consul"');
    }
    return name;
  })
);

/** `hash_balance_factor`: a number above 1 (TOML gives `2` as a whole number). */
const BALANCE_FACTOR = v.pipe(
  v.custom<number | bigint>(
    (value) => typeof value === "number" || typeof value === "bigint",
    withValue("must be a number"),
  ),
  v.transform(Number),
  v.check(
    (factor) => factor > 1 && factor <= 100,
    withValue("must be a number above 1 and at most 100, as 1.25"),
  ),
);

/**
 * One frontend table: `[frontend]` (the original's single one, named
 * "default" unless it says otherwise) or an entry of `[[frontends]]`.
 */
export function frontend(kind: "frontend" | "frontends") {
  const entries = {
    name: kind === "frontend" ? v.optional(NAME, DEFAULTS.frontend.name) : NAME,
    bind_on: bindAddress(),
    // Whether it applies (a UDP bind_on) is a rule across keys: rules.ts.
    responses: v.optional(integer(1, MAX_RESPONSES)),
    algorithm: v.optional(oneOf(ALGORITHMS), DEFAULTS.frontend.algorithm),
    hash_balance_factor: v.optional(BALANCE_FACTOR),
    connect_timeout: v.optional(duration(), DEFAULTS.frontend.connect_timeout),
    idle_timeout: v.optional(duration()),
    max_lifetime: v.optional(duration()),
    log_interval: v.optional(duration()),
    retries: v.optional(integer(0, MAX_RETRIES)),
    max_connections: v.optional(LIMIT),
    // 0: a connection past max_connections is closed at once, not queued.
    queue_timeout: v.optional(duration(0)),
    max_connections_per_client: v.optional(LIMIT),
    health: v.optional(HEALTH),
    slow_start: v.optional(duration(0)),
    when_all_down: v.optional(oneOf(["close", "reset"] as const), DEFAULTS.frontend.when_all_down),
    accept_proxy: v.optional(BOOLEAN, DEFAULTS.frontend.accept_proxy),
    trusted: v.optional(CIDRS),
    header_timeout: v.optional(duration(), DEFAULTS.frontend.header_timeout),
    sni: v.optional(SERVER_NAMES),
    protocol: v.optional(oneOf(MATCH_PROTOCOLS)),
    alpn: v.optional(ALPN_NAMES),
    http_host: v.optional(HOST_NAMES),
    detect_timeout: v.optional(duration()),
    tls: v.optional(TLS),
    allow: v.optional(CIDRS),
    deny: v.optional(CIDRS),
    connection_rate_per_client: v.optional(parsed(parseRate)),
    max_bytes_per_second: v.optional(BYTES_PER_SECOND),
    unix_mode: v.optional(FILE_MODE),
    discover: v.optional(DISCOVER),
    resolver: v.optional(RESOLVER),
    min_ttl: v.optional(duration(0), DEFAULTS.frontend.min_ttl),
    max_ttl: v.optional(duration(), DEFAULTS.frontend.max_ttl),
    backend: v.optional(backends(`${kind}.backend`)),
  };
  return v.pipe(
    table(entries, {
      notTable: kind === "frontend" ? withValue("must be a table") : "must be a table",
    }),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const { backend, discover, min_ttl, max_ttl, algorithm, hash_balance_factor } = dataset.value;
      if (hash_balance_factor !== undefined && algorithm !== "source_hash") {
        addIssue({
          message: `works only with algorithm = "source_hash": current algorithm is "${algorithm}"`,
          path: [keyItem(dataset.value, "hash_balance_factor")],
        });
      } else if (backend === undefined && discover === undefined) {
        addIssue({
          message: `is required: add at least one [[${kind}.backend]], or discover`,
          path: [keyItem(dataset.value, "backend")],
        });
      } else if (min_ttl > max_ttl) {
        addIssue({
          message: `must not be longer than max_ttl (${max_ttl}ms): current value is ${min_ttl}ms`,
          path: [keyItem(dataset.value, "min_ttl")],
        });
      }
    }),
    v.transform((raw): FrontendConfig => ({
      name: raw.name,
      bindOn: raw.bind_on.endpoint,
      transport: raw.bind_on.transport,
      responses: raw.responses,
      algorithm: raw.algorithm,
      hashBalanceFactor: raw.hash_balance_factor,
      backends: raw.backend ?? [],
      connectTimeoutMs: raw.connect_timeout,
      idleTimeoutMs: raw.idle_timeout ??
        (raw.bind_on.transport === "udp" ? parseDuration(UDP_IDLE_TIMEOUT) : undefined),
      maxLifetimeMs: raw.max_lifetime,
      ...(raw.log_interval === undefined ? {} : { logIntervalMs: raw.log_interval }),
      whenAllDown: raw.when_all_down,
      health: udpProbes(
        raw.health === undefined ? PASSIVE_HEALTH : toHealthConfig(raw.health, true),
        raw.bind_on.transport,
      ),
      ...(raw.slow_start === undefined ? {} : { slowStartMs: raw.slow_start }),
      maxConnections: raw.max_connections,
      // Defaults that depend on other keys.
      queueTimeoutMs: raw.queue_timeout ?? raw.connect_timeout,
      maxConnectionsPerClient: raw.max_connections_per_client,
      retries: raw.retries ??
        (raw.discover !== undefined || raw.backend!.some((b) => isHostName(b.forwardTo.hostname))
          ? DISCOVERED_RETRIES
          : raw.backend!.length - 1),
      acceptProxy: raw.accept_proxy,
      trusted: raw.trusted,
      headerTimeoutMs: raw.header_timeout,
      sni: raw.sni,
      protocol: raw.protocol ??
        (raw.sni !== undefined || raw.alpn !== undefined
          ? "tls"
          : raw.http_host !== undefined
          ? "http"
          : undefined),
      alpn: raw.alpn,
      httpHost: raw.http_host,
      detectTimeoutMs: raw.detect_timeout,
      tls: raw.tls,
      allow: raw.allow,
      deny: raw.deny,
      connectionRatePerClient: raw.connection_rate_per_client,
      maxBytesPerSecond: raw.max_bytes_per_second,
      unixMode: raw.unix_mode,
      discover: raw.discover,
      resolver: raw.resolver,
      minTtlMs: raw.min_ttl,
      maxTtlMs: raw.max_ttl,
    })),
  );
}

/**
 * A UDP frontend's backends answer datagrams, not connects: its probes are
 * datagrams too, unless `port` sends them to a TCP port (TCP or HTTP checks).
 * Probes of backends that passive checks marked down included.
 */
function udpProbes(health: HealthConfig, transport: Transport): HealthConfig {
  return transport === "udp" && health.port === undefined ? { ...health, udp: true } : health;
}

/**
 * `[[frontend.backend]]` after `[[frontends]]` makes a `[frontend]` of its
 * own in TOML; without this the user would read "frontend.bind_on is
 * required" about a table they never meant to write.
 */
export const MISPLACED_BACKENDS = v.rawCheck<Record<string, unknown>>(({ dataset, addIssue }) => {
  if (!dataset.typed) return;
  const { frontend, frontends } = dataset.value;
  if (frontends === undefined || !isTable(frontend)) return;
  if (frontend.bind_on !== undefined || frontend.backend === undefined) return;
  addIssue({
    message: "is outside any [frontend]: " +
      "the backends of [[frontends]] go under [[frontends.backend]]",
    path: [keyItem(dataset.value, "frontend"), keyItem(frontend, "backend")],
  });
});
