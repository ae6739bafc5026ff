/**
 * The shape of a run's results and how a figure is written, shared by the
 * report and the targets so that neither imports the other.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RoundResult, Settings } from "./measure.ts";

/** One figure of the table. */
export interface Metric {
  key: string;
  label: string;
  /** Which way is better, for reading ratios. */
  better: "higher" | "lower";
  /** Decimal places in the table. */
  digits: number;
  /** Whether the direct connection has this figure (it has no proxy process). */
  direct: boolean;
}

/** One contender's rounds and their summary. */
export interface ContenderResult {
  key: string;
  name: string;
  rounds: RoundResult[];
  medians: Record<string, number>;
  min: Record<string, number>;
  max: Record<string, number>;
  /** Value divided by the direct connection's, per metric. */
  toDirect: Record<string, number>;
  /** Value divided by HAProxy's, per metric. */
  toHaproxy: Record<string, number>;
  /** The HAProxy contender `toHaproxy` divides by: HAProxy doing the same work. */
  haproxyKey?: string;
  /** Whether it ran the HTTP scenario alone (PROXY v2 and TLS variants): no bulk, no idle. */
  httpOnly?: boolean;
}

/** Everything a run produced, as written to the JSON file. */
export interface Results {
  date: string;
  host: string;
  quick: boolean;
  durationSeconds: number;
  settings: Settings;
  pinning: string;
  /** Where the run departs from the plan, e.g. fewer idle connections. */
  remarks: string[];
  setup: Record<string, string>;
  metrics: Metric[];
  contenders: ContenderResult[];
}

/**
 * Writes a figure with thousands separators and a fixed number of decimals.
 *
 * @param digits decimal places
 */
export function formatFigure(value: number, digits: number): string {
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/**
 * Today's date on this machine as YYYY-MM-DD, the first part of a results
 * file's name.
 */
export function localDate(): string {
  const now = new Date();
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/**
 * Writes a run's table and figures as `bench/results/NAME.md` and `.json`,
 * prints the table, and says where they went.
 *
 * @param repo the repository's root
 * @param name the file name without extension (`DATE-HOST…`)
 * @param markdown the rendered table
 * @param results the figures, written as JSON
 * @param label what the line on stderr starts with (`bench`, `soak`)
 */
export function writeResults(
  repo: string,
  name: string,
  markdown: string,
  results: unknown,
  label: string,
): void {
  const dir = join(repo, "bench/results");
  mkdirSync(dir, { recursive: true });
  const base = join(dir, name);
  writeFileSync(`${base}.md`, markdown);
  writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  console.log(markdown);
  console.error(`${label}: wrote ${base}.md and ${base}.json`);
}
