/**
 * UDP flows in the metrics and the status: FlowInfo objects built here are
 * told to the metrics subscriber, and `/metrics` (the registry's text) and
 * `/api/status` (a real admin listener over loopback, in front of a stand-in
 * balancer whose status has a UDP and a TCP frontend) are read back: each
 * datagram counted once however many times a flow's progress is told, flows
 * open and ended, drops by reason, and the workers' texts summed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Metrics } from "../../../src/admin/metrics.ts";
import { startAdmin } from "../../../src/admin/server.ts";
import type { Balancer, FrontendStatus } from "../../../src/balancer/balancer.ts";
import type { FlowInfo, FrontendInfo } from "../../../src/balancer/events.ts";
import type { BackendState } from "../../../src/balancer/upstream/backend.ts";
import { mergeMetrics, mergeStatus } from "../../../src/workers/admin.ts";
import { net, tempDir } from "../../_helpers/index.ts";

const DNS: FrontendInfo = { name: "dns", localAddress: "udp:127.0.0.1:5353" };

function backend(name: string, address: string): BackendState {
  return { config: { name, address } } as unknown as BackendState;
}
const NS1 = backend("ns-1", "127.0.0.2:53");
const NS2 = backend("ns-2", "127.0.0.3:53");

/** A flow as the datagram core tells it: mutable here, read-only to subscribers. */
type Flow = { -readonly [K in keyof FlowInfo]: FlowInfo[K] };

function flow(target: BackendState, peerAddress: string): Flow {
  return {
    frontend: DNS,
    peerAddress,
    target,
    datagramsFromClient: 0,
    bytesFromClient: 0,
    datagramsFromBackend: 0,
    bytesFromBackend: 0,
    startedAt: performance.now(),
    outcome: undefined,
    reason: undefined,
  };
}

/** A flow moves `n` datagrams of `size` bytes each way. */
function move(f: Flow, n: number, size: number): void {
  f.datagramsFromClient += n;
  f.bytesFromClient += n * size;
  f.datagramsFromBackend += n;
  f.bytesFromBackend += n * size * 2;
}

/** The `mini_balancer_udp_` samples of a scrape, in order. */
async function udpSamples(metrics: Metrics): Promise<string[]> {
  return (await metrics.registry.metrics()).split("\n").filter((l) =>
    l.startsWith("mini_balancer_udp_")
  );
}

/** A stand-in balancer whose status is `frontends`. */
function standIn(frontends: FrontendStatus[]): Balancer {
  // What the admin listener reads of a balancer: its status, and the
  // run-time backends it subscribes to (none here).
  const backends = { subscribe: () => () => {}, snapshot: () => ({ version: 1, frontends: {} }) };
  return { status: () => frontends, backends } as unknown as Balancer;
}

const BACKEND_STATUS = {
  state: "up",
  weight: 1,
  effectiveWeight: 1,
  backup: false,
} as const;

/** A UDP frontend with two flows open on ns-1 and none on ns-2, beside a TCP one. */
const STATUS: FrontendStatus[] = [
  {
    name: "dns",
    address: "udp:127.0.0.1:5353",
    transport: "udp",
    algorithm: "round_robin",
    active: 2,
    queued: 0,
    backends: [
      { name: "ns-1", address: "127.0.0.2:53", active: 2, ...BACKEND_STATUS },
      { name: "ns-2", address: "127.0.0.3:53", active: 0, ...BACKEND_STATUS },
    ],
  },
  {
    name: "web",
    address: "127.0.0.1:7070",
    transport: "tcp",
    algorithm: "round_robin",
    active: 1,
    queued: 0,
    backends: [{ name: "app", address: "127.0.0.1:8080", active: 1, ...BACKEND_STATUS }],
  },
];

describe("UDP metrics", () => {
  it("counts each datagram once: progress twice, then closed", async () => {
    const metrics = new Metrics(net.runtime);
    const long = flow(NS1, "10.0.0.1:4000");
    metrics.flowOpened(long);
    move(long, 3, 10);
    metrics.flowProgress(long);
    move(long, 4, 10);
    metrics.flowProgress(long);
    assert.deepEqual(await udpSamples(metrics), [
      'mini_balancer_udp_datagrams_total{frontend="dns",backend="ns-1",direction="from_client"} 7',
      'mini_balancer_udp_datagrams_total{frontend="dns",backend="ns-1",direction="from_backend"} 7',
      'mini_balancer_udp_bytes_total{frontend="dns",backend="ns-1",direction="from_client"} 70',
      'mini_balancer_udp_bytes_total{frontend="dns",backend="ns-1",direction="from_backend"} 140',
    ], "a long flow shows while open, and nothing has ended yet");
    // Told again with nothing new: nothing added.
    metrics.flowProgress(long);
    move(long, 2, 10);
    Object.assign(long, { outcome: "timed_out", reason: "idle for 30000ms" });
    metrics.flowClosed(long);
    const short = flow(NS2, "10.0.0.2:4000");
    metrics.flowOpened(short);
    move(short, 1, 64);
    Object.assign(short, { outcome: "served", reason: "1 response" });
    metrics.flowClosed(short);
    const failed = flow(NS2, "10.0.0.3:4000");
    metrics.flowOpened(failed);
    failed.datagramsFromClient = 1;
    failed.bytesFromClient = 64;
    Object.assign(failed, { outcome: "failed", reason: "ECONNREFUSED" });
    metrics.flowClosed(failed);
    for (let i = 0; i < 1000; i++) metrics.datagramDropped(DNS, "10.0.0.9:1", "no_backend");
    metrics.datagramDropped(DNS, "10.0.0.9:1", "pending_full");
    assert.deepEqual(await udpSamples(metrics), [
      'mini_balancer_udp_datagrams_total{frontend="dns",backend="ns-1",direction="from_client"} 9',
      'mini_balancer_udp_datagrams_total{frontend="dns",backend="ns-1",direction="from_backend"} 9',
      'mini_balancer_udp_datagrams_total{frontend="dns",backend="ns-2",direction="from_client"} 2',
      'mini_balancer_udp_datagrams_total{frontend="dns",backend="ns-2",direction="from_backend"} 1',
      'mini_balancer_udp_bytes_total{frontend="dns",backend="ns-1",direction="from_client"} 90',
      'mini_balancer_udp_bytes_total{frontend="dns",backend="ns-1",direction="from_backend"} 180',
      'mini_balancer_udp_bytes_total{frontend="dns",backend="ns-2",direction="from_client"} 128',
      'mini_balancer_udp_bytes_total{frontend="dns",backend="ns-2",direction="from_backend"} 128',
      'mini_balancer_udp_flows_total{frontend="dns",backend="ns-1",outcome="timed_out"} 1',
      'mini_balancer_udp_flows_total{frontend="dns",backend="ns-2",outcome="served"} 1',
      'mini_balancer_udp_flows_total{frontend="dns",backend="ns-2",outcome="failed"} 1',
      'mini_balancer_udp_dropped_total{frontend="dns",reason="no_backend"} 1000',
      'mini_balancer_udp_dropped_total{frontend="dns",reason="pending_full"} 1',
    ]);
    // A refused flow's client counts in refusals_total, as a connection's would.
    metrics.refused(DNS, "10.0.0.9:2", "denied");
    // Flows are not connections: the TCP byte and connection counters did not move.
    const text = await metrics.registry.metrics();
    assert.match(text, /\nmini_balancer_refusals_total\{frontend="dns",reason="denied"\} 1\n/);
    assert.doesNotMatch(text, /mini_balancer_connections_(accepted|closed)_total\{frontend="dns"/);
    assert.doesNotMatch(text, /mini_balancer_bytes_total\{frontend="dns"/);
    assert.doesNotMatch(text, /mini_balancer_backend_connections_total\{frontend="dns"/);
  });

  it("shows the flows open now per backend of a UDP frontend only, and sums them over workers", async () => {
    const metrics = new Metrics(net.runtime);
    metrics.attach(standIn(STATUS));
    const text = await metrics.registry.metrics();
    const open = text.split("\n").filter((l) => l.startsWith("mini_balancer_udp_flows{"));
    assert.deepEqual(open, [
      'mini_balancer_udp_flows{frontend="dns",backend="ns-1"} 2',
      'mini_balancer_udp_flows{frontend="dns",backend="ns-2"} 0',
    ]);
    assert.match(text, /# TYPE mini_balancer_udp_flows gauge\n/);
    for (const name of ["datagrams", "bytes", "flows", "dropped"]) {
      assert.match(text, new RegExp(`# TYPE mini_balancer_udp_${name}_total counter\\n`));
    }
    const f = flow(NS1, "10.0.0.1:4000");
    metrics.flowOpened(f);
    move(f, 5, 10);
    metrics.flowProgress(f);
    const worker = await metrics.registry.metrics();
    const merged = mergeMetrics([worker, worker]).split("\n");
    assert.ok(merged.includes('mini_balancer_udp_flows{frontend="dns",backend="ns-1"} 4'));
    assert.ok(
      merged.includes(
        'mini_balancer_udp_datagrams_total{frontend="dns",backend="ns-1",direction="from_client"} 10',
      ),
    );
  });

  it("/api/status says each frontend's transport and a UDP frontend's flows, datagrams and bytes", async () => {
    const metrics = new Metrics(net.runtime);
    const f = flow(NS1, "10.0.0.1:4000");
    metrics.flowOpened(f);
    move(f, 3, 10);
    metrics.flowProgress(f);
    const admin = startAdmin({
      hostname: "127.0.0.1",
      port: 0,
      token: "a-udp-status-token-0123",
      net,
      balancer: standIn(STATUS),
      metrics,
      lastReload: () => null,
      reload: () => Promise.resolve({ success: false, error: "not in this test" }),
    });
    try {
      const response = await fetch(`http://127.0.0.1:${admin.address.port}/api/status`);
      const status = await response.json();
      const [dns, web] = status.frontends;
      assert.equal(dns.transport, "udp");
      assert.equal(web.transport, "tcp");
      assert.equal(dns.active, 2, "open flows");
      assert.deepEqual(
        [
          dns.flows_total,
          dns.datagrams_from_client,
          dns.datagrams_from_backend,
          dns.bytes_from_client,
          dns.bytes_from_backend,
        ],
        [1, 3, 3, 30, 60],
      );
      assert.deepEqual(dns.backends[0], {
        name: "ns-1",
        address: "127.0.0.2:53",
        active: 2,
        ...BACKEND_STATUS,
        total: 0,
        bytes_from_client: 30,
        bytes_from_backend: 60,
        flows_total: 1,
        datagrams_from_client: 3,
        datagrams_from_backend: 3,
        last_check: null,
      });
      assert.equal(dns.backends[1].flows_total, 0);
      assert.equal("flows_total" in web, false, "a TCP frontend has no flow fields");
      assert.equal("flows_total" in web.backends[0], false);
      // With workers, the supervisor sums each worker's flows and keeps the transport.
      const [merged] = mergeStatus([status, status]);
      assert.deepEqual(
        [merged!.transport, merged!.active, merged!.flows_total, merged!.datagrams_from_client],
        ["udp", 4, 2, 6],
      );
      const ns1 = (merged!.backends as Record<string, unknown>[])[0]!;
      assert.deepEqual([ns1.active, ns1.flows_total, ns1.bytes_from_backend], [4, 2, 120]);
    } finally {
      await admin.close();
    }
  });

  it("passes promtool check metrics with every UDP series present", async (context) => {
    if (!existsSync("/usr/bin/promtool")) {
      return context.skip("promtool is not installed (apt-get install prometheus)");
    }
    const metrics = new Metrics(net.runtime);
    metrics.attach(standIn(STATUS));
    const f = flow(NS1, "10.0.0.1:4000");
    metrics.flowOpened(f);
    move(f, 2, 10);
    Object.assign(f, { outcome: "served", reason: "1 response" });
    metrics.flowClosed(f);
    metrics.datagramDropped(DNS, "10.0.0.9:1", "no_backend");
    const text = await metrics.registry.metrics();
    for (
      const name of ["datagrams_total", "bytes_total", "flows", "flows_total", "dropped_total"]
    ) {
      assert.match(text, new RegExp(`\\nmini_balancer_udp_${name}\\{`), name);
    }
    const dir = await tempDir();
    try {
      const file = join(dir.path, "metrics.txt");
      await writeFile(file, text);
      const output = await new Promise<string>((resolve) => {
        execFile(
          "bash",
          ["-c", `promtool check metrics < ${file} 2>&1; echo "exit=$?"`],
          (_e, out) => resolve(out),
        );
      });
      assert.match(output, /exit=0/, output);
    } finally {
      await dir.cleanup();
    }
  });
});
