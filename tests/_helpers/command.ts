/**
 * Running a real tool (ssh, psql, curl, ssh-keygen, initdb) to its end, with a
 * deadline, and stopping a long-running peer with one.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { userInfo } from "node:os";
import process from "node:process";

/** What a finished command printed, and how it ended. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  /** The exit code, or null when a signal ended it. */
  code: number | null;
}

/** Options of {@linkcode runCommand}. */
export interface CommandOptions {
  /**
   * Milliseconds before the command is killed and the promise rejects.
   *
   * @default 10_000
   */
  timeout?: number;
  /** Its working directory. */
  cwd?: string;
  /** Variables added to this process's environment. */
  env?: Record<string, string>;
}

/**
 * Runs `file` with `args` to its end, stdin closed.
 *
 * @param file the program's path or name on PATH
 * @param args its arguments
 * @param options deadline, working directory, environment
 * @returns its output and exit code (a non-zero exit does not reject)
 * @throws Error when it cannot start, or naming it when it outlives the deadline
 */
export function runCommand(
  file: string,
  args: string[],
  options: CommandOptions = {},
): Promise<CommandResult> {
  const timeout = options.timeout ?? 10_000;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ["ignore", "pipe", "pipe"],
      cwd: options.cwd,
      env: options.env === undefined ? process.env : { ...process.env, ...options.env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (chunk) => (stdout += chunk));
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${file} ${args.join(" ")} did not end within ${timeout} ms: ${stderr}`));
    }, timeout);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
  });
}

/**
 * Like {@linkcode runCommand}, but rejects when the exit code is not 0.
 *
 * @throws Error naming the command, its exit code and its stderr
 */
export async function runChecked(
  file: string,
  args: string[],
  options: CommandOptions = {},
): Promise<CommandResult> {
  const result = await runCommand(file, args, options);
  if (result.code !== 0) {
    throw new Error(`${file} ${args.join(" ")} exited with ${result.code}: ${result.stderr}`);
  }
  return result;
}

/**
 * Stops a long-running child: `signal`, then SIGKILL when it has not exited
 * after `ms`. Resolves once it has exited.
 *
 * @param child the process
 * @param signal the polite signal (postgres shuts down fast on SIGINT)
 * @param ms how long it may take
 */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals = "SIGTERM",
  ms = 5_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve();
    }, ms);
  });
  await Promise.race([exited, late]);
  clearTimeout(timer);
  await exited;
}

/**
 * Waits until `output()` contains `line`, polling; rejects when the child
 * exits first or after `ms`, with what it printed.
 *
 * @param child the process whose output `output` collects
 * @param output what it printed so far
 * @param line the text that says it is ready
 * @param what the peer's name, for the error
 * @param ms the deadline
 */
export async function waitForOutput(
  child: ChildProcess,
  output: () => string,
  line: string,
  what: string,
  ms: number,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!output().includes(line)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}): ${output()}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`${what} did not print "${line}" within ${ms} ms: ${output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A user from /etc/passwd. */
export interface UserEntry {
  name: string;
  uid: number;
  gid: number;
}

/**
 * Finds a user in /etc/passwd by name or uid. Bun's `os.userInfo()` names
 * the user "unknown" when `USER` is unset (as in a container's root shell),
 * so the tests read the file themselves.
 *
 * @param user a name, or a uid
 * @returns the entry, or undefined when there is none
 */
export async function lookupUser(user: string | number): Promise<UserEntry | undefined> {
  const passwd = await readFile("/etc/passwd", "utf8").catch(() => "");
  for (const line of passwd.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (name === user || Number(uid) === user) return { name, uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

/**
 * The current user's name, from /etc/passwd (see {@linkcode lookupUser}),
 * else `USER`, else what `os.userInfo()` says.
 */
export async function currentUser(): Promise<string> {
  const uid = process.getuid?.();
  const entry = uid === undefined ? undefined : await lookupUser(uid);
  return entry?.name ?? process.env.USER ?? userInfo().username;
}

/**
 * Why a test skips: the tools it needs are missing and this user cannot
 * install them (as root, `scripts/ensure-tools.sh` would have; the test
 * then runs and fails naming the tool). Says so on standard output too,
 * since deno test prints a skipped test as "ignored" without its reason.
 *
 * @param who the test file, for the printed line
 * @param tools each tool's name and its path, undefined when missing
 * @returns the reason, or undefined to run the test
 */
export function skipReason(
  who: string,
  tools: Record<string, string | undefined>,
): string | undefined {
  const missing = Object.keys(tools).filter((name) => tools[name] === undefined);
  if (missing.length === 0 || process.getuid?.() === 0) return undefined;
  const reason = `${missing.join(", ")} not installed: run 'sudo bash scripts/ensure-tools.sh ${
    missing.join(" ")
  }'`;
  console.log(`${who}: skipped: ${reason}`);
  return reason;
}
