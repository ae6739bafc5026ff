/**
 * UDP health probes (`health.udp`) through the HealthChecker, against real
 * UDP responders on loopback: a DNS-like query answered with the expected
 * bytes brings a backend up, wrong bytes take it down after `fall`, a
 * closed port fails at once through ICMP (Bun, Node) or after the timeout
 * (Deno, which reports no ICMP), silence without `expect` passes, a binary
 * `send` arrives byte for byte, passive failures bring UDP probes that end
 * once the port answers again, and no probe leaves a socket or timer behind.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { HealthChecker } from "../../../src/balancer/upstream/health.ts";
import { Pool } from "../../../src/balancer/upstream/pool.ts";
import { type Events, NO_EVENTS } from "../../../src/balancer/events.ts";
import type { HealthConfig } from "../../../src/config/config.ts";
import type { DatagramSocket, Endpoint, Net } from "../../../src/runtime/types.ts";
import { eventually, liveTimers, net, sleep } from "../../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Whether the runtime reports ICMP port unreachable on a connected UDP socket. */
const seesIcmp = net.runtime !== "deno";

/** Bytes of latin1 text, one per character. */
function latin1(text: string): number[] {
  return Array.from(text, (c) => c.charCodeAt(0));
}

/** A DNS query for "who.test" type A, id 0x1234, as bytes written with \u00XX escapes. */
const DNS_QUERY = "\u0012\u0034\u0001\u0000\u0000\u0001\u0000\u0000\u0000\u0000\u0000\u0000" +
  "\u0003who\u0004test\u0000\u0000\u0001\u0000\u0001";
/** Its answer: "who.test A 127.0.0.2", flags 0x8180 (a response, no error). */
const DNS_ANSWER = "\u0012\u0034\u0081\u0080\u0000\u0001\u0000\u0001\u0000\u0000\u0000\u0000" +
  "\u0003who\u0004test\u0000\u0000\u0001\u0000\u0001" +
  "\u00c0\u000c\u0000\u0001\u0000\u0001\u0000\u0000\u0000\u003c\u0000\u0004\u007f\u0000\u0000\u0002";
/** What a good answer holds: the response flags, and the address 127.0.0.2. */
const DNS_EXPECT = "\u007f\u0000\u0000\u0002";

/** The runtime's bindDatagram, which every adapter has. */
function bindDatagram(): NonNullable<Net["bindDatagram"]> {
  const bind = net.bindDatagram;
  assert.ok(bind !== undefined, `${net.runtime} has no bindDatagram`);
  return bind;
}

/**
 * A real UDP responder on loopback (at `port`, or a free one) that records
 * each datagram and the port it came from, and answers `reply(datagram)`
 * unless that is undefined (silence).
 */
async function responder(
  reply: (data: Uint8Array) => string | undefined,
  port = 0,
  hostname = "127.0.0.1",
) {
  const received: { data: number[]; from: Endpoint }[] = [];
  let socket: DatagramSocket | undefined = undefined;
  socket = await bindDatagram()({
    hostname,
    port,
    handlers: {
      message(data, from) {
        received.push({ data: Array.from(data), from });
        const answer = reply(data);
        if (answer !== undefined) socket!.send(new Uint8Array(latin1(answer)), from);
      },
    },
  });
  const bound = socket;
  cleanups.push(() => bound.close());
  return {
    address: hostname.includes(":")
      ? `[${hostname}]:${bound.address.port}`
      : `${hostname}:${bound.address.port}`,
    port: bound.address.port,
    received,
    socket: bound,
  };
}

/** A UDP port nobody binds (bound, then closed). */
async function closedUdpPort(): Promise<number> {
  const socket = await bindDatagram()({
    hostname: "127.0.0.1",
    port: 0,
    handlers: { message() {} },
  });
  socket.close();
  return socket.address.port;
}

/**
 * The runtime's net, counting the datagram sockets it binds, sends on and
 * closes; `binding` is called as each bind has begun, before it is done.
 */
function countingNet(binding?: () => void) {
  const counts = { bound: 0, closed: 0, sent: 0 };
  const counting: Net = Object.create(net, {
    bindDatagram: {
      value: async (options: Parameters<NonNullable<Net["bindDatagram"]>>[0]) => {
        const binds = bindDatagram()(options);
        binding?.();
        const socket = await binds;
        counts.bound++;
        let closed = false;
        return {
          address: socket.address,
          send(data: Uint8Array, to?: Endpoint) {
            counts.sent++;
            return socket.send(data, to);
          },
          close() {
            if (!closed) counts.closed++;
            closed = true;
            socket.close();
          },
        } satisfies DatagramSocket;
      },
    },
  });
  return {
    net: counting,
    counts,
    get open() {
      return counts.bound - counts.closed;
    },
  };
}

/** A probe as the events told it. */
interface Probe {
  failure: string | undefined;
  ms: number;
}

/**
 * A HealthChecker with UDP probes watching one backend "a" at `address`,
 * recording every probe and each change with the number of probes before it.
 */
function watch(address: string, health: Partial<HealthConfig>, probeNet: Net = net) {
  const [, hostname, port] = /^\[?(.*?)\]?:(\d+)$/.exec(address)!;
  const pool = new Pool({
    algorithm: "round_robin",
    backends: [{
      name: "a",
      address,
      forwardTo: { hostname: hostname!, port: Number(port) },
      weight: 1,
    }],
  });
  const probes: Probe[] = [];
  const changes: string[] = [];
  const events: Events = {
    ...NO_EVENTS,
    probed: (_f, _b, failure, ms) => void probes.push({ failure, ms }),
    backendDown: (_f, _b, reason) => void changes.push(`down after ${probes.length}: ${reason}`),
    backendUp: (_f, _b, reason) => void changes.push(`up after ${probes.length}: ${reason}`),
  };
  const checker = new HealthChecker({
    config: {
      active: true,
      udp: true,
      intervalMs: 20,
      timeoutMs: 1000,
      rise: 1,
      fall: 1,
      ...health,
    },
    net: probeNet,
    pool,
    events,
    frontend: { name: "dns", localAddress: "udp:127.0.0.1:0" },
  });
  cleanups.push(() => checker.stop());
  return { checker, pool, backend: pool.backends[0]!, probes, changes };
}

describe(`UDP health probes on ${net.runtime}`, () => {
  it("a DNS-like query answered with the expected bytes brings a down backend up after rise", async () => {
    const dns = await responder((data) =>
      String.fromCharCode(...data) === DNS_QUERY ? DNS_ANSWER : undefined
    );
    const counting = countingNet();
    const { checker, backend, probes, changes } = watch(dns.address, {
      send: DNS_QUERY,
      expect: DNS_EXPECT,
      rise: 2,
    }, counting.net);
    backend.healthy = false;
    checker.start();
    await eventually(() => changes.length >= 1, "the backend coming up", 3000);
    checker.stop();
    assert.deepEqual(changes, ["up after 2: 2 health checks passed"]);
    assert.deepEqual(probes.slice(0, 2).map((p) => p.failure), [undefined, undefined]);
    // A reply on loopback takes far less than the 1000 ms timeout.
    assert.ok(
      probes.every((p) => p.ms >= 0 && p.ms < 300),
      `probes took ${probes.map((p) => p.ms)}`,
    );
    assert.equal(backend.healthy, true);
    // Each probe sent the query, byte for byte, from a socket of its own.
    assert.ok(dns.received.length >= 2);
    for (const { data } of dns.received) assert.deepEqual(data, latin1(DNS_QUERY));
    const ports = new Set(dns.received.map((r) => r.from.port));
    assert.equal(ports.size, dns.received.length, "one socket per probe");
    await eventually(() => counting.open === 0, "every probe socket closed", 1000);
  });

  it("a reply without the expected bytes fails each probe, and fall of them take the backend down", async () => {
    const wrong = await responder(() => "\u0012\u0034\u0081\u0083" + "x".repeat(50));
    const { checker, backend, probes, changes } = watch(wrong.address, {
      send: DNS_QUERY,
      expect: DNS_EXPECT,
      fall: 3,
    });
    checker.start();
    await eventually(() => changes.length >= 1, "the backend going down", 3000);
    checker.stop();
    const reason = `reply did not hold "\\u007f\\u0000\\u0000\\u0002": received ` +
      `"\\u00124\\u0081\\u0083${"x".repeat(36)}"…`;
    assert.deepEqual(changes, [`down after 3: ${reason}`]);
    assert.deepEqual(probes.slice(0, 3).map((p) => p.failure), [reason, reason, reason]);
    assert.equal(backend.healthy, false);
    assert.equal(wrong.received.length >= 3, true, "three probes reached the responder");
  });

  it(
    seesIcmp
      ? "a closed port fails the probe at once through ICMP port unreachable"
      : "a closed port fails the probe after the timeout (Deno reports no ICMP)",
    async () => {
      const counting = countingNet();
      const timeoutMs = seesIcmp ? 2000 : 300;
      const { checker, probes, changes } = watch(`127.0.0.1:${await closedUdpPort()}`, {
        send: DNS_QUERY,
        expect: DNS_EXPECT,
        timeoutMs,
      }, counting.net);
      checker.start();
      await eventually(() => probes.length >= 1, "the probe", 3000);
      checker.stop();
      assert.ok(counting.counts.sent >= 1, "the probe's datagram was sent");
      const { failure, ms } = probes[0]!;
      if (seesIcmp) {
        assert.equal(failure, "port unreachable (ICMP)");
        assert.ok(
          ms >= 0 && ms <= 200,
          `failed after ${ms} ms, not within 200 of a 2000 ms timeout`,
        );
      } else {
        assert.equal(failure, "no reply within 300ms");
        assert.ok(ms >= 295 && ms <= 300 + 400, `failed after ${ms} ms, not 300..700`);
      }
      assert.deepEqual(changes, [`down after 1: ${failure}`]);
      await eventually(() => counting.open === 0, "every probe socket closed", 1000);
    },
  );

  it("without expect, any reply passes at once and silence for the whole timeout passes", async () => {
    const answering = await responder(() => "?");
    const fast = watch(answering.address, { send: "ping", timeoutMs: 1000 });
    fast.checker.start();
    await eventually(() => fast.probes.length >= 1, "the answered probe", 3000);
    fast.checker.stop();
    assert.equal(fast.probes[0]!.failure, undefined);
    assert.ok(fast.probes[0]!.ms <= 300, `answered probe took ${fast.probes[0]!.ms} ms`);

    const silent = await responder(() => undefined);
    const counting = countingNet();
    const quiet = watch(silent.address, { send: "ping", timeoutMs: 250, fall: 1 }, counting.net);
    quiet.checker.start();
    await eventually(() => quiet.probes.length >= 2, "two silent probes", 3000);
    quiet.checker.stop();
    assert.deepEqual(quiet.probes.slice(0, 2).map((p) => p.failure), [undefined, undefined]);
    for (const { ms } of quiet.probes) {
      assert.ok(ms >= 245 && ms <= 250 + 400, `a silent probe passed after ${ms} ms, not 250..650`);
    }
    assert.deepEqual(quiet.changes, [], "the backend stays up");
    assert.equal(quiet.backend.healthy, true);
    assert.ok(silent.received.length >= 2, "the probes reached the responder");
    assert.deepEqual(silent.received[0]!.data, latin1("ping"));
    await eventually(() => counting.open === 0, "every probe socket closed", 1000);
  });

  it("a binary send arrives as exactly its bytes, and an unset send as an empty datagram", async () => {
    const echo = await responder(() => "ok");
    const binary = watch(echo.address, { send: "\u0000\u0001\u00ff", expect: "ok" });
    binary.checker.start();
    await eventually(() => echo.received.length >= 1, "the binary probe", 3000);
    binary.checker.stop();
    assert.deepEqual(echo.received[0]!.data, [0x00, 0x01, 0xff]);

    const empty = await responder(() => "ok");
    const bare = watch(empty.address, { expect: "ok" });
    bare.checker.start();
    await eventually(() => bare.probes.length >= 1, "the empty probe", 3000);
    bare.checker.stop();
    assert.equal(bare.probes[0]!.failure, undefined);
    assert.deepEqual(empty.received[0]!.data, []);
  });

  it("an IPv6 backend is probed from an IPv6 socket", async () => {
    const v6 = await responder(() => "pong", 0, "::1");
    const counting = countingNet();
    const { checker, probes } = watch(v6.address, { send: "ping", expect: "pong" }, counting.net);
    checker.start();
    await eventually(() => probes.length >= 1, "the probe", 3000);
    checker.stop();
    assert.equal(probes[0]!.failure, undefined);
    assert.equal(v6.received[0]!.from.hostname, "::1");
    await eventually(() => counting.open === 0, "every probe socket closed", 1000);
  });

  it("a send with a character past U+00FF is refused at once, naming the field", () => {
    assert.throws(
      () => watch("127.0.0.1:53", { send: "ok\u0100" }),
      { message: "health.send: character U+0100 at index 2 is not one byte (U+0000-U+00FF)" },
    );
  });

  it("without bindDatagram in the runtime, each probe fails saying why", async () => {
    const bare: Net = Object.create(net, { bindDatagram: { value: undefined } });
    const { checker, probes } = watch("127.0.0.1:53", { send: "x" }, bare);
    checker.start();
    await eventually(() => probes.length >= 1, "the probe", 2000);
    checker.stop();
    assert.equal(probes[0]!.failure, `UDP health probes are not available on ${net.runtime}`);
  });

  it("passive: failed flows take it down, and UDP probes bring it back once its port answers again", async () => {
    const port = await closedUdpPort();
    const counting = countingNet();
    const { checker, pool, backend, probes, changes } = watch(`127.0.0.1:${port}`, {
      active: false,
      send: "ping",
      expect: "pong",
      intervalMs: 100,
      timeoutMs: 150,
      fall: 2,
      rise: 2,
    }, counting.net);
    checker.start();
    await sleep(250);
    assert.equal(counting.counts.bound, 0, "no probe while the backend is up");
    pool.connectFailed(backend, "port unreachable (ICMP)");
    pool.connectFailed(backend, "port unreachable (ICMP)");
    assert.equal(backend.healthy, false, "two failed flows in a row");
    // Probes of the closed port fail, and keep it down.
    await eventually(() => probes.length >= 1, "a probe of the closed port", 2000);
    assert.equal(
      probes[0]!.failure,
      seesIcmp ? "port unreachable (ICMP)" : "no reply within 150ms",
    );
    assert.equal(backend.healthy, false);
    const pong = await responder(() => "pong", port);
    await eventually(() => changes.length >= 2, "the backend coming back", 3000);
    assert.equal(changes.length, 2);
    assert.equal(changes[0], "down after 0: port unreachable (ICMP)");
    assert.match(changes[1]!, /^up after \d+: 2 health checks passed$/);
    assert.deepEqual(probes.slice(-2).map((p) => p.failure), [undefined, undefined]);
    assert.ok(pong.received.length >= 2, "the probes reached the port once it answered");
    const probesWhenUp = probes.length;
    await sleep(300);
    assert.equal(probes.length, probesWhenUp, "no probe once it is up again");
    checker.stop();
    await eventually(() => counting.open === 0, "every probe socket closed", 1000);
  });

  it("stop() during a probe closes its socket at once and leaves no timer", async () => {
    const timers = liveTimers(cleanups);
    const silent = await responder(() => undefined);
    const counting = countingNet();
    const { checker, probes } = watch(silent.address, {
      send: "ping",
      expect: "pong",
      timeoutMs: 3000,
    }, counting.net);
    checker.start();
    await eventually(() => silent.received.length >= 1, "the probe's datagram", 2000);
    assert.equal(counting.open, 1, "the probe waits on its socket");
    assert.ok(timers.live.size > 0, "the probe waits on its timeout");
    checker.stop();
    assert.equal(counting.open, 0, "the probe's socket closed by stop()");
    await sleep(50);
    assert.equal(timers.live.size, 0, `${timers.live.size} timers left after stop`);
    timers.restore();
    await sleep(100);
    assert.equal(silent.received.length, 1, "no probe after stop");
    assert.equal(probes.length, 0, "the stopped probe is not told");
  });

  it("stop() while a probe's socket is still binding closes it once bound, sending nothing", async () => {
    const timers = liveTimers(cleanups);
    const silent = await responder(() => undefined);
    let stopNow: (() => void) | undefined;
    const counting = countingNet(() => stopNow?.());
    const { checker, probes } = watch(silent.address, {
      send: "ping",
      expect: "pong",
      timeoutMs: 3000,
    }, counting.net);
    stopNow = () => {
      stopNow = undefined;
      checker.stop();
    };
    checker.start();
    await eventually(() => counting.counts.bound >= 1, "the probe's socket bound", 2000);
    await eventually(() => counting.open === 0, "the probe's socket closed", 1000);
    await sleep(100);
    assert.equal(timers.live.size, 0, `${timers.live.size} timers left after stop`);
    timers.restore();
    assert.equal(counting.counts.sent, 0, "a stopped probe sends nothing");
    assert.equal(silent.received.length, 0);
    assert.equal(probes.length, 0, "the stopped probe is not told");
  });
});
