/**
 * The command line's words: {@linkcode parseCli} turns the arguments into
 * {@linkcode CliOptions}, and {@linkcode USAGE} is the `--help` text.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parseDuration } from "../config/duration.ts";
import { LOG_FORMATS, type LogFormat } from "../log.ts";
import { VERSION } from "../version.ts";
import { QUICK_SOURCE, type QuickConfig, quickConfig } from "./quick.ts";

/** The config file read when `-c` is not given, as in the original. */
export const DEFAULT_CONFIG_FILE = "mini-balancer.toml";

/** The `--help` text. */
export const USAGE = `mini-balancer ${VERSION}: a layer-4 (TCP) load balancer

Usage: mini-balancer [check] [OPTIONS]
       mini-balancer [check] --listen ADDR --to ADDR [--to ADDR …] [OPTIONS]

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

Quick mode (one frontend, no config file):
      --listen ADDR          the frontend's bind_on: host:port, or udp:host:port
      --to ADDR              a backend's forward_to; repeat it, round robin keeps the order
      --algorithm NAME       the frontend's algorithm [default: round_robin]
      --admin ADDR           serve the read-only admin listener (metrics, status) there
      --print-config         print the equivalent config file and exit
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
  /**
   * Quick mode's config, from `--listen` and `--to`; `config` then names
   * no file.
   */
  quick?: QuickConfig;
  /** `--print-config` was given: print quick mode's config file and exit. */
  printConfig: boolean;
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
      config: { type: "string", short: "c" },
      verbose: { type: "boolean", short: "v", multiple: true },
      "log-format": { type: "string", default: "text" },
      "grace-period": { type: "string", default: "5s" },
      watch: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
      version: { type: "boolean", default: false },
      listen: { type: "string" },
      to: { type: "string", multiple: true },
      algorithm: { type: "string" },
      admin: { type: "string" },
      "print-config": { type: "boolean", default: false },
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
  const quick = quickOptions(values);
  return {
    command,
    config: quick === undefined ? values.config ?? DEFAULT_CONFIG_FILE : QUICK_SOURCE,
    verbosity: values.verbose?.length ?? 0,
    logFormat,
    graceMs,
    watch: values.watch,
    help: values.help,
    version: values.version,
    worker,
    quick,
    printConfig: values["print-config"],
  };
}

/**
 * Quick mode's config from its flags, or undefined without `--listen`.
 *
 * @throws {TypeError} for a flag that needs another, one that cannot stand
 * beside quick mode, or a bad value (named by its flag)
 */
function quickOptions(values: {
  config?: string;
  listen?: string;
  to?: string[];
  algorithm?: string;
  admin?: string;
  watch: boolean;
  worker?: string;
  "print-config": boolean;
}): QuickConfig | undefined {
  const { listen, to = [], algorithm, admin } = values;
  if (listen === undefined) {
    const lone = to.length > 0
      ? "--to"
      : algorithm !== undefined
      ? "--algorithm"
      : admin !== undefined
      ? "--admin"
      : values["print-config"]
      ? "--print-config"
      : undefined;
    if (lone !== undefined) throw new TypeError(`${lone} needs --listen (quick mode)`);
    return undefined;
  }
  if (values.config !== undefined) {
    throw new TypeError(
      "--listen cannot stand beside -c/--config: give a config file or the flags",
    );
  }
  if (values.watch) throw new TypeError("--watch needs a config file: quick mode has none");
  if (values.worker !== undefined) throw new TypeError("--worker cannot stand beside --listen");
  if (to.length === 0) throw new TypeError("--listen needs at least one --to (a backend)");
  return quickConfig({ listen, to, algorithm, admin });
}
