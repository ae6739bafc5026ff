/**
 * The benchmark: `bun bench/run.ts [--quick] [--rounds N] [--only KEY,KEY] [--baseline REF] [--suffix NAME]`.
 *
 * Starts the backends (nginx on two plain ports and two PROXY protocol
 * ports, iperf3, the idle peers), then for
 * each round measures every contender in turn (direct, mini-balancer on Bun,
 * on Deno, on Node and compiled, minimal Bun and Deno proxies, HAProxy,
 * nginx, Bun and HAProxy sending PROXY v2 headers and terminating TLS, Bun
 * with two workers, HAProxy with two threads and nginx with two workers, and
 * with `--baseline REF` the code at REF on Bun and Deno), each scenario
 * against a fresh proxy pinned to core 0 while load and backends run on
 * core 1 (the two-core contenders run on both). Writes the
 * medians as bench/results/DATE-HOST.md and .json and prints the table. A
 * contender that fails gets "failed" cells; everything started is stopped
 * at the end, on error and on Ctrl-C, and so is the baseline's worktree.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { IdlePeers, LOAD_CPU, nofileLimit, startHttpBackends } from "./backends.ts";
import { addBaseline, type Baseline, removeBaseline } from "./baseline.ts";
import { contenders, httpOnly, PROXY_CPU } from "./contenders.ts";
import { measureRound, type RoundResult, type Settings } from "./measure.ts";
import { setTicksPerSecond } from "./proc_stats.ts";
import { NoiseMeter } from "./noise.ts";
import { run, stopAll, stopAllOnExit } from "./processes.ts";
import { metrics, NOISY, renderMarkdown, summarize } from "./report.ts";
import { localDate, type Results, writeResults } from "./results.ts";
import { describeSetup, findTools } from "./tools.ts";

// Nine contenders times three rounds must fit in 15 minutes: about 30 s
// for each contender's round.
const FULL: Settings = {
  rounds: 3,
  wrkSeconds: 3,
  wrkConnections: 50,
  warmupSeconds: 1,
  iperfSeconds: 2,
  idleConnections: 10_000,
  settleMs: 1500,
};
const QUICK: Settings = {
  rounds: 1,
  wrkSeconds: 2,
  wrkConnections: 50,
  warmupSeconds: 1,
  iperfSeconds: 2,
  idleConnections: 2000,
  settleMs: 1000,
};
/**
 * Contenders a quick run leaves out unless `--only` names them, so that it
 * stays under 3 minutes: the health-check and admin variants, the reference
 * proxies, the PROXY v2 and TLS pairs (issue 10), Node and the two-core
 * contenders (issue 11).
 */
const FULL_ONLY = [
  "bun-health",
  "bun-admin",
  "bun-minimal",
  "deno-minimal",
  "bun-proxy-v2",
  "haproxy-proxy-v2",
  "bun-tls",
  "haproxy-tls",
  "node",
  "bun-workers2",
  "haproxy-nbthread2",
  "nginx-workers2",
];
/** No new contender round starts past this, so that a run stays bounded. */
const BUDGET_SECONDS = { quick: 160, full: 850 };

/** The contenders that run the code at `--baseline REF`. */
const BASELINE_KEYS = ["bun-base", "deno-base"];

const USAGE =
  `usage: bun bench/run.ts [--quick] [--rounds N] [--only KEY,KEY] [--baseline REF] [--suffix NAME]
  --quick         one round, short runs, 2,000 idle connections, without
                  bun-health, bun-admin, bun-minimal, deno-minimal, the PROXY v2
                  and TLS pairs, node and the two-core contenders (under 3 minutes)
  --rounds N      rounds to take the median of (default 3, --quick 1)
  --only          contenders to run, from: direct,bun,bun-base,bun-health,bun-admin,bun-minimal,
                  deno-minimal,bun-proxy-v2,bun-tls,bun-workers2,deno,deno-base,node,
                  compiled,haproxy,haproxy-proxy-v2,haproxy-tls,haproxy-nbthread2,nginx,
                  nginx-workers2
  --baseline REF  also run the code at git commit REF (a worktree in a temporary
                  directory) as bun-base and deno-base, with the current harness
  --suffix NAME   name the results DATE-HOST[-quick]-NAME.md and .json, so that a run
                  does not overwrite another's of the same day`;

interface Options {
  quick: boolean;
  rounds: number | undefined;
  only: string[] | undefined;
  baseline: string | undefined;
  suffix: string | undefined;
}

function parseArgs(args: string[]): Options {
  const options: Options = {
    quick: false,
    rounds: undefined,
    only: undefined,
    baseline: undefined,
    suffix: undefined,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--quick") options.quick = true;
    else if (arg === "--rounds") options.rounds = Number(args[++i]);
    else if (arg === "--only") options.only = args[++i]?.split(",");
    else if (arg === "--baseline") options.baseline = args[++i] ?? "";
    else if (arg === "--suffix") options.suffix = args[++i] ?? "";
    else if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      process.exit(0);
    } else {
      console.error(`bench: unknown argument ${arg}\n${USAGE}`);
      process.exit(2);
    }
  }
  if (options.rounds !== undefined && !(options.rounds >= 1)) {
    console.error(`bench: --rounds must be a positive number\n${USAGE}`);
    process.exit(2);
  }
  if (options.baseline !== undefined && !/^[^-\s]\S*$/.test(options.baseline)) {
    console.error(`bench: --baseline needs a git commit, tag or branch\n${USAGE}`);
    process.exit(2);
  }
  if (options.suffix !== undefined && !/^[\w.-]+$/.test(options.suffix)) {
    console.error(`bench: --suffix takes letters, digits, '.', '_' and '-'\n${USAGE}`);
    process.exit(2);
  }
  const needsBaseline = options.only?.filter((key) => BASELINE_KEYS.includes(key)) ?? [];
  if (options.baseline === undefined && needsBaseline.length > 0) {
    console.error(`bench: --only ${needsBaseline.join(",")} needs --baseline REF\n${USAGE}`);
    process.exit(2);
  }
  return options;
}

function oneLine(name: string, round: RoundResult): string {
  const f = round.figures;
  const show = (key: string, digits = 0) => (f[key] === undefined ? "-" : f[key]!.toFixed(digits));
  const failed = Object.keys(round.errors);
  return `${name}: ${show("connPerSec")} conn/s, ${show("reqPerSec")} req/s, p99 ${
    show("p99Ms", 2)
  } ms, ` +
    `bulk ${show("bulk1Up", 1)}/${show("bulk8Up", 1)} Gbit/s, idle ${show("rssIdleMiB", 1)} MiB` +
    (failed.length ? `; failed: ${failed.join(", ")}` : "");
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const settings = { ...(options.quick ? QUICK : FULL) };
  if (options.rounds !== undefined) settings.rounds = options.rounds;
  // Each idle connection takes two fds in the proxy; keep 200 for the rest.
  const fdCap = Math.floor((nofileLimit() - 200) / 2 / 100) * 100;
  const remarks: string[] = [];
  if (settings.idleConnections > fdCap) {
    remarks.push(
      `The fd hard limit is ${nofileLimit()} and cannot be raised here (no CAP_SYS_RESOURCE), ` +
        `so ${fdCap} idle connections instead of ${settings.idleConnections}.`,
    );
    console.error(`bench: ${remarks.at(-1)}`);
    settings.idleConnections = fdCap;
  }
  const budget = options.quick ? BUDGET_SECONDS.quick : BUDGET_SECONDS.full;
  const started = Date.now();
  const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const temp = mkdtempSync(join(tmpdir(), "mini-balancer-bench-"));
  let baseline: Baseline | undefined;
  // Only once the processes have stopped: the baseline contenders run from its worktree.
  const cleanUp = () => {
    if (baseline) {
      const failed = removeBaseline(repo, baseline);
      if (failed) console.error(`bench: ${failed}`);
      baseline = undefined;
    }
    rmSync(temp, { recursive: true, force: true });
  };

  // Stop everything we started on Ctrl-C, on kill, and on any way out.
  stopAllOnExit("bench", cleanUp);

  try {
    if (options.baseline !== undefined) {
      baseline = addBaseline(repo, options.baseline, join(temp, "baseline"));
      console.error(
        `bench: baseline ${baseline.ref} (${baseline.commit}) checked out in ${baseline.dir}`,
      );
    }
    const ticks = await run("getconf", ["CLK_TCK"], { timeoutMs: 5000 });
    setTicksPerSecond(Number(ticks.stdout.trim()));
    // The harness is load too: keep it off the proxy's core.
    await run("taskset", ["-a", "-pc", String(LOAD_CPU), String(process.pid)], { timeoutMs: 5000 });
    const tools = await findTools(repo);
    const setup = await describeSetup(tools);
    if (baseline) setup.baseline = `${baseline.ref} (${baseline.commit})`;
    let list = contenders(temp, tools, { baseline });
    if (options.only) list = list.filter((c) => options.only!.includes(c.key));
    else if (options.quick) list = list.filter((c) => !FULL_ONLY.includes(c.key));
    const unpinned = list.filter((c) => c.pinned === false).map((c) => c.name);
    const pinning = `Pinning: the proxy runs on core ${PROXY_CPU} (taskset -c ${PROXY_CPU}), ` +
      `wrk, iperf3, the backends and the idle peers on core ${LOAD_CPU} (taskset -c ${LOAD_CPU}); ` +
      "HAProxy has nbthread 1 and nginx worker_processes 1, so every proxy gets one core" +
      (unpinned.length === 0 ? "." : `, except ${unpinned.join(", ")}: ` +
        `two processes or threads each, not pinned (taskset -c ${PROXY_CPU},${LOAD_CPU}), ` +
        "sharing both cores with wrk and the backends, so that their rates say what two " +
        "cores give when the load competes for them, and their CPU per unit of work is " +
        "summed over all their processes and threads.");
    console.error(`bench: ${pinning}`);
    console.error(
      `bench: ${options.quick ? "quick" : "full"} run, settings ${JSON.stringify(settings)}`,
    );

    const http = await startHttpBackends(join(temp, "backend-nginx"));
    const idle = await IdlePeers.start(tools.bun, repo);
    const backends = { http: http.ports, httpProxyProtocol: http.proxyProtocolPorts, idle };
    const rounds = new Map(list.map((c) => [c.key, [] as RoundResult[]]));

    rounds: for (let round = 0; round < settings.rounds; round++) {
      // Rotate the order so that no contender always runs first or last.
      const order = list.map((_, i) => list[(i + round) % list.length]!);
      for (const contender of order) {
        const elapsed = (Date.now() - started) / 1000;
        if (elapsed > budget) {
          remarks.push(`Time budget of ${budget} s used up: stopped after ${round} full round(s).`);
          console.error(`bench: ${remarks.at(-1)}`);
          break rounds;
        }
        console.error(
          `bench: round ${round + 1}/${settings.rounds}, ${contender.name} (${
            Math.round(elapsed)
          } s)`,
        );
        const noise = new NoiseMeter();
        let result: RoundResult;
        try {
          result = await measureRound(contender, backends, settings);
        } catch (error) {
          result = { figures: {}, errors: { round: String(error) }, notes: {} };
        }
        if (!http.proc.alive) throw new Error(`a backend died: ${http.proc.describeExit()}`);
        if (!idle.alive) throw new Error("the idle peers died");
        result.notes.otherCpuSeconds = noise.otherCpuSeconds();
        result.notes.wallSeconds = noise.elapsedSeconds();
        rounds.get(contender.key)!.push(result);
        console.error(`bench:   ${oneLine(contender.name, result)}`);
        if (result.notes.otherCpuSeconds > NOISY * result.notes.wallSeconds) {
          console.error(
            `bench:   warning: other processes used ${
              result.notes.otherCpuSeconds.toFixed(1)
            } CPU s ` +
              `in these ${result.notes.wallSeconds.toFixed(0)} s: its figures are less reliable`,
          );
        }
      }
    }

    const results: Results = {
      date: localDate(),
      host: hostname(),
      quick: options.quick,
      durationSeconds: (Date.now() - started) / 1000,
      settings,
      pinning,
      remarks,
      setup,
      metrics: metrics(settings.idleConnections),
      contenders: summarize(
        list.map((c) => ({
          key: c.key,
          name: c.name,
          rounds: rounds.get(c.key)!,
          httpOnly: httpOnly(c),
        })),
        metrics(settings.idleConnections).map((m) => m.key),
      ),
    };
    const markdown = renderMarkdown(results);
    writeResults(
      repo,
      `${results.date}-${results.host}${options.quick ? "-quick" : ""}${
        options.suffix === undefined ? "" : `-${options.suffix}`
      }`,
      markdown,
      results,
      "bench",
    );
    return 0;
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await stopAll();
    cleanUp();
  }
}

process.exit(await main());
