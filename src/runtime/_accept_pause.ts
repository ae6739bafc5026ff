/**
 * Riding out an episode without file descriptors, as HAProxy and nginx do:
 * when accepting fails with EMFILE or ENFILE, a listener stops accepting for
 * a short pause (100 ms, doubling up to 1 s while it keeps failing), logs it
 * once per episode (pauses less than 10 s apart are one episode), and
 * resumes by itself; connections already open keep flowing. The adapters
 * share this; how a listener stops and starts again is theirs.
 *
 * Deno's `accept()` rejects with the error: its adapter sleeps the pause
 * and accepts again, the socket left open (clients wait in the backlog).
 * Bun (uSockets) retries a failing `accept4` in a busy loop and tells
 * JavaScript nothing ("Todo: start timer here" in its loop.c), and Node
 * (libuv) silently accepts and closes what waits in the backlog; neither
 * reports the episode. For those, {@linkcode watchDescriptors} probes
 * whether a descriptor can be had (one `open` and `close` of `/dev/null`
 * every 100 ms, about 20 system calls a second) and closes their listeners
 * for the pause, binding the same address again afterwards.
 *
 * @module
 */
import { closeSync, openSync, readFileSync } from "node:fs";
import { getLog } from "../log.ts";
import type { Endpoint } from "./types.ts";

/** The first pause of an episode. */
export const FIRST_PAUSE_MS = 100;
/** The longest pause: it doubles from the first up to this. */
export const LONGEST_PAUSE_MS = 1000;
/** How often {@linkcode watchDescriptors} probes. */
const PROBE_INTERVAL_MS = 100;
/** How soon after a listener resumes the probe looks again (a busy loop costs a core meanwhile). */
const PROBE_AFTER_RESUME_MS = 10;
/** A pause this long after the previous one starts a new episode (and a new log line). */
const EPISODE_GAP_MS = 10_000;

const log = getLog("listener");

/**
 * Whether an error means this process (EMFILE) or the system (ENFILE) is out
 * of file descriptors: a local shortage, nobody else's fault.
 *
 * @param error what a socket call threw or reported
 */
export function isOutOfDescriptors(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === "EMFILE" || code === "ENFILE") return true;
  if (!(error instanceof Error)) return false;
  // Deno wraps the accept error of its HTTP server: `Http: Too many open files (os error 24)`.
  return /Too many open files/.test(`${error.message} ${String(error.cause ?? "")}`);
}

/**
 * Whether this process can open no more file descriptors right now: opens
 * and closes `/dev/null` once.
 *
 * @returns true when that fails with EMFILE or ENFILE
 */
export function descriptorsExhausted(): boolean {
  let fd: number;
  try {
    fd = openSync("/dev/null", "r");
  } catch (error) {
    return isOutOfDescriptors(error);
  }
  closeSync(fd);
  return false;
}

let limit: string | undefined;

/**
 * The soft limit on open files (RLIMIT_NOFILE), from `/proc/self/limits`:
 * none of the runtimes has `getrlimit`. Read once, at the first listen,
 * while a descriptor can still be had.
 *
 * @returns e.g. "1024", or "unknown" where it cannot be read
 */
export function descriptorLimit(): string {
  if (limit !== undefined) return limit;
  try {
    const limits = readFileSync("/proc/self/limits", "utf8");
    limit = /^Max open files\s+(\S+)/m.exec(limits)?.[1] ?? "unknown";
  } catch {
    limit = "unknown";
  }
  return limit;
}

/**
 * Names a listener's address for a log line: `host:port` (IPv6 in brackets) or a Unix path.
 *
 * @param endpoint the bound address
 */
export function describeAddress(endpoint: Endpoint): string {
  if (endpoint.path !== undefined) return endpoint.path;
  const { hostname, port } = endpoint;
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * One listener's episodes: how long the next pause lasts, and whether the
 * episode has been logged.
 */
export class AcceptPause {
  readonly #address: () => string;
  /** The last pause since the last accept that worked; 0 when none. */
  #pauseMs = 0;
  /** When the last pause began; -Infinity before the first. */
  #pausedAt = -Infinity;
  /** When the episode under way began. */
  #startedAt = 0;
  /** The episode's end has been logged (at its first accept that worked). */
  #resumeLogged = true;

  /**
   * @param address names the listener's address for the log line (asked
   * only when logging, so it may name an address bound after this is made)
   */
  constructor(address: () => string) {
    this.#address = address;
    descriptorLimit();
  }

  /** Whether accepting failed since the last accept that worked (the pause doubles). */
  get failing(): boolean {
    return this.#pauseMs !== 0;
  }

  /**
   * Accepting failed for want of descriptors: returns how long to stop.
   * The first pause of an episode is logged at WARN; pauses less than 10 s
   * apart belong to one episode, however often accepting works in between,
   * so a listener that flaps at the limit logs one line, not one per pause.
   *
   * @returns the pause in milliseconds: 100, then doubling up to 1000 until an accept works
   */
  pause(): number {
    const now = performance.now();
    if (now - this.#pausedAt > EPISODE_GAP_MS) {
      this.#pauseMs = 0;
      this.#startedAt = now;
      this.#resumeLogged = false;
      log.warn("accept paused: out of file descriptors", {
        address: this.#address(),
        limit: descriptorLimit(),
        pause_ms: FIRST_PAUSE_MS,
      });
    }
    this.#pausedAt = now;
    this.#pauseMs = this.#pauseMs === 0
      ? FIRST_PAUSE_MS
      : Math.min(this.#pauseMs * 2, LONGEST_PAUSE_MS);
    return this.#pauseMs;
  }

  /** A connection was accepted: the pauses start again from the shortest (the first such accept of an episode is logged at INFO). */
  accepted(): void {
    this.#pauseMs = 0;
    if (this.#resumeLogged) return;
    this.#resumeLogged = true;
    log.info("accept resumed", {
      address: this.#address(),
      paused_ms: Math.round(performance.now() - this.#startedAt),
    });
  }
}

/**
 * A listener {@linkcode watchDescriptors} can pause: it closes its socket
 * and binds the same address again.
 */
export interface Pausable {
  /** Its episodes. */
  readonly pause: AcceptPause;
  /** Closes the listening socket; what was accepted stays open. */
  stop(): void;
  /**
   * Binds and listens again at the same address.
   *
   * @throws {Error} when it cannot (still out of descriptors, or the port was taken meanwhile)
   */
  start(): void;
}

/** A watched listener's state. */
interface Watched {
  /** Listening now (not paused, not closed). */
  running: boolean;
  /** The timer that resumes it, while paused. */
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Listening again failed for another reason than descriptors, and was logged. */
  warned: boolean;
}

const watched = new Map<Pausable, Watched>();
let interval: ReturnType<typeof setInterval> | undefined;

/**
 * Watches for an episode without descriptors on behalf of a listener whose
 * runtime does not report one (see the module's notes): while descriptors
 * are exhausted, every watched listener is closed for its pause and bound
 * again afterwards, until one accepts again.
 *
 * @param listener the listener, listening now
 * @returns how to stop watching it (and cancel a pending resume; the caller
 * closes it), and to pause it at once when its runtime does report a
 * failed accept
 */
export function watchDescriptors(listener: Pausable): DescriptorWatch {
  const state: Watched = { running: true, timer: undefined, warned: false };
  watched.set(listener, state);
  if (interval === undefined) {
    interval = setInterval(probe, PROBE_INTERVAL_MS);
    // Never keeps the process alive on its own.
    (interval as { unref?: () => void }).unref?.();
  }
  return {
    close() {
      if (state.timer !== undefined) clearTimeout(state.timer);
      state.timer = undefined;
      state.running = false;
      watched.delete(listener);
      if (watched.size === 0 && interval !== undefined) {
        clearInterval(interval);
        interval = undefined;
      }
    },
    outOfDescriptors() {
      if (!state.running || !watched.has(listener)) return;
      state.running = false;
      listener.stop();
      schedule(listener, state);
    },
  };
}

/** What {@linkcode watchDescriptors} returns. */
export interface DescriptorWatch {
  /** Stops watching (and cancels a pending resume); the caller closes the listener. */
  close(): void;
  /** Accepting failed for want of descriptors: pause now. */
  outOfDescriptors(): void;
}

/** Pauses every running listener when no descriptor can be had. */
function probe(): void {
  let anyRunning = false;
  for (const state of watched.values()) anyRunning ||= state.running;
  if (!anyRunning || !descriptorsExhausted()) return;
  for (const [listener, state] of watched) {
    if (!state.running) continue;
    state.running = false;
    listener.stop();
    schedule(listener, state);
  }
}

/** Resumes `listener` after its next pause. */
function schedule(listener: Pausable, state: Watched): void {
  state.timer = setTimeout(resume, listener.pause.pause(), listener, state);
}

/** Binds a paused listener again, or pauses it longer when that fails. */
function resume(listener: Pausable, state: Watched): void {
  state.timer = undefined;
  if (!watched.has(listener)) return;
  try {
    listener.start();
  } catch (error) {
    if (!isOutOfDescriptors(error) && !state.warned) {
      state.warned = true;
      log.warn("cannot listen again after a pause: retrying", {
        reason: (error as Error).message,
      });
    }
    return schedule(listener, state);
  }
  state.running = true;
  state.warned = false;
  setTimeout(probe, PROBE_AFTER_RESUME_MS);
}
