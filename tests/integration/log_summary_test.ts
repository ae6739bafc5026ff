/**
 * Log flooding: what any client can trigger once per connection (a bad
 * PROXY header, a bad ClientHello, an unknown server name) is logged in
 * full for the first lines of each kind in a window, then summarised with
 * the exact count when the window closes, while `refusals_total` counts
 * every one. In process, over real loopback sockets, on the adapter of the
 * runtime that runs the tests.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Metrics } from "../../src/admin/metrics.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import { combineEvents } from "../../src/balancer/events.ts";
import { logEvents } from "../../src/balancer/log_events.ts";
import {
  formatWindow,
  LogSummary,
  SUMMARY_LINES,
  SUMMARY_WINDOW_MS,
} from "../../src/balancer/log_summary.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import {
  bytes,
  eventually,
  exchange,
  freePorts,
  net,
  recordingBackend,
  sleep,
} from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  resetSync();
});

/** Logs at `verbosity` into an array, for the rest of the test. */
function captureLogs(verbosity = 0): string[] {
  const lines: string[] = [];
  configureLogging({ verbosity, write: (line) => lines.push(line) });
  return lines;
}

/** Runs `count` calls of `send`, `concurrency` at a time. */
async function burst(count: number, concurrency: number, send: () => Promise<unknown>) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      await send();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

function u16(n: number): number[] {
  return [n >> 8, n & 0xff];
}

/** A minimal TLS 1.2 ClientHello asking for `name`. */
function clientHello(name: string): Uint8Array {
  const host = [...bytes(name)];
  const sni = [
    0,
    0,
    ...u16(host.length + 5),
    ...u16(host.length + 3),
    0,
    ...u16(host.length),
    ...host,
  ];
  const body = [3, 3, ...new Array(32).fill(7), 0, ...u16(2), 0x13, 0x01, 1, 0];
  body.push(...u16(sni.length), ...sni);
  const handshake = [1, 0, ...u16(body.length), ...body];
  return Uint8Array.from([22, 3, 1, ...u16(handshake.length), ...handshake]);
}

describe("LogSummary", () => {
  it("lets the first lines of a kind through, then counts the rest for one summary per window", async () => {
    const told: [string, number, number][] = [];
    const summary = new LogSummary<string>((kind, held, ms) => void told.push([kind, held, ms]), {
      lines: 3,
      windowMs: 150,
    });
    cleanups.push(() => summary.close());
    const admitted = Array.from({ length: 50 }, () => summary.admit("a", "A"));
    assert.deepEqual(admitted.filter(Boolean).length, 3);
    assert.deepEqual(admitted.slice(0, 3), [true, true, true]);
    // Another kind has its own lines; a quiet kind no summary.
    assert.equal(summary.admit("b", "B"), true);
    assert.equal(summary.held, 47);
    assert.equal(summary.timers, 1, "one timer, for the window that held lines back");
    const started = performance.now();
    await eventually(() => told.length > 0, "the window's summary", 2000);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 100 && elapsed < 150 * 1.5 + 200, `summarised after ${elapsed} ms`);
    assert.deepEqual(told, [["A", 47, 150]]);
    assert.equal(summary.timers, 0);
    // The next window lets lines through again.
    assert.equal(summary.admit("a", "A"), true);
    await sleep(250);
    assert.deepEqual(told, [["A", 47, 150]], "a window that held nothing back says nothing");
  });

  it("close writes what is held and clears the timer", () => {
    const told: number[] = [];
    const summary = new LogSummary<string>((_, held) => void told.push(held), { lines: 1 });
    for (let i = 0; i < 10; i++) summary.admit("a", "A");
    assert.equal(summary.timers, 1);
    summary.close();
    assert.deepEqual(told, [9]);
    assert.equal(summary.timers, 0);
    assert.equal(summary.held, 0);
  });

  it("defaults to 5 lines per 10 s, and says a window's length in words", () => {
    assert.equal(SUMMARY_LINES, 5);
    assert.equal(SUMMARY_WINDOW_MS, 10_000);
    assert.equal(formatWindow(10_000), "10 s");
    assert.equal(formatWindow(1500), "1.5 s");
    assert.equal(formatWindow(200), "200 ms");
  });
});

describe(`log flood on ${net.runtime}`, () => {
  const SENT = 300;
  const WINDOW_MS = 3000;

  it("300 bad headers, hellos and server names: 5 lines and 1 exact summary each, every one counted", async () => {
    const lines = captureLogs(0);
    const backend = recordingBackend();
    cleanups.push(() => backend.close());
    const [proxyPort, helloPort, sharedPort] = await freePorts(3);
    const config = parseConfig(`
      [[frontends]]
      name = "proxied"
      bind_on = "127.0.0.1:${proxyPort}"
      accept_proxy = true
      trusted = ["127.0.0.1"]
      [[frontends.backend]]
      forward_to = "${backend.address}"

      [[frontends]]
      name = "named"
      bind_on = "127.0.0.1:${helloPort}"
      sni = ["named.test"]
      [[frontends.backend]]
      forward_to = "${backend.address}"

      [[frontends]]
      name = "alpha"
      bind_on = "127.0.0.1:${sharedPort}"
      sni = ["alpha.test"]
      [[frontends.backend]]
      forward_to = "${backend.address}"

      [[frontends]]
      name = "beta"
      bind_on = "127.0.0.1:${sharedPort}"
      sni = ["beta.test"]
      [[frontends.backend]]
      forward_to = "${backend.address}"
    `);
    const metrics = new Metrics(net.runtime);
    const lb = await Balancer.start(config, {
      net,
      events: combineEvents(logEvents({ summary: { windowMs: WINDOW_MS } }), metrics),
    });
    cleanups.push(() => lb.stop({ graceMs: 0 }));
    const garbage = bytes("GET / HTTP/1.0\r\n\r\n");
    // A TLS record whose handshake message is a ServerHello: TLS, but no ClientHello
    // (plain text would be refused as not_tls, a kind of its own).
    const badHello = new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]);
    const unknown = clientHello("gamma.test");
    const started = performance.now();
    await Promise.all([
      burst(SENT, 20, () => exchange(proxyPort!, garbage)),
      burst(SENT, 20, () => exchange(helloPort!, badHello)),
      burst(SENT, 20, () => exchange(sharedPort!, unknown)),
    ]);
    const sentIn = performance.now() - started;
    assert.ok(sentIn < WINDOW_MS, `the bursts took ${sentIn} ms, longer than one window`);
    assert.equal(backend.connections, 0, "no refused client reached the backend");

    const kinds = [
      { why: "bad_header", line: "refused connection: bad PROXY header", port: proxyPort },
      { why: "bad_hello", line: "refused connection: bad TLS ClientHello", port: helloPort },
      {
        why: "unknown_server_name",
        line: "refused connection: no frontend for this server name",
        port: sharedPort,
      },
    ];
    const summaryOf = (why: string) => lines.filter((l) => l.includes(` more ${why} refusals `));
    await eventually(
      () => kinds.every(({ why }) => summaryOf(why).length > 0),
      "a summary for each kind",
      WINDOW_MS * 2,
    );
    const summarisedAfter = performance.now() - started;
    assert.ok(
      summarisedAfter >= WINDOW_MS - 50 && summarisedAfter < WINDOW_MS * 1.5 + 1000,
      `summarised ${summarisedAfter} ms after the first refusal, for a window of ${WINDOW_MS} ms`,
    );
    await sleep(200); // nothing more comes
    for (const { why, line, port } of kinds) {
      const full = lines.filter((l) => l.includes(line));
      assert.equal(full.length, SUMMARY_LINES, `${why}: the first ${SUMMARY_LINES} lines in full`);
      assert.ok(full.every((l) => l.includes(" WARN ") && l.includes(`127.0.0.1:${port}`)));
      const summaries = summaryOf(why);
      assert.equal(summaries.length, 1, `${why}: one summary line`);
      assert.match(
        summaries[0]!,
        new RegExp(
          ` WARN frontend\\{local_address=127\\.0\\.0\\.1:${port}\\}: mini_balancer::frontend: ` +
            `… and ${SENT - SUMMARY_LINES} more ${why} refusals in the last 3 s `,
        ),
      );
    }
    // Lines about the shared address name it and both its frontends, not one of them.
    const shared = lines.filter((l) => l.includes(`local_address=127.0.0.1:${sharedPort}`));
    assert.ok(
      shared.every((l) => l.includes(" frontends=alpha,beta") && !l.includes(" frontend=")),
      `lines about the shared address:\n${shared.join("")}`,
    );
    const scraped = await metrics.registry.metrics();
    for (const [frontend, why] of [["proxied", "bad_header"], ["named", "bad_hello"]]) {
      assert.match(
        scraped,
        new RegExp(`refusals_total\\{frontend="${frontend}",reason="${why}"\\} ${SENT}\\n`),
      );
    }
    assert.match(scraped, new RegExp(`reason="unknown_server_name"\\} ${SENT}\\n`));
    assert.ok(lines.length <= 3 * (SUMMARY_LINES + 1) + 5, `${lines.length} lines in all`);
  });

  it("a refusal that is policy (deny) is summarised the same way, at INFO", async () => {
    const lines = captureLogs(1);
    const backend = recordingBackend();
    cleanups.push(() => backend.close());
    const lb = await Balancer.start(
      parseConfig(`
        [frontend]
        bind_on = "127.0.0.1:0"
        deny = ["127.0.0.1"]
        [[frontend.backend]]
        forward_to = "${backend.address}"
      `),
      { net, events: logEvents({ summary: { lines: 2, windowMs: 1000 } }) },
    );
    cleanups.push(() => lb.stop({ graceMs: 0 }));
    const port = lb.addresses[0]!.port;
    await burst(40, 10, () => exchange(port, bytes("hi")));
    await eventually(() => lines.some((l) => l.includes("more denied")), "the summary", 3000);
    const denied = lines.filter((l) => l.includes("refused connection: address denied"));
    assert.equal(denied.length, 2);
    const summaries = lines.filter((l) => l.includes("more denied"));
    assert.equal(summaries.length, 1);
    assert.match(summaries[0]!, / INFO .*… and 38 more denied refusals in the last 1 s /);
    assert.equal(backend.connections, 0);
  });

  it("a summary still held is written when the balancer stops", async () => {
    const lines = captureLogs(0);
    const backend = recordingBackend();
    cleanups.push(() => backend.close());
    const lb = await Balancer.start(
      parseConfig(`
        [frontend]
        bind_on = "127.0.0.1:0"
        accept_proxy = true
        trusted = ["127.0.0.1"]
        [[frontend.backend]]
        forward_to = "${backend.address}"
      `),
      { net, events: logEvents({ summary: { lines: 2, windowMs: 60_000 } }) },
    );
    const port = lb.addresses[0]!.port;
    for (let i = 0; i < 12; i++) await exchange(port, bytes("not a header\r\n"));
    assert.equal(lines.filter((l) => l.includes("bad PROXY header")).length, 2);
    assert.equal(lines.filter((l) => l.includes("more bad_header")).length, 0);
    await lb.stop({ graceMs: 0 });
    const summaries = lines.filter((l) => l.includes("more bad_header"));
    assert.equal(summaries.length, 1);
    assert.match(summaries[0]!, /… and 10 more bad_header refusals in the last 60 s /);
  });
});
