/**
 * The soak's figures and report (issue 11): RSS at fixed points of the run,
 * the least-squares slope of RSS over its last half, the verdict that slope
 * gives, where the growth is (anonymous or file-backed pages, the JavaScript
 * heap, buffers outside it, or native memory), and each mini-balancer run
 * read beside its runtime's minimal proxy. Pure functions over the samples,
 * so that the tests check them and a saved run can be rendered again.
 *
 * @module
 */
import { formatFigure } from "./results.ts";
import type { TrafficCounts, TrafficSettings } from "./soak_traffic.ts";

/** How long, how much and how the soak judges. */
export interface SoakSettings extends TrafficSettings {
  /** Minutes of traffic per contender. */
  minutes: number;
  /** Seconds between RSS samples. */
  sampleSeconds: number;
  /** The slope over the last half, in MiB/min, below which the creep has stopped. */
  creepMiBPerMin: number;
  /** Whether the Bun and Deno proxies preloaded bench/memory_log.ts. */
  heapLog: boolean;
}

/** One reading of the proxy's memory from /proc, in bytes. */
export interface RssSample {
  /** Seconds since the traffic started; 0 is just before it. */
  t: number;
  rss: number;
  anon: number;
  file: number;
  /** The proxy's CPU seconds since just before the traffic. */
  cpu: number;
  /** Short connections done so far. */
  shortDone?: number;
  /** Echoes done so far. */
  echoDone?: number;
}

/** One line of bench/memory_log.ts, in bytes, as the runtime counts it. */
export interface MemorySample {
  /** Seconds since the traffic started (negative before it). */
  t: number;
  rss: number;
  /** The JavaScript heap as committed (V8's heapTotal, JSC's heap size). */
  heapTotal: number;
  heapUsed: number;
  /** Memory outside the heap that JavaScript objects hold, ArrayBuffers mostly. */
  external: number;
}

/** Least-squares slopes over the last half of the run, in MiB per minute. */
export interface Slopes {
  /** VmRSS from /proc: the figure the verdict reads. */
  rss?: number;
  anon?: number;
  file?: number;
  heapTotal?: number;
  heapUsed?: number;
  external?: number;
  /** The runtime's own RSS minus heapTotal and external: native memory. */
  outside?: number;
}

/** What one contender's soak comes to, in MiB. */
export interface SoakSummary {
  /** Just before the traffic started. */
  before?: number;
  at30s?: number;
  at1min?: number;
  at5min?: number;
  end?: number;
  peak?: number;
  /** A few seconds after the traffic stopped and the idle connections closed. */
  after?: number;
  slopes: Slopes;
  /** Undefined when the last half has fewer than three samples. */
  verdict?: "creep stops" | "still creeping";
  /** Runtime figures at the end: heapTotal, heapUsed, external, outside. */
  heapAtEnd?: { heapTotal: number; heapUsed: number; external: number; outside: number };
}

/** One contender's soak: every sample, the traffic it carried, and the summary. */
export interface SoakRun {
  key: string;
  name: string;
  /** From just before the traffic to its end. */
  samples: RssSample[];
  /** A few seconds after the traffic stopped. */
  after?: RssSample;
  /** The runtime's own figures, when it preloaded bench/memory_log.ts. */
  memory: MemorySample[];
  traffic?: TrafficCounts;
  /** Step name to error message. */
  errors: Record<string, string>;
  /** Milliseconds to open the idle connections; other processes' CPU seconds; wall seconds. */
  notes: Record<string, number>;
  summary: SoakSummary;
}

/** Everything a soak produced, as written to the JSON file. */
export interface SoakResults {
  date: string;
  host: string;
  durationSeconds: number;
  settings: SoakSettings;
  pinning: string;
  remarks: string[];
  setup: Record<string, string>;
  runs: SoakRun[];
}

const MIB = 1024 * 1024;

/**
 * The least-squares slope of y over x.
 *
 * @returns the slope, or undefined for fewer than two distinct x
 */
export function slope(points: readonly (readonly [number, number])[]): number | undefined {
  const n = points.length;
  if (n < 2) return undefined;
  const meanX = points.reduce((sum, [x]) => sum + x, 0) / n;
  const meanY = points.reduce((sum, [, y]) => sum + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - meanX) * (y - meanY);
    sxx += (x - meanX) ** 2;
  }
  return sxx === 0 ? undefined : sxy / sxx;
}

function nearest<T extends { t: number }>(
  samples: readonly T[],
  t: number,
  tolerance: number,
): T | undefined {
  let best: T | undefined;
  for (const sample of samples) {
    if (Math.abs(sample.t - t) <= tolerance) {
      if (best === undefined || Math.abs(sample.t - t) < Math.abs(best.t - t)) best = sample;
    }
  }
  return best;
}

/**
 * The value of the sample nearest to `t` seconds, if one lies within
 * `tolerance` seconds of it.
 *
 * @returns the value, or undefined
 */
export function valueAt<T extends { t: number }>(
  samples: readonly T[],
  t: number,
  tolerance: number,
  value: (sample: T) => number,
): number | undefined {
  const best = nearest(samples, t, tolerance);
  return best === undefined ? undefined : value(best);
}

/**
 * The slope of `value` in MiB per minute over the samples of the run's last
 * half, from `seconds / 2` to `seconds`.
 *
 * @param seconds the run's length
 * @returns the slope, or undefined for fewer than three samples there
 */
export function lastHalfSlope<T extends { t: number }>(
  samples: readonly T[],
  seconds: number,
  value: (sample: T) => number,
): number | undefined {
  const half = samples.filter((s) => s.t >= seconds / 2 && s.t <= seconds + 1);
  if (half.length < 3) return undefined;
  return slope(half.map((s) => [s.t / 60, value(s) / MIB] as const));
}

/**
 * The verdict the issue asks for: the creep has stopped when RSS grows
 * slower than `threshold` MiB/min over the last half of the run.
 */
export function verdict(
  rssSlope: number,
  threshold: number,
): "creep stops" | "still creeping" {
  return rssSlope < threshold ? "creep stops" : "still creeping";
}

const outside = (m: MemorySample) => m.rss - m.heapTotal - m.external;

/**
 * Summarizes one contender's samples: RSS before the traffic, at 30 s, 1 min,
 * 5 min and the end, its peak and what is left after; the slopes over the
 * last half; the verdict.
 *
 * @param run its samples (the summary is ignored)
 */
export function summarizeSoak(
  run: Pick<SoakRun, "samples" | "after" | "memory">,
  settings: SoakSettings,
): SoakSummary {
  const seconds = settings.minutes * 60;
  const tolerance = settings.sampleSeconds / 2 + 0.5;
  const samples = run.samples;
  const rss = (s: RssSample) => s.rss / MIB;
  const at = (t: number) => (t > seconds + 1 ? undefined : valueAt(samples, t, tolerance, rss));
  const last = samples.at(-1);
  const summary: SoakSummary = {
    before: valueAt(samples, 0, 0, rss),
    at30s: at(30),
    at1min: at(60),
    at5min: at(300),
    end: last && last.t > 0 ? rss(last) : undefined,
    peak: samples.length ? Math.max(...samples.map(rss)) : undefined,
    after: run.after ? rss(run.after) : undefined,
    slopes: {
      rss: lastHalfSlope(samples, seconds, (s) => s.rss),
      anon: lastHalfSlope(samples, seconds, (s) => s.anon),
      file: lastHalfSlope(samples, seconds, (s) => s.file),
    },
  };
  if (run.memory.length > 0) {
    const memory = run.memory;
    summary.slopes.heapTotal = lastHalfSlope(memory, seconds, (m) => m.heapTotal);
    summary.slopes.heapUsed = lastHalfSlope(memory, seconds, (m) => m.heapUsed);
    summary.slopes.external = lastHalfSlope(memory, seconds, (m) => m.external);
    summary.slopes.outside = lastHalfSlope(memory, seconds, outside);
    const end = memory.filter((m) => m.t <= seconds + 1).at(-1);
    if (end) {
      summary.heapAtEnd = {
        heapTotal: end.heapTotal / MIB,
        heapUsed: end.heapUsed / MIB,
        external: end.external / MIB,
        outside: outside(end) / MIB,
      };
    }
  }
  if (summary.slopes.rss !== undefined) {
    summary.verdict = verdict(summary.slopes.rss, settings.creepMiBPerMin);
  }
  return summary;
}

/** mini-balancer's contender and its runtime's minimal proxy, to read side by side. */
const PAIRS = [
  { ours: "deno", floor: "deno-minimal", runtime: "Deno" },
  { ours: "bun", floor: "bun-minimal", runtime: "Bun" },
] as const;

function figure(value: number | undefined, digits = 1): string {
  return value === undefined ? "–" : formatFigure(value, digits);
}

function signed(value: number | undefined): string {
  if (value === undefined) return "–";
  return `${value >= 0 ? "+" : "−"}${formatFigure(Math.abs(value), 2)}`;
}

/**
 * Says where the last half's growth is: anonymous or file-backed pages, and
 * with the runtime's figures the JavaScript heap, external buffers or
 * native memory.
 *
 * @returns one sentence, or undefined without a slope
 */
export function whereItGrows(run: SoakRun): string | undefined {
  const s = run.summary.slopes;
  if (s.rss === undefined) return undefined;
  let text = `${run.name}: over the last half RSS moved ${signed(s.rss)} MiB/min ` +
    `(anonymous ${signed(s.anon)}, file-backed ${signed(s.file)})`;
  if (s.heapTotal !== undefined) {
    text += `; by the runtime's count the JS heap ${signed(s.heapTotal)} ` +
      `(used ${signed(s.heapUsed)}), external buffers ${signed(s.external)}, ` +
      `native memory outside both ${signed(s.outside)}`;
    const parts = [
      ["the JS heap", s.heapTotal],
      ["external buffers", s.external],
      ["native memory outside the JS heap", s.outside],
    ] as const;
    const [largest, value] = [...parts].sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0))[0]!;
    if (run.summary.verdict === "still creeping" && value !== undefined && value > 0) {
      text += `: most of the growth is in ${largest}`;
    }
  }
  return `${text}.`;
}

/**
 * Reads each mini-balancer run beside its runtime's minimal proxy under the
 * same traffic: creeping alone is ours; both creeping is likely the runtime's.
 *
 * @returns one sentence per pair that both ran with a verdict
 */
export function readPairs(runs: readonly SoakRun[]): string[] {
  const lines: string[] = [];
  for (const pair of PAIRS) {
    const ours = runs.find((r) => r.key === pair.ours)?.summary.verdict;
    const floor = runs.find((r) => r.key === pair.floor)?.summary.verdict;
    if (ours === undefined || floor === undefined) continue;
    const creeps = (v: string) => v === "still creeping";
    if (creeps(ours) && !creeps(floor)) {
      lines.push(
        `${pair.runtime}: mini-balancer still creeps and the minimal ${pair.runtime} proxy ` +
          "does not under the same traffic: the creep is ours.",
      );
    } else if (creeps(ours) && creeps(floor)) {
      lines.push(
        `${pair.runtime}: mini-balancer and the minimal ${pair.runtime} proxy both still creep ` +
          `under the same traffic: likely ${pair.runtime}'s, not ours.`,
      );
    } else if (!creeps(ours) && creeps(floor)) {
      lines.push(
        `${pair.runtime}: the minimal ${pair.runtime} proxy still creeps and mini-balancer ` +
          "does not.",
      );
    } else {
      lines.push(
        `${pair.runtime}: neither mini-balancer nor the minimal ${pair.runtime} proxy creeps ` +
          "over the last half: what growth there is comes early and stops.",
      );
    }
  }
  return lines;
}

function table(header: string[], rows: string[][]): string[] {
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i === 0 ? " --- " : " ---: ")).join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ];
}

/** The times the RSS series shows: every sample in the first minute, then every 30 s. */
function seriesTimes(settings: SoakSettings): number[] {
  const seconds = settings.minutes * 60;
  const times: number[] = [];
  for (let t = 0; t <= Math.min(60, seconds); t += settings.sampleSeconds) times.push(t);
  for (let t = 90; t <= seconds; t += 30) times.push(t);
  if (times.at(-1) !== seconds) times.push(seconds);
  return times;
}

function minutes(seconds: number): string {
  return seconds < 60 ? `${seconds} s` : `${formatFigure(seconds / 60, seconds % 60 ? 1 : 0)} min`;
}

/**
 * Writes the soak's results as markdown: a table per contender of RSS at
 * fixed points, the slope and verdict, where it grows, the traffic carried,
 * the pairs read side by side, the RSS series and the setup.
 */
export function renderSoakMarkdown(results: SoakResults): string {
  const { settings, runs } = results;
  const seconds = settings.minutes * 60;
  const out: string[] = [];
  out.push(`# Soak: ${results.date} on ${results.host}`, "");
  out.push(
    `${minutes(seconds)} of steady mixed traffic per contender, one contender at a time: ` +
      `${formatFigure(settings.idleConnections, 0)} idle connections held from start to end, ` +
      `${formatFigure(settings.shortPerSecond, 0)} short connections a second (64 bytes echoed, ` +
      `then closed) and ${formatFigure(settings.echoesPerSecond, 0)} echoes of 1 MiB a second ` +
      "(each on a new connection), through the proxy to two echo backends " +
      "(bench/soak_peers.ts). RSS is the proxy's VmRSS from /proc, summed over its " +
      `process tree, every ${settings.sampleSeconds} s. The verdict reads the least-squares ` +
      `slope of RSS over the last half of the run: under ${settings.creepMiBPerMin} MiB/min ` +
      'is "creep stops", otherwise "still creeping".',
    "",
  );
  if (seconds < 600) {
    out.push(
      `A ${minutes(seconds)} run: its last half is ${minutes(seconds / 2)}, too short ` +
        "for the verdict to say whether a creep stops; the issue asks for ten minutes.",
      "",
    );
  }
  for (const remark of results.remarks) out.push(`${remark}`, "");

  const header = ["figure", ...runs.map((r) => r.name)];
  const row = (label: string, cell: (run: SoakRun) => string) => [label, ...runs.map(cell)];
  const s = (run: SoakRun) => run.summary;
  const heapRows = runs.some((r) => r.memory.length > 0);
  const rows = [
    row("RSS before the traffic (MiB)", (r) => figure(s(r).before)),
    row("RSS at 30 s (MiB)", (r) => figure(s(r).at30s)),
    row("RSS at 1 min (MiB)", (r) => figure(s(r).at1min)),
    row("RSS at 5 min (MiB)", (r) => figure(s(r).at5min)),
    row(`RSS at the end, ${minutes(seconds)} (MiB)`, (r) => figure(s(r).end)),
    row("peak RSS (MiB)", (r) => figure(s(r).peak)),
    row("RSS 5 s after the traffic stopped (MiB)", (r) => figure(s(r).after)),
    row("**RSS slope over the last half (MiB/min)**", (r) => `**${signed(s(r).slopes.rss)}**`),
    row("**verdict**", (r) => `**${s(r).verdict ?? "too few samples"}**`),
    row("anonymous RSS slope (MiB/min)", (r) => signed(s(r).slopes.anon)),
    row("file-backed RSS slope (MiB/min)", (r) => signed(s(r).slopes.file)),
    ...(heapRows
      ? [
        row("JS heap committed at the end (MiB)", (r) => figure(s(r).heapAtEnd?.heapTotal)),
        row("JS heap used at the end (MiB)", (r) => figure(s(r).heapAtEnd?.heapUsed)),
        row("external buffers at the end (MiB)", (r) => figure(s(r).heapAtEnd?.external)),
        row("native, outside both, at the end (MiB)", (r) => figure(s(r).heapAtEnd?.outside)),
        row("JS heap committed slope (MiB/min)", (r) => signed(s(r).slopes.heapTotal)),
        row("JS heap used slope (MiB/min)", (r) => signed(s(r).slopes.heapUsed)),
        row("external buffers slope (MiB/min)", (r) => signed(s(r).slopes.external)),
        row("native, outside both, slope (MiB/min)", (r) => signed(s(r).slopes.outside)),
      ]
      : []),
    row("short connections done", (r) => r.traffic ? formatFigure(r.traffic.shortDone, 0) : "–"),
    row("1 MiB echoes done", (r) => r.traffic ? formatFigure(r.traffic.echoDone, 0) : "–"),
    row(
      "failed / skipped (short, echoes)",
      (r) =>
        r.traffic
          ? `${r.traffic.shortFailed}/${r.traffic.shortSkipped}, ` +
            `${r.traffic.echoFailed}/${r.traffic.echoSkipped}`
          : "–",
    ),
    row("idle connections lost", (r) => (r.traffic ? String(r.traffic.idleLost) : "–")),
    row("proxy CPU busy (share of a core)", (r) => {
      const last = r.samples.at(-1);
      return last && last.t > 0 ? formatFigure(last.cpu / last.t, 2) : "–";
    }),
    row("other processes' CPU s", (r) => figure(r.notes.otherCpuSeconds, 0)),
  ];
  out.push(...table(header, rows), "");
  out.push(
    "File-backed RSS is mostly the runtime's executable, paged in as code first runs; " +
      "anonymous RSS is where a leak shows." +
      (heapRows
        ? " The JS heap, external and native rows come from the runtime itself " +
          "(bench/memory_log.ts, preloaded: `Deno.memoryUsage()`, Bun's " +
          "`process.memoryUsage()`), at its own moments, a few seconds off the RSS samples. " +
          "Native is the runtime's RSS minus the committed heap and external buffers: the " +
          "runtime's Rust or Zig side, V8's own structures and what the allocator keeps; " +
          "for a sample or two after a major GC it also holds heap pages V8 has freed but " +
          "not yet returned, so read its slope rather than one sample."
        : ""),
    "",
  );

  const reading = [...readPairs(runs), ...runs.flatMap((r) => whereItGrows(r) ?? [])];
  if (reading.length > 0) out.push("## Reading", "", ...reading.map((l) => `- ${l}`), "");

  const failures = runs.flatMap((r) =>
    Object.entries(r.errors).map(([step, error]) => `- ${r.name}, ${step}: ${error}`)
  );
  const lastErrors = runs.flatMap((r) =>
    r.traffic?.lastError ? [`- ${r.name}, last traffic error: ${r.traffic.lastError}`] : []
  );
  if (failures.length + lastErrors.length > 0) {
    out.push("## Failures", "", ...failures, ...lastErrors, "");
  }

  out.push("## RSS over time (MiB)", "");
  const tolerance = settings.sampleSeconds / 2 + 0.5;
  out.push(
    ...table(
      ["t", ...runs.map((r) => r.name)],
      seriesTimes(settings).map((t) => [
        minutes(t),
        ...runs.map((r) => figure(valueAt(r.samples, t, tolerance, (x) => x.rss / MIB))),
      ]),
    ),
    "",
  );

  for (const run of runs.filter((r) => r.memory.length > 0)) {
    out.push(`## ${run.name}: the runtime's own figures over time (MiB)`, "");
    // Its lines come every 5 s too, out of step with the harness's samples:
    // the line nearest to each time of the RSS series, at its own time.
    const lines = [
      ...new Set(seriesTimes(settings).map((t) => nearest(run.memory, t, tolerance))),
    ].filter((m) => m !== undefined);
    const rows = lines.map((m) => [
      m.t < 60 ? `${formatFigure(m.t, 1)} s` : `${formatFigure(m.t / 60, 2)} min`,
      ...[m.rss, m.heapTotal, m.heapUsed, m.external, outside(m)].map((v) => figure(v / MIB)),
    ]);
    out.push(
      ...table(
        ["t", "RSS", "JS heap committed", "JS heap used", "external", "native, outside both"],
        rows,
      ),
      "",
    );
  }

  out.push("## Setup", "", results.pinning, "");
  out.push(...Object.entries(results.setup).map(([key, value]) => `- ${key}: ${value}`), "");
  out.push(`Took ${formatFigure(results.durationSeconds / 60, 1)} minutes.`, "");
  return out.join("\n");
}
