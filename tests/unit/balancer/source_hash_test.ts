/**
 * The source_hash ring (src/balancer/upstream/algorithms/source_hash.ts) with
 * 10,000 client addresses: how evenly it spreads them, how few move when a
 * backend goes or comes, and `hash_balance_factor` (bounded loads) with
 * synthetic open-connection counts; then the key as the config reads it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SourceHash } from "../../../src/balancer/upstream/algorithms/source_hash.ts";
import { BackendState } from "../../../src/balancer/upstream/backend.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { summarizeConfig } from "../../../src/config/summary.ts";

const KEYS = 10_000;

/** 10,000 distinct client addresses, spread as real ones are: over 10.0.0.0/16 and beyond. */
const addresses = Array.from(
  { length: KEYS },
  (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
);

function backends(names: readonly string[], weights: readonly number[] = []): BackendState[] {
  return names.map((name, i) =>
    new BackendState({
      name,
      address: `127.0.0.1:${8000 + i}`,
      forwardTo: { hostname: "127.0.0.1", port: 8000 + i },
      weight: weights[i] ?? 1,
    })
  );
}

const pick = (selector: SourceHash, hostname: string) =>
  selector.pick({ client: { hostname, port: 40000 } })!;

/** Each address's backend name, with no load (the plain ring). */
function mapping(pool: readonly BackendState[], factor?: number): string[] {
  const selector = new SourceHash(pool, factor);
  return addresses.map((address) => pick(selector, address).config.name);
}

function tally(names: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1);
  return counts;
}

/** The bound the brief states, computed here on its own: ceil(f × (open + 1) × w ÷ W). */
function bound(pool: readonly BackendState[], backend: BackendState, factor: number): number {
  const up = pool.filter((b) => b.up);
  const open = up.reduce((sum, b) => sum + b.active, 0);
  const weight = up.reduce((sum, b) => sum + b.config.weight, 0);
  return Math.ceil(Number((factor * (open + 1) * backend.config.weight / weight).toFixed(9)));
}

describe("SourceHash ring with 10,000 keys", () => {
  const five = ["app-1", "app-2", "app-3", "app-4", "app-5"];

  it("spreads them over five backends within 25% of a fifth each", () => {
    const counts = tally(mapping(backends(five)));
    assert.equal(counts.size, 5);
    for (const [name, count] of counts) {
      assert.ok(count > 1_500 && count < 2_500, `${name} has ${count} of 10,000 keys`);
    }
  });

  it("follows the weights: 3, 1, 1 gives the first about 60%", () => {
    const counts = tally(mapping(backends(["a", "b", "c"], [3, 1, 1])));
    assert.ok(counts.get("a")! > 5_200 && counts.get("a")! < 6_800, `a: ${counts.get("a")}`);
  });

  it("moves only the removed backend's keys when one of five goes: about a fifth", () => {
    const before = mapping(backends(five));
    const after = mapping(backends(five.filter((name) => name !== "app-3")));
    let moved = 0;
    for (let i = 0; i < KEYS; i++) {
      if (before[i] === after[i]) continue;
      moved++;
      assert.equal(before[i], "app-3", `${addresses[i]} moved off ${before[i]}`);
    }
    assert.ok(moved > 1_500 && moved < 2_500, `${moved} of 10,000 keys moved`);
  });

  it("moves keys only onto a sixth backend when it comes: about a sixth", () => {
    const before = mapping(backends(five));
    const after = mapping(backends([...five, "app-6"]));
    let moved = 0;
    for (let i = 0; i < KEYS; i++) {
      if (before[i] === after[i]) continue;
      moved++;
      assert.equal(after[i], "app-6", `${addresses[i]} moved to ${after[i]}`);
    }
    assert.ok(moved > 1_200 && moved < 2_200, `${moved} of 10,000 keys moved`);
  });

  it("with a balance factor and no load, maps every key as the plain ring does", () => {
    assert.deepEqual(mapping(backends(five), 1.25), mapping(backends(five)));
    const before = mapping(backends(five), 1.25);
    const after = mapping(backends(five.filter((name) => name !== "app-3")), 1.25);
    const moved = before.filter((name, i) => name !== after[i]);
    assert.ok(moved.every((name) => name === "app-3") && moved.length < 2_500, `${moved.length}`);
  });

  it("without a balance factor ignores load, as before hash_balance_factor", () => {
    const pool = backends(five);
    const idle = mapping(pool);
    pool[0]!.active = 1_000_000;
    assert.deepEqual(mapping(pool), idle);
  });
});

describe("SourceHash with hash_balance_factor (bounded loads)", () => {
  /**
   * Opens 10,000 connections one after the other (each stays open), from
   * `perAddress` connections per address in turn, and checks each pick
   * against the bound and against the plain ring.
   */
  function fill(pool: BackendState[], factor: number, perAddress = 1) {
    const plain = new SourceHash(pool);
    const bounded = new SourceHash(pool, factor);
    let kept = 0;
    let passedOn = 0;
    for (let i = 0; i < KEYS; i++) {
      const address = addresses[Math.floor(i / perAddress)]!;
      const home = pick(plain, address);
      const homeHasRoom = home.active < bound(pool, home, factor);
      const limit = new Map(pool.map((b) => [b, bound(pool, b, factor)]));
      const chosen = pick(bounded, address);
      assert.ok(chosen.up, "an up backend");
      assert.ok(chosen.active < limit.get(chosen)!, `${chosen.config.name} was at its bound`);
      if (homeHasRoom) {
        assert.equal(chosen, home, `${address} left ${home.config.name} while it had room`);
        kept++;
      } else {
        assert.notEqual(chosen, home);
        passedOn++;
      }
      chosen.active++;
    }
    return { kept, passedOn };
  }

  it("keeps every backend under ceil(1.25 × average) and keys on theirs while not full", () => {
    const pool = backends(["app-1", "app-2", "app-3", "app-4", "app-5"]);
    const { kept, passedOn } = fill(pool, 1.25);
    const loads = pool.map((b) => b.active);
    assert.equal(loads.reduce((a, b) => a + b), KEYS);
    // 10,000 over 5: an average of 2,000, a bound of 2,500.
    for (const load of loads) assert.ok(load <= 2_500, `loads ${loads}`);
    assert.ok(kept > 8_000, `only ${kept} kept their backend (${passedOn} passed on)`);
  });

  it("with a tight factor of 1.05 still bounds every backend (2,100 of 10,000 over 5)", () => {
    const pool = backends(["app-1", "app-2", "app-3", "app-4", "app-5"]);
    fill(pool, 1.05);
    for (const backend of pool) assert.ok(backend.active <= 2_100, `${backend.active}`);
  });

  it("bounds by weight: 3, 1, 1 holds at most 1.25 × 60%, 20%, 20%", () => {
    const pool = backends(["a", "b", "c"], [3, 1, 1]);
    fill(pool, 1.25);
    const [a, b, c] = pool.map((backend) => backend.active);
    assert.ok(a! <= 7_500 && b! <= 2_500 && c! <= 2_500, `loads ${a} ${b} ${c}`);
  });

  it("bounds a few heavy addresses: 50 addresses with 200 connections each", () => {
    // 50 keys cannot spread evenly by hash alone; the bound spreads them.
    const pool = backends(["app-1", "app-2", "app-3", "app-4"]);
    fill(pool, 1.25, 200);
    for (const backend of pool) assert.ok(backend.active <= 3_125, `${backend.active}`);
  });

  it("averages over the up backends only, and never picks a down one", () => {
    const pool = backends(["app-1", "app-2", "app-3", "app-4", "app-5"]);
    pool[1]!.up = false;
    pool[1]!.active = 5_000; // open connections of a down backend do not count
    fill(pool, 1.25);
    assert.equal(pool[1]!.active, 5_000);
    // 10,000 over 4 up: an average of 2,500, a bound of 3,125.
    for (const backend of pool.filter((b) => b.up)) {
      assert.ok(backend.active <= 3_125, `${backend.config.name}: ${backend.active}`);
    }
  });

  it("holds the bound while connections come and go", () => {
    const pool = backends(["app-1", "app-2", "app-3", "app-4", "app-5"]);
    const selector = new SourceHash(pool, 1.25);
    const open: BackendState[] = [];
    let seed = 7;
    const random = () => (seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < KEYS; i++) {
      if (open.length > 0 && random() < 0.45) {
        const [closed] = open.splice(Math.floor(random() * open.length), 1);
        closed!.active--;
      }
      const chosen = pick(selector, addresses[Math.floor(random() * 500)]!);
      assert.ok(chosen.active < bound(pool, chosen, 1.25), `${chosen.config.name} at its bound`);
      chosen.active++;
      open.push(chosen);
    }
  });

  it("picks nothing when every backend is down", () => {
    const pool = backends(["a", "b"]);
    for (const backend of pool) backend.up = false;
    assert.equal(
      new SourceHash(pool, 1.25).pick({ client: { hostname: "10.0.0.1", port: 1 } }),
      undefined,
    );
  });
});

describe("hash_balance_factor in the config", () => {
  const config = (lines: string) =>
    '[frontend]\nbind_on = "127.0.0.1:1"\n' + lines +
    '[[frontend.backend]]\nforward_to = "127.0.0.1:2"\n';

  it("reads a number above 1, whole or not, and check shows it", () => {
    const parsed = parseConfig(config('algorithm = "source_hash"\nhash_balance_factor = 1.25\n'));
    assert.equal(parsed.frontends[0]!.hashBalanceFactor, 1.25);
    assert.equal(
      parseConfig(config('algorithm = "source_hash"\nhash_balance_factor = 2\n'))
        .frontends[0]!.hashBalanceFactor,
      2,
    );
    assert.match(
      summarizeConfig(parsed).join("\n"),
      /source_hash \(hash_balance_factor 1\.25\) over 1 backend/,
    );
  });

  it("is absent unless set, and check says nothing of it then", () => {
    const parsed = parseConfig(config('algorithm = "source_hash"\n'));
    assert.equal(parsed.frontends[0]!.hashBalanceFactor, undefined);
    assert.doesNotMatch(summarizeConfig(parsed).join("\n"), /hash_balance_factor/);
  });

  const bad: [string, string][] = [
    [
      "hash_balance_factor = 1.25\n",
      'frontend.hash_balance_factor works only with algorithm = "source_hash": ' +
      'current algorithm is "round_robin"',
    ],
    [
      'algorithm = "source_hash"\nhash_balance_factor = 1\n',
      "frontend.hash_balance_factor must be a number above 1 and at most 100, as 1.25: " +
      "current value is 1",
    ],
    [
      'algorithm = "source_hash"\nhash_balance_factor = 0.5\n',
      "frontend.hash_balance_factor must be a number above 1 and at most 100, as 1.25: " +
      "current value is 0.5",
    ],
    [
      'algorithm = "source_hash"\nhash_balance_factor = 101\n',
      "frontend.hash_balance_factor must be a number above 1 and at most 100, as 1.25: " +
      "current value is 101",
    ],
    [
      'algorithm = "source_hash"\nhash_balance_factor = "1.25"\n',
      'frontend.hash_balance_factor must be a number: current value is "1.25"',
    ],
  ];
  for (const [lines, message] of bad) {
    it(`refuses ${lines.trim().replaceAll("\n", ", ")} in one line naming the field`, () => {
      assert.throws(() => parseConfig(config(lines), "lb.toml"), (error: Error) => {
        assert.equal(error.message, `Cannot load config "lb.toml": ${message}`);
        return true;
      });
    });
  }
});
