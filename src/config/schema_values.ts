/**
 * The building blocks of the config schema: value kinds (strings, whole
 * numbers, durations, addresses, resolvers) and tables that refuse unknown
 * keys, each failing with the problem as the user reads it and the value at
 * fault (`must be a string: current value is 9090`).
 *
 * @module
 */
import * as v from "valibot";
import { isHostName, parseAddress, parseBindAddress } from "../address/address.ts";
import { MAX_DURATION_MS, parseDuration } from "./duration.ts";
import { MAX_CONNECTIONS_LIMIT } from "./schema_defaults.ts";

/**
 * Renders a config value for a message: strings quoted, tables and arrays
 * named rather than dumped.
 *
 * @param value a value from the TOML document
 * @returns e.g. `"5s"`, `9090`, `a table`
 */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "an array";
  if (isTable(value)) return "a table";
  return String(value);
}

/**
 * Tells whether a TOML value is a table (not an array nor a date).
 *
 * @param value a value from the TOML document
 * @returns true for a table
 */
export function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

/** A message that ends in the value at fault, as every value error does. */
export function withValue(problem: string) {
  return (issue: v.BaseIssue<unknown>) => `${problem}: current value is ${show(issue.input)}`;
}

/**
 * A schema built on its first use, then kept: a config that leaves out a
 * table (admin, TLS, health, ...) never builds its schema, which keeps an
 * idle process small (building every schema at start makes valibot's
 * constructors hot enough to be compiled: about 3 MiB of RSS on Bun).
 *
 * @param build makes the schema; called at most once
 * @returns a schema that validates as the built one does
 */
export function lazily<const TSchema extends v.GenericSchema>(build: () => TSchema) {
  let schema: TSchema | undefined;
  return v.lazy(() => schema ??= build());
}

/** A string, refused with the value when it is not one. */
export const STRING = v.string(withValue("must be a string"));
/** true or false, refused with the value otherwise. */
export const BOOLEAN = v.boolean(withValue("must be true or false"));

/**
 * A table with exactly `entries` as its keys. Unknown keys are reported
 * before anything else, since a misspelt key usually explains a missing one.
 */
export function table<const TEntries extends v.ObjectEntries>(
  entries: TEntries,
  options: {
    notTable: string | ((issue: v.BaseIssue<unknown>) => string);
    required?: Partial<Record<keyof TEntries, string>>;
  },
) {
  const known = Object.keys(entries);
  const required: Partial<Record<string, string>> = options.required ?? {};
  return v.pipe(
    v.custom<Record<string, unknown>>(isTable, options.notTable),
    v.rawCheck<Record<string, unknown>>(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const key = Object.keys(dataset.value).find((key) => !known.includes(key));
      if (key === undefined) return;
      addIssue({
        message: `is not a known key: expected one of ${known.join(", ")}`,
        path: [keyItem(dataset.value, key)],
      });
    }),
    // Only a missing key reaches this message: the table was checked above.
    v.object(entries, (issue) => required[String(issue.path?.at(-1)?.key)] ?? "is required"),
  );
}

/** The path item of `key` in `input`, for issues raised on a key. */
export function keyItem(input: Record<string, unknown>, key: string): v.ObjectPathItem {
  return { type: "object", origin: "value", input, key, value: input[key] };
}

/** A whole number from `min` to `max`; TOML may give a bigint. */
export function integer(min: number, max: number) {
  return v.pipe(
    v.custom<number | bigint>(
      (value) => typeof value === "number" || typeof value === "bigint",
      withValue("must be a whole number"),
    ),
    v.check((value) => {
      const number = Number(value);
      return Number.isInteger(number) && number >= min && number <= max;
    }, withValue(`must be a whole number from ${min} to ${max}`)),
    v.transform(Number),
  );
}

/** A connection limit. */
export const LIMIT = integer(1, MAX_CONNECTIONS_LIMIT);

/** One string from a fixed list. */
export function oneOf<const T extends string>(choices: readonly T[]) {
  return v.pipe(STRING, v.picklist(choices, withValue(`must be one of ${choices.join(", ")}`)));
}

/**
 * The parse config's `lang` that marks a config given as an object
 * (`defineConfig`), where a duration may also be a number of milliseconds.
 * The schema's messages are all its own, so no message is looked up by it.
 */
export const OBJECT_INPUT = "mini-balancer:object";

/** A duration given as a number: whole milliseconds, at most a timer's longest delay. */
function millisecondsOf(ms: number): number {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new TypeError("must be a whole, non-negative number of milliseconds");
  }
  if (ms > MAX_DURATION_MS) {
    throw new RangeError(`must be at most ${MAX_DURATION_MS}ms (about 24.8 days)`);
  }
  return ms;
}

/**
 * A duration such as "5s" (or, in a config given as an object, a number of
 * milliseconds), in milliseconds, at least `min`: a zero timeout
 * would race the very thing it times, so only queue_timeout takes 0.
 */
export function duration(min = 1) {
  return v.pipe(
    v.unknown(),
    v.rawTransform<unknown, number>(({ dataset, config, addIssue, NEVER }) => {
      const value = dataset.value;
      const current = `current value is ${show(value)}`;
      // A file's durations are strings: a bare `5` reads as seconds to some, ms to others.
      const numbers = config.lang === OBJECT_INPUT;
      if (typeof value !== "string" && (!numbers || typeof value !== "number")) {
        const kind = numbers ? "a duration string or a whole number of milliseconds" : "a string";
        addIssue({ message: `must be ${kind}: ${current}` });
        return NEVER;
      }
      let ms: number;
      try {
        ms = typeof value === "number" ? millisecondsOf(value) : parseDuration(value);
      } catch (error) {
        addIssue({ message: `${(error as Error).message}: ${current}` });
        return NEVER;
      }
      if (ms >= min) return ms;
      addIssue({ message: `must be at least ${min}ms: ${current}` });
      return NEVER;
    }),
  );
}

/**
 * A string read by `parse`, whose TypeError or RangeError message becomes
 * the issue (followed by the value).
 */
export function parsed<T>(parse: (text: string) => T, input: v.GenericSchema<unknown> = STRING) {
  return v.pipe(
    input,
    v.rawTransform<unknown, T>(({ dataset, addIssue, NEVER }) => {
      try {
        return parse(String(dataset.value));
      } catch (error) {
        addIssue({
          message: `${(error as Error).message}: current value is ${show(dataset.value)}`,
        });
        return NEVER;
      }
    }),
  );
}

/** A `host:port` (or `unix:/path`) address, kept as written beside its parsed endpoint. */
export function address(options: { allowPortZero: boolean }) {
  return parsed((text) => ({ written: text, endpoint: parseAddress(text, options) }));
}

/**
 * A frontend's `bind_on`: an address as {@linkcode address} takes it, or
 * `udp:host:port`; kept as written beside its transport and endpoint.
 */
export function bindAddress() {
  return parsed((text) => ({ written: text, ...parseBindAddress(text, { allowPortZero: true }) }));
}

/**
 * A DNS server: an IP address and port (a name would need a resolver of its
 * own). Every refusal says so from the start, with what else is wrong.
 */
export const RESOLVER = lazily(() =>
  parsed((text) => {
    const wanted = 'must be an IP address and port, as in "127.0.0.1:8600"';
    let endpoint: ReturnType<typeof parseAddress>;
    try {
      endpoint = parseAddress(text);
    } catch (error) {
      // "must be host:port: the port is not a number": keep the detail, if any.
      const detail = /^must be host:port: (.*)$/.exec((error as Error).message)?.[1];
      throw new TypeError(detail === undefined ? wanted : `${wanted}: ${detail}`);
    }
    if (endpoint.path !== undefined || isHostName(endpoint.hostname)) throw new TypeError(wanted);
    return endpoint;
  })
);
