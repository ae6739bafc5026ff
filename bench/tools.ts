/**
 * The external programs the benchmark drives: finding them, installing the
 * missing Debian packages as root (bench/install-tools.sh), building the
 * compiled executable, and their versions for the report.
 *
 * @module
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { run } from "./processes.ts";

/** Paths the benchmark uses, all absolute. */
export interface Tools {
  repo: string;
  bun: string;
  deno: string;
  compiled: string;
  /** Node, or "node" for the PATH's when `command -v` finds none. */
  node: string;
  /** dist/mini-balancer.mjs, the bundle of `npm run build:node`. */
  nodeBundle: string;
  nginxStreamModule: string | undefined;
}

const COMMANDS = ["haproxy", "nginx", "wrk", "iperf3", "taskset", "prlimit"];

async function missingCommands(): Promise<string[]> {
  const missing: string[] = [];
  for (const command of COMMANDS) {
    const found = await run("sh", ["-c", `command -v ${command}`], { timeoutMs: 5000 });
    if (found.code !== 0) missing.push(command);
  }
  return missing;
}

/** The newest modification time of any file under `dir`, in ms. */
function newestUnder(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { recursive: true, encoding: "utf8" })) {
    newest = Math.max(newest, statSync(join(dir, entry)).mtimeMs);
  }
  return newest;
}

/**
 * Builds dist/mini-balancer.mjs as `npm run build:node` does, when it is
 * missing or older than some file in src/: a bundle is cheap to make, and a
 * stale one would measure old code under the current commit's name.
 */
async function buildNodeBundle(repo: string, bun: string): Promise<string> {
  const bundle = join(repo, "dist/mini-balancer.mjs");
  if (existsSync(bundle) && statSync(bundle).mtimeMs >= newestUnder(join(repo, "src"))) {
    return bundle;
  }
  console.error("bench: building dist/mini-balancer.mjs with bun build --target=node");
  const built = await run(
    bun,
    ["build", "--target=node", "src/main_node.ts", "--outfile", "dist/mini-balancer.mjs"],
    { cwd: repo, timeoutMs: 300_000 },
  );
  if (built.code !== 0) console.error(`bench: bun build failed: ${built.stderr.trim()}`);
  return bundle;
}

/**
 * Finds every tool, running bench/install-tools.sh when some are missing
 * (it installs them as root and otherwise prints the apt-get command), and
 * builds dist/mini-balancer with `npm run compile` when it is missing and
 * dist/mini-balancer.mjs when it is missing or stale.
 *
 * @param repo the repository root
 * @throws Error naming what is missing and how to install it
 */
export async function findTools(repo: string): Promise<Tools> {
  const streamModule = "/usr/lib/nginx/modules/ngx_stream_module.so";
  if ((await missingCommands()).length > 0 || !existsSync(streamModule)) {
    const install = await run("bash", [join(repo, "bench/install-tools.sh")], {
      timeoutMs: 300_000,
    });
    process.stderr.write(install.stderr);
    const still = await missingCommands();
    if (still.length > 0) {
      throw new Error(
        `missing ${still.join(", ")}: run 'sudo bash bench/install-tools.sh' ` +
          "(apt-get install haproxy nginx libnginx-mod-stream wrk iperf3)",
      );
    }
  }
  const bun = join(repo, "node_modules/.bin/bun");
  const deno = join(repo, "node_modules/.bin/deno");
  for (const binary of [bun, deno]) {
    if (!existsSync(binary)) throw new Error(`missing ${binary}: run 'npm install'`);
  }
  const compiled = join(repo, "dist/mini-balancer");
  if (!existsSync(compiled)) {
    console.error("bench: building dist/mini-balancer with npm run compile");
    const built = await run("npm", ["run", "compile"], { cwd: repo, timeoutMs: 300_000 });
    if (built.code !== 0) console.error(`bench: npm run compile failed: ${built.stderr.trim()}`);
  }
  const node = await run("sh", ["-c", "command -v node"], { timeoutMs: 5000 });
  return {
    repo,
    bun,
    deno,
    compiled,
    node: node.code === 0 ? node.stdout.trim() : "node",
    nodeBundle: await buildNodeBundle(repo, bun),
    nginxStreamModule: existsSync(streamModule) ? streamModule : undefined,
  };
}

/** The commit measured, and whether src/ differs from it. */
async function describeCommit(repo: string): Promise<string> {
  const head = await run("git", ["-C", repo, "rev-parse", "--short", "HEAD"], {
    timeoutMs: 10_000,
  });
  if (head.code !== 0) return "unknown (not a git checkout)";
  const dirty = await run("git", ["-C", repo, "status", "--porcelain", "--", "src"], {
    timeoutMs: 10_000,
  });
  return `${head.stdout.trim()}${dirty.stdout.trim() ? " with uncommitted changes in src/" : ""}`;
}

async function firstLine(command: string, args: string[]): Promise<string> {
  const result = await run(command, args, { timeoutMs: 10_000 });
  const text = `${result.stdout}\n${result.stderr}`.trim();
  return text.split("\n")[0]?.trim() ?? "?";
}

/**
 * The versions and machine facts printed with the results.
 *
 * @returns label to version line
 */
export async function describeSetup(tools: Tools): Promise<Record<string, string>> {
  return {
    commit: await describeCommit(tools.repo),
    bun: await firstLine(tools.bun, ["--version"]),
    deno: await firstLine(tools.deno, ["--version"]),
    node: await firstLine(tools.node, ["--version"]),
    haproxy: await firstLine("haproxy", ["-v"]),
    nginx: await firstLine("nginx", ["-v"]),
    wrk: (await firstLine("wrk", ["-v"])).replace(/ Copyright.*/, ""),
    iperf3: await firstLine("iperf3", ["--version"]),
    kernel: await firstLine("uname", ["-sr"]),
    cpu: await firstLine("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]),
    cores: await firstLine("nproc", ["--all"]),
  };
}
