/**
 * The real program at the edge: TLS termination and routing by name, PROXY v2
 * to backends, allow and deny lists, header_timeout, Unix sockets, rate limits.
 */
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { createConnection } from "node:net";
import { encodeProxyV1, encodeProxyV2 } from "../../src/protocol/proxy.ts";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  bytes,
  concat,
  echoServer,
  eventually,
  exchange,
  freePort,
  makeCertificate,
  recordingBackend,
  startProgram,
  tempDir,
  text,
  tlsClient,
  tlsTables,
  within,
} from "../_helpers/index.ts";
import { buildBefore, kinds } from "./_setup.ts";

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    buildBefore(kind);

    it("at the edge: terminates TLS, sends the real client on with PROXY v2, denies at INFO, serves a Unix socket", async () => {
      const dir = await tempDir();
      const [certificate, recorder] = [
        await makeCertificate(dir.path, ["edge.test"]),
        recordingBackend(),
      ];
      const socket = join(dir.path, "lb.sock");
      const program = await startProgram(
        kind,
        `
        [[frontends]]
        name = "tls"
        bind_on = "127.0.0.1:0"
        tls = { cert = "${certificate.certPath}", key = "${certificate.keyPath}" }
        [[frontends.backend]]
        forward_to = "${recorder.address}"
        send_proxy = "v2"

        [[frontends]]
        name = "unix"
        bind_on = "unix:${socket}"
        unix_mode = "0600"
        deny = ["192.0.2.0/24"]
        accept_proxy = true
        [[frontends.backend]]
        forward_to = "${recorder.address}"
        `,
        [],
        [`--allow-write=${dir.path}`],
      );
      try {
        const client = tlsClient(program.port, "edge.test", certificate.cert);
        await client.secure;
        const local = { hostname: "127.0.0.1", port: client.socket.localPort! };
        client.socket.end("over tls");
        await client.ended;
        const header = encodeProxyV2(local, { hostname: "127.0.0.1", port: program.port });
        await eventually(() => recorder.received().length > 0, "the backend to be reached");
        assert.equal(recorder.received()[0], text(header) + "over tls");
        assert.equal((await stat(socket)).mode & 0o777, 0o600);
        const unix = { hostname: "", port: 0, path: socket };
        const denied = encodeProxyV1({ hostname: "192.0.2.1", port: 5 }, {
          hostname: "10.0.0.1",
          port: 6,
        });
        assert.equal(text((await exchange(unix, concat([denied, bytes("no")]))).data), "");
        await eventually(
          () => /refused connection: address denied/.test(program.stderr()),
          "the log",
        );
        assert.match(
          program.stderr(),
          /INFO .*peer_address=192\.0\.2\.1:5\}: .*refused connection: address denied/,
        );
        const allowed = encodeProxyV1({ hostname: "198.51.100.1", port: 5 }, {
          hostname: "10.0.0.1",
          port: 6,
        });
        assert.equal(text((await exchange(unix, concat([allowed, bytes("yes")]))).data), "yes");
        assert.equal(await program.stop("SIGTERM"), 0);
        await assert.rejects(
          stat(socket),
          { code: "ENOENT" },
          "the socket file is removed at stop",
        );
      } finally {
        await program.cleanup();
        recorder.close();
        await dir.cleanup();
      }
    });

    it("at the edge: header_timeout bounds a TLS handshake, and a plain-text client is refused at INFO", async () => {
      const dir = await tempDir();
      const [certificate, recorder] = [
        await makeCertificate(dir.path, ["edge.test"]),
        recordingBackend(),
      ];
      const program = await startProgram(
        kind,
        `
        [frontend]
        bind_on = "127.0.0.1:0"
        max_connections = 20
        header_timeout = "500ms"
        tls = { cert = "${certificate.certPath}", key = "${certificate.keyPath}" }
        [[frontend.backend]]
        forward_to = "${recorder.address}"
        `,
      );
      const sockets: ReturnType<typeof createConnection>[] = [];
      try {
        // 30 clients that never send a byte: more than max_connections.
        const silent = Array.from({ length: 30 }, () => {
          const socket = createConnection({ host: "127.0.0.1", port: program.port });
          sockets.push(socket);
          socket.on("error", () => {});
          socket.resume();
          return {
            opened: new Promise<number>((resolve) =>
              socket.once("connect", () => resolve(performance.now()))
            ),
            closed: new Promise<number>((resolve) =>
              socket.once("close", () => resolve(performance.now()))
            ),
          };
        });
        const opened = await Promise.all(silent.map((s) => s.opened));
        const client = tlsClient(program.port, "edge.test", certificate.cert);
        sockets.push(client.socket);
        await within(client.secure, 3000, "the real client's handshake");
        client.socket.end("real");
        await within(client.ended, 3000, "the real client's echo");
        const servedAt = performance.now();
        assert.equal(client.received(), "real");
        const closedAt = await within(Promise.all(silent.map((s) => s.closed)), 5000, "closes");
        assert.ok(servedAt < Math.min(...closedAt), "served while the silent ones were open");
        const waited = closedAt.map((at, i) => at - opened[i]!);
        const [least, most] = [Math.min(...waited), Math.max(...waited)];
        assert.ok(least >= 480 && most <= 1500, `closed after ${least}..${most} ms`);
        assert.equal(recorder.connections, 1, "a backend connection for the real client only");
        const plain = createConnection({ host: "127.0.0.1", port: program.port });
        sockets.push(plain);
        plain.on("error", () => {});
        plain.resume();
        plain.write("GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n");
        await within(new Promise((resolve) => plain.once("close", resolve)), 3000, "the close");
        await eventually(() => /refused connection: not TLS/.test(program.stderr()), "the log");
        assert.match(program.stderr(), /INFO .*refused connection: not TLS/);
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        for (const socket of sockets) socket.destroy();
        await program.cleanup();
        recorder.close();
        await dir.cleanup();
      }
    });

    it("at the edge: routes TLS by name, picks a certificate by name, and limits a client's rate", async () => {
      const dir = await tempDir();
      const [a, b] = [
        await makeCertificate(dir.path, ["a.test"]),
        await makeCertificate(dir.path, ["b.test"]),
      ];
      const passthrough = echoServer({ tls: { certificates: [a] }, greeting: "passthrough:" });
      const plain = echoServer({ greeting: "plain:" });
      const shared = await freePort();
      const program = await startProgram(
        kind,
        `
        [[frontends]]
        name = "terminating"
        bind_on = "127.0.0.1:0"
        connection_rate_per_client = "3/m"
        ${tlsTables("frontends", [a, b])}
        [[frontends.backend]]
        forward_to = "${plain.address}"

        [[frontends]]
        name = "routed"
        bind_on = "127.0.0.1:${shared}"
        sni = ["a.test"]
        [[frontends.backend]]
        forward_to = "${passthrough.address}"
        `,
      );
      const ask = async (port: number, name: string, ca: string) => {
        const client = tlsClient(port, name, ca);
        try {
          await client.secure;
          const cn = client.socket.getPeerCertificate().subject?.CN;
          client.socket.end("hi");
          await client.ended;
          return `${cn} ${client.received()}`;
        } finally {
          client.socket.destroy();
        }
      };
      try {
        assert.equal(await ask(program.port, "b.test", b.cert), "b.test plain:hi");
        assert.equal(await ask(program.port, "a.test", a.cert), "a.test plain:hi");
        assert.equal(await ask(shared, "a.test", a.cert), "a.test passthrough:hi");
        await assert.rejects(ask(shared, "b.test", a.cert), "no frontend takes b.test there");
        assert.equal(await ask(program.port, "b.test", b.cert), "b.test plain:hi");
        // The fourth in a minute is closed before its TLS handshake.
        await assert.rejects(ask(program.port, "b.test", b.cert), "the fourth in a minute");
        await eventually(() => /client over its connection rate/.test(program.stderr()), "log");
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
        passthrough.close();
        plain.close();
        await dir.cleanup();
      }
    });
  });
}
