/**
 * The edge, in process over real loopback sockets: PROXY protocol in and
 * out, allow and deny lists, connection rates per client, bandwidth per
 * connection, and Unix sockets, on the adapter of the runtime that runs the
 * tests.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import type { Events } from "../../src/balancer/events.ts";
import { NO_EVENTS } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import { encodeProxyV1, encodeProxyV2 } from "../../src/protocol/proxy.ts";
import type { Endpoint } from "../../src/runtime/types.ts";
import {
  bytes,
  concat,
  configText,
  connect,
  eventually,
  exchange,
  freePort,
  net,
  randomBytes,
  recordingBackend,
  refusals,
  sha256,
  sleep,
  tempDir,
  text,
  within,
} from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Starts a recording backend and a balancer in front of it, whose frontend
 * and backend tables get `frontend` and `backendLines`; refusals are recorded.
 */
async function serve(frontend: string, backendLines = "") {
  const b = backend();
  const { seen, events } = refusals();
  const { lb, port } = await start(configText([b.address], frontend, backendLines), events);
  return { b, seen, lb, port };
}

async function start(config: string, events?: Events): Promise<{ lb: Balancer; port: number }> {
  const lb = await Balancer.start(parseConfig(config), { net, events: events ?? NO_EVENTS });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return { lb, port: lb.addresses[0]!.port };
}

function backend(listen?: { hostname?: string; path?: string }) {
  const b = recordingBackend(listen);
  cleanups.push(() => b.close());
  return b;
}

/** Sends `data` as one write, half-closes, and returns what came back before the close. */
async function send(port: number | Endpoint, data: Uint8Array) {
  return text((await exchange(port, data)).data);
}

const CLIENT = { hostname: "203.0.113.7", port: 51000 };
const ORIGINAL = { hostname: "198.51.100.1", port: 443 };

describe("PROXY protocol", () => {
  for (const version of ["v1", "v2"] as const) {
    it(`a trusted ${version} header's client address is what a send_proxy backend receives`, async () => {
      const b = backend();
      const { port } = await start(`
        [frontend]
        bind_on = "127.0.0.1:0"
        accept_proxy = true
        trusted = ["127.0.0.0/8"]
        [[frontend.backend]]
        forward_to = "${b.address}"
        send_proxy = "v1"
      `);
      const header = version === "v1"
        ? encodeProxyV1(CLIENT, ORIGINAL)
        : encodeProxyV2(CLIENT, ORIGINAL);
      const answer = await send(port, concat([header, bytes("hello")]));
      assert.equal(answer, "PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\nhello");
      assert.equal(b.text(0), "PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\nhello");
    });
  }

  it("send_proxy v2 writes the socket's addresses before any client byte", async () => {
    const { b, port } = await serve("", 'send_proxy = "v2"');
    const client = await connect(port);
    const expected = encodeProxyV2(client.conn.localAddress, { hostname: "127.0.0.1", port });
    client.conn.write(bytes("ping"));
    client.conn.end();
    await client.closed;
    const got = b.text(0);
    assert.equal(got, text(expected) + "ping");
  });

  it("a connection from an untrusted address is closed and reaches no backend", async () => {
    const { b, seen, port } = await serve('accept_proxy = true\ntrusted = ["10.0.0.0/8"]');
    const answer = await send(
      port,
      concat([encodeProxyV1(CLIENT, ORIGINAL), bytes("secret")]),
    );
    assert.equal(answer, "");
    assert.equal(b.connections, 0);
    assert.equal(seen[0]?.why, "untrusted");
  });

  it("a malformed header is refused, and the next good one is served", async () => {
    const { b, seen, port } = await serve('accept_proxy = true\ntrusted = ["127.0.0.1"]');
    assert.equal(await send(port, bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nsecret")), "");
    assert.equal(await send(port, bytes("GET / HTTP/1.0\r\n\r\n")), "");
    assert.equal(b.connections, 0);
    assert.deepEqual(seen.map((s) => s.why), ["bad_header", "bad_header"]);
    assert.equal(
      await send(port, concat([encodeProxyV2(CLIENT, ORIGINAL), bytes("ok")])),
      "ok",
    );
  });

  it("a client that sends no complete header is closed after header_timeout", async () => {
    const { b, seen, port, lb } = await serve(
      'accept_proxy = true\ntrusted = ["127.0.0.1"]\nheader_timeout = "200ms"',
    );
    const client = await connect(port);
    client.conn.write(bytes("PROXY TCP4 1.2.3.4"));
    const started = performance.now();
    await within(client.ended, 5000, "the balancer to close a client without a whole header");
    client.conn.close();
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 170, `closed after ${elapsed.toFixed(0)} ms, before header_timeout`);
    assert.match(seen[0]?.detail ?? "", /header_timeout \(200ms\)/);
    assert.equal(b.connections, 0);
    assert.equal(lb.stats.pendingTimers, 0);
  });

  it("the header's address is the one source_hash, allow and the log see", async () => {
    const { seen, port } = await serve(
      'accept_proxy = true\ntrusted = ["127.0.0.1"]\ndeny = ["203.0.113.0/24"]',
    );
    assert.equal(
      await send(port, concat([encodeProxyV1(CLIENT, ORIGINAL), bytes("x")])),
      "",
    );
    assert.deepEqual(seen[0], {
      why: "denied",
      peer: "203.0.113.7:51000",
      detail: "the address is in deny",
    });
    const other = { hostname: "192.0.2.9", port: 4000 };
    assert.equal(
      await send(port, concat([encodeProxyV1(other, ORIGINAL), bytes("y")])),
      "y",
    );
  });
});

describe("access lists and rates", () => {
  it("deny closes a client before any backend is touched, and wins over allow", async () => {
    const { b, seen, port } = await serve('allow = ["127.0.0.0/8"]\ndeny = ["127.0.0.1"]');
    assert.equal(await send(port, bytes("hi")), "");
    assert.equal(b.connections, 0);
    assert.equal(seen[0]?.why, "denied");
  });

  it("a non-empty allow admits only its ranges, IPv4-mapped addresses as IPv4", async () => {
    const { b, port } = await serve('allow = ["10.0.0.0/8"]');
    assert.equal(await send(port, bytes("hi")), "");
    const { port: allowed } = await start(`
      [frontend]
      bind_on = "127.0.0.1:0"
      allow = ["::ffff:127.0.0.0/104"]
      [[frontend.backend]]
      forward_to = "${b.address}"
    `);
    assert.equal(await send(allowed, bytes("hi")), "hi");
  });

  it("a client over connection_rate_per_client is closed at accept, others are not", async () => {
    const { b, seen, port } = await serve('connection_rate_per_client = "3/m"');
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await send(port, bytes(`n${i}`)));
    assert.deepEqual(answers, ["n0", "n1", "n2", "", ""]);
    assert.equal(b.connections, 3, "the refused clients never reached the backend");
    assert.deepEqual(seen.map((s) => s.why), ["rate_limited", "rate_limited"]);
    assert.match(seen[0]!.detail, /more than 3\/m/);
  });

  it("max_bytes_per_second paces a transfer both ways and keeps every byte", async () => {
    const { port } = await serve('max_bytes_per_second = "1MiB"');
    const data = randomBytes(2 * 1024 * 1024);
    const started = performance.now();
    const { data: echoed } = await exchange(port, data);
    const seconds = (performance.now() - started) / 1000;
    assert.equal(sha256(echoed), sha256(data));
    // 2 MiB at 1 MiB/s less the eighth of a second a bucket holds.
    assert.ok(seconds >= 1.8, `2 MiB went through in ${seconds.toFixed(2)} s at 1 MiB/s`);
  });
});

describe("reload", () => {
  it("applies new edge keys to new connections; open ones go on", async () => {
    const b = backend();
    const config = (extra: string, backendExtra = "") => `
      [frontend]
      bind_on = "127.0.0.1:0"
      ${extra}
      [[frontend.backend]]
      name = "b"
      forward_to = "${b.address}"
      ${backendExtra}
    `;
    const { lb, port } = await start(config(""));
    const open = await connect(port);
    open.conn.write(bytes("before;"));
    await eventually(() => b.text(0) === "before;", "the first bytes to reach the backend");
    const summary = await lb.reload(parseConfig(config('deny = ["127.0.0.0/8"]')));
    assert.deepEqual(summary.frontendsChanged, ["default"]);
    assert.equal(await send(port, bytes("denied")), "");
    await lb.reload(parseConfig(config("", 'send_proxy = "v1"')));
    assert.match(
      await send(port, bytes("x")),
      /^PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ \d+\r\nx$/,
    );
    open.conn.write(bytes("after"));
    open.conn.end();
    await open.closed;
    assert.equal(text(open.received()), "before;after", "the open connection kept its config");
  });
});

describe("reload of an address", () => {
  it("a frontend renamed on the same address takes the new connections", async () => {
    const b = backend();
    const port = await freePort();
    const config = (name: string) =>
      `[[frontends]]\nname = "${name}"\nbind_on = "127.0.0.1:${port}"\n` +
      `[[frontends.backend]]\nforward_to = "${b.address}"\n`;
    const served: string[] = [];
    const { lb } = await start(config("before"), {
      ...NO_EVENTS,
      accepted: (session) => void served.push(session.frontend.name),
    });
    assert.equal(await send(port, bytes("1")), "1");
    await lb.reload(parseConfig(config("after")));
    assert.equal(await send(port, bytes("2")), "2");
    assert.deepEqual(served, ["before", "after"]);
  });
});

describe("Unix sockets", () => {
  it("a unix: frontend serves a unix: backend, with its mode, and removes its file at stop", async () => {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const back = join(dir.path, "backend.sock");
    const front = join(dir.path, "front.sock");
    const b = backend({ path: back });
    const { lb } = await start(`
      [frontend]
      bind_on = "unix:${front}"
      unix_mode = "0600"
      [[frontend.backend]]
      forward_to = "${b.address}"
      send_proxy = "v1"
    `);
    assert.equal((await stat(front)).mode & 0o777, 0o600);
    const endpoint = { hostname: "", port: 0, path: front };
    assert.equal(await send(endpoint, bytes("over unix")), "PROXY UNKNOWN\r\nover unix");
    await lb.stop({ graceMs: 0 });
    await assert.rejects(stat(front), { code: "ENOENT" });
  });

  it("a regular file is refused, a live socket too, and a stale one is replaced", async () => {
    const dir = await tempDir();
    cleanups.push(dir.cleanup);
    const b = backend();
    const path = join(dir.path, "lb.sock");
    const config = `
      [frontend]
      bind_on = "unix:${path}"
      [[frontend.backend]]
      forward_to = "${b.address}"
    `;
    const startFails = (message: RegExp) =>
      assert.rejects(Balancer.start(parseConfig(config), { net, events: NO_EVENTS }), { message });
    await writeFile(path, "");
    await startFails(/exists and is not a socket/);
    await rm(path);
    // Another process listening on it, then killed: its file stays behind, stale.
    const holder = spawn("python3", [
      "-c",
      "import socket, sys, time; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); " +
      "s.listen(1); print('ready', flush=True); time.sleep(60)",
      path,
    ], { stdio: ["ignore", "pipe", "inherit"] });
    cleanups.push(() => holder.kill("SIGKILL"));
    await new Promise((resolve) => holder.stdout!.once("data", resolve));
    await startFails(/unix:.*lb.sock for frontend "default": address already in use/);
    holder.kill("SIGKILL");
    await new Promise((resolve) => holder.once("exit", resolve));
    assert.ok((await stat(path)).isSocket(), "the killed process left its socket file");
    await start(config);
    assert.equal(await send({ hostname: "", port: 0, path }, bytes("fresh")), "fresh");
  });
});

describe("preamble bookkeeping", () => {
  it("a client gone during its header leaves no timer behind", async () => {
    const { lb, port } = await serve('accept_proxy = true\ntrusted = ["127.0.0.1"]');
    const client = await connect(port);
    client.conn.write(bytes("PROXY "));
    await sleep(20);
    client.conn.reset();
    await eventually(() => lb.stats.pendingTimers === 0, "the header timer to go");
  });
});
