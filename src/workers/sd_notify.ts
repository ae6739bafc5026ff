/**
 * systemd's notify protocol (sd_notify(3)) for `Type=notify` units: when
 * `NOTIFY_SOCKET` is set, the main process tells systemd `READY=1` once it
 * serves, `RELOADING=1` (with `MONOTONIC_USEC=`) when a reload starts and
 * `READY=1` when it is applied or rejected, `STOPPING=1` at shutdown, a
 * `STATUS=` line, and `WATCHDOG=1` every half of `WATCHDOG_USEC` while its
 * event loop turns. Only the main process sends (a worker never does), so
 * `NotifyAccess=main`, systemd's default, is enough.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import type { FrontendStatus } from "../balancer/balancer.ts";
import { getLog } from "../log.ts";
import type { Net } from "../runtime/types.ts";

/** How often `STATUS=` is sent again between the events that send it. */
export const STATUS_INTERVAL_MS = 10_000;

/** The line a worker writes on its standard output once it serves (or once a reload is done). */
const WORKER_READY = '{"ready":true}';

/**
 * The line a worker writes on its standard output once every frontend
 * listens, and again after each reload (applied or rejected): its
 * supervisor tells systemd `READY=1` once every worker has said so.
 */
export function workerReadyReport(): string {
  return WORKER_READY;
}

/** Whether a worker's line is its {@linkcode workerReadyReport}. */
export function isWorkerReadyReport(line: string): boolean {
  return line.trim() === WORKER_READY;
}

/** The variables of the notify protocol, as the service manager sets them. */
export interface NotifyEnvironment {
  /** The socket: a path, or an abstract `@name`. */
  readonly NOTIFY_SOCKET?: string;
  /** The watchdog's period in microseconds: a ping is due every half of it. */
  readonly WATCHDOG_USEC?: string;
  /** The process the watchdog is meant for; unset means the main process. */
  readonly WATCHDOG_PID?: string;
}

/**
 * Reads one variable from `process.env`; a runtime that refuses the read
 * (a permission) counts it as unset.
 */
function variable(name: string): string | undefined {
  try {
    return process.env[name];
  } catch {
    return undefined;
  }
}

/**
 * This process's notify variables.
 *
 * @param read reads one variable (the entry file's, for Deno, which must
 * not prompt for the permission) @default process.env
 */
export function notifyEnvironment(
  read: (name: string) => string | undefined = variable,
): NotifyEnvironment {
  return {
    NOTIFY_SOCKET: read("NOTIFY_SOCKET"),
    WATCHDOG_USEC: read("WATCHDOG_USEC"),
    WATCHDOG_PID: read("WATCHDOG_PID"),
  };
}

/**
 * CLOCK_MONOTONIC in microseconds, for `MONOTONIC_USEC=`, read from
 * /proc/uptime (the one source every runtime can read: Bun's and Deno's
 * `process.hrtime` count from the process's start, checked, not from boot
 * as Node's does). Its value is CLOCK_BOOTTIME in hundredths of a second,
 * rounded down; one hundredth is added so that the value is never earlier
 * than the reload's start, which systemd would take for an older reload's
 * (BOOTTIME runs ahead of MONOTONIC only by the time suspended).
 *
 * @returns the microseconds, or undefined when /proc/uptime cannot be read
 */
export function monotonicMicros(): bigint | undefined {
  try {
    const [seconds, hundredths] = readFileSync("/proc/uptime", "utf8").split(" ")[0]!.split(".");
    return (BigInt(seconds!) * 100n + BigInt(hundredths ?? "0") + 1n) * 10_000n;
  } catch {
    return undefined;
  }
}

/**
 * The `STATUS=` line of a balancer: its frontends, its open connections and
 * how many of its backends are up.
 */
export function statusLine(frontends: FrontendStatus[]): string {
  let open = 0;
  let up = 0;
  let backends = 0;
  for (const frontend of frontends) {
    open += frontend.active;
    for (const backend of frontend.backends) {
      backends++;
      if (backend.state === "up") up++;
    }
  }
  const s = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  return `${s(frontends.length, "frontend")}, ${s(open, "open connection")}, ` +
    `${up}/${backends} backends up`;
}

/** Tells systemd how the main process is doing; made by {@linkcode SdNotify.fromEnvironment}. */
export class SdNotify {
  readonly #net: Net;
  readonly #socket: string;
  readonly #watchdogMs: number | undefined;
  #warned = false;
  #queue: Promise<void> = Promise.resolve();
  /** Messages handed to the queue and not yet sent (or failed). */
  #pending = 0;
  #timers: ReturnType<typeof setInterval>[] = [];

  private constructor(net: Net, socket: string, watchdogMs: number | undefined) {
    this.#net = net;
    this.#socket = socket;
    this.#watchdogMs = watchdogMs;
  }

  /**
   * Makes the notifier of this process when `NOTIFY_SOCKET` is set. A
   * runtime without {@linkcode Net.notify} (Node) logs one WARN line.
   *
   * @param net the runtime, whose `notify` sends
   * @param env the variables, this process's by default
   * @param pid this process's id, to tell whether the watchdog is ours
   * @returns the notifier, or undefined when there is nothing to notify
   */
  static fromEnvironment(
    net: Net,
    env: NotifyEnvironment = notifyEnvironment(),
    pid: number = process.pid,
  ): SdNotify | undefined {
    const socket = env.NOTIFY_SOCKET;
    if (socket === undefined || socket === "") return undefined;
    if (net.notify === undefined) {
      getLog("main").warn(
        "NOTIFY_SOCKET is set but this runtime cannot send to it: systemd will not hear READY=1",
        { runtime: net.runtime },
      );
      return undefined;
    }
    const usec = Number(env.WATCHDOG_USEC);
    const ours = env.WATCHDOG_PID === undefined || env.WATCHDOG_PID === "" ||
      Number(env.WATCHDOG_PID) === pid;
    const watchdogMs = ours && Number.isInteger(usec) && usec > 0 ? usec / 1000 : undefined;
    return new SdNotify(net, socket, watchdogMs);
  }

  /** Half the watchdog's period in milliseconds, or undefined without a watchdog. */
  get watchdogIntervalMs(): number | undefined {
    return this.#watchdogMs === undefined ? undefined : this.#watchdogMs / 2;
  }

  /**
   * Sends one message, after the ones before it; a failure is logged once
   * at WARN and never thrown. A `repeated` message (a watchdog ping, a
   * periodic status) is dropped while another waits, so that a receiver
   * that does not read cannot make the queue grow.
   */
  #send(message: string, repeated = false): void {
    if (repeated && this.#pending > 0) return;
    const notify = this.#net.notify!;
    this.#pending++;
    this.#queue = this.#queue.then(() => notify(this.#socket, message)).catch((error) => {
      if (this.#warned) return;
      this.#warned = true;
      getLog("main").warn("cannot notify systemd", {
        socket: this.#socket,
        reason: (error as Error).message,
      });
    }).finally(() => void this.#pending--);
  }

  /** Every frontend serves (or a reload is done): `READY=1` and the status. */
  ready(status: string): void {
    this.#send(`READY=1\nSTATUS=${oneLine(status)}`);
  }

  /** A reload starts: `RELOADING=1` with the monotonic clock's time. */
  reloading(): void {
    const now = monotonicMicros();
    this.#send(`RELOADING=1${now === undefined ? "" : `\nMONOTONIC_USEC=${now}`}`);
  }

  /** The process is stopping: `STOPPING=1`; the timers stop. */
  stopping(): void {
    this.close();
    this.#send("STOPPING=1");
  }

  /** Sends `STATUS=` alone (dropped while another message waits). */
  status(status: string): void {
    this.#send(`STATUS=${oneLine(status)}`, true);
  }

  /**
   * Starts the timers: `WATCHDOG=1` every half of `WATCHDOG_USEC` (a timer,
   * so that a blocked event loop sends none and systemd restarts us) and
   * `STATUS=` every {@linkcode STATUS_INTERVAL_MS}. Neither keeps the
   * process alive.
   *
   * @param status makes the status line
   * @param statusMs how often the status goes @default STATUS_INTERVAL_MS
   */
  start(status: () => string, statusMs: number = STATUS_INTERVAL_MS): void {
    if (this.#timers.length > 0) return;
    const every = (ms: number, tick: () => void) => {
      const timer = setInterval(tick, ms);
      (timer as { unref?: () => void }).unref?.();
      this.#timers.push(timer);
    };
    const half = this.watchdogIntervalMs;
    if (half !== undefined) every(half, () => this.#send("WATCHDOG=1", true));
    every(statusMs, () => this.status(status()));
  }

  /** Stops the timers. */
  close(): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
  }

  /** Resolves once every message sent so far has been handed over (or failed). */
  flushed(): Promise<void> {
    return this.#queue;
  }
}

/** A status on one line: a newline would start another field. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, " ");
}
