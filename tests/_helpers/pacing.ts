/**
 * How to tell a paced stream from a bursty one: the bytes a receiver got,
 * timestamped, checked window by window (max_bytes_per_second, in process
 * and end to end).
 */
import assert from "node:assert/strict";
import type { Conn } from "../../src/runtime/types.ts";
import { concat } from "./bytes.ts";
import { net } from "./env.ts";

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

/** Writes all of `data` to `conn` in 64 KiB pieces, waiting for a drain when it is full. */
async function sendAll(conn: Conn, data: Uint8Array, drained: () => Promise<void>) {
  for (let offset = 0; offset < data.length; offset += 65536) {
    if (!conn.write(data.subarray(offset, offset + 65536))) await drained();
  }
}

/** A connection that records when its bytes arrive. */
export interface Receiver {
  conn: Conn;
  /** When each chunk arrived, and its size. */
  arrivals: Arrival[];
  /** Everything received so far. */
  received(): Uint8Array;
  /** Resolves when the peer's FIN arrives (or the connection closes). */
  ended: Promise<void>;
  /** Resolves when the connection is fully closed. */
  closed: Promise<void>;
}

/**
 * Takes over `conn`'s events to record what arrives; `drained()` resolves at
 * its next drain, `onEnd` is called at the peer's FIN.
 */
function receiver(conn: Conn, onEnd: () => void = () => {}): Receiver & {
  drained(): Promise<void>;
} {
  const arrivals: Arrival[] = [];
  const chunks: Uint8Array[] = [];
  let drained: (() => void) | undefined;
  let ended!: () => void;
  let closed!: () => void;
  const result = {
    conn,
    arrivals,
    received: () => concat(chunks),
    ended: new Promise<void>((resolve) => (ended = resolve)),
    closed: new Promise<void>((resolve) => (closed = resolve)),
    drained: () => new Promise<void>((resolve) => (drained = resolve)),
  };
  conn.setHandlers({
    data(chunk) {
      arrivals.push({ at: performance.now(), bytes: chunk.length });
      chunks.push(chunk.slice());
    },
    drain: () => drained?.(),
    end() {
      ended();
      onEnd();
    },
    close() {
      ended();
      closed();
      drained?.();
    },
  });
  return result;
}

/**
 * Starts a backend that records when the bytes of its (one) connection
 * arrive. Without `download`, it answers a FIN with its own; with it, it
 * sends that as fast as it is taken instead, then half-closes or closes
 * (`then`).
 */
export function pacingBackend(download?: Uint8Array, then: "end" | "close" = "end") {
  const conns = new Set<Conn>();
  let got: Receiver | undefined;
  const listener = net.listen({
    hostname: "127.0.0.1",
    port: 0,
    onConnection(conn) {
      conns.add(conn);
      const side = receiver(conn, () => {
        // A download ends (or closes) once it is all written.
        if (download === undefined) conn.end();
      });
      side.closed.then(() => conns.delete(conn));
      got = side;
      if (download === undefined) return;
      void sendAll(conn, download, side.drained)
        .then(() => then === "end" ? conn.end() : conn.close());
    },
  });
  return {
    address: `127.0.0.1:${listener.address.port}`,
    /** The connection it received, once there is one. */
    get connection(): Receiver | undefined {
      return got;
    },
    close() {
      listener.close();
      for (const conn of conns) conn.reset();
    },
  };
}

/**
 * Connects to `port`, records what arrives, and sends `upload` (if any)
 * as fast as it is taken, then half-closes.
 */
export async function pacingClient(port: number, upload?: Uint8Array): Promise<Receiver> {
  const conn = await net.connect({ hostname: "127.0.0.1", port });
  const side = receiver(conn);
  if (upload !== undefined) void sendAll(conn, upload, side.drained).then(() => conn.end());
  return side;
}
