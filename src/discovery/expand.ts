/**
 * What discovery found, as backends: each address of a host entry with the
 * entry's settings, each SRV record's addresses with its weight and
 * priority, named `ENTRY#ADDRESS` (the one place that knows the form).
 *
 * @module
 */
import { formatAddress } from "../address/address.ts";
import type { BackendConfig } from "../config/config.ts";
import { MAX_WEIGHT } from "../config/schema.ts";
import type { Resolved, ResolvedSrv } from "./dns.ts";

/**
 * The name discovery gives a backend it found for an entry (or an SRV name)
 * at an address: `web#10.0.0.1`. The one place that knows the form.
 *
 * @param entry the backend entry's name, or the SRV name
 * @param address the address found, as written in logs
 * @returns the discovered backend's name
 */
export function discoveredName(entry: string, address: string): string {
  return `${entry}#${address}`;
}

/**
 * Whether a backend name has the form discovery gives ({@linkcode discoveredName}),
 * so a backend of that name may appear once its host resolves.
 *
 * @param name a backend name
 * @returns true for a name discovery may give
 */
export function isDiscoveredName(name: string): boolean {
  return name.includes("#");
}

/** Each address of a host entry as a backend with the entry's settings. */
export function expandHost(entry: BackendConfig, found: readonly Resolved[]): BackendConfig[] {
  const { port } = entry.forwardTo;
  return found.map(({ address }) => {
    const forwardTo = { hostname: address, port };
    return {
      ...entry,
      name: discoveredName(entry.name, address),
      address: formatAddress(forwardTo),
      forwardTo,
    };
  });
}

/**
 * SRV records as backends: weight from the record (0 counts as 1, scaled
 * into 1 to 256), the lowest priority as primaries, the others as backups.
 */
export function expandSrv(srv: string, found: readonly ResolvedSrv[]): BackendConfig[] {
  const lowest = Math.min(...found.map((record) => record.priority));
  const heaviest = Math.max(...found.map((record) => record.weight));
  const scale = heaviest > MAX_WEIGHT ? MAX_WEIGHT / heaviest : 1;
  const seen = new Set<string>();
  const backends: BackendConfig[] = [];
  for (const record of found) {
    for (const { address } of record.addresses) {
      const forwardTo = { hostname: address, port: record.port };
      const written = formatAddress(forwardTo);
      const name = discoveredName(srv, written);
      if (seen.has(name)) continue;
      seen.add(name);
      backends.push({
        name,
        address: written,
        forwardTo,
        weight: Math.max(1, Math.round(record.weight * scale)),
        backup: record.priority > lowest,
      });
    }
  }
  return backends;
}
