/**
 * How to tell a paced stream from a bursty one: the bytes a receiver got,
 * timestamped, checked window by window (max_bytes_per_second, in process
 * and end to end).
 */
import assert from "node:assert/strict";

/** Bytes that arrived at once, at `at` (performance.now()). */
export interface Arrival {
  at: number;
  bytes: number;
}

/**
 * Asserts that `arrivals` carried `total` bytes at `rate` bytes a second:
 * every one-second window that starts a second or more after the first
 * byte and ends by the last one (sliding by 100 ms) holds `rate` ±25 %, and
 * the whole transfer took `total / rate` seconds, -20 % to +25 %.
 *
 * @returns the bytes in each window, for messages
 */
export function assertPaced(arrivals: readonly Arrival[], total: number, rate: number): number[] {
  const received = arrivals.reduce((sum, arrival) => sum + arrival.bytes, 0);
  assert.equal(received, total, "every byte arrived");
  const first = arrivals[0]!.at;
  const last = arrivals.at(-1)!.at;
  const seconds = (last - first) / 1000;
  const windows: number[] = [];
  for (let start = first + 1000; start + 1000 <= last; start += 100) {
    let bytes = 0;
    for (const arrival of arrivals) {
      if (arrival.at >= start && arrival.at < start + 1000) bytes += arrival.bytes;
    }
    windows.push(bytes);
  }
  const kib = (bytes: number) => (bytes / 1024).toFixed(0);
  const shape = `${kib(total)} KiB in ${seconds.toFixed(2)} s; ` +
    `windows of 1 s after the first (KiB): ${windows.map(kib).join(" ")}`;
  assert.ok(
    seconds >= 0.8 * total / rate && seconds <= 1.25 * total / rate,
    `expected ${(total / rate).toFixed(2)} s -20/+25 %: ${shape}`,
  );
  assert.ok(windows.length >= 10, `too few windows to judge: ${shape}`);
  const off = windows.filter((bytes) => bytes < 0.75 * rate || bytes > 1.25 * rate);
  assert.deepEqual(off, [], `windows outside ${kib(rate)} KiB ±25 %: ${shape}`);
  return windows;
}
