/**
 * Running the real program as a user does: a config's text, the command line
 * for each kind (Bun, Deno, the executable, the Node bundle), starting,
 * signalling and waiting for it.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { ROOT, tempDir } from "./env.ts";
import { eventually } from "./wait.ts";

/**
 * A config text for one frontend on a free port in front of `backends`.
 *
 * @param backends their `forward_to` addresses
 * @param extra lines for the frontend's table
 * @param backendExtra lines for every backend's table
 */
export function configText(backends: string[], extra = "", backendExtra = ""): string {
  return `[frontend]\nbind_on = "127.0.0.1:0"\n${extra}\n` +
    backends.map((b) => `[[frontend.backend]]\nforward_to = "${b}"\n${backendExtra}\n`).join("\n");
}

/**
 * How to start the real program: the current runtime, the compiled
 * executable, or the Node bundle (`npm run build:node`) under `node`.
 */
export type ProgramKind = "bun" | "deno" | "executable" | "node";

/**
 * The command line that runs mini-balancer as `kind`.
 *
 * @param kind how to run it
 * @param denoFlags permissions beyond the deno task's (`--allow-write=…` for a Unix socket)
 */
export function programCommand(kind: ProgramKind, denoFlags: string[] = []): string[] {
  switch (kind) {
    case "bun":
      return [process.execPath, "run", join(ROOT, "src/main.ts")];
    case "deno":
      return [
        process.execPath,
        "run",
        "--no-prompt",
        "--allow-net",
        "--allow-read",
        ...denoFlags,
        join(ROOT, "src/main_deno.ts"),
      ];
    case "executable":
      return [join(ROOT, "dist/mini-balancer")];
    case "node":
      return ["node", join(ROOT, "dist/mini-balancer.mjs")];
  }
}

/** A running mini-balancer process. */
export interface Program {
  child: ChildProcess;
  /** Standard error so far (the logs). */
  stderr(): string;
  /** The frontend's port, read from the "listening for connections" line. */
  port: number;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** The config file it runs on (rewrite it and send SIGHUP to reload). */
  file: string;
}

/**
 * Sends a signal to a child. Deno's `ChildProcess.kill` records the signal
 * as the cause of death even when the child catches it and exits 0
 * (denoland/deno#32081 made exitCode and signalCode exclusive), so signal by
 * pid, which leaves the real exit status alone.
 */
export function signalProgram(child: ChildProcess, signal: NodeJS.Signals): void {
  process.kill(child.pid!, signal);
}

/** Runs the program to completion and returns its exit code and output. */
export function runProgram(
  kind: ProgramKind,
  args: string[],
  cwd = ROOT,
  denoFlags: string[] = [],
) {
  const [command, ...rest] = programCommand(kind, denoFlags);
  const child = spawn(command!, [...rest, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk) => (stdout += chunk));
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Starts the program on a config and waits until it listens. It runs with
 * -v at least, since the "listening for connections" line gives the port.
 */
export async function startProgram(
  kind: ProgramKind,
  config: string,
  args: string[] = [],
  denoFlags: string[] = [],
): Promise<Program & { cleanup(): Promise<void> }> {
  const dir = await tempDir();
  const file = join(dir.path, "mini-balancer.toml");
  await writeFile(file, config);
  const [command, ...rest] = programCommand(kind, denoFlags);
  const child = spawn(command!, [...rest, "-c", file, "-v", ...args], {
    cwd: dir.path,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  let exitCode: number | null | undefined;
  exited.then((code) => (exitCode = code));
  const match = await eventually(
    () => /listening for connections/.test(stderr) || exitCode !== undefined,
    "the balancer to listen",
    20_000,
  ).then(() => /local_address=[^ ]*:(\d+)\}/.exec(stderr), () => null);
  if (match === null) {
    // Leave nothing running behind a failed start.
    if (exitCode === undefined) signalProgram(child, "SIGKILL");
    await exited;
    await dir.cleanup();
    throw new Error(`the balancer did not start:\n${stderr}`);
  }
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (exitCode === undefined) signalProgram(child, signal);
    return await exited;
  };
  return {
    child,
    stderr: () => stderr,
    file,
    port: Number(match[1]),
    exited,
    stop,
    async cleanup() {
      if (exitCode === undefined) signalProgram(child, "SIGKILL");
      await exited;
      await dir.cleanup();
    },
  };
}
