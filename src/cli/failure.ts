/**
 * The one line a start (or `check`) that fails prints, in the log format
 * the command line asked for.
 *
 * @module
 */
import type { ListenError } from "../balancer/balancer.ts";
import { ConfigError } from "../config/config_error.ts";
import type { DiscoveryError } from "../discovery/discovery.ts";
import { formatJson, type LogFormat, ROOT_CATEGORY } from "../log.ts";

/**
 * The one line a failed start prints: plain text, or under `--log-format
 * json` a JSON line like every other log line, so a log pipeline sees it.
 */
export function startFailure(
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
