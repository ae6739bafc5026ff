/**
 * The detection bench's arithmetic and tables (bench/detect.ts), apart from
 * the processes it runs so that a unit test can check them: the median CPU
 * per connection of each row over its rounds, its ratio to the `sni-only`
 * and `plain` rows of the same runtime, the bound (four-tls at most
 * 1.1x sni-only), and each row beside the same row of the baseline code.
 *
 * @module
 */
import { median } from "./idle_report.ts";

/** One measured batch: N connections through one proxy, and what it cost. */
export interface DetectSample {
  /** Connections that completed (connect, first bytes, their echo, close). */
  connections: number;
  /** Connections that failed: refused, cut short or timed out. */
  failed: number;
  /** The proxy's utime + stime over the batch, seconds. */
  cpuSeconds: number;
  /** The same from /proc/PID/task/TID/schedstat, nanoseconds, when read. */
  cpuNs?: number;
  /** Wall-clock seconds of the batch. */
  wallSeconds: number;
  /** CPU seconds other processes (not this bench's) used during the batch. */
  otherCpuSeconds: number;
}

/** Every round of one row on one runtime. */
export interface DetectSeries {
  /** The runtime and code, e.g. `Bun`, `Deno`, `executable`, `Bun @0dd1fbf`. */
  runtime: string;
  /** The row, e.g. `plain`, `sni-only`, `four-tls`. */
  row: string;
  /** One sample per round, in round order. */
  samples: DetectSample[];
  /**
   * CPU µs per connection of each slice, in the order run (schedstat's
   * nanoseconds: a slice is too short for utime's 10 ms ticks), when kept.
   */
  slicesUs?: number[];
}

/** One table row: a series reduced to its median. */
export interface DetectRow {
  /** The runtime and code. */
  runtime: string;
  /** The row. */
  row: string;
  /** Median CPU per connection, microseconds, one decimal. */
  us: number;
  /** The lowest and highest round, microseconds, one decimal. */
  min: number;
  max: number;
  /** Median over the same runtime's `sni-only` median, two decimals; undefined without one. */
  xSniOnly: number | undefined;
  /** Median over the same runtime's `plain` median, two decimals; undefined without one. */
  xPlain: number | undefined;
  /** Failed connections over all rounds. */
  failed: number;
}

/** One row beside the same row of the baseline code, on the same runtime. */
export interface BaselineRow {
  /** The runtime of the current code, e.g. `Bun`. */
  runtime: string;
  /** The row. */
  row: string;
  /** The current code's median, lowest and highest, microseconds. */
  now: Pick<DetectRow, "us" | "min" | "max">;
  /** The baseline's. */
  before: Pick<DetectRow, "us" | "min" | "max">;
  /** now ÷ before, two decimals. */
  ratio: number;
  /** Whether the two ranges of rounds overlap (then the difference is within the noise). */
  overlap: boolean;
}

const round1 = (value: number) => Math.round(value * 10) / 10;
const round2 = (value: number) => Math.round(value * 100) / 100;

/** CPU microseconds per completed connection of one sample. */
export function perConnectionUs(sample: DetectSample): number {
  return sample.connections === 0 ? NaN : sample.cpuSeconds / sample.connections * 1e6;
}

/**
 * Reduces each series to its median CPU per connection, with the ratios to
 * the same runtime's `sni-only` and `plain` rows.
 *
 * @param series every runtime's rows
 * @returns one row per series, in the order given
 */
export function detectRows(series: readonly DetectSeries[]): DetectRow[] {
  const medianOf = (s: DetectSeries) => median(s.samples.map(perConnectionUs));
  const find = (runtime: string, row: string) =>
    series.find((s) => s.runtime === runtime && s.row === row);
  const ratio = (value: number, other: DetectSeries | undefined) => {
    if (other === undefined) return undefined;
    const base = medianOf(other);
    return base > 0 ? round2(value / base) : undefined;
  };
  return series.map((s) => {
    const values = s.samples.map(perConnectionUs);
    const us = median(values);
    return {
      runtime: s.runtime,
      row: s.row,
      us: round1(us),
      min: round1(Math.min(...values)),
      max: round1(Math.max(...values)),
      xSniOnly: ratio(us, find(s.runtime, "sni-only")),
      xPlain: ratio(us, find(s.runtime, "plain")),
      failed: s.samples.reduce((sum, sample) => sum + sample.failed, 0),
    };
  });
}

/**
 * Sets each row of a baseline runtime (`RUNTIME @REF`) beside the same row
 * of `RUNTIME`.
 *
 * @param rows the reduced rows
 * @param ref the baseline's ref as it appears after `@`
 * @returns one entry per row present in both
 */
export function baselineRows(rows: readonly DetectRow[], ref: string): BaselineRow[] {
  const out: BaselineRow[] = [];
  for (const before of rows) {
    const suffix = ` @${ref}`;
    if (!before.runtime.endsWith(suffix)) continue;
    const runtime = before.runtime.slice(0, -suffix.length);
    const now = rows.find((row) => row.runtime === runtime && row.row === before.row);
    if (now === undefined || before.us === 0) continue;
    out.push({
      runtime,
      row: before.row,
      now: { us: now.us, min: now.min, max: now.max },
      before: { us: before.us, min: before.min, max: before.max },
      ratio: round2(now.us / before.us),
      overlap: now.min <= before.max && before.min <= now.max,
    });
  }
  return out;
}

/**
 * The ratio of one row to another of the same runtime round by round: each
 * round measures both moments apart, so a slow phase of a shared machine
 * weighs on both sides of each ratio alike.
 *
 * @param series every runtime's rows
 * @returns the ratios in round order (rounds both have), two decimals; empty when either row is missing
 */
export function roundRatios(
  series: readonly DetectSeries[],
  runtime: string,
  row: string,
  reference: string,
): number[] {
  const find = (name: string) => series.find((s) => s.runtime === runtime && s.row === name);
  const a = find(row);
  const b = find(reference);
  if (a === undefined || b === undefined) return [];
  const count = Math.min(a.samples.length, b.samples.length);
  return Array.from(
    { length: count },
    (_, i) => round2(perConnectionUs(a.samples[i]!) / perConnectionUs(b.samples[i]!)),
  );
}

/**
 * The ratio of one row to another of the same runtime slice by slice: the
 * two slices of a pair ran moments apart, which pairs them tighter than
 * rounds do.
 *
 * @param series every runtime's rows
 * @returns the ratios of the slices both have, in order, two decimals; empty when either has none
 */
export function sliceRatios(
  series: readonly DetectSeries[],
  runtime: string,
  row: string,
  reference: string,
): number[] {
  const find = (name: string) => series.find((s) => s.runtime === runtime && s.row === name);
  return pairedSlices(find(row), find(reference));
}

/**
 * One series over another slice by slice.
 *
 * @returns the ratios of the slices both have, in order, two decimals
 */
export function pairedSlices(
  a: DetectSeries | undefined,
  b: DetectSeries | undefined,
): number[] {
  const x = a?.slicesUs ?? [];
  const y = b?.slicesUs ?? [];
  const count = Math.min(x.length, y.length);
  return Array.from({ length: count }, (_, i) => round2(x[i]! / y[i]!)).filter(Number.isFinite);
}

/**
 * The lower quartile, median and upper quartile of some numbers (each the
 * median of its half, the middle one left out of both for an odd count).
 *
 * @param values at least one number
 * @returns the three quartiles
 */
export function quartiles(values: readonly number[]): [number, number, number] {
  const sorted = [...values].sort((a, b) => a - b);
  const half = sorted.length >> 1;
  const lower = sorted.slice(0, Math.max(1, half));
  const upper = sorted.slice(sorted.length - Math.max(1, half));
  return [median(lower), median(sorted), median(upper)];
}

/** What the page says about the run besides the rows. */
export interface DetectAbout {
  date: string;
  /** The CPU model, from lscpu or /proc/cpuinfo. */
  cpu: string;
  /** The commit measured. */
  commit: string;
  /** The baseline's ref and commit, when one ran. */
  baseline?: { ref: string; commit: string };
  connections: number;
  rounds: number;
  /** Connections per slice; a round runs every row's slices in turn. */
  slice: number;
  concurrency: number;
  /** What each row's client sends first, by row. */
  firstBytes: Record<string, string>;
  /** The configs, by name: plain, sni-only, four. */
  configs: Record<string, string>;
  /** Other processes' CPU during the batches, as a share of one core: lowest, median, highest. */
  noise: { min: number; median: number; max: number };
  /** Seconds the whole run took. */
  seconds: number;
}

/** The bound: a shared address with four frontends, at most this times sni-only for TLS clients. */
export const BOUND = 1.1;

const cell = (value: number | undefined) => value === undefined ? "–" : `${value.toFixed(2)}×`;

/**
 * The results page: the machine and method, one table of every row, the
 * bound check per runtime, and the rows beside the baseline.
 *
 * @param rows the reduced rows
 * @param about the run's facts
 * @param series the rounds, for the bound's round-by-round ratios
 * @returns Markdown
 */
export function renderDetect(
  rows: readonly DetectRow[],
  about: DetectAbout,
  series: readonly DetectSeries[] = [],
): string {
  const percent = (share: number) => `${Math.round(share * 100)} %`;
  const lines = [
    `# Protocol detection: ${about.date}`,
    "",
    `CPU: ${about.cpu}. Commit ${about.commit}` +
    (about.baseline ? `, baseline ${about.baseline.ref} (${about.baseline.commit})` : "") + ".",
    `Each row: ${about.connections.toLocaleString("en")} new connections per round ` +
    `(${about.concurrency} at a time; connect, send the first bytes, read their echo, close), ` +
    `in slices of ${about.slice} taking turns with every other row's, ` +
    `${about.rounds} rounds, median. CPU is the proxy's utime + stime from /proc; ` +
    "the proxy is pinned to core 0, the client, the echo backend and this harness to core 1.",
    `Noise: other processes used ${
      percent(about.noise.median)
    } of a core during the median batch ` +
    `(${percent(about.noise.min)} to ${percent(about.noise.max)}). The run took ${
      Math.round(about.seconds)
    } s.`,
    "",
    "| runtime | row | CPU µs per connection | rounds (min–max) | × sni-only | × plain | failed |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const row of rows) {
    lines.push(
      `| ${row.runtime} | ${row.row} | ${row.us.toFixed(1)} | ${row.min.toFixed(1)}–${
        row.max.toFixed(1)
      } | ${cell(row.xSniOnly)} | ${cell(row.xPlain)} | ${row.failed} |`,
    );
  }
  const bound = rows.filter((row) => row.row === "four-tls" && row.xSniOnly !== undefined);
  if (bound.length > 0) {
    lines.push("", `## Bound: four-tls at most ${BOUND}× sni-only`, "");
    for (const row of bound) {
      const verdict = row.xSniOnly! <= BOUND ? "met" : "NOT met";
      const paired = roundRatios(series, row.runtime, "four-tls", "sni-only");
      const perRound = paired.length === 0
        ? ""
        : `; round by round ${paired.map((r) => r.toFixed(2)).join(", ")} (median ${
          median(paired).toFixed(2)
        }×)`;
      const slices = sliceRatios(series, row.runtime, "four-tls", "sni-only");
      const [q1, q2, q3] = slices.length === 0 ? [] : quartiles(slices);
      const perSlice = slices.length === 0 ? "" : `; slice by slice ${q2!.toFixed(2)}× ` +
        `(middle half ${q1!.toFixed(2)}–${q3!.toFixed(2)}, ${slices.length} pairs)`;
      // "Today's" SNI-only address is the one before the issue: the baseline's, when it ran.
      const ref = about.baseline?.ref;
      const before = rows.find((r) =>
        r.runtime === `${row.runtime} @${ref}` && r.row === "sni-only"
      );
      const ratio = before === undefined || before.us === 0 ? undefined : row.us / before.us;
      const old = ratio === undefined
        ? ""
        : `; over sni-only @${ref} ${ratio.toFixed(2)}× (medians), ${
          ratio <= BOUND ? "met" : "NOT met"
        }`;
      lines.push(
        `- ${row.runtime}: ${
          row.xSniOnly!.toFixed(2)
        }× (medians), ${verdict}${perRound}${perSlice}${old}`,
      );
    }
  }
  if (about.baseline) {
    const before = baselineRows(rows, about.baseline.ref);
    if (before.length > 0) {
      lines.push(
        "",
        `## Against the code before issue 19 (${about.baseline.ref}), same run`,
        "",
        "| runtime | row | now µs (min–max) | before µs (min–max) | now ÷ before | ranges | " +
          "slice by slice (middle half) |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: |",
      );
      for (const b of before) {
        const range = (r: BaselineRow["now"]) =>
          `${r.us.toFixed(1)} (${r.min.toFixed(1)}–${r.max.toFixed(1)})`;
        const find = (runtime: string) =>
          series.find((s) => s.runtime === runtime && s.row === b.row);
        const slices = pairedSlices(find(b.runtime), find(`${b.runtime} @${about.baseline.ref}`));
        const [q1, q2, q3] = slices.length === 0 ? [] : quartiles(slices);
        const paired = slices.length === 0
          ? "–"
          : `${q2!.toFixed(2)}× (${q1!.toFixed(2)}–${q3!.toFixed(2)})`;
        lines.push(
          `| ${b.runtime} | ${b.row} | ${range(b.now)} | ${range(b.before)} | ${
            b.ratio.toFixed(2)
          }× | ${b.overlap ? "overlap" : "apart"} | ${paired} |`,
        );
      }
    }
  }
  lines.push("", "## First bytes", "");
  for (const [row, bytes] of Object.entries(about.firstBytes)) lines.push(`- ${row}: ${bytes}`);
  lines.push("", "## Configs (ports and backend elided)", "");
  for (const [name, text] of Object.entries(about.configs)) {
    lines.push(`${name}:`, "", "```toml", text.trim(), "```", "");
  }
  return lines.join("\n").trimEnd() + "\n";
}
