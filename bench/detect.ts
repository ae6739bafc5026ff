/**
 * The detection bench (issue 19): the proxy's CPU time per new connection
 * when it must read a connection's first bytes to choose a frontend, beside
 * the plain TCP path and today's SNI-only shared address, in one run, on
 * Bun, Deno and the compiled executable, and (`--baseline REF`, default
 * 0dd1fbf, the code before issue 19) the plain and SNI-only rows of the code
 * before it. Each connection connects, sends its first bytes, reads their
 * echo from the backend and closes. Rows:
 *
 * - `plain`: one frontend, no matcher; a short line;
 * - `sni-only`: two `sni` frontends and a default; a real ClientHello (SNI a.test);
 * - `four-*`: one address with ssh, two tls (sni + alpn, sni), http with
 *   `http_host`, postgres and a fallback with `detect_timeout`; the same
 *   ClientHello, an HTTP request, an SSH banner, a PostgreSQL SSLRequest,
 *   garbage.
 *
 * Every proxy starts once, pinned to core 0. A round runs every row's
 * connections in slices of 500 taking turns (rotated each round), so that
 * the shared machine's slow phases fall on every row alike. Writes
 * bench/results/DATE-detect[-SUFFIX].{md,json}.
 *
 * Usage: bun bench/detect.ts [--connections N] [--rounds N] [--baseline REF|none]
 *   [--only bun,deno,executable] [--suffix NAME]   (npm run bench:detect)
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LOAD_CPU, nofileLimit } from "./backends.ts";
import { addBaseline, type Baseline, removeBaseline } from "./baseline.ts";
import { PROXY_CPU } from "./contenders.ts";
import {
  type DetectAbout,
  detectRows,
  type DetectSample,
  type DetectSeries,
  renderDetect,
} from "./detect_report.ts";
import { median } from "./idle_report.ts";
import { NoiseMeter } from "./noise.ts";
import { freePort, waitListening } from "./ports.ts";
import { cpuNanoseconds, cpuSeconds, setTicksPerSecond } from "./proc_stats.ts";
import { type Proc, start, stopAll, stopAllOnExit } from "./processes.ts";
import {
  CURL_HEAD,
  latin1,
  OPENSSL_H2_HELLO,
  PG_SSL_REQUEST,
  SSH_BANNER,
} from "../tests/unit/protocol/_samples.ts";

const { values } = parseArgs({
  options: {
    connections: { type: "string", default: "4000" },
    rounds: { type: "string", default: "5" },
    concurrency: { type: "string", default: "32" },
    baseline: { type: "string", default: "0dd1fbf" },
    only: { type: "string", default: "bun,deno,executable" },
    suffix: { type: "string", default: "" },
  },
});
/** A whole number of at least 1 from an option, or one line naming it and the exit. */
function count(option: "connections" | "rounds" | "concurrency"): number {
  const value = Number(values[option]);
  if (Number.isInteger(value) && value >= 1) return value;
  console.error(`detect: --${option} ${values[option]}: not a whole number of at least 1`);
  process.exit(2);
}
const CONNECTIONS = count("connections");
const ROUNDS = count("rounds");
const CONCURRENCY = count("concurrency");
const WARM_UP = Math.min(1000, CONNECTIONS);
const ONLY = values.only.split(",").map((key) => key.trim());
/** How long one connection may take before it counts as failed. */
const EXCHANGE_TIMEOUT_MS = 10_000;
/** A pause after a slice, so that the proxy's last closes land in its figure. */
const SETTLE_MS = 10;
/** Connections per slice: each round runs every row's slices in turn. */
const SLICE = 500;

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const BUN = join(repo, "node_modules/.bin/bun");
const DENO = join(repo, "node_modules/.bin/deno");
const EXECUTABLE = join(repo, "dist/mini-balancer");

/** What each row's client sends first. */
const GARBAGE = latin1("\x7f\xfe\x01garbage that is no protocol at all\r\n");
const FIRST_BYTES: Record<string, Uint8Array> = {
  "plain": latin1("hello through the proxy\n"),
  "sni-only": OPENSSL_H2_HELLO,
  "four-tls": OPENSSL_H2_HELLO,
  "four-http": CURL_HEAD,
  "four-ssh": SSH_BANNER,
  "four-postgres": PG_SSL_REQUEST,
  "four-fallback": GARBAGE,
};
const DESCRIBED: Record<string, string> = {
  "plain": `a ${FIRST_BYTES.plain!.length}-byte line`,
  "sni-only": `a ${OPENSSL_H2_HELLO.length}-byte ClientHello of openssl s_client ` +
    "(OpenSSL 3.0, TLS 1.3, SNI a.test, ALPN h2,http/1.1)",
  "four-tls": "the same ClientHello",
  "four-http": `curl 8's ${CURL_HEAD.length}-byte request head (Host: h.test:8080)`,
  "four-ssh": `OpenSSH 9.6's ${SSH_BANNER.length}-byte banner`,
  "four-postgres": "libpq's 8-byte SSLRequest",
  "four-fallback": `${GARBAGE.length} bytes of garbage (0x7f first: no protocol's signature)`,
};
/** Which config each row connects to. */
const CONFIG_OF: Record<string, string> = {
  "plain": "plain",
  "sni-only": "sni-only",
  "four-tls": "four",
  "four-http": "four",
  "four-ssh": "four",
  "four-postgres": "four",
  "four-fallback": "four",
};

function frontend(name: string, port: string, backend: string, extra: string[] = []): string[] {
  return [
    "[[frontends]]",
    `name = "${name}"`,
    `bind_on = "127.0.0.1:${port}"`,
    ...extra,
    "",
    "[[frontends.backend]]",
    `forward_to = "127.0.0.1:${backend}"`,
    "",
  ];
}

/** The configs, with PORT and BACKEND to fill in. */
const CONFIGS: Record<string, string> = {
  "plain": [
    "[frontend]",
    'bind_on = "127.0.0.1:PORT"',
    "",
    "[[frontend.backend]]",
    'forward_to = "127.0.0.1:BACKEND"',
  ].join("\n") + "\n",
  "sni-only": [
    ...frontend("a", "PORT", "BACKEND", ['sni = ["a.test"]']),
    ...frontend("b", "PORT", "BACKEND", ['sni = ["b.test"]']),
    ...frontend("default", "PORT", "BACKEND"),
  ].join("\n"),
  "four": [
    ...frontend("ssh", "PORT", "BACKEND", ['protocol = "ssh"']),
    ...frontend("a", "PORT", "BACKEND", ['sni = ["a.test"]', 'alpn = ["h2"]']),
    ...frontend("b", "PORT", "BACKEND", ['sni = ["b.test"]']),
    ...frontend("web", "PORT", "BACKEND", ['http_host = ["h.test", "*.h.test"]']),
    ...frontend("db", "PORT", "BACKEND", ['protocol = "postgres"']),
    ...frontend("fallback", "PORT", "BACKEND", ['detect_timeout = "300ms"']),
  ].join("\n"),
};

/** A way to start mini-balancer: a runtime, from the current tree or the baseline's. */
interface Runtime {
  name: string;
  /** The command for a config file. */
  command: (file: string) => string[];
  cwd: string;
  /** The configs it runs. */
  configs: string[];
}

const bunCommand = (file: string) => [BUN, "run", "src/main.ts", "-c", file];
const denoCommand = (file: string) => [
  DENO,
  "run",
  "--no-prompt",
  "--allow-net",
  "--allow-read",
  "src/main_deno.ts",
  "-c",
  file,
];

function git(args: string[]): string {
  const result = spawnSync("git", ["-C", repo, ...args], { encoding: "utf8", timeout: 10_000 });
  return result.status === 0 ? result.stdout.trim() : "unknown";
}

function cpuModel(): string {
  const lscpu = spawnSync("lscpu", [], { encoding: "utf8", timeout: 10_000 });
  const model = lscpu.stdout?.match(/^Model name:\s*(.*)$/m)?.[1]?.trim();
  const cpus = lscpu.stdout?.match(/^CPU\(s\):\s*(\d+)$/m)?.[1];
  return `${model ?? "unknown"}${cpus ? `, ${cpus} CPUs` : ""}`;
}

/** Builds dist/mini-balancer when missing or older than src/, as `npm run compile` does. */
function compileIfStale(): boolean {
  const newest = spawnSync("sh", [
    "-c",
    "find src -name '*.ts' -newer dist/mini-balancer | head -1",
  ], {
    cwd: repo,
    encoding: "utf8",
  }).stdout?.trim();
  if (existsSync(EXECUTABLE) && !newest) return true;
  console.error("detect: building dist/mini-balancer (npm run compile)");
  mkdirSync(join(repo, "dist"), { recursive: true });
  const built = spawnSync(
    BUN,
    ["build", "--compile", "--minify", "src/main.ts", "--outfile", "dist/mini-balancer"],
    { cwd: repo, encoding: "utf8", timeout: 300_000 },
  );
  if (built.status !== 0) console.error(`detect: compile failed: ${built.stderr}`);
  return built.status === 0 && existsSync(EXECUTABLE) && statSync(EXECUTABLE).size > 0;
}

// The harness runs under Bun (npm run bench:detect, deno task bench:detect).
// deno-lint-ignore no-explicit-any
declare const Bun: any;

/** One connection: connect, send the bytes, read as many back, close; resolves true when whole. */
function exchange(port: number, bytes: Uint8Array): Promise<boolean> {
  // Bun's own sockets when there: the client shares core 1 with the echo
  // backend, and node:net there takes about twice the CPU per connection,
  // which makes every batch longer for the same figure.
  return typeof Bun === "undefined" ? exchangeNode(port, bytes) : exchangeBun(port, bytes);
}

function exchangeBun(port: number, bytes: Uint8Array): Promise<boolean> {
  return new Promise((resolve) => {
    let received = 0;
    let done = false;
    // deno-lint-ignore no-explicit-any
    let socket: any;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => {
      socket?.terminate();
      finish(false);
    }, EXCHANGE_TIMEOUT_MS);
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      allowHalfOpen: true,
      socket: {
        // deno-lint-ignore no-explicit-any
        open(s: any) {
          socket = s;
          s.write(bytes);
        },
        // deno-lint-ignore no-explicit-any
        data(s: any, chunk: Uint8Array) {
          received += chunk.length;
          if (received >= bytes.length) s.end();
        },
        // The proxy's FIN after ours: it has closed both sides.
        // deno-lint-ignore no-explicit-any
        end(s: any) {
          s.end();
          finish(received === bytes.length);
        },
        close() {
          finish(received === bytes.length);
        },
        error() {
          finish(false);
        },
        connectError() {
          finish(false);
        },
      },
    }).catch(() => finish(false));
  });
}

function exchangeNode(port: number, bytes: Uint8Array): Promise<boolean> {
  return new Promise((resolve) => {
    let received = 0;
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(ok);
    };
    const socket = connect({ host: "127.0.0.1", port }, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      finish(false);
    }, EXCHANGE_TIMEOUT_MS);
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received >= bytes.length) socket.end();
    });
    socket.on("error", () => finish(false));
    // The proxy's FIN after ours: it has closed both sides.
    socket.on("close", () => finish(received === bytes.length));
  });
}

/** N connections, `CONCURRENCY` at a time; returns how many completed. */
async function batch(port: number, bytes: Uint8Array, count: number): Promise<number> {
  let next = 0;
  let ok = 0;
  const lane = async () => {
    while (next < count) {
      next++;
      if (await exchange(port, bytes)) ok++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, lane));
  return ok;
}

async function measure(
  proc: Proc,
  port: number,
  row: string,
  count: number,
): Promise<DetectSample> {
  const bytes = FIRST_BYTES[row]!;
  const noise = new NoiseMeter();
  const before = cpuSeconds(proc.pid);
  const beforeNs = cpuNanoseconds(proc.pid);
  const started = performance.now();
  const completed = await batch(port, bytes, count);
  const wallSeconds = (performance.now() - started) / 1000;
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  return {
    connections: completed,
    failed: count - completed,
    cpuSeconds: cpuSeconds(proc.pid) - before,
    cpuNs: cpuNanoseconds(proc.pid) - beforeNs,
    wallSeconds,
    otherCpuSeconds: noise.otherCpuSeconds(),
  };
}

/** Adds a slice's figures to a round's. */
function add(sum: DetectSample, slice: DetectSample): void {
  sum.connections += slice.connections;
  sum.failed += slice.failed;
  sum.cpuSeconds += slice.cpuSeconds;
  sum.cpuNs = (sum.cpuNs ?? 0) + (slice.cpuNs ?? 0);
  sum.wallSeconds += slice.wallSeconds;
  sum.otherCpuSeconds += slice.otherCpuSeconds;
}

const began = performance.now();
const temp = mkdtempSync(join(tmpdir(), "mb-detect-"));
let baseline: Baseline | undefined;
const cleanUp = () => {
  if (baseline) {
    const problem = removeBaseline(repo, baseline);
    if (problem) console.error(`detect: ${problem}`);
    baseline = undefined;
  }
  rmSync(temp, { recursive: true, force: true });
};
stopAllOnExit("detect", cleanUp);

const ticks = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
setTicksPerSecond(Number(ticks.stdout?.trim()));
// The harness is load too: keep it (and the client in it) off the proxy's core.
spawnSync("taskset", ["-a", "-pc", String(LOAD_CPU), String(process.pid)]);

const runtimes: Runtime[] = [];
const ALL_CONFIGS = ["plain", "sni-only", "four"];
if (ONLY.includes("bun")) {
  runtimes.push({ name: "Bun", command: bunCommand, cwd: repo, configs: ALL_CONFIGS });
}
if (ONLY.includes("deno")) {
  runtimes.push({ name: "Deno", command: denoCommand, cwd: repo, configs: ALL_CONFIGS });
}
if (ONLY.includes("executable") && compileIfStale()) {
  runtimes.push({
    name: "executable",
    command: (file) => [EXECUTABLE, "-c", file],
    cwd: repo,
    configs: ALL_CONFIGS,
  });
}
if (values.baseline !== "none") {
  try {
    baseline = addBaseline(repo, values.baseline, join(temp, "baseline"));
  } catch (error) {
    console.error(`detect: ${error instanceof Error ? error.message : error}`);
    process.exit(2);
  }
  console.error(`detect: baseline ${baseline.ref} (${baseline.commit}) in ${baseline.dir}`);
  const base = ["plain", "sni-only"];
  if (ONLY.includes("bun")) {
    runtimes.push({
      name: `Bun @${baseline.ref}`,
      command: bunCommand,
      cwd: baseline.dir,
      configs: base,
    });
  }
  if (ONLY.includes("deno")) {
    runtimes.push({
      name: `Deno @${baseline.ref}`,
      command: denoCommand,
      cwd: baseline.dir,
      configs: base,
    });
  }
}

/** A running proxy and the rows measured through it. */
interface Target {
  runtime: string;
  row: string;
  proc: Proc;
  port: number;
}

try {
  const echo = start("echo backend", BUN, [join(repo, "bench/soak_peers.ts"), "echo"], {
    cpu: LOAD_CPU,
    nofile: nofileLimit(),
    stdin: true, // it serves commands on stdin and exits when stdin ends
  });
  const echoPorts = await new Promise<number[]>((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => reject(new Error("echo backend did not start in 30 s")), 30_000);
    echo.child.stdout!.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      const match = text.match(/^echo (\d+) (\d+)$/m);
      if (match) {
        clearTimeout(timer);
        resolve([Number(match[1]), Number(match[2])]);
      }
    });
  });

  const targets: Target[] = [];
  for (const runtime of runtimes) {
    for (const config of runtime.configs) {
      const port = await freePort();
      const file = join(temp, `${runtime.name.replace(/\W+/g, "-")}-${config}.toml`);
      writeFileSync(
        file,
        CONFIGS[config]!.replaceAll("PORT", String(port)).replaceAll(
          "BACKEND",
          String(echoPorts[0]),
        ),
      );
      const [command, ...args] = runtime.command(file);
      const proc = start(`${runtime.name} ${config}`, command!, args, {
        cpu: PROXY_CPU,
        nofile: nofileLimit(),
        cwd: runtime.cwd,
      });
      await waitListening(port, proc, 60_000);
      for (const [row, of] of Object.entries(CONFIG_OF)) {
        if (of === config) targets.push({ runtime: runtime.name, row, proc, port });
      }
    }
    console.error(`detect: ${runtime.name} listening`);
  }

  // Run each baseline row right after the same row of the current code, so
  // that their slices pair up as tightly as four-tls and sni-only do.
  const runOrder: number[] = [];
  for (const [i, t] of targets.entries()) {
    if (t.runtime.includes(" @")) continue;
    runOrder.push(i);
    const twin = targets.findIndex((b) =>
      b.runtime.startsWith(`${t.runtime} @`) && b.row === t.row
    );
    if (twin >= 0) runOrder.push(twin);
  }

  // Warm up every path (JIT, pools) before the first measured round.
  for (const target of targets) {
    const ok = await batch(target.port, FIRST_BYTES[target.row]!, WARM_UP);
    if (ok < WARM_UP) {
      throw new Error(
        `${target.runtime} ${target.row}: ${
          WARM_UP - ok
        } of ${WARM_UP} warm-up connections failed; ` +
          target.proc.describeExit(),
      );
    }
  }

  const series: DetectSeries[] = targets.map((t) => ({
    runtime: t.runtime,
    row: t.row,
    samples: [],
    slicesUs: [],
  }));
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round, so that no row always follows the same one.
    const shift = Math.round(round * runOrder.length / ROUNDS);
    const order = runOrder.map((_, k) => runOrder[(k + shift) % runOrder.length]!);
    const sums = targets.map(() => ({
      connections: 0,
      failed: 0,
      cpuSeconds: 0,
      wallSeconds: 0,
      otherCpuSeconds: 0,
    }));
    // A round is slices of every row in turn rather than each row's
    // connections at once: the shared machine's slow phases last seconds,
    // and this way each row gets its share of them.
    for (let done = 0; done < CONNECTIONS; done += SLICE) {
      const count = Math.min(SLICE, CONNECTIONS - done);
      for (const i of order) {
        const slice = await measure(targets[i]!.proc, targets[i]!.port, targets[i]!.row, count);
        add(sums[i]!, slice);
        series[i]!.slicesUs!.push(Math.round(slice.cpuNs! / 1000 / slice.connections * 10) / 10);
      }
    }
    sums.forEach((sum, i) => series[i]!.samples.push(sum));
    console.error(`detect: round ${round + 1} of ${ROUNDS} done`);
  }
  await stopAll();

  const shares = series.flatMap((s) =>
    s.samples.map((x) => x.otherCpuSeconds / (x.wallSeconds + SETTLE_MS / 1000))
  );
  const date = new Date().toISOString().slice(0, 10);
  const about: DetectAbout = {
    date,
    cpu: cpuModel(),
    commit: git(["rev-parse", "--short", "HEAD"]) +
      (git(["status", "--porcelain", "--", "src"]) ? " with uncommitted changes in src/" : ""),
    ...(baseline ? { baseline: { ref: baseline.ref, commit: baseline.commit } } : {}),
    connections: CONNECTIONS,
    rounds: ROUNDS,
    slice: SLICE,
    concurrency: CONCURRENCY,
    firstBytes: DESCRIBED,
    configs: Object.fromEntries(
      Object.entries(CONFIGS).map(([name, text]) => [name, text.replace(/\n{3,}/g, "\n\n")]),
    ),
    noise: { min: Math.min(...shares), median: median(shares), max: Math.max(...shares) },
    seconds: (performance.now() - began) / 1000,
  };
  const rows = detectRows(series);
  const page = renderDetect(rows, about, series);
  const name = join(
    repo,
    `bench/results/${date}-detect${values.suffix ? `-${values.suffix}` : ""}`,
  );
  writeFileSync(`${name}.md`, page);
  writeFileSync(`${name}.json`, JSON.stringify({ ...about, series }, null, 2) + "\n");
  console.log(page);
  console.log(`written: ${name}.md`);
} catch (error) {
  console.error(`detect: ${error instanceof Error ? error.message : error}`);
  process.exitCode = 1;
} finally {
  await stopAll();
  cleanUp();
}
