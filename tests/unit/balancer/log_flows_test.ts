/**
 * UDP flows in the logs: FlowInfo objects built here are told to the
 * logging subscriber, and the lines it writes are read back exactly: the
 * `listening for datagrams`, `serving flow` and `served flow` lines at the
 * connection lines' levels, failed flows summarised, and dropped datagrams
 * never a line each but one summary per kind and window.
 *
 * @module
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import type { FlowInfo, FlowOutcome, FrontendInfo } from "../../../src/balancer/events.ts";
import { logEvents } from "../../../src/balancer/log_events.ts";
import type { BackendState } from "../../../src/balancer/upstream/backend.ts";
import { configureLogging } from "../../../src/log.ts";
import { eventually } from "../../_helpers/index.ts";

const UDP: FrontendInfo = { name: "dns", localAddress: "udp:127.0.0.1:5353" };
const TCP: FrontendInfo = { name: "web", localAddress: "127.0.0.1:7070" };
const BACKEND = { config: { name: "ns-1", address: "127.0.0.2:53" } } as unknown as BackendState;
const CONTEXT = "frontend{local_address=udp:127.0.0.1:5353}:" +
  "handle_connection{peer_address=127.0.0.1:40000}:through{target_address=127.0.0.2:53}: " +
  "mini_balancer::frontend:";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  resetSync();
});

/** Logs at `verbosity` into an array, without the timestamps, for the rest of the test. */
function captureLogs(verbosity: number): string[] {
  const lines: string[] = [];
  configureLogging({ verbosity, write: (line) => lines.push(line.replace(/^\S+ /, "")) });
  return lines;
}

/** A flow as the datagram core tells it: mutable here, read-only to subscribers. */
type Flow = { -readonly [K in keyof FlowInfo]: FlowInfo[K] };

function flow(peerAddress = "127.0.0.1:40000", agoMs = 1234): Flow {
  return {
    frontend: UDP,
    peerAddress,
    target: BACKEND,
    datagramsFromClient: 0,
    bytesFromClient: 0,
    datagramsFromBackend: 0,
    bytesFromBackend: 0,
    startedAt: performance.now() - agoMs,
    outcome: undefined,
    reason: undefined,
  };
}

function ended(f: Flow, outcome: FlowOutcome, reason: string): Flow {
  Object.assign(f, {
    datagramsFromClient: 3,
    bytesFromClient: 120,
    datagramsFromBackend: 2,
    bytesFromBackend: 300,
    outcome,
    reason,
  });
  return f;
}

/** The line with its duration replaced by `D`, after checking it is within [low, high]. */
function withDuration(line: string, low: number, high: number): string {
  const ms = Number(/ duration_ms=(\d+)/.exec(line)?.[1]);
  assert.ok(ms >= low && ms <= high, `duration_ms=${ms}, not within ${low}..${high}: ${line}`);
  return line.replace(/ duration_ms=\d+/, " duration_ms=D");
}

describe("flow log lines", () => {
  it("a UDP frontend listens for datagrams, a TCP one for connections", () => {
    const lines = captureLogs(1);
    const events = logEvents();
    cleanups.push(() => events.close?.());
    events.listening(TCP);
    events.listening(UDP);
    assert.deepEqual(lines, [
      " INFO frontend{local_address=127.0.0.1:7070}: mini_balancer::frontend: " +
      "listening for connections frontend=web\n",
      " INFO frontend{local_address=udp:127.0.0.1:5353}: mini_balancer::frontend: " +
      "listening for datagrams frontend=dns\n",
    ]);
  });

  it("serving flow and served flow at INFO, with datagrams and bytes each way, duration, outcome and reason", () => {
    const lines = captureLogs(1);
    const events = logEvents();
    cleanups.push(() => events.close?.());
    const f = flow();
    events.flowOpened(f);
    events.flowProgress(f);
    events.flowClosed(ended(f, "served", "1 response"));
    assert.equal(lines.length, 2, lines.join(""));
    assert.equal(lines[0], ` INFO ${CONTEXT} serving flow frontend=dns backend=ns-1\n`);
    assert.equal(
      withDuration(lines[1]!, 1234, 1234 + 1000),
      ` INFO ${CONTEXT} served flow reason="1 response" datagrams_from_client=3 ` +
        "bytes_from_client=120 datagrams_from_backend=2 bytes_from_backend=300 " +
        "duration_ms=D outcome=served frontend=dns backend=ns-1\n",
    );
  });

  it("a timed-out or aborted flow is INFO, a failed one WARN, as connections", () => {
    const lines = captureLogs(1);
    const events = logEvents();
    cleanups.push(() => events.close?.());
    events.flowClosed(ended(flow(), "timed_out", "idle for 30000ms"));
    events.flowClosed(ended(flow(), "aborted", "shutdown"));
    events.flowClosed(ended(flow(), "failed", "ECONNREFUSED: port unreachable"));
    assert.deepEqual(lines.map((l) => withDuration(l, 1234, 2234)), [
      ` INFO ${CONTEXT} failed to serve flow reason="idle for 30000ms" datagrams_from_client=3 ` +
      "bytes_from_client=120 datagrams_from_backend=2 bytes_from_backend=300 " +
      "duration_ms=D outcome=timed_out frontend=dns backend=ns-1\n",
      ` INFO ${CONTEXT} failed to serve flow reason=shutdown datagrams_from_client=3 ` +
      "bytes_from_client=120 datagrams_from_backend=2 bytes_from_backend=300 " +
      "duration_ms=D outcome=aborted frontend=dns backend=ns-1\n",
      ` WARN ${CONTEXT} failed to serve flow reason="ECONNREFUSED: port unreachable" ` +
      "datagrams_from_client=3 bytes_from_client=120 datagrams_from_backend=2 " +
      "bytes_from_backend=300 duration_ms=D outcome=failed frontend=dns backend=ns-1\n",
    ]);
  });

  it("at the default verbosity only failed flows show, and a flood of them is summarised", () => {
    const lines = captureLogs(0);
    const events = logEvents({ summary: { lines: 5, windowMs: 60_000 } });
    const f = flow();
    events.flowOpened(f);
    events.flowClosed(ended(f, "served", "1 response"));
    events.flowClosed(ended(flow(), "timed_out", "idle for 30000ms"));
    assert.equal(lines.length, 0, `nothing below WARN: ${lines.join("")}`);
    for (let port = 1; port <= 200; port++) {
      events.flowClosed(ended(flow(`10.0.0.9:${port}`), "failed", "ECONNREFUSED"));
    }
    assert.equal(lines.length, 5, "the first 5 in full");
    assert.ok(lines.every((l) => l.startsWith(" WARN ") && l.includes(" failed to serve flow ")));
    events.close?.();
    assert.equal(lines.length, 6);
    assert.equal(
      lines[5],
      " WARN frontend{local_address=udp:127.0.0.1:5353}: mini_balancer::frontend: " +
        "… and 195 more failed flows in the last 60 s suppressed=195 window_ms=60000 frontend=dns\n",
    );
  });

  it("10,000 dropped datagrams write no line each: one exact summary per reason and window", async () => {
    const lines = captureLogs(0);
    const WINDOW_MS = 300;
    const events = logEvents({ summary: { windowMs: WINDOW_MS } });
    cleanups.push(() => events.close?.());
    const started = performance.now();
    for (let i = 0; i < 10_000; i++) {
      events.datagramDropped(UDP, `10.0.0.9:${i % 60_000}`, "no_backend", undefined);
    }
    for (let i = 0; i < 7; i++) events.datagramDropped(UDP, "10.0.0.9:1", "pending_full", BACKEND);
    assert.equal(lines.length, 0, `no line per datagram: ${lines.join("")}`);
    await eventually(() => lines.length >= 2, "the two summaries", WINDOW_MS * 10);
    const elapsed = performance.now() - started;
    assert.ok(
      elapsed >= WINDOW_MS - 20 && elapsed < WINDOW_MS * 1.5 + 500,
      `summarised after ${elapsed} ms`,
    );
    const place = " WARN frontend{local_address=udp:127.0.0.1:5353}: mini_balancer::frontend: ";
    assert.deepEqual(lines.sort(), [
      `${place}dropped 10000 datagrams: no backend up in the last 300 ms ` +
      "reason=no_backend dropped=10000 window_ms=300 frontend=dns\n",
      `${place}dropped 7 datagrams: too many waiting for a new flow's socket in the last 300 ms ` +
      "reason=pending_full dropped=7 window_ms=300 frontend=dns\n",
    ]);
    // A drop while closing is expected: INFO, and written by close().
    const closing = captureLogs(1);
    events.datagramDropped(UDP, "10.0.0.9:1", "closing", undefined);
    assert.equal(closing.length, 0);
    events.close?.();
    assert.deepEqual(closing, [
      " INFO frontend{local_address=udp:127.0.0.1:5353}: mini_balancer::frontend: " +
      "dropped 1 datagram: frontend closing in the last 300 ms " +
      "reason=closing dropped=1 window_ms=300 frontend=dns\n",
    ]);
  });
});
