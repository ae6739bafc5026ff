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
import { formatAddress } from "../address/address.ts";
import { type BackendConfig, type FrontendConfig, isDiscovered } from "../config/config.ts";
import { MAX_WEIGHT } from "../config/schema.ts";
import { reasonOf } from "../errors.ts";
import type { Endpoint, Net } from "../runtime/types.ts";
import {
  DnsClient,
  NotFound,
  type Resolved,
  type ResolvedSrv,
  systemLookup,
  systemNameServer,
} from "./dns.ts";

/** Re-exported: whether a config has names to discover is a question about the config. */
export { discovers, isDiscovered } from "../config/config.ts";

/** What one resolution of a name gave, as events report it. */
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

/** A frontend could not start: a name gave no backend and it has no other. */
export class DiscoveryError extends Error {
  /** The name that did not resolve. */
  readonly address: string;
  /** The frontend's name. */
  readonly frontend: string;

  constructor(name: string, frontend: string, reason: string) {
    super(`frontend "${frontend}" has no backend: ${name} did not resolve: ${reason}`);
    this.name = "DiscoveryError";
    this.address = name;
    this.frontend = frontend;
  }
}

/** How a name is resolved: which server, and the TTL bounds. */
interface Asking {
  readonly resolver: Endpoint | undefined;
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
}

/** Longest wait before a failing name is asked again. */
const MAX_RETRY_MS = 30_000;

/** One name being kept resolved. */
abstract class Source<Found> {
  /** The name as events report it. */
  abstract readonly name: string;
  /** The last good answer; undefined until one came. */
  found: Found | undefined;
  /** Why the last resolution failed, while it fails. */
  failing: string | undefined;
  /** Failures in a row, for the retry's backoff. */
  failures = 0;
  timer: ReturnType<typeof setTimeout> | undefined;
  stopped = false;
  asking: Asking;

  constructor(asking: Asking) {
    this.asking = asking;
  }

  /** Asks DNS once. */
  abstract resolve(net: Net): Promise<Found>;
  /** The shortest TTL in an answer, in ms. */
  abstract ttlOf(found: Found): number;
  /** The number of addresses in an answer. */
  abstract countOf(found: Found): number;
  /**
   * What of an answer makes backends, as text: two answers that differ only
   * in their TTLs (a caching server counts them down) change nothing, and
   * leave the pool and its algorithm's rotation alone.
   */
  abstract signature(found: Found): string;

  /** When to ask again after `found`, or after a failure when undefined. */
  nextIn(found: Found | undefined): number {
    const { minTtlMs, maxTtlMs } = this.asking;
    if (found === undefined) {
      const backoff = Math.max(minTtlMs, 1000) * 2 ** Math.min(this.failures - 1, 5);
      return Math.min(backoff, MAX_RETRY_MS, Math.max(maxTtlMs, minTtlMs));
    }
    return Math.min(maxTtlMs, Math.max(minTtlMs, this.ttlOf(found)));
  }
}

/** A backend entry whose `forward_to` names a host: its A/AAAA addresses. */
class HostSource extends Source<Resolved[]> {
  readonly name: string;
  /** The host name asked. */
  readonly host: string;

  constructor(host: string, asking: Asking) {
    super(asking);
    this.host = host;
    this.name = host;
  }

  resolve(net: Net): Promise<Resolved[]> {
    const { resolver } = this.asking;
    return resolver === undefined
      ? systemLookup(this.host)
      : new DnsClient(net, resolver).addresses(this.host);
  }
  ttlOf(found: Resolved[]): number {
    return Math.min(...found.map((resolved) => resolved.ttlMs));
  }
  countOf(found: Resolved[]): number {
    return found.length;
  }
  signature(found: Resolved[]): string {
    return found.map((resolved) => resolved.address).sort().join();
  }
}

/** `discover = "srv:…"`: the SRV records of a name. */
class SrvSource extends Source<ResolvedSrv[]> {
  readonly name: string;
  /** The SRV name asked. */
  readonly srv: string;

  constructor(srv: string, asking: Asking) {
    super(asking);
    this.srv = srv;
    this.name = `srv:${srv}`;
  }

  async resolve(net: Net): Promise<ResolvedSrv[]> {
    const server = this.asking.resolver ?? await systemNameServer();
    return await new DnsClient(net, server).srv(this.srv);
  }
  ttlOf(found: ResolvedSrv[]): number {
    return Math.min(
      ...found.flatMap((record) => [record.ttlMs, ...record.addresses.map((a) => a.ttlMs)]),
    );
  }
  countOf(found: ResolvedSrv[]): number {
    return found.reduce((n, record) => n + record.addresses.length, 0);
  }
  signature(found: ResolvedSrv[]): string {
    return found.map((r) =>
      `${r.priority}/${r.weight}/${r.port}/${r.addresses.map((a) => a.address).sort().join("+")}`
    ).sort().join();
  }
}

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
function expandHost(entry: BackendConfig, found: readonly Resolved[]): BackendConfig[] {
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

function stopSource(source: Source<unknown>): void {
  source.stopped = true;
  clearTimeout(source.timer);
  source.timer = undefined;
}

function sameAsking(a: Asking, b: Asking): boolean {
  return a.minTtlMs === b.minTtlMs && a.maxTtlMs === b.maxTtlMs &&
    (a.resolver === b.resolver ||
      (a.resolver !== undefined && b.resolver !== undefined &&
        formatAddress(a.resolver) === formatAddress(b.resolver)));
}
