/**
 * The UDP bench's report (bench/udp_report.ts): percentiles, the ratios to
 * nginx and to the minimal Bun forwarder, bytes per flow, strace's summary
 * and the rendered page.
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  bytesPerFlow,
  type LoadResult,
  medianRound,
  modeRows,
  parseStrace,
  percentile,
  renderUdp,
  type TargetRun,
} from "../../../bench/udp_report.ts";

const load = (replies: number, cpu: number | undefined): LoadResult => ({
  seconds: 2,
  replies,
  lost: 1,
  errors: 0,
  p50Us: 100,
  p99Us: 900.4,
  proxyCpuSeconds: cpu,
});

const RUNS: TargetRun[] = [
  { key: "direct", name: "direct", modes: { "long-lived": load(100_000, undefined) }, errors: [] },
  { key: "nginx", name: "nginx", modes: { "long-lived": load(80_000, 1) }, errors: [] },
  { key: "bun-minimal", name: "minimal", modes: { "long-lived": load(60_000, 1) }, errors: [] },
  {
    key: "bun",
    name: "mini-balancer (Bun)",
    modes: { "long-lived": load(60_000, 1.25) },
    rounds: { "long-lived": [load(50_000, 1.25), load(60_000, 1.25)] },
    memory: { flows: 10_000, answered: 9_999, rssBefore: 40e6, rssAfter: 55e6 },
    errors: ["new-flow: boom"],
  },
];

test("percentile: nearest rank over sorted values; none is NaN", () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(sorted, 50), 50);
  assert.equal(percentile(sorted, 99), 99);
  assert.equal(percentile(sorted, 100), 100);
  assert.equal(percentile(sorted, 0), 1);
  assert.equal(percentile([7], 99), 7);
  // A rank between two values rounds up: p99 of four is the highest.
  assert.equal(percentile([10, 20, 30], 50), 20);
  assert.equal(percentile([10, 20, 30, 40], 99), 40);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test("modeRows: replies per second and per proxy CPU-second, ratios within the run", () => {
  const rows = modeRows(RUNS, "long-lived");
  assert.deepEqual(rows.map((row) => row.key), ["direct", "nginx", "bun-minimal", "bun"]);
  const [direct, nginx, minimal, bun] = rows;
  assert.equal(direct!.repliesPerSecond, 50_000);
  assert.equal(direct!.perCpuSecond, undefined);
  assert.equal(direct!.vsNginx, undefined);
  assert.equal(nginx!.perCpuSecond, 80_000);
  assert.equal(nginx!.vsNginx, 1);
  assert.equal(minimal!.vsNginx, 0.75);
  assert.equal(bun!.perCpuSecond, 48_000);
  assert.equal(bun!.vsNginx, 0.6);
  assert.equal(bun!.vsMinimal, 0.8);
  assert.deepEqual(bun!.range, [40_000, 48_000]);
  assert.deepEqual(direct!.range, [50_000, 50_000]);
  // A mode nobody ran has no rows.
  assert.deepEqual(modeRows(RUNS, "new-flow"), []);
});

test("medianRound: the middle round by replies per CPU-second (per second when direct)", () => {
  const a = load(100, 1);
  const b = load(300, 1);
  const c = load(200, 1);
  assert.equal(medianRound([a, b, c]), c);
  assert.equal(medianRound([a, b]), a);
  const direct = [load(10, undefined), load(30, undefined), load(20, undefined)];
  assert.equal(medianRound(direct), direct[2]);
  assert.throws(() => medianRound([]), /median of no rounds/);
});

test("bytesPerFlow: the RSS growth over the flows opened", () => {
  assert.equal(bytesPerFlow(RUNS[3]!.memory!), 1500);
  assert.equal(bytesPerFlow({ flows: 0, answered: 0, rssBefore: 1, rssAfter: 2 }), undefined);
});

test("parseStrace: calls per syscall, errors column or not, no total", () => {
  const text = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 36.10    0.000126          63      4000           recvmmsg
 10.89    0.000038           1        34        13 openat
------ ----------- ----------- --------- --------- ----------------
100.00    0.000349           2      4034        13 total
`;
  assert.deepEqual(parseStrace(text), [
    { syscall: "recvmmsg", calls: 4000 },
    { syscall: "openat", calls: 34 },
  ]);
});

test("renderUdp: the CPU, a table per mode with ratios, memory and what was not measured", () => {
  const page = renderUdp(RUNS, {
    date: "2026-12-06",
    cpu: "AMD EPYC (family 25, model 1)",
    setup: { bun: "1.4.5" },
    warmupSeconds: 1,
    seconds: 2,
    rounds: 3,
    clients: 50,
    quick: true,
  });
  assert.match(page, /^# UDP \(issue 21\): 2026-12-06 \(quick\)\n/);
  assert.match(page, /then 3 round\(s\)\s+of 2 s per row/);
  assert.match(page, /CPU: AMD EPYC \(family 25, model 1\)\./);
  assert.match(page, /\| direct \| 50\.0k \| - \| 50\.0k-50\.0k \| - \| - \| 100 \| 900 \| 1 \|\n/);
  assert.match(
    page,
    /\| mini-balancer \(Bun\) \| 30\.0k \| 48\.0k \| 40\.0k-48\.0k \| 0\.60x \| 0\.80x \|/,
  );
  assert.match(page, /\| mini-balancer \(Bun\) \| 10000 \| 9999 \| 38\.1 \| 52\.5 \| 1\.5 \|\n/);
  assert.match(page, /- mini-balancer \(Bun\): new-flow: boom\n/);
  assert.match(page, /- bun: 1\.4\.5\n$/);
});
