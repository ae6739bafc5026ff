/**
 * SIGINT and SIGTERM (stop) and SIGHUP (reload) through `node:process`,
 * which Bun and Deno both implement (Deno maps it onto its signal listeners).
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

/**
 * Calls `reload` on each SIGHUP until unregistered. Without a listener the
 * process would die of the signal, as HAProxy's and nginx's operators do not
 * expect.
 *
 * @param reload what to run on a signal
 * @returns a function that removes the listener
 */
export function onReloadSignal(reload: () => void): () => void {
  process.on("SIGHUP", reload);
  return () => void process.off("SIGHUP", reload);
}
