/**
 * What the three datagram adapters share: the errors a bind throws.
 *
 * @module
 */
import { describeAddress } from "./_accept_pause.ts";
import type { DatagramOptions } from "./types.ts";

/**
 * The error a failed UDP bind throws: one line naming the address and the
 * reason, `code` kept (`EADDRINUSE` when the port is taken), the runtime's
 * error as `cause`.
 */
export function bindDatagramError(options: DatagramOptions, error: unknown): Error {
  const code = (error as { code?: unknown } | undefined)?.code;
  const reason = code === "EADDRINUSE"
    ? "the port is taken"
    : error instanceof Error
    ? error.message
    : String(error);
  const where = describeAddress({ hostname: options.hostname, port: options.port });
  const wrapped = new Error(`cannot bind UDP ${where}: ${reason}`, { cause: error });
  if (typeof code === "string") Object.assign(wrapped, { code });
  return wrapped;
}

/**
 * The error of a bind asking for `reusePort` on a runtime that cannot set
 * SO_REUSEPORT on a UDP socket: one line naming the address and why, `code`
 * `ENOTSUP`.
 */
export function reusePortUnsupported(options: DatagramOptions, why: string): Error {
  const where = describeAddress({ hostname: options.hostname, port: options.port });
  const error = new Error(`cannot bind UDP ${where} with reusePort: ${why}`);
  return Object.assign(error, { code: "ENOTSUP" });
}
