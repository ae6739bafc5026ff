/**
 * Round-robin's order, the original's: connection n to backend n, then
 * connection n+1 to backend 1 again, cycle after cycle.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackendState } from "../../../src/balancer/upstream/backend.ts";
import { RoundRobin } from "../../../src/balancer/upstream/algorithms/round_robin.ts";

function backends(...names: string[]): BackendState[] {
  return names.map((name) =>
    new BackendState({
      name,
      address: "127.0.0.1:1",
      forwardTo: { hostname: "127.0.0.1", port: 1 },
      weight: 1,
    })
  );
}

describe("RoundRobin", () => {
  it("sends connection n to backend n", () => {
    const selector = new RoundRobin(backends("b1", "b2", "b3"));
    const picked = [1, 2, 3].map(() => selector.pick()?.config.name);
    assert.deepEqual(picked, ["b1", "b2", "b3"]);
  });

  it("wraps to the first backend after the last", () => {
    const selector = new RoundRobin(backends("b1", "b2"));
    const picked = Array.from({ length: 7 }, () => selector.pick()?.config.name);
    assert.deepEqual(picked, ["b1", "b2", "b1", "b2", "b1", "b2", "b1"]);
  });

  it("sends connection n+1 to backend 1, cycle after cycle, for 3 to 5 backends", () => {
    for (let n = 3; n <= 5; n++) {
      const names = Array.from({ length: n }, (_, i) => `b${i + 1}`);
      const selector = new RoundRobin(backends(...names));
      // Three whole cycles and one more pick: each wrap lands on b1.
      const picked = Array.from({ length: 3 * n + 1 }, () => selector.pick()?.config.name);
      assert.deepEqual(picked, [...names, ...names, ...names, "b1"], `${n} backends`);
    }
  });

  it("keeps the order around a backend that is down, wrapping to the first", () => {
    const pool = backends("b1", "b2", "b3", "b4");
    pool[2]!.up = false;
    const selector = new RoundRobin(pool);
    const picked = Array.from({ length: 7 }, () => selector.pick()?.config.name);
    assert.deepEqual(picked, ["b1", "b2", "b4", "b1", "b2", "b4", "b1"]);
  });

  it("always picks the only backend", () => {
    const selector = new RoundRobin(backends("only"));
    for (let i = 0; i < 3; i++) assert.equal(selector.pick()?.config.name, "only");
  });

  it("picks nothing when there are no backends", () => {
    assert.equal(new RoundRobin([]).pick(), undefined);
  });
});
