/**
 * The command line's part in an admin listener, single process or
 * supervisor alike: its settings from `[admin]`, a reloaded `[admin]`
 * applied, the token file's warning, and the one line of a bind that fails.
 *
 * @module
 */
import { ListenError } from "../balancer/balancer.ts";
import { formatAddress } from "../address/address.ts";
import type { AdminConfig } from "../config/config.ts";
import { openTokenFile } from "../config/summary.ts";
import type { AdminServer, AdminSettings } from "../admin/server.ts";
import { getLog } from "../log.ts";
import type { Endpoint } from "../runtime/types.ts";

/** The admin listener's settings from its config. */
export function adminSettings(admin: AdminConfig): AdminSettings {
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
export async function updateAdmin(
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
export function tokenFileWarner(): (admin: AdminConfig) => void {
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
 * What an admin listener that cannot start reports: a bind that fails as a
 * {@linkcode ListenError} naming its address, anything else as it is.
 *
 * @param error what starting the listener threw
 * @param bindOn the address it was to listen on
 */
export function adminListenFailure(error: unknown, bindOn: Endpoint): ListenError {
  return ((error as { code?: string }).code === undefined
    ? error
    : new ListenError(formatAddress(bindOn), "admin", error, "the admin listener")) as ListenError;
}
