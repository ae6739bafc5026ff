/**
 * What {@linkcode main} needs from its runtime: the sockets, the signals,
 * how to start this program again for workers, and where lines go. The
 * entry files fill it in.
 *
 * @module
 */
import type { Net, SpawnProcess } from "../runtime/types.ts";

/** What {@linkcode main} needs from its runtime. */
export interface MainOptions {
  /** The runtime's sockets. */
  net: Net;
  /**
   * Registers `stop` to run on SIGINT and SIGTERM; returns an unregister
   * function. The first call starts a graceful stop, a second cuts at once.
   */
  onShutdownSignal(stop: () => void): () => void;
  /**
   * Registers `reload` to run on SIGHUP; returns an unregister function.
   * Without it, the config is never reloaded.
   */
  onReloadSignal?(reload: () => void): () => void;
  /**
   * The command that starts this program again (the runtime and the script,
   * or the executable), for the workers of `workers = N`. Without it, a
   * config with more than one worker is refused.
   */
  selfCommand?: readonly string[];
  /** Starts a process: how the supervisor starts its workers. */
  spawn?: SpawnProcess;
  /**
   * Says what to do to start workers when this process lacks something for
   * them (a permission, a flag), or undefined when it lacks nothing: asked
   * once, before the supervisor binds or starts anything, so that
   * `workers = N` stops at start with one line.
   */
  workersUnavailable?(): string | undefined;
  /**
   * Registers `gone` to run when a worker's supervisor is gone (its end of
   * the worker's standard input closed); returns an unregister function.
   */
  onParentGone?(gone: () => void): () => void;
  /**
   * Calls `line` for each control line a worker's supervisor writes on its
   * standard input (see workers/worker.ts); returns a function that
   * stops listening.
   */
  onControlLine?(line: (text: string) => void): () => void;
  /**
   * Reads an environment variable (systemd's `NOTIFY_SOCKET` and
   * `WATCHDOG_*`): undefined when it is unset, or cannot be read without
   * asking (Deno without `--allow-env` must not prompt at start).
   *
   * @default `process.env`
   */
  environment?(name: string): string | undefined;
  /** Writes a line to standard output. @default console.log */
  stdout?: (line: string) => void;
  /** Writes a line to standard error. @default console.error */
  stderr?: (line: string) => void;
}
