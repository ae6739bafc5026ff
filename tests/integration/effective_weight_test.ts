/**
 * Effective weight over real loopback sockets on the adapter of the runtime
 * that runs the tests: a backend's agent (HAProxy's agent-check format)
 * sets its share of new connections, and a backend added by a reload under
 * slow_start ramps up to its full share.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Metrics } from "../../src/admin/metrics.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import { combineEvents } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Listener } from "../../src/runtime/types.ts";
import { bytes, echoServer, eventually, exchange, net, sleep, text } from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
let balancer: Balancer | undefined;

afterEach(async () => {
  if (balancer !== undefined) {
    await eventually(() => balancer!.stats.activeConnections === 0, "sessions to end");
    await balancer.stop({ graceMs: 0 });
    balancer = undefined;
  }
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function backend(greeting: string, hostname = "127.0.0.1") {
  const server = echoServer({ greeting, hostname });
  cleanups.push(() => server.close());
  return server;
}

/** An agent on `hostname` that answers each poll with the current `line` and closes. */
function agent(hostname: string) {
  const state = { line: "up", polls: 0 };
  const listener: Listener = net.listen({
    hostname,
    port: 0,
    onConnection(conn) {
      state.polls++;
      conn.setHandlers({ data() {}, drain() {}, end: () => conn.end(), close() {} });
      conn.write(bytes(`${state.line}\n`));
      conn.end();
    },
  });
  cleanups.push(() => listener.close());
  return { state, port: listener.address.port };
}

/** Who greeted each of `count` connections in a row. */
async function tally(port: number, count: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const name = text((await exchange(port, bytes(""))).data).replace(/:$/, "");
    out[name] = (out[name] ?? 0) + 1;
  }
  return out;
}

describe(`effective weight on ${net.runtime}`, () => {
  it("follows the agent: about a third at 50 %, none while drained, half after `up 100%`", async () => {
    // The agent is per host: the agent's backend on 127.0.0.2, its full-weight
    // peer on 127.0.0.1, where nothing answers on the agent port (no change).
    const a = backend("a:", "127.0.0.2");
    const b = backend("b:");
    const { state, port: agentPort } = agent("127.0.0.2");
    state.line = "50%";
    const heard: string[] = [];
    const metrics = new Metrics(net.runtime);
    balancer = await Balancer.start(
      parseConfig(
        `[frontend]\nbind_on = "127.0.0.1:0"\n` +
          `[frontend.health]\ninterval = "1s"\ntimeout = "500ms"\n` +
          `agent_port = ${agentPort}\nagent_interval = "50ms"\n` +
          `[[frontend.backend]]\nname = "a"\nforward_to = "127.0.0.2:${a.listener.address.port}"\n` +
          `[[frontend.backend]]\nname = "b"\nforward_to = "${b.address}"\n`,
      ),
      {
        net,
        events: combineEvents({
          agentChanged: (_f, backend, words) => void heard.push(`${backend.config.name} ${words}`),
        }, metrics),
      },
    );
    metrics.attach(balancer);
    const port = balancer.addresses[0]!.port;
    await eventually(() => heard.includes("a 50%"), "the agent's 50%");
    const status = () => balancer!.status()[0]!.backends[0]!;
    assert.equal(status().agent, "50%");
    assert.equal(status().effectiveWeight, 0.5);
    assert.match(
      await metrics.registry.metrics(),
      /mini_balancer_backend_effective_weight\{frontend="default",backend="a"\} 0.5/,
    );
    const half = await tally(port, 150);
    // round_robin by shares: a gets 1 of every 3 (50 of 150); bounds for timing slack.
    assert.ok((half.a ?? 0) >= 35 && (half.a ?? 0) <= 65, `a took ${half.a} of 150 at 50%`);

    state.line = "drain";
    await eventually(() => heard.includes("a drain"), "the agent's drain");
    const drained = await tally(port, 60);
    assert.equal(drained.a, undefined, `a took ${drained.a} of 60 while drained`);
    const exposition = await metrics.registry.metrics();
    assert.match(
      exposition,
      /mini_balancer_backend_state\{frontend="default",backend="a",state="up",agent="drain"\} 0/,
    );
    assert.match(
      exposition,
      /mini_balancer_backend_state\{frontend="default",backend="b",state="up",agent=""\} 1/,
    );
    assert.match(
      exposition,
      /mini_balancer_backend_effective_weight\{frontend="default",backend="a"\} 1/,
      "drain holds it out; its weight is whole",
    );

    state.line = "up 100%";
    await eventually(() => heard.includes("a up 100%"), "the agent's up 100%");
    const full = await tally(port, 100);
    assert.match(
      await metrics.registry.metrics(),
      /mini_balancer_backend_state\{frontend="default",backend="a",state="up",agent="up 100%"\} 1/,
    );
    assert.ok((full.a ?? 0) >= 40 && (full.a ?? 0) <= 60, `a took ${full.a} of 100 after up 100%`);
    // Each change heard once, however many polls: let the agent say its last line twice more.
    const polls = state.polls;
    await eventually(() => state.polls >= polls + 2, "two more polls of the same line");
    assert.deepEqual(heard, ["a 50%", "a drain", "a up 100%"]);
  });

  it("ramps a backend added by a reload: under 30 % in its first quarter, its full share after", async () => {
    // slow_start = "2s": the 8 s with the same proportions (first 2 s → first 0.5 s).
    const a = backend("a:");
    const b = backend("b:");
    const config = (backends: [string, string][]) =>
      parseConfig(
        `[frontend]\nbind_on = "127.0.0.1:0"\nslow_start = "2s"\n` +
          backends.map(([name, address]) =>
            `[[frontend.backend]]\nname = "${name}"\nforward_to = "${address}"\n`
          ).join(""),
      );
    balancer = await Balancer.start(config([["a", a.address]]), { net, events: combineEvents() });
    const port = balancer.addresses[0]!.port;
    assert.equal(balancer.status()[0]!.backends[0]!.effectiveWeight, 1, "full at process start");
    await balancer.reload(config([["a", a.address], ["b", b.address]]));
    const started = performance.now();
    // Its first 0.5 s: at most a quarter of its weight, so at most 20 % of connections.
    const early: Record<string, number> = {};
    while (performance.now() - started < 450) {
      for (const [name, n] of Object.entries(await tally(port, 10))) {
        early[name] = (early[name] ?? 0) + n;
      }
    }
    const earlyTotal = (early.a ?? 0) + (early.b ?? 0);
    assert.ok(earlyTotal >= 20, `only ${earlyTotal} connections in 0.45 s`);
    assert.ok(
      (early.b ?? 0) / earlyTotal < 0.3,
      `b took ${early.b} of ${earlyTotal} in its first 0.45 s`,
    );
    assert.ok((early.b ?? 0) >= 1, "never 0: it takes some from the start");
    await sleep(2000 - (performance.now() - started) + 50);
    assert.equal(balancer.status()[0]!.backends[1]!.effectiveWeight, 1);
    const after = await tally(port, 100);
    assert.ok((after.b ?? 0) >= 45 && (after.b ?? 0) <= 55, `b took ${after.b} of 100 after 2 s`);
  });
});
