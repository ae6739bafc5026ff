/**
 * The UDP bench's figures (issue 21): percentiles of the load generator's
 * latencies, each row's replies per proxy CPU-second and its ratios to nginx
 * and to the minimal Bun forwarder, and the Markdown page of a run.
 *
 * Pure functions, no I/O: bench/udp.ts measures, this renders.
 *
 * @module
 */

/**
 * The `p`th percentile of sorted values, by nearest rank.
 *
 * @param sorted values in ascending order
 * @param p from 0 to 100
 * @returns the value; NaN when there are none
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** What the load generator (bench/udp_load.ts) measured over one row's window. */
export interface LoadResult {
  /** Seconds of the measured window (after the warm-up). */
  seconds: number;
  /** Replies received in the window. */
  replies: number;
  /** Queries whose reply did not come within the timeout. */
  lost: number;
  /** Errors the sockets reported (ICMP port unreachable and the like). */
  errors: number;
  /** Latency from send to reply, microseconds. */
  p50Us: number;
  /** Latency from send to reply, microseconds. */
  p99Us: number;
  /** The proxy's CPU seconds (utime + stime, all threads) in the window; undefined without a proxy. */
  proxyCpuSeconds: number | undefined;
}

/** What the load generator measured while it opened many long-lived flows. */
export interface MemoryResult {
  /** Flows opened (one socket, one query each). */
  flows: number;
  /** Of them, answered. */
  answered: number;
  /** The proxy's RSS (its process tree) before, bytes. */
  rssBefore: number;
  /** After every flow was answered and a second passed, bytes. */
  rssAfter: number;
}

/** The two load modes. */
export type Mode = "new-flow" | "long-lived";

/** One target's measurements in a run. */
export interface TargetRun {
  key: string;
  name: string;
  /** Per mode; absent when the target was not run or failed (see `errors`). */
  modes: Partial<Record<Mode, LoadResult>>;
  /** Every round per mode, in run order; `modes` holds the median one. */
  rounds?: Partial<Record<Mode, LoadResult[]>>;
  memory?: MemoryResult;
  /** Why a mode or the memory step has no figures. */
  errors: string[];
}

/** Replies per proxy CPU-second, or per second without a proxy. */
function score(result: LoadResult): number {
  return result.proxyCpuSeconds !== undefined && result.proxyCpuSeconds > 0
    ? result.replies / result.proxyCpuSeconds
    : result.replies / result.seconds;
}

/**
 * The median round of a row: by replies per proxy CPU-second (per second
 * for the direct path); of an even count, the lower middle one.
 *
 * @throws Error when there is no round
 */
export function medianRound(rounds: LoadResult[]): LoadResult {
  if (rounds.length === 0) throw new Error("udp_report: median of no rounds");
  const sorted = [...rounds].sort((a, b) => score(a) - score(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** A table row: the figures of one target in one mode. */
export interface ModeRow {
  key: string;
  name: string;
  repliesPerSecond: number;
  /** Undefined for the direct path (no proxy). */
  perCpuSecond: number | undefined;
  vsNginx: number | undefined;
  vsMinimal: number | undefined;
  p50Us: number;
  p99Us: number;
  lost: number;
  /** The lowest and highest round of `perCpuSecond` (replies/s when direct). */
  range: [number, number];
}

/** The key of the nginx row and of the minimal Bun forwarder's. */
export const NGINX = "nginx";
/** The key of the minimal Bun forwarder's row. */
export const MINIMAL = "bun-minimal";

/**
 * The rows of one mode's table, in run order, with ratios of replies per
 * proxy CPU-second to nginx's and the minimal forwarder's in the same run.
 */
export function modeRows(runs: TargetRun[], mode: Mode): ModeRow[] {
  const perCpu = (result: LoadResult | undefined) =>
    result && result.proxyCpuSeconds !== undefined && result.proxyCpuSeconds > 0
      ? result.replies / result.proxyCpuSeconds
      : undefined;
  const reference = (key: string) => perCpu(runs.find((run) => run.key === key)?.modes[mode]);
  const nginx = reference(NGINX);
  const minimal = reference(MINIMAL);
  const rows: ModeRow[] = [];
  for (const run of runs) {
    const result = run.modes[mode];
    if (!result) continue;
    const own = perCpu(result);
    const scores = (run.rounds?.[mode] ?? [result]).map(score);
    rows.push({
      key: run.key,
      name: run.name,
      repliesPerSecond: result.replies / result.seconds,
      perCpuSecond: own,
      vsNginx: own !== undefined && nginx !== undefined ? own / nginx : undefined,
      vsMinimal: own !== undefined && minimal !== undefined ? own / minimal : undefined,
      p50Us: result.p50Us,
      p99Us: result.p99Us,
      lost: result.lost,
      range: [Math.min(...scores), Math.max(...scores)],
    });
  }
  return rows;
}

/** One line of a `strace -c` summary: a syscall and how often it was called. */
export interface SyscallCount {
  syscall: string;
  calls: number;
}

/**
 * Parses the table `strace -c` prints (`% time  seconds  usecs/call  calls
 * [errors]  syscall`), without its total line.
 */
export function parseStrace(text: string): SyscallCount[] {
  const counts: SyscallCount[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 5 || !/^\d/.test(fields[0]!) || fields.at(-1) === "total") continue;
    counts.push({ syscall: fields.at(-1)!, calls: Number(fields[3]) });
  }
  return counts;
}

/** Bytes of RSS per open flow, or undefined when no flow was opened. */
export function bytesPerFlow(memory: MemoryResult): number | undefined {
  return memory.flows > 0 ? (memory.rssAfter - memory.rssBefore) / memory.flows : undefined;
}

const thousands = (value: number) => `${(value / 1000).toFixed(1)}k`;
const ratio = (value: number | undefined) => (value === undefined ? "-" : `${value.toFixed(2)}x`);
const us = (value: number) => (Number.isFinite(value) ? `${Math.round(value)}` : "-");

/** The facts printed above the tables. */
export interface RunFacts {
  date: string;
  /** `lscpu`'s model name, family and model. */
  cpu: string;
  /** Label to version line. */
  setup: Record<string, string>;
  /** Seconds of warm-up and of measurement per row and mode. */
  warmupSeconds: number;
  seconds: number;
  /** Rounds per row and mode (the median is shown). */
  rounds: number;
  clients: number;
  quick: boolean;
}

/**
 * The Markdown page of a run: one table per mode, the memory table, the
 * errors, and the conditions.
 */
export function renderUdp(runs: TargetRun[], facts: RunFacts): string {
  const lines = [
    `# UDP (issue 21): ${facts.date}${facts.quick ? " (quick)" : ""}`,
    "",
    `CPU: ${facts.cpu}. Proxy pinned to core 0; the load generator and both`,
    "responders on core 1. The machine is shared with other work: compare",
    "ratios within this run only.",
    "",
    `${facts.clients} clients, each a 64-byte query and a wait for its 128-byte reply`,
    `(lost after the timeout). Every proxy of a mode runs at once, idle while`,
    `another is loaded: ${facts.warmupSeconds} s of warm-up each, then ${facts.rounds} round(s)`,
    `of ${facts.seconds} s per row taking turns (order rotated each round); each row`,
    "shows its median round by replies per proxy CPU-second (`rounds`: the",
    "lowest and highest round, replies/s for the direct path). Proxy CPU: utime",
    "+ stime of its process tree (all threads) from /proc before and after",
    "the measured window.",
    "",
  ];
  const modes: [Mode, string][] = [
    ["new-flow", "A new flow per query (a fresh client socket per query; `responses = 1`)"],
    ["long-lived", "Long-lived flows (50 client sockets for the whole run)"],
  ];
  for (const [mode, title] of modes) {
    lines.push(
      `## ${title}`,
      "",
      "| target | replies/s | replies per proxy CPU-s | rounds | vs nginx | vs minimal Bun | p50 (us) | p99 (us) | lost |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const row of modeRows(runs, mode)) {
      lines.push(
        `| ${row.name} | ${thousands(row.repliesPerSecond)} | ${
          row.perCpuSecond === undefined ? "-" : thousands(row.perCpuSecond)
        } | ${thousands(row.range[0])}-${thousands(row.range[1])} | ${ratio(row.vsNginx)} | ${
          ratio(row.vsMinimal)
        } | ${us(row.p50Us)} | ${us(row.p99Us)} | ${row.lost} |`,
      );
    }
    lines.push("");
  }
  const memories = runs.filter((run) => run.memory);
  if (memories.length > 0) {
    lines.push(
      "## Memory per open flow",
      "",
      "Long-lived flows opened from distinct source ports, one query each, kept",
      "open; the proxy's RSS (process tree) before and after, over the flows.",
      "",
      "| target | flows | answered | RSS before (MiB) | RSS after (MiB) | per flow (KB) |",
      "| --- | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const run of memories) {
      const memory = run.memory!;
      const perFlow = bytesPerFlow(memory);
      lines.push(
        `| ${run.name} | ${memory.flows} | ${memory.answered} | ${
          (memory.rssBefore / 1048576).toFixed(1)
        } | ${(memory.rssAfter / 1048576).toFixed(1)} | ${
          perFlow === undefined ? "-" : (perFlow / 1000).toFixed(1)
        } |`,
      );
    }
    lines.push("");
  }
  const errors = runs.flatMap((run) => run.errors.map((error) => `- ${run.name}: ${error}`));
  if (errors.length > 0) lines.push("## Not measured", "", ...errors, "");
  lines.push("## Setup", "");
  for (const [label, value] of Object.entries(facts.setup)) lines.push(`- ${label}: ${value}`);
  lines.push("");
  return lines.join("\n");
}
