/**
 * Regression tests for one-line bugs that the rest of the suite let through
 * (issue 18): the best server-name match, IPv6 prefixes between /65 and
 * /127, and the health checker's counting and its respect for a drained
 * backend. Health probes go through a scripted `Net`: a "fail" is a refused
 * connect, a "pass" a real connect to a real echo backend.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Metrics } from "../../src/admin/metrics.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import type { BackendState } from "../../src/balancer/upstream/backend.ts";
import { NO_EVENTS } from "../../src/balancer/events.ts";
import { bestMatch, matchesServerName } from "../../src/protocol/server_name.ts";
import { CidrSet, parseCidr } from "../../src/address/cidr.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Net } from "../../src/runtime/types.ts";
import { echoServer, net, within } from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("server names: the best match", () => {
  it("a wildcard matches only whole labels: *.example.com is not badexample.com", () => {
    assert.equal(matchesServerName("*.example.com", "badexample.com"), false);
    assert.equal(matchesServerName("*.example.com", "a.example.com"), true);
    const items = [{ name: "wild", patterns: ["*.example.com"] }];
    assert.equal(bestMatch(items, (item) => item.patterns, "badexample.com"), undefined);
  });

  it("an exact name wins over a wildcard listed before it", () => {
    const items = [
      { name: "wild", patterns: ["*.eu.example.com"] },
      { name: "exact", patterns: ["x.eu.example.com"] },
    ];
    assert.equal(bestMatch(items, (item) => item.patterns, "x.eu.example.com")?.name, "exact");
    assert.equal(bestMatch(items, (item) => item.patterns, "y.eu.example.com")?.name, "wild");
  });
});

describe("CIDR sets: IPv6 prefixes between /65 and /127", () => {
  it("2001:db8::/120 holds 2001:db8::5 and not 2001:db8::105", () => {
    const ranges = new CidrSet([parseCidr("2001:db8::/120")]);
    assert.equal(ranges.has("2001:db8::5"), true, "2001:db8::/120 must contain 2001:db8::5");
    assert.equal(ranges.has("2001:db8::ff"), true);
    assert.equal(
      ranges.has("2001:db8::105"),
      false,
      "2001:db8::/120 must not contain 2001:db8::105",
    );
    const wide = new CidrSet([parseCidr("2001:db8::/72")]);
    assert.equal(wide.has("2001:db8::ff:1"), true, "2001:db8::/72 must contain 2001:db8::ff:1");
    assert.equal(
      wide.has("2001:db8:0:0:100::1"),
      false,
      "2001:db8::/72 must not contain 2001:db8:0:0:100::1",
    );
  });
});

type Step = "fail" | "pass";

/**
 * A balancer with one backend "a" (a real echo server) under active health
 * checks every 20 ms; its probes' outcomes follow `script`, then pass.
 * `settled` resolves once every scripted probe has been counted, with the
 * backend's state right after the last one.
 */
async function scripted(health: string, script: Step[], before?: (balancer: Balancer) => void) {
  const backend = echoServer();
  cleanups.push(() => backend.close());
  const steps = [...script];
  const scriptedNet: Net = Object.create(net, {
    connect: {
      value: (endpoint: Parameters<Net["connect"]>[0]) =>
        steps.shift() === "fail"
          ? Promise.reject(new Error("connection refused (scripted)"))
          : net.connect(endpoint),
    },
  });
  let probes = 0;
  let snapshot: (state: { state: string; up: boolean }) => void;
  const settled = new Promise<{ state: string; up: boolean }>((resolve) => snapshot = resolve);
  const metrics = new Metrics(net.runtime);
  const toml = `[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:0"\n` +
    `[frontends.health]\ninterval = "20ms"\ntimeout = "1s"\n${health}\n` +
    `[[frontends.backend]]\nname = "a"\nforward_to = "${backend.address}"\n`;
  const balancer = await Balancer.start(parseConfig(toml), {
    net: scriptedNet,
    events: {
      ...NO_EVENTS,
      probed(_frontend, state: BackendState) {
        if (++probes !== script.length) return;
        // The checker counts this probe right after reporting it.
        setTimeout(() => snapshot({ state: state.state, up: state.up }), 0);
      },
    },
  });
  metrics.attach(balancer);
  cleanups.push(() => balancer.stop({ graceMs: 0 }));
  before?.(balancer);
  return { balancer, metrics, settled: within(settled, 3000, `${script.length} probes`) };
}

describe(`health checks on ${net.runtime}`, () => {
  it("a drained backend that fails and then passes its probes stays draining, backend_up 0", async () => {
    const { metrics, settled } = await scripted(
      "rise = 1\nfall = 1",
      ["fail", "pass", "pass"],
      (b) => {
        assert.equal(b.setBackendState("web", "a", "draining"), true);
      },
    );
    assert.deepEqual(await settled, { state: "draining", up: false });
    const body = await metrics.registry.metrics();
    assert.match(
      body,
      /^mini_balancer_backend_up\{frontend="web",backend="a",state="draining"\} 0$/m,
      'a drained backend reports state="draining" and 0',
    );
  });

  it("rise = 2: one pass after going down does not bring the backend up, two do", async () => {
    const one = await scripted("rise = 2\nfall = 1", ["fail", "pass"]);
    assert.deepEqual(await one.settled, { state: "down", up: false }, "one pass of rise = 2");
    const two = await scripted("rise = 2\nfall = 1", ["fail", "pass", "pass"]);
    assert.deepEqual(await two.settled, { state: "up", up: true }, "two passes of rise = 2");
  });

  it("fall = 2: a pass resets the failures (fail, pass, fail stays up; fail, fail goes down)", async () => {
    const mixed = await scripted("rise = 1\nfall = 2", ["fail", "pass", "fail"]);
    assert.deepEqual(await mixed.settled, { state: "up", up: true }, "fail, pass, fail");
    const twice = await scripted("rise = 1\nfall = 2", ["fail", "fail"]);
    assert.deepEqual(await twice.settled, { state: "down", up: false }, "fail, fail");
  });
});
