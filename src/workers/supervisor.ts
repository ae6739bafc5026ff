/**
 * The supervisor of `workers = N`: the process the user started validates
 * the config once, then runs N worker processes of the same program, each
 * listening on every frontend with SO_REUSEPORT so that the kernel spreads
 * new connections over them. It restarts a worker that dies (with backoff),
 * passes SIGHUP on once the new config validates, and passes SIGINT/SIGTERM
 * on and waits for every worker to finish its grace period. A worker's
 * crash takes only its own connections.
 *
 * @module
 */
import type { WorkerAdmin } from "./admin.ts";
import { getLog } from "../log.ts";
import type { ChildProcessHandle, SpawnProcess } from "../runtime/types.ts";

/** How long a worker waits before its restart: doubling from the first, up to the last. */
const FIRST_BACKOFF_MS = 100;
const LONGEST_BACKOFF_MS = 5000;
/** A worker that ran this long resets its backoff. */
const STEADY_MS = 10_000;

/** What {@linkcode supervise} needs. */
export interface SuperviseOptions {
  /** How many workers. */
  readonly workers: number;
  /** The command that starts this program again (runtime and script, or the executable). */
  readonly command: readonly string[];
  /** The command-line arguments each worker gets (`--worker N` is added). */
  readonly args: readonly string[];
  /** Starts a process (the runtime's). */
  readonly spawn: SpawnProcess;
  /**
   * Loads and validates the config file again (SIGHUP): resolves true when
   * the workers may reload it, false when it was refused (and logged).
   */
  validate(): Promise<boolean>;
  /** Calls `stop` on SIGINT and SIGTERM; returns a function that unregisters. */
  onShutdownSignal(stop: () => void): () => void;
  /** Calls `reload` on SIGHUP; returns a function that unregisters. */
  onReloadSignal?(reload: () => void): () => void;
  /** Calls `reload` when the config file changes (`--watch`); returns a function that stops. */
  watch?(reload: () => void): () => void;
  /**
   * Greets a worker just started: writes its control lines (see worker.ts)
   * and calls `admin` once the worker reports its admin listener, if
   * workers serve one.
   */
  greet?(child: ChildProcessHandle, admin: (admin: WorkerAdmin) => void): void;
  /** Hears how to reach the live workers: their processes and admin listeners. */
  onWorkers?(workers: () => LiveWorker[]): void;
}

/** A live worker, as the supervisor's listeners reach it. */
export interface LiveWorker {
  readonly child: ChildProcessHandle;
  readonly admin: WorkerAdmin | undefined;
}

/** One worker slot: its current process and its restart state. */
interface Slot {
  readonly index: number;
  child: ChildProcessHandle | undefined;
  /** Its admin listener, when workers serve one. */
  admin: WorkerAdmin | undefined;
  startedAt: number;
  backoffMs: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Runs the workers until a shutdown signal and they have all exited.
 *
 * @param options the workers, how to start them, and the signals
 * @returns the exit code: 0 once every worker has stopped
 */
export async function supervise(options: SuperviseOptions): Promise<number> {
  const log = getLog("supervisor");
  let stopping = false;
  let allExited: (() => void) | undefined;
  const slots: Slot[] = Array.from({ length: options.workers }, (_, index) => ({
    index,
    child: undefined,
    admin: undefined,
    startedAt: 0,
    backoffMs: FIRST_BACKOFF_MS,
    timer: undefined,
  }));

  const live = () => slots.filter((slot) => slot.child !== undefined);

  const start = (slot: Slot): void => {
    slot.timer = undefined;
    slot.admin = undefined;
    if (stopping) return;
    let child: ChildProcessHandle;
    try {
      child = options.spawn([...options.command, ...options.args, "--worker", String(slot.index)]);
    } catch (error) {
      log.error("cannot start worker", { worker: slot.index, reason: (error as Error).message });
      slot.timer = setTimeout(() => start(slot), slot.backoffMs);
      slot.backoffMs = Math.min(LONGEST_BACKOFF_MS, slot.backoffMs * 2);
      return;
    }
    slot.child = child;
    slot.startedAt = performance.now();
    options.greet?.(child, (admin) => {
      // A report from a worker since replaced is not the slot's.
      if (slot.child === child) slot.admin = admin;
    });
    log.info("started worker", { worker: slot.index, pid: child.pid });
    child.exited.then(({ code, signal }) => {
      slot.child = undefined;
      slot.admin = undefined;
      if (stopping) {
        if (live().length === 0) allExited?.();
        return;
      }
      if (performance.now() - slot.startedAt >= STEADY_MS) slot.backoffMs = FIRST_BACKOFF_MS;
      const delay = slot.backoffMs;
      slot.backoffMs = Math.min(LONGEST_BACKOFF_MS, slot.backoffMs * 2);
      log.warn("worker exited, restarting it", {
        worker: slot.index,
        pid: child.pid,
        code: code ?? undefined,
        signal: signal ?? undefined,
        restart_in_ms: delay,
      });
      slot.timer = setTimeout(() => start(slot), delay);
    });
  };

  const signalAll = (signal: "SIGTERM" | "SIGHUP"): void => {
    for (const slot of live()) slot.child!.kill(signal);
  };

  let reloading = Promise.resolve();
  const reload = (): void => {
    // One at a time, each validated before a worker hears of it.
    reloading = reloading.then(async () => {
      if (stopping || !await options.validate()) return;
      log.info("reloading workers", { workers: live().length });
      signalAll("SIGHUP");
    }).catch((error) => log.error("reload failed", { reason: (error as Error).message }));
  };

  options.onWorkers?.(() =>
    slots.flatMap((slot) =>
      slot.child === undefined ? [] : [{ child: slot.child, admin: slot.admin }]
    )
  );
  let unregister = () => {};
  const stoppedAll = new Promise<void>((stopped) => {
    allExited = () => {
      unregister();
      stopped();
    };
    // Registered before the first worker starts: a signal during the start
    // stops the workers already there, and no more start.
    unregister = options.onShutdownSignal(() => {
      if (!stopping) log.info("stopping workers", { workers: live().length });
      stopping = true;
      for (const slot of slots) {
        clearTimeout(slot.timer);
        slot.timer = undefined;
      }
      // SIGTERM starts each worker's grace period; a second signal reaches
      // them too, and they cut their connections.
      signalAll("SIGTERM");
      if (live().length === 0) allExited!();
    });
  });
  for (const slot of slots) start(slot);
  if (stopping && live().length === 0) allExited?.();
  const stopReloading = options.onReloadSignal?.(reload) ?? (() => {});
  const stopWatching = options.watch?.(reload) ?? (() => {});
  await stoppedAll;
  stopReloading();
  stopWatching();
  log.info("stopped");
  return 0;
}
