/**
 * Quick mode: `mini-balancer --listen ADDR --to ADDR [--to ADDR …]` runs one
 * frontend without a config file, as `caddy reverse-proxy --from --to` does.
 * The flags become the TOML a file would hold, validated by the same schema
 * ({@linkcode parseConfig}), so a bad value gets the file's message, named
 * by its flag; `--print-config` prints that TOML, a file to graduate to.
 *
 * @module
 */
import type { Config } from "../config/config.ts";
import { ConfigError } from "../config/config_error.ts";
import { parseConfig } from "../config/load.ts";

/** What the config's messages call quick mode's config: it has no file. */
export const QUICK_SOURCE = "(command line)";

/** Quick mode's flags, as given. */
export interface QuickFlags {
  /** `--listen`: the frontend's `bind_on` (`udp:HOST:PORT` for UDP). */
  listen: string;
  /** Each `--to`, in order: the backends' `forward_to`, round robin's order. */
  to: string[];
  /** `--algorithm`, if given: the frontend's `algorithm`. */
  algorithm?: string;
  /** `--admin`, if given: `[admin] bind_on` (read-only: it has no token). */
  admin?: string;
}

/** Quick mode's config: the TOML a file would hold, and what it validates to. */
export interface QuickConfig {
  /** The equivalent config file's text, for `--print-config`. */
  text: string;
  /** The validated config. */
  config: Config;
}

/**
 * Writes the config file that quick mode's flags stand for.
 *
 * @param flags the flags
 * @returns TOML text that `mini-balancer -c` runs as the flags would
 */
export function quickToml(flags: QuickFlags): string {
  const lines = [
    `# The config of: ${commandLine(flags)}`,
    "[frontend]",
    `bind_on = ${tomlString(flags.listen)}`,
  ];
  if (flags.algorithm !== undefined) lines.push(`algorithm = ${tomlString(flags.algorithm)}`);
  for (const to of flags.to) {
    lines.push("", "[[frontend.backend]]", `forward_to = ${tomlString(to)}`);
  }
  if (flags.admin !== undefined) lines.push("", "[admin]", `bind_on = ${tomlString(flags.admin)}`);
  return lines.join("\n") + "\n";
}

/**
 * Builds and validates quick mode's config.
 *
 * @param flags the flags
 * @returns the TOML and the validated config
 * @throws {TypeError} naming the flag, with the message the file's key
 * would get: `--to must be host:port: current value is "x"`
 */
export function quickConfig(flags: QuickFlags): QuickConfig {
  const text = quickToml(flags);
  try {
    return { text, config: parseConfig(text, QUICK_SOURCE) };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new TypeError(`${flagOf(error.path)} ${error.problem}`, { cause: error });
  }
}

/** The flag that wrote a config path: `frontend.backend[1].forward_to` is `--to`. */
function flagOf(path: string): string {
  if (path.startsWith("frontend.backend")) return "--to";
  if (path === "frontend.algorithm") return "--algorithm";
  if (path.startsWith("admin")) return "--admin";
  // bind_on, and the rules that span the frontend (a UDP frontend's backends).
  return "--listen";
}

/** The command line the flags read as, for the TOML's first line. */
function commandLine(flags: QuickFlags): string {
  const words = ["mini-balancer", "--listen", flags.listen];
  for (const to of flags.to) words.push("--to", to);
  if (flags.algorithm !== undefined) words.push("--algorithm", flags.algorithm);
  if (flags.admin !== undefined) words.push("--admin", flags.admin);
  // Quoted with escapes: a line break in a flag would end the comment early.
  return words.map((word) => /^[\w.:[\]@/-]+$/.test(word) ? word : tomlString(word)).join(" ");
}

/**
 * A TOML basic string. JSON's escapes are TOML's, except that TOML also
 * forbids a raw DEL.
 */
function tomlString(value: string): string {
  return JSON.stringify(value).replace(/\u007f/g, "\\u007F");
}
