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
import { formatAddress, isWildcardHost } from "./address.ts";
import type { Config, FrontendConfig } from "./config.ts";
import { ConfigError, readProblem } from "./config_error.ts";
import { CONFIG_SCHEMA } from "./schema.ts";
import { CertificateError, readCertificates } from "./tls.ts";

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
  const { config, entries } = validate(text, file);
  const frontends = await Promise.all(entries.map(async ({ path, frontend, table }) => {
    try {
      return await readCertificates(frontend, file, !Array.isArray(table.tls));
    } catch (error) {
      if (!(error instanceof CertificateError)) throw error;
      throw new ConfigError({ file, path: `${path}.${error.field}`, problem: error.message });
    }
  }));
  return { ...config, frontends };
}

/**
 * Parses and validates config text. TLS certificate files are not read
 * (their PEM texts stay empty): {@linkcode loadConfig} reads them.
 *
 * @param text TOML text
 * @param file the name to report in errors
 * @returns the validated config
 * @throws {ConfigError} when the text is not TOML or does not fit the schema
 */
export function parseConfig(text: string, file = "<config>"): Config {
  return validate(text, file).config;
}

/** Parses and validates config text, keeping where each frontend sits in the file. */
function validate(text: string, file: string): { config: Config; entries: Entry[] } {
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
  for (const entry of entries) {
    checkBackendNames(entry, fail);
    checkEdge(entry, fail);
  }
  checkUnique(entries, fail);
  const admin = result.output.admin;
  if (admin?.token !== undefined && admin.tokenFile !== undefined) {
    return fail("admin.token_file", "cannot stand beside admin.token: choose one");
  }
  const workers = result.output.workers;
  if (workers > 1) checkWorkers(entries, fail);
  // The top-level resolver is every frontend's that names none.
  const resolver = result.output.resolver;
  if (resolver !== undefined) {
    for (const entry of entries) {
      if (entry.frontend.resolver === undefined) entry.frontend = { ...entry.frontend, resolver };
    }
  }
  const config = {
    frontends: entries.map((entry) => entry.frontend),
    ...(admin === undefined ? {} : { admin }),
    workers,
  };
  return { config, entries };
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

/**
 * What workers cannot do: port 0 (each would get a port of its own), and a
 * Unix socket (which one process binds).
 */
function checkWorkers(entries: Entry[], fail: Fail): void {
  for (const { path, frontend } of entries) {
    if (frontend.bindOn.path !== undefined) {
      fail(
        "workers",
        `cannot serve a Unix socket (${path}.bind_on): one process binds it; use workers = 1`,
      );
    }
    if (frontend.bindOn.port === 0) {
      fail(
        "workers",
        `need a fixed port (${path}.bind_on is port 0): each worker would get a port of its own`,
      );
    }
  }
}

/** The keys of one frontend that only make sense together. */
function checkEdge({ path, frontend }: Entry, fail: Fail): void {
  // A Unix socket's file permissions say who may connect: no list there.
  if (
    frontend.acceptProxy && frontend.trusted === undefined && frontend.bindOn.path === undefined
  ) {
    fail(
      `${path}.trusted`,
      "is required with accept_proxy = true: list the addresses of the proxies in front, " +
        'such as ["10.0.0.0/8"]',
    );
  }
  if (!frontend.acceptProxy && frontend.trusted !== undefined) {
    fail(`${path}.trusted`, "has no effect without accept_proxy = true");
  }
  if (frontend.unixMode !== undefined && frontend.bindOn.path === undefined) {
    fail(
      `${path}.unix_mode`,
      `applies to a Unix socket only (bind_on = "unix:/path"): bind_on is "${
        formatAddress(frontend.bindOn)
      }"`,
    );
  }
  if (frontend.sni !== undefined && frontend.tls !== undefined) {
    fail(
      `${path}.sni`,
      "cannot stand beside tls: sni routes TLS through untouched, tls terminates it " +
        "(a terminating frontend chooses its certificate by name with tls's names)",
    );
  }
}

/**
 * The keys that act before a frontend is chosen on a shared address, and so
 * must be the same on every frontend there.
 */
const LISTENER_KEYS = [
  ["accept_proxy", (f: FrontendConfig) => f.acceptProxy],
  ["trusted", (f: FrontendConfig) => f.trusted?.toString()],
  ["header_timeout", (f: FrontendConfig) => f.headerTimeoutMs],
  ["unix_mode", (f: FrontendConfig) => f.unixMode],
] as const;

/**
 * Frontends need distinct names, and addresses that can be bound side by
 * side; several may share one address when they route TLS by server name.
 */
function checkUnique(entries: Entry[], fail: Fail): void {
  const names = new Map<string, string>();
  const groups = new Map<string, Entry[]>();
  for (const [i, entry] of entries.entries()) {
    const { path, frontend } = entry;
    const sameName = names.get(frontend.name);
    if (sameName !== undefined) {
      fail(`${path}.name`, `repeats the name of ${sameName}: "${frontend.name}"`);
    }
    names.set(frontend.name, path);
    const bind = formatAddress(frontend.bindOn);
    const group = groups.get(bind);
    const shareable = frontend.bindOn.port !== 0 || frontend.bindOn.path !== undefined;
    if (group !== undefined && shareable) {
      checkShared(group, entry, fail);
      group.push(entry);
    } else groups.set(bind, [entry]);
    for (const earlier of entries.slice(0, i)) {
      const other = earlier.frontend.bindOn;
      // A Unix path is shared or not (above); it never clashes with a port.
      if (other.path !== undefined || frontend.bindOn.path !== undefined) continue;
      // Port 0 asks for a free port each time, so it never clashes.
      if (other.port !== frontend.bindOn.port || other.port === 0) continue;
      if (other.hostname === frontend.bindOn.hostname) continue; // a shared address, above
      if (
        covers(other.hostname, frontend.bindOn.hostname) ||
        covers(frontend.bindOn.hostname, other.hostname)
      ) {
        // Both by name: an index alone leaves the reader counting tables.
        fail(
          `${path}.bind_on`,
          `clashes: frontend "${frontend.name}" on ${bind} and frontend ` +
            `"${earlier.frontend.name}" on ${formatAddress(other)} cannot both be bound`,
        );
      }
    }
  }
}

/**
 * Whether `entry` may share the address of the frontends in `group`: each
 * routes by `sni` but at most one (which takes every other name), none
 * terminates TLS, no server name is listed twice, and the listener's keys agree.
 */
function checkShared(group: Entry[], entry: Entry, fail: Fail): void {
  const { path, frontend } = entry;
  const first = group[0]!;
  const bind = formatAddress(frontend.bindOn);
  const defaults = [...group, entry].filter((e) => e.frontend.sni === undefined);
  if (defaults.length > 1 || [...group, entry].some((e) => e.frontend.tls !== undefined)) {
    fail(
      `${path}.bind_on`,
      `repeats the address of ${first.path}: "${bind}" (frontends share an address only ` +
        "to route TLS by server name: give each sni, all but one at most, and no tls)",
    );
  }
  for (const [key, read] of LISTENER_KEYS) {
    if (read(frontend) !== read(first.frontend)) {
      fail(
        `${path}.${key}`,
        `differs from ${first.path}, which shares its address "${bind}": ` +
          "frontends on one address read the connection the same way before choosing",
      );
    }
  }
  for (const name of frontend.sni ?? []) {
    const other = group.find((e) => e.frontend.sni?.includes(name));
    if (other !== undefined) {
      fail(`${path}.sni`, `repeats "${name}" of ${other.path}, which shares its address`);
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
  if (!isWildcardHost(wildcard)) return false;
  return wildcard.includes(":") || !host.includes(":");
}
