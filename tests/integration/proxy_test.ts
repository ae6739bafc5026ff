/**
 * The proxy over real loopback sockets, on the adapter of the runtime that
 * runs the tests (`bun test` exercises the Bun adapter, `deno test` Deno's).
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Balancer } from "../../src/balancer/balancer.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import type { Conn, ConnHandlers, Net } from "../../src/runtime/types.ts";
import {
  addressOf,
  bytes,
  closedPort,
  closedPorts,
  configText,
  connect,
  echoServer,
  eventually,
  exchange,
  net,
  pythonPeer,
  randomBytes,
  sha256,
  sleep,
  text,
  within,
} from "../_helpers/index.ts";

/** Timers may fire this much early against performance.now(), and the sweeper's ticks drift. */
const EARLY_TOLERANCE_MS = 25;
/** Room for a loaded machine on top of 1.5 times a timeout. */
const LATE_MARGIN_MS = 100;

/**
 * Asserts that something bound by a timeout of `ms` happened `elapsed` ms
 * after the start of its clock: not before the timeout (less a small
 * tolerance), and not after 1.5 times it plus a margin.
 */
function assertAfterTimeout(elapsed: number, ms: number, what: string): void {
  assert.ok(
    elapsed >= ms - EARLY_TOLERANCE_MS,
    `${what} after ${elapsed.toFixed(0)} ms: before its ${ms} ms timeout`,
  );
  assert.ok(
    elapsed <= 1.5 * ms + LATE_MARGIN_MS,
    `${what} after ${elapsed.toFixed(0)} ms: later than 1.5 × ${ms} ms + ${LATE_MARGIN_MS} ms`,
  );
}

/** Wraps a Net to count open connections and watch their buffers. */
function watchedNet(inner: Net) {
  const open = new Set<Conn>();
  let maxBuffered = 0;
  const watch = (conn: Conn): Conn => {
    open.add(conn);
    const setHandlers = conn.setHandlers.bind(conn);
    conn.setHandlers = (handlers: ConnHandlers) =>
      setHandlers({
        data: (chunk) => handlers.data(chunk),
        end: () => handlers.end(),
        drain: () => handlers.drain(),
        close(error) {
          open.delete(conn);
          handlers.close(error);
        },
      });
    return conn;
  };
  const sample = () => {
    let total = 0;
    for (const conn of open) total += conn.bufferedAmount;
    maxBuffered = Math.max(maxBuffered, total);
  };
  const watched: Net = {
    runtime: inner.runtime,
    listen: (options) =>
      inner.listen({ ...options, onConnection: (conn) => options.onConnection(watch(conn)) }),
    connect: async (endpoint) => watch(await inner.connect(endpoint)),
  };
  return {
    net: watched,
    open,
    sample,
    get maxBuffered() {
      return maxBuffered;
    },
  };
}

const cleanups: (() => unknown)[] = [];
let watched = watchedNet(net);
let balancer: Balancer | undefined;

/** Starts a balancer on a config's text; returns its frontends' ports. */
async function startConfig(toml: string): Promise<[number, ...number[]]> {
  watched = watchedNet(net);
  balancer = await Balancer.start(parseConfig(toml), { net: watched.net });
  const [first, ...rest] = balancer.addresses.map((address) => address.port);
  return [first!, ...rest];
}

/** Starts one frontend in front of `backends`; returns its port. */
async function startProxy(backends: string[], extra = "", hostname = "127.0.0.1") {
  const toml = configText(backends, extra).replace("127.0.0.1:0", `${hostname}:0`);
  return (await startConfig(toml))[0];
}

/**
 * Holds one connection open (it must be greeted `heldGreeting`), then checks
 * that three short connections in a row are greeted `otherGreeting`.
 */
async function holdOneThenExchange(port: number, heldGreeting: string, otherGreeting: string) {
  const held = await connect(port);
  await eventually(() => held.receivedLength() === heldGreeting.length, "the first greeting");
  assert.equal(text(held.received()), heldGreeting);
  for (let i = 0; i < 3; i++) {
    assert.equal(text((await exchange(port, bytes("x"))).data), `${otherGreeting}x`);
    await eventually(() => balancer!.stats.activeConnections === 1, "the exchange to end");
  }
  held.conn.end();
  await held.closed;
}

function peer<T extends { close(): void }>(server: T): T {
  cleanups.push(() => server.close());
  return server;
}

/** Sends log lines (warnings and up) to an array for the rest of the test. */
function captureLogs(): string[] {
  const lines: string[] = [];
  configureLogging({ verbosity: 0, write: (line) => lines.push(line) });
  cleanups.push(() => resetSync());
  return lines;
}

afterEach(async () => {
  // Every connection through the proxy is gone, and so is every timer.
  if (balancer !== undefined) {
    await eventually(() => balancer!.stats.activeConnections === 0, "sessions to end");
    await eventually(() => watched.open.size === 0, "proxied sockets to close");
    assert.equal(balancer.stats.pendingTimers, 0);
    await balancer.stop({ graceMs: 0 });
    balancer = undefined;
  }
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe(`proxy on ${net.runtime}`, () => {
  it("echoes bytes through the proxy", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address]);
    const { data, error } = await exchange(port, bytes("hello through the proxy"));
    assert.equal(text(data), "hello through the proxy");
    assert.equal(error, undefined);
  });

  it("propagates half-close: write then end gets the full echo back", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address]);
    const payload = randomBytes(3 * 1024 * 1024, 7);
    const { data } = await within(
      exchange(port, payload),
      20_000,
      "the 3 MiB echo to come back (a side paused and never resumed after drain?)",
    );
    assert.equal(data.length, payload.length);
    assert.equal(sha256(data), sha256(payload));
  });

  it("keeps the other direction flowing after the client half-closes", async () => {
    // The backend answers only after the client's FIN, and some time later.
    const backend = peer(net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        let request = "";
        conn.setHandlers({
          data: (chunk) => void (request += text(chunk)),
          end: () =>
            setTimeout(() => {
              conn.write(bytes(`late reply to ${request}`));
              conn.end();
            }, 50),
          drain() {},
          close() {},
        });
      },
    }));
    const port = await startProxy([addressOf(backend)]);
    const { data } = await exchange(port, bytes("question"));
    assert.equal(text(data), "late reply to question");
  });

  it("moves 64 MiB both ways with equal SHA-256", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address]);
    const payload = randomBytes(64 * 1024 * 1024, 42);
    const { data } = await within(
      exchange(port, payload),
      20_000,
      "the 64 MiB echo to come back (a side paused and never resumed after drain?)",
    );
    assert.equal(data.length, payload.length);
    assert.equal(sha256(data), sha256(payload));
    assert.equal(backend.received, payload.length);
  });

  it("keeps the proxy's buffers bounded with a slow reader", async () => {
    let received = 0;
    const sink = peer(net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        conn.setHandlers({
          data(chunk) {
            received += chunk.length;
            // Read a chunk, then rest: a reader far slower than the writer.
            conn.pause();
            setTimeout(() => conn.resume(), 2);
          },
          end: () => conn.end(),
          drain() {},
          close() {},
        });
      },
    }));
    const port = await startProxy([addressOf(sink)]);
    const sampler = setInterval(watched.sample, 1);
    try {
      const client = await connect(port);
      const total = 32 * 1024 * 1024;
      await within(
        client.send(randomBytes(total, 3)),
        20_000,
        "the proxy to take 32 MiB for a slow reader (a side never resumed after drain?)",
      );
      client.conn.end();
      await eventually(() => received === total, "the sink to read everything", 60_000);
      await within(client.closed, 10_000, "the client to close after the sink read everything");
    } finally {
      clearInterval(sampler);
    }
    // 32 MiB went through; the proxy had to hold bytes back (the reader was
    // slow) but never more than a chunk or two.
    console.log(`max buffered in the proxy: ${watched.maxBuffered} bytes`);
    assert.ok(watched.maxBuffered > 0, "backpressure was exercised");
    assert.ok(
      watched.maxBuffered <= 1024 * 1024,
      `proxy buffered up to ${watched.maxBuffered} bytes`,
    );
  });

  it("closes the client when the backend resets", async () => {
    // A real RST (SO_LINGER 0): Deno's sockets cannot send one.
    const backend = await pythonPeer([], [
      "c, _ = s.accept(); c.recv(100)",
      "c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()",
    ]);
    cleanups.push(() => backend.close());
    const port = await startProxy([`127.0.0.1:${backend.port}`]);
    const client = await connect(port);
    client.conn.write(bytes("provoke a reset"));
    await within(client.ended, 5_000, "the client to be closed after the backend's reset");
    assert.equal(client.receivedLength(), 0);
    client.conn.close();
    await within(client.closed, 5_000, "the client to close");
  });

  it("closes the backend when the client resets", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address]);
    const client = await connect(port);
    client.conn.write(bytes("ping"));
    await eventually(() => client.receivedLength() === 4, "the echo");
    assert.equal(backend.conns.size, 1);
    client.conn.reset();
    await eventually(() => backend.conns.size === 0, "the backend connection to close");
  });

  it("retries a refused connect on another backend: the client never notices", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([`127.0.0.1:${closedPort()}`, backend.address]);
    for (let i = 0; i < 4; i++) {
      assert.equal(text((await exchange(port, bytes(`try ${i}`))).data), `try ${i}`);
    }
  });

  it("retries a connect that times out on another backend", async () => {
    const blackhole = await pythonPeer(
      ["fill = socket.create_connection(s.getsockname())"],
      ["sys.stdin.read()"],
    );
    cleanups.push(() => blackhole.close());
    const backend = peer(echoServer());
    const port = await startProxy(
      [`127.0.0.1:${blackhole.port}`, backend.address],
      'connect_timeout = "300ms"',
    );
    // Round-robin tries the black hole first, the live backend after its timeout.
    const started = performance.now();
    assert.equal(text((await exchange(port, bytes("patience"))).data), "patience");
    assertAfterTimeout(performance.now() - started, 300, "the retry on the live backend");
  });

  it("closes the client when the backend refuses and retries = 0, and keeps serving others", async () => {
    const lines = captureLogs();
    const backend = peer(echoServer());
    const dead = `127.0.0.1:${closedPort()}`;
    const port = await startProxy([dead, backend.address], "retries = 0");
    const refused = await exchange(port, bytes("to the dead one"));
    assert.equal(refused.data.length, 0);
    // The connect was made, and refused: not skipped.
    await eventually(() => lines.length > 0, "the refusal to be logged");
    assert.match(lines[0]!, new RegExp(`target_address=${dead}\\}.* reason="connection refused"`));
    assert.ok(!lines.some((line) => line.includes("trying another")), "retries = 0: no retry");
    assert.equal(backend.received, 0, "the refused client was not sent to the live backend");
    const served = await exchange(port, bytes("to the live one"));
    assert.equal(text(served.data), "to the live one");
    assert.equal(backend.received, "to the live one".length);
  });

  it("names the client and the backend when a connect fails, even at the default level", async () => {
    const lines = captureLogs();
    const dead = `127.0.0.1:${closedPort()}`;
    const port = await startProxy([dead], "retries = 0");
    await exchange(port, bytes("x"));
    await eventually(() => lines.length > 0, "the failure line");
    assert.match(
      lines[0]!,
      new RegExp(
        ` WARN frontend\\{local_address=127\\.0\\.0\\.1:${port}\\}:handle_connection\\{peer_address=127\\.0\\.0\\.1:\\d+\\}:through\\{target_address=${dead}\\}: mini_balancer::frontend: failed to serve connection reason="connection refused"`,
      ),
    );
  });

  it("gives up when every backend refuses", async () => {
    const port = await startProxy(closedPorts(2).map((port) => `127.0.0.1:${port}`));
    const { data } = await exchange(port, bytes("anyone?"));
    assert.equal(data.length, 0);
  });

  it("gives up on a backend that does not answer within connect_timeout", async () => {
    // Listening with a backlog of one that is already full: SYNs are dropped.
    const blackhole = await pythonPeer(
      ["fill = socket.create_connection(s.getsockname())"],
      ["sys.stdin.read()"],
    );
    cleanups.push(() => blackhole.close());
    const port = await startProxy([`127.0.0.1:${blackhole.port}`], 'connect_timeout = "300ms"');
    const started = performance.now();
    const client = await connect(port);
    await within(client.ended, 5_000, "the client to be closed after connect_timeout");
    assertAfterTimeout(performance.now() - started, 300, "the client closed");
    assert.equal(client.receivedLength(), 0);
    client.conn.close();
  });

  it("survives clients that reset right after connecting", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address]);
    const resetter = await pythonPeer([], [
      "for _ in range(200):",
      "    c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))",
      "    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()",
      "print('done', flush=True)",
      "sys.stdin.read()",
    ], [String(port)]);
    cleanups.push(() => resetter.close());
    await resetter.line("done");
    const { data } = await exchange(port, bytes("still serving"));
    assert.equal(text(data), "still serving");
  });

  it("keeps a client on one backend with source_hash", async () => {
    const pool = [1, 2, 3].map((n) => peer(echoServer({ greeting: `b${n}:` })));
    const port = await startProxy(pool.map((b) => b.address), 'algorithm = "source_hash"');
    const replies = new Set<string>();
    for (let i = 0; i < 6; i++) replies.add(text((await exchange(port, bytes("x"))).data));
    assert.equal(replies.size, 1, [...replies].join(" "));
  });

  it("sends new connections to the least busy backend with least_connections", async () => {
    const pool = [1, 2].map((n) => peer(echoServer({ greeting: `b${n}:` })));
    const port = await startProxy(pool.map((b) => b.address), 'algorithm = "least_connections"');
    // The first connection stays open on b1, so the next three all go to b2
    // (each closes before the next starts).
    await holdOneThenExchange(port, "b1:", "b2:");
  });

  it("serves several frontends, each in front of its own backends", async () => {
    const web = peer(echoServer({ greeting: "web:" }));
    const cache = peer(echoServer({ greeting: "cache:" }));
    const [webPort, cachePort] = await startConfig(
      `[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:0"\n` +
        `[[frontends.backend]]\nforward_to = "${web.address}"\n` +
        `[[frontends]]\nname = "cache"\nbind_on = "127.0.0.1:0"\n` +
        `[[frontends.backend]]\nforward_to = "${cache.address}"\n`,
    );
    assert.equal(text((await exchange(webPort!, bytes("1"))).data), "web:1");
    assert.equal(text((await exchange(cachePort!, bytes("2"))).data), "cache:2");
  });

  it("closes both sides of a connection idle past idle_timeout", async () => {
    const backend = peer(echoServer());
    // The sweeper runs every 100 ms (a quarter of it): 1.5 × 400 ms + 100 ms
    // tells a timeout that fires late, or at twice its value, from one on time.
    const port = await startProxy([backend.address], 'idle_timeout = "400ms"');
    const client = await connect(port);
    client.conn.write(bytes("hello"));
    await eventually(() => client.receivedLength() === 5, "the echo");
    const idleSince = performance.now();
    await within(client.ended, 5_000, "the proxy's FIN to the idle client");
    assertAfterTimeout(performance.now() - idleSince, 400, "the client side closed");
    await eventually(() => backend.conns.size === 0, "the backend side to close", 5_000);
    assertAfterTimeout(performance.now() - idleSince, 400, "the backend side closed");
    client.conn.close();
    await client.closed;
  });

  it("keeps a connection that moves bytes open past idle_timeout", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address], 'idle_timeout = "300ms"');
    const client = await connect(port);
    let ended = false;
    client.ended.then(() => (ended = true));
    for (let i = 0; i < 10; i++) {
      client.conn.write(bytes("."));
      await sleep(100);
    }
    // A second of traffic with no gap near 300 ms: never idle.
    assert.equal(ended, false);
    assert.equal(client.receivedLength(), 10);
    client.conn.end();
    await client.closed;
  });

  it("closes a busy connection at max_lifetime", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address], 'max_lifetime = "400ms"');
    const started = performance.now(); // before the connect: no later than the session's start
    const client = await connect(port);
    let endedAt: number | undefined;
    client.ended.then(() => (endedAt = performance.now()));
    let backendClosedAt: number | undefined;
    while (endedAt === undefined && performance.now() - started < 5_000) {
      client.conn.write(bytes("."));
      await sleep(20);
      if (backendClosedAt === undefined && backend.conns.size === 0) {
        backendClosedAt = performance.now();
      }
    }
    assert.ok(endedAt !== undefined, "the proxy closed the busy client within 5 s");
    assertAfterTimeout(endedAt - started, 400, "the client side closed");
    await eventually(() => backend.conns.size === 0, "the backend side to close", 5_000);
    assertAfterTimeout((backendClosedAt ?? performance.now()) - started, 400, "the backend closed");
    assert.ok(client.receivedLength() > 0, "bytes moved until then");
    client.conn.close();
    await client.closed;
  });

  it("passes over a backend at its max_connections", async () => {
    const a = peer(echoServer({ greeting: "a:" }));
    const b = peer(echoServer({ greeting: "b:" }));
    const [limited] = await startConfig(
      `[frontend]\nbind_on = "127.0.0.1:0"\n` +
        `[[frontend.backend]]\nforward_to = "${a.address}"\nmax_connections = 1\n` +
        `[[frontend.backend]]\nforward_to = "${b.address}"\n`,
    );
    await holdOneThenExchange(limited, "a:", "b:");
  });

  it("fills backends in order with the first algorithm", async () => {
    const a = peer(echoServer({ greeting: "a:" }));
    const b = peer(echoServer({ greeting: "b:" }));
    const [port] = await startConfig(
      `[frontend]\nbind_on = "127.0.0.1:0"\nalgorithm = "first"\n` +
        `[[frontend.backend]]\nforward_to = "${a.address}"\nmax_connections = 2\n` +
        `[[frontend.backend]]\nforward_to = "${b.address}"\nmax_connections = 2\n`,
    );
    const held = [];
    for (let i = 0; i < 3; i++) {
      const client = await connect(port);
      await eventually(() => client.receivedLength() === 2, "a greeting");
      held.push(client);
    }
    assert.deepEqual(held.map((c) => text(c.received())), ["a:", "a:", "b:"]);
    for (const client of held) client.conn.end();
    await Promise.all(held.map((c) => c.closed));
  });

  it("queues connections past the frontend's max_connections until a slot frees", async () => {
    const backend = peer(echoServer({ greeting: "hi:" }));
    const port = await startProxy([backend.address], 'max_connections = 1\nqueue_timeout = "10s"');
    const first = await connect(port);
    await eventually(() => first.receivedLength() === 3, "the first greeting");
    const second = await connect(port);
    await sleep(100);
    assert.equal(second.receivedLength(), 0, "the second waits");
    assert.equal(backend.conns.size, 1);
    first.conn.end();
    await first.closed;
    await eventually(() => second.receivedLength() === 3, "the second greeting");
    second.conn.end();
    await second.closed;
  });

  it("closes a queued connection after queue_timeout", async () => {
    const backend = peer(echoServer({ greeting: "hi:" }));
    const port = await startProxy(
      [backend.address],
      'max_connections = 1\nqueue_timeout = "300ms"',
    );
    const first = await connect(port);
    await eventually(() => first.receivedLength() === 3, "the first greeting");
    const started = performance.now();
    const second = await connect(port);
    await within(second.ended, 5_000, "the queued client to be closed after queue_timeout");
    assertAfterTimeout(performance.now() - started, 300, "the queued client closed");
    assert.equal(second.receivedLength(), 0);
    second.conn.close();
    first.conn.end();
    await first.closed;
  });

  it("refuses a client over max_connections_per_client, saying so in a sentence", async () => {
    const lines = captureLogs();
    const backend = peer(echoServer({ greeting: "hi:" }));
    const port = await startProxy([backend.address], "max_connections_per_client = 1");
    const first = await connect(port);
    await eventually(() => first.receivedLength() === 3, "the first greeting");
    const second = await connect(port);
    try {
      // Bounded: a limit off by one serves the second client, which would hang here.
      await within(second.ended, 2_000, "the second client (over the limit of 1) to be closed");
      assert.equal(second.receivedLength(), 0, "the second client got nothing from the backend");
    } finally {
      // Even when it failed: the next test starts from no connections.
      second.conn.close();
      first.conn.end();
      await within(first.closed, 2_000, "the first client to close");
    }
    const refused = lines.filter((line) => line.includes("too many from this client"));
    assert.equal(refused.length, 1, lines.join(""));
    assert.match(refused[0]!, / reason="more than 1 connection from this client" /);
    // The slot is free again once the first has gone.
    await eventually(() => balancer!.stats.activeConnections === 0, "the first to end");
    assert.equal(text((await exchange(port, bytes("x"))).data), "hi:x");
  });

  it("takes a backend down after fall failed connects and stops trying it", async () => {
    const lines = captureLogs();
    const dead = `127.0.0.1:${closedPort()}`;
    const live = peer(echoServer({ greeting: "live:" }));
    const port = await startProxy([dead, live.address]);
    for (let i = 0; i < 10; i++) {
      assert.equal(text((await exchange(port, bytes("x"))).data), "live:x");
    }
    const attempts = lines.filter((line) => line.includes("trying another"));
    const down = lines.filter((line) => line.includes("backend is down"));
    assert.equal(attempts.length, 3, "fall = 3, then the dead backend is skipped");
    assert.equal(down.length, 1);
    assert.match(down[0]!, new RegExp(`target_address=${dead}\\}.* reason="connection refused"`));
  });

  it("takes down a backend that accepts but fails the send/expect probe", async () => {
    const lines = captureLogs();
    const silent = peer(echoServer({ greeting: "silent:" })); // echoes, never says +PONG
    const responder = peer(net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        conn.setHandlers({
          data: (chunk) =>
            void conn.write(bytes(text(chunk).startsWith("PING") ? "+PONG\r\n" : "ok:")),
          end: () => conn.end(),
          drain() {},
          close() {},
        });
      },
    }));
    const port = await startProxy(
      [silent.address, addressOf(responder)],
      '[frontend.health]\ninterval = "50ms"\ntimeout = "100ms"\nfall = 2\nrise = 2\n' +
        'send = "PING\\r\\n"\nexpect = "+PONG"',
    );
    await eventually(
      () => lines.some((line) => line.includes("backend is down")),
      "the silent backend to go down",
    );
    assert.match(
      lines.find((line) => line.includes("backend is down"))!,
      new RegExp(`target_address=${silent.address}\\}`),
    );
    for (let i = 0; i < 4; i++) assert.equal(text((await exchange(port, bytes("x"))).data), "ok:");
  });

  it("brings a backend back after rise successful probes", async () => {
    const lines = captureLogs();
    const deadPort = closedPort();
    const other = peer(echoServer({ greeting: "other:" }));
    const port = await startProxy(
      [`127.0.0.1:${deadPort}`, other.address],
      '[frontend.health]\ninterval = "50ms"\ntimeout = "200ms"\nfall = 1\nrise = 2',
    );
    await eventually(() => lines.some((line) => line.includes("backend is down")), "down");
    peer(net.listen({
      hostname: "127.0.0.1",
      port: deadPort,
      onConnection(conn) {
        conn.setHandlers({ data() {}, end: () => conn.end(), drain() {}, close() {} });
        conn.write(bytes("back:"));
      },
    }));
    await eventually(() => lines.some((line) => line.includes("backend is up")), "up again");
    const replies = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const { data } = await exchange(port, bytes(""));
      replies.add(text(data).split(":")[0]!);
    }
    assert.deepEqual([...replies].sort(), ["back", "other"]);
  });

  it("uses a backup only while every primary is down", async () => {
    const lines = captureLogs();
    const primary = echoServer({ greeting: "primary:" });
    const backup = peer(echoServer({ greeting: "backup:" }));
    const [port] = await startConfig(
      `[frontend]\nbind_on = "127.0.0.1:0"\n` +
        `[frontend.health]\ninterval = "50ms"\ntimeout = "200ms"\nfall = 1\n` +
        `[[frontend.backend]]\nforward_to = "${primary.address}"\n` +
        `[[frontend.backend]]\nforward_to = "${backup.address}"\nbackup = true\n`,
    );
    for (let i = 0; i < 3; i++) {
      assert.equal(text((await exchange(port, bytes("x"))).data), "primary:x");
      await eventually(() => balancer!.stats.activeConnections === 0, "the exchange to end");
    }
    primary.close();
    await eventually(() => lines.some((line) => line.includes("backend is down")), "down");
    for (let i = 0; i < 3; i++) {
      assert.equal(text((await exchange(port, bytes("y"))).data), "backup:y");
    }
  });

  it("closes clients at once when every backend is down", async () => {
    const lines = captureLogs();
    const port = await startProxy(
      closedPorts(2).map((port) => `127.0.0.1:${port}`),
      '[frontend.health]\ninterval = "50ms"\ntimeout = "200ms"\nfall = 1',
    );
    await eventually(
      () => lines.filter((line) => line.includes("backend is down")).length === 2,
      "both down",
    );
    const before = lines.length;
    const { data } = await exchange(port, bytes("anyone?"));
    assert.equal(data.length, 0);
    await eventually(() => lines.length > before, "the refusal");
    assert.ok(lines.slice(before).some((line) => line.includes('reason="no backend available"')));
    assert.ok(
      !lines.slice(before).some((line) => line.includes("trying another")),
      "no connect tried",
    );
  });

  it("loses no client when a backend dies mid-run while another is healthy", async () => {
    captureLogs(); // the retries and the down line are expected here
    const doomed = echoServer({ greeting: "a:" });
    const survivor = peer(echoServer({ greeting: "b:" }));
    const port = await startProxy([doomed.address, survivor.address]);
    const replies: string[] = [];
    for (let i = 0; i < 20; i++) {
      if (i === 10) doomed.close();
      replies.push(text((await exchange(port, bytes(`${i}`))).data));
    }
    assert.deepEqual(replies.filter((reply) => reply === ""), [], "no client went unserved");
    assert.ok(replies.slice(10).every((reply) => reply.startsWith("b:")));
  });

  it("resets clients when every backend is down and when_all_down = reset", async () => {
    const lines = captureLogs();
    const port = await startProxy(
      [`127.0.0.1:${closedPort()}`],
      'when_all_down = "reset"\n[frontend.health]\ninterval = "50ms"\nfall = 1',
    );
    await eventually(() => lines.some((line) => line.includes("backend is down")), "down");
    const client = await connect(port);
    await within(client.ended, 5_000, "the client to be refused");
    client.conn.close();
    const error = await client.closed;
    assert.equal(client.receivedLength(), 0);
    if (net.runtime === "bun") {
      assert.equal((error as { code?: string } | undefined)?.code, "ECONNRESET", "a reset");
    } else {
      // Deno cannot send a reset: it closes cleanly (FIN), with no data.
      assert.equal(error, undefined, "a clean close on Deno");
    }
  });

  it("serves IPv6 frontends and backends named by host name", async () => {
    const v6 = peer(echoServer({ hostname: "::1", greeting: "v6:" }));
    const byName = peer(echoServer({ greeting: "named:" }));
    const port = await startProxy(
      [`[::1]:${v6.listener.address.port}`, `localhost:${byName.listener.address.port}`],
      "",
      "[::1]",
    );
    const endpoint = { hostname: "::1", port };
    assert.equal(text((await exchange(endpoint, bytes("a"))).data), "v6:a");
    assert.equal(text((await exchange(endpoint, bytes("b"))).data), "named:b");
  });

  it("cuts open connections when the grace period ends", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address]);
    const client = await connect(port);
    client.conn.write(bytes("still here"));
    await eventually(() => client.receivedLength() === 10, "the echo");
    const started = performance.now();
    const stopping = balancer!.stop({ graceMs: 300 });
    await within(client.ended, 5_000, "the open connection to be cut after the grace period");
    assertAfterTimeout(performance.now() - started, 300, "the connection cut");
    await stopping;
    client.conn.close();
    assert.equal(balancer!.stats.activeConnections, 0);
    await assert.rejects(connect(port), "the listener is closed");
  });

  it("lets open connections finish within the grace period", async () => {
    const backend = peer(echoServer());
    const port = await startProxy([backend.address]);
    const client = await connect(port);
    const stopping = balancer!.stop({ graceMs: 10_000 });
    await sleep(20);
    client.conn.write(bytes("after stop"));
    client.conn.end();
    await client.closed;
    await stopping;
    assert.equal(text(client.received()), "after stop");
  });
});
