/**
 * The Net contract, checked on the adapter of the runtime running the tests:
 * the same file runs under `bun test` (Bun adapter), `deno test` (Deno's)
 * and, bundled, `node --test` (Node's: `npm run test:node`).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { execFileSync } from "node:child_process";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { prepareUnixSocket } from "../../src/balancer/listener/unix_socket.ts";
import {
  type Conn,
  type ConnHandlers,
  dial,
  type Endpoint,
  type Listener,
  type TlsOptions,
} from "../../src/runtime/types.ts";
import {
  bytes,
  type Certificate,
  closedPort,
  connect,
  echoServer,
  eventually,
  makeCertificate,
  net,
  randomBytes,
  sha256,
  tempDir,
  text,
  tlsClient,
  within,
} from "../_helpers/index.ts";

/**
 * Listens on a free port (or on `where`: a Unix path, TLS) and hands over
 * the first accepted connection.
 */
function acceptOne(
  where: { path?: string; mode?: number; tls?: TlsOptions } = {},
): { listener: Listener; accepted: Promise<Conn> } {
  let resolve!: (conn: Conn) => void;
  const accepted = new Promise<Conn>((r) => (resolve = r));
  const listener = net.listen({ hostname: "127.0.0.1", port: 0, ...where, onConnection: resolve });
  return { listener, accepted };
}

/** A Unix endpoint, as `parseAddress("unix:…")` gives it. */
function unixEndpoint(path: string): Endpoint {
  return { hostname: "", port: 0, path };
}

/**
 * Leaves a socket file nobody listens on, as a process killed while
 * listening does: python binds it and exits without removing it.
 */
function staleSocketFile(path: string): void {
  execFileSync("python3", [
    "-c",
    "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)",
    path,
  ]);
}

/**
 * Dials `endpoint` with {@linkcode dial} (the adapter's own `dial`, or its
 * `connect` behind it) and resolves with what was reported, checking that
 * nothing was reported before `dial` returned and that exactly one report came.
 */
async function dialed(endpoint: Endpoint, tag: number): Promise<Conn | Error> {
  const reports: (Conn | Error)[] = [];
  let returned = false;
  let tagOk = true;
  let report!: () => void;
  const first = new Promise<void>((r) => (report = r));
  const note = (outcome: Conn | Error, got: number) => {
    assert.ok(returned, "reported before dial returned");
    tagOk &&= got === tag;
    reports.push(outcome);
    report();
  };
  dial(net, endpoint, {
    dialed: (conn, got) => note(conn, got),
    dialFailed: (error, got) => note(error as Error, got),
  }, tag);
  returned = true;
  await within(first, 5_000, "dial to report");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(reports.length, 1, "one report per dial");
  assert.ok(tagOk, "the tag comes back untouched");
  return reports[0]!;
}

function recorder(conn: Conn) {
  const events: string[] = [];
  let received = 0;
  const handlers: ConnHandlers = {
    data(chunk) {
      received += chunk.length;
      if (events.at(-1) !== "data") events.push("data");
    },
    end: () => events.push("end"),
    drain: () => events.push("drain"),
    close: (error) => events.push(error ? `close:${error.message}` : "close"),
  };
  conn.setHandlers(handlers);
  return { events, received: () => received };
}

describe(`${net.runtime} adapter`, () => {
  it("reports the bound port and both addresses of a connection", async () => {
    const { listener, accepted } = acceptOne();
    try {
      assert.ok(listener.address.port > 0);
      const client = await connect(listener.address.port);
      const server = await accepted;
      assert.equal(server.localAddress.port, listener.address.port);
      assert.equal(server.remoteAddress.port, client.conn.localAddress.port);
      assert.equal(client.conn.remoteAddress.hostname, "127.0.0.1");
      client.conn.close();
      server.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("replays what arrived before setHandlers, in order", async () => {
    let resolve!: (conn: Conn) => void;
    const accepted = new Promise<Conn>((r) => (resolve = r));
    // Hand the connection over without setting handlers right away.
    const listener = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: resolve });
    try {
      const client = await connect(listener.address.port);
      client.conn.write(bytes("early bytes"));
      client.conn.end();
      const server = await accepted;
      await new Promise((r) => setTimeout(r, 50));
      let got = "";
      let ended = false;
      server.setHandlers({
        data: (chunk) => void (got += text(chunk)),
        end: () => void (ended = true),
        drain() {},
        close() {},
      });
      await eventually(() => ended, "the replayed end");
      assert.equal(got, "early bytes");
      server.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("half-closes with end() and keeps reading", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const client = await connect(listener.address.port);
      const server = await accepted;
      const seen = recorder(server);
      client.conn.write(bytes("request"));
      client.conn.end();
      await eventually(() => seen.events.includes("end"), "the FIN");
      // The client's write side is closed; its read side is not.
      server.write(bytes("response after FIN"));
      server.end();
      await client.closed;
      assert.equal(text(client.received()), "response after FIN");
      await eventually(() => seen.events.at(-1) === "close", "the server side to close");
      assert.deepEqual(seen.events, ["data", "end", "close"]);
    } finally {
      listener.close();
    }
  });

  it("signals backpressure with write() false and drain, losing nothing", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const client = await connect(listener.address.port);
      const server = await accepted;
      client.conn.pause(); // the reader stops: the kernel buffers fill up
      const payload = randomBytes(16 * 1024 * 1024, 11);
      const seen = recorder(server);
      let acceptedAll = true;
      for (let offset = 0; offset < payload.length; offset += 1024 * 1024) {
        acceptedAll = server.write(payload.subarray(offset, offset + 1024 * 1024)) &&
          acceptedAll;
      }
      assert.equal(acceptedAll, false, "a paused reader makes write() return false");
      assert.ok(server.bufferedAmount > 0);
      client.conn.resume();
      await eventually(() => seen.events.includes("drain"), "drain");
      assert.equal(server.bufferedAmount, 0);
      server.end();
      await client.ended;
      assert.equal(sha256(client.received()), sha256(payload));
      client.conn.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("sends every buffered byte before the FIN of end(), and keeps reading after it", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const client = await connect(listener.address.port);
      const server = await accepted;
      const events: string[] = [];
      let got = "";
      server.setHandlers({
        data: (chunk) => void (got += text(chunk)),
        end: () => events.push("end"),
        drain: () => events.push("drain"),
        close: () => events.push("close"),
      });
      client.conn.pause(); // the kernel buffers fill up: end() must wait for the flush
      const payload = randomBytes(16 * 1024 * 1024, 12);
      for (let offset = 0; offset < payload.length; offset += 1024 * 1024) {
        server.write(payload.subarray(offset, offset + 1024 * 1024));
      }
      assert.ok(server.bufferedAmount > 0, "bytes are still buffered when end() is called");
      server.end();
      assert.equal(server.write(bytes("after end")), false);
      let receivedAtFin = -1;
      client.ended.then(() => (receivedAtFin = client.receivedLength()));
      client.conn.resume();
      await within(client.ended, 20_000, "the FIN after the buffered bytes");
      assert.equal(receivedAtFin, payload.length, "every byte arrived before the FIN");
      assert.equal(sha256(client.received()), sha256(payload));
      // The half-closed side still reads.
      client.conn.write(bytes("reply after the FIN"));
      client.conn.end();
      await eventually(() => events.includes("end"), "the client's FIN at the server");
      assert.equal(got, "reply after the FIN");
      await within(client.closed, 5_000, "both directions to close");
      await eventually(() => events.at(-1) === "close", "the server side to close");
    } finally {
      listener.close();
    }
  });

  it("discards bytes written after end(), close() or reset(), without throwing", async () => {
    const servers: Conn[] = [];
    const listener = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection: (conn) => servers.push(conn),
    });
    try {
      for (const how of ["end", "close", "reset"] as const) {
        const client = await connect(listener.address.port);
        await eventually(() => servers.length === 1, "the accepted connection");
        const server = servers.pop()!;
        server.setHandlers({ data() {}, end: () => server.end(), drain() {}, close() {} });
        server.write(bytes("before"));
        server[how]();
        assert.equal(server.write(bytes(" after")), false, `write after ${how}()`);
        assert.equal(server.write(bytes(" and again")), false, `write after ${how}()`);
        client.conn.end();
        await within(client.closed, 5_000, `the client to close after the server's ${how}()`);
        // A reset may drop "before" too; nothing written after it ever arrives.
        const got = text(client.received());
        assert.ok(got === "before" || (how === "reset" && got === ""), `${how}: got "${got}"`);
        assert.equal(server.write(bytes(" once closed")), false, `write once closed (${how})`);
      }
    } finally {
      listener.close();
    }
  });

  it("stops delivering data while paused", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const client = await connect(listener.address.port);
      const server = await accepted;
      const seen = recorder(server);
      client.conn.write(bytes("first"));
      await eventually(() => seen.received() === 5, "the first bytes");
      server.pause();
      client.conn.write(bytes("second"));
      await new Promise((r) => setTimeout(r, 100));
      // Deno may finish one read that was already under way; nothing more.
      assert.ok(seen.received() <= 11);
      const before = seen.received();
      client.conn.write(bytes("third"));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(seen.received(), before, "no data while paused");
      server.resume();
      await eventually(() => seen.received() === 16, "the rest after resume");
      client.conn.close();
      server.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("rejects a connect to a closed port with ECONNREFUSED", async () => {
    const { listener } = acceptOne();
    const port = listener.address.port;
    listener.close();
    // Deno releases the listening socket once its pending accept is cancelled.
    await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(net.connect({ hostname: "127.0.0.1", port }), { code: "ECONNREFUSED" });
  });

  it("dials: reports the open connection, or the refusal, once and with its tag", async () => {
    const { listener, accepted } = acceptOne();
    const { port } = listener.address;
    try {
      const conn = await dialed({ hostname: "127.0.0.1", port }, 7);
      assert.ok(!(conn instanceof Error), `dial failed: ${conn}`);
      const server = await accepted;
      const seen = recorder(server);
      conn.write(bytes("dialed"));
      conn.end();
      await eventually(() => seen.events.includes("end"), "the dialed connection's FIN");
      assert.equal(seen.received(), 6);
      server.close();
    } finally {
      listener.close();
    }
    await new Promise((r) => setTimeout(r, 50));
    const refused = await dialed({ hostname: "127.0.0.1", port }, 8);
    assert.equal((refused as Error & { code?: string }).code, "ECONNREFUSED");
  });

  it("throws EADDRINUSE when the port is taken", () => {
    const { listener } = acceptOne();
    try {
      assert.throws(
        () => net.listen({ ...listener.address, onConnection() {} }),
        { code: "EADDRINUSE" },
      );
    } finally {
      listener.close();
    }
  });
});

describe(`${net.runtime} adapter on Unix sockets`, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => (dir = await tempDir()));
  after(() => dir.cleanup());

  it("accepts, echoes and half-closes; the file has the asked mode and goes at close", async () => {
    const path = join(dir.path, "echo.sock");
    const { listener, accepted } = acceptOne({ path, mode: 0o660 });
    try {
      assert.deepEqual(listener.address, unixEndpoint(path));
      assert.ok(statSync(path).isSocket(), "the socket file exists once listening");
      assert.equal(statSync(path).mode & 0o777, 0o660);
      const client = await connect(unixEndpoint(path));
      const server = await accepted;
      const seen = recorder(server);
      assert.deepEqual(server.localAddress, unixEndpoint(path));
      assert.deepEqual(server.remoteAddress, unixEndpoint(path), "an unnamed peer: the path");
      assert.deepEqual(client.conn.remoteAddress, unixEndpoint(path));
      client.conn.write(bytes("request"));
      client.conn.end();
      await eventually(() => seen.events.includes("end"), "the client's FIN over the Unix socket");
      server.write(bytes("response after FIN"));
      server.end();
      await within(client.closed, 5_000, "the client to close");
      assert.equal(text(client.received()), "response after FIN");
      await eventually(() => seen.events.at(-1) === "close", "the server side to close");
      assert.deepEqual(seen.events, ["data", "end", "close"]);
    } finally {
      listener.close();
    }
    assert.equal(existsSync(path), false, "close() removes the socket file");
  });

  it("refuses a connect to a path nobody listens on, ENOENT when there is no file", async () => {
    const path = join(dir.path, "stale-connect.sock");
    await assert.rejects(net.connect(unixEndpoint(path)), { code: "ENOENT" });
    assert.equal(
      ((await dialed(unixEndpoint(path), 1)) as Error & { code?: string }).code,
      "ENOENT",
    );
    staleSocketFile(path);
    await assert.rejects(net.connect(unixEndpoint(path)), { code: "ECONNREFUSED" });
  });

  it("dials a Unix socket: the connection names the path both ways", async () => {
    const path = join(dir.path, "dial.sock");
    const { listener, accepted } = acceptOne({ path });
    try {
      const conn = await dialed(unixEndpoint(path), 2);
      assert.ok(!(conn instanceof Error), `dial failed: ${conn}`);
      assert.deepEqual(conn.remoteAddress, unixEndpoint(path));
      (await accepted).close();
      conn.close();
    } finally {
      listener.close();
    }
  });

  it("throws EADDRINUSE when the path exists, socket or regular file", () => {
    const path = join(dir.path, "taken.sock");
    const { listener } = acceptOne({ path });
    const file = join(dir.path, "regular-file");
    writeFileSync(file, "not a socket");
    try {
      assert.throws(() => acceptOne({ path }), { code: "EADDRINUSE" });
      assert.throws(() => acceptOne({ path: file }), { code: "EADDRINUSE" });
    } finally {
      listener.close();
    }
  });

  it("prepareUnixSocket removes a stale socket file, and then listen binds", async () => {
    const path = join(dir.path, "stale.sock");
    staleSocketFile(path);
    assert.throws(
      () => acceptOne({ path }),
      { code: "EADDRINUSE" },
      "the stale file is in the way",
    );
    await prepareUnixSocket(net, path);
    assert.equal(existsSync(path), false);
    const { listener } = acceptOne({ path });
    listener.close();
    await prepareUnixSocket(net, path); // nothing there: nothing to do
  });

  it("prepareUnixSocket refuses a path another process listens on, and leaves it alone", async () => {
    const path = join(dir.path, "live.sock");
    const { listener, accepted } = acceptOne({ path });
    try {
      await assert.rejects(prepareUnixSocket(net, path), {
        code: "EADDRINUSE",
        message: `${path} is in use: another process listens on it`,
      });
      // It did try: the listener saw the probe connect.
      const probe = await within(accepted, 2_000, "the probe connection");
      probe.close();
      const client = await connect(unixEndpoint(path));
      client.conn.close();
      await client.closed;
    } finally {
      listener.close();
    }
  });

  it("prepareUnixSocket refuses a path that is not a socket, and leaves it alone", async () => {
    const path = join(dir.path, "not-a-socket");
    writeFileSync(path, "keep me");
    await assert.rejects(prepareUnixSocket(net, path), {
      code: "EEXIST",
      message: `${path} exists and is not a socket`,
    });
    assert.equal(statSync(path).isFile(), true);
  });
});

describe(`${net.runtime} adapter terminating TLS`, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let api: Certificate;
  let www: Certificate;
  before(async () => {
    dir = await tempDir();
    [api, www] = await Promise.all([
      makeCertificate(dir.path, ["api.test", "*.api.test"]),
      makeCertificate(dir.path, ["www.test"]),
    ]);
  });
  after(() => dir.cleanup());

  it("hands over plaintext both ways, and half-closes through TLS", async () => {
    const { listener, accepted } = acceptOne({ tls: { certificates: [api] } });
    const client = tlsClient(listener.address.port, "api.test", api.cert);
    try {
      await within(client.secure, 2_000, "the TLS handshake");
      assert.equal(client.socket.getPeerCertificate().subject.CN, "api.test");
      const server = await accepted;
      assert.equal(server.remoteAddress.port, client.socket.localPort);
      let got = "";
      const events: string[] = [];
      server.setHandlers({
        data: (chunk) => void (got += text(chunk)),
        end: () => events.push("end"),
        drain() {},
        close: (error) => events.push(error ? `close:${error.message}` : "close"),
      });
      client.socket.end("hello in plaintext");
      await eventually(() => events.includes("end"), "the client's close_notify and FIN");
      assert.equal(got, "hello in plaintext");
      // The client's write side is closed; its read side is not.
      server.write(bytes("reply after the client's FIN"));
      server.end();
      await within(client.ended, 2_000, "the server's close_notify and FIN at the client");
      assert.equal(client.received(), "reply after the client's FIN");
      await within(client.closed, 2_000, "the client to close");
      await eventually(() => events.at(-1) === "close", "the server side to close");
      assert.deepEqual(events, ["end", "close"]);
    } finally {
      client.socket.destroy();
      listener.close();
    }
  });

  it("carries a large transfer intact through TLS with backpressure", async () => {
    const payload = randomBytes(4 * 1024 * 1024, 21);
    const echo = echoServer({ tls: { certificates: [www] } });
    const client = tlsClient(echo.listener.address.port, "www.test", www.cert);
    try {
      await within(client.secure, 2_000, "the TLS handshake");
      const chunks: Uint8Array[] = [];
      client.socket.removeAllListeners("data");
      client.socket.on("data", (chunk: Uint8Array) => chunks.push(chunk));
      client.socket.end(payload);
      await within(client.ended, 10_000, "the echo and its FIN");
      assert.equal(sha256(Buffer.concat(chunks)), sha256(payload));
    } finally {
      client.socket.destroy();
      echo.close();
    }
  });

  it("refuses a certificate and key that do not match, or text that is not PEM", () => {
    const listen = (cert: string, key: string) =>
      acceptOne({ tls: { certificates: [{ cert, key }] } }).listener.close();
    assert.throws(() => listen(api.cert, www.key), {
      message: "Cannot listen with TLS: the certificate and key do not match",
    });
    assert.throws(() => listen("garbage", api.key), {
      name: "SyntaxError",
      message: /cannot parse the certificate/,
    });
    assert.throws(() => listen(api.cert, "garbage"), {
      name: "SyntaxError",
      message: /cannot parse the key/,
    });
  });

  it("refuses TLS on a Unix socket, before binding anything", () => {
    const path = join(dir.path, "tls.sock");
    assert.throws(() => acceptOne({ path, tls: { certificates: [api] } }), {
      message: "Cannot listen with TLS on a Unix socket",
    });
    assert.equal(existsSync(path), false, "no socket file is left behind");
  });

  it("reports a client only once its handshake is done; never a silent one (closed after handshakeTimeoutMs) or a plain-text one (told)", async () => {
    const reported: { conn: Conn; acceptedAt: number | undefined }[] = [];
    const plainText: Endpoint[] = [];
    const listener = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      tls: { certificates: [api] },
      handshakeTimeoutMs: 300,
      onConnection(conn, acceptedAt) {
        reported.push({ conn, acceptedAt });
        conn.setHandlers({ data() {}, end: () => conn.close(), drain() {}, close() {} });
      },
      onPlainText: (peer) => void plainText.push(peer),
    });
    const port = listener.address.port;
    const sockets: ReturnType<typeof createConnection>[] = [];
    const raw = () => {
      const socket = createConnection({ host: "127.0.0.1", port });
      sockets.push(socket);
      socket.on("error", () => {});
      socket.resume();
      return {
        socket,
        opened: new Promise<number>((r) => socket.once("connect", () => r(performance.now()))),
        closed: new Promise<number>((r) => socket.once("close", () => r(performance.now()))),
      };
    };
    try {
      const silent = raw();
      const silentOpened = await silent.opened;
      assert.equal(reported.length, 0, "no report before a handshake");
      const before = performance.now();
      const client = tlsClient(port, "api.test", api.cert);
      sockets.push(client.socket);
      await within(client.secure, 2_000, "the TLS handshake");
      await eventually(() => reported.length === 1, "the report");
      const { acceptedAt } = reported[0]!;
      assert.ok(
        acceptedAt !== undefined && acceptedAt >= before - 1,
        "accepted after it connected",
      );
      assert.ok(acceptedAt <= performance.now());
      const plain = raw();
      await plain.opened;
      const plainPort = plain.socket.localPort;
      plain.socket.write("GET / HTTP/1.1\r\n\r\n");
      await eventually(() => plainText.length === 1, "the plain-text client to be told");
      assert.deepEqual(plainText[0], { hostname: "127.0.0.1", port: plainPort });
      await within(plain.closed, 2_000, "the plain-text client's close");
      if (net.closesUnfinishedTls === false) {
        // Deno keeps the socket until the peer leaves (see closesUnfinishedTls).
        await new Promise((r) => setTimeout(r, 400));
      } else {
        const waited = await within(silent.closed, 2_000, "the silent client's close") -
          silentOpened;
        assert.ok(waited >= 290 && waited <= 1000, `closed after ${waited} ms, not 300..1000`);
      }
      assert.equal(reported.length, 1, "only the client that completed its handshake");
    } finally {
      for (const socket of sockets) socket.destroy();
      for (const { conn } of reported) conn.reset();
      listener.close();
    }
  });

  it("refuses several certificates chosen by SNI, which no adapter can serve", () => {
    // Bun.listen takes one TLS context (only Bun.serve takes a list) and
    // Deno.listenTls one certificate: say so at listen, not at the handshake.
    assert.throws(() => acceptOne({ tls: { certificates: [api, www] } }), {
      message: new RegExp(`several certificates chosen by SNI are not available on ${net.runtime}`),
    });
  });
});

describe(`${net.runtime} adapter connecting with TLS (connectTls)`, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let www: Certificate;
  before(async () => {
    dir = await tempDir();
    www = await makeCertificate(dir.path, ["www.test"]);
  });
  after(() => dir.cleanup());

  /** Connects to `port` on 127.0.0.1 with connectTls. */
  function connectTls(port: number, options: Parameters<NonNullable<typeof net.connectTls>>[1]) {
    assert.ok(net.connectTls, `${net.runtime} has connectTls`);
    return net.connectTls({ hostname: "127.0.0.1", port }, options);
  }

  it("unverified, carries plaintext both ways to a self-signed server, with or without a name", async () => {
    const echo = echoServer({ tls: { certificates: [www] } });
    try {
      for (const serverName of ["www.test", undefined]) {
        const conn = await within(
          connectTls(echo.listener.address.port, { serverName, verify: false }),
          2_000,
          `the handshake (serverName ${serverName})`,
        );
        let got = "";
        const events: string[] = [];
        conn.setHandlers({
          data: (chunk) => void (got += text(chunk)),
          end: () => events.push("end"),
          drain() {},
          close: () => events.push("close"),
        });
        conn.write(bytes("hello through TLS"));
        await eventually(() => got === "hello through TLS", "the echo");
        conn.close();
        await eventually(() => events.at(-1) === "close", "the close");
      }
    } finally {
      echo.close();
    }
  });

  it("verified, refuses the self-signed certificate, saying so", async () => {
    const echo = echoServer({ tls: { certificates: [www] } });
    try {
      await assert.rejects(
        within(
          connectTls(echo.listener.address.port, { serverName: "www.test", verify: true }),
          2_000,
          "the refusal",
        ),
        (error: Error & { code?: string }) => {
          assert.match(`${error.code} ${error.message}`, /SELF_SIGNED|self[- ]signed/);
          return true;
        },
      );
    } finally {
      echo.close();
    }
  });

  it("a refused port rejects with ECONNREFUSED", async () => {
    const port = closedPort();
    await assert.rejects(connectTls(port, { verify: false }), { code: "ECONNREFUSED" });
  });

  it("a handshake that never ends is abandoned through the signal, closing the socket", async () => {
    const { listener, accepted } = acceptOne();
    try {
      const controller = new AbortController();
      const connecting = connectTls(listener.address.port, {
        serverName: "www.test",
        verify: false,
        signal: controller.signal,
      });
      const server = await within(accepted, 2_000, "the TCP accept");
      const closed = new Promise<number>((resolve) =>
        server.setHandlers({
          data() {},
          end: () => server.close(),
          drain() {},
          close: () => resolve(performance.now()),
        })
      );
      const outcome = await Promise.race([
        connecting.then(() => "connected", () => "rejected"),
        new Promise((r) => setTimeout(() => r("pending"), 200)),
      ]);
      assert.equal(outcome, "pending", "no handshake without a server hello");
      const aborted = performance.now();
      controller.abort();
      await assert.rejects(within(connecting, 1_000, "the rejection"));
      const took = (await within(closed, 2_000, "the socket to close at the server")) - aborted;
      assert.ok(took >= 0 && took < 1_000, `closed ${took} ms after the abort`);
    } finally {
      listener.close();
    }
  });
});

describe(`${net.runtime} adapter serving HTTP`, () => {
  it("hands each request over with its Host header and the client's address", async () => {
    const seen: { host: string | null; peer: Endpoint }[] = [];
    const server = net.serveHttp!({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request, peer) {
        seen.push({ host: request.headers.get("host"), peer });
        return new Response("ok");
      },
    });
    try {
      const client = await connect(server.address.port);
      client.conn.write(
        bytes("GET / HTTP/1.1\r\nHost: lb.internal:9901\r\nConnection: close\r\n\r\n"),
      );
      await within(client.ended, 5000, "the answer");
      assert.match(text(client.received()), /^HTTP\/1\.1 200/);
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.host, "lb.internal:9901");
      assert.equal(seen[0]!.peer.hostname.replace(/^::ffff:/, ""), "127.0.0.1");
      assert.equal(seen[0]!.peer.port, client.conn.localAddress.port);
      client.conn.close();
    } finally {
      await server.close();
    }
  });
});
