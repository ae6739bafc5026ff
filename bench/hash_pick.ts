/**
 * What `hash_balance_factor` costs per new connection: source_hash's pick
 * with and without the bound, for 4, 16 and 64 backends, each with 1,000
 * connections open (one opens and the oldest closes per pick, so the loads
 * move as they do while serving). Prints the best of five runs of 300,000
 * picks, in nanoseconds per pick. No sockets: the selector alone.
 *
 * ```sh
 * bun bench/hash_pick.ts
 * deno run bench/hash_pick.ts
 * ```
 *
 * @module
 */
import { SourceHash } from "../src/balancer/upstream/algorithms/source_hash.ts";
import { BackendState } from "../src/balancer/upstream/backend.ts";

const ADDRESSES = Array.from(
  { length: 10_000 },
  (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
);

function pool(n: number): BackendState[] {
  return Array.from({ length: n }, (_, i) =>
    new BackendState({
      name: `app-${i}`,
      address: `127.0.0.1:${8000 + i}`,
      forwardTo: { hostname: "127.0.0.1", port: 8000 + i },
      weight: 1,
    }));
}

/** Nanoseconds per pick, with `factor` or the plain ring. */
function run(n: number, factor?: number): number {
  const selector = new SourceHash(pool(n), factor);
  const pick = (i: number) => {
    const backend = selector.pick({ client: { hostname: ADDRESSES[i]!, port: 40000 } })!;
    backend.active++;
    return backend;
  };
  const open: BackendState[] = [];
  for (let i = 0; i < 1_000; i++) open.push(pick(i));
  let oldest = 0;
  const started = performance.now();
  for (let round = 0; round < 30; round++) {
    for (let i = 0; i < ADDRESSES.length; i++) {
      // A ring of open connections: the new one takes the oldest's place.
      open[oldest]!.active--;
      open[oldest] = pick(i);
      oldest = (oldest + 1) % open.length;
    }
  }
  return (performance.now() - started) * 1e6 / (30 * ADDRESSES.length);
}

const best = (n: number, factor?: number) =>
  Math.min(...Array.from({ length: 5 }, () => run(n, factor))).toFixed(0);

for (const n of [4, 16, 64]) {
  console.log(
    `${n} backends: plain ${best(n)} ns/pick, hash_balance_factor 1.25 ${best(n, 1.25)} ns/pick`,
  );
}
