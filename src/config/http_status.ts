/**
 * The `http_status` of an HTTP health check: which status codes count as
 * up, written as a code ("200"), a range ("200-399") or a list of them.
 *
 * @module
 */

/**
 * An inclusive range of HTTP status codes.
 *
 * @example
 * ```ts
 * import type { StatusRange } from "mini-balancer";
 *
 * const ranges: readonly StatusRange[] = config.frontends[0]!.health.http?.status ?? [];
 * const accepts = (code: number) => ranges.some(({ from, to }) => from <= code && code <= to);
 * ```
 */
export interface StatusRange {
  /** The lowest code in the range. */
  readonly from: number;
  /** The highest code in the range. */
  readonly to: number;
}

/** Status codes a health check accepts by default: success and redirects. */
export const DEFAULT_HTTP_STATUS = "200-399";

/** One code, three digits from 100 to 599. */
function code(text: string): number {
  if (!/^[1-5][0-9][0-9]$/.test(text)) {
    throw new RangeError(
      `must be a status code from 100 to 599 or a range of them ("200-299"): ${
        JSON.stringify(text.slice(0, 20))
      } is not`,
    );
  }
  return Number(text);
}

/**
 * Reads status codes and ranges.
 *
 * @param value a code or range ("200", "200-299"), or a list of them
 * @returns the ranges, in the order written
 * @throws {RangeError} for anything else, naming the part that is wrong
 */
export function parseHttpStatus(value: string | readonly string[]): StatusRange[] {
  const parts = typeof value === "string" ? [value] : value;
  if (parts.length === 0) throw new RangeError("must list at least one status code or range");
  return parts.map((part) => {
    const text = part.trim();
    const dash = text.indexOf("-");
    if (dash === -1) {
      const one = code(text);
      return { from: one, to: one };
    }
    const from = code(text.slice(0, dash).trim());
    const to = code(text.slice(dash + 1).trim());
    if (from > to) {
      throw new RangeError(`must be a range from low to high: ${JSON.stringify(text)} is not`);
    }
    return { from, to };
  });
}

/**
 * Whether `status` is in one of `ranges`.
 *
 * @param ranges what {@linkcode parseHttpStatus} read
 * @param status the status code an answer carried
 */
export function statusAccepted(ranges: readonly StatusRange[], status: number): boolean {
  return ranges.some((range) => status >= range.from && status <= range.to);
}

/**
 * The ranges as they would be written, for `check` and logs.
 *
 * @param ranges what {@linkcode parseHttpStatus} read
 */
export function formatHttpStatus(ranges: readonly StatusRange[]): string {
  return ranges.map((r) => r.from === r.to ? String(r.from) : `${r.from}-${r.to}`).join(", ");
}
