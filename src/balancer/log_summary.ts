/**
 * Summarised log lines: what a stranger can trigger once per connection
 * (a bad PROXY header, a bad ClientHello, an unknown server name, any
 * refusal) is logged in full for the first few of each kind in a window,
 * then counted; when the window closes, one line says how many more there
 * were. A flood costs a few lines per kind and window, never a line per
 * packet; counters elsewhere (metrics) stay exact.
 *
 * The window's timer is armed only once a line has been held back, does
 * not keep the process alive, and is cleared by
 * {@linkcode LogSummary.close}.
 *
 * @module
 */
import { clearTimeout, setTimeout } from "node:timers";

/**
 * Options for {@linkcode LogSummary}.
 *
 * @example
 * ```ts
 * import { logEvents, type LogSummaryOptions } from "mini-balancer";
 *
 * const summary: LogSummaryOptions = { lines: 10, windowMs: 30_000 };
 * const events = logEvents({ summary });
 * ```
 */
export interface LogSummaryOptions {
  /** Lines of each kind logged in full per window. @default 5 */
  readonly lines?: number;
  /** How long a window lasts, in milliseconds. @default 10000 */
  readonly windowMs?: number;
}

/** Default lines of each kind logged in full per window. */
export const SUMMARY_LINES = 5;
/** Default length of a window, in milliseconds. */
export const SUMMARY_WINDOW_MS = 10_000;

/** One kind's window: when it opened, what it let through, what it held back. */
interface Window<Kind> {
  readonly kind: Kind;
  opened: number;
  logged: number;
  held: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Decides, line by line, which lines of a kind are written, and tells how
 * many were held back when each window closes.
 *
 * @typeParam Kind what the held-back lines are summarised with (the
 *   reason, the frontend, the address)
 */
export class LogSummary<Kind> {
  readonly #lines: number;
  readonly #windowMs: number;
  readonly #summarise: (kind: Kind, held: number, windowMs: number) => void;
  readonly #windows = new Map<string, Window<Kind>>();

  /**
   * @param summarise writes the summary line of a window that held lines back
   * @param options lines per window and the window's length
   */
  constructor(
    summarise: (kind: Kind, held: number, windowMs: number) => void,
    options: LogSummaryOptions = {},
  ) {
    this.#summarise = summarise;
    this.#lines = options.lines ?? SUMMARY_LINES;
    this.#windowMs = options.windowMs ?? SUMMARY_WINDOW_MS;
  }

  /**
   * Whether a line of this kind is to be written now; when not, it is
   * counted for the window's summary.
   *
   * @param key the kind as text (lines with the same key are one kind)
   * @param kind what the summary says, taken from the window's first line
   * @returns true to write the line
   */
  admit(key: string, kind: Kind): boolean {
    const now = performance.now();
    let window = this.#windows.get(key);
    if (
      window === undefined || (window.timer === undefined && now - window.opened >= this.#windowMs)
    ) {
      window = { kind, opened: now, logged: 0, held: 0, timer: undefined };
      this.#windows.set(key, window);
    }
    if (window.logged < this.#lines) {
      window.logged++;
      return true;
    }
    window.held++;
    if (window.timer === undefined) {
      const left = Math.max(0, window.opened + this.#windowMs - now);
      const timer = setTimeout(() => this.#close(key), left);
      timer.unref();
      window.timer = timer;
    }
    return false;
  }

  /** Lines held back and not yet summarised, over every kind. */
  get held(): number {
    let held = 0;
    for (const window of this.#windows.values()) held += window.held;
    return held;
  }

  /** Windows whose timer is pending, for leak checks. */
  get timers(): number {
    let count = 0;
    for (const window of this.#windows.values()) if (window.timer !== undefined) count++;
    return count;
  }

  /** Writes the summary of every window that held lines back, and clears every timer. */
  close(): void {
    for (const key of [...this.#windows.keys()]) this.#close(key);
    this.#windows.clear();
  }

  #close(key: string): void {
    const window = this.#windows.get(key);
    if (window === undefined) return;
    clearTimeout(window.timer);
    // The next line of this kind opens a new window, with its full lines.
    this.#windows.delete(key);
    if (window.held > 0) this.#summarise(window.kind, window.held, this.#windowMs);
  }
}

/**
 * A window's length as a summary says it: `10 s`, `1.5 s`, `200 ms`.
 *
 * @param ms the length in milliseconds
 * @returns the length in words
 */
export function formatWindow(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${Math.round(ms)} ms`;
}
