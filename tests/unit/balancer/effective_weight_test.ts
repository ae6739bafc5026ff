/**
 * Effective weight as units: the agent line parser (src/balancer/upstream/agent.ts)
 * and the slow start ramp and agent shares (backend.ts) as each algorithm
 * sees them, on an injected clock.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseAgentLine } from "../../../src/balancer/upstream/agent.ts";
import { BackendState, SLOW_START_FLOOR, Weights } from "../../../src/balancer/upstream/backend.ts";
import { createSelector } from "../../../src/balancer/upstream/algorithms/mod.ts";
import { Pool } from "../../../src/balancer/upstream/pool.ts";
import type { Algorithm, BackendConfig } from "../../../src/config/config.ts";
import { NO_EVENTS } from "../../../src/balancer/events.ts";
import { Upstream } from "../../../src/balancer/upstream/upstream.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { net, sleep } from "../../_helpers/index.ts";

const client = { client: { hostname: "127.0.0.1", port: 40000 } };

function config(name: string, weight = 1, extra: Partial<BackendConfig> = {}): BackendConfig {
  return {
    name,
    address: `127.0.0.1:${name.charCodeAt(0)}`,
    forwardTo: { hostname: "127.0.0.1", port: name.charCodeAt(0) },
    weight,
    ...extra,
  };
}

/** A clock the test moves. */
function clock(): Weights & { at: number } {
  const weights = new Weights() as Weights & { at: number };
  weights.at = 1000;
  weights.now = () => weights.at;
  return weights;
}

/** Share of `n` picks that went to `name`. */
function share(pick: () => BackendState | undefined, name: string, n = 2000): number {
  let hits = 0;
  for (let i = 0; i < n; i++) if (pick()?.config.name === name) hits++;
  return hits / n;
}

describe("parseAgentLine", () => {
  it("reads HAProxy's words, several in a line, any case, commas or spaces", () => {
    assert.deepEqual(parseAgentLine("up"), { words: { operational: "up" }, shown: "up" });
    assert.deepEqual(parseAgentLine("DOWN"), { words: { operational: "down" }, shown: "down" });
    assert.deepEqual(parseAgentLine("75% drain"), {
      words: { administrative: "drain", share: 0.75 },
      shown: "75% drain",
    });
    assert.deepEqual(parseAgentLine("up,100%\t ready"), {
      words: { operational: "up", administrative: "ready", share: 1 },
      shown: "up 100% ready",
    });
    assert.deepEqual(parseAgentLine("maint"), {
      words: { administrative: "maint" },
      shown: "maint",
    });
    assert.deepEqual(parseAgentLine("0%"), { words: { share: 0 }, shown: "0%" });
    assert.deepEqual(parseAgentLine("12.5%"), { words: { share: 0.125 }, shown: "12.5%" });
    assert.deepEqual(parseAgentLine("stopped#reason"), {
      words: { operational: "down" },
      shown: "down",
    });
  });

  it("ignores unknown words and gives nothing for a line without a known one", () => {
    assert.deepEqual(parseAgentLine("hello 50% world"), { words: { share: 0.5 }, shown: "50%" });
    assert.equal(parseAgentLine(""), undefined);
    assert.equal(parseAgentLine("hello"), undefined);
    assert.equal(parseAgentLine("150%"), undefined, "over 100 % is not a share");
    assert.equal(parseAgentLine("-5%"), undefined);
    assert.equal(parseAgentLine("# up"), undefined, "a comment only");
  });
});

describe("agent words on a backend", () => {
  it("holds it out for down, drain, maint and 0%, and each answer is whole", () => {
    const backend = new BackendState(config("a", 10));
    for (const line of ["down", "drain", "maint", "0%", "75% drain"]) {
      const answer = parseAgentLine(line)!;
      backend.setAgent(answer.words, answer.shown);
      assert.equal(backend.up, false, line);
      assert.equal(backend.agent, line);
    }
    const half = parseAgentLine("50%")!;
    backend.setAgent(half.words, half.shown);
    assert.equal(backend.up, true, "50% alone: up, ready");
    assert.equal(backend.effectiveWeight, 5);
    const full = parseAgentLine("up 100%")!;
    backend.setAgent(full.words, full.shown);
    assert.equal(backend.effectiveWeight, 10);
    assert.equal(backend.state, "up");
  });
});

describe("slow start", () => {
  it("ramps linearly from 1/20 to the full weight, and never at process start", () => {
    const weights = clock();
    const pool = new Pool({
      algorithm: "weighted_round_robin",
      backends: [config("a", 20), config("b", 20)],
      slowStartMs: 8000,
    });
    assert.equal(pool.backends[0]!.reduced, false, "full weight at process start");
    const backend = new BackendState(config("a", 20), weights);
    backend.slowStartMs = 8000;
    backend.healthy = false;
    assert.equal(weights.reduced, false, "going down starts nothing");
    backend.healthy = true;
    assert.equal(weights.reduced, true);
    assert.equal(backend.effectiveWeight, 20 * SLOW_START_FLOOR);
    weights.at += 2000;
    assert.equal(backend.effectiveWeight, 5);
    weights.at += 4000;
    assert.equal(backend.effectiveWeight, 15);
    weights.at += 2000;
    assert.equal(backend.effectiveWeight, 20);
    assert.equal(backend.reduced, false);
    backend.healthy = false;
    backend.healthy = true;
    backend.slowStartMs = 0; // a reload turned it off, in the same millisecond
    assert.equal(backend.effectiveWeight, 20);
  });

  for (const algorithm of ["round_robin", "weighted_round_robin", "random", "power_of_two"]) {
    it(`${algorithm}: a ramping backend's share follows the ramp, then the flag clears`, () => {
      const weights = clock();
      const a = new BackendState(config("a", 3), weights);
      const b = new BackendState(config("b", 3), weights);
      a.slowStartMs = 8000;
      a.healthy = false;
      a.healthy = true;
      const selector = createSelector(algorithm as Algorithm, [a, b], weights);
      // In its first 2 s (at most 25 % of its weight): far under 30 % of picks.
      weights.at += 1000;
      const early = share(() => selector.pick(client), "a");
      assert.ok(early > 0.03 && early < 0.2, `early share ${early}`);
      // After 8 s: its full half.
      weights.at += 7000;
      const late = share(() => selector.pick(client), "a");
      assert.ok(late > 0.42 && late < 0.58, `late share ${late}`);
      assert.equal(weights.reduced, false, "back on the plain path");
    });
  }

  it("least_connections: balances open connections by the ramped weight", () => {
    const weights = clock();
    const a = new BackendState(config("a", 2), weights);
    const b = new BackendState(config("b", 2), weights);
    a.slowStartMs = 10000;
    a.healthy = false;
    a.healthy = true;
    weights.at += 2000; // 20 % of its weight
    const selector = createSelector("least_connections", [a, b], weights);
    for (let i = 0; i < 120; i++) selector.pick(client)!.active++;
    // a: 0.4, b: 2 → a holds 1/6 of the connections.
    assert.ok(a.active >= 17 && a.active <= 23, `a holds ${a.active} of 120`);
  });

  it("a backend added while serving ramps; one kept by an update does not", () => {
    const pool = new Pool({ algorithm: "round_robin", backends: [config("a")], slowStartMs: 5000 });
    pool.update({
      algorithm: "round_robin",
      backends: [config("a"), config("b")],
      slowStartMs: 5000,
    });
    assert.equal(pool.backends[0]!.reduced, false);
    assert.equal(pool.backends[1]!.reduced, true);
    const own = new Pool({
      algorithm: "round_robin",
      backends: [config("a")],
    });
    own.update({
      algorithm: "round_robin",
      backends: [config("a"), config("c", 1, { slowStartMs: 1000 })],
    });
    assert.equal(own.backends[1]!.slowStartMs, 1000, "the backend's own slow_start wins");
    assert.equal(own.backends[1]!.reduced, true);
    const resolved = new Pool({
      algorithm: "round_robin",
      backends: [config("a")],
      slowStartMs: 5000,
    });
    resolved.update(
      { algorithm: "round_robin", backends: [config("a"), config("d")], slowStartMs: 5000 },
      false,
    );
    assert.equal(resolved.backends[1]!.reduced, false, "a first resolution's backends start full");
  });
});

describe("agents with workers", () => {
  it("a worker polls no agent: it takes what its supervisor was told (setHealth)", async () => {
    let polls = 0;
    const agent = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        polls++;
        conn.setHandlers({ data() {}, drain() {}, end: () => conn.end(), close() {} });
        conn.write(new TextEncoder().encode("drain\n"));
        conn.end();
      },
    });
    const frontend = parseConfig(
      '[frontend]\nbind_on = "127.0.0.1:0"\n[frontend.health]\ninterval = "1s"\n' +
        `agent_port = ${agent.address.port}\nagent_interval = "20ms"\n` +
        '[[frontend.backend]]\nname = "a"\nforward_to = "127.0.0.1:1"\n',
    ).frontends[0]!;
    // What src/workers/worker.ts makes of a frontend whose supervisor probes.
    const upstream = new Upstream({
      config: { ...frontend, health: { ...frontend.health, active: false, remote: true } },
      net,
      events: NO_EVENTS,
      frontend: { name: "default", localAddress: "worker" },
    });
    try {
      upstream.check();
      await sleep(150);
      assert.equal(polls, 0, "no poll from a worker");
      assert.equal(upstream.setHealth("a", true, "50%"), true);
      assert.equal(upstream.pool.backends[0]!.effectiveWeight, 0.5);
      assert.equal(upstream.pool.backends[0]!.agent, "50%");
      upstream.setHealth("a", true, "drain");
      assert.equal(upstream.pool.backends[0]!.up, false);
      // A reload that turns agent checks off forgets what the agent said.
      upstream.update(
        parseConfig(
          '[frontend]\nbind_on = "127.0.0.1:0"\n[[frontend.backend]]\nname = "a"\nforward_to = "127.0.0.1:1"\n',
        ).frontends[0]!,
      );
      assert.equal(upstream.pool.backends[0]!.up, true);
      assert.equal(upstream.pool.backends[0]!.agent, undefined);
      assert.equal(upstream.pool.backends[0]!.effectiveWeight, 1);
    } finally {
      upstream.stop();
      agent.close();
    }
  });
});
