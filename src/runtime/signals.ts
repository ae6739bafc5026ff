/**
 * SIGINT and SIGTERM (stop) and SIGHUP (reload) through `node:process`,
 * which Bun and Deno both implement (Deno maps it onto its signal
 * listeners), and the end of a worker's supervisor (its standard input).
 *
 * @module
 */
import process from "node:process";

/**
 * How soon after a signal the same signal again is a copy of it rather than
 * a second request: a terminal's Ctrl-C reaches every process of its
 * foreground group, so the balancer under `npm start`, `npx` or `deno task`
 * hears it from the terminal and once more from the process that started it,
 * which passes its own copy on (as it must for a `kill` aimed at it alone).
 */
const COPY_MS = 250;

/**
 * Calls `stop` on each SIGINT or SIGTERM until unregistered; a repeat of
 * the same signal within {@linkcode COPY_MS} of the last one that called it
 * is taken for a copy and ignored.
 *
 * @param stop what to run on a signal
 * @returns a function that removes the listeners
 */
export function onShutdownSignal(stop: () => void): () => void {
  const ignoringCopies = (): () => void => {
    let last = -Infinity;
    return () => {
      const now = performance.now();
      if (now - last < COPY_MS) return;
      last = now;
      stop();
    };
  };
  const onInt = ignoringCopies();
  const onTerm = ignoringCopies();
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  return () => {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
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
 * Calls `line` for each line of standard input: the control lines a
 * worker's supervisor writes (its admin listener first, then backend
 * health as the supervisor's prober finds it).
 *
 * @param line what to run for each line, without its newline
 * @returns a function that stops listening
 */
export function onControlLine(line: (text: string) => void): () => void {
  const stdin = process.stdin;
  const decoder = new TextDecoder();
  let text = "";
  const data = (chunk: Uint8Array | string) => {
    text += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    for (let newline = text.indexOf("\n"); newline >= 0; newline = text.indexOf("\n")) {
      const one = text.slice(0, newline);
      text = text.slice(newline + 1);
      line(one);
    }
  };
  stdin.on("data", data);
  stdin.resume();
  return () => void stdin.off("data", data);
}
