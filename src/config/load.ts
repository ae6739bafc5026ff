import { readFile } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import { formatAddress, parseAddress } from "./address.ts";
import type { BackendConfig, Config, FrontendConfig } from "./config.ts";
import {
  type Algorithm,
  ALGORITHMS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HEALTH,
  type HealthConfig,
  MAX_CONNECTIONS_LIMIT,
  MAX_RETRIES,
  MAX_WEIGHT,
} from "./config.ts";
import { ConfigError } from "./config_error.ts";
import { parseDuration } from "./duration.ts";

/**
 * Reads and validates a config file.
 *
 * @param file the path of a TOML file
 * @returns the validated config
 * @throws {ConfigError} when the file cannot be read, is not TOML, or does not fit the schema
 */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ConfigError({ file, path: "", problem: readProblem(error), cause: error });
  }
  return parseConfig(text, file);
}

/**
 * Parses and validates config text.
 *
 * @param text TOML text
 * @param file the name to report in errors
 * @returns the validated config
 * @throws {ConfigError} when the text is not TOML or does not fit the schema
 */
export function parseConfig(text: string, file = "<config>"): Config {
  let document: Record<string, unknown>;
  try {
    document = parse(text);
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const detail = error.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
    throw new ConfigError({
      file,
      path: "",
      problem: `TOML syntax error at line ${error.line}, column ${error.column}: ${detail}`,
      cause: error,
    });
  }
  const fail = (path: string, problem: string): never => {
    throw new ConfigError({ file, path, problem });
  };
  return validate(document, fail);
}

type Fail = (path: string, problem: string) => never;

function validate(document: Record<string, unknown>, fail: Fail): Config {
  checkKeys(document, "", ["frontend", "frontends"], fail);
  const entries: { path: string; frontend: FrontendConfig }[] = [];
  // The original's single [frontend] is one frontend named "frontend".
  const single = table(document, "frontend", "", fail);
  if (single !== undefined) {
    entries.push({
      path: "frontend",
      frontend: frontendConfig(single, "frontend", "frontend", fail),
    });
  }
  const list = document.frontends;
  if (list !== undefined && !Array.isArray(list)) {
    return fail("frontends", "must be an array of tables ([[frontends]])");
  }
  (list ?? []).forEach((item: unknown, i: number) => {
    const path = `frontends[${i}]`;
    if (!isTable(item)) return fail(path, "must be a table");
    const name = string(item, "name", path, fail, true)!;
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
      fail(
        `${path}.name`,
        `must be letters, digits, '_', '.' or '-': current value is ${show(name)}`,
      );
    }
    entries.push({ path, frontend: frontendConfig(item, path, name, fail) });
  });
  if (entries.length === 0) {
    return fail("frontend", "is required: add a [frontend] table or [[frontends]] tables");
  }
  checkUnique(entries, fail);
  return { frontends: entries.map((entry) => entry.frontend) };
}

function checkUnique(entries: { path: string; frontend: FrontendConfig }[], fail: Fail): void {
  const names = new Map<string, string>();
  const binds = new Map<string, string>();
  for (const { path, frontend } of entries) {
    const sameName = names.get(frontend.name);
    if (sameName !== undefined) {
      fail(`${path}.name`, `repeats the name of ${sameName}: "${frontend.name}"`);
    }
    names.set(frontend.name, path);
    const bind = formatAddress(frontend.bindOn);
    const sameBind = binds.get(bind);
    // Port 0 asks for a free port each time, so it never clashes.
    if (sameBind !== undefined && frontend.bindOn.port !== 0) {
      fail(`${path}.bind_on`, `repeats the address of ${sameBind}: "${bind}"`);
    }
    binds.set(bind, path);
  }
}

function frontendConfig(
  raw: Record<string, unknown>,
  path: string,
  name: string,
  fail: Fail,
): FrontendConfig {
  const keys = [
    "bind_on",
    "algorithm",
    "connect_timeout",
    "idle_timeout",
    "max_lifetime",
    "retries",
    "max_connections",
    "queue_timeout",
    "max_connections_per_client",
    "health",
    "when_all_down",
    "backend",
  ];
  checkKeys(raw, path, path === "frontend" ? keys : ["name", ...keys], fail);
  const bindOnText = string(raw, "bind_on", path, fail, true)!;
  const bindOn = address(bindOnText, `${path}.bind_on`, true, fail);
  const algorithm: Algorithm = oneOf(raw, "algorithm", path, fail, ALGORITHMS);
  const timeout = string(raw, "connect_timeout", path, fail, false);
  const connectTimeoutMs = timeout === undefined
    ? DEFAULT_CONNECT_TIMEOUT_MS
    : duration(timeout, `${path}.connect_timeout`, fail);
  const list = raw.backend;
  if (list === undefined) {
    const table = path === "frontend" ? "frontend.backend" : "frontends.backend";
    return fail(`${path}.backend`, `is required: add at least one [[${table}]]`);
  }
  if (!Array.isArray(list)) {
    return fail(`${path}.backend`, "must be an array of tables ([[frontend.backend]])");
  }
  if (list.length === 0) return fail(`${path}.backend`, "must list at least one backend");
  const backends = list.map((item: unknown, i): BackendConfig => {
    const at = `${path}.backend[${i}]`;
    if (!isTable(item)) return fail(at, "must be a table");
    checkKeys(item, at, ["name", "forward_to", "weight", "max_connections", "backup"], fail);
    const backup = item.backup;
    if (backup !== undefined && typeof backup !== "boolean") {
      fail(`${at}.backup`, `must be true or false: current value is ${show(backup)}`);
    }
    const forwardText = string(item, "forward_to", at, fail, true)!;
    return {
      name: string(item, "name", at, fail, false) ?? forwardText,
      address: forwardText,
      forwardTo: address(forwardText, `${at}.forward_to`, false, fail),
      weight: integer(item, "weight", at, fail, { min: 1, max: MAX_WEIGHT, default: 1 }),
      maxConnections: limit(item, "max_connections", at, fail),
      backup: backup === true,
    };
  });
  const retries = integer(raw, "retries", path, fail, {
    min: 0,
    max: MAX_RETRIES,
    default: backends.length - 1,
  });
  const optionalDuration = (key: string) => {
    const text = string(raw, key, path, fail, false);
    return text === undefined ? undefined : duration(text, `${path}.${key}`, fail);
  };
  return {
    name,
    bindOn,
    algorithm,
    backends,
    connectTimeoutMs,
    idleTimeoutMs: optionalDuration("idle_timeout"),
    health: health(raw, path, fail),
    whenAllDown: oneOf(raw, "when_all_down", path, fail, ["close", "reset"] as const),
    maxConnections: limit(raw, "max_connections", path, fail),
    queueTimeoutMs: optionalDuration("queue_timeout") ?? connectTimeoutMs,
    maxConnectionsPerClient: limit(raw, "max_connections_per_client", path, fail),
    maxLifetimeMs: optionalDuration("max_lifetime"),
    retries,
  };
}

function checkKeys(raw: Record<string, unknown>, path: string, known: string[], fail: Fail): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) {
      fail(
        path === "" ? key : `${path}.${key}`,
        `is not a known key: expected one of ${known.join(", ")}`,
      );
    }
  }
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

function table(raw: Record<string, unknown>, key: string, path: string, fail: Fail) {
  const value = raw[key];
  if (value === undefined || isTable(value)) return value;
  return fail(
    path === "" ? key : `${path}.${key}`,
    `must be a table: current value is ${show(value)}`,
  );
}

function string(
  raw: Record<string, unknown>,
  key: string,
  path: string,
  fail: Fail,
  required: boolean,
) {
  const value = raw[key];
  const at = `${path}.${key}`;
  if (value === undefined) return required ? fail(at, "is required") : undefined;
  if (typeof value !== "string") {
    return fail(at, `must be a string: current value is ${show(value)}`);
  }
  return value;
}

function integer(
  raw: Record<string, unknown>,
  key: string,
  path: string,
  fail: Fail,
  range: { min: number; max: number; default: number },
): number {
  const value = raw[key];
  const at = `${path}.${key}`;
  if (value === undefined) return range.default;
  if (typeof value !== "number" && typeof value !== "bigint") {
    return fail(at, `must be a whole number: current value is ${show(value)}`);
  }
  const number = Number(value);
  if (!Number.isInteger(number) || number < range.min || number > range.max) {
    return fail(
      at,
      `must be a whole number from ${range.min} to ${range.max}: current value is ${show(value)}`,
    );
  }
  return number;
}

function health(raw: Record<string, unknown>, path: string, fail: Fail): HealthConfig {
  const at = `${path}.health`;
  const value = table(raw, "health", path, fail);
  if (value === undefined) return DEFAULT_HEALTH;
  checkKeys(value, at, ["interval", "timeout", "rise", "fall", "send", "expect"], fail);
  const time = (key: string, fallback: number) => {
    const text = string(value, key, at, fail, false);
    return text === undefined ? fallback : duration(text, `${at}.${key}`, fail);
  };
  const count = (key: "rise" | "fall") =>
    integer(value, key, at, fail, { min: 1, max: 100, default: DEFAULT_HEALTH[key] });
  const intervalMs = time("interval", DEFAULT_HEALTH.intervalMs);
  if (intervalMs < 10) fail(`${at}.interval`, "must be at least 10ms");
  return {
    active: true,
    intervalMs,
    timeoutMs: time("timeout", DEFAULT_HEALTH.timeoutMs),
    rise: count("rise"),
    fall: count("fall"),
    send: string(value, "send", at, fail, false),
    expect: string(value, "expect", at, fail, false),
  };
}

/** A string from a fixed list; the first one is the default. */
function oneOf<T extends string>(
  raw: Record<string, unknown>,
  key: string,
  path: string,
  fail: Fail,
  choices: readonly T[],
): T {
  const value = (string(raw, key, path, fail, false) ?? choices[0]) as T;
  if (!choices.includes(value)) {
    fail(`${path}.${key}`, `must be one of ${choices.join(", ")}: current value is ${show(value)}`);
  }
  return value;
}

/** An optional connection limit: a whole number from 1, or undefined. */
function limit(raw: Record<string, unknown>, key: string, path: string, fail: Fail) {
  if (raw[key] === undefined) return undefined;
  return integer(raw, key, path, fail, { min: 1, max: MAX_CONNECTIONS_LIMIT, default: 1 });
}

function address(text: string, path: string, allowPortZero: boolean, fail: Fail) {
  try {
    return parseAddress(text, { allowPortZero });
  } catch (error) {
    return fail(path, `${(error as Error).message}: current value is ${show(text)}`);
  }
}

function duration(text: string, path: string, fail: Fail): number {
  try {
    return parseDuration(text);
  } catch (error) {
    return fail(path, `${(error as Error).message}: current value is ${show(text)}`);
  }
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "an array";
  if (isTable(value)) return "a table";
  return String(value);
}

function readProblem(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === "ENOENT") return "file not found";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "is a directory, not a file";
  return `cannot be read: ${(error as Error).message}`;
}
