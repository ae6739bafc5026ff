/**
 * {@linkcode SpawnProcess} over `node:child_process`, for Bun (and Node).
 * A child runs in a process group of its own with a pipe as its standard
 * input: see {@linkcode SpawnProcess}.
 * Deno's own is in deno/workers.ts: its `node:child_process` asks for environment
 * permissions that the balancer otherwise never needs.
 *
 * @module
 */
import { spawn } from "node:child_process";
import type { ChildProcessHandle, SpawnProcess } from "./types.ts";
import { lineReader } from "./_lines.ts";

/** Starts a process with `node:child_process`. */
export const spawnProcess: SpawnProcess = (command): ChildProcessHandle => {
  const [file, ...args] = command;
  // Its own process group, so that a terminal's Ctrl-C reaches the
  // supervisor alone; its stdin is a pipe whose end tells it we are gone,
  // its stdout a pipe for its reports.
  const child = spawn(file!, args, { stdio: ["pipe", "pipe", "inherit"], detached: true });
  const lines = lineReader();
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => lines.read(chunk));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal }));
    // A command that cannot start ends as an exit with no code.
    child.on("error", () => resolve({ code: null, signal: null }));
  });
  return {
    pid: child.pid ?? -1,
    exited,
    kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    send(line) {
      child.stdin?.write(`${line}\n`);
    },
    onLine: lines.onLine,
  };
};
