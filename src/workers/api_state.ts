/**
 * What the admin API changed, as a supervisor of workers keeps it: given
 * to each worker it starts (a restarted one too), written to
 * `admin.state_file` after each change, and merged into the config its
 * prober probes, so that backends added through the API are probed too.
 *
 * @module
 */
import type { OverlayState } from "../balancer/upstream/runtime_backends.ts";
import { validateBackendTable } from "../config/backend_table.ts";
import type { Config } from "../config/config.ts";

/**
 * A config with the API's backends appended to their frontends (those a
 * file backend names are the file's; tables that no longer fit are left out).
 *
 * @param config the validated config
 * @param state what the API changed, if anything
 * @returns the config the prober probes
 */
export function withApiBackends(config: Config, state: OverlayState | undefined): Config {
  if (state === undefined) return config;
  return {
    ...config,
    frontends: config.frontends.map((frontend) => {
      const tables = state.frontends[frontend.name]?.backends ?? [];
      const names = new Set(frontend.backends.map((backend) => backend.name));
      const added = tables.flatMap((table) => {
        try {
          const backend = validateBackendTable(table, frontend);
          return names.has(backend.name) ? [] : [backend];
        } catch {
          return [];
        }
      });
      return added.length === 0
        ? frontend
        : { ...frontend, backends: [...frontend.backends, ...added] };
    }),
  };
}
