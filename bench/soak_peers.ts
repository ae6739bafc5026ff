/**
 * Both ends of the soak's traffic, as two processes of this script under Bun,
 * driven by lines on standard input (like bench/idle_peers.ts):
 *
 *     bun bench/soak_peers.ts echo     two echo backends; prints
 *                                      "echo PORT PORT", then answers
 *                                      "count" with "held N" (connections open)
 *     bun bench/soak_peers.ts client   answers "start PORT IDLE SHORT ECHOES"
 *                                      with "started MS" once IDLE idle
 *                                      connections to 127.0.0.1:PORT are open
 *                                      and the two paced streams run: SHORT
 *                                      short connections a second (64 bytes
 *                                      echoed, then closed) and ECHOES echoes
 *                                      a second of 1 MiB, each on a connection
 *                                      of its own; "stats" with "stats JSON"
 *                                      (counts so far, see SoakTraffic); "stop"
 *                                      with "stopped JSON" once the streams
 *                                      have ended and every connection closed
 *
 * The streams are paced, not as fast as they go, so that every contender
 * gets the same work per minute and RSS is compared over equal traffic; a
 * start that finds too many of its kind still under way is skipped and
 * counted, which says the proxy fell behind. Errors are answered with
 * "error MESSAGE".
 *
 * @module
 */
import { createConnection, createServer, type Socket } from "node:net";
import process from "node:process";
import { serveCommands } from "./peer_commands.ts";
import type { TrafficCounts } from "./soak_traffic.ts";

/** Bytes each short connection sends and reads back. */
const SHORT_BYTES = 64;
/** Bytes each echo sends and reads back. */
const ECHO_BYTES = 1024 * 1024;
/** Short connections under way at most; past it a start is skipped. */
const SHORT_IN_FLIGHT = 200;
/** Echoes under way at most; past it a start is skipped. */
const ECHO_IN_FLIGHT = 16;
/** How long one short connection or echo may take before it counts as failed. */
const EXCHANGE_TIMEOUT_MS = 30_000;
/** Idle connections being opened at once, kept below the listen backlogs. */
const OPENING = 100;
const TICK_MS = 10;

const sockets = new Set<Socket>();

function echo(): void {
  const ports: number[] = [];
  for (let i = 0; i < 2; i++) {
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => sockets.delete(socket));
      socket.on("data", (chunk) => {
        if (!socket.write(chunk)) socket.pause();
      });
      socket.on("drain", () => socket.resume());
      // The client's FIN, after the echo of everything before it: ours.
      socket.on("end", () => socket.end());
    });
    server.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, () => {
      const address = server.address();
      ports.push(typeof address === "object" && address !== null ? address.port : 0);
      if (ports.length === 2) console.log(`echo ${ports.join(" ")}`);
    });
  }
}

/** What the client did so far; the harness reads it as JSON. */
type Counts = TrafficCounts;

const counts: Counts = {
  shortDone: 0,
  shortFailed: 0,
  shortSkipped: 0,
  echoDone: 0,
  echoFailed: 0,
  echoSkipped: 0,
  echoBytes: 0,
  idleOpen: 0,
  idleLost: 0,
  lastError: "",
};

const payload = new Uint8Array(ECHO_BYTES).fill(0x61);
const idle = new Set<Socket>();
let pacer: ReturnType<typeof setInterval> | undefined;
let shortInFlight = 0;
let echoInFlight = 0;
let stopping = false;

/** Connects, sends `bytes` of `payload`, reads as many back, then closes. */
function exchange(port: number, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let received = 0;
    let done = false;
    const finish = (error?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (error) {
        socket.destroy();
        reject(error);
      } else resolve();
    };
    const timer = setTimeout(
      () => finish(new Error(`${bytes} bytes not echoed in ${EXCHANGE_TIMEOUT_MS} ms`)),
      EXCHANGE_TIMEOUT_MS,
    );
    socket.on("connect", () => socket.write(payload.subarray(0, bytes)));
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received === bytes) socket.end();
    });
    socket.on("error", (error) => finish(error));
    socket.on("close", () => {
      finish(
        received === bytes ? undefined : new Error(`${received} of ${bytes} bytes came back`),
      );
    });
  });
}

function openIdle(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      idle.add(socket);
      counts.idleOpen++;
      socket.removeAllListeners("error");
      socket.on("error", () => {});
      socket.on("close", () => {
        idle.delete(socket);
        counts.idleOpen--;
        if (!stopping) counts.idleLost++;
      });
      resolve();
    });
    socket.once("error", reject);
  });
}

/** What "start" asks for. */
interface Start {
  port: number;
  idleCount: number;
  /** Short connections a second. */
  short: number;
  /** Echoes a second. */
  echoes: number;
}

async function start({ port, idleCount, short, echoes }: Start): Promise<string> {
  const started = Date.now();
  stopping = false;
  let next = 0;
  const opener = async () => {
    while (next < idleCount) {
      next++;
      await openIdle(port);
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPENING, idleCount) }, opener));
  // Each stream starts what is due since the start, so that a late tick
  // catches up rather than lowering the rate.
  const paced = Date.now();
  let shortStarted = 0;
  let echoStarted = 0;
  pacer = setInterval(() => {
    const seconds = (Date.now() - paced) / 1000;
    for (; shortStarted < Math.floor(seconds * short); shortStarted++) {
      if (shortInFlight >= SHORT_IN_FLIGHT) {
        counts.shortSkipped++;
        continue;
      }
      shortInFlight++;
      exchange(port, SHORT_BYTES).then(
        () => counts.shortDone++,
        (error) => {
          counts.shortFailed++;
          counts.lastError = String(error);
        },
      ).finally(() => shortInFlight--);
    }
    for (; echoStarted < Math.floor(seconds * echoes); echoStarted++) {
      if (echoInFlight >= ECHO_IN_FLIGHT) {
        counts.echoSkipped++;
        continue;
      }
      echoInFlight++;
      exchange(port, ECHO_BYTES).then(
        () => {
          counts.echoDone++;
          counts.echoBytes += ECHO_BYTES;
        },
        (error) => {
          counts.echoFailed++;
          counts.lastError = String(error);
        },
      ).finally(() => echoInFlight--);
    }
  }, TICK_MS);
  return `started ${Date.now() - started}`;
}

async function stop(): Promise<string> {
  stopping = true;
  clearInterval(pacer);
  pacer = undefined;
  const deadline = Date.now() + EXCHANGE_TIMEOUT_MS + 5000;
  while (shortInFlight + echoInFlight > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (const socket of idle) socket.end();
  while (idle.size > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (shortInFlight + echoInFlight + idle.size > 0) {
    throw new Error(
      `${shortInFlight + echoInFlight} exchanges and ${idle.size} idle connections still open`,
    );
  }
  const answer = `stopped ${JSON.stringify(counts)}`;
  for (const key of Object.keys(counts) as (keyof Counts)[]) {
    if (key === "lastError") counts.lastError = "";
    else counts[key] = 0;
  }
  return answer;
}

async function answer(command: string | undefined, args: string[]): Promise<string> {
  if (command === "count") return `held ${sockets.size}`;
  if (command === "stats") return `stats ${JSON.stringify(counts)}`;
  if (command === "start") {
    if (pacer !== undefined) throw new Error("already started");
    const [port = NaN, idleCount = NaN, short = NaN, echoes = NaN] = args.map(Number);
    if (![port, idleCount, short, echoes].every(Number.isFinite)) {
      throw new Error("start takes PORT IDLE SHORT ECHOES");
    }
    return await start({ port, idleCount, short, echoes });
  }
  if (command === "stop") return await stop();
  throw new Error(`unknown command ${command}`);
}

if (process.argv[2] === "echo") echo();
else if (process.argv[2] !== "client") {
  console.error("usage: bun bench/soak_peers.ts echo|client");
  process.exit(2);
}

serveCommands(answer);
