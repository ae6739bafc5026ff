/**
 * The connection rate per client as a pure data structure: token buckets
 * per address, on a clock the test moves.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RateBuckets } from "../../../src/balancer/session/admission.ts";
import { parseRate } from "../../../src/config/units.ts";

describe("RateBuckets", () => {
  it("lets a client spend its burst, then one connection per refill interval", () => {
    const buckets = new RateBuckets(1000);
    const rate = parseRate("3/s");
    const at = (ms: number) => buckets.take("10.0.0.1", rate, 1000 + ms);
    assert.deepEqual([at(0), at(1), at(2), at(3)], [true, true, true, false]);
    assert.equal(at(300), false, "a third of a token after 300 ms is not enough");
    assert.equal(at(340), true, "one token after a third of a second");
    assert.equal(at(341), false);
    assert.equal(buckets.take("10.0.0.2", rate, 1341), true, "another client has its own bucket");
  });

  it("forgets clients idle for a period, so memory stays bounded under many addresses", () => {
    const buckets = new RateBuckets(0);
    const rate = parseRate("5/s");
    let now = 0;
    for (let second = 0; second < 20; second++) {
      for (let i = 0; i < 1000; i++) {
        assert.equal(buckets.take(`10.${second}.${i >> 8}.${i & 255}`, rate, now), true);
        now += 1;
      }
      assert.ok(buckets.size <= 2000, `${buckets.size} buckets after ${second + 1} s`);
    }
  });

  it("keeps an emptied bucket empty across the swap of generations", () => {
    const buckets = new RateBuckets(0);
    const rate = parseRate("2/m");
    assert.equal(buckets.take("c", rate, 59_000), true);
    assert.equal(buckets.take("c", rate, 59_001), true);
    // Another client, a period after the start, swaps the generations: c's
    // emptied bucket moves to the older one and must still be found there.
    assert.equal(buckets.take("d", rate, 60_000), true);
    assert.equal(
      buckets.take("c", rate, 60_001),
      false,
      "one second refills a thirtieth of a token",
    );
  });
});
