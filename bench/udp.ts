/**
 * The UDP bench of issue 21: DNS-like load (a 64-byte query, a 128-byte
 * reply, 50 clients each waiting for its reply) through the direct path,
 * nginx `stream` UDP (one worker), the minimal Bun forwarder
 * (bench/udp_forwarder.ts) and mini-balancer on Bun, Deno and as the
 * compiled executable, in two modes: a new flow per query (`responses = 1`,
 * `proxy_responses 1`) and long-lived flows. Then the RSS per open flow
 * (10,000 long-lived flows) of each proxy, and, in a full run, `strace -c -f`
 * of the minimal forwarder: its syscalls per reply.
 *
 * Each proxy is pinned to core 0; the responders (two, one process), the
 * load generator (bench/udp_load.ts) and this harness run on core 1.
 * Writes bench/results/DATE-udp[-quick].{md,json}.
 *
 * Usage: bun bench/udp.ts [--quick] [--only direct,nginx,bun-minimal,bun,deno,executable]
 *   [--seconds N] [--warmup N] [--rounds N] [--flows N] [--no-strace] [--note TEXT]
 *   (npm run bench:udp)
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { LOAD_CPU, nginxArgs, nginxPreamble, nofileLimit } from "./backends.ts";
import { PROXY_CPU } from "./contenders.ts";
import { type Proc, run, start, stopAllOnExit } from "./processes.ts";
import { setTicksPerSecond } from "./proc_stats.ts";
import {
  type LoadResult,
  medianRound,
  type MemoryResult,
  MINIMAL,
  type Mode,
  NGINX,
  parseStrace,
  renderUdp,
  type TargetRun,
} from "./udp_report.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    seconds: { type: "string" },
    warmup: { type: "string" },
    rounds: { type: "string" },
    flows: { type: "string", default: "10000" },
    "no-strace": { type: "boolean", default: false },
    note: { type: "string" },
  },
});
const QUICK = values.quick!;
const SECONDS = Number(values.seconds ?? 3);
const WARMUP = Number(values.warmup ?? (QUICK ? 1 : 2));
const ROUNDS = Number(values.rounds ?? (QUICK ? 1 : 5));
const FLOWS = Number(values.flows);
const CLIENTS = 50;
const repo = join(import.meta.dirname!, "..");
const BUN = join(repo, "node_modules/.bin/bun");
const DENO = join(repo, "node_modules/.bin/deno");
const EXECUTABLE = join(repo, "dist/mini-balancer");
const MODES: Mode[] = ["new-flow", "long-lived"];

const temp = mkdtempSync(join(tmpdir(), "mb-udp-bench-"));
stopAllOnExit("bench:udp", () => rmSync(temp, { recursive: true, force: true }));

/** A free UDP port on 127.0.0.1 (bound to 0 and released). */
async function freeUdpPort(): Promise<number> {
  const dgram = await import("node:dgram");
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const port = socket.address().port;
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

/** Whether some socket is bound to UDP `port`, from /proc/net/udp. */
function udpBound(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const text = readFileSync("/proc/net/udp", "utf8");
  return text.split("\n").some((line) => line.trim().split(/\s+/)[1]?.endsWith(hex));
}

/** Waits until `port` is bound, failing early when `proc` exits. */
async function waitBound(port: number, proc: Proc, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!udpBound(port)) {
    if (!proc.alive) throw new Error(proc.describeExit());
    if (Date.now() > deadline) throw new Error(`${proc.name} is not bound to udp ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts the two responders in one process on the load core; returns their ports. */
async function startResponders(): Promise<number[]> {
  const proc = start("responders", BUN, ["bench/udp_responder.ts", "2"], {
    cpu: LOAD_CPU,
    cwd: repo,
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ports = proc.output.match(/^ports (\d+) (\d+)$/m);
    if (ports) return [Number(ports[1]), Number(ports[2])];
    if (!proc.alive) throw new Error(proc.describeExit());
    if (Date.now() > deadline) throw new Error("the responders did not bind in 30 s");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One target: how to start it for a mode, or no process (direct). */
interface Target {
  key: string;
  name: string;
  /** Starts the proxy on `port` in front of `backends`; undefined for direct. */
  start?: (port: number, backends: number[], mode: Mode, dir: string) => Proc;
}

function miniBalancerConfig(port: number, backends: number[], mode: Mode): string {
  return [
    "[frontend]",
    `bind_on = "udp:127.0.0.1:${port}"`,
    mode === "new-flow" ? "responses = 1" : 'idle_timeout = "10m"',
    ...backends.flatMap((b) => ["[[frontend.backend]]", `forward_to = "127.0.0.1:${b}"`]),
  ].join("\n") + "\n";
}

function nginxConfig(dir: string, port: number, backends: number[], mode: Mode): string {
  const module = existsSync("/usr/lib/nginx/modules/ngx_stream_module.so")
    ? "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
    : "";
  const session = mode === "new-flow"
    ? "proxy_responses 1;\n    proxy_timeout 30s;"
    : "proxy_timeout 10m;";
  return `${module}${nginxPreamble(dir)}worker_rlimit_nofile ${nofileLimit()};
events { worker_connections ${nofileLimit() - 50}; }
stream {
  upstream servers {
${backends.map((b) => `    server 127.0.0.1:${b};\n`).join("")}  }
  server {
    listen 127.0.0.1:${port} udp;
    proxy_pass servers;
    ${session}
  }
}
`;
}

const proxyOptions = { cpu: PROXY_CPU, nofile: nofileLimit(), cwd: repo };

function miniBalancer(key: string, name: string, command: string[]): Target {
  return {
    key,
    name,
    start(port, backends, mode, dir) {
      const file = join(dir, "mini-balancer.toml");
      writeFileSync(file, miniBalancerConfig(port, backends, mode));
      const [program, ...args] = command;
      return start(name, program!, [...args, "-c", file], proxyOptions);
    },
  };
}

const TARGETS: Target[] = [
  { key: "direct", name: "direct (no proxy)" },
  {
    key: NGINX,
    name: "nginx stream UDP",
    start(port, backends, mode, dir) {
      const file = join(dir, "nginx.conf");
      writeFileSync(file, nginxConfig(dir, port, backends, mode));
      return start("nginx", "nginx", nginxArgs(dir, file), proxyOptions);
    },
  },
  {
    key: MINIMAL,
    name: "minimal Bun forwarder",
    start(port, backends, mode) {
      return start("minimal Bun forwarder", BUN, [
        "bench/udp_forwarder.ts",
        String(port),
        mode === "new-flow" ? "1" : "0",
        mode === "new-flow" ? "30" : "600",
        ...backends.map(String),
      ], proxyOptions);
    },
  },
  miniBalancer("bun", "mini-balancer (Bun)", [BUN, "src/main.ts"]),
  // The permissions of `deno task start` (deno.json).
  miniBalancer("deno", "mini-balancer (Deno)", [
    DENO,
    "run",
    "--no-prompt",
    "--allow-net",
    "--allow-read",
    "--allow-run=./node_modules/deno/deno",
    "--unstable-net",
    "src/main_deno.ts",
  ]),
  miniBalancer("executable", "mini-balancer (executable)", [EXECUTABLE]),
];

/** Runs the load generator on the load core and parses its line of JSON. */
async function runLoad<T>(args: string[], timeoutMs: number): Promise<T> {
  const result = await run(BUN, ["bench/udp_load.ts", ...args], {
    cpu: LOAD_CPU,
    nofile: nofileLimit(),
    cwd: repo,
    timeoutMs,
  });
  const line = result.stdout.trim().split("\n").pop() ?? "";
  if (result.code !== 0 || !line.startsWith("{")) {
    throw new Error(
      `the load generator ${result.timedOut ? "timed out" : `exited with ${result.code}`}: ${
        (result.stderr.match(/^.*error.*$/im)?.[0] ?? result.stderr.trim().split("\n").pop())
          ?.trim()
      }`,
    );
  }
  return JSON.parse(line) as T;
}

/** A target started for a mode: where to send, and its process (none for direct). */
interface Started {
  target: Target;
  run: TargetRun;
  port: number;
  proc: Proc | undefined;
}

function describe(load: LoadResult): string {
  return `${Math.round(load.replies / load.seconds)} replies/s` +
    (load.proxyCpuSeconds ? `, ${Math.round(load.replies / load.proxyCpuSeconds)}/CPU-s` : "") +
    `, p99 ${Math.round(load.p99Us)} us, lost ${load.lost}`;
}

/** One load run against a started target. */
function loadOnce(started: Started, mode: Mode, warmup: number, seconds: number) {
  return runLoad<LoadResult>([
    "--port",
    String(started.port),
    "--mode",
    mode,
    "--clients",
    String(CLIENTS),
    "--warmup",
    String(warmup),
    "--seconds",
    String(seconds),
    ...(started.proc ? ["--pid", String(started.proc.pid)] : []),
  ], (warmup + seconds + 60) * 1000);
}

/**
 * Measures every target in one mode: all started at once (each idle while
 * another is loaded), a warm-up run each, then ROUNDS rounds taking turns in
 * a rotated order, so that the shared machine's slow phases fall on every
 * row alike; each row keeps its median round. In the long-lived mode, then
 * the memory step of each proxy.
 */
async function measureMode(mode: Mode, runs: TargetRun[], backends: number[]): Promise<void> {
  const started: Started[] = [];
  for (const [i, target] of targets.entries()) {
    const run = runs[i]!;
    const dir = join(temp, `${target.key}-${mode}`);
    mkdirSync(dir, { recursive: true });
    const port = target.start ? await freeUdpPort() : backends[0]!;
    const proc = target.start?.(port, backends, mode, dir);
    try {
      if (proc) await waitBound(port, proc);
      await loadOnce({ target, run, port, proc }, mode, 0, WARMUP);
      started.push({ target, run, port, proc });
    } catch (error) {
      const message = (error as Error).message.split("\n")[0]!;
      run.errors.push(`${mode}: ${message}`);
      console.error(`bench:udp: ${target.name}, ${mode}: not measured: ${message}`);
      await proc?.stop();
    }
  }
  const rounds = new Map<Started, LoadResult[]>(started.map((s) => [s, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = started.map((_, i) => started[(i + round) % started.length]!);
    for (const one of order) {
      if (one.proc && !one.proc.alive) continue;
      try {
        const load = await loadOnce(one, mode, 0.5, SECONDS);
        if (one.proc && !one.proc.alive) throw new Error(one.proc.describeExit());
        rounds.get(one)!.push(load);
        console.error(
          `bench:udp: ${one.target.name}, ${mode}, round ${round + 1}: ${describe(load)}`,
        );
      } catch (error) {
        const message = (error as Error).message.split("\n")[0]!;
        one.run.errors.push(`${mode}, round ${round + 1}: ${message}`);
        console.error(`bench:udp: ${one.target.name}, ${mode}: not measured: ${message}`);
      }
    }
  }
  for (const one of started) {
    const results = rounds.get(one)!;
    if (results.length > 0) {
      one.run.modes[mode] = medianRound(results);
      (one.run.rounds ??= {})[mode] = results;
    }
  }
  if (mode === "long-lived" && FLOWS > 0) {
    for (const one of started) {
      if (!one.proc?.alive) continue;
      try {
        const args = ["--port", String(one.port), "--flows", String(FLOWS), "--pid"];
        // 10,000 flows take 20,000 ephemeral ports (the clients' and the
        // proxy's sockets); other work on the machine may hold some a moment.
        const memory = await runLoad<MemoryResult>([...args, String(one.proc.pid)], 120_000)
          .catch(async (error: Error) => {
            if (!/EADDRINUSE/.test(error.message)) throw error;
            await new Promise((resolve) => setTimeout(resolve, 5000));
            return await runLoad<MemoryResult>([...args, String(one.proc!.pid)], 120_000);
          });
        one.run.memory = memory;
        console.error(
          `bench:udp: ${one.target.name}: ${memory.answered}/${memory.flows} flows, ` +
            `${Math.round((memory.rssAfter - memory.rssBefore) / memory.flows)} bytes per flow`,
        );
      } catch (error) {
        const message = (error as Error).message.split("\n")[0]!;
        one.run.errors.push(`memory: ${message}`);
        console.error(`bench:udp: ${one.target.name}, memory: not measured: ${message}`);
      } finally {
        // Its 10,000 flows' sockets hold ephemeral ports the next one needs.
        await one.proc.stop();
      }
    }
  }
  await Promise.all(started.map((one) => one.proc?.stop()));
}

/**
 * The minimal forwarder under `strace -c -f`, each mode a few seconds with no
 * warm-up: the socket syscalls it makes per reply.
 */
async function straceForwarder(backends: number[]): Promise<string[]> {
  const lines = [
    "## Syscalls per reply of the minimal Bun forwarder (`strace -c -f`)",
    "",
    "One short run per mode under strace (slower, so only the counts matter);",
    "syscalls made fewer than 0.01 times per reply are left out. A forwarder",
    "with a connected socket per flow cannot do with less than one receive and",
    "one send each way per reply (4); Bun reads with recvmmsg and writes with",
    "sendmmsg, one datagram each here, plus a read that finds a socket empty",
    "now and then. A new flow adds its socket's life: socket, bind,",
    "getsockname, connect, close, and the 5 setsockopt and 2 epoll_ctl that",
    "Bun makes for every UDP socket (about 11 more per reply, not in our hands).",
    "",
  ];
  for (const mode of MODES) {
    const port = await freeUdpPort();
    const out = join(temp, `strace-${mode}.txt`);
    const proc = start("strace", "strace", [
      "-c",
      "-f",
      "-o",
      out,
      BUN,
      "bench/udp_forwarder.ts",
      String(port),
      mode === "new-flow" ? "1" : "0",
      "600",
      ...backends.map(String),
    ], proxyOptions);
    try {
      await waitBound(port, proc);
      const load = await runLoad<LoadResult>(
        ["--port", String(port), "--mode", mode, "--warmup", "0", "--seconds", "3"],
        60_000,
      );
      await proc.stop(5000);
      const counts = parseStrace(readFileSync(out, "utf8"))
        .map(({ syscall, calls }) => ({ syscall, perReply: calls / load.replies }))
        .filter(({ perReply }) => perReply >= 0.01)
        .sort((a, b) => b.perReply - a.perReply);
      const total = counts.reduce((sum, { perReply }) => sum + perReply, 0);
      lines.push(
        `${mode}: ${load.replies} replies; ${total.toFixed(2)} syscalls per reply: ` +
          counts.map(({ syscall, perReply }) => `${syscall} ${perReply.toFixed(2)}`).join(", "),
        "",
      );
    } catch (error) {
      lines.push(`${mode}: not measured: ${(error as Error).message.split("\n")[0]}`, "");
    } finally {
      await proc.stop();
    }
  }
  return lines;
}

/** Builds dist/mini-balancer when missing or older than src/, as `npm run compile` does. */
function compileIfStale(): void {
  const newer = spawnSync(
    "sh",
    ["-c", "find src -name '*.ts' -newer dist/mini-balancer | head -1"],
    {
      cwd: repo,
      encoding: "utf8",
    },
  ).stdout?.trim();
  if (existsSync(EXECUTABLE) && !newer) return;
  console.error("bench:udp: building dist/mini-balancer (npm run compile)");
  const built = spawnSync("npm", ["run", "compile"], {
    cwd: repo,
    encoding: "utf8",
    timeout: 300_000,
  });
  if (built.status !== 0) console.error(`bench:udp: compile failed: ${built.stderr}`);
}

function firstLine(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 10_000 });
  return `${result.stdout ?? ""}\n${result.stderr ?? ""}`.trim().split("\n")[0] ?? "?";
}

function cpuModel(): string {
  const lscpu = spawnSync("lscpu", [], { encoding: "utf8", timeout: 10_000 }).stdout ?? "";
  const field = (name: string) =>
    lscpu.match(new RegExp(`^${name}:\\s*(.*)$`, "m"))?.[1]?.trim() ?? "?";
  return `${field("Model name")} (family ${field("CPU family")}, model ${field("Model")}), ${
    field("CPU\\(s\\)")
  } CPUs`;
}

const only = values.only?.split(",");
const targets = only ? TARGETS.filter((t) => only.includes(t.key)) : TARGETS;
// The harness is load too: keep it off the proxy's core.
spawnSync("taskset", ["-a", "-pc", String(LOAD_CPU), String(process.pid)]);
setTicksPerSecond(Number(firstLine("getconf", ["CLK_TCK"])));
if (targets.some((t) => t.key === NGINX)) {
  const install = await run("bash", [join(repo, "bench/install-tools.sh")], { timeoutMs: 300_000 });
  if (install.code !== 0) process.stderr.write(install.stderr);
}
if (targets.some((t) => t.key === "executable")) compileIfStale();
const commit = firstLine("git", ["-C", repo, "rev-parse", "--short", "HEAD"]);
const setup: Record<string, string> = {
  commit,
  bun: firstLine(BUN, ["--version"]),
  deno: firstLine(DENO, ["--version"]),
  nginx: firstLine("nginx", ["-v"]),
  kernel: firstLine("uname", ["-sr"]),
  ...(values.note ? { note: values.note } : {}),
  pinning: `proxy on core ${PROXY_CPU}; load generator, responders and harness on core ${LOAD_CPU}`,
};
const cpu = cpuModel();
const backends = await startResponders();
const runs: TargetRun[] = targets.map((t) => ({ key: t.key, name: t.name, modes: {}, errors: [] }));
for (const mode of MODES) await measureMode(mode, runs, backends);
const straceLines = !QUICK && !values["no-strace"] && targets.some((t) => t.key === MINIMAL) &&
    spawnSync("sh", ["-c", "command -v strace"]).status === 0
  ? await straceForwarder(backends)
  : [];

const date = new Date().toISOString().slice(0, 10);
const page = renderUdp(runs, {
  date,
  cpu,
  setup,
  warmupSeconds: WARMUP,
  seconds: SECONDS,
  rounds: ROUNDS,
  clients: CLIENTS,
  quick: QUICK,
}) + (straceLines.length > 0 ? `\n${straceLines.join("\n")}` : "");
const name = join(repo, `bench/results/${date}-udp${QUICK ? "-quick" : ""}`);
writeFileSync(`${name}.md`, page);
writeFileSync(
  `${name}.json`,
  JSON.stringify(
    { date, cpu, setup, seconds: SECONDS, warmup: WARMUP, rounds: ROUNDS, runs, straceLines },
    null,
    2,
  ) +
    "\n",
);
console.log(page);
console.log(`written: ${name}.md`);
process.exit(0);
