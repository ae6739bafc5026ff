/**
 * A config written as a program's object rather than a TOML file: the
 * TOML's shape and key names, validated by the same schema with the same
 * one-line messages and field paths.
 *
 * @module
 */
import type { Config } from "./config.ts";
import { ConfigError } from "./config_error.ts";
import { validateDocument } from "./load.ts";
import { isTable, OBJECT_INPUT, show } from "./schema_values.ts";

/**
 * A config as an object: what the TOML file holds, key for key
 * (`frontends`, `bind_on`, `backend`, `forward_to`, …). A duration is a
 * string (`"5s"`) or a whole number of milliseconds (`5000`).
 *
 * @example
 * ```ts
 * import { type ConfigObject, defineConfig } from "mini-balancer";
 *
 * const object: ConfigObject = {
 *   frontends: [{ name: "web", bind_on: "127.0.0.1:7070", backend: [{ forward_to: "127.0.0.1:8080" }] }],
 * };
 * const config = defineConfig(object);
 * ```
 */
export type ConfigObject = Record<string, unknown>;

/** The name messages give a config that came as an object. */
export const OBJECT_CONFIG_NAME = "<object>";

/**
 * Validates a config given as an object, as {@linkcode parseConfig} does a
 * TOML text: the same schema, messages and paths, the file named
 * `"<object>"`. TLS certificate and token files are not read (as with
 * `parseConfig`).
 *
 * @example
 * ```ts
 * import { defineConfig } from "mini-balancer";
 *
 * const config = defineConfig({
 *   frontends: [{
 *     name: "web",
 *     bind_on: "127.0.0.1:7070",
 *     connect_timeout: 2000, // milliseconds, or "2s"
 *     backend: [{ name: "a", forward_to: "127.0.0.1:8080" }],
 *   }],
 * });
 * ```
 *
 * @param object the config, in the TOML's shape
 * @param name the name to report in errors
 * @returns the validated config
 * @throws {ConfigError} naming the field and the problem
 * (`Cannot load config "<object>": frontends[0].connect_timeout must be …`)
 */
export function defineConfig(object: ConfigObject, name = OBJECT_CONFIG_NAME): Config {
  if (!isTable(object)) {
    throw new ConfigError({
      file: name,
      path: "",
      problem: `must be an object: current value is ${show(object)}`,
    });
  }
  return validateDocument(object, name, OBJECT_INPUT).config;
}
