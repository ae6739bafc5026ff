/**
 * The config schema, declared once with valibot: the keys each table takes,
 * their types, ranges and defaults, and how a valid `[frontend]` becomes a
 * {@linkcode FrontendConfig}. Every issue's message is the problem as the
 * user reads it (`must be a string: current value is 9090`); load.ts adds
 * the file and the field path, and checks the rules across frontends.
 *
 * @module
 */
import { availableParallelism } from "node:os";
import * as v from "valibot";
import { isHostName, parseAddress } from "../address/address.ts";
import { CidrSet, parseCidr } from "../address/cidr.ts";
import {
  type AdminConfig,
  ALGORITHMS,
  type BackendConfig,
  type CertificateConfig,
  type FrontendConfig,
  type HealthConfig,
} from "./config.ts";
import { parseDuration } from "./duration.ts";
import { parseByteSize, parseRate } from "./units.ts";

/** Every default of the config, by table, written the way the file writes them. */
export const DEFAULTS = {
  frontend: {
    name: "default",
    algorithm: "round_robin",
    connect_timeout: "5s",
    when_all_down: "close",
    accept_proxy: false,
    header_timeout: "5s",
    min_ttl: "1s",
    max_ttl: "5m",
  },
  backend: { weight: 1, backup: false },
  health: { interval: "2s", timeout: "1s", rise: 2, fall: 3 },
  admin: { bind_on: "127.0.0.1:9901" },
  workers: 1,
} as const;

/** The largest connection limit accepted in a config. */
export const MAX_CONNECTIONS_LIMIT = 1_000_000;

/** The most retries a frontend may ask for. */
export const MAX_RETRIES = 100;

/**
 * The retries of a frontend with discovered backends and no `retries`:
 * HAProxy's default (the fixed list's "each backend once" has no count).
 */
export const DISCOVERED_RETRIES = 3;

/** The largest backend weight, as in HAProxy. */
export const MAX_WEIGHT = 256;

/** The shortest time between two probes of one backend. */
export const MIN_HEALTH_INTERVAL_MS = 10;

/** The largest `rise` and `fall` of a health check. */
export const MAX_HEALTH_COUNT = 100;

/**
 * Renders a config value for a message: strings quoted, tables and arrays
 * named rather than dumped.
 *
 * @param value a value from the TOML document
 * @returns e.g. `"5s"`, `9090`, `a table`
 */
function show(value: unknown): string {
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
function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

/** A message that ends in the value at fault, as every value error does. */
function withValue(problem: string) {
  return (issue: v.BaseIssue<unknown>) => `${problem}: current value is ${show(issue.input)}`;
}

const STRING = v.string(withValue("must be a string"));
const BOOLEAN = v.boolean(withValue("must be true or false"));

/**
 * A table with exactly `entries` as its keys. Unknown keys are reported
 * before anything else, since a misspelt key usually explains a missing one.
 */
function table<const TEntries extends v.ObjectEntries>(
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
function keyItem(input: Record<string, unknown>, key: string): v.ObjectPathItem {
  return { type: "object", origin: "value", input, key, value: input[key] };
}

/** A whole number from `min` to `max`; TOML may give a bigint. */
function integer(min: number, max: number) {
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
const LIMIT = integer(1, MAX_CONNECTIONS_LIMIT);

/** One string from a fixed list. */
function oneOf<const T extends string>(choices: readonly T[]) {
  return v.pipe(STRING, v.picklist(choices, withValue(`must be one of ${choices.join(", ")}`)));
}

/**
 * A duration such as "5s", in milliseconds, at least `min`: a zero timeout
 * would race the very thing it times, so only queue_timeout takes 0.
 */
function duration(min = 1) {
  return v.pipe(
    STRING,
    v.rawTransform<string, number>(({ dataset, addIssue, NEVER }) => {
      const current = `current value is ${show(dataset.value)}`;
      let ms: number;
      try {
        ms = parseDuration(dataset.value);
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
function parsed<T>(parse: (text: string) => T, input: v.GenericSchema<unknown> = STRING) {
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
function address(options: { allowPortZero: boolean }) {
  return parsed((text) => ({ written: text, endpoint: parseAddress(text, options) }));
}

/**
 * A DNS server: an IP address and port (a name would need a resolver of its
 * own). Every refusal says so from the start, with what else is wrong.
 */
const RESOLVER = parsed((text) => {
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
});

/** `discover`: "srv:" and an SRV name; the output is the name. */
const DISCOVER = parsed((text) => {
  const name = text.startsWith("srv:") ? text.slice(4).replace(/\.$/, "") : "";
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(name)) {
    throw new TypeError('must be "srv:" and an SRV name, as in "srv:_web._tcp.service.consul"');
  }
  return name;
});

/** A list of IP ranges (`10.0.0.0/8`, `::1`), ready to match addresses against. */
const CIDRS = v.pipe(
  v.array(parsed(parseCidr), withValue('must be an array of IP ranges such as ["10.0.0.0/8"]')),
  v.transform((ranges) => new CidrSet(ranges)),
);

/** A bandwidth: a size string ("10MiB") or a whole number of bytes. */
const BYTES_PER_SECOND = parsed(
  parseByteSize,
  v.custom<string | number | bigint>(
    (value) => ["string", "number", "bigint"].includes(typeof value),
    withValue('must be a size such as "10MiB" or a number of bytes'),
  ),
);

/** A TLS server name or a `*.` wildcard over a domain. */
const SERVER_NAME = v.pipe(
  STRING,
  v.regex(
    /^(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
    withValue('must be a server name such as "api.example.com" or "*.example.com"'),
  ),
  v.toLowerCase(),
);

/** A non-empty list of server names. */
const SERVER_NAMES = v.pipe(
  v.array(SERVER_NAME, withValue('must be an array of server names such as ["api.example.com"]')),
  v.minLength(1, "must list at least one server name"),
);

/** File permissions written in octal, as chmod takes them ("0660"). */
const FILE_MODE = v.pipe(
  STRING,
  v.regex(/^0?[0-7]{3}$/, withValue('must be octal permissions such as "0660"')),
  v.transform((text) => parseInt(text, 8)),
);

/** One certificate of `tls`: files are read by loadConfig, so PEM texts start empty. */
const CERTIFICATE = v.pipe(
  table({
    cert: STRING,
    key: STRING,
    names: v.optional(SERVER_NAMES),
  }, {
    notTable: withValue('must be a table such as { cert = "cert.pem", key = "key.pem" }'),
    required: {
      cert: "is required: the certificate file (PEM)",
      key: "is required: the private key file (PEM)",
    },
  }),
  v.transform((raw): CertificateConfig => ({
    certFile: raw.cert,
    keyFile: raw.key,
    names: raw.names ?? [],
    cert: "",
    key: "",
  })),
);

/** `tls`: one certificate table, or an array of them chosen by SNI. */
const TLS = v.pipe(
  // Chosen by shape, so that an issue keeps its path (`tls.key`, `tls[1].cert`).
  v.lazy((input) =>
    Array.isArray(input)
      ? v.pipe(v.array(CERTIFICATE), v.minLength(1, "must list at least one certificate"))
      : v.pipe(CERTIFICATE, v.transform((certificate) => [certificate]))
  ),
  v.transform((certificates) => ({ certificates })),
);

/** A frontend's name: it appears in logs, so it stays a plain word. */
const NAME = v.pipe(
  STRING,
  v.regex(/^[A-Za-z0-9_.-]+$/, withValue("must be letters, digits, '_', '.' or '-'")),
);

const BACKEND = table({
  name: v.optional(STRING),
  forward_to: address({ allowPortZero: false }),
  weight: v.optional(integer(1, MAX_WEIGHT), DEFAULTS.backend.weight),
  max_connections: v.optional(LIMIT),
  backup: v.optional(BOOLEAN, DEFAULTS.backend.backup),
  send_proxy: v.optional(oneOf(["v1", "v2"] as const)),
}, { notTable: "must be a table" });

function toBackendConfig(backend: v.InferOutput<typeof BACKEND>): BackendConfig {
  return {
    name: backend.name ?? backend.forward_to.written,
    address: backend.forward_to.written,
    forwardTo: backend.forward_to.endpoint,
    weight: backend.weight,
    maxConnections: backend.max_connections,
    backup: backend.backup,
    sendProxy: backend.send_proxy,
  };
}

/** The `backend` array of a frontend; `table` is how the file spells it. */
function backends(table: string) {
  return v.pipe(
    v.array(BACKEND, `must be an array of tables ([[${table}]])`),
    v.minLength(1, "must list at least one backend"),
    v.transform((list) => list.map(toBackendConfig)),
  );
}

const HEALTH = table({
  interval: v.optional(duration(MIN_HEALTH_INTERVAL_MS), DEFAULTS.health.interval),
  timeout: v.optional(duration(), DEFAULTS.health.timeout),
  rise: v.optional(integer(1, MAX_HEALTH_COUNT), DEFAULTS.health.rise),
  fall: v.optional(integer(1, MAX_HEALTH_COUNT), DEFAULTS.health.fall),
  send: v.optional(STRING),
  expect: v.optional(STRING),
}, { notTable: withValue("must be a table") });

function toHealthConfig(health: v.InferOutput<typeof HEALTH>, active: boolean): HealthConfig {
  return {
    active,
    intervalMs: health.interval,
    timeoutMs: health.timeout,
    rise: health.rise,
    fall: health.fall,
    send: health.send,
    expect: health.expect,
  };
}

/** Health checking when a frontend has no [health] table: passive only. */
export const PASSIVE_HEALTH: HealthConfig = toHealthConfig(v.parse(HEALTH, {}), false);

/**
 * One frontend table: `[frontend]` (the original's single one, named
 * "default" unless it says otherwise) or an entry of `[[frontends]]`.
 */
function frontend(kind: "frontend" | "frontends") {
  const entries = {
    name: kind === "frontend" ? v.optional(NAME, DEFAULTS.frontend.name) : NAME,
    bind_on: address({ allowPortZero: true }),
    algorithm: v.optional(oneOf(ALGORITHMS), DEFAULTS.frontend.algorithm),
    connect_timeout: v.optional(duration(), DEFAULTS.frontend.connect_timeout),
    idle_timeout: v.optional(duration()),
    max_lifetime: v.optional(duration()),
    retries: v.optional(integer(0, MAX_RETRIES)),
    max_connections: v.optional(LIMIT),
    // 0: a connection past max_connections is closed at once, not queued.
    queue_timeout: v.optional(duration(0)),
    max_connections_per_client: v.optional(LIMIT),
    health: v.optional(HEALTH),
    when_all_down: v.optional(oneOf(["close", "reset"] as const), DEFAULTS.frontend.when_all_down),
    accept_proxy: v.optional(BOOLEAN, DEFAULTS.frontend.accept_proxy),
    trusted: v.optional(CIDRS),
    header_timeout: v.optional(duration(), DEFAULTS.frontend.header_timeout),
    sni: v.optional(SERVER_NAMES),
    tls: v.optional(TLS),
    allow: v.optional(CIDRS),
    deny: v.optional(CIDRS),
    connection_rate_per_client: v.optional(parsed(parseRate)),
    max_bytes_per_second: v.optional(BYTES_PER_SECOND),
    unix_mode: v.optional(FILE_MODE),
    discover: v.optional(DISCOVER),
    resolver: v.optional(RESOLVER),
    min_ttl: v.optional(duration(0), DEFAULTS.frontend.min_ttl),
    max_ttl: v.optional(duration(), DEFAULTS.frontend.max_ttl),
    backend: v.optional(backends(`${kind}.backend`)),
  };
  return v.pipe(
    table(entries, {
      notTable: kind === "frontend" ? withValue("must be a table") : "must be a table",
    }),
    v.rawCheck(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      const { backend, discover, min_ttl, max_ttl } = dataset.value;
      if (backend === undefined && discover === undefined) {
        addIssue({
          message: `is required: add at least one [[${kind}.backend]], or discover`,
          path: [keyItem(dataset.value, "backend")],
        });
      } else if (min_ttl > max_ttl) {
        addIssue({
          message: `must not be longer than max_ttl (${max_ttl}ms): current value is ${min_ttl}ms`,
          path: [keyItem(dataset.value, "min_ttl")],
        });
      }
    }),
    v.transform((raw): FrontendConfig => ({
      name: raw.name,
      bindOn: raw.bind_on.endpoint,
      algorithm: raw.algorithm,
      backends: raw.backend ?? [],
      connectTimeoutMs: raw.connect_timeout,
      idleTimeoutMs: raw.idle_timeout,
      maxLifetimeMs: raw.max_lifetime,
      whenAllDown: raw.when_all_down,
      health: raw.health === undefined ? PASSIVE_HEALTH : toHealthConfig(raw.health, true),
      maxConnections: raw.max_connections,
      // Defaults that depend on other keys.
      queueTimeoutMs: raw.queue_timeout ?? raw.connect_timeout,
      maxConnectionsPerClient: raw.max_connections_per_client,
      retries: raw.retries ??
        (raw.discover !== undefined || raw.backend!.some((b) => isHostName(b.forwardTo.hostname))
          ? DISCOVERED_RETRIES
          : raw.backend!.length - 1),
      acceptProxy: raw.accept_proxy,
      trusted: raw.trusted,
      headerTimeoutMs: raw.header_timeout,
      sni: raw.sni,
      tls: raw.tls,
      allow: raw.allow,
      deny: raw.deny,
      connectionRatePerClient: raw.connection_rate_per_client,
      maxBytesPerSecond: raw.max_bytes_per_second,
      unixMode: raw.unix_mode,
      discover: raw.discover,
      resolver: raw.resolver,
      minTtlMs: raw.min_ttl,
      maxTtlMs: raw.max_ttl,
    })),
  );
}

/**
 * `[[frontend.backend]]` after `[[frontends]]` makes a `[frontend]` of its
 * own in TOML; without this the user would read "frontend.bind_on is
 * required" about a table they never meant to write.
 */
const MISPLACED_BACKENDS = v.rawCheck<Record<string, unknown>>(({ dataset, addIssue }) => {
  if (!dataset.typed) return;
  const { frontend, frontends } = dataset.value;
  if (frontends === undefined || !isTable(frontend)) return;
  if (frontend.bind_on !== undefined || frontend.backend === undefined) return;
  addIssue({
    message: "is outside any [frontend]: " +
      "the backends of [[frontends]] go under [[frontends.backend]]",
    path: [keyItem(dataset.value, "frontend"), keyItem(frontend, "backend")],
  });
});

/** The most worker processes a config may ask for. */
export const MAX_WORKERS = 256;

/** `workers`: a number of processes, or "auto" for one per core. */
const WORKERS = v.pipe(
  v.custom<number | bigint | string>(
    (value) => value === "auto" || typeof value === "number" || typeof value === "bigint",
    withValue(`must be a whole number from 1 to ${MAX_WORKERS}, or "auto"`),
  ),
  v.check(
    (value) =>
      value === "auto" || (Number.isInteger(Number(value)) && Number(value) >= 1 &&
        Number(value) <= MAX_WORKERS),
    withValue(`must be a whole number from 1 to ${MAX_WORKERS}, or "auto"`),
  ),
  v.transform((value) =>
    value === "auto" ? Math.min(MAX_WORKERS, availableParallelism()) : Number(value)
  ),
);

/**
 * The keys whose values are secrets: load.ts strips the value from any
 * message about them, whatever check wrote it.
 */
export const SECRET_KEYS: ReadonlySet<string> = new Set(["admin.token"]);

/** The shortest admin token accepted, in `token` or on `token_file`'s first line. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * A secret: its messages say what is wrong, never what it is (the generic
 * STRING's "current value is …" is cut by load.ts, as for every SECRET_KEYS).
 */
const TOKEN = v.pipe(
  STRING,
  v.check(
    (token) => token.length >= MIN_TOKEN_LENGTH,
    (issue) =>
      `must be at least ${MIN_TOKEN_LENGTH} characters: it has ${String(issue.input).length}`,
  ),
);

/** A host name a client may use to reach the admin listener (`Host`), lowercase. */
const HOST_NAME = v.pipe(
  STRING,
  v.regex(
    /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/,
    withValue('must be a host name such as "lb.internal", without a port'),
  ),
  v.transform((name) => name.toLowerCase().replace(/\.$/, "")),
);

/** The `[admin]` table: the admin listener and its token. */
const ADMIN = v.pipe(
  table({
    bind_on: v.optional(address({ allowPortZero: true }), DEFAULTS.admin.bind_on),
    token: v.optional(TOKEN),
    token_file: v.optional(STRING),
    allowed_hosts: v.optional(
      v.array(HOST_NAME, withValue('must be an array of host names such as ["lb.internal"]')),
      [],
    ),
  }, { notTable: withValue("must be a table") }),
  v.transform((raw): AdminConfig => ({
    bindOn: typeof raw.bind_on === "string"
      ? parseAddress(raw.bind_on, { allowPortZero: true })
      : raw.bind_on.endpoint,
    token: raw.token,
    tokenFile: raw.token_file,
    allowedHosts: raw.allowed_hosts,
  })),
);

/**
 * The whole document: an optional `[frontend]` and optional `[[frontends]]`.
 * That at least one is there, and that frontends do not clash, is checked
 * after it (see load.ts).
 */
export const CONFIG_SCHEMA = v.pipe(
  v.custom<Record<string, unknown>>(isTable, "must be a table"),
  MISPLACED_BACKENDS,
  table({
    frontend: v.optional(frontend("frontend")),
    frontends: v.optional(
      v.array(frontend("frontends"), "must be an array of tables ([[frontends]])"),
    ),
    admin: v.optional(ADMIN),
    workers: v.optional(WORKERS, DEFAULTS.workers),
    resolver: v.optional(RESOLVER),
  }, { notTable: "must be a table" }),
);
