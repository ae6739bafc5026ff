/**
 * `admin.state_file`: what the admin API changed (backends it added,
 * weights and limits it patched, drain and disable states), kept across
 * restarts as JSON with a version field. Written atomically (a temporary
 * file beside it, then a rename) at each change, read at start; a file
 * that does not fit stops the start with one line naming it.
 *
 * @module
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { ConfigError } from "../config/config_error.ts";
import { validateBackendTable } from "../config/backend_table.ts";
import type { FrontendConfig } from "../config/config.ts";
import type { Balancer } from "../balancer/balancer.ts";
import type { FrontendOverlayState, OverlayState } from "../balancer/upstream/runtime_backends.ts";
import { getLog, OPERATOR_CATEGORY } from "../log.ts";

/** The largest state file read: a few backends per frontend is a few kilobytes. */
const MAX_STATE_BYTES = 4 * 1024 * 1024;

/** The version this build writes and reads. */
export const STATE_VERSION = 1;

/** A state file that cannot be used: one line naming it and the problem. */
export class StateFileError extends ConfigError {
  /**
   * @param file the state file's path
   * @param problem what is wrong with it
   */
  constructor(file: string, problem: string) {
    super({ file, path: "", problem });
    this.message = `Cannot read state file "${file}": ${problem}`;
    this.name = "StateFileError";
  }
}

const STATES = new Set(["enabled", "draining", "disabled"]);

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** The problem with one frontend's entry, if any. */
function frontendProblem(name: string, entry: unknown): string | undefined {
  const at = `frontends.${name}`;
  if (!isObject(entry)) return `${at} must be an object`;
  const { backends, patches, states } = entry;
  if (!Array.isArray(backends) || !backends.every(isObject)) {
    return `${at}.backends must be an array of objects`;
  }
  if (!isObject(patches)) return `${at}.patches must be an object`;
  for (const [backend, patch] of Object.entries(patches)) {
    const weight = isObject(patch) ? patch.weight : undefined;
    const limit = isObject(patch) ? patch.max_connections : undefined;
    const whole = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 1;
    if (
      !isObject(patch) || (weight !== undefined && !whole(weight)) ||
      (limit !== undefined && limit !== null && !whole(limit))
    ) {
      return `${at}.patches.${backend} must be {"weight"?, "max_connections"?} with whole numbers`;
    }
  }
  if (!isObject(states) || !Object.values(states).every((s) => STATES.has(s as string))) {
    return `${at}.states must map backend names to "enabled", "draining" or "disabled"`;
  }
  return undefined;
}

/**
 * Reads a state file.
 *
 * @param file its path
 * @returns what it keeps, or undefined when there is no file yet
 * @throws {StateFileError} when it cannot be read or does not fit
 */
export function readStateFile(file: string): OverlayState | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ENOENT") return undefined;
    throw new StateFileError(file, `cannot be read (${code ?? (error as Error).message})`);
  }
  if (text.length > MAX_STATE_BYTES) {
    throw new StateFileError(file, `is larger than ${MAX_STATE_BYTES} bytes`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new StateFileError(file, `is not JSON: ${(error as Error).message.split("\n")[0]}`);
  }
  if (!isObject(parsed)) throw new StateFileError(file, "must be a JSON object");
  if (parsed.version !== STATE_VERSION) {
    throw new StateFileError(
      file,
      `version must be ${STATE_VERSION}: current value is ${JSON.stringify(parsed.version)}`,
    );
  }
  if (!isObject(parsed.frontends)) throw new StateFileError(file, "frontends must be an object");
  for (const [name, entry] of Object.entries(parsed.frontends)) {
    const problem = frontendProblem(name, entry);
    if (problem !== undefined) throw new StateFileError(file, problem);
  }
  return {
    version: 1,
    frontends: parsed.frontends as Record<string, FrontendOverlayState>,
  };
}

/**
 * Checks a state file against a config, as `check` does: its shape, and
 * each backend it keeps against its frontend, as the start would.
 *
 * @param file its path
 * @param frontends the config's frontends
 * @throws {StateFileError} naming the first problem
 */
export function checkStateFile(file: string, frontends: readonly FrontendConfig[]): void {
  const state = readStateFile(file);
  for (const [name, kept] of Object.entries(state?.frontends ?? {})) {
    const frontend = frontends.find((f) => f.name === name);
    if (frontend === undefined) continue;
    kept.backends.forEach((table, i) => {
      try {
        validateBackendTable(table, frontend);
      } catch (error) {
        throw new StateFileError(
          file,
          `frontends.${name}.backends[${i}]: ${(error as Error).message}`,
        );
      }
    });
  }
}

/**
 * Applies a state file to a balancer that just started.
 *
 * @param balancer the balancer
 * @param file the file's path (for the message)
 * @param state what it keeps
 * @throws {StateFileError} when a backend it keeps does not fit the config any more
 */
export function restoreState(balancer: Balancer, file: string, state: OverlayState): void {
  const [problem] = balancer.backends.restore(state);
  if (problem !== undefined) throw new StateFileError(file, problem);
}

/**
 * Writes a state file atomically: a temporary file beside it, then a rename
 * over it, so that a crash leaves the old file or the new one, never half.
 *
 * @param file its path
 * @param state what to keep
 * @returns whether it was written (a failure is logged)
 */
export function writeStateFile(file: string, state: OverlayState): boolean {
  const temporary = `${file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    writeFileSync(temporary, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
    renameSync(temporary, file);
    return true;
  } catch (error) {
    getLog(OPERATOR_CATEGORY).error("cannot write the state file", {
      file,
      reason: (error as { code?: string }).code ?? (error as Error).message,
    });
    return false;
  }
}
