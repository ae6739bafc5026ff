/**
 * The Preamble alone, on connections the runtime's own listener accepted
 * over loopback: a PROXY header (v1, v2, bad), then the first bytes of each
 * protocol in 1-byte writes; the replay handing on every byte after the
 * header exactly once and in order (bytes that came after detection and
 * before the replay too) with the client's end or close last; the client
 * leaving during detection and after; header_timeout and detect_timeout
 * bounded on both sides; no timer left after any outcome; and the cost of a
 * preamble fed a byte at a time.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { afterEach, describe, it } from "node:test";
import { Preamble, type PreambleOptions } from "../../../src/balancer/listener/preamble.ts";
import { DISCARD } from "../../../src/balancer/session/pipe.ts";
import type { Wanted } from "../../../src/protocol/detect.ts";
import { encodeProxyV1, encodeProxyV2 } from "../../../src/protocol/proxy.ts";
import type { Conn, ConnHandlers } from "../../../src/runtime/types.ts";
import {
  bytes,
  concat,
  connect,
  eventually,
  liveTimers,
  net,
  sleep,
  within,
} from "../../_helpers/index.ts";
import { ALL, CURL_HEAD, hello, latin1, PG_SSL_REQUEST, SSH_BANNER } from "../protocol/_samples.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Uncommon timeouts, so the timers counted are the preamble's alone. */
const TIMEOUT_MS = 437;
const SILENT_MS = 173;

/** How a preamble ended, and when (ms after its connection was accepted). */
type Outcome =
  | { kind: "ready"; preamble: Preamble; ms: number }
  | { kind: "failed"; preamble: Preamble; ms: number; why: string; detail: string };

/** What a replay handed on: the bytes, and the events after them. */
function recorder() {
  const chunks: Uint8Array[] = [];
  const events: string[] = [];
  const handlers: ConnHandlers = {
    data(chunk) {
      if (events.length > 0) events.push("data after " + events.join());
      chunks.push(chunk.slice());
    },
    end: () => void events.push("end"),
    drain() {},
    close: () => void events.push("close"),
  };
  return { handlers, events, bytes: () => latin1Text(concat(chunks)) };
}

function latin1Text(data: Uint8Array): string {
  return Array.from(data, (byte) => String.fromCharCode(byte)).join("");
}

/**
 * A loopback listener that reads a preamble on each connection with
 * `options`, and a client connected to it. A failed preamble's connection
 * is closed, as the entrance does.
 */
async function setUp(options: { proxy?: boolean; detect?: Wanted; silentMs?: number }) {
  const timers = liveTimers(cleanups, [TIMEOUT_MS, SILENT_MS]).live;
  let settle!: (outcome: Outcome) => void;
  const outcome = new Promise<Outcome>((resolve) => (settle = resolve));
  let outcomes = 0;
  const listener = net.listen({
    hostname: "127.0.0.1",
    port: 0,
    onConnection(conn) {
      const accepted = performance.now();
      const preambleOptions: PreambleOptions = {
        proxy: options.proxy ?? false,
        detect: options.detect,
        timeoutMs: TIMEOUT_MS,
        silentMs: options.silentMs,
        ready(preamble) {
          outcomes++;
          settle({ kind: "ready", preamble, ms: performance.now() - accepted });
        },
        failed(preamble, why, detail) {
          outcomes++;
          conn.setHandlers(DISCARD);
          conn.close();
          settle({ kind: "failed", preamble, why, detail, ms: performance.now() - accepted });
        },
      };
      new Preamble(conn, preambleOptions);
    },
  });
  cleanups.push(() => listener.close());
  const client = await connect(listener.address.port);
  cleanups.push(() => client.conn.reset());
  return {
    client,
    timers,
    outcome: within(outcome, 3_000, "the preamble's outcome"),
    get outcomes() {
      return outcomes;
    },
  };
}

/** Writes `data` a byte at a time, each write leaving on its own. */
async function byteByByte(
  client: { conn: { write(chunk: Uint8Array): boolean } },
  data: Uint8Array,
) {
  for (let i = 0; i < data.length; i++) {
    client.conn.write(data.subarray(i, i + 1));
    await sleep(1);
  }
}

/** Asserts that a preamble is over: nothing pending, no timer of its lengths alive. */
function assertNothingLeft(preamble: Preamble, timers: Set<unknown>) {
  assert.equal(preamble.waiting, false, "the preamble waits no more");
  assert.equal(timers.size, 0, `${timers.size} preamble timers left`);
}

/** Takes a ready preamble's connection, replays, and returns what the replay handed on. */
function take(preamble: Preamble) {
  const record = recorder();
  preamble.conn.setHandlers(record.handlers);
  preamble.replay(record.handlers);
  return record;
}

const ONLY_PROXY = { proxy: true };

describe("Preamble", () => {
  it("reads a PROXY v1 header and hands on exactly the bytes after it, written a byte at a time", async () => {
    const t = await setUp(ONLY_PROXY);
    const source = { hostname: "192.0.2.7", port: 4321 };
    const destination = { hostname: "198.51.100.1", port: 443 };
    const header = encodeProxyV1(source, destination);
    // The header and the first payload bytes in one write: the payload is not lost with the header.
    t.client.conn.write(concat([header, bytes("ab")]));
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "ready");
    assert.deepEqual(outcome.preamble.client, source);
    assert.deepEqual(outcome.preamble.destination, destination);
    assert.equal(outcome.preamble.detected, undefined, "nothing detected where nothing is asked");
    assertNothingLeft(outcome.preamble, t.timers);
    await byteByByte(t.client, bytes("cde"));
    await sleep(20);
    const got = take(outcome.preamble);
    await byteByByte(t.client, bytes("fg"));
    t.client.conn.end();
    await eventually(() => got.events.includes("end"), "the client's end", 2_000);
    assert.equal(got.bytes(), "abcdefg");
    assert.deepEqual(got.events, ["end"]);
  });

  it("reads a PROXY v2 header sent a byte at a time, then detects TLS written a byte at a time", async () => {
    const t = await setUp({ proxy: true, detect: ALL });
    const source = { hostname: "2001:db8::7", port: 5555 };
    const header = encodeProxyV2(source, { hostname: "2001:db8::1", port: 443 });
    const clientHello = hello({ sni: "a.test", alpn: ["h2", "http/1.1"] });
    await byteByByte(t.client, concat([header, clientHello]));
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "ready");
    assert.deepEqual(outcome.preamble.client, source);
    assert.deepEqual(outcome.preamble.detected, {
      protocol: "tls",
      serverName: "a.test",
      alpn: ["h2", "http/1.1"],
    });
    assert.equal(outcome.preamble.serverName, "a.test");
    assertNothingLeft(outcome.preamble, t.timers);
    const got = take(outcome.preamble);
    t.client.conn.end();
    await eventually(() => got.events.includes("end"), "the client's end", 2_000);
    assert.equal(got.bytes(), latin1Text(clientHello), "the hello, once, without the header");
  });

  const protocols: [string, Uint8Array, Record<string, unknown>][] = [
    ["ssh", SSH_BANNER, { protocol: "ssh" }],
    ["tls", hello({ sni: "b.test" }), { protocol: "tls", serverName: "b.test" }],
    ["http", CURL_HEAD, { protocol: "http", httpHost: "h.test" }],
    ["postgres", PG_SSL_REQUEST, { protocol: "postgres" }],
  ];
  for (const [name, first, facts] of protocols) {
    it(`detects ${name} in 1-byte writes, and replays every byte once, in order, those after detection too`, async () => {
      const t = await setUp({ detect: ALL });
      await byteByByte(t.client, first);
      const outcome = await t.outcome;
      assert.equal(outcome.kind, "ready");
      assert.deepEqual(outcome.preamble.detected, facts);
      assertNothingLeft(outcome.preamble, t.timers);
      // After detection, before the replay: kept in order behind the first bytes.
      await byteByByte(t.client, bytes("12"));
      t.client.conn.write(bytes("345"));
      await sleep(30);
      const got = take(outcome.preamble);
      t.client.conn.write(bytes("6"));
      t.client.conn.end();
      await eventually(() => got.events.includes("end"), "the client's end", 2_000);
      assert.equal(got.bytes(), latin1Text(first) + "123456");
      assert.deepEqual(got.events, ["end"]);
      assert.equal(t.outcomes, 1, "ready once");
    });
  }

  it("a client that half-closes during detection is ready as undetected, its bytes and end replayed", async () => {
    const t = await setUp({ detect: ALL });
    await byteByByte(t.client, bytes("SSH-2"));
    t.client.conn.end();
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "ready");
    assert.equal(outcome.preamble.detected?.protocol, undefined);
    assert.match(outcome.preamble.detected?.reason ?? "", /ended its side/);
    assertNothingLeft(outcome.preamble, t.timers);
    const got = take(outcome.preamble);
    assert.equal(got.bytes(), "SSH-2");
    assert.deepEqual(got.events, ["end"], "the end after the bytes, once");
  });

  it("a client that half-closes during a PROXY header fails it as bad_header at once", async () => {
    const t = await setUp({ proxy: true, detect: ALL });
    t.client.conn.write(bytes("PROXY TCP4 1.2.3.4"));
    await sleep(10);
    t.client.conn.end();
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "failed");
    assert.ok(outcome.kind === "failed" && outcome.why === "bad_header");
    assert.ok(outcome.ms < 200, `failed after ${outcome.ms.toFixed(0)} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
  });

  it("a connection closed during detection fails as undetected at once", async () => {
    const t = await setUp({ detect: ALL });
    await byteByByte(t.client, bytes("GET / HT"));
    await sleep(20);
    t.client.conn.reset();
    const outcome = await t.outcome;
    // A reset reaches the server as a close, or (where the runtime sends a FIN) as an end.
    if (outcome.kind === "failed") {
      assert.equal(outcome.why, "undetected");
      assert.match(outcome.detail, /closed/);
    } else {
      assert.equal(outcome.preamble.detected?.protocol, undefined);
    }
    assert.ok(outcome.ms < 300, `over after ${outcome.ms.toFixed(0)} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
  });

  it("an end and a close after detection and before the replay are replayed after the bytes, once", async () => {
    const t = await setUp({ detect: ALL });
    await byteByByte(t.client, SSH_BANNER);
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "ready");
    t.client.conn.write(bytes("tail"));
    t.client.conn.end();
    await sleep(30);
    // The connection closes while the preamble still holds it: kept for the replay.
    outcome.preamble.conn.close();
    await within(t.client.closed, 1_000, "the connection to close");
    await sleep(20);
    const got = take(outcome.preamble);
    assert.equal(got.bytes(), latin1Text(SSH_BANNER) + "tail");
    assert.deepEqual(got.events, ["end", "close"]);
  });

  it("header_timeout fails an incomplete first message as undetected, not before and not long after", async () => {
    const t = await setUp({ detect: ALL });
    await byteByByte(t.client, bytes("SSH-2.0"));
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "failed");
    assert.ok(outcome.kind === "failed" && outcome.why === "undetected");
    assert.match(outcome.kind === "failed" ? outcome.detail : "", /header_timeout \(437ms\)/);
    assert.ok(outcome.ms >= TIMEOUT_MS - 5, `failed after ${outcome.ms.toFixed(0)} ms`);
    assert.ok(outcome.ms < TIMEOUT_MS + 250, `failed after ${outcome.ms.toFixed(0)} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
    await within(t.client.ended, 1_000, "the connection to be closed");
  });

  it("header_timeout fails an incomplete PROXY header as bad_header", async () => {
    const t = await setUp(ONLY_PROXY);
    t.client.conn.write(bytes("PROXY TCP4 "));
    const outcome = await t.outcome;
    assert.ok(outcome.kind === "failed" && outcome.why === "bad_header");
    assert.ok(outcome.ms >= TIMEOUT_MS - 5 && outcome.ms < TIMEOUT_MS + 250, `${outcome.ms} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
  });

  it("a bad PROXY header fails as bad_header at once", async () => {
    const t = await setUp({ proxy: true, detect: ALL });
    t.client.conn.write(bytes("PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\nSSH-2.0-x\r\n"));
    const outcome = await t.outcome;
    assert.ok(outcome.kind === "failed" && outcome.why === "bad_header", JSON.stringify(outcome));
    assert.ok(outcome.ms < 200, `failed after ${outcome.ms.toFixed(0)} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
    await within(t.client.ended, 1_000, "the connection to be closed");
    assert.equal(t.client.receivedLength(), 0);
  });

  it("detect_timeout: a silent client is ready as undetected after silentMs, not before and not long after", async () => {
    const t = await setUp({ detect: ALL, silentMs: SILENT_MS });
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "ready");
    assert.equal(outcome.preamble.detected?.protocol, undefined);
    assert.match(outcome.preamble.detected?.reason ?? "", /detect_timeout/);
    assert.ok(outcome.ms >= SILENT_MS - 5, `ready after ${outcome.ms.toFixed(0)} ms`);
    assert.ok(outcome.ms < SILENT_MS + 150, `ready after ${outcome.ms.toFixed(0)} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
    // What it says afterwards is the new owner's.
    const got = take(outcome.preamble);
    t.client.conn.write(bytes("EHLO"));
    t.client.conn.end();
    await eventually(() => got.events.includes("end"), "the client's end", 2_000);
    assert.equal(got.bytes(), "EHLO");
  });

  it("detect_timeout: a silent client that half-closes first is ready at once as ended, no timer left", async () => {
    const t = await setUp({ proxy: true, detect: ALL, silentMs: SILENT_MS });
    t.client.conn.write(encodeProxyV2(undefined, undefined));
    await sleep(20);
    t.client.conn.end();
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "ready");
    assert.match(outcome.preamble.detected?.reason ?? "", /ended its side/);
    assert.ok(outcome.ms < SILENT_MS - 50, `ready after ${outcome.ms.toFixed(0)} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
    assert.deepEqual(take(outcome.preamble).events, ["end"]);
  });

  it("detect_timeout starts after the PROXY header", async () => {
    const t = await setUp({ proxy: true, detect: ALL, silentMs: SILENT_MS });
    await sleep(100);
    t.client.conn.write(
      encodeProxyV1({ hostname: "192.0.2.1", port: 1 }, { hostname: "192.0.2.2", port: 2 }),
    );
    const outcome = await t.outcome;
    assert.equal(outcome.kind, "ready");
    assert.equal(outcome.preamble.detected?.protocol, undefined);
    assert.ok(outcome.ms >= 100 + SILENT_MS - 5, `ready after ${outcome.ms.toFixed(0)} ms`);
    assert.ok(outcome.ms < 100 + SILENT_MS + 150, `ready after ${outcome.ms.toFixed(0)} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
  });

  it("detect_timeout: a client that sent one byte is not cut at silentMs but at header_timeout", async () => {
    const t = await setUp({ detect: ALL, silentMs: SILENT_MS });
    t.client.conn.write(bytes("S"));
    const outcome = await t.outcome;
    assert.ok(outcome.kind === "failed" && outcome.why === "undetected", JSON.stringify(outcome));
    assert.ok(outcome.ms >= TIMEOUT_MS - 5, `failed after ${outcome.ms.toFixed(0)} ms`);
    assert.ok(outcome.ms < TIMEOUT_MS + 250, `failed after ${outcome.ms.toFixed(0)} ms`);
    assertNothingLeft(outcome.preamble, t.timers);
  });

  it("a 17 KiB ClientHello and an 8 KiB HTTP head fed a byte at a time finish well under a second (CPU printed)", async () => {
    // Accepted connections' preambles, fed a byte per data event (as 1-byte segments arrive).
    const conns: Conn[] = [];
    const listener = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        conns.push(conn);
      },
    });
    cleanups.push(() => listener.close());
    const clients = await Promise.all([
      connect(listener.address.port),
      connect(listener.address.port),
    ]);
    for (const client of clients) cleanups.push(() => client.conn.reset());
    await eventually(() => conns.length === 2, "two connections accepted");
    const big = hello({ sni: "a.test", padding: 16_300, recordSize: 100 });
    const head = latin1(`GET / HTTP/1.1\r\nX-A: ${"a".repeat(8_000)}\r\nHost: x.test\r\n\r\n`);
    const costs: string[] = [];
    for (
      const [i, [name, data, protocol]]
        of ([["ClientHello", big, "tls"], ["HTTP head", head, "http"]] as const).entries()
    ) {
      let ready: Preamble | undefined;
      const preamble = new Preamble(conns[i]!, {
        proxy: false,
        detect: ALL,
        timeoutMs: TIMEOUT_MS,
        ready: (p) => (ready = p),
        failed: () => assert.fail("failed"),
      });
      const cpu = process.cpuUsage();
      const wall = performance.now();
      for (let at = 0; at < data.length; at++) preamble.data(data.subarray(at, at + 1));
      const used = process.cpuUsage(cpu);
      const ms = performance.now() - wall;
      const cpuMs = (used.user + used.system) / 1000;
      costs.push(`${name} (${data.length} B): ${cpuMs.toFixed(1)} ms CPU, ${ms.toFixed(1)} ms`);
      assert.equal(ready, preamble, `${name}: ready`);
      assert.equal(preamble.detected?.protocol, protocol);
      // Detection parses from the start at each byte: quadratic, 0.1 to 0.3 s of CPU for the
      // hello in 100-byte records (2026-12-06). CPU bounds it; wall time only guards a hang.
      assert.ok(
        cpuMs < 750,
        `${name} of ${data.length} B a byte at a time: ${cpuMs.toFixed(0)} ms CPU`,
      );
      assert.ok(ms < 1_500, `${name} of ${data.length} B a byte at a time: ${ms.toFixed(0)} ms`);
      const got = take(preamble);
      assert.equal(got.bytes(), latin1Text(data), `${name}: replayed whole, once`);
    }
    console.log(`preamble fed a byte at a time: ${costs.join("; ")}`);
  });

  it("a 17 KiB ClientHello written in 1-byte writes over a socket is routed well under a second", async () => {
    const t = await setUp({ detect: ALL });
    const big = hello({ sni: "a.test", padding: 16_300, recordSize: 100 });
    const started = performance.now();
    for (let at = 0; at < big.length; at++) t.client.conn.write(big.subarray(at, at + 1));
    const outcome = await t.outcome;
    const ms = performance.now() - started;
    assert.equal(outcome.kind, "ready");
    assert.equal(outcome.preamble.detected?.serverName, "a.test");
    assert.ok(
      ms < 1_000,
      `${big.length} bytes in 1-byte writes detected after ${ms.toFixed(0)} ms`,
    );
    const got = take(outcome.preamble);
    assert.equal(got.bytes(), latin1Text(big));
    assertNothingLeft(outcome.preamble, t.timers);
  });
});
