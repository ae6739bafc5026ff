/**
 * Rates and byte sizes as operators write them: `20/s`, `600/m` for
 * connection rates, `10MiB`, `512KB` or a plain number of bytes for
 * bandwidth.
 *
 * @module
 */
import type { Rate } from "./config.ts";

const PERIODS: Record<string, number> = { s: 1000, m: 60_000 };

/** The most events a rate may allow per period. */
export const MAX_RATE_COUNT = 1_000_000;

/**
 * Parses a rate such as `20/s` or `600/m`.
 *
 * @param text the rate
 * @returns the count and its period
 * @throws {TypeError} when the text is not a whole number, a slash and s or m
 * @throws {RangeError} when the count is 0 or above {@linkcode MAX_RATE_COUNT}
 */
export function parseRate(text: string): Rate {
  const match = /^(\d+)\/(s|m)$/.exec(text.trim());
  if (match === null) throw new TypeError('must be a rate such as "20/s" or "600/m"');
  const count = Number(match[1]);
  if (count < 1 || count > MAX_RATE_COUNT) {
    throw new RangeError(`must allow from 1 to ${MAX_RATE_COUNT} per period`);
  }
  return { count, perMs: PERIODS[match[2]!]!, text: text.trim() };
}

const SIZES: Record<string, number> = {
  "": 1,
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

/** The smallest bandwidth limit: below one TCP segment a second nothing works well. */
export const MIN_BYTES_PER_SECOND = 1024;

/**
 * Parses a byte size such as `10MiB`, `512KB`, `1.5GB` or `65536`.
 *
 * @param text the size
 * @returns bytes, rounded to a whole number
 * @throws {TypeError} when the text is not a number with an optional unit
 * @throws {RangeError} when it is below {@linkcode MIN_BYTES_PER_SECOND}
 */
export function parseByteSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/.exec(text.trim());
  if (match === null) {
    throw new TypeError('must be a size such as "10MiB", "512KB" or a number of bytes');
  }
  const bytes = Math.round(Number(match[1]) * SIZES[match[2] ?? ""]!);
  if (bytes < MIN_BYTES_PER_SECOND || !Number.isSafeInteger(bytes)) {
    throw new RangeError(`must be at least ${MIN_BYTES_PER_SECOND} bytes (1KiB)`);
  }
  return bytes;
}
