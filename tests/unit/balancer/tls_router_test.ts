/**
 * The CertificateRouter alone, on the runtime's own sockets over loopback,
 * with self-signed certificates: a plain listener of the test's stands for
 * the frontend and routes each client it accepts. Covers the certificate
 * chosen by server name among several, the plaintext connection handed to
 * `serve` with the outer client's arrival, a stranger at an inner listener
 * reset unserved while a real client is pending there, the handshake
 * deadline read at each client (bounded both sides, timers cleared when a
 * client leaves early), and close() leaving no listener, timer or socket.
 * tests/integration/tls_security_test.ts covers the same rules through a
 * whole Balancer, against an attacking process.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createConnection } from "node:net";
import tls from "node:tls";
import { after, afterEach, before, describe, it } from "node:test";
import { certificateFor, CertificateRouter } from "../../../src/balancer/listener/tls_router.ts";
import type { Arrival } from "../../../src/balancer/listener/preamble.ts";
import type { Conn, TlsCertificate } from "../../../src/runtime/types.ts";
import {
  type Certificate,
  eventually,
  liveTimers,
  makeCertificate,
  net,
  sleep,
  tempDir,
  within,
} from "../../_helpers/index.ts";

let dir: Awaited<ReturnType<typeof tempDir>>;
let api: Certificate;
let www: Certificate;
let wild: Certificate;
before(async () => {
  dir = await tempDir();
  [api, www, wild] = await Promise.all([
    makeCertificate(dir.path, ["api.test"]),
    makeCertificate(dir.path, ["www.test"]),
    makeCertificate(dir.path, ["*.wild.test"]),
  ]);
});
after(() => dir.cleanup());

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const HELLO = readFileSync(new URL("../../testdata/client_hello_bun.bin", import.meta.url));

/** The router's certificates: api (the default), www, and a wildcard. */
function certificates(): TlsCertificate[] {
  return [
    { cert: api.cert, key: api.key, serverNames: ["api.test"] },
    { cert: www.cert, key: www.key, serverNames: ["www.test"] },
    { cert: wild.cert, key: wild.key, serverNames: ["*.wild.test"] },
  ];
}

/** A connection the router handed over, and what came with it. */
interface Served {
  conn: Conn;
  arrival: Arrival;
  closed: boolean;
}

/**
 * A router behind a plain loopback listener that routes every client it
 * accepts, claiming `serverName` for it (what the preamble would have
 * read). Served connections echo.
 */
function routed(handshakeTimeoutMs: number) {
  const served: Served[] = [];
  const router = new CertificateRouter(
    net,
    { certificates: certificates() },
    (conn, arrival) => {
      const entry = { conn, arrival, closed: false };
      served.push(entry);
      conn.setHandlers({
        data(chunk) {
          conn.write(chunk);
        },
        end: () => conn.end(),
        drain() {},
        close: () => void (entry.closed = true),
      });
    },
    handshakeTimeoutMs,
  );
  const state = { serverName: undefined as string | undefined };
  const outers = new Set<Conn>();
  const listener = net.listen({
    hostname: "127.0.0.1",
    port: 0,
    onConnection(conn) {
      outers.add(conn);
      router.route({
        conn,
        client: conn.remoteAddress,
        destination: conn.localAddress,
        serverName: state.serverName,
        detected: undefined,
        replay() {},
      });
    },
  });
  cleanups.push(() => {
    listener.close();
    router.close();
    for (const conn of outers) conn.reset();
    for (const { conn } of served) conn.reset();
  });
  return { router, served, state, port: listener.address.port };
}

/** A node:tls client trusting only `ca`, with when it was secured and closed. */
function client(port: number, servername: string | undefined, ca: string) {
  const socket = tls.connect({
    host: "127.0.0.1",
    port,
    ...(servername === undefined ? {} : { servername }),
    ca,
    // The certificate is checked against `ca`; its names are the router's business.
    checkServerIdentity: () => undefined,
  });
  cleanups.push(() => socket.destroy());
  let received = "";
  socket.on("data", (chunk) => (received += chunk));
  const secure = new Promise<number>((resolve, reject) => {
    socket.once("secureConnect", () => resolve(performance.now()));
    socket.once("error", reject);
  });
  secure.catch(() => {});
  const closed = new Promise<number>((resolve) =>
    socket.once("close", () => resolve(performance.now()))
  );
  return { socket, secure, closed, received: () => received };
}

/** A plain TCP client that sends a ClientHello and nothing more; with when it opened and closed. */
function stalled(port: number) {
  const socket = createConnection({ host: "127.0.0.1", port });
  cleanups.push(() => socket.destroy());
  socket.on("error", () => {});
  socket.resume(); // reads the ServerHello, so that the close is seen
  const opened = new Promise<number>((resolve) =>
    socket.once("connect", () => {
      socket.write(HELLO);
      resolve(performance.now());
    })
  );
  const closed = new Promise<number>((resolve) =>
    socket.once("close", () => resolve(performance.now()))
  );
  return { socket, opened, closed };
}

/** The TCP sockets (any state but TIME-WAIT, listeners included) on these local or peer ports, as `ss` lists them. */
function socketsOn(ports: number[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    // Filtered by ss itself: the whole table, with a suite's TIME-WAITs, can pass execFile's buffer.
    const filter = ports.map((port) => `sport = :${port} or dport = :${port}`).join(" or ");
    execFile("ss", ["-Htan", "exclude", "time-wait", `( ${filter} )`], (error, stdout) => {
      if (error) return reject(error);
      resolve(
        stdout.split("\n").filter((line) => {
          const [state, , , local, peer] = line.trim().split(/\s+/);
          if (state === undefined || state === "" || state === "TIME-WAIT") return false;
          return ports.some((port) => local?.endsWith(`:${port}`) || peer?.endsWith(`:${port}`));
        }),
      );
    });
  });
}

/** Whether a connect to a loopback port is refused. */
function refuses(port: number): Promise<boolean> {
  return net.connect({ hostname: "127.0.0.1", port }).then(
    (conn) => (conn.reset(), false),
    () => true,
  );
}

/** Resolves when the async `condition` holds, polling; rejects after `ms` with `what`. */
async function until(condition: () => Promise<boolean>, what: string, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe(`CertificateRouter on ${net.runtime}`, () => {
  it("certificateFor: the exact name, else the longest wildcard, else the first", () => {
    const list = certificates();
    assert.equal(certificateFor(list, "www.test"), 1);
    assert.equal(certificateFor(list, "a.wild.test"), 2);
    assert.equal(certificateFor(list, "wild.test"), 0);
    assert.equal(certificateFor(list, "other.test"), 0);
    assert.equal(certificateFor(list, undefined), 0);
  });

  it("serves each client the certificate for its name, and hands the plaintext over with the outer client's arrival", async () => {
    const { served, state, port } = routed(3000);
    const timers = liveTimers(cleanups, [3000]).live;
    const cases: [string | undefined, Certificate][] = [
      ["api.test", api],
      ["www.test", www],
      ["a.wild.test", wild],
      ["other.test", api],
      [undefined, api],
    ];
    for (const [i, [name, expected]] of cases.entries()) {
      state.serverName = name;
      const c = client(port, name, expected.cert);
      await within(c.secure, 3000, `the handshake for ${name}`);
      c.socket.write(`hello ${i}`);
      await eventually(() => c.received() === `hello ${i}`, `the echo for ${name}`, 3000);
      assert.equal(served.length, i + 1);
      const { conn, arrival } = served[i]!;
      assert.deepEqual(
        [arrival.client, arrival.serverName],
        [{ hostname: "127.0.0.1", port: c.socket.localPort }, name],
        "the outer client's arrival",
      );
      assert.equal(arrival.destination.port, port);
      assert.notEqual(conn.remoteAddress.port, c.socket.localPort, "the inner connection's");
      assert.equal(timers.size, 0, "a served client's handshake deadlines are cleared");
      c.socket.destroy();
    }
    // The client trusting only www's certificate fails when the name picks api's.
    state.serverName = "api.test";
    const wrong = client(port, "api.test", www.cert);
    await assert.rejects(within(wrong.secure, 3000, "the failed handshake"));
    await within(wrong.closed, 3000, "the failed client's close");
    await sleep(50);
    assert.equal(served.length, cases.length, "the failed client was not served");
  });

  it("a stranger at an inner listener is reset unserved, while a client is pending at that listener", async () => {
    const { router, served, state, port } = routed(2000);
    state.serverName = undefined; // the default certificate: the first listener
    const pending = stalled(port);
    await pending.opened;
    await sleep(100); // its inner connection is open, its handshake unfinished
    assert.equal(served.length, 0);
    for (const [i, inner] of router.addresses.entries()) {
      const stranger = client(inner.port, "api.test", [api, www, wild][i]!.cert);
      const started = performance.now();
      // The inner listener answers anyone, then the router resets what is not its own.
      await within(stranger.secure, 3000, "the stranger's handshake");
      stranger.socket.write("STRANGER");
      const closedAfter = await within(stranger.closed, 3000, "the stranger's close") - started;
      assert.ok(closedAfter >= 0 && closedAfter <= 1000, `stranger closed after ${closedAfter} ms`);
      assert.equal(stranger.received(), "", "nothing echoed to the stranger");
    }
    assert.equal(served.length, 0, "no stranger was served");
    // The pending client's pairing is intact: a real client is served too.
    state.serverName = "api.test";
    const real = client(port, "api.test", api.cert);
    await within(real.secure, 3000, "the real client's handshake");
    real.socket.write("real");
    await eventually(() => real.received() === "real", "the real client's echo", 3000);
    assert.equal(served.length, 1);
    assert.equal(served[0]!.arrival.client.port, real.socket.localPort);
  });

  it("the handshake deadline is read at each client: a stalled one is closed in time, with no timer left", async () => {
    const { router, served, port } = routed(5000);
    // A reload changes header_timeout: the next client gets the new deadline.
    router.handshakeTimeoutMs = 437;
    const timers = liveTimers(cleanups, [437]).live;
    const slow = stalled(port);
    const opened = await slow.opened;
    const waited = await within(slow.closed, 3000, "the stalled client's close") - opened;
    assert.ok(
      waited >= 437 - 10 && waited <= 437 + 600,
      `closed after ${waited} ms, not 437..1037`,
    );
    await sleep(50);
    assert.equal(timers.size, 0, `${timers.size} handshake timers left`);
    assert.equal(served.length, 0);

    // A client that leaves in its handshake takes its timers with it.
    router.handshakeTimeoutMs = 1437;
    const early = liveTimers(cleanups, [1437]).live;
    const leaving = stalled(port);
    await leaving.opened;
    await eventually(() => early.size >= 1, "the handshake deadline", 1000);
    await sleep(50);
    leaving.socket.destroy();
    const left = performance.now();
    await eventually(() => early.size === 0, "the handshake timers cleared", 1000);
    const cleared = performance.now() - left;
    assert.ok(
      cleared <= 500,
      `timers cleared ${cleared} ms after the client left, not at the deadline`,
    );
    assert.equal(served.length, 0);
  });

  it("close() leaves no listener, timer or socket behind; what is spliced goes on", async () => {
    const { router, served, state, port } = routed(987);
    const timers = liveTimers(cleanups, [987]).live;
    const inner = router.addresses.map((address) => address.port);
    assert.equal(inner.length, 3, "one inner listener per certificate");
    state.serverName = "www.test";
    const kept = client(port, "www.test", www.cert);
    await within(kept.secure, 3000, "the handshake");
    const pending = stalled(port);
    const opened = await pending.opened;
    await sleep(50);
    router.close();
    // The inner listeners refuse connections (under Deno a closed listener goes a moment later).
    for (const innerPort of inner) {
      await until(() => refuses(innerPort), `port ${innerPort} refusing connections`, 2000);
    }
    // The spliced client goes on.
    kept.socket.write("after close");
    await eventually(() => kept.received() === "after close", "the echo after close", 3000);
    // The pending client is cut at its deadline.
    const waited = await within(pending.closed, 3000, "the pending client's close") - opened;
    assert.ok(
      waited >= 987 - 10 && waited <= 987 + 600,
      `closed after ${waited} ms, not 987..1587`,
    );
    kept.socket.end();
    await within(kept.closed, 3000, "the kept client's close");
    await eventually(() => served[0]!.closed, "the served connection closed", 3000);
    assert.equal(timers.size, 0, `${timers.size} handshake timers left`);
    let left: string[] = [];
    await until(
      async () => (left = await socketsOn(inner)).length === 0,
      "no socket on the inner ports",
      3000,
    ).catch((error) => assert.fail(`${error.message}: ${left.join("; ")}`));
    assert.equal(served.length, 1);
  });
});
