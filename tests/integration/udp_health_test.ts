/**
 * UDP health probes through a real UDP frontend (Balancer in process, real
 * loopback datagram sockets): a backend whose probe reply lacks `expect` is
 * taken down and new flows all go to the other; once it answers right it
 * comes back and takes flows again; a backend whose port closes is taken
 * down by the probes (through ICMP at once on Bun and Node, through the
 * timeout on Deno); and the supervisor's prober (`workers`) probes over UDP
 * as a worker would.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import { type Events, NO_EVENTS } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config, HealthConfig } from "../../src/config/config.ts";
import type { DatagramSocket, Endpoint } from "../../src/runtime/types.ts";
import type { HealthState } from "../../src/balancer/health_state.ts";
import { Prober } from "../../src/workers/prober.ts";
import { eventually, net } from "../_helpers/index.ts";

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
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A UDP backend: answers a probe ("ping") with `probeReply.value` (silence
 * when undefined), and any other datagram with `tag` then the datagram.
 */
async function backend(tag: string, probeReply: { value: string | undefined }) {
  let probes = 0;
  const socket: DatagramSocket = await net.bindDatagram!({
    hostname: LOOPBACK,
    port: 0,
    handlers: {
      message(data, from) {
        if (decoder.decode(data) === "ping") {
          probes++;
          if (probeReply.value !== undefined) socket.send(encoder.encode(probeReply.value), from);
          return;
        }
        socket.send(encoder.encode(tag + decoder.decode(data)), from);
      },
      error() {},
    },
  });
  cleanups.push(() => socket.close());
  return {
    socket,
    port: socket.address.port,
    get probes() {
      return probes;
    },
  };
}

/** Sends `query` from a new client socket (a new flow) and resolves with the reply's tag. */
async function askOnce(to: Endpoint, query: string): Promise<string> {
  const replies: string[] = [];
  const socket = await net.bindDatagram!({
    hostname: LOOPBACK,
    port: 0,
    handlers: { message: (data) => void replies.push(decoder.decode(data)), error() {} },
  });
  cleanups.push(() => socket.close());
  assert.ok(socket.send(encoder.encode(query), to));
  await eventually(() => replies.length >= 1, `a reply to ${query}`, 3000);
  socket.close();
  assert.equal(replies[0]!.slice(1), query);
  return replies[0]![0]!;
}

/** A config with one UDP frontend "dns" in front of `ports` ("a", "b"), with UDP health probes. */
function udpConfig(ports: number[], health: Partial<HealthConfig>): Config {
  const backends = ports.map((port, i) =>
    `[[frontend.backend]]\nname = "${"ab"[i]}"\nforward_to = "${LOOPBACK}:${port}"\n`
  );
  const parsed: Config = parseConfig(
    `[frontend]\nname = "dns"\nbind_on = "${LOOPBACK}:0"\n${backends.join("")}`,
  );
  return {
    ...parsed,
    frontends: parsed.frontends.map((f) => ({
      ...f,
      transport: "udp",
      responses: 1,
      idleTimeoutMs: f.idleTimeoutMs ?? 30_000,
      health: {
        ...f.health,
        active: true,
        udp: true,
        send: "ping",
        expect: "pong",
        intervalMs: 50,
        timeoutMs: 300,
        rise: 1,
        fall: 2,
        ...health,
      },
    })),
  };
}

/** Starts a balancer with one UDP frontend in front of `ports`, with UDP health probes. */
async function start(ports: number[], health: Partial<HealthConfig>, events: Partial<Events>) {
  const config = udpConfig(ports, health);
  balancer = await Balancer.start(config, { net, events: { ...NO_EVENTS, ...events } });
  return balancer.addresses[0]!;
}

describe(`UDP health probes through a UDP frontend (${net.runtime})`, () => {
  it("a backend whose reply lacks expect is taken down and skipped, and comes back once it answers right", async () => {
    const good = { value: "pong" };
    const wrong = { value: "nope" as string | undefined };
    const a = await backend("a", good);
    const b = await backend("b", wrong);
    const changes: string[] = [];
    const at = await start([a.port, b.port], {}, {
      backendDown: (_f, backend, reason) =>
        void changes.push(`${backend.config.name} down: ${reason}`),
      backendUp: (_f, backend) => void changes.push(`${backend.config.name} up`),
    });
    await eventually(() => changes.length >= 1, "b marked down", 3000);
    assert.deepEqual(changes, ['b down: reply did not hold "pong": received "nope"']);
    assert.ok(b.probes >= 2, `b was probed ${b.probes} times, fall is 2`);
    const whileDown: string[] = [];
    for (let i = 0; i < 4; i++) whileDown.push(await askOnce(at, `q${i}`));
    assert.deepEqual(whileDown, ["a", "a", "a", "a"], "new flows skip the down backend");

    wrong.value = "pong";
    await eventually(() => changes.length >= 2, "b back up", 3000);
    assert.equal(changes[1], "b up");
    const afterUp = new Set<string>();
    for (let i = 0; i < 4; i++) afterUp.add(await askOnce(at, `r${i}`));
    assert.deepEqual([...afterUp].sort(), ["a", "b"], "both backends take flows again");
  });

  it("a backend whose port closes is taken down by the probes", async () => {
    const a = await backend("a", { value: "pong" });
    const b = await backend("b", { value: "pong" });
    const changes: { what: string; at: number }[] = [];
    const at = await start([a.port, b.port], { fall: 1 }, {
      backendDown: (_f, backend, reason) =>
        void changes.push({
          what: `${backend.config.name} down: ${reason}`,
          at: performance.now(),
        }),
    });
    await eventually(() => b.probes >= 1, "b probed", 3000);
    b.socket.close();
    const closedAt = performance.now();
    await eventually(() => changes.length >= 1, "b marked down", 3000);
    const after = changes[0]!.at - closedAt;
    if (net.runtime === "deno") {
      // No ICMP on Deno: the next probe's timeout (300 ms), within one interval (50 ms) and a margin.
      assert.equal(changes[0]!.what, "b down: no reply within 300ms");
      assert.ok(after >= 250 && after <= 300 + 55 + 400, `down ${after} ms after the close`);
    } else {
      // ICMP port unreachable: the next probe (within one interval) fails at once.
      assert.equal(changes[0]!.what, "b down: port unreachable (ICMP)");
      assert.ok(after >= 0 && after <= 55 + 200, `down ${after} ms after the close`);
    }
    for (let i = 0; i < 3; i++) assert.equal(await askOnce(at, `q${i}`), "a");
  });

  it("the supervisor's prober probes UDP backends too, and tells each change", async () => {
    const a = await backend("a", { value: "pong" });
    const b = await backend("b", { value: "nope" });
    const told: HealthState[] = [];
    const prober = new Prober(net, NO_EVENTS, (state) => void told.push(state));
    cleanups.push(() => prober.stop());
    prober.update(udpConfig([a.port, b.port], {}));
    await eventually(() => told.length >= 1, "b told down", 3000);
    assert.deepEqual(told, [{ frontend: "dns", backend: "b", up: false }]);
    assert.ok(a.probes >= 2 && b.probes >= 2, `probes: a ${a.probes}, b ${b.probes}`);
    prober.stop();
  });
});
