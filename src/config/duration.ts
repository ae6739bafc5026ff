/**
 * Durations as operators write them (`250ms`, `5s`, `2m`, `1h`), shared by
 * the config and the command line.
 *
 * @module
 */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration written the way operators write them: `250ms`, `5s`,
 * `1.5s`, `2m`, `1h`.
 *
 * @param text the duration
 * @returns milliseconds
 * @throws {TypeError} when the text is not a number followed by ms, s, m or h
 */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (match === null) throw new TypeError('must be a duration such as "250ms", "5s" or "1m"');
  return Math.round(Number(match[1]) * UNITS[match[2]!]!);
}
