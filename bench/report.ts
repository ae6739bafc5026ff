/**
 * Medians over rounds, ratios to the direct connection and to HAProxy, and
 * the results as a markdown table and as JSON.
 *
 * @module
 */
import { LARGE_CONNECTIONS, type RoundResult } from "./measure.ts";
import { type ContenderResult, formatFigure, type Metric, type Results } from "./results.ts";
import {
  matchingHaproxy,
  renderAgainstHaproxy,
  renderBaseline,
  renderFloors,
  renderTargets,
} from "./targets.ts";

/** Other processes' CPU time, as a share of wall time, past which a round is flagged. */
export const NOISY = 0.05;

/**
 * Every figure, in table order.
 *
 * @param idleConnections how many idle connections the memory rows are about
 */
export function metrics(idleConnections: number): Metric[] {
  const n = idleConnections.toLocaleString("en-US");
  const m = (
    key: string,
    label: string,
    better: Metric["better"],
    digits: number,
    direct: boolean,
  ) => ({
    key,
    label,
    better,
    digits,
    direct,
  });
  return [
    // Each rate with the proxy's CPU for the work it did beside it: steadier
    // than the rate on a noisy machine, and the only fair figure for the
    // unpinned contenders, whose rate depends on what the load left them.
    m("connPerSec", "new connections/s", "higher", 0, true),
    m("cpuPer10kConn", "proxy CPU s per 10,000 connections", "lower", 3, false),
    m("reqPerSec", "keep-alive requests/s", "higher", 0, true),
    m("cpuPer100kReq", "proxy CPU s per 100,000 keep-alive requests", "lower", 3, false),
    m("p50Ms", "keep-alive latency p50 (ms)", "lower", 3, true),
    m("p99Ms", "keep-alive latency p99 (ms)", "lower", 3, true),
    m("bulk1Up", "bulk 1 stream, client→server (Gbit/s)", "higher", 2, true),
    m("bulk1Down", "bulk 1 stream, server→client (Gbit/s)", "higher", 2, true),
    m("bulk8Up", "bulk 8 streams, client→server (Gbit/s)", "higher", 2, true),
    m("bulk8Down", "bulk 8 streams, server→client (Gbit/s)", "higher", 2, true),
    m("cpuPerGB", "proxy CPU s per GB moved", "lower", 3, false),
    m("largeGbps", "1 MiB HTTP bodies, keep-alive (Gbit/s)", "higher", 2, true),
    m("cpuPerGBLarge", "proxy CPU s per GB of 1 MiB HTTP bodies", "lower", 3, false),
    m("rssIdleMiB", "RSS idle (MiB)", "lower", 1, false),
    m("rssLoadedMiB", `RSS with ${n} idle connections (MiB)`, "lower", 1, false),
    m("kibPerConn", "extra KiB per idle connection", "lower", 2, false),
    m("rssAfterMiB", `RSS after the ${n} close (MiB)`, "lower", 1, false),
    m("peakRssBulkMiB", "peak RSS during bulk (MiB)", "lower", 1, false),
  ];
}

/** The median of some numbers, or undefined for none. */
export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Summarises each contender's rounds: median, min and max per figure, and
 * ratios of the medians to direct and to HAProxy doing the same work
 * (plain HAProxy, or its PROXY v2 or TLS variant).
 */
export function summarize(
  list: { key: string; name: string; rounds: RoundResult[]; httpOnly?: boolean }[],
  keys: string[],
): ContenderResult[] {
  const results = list.map(({ key, name, rounds, httpOnly }): ContenderResult => {
    const medians: Record<string, number> = {};
    const min: Record<string, number> = {};
    const max: Record<string, number> = {};
    for (const metric of keys) {
      const values = rounds.map((r) => r.figures[metric]).filter((v): v is number =>
        v !== undefined
      );
      const mid = median(values);
      if (mid === undefined) continue;
      medians[metric] = mid;
      min[metric] = Math.min(...values);
      max[metric] = Math.max(...values);
    }
    const haproxyKey = matchingHaproxy(key);
    return {
      key,
      name,
      rounds,
      medians,
      min,
      max,
      toDirect: {},
      toHaproxy: {},
      haproxyKey,
      ...(httpOnly ? { httpOnly } : {}),
    };
  });
  const direct = results.find((r) => r.key === "direct")?.medians ?? {};
  for (const result of results) {
    const haproxy = results.find((r) => r.key === result.haproxyKey)?.medians ?? {};
    for (const [metric, value] of Object.entries(result.medians)) {
      const d = direct[metric];
      const h = haproxy[metric];
      if (d) result.toDirect[metric] = value / d;
      if (h) result.toHaproxy[metric] = value / h;
    }
  }
  return results;
}

/** The figures of the HTTP scenario, the only one the PROXY v2 and TLS variants run. */
const HTTP_FIGURES = new Set([
  "connPerSec",
  "reqPerSec",
  "p50Ms",
  "p99Ms",
  "largeGbps",
  "cpuPerGBLarge",
  "cpuPer10kConn",
  "cpuPer100kReq",
]);

function cell(result: ContenderResult, metric: Metric): string {
  const value = result.medians[metric.key];
  if (value === undefined) {
    if (result.key === "direct" && !metric.direct) return "n/a";
    if (result.httpOnly && !HTTP_FIGURES.has(metric.key)) return "n/a";
    return "failed";
  }
  const ratios: string[] = [];
  const d = result.toDirect[metric.key];
  const h = result.toHaproxy[metric.key];
  if (metric.direct && d !== undefined) ratios.push(`${d.toFixed(2)}× d`);
  if (h !== undefined) ratios.push(`${h.toFixed(2)}× h`);
  return `${formatFigure(value, metric.digits)}${ratios.length ? ` (${ratios.join(", ")})` : ""}`;
}

/**
 * Renders the results as markdown: the setup, the table, and what failed.
 *
 * @returns the markdown text
 */
export function renderMarkdown(results: Results): string {
  const s = results.settings;
  const lines = [
    `# mini-balancer benchmark: ${results.date} on ${results.host}${
      results.quick ? " (--quick)" : ""
    }`,
    "",
    `- ${results.pinning}`,
    `- Medians of ${s.rounds} round${
      s.rounds > 1 ? "s" : ""
    }; the JSON file beside this one has every round, min and max.`,
    `- wrk: 1 thread, ${s.wrkConnections} connections, ${s.wrkSeconds} s per run (after a ${s.warmupSeconds} s warm-up); ` +
    `new connections with \`-H 'Connection: close'\`; backend: nginx (1 worker) returning a 100-byte body on two ports.`,
    `- iperf3: ${s.iperfSeconds} s per run through a one-backend frontend; client→server is the default, server→client is \`-R\`.`,
    `- Memory: ${
      s.idleConnections.toLocaleString("en-US")
    } idle connections through the proxy to a holding backend; ` +
    `"after" is read ${s.settleMs} ms after they all closed. CPU and RSS are the proxy's, from /proc (process tree).`,
    `- Ratios: \`× d\` to direct (client straight to the backend), \`× h\` to HAProxy doing the same work ` +
    `(the send_proxy v2 and TLS columns to HAProxy's send-proxy-v2 and TLS columns); for CPU, memory and latency lower is better.`,
    ...(results.contenders.some((c) => c.medians.largeGbps !== undefined)
      ? [
        `- 1 MiB HTTP bodies: wrk, ${LARGE_CONNECTIONS} keep-alive connections, ${s.wrkSeconds} s, ` +
        "bytes from wrk's total read. Contenders that send PROXY headers or terminate TLS run " +
        "only the HTTP figures: iperf3 and the idle peers take neither.",
      ]
      : []),
    ...results.remarks.map((remark) => `- ${remark}`),
    `- Run took ${Math.round(results.durationSeconds)} s. ` +
    Object.entries(results.setup).map(([k, v]) => `${k}: ${v}`).join("; "),
    "",
  ];
  const header = ["figure", ...results.contenders.map((c) => c.name)];
  lines.push(`| ${header.join(" | ")} |`);
  lines.push(`| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`);
  for (const metric of results.metrics) {
    lines.push(
      `| ${[metric.label, ...results.contenders.map((c) => cell(c, metric))].join(" | ")} |`,
    );
  }
  const failures = results.contenders.flatMap((c) =>
    c.rounds.flatMap((round, i) =>
      Object.entries(round.errors).map(([step, error]) =>
        `- ${c.name}, round ${i + 1}, ${step}: ${error}`
      )
    )
  );
  const targets = renderTargets(results.contenders);
  if (targets.length > 0) lines.push("", ...targets);
  const floors = renderFloors(results.contenders);
  if (floors.length > 0) lines.push("", ...floors);
  const baseline = renderBaseline(results.contenders);
  if (baseline.length > 0) lines.push("", ...baseline);
  const againstHaproxy = renderAgainstHaproxy(results.contenders);
  if (againstHaproxy.length > 0) lines.push("", ...againstHaproxy);
  if (failures.length > 0) lines.push("", "## Failures", "", ...failures);
  const noisy = results.contenders.flatMap((c) =>
    c.rounds.flatMap((round, i) => {
      const other = round.notes.otherCpuSeconds ?? 0;
      const wall = round.notes.wallSeconds ?? 1;
      return other > NOISY * wall
        ? [`- ${c.name}, round ${i + 1}: ${other.toFixed(1)} CPU s in ${wall.toFixed(0)} s`]
        : [];
    })
  );
  if (noisy.length > 0) {
    lines.push(
      "",
      "## Other load on the machine",
      "",
      "Processes the benchmark did not start used CPU time during these measurements, " +
        "so their figures are less reliable:",
      "",
      ...noisy,
    );
  }
  return `${lines.join("\n")}\n`;
}
