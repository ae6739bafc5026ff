/**
 * The HealthChecker alone, against real loopback backends: rise and fall
 * counted over a scripted run of real send/expect probes, a pass resetting
 * the failure count and a failure the pass count, passive checks that
 * probe only a backend real connects took down, a drained backend staying
 * drained, the send/expect exchange and its failure reasons, the probe
 * timeout, and stop() leaving no timer, probe or socket behind.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { HealthChecker } from "../../../src/balancer/upstream/health.ts";
import { Pool } from "../../../src/balancer/upstream/pool.ts";
import { type Events, NO_EVENTS } from "../../../src/balancer/events.ts";
import type { HealthConfig } from "../../../src/config/config.ts";
import type { Conn, Net } from "../../../src/runtime/types.ts";
import {
  addressOf,
  bytes,
  closedPort,
  eventually,
  liveTimers,
  net,
  pythonPeer,
  sleep,
  text,
} from "../../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What a scripted backend does with one probe. */
type Step =
  | "pass" // answers "OK\n" once the probe's "PING\n" is in
  | "fail" // answers "NO\n" and closes
  | "silent" // accepts and says nothing
  | "split" // answers "O", then "K" 30 ms later
  | "long"; // answers 60 characters that are not "OK", and closes

/**
 * A real loopback backend whose connection `i` does `script[i]` (the last
 * step for the rest), recording what each connection received and when it
 * closed.
 */
function scriptedBackend(script: Step[]) {
  const received: string[] = [];
  const closedAt: number[] = [];
  const conns = new Set<Conn>();
  const listener = net.listen({
    hostname: "127.0.0.1",
    port: 0,
    onConnection(conn) {
      const i = received.length;
      const step = script[Math.min(i, script.length - 1)]!;
      received.push("");
      conns.add(conn);
      let answered = false;
      conn.setHandlers({
        data(chunk) {
          received[i] += text(chunk);
          if (answered || !received[i]!.includes("\n")) return;
          answered = true;
          if (step === "pass") conn.write(bytes("OK\n"));
          if (step === "fail") (conn.write(bytes("NO\n")), conn.end());
          if (step === "long") (conn.write(bytes("x".repeat(60))), conn.end());
          if (step === "split") {
            conn.write(bytes("O"));
            setTimeout(() => conn.write(bytes("K")), 30);
          }
        },
        end: () => conn.close(),
        drain() {},
        close() {
          conns.delete(conn);
          closedAt[i] = performance.now();
        },
      });
    },
  });
  const backend = {
    address: addressOf(listener),
    received,
    closedAt,
    get connections() {
      return received.length;
    },
    get open() {
      return conns.size;
    },
    close() {
      listener.close();
      for (const conn of conns) conn.reset();
    },
  };
  cleanups.push(() => backend.close());
  return backend;
}

/**
 * A loopback port whose connects never complete: a python3 listener with a
 * backlog of one, already full, so the kernel drops further SYNs.
 */
async function blackholeBackend() {
  const peer = await pythonPeer(
    ["fill = socket.create_connection(s.getsockname())"],
    ["sys.stdin.read()"],
  );
  cleanups.push(() => peer.close());
  return peer;
}

/** A probe as the events told it. */
interface Probe {
  failure: string | undefined;
  ms: number;
  /** The backend's state when it was told (the checker counts it right after). */
  healthy: boolean;
}

/**
 * A HealthChecker watching one backend "a" at `address`, with the events it
 * tells recorded: every probe, and each change with the number of probes
 * told before it.
 */
function watch(address: string, health: Partial<HealthConfig>, probeNet: Net = net) {
  const [hostname, port] = address.split(":");
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
    probed: (_f, backend, failure, ms) =>
      void probes.push({ failure, ms, healthy: backend.healthy }),
    backendDown: (_f, _b, reason) => void changes.push(`down after ${probes.length}: ${reason}`),
    backendUp: (_f, _b, reason) => void changes.push(`up after ${probes.length}: ${reason}`),
  };
  const checker = new HealthChecker({
    config: { active: true, intervalMs: 20, timeoutMs: 1000, rise: 1, fall: 1, ...health },
    net: probeNet,
    pool,
    events,
    frontend: { name: "web", localAddress: "127.0.0.1:0" },
  });
  cleanups.push(() => checker.stop());
  return { checker, pool, backend: pool.backends[0]!, probes, changes };
}

const PING = { send: "PING\n", expect: "OK" };

describe(`HealthChecker on ${net.runtime}`, () => {
  it("counts fall failures and rise passes in a row: a pass resets the failures, a failure the passes", async () => {
    const script: Step[] = [
      "pass", // 1
      "fail", // 2: one failure
      "pass", // 3: failures back to 0
      "fail", // 4
      "fail", // 5: two in a row, down
      "pass", // 6
      "pass", // 7
      "fail", // 8: passes back to 0
      "pass", // 9
      "pass", // 10
      "pass", // 11: three in a row, up
    ];
    const server = scriptedBackend(script);
    const { checker, probes, changes, backend } = watch(server.address, {
      ...PING,
      fall: 2,
      rise: 3,
    });
    const started = performance.now();
    checker.start();
    await eventually(() => probes.length >= script.length + 2, "13 probes", 3000);
    const took = performance.now() - started;
    checker.stop();
    assert.deepEqual(changes, [
      'down after 5: answer did not match "OK": received "NO\\n" (closed)',
      "up after 11: 3 health checks passed",
    ]);
    assert.deepEqual(
      probes.slice(0, script.length).map((p) => p.failure === undefined ? "pass" : "fail"),
      script,
    );
    assert.equal(backend.healthy, true);
    assert.equal(backend.up, true);
    // Every probe sent exactly `send`, once per connection.
    assert.ok(server.received.slice(0, 13).every((r) => r === "PING\n"), String(server.received));
    // 13 probes 20 ms apart (plus up to 10% jitter): not sooner, and not much later.
    assert.ok(took >= 12 * 20 && took <= 13 * 22 + 1000, `13 probes took ${took} ms`);
  });

  it("a drained backend stays drained and out of the pool across a failure and a pass", async () => {
    const server = scriptedBackend(["fail", "pass"]);
    const { checker, probes, changes, backend } = watch(server.address, PING);
    backend.admin = "draining";
    checker.start();
    await eventually(() => probes.length >= 1, "the failing probe", 2000);
    assert.equal(backend.state, "draining");
    assert.equal(backend.up, false);
    await eventually(() => changes.length >= 2, "the backend passing again", 2000);
    checker.stop();
    assert.match(changes[0]!, /^down after 1: /);
    assert.equal(changes[1], "up after 2: 1 health checks passed");
    assert.equal(backend.healthy, true, "health followed the probes");
    assert.equal(backend.state, "draining", "the operator's drain is kept");
    assert.equal(backend.up, false, "a drained backend takes no new connection");
    backend.admin = "enabled";
    assert.equal(backend.up, true);
  });

  it("without active checks, probes only a backend that fall real connects took down, until it rises", async () => {
    const server = scriptedBackend(["pass"]);
    const { checker, pool, probes, changes, backend } = watch(server.address, {
      active: false,
      intervalMs: 100,
      fall: 2,
      rise: 2,
    });
    checker.start();
    await sleep(250);
    assert.equal(server.connections, 0, "no probe while the backend is up");
    pool.connectFailed(backend, "connection refused");
    pool.connectSucceeded(backend); // a real connect that worked ends the streak
    pool.connectFailed(backend, "connection refused");
    assert.equal(backend.healthy, true, "fail, success, fail is not two in a row");
    pool.connectFailed(backend, "connection refused");
    assert.equal(backend.healthy, false, "two failed connects in a row");
    const downAt = performance.now();
    await eventually(() => changes.length >= 2, "the backend coming back", 2000);
    const upAfter = performance.now() - downAt;
    assert.deepEqual(changes, [
      "down after 0: connection refused",
      "up after 2: 2 health checks passed",
    ]);
    // Two probes 100 ms apart, the first 100 ms after going down (plus up to 10% jitter).
    assert.ok(upAfter >= 195 && upAfter <= 220 + 500, `up after ${upAfter} ms`);
    await sleep(300);
    assert.equal(probes.length, 2, "no probe once it is up again");
    assert.equal(server.connections, 2);
  });

  it("send/expect: an answer in pieces matches; a wrong, long or missing answer fails with a quote", async () => {
    const server = scriptedBackend(["split", "long", "silent"]);
    const { checker, probes } = watch(server.address, { ...PING, timeoutMs: 300 });
    checker.start();
    await eventually(() => probes.length >= 3, "three probes", 3000);
    checker.stop();
    assert.deepEqual(probes.map((p) => p.failure), [
      undefined,
      `answer did not match "OK": received "${"x".repeat(40)}"… (closed)`,
      'timed out after 300ms before sending "OK"',
    ]);
    // The split answer took its 30 ms to complete.
    assert.ok(probes[0]!.ms >= 25 && probes[0]!.ms <= 500, `split answer in ${probes[0]!.ms} ms`);
  });

  it("without expect, a connect passes and a refused connect fails, naming why", async () => {
    const server = scriptedBackend(["silent"]);
    const up = watch(server.address, {});
    up.checker.start();
    await eventually(() => up.probes.length >= 1, "a probe", 2000);
    up.checker.stop();
    assert.equal(up.probes[0]!.failure, undefined);
    assert.equal(server.received[0], "", "nothing sent without send");
    await eventually(() => server.open === 0, "the probe's connection closed", 1000);

    const down = watch(`127.0.0.1:${closedPort()}`, {});
    down.checker.start();
    await eventually(() => down.changes.length >= 1, "the refused probe", 2000);
    down.checker.stop();
    assert.match(down.changes[0]!, /^down after 1: .*refused/i);
  });

  it("a probe whose answer never comes fails after timeout, not sooner, and closes its connection", async () => {
    const server = scriptedBackend(["silent"]);
    const { checker, probes, backend } = watch(server.address, { ...PING, timeoutMs: 250 });
    checker.start();
    await eventually(() => probes.length >= 1, "the probe", 2000);
    checker.stop();
    const { failure, ms } = probes[0]!;
    assert.equal(failure, 'timed out after 250ms before sending "OK"');
    assert.ok(ms >= 245 && ms <= 250 + 400, `failed after ${ms} ms, not 250..650`);
    assert.equal(backend.healthy, false);
    await eventually(() => server.open === 0, "the probe's connection closed", 1000);
  });

  it("a connect that never completes fails after timeout, not sooner", async () => {
    const blackhole = await blackholeBackend();
    const { checker, probes } = watch(`127.0.0.1:${blackhole.port}`, { timeoutMs: 250 });
    checker.start();
    await eventually(() => probes.length >= 1, "the probe", 2000);
    checker.stop();
    const { failure, ms } = probes[0]!;
    assert.equal(failure, "health check timed out after 250ms");
    assert.ok(ms >= 245 && ms <= 250 + 400, `failed after ${ms} ms, not 250..650`);
  });

  it("stop() while a connect hangs clears the probe's timer at once", async () => {
    const blackhole = await blackholeBackend();
    const timers = liveTimers(cleanups);
    const { checker, probes } = watch(`127.0.0.1:${blackhole.port}`, { timeoutMs: 3000 });
    checker.start();
    await sleep(100); // the probe (after 10..12 ms) is connecting, and will not get through
    assert.ok(timers.live.size > 0, "the probe waits on its timeout");
    checker.stop();
    await sleep(50);
    assert.equal(timers.live.size, 0, `${timers.live.size} timers left after stop`);
    timers.restore();
    assert.equal(probes.length, 0, "the stopped probe is not told");
  });

  it("stop() during a probe closes its connection at once and leaves no timer", async () => {
    const timers = liveTimers(cleanups);
    const server = scriptedBackend(["silent"]);
    const { checker, probes } = watch(server.address, { ...PING, timeoutMs: 3000 });
    checker.start();
    await eventually(() => server.connections >= 1, "the probe's connection", 2000);
    await sleep(20); // the probe has sent PING and waits for its answer
    assert.ok(timers.live.size > 0, "the probe waits on its timeout");
    const stoppedAt = performance.now();
    checker.stop();
    await eventually(() => server.open === 0, "the probe's connection closed", 1000);
    const closedAfter = server.closedAt[0]! - stoppedAt;
    assert.ok(closedAfter >= 0 && closedAfter <= 500, `closed ${closedAfter} ms after stop`);
    await sleep(100);
    assert.equal(timers.live.size, 0, `${timers.live.size} timers left after stop`);
    timers.restore();
    await sleep(100);
    assert.equal(server.connections, 1, "no probe after stop");
    assert.equal(probes.length, 0, "the stopped probe is not told");
  });

  it("stop() while a probe is still connecting leaves no connection and no timer", async () => {
    const timers = liveTimers(cleanups);
    const server = scriptedBackend(["silent"]);
    let stopNow: (() => void) | undefined;
    // The runtime's own connect, with stop() called as soon as it has begun.
    const stoppingNet: Net = Object.create(net, {
      connect: {
        value: (endpoint: Parameters<Net["connect"]>[0]) => {
          const opening = net.connect(endpoint);
          stopNow?.();
          return opening;
        },
      },
    });
    const { checker, probes } = watch(server.address, { ...PING, timeoutMs: 3000 }, stoppingNet);
    let stoppedAt = 0;
    stopNow = () => {
      stopNow = undefined;
      stoppedAt = performance.now();
      checker.stop();
    };
    checker.start();
    await eventually(
      () => stoppedAt > 0 && server.connections >= 1,
      "the probe's connection",
      2000,
    );
    await eventually(() => server.open === 0, "the probe's connection closed", 1000);
    const closedAfter = server.closedAt[0]! - stoppedAt;
    assert.ok(closedAfter >= 0 && closedAfter <= 500, `closed ${closedAfter} ms after stop`);
    await sleep(100);
    assert.equal(timers.live.size, 0, `${timers.live.size} timers left after stop`);
    timers.restore();
    assert.equal(server.received[0], "", "a stopped probe sends nothing");
    assert.equal(probes.length, 0, "the stopped probe is not told");
  });
});
