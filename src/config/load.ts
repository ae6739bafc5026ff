/**
 * Loading a config: read the file, parse the TOML, validate it against the
 * schema (schema.ts), turn the first issue into a {@linkcode ConfigError},
 * then check the rules that span frontends.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import * as v from "valibot";
import { formatAddress } from "./address.ts";
import type { Config, FrontendConfig } from "./config.ts";
import { ConfigError } from "./config_error.ts";
import { CONFIG_SCHEMA } from "./schema.ts";

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
  // The first issue only: one line that names one field is what users act on.
  const result = v.safeParse(CONFIG_SCHEMA, document, { abortEarly: true });
  if (!result.success) {
    const [issue] = result.issues;
    return fail(pathOf(issue), issue.message);
  }
  // The schema passed, so these are tables and arrays of tables.
  const entries: Entry[] = [];
  const { frontend, frontends = [] } = result.output;
  if (frontend !== undefined) {
    entries.push({ path: "frontend", frontend, table: document.frontend as Table });
  }
  frontends.forEach((frontend, i) => {
    const table = (document.frontends as Table[])[i]!;
    entries.push({ path: `frontends[${i}]`, frontend, table });
  });
  if (entries.length === 0) {
    return fail("frontend", "is required: add a [frontend] table or [[frontends]] tables");
  }
  for (const entry of entries) checkBackendNames(entry, fail);
  checkUnique(entries, fail);
  const admin = result.output.admin;
  if (admin?.token !== undefined && admin.tokenFile !== undefined) {
    return fail("admin.token_file", "cannot stand beside admin.token: choose one");
  }
  return {
    frontends: entries.map((entry) => entry.frontend),
    ...(admin === undefined ? {} : { admin }),
  };
}

type Table = Record<string, unknown>;
type Fail = (path: string, problem: string) => never;

/** A validated frontend, where it sits in the file and its table as written. */
interface Entry {
  path: string;
  frontend: FrontendConfig;
  table: Table;
}

/** Writes an issue's path the way the file reads: `frontend.backend[1].forward_to`. */
function pathOf(issue: v.BaseIssue<unknown>): string {
  let path = "";
  for (const item of issue.path ?? []) {
    if (typeof item.key === "number") path += `[${item.key}]`;
    else path += path === "" ? String(item.key) : `.${String(item.key)}`;
  }
  return path;
}

/**
 * Backend names must differ within a frontend: source_hash places backends
 * on its ring by name, and HAProxy too rejects two servers of one name. An
 * unnamed backend is named by its address, so the same address twice
 * clashes as well: that is almost surely a typo (`weight` gives a backend a
 * bigger share).
 */
function checkBackendNames({ path, frontend, table }: Entry, fail: Fail): void {
  const written = table.backend as Table[];
  const seen = new Map<string, number>();
  frontend.backends.forEach(({ name }, i) => {
    const first = seen.get(name);
    if (first === undefined) {
      seen.set(name, i);
      return;
    }
    const earlier = `${path}.backend[${first}]`;
    const named = (table: Table | undefined) => table?.name !== undefined;
    if (named(written[i])) {
      fail(`${path}.backend[${i}].name`, `repeats the name of ${earlier}: ${JSON.stringify(name)}`);
    }
    fail(
      `${path}.backend[${i}].forward_to`,
      named(written[first])
        ? `repeats the name of ${earlier}, and a backend without a name is named by its ` +
          `address: ${JSON.stringify(name)}`
        : `repeats the address of ${earlier}: ${JSON.stringify(name)}`,
    );
  });
}

/** Frontends need distinct names, and addresses that can be bound side by side. */
function checkUnique(entries: Entry[], fail: Fail): void {
  const names = new Map<string, string>();
  for (const [i, { path, frontend }] of entries.entries()) {
    const sameName = names.get(frontend.name);
    if (sameName !== undefined) {
      fail(`${path}.name`, `repeats the name of ${sameName}: "${frontend.name}"`);
    }
    names.set(frontend.name, path);
    const bind = formatAddress(frontend.bindOn);
    for (const earlier of entries.slice(0, i)) {
      const other = earlier.frontend.bindOn;
      const unix = other.path !== undefined || frontend.bindOn.path !== undefined;
      // Port 0 asks for a free port each time, so it never clashes; a Unix
      // socket clashes only with the same path.
      if (
        unix
          ? other.path !== frontend.bindOn.path
          : other.port !== frontend.bindOn.port || other.port === 0
      ) continue;
      if (unix || other.hostname === frontend.bindOn.hostname) {
        fail(`${path}.bind_on`, `repeats the address of ${earlier.path}: "${bind}"`);
      } else if (
        covers(other.hostname, frontend.bindOn.hostname) ||
        covers(frontend.bindOn.hostname, other.hostname)
      ) {
        const them = `${earlier.path} ("${earlier.frontend.name}" on ${formatAddress(other)})`;
        fail(`${path}.bind_on`, `clashes with ${them}: "${bind}"`);
      }
    }
  }
}

/**
 * Whether a socket on `wildcard` takes the same port on `host` as well.
 * `::` does for every address, IPv4 included (dual-stack sockets, Linux's
 * default); `0.0.0.0` does for IPv4 and for names, which may resolve to
 * IPv4, but not for a given IPv6 address: 0.0.0.0:7070 and [::1]:7070 bind
 * side by side.
 */
function covers(wildcard: string, host: string): boolean {
  if (wildcard.includes(":")) return /^[0:]+$/.test(wildcard);
  return wildcard === "0.0.0.0" && !host.includes(":");
}

function readProblem(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === "ENOENT") return "file not found";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "is a directory, not a file";
  return `cannot be read: ${(error as Error).message}`;
}
