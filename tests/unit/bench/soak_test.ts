import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  lastHalfSlope,
  readPairs,
  renderSoakMarkdown,
  type RssSample,
  slope,
  type SoakResults,
  type SoakRun,
  type SoakSettings,
  summarizeSoak,
  valueAt,
  verdict,
  whereItGrows,
} from "../../../bench/soak_report.ts";

const MIB = 1024 * 1024;

const settings: SoakSettings = {
  minutes: 10,
  sampleSeconds: 5,
  creepMiBPerMin: 0.2,
  idleConnections: 300,
  shortPerSecond: 500,
  echoesPerSecond: 10,
  heapLog: true,
};

/** Samples every 5 s over 10 min, RSS in MiB given by `mib(t)`, half of it file-backed. */
function samples(mib: (t: number) => number): RssSample[] {
  return Array.from({ length: 121 }, (_, k) => {
    const t = k * 5;
    const rss = mib(t) * MIB;
    return { t, rss, anon: rss / 2, file: rss / 2, cpu: t / 4 };
  });
}

function soakRun(key: string, mib: (t: number) => number, memory = false): SoakRun {
  const run: SoakRun = {
    key,
    name: key,
    samples: samples(mib),
    memory: memory
      ? samples(mib).map(({ t, rss }) => ({
        t: t + 1,
        rss,
        heapTotal: 20 * MIB,
        heapUsed: 10 * MIB,
        external: 5 * MIB,
      }))
      : [],
    errors: {},
    notes: {},
    summary: { slopes: {} },
  };
  run.summary = summarizeSoak(run, settings);
  return run;
}

// RSS that steps from 90 to 127 MiB at 25 s, then creeps 1.75 MiB/min (the shape).
const creeping = (t: number) => (t < 25 ? 90 : 127 + (1.75 * t) / 60);
// The same step, then flat.
const flat = (t: number) => (t < 25 ? 90 : 127);

describe("the soak report", () => {
  it("slope fits a least-squares line and needs two distinct x", () => {
    assert.equal(slope([[0, 1], [1, 3], [2, 5]]), 2);
    assert.equal(slope([[0, 0], [1, 1], [2, 0], [3, 1]]), 0.2);
    assert.equal(slope([[1, 1]]), undefined);
    assert.equal(slope([[1, 1], [1, 2]]), undefined);
  });

  it("valueAt takes the nearest sample within the tolerance", () => {
    const points = [{ t: 0, v: 1 }, { t: 29.8, v: 2 }, { t: 35.1, v: 3 }];
    assert.equal(valueAt(points, 30, 3, (p) => p.v), 2);
    assert.equal(valueAt(points, 60, 3, (p) => p.v), undefined);
  });

  it("lastHalfSlope reads only the last half, in MiB per minute", () => {
    const rss = samples(creeping);
    assert.ok(Math.abs(lastHalfSlope(rss, 600, (s) => s.rss)! - 1.75) < 1e-9);
    assert.equal(lastHalfSlope(rss.slice(0, 2), 600, (s) => s.rss), undefined);
    // The step at 25 s is in the first half and does not count.
    assert.ok(Math.abs(lastHalfSlope(samples(flat), 600, (s) => s.rss)!) < 1e-9);
  });

  it("verdict says the creep stops below the threshold and not at it", () => {
    assert.equal(verdict(0.19, 0.2), "creep stops");
    assert.equal(verdict(-1, 0.2), "creep stops");
    assert.equal(verdict(0.2, 0.2), "still creeping");
  });

  it("summarizeSoak reads RSS at 30 s, 1 min, 5 min and the end, and judges the last half", () => {
    const summary = soakRun("deno", creeping).summary;
    assert.equal(summary.before, 90);
    assert.equal(summary.at30s, 127 + 1.75 / 2);
    assert.equal(summary.at1min, 127 + 1.75);
    assert.equal(summary.at5min, 127 + 1.75 * 5);
    assert.equal(summary.end, 127 + 1.75 * 10);
    assert.equal(summary.verdict, "still creeping");
    assert.ok(Math.abs(summary.slopes.anon! - 1.75 / 2) < 1e-9);
    assert.equal(soakRun("deno", flat).summary.verdict, "creep stops");
  });

  it("summarizeSoak leaves out what a short run did not reach, and has no verdict without samples", () => {
    const short = { samples: samples(flat).slice(0, 13), memory: [] };
    const summary = summarizeSoak(short, { ...settings, minutes: 1 });
    assert.equal(summary.at1min, 127);
    assert.equal(summary.at5min, undefined);
    const none = summarizeSoak({ samples: samples(flat).slice(0, 1), memory: [] }, settings);
    assert.equal(none.verdict, undefined);
    assert.equal(none.end, undefined);
  });

  it("puts growth with a flat heap outside the JS heap", () => {
    const run = soakRun("deno", creeping, true);
    assert.equal(run.summary.slopes.heapTotal, 0);
    assert.ok(Math.abs(run.summary.slopes.outside! - 1.75) < 1e-9);
    assert.deepEqual(run.summary.heapAtEnd, {
      heapTotal: 20,
      heapUsed: 10,
      external: 5,
      outside: 127 + 1.75 * 10 - 25,
    });
    assert.match(whereItGrows(run)!, /most of the growth is in native memory outside the JS heap/);
    assert.doesNotMatch(whereItGrows(soakRun("deno", flat, true))!, /most of the growth/);
  });

  it("reads a creep on mini-balancer alone as ours, and on both as the runtime's", () => {
    const ours = readPairs([soakRun("deno", creeping), soakRun("deno-minimal", flat)]);
    assert.deepEqual(ours.length, 1);
    assert.match(ours[0]!, /^Deno: .*the creep is ours/);
    const both = readPairs([soakRun("deno", creeping), soakRun("deno-minimal", creeping)]);
    assert.match(both[0]!, /likely Deno's, not ours/);
    assert.deepEqual(readPairs([soakRun("deno", creeping)]), []);
  });

  it("renders the verdict, the slope and the RSS series for each contender", () => {
    const results: SoakResults = {
      date: "2026-12-01",
      host: "test",
      durationSeconds: 1250,
      settings,
      pinning: "Pinning: test.",
      remarks: [],
      setup: { deno: "2.9.6" },
      runs: [soakRun("deno", creeping, true), soakRun("deno-minimal", flat, true)],
    };
    const lines = renderSoakMarkdown(results).split("\n");
    assert.ok(lines.includes("| **verdict** | **still creeping** | **creep stops** |"));
    assert.ok(
      lines.includes("| **RSS slope over the last half (MiB/min)** | **+1.75** | **+0.00** |"),
    );
    assert.ok(lines.includes("| RSS at 30 s (MiB) | 127.9 | 127.0 |"));
    assert.ok(lines.includes("| 10 min | 144.5 | 127.0 |"));
    assert.ok(lines.some((l) => l.startsWith("- Deno: ") && l.includes("the creep is ours")));
    assert.ok(!lines.some((l) => l.includes("too short for the verdict")));
    assert.ok(lines.includes("## deno: the runtime's own figures over time (MiB)"));
  });

  it("leaves the runtime's rows out when no proxy logged its memory, and says a short run is short", () => {
    const results: SoakResults = {
      date: "2026-12-01",
      host: "test",
      durationSeconds: 300,
      settings: { ...settings, minutes: 2, heapLog: false },
      pinning: "Pinning: test.",
      remarks: [],
      setup: {},
      runs: [soakRun("deno", flat)],
    };
    const markdown = renderSoakMarkdown(results);
    assert.doesNotMatch(markdown, /JS heap/);
    assert.match(markdown, /too short for the verdict/);
  });
});
