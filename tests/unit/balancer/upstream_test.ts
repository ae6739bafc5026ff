/**
 * Upstream: one frontend's pool, discovery and health checks, owned
 * together (the frontend serves from it, the supervisor's prober probes with
 * it). Real names from dnsmasq, real probes over loopback.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { type Events, NO_EVENTS } from "../../../src/balancer/events.ts";
import type { PoolChanges } from "../../../src/balancer/upstream/pool.ts";
import { Upstream } from "../../../src/balancer/upstream/upstream.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { DNSMASQ, type DnsServer, startDns } from "../../_helpers/dns.ts";
import {
  eventually,
  freePort,
  liveTimers,
  net,
  recordingBackend,
  sleep,
} from "../../_helpers/index.ts";

const dnsSkip = DNSMASQ === undefined ? "dnsmasq is not installed" : false;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function dns(zone: Parameters<typeof startDns>[0]): Promise<DnsServer> {
  const server = await startDns(zone);
  cleanups.push(() => server.stop());
  return server;
}

function backendAt(hostname: string, port: number) {
  const backend = recordingBackend({ hostname, port });
  cleanups.push(() => backend.close());
  return backend;
}

/** An upstream for a frontend whose one backend is `web.test:PORT`, asked every 100 ms at most. */
function upstream(server: DnsServer, port: number, health: string, events: Events = NO_EVENTS) {
  const config = parseConfig(
    `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n` +
      `min_ttl = "0s"\nmax_ttl = "100ms"\n${health}` +
      `[[frontend.backend]]\nforward_to = "web.test:${port}"\n`,
  ).frontends[0]!;
  const changes: PoolChanges[] = [];
  const made = new Upstream({
    config,
    net,
    events,
    frontend: { name: "default", localAddress: "test" },
    changed: (change) => void changes.push(change),
  });
  cleanups.push(() => made.stop());
  return { upstream: made, changes, config };
}

describe("Upstream", () => {
  it(
    "a backend discovered after the first resolution starts down, is probed at once and comes up after rise (2) probes 200 ms apart",
    {
      skip: dnsSkip,
    },
    async () => {
      const port = await freePort();
      backendAt("127.0.0.2", port);
      backendAt("127.0.0.3", port);
      const server = await dns({ hosts: { "web.test": ["127.0.0.2"] } });
      const probed: { name: string; at: number }[] = [];
      const up: { name: string; at: number; reason: string }[] = [];
      const events: Events = {
        ...NO_EVENTS,
        probed: (_, backend) =>
          void probed.push({ name: backend.config.name, at: performance.now() }),
        backendUp: (_, backend, reason) =>
          void up.push({ name: backend.config.name, at: performance.now(), reason }),
      };
      const { upstream: u, changes } = upstream(
        server,
        port,
        `[frontend.health]\ninterval = "200ms"\nrise = 2\n`,
        events,
      );
      await u.resolve();
      u.check();
      const first = `web.test:${port}#127.0.0.2`;
      const fresh = `web.test:${port}#127.0.0.3`;
      assert.deepEqual(u.pool.backends.map((b) => [b.config.name, b.healthy]), [[first, true]]);

      await server.setHosts({ "web.test": ["127.0.0.2", "127.0.0.3"] });
      await eventually(() => changes.some((c) => c.added.includes(fresh)), "127.0.0.3 to appear");
      const appeared = performance.now();
      const backend = u.pool.backends.find((b) => b.config.name === fresh)!;
      assert.equal(backend.healthy, false, "a backend that appears starts down");
      await eventually(() => up.some((u) => u.name === fresh), "127.0.0.3 to come up", 3000);
      const firstProbe = probed.find((p) => p.name === fresh)!.at - appeared;
      const rose = up.find((u) => u.name === fresh)!;
      assert.ok(firstProbe < 120, `first probe ${firstProbe.toFixed(0)} ms after it appeared`);
      const upAfter = rose.at - appeared;
      assert.ok(upAfter >= 190 && upAfter < 600, `up ${upAfter.toFixed(0)} ms after it appeared`);
      assert.equal(rose.reason, "2 health checks passed");
      assert.deepEqual(
        up.map((u) => u.name),
        [fresh],
        "the first resolution's backend never went down",
      );
    },
  );

  it("discovery changes flow into the pool; a reload keeps each backend's state", {
    skip: dnsSkip,
  }, async () => {
    const port = await freePort();
    const server = await dns({ hosts: { "web.test": ["127.0.0.2"] } });
    const { upstream: u, changes, config } = upstream(server, port, "");
    await u.resolve();
    u.check();
    const [a, b] = [`web.test:${port}#127.0.0.2`, `web.test:${port}#127.0.0.3`];
    const names = () => u.pool.backends.map((backend) => backend.config.name);
    const kept = u.pool.backends[0]!;
    await server.setHosts({ "web.test": ["127.0.0.3"] });
    await eventually(() => names().join() === b, "127.0.0.2 to give way to 127.0.0.3");
    assert.deepEqual(changes, [{ added: [a], removed: [] }, { added: [b], removed: [a] }]);
    assert.equal(kept.removed, true, "the one that is gone takes no new connection");
    assert.equal(u.pool.backends[0]!.healthy, true, "without active checks, it serves at once");

    const now = u.pool.backends[0]!;
    now.active = 2;
    u.update({ ...config, algorithm: "least_connections" });
    assert.equal(u.pool.backends[0], now, "a reload keeps the backend (its state) by name");
    assert.equal(now.active, 2);
  });

  it("stop clears every timer: no probe, no resolution after it", { skip: dnsSkip }, async () => {
    const port = await freePort();
    const backend = backendAt("127.0.0.2", port);
    const server = await dns({ hosts: { "web.test": ["127.0.0.2"] } });
    let resolutions = 0;
    const events: Events = { ...NO_EVENTS, resolved: () => void resolutions++ };
    const timers = liveTimers(cleanups);
    const { upstream: u } = upstream(
      server,
      port,
      `[frontend.health]\ninterval = "50ms"\n`,
      events,
    );
    await u.resolve();
    u.check();
    await eventually(() => backend.connections >= 2 && resolutions >= 2, "probes and resolutions");
    assert.ok(timers.live.size > 0, "probes and resolutions wait on timers");
    u.stop();
    await sleep(300); // what was under way finishes
    const live = timers.live.size;
    timers.restore();
    assert.equal(live, 0, `${live} timers left after stop`);
    const [connections, resolved] = [backend.connections, resolutions];
    await sleep(200);
    assert.deepEqual([backend.connections, resolutions], [connections, resolved]);
  });
});
