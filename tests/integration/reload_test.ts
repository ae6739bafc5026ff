/**
 * Reload: a new config applied to a running balancer as a difference, over
 * real loopback sockets on the adapter of the runtime that runs the tests.
 * No open connection may be cut or altered by it.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import { NO_EVENTS } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import {
  bytes,
  connect,
  echoServer,
  eventually,
  exchange,
  net,
  randomBytes,
  sha256,
  sleep,
  text,
  within,
} from "../_helpers/index.ts";

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

function backend(greeting: string) {
  const server = echoServer({ greeting });
  cleanups.push(() => server.close());
  return server;
}

/** A frontend's config text; `backends` are addresses, named by their greeting. */
function frontend(name: string, bind: string, backends: [string, string][], extra = "") {
  return `[[frontends]]\nname = "${name}"\nbind_on = "${bind}"\n${extra}\n` +
    backends.map(([backendName, address]) =>
      `[[frontends.backend]]\nname = "${backendName}"\nforward_to = "${address}"\n`
    ).join("");
}

async function start(toml: string): Promise<Balancer> {
  balancer = await Balancer.start(parseConfig(toml), { net, events: NO_EVENTS });
  return balancer;
}

/** The greetings of `count` connections in a row. */
async function greetings(port: number, count: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    out.push(text((await exchange(port, bytes(""))).data).replace(/:$/, ""));
  }
  return out;
}

/** A connection held open that echoes on demand. */
async function held(port: number, greeting: string) {
  const client = await connect(port);
  await eventually(() => client.receivedLength() === greeting.length, "the greeting");
  let sent = 0;
  return {
    client,
    async echo(word: string) {
      client.conn.write(bytes(word));
      sent += word.length;
      const want = greeting.length + sent;
      await eventually(() => client.receivedLength() === want, `the echo of ${word}`);
      return text(client.received()).slice(-word.length);
    },
  };
}

describe(`reload on ${net.runtime}`, () => {
  it("adds and removes backends and changes the algorithm without touching open connections", async () => {
    const [a, b, c] = [backend("a:"), backend("b:"), backend("c:")];
    const lb = await start(frontend("web", "127.0.0.1:0", [["a", a.address]]));
    const port = lb.addresses[0]!.port;
    const old = await held(port, "a:");
    const added = await lb.reload(
      parseConfig(frontend("web", "127.0.0.1:0", [["a", a.address], ["b", b.address]])),
    );
    assert.deepEqual(added.backendsAdded, ["web/b"]);
    assert.deepEqual(added.frontendsChanged, ["web"]);
    // The algorithm starts afresh on the new list.
    assert.deepEqual(await greetings(port, 4), ["a", "b", "a", "b"]);
    const swapped = await lb.reload(
      parseConfig(
        frontend("web", "127.0.0.1:0", [["b", b.address], ["c", c.address]], 'algorithm = "first"'),
      ),
    );
    assert.deepEqual(swapped.backendsAdded, ["web/c"]);
    assert.deepEqual(swapped.backendsRemoved, ["web/a"]);
    assert.deepEqual(await greetings(port, 3), ["b", "b", "b"], "first fills b");
    // The connection opened before both reloads still goes to a, removed.
    assert.equal(await old.echo("still"), "still");
    old.client.conn.end();
    await old.client.closed;
    assert.equal(text(old.client.received()), "a:still");
  });

  it("binds a frontend that appears and retires one that disappears after its connections finish", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const web = frontend("web", "127.0.0.1:0", [["a", a.address]]);
    const lb = await start(web);
    const grown = await lb.reload(
      parseConfig(web + frontend("api", "127.0.0.1:0", [["b", b.address]])),
    );
    assert.deepEqual(grown.frontendsAdded, ["api"]);
    const api = lb.addresses[1]!;
    assert.deepEqual(await greetings(api.port, 1), ["b"]);
    const open = await held(api.port, "b:");
    const shrunk = await lb.reload(parseConfig(web));
    assert.deepEqual(shrunk.frontendsRemoved, ["api"]);
    assert.equal(lb.addresses.length, 1);
    await assert.rejects(within(connect(api.port), 5000, "a refused connect"));
    assert.equal(await open.echo("after"), "after", "the open connection goes on");
    assert.equal(lb.stats.activeConnections, 1);
    open.client.conn.end();
    await open.client.closed;
    await eventually(() => lb.stats.activeConnections === 0, "the retired frontend to empty");
  });

  it("keeps a frontend as it was when its new address cannot be bound", async () => {
    const a = backend("a:");
    const busy = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (c) => c.reset() });
    cleanups.push(() => busy.close());
    const lb = await start(frontend("web", "127.0.0.1:0", [["a", a.address]]));
    const port = lb.addresses[0]!.port;
    const summary = await lb.reload(
      parseConfig(frontend("web", `127.0.0.1:${busy.address.port}`, [["a", a.address]])),
    );
    assert.equal(summary.failures.length, 1);
    assert.match(
      summary.failures[0]!,
      /cannot listen on .* for frontend "web": address already in use/,
    );
    assert.deepEqual(summary.frontendsChanged, []);
    assert.deepEqual(await greetings(port, 1), ["a"], "still serving on its old address");
  });

  it("loses no byte of streaming clients across 20 reloads", async () => {
    const [a, b, c] = [backend(""), backend(""), backend("")];
    const configs = [
      frontend("web", "127.0.0.1:0", [["a", a.address]]),
      frontend("web", "127.0.0.1:0", [["a", a.address], ["b", b.address]]),
      frontend(
        "web",
        "127.0.0.1:0",
        [["b", b.address], ["c", c.address]],
        'algorithm = "least_connections"',
      ),
      frontend("web", "127.0.0.1:0", [["c", c.address]]) +
      frontend("extra", "127.0.0.1:0", [["a", a.address]]),
      frontend("web", "127.0.0.1:0", [["a", a.address], ["c", c.address]], 'algorithm = "random"'),
    ];
    const lb = await start(configs[0]!);
    const port = lb.addresses[0]!.port;
    // One connection opened before the first reload, kept to the end.
    const first = await held(port, "");
    let reloading = true;
    const failures: string[] = [];
    let exchanges = 0;
    const streamer = async (seed: number) => {
      while (reloading) {
        const payload = randomBytes(256 * 1024, seed + exchanges);
        const { data } = await exchange(port, payload);
        if (sha256(data) !== sha256(payload)) failures.push(`${data.length} of ${payload.length}`);
        exchanges++;
      }
    };
    const streams = [1, 2, 3, 4].map((seed) => streamer(seed * 1000));
    for (let i = 1; i <= 20; i++) {
      const summary = await lb.reload(parseConfig(configs[i % configs.length]!), {
        graceMs: 60_000,
      });
      assert.deepEqual(summary.failures, []);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    reloading = false;
    await Promise.all(streams);
    assert.deepEqual(failures, [], `${failures.length} of ${exchanges} exchanges lost bytes`);
    assert.ok(exchanges >= 20, `only ${exchanges} exchanges`);
    assert.equal(await first.echo("survived"), "survived");
    first.client.conn.end();
    await first.client.closed;
  });
});

describe(`reload and the limits of open connections on ${net.runtime}`, () => {
  /** When the balancer closes `client` (its FIN arrives), in performance.now() time. */
  function closedAt(client: { ended: Promise<unknown> }): { at: number | undefined } {
    const seen: { at: number | undefined } = { at: undefined };
    client.ended.then(() => (seen.at = performance.now()));
    return seen;
  }

  /** Waits until `seen` is set, at most `ms`, and returns how long after `since` it was. */
  async function closedWithin(seen: { at: number | undefined }, since: number, ms: number) {
    await eventually(() => seen.at !== undefined, `the old connection to close`, ms);
    return seen.at! - since;
  }

  // A connection keeps the idle_timeout it started with: a reload that
  // removes it or makes it longer changes new connections only.
  for (const [change, after] of [["removes it", ""], ["sets it to 10s", 'idle_timeout = "10s"']]) {
    it(`closes a connection idle for its idle_timeout of 400ms after a reload that ${change}`, async () => {
      const a = backend("");
      const lb = await start(
        frontend("web", "127.0.0.1:0", [["a", a.address]], 'idle_timeout = "400ms"'),
      );
      const port = lb.addresses[0]!.port;
      const old = await held(port, "");
      const oldClosed = closedAt(old.client);
      await lb.reload(parseConfig(frontend("web", "127.0.0.1:0", [["a", a.address]], after)));
      assert.equal(await old.echo("x"), "x");
      const lastByte = performance.now();
      const fresh = await held(port, "");
      const freshClosed = closedAt(fresh.client);
      assert.equal(await fresh.echo("y"), "y");
      const freshLastByte = performance.now();
      const idle = await closedWithin(oldClosed, lastByte, 3000);
      assert.ok(
        idle >= 390 && idle <= 950,
        `the old connection closed ${idle.toFixed(0)} ms after its last byte, not 400 to 950`,
      );
      old.client.conn.close();
      // The new connection follows the new config: still open well past 400 ms.
      await sleep(Math.max(0, freshLastByte + 800 - performance.now()));
      assert.equal(freshClosed.at, undefined, "the new connection was closed");
      assert.equal(await fresh.echo("z"), "z");
      fresh.client.conn.end();
      await fresh.client.closed;
    });
  }

  for (const [change, after] of [["removes it", ""], ["sets it to 10s", 'max_lifetime = "10s"']]) {
    it(`closes a connection at its max_lifetime of 400ms after a reload that ${change}`, async () => {
      const a = backend("");
      const lb = await start(
        frontend("web", "127.0.0.1:0", [["a", a.address]], 'max_lifetime = "400ms"'),
      );
      const port = lb.addresses[0]!.port;
      const opening = performance.now();
      const old = await held(port, "");
      const opened = performance.now();
      const oldClosed = closedAt(old.client);
      await lb.reload(parseConfig(frontend("web", "127.0.0.1:0", [["a", a.address]], after)));
      const fresh = await held(port, "");
      const freshOpened = performance.now();
      const freshClosed = closedAt(fresh.client);
      // Bytes keep moving: the lifetime ends it, not idleness.
      while (oldClosed.at === undefined && performance.now() - opening < 3000) {
        old.client.conn.write(bytes("x"));
        await sleep(50);
      }
      const lived = await closedWithin(oldClosed, opening, 100);
      assert.ok(
        lived >= 400 && oldClosed.at! - opened <= 800,
        `the old connection closed ${lived.toFixed(0)} ms after it was opened, not 400 to 800`,
      );
      old.client.conn.close();
      await sleep(Math.max(0, freshOpened + 800 - performance.now()));
      assert.equal(freshClosed.at, undefined, "the new connection was closed");
      assert.equal(await fresh.echo("z"), "z");
      fresh.client.conn.end();
      await fresh.client.closed;
    });
  }

  it("closes an idle connection of a frontend the reload removed, at its idle_timeout", async () => {
    const [a, b] = [backend(""), backend("")];
    const web = frontend("web", "127.0.0.1:0", [["a", a.address]]);
    const lb = await start(
      web + frontend("api", "127.0.0.1:0", [["b", b.address]], 'idle_timeout = "400ms"'),
    );
    const old = await held(lb.addresses[1]!.port, "");
    const oldClosed = closedAt(old.client);
    const summary = await lb.reload(parseConfig(web), { graceMs: 60_000 });
    assert.deepEqual(summary.frontendsRemoved, ["api"]);
    assert.equal(await old.echo("x"), "x", "the retiring frontend's connection goes on");
    const lastByte = performance.now();
    const idle = await closedWithin(oldClosed, lastByte, 3000);
    assert.ok(
      idle >= 390 && idle <= 950,
      `the retiring connection closed ${idle.toFixed(0)} ms after its last byte, not 400 to 950`,
    );
    old.client.conn.close();
    await eventually(() => lb.stats.activeConnections === 0, "the retired frontend to empty");
  });
});
