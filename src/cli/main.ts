/**
 * The command line: `mini-balancer [-c FILE] [-v…]`, as the original had it,
 * and `mini-balancer check -c FILE`, which validates without serving.
 * The entry files call {@linkcode main} with their runtime's sockets and
 * signals; only they exit the process.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Balancer, ListenError, type ReloadSummary } from "../balancer/balancer.ts";
import { ConfigError } from "../config/config_error.ts";
import { parseDuration } from "../config/duration.ts";
import { loadConfig } from "../config/load.ts";
import { formatAddress } from "../config/address.ts";
import type { AdminConfig, Config } from "../config/config.ts";
import { combineEvents, NO_EVENTS } from "../balancer/events.ts";
import { logEvents } from "../balancer/log_events.ts";
import { DASHBOARD_HTML } from "../admin/dashboard.ts";
import { Metrics } from "../admin/metrics.ts";
import {
  type AdminServer,
  type AdminSettings,
  type LastReload,
  type ReloadResult,
  startAdmin,
} from "../admin/server.ts";
import { startWorkersAdmin, type WorkerAdmin } from "../admin/workers_admin.ts";
import { randomBytes } from "node:crypto";
import { discoveryLines, openTokenFile, summarizeConfig, validLine } from "../config/summary.ts";
import { discovers, Discovery, DiscoveryError } from "../discovery/discovery.ts";
import { systemLookup } from "../discovery/dns.ts";
import { isHostName } from "../config/address.ts";
import { type LiveWorker, supervise } from "../supervisor.ts";
import { type HealthState, Prober } from "../balancer/prober.ts";
import { watchFile } from "../config/watch.ts";
import {
  configureLogging,
  formatJson,
  getLog,
  LOG_FORMATS,
  type LogFormat,
  OPERATOR_CATEGORY,
  ROOT_CATEGORY,
} from "../log.ts";
import type { Endpoint, Net, SpawnProcess } from "../runtime/types.ts";
import { VERSION } from "../version.ts";

/** The config file read when `-c` is not given, as in the original. */
export const DEFAULT_CONFIG_FILE = "mini-balancer.toml";

const USAGE = `mini-balancer ${VERSION}: a layer-4 (TCP) load balancer

Usage: mini-balancer [check] [OPTIONS]

Commands:
  (none)                     serve the config until SIGINT or SIGTERM
  check                      load and validate the config, print what it holds,
                             bind nothing; exit 0 when it is valid, 1 when not

Options:
  -c, --config FILE          config file [default: ${DEFAULT_CONFIG_FILE}]
  -v, --verbose              log more: -v info, -vv debug, -vvv trace [default: warnings]
      --log-format FORMAT    text or json [default: text]
      --grace-period TIME    how long open connections may finish on SIGINT/SIGTERM
                             (or on a frontend a reload removed) before they are
                             cut, e.g. 500ms, 10s [default: 5s]
      --watch                reload the config whenever its file changes, as on SIGHUP
  -h, --help                 print this help
      --version              print the version`;

/** Parsed command-line options. */
export interface CliOptions {
  /** What to do: serve (the default) or check the config and exit. */
  command: "serve" | "check";
  /** The config file. @default "mini-balancer.toml" */
  config: string;
  /** How many times -v was given. */
  verbosity: number;
  /** The log line format. @default "text" */
  logFormat: LogFormat;
  /** Grace period on shutdown, in milliseconds. @default 5000 */
  graceMs: number;
  /** `--watch` was given: reload when the config file changes. */
  watch: boolean;
  /** `--help` was given. */
  help: boolean;
  /** `--version` was given. */
  version: boolean;
  /** This process is worker N of a supervisor (`--worker N`, internal). */
  worker?: number;
}

/**
 * Parses command-line arguments.
 *
 * @param args the arguments, without the program name
 * @returns the options
 * @throws {TypeError} on an unknown option or a bad value
 */
export function parseCli(args: string[]): CliOptions {
  // The command comes first, as in `nginx -t`'s successors (`caddy validate`).
  const command = args[0] === "check" ? "check" : "serve";
  const { values } = parseArgs({
    args: command === "check" ? args.slice(1) : args,
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: "string", short: "c", default: DEFAULT_CONFIG_FILE },
      verbose: { type: "boolean", short: "v", multiple: true },
      "log-format": { type: "string", default: "text" },
      "grace-period": { type: "string", default: "5s" },
      watch: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
      version: { type: "boolean", default: false },
      // Internal: the supervisor starts each worker with its index.
      worker: { type: "string" },
    },
  });
  const worker = values.worker === undefined ? undefined : Number(values.worker);
  if (worker !== undefined && !(Number.isInteger(worker) && worker >= 0)) {
    throw new TypeError(`--worker must be a worker's index: current value is "${values.worker}"`);
  }
  const logFormat = values["log-format"] as LogFormat;
  if (!LOG_FORMATS.includes(logFormat)) {
    throw new TypeError(`--log-format must be text or json: current value is "${logFormat}"`);
  }
  const grace = values["grace-period"];
  let graceMs: number;
  try {
    graceMs = parseDuration(grace);
  } catch (error) {
    throw new TypeError(
      `--grace-period ${(error as Error).message}: current value is ${JSON.stringify(grace)}`,
    );
  }
  return {
    command,
    config: values.config,
    verbosity: values.verbose?.length ?? 0,
    logFormat,
    graceMs,
    watch: values.watch,
    help: values.help,
    version: values.version,
    worker,
  };
}

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
   * standard input (see {@linkcode WorkerControl}); returns a function that
   * stops listening.
   */
  onControlLine?(line: (text: string) => void): () => void;
  /** Writes a line to standard output. @default console.log */
  stdout?: (line: string) => void;
  /** Writes a line to standard error. @default console.error */
  stderr?: (line: string) => void;
}

/**
 * Runs mini-balancer until a shutdown signal.
 *
 * @param args command-line arguments, without the program name
 * @param options the runtime's sockets and signals
 * @returns the process exit code: 0 after a clean stop, 1 when the config or
 * a bind fails, 2 on a command-line error
 */
export async function main(args: string[], options: MainOptions): Promise<number> {
  const { stdout = console.log, stderr = console.error } = options;
  let cli: CliOptions;
  try {
    cli = parseCli(args);
  } catch (error) {
    stderr(`mini-balancer: ${(error as Error).message}`);
    stderr("Try 'mini-balancer --help' for more information.");
    return 2;
  }
  if (cli.help) {
    stdout(USAGE);
    return 0;
  }
  if (cli.version) {
    stdout(`mini-balancer ${VERSION}`);
    return 0;
  }
  if (cli.command === "check") return await check(cli, options, stdout, stderr);
  configureLogging({ verbosity: cli.verbosity, format: cli.logFormat, worker: cli.worker });
  const log = getLog("main");
  // Watch from before the load, so that no change made once the balancer
  // listens is missed while the watcher gets going; a change before the
  // balancer exists is applied right after it starts.
  const change: { reload?: (source: ReloadSource) => void; early: boolean } = { early: false };
  const stopWatching = cli.watch
    ? watchFile(
      cli.config,
      () => change.reload === undefined ? (change.early = true) : void change.reload(WATCH),
      (error) => log.warn("stopped watching the config file", { reason: error.message }),
    )
    : () => {};
  let balancer: Balancer;
  let metrics: Metrics | undefined;
  let config: Config;
  let control: WorkerControl | undefined;
  try {
    config = await loadConfig(cli.config);
    if (config.workers > 1 && cli.worker === undefined) {
      stopWatching();
      return await superviseWorkers(config, args, cli, options, stderr);
    }
    if (cli.worker !== undefined) {
      control = await workerControl(options);
      if (control.probes) config = withoutProbes(config);
    }
    metrics = config.admin === undefined ? undefined : new Metrics(options.net.runtime);
    const events = metrics === undefined ? undefined : combineEvents(logEvents(), metrics);
    balancer = await Balancer.start(config, {
      net: options.net,
      events,
      reusePort: cli.worker !== undefined,
    });
    control?.apply(balancer);
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
  let lastReload: LastReload | null = null;
  const probes = control?.probes === true;
  let admin: AdminServer | undefined;
  const warnTokenFile = tokenFileWarner();
  // A worker's listener is its supervisor's business: the [admin] of the
  // file is the supervisor's listener, which applies it.
  const applyAdmin = (next: Config) =>
    cli.worker !== undefined ? Promise.resolve([]) : updateAdmin(admin, next.admin, warnTokenFile);
  const reload = reloader(balancer, cli, config.workers, probes, applyAdmin, (result) => {
    metrics?.reloaded(result.success);
    lastReload = {
      success: result.success,
      at: new Date().toISOString(),
      summary: result.error ?? "applied",
    };
  });
  // A worker serves its admin API on the loopback port and with the token
  // its supervisor gave it; the supervisor's listener answers for all.
  const adminConfig = cli.worker === undefined || config.admin === undefined
    ? config.admin
    : control?.admin;
  if (adminConfig !== undefined) {
    const { bindOn } = adminConfig;
    if (cli.worker === undefined) warnTokenFile(adminConfig);
    try {
      metrics!.attach(balancer);
      admin = startAdmin({
        ...adminSettings(adminConfig),
        net: options.net,
        balancer,
        metrics: metrics!,
        reload: (peer) => reload({ via: "api", peer }),
        lastReload: () => lastReload,
        dashboard: DASHBOARD_HTML,
        audit: cli.worker === undefined,
      });
      log.info("admin listening", { address: formatAddress(admin.address) });
    } catch (error) {
      await balancer.stop({ graceMs: 0 });
      stopWatching();
      const failure = (error as { code?: string }).code === undefined
        ? (error as Error)
        : new ListenError(formatAddress(bindOn), "admin", error, "the admin listener");
      stderr(startFailure(failure as ListenError, cli.logFormat));
      return 1;
    }
  }
  const stopReloading = options.onReloadSignal?.(() => void reload(SIGHUP)) ?? (() => {});
  change.reload = reload;
  if (change.early) reload(WATCH);
  let signals = 0;
  let unregister = () => {};
  let unwatchParent = () => {};
  await new Promise<void>((stopped) => {
    const stop = () => {
      signals++;
      if (signals === 1) {
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
  log.info("stopped");
  return 0;
}

/**
 * What a worker hears from its supervisor on its standard input, one JSON
 * object a line: first `{ adminPort?, adminToken?, probes }` (its admin
 * listener, and whether the supervisor probes the backends for everyone),
 * then `{ frontend, backend, up }` for each backend's health.
 */
interface WorkerControl {
  /** Its admin listener, on loopback, when the config has `[admin]`. */
  readonly admin: AdminConfig | undefined;
  /** The supervisor runs the active health checks: this worker runs none. */
  readonly probes: boolean;
  /** Applies the health the supervisor tells, from now on, to `balancer`. */
  apply(balancer: Balancer): void;
}

/** Waits for a worker's first control line and listens for the rest. */
function workerControl(options: MainOptions): Promise<WorkerControl> {
  const log = getLog("main");
  return new Promise((resolve) => {
    let target: Balancer | undefined;
    const pending: HealthState[] = [];
    let first = true;
    if (options.onControlLine === undefined) {
      return resolve({ admin: undefined, probes: false, apply() {} });
    }
    options.onControlLine((text) => {
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(text);
      } catch {
        // Never quote it: the first control line carries the internal admin token.
        return log.warn("ignored a control line that is not JSON", { bytes: text.length });
      }
      if (first) {
        first = false;
        const { adminPort, adminToken, probes } = message;
        return resolve({
          admin: typeof adminPort === "number" && typeof adminToken === "string"
            ? {
              bindOn: { hostname: "127.0.0.1", port: adminPort },
              token: adminToken,
              allowedHosts: [],
            }
            : undefined,
          probes: probes === true,
          apply(balancer) {
            target = balancer;
            for (const state of pending.splice(0)) balancer.setHealth(state);
          },
        });
      }
      const state = message as unknown as HealthState;
      if (target === undefined) pending.push(state);
      else target.setHealth(state);
    });
  });
}

/** The config with no active health checks: a worker's, when its supervisor probes. */
function withoutProbes(config: Config): Config {
  return {
    ...config,
    frontends: config.frontends.map((frontend) => ({
      ...frontend,
      health: { ...frontend.health, active: false, remote: frontend.health.active },
    })),
  };
}

/** What asked for a reload, for its log line: a signal, `--watch`, or the API and its peer. */
interface ReloadSource {
  readonly via: "SIGHUP" | "watch" | "api";
  readonly peer?: string;
}

const SIGHUP: ReloadSource = { via: "SIGHUP" };
const WATCH: ReloadSource = { via: "watch" };

/**
 * Loads the config file for a reload; a file that cannot be used, or that
 * changes `workers` (which needs a restart), is logged in one ERROR line.
 *
 * @param file the config file
 * @param workers the running number of workers
 * @param source what asked, for the log line
 * @returns the config, or why it was refused
 */
async function loadForReload(
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

/** The admin listener's settings from its config. */
function adminSettings(admin: AdminConfig): AdminSettings {
  return {
    hostname: admin.bindOn.hostname,
    port: admin.bindOn.port,
    token: admin.token,
    allowedHosts: admin.allowedHosts,
  };
}

/**
 * Applies a reloaded `[admin]` to the running listener: token and hosts at
 * once, a new address bound before the old one closes.
 *
 * @returns what could not be applied, for the reload's summary
 */
async function updateAdmin(
  server: AdminServer | undefined,
  next: AdminConfig | undefined,
  warnTokenFile: (admin: AdminConfig) => void,
): Promise<string[]> {
  if (server === undefined && next === undefined) return [];
  if (server === undefined) return ["[admin] was added: the admin listener starts at a restart"];
  if (next === undefined) return ["[admin] was removed: the admin listener stops at a restart"];
  warnTokenFile(next);
  const failure = await server.update(adminSettings(next));
  return failure === undefined ? [] : [failure];
}

/**
 * Makes the warning of a token file that its group or others may read:
 * once per file for the life of the process, at start or at the reload
 * that names it.
 */
function tokenFileWarner(): (admin: AdminConfig) => void {
  const warned = new Set<string>();
  return ({ tokenFile, tokenFileMode }) => {
    if (tokenFile === undefined || !openTokenFile(tokenFileMode) || warned.has(tokenFile)) return;
    warned.add(tokenFile);
    getLog("main").warn("admin.token_file is readable by group or others: chmod 600 it", {
      file: tokenFile,
      mode: `0${tokenFileMode!.toString(8)}`,
    });
  };
}

/**
 * Runs `workers` copies of this program under a supervisor (see
 * supervisor.ts), each with the same arguments and `--worker N`.
 */
async function superviseWorkers(
  config: Config,
  args: string[],
  cli: CliOptions,
  options: MainOptions,
  stderr: (line: string) => void,
): Promise<number> {
  const workers = config.workers;
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
  let lastReload: LastReload | null = null;
  const reloaded = (result: ReloadResult) => {
    lastReload = {
      success: result.success,
      at: new Date().toISOString(),
      summary: result.error ?? "applied",
    };
  };
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
  prober?.update(config);
  /**
   * Validates the file for a reload, probes what it says and applies its
   * `[admin]` (the workers apply the rest); what of that could not be
   * applied is logged here, once (each worker logs its own outcome).
   */
  const validate = async (source: ReloadSource): Promise<string | undefined> => {
    const next = await loadForReload(cli.config, workers, source);
    if (typeof next === "string") return next;
    prober?.update(next);
    const failures = await updateAdmin(admin, next.admin, warnTokenFile);
    if (failures.length > 0) {
      getLog(OPERATOR_CATEGORY).warn(`reload applied except: ${failures.join("; ")}`, {
        file: cli.config,
        ...source,
      });
    }
    return undefined;
  };
  if (config.admin !== undefined) {
    const { bindOn } = config.admin;
    warnTokenFile(config.admin);
    try {
      admin = startWorkersAdmin({
        ...adminSettings(config.admin),
        net: options.net,
        workers: () => live().flatMap((worker) => worker.admin ?? []),
        validate: (peer) => validate({ via: "api", peer }),
        lastReload: () => lastReload,
        reloaded,
        dashboard: DASHBOARD_HTML,
      });
      log.info("admin listening", { address: formatAddress(admin.address) });
    } catch (error) {
      const failure = (error as { code?: string }).code === undefined
        ? (error as Error)
        : new ListenError(formatAddress(bindOn), "admin", error, "the admin listener");
      stderr(startFailure(failure as ListenError, cli.logFormat));
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
      reloaded(error === undefined ? { success: true } : { success: false, error });
      return error === undefined;
    },
    greet(child) {
      // Its admin listener: a free loopback port and a token of its own.
      let admin: WorkerAdmin | undefined;
      if (config.admin !== undefined) {
        const free = options.net.listen({
          hostname: "127.0.0.1",
          port: 0,
          onConnection: (conn) => conn.close(),
        });
        admin = { port: free.address.port, token: randomBytes(24).toString("hex") };
        free.close();
      }
      child.send(JSON.stringify({
        adminPort: admin?.port,
        adminToken: admin?.token,
        probes: prober !== undefined,
      }));
      for (const state of prober?.states() ?? []) child.send(JSON.stringify(state));
      return Promise.resolve(admin);
    },
    onWorkers: (list) => (live = list),
    onShutdownSignal: options.onShutdownSignal,
    onReloadSignal: options.onReloadSignal,
    watch: cli.watch
      ? (reload) =>
        watchFile(
          cli.config,
          reload,
          (error) => log.warn("stopped watching the config file", { reason: error.message }),
        )
      : undefined,
  });
  prober?.stop();
  await admin?.close();
  return code;
}

/**
 * Makes the reload of SIGHUP, `--watch` and `POST /api/reload`: reloads the
 * config file and applies it as a difference. A file that cannot be used is
 * logged in one ERROR line and changes nothing. Reloads run one after the
 * other, never overlapping; `done` hears each result.
 */
function reloader(
  balancer: Balancer,
  cli: CliOptions,
  workers: number,
  probes: boolean,
  applyAdmin: (config: Config) => Promise<string[]>,
  done: (result: ReloadResult) => void,
): (source: ReloadSource) => Promise<ReloadResult> {
  const log = getLog(OPERATOR_CATEGORY);
  let queue: Promise<unknown> = Promise.resolve();
  const reload = async (source: ReloadSource): Promise<ReloadResult> => {
    const loaded = await loadForReload(cli.config, workers, source);
    if (typeof loaded === "string") return { success: false, error: loaded };
    // A worker whose supervisor probes runs no checks of its own.
    const config = probes ? withoutProbes(loaded) : loaded;
    const summary = await balancer.reload(config, { graceMs: cli.graceMs });
    summary.failures.push(...await applyAdmin(loaded));
    logReloaded(cli.config, summary, source);
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

/**
 * Loads and validates the config, resolves its names once, prints what it
 * holds and what they gave, then the verdict; binds nothing. A name that
 * would stop the start (its frontend has no other backend) fails the check
 * too, with its one line and nothing else.
 */
async function check(
  cli: CliOptions,
  options: MainOptions,
  stdout: (line: string) => void,
  stderr: (line: string) => void,
): Promise<number> {
  const net = options.net;
  try {
    const config = await loadConfig(cli.config);
    await checkStartable(config, cli.config, options);
    // Printed once everything passed, the verdict last: a failure prints its one line only.
    const lines = summarizeConfig(config);
    for (const frontend of config.frontends.filter(discovers)) {
      const discovery = new Discovery(frontend, net, { changed: () => NO_CHANGES, resolved() {} });
      try {
        await discovery.start();
      } finally {
        discovery.stop();
      }
      lines.push(...discoveryLines(frontend.name, discovery.found()));
    }
    for (const line of lines) stdout(line);
    stdout(validLine(config, cli.config));
    return 0;
  } catch (error) {
    if (!(error instanceof ConfigError || error instanceof DiscoveryError)) throw error;
    stderr(startFailure(error, cli.logFormat));
    return 1;
  }
}

/** How long `check` waits for a `bind_on` name to resolve. */
const BIND_LOOKUP_MS = 5000;

/**
 * What would stop a start and can be known without binding, beyond what
 * `loadConfig` checks: `workers` on a build that cannot start processes,
 * and a `bind_on` name that does not resolve.
 *
 * @throws {ConfigError} naming the field
 */
async function checkStartable(config: Config, file: string, options: MainOptions): Promise<void> {
  if (config.workers > 1 && (options.selfCommand === undefined || options.spawn === undefined)) {
    throw new ConfigError({
      file,
      path: "workers",
      problem: `is ${config.workers}, but workers are not available on ${options.net.runtime} ` +
        "(this build cannot start worker processes): set workers = 1",
    });
  }
  const lacking = config.workers > 1 ? options.workersUnavailable?.() : undefined;
  if (lacking !== undefined) {
    throw new ConfigError({
      file,
      path: "workers",
      problem: `is ${config.workers}, but workers cannot start: ${lacking}, or set workers = 1`,
    });
  }
  const binds: [path: string, owner: string, address: Endpoint][] = config.frontends.map((
    frontend,
  ) => ["", `frontend "${frontend.name}": bind_on`, frontend.bindOn]);
  if (config.admin !== undefined) binds.push(["admin.bind_on", "", config.admin.bindOn]);
  for (const [path, owner, address] of binds) {
    if (address.path !== undefined || !isHostName(address.hostname)) continue;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const problem = await Promise.race([
      systemLookup(address.hostname).then(() => undefined, (error) => (error as Error).message),
      new Promise<string>((resolve) => {
        timer = setTimeout(
          () => resolve(`${address.hostname} did not resolve within ${BIND_LOOKUP_MS / 1000}s`),
          BIND_LOOKUP_MS,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    if (problem === undefined) continue;
    throw new ConfigError({
      file,
      path,
      problem: `${owner}${owner === "" ? "" : " "}cannot be bound: ${problem}: current value is ` +
        JSON.stringify(formatAddress(address)),
    });
  }
}

/** What a Discovery reports as changes when nobody keeps a pool. */
const NO_CHANGES = { added: [], removed: [] };

/**
 * The one line a failed start prints: plain text, or under `--log-format
 * json` a JSON line like every other log line, so a log pipeline sees it.
 */
function startFailure(
  error: ConfigError | ListenError | DiscoveryError,
  format: LogFormat,
): string {
  if (format === "text") return `mini-balancer: ${error.message}`;
  const properties = error instanceof ConfigError
    ? { file: error.file, path: error.path, problem: error.problem }
    : { address: error.address, frontend: error.frontend };
  return formatJson({
    category: [ROOT_CATEGORY, "main"],
    level: "error",
    message: [error.message],
    rawMessage: error.message,
    timestamp: Date.now(),
    properties,
  }).trimEnd();
}
