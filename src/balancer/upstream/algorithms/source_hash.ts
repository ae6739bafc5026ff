/**
 * The source_hash algorithm: a consistent-hash ring of the backends' names,
 * looked up by the client's IP address.
 *
 * @module
 */
import type { BackendState } from "../backend.ts";
import type { PickContext, Selector } from "./selector.ts";

/** Points on the ring for each unit of weight. */
const POINTS_PER_WEIGHT = 100;

/** 32-bit FNV-1a of a string: fast, well spread, the same on every runtime. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  // A final mix, so that keys differing only in their last characters land
  // far apart on the ring.
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  return hash >>> 0;
}

/**
 * Consistent hashing of the client's IP address (not its port): a client
 * keeps going to the same backend, and adding or removing one of n backends
 * moves only about 1/n of the clients. Each backend owns `weight × 100`
 * points on a ring, placed by hashing its name (its address when unnamed),
 * so the mapping depends neither on the backends' order in the config nor,
 * for named backends, on their addresses.
 *
 * With a balance factor f (`hash_balance_factor`), it is consistent hashing
 * with bounded loads (Mirrokni, Thorup and Zadimoghaddam; HAProxy's
 * `hash-balance-factor`): a backend takes a new client only while it holds
 * fewer than ceil(f × (open + 1) × its weight ÷ the up backends' weight)
 * connections, where `open` counts those of the up backends and the `+ 1`
 * the new one, as HAProxy counts; otherwise the client goes on along the
 * ring to the next backend that has room. Every backend ends at most at
 * that bound, and a client keeps its backend while that one is not full.
 */
export class SourceHash implements Selector {
  readonly #points: Uint32Array;
  readonly #owners: BackendState[];
  readonly #backends: readonly BackendState[];
  readonly #factor: number | undefined;

  /**
   * @param backends the backends; `config.name` places them on the ring
   * @param balanceFactor how far above the average a backend may be loaded
   *   (above 1); `undefined`: no bound, the plain ring
   */
  constructor(backends: readonly BackendState[], balanceFactor?: number) {
    this.#backends = backends;
    this.#factor = balanceFactor;
    const ring: [point: number, owner: BackendState][] = [];
    for (const backend of backends) {
      const points = backend.config.weight * POINTS_PER_WEIGHT;
      for (let i = 0; i < points; i++) ring.push([fnv1a(`${backend.config.name}#${i}`), backend]);
    }
    ring.sort((a, b) => a[0] - b[0]);
    this.#points = Uint32Array.from(ring, ([point]) => point);
    this.#owners = ring.map(([, owner]) => owner);
  }

  /** Returns the backend that owns the client address's point on the ring. */
  pick(context: PickContext): BackendState | undefined {
    const points = this.#points;
    if (points.length === 0) return undefined;
    const key = fnv1a(context.client.hostname);
    // The first point at or after the key, wrapping past the end.
    let low = 0;
    let high = points.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (points[middle]! < key) low = middle + 1;
      else high = middle;
    }
    // Walk on past backends that are down: their clients spread over the
    // others, and come back when they are up again.
    if (this.#factor !== undefined) return this.#bounded(low, this.#factor);
    const owners = this.#owners;
    for (let k = 0; k < owners.length; k++) {
      const owner = owners[(low + k) % owners.length]!;
      if (owner.up) return owner;
    }
    return undefined;
  }

  /** The first up backend from ring position `start` on that is under its bound. */
  #bounded(start: number, factor: number): BackendState | undefined {
    let open = 0;
    let weight = 0;
    for (const backend of this.#backends) {
      if (!backend.up) continue;
      open += backend.active;
      weight += backend.config.weight;
    }
    if (weight === 0) return undefined;
    // Slots per unit of weight; the epsilon keeps 1.1 × 10 (11.000000000000002)
    // from rounding up to 12.
    const perWeight = factor * (open + 1) / weight - 1e-9;
    const owners = this.#owners;
    let first: BackendState | undefined;
    let previous: BackendState | undefined;
    for (let k = 0; k < owners.length; k++) {
      const owner = owners[(start + k) % owners.length]!;
      // Neighbouring points often share an owner: judge each run once.
      if (owner === previous || !owner.up) continue;
      previous = owner;
      first ??= owner;
      if (owner.active < Math.ceil(perWeight * owner.config.weight)) return owner;
    }
    // Unreachable while the counts add up (the bounds sum to more than the
    // open connections), kept so that a miscount never refuses a client.
    return first;
  }
}
