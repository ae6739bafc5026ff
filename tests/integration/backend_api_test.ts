/**
 * Backends through the admin API, over real loopback HTTP and real
 * backends, on the runtime that runs the tests: add (round robin includes
 * it), the file's 400 messages, 409 and 404, PATCH of a weight (the share
 * of weighted_round_robin follows), DELETE with an open connection (no new
 * connection, gone once it closes), reloads that keep API backends or
 * replace them by a file backend of the same name, and `admin.state_file`
 * across a restart.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { Metrics } from "../../src/admin/metrics.ts";
import { type ReloadResult, startAdmin } from "../../src/admin/server.ts";
import {
  checkStateFile,
  readStateFile,
  restoreState,
  StateFileError,
} from "../../src/admin/state_file.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import { combineEvents, NO_EVENTS } from "../../src/balancer/events.ts";
import type { ConfigError } from "../../src/config/config_error.ts";
import { parseConfig } from "../../src/config/load.ts";
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

/** A balancer and its admin listener; `reload` applies `next()`. */
async function startWithAdmin(
  toml: string,
  options: { next?: () => string; stateFile?: string } = {},
) {
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
    async reload(): Promise<ReloadResult> {
      const summary = await balancer.reload(parseConfig(options.next!()));
      return { success: true, summary };
    },
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

/** A request with the token (or `token`; null: none) and a JSON body. */
function call(url: string, method: string, body?: unknown, token: string | null = TOKEN) {
  return fetch(url, {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      "content-type": "application/json",
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

type Row = { name: string; state: string; weight: number; source: string; removing?: boolean };

async function backendsOf(base: string): Promise<Row[]> {
  const status = await (await fetch(`${base}/api/status`)).json();
  return status.frontends[0].backends;
}

/** The greeting of each of `count` connections, in order. */
async function greetings(port: number, count: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < count; i++) seen.push(text((await exchange(port, bytes(""))).data));
  return seen;
}

/** The config file's message for a third backend written as `table` (TOML lines). */
function fileMessage(table: string, extra = "", bind = "127.0.0.1:0"): string {
  const toml = `[[frontends]]\nname = "web"\nbind_on = "${bind}"\n${extra}\n` +
    `[[frontends.backend]]\nname = "a"\nforward_to = "127.0.0.1:1"\n` +
    `[[frontends.backend]]\nname = "b"\nforward_to = "127.0.0.1:2"\n` +
    `[[frontends.backend]]\n${table}\n`;
  try {
    parseConfig(toml);
  } catch (error) {
    const { path, problem } = error as ConfigError;
    return `${path.replace(/^frontends\[0\]\.backend\[2\]/, "backend")} ${problem}`;
  }
  throw new Error("the file was accepted");
}

describe(`backends through the admin API on ${net.runtime}`, () => {
  it("adds a backend that round robin includes at once, marked as the API's", async () => {
    const [a, b, c] = [backend("a"), backend("b"), backend("c")];
    const { base, port } = await startWithAdmin(configText([["a", a.address], ["b", b.address]]));
    const response = await call(`${base}/api/frontends/web/backends`, "POST", {
      name: "c",
      forward_to: c.address,
      weight: 2,
    });
    assert.equal(response.status, 201);
    const added = await response.json();
    assert.equal(added.name, "c");
    assert.equal(added.address, c.address);
    assert.equal(added.weight, 2);
    assert.equal(added.source, "api");
    assert.deepEqual(
      (await backendsOf(base)).map((row) => [row.name, row.source]),
      [["a", "config"], ["b", "config"], ["c", "api"]],
    );
    const seen = await greetings(port, 6);
    assert.deepEqual(seen.toSorted(), ["a", "a", "b", "b", "c", "c"]);
  });

  it("refuses a bad table with the config file's one-line message, 409 and 404", async () => {
    const { base } = await startWithAdmin(configText([["a", "127.0.0.1:1"]]));
    const url = `${base}/api/frontends/web/backends`;
    const cases: [unknown, string][] = [
      [{ name: "x", forward_to: "nope" }, 'name = "x"\nforward_to = "nope"'],
      [
        { name: "x", forward_to: "127.0.0.1:9", weight: 0 },
        'forward_to = "127.0.0.1:9"\nweight = 0',
      ],
      [{ forward_to: "127.0.0.1:9", color: "red" }, 'forward_to = "127.0.0.1:9"\ncolor = "red"'],
      [{ name: "x" }, 'name = "x"'],
      [
        { forward_to: "127.0.0.1:9", send_proxy: "v3" },
        'forward_to = "127.0.0.1:9"\nsend_proxy = "v3"',
      ],
    ];
    for (const [body, toml] of cases) {
      const response = await call(url, "POST", body);
      assert.equal(response.status, 400, JSON.stringify(body));
      const { error } = await response.json();
      assert.equal(error, fileMessage(toml));
      assert.match(error, /^backend\.[a-z_]+ /);
    }
    const notJson = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: "{",
    });
    assert.equal(notJson.status, 400);
    await notJson.body?.cancel();
    const taken = await call(url, "POST", { name: "a", forward_to: "127.0.0.1:9" });
    assert.equal(taken.status, 409);
    assert.match((await taken.json()).error, /"a" is in use/);
    const missing = await call(`${base}/api/frontends/nope/backends`, "POST", {
      forward_to: "127.0.0.1:9",
    });
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const anonymous = await call(url, "POST", { forward_to: "127.0.0.1:9" }, null);
    assert.equal(anonymous.status, 401);
    await anonymous.body?.cancel();
    const wrong = await call(url, "POST", { forward_to: "127.0.0.1:9" }, "x".repeat(22));
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    assert.deepEqual((await backendsOf(base)).map((row) => row.name), ["a"]);
  });

  it("refuses send_proxy and Unix sockets on a UDP frontend as the file does", async () => {
    const { base } = await startWithAdmin(
      '[[frontends]]\nname = "web"\nbind_on = "udp:127.0.0.1:0"\n' +
        '[[frontends.backend]]\nname = "a"\nforward_to = "127.0.0.1:1"\n',
    );
    const url = `${base}/api/frontends/web/backends`;
    const proxied = await call(url, "POST", { forward_to: "127.0.0.1:9", send_proxy: "v1" });
    assert.equal(proxied.status, 400);
    assert.equal(
      (await proxied.json()).error,
      fileMessage('forward_to = "127.0.0.1:9"\nsend_proxy = "v1"', "", "udp:127.0.0.1:0"),
    );
    const unix = await call(url, "POST", { forward_to: "unix:/tmp/x.sock" });
    assert.equal(unix.status, 400);
    assert.equal(
      (await unix.json()).error,
      fileMessage('forward_to = "unix:/tmp/x.sock"', "", "udp:127.0.0.1:0"),
    );
    const plain = await call(url, "POST", { name: "b", forward_to: "127.0.0.1:9" });
    assert.equal(plain.status, 201);
    assert.equal((await plain.json()).source, "api");
  });

  it("changes a weight with PATCH: weighted round robin follows", async () => {
    const [a, b] = [backend("a"), backend("b")];
    const { base, port } = await startWithAdmin(
      configText([["a", a.address], ["b", b.address]], 'algorithm = "weighted_round_robin"'),
    );
    assert.deepEqual((await greetings(port, 8)).toSorted().join(""), "aaaabbbb");
    const url = `${base}/api/frontends/web/backends/a`;
    const patched = await call(url, "PATCH", { weight: 3 });
    assert.equal(patched.status, 200);
    assert.equal((await patched.json()).weight, 3);
    assert.deepEqual((await greetings(port, 8)).toSorted().join(""), "aaaaaabb");
    const bad = await call(url, "PATCH", { weight: 1000 });
    assert.equal(bad.status, 400);
    assert.equal(
      (await bad.json()).error,
      fileMessage('forward_to = "127.0.0.1:9"\nweight = 1000'),
    );
    const other = await call(url, "PATCH", { forward_to: "127.0.0.1:9" });
    assert.equal(other.status, 400);
    await other.body?.cancel();
    const missing = await call(`${base}/api/frontends/web/backends/zz`, "PATCH", { weight: 2 });
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    assert.deepEqual((await backendsOf(base)).map((row) => row.weight), [3, 1]);
    const limited = await call(url, "PATCH", { max_connections: 2 });
    assert.deepEqual(
      [limited.status, (await limited.json()).max_connections],
      [200, 2],
    );
    const lifted = await call(url, "PATCH", { max_connections: null });
    assert.deepEqual([lifted.status, (await lifted.json()).max_connections], [200, null]);
    const zero = await call(url, "PATCH", { max_connections: 0 });
    assert.equal(zero.status, 400);
    assert.equal(
      (await zero.json()).error,
      fileMessage('forward_to = "127.0.0.1:9"\nmax_connections = 0'),
    );
  });

  it("DELETE stops new connections at once and removes the backend once its last one ends", async () => {
    const [a, c] = [backend("a"), backend("c")];
    const { base, port, balancer } = await startWithAdmin(configText([["a", a.address]]));
    const url = `${base}/api/frontends/web/backends`;
    (await call(url, "POST", { name: "c", forward_to: c.address })).body?.cancel();
    // Round robin: a, then c; the second connection stays open on c.
    assert.deepEqual(await greetings(port, 1), ["a"]);
    const held = await connect(port);
    await eventually(() => text(held.received()) === "c", "the greeting of c");
    const deleted = await call(`${url}/c`, "DELETE");
    assert.equal(deleted.status, 204);
    const removing = (await backendsOf(base)).find((row) => row.name === "c")!;
    assert.equal(removing.state, "draining");
    assert.equal(removing.removing, true);
    assert.deepEqual(await greetings(port, 4), ["a", "a", "a", "a"]);
    const again = await call(`${url}/c`, "DELETE");
    assert.equal(again.status, 404);
    await again.body?.cancel();
    const fileOne = await call(`${url}/a`, "DELETE");
    assert.equal(fileOne.status, 409);
    await fileOne.body?.cancel();
    // Still open: still listed.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual((await backendsOf(base)).map((row) => row.name), ["a", "c"]);
    held.conn.end();
    await held.closed;
    const started = performance.now();
    await eventually(() => balancer.status()[0]!.backends.length === 1, "c removed", 3000);
    const took = performance.now() - started;
    assert.ok(took >= 0 && took < 1000, `removed ${took} ms after its connection ended`);
    assert.deepEqual((await backendsOf(base)).map((row) => row.name), ["a"]);
  });

  it("keeps API backends across a reload; a file backend of the same name replaces one", async () => {
    const [a, b, c, d] = [backend("a"), backend("b"), backend("c"), backend("d")];
    let next = configText([["a", a.address], ["b", b.address]]);
    const { base, port } = await startWithAdmin(configText([["a", a.address]]), {
      next: () => next,
    });
    const url = `${base}/api/frontends/web/backends`;
    (await call(url, "POST", { name: "c", forward_to: c.address })).body?.cancel();
    (await call(url, "POST", { name: "x", forward_to: c.address })).body?.cancel();
    const reloaded = await call(`${base}/api/reload`, "POST");
    assert.equal(reloaded.status, 200);
    await reloaded.body?.cancel();
    assert.deepEqual(
      (await backendsOf(base)).map((row) => [row.name, row.source]),
      [["a", "config"], ["b", "config"], ["c", "api"], ["x", "api"]],
    );
    assert.deepEqual((await greetings(port, 4)).toSorted().join(""), "abcc");
    next = configText([["a", a.address], ["c", d.address]]);
    (await call(`${base}/api/reload`, "POST")).body?.cancel();
    const rows = await backendsOf(base);
    assert.deepEqual(rows.map((row) => [row.name, row.source]), [
      ["a", "config"],
      ["c", "config"],
      ["x", "api"],
    ]);
    assert.deepEqual((await greetings(port, 3)).toSorted().join(""), "acd");
  });

  it("keeps API backends, weights and states across a restart with admin.state_file", async () => {
    const [a, c] = [backend("a"), backend("c")];
    const dir = await tempDir();
    cleanups.push(() => dir.cleanup?.());
    const file = join(dir.path, "state.json");
    const toml = configText([["a", a.address], ["b", a.address]]);
    const first = await startWithAdmin(toml, { stateFile: file });
    const url = `${first.base}/api/frontends/web/backends`;
    (await call(url, "POST", { name: "c", forward_to: c.address, max_connections: 5 })).body
      ?.cancel();
    (await call(`${url}/a`, "PATCH", { weight: 7 })).body?.cancel();
    (await call(`${url}/b/drain`, "POST")).body?.cancel();
    const written = JSON.parse(await readFile(file, "utf8"));
    assert.equal(written.version, 1);
    assert.deepEqual(written.frontends.web.states, { b: "draining" });
    await first.stop();

    const second = await startWithAdmin(toml, { stateFile: file });
    restoreState(second.balancer, file, readStateFile(file)!);
    assert.deepEqual(
      (await backendsOf(second.base)).map((row) => [row.name, row.state, row.weight, row.source]),
      [["a", "up", 7, "config"], ["b", "draining", 1, "config"], ["c", "up", 1, "api"]],
    );
    assert.deepEqual((await greetings(second.port, 2)).toSorted().join(""), "ac");

    // A corrupt file: one line naming it, from the start and from check.
    await writeFile(file, '{"version": 1, "frontends": {"web": [');
    assert.throws(() => readStateFile(file), (error: Error) => {
      assert.ok(error instanceof StateFileError);
      assert.ok(error.message.startsWith(`Cannot read state file "${file}": is not JSON`));
      assert.ok(!error.message.includes("\n"));
      return true;
    });
    await writeFile(file, '{"version": 2, "frontends": {}}');
    assert.throws(() => readStateFile(file), /version must be 1: current value is 2/);
    await writeFile(
      file,
      JSON.stringify({
        version: 1,
        frontends: { web: { backends: [{ forward_to: "nope" }], patches: {}, states: {} } },
      }),
    );
    assert.throws(
      () => checkStateFile(file, parseConfig(toml).frontends),
      (error: Error) =>
        error.message ===
          `Cannot read state file "${file}": frontends.web.backends[0]: ` +
            'backend.forward_to must be host:port: current value is "nope"',
    );
    assert.equal(readStateFile(join(dir.path, "none.json")), undefined);
  });
});
