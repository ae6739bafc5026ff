/**
 * Regression test for admission (issue 18): a queued client that waits out
 * queue_timeout gives back its place under max_connections_per_client.
 * Clients connect from two loopback addresses (127.0.0.1 and 127.0.0.2).
 */
import assert from "node:assert/strict";
import { connect as tcpConnect, type Socket } from "node:net";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../../src/balancer/balancer.ts";
import { NO_EVENTS } from "../../../src/balancer/events.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { echoServer, eventually, net, within } from "../../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A client from `from` to 127.0.0.1:`port`: what it received, and when it closed. */
function client(port: number, from: string) {
  const socket: Socket = tcpConnect({ host: "127.0.0.1", port, localAddress: from });
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => received += chunk);
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  cleanups.push(() => socket.destroy());
  return { socket, closed, received: () => received };
}

describe(`admission on ${net.runtime}`, () => {
  it("a queued client that times out releases its per-client slot", async () => {
    const backend = echoServer({ greeting: "hi:" });
    cleanups.push(() => backend.close());
    const refusals: string[] = [];
    const toml = `[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:0"\n` +
      `max_connections = 1\nmax_connections_per_client = 1\nqueue_timeout = "100ms"\n` +
      `[[frontends.backend]]\nname = "a"\nforward_to = "${backend.address}"\n`;
    const balancer = await Balancer.start(parseConfig(toml), {
      net,
      events: {
        ...NO_EVENTS,
        refused: (_frontend, peer, why, detail) => refusals.push(`${peer} ${why}: ${detail}`),
      },
    });
    cleanups.push(() => balancer.stop({ graceMs: 0 }));
    const port = balancer.addresses[0]!.port;

    const holder = client(port, "127.0.0.1");
    await eventually(() => holder.received() === "hi:", "the first client's greeting", 2_000);
    const queued = client(port, "127.0.0.2");
    await within(queued.closed, 2_000, "the queued client to be turned away after 100 ms");
    assert.equal(queued.received(), "", "the queued client was never served");
    assert.match(refusals.join("\n"), /127\.0\.0\.2:\d+ .*waited 100ms in the queue/);

    holder.socket.end();
    await within(holder.closed, 2_000, "the first client to close");
    await eventually(() => balancer.stats.activeConnections === 0, "the slot to be free", 2_000);
    const again = client(port, "127.0.0.2");
    await within(
      Promise.race([again.closed, eventually(() => again.received() === "hi:", "greeting", 2_000)]),
      2_000,
      "the second client's new connection to be served or refused",
    );
    assert.equal(
      again.received(),
      "hi:",
      `127.0.0.2 must be served once its queued connection timed out; refusals:\n${
        refusals.join("\n")
      }`,
    );
    again.socket.end();
    await within(again.closed, 2_000, "the last client to close");
  });
});
