/**
 * UDP with real DNS peers (issue 21): `dig` through a UDP frontend with
 * `responses = 1` in front of two real dnsmasq servers on 127.0.0.2 and
 * 127.0.0.3, answering who.test with 10.0.0.2 and 10.0.0.3: every query is
 * answered, round robin alternates them, and no flow stays open after its
 * answer. Runs on each kind of program of this runtime.
 *
 * Skips, saying why, when dnsmasq or dig is missing and we are not root
 * (root runs `scripts/ensure-tools.sh` first); as root they must be there.
 *
 * @module
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { skipReason, sleep } from "../_helpers/index.ts";
import { DNSMASQ } from "../_helpers/dns.ts";
import {
  DIG,
  dig,
  type DnsmasqPair,
  startDnsmasqPair,
  startUdpProgram,
  udpConfig,
} from "../_helpers/udp.ts";
import { buildBefore, kinds } from "./_setup.ts";

const skip = skipReason("udp_dns_test", { dnsmasq: DNSMASQ, dig: DIG });

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}: UDP in front of dnsmasq`, { skip }, () => {
    let pair: DnsmasqPair;
    before(async () => (pair = await startDnsmasqPair()), { timeout: 20_000 });
    after(() => pair?.stop());
    buildBefore(kind);

    it("answers 20 dig queries round robin over two dnsmasq, and keeps no flow open after its answer", async () => {
      const program = await startUdpProgram(
        kind,
        (port) =>
          udpConfig(
            port,
            pair.addresses,
            'algorithm = "round_robin"\nresponses = 1\nidle_timeout = "30s"',
          ),
      );
      try {
        const answers: string[] = [];
        for (let i = 0; i < 20; i++) answers.push(await dig(program.port, "who.test"));
        const first = answers[0] === "10.0.0.3" ? 1 : 0;
        assert.deepEqual(
          answers,
          Array.from({ length: 20 }, (_, i) => `10.0.0.${2 + (i + first) % 2}`),
          "every query answered, alternating between the two servers",
        );
        // responses = 1: the flow ends with its answer, not after idle_timeout (30 s here).
        const started = Date.now();
        let open = -1;
        while (Date.now() - started < 1_000) {
          open = (await program.status()).frontends[0]!.active;
          if (open === 0) break;
          await sleep(20);
        }
        const took = Date.now() - started;
        assert.equal(open, 0, "open flows after the last answer");
        assert.ok(took >= 0 && took < 1_000, `flows closed within 1 s (took ${took} ms)`);
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
      }
    });
  });
}
