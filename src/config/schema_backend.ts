/**
 * The upstream keys of a frontend's schema: its `[[backend]]` list and its
 * `[health]` checks.
 *
 * @module
 */
import * as v from "valibot";
import type { BackendConfig, HealthConfig } from "./config.ts";
import { parseDuration } from "./duration.ts";
import { DEFAULT_HTTP_STATUS, parseHttpStatus, type StatusRange } from "./http_status.ts";
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
  keyItem,
  lazily,
  LIMIT,
  oneOf,
  STRING,
  table,
  withValue,
} from "./schema_values.ts";

/** One `[[frontend.backend]]` table. */
export const BACKEND = table({
  name: v.optional(STRING),
  forward_to: address({ allowPortZero: false }),
  weight: v.optional(integer(1, MAX_WEIGHT), DEFAULTS.backend.weight),
  max_connections: v.optional(LIMIT),
  backup: v.optional(BOOLEAN, DEFAULTS.backend.backup),
  send_proxy: v.optional(oneOf(["v1", "v2"] as const)),
  slow_start: v.optional(duration(0)),
}, { notTable: "must be a table" });

/** A valid backend table as the balancer takes it. */
export function toBackendConfig(backend: v.InferOutput<typeof BACKEND>): BackendConfig {
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
export const HEALTH = lazily(() => {
  const keys = table({
    interval: v.optional(duration(MIN_HEALTH_INTERVAL_MS), DEFAULTS.health.interval),
    timeout: v.optional(duration(), DEFAULTS.health.timeout),
    rise: v.optional(integer(1, MAX_HEALTH_COUNT), DEFAULTS.health.rise),
    fall: v.optional(integer(1, MAX_HEALTH_COUNT), DEFAULTS.health.fall),
    send: v.optional(STRING),
    expect: v.optional(STRING),
    agent_port: v.optional(integer(1, 65535)),
    agent_interval: v.optional(duration(MIN_HEALTH_INTERVAL_MS)),
    http_path: v.optional(HTTP_PATH),
    http_method: v.optional(HTTP_METHOD),
    http_host: v.optional(HTTP_HOST),
    http_status: v.optional(HTTP_STATUS),
    port: v.optional(integer(1, 65535)),
    tls: v.optional(BOOLEAN),
    tls_verify: v.optional(BOOLEAN),
    on_down: v.optional(oneOf(["keep", "close_sessions"] as const)),
  }, { notTable: withValue("must be a table") });
  return v.pipe(
    keys,
    v.rawCheck<v.InferOutput<typeof keys>>(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const conflict = healthConflict(dataset.value);
      if (conflict !== undefined) {
        addIssue({ message: conflict.message, path: [keyItem(dataset.value, conflict.key)] });
      }
    }),
  );
});

/** `http_path`: what an HTTP probe asks for, one line of visible characters. */
const HTTP_PATH = v.pipe(
  STRING,
  v.check(
    (text) => /^\/[\x21-\x7e]*$/.test(text) && text.length <= 1024,
    withValue('must be a path starting with "/", without spaces or control characters'),
  ),
);

/** `http_method`: an HTTP token (RFC 9110). */
const HTTP_METHOD = v.pipe(
  STRING,
  v.check(
    (text) => /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}$/.test(text),
    withValue('must be an HTTP method such as "GET" or "HEAD" (letters, digits, no spaces)'),
  ),
);

/** `http_host`: the Host header of an HTTP probe. */
const HTTP_HOST = v.pipe(
  STRING,
  v.check(
    (text) => /^[\x21-\x7e]{1,255}$/.test(text),
    withValue("must be a host name (and port), without spaces or control characters"),
  ),
);

/** `http_status`: a code, a range or a list of them. */
const HTTP_STATUS = v.pipe(
  v.custom<string | string[]>(
    (value) =>
      typeof value === "string" ||
      (Array.isArray(value) && value.every((item) => typeof item === "string")),
    withValue('must be a status code or range ("200-399"), or a list of them'),
  ),
  v.rawTransform<string | string[], StatusRange[]>(({ dataset, addIssue, NEVER }) => {
    try {
      return parseHttpStatus(dataset.value);
    } catch (error) {
      addIssue({ message: (error as Error).message });
      return NEVER;
    }
  }),
);

/** Keys of [health] that only make sense together, or not at all together: the first wrong one. */
function healthConflict(
  health: Record<string, unknown>,
): { key: string; message: string } | undefined {
  const http = ["http_method", "http_host", "http_status"].filter((k) => health[k] !== undefined);
  const tcp = ["send", "expect"].filter((k) => health[k] !== undefined);
  if (health.http_path === undefined && http.length > 0) {
    return {
      key: http[0]!,
      message: 'needs http_path (the path HTTP probes ask for, e.g. "/healthz")',
    };
  }
  if (health.http_path !== undefined && tcp.length > 0) {
    return {
      key: tcp[0]!,
      message: "cannot be used with http_path: a probe is either an HTTP request or send/expect",
    };
  }
  if (health.tls_verify === true && health.tls !== true) {
    return {
      key: "tls_verify",
      message: "needs tls = true (it verifies the certificate of a TLS probe)",
    };
  }
  return undefined;
}

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
    // Keys left out of the file stay out of the object, which then equals
    // what it was before they existed; readers take undefined as the default.
    ...(health.http_path !== undefined && {
      http: {
        path: health.http_path,
        method: health.http_method ?? "GET",
        host: health.http_host,
        status: health.http_status ?? parseHttpStatus(DEFAULT_HTTP_STATUS),
      },
    }),
    ...(health.port !== undefined && { port: health.port }),
    ...(health.tls !== undefined && { tls: health.tls }),
    ...(health.tls_verify !== undefined && { tlsVerify: health.tls_verify }),
    ...(health.on_down !== undefined && { onDown: health.on_down }),
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
