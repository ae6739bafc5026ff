/**
 * The upstream keys of a frontend's schema: its `[[backend]]` list and its
 * `[health]` checks.
 *
 * @module
 */
import * as v from "valibot";
import type { BackendConfig, HealthConfig } from "./config.ts";
import { parseDuration } from "./duration.ts";
import {
  DEFAULTS,
  MAX_HEALTH_COUNT,
  MAX_WEIGHT,
  MIN_HEALTH_INTERVAL_MS,
} from "./schema_defaults.ts";
import {
  address,
  BOOLEAN,
  duration,
  integer,
  lazily,
  LIMIT,
  oneOf,
  STRING,
  table,
  withValue,
} from "./schema_values.ts";

/** One `[[frontend.backend]]` table. */
const BACKEND = table({
  name: v.optional(STRING),
  forward_to: address({ allowPortZero: false }),
  weight: v.optional(integer(1, MAX_WEIGHT), DEFAULTS.backend.weight),
  max_connections: v.optional(LIMIT),
  backup: v.optional(BOOLEAN, DEFAULTS.backend.backup),
  send_proxy: v.optional(oneOf(["v1", "v2"] as const)),
  slow_start: v.optional(duration(0)),
}, { notTable: "must be a table" });

/** A valid backend table as the balancer takes it. */
function toBackendConfig(backend: v.InferOutput<typeof BACKEND>): BackendConfig {
  return {
    name: backend.name ?? backend.forward_to.written,
    address: backend.forward_to.written,
    forwardTo: backend.forward_to.endpoint,
    weight: backend.weight,
    maxConnections: backend.max_connections,
    backup: backend.backup,
    sendProxy: backend.send_proxy,
    ...(backend.slow_start === undefined ? {} : { slowStartMs: backend.slow_start }),
  };
}

/** The `backend` array of a frontend; `table` is how the file spells it. */
export function backends(table: string) {
  return v.pipe(
    v.array(BACKEND, `must be an array of tables ([[${table}]])`),
    v.minLength(1, "must list at least one backend"),
    v.transform((list) => list.map(toBackendConfig)),
  );
}

/** A frontend's `[health]` table. */
export const HEALTH = lazily(() =>
  table({
    interval: v.optional(duration(MIN_HEALTH_INTERVAL_MS), DEFAULTS.health.interval),
    timeout: v.optional(duration(), DEFAULTS.health.timeout),
    rise: v.optional(integer(1, MAX_HEALTH_COUNT), DEFAULTS.health.rise),
    fall: v.optional(integer(1, MAX_HEALTH_COUNT), DEFAULTS.health.fall),
    send: v.optional(STRING),
    expect: v.optional(STRING),
    agent_port: v.optional(integer(1, 65535)),
    agent_interval: v.optional(duration(MIN_HEALTH_INTERVAL_MS)),
  }, { notTable: withValue("must be a table") })
);

/** A valid `[health]` table as the balancer takes it; `active` when the file wrote one. */
export function toHealthConfig(
  health: v.InferOutput<typeof HEALTH>,
  active: boolean,
): HealthConfig {
  return {
    active,
    intervalMs: health.interval,
    timeoutMs: health.timeout,
    rise: health.rise,
    fall: health.fall,
    send: health.send,
    expect: health.expect,
    ...(health.agent_port === undefined ? {} : {
      agentPort: health.agent_port,
      agentIntervalMs: health.agent_interval ?? health.interval,
    }),
  };
}

/** Health checking when a frontend has no [health] table: passive only. */
export const PASSIVE_HEALTH: HealthConfig = toHealthConfig({
  // What HEALTH makes of `{}`, without building HEALTH for every config.
  interval: parseDuration(DEFAULTS.health.interval),
  timeout: parseDuration(DEFAULTS.health.timeout),
  rise: DEFAULTS.health.rise,
  fall: DEFAULTS.health.fall,
}, false);
