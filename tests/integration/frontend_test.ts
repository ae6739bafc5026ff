/**
 * What a frontend does with clients it cannot serve at once (every backend
 * full, every connect refused), what its health checks report, and what it
 * logs at each verbosity, over real loopback sockets on the adapter of the
 * runtime that runs the tests.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Balancer } from "../../src/balancer/balancer.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import {
  addressOf,
  bytes,
  closedPort,
  connect,
  echoServer,
  eventually,
  exchange,
  net,
  sleep,
  text,
} from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
let balancer: Balancer | undefined;

afterEach(async () => {
  if (balancer !== undefined) {
    await eventually(() => balancer!.stats.activeConnections === 0, "sessions to end");
    assert.equal(balancer.stats.pendingTimers, 0, "every timer cleared");
    await balancer.stop({ graceMs: 0 });
    balancer = undefined;
  }
  for (const cleanup of cleanups.splice(0)) await cleanup();
  resetSync();
});

/** Logs at `verbosity` into an array, for the rest of the test. */
function captureLogs(verbosity: number): string[] {
  const lines: string[] = [];
  configureLogging({ verbosity, write: (line) => lines.push(line) });
  return lines;
}

/** Starts a balancer on config text (after logging is set up); returns the first port. */
async function start(toml: string): Promise<number> {
  balancer = await Balancer.start(parseConfig(toml), { net });
  return balancer.addresses[0]!.port;
}

/** An echo backend greeting each connection with `greeting`, closed after the test. */
function backend(greeting: string) {
  const server = echoServer({ greeting });
  cleanups.push(() => server.close());
  return server;
}

const frontend = (extra = "") => `[frontend]\nbind_on = "127.0.0.1:0"\n${extra}\n`;
const backendEntry = (address: string, extra = "") =>
  `[[frontend.backend]]\nforward_to = "${address}"\n${extra}\n`;

describe(`frontend on ${net.runtime}`, () => {
  it("queues a client while every backend is at max_connections, and serves it when one frees", async () => {
    const lines = captureLogs(1);
    const only = backend("only:");
    const port = await start(
      frontend('queue_timeout = "10s"') + backendEntry(only.address, "max_connections = 1"),
    );
    const first = await connect(port);
    await eventually(() => first.receivedLength() === 5, "the first client's greeting");
    const second = await connect(port);
    await eventually(() => balancer!.stats.queuedConnections === 1, "the second to be queued");
    await sleep(100);
    assert.equal(second.receivedLength(), 0, "the second waits while the backend is full");
    assert.ok(lines.some((line) => line.includes("queued connection: all backends full")));
    first.conn.end();
    await first.closed;
    await eventually(() => second.receivedLength() === 5, "the queued client to be served");
    assert.equal(text(second.received()), "only:");
    second.conn.end();
    await second.closed;
    assert.ok(!lines.some((line) => line.includes("no backend available")), lines.join(""));
  });

  it("turns a queued client away after queue_timeout when every backend stays full", async () => {
    const lines = captureLogs(0);
    const only = backend("only:");
    const port = await start(
      frontend('queue_timeout = "200ms"') + backendEntry(only.address, "max_connections = 1"),
    );
    const first = await connect(port);
    await eventually(() => first.receivedLength() === 5, "the first client's greeting");
    const started = Date.now();
    const second = await connect(port);
    await second.ended;
    const waited = Date.now() - started;
    assert.ok(waited >= 150 && waited < 200 * 1.5 + 500, `turned away after ${waited} ms`);
    assert.equal(second.receivedLength(), 0);
    assert.match(
      lines.find((line) => line.includes("refused connection"))!,
      /refused connection: all backends full .*reason="waited 200ms in the queue"/,
    );
    second.conn.close();
    first.conn.end();
    await first.closed;
  });

  it("resets the first clients of a refusing backend when when_all_down = reset", async () => {
    captureLogs(0);
    const dead = `127.0.0.1:${closedPort()}`;
    const port = await start(frontend('when_all_down = "reset"\nretries = 0') + backendEntry(dead));
    // The backend is not marked down yet (fall = 3): the connect is tried and refused.
    const client = await connect(port);
    await client.ended; // a reset or a FIN
    client.conn.close();
    const error = await client.closed;
    assert.equal(client.receivedLength(), 0);
    if (net.runtime === "bun") assert.ok(error !== undefined, "the client saw a reset, not a FIN");
    else assert.equal(error, undefined, "Deno cannot send a reset: a clean close");
  });

  it("logs that a health check's answer did not match, quoting what came", async () => {
    const lines = captureLogs(0);
    const wrong = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        conn.setHandlers({ data() {}, end: () => conn.end(), drain() {}, close() {} });
        conn.write(
          bytes('-ERR "unknown"\r\nand a long tail that is cut off after forty characters'),
        );
      },
    });
    cleanups.push(() => wrong.close());
    const live = backend("live:");
    await start(
      frontend() + '[frontend.health]\ninterval = "50ms"\ntimeout = "150ms"\nfall = 1\n' +
        'send = "PING\\r\\n"\nexpect = "+PONG"\n' + backendEntry(addressOf(wrong)) +
        backendEntry(live.address),
    );
    await eventually(() => lines.some((line) => line.includes("backend is down")), "down");
    const down = lines.find((line) => line.includes("backend is down"))!;
    assert.match(down, new RegExp(`target_address=${addressOf(wrong)}\\}`));
    // What came is quoted as JSON, cut at 40 characters; the line quotes the reason again.
    const quoted = JSON.stringify('-ERR "unknown"\r\nand a long tail that is ') + "…";
    const reason = `answer did not match "+PONG": received ${quoted} (timed out after 150ms)`;
    assert.ok(down.includes(`reason=${JSON.stringify(reason)}`), down);
    assert.ok(!down.includes("timed out after 150ms before"), down);
  });

  it("names the frontend and the backend on every per-connection line", async () => {
    const lines = captureLogs(1);
    const app = backend("app:");
    const port = await start(
      '[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:0"\n' +
        `[[frontends.backend]]\nname = "app-1"\nforward_to = "${app.address}"\n`,
    );
    assert.equal(text((await exchange(port, bytes("x"))).data), "app:x");
    await eventually(() => lines.some((line) => line.includes("served connection")), "the end");
    for (const message of ["opened client connection", "served connection"]) {
      const line = lines.find((line) => line.includes(message))!;
      assert.match(line, / frontend=web backend=app-1\n$/, line);
    }
    assert.match(lines.find((line) => line.includes("serving connection"))!, / frontend=web\n$/);
  });

  it("ends every connection with one access line in text and in JSON", async () => {
    const lines: string[] = [];
    configureLogging({ verbosity: 1, format: "json", write: (line) => lines.push(line) });
    const app = backend("app:");
    const port = await start(frontend() + backendEntry(app.address, 'name = "app-1"'));
    assert.equal(text((await exchange(port, bytes("xy"))).data), "app:xy");
    await eventually(() => lines.some((line) => line.includes("served connection")), "the end");
    const record = JSON.parse(lines.find((line) => line.includes("served connection"))!);
    assert.equal(record.level, "INFO");
    const { properties } = record;
    assert.match(properties.peer_address, /^127\.0\.0\.1:\d+$/);
    assert.equal(properties.target_address, app.address);
    assert.equal(properties.frontend, "default");
    assert.equal(properties.backend, "app-1");
    assert.equal(properties.bytes_from_client, 2);
    assert.equal(properties.bytes_from_backend, 6);
    assert.equal(typeof properties.duration_ms, "number");
    assert.equal(properties.outcome, "served");
  });

  it("logs the backend chosen and why, and the connect time, at -vv", async () => {
    const lines = captureLogs(2);
    const app = backend("app:");
    const port = await start(frontend() + backendEntry(app.address));
    await exchange(port, bytes("x"));
    await eventually(() => lines.some((line) => line.includes("served connection")), "the end");
    assert.match(
      lines.find((line) => line.includes("chose backend"))!,
      new RegExp(
        `DEBUG .*through\\{target_address=${app.address}\\}: .*chose backend reason=algorithm attempt=1 active=1`,
      ),
    );
    assert.match(
      lines.find((line) => line.includes("connected to backend"))!,
      /connected to backend connect_ms=\d+(\.\d+)?/,
    );
    assert.ok(!lines.some((line) => line.includes("TRACE")), "no trace lines at -vv");
  });

  it("logs health probe results at -vv and pipe events at -vvv", async () => {
    const lines = captureLogs(3);
    const app = backend("");
    const port = await start(
      frontend() + '[frontend.health]\ninterval = "50ms"\n' + backendEntry(app.address),
    );
    await eventually(() => lines.some((line) => line.includes("health check passed")), "a probe");
    await exchange(port, bytes("x"));
    await eventually(() => lines.some((line) => line.includes("served connection")), "the end");
    // The client's FIN, passed on to the backend. (The backend's FIN may
    // arrive as the close of a socket both ends have shut, which is no
    // half-close.)
    const halfClose = lines.filter((line) => line.includes("half-closed"));
    assert.equal(halfClose[0] && / side=(\w+)/.exec(halfClose[0])?.[1], "client", lines.join(""));
    assert.ok(halfClose.every((line) => line.includes(" TRACE ")));
    assert.ok(lines.some((line) => line.includes("DEBUG") && line.includes("chose backend")));
  });

  it("logs nothing below warnings at the default level for a served connection", async () => {
    const lines = captureLogs(0);
    const app = backend("app:");
    const port = await start(frontend() + backendEntry(app.address));
    assert.equal(text((await exchange(port, bytes("x"))).data), "app:x");
    await eventually(() => balancer!.stats.activeConnections === 0, "the end");
    assert.deepEqual(lines, []);
  });
});
