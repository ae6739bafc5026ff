/**
 * The command line: `mini-balancer [-c FILE] [-v…]`, as the original had it,
 * and `mini-balancer check -c FILE`, which validates without serving.
 * The entry files call {@linkcode main} with their runtime's sockets and
 * signals; only they exit the process.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Balancer, ListenError } from "./balancer/balancer.ts";
import { ConfigError } from "./config/config_error.ts";
import { parseDuration } from "./config/duration.ts";
import { loadConfig } from "./config/load.ts";
import { formatAddress } from "./config/address.ts";
import type { AdminConfig, Config } from "./config/config.ts";
import { combineEvents, NO_EVENTS } from "./balancer/events.ts";
import { logEvents } from "./balancer/log_events.ts";
import { DASHBOARD_HTML } from "./admin/dashboard.ts";
import { Metrics } from "./admin/metrics.ts";
import { type LastReload, type ReloadResult, startAdmin } from "./admin/server.ts";
import { startWorkersAdmin, type WorkerAdmin } from "./admin/workers_admin.ts";
import type { HttpServer } from "./runtime/types.ts";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { discoveryLines, summarizeConfig, validLine } from "./config/summary.ts";
import { discovers, Discovery, DiscoveryError } from "./discovery/discovery.ts";
import { type LiveWorker, supervise } from "./supervisor.ts";
import { type HealthState, Prober } from "./balancer/prober.ts";
import { watchFile } from "./config/watch.ts";
import {
  configureLogging,
  formatJson,
  getLog,
  LOG_FORMATS,
  type LogFormat,
  ROOT_CATEGORY,
} from "./log.ts";
import type { Net, SpawnProcess } from "./runtime/types.ts";
import { VERSION } from "./version.ts";

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
  if (cli.command === "check") return await check(cli, options.net, stdout, stderr);
  configureLogging({ verbosity: cli.verbosity, format: cli.logFormat, worker: cli.worker });
  const log = getLog("main");
  // Watch from before the load, so that no change made once the balancer
  // listens is missed while the watcher gets going; a change before the
  // balancer exists is applied right after it starts.
  const change: { reload?: () => void; early: boolean } = { early: false };
  const stopWatching = cli.watch
    ? watchFile(
      cli.config,
      () => change.reload === undefined ? (change.early = true) : void change.reload(),
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
  const reload = reloader(balancer, cli, config.workers, probes, (result) => {
    metrics?.reloaded(result.success);
    lastReload = {
      success: result.success,
      at: new Date().toISOString(),
      summary: result.error ?? "applied",
    };
  });
  let admin: HttpServer | undefined;
  // A worker serves its admin API on the loopback port and with the token
  // its supervisor gave it; the supervisor's listener answers for all.
  const adminConfig = cli.worker === undefined || config.admin === undefined
    ? config.admin
    : control?.admin;
  if (adminConfig !== undefined) {
    const { bindOn } = adminConfig;
    try {
      metrics!.attach(balancer);
      admin = startAdmin({
        ...bindOn,
        token: await adminToken(adminConfig),
        net: options.net,
        balancer,
        metrics: metrics!,
        reload,
        lastReload: () => lastReload,
        dashboard: DASHBOARD_HTML,
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
  const stopReloading = options.onReloadSignal?.(() => void reload()) ?? (() => {});
  change.reload = reload;
  if (change.early) reload();
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
        return log.warn("ignored a control line that is not JSON", { line: text });
      }
      if (first) {
        first = false;
        const { adminPort, adminToken, probes } = message;
        return resolve({
          admin: typeof adminPort === "number" && typeof adminToken === "string"
            ? { bindOn: { hostname: "127.0.0.1", port: adminPort }, token: adminToken }
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

/**
 * Loads the config file for a reload; a file that cannot be used, or that
 * changes `workers` (which needs a restart), is logged in one ERROR line.
 *
 * @param file the config file
 * @param workers the running number of workers
 * @returns the config, or why it was refused
 */
async function loadForReload(file: string, workers: number): Promise<Config | string> {
  const log = getLog("main");
  let config: Config;
  try {
    config = await loadConfig(file);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    log.error(`reload rejected: ${error.message}`, {
      file: error.file,
      path: error.path,
      problem: error.problem,
    });
    return error.message;
  }
  if (config.workers === workers) return config;
  const problem = `workers changed from ${workers} to ${config.workers}: that needs a restart`;
  log.error(`reload rejected: ${problem}`, { file, path: "workers", problem });
  return problem;
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
  let live: () => LiveWorker[] = () => [];
  // One prober for all workers: the supervisor's, telling each change.
  const prober = Prober.wanted(config)
    ? new Prober(options.net, logEvents(), (state) => {
      const line = JSON.stringify(state);
      for (const worker of live()) worker.child.send(line);
    })
    : undefined;
  prober?.update(config);
  /** Validates the file for a reload, and probes what it says. */
  const validate = async (): Promise<string | undefined> => {
    const next = await loadForReload(cli.config, workers);
    if (typeof next === "string") return next;
    prober?.update(next);
    return undefined;
  };
  let admin: HttpServer | undefined;
  if (config.admin !== undefined) {
    const { bindOn } = config.admin;
    try {
      admin = startWorkersAdmin({
        ...bindOn,
        token: await adminToken(config.admin),
        net: options.net,
        workers: () => live().flatMap((worker) => worker.admin ?? []),
        validate,
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
      const error = await validate();
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
  done: (result: ReloadResult) => void,
): () => Promise<ReloadResult> {
  const log = getLog("main");
  let queue: Promise<unknown> = Promise.resolve();
  const reload = async (): Promise<ReloadResult> => {
    const loaded = await loadForReload(cli.config, workers);
    if (typeof loaded === "string") return { success: false, error: loaded };
    // A worker whose supervisor probes runs no checks of its own.
    const config = probes ? withoutProbes(loaded) : loaded;
    const summary = await balancer.reload(config, { graceMs: cli.graceMs });
    for (const failure of summary.failures) log.error(`reload could not apply: ${failure}`);
    const list = (names: string[]) => names.length === 0 ? undefined : names.join(",");
    log.info("reloaded config", {
      file: cli.config,
      frontends_added: list(summary.frontendsAdded),
      frontends_removed: list(summary.frontendsRemoved),
      frontends_changed: list(summary.frontendsChanged),
      backends_added: list(summary.backendsAdded),
      backends_removed: list(summary.backendsRemoved),
    });
    return { success: true, summary };
  };
  return () => {
    const result = queue.then(reload).catch((error): ReloadResult => {
      log.error("reload failed", { reason: (error as Error).message });
      return { success: false, error: (error as Error).message };
    }).then((result) => {
      done(result);
      return result;
    });
    queue = result;
    return result;
  };
}

/** Reads the admin token: the config's, or the first line of its token file. */
async function adminToken(admin: AdminConfig): Promise<string | undefined> {
  if (admin.tokenFile === undefined) return admin.token;
  const token = (await readFile(admin.tokenFile, "utf8")).split("\n")[0]!.trim();
  if (token.length < 16) {
    throw new Error(`the token in ${admin.tokenFile} is shorter than 16 characters`);
  }
  return token;
}

/**
 * Loads and validates the config, resolves its names once, prints what it
 * holds and what they gave, then the verdict; binds nothing. A name that
 * would stop the start (its frontend has no other backend) fails the check
 * too, with its one line and nothing else.
 */
async function check(
  cli: CliOptions,
  net: Net,
  stdout: (line: string) => void,
  stderr: (line: string) => void,
): Promise<number> {
  try {
    const config = await loadConfig(cli.config);
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
