/**
 * `mini-balancer check -c FILE`: validates the config the way a start
 * would, without binding anything.
 *
 * @module
 */
import { ConfigError } from "../config/config_error.ts";
import { loadConfig } from "../config/load.ts";
import { formatBindAddress, isHostName } from "../address/address.ts";
import type { Config, Transport } from "../config/config.ts";
import { discoveryLines, summarizeConfig, validLine } from "../config/summary.ts";
import { discovers, Discovery, DiscoveryError } from "../discovery/discovery.ts";
import { systemLookup } from "../discovery/dns.ts";
import type { Endpoint, Net } from "../runtime/types.ts";
import { startFailure } from "./failure.ts";
import type { MainOptions } from "./main_options.ts";
import type { CliOptions } from "./options.ts";

/**
 * Loads and validates the config, resolves its names once, prints what it
 * holds and what they gave, then the verdict; binds nothing. A name that
 * would stop the start (its frontend has no other backend) fails the check
 * too, with its one line and nothing else.
 */
export async function check(
  cli: CliOptions,
  options: MainOptions,
  stdout: (line: string) => void,
  stderr: (line: string) => void,
): Promise<number> {
  const net = options.net;
  try {
    const config = cli.quick?.config ?? await loadConfig(cli.config);
    await checkStartable(config, cli.config, options);
    if (config.admin?.stateFile !== undefined) {
      const { checkStateFile } = await import("../admin/state_file.ts");
      checkStateFile(config.admin.stateFile, config.frontends);
    }
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
  const udp = udpWorkersUnavailable(config, options.net);
  if (udp !== undefined) throw new ConfigError({ file, path: udp.path, problem: udp.problem });
  type Bind = [path: string, owner: string, address: Endpoint, transport: Transport];
  const binds = config.frontends.map((frontend): Bind => [
    "",
    `frontend "${frontend.name}": bind_on`,
    frontend.bindOn,
    frontend.transport,
  ]);
  if (config.admin !== undefined) binds.push(["admin.bind_on", "", config.admin.bindOn, "tcp"]);
  for (const [path, owner, address, transport] of binds) {
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
        JSON.stringify(formatBindAddress(address, transport)),
    });
  }
}

/**
 * Why `workers` cannot serve the config's UDP frontends on this runtime,
 * if they cannot: every worker binds each UDP port with SO_REUSEPORT,
 * which only some runtimes can set.
 *
 * @param config the config
 * @param net the runtime's sockets
 * @returns the field and the problem, or undefined when nothing stops it
 */
export function udpWorkersUnavailable(
  config: Config,
  net: Net,
): { path: string; problem: string } | undefined {
  if (config.workers <= 1 || net.datagramReusePort === true) return undefined;
  const index = config.frontends.findIndex((frontend) => frontend.transport === "udp");
  if (index < 0) return undefined;
  const frontend = config.frontends[index]!;
  return {
    path: "workers",
    problem: `is ${config.workers}, but frontend "${frontend.name}" is UDP, and workers share ` +
      `a UDP port through SO_REUSEPORT, which ${net.runtime} cannot set: run the executable ` +
      "or `bun run` instead, or set workers = 1",
  };
}

/** What a Discovery reports as changes when nobody keeps a pool. */
const NO_CHANGES = { added: [], removed: [] };
