/**
 * The hooks bench (issue 23): the proxy's CPU time per new connection with
 * a trivial `select` hook (returns undefined: the algorithm chooses) and a
 * trivial `admit` hook (returns true), against no hook, in one run. Each
 * row is its own embedded balancer (bench/hooks_proxy.ts, on Bun), started
 * once and pinned to core 0; the echo backend, the client and this harness
 * run on core 1. Each connection connects, sends a byte, reads its echo
 * and closes, 32 at a time. A round runs every row's connections in slices
 * of 500 taking turns (rotated each round), so that the shared machine's
 * slow phases fall on every row alike; the median round is reported.
 * Writes bench/results/DATE-hooks.{md,json}.
 *
 * Usage: bun bench/hooks.ts [--connections N] [--rounds N]   (npm run bench:hooks)
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LOAD_CPU } from "./backends.ts";
import { PROXY_CPU } from "./contenders.ts";
import { median } from "./idle_report.ts";
import { freePort, waitListening } from "./ports.ts";
import { cpuNanoseconds } from "./proc_stats.ts";
import { type Proc, start, stopAll, stopAllOnExit } from "./processes.ts";

const { values } = parseArgs({
  options: {
    connections: { type: "string", default: "4000" },
    rounds: { type: "string", default: "5" },
  },
});
const CONNECTIONS = Number(values.connections);
const ROUNDS = Number(values.rounds);
const SLICE = 500;
const CONCURRENCY = 32;
const MODES = ["none", "select", "admit"] as const;
type Mode = typeof MODES[number];

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.chdir(root);
spawnSync("taskset", ["-pc", String(LOAD_CPU), String(process.pid)]);
stopAllOnExit("hooks bench", () => {});

function cpuModel(): string {
  const lscpu = spawnSync("lscpu", [], { encoding: "utf8", timeout: 10_000 });
  const model = lscpu.stdout?.match(/^Model name:\s*(.*)$/m)?.[1]?.trim();
  const cpus = lscpu.stdout?.match(/^CPU\(s\):\s*(\d+)$/m)?.[1];
  return `${model ?? "unknown"}${cpus ? `, ${cpus} CPUs` : ""}`;
}

/** One connection: connect, send a byte, read its echo, close. */
function once(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    let ok = false;
    socket.on("connect", () => socket.write("x"));
    socket.on("data", () => {
      ok = true;
      socket.end();
    });
    socket.on("error", () => {});
    socket.on("close", () => resolve(ok));
    socket.setTimeout(5000, () => socket.destroy());
  });
}

/** `count` connections, CONCURRENCY at a time; how many failed. */
async function batch(port: number, count: number): Promise<number> {
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next++ < count) if (!(await once(port))) failed++;
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return failed;
}

const echo = createServer((socket) => {
  socket.on("data", (chunk) => socket.write(chunk));
  socket.on("end", () => socket.end());
  socket.on("error", () => {});
});
const backendPort = await freePort();
await new Promise<void>((resolve) => echo.listen(backendPort, "127.0.0.1", resolve));

const proxies = new Map<Mode, { proc: Proc; port: number }>();
for (const mode of MODES) {
  const port = await freePort();
  const proc = start(
    `proxy (${mode})`,
    process.execPath,
    ["bench/hooks_proxy.ts", mode, String(port), String(backendPort)],
    { cpu: PROXY_CPU },
  );
  await waitListening(port, proc);
  proxies.set(mode, { proc, port });
  await batch(port, SLICE); // warm up
}

const began = Date.now();
const perRound = new Map<Mode, number[]>(MODES.map((mode) => [mode, []]));
const failures = new Map<Mode, number>(MODES.map((mode) => [mode, 0]));
for (let round = 0; round < ROUNDS; round++) {
  const order = MODES.map((_, i) => MODES[(i + round) % MODES.length]!);
  const ns = new Map<Mode, number>(MODES.map((mode) => [mode, 0]));
  for (let done = 0; done < CONNECTIONS; done += SLICE) {
    const count = Math.min(SLICE, CONNECTIONS - done);
    for (const mode of order) {
      const { proc, port } = proxies.get(mode)!;
      const before = cpuNanoseconds(proc.pid);
      failures.set(mode, failures.get(mode)! + await batch(port, count));
      ns.set(mode, ns.get(mode)! + cpuNanoseconds(proc.pid) - before);
    }
  }
  for (const mode of MODES) perRound.get(mode)!.push(ns.get(mode)! / CONNECTIONS / 1000);
}
const tookS = Math.round((Date.now() - began) / 1000);
await stopAll();
echo.close();

const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout
  .trim();
const cpu = cpuModel();
const date = new Date().toISOString().slice(0, 10);
const none = median(perRound.get("none")!);
const rows = MODES.map((mode) => {
  const rounds = perRound.get(mode)!;
  const us = median(rounds);
  return {
    mode,
    us,
    min: Math.min(...rounds),
    max: Math.max(...rounds),
    extra: us - none,
    failed: failures.get(mode)!,
  };
});
const label: Record<Mode, string> = {
  none: "no hook",
  select: "select (returns undefined)",
  admit: "admit (returns true)",
};
const f = (n: number) => n.toFixed(1);
const md = [
  `# Hooks: ${date}`,
  "",
  `CPU: ${cpu}. Commit ${commit}. Bun ${process.versions.bun ?? "?"}.`,
  `Each row: an embedded balancer (bench/hooks_proxy.ts) with that hook; ${
    CONNECTIONS.toLocaleString("en")
  } new connections per round (${CONCURRENCY} at a time; connect, send a byte, read its echo, close), in slices of ${SLICE} taking turns with the other rows, ${ROUNDS} rounds, median. CPU is the proxy's on-CPU time from /proc/PID/task/*/schedstat; the proxy is pinned to core ${PROXY_CPU}, the client, the echo backend and this harness to core ${LOAD_CPU}. The run took ${tookS} s.`,
  "",
  "| row | CPU µs per connection | rounds (min–max) | vs no hook | failed |",
  "| --- | ---: | ---: | ---: | ---: |",
  ...rows.map((r) =>
    `| ${label[r.mode]} | ${f(r.us)} | ${f(r.min)}–${f(r.max)} | ${r.extra >= 0 ? "+" : ""}${
      f(r.extra)
    } µs | ${r.failed} |`
  ),
  "",
].join("\n");
const base = `bench/results/${date}-hooks`;
writeFileSync(`${base}.md`, md);
writeFileSync(
  `${base}.json`,
  JSON.stringify(
    {
      date,
      commit,
      cpu,
      connections: CONNECTIONS,
      rounds: ROUNDS,
      perRound: Object.fromEntries(perRound),
      rows,
    },
    null,
    2,
  ) + "\n",
);
console.log(md);
process.exit(0);
