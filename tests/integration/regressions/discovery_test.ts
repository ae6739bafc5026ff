/**
 * Regression tests for service discovery (issue 18): `min_ttl` bounds how
 * often a name with TTL 0 is asked, and a failed resolution keeps the last
 * good set, in the pool and in what it reports (the addresses in use).
 * The DNS server is a small one of this file, over TCP on loopback, that
 * answers `web.test` with two addresses and TTL 0, or closes every
 * connection when told to fail.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { afterEach, describe, it } from "node:test";
import * as packet from "dns-packet";
import { parseConfig } from "../../../src/config/load.ts";
import { Discovery, type Resolution } from "../../../src/discovery/discovery.ts";
import { net, sleep, within } from "../../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A DNS-over-TCP server: `web.test` A 127.0.0.2 and 127.0.0.3, TTL 0. */
function dnsServer() {
  const state = { queries: 0, failing: false };
  const listener = net.listen({
    hostname: "127.0.0.1",
    port: 0,
    onConnection(conn) {
      let received = new Uint8Array(0);
      conn.setHandlers({
        data(chunk) {
          received = new Uint8Array([...received, ...chunk]);
          if (received.length < 2 || received.length < 2 + ((received[0]! << 8) | received[1]!)) {
            return;
          }
          state.queries++;
          if (state.failing) return conn.close();
          const query = packet.streamDecode(Buffer.from(received));
          const question = query.questions![0]!;
          const answers: packet.Answer[] = question.type === "A"
            ? ["127.0.0.2", "127.0.0.3"].map((data) => ({
              type: "A",
              name: question.name,
              ttl: 0,
              data,
            }))
            : [];
          conn.write(packet.streamEncode({
            type: "response",
            id: query.id,
            flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE,
            questions: query.questions,
            answers,
          }));
          conn.end();
        },
        end: () => conn.end(),
        drain() {},
        close() {},
      });
    },
  });
  cleanups.push(() => listener.close());
  return { state, address: `127.0.0.1:${listener.address.port}` };
}

function start(dns: string, minTtl: string) {
  const config = parseConfig(
    `[frontend]\nbind_on = "127.0.0.1:0"\nresolver = "${dns}"\nmin_ttl = "${minTtl}"\n` +
      `[[frontend.backend]]\nname = "web"\nforward_to = "web.test:8080"\n`,
  );
  const resolutions: Resolution[] = [];
  const discovery = new Discovery(config.frontends[0]!, net, {
    changed: () => ({ added: [], removed: [] }),
    resolved: (resolution) => resolutions.push(resolution),
  });
  cleanups.push(() => discovery.stop());
  return { discovery, resolutions };
}

describe(`discovery regressions on ${net.runtime}`, () => {
  it("asks a name with TTL 0 at most about once per min_ttl (200 ms)", async () => {
    const dns = dnsServer();
    const { discovery, resolutions } = start(dns.address, "200ms");
    await within(discovery.start(), 2_000, "the first resolution");
    await sleep(1_000);
    const count = resolutions.length;
    // t = 0, 200, …, 1000 ms: six at most; one more for a slow machine.
    assert.ok(count >= 3 && count <= 7, `${count} resolutions in about 1 s with min_ttl 200 ms`);
    assert.ok(dns.state.queries <= 2 * 7, `${dns.state.queries} DNS queries (A and AAAA)`);
  });

  it("a failed resolution keeps the last good set and reports its addresses", async () => {
    const dns = dnsServer();
    const { discovery, resolutions } = start(dns.address, "100ms");
    await within(discovery.start(), 2_000, "the first resolution");
    assert.equal(discovery.backends().length, 2);
    dns.state.failing = true;
    const seen = resolutions.length;
    const deadline = Date.now() + 2_000;
    while (!resolutions.slice(seen).some((r) => r.result === "failed") && Date.now() < deadline) {
      await sleep(10);
    }
    const failed = resolutions.slice(seen).find((r) => r.result === "failed");
    assert.ok(failed !== undefined, "a failed resolution within 2 s");
    assert.equal(failed.news, "failing");
    assert.equal(failed.addresses, 2, "the addresses in use after a failure: the last good set's");
    assert.deepEqual(
      discovery.backends().map((backend) => backend.name).sort(),
      ["web#127.0.0.2", "web#127.0.0.3"],
      "the last good set's backends stay",
    );
    assert.equal(discovery.found()[0]!.backends.length, 2, "check's view of the name");
  });
});
