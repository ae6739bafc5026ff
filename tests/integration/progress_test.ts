/**
 * Long connections, in process, over real loopback sockets on the adapter
 * of the runtime that runs the tests: `log_interval` logs `connection in
 * progress` on its beat with growing bytes, and the metrics' byte counters
 * advance while a connection is open, each byte counted once. The sweeper
 * that tells both runs only while a connection is open.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Metrics } from "../../src/admin/metrics.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import { combineEvents } from "../../src/balancer/events.ts";
import { logEvents } from "../../src/balancer/log_events.ts";
import { PROGRESS_EVERY_MS } from "../../src/balancer/session/session.ts";
import { ConfigError } from "../../src/config/config_error.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import {
  type Client,
  configText,
  connect,
  echoServer,
  eventually,
  net,
  randomBytes,
  sleep,
  within,
} from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  resetSync();
});

/**
 * setInterval and clearInterval counted for the length of a test: the
 * intervals set from now on and still running (the runtime adapter's
 * process-wide descriptor watch is set by the first listener, before).
 */
function liveIntervals(): Set<unknown> {
  const live = new Set<unknown>();
  const realSet = globalThis.setInterval;
  const realClear = globalThis.clearInterval;
  globalThis.setInterval = ((fn: () => void, delay?: number) => {
    const handle = realSet(fn, delay);
    live.add(handle);
    return handle;
  }) as typeof setInterval;
  globalThis.clearInterval = ((handle: Parameters<typeof clearInterval>[0]) => {
    live.delete(handle);
    realClear(handle);
  }) as typeof clearInterval;
  cleanups.push(() => {
    globalThis.setInterval = realSet;
    globalThis.clearInterval = realClear;
  });
  return live;
}

/** A balancer in front of one echo backend, logging at -v into `lines` and counting into `metrics`. */
async function start(extra: string) {
  const lines: string[] = [];
  configureLogging({ verbosity: 1, write: (line) => lines.push(line) });
  const backend = echoServer();
  cleanups.push(() => backend.close());
  const intervals = liveIntervals();
  const metrics = new Metrics(net.runtime);
  const balancer = await Balancer.start(parseConfig(configText([backend.address], extra)), {
    net,
    events: combineEvents(logEvents(), metrics),
  });
  cleanups.push(() => balancer.stop({ graceMs: 0 }));
  metrics.attach(balancer);
  return {
    lines,
    metrics,
    balancer,
    intervals,
    backend: backend.address,
    port: balancer.addresses[0]!.port,
  };
}

/**
 * Sends `chunk` bytes every `everyMs` for `forMs`, reading the echo, then
 * ends and waits for the close.
 *
 * @returns the bytes sent
 */
async function stream(client: Client, chunk: number, everyMs: number, forMs: number) {
  const until = performance.now() + forMs;
  let sent = 0;
  for (let i = 0; performance.now() < until; i++) {
    await client.send(randomBytes(chunk, i + 1));
    sent += chunk;
    await sleep(everyMs);
  }
  await eventually(() => client.receivedLength() === sent, `the echo of ${sent} bytes`, 5_000);
  client.conn.end();
  await within(client.closed, 5_000, "the connection to close");
  return sent;
}

/** Bytes each way, as `/metrics` shows them. */
type Scrape = { fromClient: number; fromBackend: number };

/** The `bytes_total` samples of `/metrics`, by direction. */
async function bytesTotal(metrics: Metrics): Promise<Scrape> {
  const text = await metrics.registry.metrics();
  const sample = (direction: string) => {
    const line = text.split("\n").find((l) =>
      l.startsWith("mini_balancer_bytes_total{") && l.includes(`direction="${direction}"`) &&
      !l.includes('backend=""')
    );
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  return { fromClient: sample("from_client"), fromBackend: sample("from_backend") };
}

/** A field of a log line, as a number. */
function field(line: string, name: string): number {
  const match = new RegExp(` ${name}=(\\d+)`).exec(line);
  assert.ok(match !== null, `${name} in ${line}`);
  return Number(match[1]);
}

describe(`long connections on ${net.runtime}`, () => {
  it('log_interval = "200ms": a 1.1 s stream logs 4 to 6 progress lines with growing bytes', async () => {
    const { lines, balancer, intervals, port } = await start('log_interval = "200ms"');
    assert.equal(intervals.size, 0, "no sweeper before a connection");
    const client = await connect(port);
    cleanups.push(() => client.conn.close());
    const sent = await stream(client, 1_000, 50, 1_100);
    await eventually(() => lines.some((l) => l.includes(" served connection ")), "served line");
    const progress = lines.filter((l) => l.includes(" connection in progress "));
    assert.ok(
      progress.length >= 4 && progress.length <= 6,
      `${progress.length} progress lines:\n${lines.join("")}`,
    );
    let before = { fromClient: 0, fromBackend: 0, ms: 0 };
    for (const [i, line] of progress.entries()) {
      assert.match(
        line,
        new RegExp(
          ` INFO frontend\\{local_address=127\\.0\\.0\\.1:${port}\\}:handle_connection\\{peer_address=127\\.0\\.0\\.1:\\d+\\}:` +
            `through\\{target_address=127\\.0\\.0\\.1:\\d+\\}: mini_balancer::frontend: connection in progress ` +
            `bytes_from_client=\\d+ bytes_from_backend=\\d+ duration_ms=\\d+ frontend=default backend=127\\.0\\.0\\.1:\\d+\\n$`,
        ),
      );
      const now = {
        fromClient: field(line, "bytes_from_client"),
        fromBackend: field(line, "bytes_from_backend"),
        ms: field(line, "duration_ms"),
      };
      assert.ok(now.fromClient > before.fromClient, `bytes from the client grow: ${line}`);
      assert.ok(now.fromBackend > before.fromBackend, `bytes from the backend grow: ${line}`);
      assert.ok(now.fromClient < sent, `${now.fromClient} of ${sent} so far`);
      // On the beat from the accept: not early, at most a sweep (50 ms) and a margin late.
      const due = 200 * (i + 1);
      assert.ok(now.ms >= due - 1 && now.ms <= due + 180, `line ${i + 1} at ${now.ms} ms`);
      before = now;
    }
    const served = lines.find((l) => l.includes(" served connection "))!;
    assert.equal(field(served, "bytes_from_client"), sent);
    assert.ok(
      lines.indexOf(served) > lines.indexOf(progress.at(-1)!),
      "no progress line after the close",
    );
    // The sweeper goes with the last connection: no timer while nothing is open.
    await eventually(() => intervals.size === 0, "the sweeper to stop", 3_000);
    assert.equal(balancer.stats.pendingTimers, 0);
    assert.equal(balancer.stats.activeConnections, 0);
  });

  it("without log_interval a connection logs no progress line", async () => {
    const { lines, port } = await start("");
    const client = await connect(port);
    cleanups.push(() => client.conn.close());
    await stream(client, 1_000, 50, 700);
    await eventually(() => lines.some((l) => l.includes(" served connection ")), "served line");
    assert.equal(lines.filter((l) => l.includes("in progress")).length, 0, lines.join(""));
  });

  it("a reload that removes log_interval leaves an open connection logging, and a new one silent", async () => {
    const { lines, balancer, backend, port } = await start('log_interval = "200ms"');
    const old = await connect(port);
    cleanups.push(() => old.conn.close());
    await old.send(randomBytes(100));
    await eventually(() => old.receivedLength() === 100, "the old connection's echo");
    const summary = await balancer.reload(parseConfig(configText([backend])));
    assert.deepEqual(summary.frontendsChanged, ["default"]);
    const fresh = await connect(port);
    cleanups.push(() => fresh.conn.close());
    await fresh.send(randomBytes(100));
    await eventually(() => fresh.receivedLength() === 100, "the new connection's echo");
    await sleep(700);
    const of = (client: Client) =>
      lines.filter((l) =>
        l.includes(" connection in progress ") &&
        l.includes(`peer_address=127.0.0.1:${client.conn.localAddress.port}}`)
      ).length;
    assert.ok(of(old) >= 3 && of(old) <= 5, `${of(old)} lines of the old connection`);
    assert.equal(of(fresh), 0, "lines of the new connection");
  });

  it("bytes_total advances while a connection is open, and counts each byte once", async () => {
    const { metrics, balancer, intervals, port } = await start("");
    const client = await connect(port);
    cleanups.push(() => client.conn.close());
    const scrapes: Scrape[] = [];
    const t0 = performance.now();
    const scraping = (async () => {
      // Before the first progress (2 s, or 3 s when a sweep comes a hair early), after it, and after the next.
      for (const at of [1_000, 3_500, 6_500]) {
        await sleep(t0 + at - performance.now());
        scrapes.push(await bytesTotal(metrics));
      }
    })();
    const streaming = stream(client, 10_000, 100, 7_500);
    assert.equal(intervals.size, 1, "one sweeper while the connection is open");
    const [sent] = await Promise.all([streaming, scraping]);
    const [first, second, third] = scrapes as [Scrape, Scrape, Scrape];
    assert.deepEqual(first, { fromClient: 0, fromBackend: 0 }, "nothing counted before 2 s");
    assert.equal(PROGRESS_EVERY_MS, 2_000);
    // About 100 kB a second: at 3.5 s what 2 s or 3 s moved.
    assert.ok(
      second.fromClient >= 150_000 && second.fromClient <= 360_000 && second.fromBackend > 0,
      `counted while open at 3.5 s: ${JSON.stringify(second)}`,
    );
    assert.ok(
      third.fromClient > second.fromClient && third.fromBackend > second.fromBackend,
      `more at 6.5 s: ${JSON.stringify(scrapes)}`,
    );
    assert.ok(third.fromClient < sent, `${third.fromClient} below the ${sent} sent`);
    await eventually(() => balancer.stats.activeConnections === 0, "the session to end");
    assert.deepEqual(await bytesTotal(metrics), { fromClient: sent, fromBackend: sent });
    const tally = metrics.frontendTally("default");
    assert.deepEqual([tally.bytesFromClient, tally.bytesFromBackend], [sent, sent]);
    await eventually(() => intervals.size === 0, "the sweeper to stop", 3_000);
  });

  it("log_interval is a TCP frontend's key: a UDP frontend refuses it in one line", () => {
    const tcp = parseConfig(configText(["127.0.0.1:9"], 'log_interval = "1m"'));
    assert.equal(tcp.frontends[0]!.logIntervalMs, 60_000);
    assert.equal(parseConfig(configText(["127.0.0.1:9"])).frontends[0]!.logIntervalMs, undefined);
    const udp = '[frontend]\nbind_on = "udp:127.0.0.1:0"\nlog_interval = "1m"\n' +
      '[[frontend.backend]]\nforward_to = "127.0.0.1:53"\n';
    assert.throws(() => parseConfig(udp), (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /frontend\.log_interval applies to TCP frontends only/);
      assert.equal(error.message.includes("\n"), false, error.message);
      return true;
    });
    assert.throws(
      () => parseConfig(configText(["127.0.0.1:9"], 'log_interval = "soon"')),
      /frontend\.log_interval/,
    );
  });
});
