/**
 * What the end-to-end tests share: the kinds of program to run on this
 * runtime, building the executable and the Node bundle when the sources are
 * newer, test data, the echo backends each kind's suite starts, and small
 * process probes (socat, ps, /proc).
 */
import { execFile } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before } from "node:test";
import { DNSMASQ } from "../_helpers/dns.ts";
import { echoServer, net, type ProgramKind, ROOT } from "../_helpers/index.ts";

/** The kinds of program these tests start on this runtime. */
export const kinds: ProgramKind[] = net.runtime === "bun"
  ? ["bun", "executable", "node"]
  : ["deno"];
/** A file under tests/testdata/. */
export const data = (name: string) => join(ROOT, "tests/testdata", name);

/** What the executable and the Node bundle are built from: a change to any of them calls for a new build. */
const BUILD_INPUTS = ["src", "package.json", "package-lock.json", "bunfig.toml"];

/** The built files, and the `bun build` arguments that make each, as its npm script does. */
export const BUILDS = {
  executable: {
    file: join(ROOT, "dist/mini-balancer"),
    args: ["--compile", "--minify", "src/main.ts"], // npm run compile
  },
  node: {
    file: join(ROOT, "dist/mini-balancer.mjs"),
    args: ["--target=node", "src/main_node.ts"], // npm run build:node
  },
};

/** The latest modification time of a file, or of any file under a folder. */
async function newestChange(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) return 0;
  if (!info.isDirectory()) return info.mtimeMs;
  const entries = await readdir(path);
  const times = await Promise.all(entries.map((entry) => newestChange(join(path, entry))));
  return Math.max(info.mtimeMs, ...times);
}

/** When `file` was built, or -1 when it is missing. */
export async function builtAt(file: string): Promise<number> {
  return (await stat(file).catch(() => undefined))?.mtimeMs ?? -1;
}

/** The newest change among the build's inputs. */
export async function sourcesChangedAt(): Promise<number> {
  const times = await Promise.all(BUILD_INPUTS.map((input) => newestChange(join(ROOT, input))));
  return Math.max(...times);
}

/**
 * Builds the executable or the Node bundle as its npm script does, unless it
 * is newer than every source: `bun test` alone then works on a fresh clone
 * and never tests a stale build.
 */
export async function build(kind: keyof typeof BUILDS): Promise<void> {
  const { file, args } = BUILDS[kind];
  if (await builtAt(file) >= await sourcesChangedAt()) return;
  await new Promise<void>((resolve, reject) => {
    execFile(
      process.execPath, // bun, running these tests
      ["build", ...args, "--outfile", file],
      { cwd: ROOT },
      (error, _stdout, stderr) => {
        if (error) reject(new Error(`cannot build ${file}: ${error.message} ${stderr}`));
        else resolve();
      },
    );
  });
}

/** Runs a shell command line (socat and friends); resolves to its output. */
export function socat(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("bash", ["-c", command], (error, stdout, stderr) => {
      if (error) reject(new Error(`${command}: ${error.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The resident memory of a process, in KiB, as ps reports it. */
export function rssKiB(pid: number): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile("ps", ["-o", "rss=", "-p", String(pid)], (error, stdout) => {
      if (error) reject(error);
      else resolve(Number(stdout.trim()));
    });
  });
}

/** VmHWM, read by a child process: Deno asks for --allow-all to read /proc itself. */
export function peakRssKiB(pid: number): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile("grep", ["VmHWM", `/proc/${pid}/status`], (error, stdout) => {
      if (error) reject(error);
      else resolve(Number(/(\d+)/.exec(stdout)?.[1]));
    });
  });
}

/** Why the DNS tests cannot run here, if they cannot. */
export const dnsSkip = DNSMASQ === undefined
  ? "dnsmasq is not installed (.ci/ensure-tools installs it)"
  : false;

/** Two echo backends (greeting `b1:` and `b2:`) for one kind's suite, closed after it. */
export function programBackends(): ReturnType<typeof echoServer>[] {
  const backends = [echoServer({ greeting: "b1:" }), echoServer({ greeting: "b2:" })];
  after(() => backends.forEach((backend) => backend.close()));
  return backends;
}

/**
 * Builds the program of this kind once before the tests that run it, when
 * it is a build (the executable, the Node bundle).
 *
 * @param kind the kind of program the enclosing `describe` runs
 */
export function buildBefore(kind: ProgramKind): void {
  if (kind === "executable" || kind === "node") {
    before(() => build(kind), { timeout: 120_000 });
  }
}
