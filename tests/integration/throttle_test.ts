/**
 * max_bytes_per_second, measured at the receiver over real loopback sockets
 * on the adapter of the runtime that runs the tests: every one-second window
 * after the first carries the rate within ±25 %, in both directions, and
 * every byte arrives. (tests/e2e/serve_test.ts checks the same of the programs.)
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import { NO_EVENTS } from "../../src/balancer/events.ts";
import { ThrottledSide } from "../../src/balancer/session/pipe.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configText, eventually, net, randomBytes, sha256, within } from "../_helpers/index.ts";
import { assertPaced, pacingBackend, pacingClient } from "../_helpers/pacing.ts";

const RATE = 100 * 1024;
const SIZE = 500_000;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function backend(...args: Parameters<typeof pacingBackend>) {
  const b = pacingBackend(...args);
  cleanups.push(() => b.close());
  return b;
}

async function start(backendAddress: string): Promise<Balancer> {
  const config = configText([backendAddress], 'max_bytes_per_second = "100KiB"');
  const lb = await Balancer.start(parseConfig(config), { net, events: NO_EVENTS });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return lb;
}

/** The session is over, with no timer of its own or of its pace left behind. */
async function nothingLeft(lb: Balancer) {
  await eventually(() => lb.stats.activeConnections === 0, "the session to end");
  assert.equal(lb.stats.pendingTimers, 0, "no timer left behind");
  assert.equal(ThrottledSide.timers, 0, "no pace timer left behind");
}

describe(`max_bytes_per_second on ${net.runtime}`, () => {
  it("paces a download: every second after the first carries 100 KiB ±25 %", async () => {
    const payload = randomBytes(SIZE, 7);
    const lb = await start(backend(payload).address);
    const client = await pacingClient(lb.addresses[0]!.port);
    await within(client.ended, 15_000, "the whole download");
    assert.equal(sha256(client.received()), sha256(payload), "every byte, in order");
    assertPaced(client.arrivals, SIZE, RATE);
    client.conn.close();
    await client.closed;
    await nothingLeft(lb);
  });

  it("paces an upload: every second after the first carries 100 KiB ±25 %", async () => {
    const b = backend();
    const lb = await start(b.address);
    const payload = randomBytes(SIZE, 8);
    const client = await pacingClient(lb.addresses[0]!.port, payload);
    await within(client.closed, 15_000, "the whole upload, and the backend's FIN back");
    const got = b.connection!;
    assert.equal(sha256(got.received()), sha256(payload), "every byte, in order");
    assertPaced(got.arrivals, SIZE, RATE);
    await nothingLeft(lb);
  });

  it("a backend that closes right after its last byte has every byte delivered at the pace", async () => {
    const payload = randomBytes(350_000, 9);
    const lb = await start(backend(payload, "close").address);
    const client = await pacingClient(lb.addresses[0]!.port);
    // Our FIN first: the backend's socket closes as soon as its bytes are out.
    client.conn.end();
    await within(client.closed, 15_000, "the whole download and the close");
    assert.equal(sha256(client.received()), sha256(payload), "every byte, in order");
    assertPaced(client.arrivals, payload.length, RATE);
    await nothingLeft(lb);
  });

  it("a connection whose kept bytes are still being paced out is not idle", async () => {
    const b = backend();
    const config = configText([b.address], 'max_bytes_per_second = "1KiB"\nidle_timeout = "500ms"');
    const lb = await Balancer.start(parseConfig(config), { net, events: NO_EVENTS });
    cleanups.push(() => lb.stop({ graceMs: 0 }));
    // One read of 5 kB, 5 s of writing at 1 KiB/s: no byte is read meanwhile.
    const client = await pacingClient(lb.addresses[0]!.port);
    client.conn.write(randomBytes(5_000, 4));
    let ended = false;
    client.ended.then(() => (ended = true));
    await eventually(() => b.connection !== undefined, "the backend's connection");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const got = b.connection!.received().length;
    assert.equal(ended, false, `closed as idle after ${got} bytes while pacing out the rest`);
    assert.ok(got >= 1_000 && got <= 2_000, `${got} bytes in 1.5 s at 1 KiB/s`);
    // The backend goes: what the client side keeps for it is dropped, its timer cleared.
    b.close();
    await within(client.ended, 2_000, "the balancer to close the client");
    client.conn.close();
    await nothingLeft(lb);
  });
});
