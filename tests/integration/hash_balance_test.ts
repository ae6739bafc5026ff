/**
 * `hash_balance_factor` through a real Balancer: 200 long-lived clients from
 * 50 source addresses (127.0.0.2 to 127.0.0.51, bound with localAddress) over
 * 4 echo backends, each greeting with its name. The plain ring (before a
 * reload adds the factor) tells each address's own backend; with the factor
 * no backend ever holds more than ceil(1.25 × (open + 1) ÷ 4), and a client
 * goes to its own backend whenever that one is below it.
 */
import assert from "node:assert/strict";
import { connect as tcpConnect, type Socket } from "node:net";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import { NO_EVENTS } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import { echoServer, eventually, net } from "../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const NAMES = ["b1", "b2", "b3", "b4"];
const SOURCES = Array.from({ length: 50 }, (_, i) => `127.0.0.${i + 2}`);
const PER_SOURCE = 4;
const FACTOR = 1.25;

/** A client from `from` to 127.0.0.1:`port`; resolves with the backend's greeting ("b3"). */
async function client(port: number, from: string): Promise<{ socket: Socket; backend: string }> {
  const socket: Socket = tcpConnect({ host: "127.0.0.1", port, localAddress: from });
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => received += chunk);
  socket.on("error", () => {});
  cleanups.push(() => socket.destroy());
  await eventually(() => received.endsWith(":"), `the greeting to a client from ${from}`, 3_000);
  return { socket, backend: received.slice(0, -1) };
}

describe(`hash_balance_factor on ${net.runtime}`, () => {
  it("holds 200 clients from 50 addresses over 4 backends within 1.25 × the average", async () => {
    const servers = NAMES.map((name) => echoServer({ greeting: `${name}:` }));
    for (const server of servers) cleanups.push(() => server.close());
    const toml = (extra: string) =>
      `[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:0"\nalgorithm = "source_hash"\n${extra}` +
      servers.map((server, i) =>
        `[[frontends.backend]]\nname = "${NAMES[i]}"\nforward_to = "${server.address}"\n`
      ).join("");
    const balancer = await Balancer.start(parseConfig(toml("")), { net, events: NO_EVENTS });
    cleanups.push(() => balancer.stop({ graceMs: 0 }));
    const port = balancer.addresses[0]!.port;

    // Each address's own backend on the ring, from the plain ring (it ignores load).
    const home = new Map<string, string>();
    for (const source of SOURCES) {
      const { socket, backend } = await client(port, source);
      home.set(source, backend);
      socket.destroy();
    }
    const activeOf = () => balancer.status()[0]!.backends.reduce((sum, b) => sum + b.active, 0);
    await eventually(() => activeOf() === 0, "the probing connections to close", 3_000);

    // Reload adds the factor: it applies to new connections.
    await balancer.reload(parseConfig(toml(`hash_balance_factor = ${FACTOR}\n`)));

    const load = new Map(NAMES.map((name) => [name, 0]));
    let kept = 0;
    let passedOn = 0;
    for (const source of SOURCES) {
      for (let n = 0; n < PER_SOURCE; n++) {
        const open = [...load.values()].reduce((a, b) => a + b);
        const bound = Math.ceil(FACTOR * (open + 1) / NAMES.length);
        const own = home.get(source)!;
        const { backend } = await client(port, source);
        assert.ok(
          load.get(backend)! < bound,
          `a client from ${source} went to ${backend} with ${load.get(backend)} of ${bound}`,
        );
        if (load.get(own)! < bound) {
          assert.equal(backend, own, `${source} left ${own} at ${load.get(own)} of ${bound}`);
          kept++;
        } else {
          assert.notEqual(backend, own);
          passedOn++;
        }
        load.set(backend, load.get(backend)! + 1);
      }
    }
    // Every client is still connected, on the backend it greeted from.
    const counts = NAMES.map((name) => load.get(name)!);
    await eventually(
      () => servers.every((server, i) => server.conns.size === counts[i]),
      `the backends to hold ${counts.join(", ")} connections`,
      3_000,
    );
    const average = SOURCES.length * PER_SOURCE / NAMES.length;
    for (const count of counts) {
      assert.ok(count <= FACTOR * average + 1, `loads ${counts.join(", ")} over ${average}`);
    }
    assert.equal(kept + passedOn, 200);
    assert.ok(kept >= 100, `${kept} clients on their own backend, ${passedOn} passed on`);
  });
});
