import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { metrics, renderMarkdown, summarize } from "../../../bench/report.ts";
import type { ContenderResult, Results } from "../../../bench/results.ts";
import {
  renderAgainstHaproxy,
  renderBaseline,
  renderFloors,
  renderTargets,
} from "../../../bench/targets.ts";

function contender(key: string, medians: Record<string, number>): ContenderResult {
  return { key, name: key, rounds: [], medians, min: {}, max: {}, toDirect: {}, toHaproxy: {} };
}

function rounds(key: string, values: Record<string, number[]>): ContenderResult {
  const pick = (f: (v: number[]) => number) =>
    Object.fromEntries(Object.entries(values).map(([k, v]) => [k, f(v)]));
  return {
    ...contender(key, pick((v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!)),
    min: pick((v) => Math.min(...v)),
    max: pick((v) => Math.max(...v)),
  };
}

function row(lines: string[], label: string): string {
  const line = lines.find((l) => l.startsWith(`| ${label} |`));
  assert.ok(line, `a row for ${label}`);
  return line;
}

describe("the benchmark report", () => {
  it("divides each mini-balancer figure by its own runtime's minimal proxy", () => {
    const lines = renderFloors([
      contender("bun", { connPerSec: 900, cpuPer10kConn: 1.2 }),
      contender("bun-minimal", { connPerSec: 1000, cpuPer10kConn: 1 }),
      contender("deno", { connPerSec: 600, cpuPer10kConn: 2 }),
      contender("deno-minimal", { connPerSec: 400, cpuPer10kConn: 1.6 }),
    ]);
    assert.equal(row(lines, "new connections/s"), "| new connections/s | 0.90× | 1.50× |");
    assert.equal(
      row(lines, "CPU per 10,000 connections"),
      "| CPU per 10,000 connections | 1.20× | 1.25× |",
    );
    assert.equal(row(lines, "KiB per idle connection"), "| KiB per idle connection | ? | ? |");
  });

  it("has no floor section when no minimal proxy ran", () => {
    assert.deepEqual(renderFloors([contender("bun", { connPerSec: 1 })]), []);
  });

  it("sets each figure beside the baseline's with the per-round range and the ratio", () => {
    const lines = renderBaseline([
      rounds("bun", { cpuPer10kConn: [0.5, 0.55, 0.6], reqPerSec: [41200, 40000, 42500] }),
      rounds("bun-base", { cpuPer10kConn: [0.4, 0.5, 0.45], reqPerSec: [40000, 40000, 40000] }),
      rounds("deno", { cpuPer10kConn: [1.2], kibPerConn: [30] }),
      rounds("deno-base", { cpuPer10kConn: [1.5] }),
      contender("haproxy", { cpuPer10kConn: 0.2 }),
    ]);
    assert.equal(lines[0], "## Against the baseline");
    assert.equal(
      row(lines, "figure"),
      "| figure | bun | bun-base | new ÷ base | deno | deno-base | new ÷ base |",
    );
    assert.equal(
      row(lines, "CPU s per 10,000 connections"),
      "| CPU s per 10,000 connections | 0.550 (0.500–0.600) | 0.450 (0.400–0.500) | 1.22× " +
        "| 1.200 | 1.500 | 0.80× |",
    );
    assert.equal(
      row(lines, "keep-alive req/s"),
      "| keep-alive req/s | 41,200 (40,000–42,500) | 40,000 | 1.03× | ? | ? | ? |",
    );
    assert.equal(
      row(lines, "KiB per idle connection"),
      "| KiB per idle connection | ? | ? | ? | 30.00 | ? | ? |",
    );
  });

  it("has no baseline section without a baseline contender, nor for one alone", () => {
    assert.deepEqual(renderBaseline([contender("bun", { cpuPerGB: 1 })]), []);
    assert.deepEqual(renderBaseline([contender("bun-base", { cpuPerGB: 1 })]), []);
  });

  it("marks a target met or missed by its worst ratio", () => {
    const lines = renderTargets([
      contender("bun", { connPerSec: 1100, reqPerSec: 900 }),
      contender("haproxy", { connPerSec: 1000, reqPerSec: 1000 }),
    ]);
    assert.match(row(lines, "new connections/s ≥ 1.0× HAProxy"), /✓ 1\.10×/);
    assert.match(row(lines, "keep-alive req/s ≥ 1.0× HAProxy"), /✗ 0\.90×/);
    assert.match(row(lines, "new connections/s ≥ 1.0× nginx"), /\| \? \|/);
  });

  it("checks issue 11's targets against each runtime's minimal proxy", () => {
    const lines = renderTargets([
      contender("bun", { cpuPer10kConn: 1.04, p99Ms: 1.2 }),
      contender("bun-minimal", { cpuPer10kConn: 1, p99Ms: 1 }),
      contender("deno", { cpuPer10kConn: 2.1, kibPerConn: 12 }),
      contender("deno-minimal", { cpuPer10kConn: 2, kibPerConn: 10 }),
    ]);
    assert.equal(
      row(lines, "target"),
      "| target | bun | deno |",
    );
    assert.match(
      row(lines, "CPU per connection ≤ 1.05× minimal Bun proxy"),
      /\| ✓ 1\.04× \| {2}\|$/,
    );
    assert.match(row(lines, "keep-alive p99 ≤ 1.05× minimal Bun proxy"), /\| ✗ 1\.20× \| {2}\|$/);
    assert.match(
      row(lines, "CPU per connection ≤ 1.1× minimal Deno proxy"),
      /\| {2}\| ✓ 1\.05× \|$/,
    );
    assert.match(row(lines, "KiB per idle connection ≤ 1.1× minimal Deno proxy"), /✗ 1\.20× \|$/);
  });

  it("no longer holds bulk to direct nor RSS after close to idle as targets", () => {
    const rows = renderTargets([contender("bun", {}), contender("direct", {})])
      .filter((l) => l.startsWith("| "));
    assert.ok(rows.length > 5, "a targets table");
    assert.ok(!rows.some((l) => l.includes("× direct")), "no target against direct");
    assert.ok(!rows.some((l) => l.includes("RSS after")), "no RSS-after-close target");
  });

  it("puts the two-core contenders beside HAProxy on two threads", () => {
    const keys = metrics(100).map((m) => m.key);
    const round = (figures: Record<string, number>) => ({ figures, errors: {}, notes: {} });
    const [workers] = summarize([
      { key: "bun-workers2", name: "w", rounds: [round({ cpuPer100kReq: 3 })] },
      { key: "haproxy", name: "h", rounds: [round({ cpuPer100kReq: 1 })] },
      { key: "haproxy-nbthread2", name: "h2", rounds: [round({ cpuPer100kReq: 2 })] },
    ], keys);
    assert.equal(workers!.toHaproxy.cpuPer100kReq, 1.5);
    const lines = renderAgainstHaproxy([
      rounds("bun-workers2", { cpuPer100kReq: [3] }),
      rounds("haproxy-nbthread2", { cpuPer100kReq: [2] }),
    ]);
    assert.equal(
      row(lines, "CPU s per 100,000 keep-alive requests"),
      "| CPU s per 100,000 keep-alive requests | 3.000 | 2.000 | 1.50× |",
    );
  });

  it("sets Bun's PROXY v2 and TLS variants beside HAProxy doing the same", () => {
    const lines = renderAgainstHaproxy([
      rounds("bun-proxy-v2", { connPerSec: [5800], cpuPerGBLarge: [0.4, 0.35, 0.5] }),
      rounds("haproxy-proxy-v2", { connPerSec: [6500], cpuPerGBLarge: [1.6] }),
      rounds("bun-tls", { connPerSec: [1200], p99Ms: [18] }),
      rounds("haproxy-tls", { connPerSec: [1000], p99Ms: [12] }),
    ]);
    assert.equal(lines[0], "## Against HAProxy doing the same");
    assert.equal(
      row(lines, "figure"),
      "| figure | bun-proxy-v2 | haproxy-proxy-v2 | ÷ HAProxy | bun-tls | haproxy-tls | ÷ HAProxy |",
    );
    assert.equal(
      row(lines, "new connections/s"),
      "| new connections/s | 5,800 | 6,500 | 0.89× | 1,200 | 1,000 | 1.20× |",
    );
    assert.equal(
      row(lines, "CPU s per GB, 1 MiB bodies"),
      "| CPU s per GB, 1 MiB bodies | 0.400 (0.350–0.500) | 1.600 | 0.25× | ? | ? | ? |",
    );
    assert.equal(row(lines, "keep-alive p99 (ms)").split(" | ").at(-1), "1.50× |");
  });

  it("has no section against HAProxy doing the same without a PROXY v2 or TLS variant", () => {
    assert.deepEqual(
      renderAgainstHaproxy([contender("bun", { connPerSec: 1 }), contender("haproxy", {})]),
      [],
    );
  });

  it("divides the PROXY v2 and TLS variants by HAProxy's variant and says n/a for bulk", () => {
    const round = (figures: Record<string, number>) => ({ figures, errors: {}, notes: {} });
    const keys = metrics(100).map((m) => m.key);
    const contenders = summarize([
      { key: "bun", name: "bun", rounds: [round({ connPerSec: 900, bulk1Up: 8 })] },
      { key: "haproxy", name: "haproxy", rounds: [round({ connPerSec: 1000, bulk1Up: 4 })] },
      {
        key: "bun-tls",
        name: "bun-tls",
        rounds: [round({ connPerSec: 300 })],
        httpOnly: true,
      },
      {
        key: "haproxy-tls",
        name: "haproxy-tls",
        rounds: [round({ connPerSec: 200 })],
        httpOnly: true,
      },
    ], keys);
    const tls = contenders.find((c) => c.key === "bun-tls")!;
    assert.equal(tls.haproxyKey, "haproxy-tls");
    assert.equal(tls.toHaproxy.connPerSec, 1.5);
    assert.equal(contenders.find((c) => c.key === "bun")!.toHaproxy.connPerSec, 0.9);
    const results: Results = {
      date: "2026-11-29",
      host: "test",
      quick: true,
      durationSeconds: 1,
      settings: {
        rounds: 1,
        wrkSeconds: 1,
        wrkConnections: 1,
        warmupSeconds: 1,
        iperfSeconds: 1,
        idleConnections: 100,
        settleMs: 1,
      },
      pinning: "pinned",
      remarks: [],
      setup: {},
      metrics: metrics(100),
      contenders,
    };
    const lines = renderMarkdown(results).split("\n");
    assert.equal(
      row(lines, "new connections/s"),
      "| new connections/s | 900 (0.90× h) | 1,000 (1.00× h) | 300 (1.50× h) | 200 (1.00× h) |",
    );
    assert.equal(
      row(lines, "bulk 1 stream, client→server (Gbit/s)"),
      "| bulk 1 stream, client→server (Gbit/s) | 8.00 (2.00× h) | 4.00 (1.00× h) | n/a | n/a |",
    );
    assert.match(row(lines, "keep-alive requests/s"), /\| failed \| failed \|$/);
  });
});
