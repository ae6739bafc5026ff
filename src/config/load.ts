/**
 * Loading a config: read the file, parse the TOML, validate it against the
 * schema (schema.ts), turn the first issue into a {@linkcode ConfigError},
 * then check the rules that span frontends.
 *
 * @module
 */
import type { Stats } from "node:fs";
import { open, stat } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import * as v from "valibot";
import { formatAddress, isWildcardHost } from "../address/address.ts";
import type { AdminConfig, Config, FrontendConfig } from "./config.ts";
import { ConfigError, readProblem } from "./config_error.ts";
import { CONFIG_SCHEMA, MIN_TOKEN_LENGTH, SECRET_KEYS } from "./schema.ts";
import { CertificateError, readCertificates } from "./tls.ts";

/** The largest config file read: a config is a few kilobytes, /dev/zero is endless. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** The largest token file read: a token is a line. */
const MAX_TOKEN_FILE_BYTES = 64 * 1024;

/**
 * Reads and validates a config file.
 *
 * @param file the path of a TOML file
 * @returns the validated config
 * @throws {ConfigError} when the file cannot be read, is not a regular file
 * of at most 1 MiB, is not TOML, or does not fit the schema
 */
export async function loadConfig(file: string): Promise<Config> {
  const text = await readBounded(file, MAX_CONFIG_BYTES, (problem, cause) => {
    throw new ConfigError({ file, path: "", problem, cause });
  });
  const { config, entries } = validate(text, file);
  const frontends = await Promise.all(entries.map(async ({ path, frontend, table }) => {
    try {
      return await readCertificates(frontend, file, !Array.isArray(table.tls));
    } catch (error) {
      if (!(error instanceof CertificateError)) throw error;
      throw new ConfigError({ file, path: `${path}.${error.field}`, problem: error.message });
    }
  }));
  const admin = config.admin === undefined ? undefined : await readToken(config.admin, file);
  return { ...config, frontends, ...(admin === undefined ? {} : { admin }) };
}

/**
 * Reads a regular file of at most `limit` bytes as UTF-8. It is looked at
 * first, so that a FIFO (whose open would wait for a writer) or a device
 * (endless) is refused before it is opened, and read with a bound, so that
 * a file that grows between the look and the read is refused too.
 *
 * @param path the file
 * @param limit the most bytes it may hold
 * @param fail throws the problem, as the caller reports it
 * @returns the text
 */
async function readBounded(
  path: string,
  limit: number,
  fail: (problem: string, cause?: unknown) => never,
): Promise<string> {
  let stats: Stats;
  try {
    stats = await stat(path);
  } catch (error) {
    return fail(readProblem(error), error);
  }
  if (stats.isDirectory()) return fail("is a directory, not a file");
  if (!stats.isFile()) return fail(`is not a regular file (${fileKind(stats)})`);
  const size = stats.size;
  if (size > limit) return fail(`is larger than ${sizeText(limit)}: it has ${size} bytes`);
  const buffer = new Uint8Array(limit + 1);
  let length = 0;
  try {
    const handle = await open(path, "r");
    try {
      while (length < buffer.length) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
    } finally {
      await handle.close();
    }
  } catch (error) {
    return fail(readProblem(error), error);
  }
  if (length > limit) return fail(`is larger than ${sizeText(limit)}`);
  return new TextDecoder().decode(buffer.subarray(0, length));
}

/** What a file that is not a regular file is, for a message. */
function fileKind(stats: Stats): string {
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  if (stats.isSocket()) return "a socket";
  return "not a file";
}

function sizeText(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / 1024 / 1024} MiB` : `${bytes / 1024} KiB`;
}

/**
 * Fills `admin.token` from `admin.token_file`'s first line. No message
 * quotes what the file holds: it is a secret.
 *
 * @param admin the validated `[admin]`
 * @param file the config file, for errors
 * @returns the admin config with its token, and the file's permission bits
 * @throws {ConfigError} naming `admin.token_file` when the file cannot be
 * read or its token is too short
 */
async function readToken(admin: AdminConfig, file: string): Promise<AdminConfig> {
  const tokenFile = admin.tokenFile;
  if (tokenFile === undefined) return admin;
  const current = `current value is ${JSON.stringify(tokenFile)}`;
  const fail = (problem: string, cause?: unknown): never => {
    throw new ConfigError({
      file,
      path: "admin.token_file",
      problem: `${problem}: ${current}`,
      cause,
    });
  };
  const text = await readBounded(tokenFile, MAX_TOKEN_FILE_BYTES, fail);
  const token = text.split("\n")[0]!.trim();
  if (token.length < MIN_TOKEN_LENGTH) {
    fail(
      `must hold a token of at least ${MIN_TOKEN_LENGTH} characters on its first line: ` +
        `it has ${token.length}`,
    );
  }
  let mode: number | undefined;
  try {
    mode = (await stat(tokenFile)).mode & 0o777;
  } catch {
    mode = undefined; // it was read a moment ago: a file removed since is not our concern
  }
  return { ...admin, token, tokenFileMode: mode };
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
    const path = pathOf(issue);
    // Whatever check wrote the message, a secret's value stays out of it.
    const message = SECRET_KEYS.has(path)
      ? issue.message.replace(/: current value is [^]*$/, ": its value is not shown")
      : issue.message;
    return fail(path, message);
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
  if (admin !== undefined) checkAdminAddress(admin, entries, fail);
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
 * The admin listener cannot take a frontend's address, nor overlap one (a
 * wildcard and an address on the same port): the start would fail to bind.
 */
function checkAdminAddress(admin: AdminConfig, entries: Entry[], fail: Fail): void {
  const mine = admin.bindOn;
  if (mine.path !== undefined || mine.port === 0) return;
  for (const { path, frontend } of entries) {
    const other = frontend.bindOn;
    if (other.path !== undefined || other.port !== mine.port) continue;
    if (
      other.hostname === mine.hostname || covers(other.hostname, mine.hostname) ||
      covers(mine.hostname, other.hostname)
    ) {
      const them = `${path} ("${frontend.name}" on ${formatAddress(other)})`;
      fail("admin.bind_on", `clashes with ${them}: "${formatAddress(mine)}"`);
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
      `repeats an address: frontend "${frontend.name}" and frontend "${first.frontend.name}" ` +
        `(${first.path}) are both on "${bind}" (frontends share an address only ` +
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
