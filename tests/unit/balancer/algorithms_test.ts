/**
 * The balancing algorithms (src/balancer/upstream/algorithms/) as units: the factory,
 * what every algorithm shares, and each one's own rule.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createSelector } from "../../../src/balancer/upstream/algorithms/mod.ts";
import { First } from "../../../src/balancer/upstream/algorithms/first.ts";
import { BackendState } from "../../../src/balancer/upstream/backend.ts";
import { LeastConnections } from "../../../src/balancer/upstream/algorithms/least_connections.ts";
import { PowerOfTwo } from "../../../src/balancer/upstream/algorithms/power_of_two.ts";
import { Random } from "../../../src/balancer/upstream/algorithms/random.ts";
import type { PickContext } from "../../../src/balancer/upstream/algorithms/selector.ts";
import { SourceHash } from "../../../src/balancer/upstream/algorithms/source_hash.ts";
import { RoundRobin } from "../../../src/balancer/upstream/algorithms/round_robin.ts";
import { WeightedRoundRobin } from "../../../src/balancer/upstream/algorithms/weighted_round_robin.ts";
import { type Algorithm, ALGORITHMS } from "../../../src/config/config.ts";

function backends(spec: Record<string, number>): BackendState[] {
  return Object.entries(spec).map(([name, weight], i) =>
    new BackendState({
      name,
      address: `127.0.0.1:${8000 + i}`,
      forwardTo: { hostname: "127.0.0.1", port: 8000 + i },
      weight,
    })
  );
}

/** A seeded uniform source (mulberry32), so distributions are reproducible. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A client of `hostname`, from a new port each time, as real clients come:
 * an algorithm that keyed on the port would not send it to one backend.
 */
let nextPort = 40000;
const client = (hostname = "127.0.0.1"): PickContext => {
  nextPort = nextPort >= 65535 ? 1024 : nextPort + 7;
  return { client: { hostname, port: nextPort } };
};

function counts(picks: (BackendState | undefined)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const pick of picks) out[pick!.config.name] = (out[pick!.config.name] ?? 0) + 1;
  return out;
}

describe("createSelector", () => {
  const classes: Record<Algorithm, abstract new (...args: never[]) => unknown> = {
    round_robin: RoundRobin,
    weighted_round_robin: WeightedRoundRobin,
    least_connections: LeastConnections,
    random: Random,
    power_of_two: PowerOfTwo,
    source_hash: SourceHash,
    first: First,
  };

  it("builds the selector of its own class for every algorithm the config accepts", () => {
    assert.deepEqual(Object.keys(classes).sort(), [...ALGORITHMS].sort());
    for (const algorithm of ALGORITHMS) {
      const selector = createSelector(algorithm, backends({ a: 1, b: 1 }));
      assert.ok(selector instanceof classes[algorithm], algorithm);
    }
  });

  it("builds selectors that pick by their algorithm's rule", () => {
    // Weights 3, 1, 1; connections open: a 2, b 0, c 1 (when an algorithm counts them).
    const picks = (algorithm: Algorithm, n: number, active = [0, 0, 0]) => {
      const pool = backends({ a: 3, b: 1, c: 1 });
      pool.forEach((backend, i) => (backend.active = active[i]!));
      const selector = createSelector(algorithm, pool);
      return Array.from({ length: n }, () => selector.pick(client("192.0.2.1"))!.config.name);
    };
    assert.deepEqual(picks("round_robin", 7), ["a", "b", "c", "a", "b", "c", "a"]);
    assert.deepEqual(picks("weighted_round_robin", 5), ["a", "b", "a", "c", "a"]);
    assert.deepEqual(picks("least_connections", 1, [2, 0, 1]), ["b"]);
    assert.deepEqual(picks("first", 3), ["a", "a", "a"]);
    assert.equal(new Set(picks("source_hash", 10)).size, 1, "one client, one backend");
    // a is far too loaded to win any draw of two.
    assert.ok(!picks("power_of_two", 50, [30, 0, 0]).includes("a"));
    const random = picks("random", 500);
    const share = (name: string) => random.filter((picked) => picked === name).length;
    assert.ok(share("a") > share("b") && share("a") > share("c"), "random follows the weights");
  });
});

describe("every algorithm", () => {
  it("skips a backend that is down, and picks nothing when all are", () => {
    for (const algorithm of ALGORITHMS) {
      const pool = backends({ a: 1, b: 1, c: 1 });
      pool[1]!.up = false;
      const selector = createSelector(algorithm, pool);
      for (let i = 0; i < 60; i++) {
        const address = `10.0.0.${i}`;
        assert.notEqual(selector.pick(client(address))?.config.name, "b", algorithm);
      }
      for (const backend of pool) backend.up = false;
      assert.equal(selector.pick(client()), undefined, algorithm);
    }
  });
});

describe("First", () => {
  it("fills backends in order up to their max_connections", () => {
    const pool = backends({ a: 1, b: 1, c: 1 }).map((backend, i) =>
      new BackendState({ ...backend.config, maxConnections: i === 2 ? undefined : 2 })
    );
    const selector = new First(pool);
    const picks = Array.from({ length: 7 }, () => {
      const backend = selector.pick()!;
      backend.active++;
      return backend.config.name;
    });
    assert.deepEqual(picks, ["a", "a", "b", "b", "c", "c", "c"]);
    pool[0]!.active--; // a slot frees on the first backend
    assert.equal(selector.pick()?.config.name, "a");
  });
});

describe("WeightedRoundRobin", () => {
  it("interleaves by weight like nginx: 5, 1, 1 gives a a b a c a a", () => {
    const selector = new WeightedRoundRobin(backends({ a: 5, b: 1, c: 1 }));
    const names = Array.from({ length: 7 }, () => selector.pick()!.config.name);
    assert.deepEqual(names, ["a", "a", "b", "a", "c", "a", "a"]);
  });

  it("gives each backend exactly its share over whole cycles", () => {
    const selector = new WeightedRoundRobin(backends({ a: 3, b: 2, c: 1 }));
    const picks = Array.from({ length: 600 }, () => selector.pick());
    assert.deepEqual(counts(picks), { a: 300, b: 200, c: 100 });
  });

  it("never sends a run as long as the heaviest weight to one backend", () => {
    const selector = new WeightedRoundRobin(backends({ a: 5, b: 1, c: 1 }));
    let run = 0;
    let longest = 0;
    let last = "";
    for (let i = 0; i < 700; i++) {
      const name = selector.pick()!.config.name;
      run = name === last ? run + 1 : 1;
      last = name;
      longest = Math.max(longest, run);
    }
    assert.ok(longest < 5, `longest run ${longest}`);
  });
});

describe("LeastConnections", () => {
  it("picks the backend with the fewest open connections", () => {
    const pool = backends({ a: 1, b: 1, c: 1 });
    pool[0]!.active = 3;
    pool[1]!.active = 1;
    pool[2]!.active = 2;
    assert.equal(new LeastConnections(pool).pick()?.config.name, "b");
  });

  it("weighs open connections by weight", () => {
    const pool = backends({ a: 4, b: 1 });
    pool[0]!.active = 3; // 0.75 per unit of weight
    pool[1]!.active = 1; // 1 per unit
    assert.equal(new LeastConnections(pool).pick()?.config.name, "a");
  });

  it("spreads ties evenly instead of filling the first backend", () => {
    const pool = backends({ a: 1, b: 1, c: 1 });
    const selector = new LeastConnections(pool);
    const names = Array.from({ length: 6 }, () => selector.pick()!.config.name);
    assert.deepEqual(names, ["a", "b", "c", "a", "b", "c"]);
  });

  it("keeps long-lived connections even as they pile up", () => {
    const pool = backends({ a: 1, b: 1, c: 1 });
    const selector = new LeastConnections(pool);
    for (let i = 0; i < 300; i++) selector.pick()!.active++;
    assert.deepEqual(pool.map((b) => b.active), [100, 100, 100]);
  });
});

describe("Random", () => {
  it("picks in proportion to the weights", () => {
    const selector = new Random(backends({ a: 1, b: 2, c: 3 }), seeded(7));
    const total = 60_000;
    const got = counts(Array.from({ length: total }, () => selector.pick()));
    for (const [name, share] of [["a", 1 / 6], ["b", 2 / 6], ["c", 3 / 6]] as const) {
      assert.ok(Math.abs(got[name]! / total - share) < 0.01, `${name}: ${got[name]}`);
    }
  });
});

describe("PowerOfTwo", () => {
  it("keeps open connections far more even than random picks", () => {
    const spread = (pool: BackendState[]) =>
      Math.max(...pool.map((b) => b.active)) - Math.min(...pool.map((b) => b.active));
    const p2cPool = backends({ a: 1, b: 1, c: 1, d: 1 });
    const randomPool = backends({ a: 1, b: 1, c: 1, d: 1 });
    const p2c = new PowerOfTwo(p2cPool, seeded(3));
    const random = new Random(randomPool, seeded(3));
    for (let i = 0; i < 4000; i++) {
      p2c.pick()!.active++;
      random.pick()!.active++;
    }
    assert.ok(spread(p2cPool) <= 3, `power of two spread ${spread(p2cPool)}`);
    assert.ok(spread(randomPool) > 3 * spread(p2cPool), `random spread ${spread(randomPool)}`);
  });

  it("prefers the less loaded of the two it draws", () => {
    const pool = backends({ a: 1, b: 1 });
    pool[0]!.active = 10;
    const selector = new PowerOfTwo(pool, seeded(1));
    for (let i = 0; i < 20; i++) assert.equal(selector.pick()?.config.name, "b");
  });
});

describe("SourceHash", () => {
  const addresses = Array.from(
    { length: 12_000 },
    (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
  );

  it("sends a client to the same backend every time", () => {
    const selector = new SourceHash(backends({ a: 1, b: 1, c: 1 }));
    const first = selector.pick(client("192.0.2.7"));
    for (let i = 0; i < 10; i++) assert.equal(selector.pick(client("192.0.2.7")), first);
  });

  it("spreads many clients evenly, by weight", () => {
    const selector = new SourceHash(backends({ a: 1, b: 1, c: 2 }));
    const got = counts(addresses.map((address) => selector.pick(client(address))));
    for (const [name, share] of [["a", 0.25], ["b", 0.25], ["c", 0.5]] as const) {
      assert.ok(Math.abs(got[name]! / addresses.length - share) < 0.06, `${name}: ${got[name]}`);
    }
  });

  it("moves only the removed backend's clients, about 1/n of them", () => {
    const four = new SourceHash(backends({ a: 1, b: 1, c: 1, d: 1 }));
    const three = new SourceHash(backends({ a: 1, b: 1, c: 1 }));
    let moved = 0;
    for (const address of addresses) {
      const before = four.pick(client(address))!.config.name;
      const after = three.pick(client(address))!.config.name;
      if (before !== after) {
        moved++;
        assert.equal(before, "d", `${address} moved from ${before}, which still exists`);
      }
    }
    const share = moved / addresses.length;
    assert.ok(share > 0.18 && share < 0.32, `moved ${share}`);
  });

  it("moves only a down backend's clients, and brings them back", () => {
    const pool = backends({ a: 1, b: 1, c: 1 });
    const selector = new SourceHash(pool);
    const before = addresses.map((address) => selector.pick(client(address))!.config.name);
    pool[2]!.up = false;
    addresses.forEach((address, i) => {
      const now = selector.pick(client(address))!.config.name;
      if (before[i] !== "c") assert.equal(now, before[i]);
      else assert.notEqual(now, "c");
    });
    pool[2]!.up = true;
    addresses.forEach((address, i) => {
      assert.equal(selector.pick(client(address))!.config.name, before[i]);
    });
  });

  it("places backends by name: not by their order, nor by their addresses", () => {
    const pool = (names: string[], firstPort: number) =>
      names.map((name, i) =>
        new BackendState({
          name,
          address: `192.0.2.${i + 1}:${firstPort + i}`,
          forwardTo: { hostname: `192.0.2.${i + 1}`, port: firstPort + i },
          weight: 1,
        })
      );
    const one = pool(["a", "b", "c"], 7000);
    const other = pool(["b", "c", "a"], 9100); // another order, other addresses
    assert.notDeepEqual(one.map((b) => b.config.name), other.map((b) => b.config.name));
    const forward = new SourceHash(one);
    const shuffled = new SourceHash(other);
    for (const address of addresses.slice(0, 500)) {
      assert.equal(
        forward.pick(client(address))!.config.name,
        shuffled.pick(client(address))!.config.name,
        address,
      );
    }
  });
});
