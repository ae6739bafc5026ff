/**
 * The command line: `mini-balancer [-c FILE] [-v…]`, as the original had it,
 * `mini-balancer check -c FILE`, which validates without serving, and quick
 * mode, `--listen ADDR --to ADDR` without a file (quick.ts).
 * The entry files call {@linkcode main} with their runtime's sockets and
 * signals; only they exit the process. This file dispatches: options.ts
 * parses, serve.ts serves (supervise.ts for `workers = N`), check.ts checks.
 *
 * @module
 */
import { configureLogging, getLog, OPERATOR_CATEGORY } from "../log.ts";
import { VERSION } from "../version.ts";
import type { MainOptions } from "./main_options.ts";
import { type CliOptions, parseCli, USAGE } from "./options.ts";
import { serve } from "./serve.ts";

export type { MainOptions } from "./main_options.ts";

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
  if (cli.printConfig) {
    // quick mode's file, to save and run with -c (parseCli refuses it without --listen)
    stdout(cli.quick!.text.trimEnd());
    return 0;
  }
  if (cli.command === "check") {
    // Loaded only for `check`: serving does not hold its code.
    const { check } = await import("./check.ts");
    return await check(cli, options, stdout, stderr);
  }
  configureLogging({ verbosity: cli.verbosity, format: cli.logFormat, worker: cli.worker });
  return await serve(args, cli, cli.quick === undefined ? options : quickMain(options), stderr);
}

/**
 * Quick mode's runtime hooks: SIGHUP has no file to re-read, so it is logged
 * (at the default verbosity, as every reload is) and the flags' config keeps
 * serving. The admin API's reload needs a token, which quick mode has not.
 */
function quickMain(options: MainOptions): MainOptions {
  const onReloadSignal = options.onReloadSignal;
  if (onReloadSignal === undefined) return options;
  return {
    ...options,
    onReloadSignal: () =>
      onReloadSignal(() =>
        getLog(OPERATOR_CATEGORY).info(
          "reload asked in quick mode: nothing to re-read, the config comes from the command line: still serving it",
          { via: "SIGHUP" },
        )
      ),
  };
}
