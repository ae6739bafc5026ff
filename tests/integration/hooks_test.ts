/**
 * The program's select and admit hooks (`Balancer.start(config, { select,
 * admit })`), in process over real loopback sockets on the adapter of the
 * runtime that runs the tests: select routes per connection and per UDP
 * flow, falls back to the algorithm for a name it cannot use, and is logged
 * once per error text when it throws; admit refuses (counted as a "hook"
 * refusal, closed, its reason logged), waits for a promise for at most
 * header_timeout, and fails closed.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Balancer, type BalancerOptions } from "../../src/balancer/balancer.ts";
import { combineEvents, type Events, NO_EVENTS } from "../../src/balancer/events.ts";
import { forgetLoggedHookErrors, type SelectContext } from "../../src/balancer/hooks.ts";
import { logEvents } from "../../src/balancer/log_events.ts";
import { Metrics } from "../../src/admin/metrics.ts";
import { OPENSSL_H2_HELLO } from "../unit/protocol/_samples.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import {
  bytes,
  connect,
  echoServer,
  eventually,
  freePort,
  net,
  refusals,
  text,
  udpClient,
  udpEcho,
  within,
} from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  resetSync();
  forgetLoggedHookErrors();
});

/** Logs at debug into an array, for the rest of the test (set before the balancer starts). */
function captureLogs(): string[] {
  const lines: string[] = [];
  configureLogging({ verbosity: 2, write: (line) => lines.push(line) });
  return lines;
}

/** Two echo backends, "a" and "b", each greeting with its name. */
function backends() {
  const a = echoServer({ greeting: "a" });
  const b = echoServer({ greeting: "b" });
  cleanups.push(() => a.close(), () => b.close());
  return { a, b };
}

/** A balancer in front of backends "a" and "b", logging, counting (`metrics`) and recording refusals. */
async function start(options: Omit<BalancerOptions, "net">, extra = "") {
  const { a, b } = backends();
  const { seen, events } = refusals();
  const metrics = new Metrics(net.runtime);
  const config = parseConfig(`
    [frontend]
    name = "web"
    bind_on = "127.0.0.1:0"
    algorithm = "round_robin"
    ${extra}
    [[frontend.backend]]
    name = "a"
    forward_to = "${a.address}"
    [[frontend.backend]]
    name = "b"
    forward_to = "${b.address}"
  `);
  const lb = await Balancer.start(config, {
    net,
    ...options,
    events: combineEvents(logEvents(), events as Partial<Events>, metrics),
  });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return { lb, port: lb.addresses[0]!.port, seen, metrics };
}

/** Connects and returns the greeting of the backend that took it, and the client's port. */
async function greeted(port: number, before = ""): Promise<{ from: string; port: number }> {
  const client = await connect(port);
  cleanups.push(() => client.conn.close());
  if (before !== "") client.conn.write(bytes(before));
  const local = client.conn.localAddress.port;
  let ended = false;
  client.ended.then(() => (ended = true));
  const deadline = Date.now() + 3000;
  while (client.receivedLength() === 0 && !ended && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2));
  }
  client.conn.close();
  return { from: text(client.received()).slice(0, 1), port: local };
}

describe(`select hook (${net.runtime})`, () => {
  it("sends even client ports to b and odd ones to a, per connection, with the frontend's facts", async () => {
    const seen: SelectContext[] = [];
    const { port } = await start({
      select: (ctx) => {
        seen.push(ctx);
        return ctx.client.port % 2 === 0 ? "b" : "a";
      },
    });
    const ports = new Set<number>();
    for (let i = 0; i < 8; i++) {
      const got = await greeted(port);
      ports.add(got.port % 2);
      assert.equal(got.from, got.port % 2 === 0 ? "b" : "a", `client port ${got.port}`);
    }
    assert.equal(seen.length, 8);
    const ctx = seen[0]!;
    assert.equal(ctx.frontend, "web");
    assert.equal(ctx.transport, "tcp");
    assert.equal(ctx.client.hostname, "127.0.0.1");
    assert.deepEqual(ctx.backends.map((b) => [b.name, b.state, b.weight]), [
      ["a", "up", 1],
      ["b", "up", 1],
    ]);
    assert.deepEqual(ctx.preamble, {
      serverName: undefined,
      alpn: undefined,
      protocol: undefined,
      proxyClient: undefined,
    });
  });

  it("sees what the preamble read: the TLS server name, ALPN and protocol", async () => {
    const { a, b } = backends();
    const port = await freePort();
    const seen: SelectContext[] = [];
    const lb = await Balancer.start(
      parseConfig(`
        [[frontends]]
        name = "tenant"
        bind_on = "127.0.0.1:${port}"
        sni = ["a.test"]
        [[frontends.backend]]
        name = "a"
        forward_to = "${a.address}"
        [[frontends.backend]]
        name = "b"
        forward_to = "${b.address}"
        [[frontends]]
        name = "rest"
        bind_on = "127.0.0.1:${port}"
        [[frontends.backend]]
        forward_to = "${a.address}"
      `),
      {
        net,
        events: NO_EVENTS,
        select: (ctx) => {
          seen.push(ctx);
          return ctx.preamble.serverName === "a.test" ? "b" : undefined;
        },
      },
    );
    cleanups.push(() => lb.stop({ graceMs: 0 }));
    const client = await connect(port);
    cleanups.push(() => client.conn.close());
    client.conn.write(OPENSSL_H2_HELLO);
    await eventually(() => client.receivedLength() > 0, "the backend's greeting", 3000);
    assert.equal(text(client.received()).slice(0, 1), "b");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.frontend, "tenant");
    assert.deepEqual(seen[0]!.preamble, {
      serverName: "a.test",
      alpn: ["h2", "http/1.1"],
      protocol: "tls",
      proxyClient: undefined,
    });
  });

  it("falls back to the algorithm for an unknown name and a draining backend, with a debug line", async () => {
    const logs = captureLogs();
    let name = "nope";
    const { lb, port } = await start({ select: () => name });
    const unknown = [await greeted(port), await greeted(port)].map((g) => g.from).sort();
    assert.deepEqual(unknown, ["a", "b"], "round robin chose");
    assert.ok(logs.some((l) => l.includes('select hook named backend "nope": no such backend')));
    name = "b";
    assert.ok(lb.setBackendState("web", "b", "draining"));
    assert.deepEqual([(await greeted(port)).from, (await greeted(port)).from], ["a", "a"]);
    assert.ok(logs.some((l) => l.includes('select hook named backend "b": it is draining')));
  });

  it("a throwing select is logged once for two connections, and the algorithm chooses", async () => {
    const logs = captureLogs();
    const { port } = await start({
      select: () => {
        throw new Error("no routing table");
      },
    });
    const got = [await greeted(port), await greeted(port)].map((g) => g.from).sort();
    assert.deepEqual(got, ["a", "b"]);
    const lines = logs.filter((l) => l.includes("select hook failed"));
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.ok(lines[0]!.includes("Error: no routing table"));
  });
});

/** A PROXY v1 header from 203.0.113.7:`port`. */
function proxyFrom(port: number): string {
  return `PROXY TCP4 203.0.113.7 127.0.0.1 ${port} 80\r\n`;
}

const PROXIED = 'accept_proxy = true\ntrusted = ["127.0.0.1"]\nheader_timeout = "400ms"';

describe(`admit hook (${net.runtime})`, () => {
  it("refuses a list of client ports: counted as a hook refusal, closed, its reason logged", async () => {
    const logs = captureLogs();
    const blocked = new Set([40001, 40003]);
    const { port, seen, metrics } = await start({
      admit: (ctx) => !blocked.has(ctx.preamble.proxyClient!.port) || "port is blocked",
    }, PROXIED);
    for (const from of [40001, 40002, 40003, 40004]) {
      const got = await greeted(port, proxyFrom(from));
      // The admitted ones in turn (round robin): a, then b.
      const expected = blocked.has(from) ? "" : from === 40002 ? "a" : "b";
      assert.equal(got.from, expected, `port ${from}`);
    }
    assert.deepEqual(seen.map((s) => [s.why, s.peer, s.detail]), [
      ["hook", "203.0.113.7:40001", "port is blocked"],
      ["hook", "203.0.113.7:40003", "port is blocked"],
    ]);
    assert.ok(
      logs.some((l) => l.includes("the admit hook said no") && l.includes("port is blocked")),
    );
    const scraped = await metrics.registry.metrics();
    assert.match(scraped, /^mini_balancer_refusals_total\{frontend="web",reason="hook"\} 2$/m);
  });

  it("an admit that throws refuses (fail closed), logged once", async () => {
    const logs = captureLogs();
    const { port, seen } = await start({
      admit: () => {
        throw new Error("policy store down");
      },
    });
    assert.equal((await greeted(port)).from, "");
    assert.equal((await greeted(port)).from, "");
    assert.deepEqual(seen.map((s) => [s.why, s.detail]), [
      ["hook", "the admit hook threw"],
      ["hook", "the admit hook threw"],
    ]);
    assert.equal(logs.filter((l) => l.includes("admit hook failed")).length, 1);
  });

  it("an async admit that resolves after 50 ms admits, the bytes sent meanwhile intact", async () => {
    const { port, lb } = await start({
      admit: () => new Promise((resolve) => setTimeout(() => resolve(true), 50)),
    });
    const client = await connect(port);
    cleanups.push(() => client.conn.close());
    const began = performance.now();
    client.conn.write(bytes("hello"));
    await within(
      (async () => {
        while (client.receivedLength() < 6) await new Promise((r) => setTimeout(r, 2));
      })(),
      3000,
      "the greeting and the echo",
    );
    const took = performance.now() - began;
    assert.ok(took >= 45 && took < 1000, `took ${took.toFixed(0)}ms`);
    assert.equal(text(client.received()), "ahello");
    client.conn.close();
    await lb.stop({ graceMs: 0 });
    assert.equal(lb.stats.pendingTimers, 0);
  });

  it("an admit that never answers is refused at header_timeout", async () => {
    const { port, seen, lb } = await start(
      { admit: () => new Promise(() => {}) },
      'header_timeout = "300ms"',
    );
    const client = await connect(port);
    cleanups.push(() => client.conn.close());
    const began = performance.now();
    await within(client.ended, 3000, "the refusal");
    const took = performance.now() - began;
    assert.ok(took >= 280 && took < 1500, `took ${took.toFixed(0)}ms`);
    assert.equal(client.receivedLength(), 0);
    assert.deepEqual(seen.map((s) => [s.why, s.detail]), [
      ["hook", "the admit hook did not answer within header_timeout (300ms)"],
    ]);
    assert.equal(lb.stats.pendingTimers, 0);
  });
});

describe(`admit hook pending (${net.runtime})`, () => {
  it("a client that leaves while admit is pending is served as far as it asked, and nothing is left", async () => {
    let answer!: (verdict: boolean) => void;
    const { lb, port, seen } = await start({
      admit: () => new Promise<boolean>((resolve) => (answer = resolve)),
    });
    const client = await connect(port);
    client.conn.close();
    await within(client.closed, 2000, "the client's close");
    await eventually(() => answer !== undefined, "the admit call");
    assert.equal(lb.stats.pendingTimers, 1, "the admit wait");
    answer(true);
    // The wait's timer gives way to the session's connect timer, then to nothing.
    await eventually(
      () => lb.stats.pendingTimers === 0 && lb.stats.activeConnections === 0,
      "no session or timer left",
      3000,
    );
    assert.deepEqual(seen, []);
  });

  it("stopping the balancer while admit is pending closes the client and leaves no timer", async () => {
    const { lb, port } = await start(
      { admit: () => new Promise(() => {}) },
      'header_timeout = "10s"',
    );
    const client = await connect(port);
    cleanups.push(() => client.conn.close());
    await eventually(() => lb.stats.pendingTimers === 1, "the admit wait");
    const began = performance.now();
    await lb.stop({ graceMs: 0 });
    await within(client.ended, 2000, "the close");
    assert.ok(performance.now() - began < 1000);
    assert.equal(lb.stats.pendingTimers, 0);
  });
});

describe(`hooks on UDP flows (${net.runtime})`, () => {
  it("select names each new flow's backend and admit refuses a client port", async () => {
    const a = await udpEcho({ prefix: "a:" });
    const b = await udpEcho({ prefix: "b:" });
    cleanups.push(() => a.close(), () => b.close());
    const refused = new Set<number>();
    const selected: SelectContext[] = [];
    const { seen, events } = refusals();
    const lb = await Balancer.start(
      parseConfig(`
        [frontend]
        name = "dns"
        bind_on = "udp:127.0.0.1:0"
        [[frontend.backend]]
        name = "a"
        forward_to = "${a.address}"
        [[frontend.backend]]
        name = "b"
        forward_to = "${b.address}"
      `),
      {
        net,
        events: { ...NO_EVENTS, ...events },
        select: (ctx) => {
          selected.push(ctx);
          return "b";
        },
        admit: (ctx) => refused.has(ctx.client.port) ? "port refused" : true,
      },
    );
    cleanups.push(() => lb.stop({ graceMs: 0 }));
    const port = lb.addresses[0]!.port;
    const clients = [await udpClient(port), await udpClient(port), await udpClient(port)];
    cleanups.push(() => clients.forEach((c) => c.close()));
    refused.add(clients[1]!.port);
    for (const client of [clients[0]!, clients[2]!]) {
      assert.equal(text(await client.request(bytes("q"))), "b:q");
    }
    clients[1]!.send(bytes("q"));
    await within(
      (async () => {
        while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
      })(),
      2000,
      "the refusal",
    );
    assert.deepEqual(seen.map((s) => [s.why, s.peer, s.detail]), [
      ["hook", `127.0.0.1:${clients[1]!.port}`, "port refused"],
    ]);
    assert.equal(clients[1]!.replies.length, 0);
    assert.equal(selected.length, 2);
    assert.equal(selected[0]!.transport, "udp");
    assert.equal(selected[0]!.frontend, "dns");
    assert.equal(a.datagrams, 0);
  });
});
