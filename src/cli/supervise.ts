/**
 * `workers = N` from the command line: checks that workers can start and
 * that every address binds, then runs the supervisor (workers/supervisor.ts)
 * with the one admin listener and the one prober for all workers, and the
 * reload validated here before the workers hear of it.
 *
 * @module
 */
import { Balancer, ListenError } from "../balancer/balancer.ts";
import { NO_EVENTS } from "../balancer/events.ts";
import { logEvents } from "../balancer/log_events.ts";
import { formatAddress } from "../address/address.ts";
import type { Config } from "../config/config.ts";
import { DiscoveryError } from "../discovery/discovery.ts";
import type { AdminServer } from "../admin/server.ts";
import { readWorkerReport } from "../workers/worker.ts";
import { isWorkerReadyReport, notifyEnvironment, SdNotify } from "../workers/sd_notify.ts";
import type { ChildProcessHandle } from "../runtime/types.ts";
import { Prober } from "../workers/prober.ts";
import { withApiBackends } from "../workers/api_state.ts";
import type { OverlayState } from "../balancer/upstream/runtime_backends.ts";
import type { ConfigError } from "../config/config_error.ts";
import { type LiveWorker, supervise } from "../workers/supervisor.ts";
import { getLog, OPERATOR_CATEGORY } from "../log.ts";
import { randomBytes } from "node:crypto";
import { adminListenFailure, adminSettings, tokenFileWarner, updateAdmin } from "./admin.ts";
import { udpWorkersUnavailable } from "./check.ts";
import { startFailure } from "./failure.ts";
import type { MainOptions } from "./main_options.ts";
import type { CliOptions } from "./options.ts";
import { loadForReload, reloadRecord, type ReloadSource, SIGHUP, watchConfig } from "./reload.ts";

/**
 * Runs `workers` copies of this program under a supervisor, each with the
 * same arguments and `--worker N`.
 *
 * @param config the config, loaded
 * @param args the command line, passed on to each worker
 * @returns the exit code
 */
export async function superviseWorkers(
  config: Config,
  args: string[],
  cli: CliOptions,
  options: MainOptions,
  stderr: (line: string) => void,
): Promise<number> {
  const workers = config.workers;
  // What a worker writes on its standard output besides its reports.
  const stdout = options.stdout ?? console.log;
  if (options.selfCommand === undefined || options.spawn === undefined) {
    stderr(
      `mini-balancer: workers = ${workers} needs SO_REUSEPORT and a way to start this program ` +
        `again, which this runtime (${options.net.runtime}) lacks: set workers = 1`,
    );
    return 1;
  }
  const lacking = options.workersUnavailable?.();
  if (lacking !== undefined) {
    stderr(`mini-balancer: workers = ${workers} cannot start: ${lacking}, or set workers = 1`);
    return 1;
  }
  const udp = udpWorkersUnavailable(config, options.net);
  if (udp !== undefined) {
    stderr(`mini-balancer: ${udp.path} ${udp.problem}`);
    return 1;
  }
  // What the admin API changed before a restart: checked before anything binds.
  const stateFile = config.admin?.stateFile;
  let apiState: OverlayState | undefined;
  if (stateFile !== undefined) {
    const { checkStateFile, readStateFile } = await import("../admin/state_file.ts");
    try {
      checkStateFile(stateFile, config.frontends);
      apiState = readStateFile(stateFile);
    } catch (error) {
      stderr(startFailure(error as ConfigError, cli.logFormat));
      return 1;
    }
  }
  let probed = config;
  // Bind every address once, as a worker will, so that a taken port stops
  // the start with one line rather than workers failing in a loop.
  try {
    const probe = await Balancer.start(config, {
      net: options.net,
      events: NO_EVENTS,
      reusePort: true,
    });
    await probe.stop({ graceMs: 0 });
  } catch (error) {
    if (!(error instanceof ListenError || error instanceof DiscoveryError)) throw error;
    stderr(startFailure(error, cli.logFormat));
    return 1;
  }
  const log = getLog("main");
  const lastReload = reloadRecord();
  let admin: AdminServer | undefined;
  const warnTokenFile = tokenFileWarner();
  let live: () => LiveWorker[] = () => [];
  // One prober for all workers: the supervisor's, telling each change.
  const prober = Prober.wanted(config)
    ? new Prober(options.net, logEvents(), (state) => {
      const line = JSON.stringify(state);
      for (const worker of live()) worker.child.send(line);
    })
    : undefined;
  prober?.update(withApiBackends(config, apiState));
  const notify = readiness(
    SdNotify.fromEnvironment(options.net, notifyEnvironment(options.environment)),
    config,
    () => live(),
  );
  /**
   * Validates the file for a reload, probes what it says and applies its
   * `[admin]` (the workers apply the rest); what of that could not be
   * applied is logged here, once (each worker logs its own outcome).
   */
  const validateFile = async (source: ReloadSource): Promise<string | undefined> => {
    const next = await loadForReload(cli.config, workers, source);
    if (typeof next === "string") return next;
    probed = next;
    prober?.update(withApiBackends(next, apiState));
    const failures = await updateAdmin(admin, next.admin, warnTokenFile);
    if (failures.length > 0) {
      getLog(OPERATOR_CATEGORY).warn(`reload applied except: ${failures.join("; ")}`, {
        file: cli.config,
        ...source,
      });
    }
    return undefined;
  };
  /** {@linkcode validateFile}, told to systemd: SIGHUP, `--watch` and the API alike. */
  const validate = async (source: ReloadSource): Promise<string | undefined> => {
    notify.reloading();
    let error: string | undefined = "the reload failed";
    try {
      error = await validateFile(source);
      return error;
    } finally {
      notify.reloaded(error === undefined);
    }
  };
  if (config.admin !== undefined) {
    const { bindOn } = config.admin;
    warnTokenFile(config.admin);
    // The admin listener's code is loaded only for a config with [admin].
    const [{ startWorkersAdmin }, { DASHBOARD_HTML }] = await Promise.all([
      import("../workers/admin.ts"),
      import("../admin/dashboard.ts"),
    ]);
    try {
      admin = startWorkersAdmin({
        ...adminSettings(config.admin),
        net: options.net,
        workers: () => live().flatMap((worker) => worker.admin ?? []),
        validate: (peer) => validate({ via: "api", peer }),
        lastReload: lastReload.last,
        reloaded: lastReload.record,
        dashboard: DASHBOARD_HTML,
        async saved(state) {
          apiState = state;
          prober?.update(withApiBackends(probed, state));
          if (stateFile !== undefined) {
            (await import("../admin/state_file.ts")).writeStateFile(stateFile, state);
          }
        },
      });
      log.info("admin listening", { address: formatAddress(admin.address) });
    } catch (error) {
      stderr(startFailure(adminListenFailure(error, bindOn), cli.logFormat));
      prober?.stop();
      return 1;
    }
  }
  const code = await supervise({
    workers,
    command: options.selfCommand,
    spawn: options.spawn,
    // A worker must not watch the file itself: the supervisor validates first.
    args: args.filter((arg) => arg !== "--watch"),
    async validate() {
      const error = await validate(SIGHUP);
      lastReload.record(error === undefined ? { success: true } : { success: false, error });
      return error === undefined;
    },
    greet(child, reported) {
      // Its admin listener: a token of its own, and the loopback port it
      // binds itself and reports on its standard output.
      const token = config.admin === undefined ? undefined : randomBytes(24).toString("hex");
      child.onLine((line) => {
        if (isWorkerReadyReport(line)) return notify.workerReady(child);
        const port = readWorkerReport(line);
        if (port === undefined) stdout(line);
        else if (token !== undefined) reported({ port, token });
      });
      child.send(
        JSON.stringify({ adminToken: token, probes: prober !== undefined, state: apiState }),
      );
      for (const state of prober?.states() ?? []) child.send(JSON.stringify(state));
    },
    onWorkers: (list) => (live = list),
    onShutdownSignal: (stop) =>
      options.onShutdownSignal(() => {
        notify.stopping();
        stop();
      }),
    onReloadSignal: options.onReloadSignal,
    watch: cli.watch ? (reload) => watchConfig(cli.config, reload) : undefined,
  });
  prober?.stop();
  await admin?.close();
  await notify.flushed();
  return code;
}

/** How long a reload waits for its workers before `READY=1` goes anyway. */
const RELOAD_READY_MS = 10_000;

/** systemd's notifications from the supervisor, which hears its workers'. */
interface Readiness {
  /** A worker said it serves (at its start or after a reload). */
  workerReady(child: ChildProcessHandle): void;
  /** A reload starts. */
  reloading(): void;
  /** The reload was validated (the workers reload next) or refused. */
  reloaded(accepted: boolean): void;
  /** Shutdown. */
  stopping(): void;
  /** Resolves once every message sent so far has been handed over. */
  flushed(): Promise<void>;
}

/**
 * `READY=1` once every worker serves; after a reload once every worker that
 * was live has reloaded (or after {@linkcode RELOAD_READY_MS}), at once for
 * a file refused. Without `NOTIFY_SOCKET`, it only counts.
 */
function readiness(
  notify: SdNotify | undefined,
  config: Config,
  live: () => LiveWorker[],
): Readiness {
  const started = new Set<ChildProcessHandle>();
  let ready = false;
  let waiting: Set<ChildProcessHandle> | undefined;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  const frontends = config.frontends.length;
  const status = () =>
    `${live().length}/${config.workers} workers, ` +
    `${frontends} frontend${frontends === 1 ? "" : "s"}`;
  const reloadDone = () => {
    clearTimeout(deadline);
    waiting = undefined;
    notify?.ready(status());
  };
  return {
    workerReady(child) {
      if (!ready) {
        started.add(child);
        // A worker that died before it served, and its replacement, count once.
        const workers = live();
        if (workers.length < config.workers || !workers.every((w) => started.has(w.child))) return;
        ready = true;
        started.clear();
        notify?.ready(status());
        notify?.start(status);
        return;
      }
      waiting?.delete(child);
      if (waiting?.size === 0) reloadDone();
    },
    reloading: () => notify?.reloading(),
    reloaded(accepted) {
      if (!accepted || live().length === 0) return reloadDone();
      waiting = new Set(live().map((worker) => worker.child));
      clearTimeout(deadline);
      deadline = setTimeout(reloadDone, RELOAD_READY_MS);
    },
    stopping() {
      clearTimeout(deadline);
      notify?.stopping();
    },
    flushed: () => notify?.flushed() ?? Promise.resolve(),
  };
}
