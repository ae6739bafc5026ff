/**
 * The config schema, declared once with valibot: the whole document, put
 * together from its tables (schema_frontend.ts, schema_backend.ts,
 * schema_edge.ts, schema_admin.ts) built from the value kinds of
 * schema_values.ts, with the defaults and limits of schema_defaults.ts.
 * Every issue's message is the problem as the user reads it (`must be a
 * string: current value is 9090`); load.ts adds the file and the field
 * path, and checks the rules across frontends.
 *
 * @module
 */
import { availableParallelism } from "node:os";
import * as v from "valibot";
import { ADMIN } from "./schema_admin.ts";
import { DEFAULTS, MAX_WORKERS } from "./schema_defaults.ts";
import { frontend, MISPLACED_BACKENDS } from "./schema_frontend.ts";
import { isTable, lazily, RESOLVER, table, withValue } from "./schema_values.ts";

export { MIN_TOKEN_LENGTH, SECRET_KEYS } from "./schema_admin.ts";
export { PASSIVE_HEALTH } from "./schema_backend.ts";
export {
  DEFAULTS,
  DISCOVERED_RETRIES,
  MAX_CONNECTIONS_LIMIT,
  MAX_HEALTH_COUNT,
  MAX_RETRIES,
  MAX_WEIGHT,
  MAX_WORKERS,
  MIN_HEALTH_INTERVAL_MS,
} from "./schema_defaults.ts";

/** `workers`: a number of processes, or "auto" for one per core. */
const WORKERS = lazily(() =>
  v.pipe(
    v.custom<number | bigint | string>(
      (value) => value === "auto" || typeof value === "number" || typeof value === "bigint",
      withValue(`must be a whole number from 1 to ${MAX_WORKERS}, or "auto"`),
    ),
    v.check(
      (value) =>
        value === "auto" || (Number.isInteger(Number(value)) && Number(value) >= 1 &&
          Number(value) <= MAX_WORKERS),
      withValue(`must be a whole number from 1 to ${MAX_WORKERS}, or "auto"`),
    ),
    v.transform((value) =>
      value === "auto" ? Math.min(MAX_WORKERS, availableParallelism()) : Number(value)
    ),
  )
);

/**
 * The whole document: an optional `[frontend]` and optional `[[frontends]]`.
 * That at least one is there, and that frontends do not clash, is checked
 * after it (see load.ts).
 */
export const CONFIG_SCHEMA = v.pipe(
  v.custom<Record<string, unknown>>(isTable, "must be a table"),
  MISPLACED_BACKENDS,
  table({
    // Each table's schema is built when a config has that table.
    frontend: v.optional(lazily(() => frontend("frontend"))),
    frontends: v.optional(
      lazily(() => v.array(frontend("frontends"), "must be an array of tables ([[frontends]])")),
    ),
    admin: v.optional(ADMIN),
    workers: v.optional(WORKERS, DEFAULTS.workers),
    resolver: v.optional(RESOLVER),
  }, { notTable: "must be a table" }),
);
