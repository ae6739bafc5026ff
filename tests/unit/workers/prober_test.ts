/**
 * The supervisor's prober: probes every frontend with active checks on
 * pools of its own, tells each change, and gives a new worker every state.
 * Real probes over loopback.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { NO_EVENTS } from "../../../src/balancer/events.ts";
import type { HealthState } from "../../../src/balancer/health_state.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { Prober } from "../../../src/workers/prober.ts";
import { eventually, freePorts, net, recordingBackend, sleep } from "../../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function backendAt(port: number) {
  const backend = recordingBackend({ port });
  cleanups.push(() => backend.close());
  return backend;
}

/** A config whose one frontend has these backends and `health` (a `[frontend.health]` table or nothing). */
function config(ports: number[], health: string) {
  const backends = ports.map((port) => `[[frontend.backend]]\nforward_to = "127.0.0.1:${port}"\n`);
  return parseConfig(`[frontend]\nbind_on = "127.0.0.1:0"\n${health}${backends.join("")}`);
}

const ACTIVE = `[frontend.health]\ninterval = "50ms"\nrise = 1\nfall = 1\n`;

function prober() {
  const told: HealthState[] = [];
  const made = new Prober(net, NO_EVENTS, (state) => void told.push(state));
  cleanups.push(() => made.stop());
  return { prober: made, told };
}

describe("Prober", () => {
  it("is wanted only when a frontend has active checks", async () => {
    const [port] = await freePorts(1);
    assert.equal(Prober.wanted(config([port!], ACTIVE)), true);
    assert.equal(Prober.wanted(config([port!], "")), false);
  });

  it("tells each backend that goes down and comes back, and every state to a new worker", async () => {
    const [live, dead] = await freePorts(2);
    backendAt(live!);
    const { prober: p, told } = prober();
    p.update(config([live!, dead!], ACTIVE));
    const [a, b] = [`127.0.0.1:${live}`, `127.0.0.1:${dead}`];
    await eventually(() => told.length > 0, "the dead backend to be told down", 3000);
    assert.deepEqual(told, [{ frontend: "default", backend: b, up: false }]);
    assert.deepEqual(p.states(), [
      { frontend: "default", backend: a, up: true },
      { frontend: "default", backend: b, up: false },
    ]);
    backendAt(dead!);
    await eventually(() => told.length > 1, "the backend to be told up again", 3000);
    assert.deepEqual(told[1], { frontend: "default", backend: b, up: true });
  });

  it("keeps states across a reload and stops probing a frontend that no longer checks", async () => {
    const [live, dead] = await freePorts(2);
    const backend = backendAt(live!);
    const { prober: p, told } = prober();
    p.update(config([live!, dead!], ACTIVE));
    await eventually(() => told.length > 0, "the dead backend to be told down", 3000);
    p.update(config([live!, dead!], ACTIVE.replace("50ms", "60ms")));
    assert.deepEqual(p.states().map((s) => s.up), [true, false], "a reload keeps each state");
    p.update(config([live!, dead!], ""));
    assert.deepEqual(p.states(), []);
    await sleep(100); // a probe under way finishes
    const probes = backend.connections;
    await sleep(200);
    assert.equal(backend.connections, probes, "no probe once the frontend stopped checking");
    assert.equal(told.length, 1);
  });

  it("polls each backend's agent once for every worker and tells what it says, also to a new worker", async () => {
    const [live] = await freePorts(1);
    backendAt(live!);
    let polls = 0;
    let line = "50%";
    const agent = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        polls++;
        conn.setHandlers({ data() {}, drain() {}, end: () => conn.end(), close() {} });
        conn.write(new TextEncoder().encode(`${line}\n`));
        conn.end();
      },
    });
    cleanups.push(() => agent.close());
    const { prober: p, told } = prober();
    p.update(config(
      [live!],
      `[frontend.health]\ninterval = "1s"\nagent_port = ${agent.address.port}\nagent_interval = "50ms"\n`,
    ));
    const name = `127.0.0.1:${live}`;
    await eventually(() => told.length > 0, "the agent's word to be told", 3000);
    assert.deepEqual(told, [{ frontend: "default", backend: name, up: true, agent: "50%" }]);
    assert.deepEqual(p.states(), [{ frontend: "default", backend: name, up: true, agent: "50%" }]);
    line = "drain";
    await eventually(() => told.length > 1, "the drain to be told", 3000);
    assert.deepEqual(told[1], { frontend: "default", backend: name, up: true, agent: "drain" });
    const before = polls;
    await sleep(300);
    // Told once per change, however many polls (one every 50 ms).
    assert.equal(told.length, 2);
    assert.ok(polls - before >= 3 && polls - before <= 8, `${polls - before} polls in 300 ms`);
  });
});
