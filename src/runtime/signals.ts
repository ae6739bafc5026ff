/**
 * SIGINT and SIGTERM through `node:process`, which Bun and Deno both
 * implement (Deno maps it onto `Deno.addSignalListener`).
 *
 * @module
 */
import process from "node:process";

/**
 * Calls `stop` on each SIGINT or SIGTERM until unregistered.
 *
 * @param stop what to run on a signal
 * @returns a function that removes the listeners
 */
export function onShutdownSignal(stop: () => void): () => void {
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return () => {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  };
}
