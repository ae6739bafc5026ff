/**
 * Loading a config: read the file, parse the TOML, validate it against the
 * schema (schema.ts), turn the first issue into a {@linkcode ConfigError},
 * then check the rules that span frontends (rules.ts).
 *
 * @module
 */
import type { Stats } from "node:fs";
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { stat } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import * as v from "valibot";
import type { AdminConfig, Config } from "./config.ts";
import { ConfigError, readProblem } from "./config_error.ts";
import {
  checkAdminAddress,
  checkBackendNames,
  checkEdge,
  checkUdp,
  checkUnique,
  checkWorkers,
  type Entry,
  type Table,
} from "./rules.ts";
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
 *
 * @example
 * ```ts
 * import { ConfigError, loadConfig } from "mini-balancer";
 *
 * try {
 *   const config = await loadConfig("lb.toml");
 * } catch (error) {
 *   if (error instanceof ConfigError) console.error(error.message); // one line: file, path, problem
 *   else throw error;
 * }
 * ```
 */
export async function loadConfig(file: string): Promise<Config> {
  const text = readBounded(file, MAX_CONFIG_BYTES, (problem, cause) => {
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
 * a file that grows between the look and the read is refused too. Read
 * synchronously: a small regular file, and on Bun the promise API's file
 * handle costs the idle process about 0.7 MiB of RSS.
 *
 * @param path the file
 * @param limit the most bytes it may hold
 * @param fail throws the problem, as the caller reports it
 * @returns the text
 */
function readBounded(
  path: string,
  limit: number,
  fail: (problem: string, cause?: unknown) => never,
): string {
  let stats: Stats;
  try {
    stats = statSync(path);
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
    const fd = openSync(path, "r");
    try {
      while (length < buffer.length) {
        const bytesRead = readSync(fd, buffer, length, buffer.length - length, null);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
    } finally {
      closeSync(fd);
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
  const text = readBounded(tokenFile, MAX_TOKEN_FILE_BYTES, fail);
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
 *
 * @example
 * ```ts
 * import { parseConfig } from "mini-balancer";
 *
 * const config = parseConfig(`
 * [frontend]
 * bind_on = "127.0.0.1:7070"
 * [[frontend.backend]]
 * forward_to = "127.0.0.1:8080"
 * `, "inline.toml"); // the name errors give
 * console.log(config.frontends[0]!.backends[0]!.address); // "127.0.0.1:8080"
 * ```
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
  return validateDocument(document, file);
}

/**
 * Validates a config document (the TOML's tables, or a program's object)
 * against the schema and the rules that span frontends.
 *
 * @param document the parsed document
 * @param file the name to report in errors
 * @param lang the parse config's marker: `OBJECT_INPUT` lets durations be numbers
 * @returns the config, and where each frontend sits in the document
 * @throws {ConfigError} for the first problem
 */
export function validateDocument(
  document: Record<string, unknown>,
  file: string,
  lang?: string,
): { config: Config; entries: Entry[] } {
  const fail = (path: string, problem: string): never => {
    throw new ConfigError({ file, path, problem });
  };
  // The first issue only: one line that names one field is what users act on.
  const result = v.safeParse(CONFIG_SCHEMA, document, { abortEarly: true, lang });
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
    // Before checkEdge: a TCP-only key on a UDP frontend is that, whatever else is wrong.
    checkUdp(entry, fail);
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

/** Writes an issue's path the way the file reads: `frontend.backend[1].forward_to`. */
export function pathOf(issue: v.BaseIssue<unknown>): string {
  let path = "";
  for (const item of issue.path ?? []) {
    if (typeof item.key === "number") path += `[${item.key}]`;
    else path += path === "" ? String(item.key) : `.${String(item.key)}`;
  }
  return path;
}
