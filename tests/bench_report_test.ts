import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ContenderResult } from "../bench/results.ts";
import { renderBaseline, renderFloors, renderTargets } from "../bench/targets.ts";

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
});
