/**
 * The names discovery keeps resolved: a backend entry's host (its A/AAAA
 * addresses) or an SRV name (its records), each asked again on its TTL
 * within `min_ttl` and `max_ttl`, or after a failure with a backoff.
 *
 * @module
 */
import { formatAddress } from "../address/address.ts";
import type { Endpoint, Net } from "../runtime/types.ts";
import {
  DnsClient,
  type Resolved,
  type ResolvedSrv,
  systemLookup,
  systemNameServer,
} from "./dns.ts";

/** How a name is resolved: which server, and the TTL bounds. */
export interface Asking {
  /** The DNS server to ask; the system's resolver when undefined. */
  readonly resolver: Endpoint | undefined;
  /** The shortest wait before a name is asked again, in ms. */
  readonly minTtlMs: number;
  /** The longest, in ms. */
  readonly maxTtlMs: number;
}

/** Longest wait before a failing name is asked again. */
export const MAX_RETRY_MS = 30_000;

/** One name being kept resolved. */
export abstract class Source<Found> {
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
export class HostSource extends Source<Resolved[]> {
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
export class SrvSource extends Source<ResolvedSrv[]> {
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

/** Stops a source: no further resolution, its timer cleared. */
export function stopSource(source: Source<unknown>): void {
  source.stopped = true;
  clearTimeout(source.timer);
  source.timer = undefined;
}

/** Whether two ways of asking are the same (same server, same TTL bounds). */
export function sameAsking(a: Asking, b: Asking): boolean {
  return a.minTtlMs === b.minTtlMs && a.maxTtlMs === b.maxTtlMs &&
    (a.resolver === b.resolver ||
      (a.resolver !== undefined && b.resolver !== undefined &&
        formatAddress(a.resolver) === formatAddress(b.resolver)));
}
