/**
 * HTTP health checks of the HealthChecker against scripted loopback HTTP
 * backends: the request it sends (method, path, Host, Connection,
 * User-Agent), the answers that pass (200, a code in http_status, a status
 * line followed by a huge header) and those that fail with the status line
 * quoted (503, garbage, a first line past the bound, silence until the
 * timeout), `port` probing another port of the backend's host, and the
 * PROXY header a send_proxy backend receives on each probe; with `tls`, the
 * same over TLS to a self-signed backend (not verified, or refused with
 * `tls_verify`), and a handshake that never ends closed at the timeout.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import {
  HealthChecker,
  judgeStatusLine,
  MAX_STATUS_LINE_BYTES,
} from "../../../src/balancer/upstream/health.ts";
import { Pool } from "../../../src/balancer/upstream/pool.ts";
import { type Events, NO_EVENTS } from "../../../src/balancer/events.ts";
import type { HealthConfig } from "../../../src/config/config.ts";
import { parseHttpStatus } from "../../../src/config/http_status.ts";
import type { Conn, TlsOptions } from "../../../src/runtime/types.ts";
import { VERSION } from "../../../src/version.ts";
import {
  addressOf,
  bytes,
  type Certificate,
  closedPort,
  eventually,
  makeCertificate,
  net,
  sleep,
  tempDir,
} from "../../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A loopback backend that answers each connection, once its request's head
 * is in, with `answer`; over TLS with `tls`.
 */
function httpBackend(answer: string | ((conn: Conn) => void), tls?: TlsOptions) {
  const requests: Uint8Array[] = [];
  const conns = new Set<Conn>();
  const listener = net.listen({
    hostname: "127.0.0.1",
    port: 0,
    tls,
    onConnection(conn) {
      conns.add(conn);
      const i = requests.length;
      requests.push(new Uint8Array(0));
      let answered = false;
      conn.setHandlers({
        data(chunk) {
          const all = new Uint8Array(requests[i]!.length + chunk.length);
          all.set(requests[i]!);
          all.set(chunk, requests[i]!.length);
          requests[i] = all;
          if (answered || !new TextDecoder().decode(all).includes("\r\n\r\n")) return;
          answered = true;
          if (typeof answer === "function") return answer(conn);
          conn.write(bytes(answer));
          conn.end();
        },
        end: () => conn.close(),
        drain() {},
        close: () => conns.delete(conn),
      });
    },
  });
  const backend = {
    address: addressOf(listener),
    port: listener.address.port,
    requests,
    close() {
      listener.close();
      for (const conn of conns) conn.reset();
    },
  };
  cleanups.push(() => backend.close());
  return backend;
}

/** A checker of one backend at `address` (`sendProxy` its PROXY version), recording each probe's result. */
function watch(
  address: string,
  health: Partial<HealthConfig>,
  sendProxy?: "v1" | "v2",
) {
  const [hostname, port] = address.split(":");
  const pool = new Pool({
    algorithm: "round_robin",
    backends: [{
      name: "a",
      address,
      forwardTo: { hostname: hostname!, port: Number(port) },
      weight: 1,
      sendProxy,
    }],
  });
  const failures: (string | undefined)[] = [];
  const events: Events = {
    ...NO_EVENTS,
    probed: (_f, _b, failure) => void failures.push(failure),
  };
  const checker = new HealthChecker({
    config: {
      active: true,
      intervalMs: 20,
      timeoutMs: 1000,
      rise: 1,
      fall: 1,
      http: { path: "/healthz", method: "GET", status: parseHttpStatus("200-399") },
      ...health,
    },
    net,
    pool,
    events,
    frontend: { name: "web", localAddress: "127.0.0.1:0" },
  });
  cleanups.push(() => checker.stop());
  return { checker, backend: pool.backends[0]!, failures };
}

/** Starts `checker` and waits for its first probe's result. */
async function firstProbe(watched: ReturnType<typeof watch>) {
  watched.checker.start();
  await eventually(() => watched.failures.length > 0, "a probe result");
  return watched.failures[0];
}

describe(`HTTP health checks on ${net.runtime}`, () => {
  it("sends one HTTP/1.1 request with Host, Connection: close and User-Agent; 200 passes", async () => {
    const backend = httpBackend("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    const watched = watch(backend.address, {});
    assert.equal(await firstProbe(watched), undefined);
    assert.equal(
      new TextDecoder().decode(backend.requests[0]),
      `GET /healthz HTTP/1.1\r\nHost: ${backend.address}\r\nConnection: close\r\n` +
        `User-Agent: mini-balancer/${VERSION}\r\n\r\n`,
    );
  });

  it("http_method and http_host change the request; http_status decides what passes", async () => {
    const backend = httpBackend("HTTP/1.0 204 No Content\r\n\r\n");
    const watched = watch(backend.address, {
      http: {
        path: "/primary",
        method: "HEAD",
        host: "db.internal",
        status: parseHttpStatus(["200", "204-206"]),
      },
    });
    assert.equal(await firstProbe(watched), undefined);
    const request = new TextDecoder().decode(backend.requests[0]);
    assert.match(request, /^HEAD \/primary HTTP\/1\.1\r\nHost: db\.internal\r\n/);
    const strict = watch(backend.address, {
      http: { path: "/", method: "GET", status: parseHttpStatus("200") },
    });
    assert.equal(
      await firstProbe(strict),
      'HTTP status 204 is not 200: "HTTP/1.0 204 No Content"',
    );
  });

  it("503 fails, quoting the status line", async () => {
    const backend = httpBackend("HTTP/1.1 503 Service Unavailable\r\n\r\nreplica\n");
    const watched = watch(backend.address, {});
    assert.equal(
      await firstProbe(watched),
      'HTTP status 503 is not 200-399: "HTTP/1.1 503 Service Unavailable"',
    );
    assert.equal(watched.backend.healthy, false);
  });

  it("garbage fails, quoted escaped and cut; a close before any answer fails", async () => {
    const garbage = httpBackend(
      "SSH-2.0-OpenSSH_9.6\x1b[31m and then a long tail of text, longer than a status line's\r\n",
    );
    assert.equal(
      await firstProbe(watch(garbage.address, {})),
      'not an HTTP status line: "SSH-2.0-OpenSSH_9.6\\u001b[31m and then a long tail of text, longer than a status line"…',
    );
    const silent = httpBackend((conn) => conn.end());
    assert.equal(await firstProbe(watch(silent.address, {})), "no HTTP answer (closed)");
  });

  it("a status line followed by a huge header passes without reading it; a first line past the bound fails at once", async () => {
    const huge = httpBackend((conn) => {
      conn.write(bytes("HTTP/1.1 200 OK\r\nX-Big: " + "a".repeat(1 << 20) + "\r\n\r\n"));
      conn.end();
    });
    assert.equal(await firstProbe(watch(huge.address, {})), undefined);
    const endless = httpBackend((conn) =>
      conn.write(bytes("HTTP/1.1 200 " + "b".repeat(64 * 1024)))
    );
    const started = performance.now();
    const failure = await firstProbe(watch(endless.address, { timeoutMs: 5000 }));
    const ms = performance.now() - started;
    assert.match(
      failure!,
      /^no HTTP status line: received "HTTP\/1\.1 200 b+"… \(no end of line\)$/,
    );
    assert.ok(ms < 2000, `gave up after ${ms}ms, not at the ${MAX_STATUS_LINE_BYTES}-byte bound`);
  });

  it("a backend that never answers fails at the probe timeout, not before", async () => {
    const slow = httpBackend(() => {});
    const started = performance.now();
    const failure = await firstProbe(watch(slow.address, { timeoutMs: 300 }));
    const ms = performance.now() - started;
    assert.equal(failure, "no HTTP answer (timed out after 300ms)");
    // First probe comes after up to 1.1 intervals (20 ms), then 300 ms of waiting.
    assert.ok(ms >= 300 && ms < 1300, `timed out after ${ms}ms`);
  });

  it("port probes that port of the backend's host, not the backend's own", async () => {
    const health = httpBackend("HTTP/1.1 200 OK\r\n\r\n");
    const watched = watch(`127.0.0.1:${closedPort()}`, { port: health.port });
    assert.equal(await firstProbe(watched), undefined);
    assert.equal(health.requests.length, 1);
    const tcp = watch(`127.0.0.1:${closedPort()}`, { port: health.port, http: undefined });
    assert.equal(await firstProbe(tcp), undefined);
  });

  it("a send_proxy backend gets PROXY UNKNOWN (v1) or a LOCAL header (v2) before each probe", async () => {
    for (const version of ["v1", "v2"] as const) {
      const backend = httpBackend("HTTP/1.1 200 OK\r\n\r\n");
      const watched = watch(backend.address, {}, version);
      assert.equal(await firstProbe(watched), undefined);
      const request = backend.requests[0]!;
      if (version === "v1") {
        assert.match(
          new TextDecoder().decode(request),
          /^PROXY UNKNOWN\r\nGET \/healthz HTTP\/1\.1\r\n/,
        );
      } else {
        assert.deepEqual([...request.subarray(12, 16)], [0x20, 0x00, 0x00, 0x00]);
        assert.match(
          new TextDecoder().decode(request.subarray(16)),
          /^GET \/healthz HTTP\/1\.1\r\n/,
        );
      }
    }
    // TCP send/expect probes of such a backend start with the header too.
    const tcp = httpBackend("OK\n");
    const watched = watch(
      tcp.address,
      { http: undefined, send: "PING\r\n\r\n", expect: "OK" },
      "v1",
    );
    assert.equal(await firstProbe(watched), undefined);
    assert.equal(new TextDecoder().decode(tcp.requests[0]), "PROXY UNKNOWN\r\nPING\r\n\r\n");
    await sleep(0);
  });

  it("judgeStatusLine reads HTTP/1.0 and 1.1 status lines only", () => {
    const http = { path: "/", method: "GET", status: parseHttpStatus("200-299") };
    assert.equal(judgeStatusLine("HTTP/1.1 200", http), undefined);
    assert.equal(judgeStatusLine("HTTP/1.0 299 Fine", http), undefined);
    assert.match(judgeStatusLine("HTTP/2 200 OK", http)!, /^not an HTTP status line/);
    assert.match(judgeStatusLine("HTTP/1.1 2000 OK", http)!, /^not an HTTP status line/);
    assert.match(judgeStatusLine("HTTP/1.1 302 Found", http)!, /^HTTP status 302 is not 200-299/);
  });
});

describe(`TLS health checks (health.tls) on ${net.runtime}`, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let db: Certificate;
  before(async () => {
    dir = await tempDir();
    db = await makeCertificate(dir.path, ["db.test"]);
  });
  after(() => dir.cleanup());

  it("HTTP probes go over TLS, the certificate not verified: 200 passes, 503 fails", async () => {
    const primary = httpBackend("HTTP/1.1 200 OK\r\n\r\n", { certificates: [db] });
    const replica = httpBackend("HTTP/1.1 503 Service Unavailable\r\n\r\n", {
      certificates: [db],
    });
    const http = {
      path: "/primary",
      method: "GET",
      host: "db.test",
      status: parseHttpStatus("200-399"),
    };
    assert.equal(await firstProbe(watch(primary.address, { tls: true, http })), undefined);
    // The backend read the request in plaintext: TLS was spoken, and ended by it.
    assert.match(new TextDecoder().decode(primary.requests[0]), /^GET \/primary HTTP\/1\.1\r\n/);
    assert.equal(
      await firstProbe(watch(replica.address, { tls: true, http })),
      'HTTP status 503 is not 200-399: "HTTP/1.1 503 Service Unavailable"',
    );
  });

  it("send/expect goes over TLS too", async () => {
    const backend = httpBackend("PONG\r\n", { certificates: [db] });
    const watched = watch(backend.address, {
      tls: true,
      http: undefined,
      send: "PING\r\n\r\n",
      expect: "PONG",
    });
    assert.equal(await firstProbe(watched), undefined);
    assert.equal(new TextDecoder().decode(backend.requests[0]), "PING\r\n\r\n");
  });

  it("tls_verify fails against a self-signed certificate, saying so", async () => {
    const backend = httpBackend("HTTP/1.1 200 OK\r\n\r\n", { certificates: [db] });
    const failure = await firstProbe(watch(backend.address, { tls: true, tlsVerify: true }));
    assert.match(failure ?? "passed", /self[- ]signed certificate/);
    assert.equal(backend.requests.length, 0, "no request over an unverified connection");
  });

  it("a runtime without connectTls refuses tls = true at start, in one line", () => {
    const { connectTls: _, ...plain } = net;
    const pool = new Pool({ algorithm: "round_robin", backends: [] });
    assert.throws(
      () =>
        new HealthChecker({
          config: { active: true, intervalMs: 20, timeoutMs: 100, rise: 1, fall: 1, tls: true },
          net: { ...plain, runtime: "nowhere" },
          pool,
          events: NO_EVENTS,
          frontend: { name: "web", localAddress: "127.0.0.1:0" },
        }),
      { message: "health.tls = true: TLS health probes are not available on nowhere" },
    );
  });

  it("a handshake that never ends fails at the probe timeout, and its socket is closed", async () => {
    // A plain TCP server that accepts and never answers the ClientHello.
    const closed: number[] = [];
    const silent = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        conn.setHandlers({
          data() {},
          end: () => conn.close(),
          drain() {},
          close: () => void closed.push(performance.now()),
        });
      },
    });
    cleanups.push(() => silent.close());
    const started = performance.now();
    const watched = watch(addressOf(silent), { tls: true, timeoutMs: 300 });
    assert.equal(await firstProbe(watched), "health check timed out after 300ms");
    await eventually(() => closed.length > 0, "the probe's socket to close at the server");
    const took = closed[0]! - started;
    // The first probe starts within half an interval (10 ms) plus jitter.
    assert.ok(took >= 290 && took < 2_000, `closed after ${took}ms`);
  });
});
