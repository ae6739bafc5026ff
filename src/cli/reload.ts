/**
 * The reload of SIGHUP, `--watch` and `POST /api/reload`: the config file
 * loaded again and refused in one ERROR line when it cannot be used, the
 * queue that runs reloads one after the other, the line of a reload
 * applied, the last reload's record the admin status shows, and the
 * config file's watcher.
 *
 * @module
 */
import type { Balancer, ReloadSummary } from "../balancer/balancer.ts";
import { ConfigError } from "../config/config_error.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/config.ts";
import { watchFile } from "../config/watch.ts";
import type { LastReload, ReloadResult } from "../admin/server.ts";
import { getLog, OPERATOR_CATEGORY } from "../log.ts";
import { withoutProbes } from "../workers/worker.ts";

/** What asked for a reload, for its log line: a signal, `--watch`, or the API and its peer. */
export interface ReloadSource {
  readonly via: "SIGHUP" | "watch" | "api";
  readonly peer?: string;
}

export const SIGHUP: ReloadSource = { via: "SIGHUP" };
/** A reload asked by `--watch`. */
export const WATCH: ReloadSource = { via: "watch" };

/**
 * Loads the config file for a reload; a file that cannot be used, or that
 * changes `workers` (which needs a restart), is logged in one ERROR line.
 *
 * @param file the config file
 * @param workers the running number of workers
 * @param source what asked, for the log line
 * @returns the config, or why it was refused
 */
export async function loadForReload(
  file: string,
  workers: number,
  source: ReloadSource,
): Promise<Config | string> {
  const log = getLog(OPERATOR_CATEGORY);
  let config: Config;
  try {
    config = await loadConfig(file);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    log.error(`reload rejected: ${error.message}`, {
      file: error.file,
      path: error.path,
      problem: error.problem,
      ...source,
    });
    return error.message;
  }
  if (config.workers === workers) return config;
  const problem = `workers changed from ${workers} to ${config.workers}: that needs a restart`;
  log.error(`reload rejected: ${problem}`, { file, path: "workers", problem, ...source });
  return problem;
}

/**
 * Logs a reload that was applied, once, at the default verbosity: INFO
 * with what changed, or WARN `reload applied except: …` naming what could
 * not be applied (which stays as it was).
 */
function logReloaded(file: string, summary: ReloadSummary, source: ReloadSource): void {
  const log = getLog(OPERATOR_CATEGORY);
  const list = (names: string[]) => names.length === 0 ? undefined : names.join(",");
  const fields = {
    file,
    ...source,
    frontends_added: list(summary.frontendsAdded),
    frontends_removed: list(summary.frontendsRemoved),
    frontends_changed: list(summary.frontendsChanged),
    backends_added: list(summary.backendsAdded),
    backends_removed: list(summary.backendsRemoved),
  };
  if (summary.failures.length === 0) log.info("reloaded config", fields);
  else log.warn(`reload applied except: ${summary.failures.join("; ")}`, fields);
}

/** What {@linkcode reloader} reloads, and how. */
export interface ReloaderOptions {
  /** The running balancer. */
  readonly balancer: Balancer;
  /** The config file. */
  readonly file: string;
  /** The grace period of a frontend a reload removes, in milliseconds. */
  readonly graceMs: number;
  /** The running number of workers: a file that changes it is refused. */
  readonly workers: number;
  /** The supervisor probes for this worker: it runs no checks of its own. */
  readonly probes: boolean;
  /** Applies the file's `[admin]`: returns what could not be applied. */
  applyAdmin(config: Config): Promise<string[]>;
  /** Hears each reload's outcome. */
  done(result: ReloadResult): void;
  /** Hears that a reload starts (its turn in the queue came): systemd's `RELOADING=1`. */
  starting?(): void;
}

/**
 * Makes the reload of SIGHUP, `--watch` and `POST /api/reload`: reloads the
 * config file and applies it as a difference. A file that cannot be used is
 * logged in one ERROR line and changes nothing. Reloads run one after the
 * other, never overlapping; `done` hears each result.
 */
export function reloader(
  options: ReloaderOptions,
): (source: ReloadSource) => Promise<ReloadResult> {
  const { balancer, file, graceMs, workers, probes, applyAdmin, done, starting } = options;
  const log = getLog(OPERATOR_CATEGORY);
  let queue: Promise<unknown> = Promise.resolve();
  const reload = async (source: ReloadSource): Promise<ReloadResult> => {
    starting?.();
    const loaded = await loadForReload(file, workers, source);
    if (typeof loaded === "string") return { success: false, error: loaded };
    // A worker whose supervisor probes runs no checks of its own.
    const config = probes ? withoutProbes(loaded) : loaded;
    const summary = await balancer.reload(config, { graceMs });
    summary.failures.push(...await applyAdmin(loaded));
    logReloaded(file, summary, source);
    return { success: true, summary };
  };
  return (source) => {
    const result = queue.then(() => reload(source)).catch((error): ReloadResult => {
      log.error("reload failed", { reason: (error as Error).message, ...source });
      return { success: false, error: (error as Error).message };
    }).then((result) => {
      done(result);
      return result;
    });
    queue = result;
    return result;
  };
}

/** The last reload's outcome, kept for the admin status. */
export interface ReloadRecord {
  /** Keeps `result` as the last reload, timed now. */
  record(result: ReloadResult): void;
  /** The last reload, or null before the first. */
  last(): LastReload | null;
}

/** Makes an empty {@linkcode ReloadRecord}. */
export function reloadRecord(): ReloadRecord {
  let last: LastReload | null = null;
  return {
    record(result) {
      last = {
        success: result.success,
        at: new Date().toISOString(),
        summary: result.error ?? "applied",
      };
    },
    last: () => last,
  };
}

/**
 * Watches the config file for `--watch`: calls `changed` after each change,
 * and logs one WARN line if the watch stops.
 *
 * @returns a function that stops watching
 */
export function watchConfig(file: string, changed: () => void): () => void {
  const log = getLog("main");
  return watchFile(
    file,
    changed,
    (error) => log.warn("stopped watching the config file", { reason: error.message }),
  );
}
