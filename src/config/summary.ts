/**
 * A config in a few lines for a person: what `mini-balancer check` prints
 * after a config loads (each frontend, its address, algorithm and backends).
 *
 * @module
 */
import { formatAddress } from "./address.ts";
import type { BackendConfig, Config } from "./config.ts";

/** One backend's line: its address, its name when it has one, and what differs from defaults. */
function backendLine(backend: BackendConfig): string {
  const traits = [`weight ${backend.weight}`];
  if (backend.maxConnections !== undefined) {
    traits.push(`max_connections ${backend.maxConnections}`);
  }
  if (backend.backup) traits.push("backup");
  const name = backend.name === backend.address ? "" : `${backend.name} = `;
  return `  ${name}${backend.address} (${traits.join(", ")})`;
}

/**
 * Describes a valid config, a frontend to a paragraph.
 *
 * @param config the loaded config
 * @param file the file it came from, as given
 * @returns the lines to print
 */
export function summarizeConfig(config: Config, file: string): string[] {
  const count = config.frontends.length;
  const lines = [`config "${file}" is valid: ${count} frontend${count === 1 ? "" : "s"}`];
  for (const frontend of config.frontends) {
    const backends = frontend.backends.length;
    const checks = frontend.health.active ? ", active health checks" : "";
    lines.push(
      `frontend "${frontend.name}" on ${formatAddress(frontend.bindOn)}: ` +
        `${frontend.algorithm} over ${backends} backend${backends === 1 ? "" : "s"}${checks}`,
      ...frontend.backends.map(backendLine),
    );
  }
  const admin = config.admin;
  if (admin !== undefined) {
    const token = admin.token !== undefined
      ? "a token"
      : admin.tokenFile !== undefined
      ? `the token in ${admin.tokenFile}`
      : "no token: read-only";
    lines.push(`admin listener on ${formatAddress(admin.bindOn)}, ${token}`);
  }
  return lines;
}
