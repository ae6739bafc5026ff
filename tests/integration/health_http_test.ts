/**
 * HTTP health checks through a real Balancer over loopback: a Patroni-like
 * pair (two echo "databases" on 127.0.0.1 and 127.0.0.2, each with an HTTP
 * health endpoint on the same `port` of its host answering 200 as primary
 * and 503 as replica) where every connection goes to the primary, the roles
 * flip and new connections move within fall x interval plus one interval,
 * and `on_down = "close_sessions"` closes the old primary's connections
 * (FIN, or RST with when_all_down = "reset") while "keep" leaves them; and
 * two real nginx backends checked on their own health path.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Balancer } from "../../src/balancer/balancer.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import type { Conn } from "../../src/runtime/types.ts";
import { NGINX, startNginx } from "../_helpers/nginx.ts";
import {
  bytes,
  connect,
  echoServer,
  eventually,
  exchange,
  freePort,
  net,
  text,
  within,
} from "../_helpers/index.ts";

const INTERVAL_MS = 200;
const FALL = 2;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Sends log lines (warnings and up) to an array for the rest of the test. */
function captureLogs(): string[] {
  const lines: string[] = [];
  configureLogging({ verbosity: 0, write: (line) => lines.push(line) });
  cleanups.push(() => resetSync());
  return lines;
}

/** A Patroni-like node: an echo server greeting `name:` and its REST API on `apiPort` of the same host. */
function node(hostname: string, apiPort: number, name: string, primary: boolean) {
  const db = echoServer({ hostname, greeting: `${name}:` });
  const state = { primary, probes: 0 };
  const conns = new Set<Conn>();
  const api = net.listen({
    hostname,
    port: apiPort,
    onConnection(conn) {
      conns.add(conn);
      let head = "";
      conn.setHandlers({
        data(chunk) {
          head += text(chunk);
          if (!head.includes("\r\n\r\n")) return;
          state.probes++;
          const ok = state.primary && head.startsWith("GET /primary ");
          conn.write(
            bytes(ok ? "HTTP/1.1 200 OK\r\n\r\n" : "HTTP/1.1 503 Service Unavailable\r\n\r\n"),
          );
          conn.end();
        },
        end: () => conn.close(),
        drain() {},
        close: () => conns.delete(conn),
      });
    },
  });
  cleanups.push(() => {
    db.close();
    api.close();
    for (const conn of conns) conn.reset();
  });
  return { db, state, apiPort, address: `${hostname}:${db.listener.address.port}` };
}

/** Starts a balancer on `toml`; stopped after the test. */
async function start(toml: string): Promise<{ balancer: Balancer; port: number }> {
  const balancer = await Balancer.start(parseConfig(toml), { net });
  cleanups.push(() => balancer.stop({ graceMs: 0 }));
  return { balancer, port: balancer.addresses[0]!.port };
}

/** The greeting of one new connection through `port` ("a" or "b"). */
async function greetedBy(port: number): Promise<string> {
  return text((await exchange(port, bytes(""))).data).split(":")[0]!;
}

/** A client holding a connection to whoever greets it, and that greeting. */
async function hold(port: number) {
  const client = await connect(port);
  await eventually(() => client.receivedLength() >= 2, "a greeting");
  return { client, by: text(client.received()).split(":")[0]! };
}

/**
 * The Patroni pair behind a balancer with HTTP checks on /primary (a
 * primary, b replica), once b is down; `frontend` and `health` are extra
 * keys of [frontend] and [frontend.health].
 */
async function patroni(frontend = "", health = "", fall = FALL) {
  const apiPort = await freePort();
  const a = node("127.0.0.1", apiPort, "a", true);
  const b = node("127.0.0.2", apiPort, "b", false);
  const lines = captureLogs();
  const { balancer, port } = await start(
    `[frontend]\nbind_on = "127.0.0.1:0"\n${frontend}\n` +
      `[frontend.health]\ninterval = "${INTERVAL_MS}ms"\ntimeout = "150ms"\nfall = ${fall}\n` +
      `rise = 1\nhttp_path = "/primary"\nport = ${apiPort}\n${health}\n` +
      `[[frontend.backend]]\nname = "a"\nforward_to = "${a.address}"\n` +
      `[[frontend.backend]]\nname = "b"\nforward_to = "${b.address}"\n`,
  );
  // Both start up; the replica fails `fall` probes and goes down.
  await eventually(
    () => lines.some((line) => line.includes("backend is down") && line.includes("backend=b")),
    "the replica to go down",
  );
  return { a, b, lines, balancer, port };
}

describe(`HTTP health checks through the balancer on ${net.runtime}`, () => {
  it("Patroni pair: every connection goes to the primary, both APIs probed on their port", async () => {
    const { a, b, port } = await patroni();
    for (let i = 0; i < 6; i++) assert.equal(await greetedBy(port), "a");
    assert.ok(a.state.probes >= 1, "the primary's API was probed");
    assert.ok(b.state.probes >= FALL, "the replica's API was probed");
  });

  for (const onDown of ["close_sessions", "keep"] as const) {
    it(`on_down = "${onDown}": a flip moves new connections in time and ${onDown === "keep" ? "keeps" : "closes"} the old primary's`, async () => {
      // Traffic to a all along: real connects that work must not hide its failing probes.
      const { a, b, lines, port } = await patroni("", `on_down = "${onDown}"`);
      for (let i = 0; i < 4; i++) assert.equal(await greetedBy(port), "a");
      const held = [await hold(port), await hold(port)];
      assert.deepEqual(held.map((h) => h.by), ["a", "a"]);

      const flipped = performance.now();
      a.state.primary = false;
      b.state.primary = true;
      // New connections all go to b once a is down (b is up after one probe).
      let movedAt: number | undefined;
      const seen: string[] = [];
      while (performance.now() - flipped < 3000) {
        const [first, second] = [await greetedBy(port), await greetedBy(port)];
        seen.push(first, second);
        if (first === "b" && second === "b") {
          movedAt = performance.now() - flipped;
          break;
        }
      }
      assert.ok(movedAt !== undefined, `new connections never all moved to b: ${seen.join("")}`);
      // FALL failed probes an interval apart: the first may come at once.
      const earliest = (FALL - 1) * INTERVAL_MS - 25;
      const latest = FALL * INTERVAL_MS * 1.1 + INTERVAL_MS + 150;
      assert.ok(
        movedAt >= earliest && movedAt <= latest,
        `moved after ${movedAt.toFixed(0)} ms: not within ${earliest}-${latest} ms`,
      );
      for (let i = 0; i < 4; i++) assert.equal(await greetedBy(port), "b");

      if (onDown === "close_sessions") {
        for (const { client } of held) {
          await within(client.ended, 3000, "the balancer's FIN on a held connection");
          client.conn.end();
          assert.equal(await client.closed, undefined, "a FIN, not a reset");
        }
        // The two held, and any exchange of the loop above under way then.
        await eventually(
          () => lines.some((line) => /closed \d+ connections of backend a: it is down/.test(line)),
          "the log line with the count",
        );
        const count = lines.join("").match(/closed (\d+) connections of backend a/)!;
        assert.ok(Number(count[1]) >= 2, count[0]);
        assert.equal(lines.filter((line) => line.includes("connections of backend a")).length, 1);
      } else {
        // Still connected to a: the echo answers.
        for (const { client } of held) {
          client.conn.write(bytes("still"));
          await eventually(
            () => text(client.received()) === "a:still",
            "the echo of the kept connection",
          );
        }
        assert.ok(!lines.some((line) => line.includes("connections of backend")));
        for (const { client } of held) {
          client.conn.end();
          await client.closed;
        }
      }
    });
  }

  it('on_down = "close_sessions" with when_all_down = "reset" resets the old primary\'s clients', async () => {
    const { a, b, lines, port } = await patroni(
      'when_all_down = "reset"',
      'on_down = "close_sessions"',
      1,
    );
    const held = await hold(port);
    assert.equal(held.by, "a");
    a.state.primary = false;
    b.state.primary = true;
    await within(held.client.ended, 3000, "the client's connection to be cut");
    held.client.conn.end();
    const error = await within(held.client.closed, 3000, "the client's connection to close");
    // Deno cannot send a RST: its reset() closes (src/runtime/deno/conn.ts).
    if (net.runtime !== "deno") assert.ok(error !== undefined, "a reset, not a FIN");
    await eventually(
      () => lines.some((line) => line.includes("closed 1 connection of backend a: it is down")),
      "the log line",
    );
  });

  it("a reload applies new HTTP check settings: a replica accepted by http_status comes up, and on_down follows", async () => {
    const { a, b, lines, balancer, port } = await patroni();
    const config = (health: string) =>
      parseConfig(
        // The same bind_on as written: the same frontend, on the port it has.
        `[frontend]\nbind_on = "127.0.0.1:0"\n` +
          `[frontend.health]\ninterval = "${INTERVAL_MS}ms"\ntimeout = "150ms"\nfall = 1\nrise = 1\n` +
          `http_path = "/primary"\nport = ${b.apiPort}\n${health}\n` +
          `[[frontend.backend]]\nname = "a"\nforward_to = "${a.address}"\n` +
          `[[frontend.backend]]\nname = "b"\nforward_to = "${b.address}"\n`,
      );
    const summary = await balancer.reload(
      config('http_status = ["200", "503"]\non_down = "close_sessions"'),
    );
    assert.deepEqual(summary.failures, []);
    await eventually(
      () => lines.some((line) => line.includes("backend is up") && line.includes("backend=b")),
      "the replica to come up under the new http_status",
    );
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await greetedBy(port));
    assert.deepEqual([...seen].sort(), ["a", "b"]);
    // Back to the default statuses: b goes down, and its connection is closed.
    const both = [await hold(port), await hold(port)];
    const held = both.find((h) => h.by === "b")!;
    await balancer.reload(config('on_down = "close_sessions"'));
    await within(held.client.ended, 3000, "b's connection to be closed");
    for (const { client } of both) client.conn.end();
    await Promise.all(both.map(({ client }) => client.closed));
    assert.ok(lines.some((line) => /closed 1 connection of backend b: it is down/.test(line)));
  });

  it(
    "checks real nginx backends on their health path: only the one answering 200 gets connections",
    {
      skip: NGINX === undefined ? "nginx is not installed" : false,
    },
    async () => {
      const up = await startNginx("up", { paths: { "/healthz": 200 } });
      cleanups.push(() => up.close());
      const down = await startNginx("down", { paths: { "/healthz": 503 } });
      cleanups.push(() => down.close());
      const lines = captureLogs();
      const { port } = await start(
        `[frontend]\nbind_on = "127.0.0.1:0"\n` +
          `[frontend.health]\ninterval = "100ms"\ntimeout = "500ms"\nfall = 1\nrise = 1\nhttp_path = "/healthz"\n` +
          `[[frontend.backend]]\nname = "up"\nforward_to = "127.0.0.1:${up.port}"\n` +
          `[[frontend.backend]]\nname = "down"\nforward_to = "127.0.0.1:${down.port}"\n`,
      );
      await eventually(
        () =>
          lines.some((line) => line.includes("backend is down") && line.includes("backend=down")),
        "the 503 nginx to go down",
      );
      const reason = lines.find((line) => line.includes("backend=down"))!;
      assert.match(
        reason,
        /HTTP status 503 is not 200-399: \\"HTTP\/1\.1 503 Service Temporarily Unavailable\\"/,
      );
      assert.ok(!lines.some((line) => line.includes("backend=up")), lines.join("\n"));
      for (let i = 0; i < 4; i++) {
        const answer = text(
          (await exchange(port, bytes("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")))
            .data,
        );
        assert.match(answer, /backend up\n$/);
      }
    },
  );
});
