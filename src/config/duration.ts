/**
 * Durations as operators write them (`250ms`, `5s`, `2m`, `1h`), shared by
 * the config and the command line.
 *
 * @module
 */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * The longest duration accepted anywhere: timers take a signed 32-bit delay,
 * and a longer one fires after 1ms instead (setTimeout's overflow).
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Parses a duration written the way operators write them: `250ms`, `5s`,
 * `1.5s`, `2m`, `1h`.
 *
 * @param text the duration
 * @returns milliseconds, at most {@linkcode MAX_DURATION_MS}
 * @throws {TypeError} when the text is not a number followed by ms, s, m or h
 * @throws {RangeError} when the duration is longer than a timer can wait
 */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (match === null) throw new TypeError('must be a duration such as "250ms", "5s" or "1m"');
  const ms = Math.round(Number(match[1]) * UNITS[match[2]!]!);
  if (ms > MAX_DURATION_MS) {
    throw new RangeError(`must be at most ${MAX_DURATION_MS}ms (about 24.8 days)`);
  }
  return ms;
}
