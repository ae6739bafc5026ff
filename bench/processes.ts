/**
 * Every process the benchmark starts: pinned to a core, with a raised fd
 * limit, in its own process group, and registered so that one call (or
 * Ctrl-C) stops them all.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

/** How to start a process. */
export interface StartOptions {
  /**
   * The core, or cores, to pin it to with `taskset -c`; when unset it
   * inherits the caller's affinity (the harness pins itself to the load core).
   */
  cpu?: number | number[];
  /** Soft and hard `RLIMIT_NOFILE`, set with `prlimit`; inherited when unset. */
  nofile?: number;
  /** Working directory. */
  cwd?: string;
  /** Whether to open a pipe to its standard input. @default false */
  stdin?: boolean;
}

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: string | null;
}

const TAIL_BYTES = 4096;
const running = new Set<Proc>();

/** A started process: its pid, the tail of its output and how it ended. */
export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  exit: Exit | undefined;
  #tail = "";

  constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    if (child.pid === undefined) throw new Error(`cannot start ${name}`);
    this.pid = child.pid;
    const keep = (chunk: Buffer) => {
      this.#tail = (this.#tail + chunk.toString()).slice(-TAIL_BYTES);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this.exit = { code, signal };
        running.delete(this);
        resolve(this.exit);
      });
    });
  }

  /** The last few KiB the process printed, for error messages. */
  get output(): string {
    return this.#tail.trim();
  }

  /**
   * Calls `listener` with each complete line the process prints, on
   * standard output and standard error (each split on its own).
   */
  onLine(listener: (line: string) => void): void {
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let partial = "";
      stream?.on("data", (chunk: Buffer) => {
        const lines = (partial + chunk.toString()).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) listener(line);
      });
    }
  }

  /** Whether it is still running. */
  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Describes how it ended, with its last output, or that it still runs. */
  describeExit(): string {
    if (this.exit === undefined) return `${this.name} is running`;
    const how = this.exit.signal ?? `code ${this.exit.code}`;
    const tail = this.output.split("\n").slice(-3).join(" | ");
    return `${this.name} exited with ${how}${tail ? `: ${tail}` : ""}`;
  }

  /**
   * Stops the whole process group: SIGTERM, then SIGKILL after `graceMs`.
   *
   * @returns how it ended
   */
  async stop(graceMs = 3000): Promise<Exit> {
    if (this.exit !== undefined) return this.exit;
    signalGroup(this.pid, "SIGTERM");
    const timer = setTimeout(() => signalGroup(this.pid, "SIGKILL"), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    // A parent (nginx's master) may leave children behind in its group.
    signalGroup(this.pid, "SIGKILL");
    return exit;
  }
}

function signalGroup(pid: number, signal: "SIGTERM" | "SIGKILL"): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

function wrap(command: string, args: string[], options: StartOptions): string[] {
  let argv = [command, ...args];
  if (options.cpu !== undefined) argv = ["taskset", "-c", [options.cpu].flat().join(","), ...argv];
  if (options.nofile !== undefined) {
    argv = ["prlimit", `--nofile=${options.nofile}:${options.nofile}`, "--", ...argv];
  }
  return argv;
}

/**
 * Starts a long-running process in its own process group and registers it
 * for {@linkcode stopAll}. `prlimit` and `taskset` exec the command, so the
 * pid is the command's own.
 *
 * @param name a label for messages
 * @returns the started process
 */
export function start(
  name: string,
  command: string,
  args: string[],
  options: StartOptions = {},
): Proc {
  const [file, ...rest] = wrap(command, args, options);
  const child = spawn(file!, rest, {
    cwd: options.cwd,
    detached: true,
    stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"],
  });
  // Without a listener, a failed spawn (ENOENT) would be an uncaught error.
  child.on("error", () => {});
  const proc = new Proc(name, child);
  running.add(proc);
  return proc;
}

/** What a finished command printed. */
export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs a command to completion, killing it after `timeoutMs`.
 *
 * @returns its exit code and output
 */
export async function run(
  command: string,
  args: string[],
  options: StartOptions & { timeoutMs: number },
): Promise<RunResult> {
  const [file, ...rest] = wrap(command, args, options);
  const child = spawn(file!, rest, {
    cwd: options.cwd,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const spawnError = new Promise<Error>((resolve) => child.on("error", resolve));
  if (child.pid === undefined) {
    return { code: null, stdout: "", stderr: (await spawnError).message, timedOut: false };
  }
  const proc = new Proc(command, child);
  running.add(proc);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void proc.stop(1000);
  }, options.timeoutMs);
  const outcome = await proc.exited;
  clearTimeout(timer);
  return { code: outcome.code, stdout, stderr, timedOut };
}

/** Stops every process still running, in parallel. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((proc) => proc.stop(2000)));
}

/** Kills every process still running at once; safe in an `exit` handler. */
export function killAllNow(): void {
  for (const proc of running) signalGroup(proc.pid, "SIGKILL");
}

/**
 * Stops every process started here on Ctrl-C, SIGTERM and SIGHUP, then runs
 * `cleanUp` and exits with 130; on any other way out it kills them at once
 * and runs `cleanUp` too.
 *
 * @param label the prefix of the message printed on a signal, e.g. "bench"
 * @param cleanUp removes what the run made once its processes are gone;
 * synchronous (it also runs in the `exit` handler) and safe to call twice
 */
export function stopAllOnExit(label: string, cleanUp: () => void): void {
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`\n${label}: ${signal}: stopping every process it started`);
    void stopAll().finally(() => {
      cleanUp();
      process.exit(130);
    });
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => onSignal(signal));
  }
  process.on("exit", () => {
    killAllNow();
    cleanUp();
  });
}
