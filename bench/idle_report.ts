/**
 * The idle bench's arithmetic and table, apart from the processes it runs so
 * that a unit test can check them: the median of the runs of each target and
 * its RSS beside the minimal Bun proxy's.
 *
 * @module
 */

/** One target's runs: the idle RSS and the start-to-listening time of each. */
export interface IdleRuns {
  /** What ran, e.g. `mini-balancer (Bun)`. */
  name: string;
  /** The config it ran with, e.g. `minimal` or `all features`. */
  config: string;
  /** Resident memory of the process tree once listening and settled, bytes. */
  rssBytes: number[];
  /** From spawn to every listening socket there, milliseconds. */
  startMs: number[];
}

/** One row of the table: the medians of a target's runs. */
export interface IdleRow {
  /** What ran. */
  name: string;
  /** The config it ran with. */
  config: string;
  /** Median idle RSS, MiB, one decimal. */
  rssMiB: number;
  /** Median start-to-listening time, milliseconds, whole. */
  startMs: number;
  /** Median RSS over the reference's median RSS, two decimals; undefined without a reference. */
  ratio: number | undefined;
}

/**
 * The median of some numbers (the mean of the two middle ones for an even count).
 *
 * @param values at least one number
 * @returns the median
 * @throws Error when `values` is empty
 */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error("median of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Reduces each target's runs to medians, with each RSS beside the reference's.
 *
 * @param runs every target's runs
 * @param reference the name of the target the others are compared with
 * @returns one row per target, in the order given
 */
export function idleRows(runs: readonly IdleRuns[], reference: string): IdleRow[] {
  const base = runs.find((run) => run.name === reference);
  const baseRss = base === undefined ? undefined : median(base.rssBytes);
  return runs.map((run) => {
    const rss = median(run.rssBytes);
    return {
      name: run.name,
      config: run.config,
      rssMiB: Math.round(rss / 1024 / 1024 * 10) / 10,
      startMs: Math.round(median(run.startMs)),
      ratio: baseRss === undefined || baseRss === 0
        ? undefined
        : Math.round(rss / baseRss * 100) / 100,
    };
  });
}

/**
 * The results page: the machine, then one table row per target.
 *
 * @param rows the medians
 * @param about the CPU model, the date and the run count
 * @returns Markdown
 */
export function renderIdle(
  rows: readonly IdleRow[],
  about: { cpu: string; date: string; runs: number; reference: string },
): string {
  const lines = [
    `# Idle process: ${about.date}`,
    "",
    `CPU: ${about.cpu}. Median of ${about.runs} runs each. RSS is the process tree's VmRSS`,
    "once every listening socket is up and 1 s has passed; start is spawn to listening.",
    "",
    `| target | config | idle RSS (MiB) | x ${about.reference} | start to listening (ms) |`,
    "| --- | --- | ---: | ---: | ---: |",
  ];
  for (const row of rows) {
    const ratio = row.ratio === undefined ? "-" : row.ratio.toFixed(2);
    lines.push(
      `| ${row.name} | ${row.config} | ${row.rssMiB.toFixed(1)} | ${ratio} | ${row.startMs} |`,
    );
  }
  return lines.join("\n") + "\n";
}
