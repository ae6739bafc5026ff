/**
 * The idle bench: how much memory mini-balancer holds, and how long it takes
 * to listen, before its first connection, beside the minimal Bun proxy
 * (bench/minimal_proxy.ts). Runs each target several times (median) under
 * Bun, Deno and the compiled executable, with the minimal config and with
 * one that uses every feature (admin, discovery, TLS, SNI routing, PROXY
 * protocol), and with `workers = 2` and `4` (the process tree summed).
 * Writes bench/results/DATE-idle.{md,json}.
 *
 * Usage: bun bench/idle.ts [--runs N] [--label NAME]  (npm run bench:idle)
 *
 * @module
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { makeCertificate } from "./certificate.ts";
import { idleRows, type IdleRuns, renderIdle } from "./idle_report.ts";
import { freePort, listeners } from "./ports.ts";
import { rssBytes } from "./proc_stats.ts";

const { values } = parseArgs({
  options: { runs: { type: "string", default: "5" }, label: { type: "string", default: "" } },
});
const RUNS = Number(values.runs);
const SETTLE_MS = 1000;
const START_DEADLINE_MS = 30_000;
const BUN = process.execPath;
const DENO = "./node_modules/.bin/deno";
const EXECUTABLE = "dist/mini-balancer";
const REFERENCE = "bun-minimal";

const dir = mkdtempSync(join(tmpdir(), "mb-idle-"));
const backend = await freePort();
const certificate = await makeCertificate(dir, "ec-p256");

function minimalConfig(port: number, workers = 1): string {
  return [
    workers > 1 ? `workers = ${workers}` : "",
    "[frontend]",
    `bind_on = "127.0.0.1:${port}"`,
    "[[frontend.backend]]",
    `forward_to = "127.0.0.1:${backend}"`,
    "[[frontend.backend]]",
    `forward_to = "127.0.0.1:${backend + 1}"`,
  ].join("\n") + "\n";
}

/** Every feature a config can turn on, each once: admin, discovery, TLS, SNI, PROXY. */
function fullConfig(port: number, tlsPort: number): string {
  return [
    "[admin]",
    `bind_on = "127.0.0.1:0"`,
    "[[frontends]]",
    `name = "edge"`,
    `bind_on = "127.0.0.1:${port}"`,
    "accept_proxy = true",
    `trusted = ["127.0.0.1/32"]`,
    `sni = ["api.example.com"]`,
    "[[frontends.backend]]",
    `forward_to = "localhost:${backend}"`,
    `send_proxy = "v2"`,
    "[[frontends]]",
    `name = "other"`,
    `bind_on = "127.0.0.1:${port}"`,
    "accept_proxy = true",
    `trusted = ["127.0.0.1/32"]`,
    "[[frontends.backend]]",
    `forward_to = "127.0.0.1:${backend}"`,
    "[[frontends]]",
    `name = "tls"`,
    `bind_on = "127.0.0.1:${tlsPort}"`,
    "[[frontends.tls]]",
    `cert = "${certificate.cert}"`,
    `key = "${certificate.key}"`,
    "[[frontends.backend]]",
    `forward_to = "127.0.0.1:${backend}"`,
  ].join("\n") + "\n";
}

interface Target {
  name: string;
  config: string;
  /** The command for a listening port and a config file. */
  command: (port: number, file: string) => string[];
  /** The config text for a port, when the target reads one. */
  file?: (port: number, second: number) => string;
  /** Listening sockets to wait for on the port (one per worker). */
  sockets: number;
}

const bun = (_port: number, file: string) => [BUN, "run", "src/main.ts", "-c", file];
const deno = (_port: number, file: string) => [
  DENO,
  "run",
  "--no-prompt",
  "--allow-net",
  "--allow-read",
  "--allow-run=./node_modules/deno/deno",
  "--unstable-net",
  "src/main_deno.ts",
  "-c",
  file,
];
const executable = (_port: number, file: string) => [EXECUTABLE, "-c", file];

const TARGETS: Target[] = [
  {
    name: REFERENCE,
    config: "-",
    command: (port) => [BUN, "bench/minimal_proxy.ts", String(port), String(backend)],
    sockets: 1,
  },
  {
    name: "mini-balancer (Bun)",
    config: "minimal",
    command: bun,
    file: (port: number) => minimalConfig(port),
    sockets: 1,
  },
  {
    name: "mini-balancer (Deno)",
    config: "minimal",
    command: deno,
    file: (port: number) => minimalConfig(port),
    sockets: 1,
  },
  ...(existsSync(EXECUTABLE)
    ? [{
      name: "mini-balancer (executable)",
      config: "minimal",
      command: executable,
      file: (port: number) => minimalConfig(port),
      sockets: 1,
    }]
    : []),
  ...[2, 4].map((workers) => ({
    name: "mini-balancer (Bun)",
    config: `workers = ${workers}`,
    command: bun,
    file: (port: number) => minimalConfig(port, workers),
    sockets: workers,
  })),
  {
    name: "mini-balancer (Bun)",
    config: "all features",
    command: bun,
    file: fullConfig,
    sockets: 1,
  },
  {
    name: "mini-balancer (Deno)",
    config: "all features",
    command: deno,
    file: fullConfig,
    sockets: 1,
  },
  ...(existsSync(EXECUTABLE)
    ? [{
      name: "mini-balancer (executable)",
      config: "all features",
      command: executable,
      file: fullConfig,
      sockets: 1,
    }]
    : []),
];

/** Starts a target once; returns its idle RSS and start time, and stops it. */
async function runOnce(target: Target): Promise<{ rss: number; startMs: number }> {
  const port = await freePort();
  const second = await freePort(); // the TLS frontend's in the full config
  const file = join(dir, "mini-balancer.toml");
  if (target.file) writeFileSync(file, target.file(port, second));
  const [command, ...args] = target.command(port, file);
  const started = performance.now();
  const child = spawn(command!, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  let exited = false;
  child.on("exit", () => (exited = true));
  try {
    const deadline = Date.now() + START_DEADLINE_MS;
    while (listeners(port) < target.sockets) {
      if (exited) throw new Error(`${target.name} exited before listening: ${stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`${target.name} not listening on ${port}`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const startMs = performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    return { rss: rssBytes(child.pid!), startMs };
  } finally {
    const gone = new Promise((resolve) => exited ? resolve(null) : child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await gone;
    clearTimeout(timer);
  }
}

const runs: IdleRuns[] = [];
try {
  for (const target of TARGETS) {
    const run: IdleRuns = { name: target.name, config: target.config, rssBytes: [], startMs: [] };
    for (let i = 0; i < RUNS; i++) {
      const { rss, startMs } = await runOnce(target);
      run.rssBytes.push(rss);
      run.startMs.push(startMs);
    }
    console.error(`${target.name} ${target.config}: done`);
    runs.push(run);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown";
const date = new Date().toISOString().slice(0, 10);
const rows = idleRows(runs, REFERENCE);
const page = renderIdle(rows, { cpu, date, runs: RUNS, reference: REFERENCE });
const name = `bench/results/${date}-idle${values.label ? `-${values.label}` : ""}`;
writeFileSync(`${name}.md`, page);
writeFileSync(`${name}.json`, JSON.stringify({ cpu, date, runs }, null, 2) + "\n");
console.log(page);
console.log(`written: ${name}.md`);
