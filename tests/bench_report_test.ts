import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ContenderResult } from "../bench/results.ts";
import { renderFloors, renderTargets } from "../bench/targets.ts";

function contender(key: string, medians: Record<string, number>): ContenderResult {
  return { key, name: key, rounds: [], medians, min: {}, max: {}, toDirect: {}, toHaproxy: {} };
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
