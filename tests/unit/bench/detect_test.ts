/**
 * The detection bench's report (bench/detect_report.ts): CPU per connection,
 * medians over rounds, the ratios to sni-only and plain, the bound, and the
 * rows beside the baseline's.
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  baselineRows,
  type DetectAbout,
  detectRows,
  type DetectSample,
  type DetectSeries,
  perConnectionUs,
  quartiles,
  renderDetect,
  roundRatios,
  sliceRatios,
} from "../../../bench/detect_report.ts";

/** A sample of 1,000 connections that cost `us` microseconds each. */
const sample = (us: number, failed = 0): DetectSample => ({
  connections: 1000,
  failed,
  cpuSeconds: us * 1000 / 1e6,
  wallSeconds: 1,
  otherCpuSeconds: 0.1,
});

const series = (runtime: string, row: string, ...us: number[]): DetectSeries => ({
  runtime,
  row,
  samples: us.map((value) => sample(value)),
});

test("perConnectionUs: CPU seconds over completed connections, in µs; none completed is NaN", () => {
  assert.ok(Math.abs(perConnectionUs(sample(120)) - 120) < 1e-9);
  assert.ok(Number.isNaN(perConnectionUs({ ...sample(1), connections: 0 })));
});

test("detectRows: median of the rounds, range, ratios to the same runtime's sni-only and plain", () => {
  const rows = detectRows([
    series("Bun", "plain", 100, 90, 110),
    series("Bun", "sni-only", 120, 200, 125),
    series("Bun", "four-tls", 130, 131, 129),
    series("Deno", "plain", 300, 300, 300),
    { runtime: "Deno", row: "four-ssh", samples: [sample(310, 2), sample(290, 1), sample(330)] },
  ]);
  assert.deepEqual(rows[2], {
    runtime: "Bun",
    row: "four-tls",
    us: 130,
    min: 129,
    max: 131,
    xSniOnly: 1.04,
    xPlain: 1.3,
    failed: 0,
  });
  assert.equal(rows[0]!.xSniOnly, 0.8);
  assert.equal(rows[0]!.xPlain, 1);
  // Deno has no sni-only row: no ratio to it, and never Bun's.
  assert.equal(rows[4]!.xSniOnly, undefined);
  assert.equal(rows[4]!.xPlain, 1.03);
  assert.equal(rows[4]!.failed, 3);
});

test("baselineRows: each RUNTIME @REF row beside RUNTIME's, the ratio, and whether the ranges overlap", () => {
  const rows = detectRows([
    series("Bun", "plain", 100, 104, 96),
    series("Bun", "sni-only", 150, 150, 150),
    series("Bun @abc", "plain", 98, 103, 101),
    series("Bun @abc", "sni-only", 120, 121, 119),
    series("Deno @abc", "plain", 1, 1, 1), // no Deno row: left out
  ]);
  assert.deepEqual(baselineRows(rows, "abc"), [
    {
      runtime: "Bun",
      row: "plain",
      now: { us: 100, min: 96, max: 104 },
      before: { us: 101, min: 98, max: 103 },
      ratio: 0.99,
      overlap: true,
    },
    {
      runtime: "Bun",
      row: "sni-only",
      now: { us: 150, min: 150, max: 150 },
      before: { us: 120, min: 119, max: 121 },
      ratio: 1.25,
      overlap: false,
    },
  ]);
});

test("renderDetect: the CPU model, the method, one line per row, the bound per runtime and the baseline", () => {
  const rows = detectRows([
    series("Bun", "plain", 100),
    series("Bun", "sni-only", 120),
    series("Bun", "four-tls", 126),
    series("Deno", "sni-only", 200),
    series("Deno", "four-tls", 240),
    series("Bun @0dd1fbf", "plain", 101),
    series("Bun @0dd1fbf", "sni-only", 112),
  ]);
  const about: DetectAbout = {
    date: "2026-12-06",
    cpu: "AMD EPYC, 2 CPUs",
    commit: "93beca8",
    baseline: { ref: "0dd1fbf", commit: "0dd1fbf" },
    connections: 5000,
    rounds: 3,
    slice: 500,
    concurrency: 32,
    firstBytes: { plain: "a line" },
    configs: { plain: "[frontend]\n" },
    noise: { min: 0.1, median: 0.5, max: 1.2 },
    seconds: 170.4,
  };
  const page = renderDetect(rows, about);
  assert.match(page, /^# Protocol detection: 2026-12-06\n/);
  assert.match(page, /CPU: AMD EPYC, 2 CPUs\. Commit 93beca8, baseline 0dd1fbf \(0dd1fbf\)\./);
  assert.match(page, /5,000 new connections per round \(32 at a time;/);
  assert.match(page, /in slices of 500 taking turns with every other row's, 3 rounds, median/);
  assert.match(
    page,
    /other processes used 50 % of a core .*\(10 % to 120 %\)\. The run took 170 s\./,
  );
  assert.match(page, /\| Bun \| four-tls \| 126\.0 \| 126\.0–126\.0 \| 1\.05× \| 1\.26× \| 0 \|\n/);
  assert.match(page, /\| Deno \| four-tls \| 240\.0 \| 240\.0–240\.0 \| 1\.20× \| – \| 0 \|\n/);
  assert.match(
    page,
    /- Bun: 1\.05× \(medians\), met; over sni-only @0dd1fbf 1\.13× \(medians\), NOT met\n- Deno: 1\.20× \(medians\), NOT met\n/,
  );
  assert.match(
    page,
    /\| Bun \| plain \| 100\.0 \(100\.0–100\.0\) \| 101\.0 \(101\.0–101\.0\) \| 0\.99× \| apart \|/,
  );
  assert.match(page, /- plain: a line\n/);
  assert.match(page, /```toml\n\[frontend\]\n```/);
  assert.ok(page.endsWith("```\n"));
});

test("roundRatios: row over reference round by round, over the rounds both have; none without both", () => {
  const series = [
    { runtime: "Bun", row: "sni-only", samples: [sample(100), sample(200), sample(150)] },
    { runtime: "Bun", row: "four-tls", samples: [sample(105), sample(210)] },
  ];
  assert.deepEqual(roundRatios(series, "Bun", "four-tls", "sni-only"), [1.05, 1.05]);
  assert.deepEqual(roundRatios(series, "Deno", "four-tls", "sni-only"), []);
});

test("renderDetect: the bound gives the round-by-round ratios and their median", () => {
  const series = [
    { runtime: "Bun", row: "sni-only", samples: [sample(100), sample(200), sample(150)] },
    { runtime: "Bun", row: "four-tls", samples: [sample(105), sample(180), sample(240)] },
  ];
  const page = renderDetect(detectRows(series), {
    date: "d",
    cpu: "c",
    commit: "h",
    connections: 1,
    rounds: 3,
    slice: 1,
    concurrency: 1,
    firstBytes: {},
    configs: {},
    noise: { min: 0, median: 0, max: 0 },
    seconds: 1,
  }, series);
  assert.match(
    page,
    /- Bun: 1\.20× \(medians\), NOT met; round by round 1\.05, 0\.90, 1\.60 \(median 1\.05×\)\n/,
  );
});

test("sliceRatios: row over reference slice by slice; quartiles of them", () => {
  const series = [
    { runtime: "Bun", row: "sni-only", samples: [], slicesUs: [100, 200, 150, 100] },
    { runtime: "Bun", row: "four-tls", samples: [], slicesUs: [110, 190, 150] },
  ];
  assert.deepEqual(sliceRatios(series, "Bun", "four-tls", "sni-only"), [1.1, 0.95, 1]);
  assert.deepEqual(
    sliceRatios([{ ...series[0]!, slicesUs: undefined }], "Bun", "four-tls", "sni-only"),
    [],
  );
  assert.deepEqual(quartiles([1.1, 0.95, 1]), [0.95, 1, 1.1]);
  assert.deepEqual(quartiles([4, 1, 3, 2]), [1.5, 2.5, 3.5]);
  assert.deepEqual(quartiles([7]), [7, 7, 7]);
});

test("renderDetect: the bound gives the slice-by-slice median and middle half when slices were kept", () => {
  const series = [
    { runtime: "Bun", row: "sni-only", samples: [sample(100)], slicesUs: [100, 100, 100, 100] },
    { runtime: "Bun", row: "four-tls", samples: [sample(104)], slicesUs: [102, 104, 106, 108] },
  ];
  const page = renderDetect(detectRows(series), {
    date: "d",
    cpu: "c",
    commit: "h",
    connections: 1,
    rounds: 1,
    slice: 1,
    concurrency: 1,
    firstBytes: {},
    configs: {},
    noise: { min: 0, median: 0, max: 0 },
    seconds: 1,
  }, series);
  assert.match(
    page,
    /- Bun: 1\.04× \(medians\), met; round by round 1\.04 \(median 1\.04×\); slice by slice 1\.05× \(middle half 1\.03–1\.07, 4 pairs\)\n/,
  );
});

test("renderDetect: the baseline's rows slice by slice beside the current code's", () => {
  const series = [
    { runtime: "Bun", row: "plain", samples: [sample(100)], slicesUs: [100, 99, 101, 104] },
    { runtime: "Bun @abc", row: "plain", samples: [sample(100)], slicesUs: [100, 100, 100, 100] },
  ];
  const page = renderDetect(detectRows(series), {
    date: "d",
    cpu: "c",
    commit: "h",
    baseline: { ref: "abc", commit: "abc" },
    connections: 1,
    rounds: 1,
    slice: 1,
    concurrency: 1,
    firstBytes: {},
    configs: {},
    noise: { min: 0, median: 0, max: 0 },
    seconds: 1,
  }, series);
  assert.match(page, /\| Bun \| plain \| .* \| 1\.00× \| overlap \| 1\.00× \(0\.99–1\.02\) \|\n/);
});

test("renderDetect: without a baseline or a four-tls row, neither section appears", () => {
  const page = renderDetect(detectRows([series("Bun", "plain", 100)]), {
    date: "2026-12-06",
    cpu: "x",
    commit: "y",
    connections: 10,
    rounds: 1,
    slice: 1,
    concurrency: 1,
    firstBytes: {},
    configs: {},
    noise: { min: 0, median: 0, max: 0 },
    seconds: 1,
  });
  assert.doesNotMatch(page, /Bound|Against the code before/);
  assert.match(page, /CPU: x\. Commit y\.\n/);
});
