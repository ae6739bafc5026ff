/**
 * What Deno needs for `workers`: starting a process
 * ({@linkcode denoSpawn}) and the flags the workers take
 * ({@linkcode denoWorkersUnavailable}).
 *
 * @module
 */
import { lineReader } from "../_lines.ts";
import type { ChildProcessHandle, SpawnProcess } from "../types.ts";

/**
 * Starts a process with `Deno.Command` (it needs `--allow-run` for the
 * command; `node:child_process` would ask for environment access too).
 */
export const denoSpawn: SpawnProcess = (command): ChildProcessHandle => {
  const [file, ...args] = command;
  const child = new Deno.Command(file!, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
    detached: true,
  }).spawn();
  let done = false;
  const stdin = child.stdin.getWriter();
  const lines = lineReader();
  child.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => lines.read(chunk) }),
  ).catch(() => {});
  const exited = child.status.then(({ code, signal }) => {
    done = true;
    return { code: signal === null ? code : null, signal };
  });
  return {
    pid: child.pid,
    exited,
    kill(signal) {
      if (done) return;
      try {
        child.kill(signal);
      } catch {
        // It exited meanwhile.
      }
    },
    send(line) {
      if (!done) stdin.write(new TextEncoder().encode(`${line}\n`)).catch(() => {});
    },
    onLine: lines.onLine,
  };
};

/**
 * Says what this Deno process lacks to run `workers`, or undefined when it
 * has it all: `--allow-run` for Deno itself (to start the workers) and
 * `--unstable-net` (their SO_REUSEPORT). Asked before any worker starts:
 * without the first, every start fails and is retried forever; without the
 * second, Deno ends the process at the first `reusePort` with exit code 70.
 *
 * @returns what to do, naming the missing flags ("run deno with --unstable-net …")
 */
export function denoWorkersUnavailable(): string | undefined {
  const missing: string[] = [];
  const run = Deno.permissions.querySync({ name: "run", command: Deno.execPath() });
  if (run.state !== "granted") {
    missing.push(`--allow-run=${Deno.execPath()} (to start the workers)`);
  }
  // Deno 2.9 has no query for an unstable feature; `Deno.listenDatagram`
  // exists exactly when "net" is on (`--unstable-net`, `--unstable`, or
  // `"unstable": ["net"]` in deno.json), as `reusePort` needs.
  if (!("listenDatagram" in Deno)) missing.push("--unstable-net (for SO_REUSEPORT)");
  return missing.length === 0 ? undefined : `run deno with ${missing.join(" and ")}`;
}
