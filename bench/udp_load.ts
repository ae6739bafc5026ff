/**
 * The UDP bench's load generator (issue 21): CLIENTS clients, each sending a
 * 64-byte query and waiting for its reply (lost after TIMEOUT_MS), for
 * WARMUP seconds and then SECONDS measured. Mode `new-flow` sends each query
 * from a fresh socket (a new source port, as a resolver's clients do); mode
 * `long-lived` keeps one socket per client for the whole run. With `--pid`
 * it reads the proxy's CPU time (utime + stime of its process tree, all
 * threads) at the start and end of the measured window.
 *
 * With `--flows N` it instead opens N long-lived flows (N sockets, one query
 * each, answered), keeps them, and reports the proxy's RSS before and after.
 *
 * Prints one line of JSON: a {@linkcode LoadResult} or a {@linkcode MemoryResult}.
 *
 * Usage: bun bench/udp_load.ts --port P --mode new-flow|long-lived [--clients 50]
 *   [--warmup 2] [--seconds 10] [--timeout-ms 500] [--pid PID]
 *        bun bench/udp_load.ts --port P --flows 10000 --pid PID
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import process from "node:process";
import { parseArgs } from "node:util";
import { cpuSeconds, rssBytes } from "./proc_stats.ts";
import { type LoadResult, type MemoryResult, percentile } from "./udp_report.ts";

declare const Bun: any;

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    mode: { type: "string", default: "long-lived" },
    clients: { type: "string", default: "50" },
    warmup: { type: "string", default: "2" },
    seconds: { type: "string", default: "10" },
    "timeout-ms": { type: "string", default: "500" },
    pid: { type: "string" },
    flows: { type: "string" },
  },
});
const PORT = Number(values.port);
const PID = values.pid === undefined ? undefined : Number(values.pid);
const TIMEOUT_MS = Number(values["timeout-ms"]);
const QUERY_BYTES = 64;
const connect = { hostname: "127.0.0.1", port: PORT };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One client: its socket and the query it waits for. */
interface Client {
  id: number;
  socket: any;
  seq: number;
  sentAt: number;
  /** Waiting for a reply to `seq`. */
  waiting: boolean;
  query: Uint8Array;
}

let measuring = false;
let stopped = false;
let replies = 0;
let lost = 0;
let errors = 0;
let latencies = new Float64Array(1 << 20);
let latencyCount = 0;

function record(us: number): void {
  if (latencyCount === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[latencyCount++] = us;
}

/** Opens a connected socket whose replies go to `client`. */
function openSocket(client: Client): Promise<any> {
  return Bun.udpSocket({
    connect,
    socket: {
      data(_socket: any, data: Uint8Array) {
        if (!client.waiting || data.length < 8) return;
        const view = new DataView(data.buffer, data.byteOffset, 8);
        if (view.getUint32(0, true) !== client.id || view.getUint32(4, true) !== client.seq) return;
        client.waiting = false;
        if (measuring) {
          replies++;
          record((performance.now() - client.sentAt) * 1000);
        }
        void send(client, false);
      },
      error() {
        errors++;
      },
    },
  });
}

/** Sends the client's next query, from a fresh socket in `new-flow` mode. */
async function send(client: Client, fresh: boolean): Promise<void> {
  if (stopped) return;
  if (fresh || values.mode === "new-flow") {
    client.socket?.close();
    client.socket = undefined;
    client.socket = await openSocket(client);
  }
  client.seq++;
  new DataView(client.query.buffer).setUint32(4, client.seq, true);
  client.waiting = true;
  client.sentAt = performance.now();
  client.socket.send(client.query);
}

function newClient(id: number): Client {
  const query = new Uint8Array(QUERY_BYTES).fill(0x71);
  new DataView(query.buffer).setUint32(0, id, true);
  return { id, socket: undefined, seq: 0, sentAt: 0, waiting: false, query };
}

async function load(): Promise<LoadResult> {
  const clients = Array.from({ length: Number(values.clients) }, (_, i) => newClient(i));
  const timeouts = setInterval(() => {
    const now = performance.now();
    for (const client of clients) {
      if (client.waiting && now - client.sentAt > TIMEOUT_MS) {
        client.waiting = false;
        if (measuring) lost++;
        void send(client, true);
      }
    }
  }, 50);
  for (const client of clients) await send(client, true);
  await sleep(Number(values.warmup) * 1000);
  const cpuBefore = PID === undefined ? undefined : cpuSeconds(PID);
  const started = performance.now();
  measuring = true;
  await sleep(Number(values.seconds) * 1000);
  measuring = false;
  const seconds = (performance.now() - started) / 1000;
  const cpuAfter = PID === undefined ? undefined : cpuSeconds(PID);
  stopped = true;
  clearInterval(timeouts);
  for (const client of clients) client.socket?.close();
  const sorted = latencies.subarray(0, latencyCount).sort();
  return {
    seconds,
    replies,
    lost,
    errors,
    p50Us: percentile(sorted, 50),
    p99Us: percentile(sorted, 99),
    proxyCpuSeconds: cpuBefore === undefined ? undefined : cpuAfter! - cpuBefore,
  };
}

/** Opens `count` flows, a few hundred at a time, each answered once and kept. */
async function openFlows(count: number): Promise<MemoryResult> {
  if (PID === undefined) throw new Error("udp_load: --flows needs --pid");
  const rssBefore = rssBytes(PID);
  const sockets: any[] = [];
  let answered = 0;
  let nextId = 0;
  const one = async () => {
    while (nextId < count) {
      const id = nextId++;
      let resolve = () => {};
      const done = new Promise<void>((r) => (resolve = r));
      const socket = await Bun.udpSocket({
        connect,
        socket: {
          data() {
            answered++;
            resolve();
          },
          error() {
            errors++;
          },
        },
      });
      sockets.push(socket);
      const query = new Uint8Array(QUERY_BYTES).fill(0x71);
      new DataView(query.buffer).setUint32(0, id, true);
      socket.send(query);
      const timer = setTimeout(resolve, 2000);
      await done;
      clearTimeout(timer);
    }
  };
  await Promise.all(Array.from({ length: 200 }, one));
  await sleep(1000);
  const rssAfter = rssBytes(PID);
  for (const socket of sockets) socket.close();
  return { flows: count, answered, rssBefore, rssAfter };
}

const result = values.flows === undefined ? await load() : await openFlows(Number(values.flows));
console.log(JSON.stringify(result));
process.exit(0);
