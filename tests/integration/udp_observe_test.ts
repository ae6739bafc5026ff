/**
 * UDP flows observed end to end, in process, over real loopback datagram
 * sockets on the adapter of the runtime that runs the tests: a balancer
 * with a UDP frontend tells its flows to the logging and metrics
 * subscribers, and the lines, `/metrics` and the status say what the
 * clients did.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Metrics } from "../../src/admin/metrics.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import { combineEvents } from "../../src/balancer/events.ts";
import { logEvents } from "../../src/balancer/log_events.ts";
import type { Config } from "../../src/config/config.ts";
import { parseConfig } from "../../src/config/load.ts";
import { configureLogging } from "../../src/log.ts";
import type { DatagramSocket } from "../../src/runtime/types.ts";
import { bytes, eventually, net } from "../_helpers/index.ts";

const LOOPBACK = "127.0.0.1";
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  resetSync();
});

/** A UDP socket: a backend echoing each datagram twice over, or a client collecting replies. */
async function socket(echo: boolean) {
  const replies: Uint8Array[] = [];
  const s: DatagramSocket = await net.bindDatagram!({
    hostname: LOOPBACK,
    port: 0,
    handlers: {
      message(data, from) {
        if (echo) s.send(new Uint8Array([...data, ...data]), from);
        else replies.push(data);
      },
      error() {},
    },
  });
  cleanups.push(() => s.close());
  return { socket: s, replies };
}

/** A config with one UDP frontend (named `dns`, `responses = 1`) in front of `ports`. */
function udpConfig(ports: number[]): Config {
  return parseConfig(
    `[frontend]\nname = "dns"\nbind_on = "udp:${LOOPBACK}:0"\nresponses = 1\n` +
      ports.map((port, i) =>
        `[[frontend.backend]]\nname = "ns-${i + 1}"\nforward_to = "${LOOPBACK}:${port}"\n`
      ).join(""),
  );
}

describe(`UDP flows observed on ${net.runtime}`, () => {
  it("two clients, one datagram each with responses = 1: logged, counted and shown", async () => {
    const lines: string[] = [];
    configureLogging({ verbosity: 1, write: (line) => lines.push(line) });
    const [ns1, ns2] = [await socket(true), await socket(true)];
    const metrics = new Metrics(net.runtime);
    const balancer = await Balancer.start(
      udpConfig([ns1.socket.address.port, ns2.socket.address.port]),
      { net, events: combineEvents(logEvents(), metrics) },
    );
    cleanups.push(() => balancer.stop({ graceMs: 0 }));
    metrics.attach(balancer);
    const to = balancer.addresses[0]!;
    const local = `udp:${LOOPBACK}:${to.port}`;
    const clients = [await socket(false), await socket(false)];
    for (const [i, client] of clients.entries()) {
      assert.ok(client.socket.send(bytes(`query-${i}`), to));
      await eventually(() => client.replies.length === 1, `client ${i}'s reply`, 5_000);
    }
    await eventually(
      () => lines.filter((l) => l.includes(" served flow ")).length === 2,
      "two served flow lines",
      5_000,
    );
    assert.ok(
      lines.some((l) =>
        l.includes(`local_address=${local}}: `) &&
        l.includes("listening for datagrams frontend=dns")
      ),
      lines.join(""),
    );
    for (const [i, client] of clients.entries()) {
      const peer = `peer_address=${LOOPBACK}:${client.socket.address.port}}`;
      const serving = lines.filter((l) => l.includes(peer) && l.includes(" serving flow "));
      assert.equal(serving.length, 1, `one serving flow line for client ${i}`);
      const served = lines.filter((l) => l.includes(peer) && l.includes(" served flow "));
      assert.equal(served.length, 1, `one served flow line for client ${i}`);
      assert.match(
        served[0]!,
        new RegExp(
          ` INFO frontend\\{local_address=${local}\\}:handle_connection\\{${
            peer.replace(/[{}.]/g, "\\$&")
          }:` +
            `through\\{target_address=127\\.0\\.0\\.1:\\d+\\}: mini_balancer::frontend: served flow ` +
            `reason="1 response" datagrams_from_client=1 bytes_from_client=7 ` +
            `datagrams_from_backend=1 bytes_from_backend=14 duration_ms=\\d+ outcome=served ` +
            `frontend=dns backend=ns-[12]\\n$`,
        ),
      );
    }
    const text = await metrics.registry.metrics();
    const samples = text.split("\n").filter((l) => l.startsWith("mini_balancer_udp_"));
    for (const backend of ["ns-1", "ns-2"]) {
      const labels = `frontend="dns",backend="${backend}"`;
      assert.ok(samples.includes(`mini_balancer_udp_flows{${labels}} 0`), samples.join("\n"));
      assert.ok(samples.includes(`mini_balancer_udp_flows_total{${labels},outcome="served"} 1`));
      assert.ok(
        samples.includes(`mini_balancer_udp_datagrams_total{${labels},direction="from_client"} 1`),
      );
      assert.ok(
        samples.includes(`mini_balancer_udp_bytes_total{${labels},direction="from_backend"} 14`),
      );
    }
    assert.deepEqual(balancer.status().map((f) => [f.transport, f.active]), [["udp", 0]]);
  });
});
