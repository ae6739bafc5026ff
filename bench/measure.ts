/**
 * One round of one contender: the HTTP (with 1 MiB bodies), bulk and
 * idle-connection scenarios, each against a freshly started proxy, reading
 * the proxy's CPU time and memory from /proc around every measurement. A
 * contender that sends PROXY headers or terminates TLS runs the HTTP
 * scenario only. A step that fails leaves its figures out and records why;
 * the other steps still run.
 *
 * @module
 */
import { type IdlePeers, LARGE_PATH, startIperfServer } from "./backends.ts";
import { type Contender, httpOnly, type Running } from "./contenders.ts";
import { iperf3, wrk } from "./load.ts";
import { cpuSeconds, peakRssBytes, resetPeakRss, rssBytes } from "./proc_stats.ts";

/** How long and how hard to measure. */
export interface Settings {
  rounds: number;
  wrkSeconds: number;
  wrkConnections: number;
  warmupSeconds: number;
  iperfSeconds: number;
  idleConnections: number;
  /** Pause after the idle connections close, before reading RSS again. */
  settleMs: number;
}

/** The figures of one round, by metric key (see report.ts). */
export type Figures = Record<string, number>;

/** One round of one contender: its figures and what failed. */
export interface RoundResult {
  figures: Figures;
  /** Step name to error message. */
  errors: Record<string, string>;
  /** Extra facts, e.g. how long opening the idle connections took. */
  notes: Record<string, number>;
}

/** Where the backends listen. */
export interface Backends {
  http: [number, number];
  /** The same HTTP servers, expecting a PROXY header first. */
  httpProxyProtocol: [number, number];
  idle: IdlePeers;
}

/** Connections for the 1 MiB bodies: few, so that it is bytes, not requests, that cost. */
export const LARGE_CONNECTIONS = 4;

const MIB = 1024 * 1024;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n").slice(0, 3).join(
    " | ",
  );
}

async function step(
  result: RoundResult,
  name: string,
  body: () => Promise<void> | void,
): Promise<void> {
  try {
    await body();
  } catch (error) {
    result.errors[name] = message(error);
  }
}

/** Resident memory now, the median of three readings 100 ms apart. */
async function steadyRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) await sleep(100);
    readings.push(rssBytes(pid));
  }
  return readings.sort((a, b) => a - b)[1]!;
}

/**
 * Starts the contender, runs `body`, and always stops it. A failed start, an
 * error from `body`, a proxy that died mid-way and one that exits badly when
 * stopped are each recorded in `result.errors` under `scenario`, not thrown.
 *
 * @param backends the ports it forwards to
 */
export async function withContender(
  result: Pick<RoundResult, "errors">,
  scenario: string,
  contender: Contender,
  backends: number[],
  body: (running: Running) => Promise<void>,
): Promise<void> {
  let running: Running;
  try {
    running = await contender.start(backends);
  } catch (error) {
    result.errors[scenario] = `cannot start: ${message(error)}`;
    return;
  }
  try {
    await body(running);
  } catch (error) {
    result.errors[scenario] = message(error);
  } finally {
    if (running.proc !== undefined && !running.proc.alive) {
      result.errors[`${scenario} (proxy)`] = running.proc.describeExit();
    }
    const exit = await running.proc?.stop();
    if (
      exit && exit.code !== 0 && exit.signal !== "SIGTERM" &&
      result.errors[`${scenario} (proxy)`] === undefined
    ) {
      result.errors[`${scenario} (stop)`] = running.proc!.describeExit();
    }
  }
}

async function measureHttp(
  result: RoundResult,
  contender: Contender,
  backends: Backends,
  settings: Settings,
): Promise<void> {
  const ports = contender.backends === "proxy-v2" ? backends.httpProxyProtocol : backends.http;
  await withContender(result, "http", contender, ports, async ({ port, proc }) => {
    const base = { connections: settings.wrkConnections, tls: contender.tls };
    await step(result, "warm-up", async () => {
      await wrk(port, { ...base, seconds: settings.warmupSeconds, close: false });
    });
    await step(result, "new connections", async () => {
      const cpuBefore = proc ? cpuSeconds(proc.pid) : 0;
      const run = await wrk(port, { ...base, seconds: settings.wrkSeconds, close: true });
      const cpu = proc ? cpuSeconds(proc.pid) - cpuBefore : 0;
      result.figures.connPerSec = run.requestsPerSecond;
      result.notes.connErrors = run.errors;
      if (proc) {
        result.figures.cpuPer10kConn = (cpu / run.requests) * 10_000;
        // Near 1 the proxy's core is the bottleneck; well below it, something else is.
        result.notes.connProxyBusy = cpu / settings.wrkSeconds;
      }
    });
    await sleep(300);
    await step(result, "keep-alive", async () => {
      const cpuBefore = proc ? cpuSeconds(proc.pid) : 0;
      const run = await wrk(port, { ...base, seconds: settings.wrkSeconds, close: false });
      result.figures.reqPerSec = run.requestsPerSecond;
      result.figures.p50Ms = run.p50Ms;
      result.figures.p99Ms = run.p99Ms;
      result.notes.keepAliveErrors = run.errors;
      if (proc) {
        const cpu = cpuSeconds(proc.pid) - cpuBefore;
        result.figures.cpuPer100kReq = (cpu / run.requests) * 100_000;
        result.notes.keepAliveProxyBusy = cpu / settings.wrkSeconds;
      }
    });
    await sleep(300);
    // Bytes through HTTP rather than iperf3, so that a proxy that sends
    // PROXY headers or speaks TLS has a CPU per GB too, and the plain ones
    // the same figure beside it.
    await step(result, "1 MiB bodies", async () => {
      const cpuBefore = proc ? cpuSeconds(proc.pid) : 0;
      const run = await wrk(port, {
        ...base,
        connections: LARGE_CONNECTIONS,
        seconds: settings.wrkSeconds,
        close: false,
        path: LARGE_PATH,
      });
      const cpu = proc ? cpuSeconds(proc.pid) - cpuBefore : 0;
      result.figures.largeGbps = (run.bytesRead * 8) / settings.wrkSeconds / 1e9;
      result.notes.largeErrors = run.errors;
      if (proc) {
        result.figures.cpuPerGBLarge = cpu / (run.bytesRead / 1e9);
        result.notes.largeProxyBusy = cpu / settings.wrkSeconds;
      }
    });
  });
}

const BULK_RUNS = [
  { key: "bulk1Up", streams: 1, reverse: false },
  { key: "bulk1Down", streams: 1, reverse: true },
  { key: "bulk8Up", streams: 8, reverse: false },
  { key: "bulk8Down", streams: 8, reverse: true },
] as const;

async function measureBulk(
  result: RoundResult,
  contender: Contender,
  settings: Settings,
): Promise<void> {
  let server;
  try {
    server = await startIperfServer();
  } catch (error) {
    result.errors.bulk = `cannot start iperf3 server: ${message(error)}`;
    return;
  }
  try {
    await withContender(result, "bulk", contender, [server.port], async ({ port, proc }) => {
      const exactPeak = proc ? resetPeakRss(proc.pid) : false;
      let sampledPeak = 0;
      const sampler = setInterval(() => {
        try {
          if (proc) sampledPeak = Math.max(sampledPeak, rssBytes(proc.pid));
        } catch {
          // The proxy died; the bulk steps report it.
        }
      }, 50);
      const cpuBefore = proc ? cpuSeconds(proc.pid) : 0;
      let bytes = 0;
      try {
        for (const bulk of BULK_RUNS) {
          const name = `bulk ${bulk.streams} stream${bulk.streams > 1 ? "s" : ""}${
            bulk.reverse ? " -R" : ""
          }`;
          if (!server.proc.alive) {
            result.errors[name] = server.proc.describeExit();
            continue;
          }
          await step(result, name, async () => {
            const options = { seconds: settings.iperfSeconds, ...bulk };
            // An iperf3 server takes any connection that arrives while it sets
            // up its streams as one of them: a health probe landing there
            // aborts the run. Try once more, and say so in the notes.
            const run = await iperf3(port, options).catch(async () => {
              result.notes[`${bulk.key}Retried`] = 1;
              return await iperf3(port, options);
            });
            result.figures[bulk.key] = run.bitsPerSecond / 1e9;
            bytes += run.bytes;
          });
          await sleep(300);
        }
      } finally {
        clearInterval(sampler);
      }
      if (proc && bytes > 0 && proc.alive) {
        await step(result, "bulk CPU and memory", () => {
          result.figures.cpuPerGB = (cpuSeconds(proc.pid) - cpuBefore) / (bytes / 1e9);
          const peak = exactPeak ? Math.max(peakRssBytes(proc.pid), sampledPeak) : sampledPeak;
          result.figures.peakRssBulkMiB = peak / MIB;
        });
      }
    });
  } finally {
    await server.proc.stop();
  }
}

async function measureIdle(
  result: RoundResult,
  contender: Contender,
  backends: Backends,
  settings: Settings,
): Promise<void> {
  await withContender(
    result,
    "idle",
    contender,
    [backends.idle.holdPort],
    async ({ port, proc }) => {
      if (!proc) return;
      await step(result, "idle connections", async () => {
        // A few connections first, so that lazily built state counts as idle.
        await backends.idle.open(port, 100);
        await backends.idle.close();
        await sleep(settings.settleMs);
        const idle = await steadyRss(proc.pid);
        result.notes.idleOpenMs = await backends.idle.open(port, settings.idleConnections);
        await sleep(500);
        const loaded = await steadyRss(proc.pid);
        result.notes.idleCloseMs = await backends.idle.close();
        await sleep(settings.settleMs);
        const after = await steadyRss(proc.pid);
        result.figures.rssIdleMiB = idle / MIB;
        result.figures.rssLoadedMiB = loaded / MIB;
        result.figures.kibPerConn = (loaded - idle) / 1024 / settings.idleConnections;
        result.figures.rssAfterMiB = after / MIB;
      });
      // Leave none open for the next contender, even after a failure.
      await backends.idle.close().catch(() => {});
    },
  );
}

/**
 * Measures one contender once: HTTP (new connections, keep-alive, 1 MiB
 * bodies), bulk (iperf3, four runs) and idle connections, each against a
 * fresh proxy. Bulk and idle need plain TCP to plain backends: iperf3 and
 * the idle peers take no PROXY header, and the idle peers speak no TLS, so
 * a contender that does either runs the HTTP scenario alone.
 *
 * @returns its figures, errors and notes
 */
export async function measureRound(
  contender: Contender,
  backends: Backends,
  settings: Settings,
): Promise<RoundResult> {
  const result: RoundResult = { figures: {}, errors: {}, notes: {} };
  await measureHttp(result, contender, backends, settings);
  if (httpOnly(contender)) return result;
  await measureBulk(result, contender, settings);
  if (contender.key !== "direct") await measureIdle(result, contender, backends, settings);
  return result;
}
