/**
 * Counting the timers a piece of code leaves behind: setTimeout and
 * clearTimeout wrapped for the length of a test, so that a test can say
 * "nothing is pending" after an outcome, not just "nothing fired yet".
 */

/** The timers of {@linkcode liveTimers}, and how to put the real functions back. */
export interface LiveTimers {
  /** The handles set since, neither fired nor cleared. */
  readonly live: Set<unknown>;
  /** Puts the real setTimeout and clearTimeout back (also done by the cleanups). */
  readonly restore: () => void;
}

/**
 * Tracks the setTimeout handles set from now on that have neither fired nor
 * been cleared: all of them, or only those of the given lengths.
 *
 * @param cleanups where the restore is pushed, run after the test
 * @param lengths the delays to track, in milliseconds; none: every timer
 * @returns the live handles and the restore
 */
export function liveTimers(cleanups: (() => unknown)[], lengths?: readonly number[]): LiveTimers {
  const live = new Set<unknown>();
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  globalThis.setTimeout =
    ((fn: (...args: unknown[]) => void, delay?: number, ...args: unknown[]) => {
      const handle = realSet(() => {
        live.delete(handle);
        fn(...args);
      }, delay);
      if (lengths === undefined || lengths.includes(delay ?? -1)) live.add(handle);
      return handle;
    }) as typeof setTimeout;
  globalThis.clearTimeout = ((handle: Parameters<typeof clearTimeout>[0]) => {
    live.delete(handle);
    realClear(handle);
  }) as typeof clearTimeout;
  const restore = () => {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  };
  cleanups.push(restore);
  return { live, restore };
}
