/**
 * One port, many protocols, with the real program and real peers: the `ssh`
 * client logs into sshd, curl reaches nginx by `Host`, `openssl s_client`
 * reaches a backend per ALPN name, psql queries PostgreSQL, all through one
 * shared address; a silent client gets the server-speaks-first fallback
 * after `detect_timeout`, garbage goes to it byte for byte, and without a
 * fallback an unmatched client is refused as `no_match`.
 *
 * Each test skips, saying why, when its tools are missing and we are not
 * root (root runs `scripts/ensure-tools.sh` first); as root they must be there.
 *
 * @module
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  bytes,
  type CommandResult,
  concat,
  connect,
  eventually,
  findCommand,
  freePort,
  makeCertificate,
  net,
  NGINX,
  POSTGRES_BIN,
  PSQL,
  recordingBackend,
  runCommand,
  skipReason,
  SSH,
  SSH_KEYGEN,
  SSHD,
  startNginx,
  startPostgres,
  startProgram,
  startSshd,
  tempDir,
  text,
  tlsClient,
  within,
} from "../_helpers/index.ts";
import type { Conn, TlsOptions } from "../../src/runtime/types.ts";
import { encodeProxyV1, encodeProxyV2 } from "../../src/protocol/proxy.ts";
import { hello, latin1, SSH_BANNER } from "../unit/protocol/_samples.ts";
import { buildBefore, kinds } from "./_setup.ts";

const CURL = findCommand("curl");
const OPENSSL = findCommand("openssl");

/**
 * A backend that records every byte of each connection and names itself:
 * it writes `greeting` as soon as a connection opens (a server that speaks
 * first), and with `endAfterGreeting` then ends it (a TLS server that says
 * who it is and closes, so `s_client -ign_eof` ends). With `tls`, it
 * terminates TLS, and what it records is the decrypted stream.
 */
function namedBackend(
  greeting: string,
  options: { tls?: TlsOptions; endAfterGreeting?: boolean } = {},
) {
  const received: Uint8Array[][] = [];
  const conns = new Set<Conn>();
  const listener = net.listen({
    hostname: "127.0.0.1",
    port: 0,
    tls: options.tls,
    onConnection(conn) {
      const chunks: Uint8Array[] = [];
      received.push(chunks);
      conns.add(conn);
      conn.setHandlers({
        data: (chunk) => void chunks.push(chunk.slice()),
        drain() {},
        end: () => conn.end(),
        close: () => conns.delete(conn),
      });
      conn.write(bytes(greeting));
      if (options.endAfterGreeting) conn.end();
    },
  });
  return {
    address: `127.0.0.1:${listener.address.port}`,
    /** How many connections it got. */
    get connections() {
      return received.length;
    },
    /** What connection `i` received, as text. */
    text: (i: number) => text(concat(received[i] ?? [])),
    /** What connection `i` received. */
    bytes: (i: number) => concat(received[i] ?? []),
    close() {
      listener.close();
      for (const conn of conns) conn.reset();
    },
  };
}

/** Asserts a tool's run ended with `code` and printed `stdout`, showing its stderr if not. */
function ran(result: CommandResult, stdout: string | RegExp, code = 0) {
  if (typeof stdout === "string") {
    assert.deepEqual({ stdout: result.stdout, code: result.code }, { stdout, code }, result.stderr);
  } else {
    assert.equal(result.code, code, result.stdout + result.stderr);
    assert.match(result.stdout, stdout, result.stderr);
  }
}

/** `openssl s_client` through `port` for `a.test`, offering `alpn`; waits for the server's close. */
function sClient(port: number, alpn: string): Promise<CommandResult> {
  return runCommand(OPENSSL!, [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "a.test",
    "-alpn",
    alpn,
    "-ign_eof",
  ], { timeout: 10_000 });
}

/**
 * Sends `data` to `port` one byte per TCP segment (TCP_NODELAY, a pause of
 * about 0.1 ms after each byte, so each leaves alone and the balancer reads
 * it in small pieces), half-closes, and returns what came back until the
 * close. A python3 peer: the pace is the same whatever runtime runs the test.
 */
async function trickle(port: number, data: Uint8Array): Promise<Uint8Array> {
  const script = `
import socket, sys, time
data = bytes.fromhex(sys.argv[2])
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i in range(len(data)):
    s.send(data[i:i + 1])
    time.sleep(0.0001)
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
sys.stdout.write(got.hex())
`;
  const hex = Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
  const result = await runCommand("python3", ["-c", script, String(port), hex], {
    timeout: 15_000,
  });
  assert.equal(result.code, 0, result.stderr);
  return Uint8Array.from(result.stdout.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

/** The "opened client connection" lines of the log, each as the frontend it names. */
function openedBy(log: string): string[] {
  return [...log.matchAll(/opened client connection.*\bfrontend=(\w+)/g)].map((m) => m[1]!);
}

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}, one port for many protocols`, () => {
    buildBefore(kind);

    it(
      "takes ssh, TLS by name and ALPN, HTTP by Host and a server-speaks-first fallback on one port",
      {
        skip: skipReason("one_port_test", {
          sshd: SSHD,
          ssh: SSH,
          "ssh-keygen": SSH_KEYGEN,
          nginx: NGINX,
          curl: CURL,
          openssl: OPENSSL,
        }),
      },
      async () => {
        const dir = await tempDir();
        const cleanups: (() => unknown)[] = [() => dir.cleanup()];
        try {
          const certificate = await makeCertificate(dir.path, ["a.test"]);
          const tls = { certificates: [certificate] };
          const [sshd, nginx] = await Promise.all([
            startSshd(),
            startNginx("h", { hosts: ["h.test"] }),
          ]);
          cleanups.push(() => sshd.close(), () => nginx.close());
          const h2 = namedBackend("backend h2\n", { tls, endAfterGreeting: true });
          const h1 = namedBackend("backend h1\n", { tls, endAfterGreeting: true });
          const fallback = namedBackend("220 fallback ready\r\n");
          cleanups.push(() => h2.close(), () => h1.close(), () => fallback.close());
          const port = await freePort();
          const frontend = (name: string, keys: string, backend: string) => `
            [[frontends]]
            name = "${name}"
            bind_on = "127.0.0.1:${port}"
            ${keys}
            [[frontends.backend]]
            forward_to = "${backend}"
          `;
          const program = await startProgram(
            kind,
            frontend("ssh", 'protocol = "ssh"', `127.0.0.1:${sshd.port}`) +
              frontend("h2", 'sni = ["a.test"]\nalpn = ["h2"]', h2.address) +
              frontend("h1", 'sni = ["a.test"]\nalpn = ["http/1.1"]', h1.address) +
              frontend("web", 'http_host = ["h.test"]', `127.0.0.1:${nginx.port}`) +
              frontend("fallback", 'detect_timeout = "300ms"', fallback.address),
          );
          cleanups.push(() => program.cleanup());
          assert.equal(program.port, port);

          ran(await sshd.run("echo through the balancer", { port }), "through the balancer\n");
          assert.match(sshd.log(), new RegExp(`Accepted publickey for ${sshd.user}`));

          ran(
            await runCommand(CURL!, [
              "-sS",
              "--max-time",
              "5",
              "--resolve",
              `h.test:${port}:127.0.0.1`,
              `http://h.test:${port}/`,
            ]),
            nginx.body,
          );

          ran(await sClient(port, "h2"), /backend h2\n/);
          assert.deepEqual([h2.connections, h1.connections], [1, 0], "h2 reached its backend");
          ran(await sClient(port, "http/1.1"), /backend h1\n/);
          assert.deepEqual([h2.connections, h1.connections], [1, 1], "http/1.1 reached its own");

          // A client that sends nothing: the fallback speaks first, after detect_timeout.
          const silent = await connect(port);
          const began = performance.now();
          await eventually(() => silent.receivedLength() >= 20, "the fallback's banner", 5_000);
          const waited = performance.now() - began;
          assert.equal(text(silent.received()), "220 fallback ready\r\n");
          assert.ok(waited >= 250 && waited <= 1500, `banner after ${waited.toFixed(0)} ms`);
          silent.conn.end();
          await within(silent.closed, 3_000, "the silent client's close");
          assert.equal(fallback.connections, 1);
          assert.equal(fallback.text(0), "", "the silent client sent nothing");

          // Garbage: the fallback gets exactly its bytes.
          const garbage = Uint8Array.of(0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x80, 0x01, 0x7f);
          const noisy = await connect(port);
          noisy.conn.write(garbage);
          await eventually(() => fallback.bytes(1).length >= garbage.length, "the garbage");
          noisy.conn.end();
          await within(noisy.closed, 3_000, "the noisy client's close");
          assert.deepEqual(fallback.bytes(1), garbage);
          assert.equal(text(noisy.received()), "220 fallback ready\r\n");
          assert.equal(fallback.connections, 2);

          // The log names the frontend each connection matched, in order.
          await eventually(() => openedBy(program.stderr()).length >= 6, "six opened lines");
          assert.deepEqual(
            openedBy(program.stderr()),
            ["ssh", "web", "h2", "h1", "fallback", "fallback"],
            program.stderr(),
          );
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          for (const cleanup of cleanups.reverse()) await cleanup();
        }
      },
    );

    it(
      "takes psql through a postgres frontend to the real PostgreSQL while a TLS client on the port reaches its backend",
      { skip: skipReason("one_port_test", { initdb: POSTGRES_BIN, psql: PSQL, openssl: OPENSSL }) },
      async () => {
        const dir = await tempDir();
        const cleanups: (() => unknown)[] = [() => dir.cleanup()];
        try {
          const certificate = await makeCertificate(dir.path, ["a.test"]);
          const postgres = await startPostgres();
          cleanups.push(() => postgres.close());
          const web = namedBackend("backend https\n", { tls: { certificates: [certificate] } });
          cleanups.push(() => web.close());
          const port = await freePort();
          const program = await startProgram(
            kind,
            `
            [[frontends]]
            name = "pg"
            bind_on = "127.0.0.1:${port}"
            protocol = "postgres"
            [[frontends.backend]]
            forward_to = "127.0.0.1:${postgres.port}"

            [[frontends]]
            name = "https"
            bind_on = "127.0.0.1:${port}"
            protocol = "tls"
            [[frontends.backend]]
            forward_to = "${web.address}"
            `,
          );
          cleanups.push(() => program.cleanup());
          ran(await postgres.psql("select 1", { port }), "1\n");
          // The TLS inside is PostgreSQL's own, end to end: the balancer only forwards.
          ran(
            await postgres.psql("select ssl from pg_stat_ssl where pid = pg_backend_pid()", {
              port,
            }),
            "t\n",
          );
          const client = tlsClient(port, "a.test", certificate.cert);
          cleanups.push(() => client.socket.destroy());
          await within(client.secure, 5_000, "the TLS handshake through the balancer");
          await eventually(() => client.received() === "backend https\n", "the TLS backend's name");
          client.socket.end("over tls");
          await eventually(() => web.text(0) === "over tls", "the TLS backend to get the data");
          assert.equal(web.connections, 1);
          await eventually(() => openedBy(program.stderr()).length >= 3, "three opened lines");
          assert.deepEqual(openedBy(program.stderr()), ["pg", "pg", "https"], program.stderr());
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          for (const cleanup of cleanups.reverse()) await cleanup();
        }
      },
    );

    it(
      "routes after a PROXY header a 6 KB two-record ClientHello, an HTTP head and an SSH banner sent one byte per segment, byte for byte",
      { skip: skipReason("one_port_test", { python3: findCommand("python3") }) },
      async () => {
        const backends = {
          tls: recordingBackend(),
          web: recordingBackend(),
          ssh: recordingBackend(),
          fallback: recordingBackend(),
        };
        const port = await freePort();
        const frontend = (name: string, keys: string, backend: string) => `
          [[frontends]]
          name = "${name}"
          bind_on = "127.0.0.1:${port}"
          accept_proxy = true
          trusted = ["127.0.0.1/32"]
          ${keys}
          [[frontends.backend]]
          forward_to = "${backend}"
        `;
        let program: Awaited<ReturnType<typeof startProgram>> | undefined;
        try {
          program = await startProgram(
            kind,
            frontend("tls", 'sni = ["a.test"]', backends.tls.address) +
              frontend("web", 'http_host = ["h.test"]', backends.web.address) +
              frontend("ssh", 'protocol = "ssh"', backends.ssh.address) +
              frontend("fallback", "", backends.fallback.address),
          );
          // 6 KB of padding: a ClientHello over two records of 4000 bytes at most.
          const clientHello = hello({
            sni: "a.test",
            alpn: ["h2"],
            padding: 6000,
            recordSize: 4000,
          });
          assert.ok(clientHello.length > 6000 && clientHello[4005] === 22, "two records");
          const [client, local] = [
            { hostname: "192.0.2.7", port: 40001 },
            { hostname: "198.51.100.1", port: 443 },
          ];
          const v1 = encodeProxyV1(client, local);
          const head = latin1(
            "GET /x HTTP/1.1\r\nHost: h.test:443\r\nUser-Agent: trickle\r\nAccept: */*\r\n\r\n",
          );
          const cases = [
            { data: clientHello, header: encodeProxyV2(client, local), to: backends.tls },
            { data: head, header: v1, to: backends.web },
            { data: SSH_BANNER, header: v1, to: backends.ssh },
          ];
          for (const { data, header, to } of cases) {
            const echoed = await trickle(program.port, concat([header, data]));
            assert.equal(to.connections, 1, "one connection to its backend");
            assert.deepEqual(
              to.bytes(0),
              data,
              "the backend got the bytes after the header, exactly",
            );
            assert.deepEqual(echoed, data, "and its answer came back whole");
          }
          assert.equal(backends.fallback.connections, 0, "nothing went to the fallback");
          assert.deepEqual(openedBy(program.stderr()), ["tls", "web", "ssh"], program.stderr());
          assert.match(program.stderr(), /peer_address=192\.0\.2\.7:40001\}/);
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program?.cleanup();
          for (const backend of Object.values(backends)) backend.close();
        }
      },
    );

    it("without a fallback, closes a connection no frontend takes and counts it as no_match", async () => {
      const backend = recordingBackend();
      const port = await freePort();
      const frontend = (name: string, keys: string) => `
        [[frontends]]
        name = "${name}"
        bind_on = "127.0.0.1:${port}"
        ${keys}
        [[frontends.backend]]
        forward_to = "${backend.address}"
      `;
      let program: Awaited<ReturnType<typeof startProgram>> | undefined;
      try {
        program = await startProgram(
          kind,
          frontend("ssh", 'protocol = "ssh"') + frontend("web", 'http_host = ["h.test"]') +
            '\n[admin]\nbind_on = "127.0.0.1:0"\n',
        );
        await eventually(() => /admin listening/.test(program!.stderr()), "the admin line");
        const admin = `http://${/admin listening address=(\S+)/.exec(program.stderr())![1]}`;
        const began = performance.now();
        const refused = await within(
          connect(port).then(async (client) => {
            client.conn.write(bytes("HELO mail.example\r\n"));
            // The balancer ends it: the client has not ended its side.
            await client.ended;
            client.conn.close();
            return { data: client.received() };
          }),
          5_000,
          "the unmatched client's close",
        );
        const took = performance.now() - began;
        assert.equal(refused.data.length, 0, "nothing came back");
        assert.ok(took < 1_000, `closed after ${took.toFixed(0)} ms, not at header_timeout`);
        assert.equal(backend.connections, 0, "no backend connection");
        const metrics = await (await fetch(`${admin}/metrics`)).text();
        assert.match(
          metrics,
          /^mini_balancer_refusals_total\{[^}]*reason="no_match"[^}]*\} 1$/m,
          metrics.split("\n").filter((line) => line.includes("refusals")).join("\n"),
        );
        await eventually(
          () => /refused connection: no frontend takes it/.test(program!.stderr()),
          "the log",
        );
        assert.match(program.stderr(), /INFO .*refused connection: no frontend takes it/);
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program?.cleanup();
        backend.close();
      }
    });
  });
}
