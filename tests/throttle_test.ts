/**
 * max_bytes_per_second, measured at the receiver over real loopback sockets
 * on the adapter of the runtime that runs the tests: every one-second window
 * after the first carries the rate within ±25 %, in both directions, and
 * every byte arrives.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../src/balancer/balancer.ts";
import { NO_EVENTS } from "../src/balancer/events.ts";
import { ThrottledSide } from "../src/balancer/pipe.ts";
import { parseConfig } from "../src/config/load.ts";
import type { Conn } from "../src/runtime/types.ts";
import {
  concat,
  configText,
  connect,
  eventually,
  net,
  randomBytes,
  sha256,
  within,
} from "./_helpers.ts";
import { type Arrival, assertPaced } from "./_pacing.ts";

const RATE = 100 * 1024;
const SIZE = 500_000;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Writes all of `data` to `conn` in 64 KiB pieces, waiting for each drain. */
async function sendAll(conn: Conn, data: Uint8Array, drained: () => Promise<void>) {
  for (let offset = 0; offset < data.length; offset += 65536) {
    if (!conn.write(data.subarray(offset, offset + 65536))) await drained();
  }
}

/**
 * A backend that records when each chunk it receives arrives and answers a
 * FIN with its own; with `download`, it sends that as fast as it is taken
 * instead, then half-closes or closes (`then`).
 */
function pacingBackend(download?: Uint8Array, then: "end" | "close" = "end") {
  const arrivals: Arrival[] = [];
  const chunks: Uint8Array[] = [];
  let ended = false;
  const conns = new Set<Conn>();
  const listener = net.listen({
    hostname: "127.0.0.1",
    port: 0,
    onConnection(conn) {
      conns.add(conn);
      let drained: (() => void) | undefined;
      conn.setHandlers({
        data(chunk) {
          arrivals.push({ at: performance.now(), bytes: chunk.length });
          chunks.push(chunk.slice());
        },
        drain: () => drained?.(),
        end() {
          ended = true;
          // A download ends (or closes) once it is all written.
          if (download === undefined) conn.end();
        },
        close: () => conns.delete(conn),
      });
      if (download === undefined) return;
      void sendAll(conn, download, () => new Promise((resolve) => (drained = resolve)))
        .then(() => then === "end" ? conn.end() : conn.close());
    },
  });
  cleanups.push(() => {
    listener.close();
    for (const conn of conns) conn.reset();
  });
  return {
    address: `127.0.0.1:${listener.address.port}`,
    arrivals,
    received: () => concat(chunks),
    get ended() {
      return ended;
    },
  };
}

async function start(backendAddress: string): Promise<Balancer> {
  const config = configText([backendAddress], 'max_bytes_per_second = "100KiB"');
  const lb = await Balancer.start(parseConfig(config), { net, events: NO_EVENTS });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return lb;
}

describe(`max_bytes_per_second on ${net.runtime}`, () => {
  it("paces a download: every second after the first carries 100 KiB ±25 %", async () => {
    const payload = randomBytes(SIZE, 7);
    const backend = pacingBackend(payload);
    const lb = await start(backend.address);
    const arrivals: Arrival[] = [];
    const chunks: Uint8Array[] = [];
    const conn = await net.connect(lb.addresses[0]!);
    let ended!: () => void;
    let closed!: () => void;
    const endedP = new Promise<void>((resolve) => (ended = resolve));
    const closedP = new Promise<void>((resolve) => (closed = resolve));
    conn.setHandlers({
      data(chunk) {
        arrivals.push({ at: performance.now(), bytes: chunk.length });
        chunks.push(chunk.slice());
      },
      drain() {},
      end: () => ended(),
      close() {
        ended();
        closed();
      },
    });
    await within(endedP, 15_000, "the whole download");
    assert.equal(sha256(concat(chunks)), sha256(payload), "every byte, in order");
    assertPaced(arrivals, SIZE, RATE);
    conn.close();
    await closedP;
    await eventually(() => lb.stats.activeConnections === 0, "the session to end");
    assert.equal(lb.stats.pendingTimers, 0, "no timer left behind");
    assert.equal(ThrottledSide.timers, 0, "no pace timer left behind");
  });

  it("paces an upload: every second after the first carries 100 KiB ±25 %", async () => {
    const backend = pacingBackend();
    const lb = await start(backend.address);
    const client = await connect(lb.addresses[0]!.port);
    const payload = randomBytes(SIZE, 8);
    await client.send(payload, 65536);
    client.conn.end();
    await within(client.closed, 15_000, "the whole upload, and the backend's FIN back");
    assert.ok(backend.ended, "the client's FIN reached the backend");
    assert.equal(sha256(backend.received()), sha256(payload), "every byte, in order");
    assertPaced(backend.arrivals, SIZE, RATE);
    await eventually(() => lb.stats.activeConnections === 0, "the session to end");
    assert.equal(ThrottledSide.timers, 0, "no pace timer left behind");
  });

  it("a backend that closes right after its last byte has every byte delivered at the pace", async () => {
    const payload = randomBytes(350_000, 9);
    const backend = pacingBackend(payload, "close");
    const lb = await start(backend.address);
    const client = await connect(lb.addresses[0]!.port);
    const arrivals: Arrival[] = [];
    let seen = 0;
    const poll = setInterval(() => {
      const length = client.receivedLength();
      if (length > seen) arrivals.push({ at: performance.now(), bytes: length - seen });
      seen = length;
    }, 5);
    cleanups.push(() => clearInterval(poll));
    // Our FIN first: the backend's socket closes as soon as its bytes are out.
    client.conn.end();
    await within(client.closed, 15_000, "the whole download and the close");
    clearInterval(poll);
    const length = client.receivedLength();
    if (length > seen) arrivals.push({ at: performance.now(), bytes: length - seen });
    assert.equal(sha256(client.received()), sha256(payload), "every byte, in order");
    assertPaced(arrivals, payload.length, RATE);
    await eventually(() => lb.stats.activeConnections === 0, "the session to end");
    assert.equal(ThrottledSide.timers, 0, "no pace timer left behind");
  });
});
