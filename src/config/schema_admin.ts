/**
 * The schema of the `[admin]` table: the admin listener, its token (a
 * secret, never shown in a message) and the host names it answers to.
 *
 * @module
 */
import * as v from "valibot";
import { parseAddress } from "../address/address.ts";
import type { AdminConfig } from "./config.ts";
import { DEFAULTS } from "./schema_defaults.ts";
import { address, lazily, STRING, table, withValue } from "./schema_values.ts";

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
const TOKEN = lazily(() =>
  v.pipe(
    STRING,
    v.check(
      (token) => token.length >= MIN_TOKEN_LENGTH,
      (issue) =>
        `must be at least ${MIN_TOKEN_LENGTH} characters: it has ${String(issue.input).length}`,
    ),
  )
);

/** A host name a client may use to reach the admin listener (`Host`), lowercase. */
const HOST_NAME = lazily(() =>
  v.pipe(
    STRING,
    v.regex(
      /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/,
      withValue('must be a host name such as "lb.internal", without a port'),
    ),
    v.transform((name) => name.toLowerCase().replace(/\.$/, "")),
  )
);

/** The `[admin]` table: the admin listener and its token. */
export const ADMIN = lazily(() =>
  v.pipe(
    table({
      bind_on: v.optional(address({ allowPortZero: true }), DEFAULTS.admin.bind_on),
      token: v.optional(TOKEN),
      token_file: v.optional(STRING),
      allowed_hosts: v.optional(
        v.array(HOST_NAME, withValue('must be an array of host names such as ["lb.internal"]')),
        [],
      ),
      state_file: v.optional(STRING),
    }, { notTable: withValue("must be a table") }),
    v.transform((raw): AdminConfig => ({
      bindOn: typeof raw.bind_on === "string"
        ? parseAddress(raw.bind_on, { allowPortZero: true })
        : raw.bind_on.endpoint,
      token: raw.token,
      tokenFile: raw.token_file,
      allowedHosts: raw.allowed_hosts,
      ...(raw.state_file === undefined ? {} : { stateFile: raw.state_file }),
    })),
  )
);
