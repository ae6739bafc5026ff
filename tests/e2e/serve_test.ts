/**
 * The real program serving clients, started as a user starts it (under Bun,
 * Deno, the compiled executable and the Node bundle; see ./_setup.ts): round-robin,
 * DNS backends, many clients, dead backends, half-close, pacing and SIGTERM.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { startDns } from "../_helpers/dns.ts";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  bytes,
  closedPort,
  configText,
  connect,
  echoServer,
  eventually,
  exchange,
  freePort,
  randomBytes,
  recordingBackend,
  sha256,
  signalProgram,
  startProgram,
  tempDir,
  text,
  within,
} from "../_helpers/index.ts";
import { assertPaced, pacingBackend, pacingClient } from "../_helpers/pacing.ts";
import { build, BUILDS, builtAt, dnsSkip, kinds, socat, sourcesChangedAt } from "./_setup.ts";

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    const backends = [echoServer({ greeting: "b1:" }), echoServer({ greeting: "b2:" })];
    after(() => backends.forEach((backend) => backend.close()));

    if (kind === "executable" || kind === "node") {
      const { file } = BUILDS[kind];
      // Compiling takes a few seconds: more than bun test's default timeout.
      before(() => build(kind), { timeout: 120_000 });

      it("is built from the current sources", async () => {
        const built = await builtAt(file);
        assert.ok(built >= 0, `${file} was not built`);
        assert.ok(built >= await sourcesChangedAt(), `${file} is older than the sources`);
      });
    }

    it("sends connections round-robin and logs the original's lines", async () => {
      const program = await startProgram(kind, configText(backends.map((b) => b.address)));
      try {
        const replies: string[] = [];
        for (let i = 1; i <= 6; i++) {
          replies.push(text((await exchange(program.port, bytes(`c${i}`))).data));
        }
        assert.deepEqual(replies, ["b1:c1", "b2:c2", "b1:c3", "b2:c4", "b1:c5", "b2:c6"]);
        await eventually(() => program.stderr().split("served connection").length === 7, "logs");
        const log = program.stderr();
        assert.match(
          log,
          /INFO frontend\{local_address=127\.0\.0\.1:\d+\}: .*listening for connections/,
        );
        assert.match(
          log,
          /handle_connection\{peer_address=127\.0\.0\.1:\d+\}: .*serving connection/,
        );
        assert.match(
          log,
          new RegExp(
            `through\\{target_address=${backends[0]!.address}\\}: .*opened client connection`,
          ),
        );
        assert.match(
          log,
          /served connection bytes_from_client=2 bytes_from_backend=5 duration_ms=\d+/,
        );
        // Ctrl-C stops it cleanly, like SIGTERM.
        assert.equal(await program.stop("SIGINT"), 0);
      } finally {
        await program.cleanup();
      }
    });

    it("finds its backends by DNS, follows a change and logs it", { skip: dnsSkip }, async () => {
      const port = await freePort();
      const first = recordingBackend({ hostname: "127.0.0.2", port });
      const second = recordingBackend({ hostname: "127.0.0.3", port });
      const dns = await startDns({ hosts: { "web.test": ["127.0.0.2"] } });
      const program = await startProgram(
        kind,
        `resolver = "${dns.address}"\n[frontend]\nbind_on = "127.0.0.1:0"\n` +
          `min_ttl = "0s"\nmax_ttl = "100ms"\n` +
          `[[frontend.backend]]\nname = "web"\nforward_to = "web.test:${port}"\n`,
      );
      try {
        assert.equal(text((await exchange(program.port, bytes("one"))).data), "one");
        assert.equal(first.connections, 1);
        await dns.setHosts({ "web.test": ["127.0.0.3"] });
        await eventually(
          () => /discovered backends changed .*web#127\.0\.0\.3/.test(program.stderr()),
          "the change in the log",
        );
        assert.equal(text((await exchange(program.port, bytes("two"))).data), "two");
        assert.equal(second.connections, 1, "the new address took the next connection");
      } finally {
        await program.cleanup();
        await dns.stop();
        first.close();
        second.close();
      }
    });

    it("serves 500 concurrent connections", async () => {
      const program = await startProgram(kind, configText([backends[0]!.address]));
      try {
        const results = await Promise.all(
          Array.from({ length: 500 }, async (_, i) => {
            const payload = bytes(`connection ${i} `.repeat(50));
            const { data } = await exchange(program.port, payload);
            return text(data) === `b1:${text(payload)}`;
          }),
        );
        assert.equal(results.filter(Boolean).length, 500);
      } finally {
        await program.cleanup();
      }
    });

    it("retries the clients of a dead backend on the live one", async () => {
      const dead = `127.0.0.1:${closedPort()}`;
      const program = await startProgram(kind, configText([backends[0]!.address, dead]));
      try {
        const replies: string[] = [];
        for (let i = 1; i <= 4; i++) {
          replies.push(text((await exchange(program.port, bytes(`c${i}`))).data));
        }
        assert.deepEqual(replies, ["b1:c1", "b1:c2", "b1:c3", "b1:c4"]);
        await eventually(() => /trying another/.test(program.stderr()), "the retry log");
        assert.match(
          program.stderr(),
          new RegExp(
            `WARN .*through\\{target_address=${dead}\\}: .*connect to backend failed, trying another reason="connection refused" next_target=${
              backends[0]!.address
            }`,
          ),
        );
      } finally {
        await program.cleanup();
      }
    });

    it("closes the clients of a dead backend with retries = 0 and serves the others", async () => {
      const dead = `127.0.0.1:${closedPort()}`;
      const program = await startProgram(
        kind,
        configText([backends[0]!.address, dead], "retries = 0"),
      );
      try {
        const replies: string[] = [];
        for (let i = 1; i <= 4; i++) {
          replies.push(text((await exchange(program.port, bytes(`c${i}`))).data));
        }
        assert.deepEqual(replies, ["b1:c1", "", "b1:c3", ""]);
        await eventually(
          () => /failed to serve connection/.test(program.stderr()),
          "the failure log",
        );
        assert.match(
          program.stderr(),
          new RegExp(
            `WARN .*through\\{target_address=${dead}\\}: .*failed to serve connection reason="connection refused"`,
          ),
        );
        assert.equal(program.child.exitCode, null, "still running");
      } finally {
        await program.cleanup();
      }
    });

    it("answers `echo hi | socat - tcp:…` with hi (half-close)", async () => {
      const plain = echoServer();
      const program = await startProgram(kind, configText([plain.address]));
      try {
        assert.equal(await socat(`echo hi | socat - tcp:127.0.0.1:${program.port}`), "hi\n");
        const big = randomBytes(8 * 1024 * 1024, 9);
        const dir = await tempDir();
        try {
          const file = join(dir.path, "payload.bin");
          await writeFile(file, big);
          const digest = await socat(
            `socat -b 65536 - tcp:127.0.0.1:${program.port} < ${file} | sha256sum`,
          );
          assert.equal(digest.split(" ")[0], sha256(big));
        } finally {
          await dir.cleanup();
        }
      } finally {
        plain.close();
        await program.cleanup();
      }
    });

    it("paces both directions at max_bytes_per_second, every second within ±25 %", async () => {
      const [upload, download] = [randomBytes(400_000, 11), randomBytes(400_000, 12)];
      const backend = pacingBackend(download);
      const program = await startProgram(
        kind,
        configText([backend.address], 'max_bytes_per_second = "100KiB"'),
      );
      try {
        const client = await pacingClient(program.port, upload);
        await within(client.ended, 15_000, "the download");
        const got = backend.connection!;
        await within(got.ended, 5_000, "the upload");
        assert.equal(sha256(got.received()), sha256(upload), "every uploaded byte");
        assert.equal(sha256(client.received()), sha256(download), "every downloaded byte");
        assertPaced(got.arrivals, upload.length, 100 * 1024);
        assertPaced(client.arrivals, download.length, 100 * 1024);
      } finally {
        backend.close();
        await program.cleanup();
      }
    });

    it("finishes open connections on SIGTERM, then exits 0", async () => {
      const plain = echoServer();
      const program = await startProgram(kind, configText([plain.address]));
      try {
        const client = await connect(program.port);
        client.conn.write(bytes("before"));
        await eventually(() => client.receivedLength() === 6, "the first echo");
        signalProgram(program.child, "SIGTERM");
        await eventually(() => /shutting down/.test(program.stderr()), "the shutdown log");
        await assert.rejects(connect(program.port), "no new connections are accepted");
        client.conn.write(bytes(" after"));
        client.conn.end();
        await client.closed;
        assert.equal(text(client.received()), "before after");
        assert.equal(await program.exited, 0);
      } finally {
        plain.close();
        await program.cleanup();
      }
    });
  });
}
