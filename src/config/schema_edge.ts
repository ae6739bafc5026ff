/**
 * The edge keys of a frontend's schema: access lists, bandwidth, TLS
 * certificates and server names, and a Unix socket's file mode.
 *
 * @module
 */
import * as v from "valibot";
import { CidrSet, parseCidr } from "../address/cidr.ts";
import type { CertificateConfig } from "./config.ts";
import { lazily, parsed, STRING, table, withValue } from "./schema_values.ts";
import { parseByteSize } from "./units.ts";

/** A list of IP ranges (`10.0.0.0/8`, `::1`), ready to match addresses against. */
export const CIDRS = lazily(() =>
  v.pipe(
    v.array(parsed(parseCidr), withValue('must be an array of IP ranges such as ["10.0.0.0/8"]')),
    v.transform((ranges) => new CidrSet(ranges)),
  )
);

/** A bandwidth: a size string ("10MiB") or a whole number of bytes. */
export const BYTES_PER_SECOND = lazily(() =>
  parsed(
    parseByteSize,
    v.custom<string | number | bigint>(
      (value) => ["string", "number", "bigint"].includes(typeof value),
      withValue('must be a size such as "10MiB" or a number of bytes'),
    ),
  )
);

/** A TLS server name or a `*.` wildcard over a domain. */
export const SERVER_NAME = lazily(() =>
  v.pipe(
    STRING,
    v.regex(
      /^(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
      withValue('must be a server name such as "api.example.com" or "*.example.com"'),
    ),
    v.toLowerCase(),
  )
);

/** A non-empty list of server names. */
export const SERVER_NAMES = lazily(() =>
  v.pipe(
    v.array(SERVER_NAME, withValue('must be an array of server names such as ["api.example.com"]')),
    v.minLength(1, "must list at least one server name"),
  )
);

/** A non-empty list of HTTP `Host` names (`http_host`), written as server names are. */
export const HOST_NAMES = v.pipe(
  v.array(SERVER_NAME, withValue('must be an array of host names such as ["example.com"]')),
  v.minLength(1, "must list at least one host name"),
);

/** An ALPN protocol name as a client offers it (`h2`, `http/1.1`): 1 to 255 printable bytes. */
const ALPN_NAME = v.pipe(
  STRING,
  v.regex(/^[\x21-\x7e]{1,255}$/, withValue('must be an ALPN protocol name such as "h2"')),
);

/** A non-empty list of ALPN protocol names. */
export const ALPN_NAMES = v.pipe(
  v.array(ALPN_NAME, withValue('must be an array of ALPN protocol names such as ["h2"]')),
  v.minLength(1, "must list at least one protocol name"),
);

/** File permissions written in octal, as chmod takes them ("0660"). */
export const FILE_MODE = lazily(() =>
  v.pipe(
    STRING,
    v.regex(/^0?[0-7]{3}$/, withValue('must be octal permissions such as "0660"')),
    v.transform((text) => parseInt(text, 8)),
  )
);

/** One certificate of `tls`: files are read by loadConfig, so PEM texts start empty. */
export const CERTIFICATE = lazily(() =>
  v.pipe(
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
  )
);

/** `tls`: one certificate table, or an array of them chosen by SNI. */
export const TLS = lazily(() =>
  v.pipe(
    // Chosen by shape, so that an issue keeps its path (`tls.key`, `tls[1].cert`).
    v.lazy((input) =>
      Array.isArray(input)
        ? v.pipe(v.array(CERTIFICATE), v.minLength(1, "must list at least one certificate"))
        : v.pipe(CERTIFICATE, v.transform((certificate) => [certificate]))
    ),
    v.transform((certificates) => ({ certificates })),
  )
);
