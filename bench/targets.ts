/**
 * The targets of issues 3 and 11, checked against a run's medians: each
 * target is a ratio of figures that must stay above or below a factor. Also the tables
 * that divide mini-balancer's figures by a reference measured in the same
 * run: the runtime's minimal proxy, and the code before a change
 * (`--baseline`, issue 8: the hot path no slower).
 *
 * @module
 */
import { type ContenderResult, formatFigure } from "./results.ts";

/** One target: for every key, value / reference value must satisfy `op` `factor`. */
interface Target {
  label: string;
  /** Contender keys the target applies to. */
  for: string[];
  keys: string[];
  /** The key of the contender compared against. */
  against: string;
  op: ">=" | "<=";
  factor: number;
}

const BULK = ["bulk1Up", "bulk1Down", "bulk8Up", "bulk8Down"];
const BUN = ["bun", "compiled"];

const TARGETS: Target[] = [
  {
    label: "new connections/s ≥ 1.0× HAProxy",
    for: BUN,
    keys: ["connPerSec"],
    against: "haproxy",
    op: ">=",
    factor: 1,
  },
  {
    label: "new connections/s ≥ 1.0× nginx",
    for: BUN,
    keys: ["connPerSec"],
    against: "nginx",
    op: ">=",
    factor: 1,
  },
  {
    label: "keep-alive req/s ≥ 1.0× HAProxy",
    for: BUN,
    keys: ["reqPerSec"],
    against: "haproxy",
    op: ">=",
    factor: 1,
  },
  {
    label: "keep-alive req/s ≥ 1.0× nginx",
    for: BUN,
    keys: ["reqPerSec"],
    against: "nginx",
    op: ">=",
    factor: 1,
  },
  {
    label: "p99 latency ≤ 1.0× HAProxy",
    for: BUN,
    keys: ["p99Ms"],
    against: "haproxy",
    op: "<=",
    factor: 1,
  },
  {
    label: "p99 latency ≤ 1.2× nginx",
    for: BUN,
    keys: ["p99Ms"],
    against: "nginx",
    op: "<=",
    factor: 1.2,
  },
  {
    label: "bulk, all four runs, ≥ 1.3× HAProxy",
    for: BUN,
    keys: BULK,
    against: "haproxy",
    op: ">=",
    factor: 1.3,
  },
  {
    label: "KiB per idle connection ≤ 1.0× HAProxy",
    for: BUN,
    keys: ["kibPerConn"],
    against: "haproxy",
    op: "<=",
    factor: 1,
  },
  {
    label: "new connections/s ≥ 0.8× HAProxy",
    for: ["deno"],
    keys: ["connPerSec"],
    against: "haproxy",
    op: ">=",
    factor: 0.8,
  },
  {
    label: "keep-alive req/s ≥ 0.8× HAProxy",
    for: ["deno"],
    keys: ["reqPerSec"],
    against: "haproxy",
    op: ">=",
    factor: 0.8,
  },
  {
    label: "bulk, all four runs, ≥ 0.8× HAProxy",
    for: ["deno"],
    keys: BULK,
    against: "haproxy",
    op: ">=",
    factor: 0.8,
  },
  {
    label: "KiB per idle connection ≤ 3× HAProxy",
    for: ["deno"],
    keys: ["kibPerConn"],
    against: "haproxy",
    op: "<=",
    factor: 3,
  },
  // Issue 11: no further than a few percent from the leanest correct proxy
  // each runtime allows (bench/minimal_proxy.ts, bench/minimal_proxy_deno.ts).
  {
    label: "CPU per connection ≤ 1.05× minimal Bun proxy",
    for: BUN,
    keys: ["cpuPer10kConn"],
    against: "bun-minimal",
    op: "<=",
    factor: 1.05,
  },
  {
    label: "keep-alive p99 ≤ 1.05× minimal Bun proxy",
    for: BUN,
    keys: ["p99Ms"],
    against: "bun-minimal",
    op: "<=",
    factor: 1.05,
  },
  {
    label: "CPU per connection ≤ 1.1× minimal Deno proxy",
    for: ["deno"],
    keys: ["cpuPer10kConn"],
    against: "deno-minimal",
    op: "<=",
    factor: 1.1,
  },
  {
    label: "KiB per idle connection ≤ 1.1× minimal Deno proxy",
    for: ["deno"],
    keys: ["kibPerConn"],
    against: "deno-minimal",
    op: "<=",
    factor: 1.1,
  },
];

function check(target: Target, result: ContenderResult, all: ContenderResult[]): string {
  if (!target.for.includes(result.key)) return "";
  const reference = all.find((c) => c.key === target.against)?.medians;
  const ratios: number[] = [];
  for (const key of target.keys) {
    const value = result.medians[key];
    const base = reference?.[key];
    if (value === undefined || !base) return "?";
    ratios.push(value / base);
  }
  const worst = target.op === ">=" ? Math.min(...ratios) : Math.max(...ratios);
  const pass = target.op === ">=" ? worst >= target.factor : worst <= target.factor;
  return `${pass ? "✓" : "✗"} ${worst.toFixed(2)}×`;
}

/**
 * Renders the targets as a markdown table: one row per target, one column
 * per mini-balancer contender, each cell the worst ratio and ✓ or ✗.
 *
 * @returns markdown lines, empty when no mini-balancer contender ran
 */
export function renderTargets(all: ContenderResult[]): string[] {
  const columns = all.filter((c) => ["bun", "compiled", "deno"].includes(c.key));
  if (columns.length === 0) return [];
  return [
    "## Targets of issues 3 and 11",
    "",
    "Medians against medians of the same run; the cell is the worst ratio over the figures named. " +
    "`?` means a figure it needs failed or was not run. Bulk against direct and RSS after the " +
    "idle connections close are no longer targets; the table above still shows both.",
    "",
    `| target | ${columns.map((c) => c.name).join(" | ")} |`,
    `| --- | ${columns.map(() => ":---:").join(" | ")} |`,
    ...TARGETS.map((t) => `| ${t.label} | ${columns.map((c) => check(t, c, all)).join(" | ")} |`),
  ];
}

/** A contender and the one its figures are divided by. */
interface Pair {
  contender: ContenderResult;
  reference: ContenderResult;
}

/** Each contender with a partner in `partners` (contender key to reference key) that ran. */
function pairsFor(all: ContenderResult[], partners: Record<string, string>): Pair[] {
  return all.flatMap((contender) => {
    const reference = all.find((r) => r.key === partners[contender.key]);
    return reference ? [{ contender, reference }] : [];
  });
}

/** The ratio of two medians, or `?` when either is missing. */
function ratioCell({ contender, reference }: Pair, key: string): string {
  const value = contender.medians[key];
  const base = reference.medians[key];
  return value === undefined || !base ? "?" : `${(value / base).toFixed(2)}×`;
}

/** Which reference proxy each mini-balancer contender is compared with. */
const FLOORS: Record<string, string> = {
  bun: "bun-minimal",
  "bun-health": "bun-minimal",
  compiled: "bun-minimal",
  deno: "deno-minimal",
};
const FLOOR_FIGURES: [key: string, label: string][] = [
  ["connPerSec", "new connections/s"],
  ["cpuPer10kConn", "CPU per 10,000 connections"],
  ["reqPerSec", "keep-alive req/s"],
  ["cpuPer100kReq", "CPU per 100,000 keep-alive requests"],
  ["p99Ms", "p99 latency"],
  ["bulk1Up", "bulk 1 stream up"],
  ["cpuPerGB", "CPU per GB"],
  ["kibPerConn", "KiB per idle connection"],
  ["peakRssBulkMiB", "peak RSS during bulk"],
];

/**
 * Renders each mini-balancer contender's figures as ratios to the minimal
 * proxy of its runtime: what our code costs beyond what the runtime does.
 *
 * @returns markdown lines, empty when no reference proxy ran
 */
export function renderFloors(all: ContenderResult[]): string[] {
  const pairs = pairsFor(all, FLOORS);
  if (pairs.length === 0) return [];
  return [
    "## Against the runtime's own floor",
    "",
    "Each mini-balancer figure divided by the same figure of the smallest proxy its runtime " +
    "allows (`bench/minimal_proxy.ts` for Bun, `bench/minimal_proxy_deno.ts` for Deno), " +
    "measured in the same run: near 1.00× means the gap to HAProxy is the runtime's, not our code's.",
    "",
    `| figure | ${pairs.map((p) => `${p.contender.name} ÷ ${p.reference.name}`).join(" | ")} |`,
    `| --- | ${pairs.map(() => "---:").join(" | ")} |`,
    ...FLOOR_FIGURES.map(([key, label]) =>
      `| ${label} | ${pairs.map((p) => ratioCell(p, key)).join(" | ")} |`
    ),
  ];
}

/** The median with the lowest and highest round beside it, when they differ. */
function withSpread(result: ContenderResult, key: string, digits: number): string {
  const value = result.medians[key];
  if (value === undefined) return "?";
  const low = result.min[key];
  const high = result.max[key];
  const spread = low !== undefined && high !== undefined && low !== high
    ? ` (${formatFigure(low, digits)}–${formatFigure(high, digits)})`
    : "";
  return `${formatFigure(value, digits)}${spread}`;
}

/** One figure of a side-by-side table: metric key, row label, decimals. */
type SideBySideFigure = [key: string, label: string, digits: number];

/** How to render one side-by-side section. */
interface SideBySide {
  heading: string;
  intro: string;
  /** Contender key to the key of the contender set beside it. */
  partners: Record<string, string>;
  figures: SideBySideFigure[];
  /** Title of each ratio column. */
  ratio: string;
}

/**
 * Renders contenders beside their partners: each median with its per-round
 * range, and the ratio of the medians.
 *
 * @returns markdown lines, empty when no pair ran
 */
function renderSideBySide(all: ContenderResult[], section: SideBySide): string[] {
  const pairs = pairsFor(all, section.partners);
  if (pairs.length === 0) return [];
  return [
    section.heading,
    "",
    section.intro,
    "",
    `| figure | ${
      pairs.map((p) => `${p.contender.name} | ${p.reference.name} | ${section.ratio}`).join(" | ")
    } |`,
    `| --- | ${pairs.map(() => "---: | ---: | ---:").join(" | ")} |`,
    ...section.figures.map(([key, label, digits]) =>
      `| ${label} | ${
        pairs.map((p) =>
          [
            withSpread(p.contender, key, digits),
            withSpread(p.reference, key, digits),
            ratioCell(p, key),
          ].join(" | ")
        ).join(" | ")
      } |`
    ),
  ];
}

/**
 * Renders mini-balancer's figures on Bun and Deno beside those of the code
 * at `--baseline REF`, measured in the same run: each median with its
 * per-round range, and the ratio of the medians, so that a change shows
 * whether it made the hot path slower and by more than the noise.
 *
 * @returns markdown lines, empty when no baseline contender ran
 */
export function renderBaseline(all: ContenderResult[]): string[] {
  return renderSideBySide(all, {
    heading: "## Against the baseline",
    intro: "mini-balancer from the current tree beside the code at the baseline commit " +
      "(`--baseline`), both started the same way in the same run: the median, the lowest and " +
      "highest round in brackets, and new ÷ base of the medians. For CPU, latency and memory " +
      "lower is better; where the two ranges overlap the difference is within this run's noise. " +
      "`?` means a figure failed or was not run.",
    partners: { bun: "bun-base", deno: "deno-base" },
    figures: [
      ["cpuPer10kConn", "CPU s per 10,000 connections", 3],
      ["cpuPerGB", "CPU s per GB", 3],
      ["reqPerSec", "keep-alive req/s", 0],
      ["p99Ms", "keep-alive p99 (ms)", 3],
      ["kibPerConn", "KiB per idle connection", 2],
    ],
    ratio: "new ÷ base",
  });
}

/**
 * The HAProxy contender doing the same work as each contender: the PROXY v2
 * and TLS variants (issue 10) are divided by HAProxy's variant, every other
 * contender by plain HAProxy.
 */
const MATCHING_HAPROXY: Record<string, string> = {
  "bun-proxy-v2": "haproxy-proxy-v2",
  "haproxy-proxy-v2": "haproxy-proxy-v2",
  "bun-tls": "haproxy-tls",
  "haproxy-tls": "haproxy-tls",
  // The two-core contenders (issue 11) against HAProxy on two threads.
  "bun-workers2": "haproxy-nbthread2",
  "nginx-workers2": "haproxy-nbthread2",
  "haproxy-nbthread2": "haproxy-nbthread2",
};

/**
 * Which HAProxy contender a contender's `× h` ratios divide by.
 *
 * @param key the contender's key
 * @returns the key of HAProxy doing the same work
 */
export function matchingHaproxy(key: string): string {
  return MATCHING_HAPROXY[key] ?? "haproxy";
}

/**
 * Renders mini-balancer on Bun beside HAProxy doing the same work, plain,
 * sending PROXY v2 headers and terminating TLS (issue 10), and on two cores
 * (issue 11): each median with its per-round range and Bun ÷ HAProxy.
 *
 * @returns markdown lines, empty when no such pair ran
 */
export function renderAgainstHaproxy(all: ContenderResult[]): string[] {
  // Only when a variant ran: plain Bun against plain HAProxy is the main table.
  if (!all.some((c) => c.key in MATCHING_HAPROXY)) return [];
  const partners = {
    bun: "haproxy",
    "bun-proxy-v2": "haproxy-proxy-v2",
    "bun-tls": "haproxy-tls",
    "bun-workers2": "haproxy-nbthread2",
  };
  return renderSideBySide(all, {
    heading: "## Against HAProxy doing the same",
    intro: "mini-balancer on Bun beside HAProxy doing the same work in the same run: " +
      'plain TCP, a PROXY v2 header to each backend (`send_proxy = "v2"`, `send-proxy-v2`, ' +
      "to nginx ports with `proxy_protocol`), and TLS termination (the same certificate), " +
      "with one thread pinned; and plain TCP on two cores (`workers = 2` beside `nbthread 2`, " +
      "both unpinned, sharing the cores with the load). The " +
      "median, the lowest and highest round in brackets, and Bun ÷ HAProxy. For CPU and " +
      "latency lower is better. `?` means a figure failed or was not run.",
    partners,
    figures: [
      ["connPerSec", "new connections/s", 0],
      ["cpuPer10kConn", "CPU s per 10,000 connections", 3],
      ["reqPerSec", "keep-alive req/s", 0],
      ["cpuPer100kReq", "CPU s per 100,000 keep-alive requests", 3],
      ["p99Ms", "keep-alive p99 (ms)", 3],
      ["largeGbps", "1 MiB bodies (Gbit/s)", 2],
      ["cpuPerGBLarge", "CPU s per GB, 1 MiB bodies", 3],
    ],
    ratio: "÷ HAProxy",
  });
}
