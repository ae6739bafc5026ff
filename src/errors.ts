/**
 * Socket errors, in one table: the class name Deno gives each error, the
 * `code` adapters set (`ECONNREFUSED`, …, as Node and Bun spell them) and the
 * short reason a log line shows. The Deno adapter maps names to codes with
 * {@linkcode codeOfErrorName}; everything else turns codes into words with
 * {@linkcode reasonOf}.
 *
 * @module
 */

/** One socket error: its code, its reason, and Deno's class name when Deno has one. */
interface SocketError {
  readonly code: string;
  readonly reason: string;
  /** The `name` of the error class Deno throws for it (`ConnectionRefused`, …). */
  readonly denoName?: string;
}

const SOCKET_ERRORS: readonly SocketError[] = [
  { code: "EADDRINUSE", reason: "address already in use", denoName: "AddrInUse" },
  {
    code: "EADDRNOTAVAIL",
    reason: "address not available on this host",
    denoName: "AddrNotAvailable",
  },
  { code: "EACCES", reason: "permission denied", denoName: "PermissionDenied" },
  { code: "ECONNREFUSED", reason: "connection refused", denoName: "ConnectionRefused" },
  { code: "ECONNRESET", reason: "connection reset by peer", denoName: "ConnectionReset" },
  { code: "ECONNABORTED", reason: "connection aborted", denoName: "ConnectionAborted" },
  { code: "EPIPE", reason: "broken pipe", denoName: "BrokenPipe" },
  { code: "ENOTFOUND", reason: "host not found", denoName: "NotFound" },
  { code: "EAI_AGAIN", reason: "host name lookup failed" },
  { code: "ETIMEDOUT", reason: "timed out", denoName: "TimedOut" },
  { code: "EHOSTUNREACH", reason: "host unreachable" },
  { code: "ENETUNREACH", reason: "network unreachable" },
  { code: "EMFILE", reason: "out of file descriptors" },
  { code: "ENFILE", reason: "the system is out of file descriptors" },
];

const REASONS = new Map(SOCKET_ERRORS.map((e) => [e.code, e.reason]));
const CODES_BY_NAME = new Map(
  SOCKET_ERRORS.flatMap((e) => e.denoName === undefined ? [] : [[e.denoName, e.code]]),
);

/**
 * Gives the `code` for an error class name, for runtimes whose errors carry
 * a class (`ConnectionRefused`) instead of a code.
 *
 * @param name the error's `name`
 * @returns e.g. "ECONNREFUSED", or undefined for a name not in the table
 */
export function codeOfErrorName(name: string): string | undefined {
  return CODES_BY_NAME.get(name);
}

/**
 * Whether a socket error is a shortage on this host (out of file
 * descriptors: EMFILE, ENFILE) rather than anything the peer did: a backend
 * is not to blame for it, and another backend would fail alike.
 *
 * @param error what a {@linkcode Net} call threw or reported
 */
export function isLocalShortage(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === "EMFILE" || code === "ENFILE";
}

/**
 * Turns a socket error into a short reason for a log line or a message.
 *
 * @param error what a {@linkcode Net} call threw or reported
 * @returns e.g. "connection refused"
 */
export function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === "string") {
    const reason = REASONS.get(code);
    if (reason !== undefined) return reason;
  }
  if (error instanceof Error) return error.message.split("\n")[0]!;
  return String(error);
}
