/**
 * `balancer.frontend(name)`: backends changed from code, over real loopback
 * sockets and real backends, on the runtime that runs the tests. Each
 * change is checked against the admin API on the same balancer: the same
 * 400/404/409 texts, the same audit line (with `peer=library`), the same
 * state file, the same survival across a reload.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Metrics } from "../../src/admin/metrics.ts";
import { startAdmin } from "../../src/admin/server.ts";
import { readStateFile, restoreState } from "../../src/admin/state_file.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import { combineEvents, NO_EVENTS } from "../../src/balancer/events.ts";
import { BackendChangeError, UnknownFrontendError } from "../../src/balancer/frontend_api.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import {
  bytes,
  connect,
  echoServer,
  eventually,
  exchange,
  net,
  tempDir,
  text,
} from "../_helpers/index.ts";

const TOKEN = "a-token-of-some-length";
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function backend(greeting: string) {
  const server = echoServer({ greeting });
  cleanups.push(() => server.close());
  return server;
}

function configText(backends: [string, string][], extra = ""): string {
  return `[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:0"\n${extra}\n` +
    backends.map(([name, address]) =>
      `[[frontends.backend]]\nname = "${name}"\nforward_to = "${address}"\n`
    ).join("");
}

/** A balancer, its admin listener (to compare with) and reloads of `next()`. */
async function start(toml: string, options: { next?: () => string; stateFile?: string } = {}) {
  const metrics = new Metrics(net.runtime);
  const balancer = await Balancer.start(parseConfig(toml), {
    net,
    events: combineEvents(NO_EVENTS, metrics),
  });
  metrics.attach(balancer);
  const admin = startAdmin({
    hostname: "127.0.0.1",
    port: 0,
    token: TOKEN,
    net,
    balancer,
    metrics,
    lastReload: () => null,
    stateFile: options.stateFile,
    reload: () => Promise.reject(new Error("not in this test")),
  });
  const stop = async () => {
    await admin.close();
    await balancer.stop({ graceMs: 0 });
  };
  cleanups.push(stop);
  const base = `http://127.0.0.1:${admin.address.port}`;
  const port = balancer.addresses[0]!.port;
  return { balancer, base, port, stop };
}

/** The admin API's error text and status for a request. */
async function apiError(url: string, method: string, body: unknown) {
  const response = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, error: (await response.json()).error as string };
}

/** What `change` throws, as the API would answer it. */
function thrown(change: () => unknown): { status: number; error: string } {
  try {
    change();
  } catch (error) {
    assert.ok(error instanceof BackendChangeError, `${error} is a BackendChangeError`);
    return { status: error.status, error: error.message };
  }
  throw new Error("the change was accepted");
}

/** The greeting of each of `count` connections, in order. */
async function greetings(port: number, count: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < count; i++) seen.push(text((await exchange(port, bytes(""))).data));
  return seen;
}

function rows(balancer: Balancer) {
  return balancer.status()[0]!.backends.map((b) => [b.name, b.state, b.weight, b.source]);
}

describe(`balancer.frontend(name) on ${net.runtime}`, () => {
  it("throws UnknownFrontendError for a frontend no one serves", async () => {
    const { balancer } = await start(configText([["a", "127.0.0.1:1"]]));
    assert.throws(() => balancer.frontend("nope"), (error: Error) => {
      assert.ok(error instanceof UnknownFrontendError);
      assert.equal(error.message, 'no such frontend: "nope"');
      return true;
    });
    assert.equal(balancer.frontend("web").name, "web");
  });

  it("adds a backend that round robin takes at once, with the API's messages for bad ones", async () => {
    const [a, c] = [backend("a"), backend("c")];
    const { balancer, base, port } = await start(configText([["a", a.address]]));
    const web = balancer.frontend("web");
    assert.equal(web.addBackend({ name: "c", forward_to: c.address, weight: 2 }), "c");
    assert.deepEqual(rows(balancer), [["a", "up", 1, "config"], ["c", "up", 2, "api"]]);
    assert.deepEqual((await greetings(port, 4)).toSorted().join(""), "aacc");
    const url = `${base}/api/frontends/web/backends`;
    const bad = [
      { name: "x", forward_to: "nope" },
      { forward_to: "127.0.0.1:9", weight: 0 },
      { forward_to: "127.0.0.1:9", color: "red" },
      { name: "x" },
      { name: "a", forward_to: "127.0.0.1:9" },
    ];
    for (const table of bad) {
      const fromCode = thrown(() => web.addBackend(table));
      assert.deepEqual(fromCode, await apiError(url, "POST", table), JSON.stringify(table));
      assert.ok([400, 409].includes(fromCode.status));
    }
    assert.deepEqual(rows(balancer).map(([name]) => name), ["a", "c"]);
  });

  it("sets weights (weighted round robin follows), drains and enables, as the API does", async () => {
    const [a, b] = [backend("a"), backend("b")];
    const { balancer, base, port } = await start(
      configText([["a", a.address], ["b", b.address]], 'algorithm = "weighted_round_robin"'),
    );
    const web = balancer.frontend("web");
    web.setWeight("a", 3);
    assert.deepEqual((await greetings(port, 8)).toSorted().join(""), "aaaaaabb");
    const url = `${base}/api/frontends/web/backends`;
    assert.deepEqual(
      thrown(() => web.setWeight("a", 1000)),
      await apiError(`${url}/a`, "PATCH", { weight: 1000 }),
    );
    assert.deepEqual(
      thrown(() => web.setWeight("zz", 2)),
      await apiError(`${url}/zz`, "PATCH", { weight: 2 }),
    );
    web.drain("a");
    assert.deepEqual(await greetings(port, 4), ["b", "b", "b", "b"]);
    assert.equal(balancer.status()[0]!.backends[0]!.state, "draining");
    web.enable("a");
    assert.ok((await greetings(port, 8)).includes("a"));
    assert.equal(thrown(() => web.drain("zz")).status, 404);
    assert.deepEqual(rows(balancer), [["a", "up", 3, "config"], ["b", "up", 1, "config"]]);
  });

  it("removes a backend: no new connection at once, gone once its last one ends", async () => {
    const [a, c] = [backend("a"), backend("c")];
    const { balancer, port } = await start(configText([["a", a.address]]));
    const web = balancer.frontend("web");
    web.addBackend({ name: "c", forward_to: c.address });
    assert.deepEqual(await greetings(port, 1), ["a"]);
    const held = await connect(port);
    await eventually(() => text(held.received()) === "c", "the greeting of c");
    web.removeBackend("c");
    assert.equal(balancer.status()[0]!.backends[1]!.removing, true);
    assert.deepEqual(await greetings(port, 4), ["a", "a", "a", "a"]);
    assert.equal(thrown(() => web.removeBackend("c")).status, 404);
    assert.deepEqual(thrown(() => web.removeBackend("a")), {
      status: 409,
      error: "is a backend of the config file: remove it there and reload",
    });
    held.conn.end();
    await held.closed;
    const started = performance.now();
    await eventually(() => balancer.status()[0]!.backends.length === 1, "c removed", 3000);
    const took = performance.now() - started;
    assert.ok(took >= 0 && took < 1000, `removed ${took} ms after its connection ended`);
  });

  it("keeps its changes across a reload and in the admin state file", async () => {
    const [a, c] = [backend("a"), backend("c")];
    const dir = await tempDir();
    cleanups.push(() => dir.cleanup?.());
    const file = join(dir.path, "state.json");
    const toml = configText([["a", a.address], ["b", a.address]]);
    const first = await start(toml, { stateFile: file });
    const web = first.balancer.frontend("web");
    web.addBackend({ name: "c", forward_to: c.address, max_connections: 5 });
    web.setWeight("a", 7);
    web.drain("b");
    const written = JSON.parse(await readFile(file, "utf8"));
    assert.deepEqual(written.frontends.web, {
      backends: [{ name: "c", forward_to: c.address, max_connections: 5 }],
      patches: { a: { weight: 7 } },
      states: { b: "draining" },
    });
    await first.balancer.reload(parseConfig(toml));
    const expected = [
      ["a", "up", 7, "config"],
      ["b", "draining", 1, "config"],
      ["c", "up", 1, "api"],
    ];
    assert.deepEqual(rows(first.balancer), expected);
    await first.stop();
    const second = await start(toml, { stateFile: file });
    restoreState(second.balancer, file, readStateFile(file)!);
    assert.deepEqual(rows(second.balancer), expected);
    assert.deepEqual((await greetings(second.port, 2)).toSorted().join(""), "ac");
  });

  it("logs each change as the API's audit line, with peer=library, at the default verbosity", async () => {
    const lines: string[] = [];
    configureLogging({ verbosity: 0, write: (line) => lines.push(line) });
    cleanups.push(() => resetSync());
    const { balancer } = await start(configText([["a", "127.0.0.1:1"]]));
    const web = balancer.frontend("web");
    web.addBackend({ name: "c", forward_to: "127.0.0.1:2" });
    web.setWeight("c", 4);
    web.drain("a");
    web.enable("a");
    web.removeBackend("c");
    thrown(() => web.addBackend({ forward_to: "nope" }));
    const actions = lines.map((line) => line.replace(/^\S+ /, ""));
    const prefix = " INFO mini_balancer::operator: admin action peer=library ";
    assert.deepEqual(actions, [
      `${prefix}action="add backend" target=web/c result=added after="127.0.0.1:2 weight=1"\n`,
      `${prefix}action="patch backend" target=web/c result=patched ` +
      `before="weight=1 max_connections=null" after="weight=4 max_connections=null"\n`,
      `${prefix}action=drain target=web/a result=draining\n`,
      `${prefix}action=enable target=web/a result=enabled\n`,
      `${prefix}action="delete backend" target=web/c result=removed\n`,
      `${prefix}action="add backend" target=web/nope result=` +
      `"backend.forward_to must be host:port: current value is \\"nope\\""\n`,
    ]);
  });
});
