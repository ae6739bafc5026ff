/**
 * The soak of issue 11: `bun bench/soak.ts [--minutes N] [--only KEY,KEY] …`.
 *
 * Runs each chosen contender alone (by default mini-balancer on Deno, then
 * the minimal Deno proxy) for N minutes (default 10) under a steady mix of
 * paced traffic from bench/soak_peers.ts: idle connections held for the
 * whole run, short connections and 1 MiB echoes. The proxy is pinned to core
 * 0 and started exactly as the benchmark starts it, the traffic and the
 * harness run on core 1. Every 5 s it reads the proxy's RSS from /proc and,
 * from the Bun and Deno proxies, their own heap figures (bench/memory_log.ts,
 * preloaded). Writes bench/results/DATE-HOST-soak[-Nmin][-NAME].md and .json:
 * RSS at 30 s, 1 min, 5 min and the end, the slope over the last half and
 * whether the creep stops. Everything started is stopped at the end, on
 * error and on Ctrl-C.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { LOAD_CPU, nofileLimit } from "./backends.ts";
import { type Contender, contenders, httpOnly, PROXY_CPU } from "./contenders.ts";
import { withContender } from "./measure.ts";
import { NoiseMeter } from "./noise.ts";
import { cpuSeconds, rssParts, setTicksPerSecond } from "./proc_stats.ts";
import { type Proc, run, stopAll, stopAllOnExit } from "./processes.ts";
import { NOISY } from "./report.ts";
import { localDate, writeResults } from "./results.ts";
import {
  type MemorySample,
  renderSoakMarkdown,
  type RssSample,
  type SoakResults,
  type SoakRun,
  type SoakSettings,
  summarizeSoak,
} from "./soak_report.ts";
import { SoakTraffic } from "./soak_traffic.ts";
import { describeSetup, findTools } from "./tools.ts";

const DEFAULTS: SoakSettings = {
  minutes: 10,
  sampleSeconds: 5,
  creepMiBPerMin: 0.2,
  idleConnections: 300,
  shortPerSecond: 500,
  echoesPerSecond: 10,
  heapLog: true,
};
const DEFAULT_ONLY = ["deno", "deno-minimal"];
/** Seconds between starting the proxy and the sample before the traffic. */
const SETTLE_SECONDS = 2;
/** Seconds between the traffic's end and the last sample. */
const AFTER_SECONDS = 5;
/** The prefix of bench/memory_log.ts's lines. */
const MEMORY_LINE = "bench-memory ";

const USAGE = `usage: bun bench/soak.ts [--minutes N] [--only KEY,KEY] [--idle N] [--short-rate N]
                         [--echo-rate N] [--no-heap] [--suffix NAME]
  --minutes N     minutes of traffic per contender (default ${DEFAULTS.minutes}); they run one
                  after another, so the whole takes a little more than N per contender
  --only          contenders, in the order they run (default ${DEFAULT_ONLY.join(",")}), from
                  any proxy of bench/run.ts but direct and the PROXY v2 and TLS ones:
                  bun,bun-health,bun-admin,bun-minimal,deno-minimal,deno,node,compiled,
                  haproxy,nginx,bun-workers2,haproxy-nbthread2,nginx-workers2
  --idle N        idle connections held for the whole run (default ${DEFAULTS.idleConnections})
  --short-rate N  short connections a second (default ${DEFAULTS.shortPerSecond})
  --echo-rate N   echoes of 1 MiB a second (default ${DEFAULTS.echoesPerSecond})
  --no-heap       do not preload bench/memory_log.ts into the Bun and Deno proxies
                  (no JS heap figures; the command lines are then exactly the bench's)
  --suffix NAME   name the results DATE-HOST-soak[-Nmin]-NAME.md and .json`;

interface Options {
  settings: SoakSettings;
  only: string[];
  suffix: string | undefined;
}

function usageError(message: string): never {
  console.error(`soak: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseArgs(args: string[]): Options {
  const settings = { ...DEFAULTS };
  const options: Options = { settings, only: DEFAULT_ONLY, suffix: undefined };
  const number = (flag: string, value: string | undefined, min: number) => {
    const n = Number(value);
    if (!(n >= min)) usageError(`${flag} takes a number of at least ${min}`);
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--minutes") settings.minutes = number(arg, args[++i], 0.5);
    else if (arg === "--only") options.only = args[++i]?.split(",") ?? [];
    else if (arg === "--idle") settings.idleConnections = Math.floor(number(arg, args[++i], 0));
    else if (arg === "--short-rate") settings.shortPerSecond = number(arg, args[++i], 0);
    else if (arg === "--echo-rate") settings.echoesPerSecond = number(arg, args[++i], 0);
    else if (arg === "--no-heap") settings.heapLog = false;
    else if (arg === "--suffix") options.suffix = args[++i] ?? "";
    else if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else usageError(`unknown argument ${arg}`);
  }
  if (options.suffix !== undefined && !/^[\w.-]+$/.test(options.suffix)) {
    usageError("--suffix takes letters, digits, '.', '_' and '-'");
  }
  return options;
}

/** Contenders the soak can drive: a proxy process in front of plain TCP backends. */
function soakable(contender: Contender): boolean {
  return contender.key !== "direct" && !httpOnly(contender);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Collects bench/memory_log.ts's lines, stamped with when they arrived. */
function memoryLog(proc: Proc): Array<Omit<MemorySample, "t"> & { at: number }> {
  const lines: Array<Omit<MemorySample, "t"> & { at: number }> = [];
  proc.onLine((line) => {
    const start = line.indexOf(MEMORY_LINE);
    if (start === -1) return;
    try {
      const { rss, heapTotal, heapUsed, external } = JSON.parse(
        line.slice(start + MEMORY_LINE.length),
      );
      if ([rss, heapTotal, heapUsed, external].every(Number.isFinite)) {
        lines.push({ at: Date.now(), rss, heapTotal, heapUsed, external });
      }
    } catch {
      // Another line that happens to hold the prefix.
    }
  });
  return lines;
}

/**
 * Runs one contender under the traffic for the set minutes, sampling its
 * memory, and stops it; a failure is recorded in the run, not thrown.
 */
async function soakOne(
  contender: Contender,
  traffic: SoakTraffic,
  settings: SoakSettings,
): Promise<SoakRun> {
  const soak: SoakRun = {
    key: contender.key,
    name: contender.name,
    samples: [],
    memory: [],
    errors: {},
    notes: {},
    summary: { slopes: {} },
  };
  const noise = new NoiseMeter();
  const seconds = settings.minutes * 60;
  await withContender(soak, "soak", contender, traffic.echoPorts, async ({ port, proc }) => {
    if (!proc) throw new Error("no proxy process to sample");
    const memory = memoryLog(proc);
    await sleep(SETTLE_SECONDS * 1000);
    const cpuBefore = cpuSeconds(proc.pid);
    const sample = (t: number): RssSample => {
      const { rss, anon, file } = rssParts(proc.pid);
      return { t, rss, anon, file, cpu: cpuSeconds(proc.pid) - cpuBefore };
    };
    soak.samples.push(sample(0));
    const origin = Date.now();
    let running = true;
    try {
      soak.notes.idleOpenMs = await traffic.begin(port, settings);
      const count = Math.round(seconds / settings.sampleSeconds);
      for (let k = 1; k <= count; k++) {
        const t = k * settings.sampleSeconds;
        await sleep(Math.max(0, origin + t * 1000 - Date.now()));
        if (!traffic.alive) throw new Error("the soak traffic processes died");
        const now = sample((Date.now() - origin) / 1000);
        const counts = await traffic.counts();
        now.shortDone = counts.shortDone;
        now.echoDone = counts.echoDone;
        soak.samples.push(now);
        if (t % 60 === 0 || k === count) {
          console.error(
            `soak:   ${contender.name} ${t / 60} min: RSS ${(now.rss / 2 ** 20).toFixed(1)} MiB, ` +
              `${counts.shortDone} short, ${counts.echoDone} echoes, ` +
              `${counts.shortFailed + counts.echoFailed} failed, ${counts.idleOpen} idle`,
          );
        }
      }
      running = false;
      soak.traffic = await traffic.end();
      await sleep(AFTER_SECONDS * 1000);
      soak.after = sample((Date.now() - origin) / 1000);
    } finally {
      // Leave no traffic running into the next contender, even after a failure.
      if (running) await traffic.end().catch(() => {});
      soak.memory = memory.map(({ at, ...m }) => ({ t: (at - origin) / 1000, ...m }));
    }
  });
  soak.notes.otherCpuSeconds = noise.otherCpuSeconds();
  soak.notes.wallSeconds = noise.elapsedSeconds();
  soak.summary = summarizeSoak(soak, settings);
  return soak;
}

async function main(): Promise<number> {
  const { settings, only, suffix } = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const temp = mkdtempSync(join(tmpdir(), "mini-balancer-soak-"));
  const cleanUp = () => rmSync(temp, { recursive: true, force: true });
  stopAllOnExit("soak", cleanUp);
  try {
    // Each idle connection takes two fds in the proxy; the streams up to 432 more.
    const fds = settings.idleConnections * 2 + 1000;
    if (fds > nofileLimit()) {
      throw new Error(
        `${settings.idleConnections} idle connections need about ${fds} fds ` +
          `and the limit is ${nofileLimit()}`,
      );
    }
    const ticks = await run("getconf", ["CLK_TCK"], { timeoutMs: 5000 });
    setTicksPerSecond(Number(ticks.stdout.trim()));
    // The harness is load too: keep it off the proxy's core.
    await run("taskset", ["-a", "-pc", String(LOAD_CPU), String(process.pid)], { timeoutMs: 5000 });
    const tools = await findTools(repo);
    const setup = await describeSetup(tools);
    const preload = settings.heapLog ? join(repo, "bench/memory_log.ts") : undefined;
    const all = contenders(temp, tools, { preload }).filter(soakable);
    const unknown = only.filter((key) => !all.some((c) => c.key === key));
    if (unknown.length > 0) usageError(`--only: not a contender the soak can run: ${unknown}`);
    const list = only.map((key) => all.find((c) => c.key === key)!);
    const pinning = `Pinning: the proxy runs on core ${PROXY_CPU} (taskset -c ${PROXY_CPU}), ` +
      `the traffic (bench/soak_peers.ts, both ends) and the harness on core ${LOAD_CPU}; ` +
      "contenders run one after another, each started as bench/run.ts starts it" +
      (preload ? ", plus `--preload bench/memory_log.ts` for those run by bun or deno." : ".");
    console.error(`soak: ${pinning}`);
    console.error(`soak: settings ${JSON.stringify(settings)}`);
    console.error(
      `soak: ${list.length} contender(s) of ${settings.minutes} min: ` +
        `about ${Math.ceil(list.length * (settings.minutes + 0.3))} min`,
    );

    const traffic = await SoakTraffic.start(tools.bun, repo);
    const runs: SoakRun[] = [];
    const remarks: string[] = [];
    for (const contender of list) {
      console.error(
        `soak: ${contender.name} (${Math.round((Date.now() - started) / 1000)} s)`,
      );
      const soak = await soakOne(contender, traffic, settings);
      if (!traffic.alive) throw new Error("the soak traffic processes died");
      runs.push(soak);
      const { otherCpuSeconds = 0, wallSeconds = 1 } = soak.notes;
      if (otherCpuSeconds > NOISY * wallSeconds) {
        remarks.push(
          `Other processes used ${otherCpuSeconds.toFixed(0)} CPU s during the ` +
            `${(wallSeconds / 60).toFixed(1)} min of ${contender.name}: the machine was not quiet.`,
        );
        console.error(`soak:   warning: ${remarks.at(-1)}`);
      }
      const s = soak.summary;
      console.error(
        `soak:   ${contender.name}: RSS ${s.before?.toFixed(1)} before, ${s.end?.toFixed(1)} at ` +
          `the end, slope ${s.slopes.rss?.toFixed(2)} MiB/min over the last half: ` +
          `${s.verdict ?? "too few samples"}` +
          (Object.keys(soak.errors).length ? `; failed: ${JSON.stringify(soak.errors)}` : ""),
      );
    }

    const results: SoakResults = {
      date: localDate(),
      host: hostname(),
      durationSeconds: (Date.now() - started) / 1000,
      settings,
      pinning,
      remarks,
      setup,
      runs,
    };
    const markdown = renderSoakMarkdown(results);
    writeResults(
      repo,
      `${results.date}-${results.host}-soak` +
        (settings.minutes === DEFAULTS.minutes ? "" : `-${settings.minutes}min`) +
        (suffix === undefined ? "" : `-${suffix}`),
      markdown,
      results,
      "soak",
    );
    return 0;
  } catch (error) {
    console.error(`soak: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await stopAll();
    cleanUp();
  }
}

process.exit(await main());
