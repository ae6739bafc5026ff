/**
 * SIGINT and SIGTERM (stop) and SIGHUP (reload) through `node:process`,
 * which Bun and Deno both implement (Deno maps it onto its signal
 * listeners), and the end of a worker's supervisor (its standard input).
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

/**
 * Calls `gone` once the process's standard input ends: a worker's
 * supervisor holds the other end of that pipe, so its end means the
 * supervisor exited (even killed), and the worker should stop.
 *
 * @param gone what to run
 * @returns a function that stops listening
 */
export function onParentGone(gone: () => void): () => void {
  const stdin = process.stdin;
  let called = false;
  const once = () => {
    if (called) return;
    called = true;
    gone();
  };
  stdin.on("end", once);
  stdin.on("close", once);
  stdin.resume();
  return () => {
    stdin.off("end", once);
    stdin.off("close", once);
    stdin.pause();
  };
}

/**
 * Reads the first line of standard input: the control line a worker's
 * supervisor writes (its admin port and token). Resolves undefined when
 * the input ends first.
 *
 * @returns the line, without its newline
 */
export function readControlLine(): Promise<string | undefined> {
  const stdin = process.stdin;
  return new Promise((resolve) => {
    let text = "";
    const data = (chunk: Uint8Array | string) => {
      text += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
      const newline = text.indexOf("\n");
      if (newline < 0) return;
      done(text.slice(0, newline));
    };
    const end = () => done(undefined);
    const done = (line: string | undefined) => {
      stdin.off("data", data);
      stdin.off("end", end);
      resolve(line);
    };
    stdin.on("data", data);
    stdin.on("end", end);
    stdin.resume();
  });
}
