/**
 * One backend table on its own, as the admin API receives it (JSON): the
 * same schema and the same messages as a `[[frontend.backend]]` table of
 * the file, the path written `backend.forward_to`.
 *
 * @module
 */
import * as v from "valibot";
import { formatBindAddress } from "../address/address.ts";
import type { BackendConfig, FrontendConfig } from "./config.ts";
import { pathOf } from "./load.ts";
import { checkUdpBackend, type Table } from "./rules.ts";
import { BACKEND, toBackendConfig } from "./schema_backend.ts";

/**
 * A backend table that does not fit: its message is one line, the path first.
 *
 * @example
 * ```ts
 * import { BackendChangeError } from "mini-balancer";
 *
 * // The program sees a refused table as a BackendChangeError (400) carrying
 * // this error's one-line message, the field path first.
 * try {
 *   balancer.frontend("web").addBackend({ forward_to: "no-port" });
 * } catch (error) {
 *   if (error instanceof BackendChangeError && error.status === 400) console.error(error.message);
 * }
 * ```
 */
export class BackendTableError extends Error {
  /** The field path (`backend.forward_to`). */
  readonly path: string;
  /** What is wrong, without the path. */
  readonly problem: string;

  /**
   * A backend table the schema refused, naming the field.
   *
   * @param path the field path
   * @param problem what is wrong with it
   */
  constructor(path: string, problem: string) {
    super(`${path} ${problem}`);
    this.name = "BackendTableError";
    this.path = path;
    this.problem = problem;
  }
}

/**
 * Validates one backend table for a frontend, as the config file would.
 *
 * @param table the table (parsed JSON)
 * @param frontend the frontend it is for (its transport and bind_on)
 * @returns the backend as the balancer takes it
 * @throws {BackendTableError} with the file's message for the first problem
 */
export function validateBackendTable(table: unknown, frontend: FrontendConfig): BackendConfig {
  const fail = (path: string, problem: string): never => {
    throw new BackendTableError(path, problem);
  };
  const result = v.safeParse(BACKEND, table, { abortEarly: true });
  if (!result.success) {
    const path = pathOf(result.issues[0]);
    return fail(path === "" ? "backend" : `backend.${path}`, result.issues[0].message);
  }
  const backend = toBackendConfig(result.output);
  if (frontend.transport === "udp") {
    const bind = formatBindAddress(frontend.bindOn, frontend.transport);
    checkUdpBackend("backend", backend, table as Table, bind, fail);
  }
  return backend;
}

/** What PATCH may change, checked: a weight, a limit (null: none). */
export interface BackendChange {
  weight?: number;
  maxConnections?: number | null;
}

/**
 * Validates a change of a backend's `weight` and `max_connections`, with the
 * file's messages (`max_connections = null` lifts the limit).
 *
 * @param table the change (parsed JSON)
 * @returns the change
 * @throws {BackendTableError} for a key that cannot change or a bad value
 */
export function validateBackendChange(table: unknown): BackendChange {
  if (typeof table !== "object" || table === null || Array.isArray(table)) {
    throw new BackendTableError("backend", "must be a table");
  }
  const record = table as Record<string, unknown>;
  const other = Object.keys(record).find((key) => key !== "weight" && key !== "max_connections");
  if (other !== undefined) {
    throw new BackendTableError(
      `backend.${other}`,
      "cannot be changed here: expected one of weight, max_connections",
    );
  }
  if (Object.keys(record).length === 0) {
    throw new BackendTableError("backend", "needs weight or max_connections");
  }
  const { max_connections: limit, ...rest } = record;
  // The file's checks, on a table that is valid but for these keys.
  validateBackendTable({
    forward_to: "127.0.0.1:1",
    ...rest,
    ...(limit === null ? {} : { max_connections: limit }),
  }, { transport: "tcp" } as FrontendConfig);
  return {
    ...(record.weight === undefined ? {} : { weight: record.weight as number }),
    ...(limit === undefined ? {} : { maxConnections: limit as number | null }),
  };
}
