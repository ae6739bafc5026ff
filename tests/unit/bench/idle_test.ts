/**
 * The idle bench's report (bench/idle_report.ts): medians, the ratio to the
 * reference, and the table's rows.
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { idleRows, median, renderIdle } from "../../../bench/idle_report.ts";

const MiB = 1024 * 1024;

test("median: odd and even counts, order does not matter, empty throws", () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.throws(() => median([]), /median of no values/);
});

test("idleRows: medians in MiB and ms, each RSS over the reference's", () => {
  const rows = idleRows([
    {
      name: "bun-minimal",
      config: "-",
      rssBytes: [26 * MiB, 20 * MiB, 30 * MiB],
      startMs: [30, 40, 50],
    },
    {
      name: "mini",
      config: "minimal",
      rssBytes: [39 * MiB, 100 * MiB, 38 * MiB],
      startMs: [90.4, 80, 200],
    },
  ], "bun-minimal");
  assert.deepEqual(rows, [
    { name: "bun-minimal", config: "-", rssMiB: 26, startMs: 40, ratio: 1 },
    { name: "mini", config: "minimal", rssMiB: 39, startMs: 90, ratio: 1.5 },
  ]);
});

test("idleRows: without the reference there is no ratio", () => {
  const [row] = idleRows([{ name: "a", config: "x", rssBytes: [MiB], startMs: [1] }], "none");
  assert.equal(row!.ratio, undefined);
});

test("renderIdle: the CPU, the run count and one row per target", () => {
  const page = renderIdle(
    [{ name: "mini", config: "workers = 2", rssMiB: 45.04, startMs: 93, ratio: 1.72 }, {
      name: "other",
      config: "-",
      rssMiB: 1,
      startMs: 2,
      ratio: undefined,
    }],
    { cpu: "AMD EPYC", date: "2026-12-05", runs: 5, reference: "bun-minimal" },
  );
  assert.match(page, /^# Idle process: 2026-12-05\n/);
  assert.match(page, /CPU: AMD EPYC\. Median of 5 runs each\./);
  assert.match(page, /\| mini \| workers = 2 \| 45\.0 \| 1\.72 \| 93 \|\n/);
  assert.match(page, /\| other \| - \| 1\.0 \| - \| 2 \|\n$/);
});
