/**
 * A reload as a difference: which frontends of a new config carry on, which
 * are new, which replace one of their name at a new address and which are
 * gone; which entrances keep their socket, which bind again and which close.
 * The balancer owns the frontends and entrances; this works out the change
 * and hands back what serves next.
 *
 * @module
 */
import { formatAddress } from "../address/address.ts";
import type { Config, FrontendConfig } from "../config/config.ts";
import type { Endpoint } from "../runtime/types.ts";
import type { Entrance } from "./listener/entrance.ts";
import type { DatagramEntrance } from "./datagram/entrance.ts";
import type { Frontend } from "./frontend.ts";

/**
 * What a reload changed, by name (backends as `frontend/backend`).
 *
 * @example
 * ```ts
 * import { loadConfig, type ReloadSummary } from "mini-balancer";
 *
 * const summary: ReloadSummary = await balancer.reload(await loadConfig("lb.toml"));
 * console.log(`added ${summary.frontendsAdded.join(", ") || "no frontend"}`);
 * for (const failure of summary.failures) console.error(failure);
 * ```
 */
export interface ReloadSummary {
  /** Frontends that are new and bound. */
  frontendsAdded: string[];
  /** Frontends that stopped accepting; their open connections finish. */
  frontendsRemoved: string[];
  /** Frontends whose settings, backends or address changed. */
  frontendsChanged: string[];
  /** Backends that are new. */
  backendsAdded: string[];
  /** Backends that get no new connections; their open ones finish. */
  backendsRemoved: string[];
  /** Frontends that could not bind their new address, and why; they stay as they were. */
  failures: string[];
}

/** A summary with nothing in it yet. */
export function emptySummary(): ReloadSummary {
  return {
    frontendsAdded: [],
    frontendsRemoved: [],
    frontendsChanged: [],
    backendsAdded: [],
    backendsRemoved: [],
    failures: [],
  };
}

/** A bound address of either transport: a TCP (or Unix) listener, or a UDP socket. */
export type Door = Entrance | DatagramEntrance;

/** Whether two frontends are bound to the same address, over the same transport. */
function sameAddress(a: FrontendConfig, b: FrontendConfig): boolean {
  const [x, y] = [a.bindOn, b.bindOn];
  return x.hostname === y.hostname && x.port === y.port && x.path === y.path &&
    a.transport === b.transport;
}

/**
 * The key of a frontend's entrance: its address, shared by frontends that
 * route by server name; port 0 is a fresh port for each frontend.
 */
export function entranceKey(config: FrontendConfig): string {
  // TCP and UDP on one port are two sockets.
  const address = (config.transport === "udp" ? "udp:" : "") + formatAddress(config.bindOn);
  return config.bindOn.port === 0 && config.bindOn.path === undefined
    ? `${address}#${config.name}`
    : address;
}

/** Groups frontends by entrance, in config order. */
export function groupByEntrance(frontends: Frontend[]): Map<string, Frontend[]> {
  const groups = new Map<string, Frontend[]>();
  for (const frontend of frontends) {
    const key = entranceKey(frontend.config);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [frontend]);
    else group.push(frontend);
  }
  return groups;
}

/** What a reload works on: the balancer's frontends and entrances, and its ways to change them. */
export interface ReloadContext {
  /** The frontends serving now, in config order. */
  readonly frontends: readonly Frontend[];
  /** The bound entrances by entrance key, read once the new frontends have resolved. */
  entrances(): ReadonlyMap<string, Door>;
  /** A new frontend for `config`, not yet bound. */
  create(config: FrontendConfig): Frontend;
  /** An entrance for `members` that takes over `before`'s socket. */
  adopt(members: Frontend[], before: Door): Door;
  /**
   * Binds an entrance for `members`, at `at` instead of their bind_on if given.
   * @throws {ListenError} when it cannot be bound
   */
  open(members: Frontend[], at?: Endpoint): Promise<Door>;
  /** Stops a frontend accepting; its open connections finish within the grace period. */
  retire(frontend: Frontend): void;
  /** Makes `frontends` and `entrances` the serving ones, at once after the last bind. */
  commit(frontends: Frontend[], entrances: Map<string, Door>): void;
}

/**
 * Applies `config` to the frontends and entrances of `context` (see
 * {@linkcode Balancer.reload}): frontends that keep their name and address
 * are updated in place, others are made and bound, the ones left over retire.
 *
 * @param config a validated config
 * @param context the balancer's frontends and entrances, and its ways to change them
 * @returns what changed, once new addresses are bound and committed
 */
export async function reloadFrontends(
  config: Config,
  context: ReloadContext,
): Promise<ReloadSummary> {
  const summary = emptySummary();
  // Which frontends carry on (same name and address) and which are new.
  const old = new Map(context.frontends.map((frontend) => [frontend.name, frontend]));
  const next: Frontend[] = [];
  /** Fresh frontends, and the one of its name each replaces (bind_on changed). */
  const replacing = new Map<Frontend, Frontend | undefined>();
  for (const wanted of config.frontends) {
    const current = old.get(wanted.name);
    old.delete(wanted.name);
    if (current !== undefined && sameAddress(current.config, wanted)) {
      const before = JSON.stringify(current.config);
      const { added, removed } = current.update(wanted);
      if (before !== JSON.stringify(wanted)) summary.frontendsChanged.push(wanted.name);
      summary.backendsAdded.push(...added.map((name) => `${wanted.name}/${name}`));
      summary.backendsRemoved.push(...removed.map((name) => `${wanted.name}/${name}`));
      next.push(current);
      continue;
    }
    const fresh = context.create(wanted);
    try {
      await fresh.discover();
    } catch (error) {
      fresh.close();
      summary.failures.push((error as Error).message);
      if (current !== undefined) next.push(current);
      continue;
    }
    replacing.set(fresh, current);
    next.push(fresh);
  }
  // Bind what is new; an address kept keeps its socket.
  const entrances = new Map<string, Door>();
  const unused = new Map(context.entrances());
  const failed = new Set<Frontend>();
  for (const [key, members] of groupByEntrance(next)) {
    const before = unused.get(key);
    if (before !== undefined && before.fits(members)) {
      const entrance = context.adopt(members, before);
      unused.delete(key);
      entrances.set(key, entrance);
      continue;
    }
    // New certificates or mode: the socket must be bound again, at the
    // port it had (port 0 asked for one once, not at each reload).
    const at = before?.address;
    before?.close();
    unused.delete(key);
    try {
      entrances.set(key, await context.open(members, at));
    } catch (error) {
      summary.failures.push((error as Error).message);
      for (const member of members) failed.add(member);
    }
  }
  const serving: Frontend[] = [];
  for (const frontend of next) {
    const current = replacing.get(frontend);
    if (failed.has(frontend)) {
      // It stays as it was: the old frontend (and its address) if any.
      frontend.close();
      if (current === undefined) continue;
      serving.push(current);
      const key = entranceKey(current.config);
      const entrance = unused.get(key);
      if (entrance !== undefined) {
        unused.delete(key);
        entrances.set(key, entrance);
      }
      continue;
    }
    serving.push(frontend);
    if (current !== undefined) {
      context.retire(current);
      summary.frontendsChanged.push(frontend.name);
    } else if (replacing.has(frontend)) summary.frontendsAdded.push(frontend.name);
  }
  for (const gone of old.values()) {
    context.retire(gone);
    summary.frontendsRemoved.push(gone.name);
  }
  for (const entrance of unused.values()) entrance.close();
  context.commit(serving, entrances);
  return summary;
}
