/**
 * Serving: loads the config, starts the balancer and its admin listener,
 * reloads on SIGHUP, `--watch` and the API, and stops gracefully on SIGINT
 * or SIGTERM. A config with `workers = N` goes to the supervisor instead
 * (supervise.ts); a worker (`--worker N`) serves here too, told by its
 * supervisor over its control channel.
 *
 * @module
 */
import { Balancer, ListenError } from "../balancer/balancer.ts";
import { combineEvents } from "../balancer/events.ts";
import { logEvents } from "../balancer/log_events.ts";
import { ConfigError } from "../config/config_error.ts";
import { formatAddress } from "../address/address.ts";
import type { Config } from "../config/config.ts";
import { loadConfig } from "../config/load.ts";
import { DiscoveryError } from "../discovery/discovery.ts";
import type { Metrics } from "../admin/metrics.ts";
import type { AdminServer } from "../admin/server.ts";
import { getLog } from "../log.ts";
import { adminListenFailure, adminSettings, tokenFileWarner, updateAdmin } from "./admin.ts";
import { startFailure } from "./failure.ts";
import type { MainOptions } from "./main_options.ts";
import type { CliOptions } from "./options.ts";
import { reloader, reloadRecord, type ReloadSource, SIGHUP, WATCH, watchConfig } from "./reload.ts";
import {
  withoutProbes,
  type WorkerControl,
  workerControl,
  workerReport,
} from "../workers/worker.ts";
import {
  notifyEnvironment,
  SdNotify,
  statusLine,
  workerReadyReport,
} from "../workers/sd_notify.ts";

/**
 * Serves the config file until a shutdown signal (logging is configured).
 *
 * @param args the command line, for the workers of `workers = N`
 * @param cli the parsed command line
 * @param options the runtime's sockets and signals
 * @param stderr where a failed start's one line goes
 * @returns the exit code: 0 after a clean stop, 1 when the config or a bind fails
 */
export async function serve(
  args: string[],
  cli: CliOptions,
  options: MainOptions,
  stderr: (line: string) => void,
): Promise<number> {
  const log = getLog("main");
  // Watch from before the load, so that no change made once the balancer
  // listens is missed while the watcher gets going; a change before the
  // balancer exists is applied right after it starts.
  const change: { reload?: (source: ReloadSource) => void; early: boolean } = { early: false };
  const stopWatching = cli.watch
    ? watchConfig(
      cli.config,
      () => change.reload === undefined ? (change.early = true) : void change.reload(WATCH),
    )
    : () => {};
  let balancer: Balancer;
  let metrics: Metrics | undefined;
  let config: Config;
  let control: WorkerControl | undefined;
  try {
    config = cli.quick?.config ?? await loadConfig(cli.config);
    if (config.workers > 1 && cli.worker === undefined) {
      stopWatching();
      // Loaded only here: a single process never holds the supervisor's code.
      const { superviseWorkers } = await import("./supervise.ts");
      return await superviseWorkers(config, args, cli, options, stderr);
    }
    if (cli.worker !== undefined) {
      control = await workerControl(options.onControlLine);
      if (control.probes) config = withoutProbes(config);
    }
    // prom-client and the admin server are loaded only for a config with [admin].
    metrics = config.admin === undefined
      ? undefined
      : new (await import("../admin/metrics.ts")).Metrics(options.net.runtime);
    const events = metrics === undefined ? undefined : combineEvents(logEvents(), metrics);
    // What the admin API changed before a restart: read before anything binds.
    const stateFile = cli.worker === undefined ? config.admin?.stateFile : undefined;
    const stateModule = stateFile === undefined
      ? undefined
      : await import("../admin/state_file.ts");
    const kept = stateFile === undefined ? undefined : stateModule!.readStateFile(stateFile);
    balancer = await Balancer.start(config, {
      net: options.net,
      events,
      reusePort: cli.worker !== undefined,
    });
    control?.apply(balancer);
    try {
      if (kept !== undefined) stateModule!.restoreState(balancer, stateFile!, kept);
    } catch (error) {
      await balancer.stop({ graceMs: 0 });
      throw error;
    }
  } catch (error) {
    stopWatching();
    if (
      error instanceof ConfigError || error instanceof ListenError ||
      error instanceof DiscoveryError
    ) {
      stderr(startFailure(error, cli.logFormat));
      return 1;
    }
    throw error;
  }
  const lastReload = reloadRecord();
  const probes = control?.probes === true;
  // Only the main process speaks to systemd: a worker tells its supervisor.
  const notify = cli.worker === undefined
    ? SdNotify.fromEnvironment(options.net, notifyEnvironment(options.environment))
    : undefined;
  const ready = () =>
    cli.worker === undefined
      ? notify?.ready(statusLine(balancer.status()))
      : (options.stdout ?? console.log)(workerReadyReport());
  let admin: AdminServer | undefined;
  const warnTokenFile = tokenFileWarner();
  // A worker's listener is its supervisor's business: the [admin] of the
  // file is the supervisor's listener, which applies it.
  const applyAdmin = (next: Config) =>
    cli.worker !== undefined ? Promise.resolve([]) : updateAdmin(admin, next.admin, warnTokenFile);
  const reload = reloader({
    balancer,
    file: cli.config,
    graceMs: cli.graceMs,
    workers: config.workers,
    probes,
    applyAdmin,
    done(result) {
      metrics?.reloaded(result.success);
      lastReload.record(result);
      ready();
    },
    starting: () => notify?.reloading(),
  });
  // A worker serves its admin API on a loopback port it binds itself, with
  // the token its supervisor gave it; the supervisor's listener answers for all.
  const adminConfig = cli.worker === undefined || config.admin === undefined
    ? config.admin
    : control?.admin;
  if (adminConfig !== undefined) {
    const { bindOn } = adminConfig;
    if (cli.worker === undefined) warnTokenFile(adminConfig);
    const [{ startAdmin }, { DASHBOARD_HTML }] = await Promise.all([
      import("../admin/server.ts"),
      import("../admin/dashboard.ts"),
    ]);
    try {
      metrics!.attach(balancer);
      admin = startAdmin({
        ...adminSettings(adminConfig),
        net: options.net,
        balancer,
        metrics: metrics!,
        reload: (peer) => reload({ via: "api", peer }),
        lastReload: lastReload.last,
        dashboard: DASHBOARD_HTML,
        audit: cli.worker === undefined,
        ...(cli.worker === undefined && { stateFile: adminConfig.stateFile }),
      });
      log.info("admin listening", { address: formatAddress(admin.address) });
      // A worker's listener took a free loopback port: its supervisor must hear which.
      if (cli.worker !== undefined) {
        (options.stdout ?? console.log)(workerReport(admin.address.port));
      }
    } catch (error) {
      await balancer.stop({ graceMs: 0 });
      stopWatching();
      stderr(startFailure(adminListenFailure(error, bindOn), cli.logFormat));
      return 1;
    }
  }
  const stopReloading = options.onReloadSignal?.(() => void reload(SIGHUP)) ?? (() => {});
  change.reload = reload;
  ready();
  notify?.start(() => statusLine(balancer.status()));
  if (change.early) reload(WATCH);
  let signals = 0;
  let unregister = () => {};
  let unwatchParent = () => {};
  await new Promise<void>((stopped) => {
    const stop = () => {
      signals++;
      if (signals === 1) {
        notify?.stopping();
        log.info("shutting down", { grace_ms: cli.graceMs });
        balancer.stop({ graceMs: cli.graceMs }).then(stopped);
      } else {
        log.warn("second signal: closing every connection now");
        balancer.stop({ graceMs: 0 });
      }
    };
    unregister = options.onShutdownSignal(stop);
    if (cli.worker !== undefined) {
      unwatchParent = options.onParentGone?.(() => {
        log.warn("the supervisor is gone: stopping");
        if (signals === 0) stop();
      }) ?? (() => {});
    }
  });
  unregister();
  unwatchParent();
  stopReloading();
  stopWatching();
  await admin?.close();
  await notify?.flushed();
  log.info("stopped");
  return 0;
}
