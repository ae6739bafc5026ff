/**
 * The first message of a PostgreSQL client (frontend/backend protocol 3),
 * enough to tell PostgreSQL from other protocols on a shared port. Pure: it
 * reads the first 8 bytes.
 *
 * @module
 */

/** Which first message a PostgreSQL client sent. */
export type PostgresRequest = "ssl" | "gssenc" | "cancel" | "startup";

/** The answer of {@linkcode parsePostgres} for the bytes received so far. */
export type PostgresParse =
  /** A prefix of a possible first message: wait for more bytes. */
  | { readonly status: "incomplete" }
  /** Not a PostgreSQL first message; `reason` says why, for logs. */
  | { readonly status: "invalid"; readonly reason: string }
  /** A PostgreSQL client; `request` is its first message, `length` that message's declared length. */
  | { readonly status: "done"; readonly request: PostgresRequest; readonly length: number };

/** The first 8 bytes read: a 32-bit length, then a 32-bit code. */
export const POSTGRES_HEADER_BYTES = 8;

/** The longest StartupMessage we take for one: PostgreSQL itself refuses more than 10000 bytes. */
const MAX_STARTUP = 10_000;

interface Shape {
  readonly request: PostgresRequest;
  readonly code: number;
  readonly minLength: number;
  readonly maxLength: number;
}

/**
 * The first messages a client sends. StartupMessage: protocol 3.0 (every
 * libpq), or 3.2 (libpq 18 with `max_protocol_version=latest`).
 */
const SHAPES: readonly Shape[] = [
  { request: "ssl", code: 80877103, minLength: 8, maxLength: 8 },
  { request: "gssenc", code: 80877104, minLength: 8, maxLength: 8 },
  { request: "cancel", code: 80877102, minLength: 16, maxLength: 16 },
  { request: "startup", code: 196608, minLength: 8, maxLength: MAX_STARTUP },
  { request: "startup", code: 196610, minLength: 8, maxLength: MAX_STARTUP },
];

/** Whether the first `n` bytes (n <= 8) could begin a message of this shape. */
function _fits(bytes: Uint8Array, n: number, shape: Shape): boolean {
  // A length's bytes, known so far, bound the length from both sides.
  let low = 0;
  let high = 0;
  for (let i = 0; i < 4; i++) {
    const byte = i < n ? bytes[i]! : -1;
    low = low * 256 + (byte < 0 ? 0 : byte);
    high = high * 256 + (byte < 0 ? 255 : byte);
  }
  if (high < shape.minLength || low > shape.maxLength) return false;
  for (let i = 4; i < n; i++) {
    if (bytes[i] !== (shape.code >>> (8 * (7 - i)) & 255)) return false;
  }
  return true;
}

/**
 * Reads a PostgreSQL client's first 8 bytes: an SSLRequest (length 8, code
 * 80877103), a GSSENCRequest (8, 80877104), a CancelRequest (16, 80877102)
 * or a StartupMessage (protocol 3.0 or 3.2, length 8 to 10000). Every byte
 * is checked as it arrives. Version 2 startups (PostgreSQL before 7.4) are
 * invalid.
 *
 * @param bytes everything received on the connection so far
 * @returns incomplete, invalid with a reason, or done with the request
 */
export function parsePostgres(bytes: Uint8Array): PostgresParse {
  const n = Math.min(bytes.length, POSTGRES_HEADER_BYTES);
  const shape = SHAPES.find((candidate) => _fits(bytes, n, candidate));
  if (shape === undefined) {
    return {
      status: "invalid",
      reason: "not PostgreSQL: no SSLRequest, GSSENCRequest, CancelRequest or protocol 3 startup",
    };
  }
  if (n < POSTGRES_HEADER_BYTES) return { status: "incomplete" };
  const length = (bytes[0]! << 24 | bytes[1]! << 16 | bytes[2]! << 8 | bytes[3]!) >>> 0;
  return { status: "done", request: shape.request, length };
}
