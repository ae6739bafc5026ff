/**
 * Service discovery against a real DNS server on loopback (dnsmasq, over
 * TCP): host names become one backend per address, SRV records give
 * weighted backends and backups, and records that change while clients
 * stream lose no connection. Runs on the adapter of the runtime running it.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import { resetSync } from "@logtape/logtape";
import { combineEvents, type Events, NO_EVENTS } from "../../src/balancer/events.ts";
import { logEvents } from "../../src/balancer/log_events.ts";
import { Metrics } from "../../src/admin/metrics.ts";
import { main } from "../../src/cli/main.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import { expandSrv, type Resolution } from "../../src/discovery/discovery.ts";
import { DNSMASQ, type DnsServer, listening, startDns } from "../_helpers/dns.ts";
import {
  bytes,
  connect,
  eventually,
  exchange,
  freePort,
  net,
  recordingBackend,
  sleep,
  tempDir,
  text,
} from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function dns(zone: Parameters<typeof startDns>[0]): Promise<DnsServer> {
  const server = await startDns(zone);
  cleanups.push(() => server.stop());
  return server;
}

/** A recording backend on `hostname`:`port` (several loopback addresses share a port). */
function backendAt(hostname: string, port: number) {
  const backend = recordingBackend({ hostname, port });
  cleanups.push(() => backend.close());
  return backend;
}

async function balancer(config: string, events: Events = NO_EVENTS): Promise<Balancer> {
  const lb = await Balancer.start(parseConfig(config), { net, events });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return lb;
}

/** Events that keep every resolution. */
function resolutions(): { events: Events; seen: Resolution[] } {
  const seen: Resolution[] = [];
  return { events: { ...NO_EVENTS, resolved: (_, r) => void seen.push(r) }, seen };
}

/** Clients one after another (four at a time) until stopped; counts what failed. */
function steadyClients(port: number) {
  let running = true;
  let served = 0;
  const failures: string[] = [];
  const loop = async (id: number) => {
    for (let i = 0; running; i++) {
      const payload = `client ${id} request ${i}`;
      try {
        const answer = text((await exchange(port, bytes(payload))).data);
        if (answer === payload) served++;
        else failures.push(`${payload}: answered ${JSON.stringify(answer)}`);
      } catch (error) {
        failures.push(`${payload}: ${error}`);
      }
    }
  };
  const loops = [0, 1, 2, 3].map(loop);
  return {
    get served() {
      return served;
    },
    failures,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const skip = DNSMASQ === undefined
  ? "dnsmasq is not installed (.ci/ensure-tools installs it)"
  : false;

describe("service discovery", { skip }, () => {
  it("a host name's addresses become backends; records changed under load lose no connection", async () => {
    const port = await freePort();
    const [a, b, c] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"].map((ip) => backendAt(ip, port));
    const server = await dns({ hosts: { "web.test": ["127.0.0.2"] } });
    const lb = await balancer(
      `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n` +
        `min_ttl = "0s"\nmax_ttl = "100ms"\n` +
        `[[frontend.backend]]\nname = "web"\nforward_to = "web.test:${port}"\nweight = 3\n`,
    );
    const names = () => lb.status()[0]!.backends.map((backend) => backend.name).sort();
    assert.deepEqual(names(), ["web#127.0.0.2"]);
    assert.equal(lb.status()[0]!.backends[0]!.weight, 3, "the entry's settings carry over");
    const lbPort = lb.addresses[0]!.port;
    // A stream held open across every change, on the first address.
    const stream = await connect(lbPort);
    stream.conn.write(bytes("early "));
    await eventually(() => a!.connections === 1, "the stream to reach 127.0.0.2");
    const clients = steadyClients(lbPort);
    try {
      await server.setHosts({ "web.test": ["127.0.0.2", "127.0.0.3"] });
      await eventually(() => b!.connections > 3, "127.0.0.3 to take connections");
      await server.setHosts({ "web.test": ["127.0.0.3", "127.0.0.4"] });
      await eventually(() => names().join() === "web#127.0.0.3,web#127.0.0.4", "127.0.0.2 gone");
      await eventually(() => c!.connections > 3, "127.0.0.4 to take connections");
      const onGone = a!.connections;
      await sleep(300);
      assert.equal(a!.connections, onGone, "a removed address gets no new connection");
      stream.conn.write(bytes("late"));
      stream.conn.end();
      await stream.closed;
      assert.equal(text(stream.received()), "early late", "an open connection finishes");
    } finally {
      await clients.stop();
    }
    assert.deepEqual(clients.failures, []);
    assert.ok(clients.served > 50, `only ${clients.served} clients served`);
  });

  it("SRV weights share the load, and a higher priority serves only when the lowest is down", async () => {
    const [heavy, light, spare] = [0, 1, 2].map(() => backendAt("127.0.0.1", 0));
    const portOf = (backend: { address: string }) => Number(backend.address.split(":")[1]);
    const server = await dns({
      hosts: { "a.test": ["127.0.0.1"] },
      srv: [
        { name: "_web._tcp.svc.test", target: "a.test", port: portOf(heavy!), weight: 30 },
        { name: "_web._tcp.svc.test", target: "a.test", port: portOf(light!), weight: 10 },
        { name: "_web._tcp.svc.test", target: "a.test", port: portOf(spare!), priority: 1 },
      ],
    });
    const lb = await balancer(
      `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n` +
        `algorithm = "weighted_round_robin"\ndiscover = "srv:_web._tcp.svc.test"\n`,
    );
    const backends = lb.status()[0]!.backends;
    assert.deepEqual(
      backends.map((b) => [b.name, b.weight, b.backup]).sort(),
      [
        [`_web._tcp.svc.test#${heavy!.address}`, 30, false],
        [`_web._tcp.svc.test#${light!.address}`, 10, false],
        [`_web._tcp.svc.test#${spare!.address}`, 1, true],
      ].sort(),
    );
    const port = lb.addresses[0]!.port;
    for (let i = 0; i < 200; i++) await exchange(port, bytes("x"));
    const share = heavy!.connections / (heavy!.connections + light!.connections);
    assert.ok(Math.abs(share - 0.75) <= 0.05, `weight 30 of 40 took ${share}`);
    assert.equal(spare!.connections, 0, "the backup took nothing while primaries were up");
    // Both primaries die: after their failed connects, the backup serves.
    heavy!.close();
    light!.close();
    for (let i = 0; i < 20; i++) assert.equal(text((await exchange(port, bytes("y"))).data), "y");
    assert.ok(spare!.connections >= 20, "the backup served once the primaries were down");
  });

  it("SRV records changed while clients stream: the new target serves, the old one drains, none fails", async () => {
    const [first, second] = [0, 1].map(() => backendAt("127.0.0.1", 0));
    const portOf = (backend: { address: string }) => Number(backend.address.split(":")[1]);
    const record = (port: number) => ({ name: "_web._tcp.svc.test", target: "a.test", port });
    const server = await dns({ hosts: { "a.test": ["127.0.0.1"] }, srv: [record(portOf(first!))] });
    const lb = await balancer(
      `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n` +
        `min_ttl = "0s"\nmax_ttl = "100ms"\ndiscover = "srv:_web._tcp.svc.test"\n`,
    );
    const clients = steadyClients(lb.addresses[0]!.port);
    try {
      await eventually(() => first!.connections > 3, "the first target to serve");
      // dnsmasq restarts with the new records: queries fail meanwhile, the set stays.
      await server.setSrv([record(portOf(second!))]);
      await eventually(() => second!.connections > 3, "the new target to serve");
      const onGone = first!.connections;
      await sleep(300);
      assert.equal(first!.connections, onGone, "the removed target gets no new connection");
    } finally {
      await clients.stop();
    }
    assert.deepEqual(clients.failures, []);
  });

  it("a failed resolution keeps the last addresses, is logged once and counted", async () => {
    const backend = backendAt("127.0.0.1", 0);
    const port = Number(backend.address.split(":")[1]);
    const server = await dns({ hosts: { "web.test": ["127.0.0.1"] } });
    const { events, seen } = resolutions();
    const metrics = new Metrics(net.runtime);
    const lb = await balancer(
      `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n` +
        `min_ttl = "50ms"\nmax_ttl = "50ms"\n` +
        `[[frontend.backend]]\nforward_to = "web.test:${port}"\n`,
      combineEvents(events, metrics),
    );
    await server.pause();
    await eventually(() => seen.filter((r) => r.result === "failed").length >= 3, "3 failures");
    const lbPort = lb.addresses[0]!.port;
    assert.equal(
      text((await exchange(lbPort, bytes("still"))).data),
      "still",
      "the last set serves",
    );
    assert.equal(lb.status()[0]!.backends.length, 1);
    assert.equal(seen.filter((r) => r.news === "failing").length, 1, "logged once");
    await server.resume();
    await eventually(() => seen.some((r) => r.news === "recovered"), "the name to answer again");
    const scraped = await metrics.registry.metrics();
    assert.match(
      scraped,
      /mini_balancer_dns_resolutions_total\{frontend="default",name="web.test",result="failed"\} [3-9]/,
    );
    assert.match(scraped, /mini_balancer_dns_addresses\{frontend="default",name="web.test"\} 1/);
  });

  it("a name failing for changing reasons is logged once per episode, until it recovers", async () => {
    const lines: string[] = [];
    configureLogging({ verbosity: 1, write: (line) => lines.push(line) });
    cleanups.push(() => resetSync());
    const backend = backendAt("127.0.0.1", 0);
    const port = Number(backend.address.split(":")[1]);
    const server = await dns({ hosts: { "web.test": ["127.0.0.1"] } });
    const { events, seen } = resolutions();
    await balancer(
      `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n` +
        `min_ttl = "50ms"\nmax_ttl = "50ms"\n` +
        `[[frontend.backend]]\nforward_to = "web.test:${port}"\n`,
      combineEvents(logEvents(), events),
    );
    const failures = () => seen.filter((r) => r.result === "failed");
    // Nothing listens on the resolver's port: the connect is refused.
    await server.pause();
    await eventually(() => failures().length >= 2, "2 refused queries");
    // Something there accepts and hangs up: another reason, the same episode.
    const impostor = net.listen({
      ...server.endpoint,
      onConnection: (conn) => conn.close(),
    });
    const before = failures().length;
    await eventually(() => failures().length >= before + 2, "2 queries hung up on");
    impostor.close();
    // Deno releases a listener's port a tick after close: dnsmasq binds it only once it is free.
    for (let tries = 0; await listening(server.endpoint.port); tries++) {
      assert.ok(tries < 100, "the impostor's port was still taken after 2 s");
      await sleep(20);
    }
    const reasons = new Set(failures().map((r) => r.reason));
    assert.ok(reasons.size >= 2, `the failures gave one reason only: ${[...reasons].join(" | ")}`);
    assert.ok(
      [...reasons].every((reason) => reason?.includes(server.address)),
      `each reason names the server: ${[...reasons].join(" | ")}`,
    );
    await server.resume();
    await eventually(() => seen.some((r) => r.news === "recovered"), "the name to answer again");
    const failed = lines.filter((line) => line.includes("name resolution failed"));
    assert.equal(failed.length, 1, failed.join(""));
    assert.match(failed[0]!, / WARN .*name resolution failed .*name=web.test/);
    assert.equal(lines.filter((line) => line.includes("name resolution recovered")).length, 1);
    assert.equal(seen.filter((r) => r.news === "failing").length, 1);
    assert.equal(seen.filter((r) => r.news === "recovered").length, 1);
  });

  it("a name that does not resolve stops the start only when its frontend has no other backend", async () => {
    const fixed = backendAt("127.0.0.1", 0);
    const server = await dns({ hosts: {} });
    const head = `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n`;
    await assert.rejects(
      Balancer.start(parseConfig(`${head}[[frontend.backend]]\nforward_to = "nope.test:80"\n`), {
        net,
        events: NO_EVENTS,
      }),
      /^DiscoveryError: frontend "default" has no backend: nope.test did not resolve: /,
    );
    const lb = await balancer(
      `${head}[[frontend.backend]]\nforward_to = "nope.test:80"\n` +
        `[[frontend.backend]]\nforward_to = "${fixed.address}"\n`,
    );
    assert.equal(text((await exchange(lb.addresses[0]!.port, bytes("fixed"))).data), "fixed");
  });

  it("an address that appears with health checks on gets connections only once it passes them", async () => {
    const port = await freePort();
    backendAt("127.0.0.2", port);
    const server = await dns({ hosts: { "web.test": ["127.0.0.2"] } });
    const chosen: string[] = [];
    const events: Events = {
      ...NO_EVENTS,
      chosen: (_, backend) => void chosen.push(backend.config.name),
    };
    const lb = await balancer(
      `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n` +
        `min_ttl = "0s"\nmax_ttl = "100ms"\n` +
        `[frontend.health]\ninterval = "100ms"\nrise = 2\n` +
        `[[frontend.backend]]\nforward_to = "web.test:${port}"\n`,
      events,
    );
    await server.setHosts({ "web.test": ["127.0.0.2", "127.0.0.3"] });
    const state = () =>
      lb.status()[0]!.backends.find((b) => b.name === `web.test:${port}#127.0.0.3`)?.state;
    await eventually(() => state() === "down", "127.0.0.3 to appear, down");
    const lbPort = lb.addresses[0]!.port;
    for (let i = 0; i < 10; i++) assert.equal(text((await exchange(lbPort, bytes("a"))).data), "a");
    assert.deepEqual(
      [...new Set(chosen)],
      [`web.test:${port}#127.0.0.2`],
      "nothing went to the address that fails its checks",
    );
    const second = backendAt("127.0.0.3", port);
    await eventually(() => state() === "up", "127.0.0.3 to pass its checks");
    for (let i = 0; i < 10; i++) await exchange(lbPort, bytes("b"));
    assert.ok(second.connections >= 5, `127.0.0.3 took ${second.connections} of 10`);
  });

  it("a reload that turns a fixed backend into a name resolves it and keeps serving", async () => {
    const port = await freePort();
    const a = backendAt("127.0.0.2", port);
    const b = backendAt("127.0.0.3", port);
    const server = await dns({ hosts: { "web.test": ["127.0.0.3"] } });
    const head = `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${server.address}"\n`;
    const lb = await balancer(`${head}[[frontend.backend]]\nforward_to = "127.0.0.2:${port}"\n`);
    await exchange(lb.addresses[0]!.port, bytes("before"));
    const summary = await lb.reload(
      parseConfig(`${head}[[frontend.backend]]\nforward_to = "web.test:${port}"\n`),
    );
    assert.deepEqual(summary.failures, []);
    await eventually(
      () => lb.status()[0]!.backends.map((x) => x.name).join() === `web.test:${port}#127.0.0.3`,
      "the name's address to replace the fixed backend",
    );
    assert.equal(text((await exchange(lb.addresses[0]!.port, bytes("after"))).data), "after");
    assert.equal(a.connections, 1);
    assert.equal(b.connections, 1);
  });

  it("a start stopped by a name that does not resolve prints one line and exits 1", async () => {
    const server = await dns({ hosts: {} });
    const dir = await tempDir();
    cleanups.push(() => dir.cleanup());
    const file = join(dir.path, "unresolved.toml");
    await writeFile(
      file,
      `resolver = "${server.address}"\n[frontend]\nbind_on = "127.0.0.1:0"\n` +
        `[[frontend.backend]]\nforward_to = "nope.test:8080"\n`,
    );
    const err: string[] = [];
    const code = await main(["-c", file], {
      net,
      onShutdownSignal: () => () => {},
      stdout: () => {},
      stderr: (line) => err.push(line),
    });
    assert.equal(code, 1);
    assert.equal(err.length, 1, err.join("\n"));
    assert.match(
      err[0]!,
      /^mini-balancer: frontend "default" has no backend: nope.test did not resolve: nope.test has no A or AAAA record$/,
    );
  });

  it("check resolves every name once and prints what it found", async () => {
    const server = await dns({
      hosts: { "web.test": ["127.0.0.2", "127.0.0.3"], "a.test": ["127.0.0.1"] },
      srv: [{ name: "_web._tcp.svc.test", target: "a.test", port: 7001, weight: 5 }],
    });
    const dir = await tempDir();
    cleanups.push(() => dir.cleanup());
    const file = join(dir.path, "discovery.toml");
    await writeFile(
      file,
      `resolver = "${server.address}"\n[frontend]\nbind_on = "127.0.0.1:0"\n` +
        `discover = "srv:_web._tcp.svc.test"\n` +
        `[[frontend.backend]]\nname = "web"\nforward_to = "web.test:8080"\n`,
    );
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(["check", "-c", file], {
      net,
      onShutdownSignal: () => () => {},
      stdout: (line) => out.push(line),
      stderr: (line) => err.push(line),
    });
    assert.deepEqual(err, []);
    assert.equal(code, 0);
    const printed = out.join("\n");
    assert.match(printed, /frontend "default": web.test resolved to 2 backends/);
    assert.match(printed, /web#127\.0\.0\.2 = 127\.0\.0\.2:8080/);
    assert.match(printed, /web#127\.0\.0\.3 = 127\.0\.0\.3:8080/);
    assert.match(printed, /srv:_web._tcp.svc.test resolved to 1 backend\n/);
    assert.match(printed, /_web._tcp.svc.test#127\.0\.0\.1:7001 = 127\.0\.0\.1:7001 \(weight 5/);
    assert.equal(out.at(-1), `config "${file}" is valid: 1 frontend`, "the verdict comes last");
  });
});

describe("SRV records as backends", () => {
  const record = (port: number, priority: number, weight: number, ...addresses: string[]) => ({
    target: "t.test",
    port,
    priority,
    weight,
    addresses: addresses.map((address) => ({ address, ttlMs: 1000 })),
    ttlMs: 1000,
  });

  it("scales weights above 256 into 1 to 256, counts 0 as 1, and makes higher priorities backups", () => {
    const backends = expandSrv("_s._tcp.x", [
      record(1, 10, 1000, "10.0.0.1"),
      record(2, 10, 0, "10.0.0.2"),
      record(3, 20, 500, "10.0.0.3", "fd00::3"),
    ]);
    assert.deepEqual(
      backends.map((b) => [b.name, b.address, b.weight, b.backup]),
      [
        ["_s._tcp.x#10.0.0.1:1", "10.0.0.1:1", 256, false],
        ["_s._tcp.x#10.0.0.2:2", "10.0.0.2:2", 1, false],
        ["_s._tcp.x#10.0.0.3:3", "10.0.0.3:3", 128, true],
        ["_s._tcp.x#[fd00::3]:3", "[fd00::3]:3", 128, true],
      ],
    );
  });

  it("lists a target and port reached twice once", () => {
    const backends = expandSrv("_s._tcp.x", [
      record(1, 0, 5, "10.0.0.1"),
      record(1, 0, 5, "10.0.0.1"),
    ]);
    assert.equal(backends.length, 1);
  });
});
