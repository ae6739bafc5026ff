/**
 * UDP flows in process, over real loopback datagram sockets on the adapter
 * of the runtime that runs the tests: a flow per client address and port,
 * round robin between flows, datagrams whole and in order, `responses`,
 * idle_timeout, max_connections, a backend found unreachable by ICMP, and
 * the sockets closed at the end.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import type { Events } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { DatagramSocket, Endpoint } from "../../src/runtime/types.ts";
import { eventually, net, randomBytes, sha256, sleep } from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
let balancer: Balancer | undefined;

afterEach(async () => {
  if (balancer !== undefined) {
    await balancer.stop({ graceMs: 0 });
    balancer = undefined;
  }
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

const LOOPBACK = "127.0.0.1";

/** A UDP backend answering each datagram with `tag` then the datagram, counting its clients. */
async function backend(tag: string) {
  const sources = new Set<string>();
  let received = 0;
  const prefix = new TextEncoder().encode(tag);
  const socket: DatagramSocket = await net.bindDatagram!({
    hostname: LOOPBACK,
    port: 0,
    handlers: {
      message(data, from) {
        received++;
        sources.add(`${from.hostname}:${from.port}`);
        const reply = new Uint8Array(prefix.length + data.length);
        reply.set(prefix);
        reply.set(data, prefix.length);
        socket.send(reply, from);
      },
      error() {},
    },
  });
  cleanups.push(() => socket.close());
  return {
    socket,
    port: socket.address.port,
    sources,
    get received() {
      return received;
    },
  };
}

/** A client socket collecting what comes back to it. */
async function client() {
  const replies: Uint8Array[] = [];
  const socket = await net.bindDatagram!({
    hostname: LOOPBACK,
    port: 0,
    handlers: { message: (data) => void replies.push(data), error() {} },
  });
  cleanups.push(() => socket.close());
  return { socket, replies };
}

/** The text of a reply's tag (the backend's name, its first byte). */
const tagOf = (reply: Uint8Array) => String.fromCharCode(reply[0]!);

/** Starts a balancer with one UDP frontend in front of `ports`. */
async function start(ports: number[], frontend: string, events?: Partial<Events>) {
  const backends = ports.map((port) =>
    `[[frontend.backend]]\nforward_to = "${LOOPBACK}:${port}"\n`
  );
  const config = parseConfig(
    `[frontend]\nbind_on = "udp:${LOOPBACK}:0"\n${frontend}\n${backends.join("")}`,
  );
  balancer = await Balancer.start(config, { net, ...(events ? { events } : {}) });
  return balancer.addresses[0]!;
}

/** Sends `data` from `from` and waits for its `count`-th reply. */
async function ask(
  from: Awaited<ReturnType<typeof client>>,
  to: Endpoint,
  data: Uint8Array,
  count = from.replies.length + 1,
) {
  assert.ok(from.socket.send(data, to));
  await eventually(() => from.replies.length >= count, "a reply", 5000);
  return from.replies[count - 1]!;
}

describe(`UDP flows (${net.runtime})`, () => {
  it("gives each client address and port a flow of its own, round robin, and ends it after `responses`", async () => {
    const [a, b] = [await backend("a"), await backend("b")];
    const at = await start([a.port, b.port], "responses = 1");
    const tags: string[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await client();
      const reply = await ask(c, at, new TextEncoder().encode(`q${i}`));
      tags.push(tagOf(reply));
      assert.equal(new TextDecoder().decode(reply.subarray(1)), `q${i}`);
    }
    assert.deepEqual(tags, ["a", "b", "a", "b", "a", "b"]);
    await eventually(
      () => balancer!.stats.activeConnections === 0,
      "flows to end after their response",
      2000,
    );
    // Each flow had a socket of its own: six source ports at the backends.
    assert.equal(a.sources.size + b.sources.size, 6);
  });

  it("keeps datagram boundaries and order on a long flow, all to one backend, and a second client to the other", async () => {
    const [a, b] = [await backend("a"), await backend("b")];
    const at = await start([a.port, b.port], "");
    const first = await client();
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 200; i++) {
      const size = 1 + ((i * 7919) % 8192);
      const data = randomBytes(size, i + 1);
      sent.push(data);
      await ask(first, at, data);
    }
    for (let i = 0; i < 200; i++) {
      assert.equal(tagOf(first.replies[i]!), "a");
      assert.equal(sha256(first.replies[i]!.subarray(1)), sha256(sent[i]!));
    }
    const second = await client();
    assert.equal(tagOf(await ask(second, at, new Uint8Array([1]))), "b");
    assert.equal(balancer!.stats.activeConnections, 2);
    assert.equal(a.sources.size, 1, "one socket to a for the whole flow");
  });

  it("passes a 65,507-byte datagram both ways", async () => {
    const echo = await backend("e");
    const at = await start([echo.port], "");
    const c = await client();
    // The reply is one byte longer than the largest datagram: send one less.
    const data = randomBytes(65_506, 7);
    const reply = await ask(c, at, data);
    assert.equal(reply.length, 65_507);
    assert.equal(sha256(reply.subarray(1)), sha256(data));
  });

  it("ends a flow after idle_timeout; the client's next datagram starts a new one", async () => {
    const [a, b] = [await backend("a"), await backend("b")];
    const at = await start([a.port, b.port], `idle_timeout = "200ms"`);
    const c = await client();
    assert.equal(tagOf(await ask(c, at, new Uint8Array([1]))), "a");
    const quietFrom = performance.now();
    await eventually(() => balancer!.stats.activeConnections === 0, "the idle flow to end", 3000);
    const quiet = performance.now() - quietFrom;
    assert.ok(quiet >= 150 && quiet < 1500, `ended after ${quiet.toFixed(0)} ms of quiet`);
    assert.equal(tagOf(await ask(c, at, new Uint8Array([2]))), "b", "a new flow, the next backend");
  });

  it("turns new clients away past max_connections and counts them as refused", async () => {
    const echo = await backend("e");
    const refused: string[] = [];
    const at = await start([echo.port], "max_connections = 2", {
      refused: (_f, _p, why) => void refused.push(why),
    });
    const clients = [await client(), await client(), await client()];
    await ask(clients[0]!, at, new Uint8Array([0]));
    await ask(clients[1]!, at, new Uint8Array([1]));
    assert.ok(clients[2]!.socket.send(new Uint8Array([2]), at));
    await sleep(200);
    assert.equal(clients[2]!.replies.length, 0);
    assert.deepEqual(refused, ["frontend_full"]);
    assert.equal(balancer!.stats.activeConnections, 2);
  });

  it("moves a flow whose backend is unreachable (ICMP) to another, and counts it toward fall", async (t) => {
    if (net.runtime === "deno") return t.skip("Deno reports no ICMP errors on UDP sockets");
    const [a, b] = [await backend("a"), await backend("b")];
    // Passive checks only (no [frontend.health]): fall is 3 real failures.
    const at = await start([a.port, b.port], "");
    const c = await client();
    const d = await client();
    assert.equal(tagOf(await ask(c, at, new Uint8Array([1]))), "a");
    assert.equal(tagOf(await ask(d, at, new Uint8Array([1]))), "b");
    b.socket.close();
    // d's flow hears the port unreachable; its next datagram goes to a.
    assert.ok(d.socket.send(new Uint8Array([2]), at));
    await sleep(100);
    assert.equal(tagOf(await ask(d, at, new Uint8Array([3]))), "a");
    assert.equal(balancer!.status()[0]!.backends[0]!.active, 2, "both flows now on a");
    // New flows that round robin puts on b fail there too, until b is down.
    for (let i = 0; i < 8 && balancer!.status()[0]!.backends[1]!.state !== "down"; i++) {
      (await client()).socket.send(new Uint8Array([4]), at);
      await sleep(50);
    }
    assert.equal(balancer!.status()[0]!.backends[1]!.state, "down");
    const e = await client();
    assert.equal(tagOf(await ask(e, at, new Uint8Array([5]))), "a", "new flows go to a");
  });

  it("keeps flows to backends that stay through a reload that adds and removes backends", async () => {
    const [a, b, c] = [await backend("a"), await backend("b"), await backend("c")];
    const at = await start([a.port, b.port], "");
    const onA = await client();
    assert.equal(tagOf(await ask(onA, at, new Uint8Array([0]))), "a");
    const onB = await client();
    assert.equal(tagOf(await ask(onB, at, new Uint8Array([0]))), "b");
    const backends = [a.port, c.port].map((port) =>
      `[[frontend.backend]]\nforward_to = "${LOOPBACK}:${port}"\n`
    );
    const next = parseConfig(`[frontend]\nbind_on = "udp:${LOOPBACK}:0"\n${backends.join("")}`);
    // Queries on a's flow before, during and after the reload: every one answered, by a.
    let asked = 0;
    const loop = (async () => {
      for (; asked < 100; asked++) await ask(onA, at, new Uint8Array([asked & 0xff]));
    })();
    await sleep(20);
    const summary = await balancer!.reload(next);
    await loop;
    assert.deepEqual(summary.backendsAdded, [`default/${LOOPBACK}:${c.port}`]);
    assert.deepEqual(summary.backendsRemoved, [`default/${LOOPBACK}:${b.port}`]);
    assert.ok(onA.replies.every((reply) => tagOf(reply) === "a"), "a's flow stayed on a");
    assert.equal(onA.replies.length, 101);
    // b's open flow goes on; new flows go to a and c.
    assert.equal(tagOf(await ask(onB, at, new Uint8Array([1]))), "b");
    const tags = [];
    for (let i = 0; i < 2; i++) {
      tags.push(tagOf(await ask(await client(), at, new Uint8Array([i]))));
    }
    assert.deepEqual(tags.sort(), ["a", "c"]);
  });

  it("closes every flow's socket when stopped", async () => {
    const echo = await backend("e");
    const at = await start([echo.port], "");
    for (let i = 0; i < 5; i++) await ask(await client(), at, new Uint8Array([i]));
    assert.equal(balancer!.stats.activeConnections, 5);
    await balancer!.stop({ graceMs: 0 });
    assert.equal(balancer!.stats.activeConnections, 0);
    balancer = undefined;
    // The frontend's port is free again (Deno lets it go a tick or more after close).
    let again: DatagramSocket | undefined;
    for (let attempt = 0; again === undefined && attempt < 40; attempt++) {
      again = await net.bindDatagram!({
        hostname: LOOPBACK,
        port: at.port,
        handlers: { message() {} },
      })
        .catch(() => sleep(25).then(() => undefined));
    }
    assert.ok(again !== undefined, "the port is free within a second");
    again.close();
  });
});
