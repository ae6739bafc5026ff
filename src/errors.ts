/**
 * Socket errors as short reasons for log lines and messages: one table from
 * the `code` an adapter sets (`ECONNREFUSED`, …) to the words a log shows.
 *
 * @module
 */
const REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available on this host",
  EACCES: "permission denied",
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset by peer",
  ECONNABORTED: "connection aborted",
  EPIPE: "broken pipe",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
};

/**
 * Turns a socket error into a short reason for a log line or a message.
 *
 * @param error what a {@linkcode Net} call threw or reported
 * @returns e.g. "connection refused"
 */
export function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === "string" && code in REASONS) return REASONS[code]!;
  if (error instanceof Error) return error.message.split("\n")[0]!;
  return String(error);
}
