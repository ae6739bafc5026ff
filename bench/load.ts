/**
 * The load generators, pinned to the load core: wrk for connections and
 * requests, iperf3 for bulk throughput. Each run is bounded by its duration
 * plus a margin, after which it is killed.
 *
 * @module
 */
import { LOAD_CPU } from "./backends.ts";
import { run } from "./processes.ts";

/** What one wrk run measured. */
export interface WrkResult {
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Socket errors plus non-2xx responses. */
  errors: number;
  /** Bytes read, headers included, from wrk's "… MB read" (two decimals of its unit). */
  bytesRead: number;
}

/** Options of one wrk run. */
export interface WrkOptions {
  seconds: number;
  connections: number;
  /** Send `Connection: close`, so that every request is a new connection. */
  close: boolean;
  /** Speak TLS (`https://`); wrk does not resume sessions, so each connection is a full handshake. @default false */
  tls?: boolean;
  /** The path requested. @default "/" */
  path?: string;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function durationMs(text: string | undefined): number {
  const match = text?.match(/^([\d.]+)(us|ms|s|m|h)$/);
  return match ? Number(match[1]) * UNIT_MS[match[2]!]! : NaN;
}

// wrk writes sizes in binary units: "1.95GB read" is 1.95 × 2^30 bytes.
const UNIT_BYTES: Record<string, number> = {
  "": 1,
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
};

function sizeBytes(match: RegExpMatchArray | null): number {
  return match ? Number(match[1]) * UNIT_BYTES[match[2]!]! : NaN;
}

/**
 * Parses wrk's report (run with `--latency`).
 *
 * @throws SyntaxError when a figure is missing
 */
export function parseWrk(text: string): WrkResult {
  const requests = Number(text.match(/(\d+) requests in/)?.[1]);
  const requestsPerSecond = Number(text.match(/Requests\/sec:\s+([\d.]+)/)?.[1]);
  const p50Ms = durationMs(text.match(/^\s+50%\s+(\S+)/m)?.[1]);
  const p99Ms = durationMs(text.match(/^\s+99%\s+(\S+)/m)?.[1]);
  const socket = text.match(/connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  const non2xx = Number(text.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0);
  const bytesRead = sizeBytes(text.match(/ requests in \S+, ([\d.]+)([KMGT]?)B read/));
  if (![requests, requestsPerSecond, bytesRead].every(Number.isFinite)) {
    throw new SyntaxError(`cannot read wrk's report: ${text.trim().slice(0, 300)}`);
  }
  return { requests, requestsPerSecond, p50Ms, p99Ms, errors: socketErrors + non2xx, bytesRead };
}

/**
 * Runs wrk with one thread against `http://127.0.0.1:PORT/` (or `https`, or another path).
 *
 * @throws Error when wrk fails or most requests fail
 */
export async function wrk(port: number, options: WrkOptions): Promise<WrkResult> {
  const args = ["-t1", `-c${options.connections}`, `-d${options.seconds}s`, "--latency"];
  if (options.close) args.push("-H", "Connection: close");
  args.push(`${options.tls ? "https" : "http"}://127.0.0.1:${port}${options.path ?? "/"}`);
  const result = await run("wrk", args, {
    cpu: LOAD_CPU,
    timeoutMs: options.seconds * 1000 + 20_000,
  });
  if (result.code !== 0 || result.timedOut) {
    throw new Error(
      `wrk failed${result.timedOut ? " (timed out)" : ""}: ${
        result.stderr.trim() || result.stdout.trim()
      }`,
    );
  }
  const parsed = parseWrk(result.stdout);
  if (parsed.requests === 0 || parsed.errors > parsed.requests / 2) {
    throw new Error(`wrk: ${parsed.errors} errors in ${parsed.requests} requests`);
  }
  return parsed;
}

/** What one iperf3 run measured, at the receiver. */
export interface IperfResult {
  bitsPerSecond: number;
  bytes: number;
}

/** Options of one iperf3 run. */
export interface IperfOptions {
  seconds: number;
  streams: number;
  /** `-R`: the server sends and the client receives. */
  reverse: boolean;
}

/**
 * Runs an iperf3 client against 127.0.0.1:`port`.
 *
 * @throws Error when iperf3 fails or reports an error
 */
export async function iperf3(port: number, options: IperfOptions): Promise<IperfResult> {
  const args = ["-c", "127.0.0.1", "-p", String(port), "-t", String(options.seconds), "-J"];
  args.push("-P", String(options.streams), "--connect-timeout", "5000");
  if (options.reverse) args.push("-R");
  const result = await run("iperf3", args, {
    cpu: LOAD_CPU,
    timeoutMs: options.seconds * 1000 + 20_000,
  });
  let report: {
    error?: string;
    end?: { sum_received?: { bytes?: number; bits_per_second?: number } };
  };
  try {
    report = JSON.parse(result.stdout);
  } catch {
    throw new Error(`iperf3 failed: ${(result.stderr || result.stdout).trim().slice(0, 300)}`);
  }
  const received = report.end?.sum_received;
  if (report.error || result.code !== 0 || !received?.bytes || !received.bits_per_second) {
    throw new Error(`iperf3 failed: ${report.error ?? `exit code ${result.code}`}`);
  }
  return { bitsPerSecond: received.bits_per_second, bytes: received.bytes };
}
