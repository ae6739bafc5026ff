/**
 * Service discovery for one frontend: backends whose `forward_to` names a
 * host (every A/AAAA address becomes a backend) and `discover = "srv:…"`
 * (every SRV record's target and port does), each name re-resolved on its
 * TTL within `min_ttl` and `max_ttl`.
 *
 * {@linkcode Discovery.backends} expands the frontend's entries into the
 * backend list the pool takes: fixed entries as they are, a named entry as
 * one backend per address (`NAME#ADDRESS`, with the entry's settings), then
 * the SRV backends (`SRVNAME#ADDRESS:PORT`, SRV weight as weight, the
 * lowest priority as primaries and the others as backups). A resolution
 * that fails or comes back empty keeps the last good set.
 *
 * @module
 */
import { type BackendConfig, type FrontendConfig, isDiscovered } from "../config/config.ts";
import { reasonOf } from "../errors.ts";
import type { Net } from "../runtime/types.ts";
import { NotFound } from "./dns.ts";
import { expandHost, expandSrv } from "./expand.ts";
import {
  type Asking,
  HostSource,
  sameAsking,
  type Source,
  SrvSource,
  stopSource,
} from "./sources.ts";

/** Re-exported: whether a config has names to discover is a question about the config. */
export { discovers, isDiscovered } from "../config/config.ts";
/** Re-exported: the backends discovery makes, and the names it gives them. */
export { discoveredName, expandSrv, isDiscoveredName } from "./expand.ts";

/**
 * What one resolution of a name gave, as events report it.
 *
 * @example
 * ```ts
 * import { Balancer, type Resolution } from "mini-balancer";
 *
 * const balancer = await Balancer.start(config, {
 *   net,
 *   events: {
 *     resolved(frontend, resolution: Resolution) {
 *       if (resolution.news === "failing") console.warn(`${resolution.name}: ${resolution.reason}`);
 *     },
 *   },
 * });
 * ```
 */
export interface Resolution {
  /** The name: a host name, or `srv:` and the SRV name. */
  readonly name: string;
  /** ok: addresses found; empty: the name has none; failed: the server could not answer. */
  readonly result: "ok" | "empty" | "failed";
  /** Addresses in use for the name now (the last good set after a failure). */
  readonly addresses: number;
  /** Backends it added, by name. */
  readonly added: readonly string[];
  /** Backends it removed, by name. */
  readonly removed: readonly string[];
  /** Why it failed or came back empty. */
  readonly reason?: string;
  /**
   * What is worth a log line, once per episode: the name started failing
   * (whatever reasons the failures that follow give), or it answers again.
   */
  readonly news: "failing" | "recovered" | undefined;
}

/**
 * A frontend could not start: a name gave no backend and it has no other.
 *
 * @example
 * ```ts
 * import { Balancer, DiscoveryError } from "mini-balancer";
 *
 * try {
 *   await Balancer.start(config, { net });
 * } catch (error) {
 *   if (error instanceof DiscoveryError) console.error(`${error.frontend}: ${error.address} did not resolve`);
 *   else throw error;
 * }
 * ```
 */
export class DiscoveryError extends Error {
  /** The name that did not resolve. */
  readonly address: string;
  /** The frontend's name. */
  readonly frontend: string;

  /**
   * Says which frontend is left without a backend, and which name did not resolve.
   *
   * @param name the name that did not resolve
   * @param frontend the frontend's name
   * @param reason why it did not resolve
   */
  constructor(name: string, frontend: string, reason: string) {
    super(`frontend "${frontend}" has no backend: ${name} did not resolve: ${reason}`);
    this.name = "DiscoveryError";
    this.address = name;
    this.frontend = frontend;
  }
}

/** What a {@linkcode Discovery} reports to. */
export interface DiscoveryOwner {
  /** The backend list changed (a name's set did): the pool should take {@linkcode Discovery.backends}. */
  changed(): { added: string[]; removed: string[] };
  /** Every resolution, for logs and metrics. */
  resolved(resolution: Resolution): void;
}

/** Keeps a frontend's names resolved. */
export class Discovery {
  readonly #net: Net;
  readonly #owner: DiscoveryOwner;
  #config: FrontendConfig;
  /** Host entries' sources, by entry name. */
  #hosts = new Map<string, HostSource>();
  #srv: SrvSource | undefined;
  #stopped = false;

  /**
   * @param config the frontend's config
   * @param net the runtime's sockets (DNS over TCP)
   * @param owner told of each resolution and change
   */
  constructor(config: FrontendConfig, net: Net, owner: DiscoveryOwner) {
    this.#net = net;
    this.#owner = owner;
    this.#config = config;
    this.#sources(config);
  }

  /** Sets up the sources `config` needs, keeping those it already had. */
  #sources(config: FrontendConfig): Source<unknown>[] {
    const asking: Asking = {
      resolver: config.resolver,
      minTtlMs: config.minTtlMs,
      maxTtlMs: config.maxTtlMs,
    };
    const fresh: Source<unknown>[] = [];
    const keep = <S extends Source<unknown>>(old: S | undefined, make: () => S): S => {
      if (old !== undefined && sameAsking(old.asking, asking)) return old;
      if (old !== undefined) stopSource(old);
      const made = make();
      fresh.push(made);
      return made;
    };
    const hosts = new Map<string, HostSource>();
    for (const entry of config.backends.filter(isDiscovered)) {
      const old = this.#hosts.get(entry.name);
      const same = old?.host === entry.forwardTo.hostname ? old : undefined;
      if (old !== undefined && same === undefined) stopSource(old);
      this.#hosts.delete(entry.name);
      hosts.set(entry.name, keep(same, () => new HostSource(entry.forwardTo.hostname, asking)));
    }
    for (const gone of this.#hosts.values()) stopSource(gone);
    this.#hosts = hosts;
    const srv = config.discover;
    const oldSrv = this.#srv?.srv === srv ? this.#srv : undefined;
    if (this.#srv !== undefined && oldSrv === undefined) stopSource(this.#srv);
    this.#srv = srv === undefined ? undefined : keep(oldSrv, () => new SrvSource(srv, asking));
    return fresh;
  }

  /**
   * Resolves every name once and schedules the next resolutions. Resolves
   * once every name has answered or failed.
   *
   * @throws {DiscoveryError} when a name gave nothing and the frontend has no other backend
   */
  async start(): Promise<void> {
    const all: Source<unknown>[] = [...this.#hosts.values()];
    if (this.#srv !== undefined) all.push(this.#srv);
    await Promise.all(all.map((source) => this.#refresh(source)));
    if (this.backends().length > 0) return;
    const failed = all.find((source) => source.found === undefined) ?? all[0]!;
    throw new DiscoveryError(failed.name, this.#config.name, failed.failing ?? "no address");
  }

  /**
   * Takes a new config (a reload): names still there keep their addresses
   * and timers; new names are resolved now, in the background.
   */
  update(config: FrontendConfig): void {
    this.#config = config;
    for (const source of this.#sources(config)) void this.#refresh(source);
  }

  /** Stops every timer; answers still under way are dropped. */
  stop(): void {
    this.#stopped = true;
    for (const source of this.#hosts.values()) stopSource(source);
    if (this.#srv !== undefined) stopSource(this.#srv);
  }

  /** The frontend's backends now: fixed ones, each named entry's addresses, then SRV's. */
  backends(): BackendConfig[] {
    const list: BackendConfig[] = [];
    for (const entry of this.#config.backends) {
      const source = isDiscovered(entry) ? this.#hosts.get(entry.name) : undefined;
      if (source === undefined) list.push(entry);
      else if (source.found !== undefined) list.push(...expandHost(entry, source.found));
    }
    const srv = this.#srv;
    if (srv?.found !== undefined) list.push(...expandSrv(srv.srv, srv.found));
    return list;
  }

  /** Each name and the backends it gives now, for `check`. */
  found(): { name: string; backends: BackendConfig[]; failing: string | undefined }[] {
    const list = [...this.#hosts.entries()].map(([entryName, source]) => {
      const entry = this.#config.backends.find((backend) => backend.name === entryName)!;
      return {
        name: source.name,
        backends: source.found === undefined ? [] : expandHost(entry, source.found),
        failing: source.failing,
      };
    });
    const srv = this.#srv;
    if (srv !== undefined) {
      list.push({
        name: srv.name,
        backends: srv.found === undefined ? [] : expandSrv(srv.srv, srv.found),
        failing: srv.failing,
      });
    }
    return list;
  }

  /** Resolves one name, applies the answer, and schedules the next time. */
  async #refresh<Found>(source: Source<Found>): Promise<void> {
    let found: Found | undefined;
    let result: Resolution["result"] = "ok";
    let reason: string | undefined;
    try {
      found = await source.resolve(this.#net);
    } catch (error) {
      result = error instanceof NotFound ? "empty" : "failed";
      reason = reasonOf(error);
    }
    if (this.#stopped || source.stopped) return;
    let news: Resolution["news"];
    let changes = { added: [] as string[], removed: [] as string[] };
    if (found !== undefined) {
      const before = source.found;
      source.found = found;
      source.failures = 0;
      if (source.failing !== undefined) news = "recovered";
      source.failing = undefined;
      if (before === undefined || source.signature(before) !== source.signature(found)) {
        changes = this.#owner.changed();
      }
    } else {
      source.failures++;
      // Once per episode: another reason while it still fails is no news.
      if (source.failing === undefined) news = "failing";
      source.failing = reason;
    }
    this.#owner.resolved({
      name: source.name,
      result,
      addresses: source.found === undefined ? 0 : source.countOf(source.found),
      added: changes.added,
      removed: changes.removed,
      reason,
      news,
    });
    source.timer = setTimeout(() => {
      source.timer = undefined;
      void this.#refresh(source);
    }, source.nextIn(found));
  }
}
