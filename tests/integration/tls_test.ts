/**
 * TLS at the edge, with real handshakes (node:tls clients, certificates made
 * by openssl at test time): routing by server name without terminating, and
 * terminating with one certificate or several chosen by name.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { connect as connectTls } from "node:tls";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import type { Events } from "../../src/balancer/events.ts";
import { NO_EVENTS } from "../../src/balancer/events.ts";
import { loadConfig } from "../../src/config/load.ts";
import { encodeProxyV2 } from "../../src/protocol/proxy.ts";
import type { Endpoint } from "../../src/runtime/types.ts";
import {
  bytes,
  type Certificate,
  concat,
  connect,
  echoServer,
  eventually,
  freePort,
  makeCertificate,
  net,
  recordingBackend,
  sleep,
  tempDir,
  text,
  tlsClient,
  tlsTables,
  within,
} from "../_helpers/index.ts";

let dir: Awaited<ReturnType<typeof tempDir>>;
let api: Certificate;
let www: Certificate;
let wild: Certificate;
before(async () => {
  dir = await tempDir();
  [api, www, wild] = await Promise.all([
    makeCertificate(dir.path, ["api.test"]),
    makeCertificate(dir.path, ["www.test"]),
    makeCertificate(dir.path, ["*.apps.test"]),
  ]);
});
after(() => dir.cleanup());

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Frontends sharing `port`, each `[name, backend address, sni list as TOML]`
 * (no list: the default frontend).
 */
function routed(port: number, frontends: [string, string, string?][]): string {
  return frontends.map(([name, backend, sni]) =>
    `[[frontends]]\nname = "${name}"\nbind_on = "127.0.0.1:${port}"\n` +
    (sni === undefined ? "" : `sni = ${sni}\n`) +
    `[[frontends.backend]]\nforward_to = "${backend}"\n`
  ).join("\n");
}

/** Starts a balancer from config text written to a file (so certificates are read). */
async function start(config: string, events: Events = NO_EVENTS): Promise<Balancer> {
  const file = join(dir.path, `lb-${Math.random().toString(36).slice(2)}.toml`);
  await writeFile(file, config);
  const lb = await Balancer.start(await loadConfig(file), { net, events });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return lb;
}

function echo(options: Parameters<typeof echoServer>[0]) {
  const server = echoServer(options);
  cleanups.push(() => server.close());
  return server;
}

/** Handshakes with `servername`, sends a line, and returns the certificate's CN and the answer. */
async function ask(port: number, servername: string, ca: string, line = "ping") {
  const client = tlsClient(port, servername, ca);
  cleanups.push(() => client.socket.destroy());
  await within(client.secure, 5000, `a TLS handshake for ${servername}`);
  const cn = client.socket.getPeerCertificate().subject?.CN;
  client.socket.end(line);
  await within(client.ended, 5000, `the answer for ${servername}`);
  return { cn, answer: client.received() };
}

describe("SNI routing", () => {
  it("frontends sharing a port take their names, the one without sni every other", async () => {
    const apiBackend = echo({ tls: { certificates: [api] }, greeting: "api:" });
    const appsBackend = echo({ tls: { certificates: [wild] }, greeting: "apps:" });
    const restBackend = echo({ tls: { certificates: [www] }, greeting: "rest:" });
    const port = await freePort();
    await start(
      routed(port, [
        ["api", apiBackend.address, '["api.test"]'],
        ["apps", appsBackend.address, '["*.apps.test"]'],
        ["rest", restBackend.address],
      ]),
    );
    // The backends terminate TLS: the certificate a client sees is its backend's.
    assert.deepEqual(await ask(port, "api.test", api.cert), { cn: "api.test", answer: "api:ping" });
    assert.deepEqual(await ask(port, "API.Test", api.cert), { cn: "api.test", answer: "api:ping" });
    assert.deepEqual(await ask(port, "x.apps.test", wild.cert), {
      cn: "*.apps.test",
      answer: "apps:ping",
    });
    assert.deepEqual(await ask(port, "www.test", www.cert), {
      cn: "www.test",
      answer: "rest:ping",
    });
  });

  it("reads a ClientHello split over several packets and passes every byte on untouched", async () => {
    const hello = new Uint8Array(
      await readFile(new URL("../testdata/client_hello_bun.bin", import.meta.url)),
    ); // for api.example.com
    const [named, other] = [recordingBackend(), recordingBackend()];
    cleanups.push(() => named.close(), () => other.close());
    const port = await freePort();
    await start(
      routed(port, [
        ["api", named.address, '["*.example.com"]'],
        ["other", other.address],
      ]),
    );
    const client = await connect(port);
    for (const [from, to] of [[0, 3], [3, 200], [200, hello.length]]) {
      client.conn.write(hello.subarray(from, to));
      await sleep(30); // separate packets
    }
    client.conn.write(bytes("after"));
    await eventually(() => named.received()[0]?.endsWith("after") === true, "the hello to arrive");
    assert.deepEqual(named.bytes(0), concat([hello, bytes("after")]));
    assert.equal(other.connections, 0);
    client.conn.close();
  });

  it("a frontend with sni alone on its address takes only its names", async () => {
    const apiBackend = echo({ tls: { certificates: [api] }, greeting: "api:" });
    const lb = await start(`
      [frontend]
      bind_on = "127.0.0.1:0"
      sni = ["api.test"]
      [[frontend.backend]]
      forward_to = "${apiBackend.address}"
    `);
    const port = lb.addresses[0]!.port;
    assert.deepEqual(await ask(port, "api.test", api.cert), { cn: "api.test", answer: "api:ping" });
    const other = tlsClient(port, "www.test", api.cert);
    cleanups.push(() => other.socket.destroy());
    await assert.rejects(within(other.secure, 5000, "the handshake to fail"));
  });

  it("without a default frontend, an unknown name and a non-TLS client are closed", async () => {
    const apiBackend = echo({ tls: { certificates: [api] } });
    const port = await freePort();
    const refused: string[] = [];
    await start(
      routed(port, [
        ["api", apiBackend.address, '["api.test"]'],
        ["web", apiBackend.address, '["www.test"]'],
      ]),
      { ...NO_EVENTS, refused: (_f, _p, why) => void refused.push(why) },
    );
    const client = tlsClient(port, "nobody.test", api.cert);
    cleanups.push(() => client.socket.destroy());
    await assert.rejects(within(client.secure, 5000, "the handshake to fail"));
    const plain = await connect({ hostname: "127.0.0.1", port } as Endpoint);
    plain.conn.write(bytes("GET / HTTP/1.1\r\n\r\n"));
    await within(plain.ended, 5000, "a plain client to be closed");
    plain.conn.close();
    assert.equal(text(plain.received()), "");
    assert.deepEqual(refused, ["unknown_server_name", "not_tls"]);
    assert.equal(apiBackend.received, 0);
  });
});

describe("TLS termination", () => {
  it("a frontend with tls hands the plaintext to its backend", async () => {
    const backend = echo({ greeting: "plain:" });
    const lb = await start(`
      [frontend]
      bind_on = "127.0.0.1:0"
      tls = { cert = "${api.certPath}", key = "${api.keyPath}" }
      [[frontend.backend]]
      forward_to = "${backend.address}"
    `);
    const port = lb.addresses[0]!.port;
    assert.deepEqual(await ask(port, "api.test", api.cert, "hello"), {
      cn: "api.test",
      answer: "plain:hello",
    });
    assert.equal(backend.received, "hello".length);
  });

  it("several certificates are chosen by server name, the first for any other", async () => {
    const backend = echo({ greeting: "plain:" });
    const lb = await start(`
      [frontend]
      bind_on = "127.0.0.1:0"
      ${tlsTables("frontend", [api, www, wild])}
      [[frontend.backend]]
      forward_to = "${backend.address}"
      send_proxy = "v1"
    `);
    const port = lb.addresses[0]!.port;
    assert.equal((await ask(port, "www.test", www.cert)).cn, "www.test");
    assert.equal((await ask(port, "a.apps.test", wild.cert)).cn, "*.apps.test");
    assert.equal((await ask(port, "api.test", api.cert)).cn, "api.test");
    // Any other name gets the first certificate (and fails to verify it).
    const other = tlsClient(port, "other.test", api.cert);
    cleanups.push(() => other.socket.destroy());
    await assert.rejects(within(other.secure, 5000, "the handshake"), /other\.test|altnames/i);
    // The backend sees the real client's address, not the inner hop's.
    const client = tlsClient(port, "api.test", api.cert);
    cleanups.push(() => client.socket.destroy());
    await within(client.secure, 5000, "a handshake");
    const local = client.socket.localPort;
    client.socket.end("x");
    await within(client.ended, 5000, "the answer");
    assert.match(
      client.received(),
      new RegExp(`^plain:PROXY TCP4 127\\.0\\.0\\.1 127\\.0\\.0\\.1 ${local} ${port}\\r\\nx$`),
    );
  });

  it("a reload re-reads the certificate files, and a bad one leaves the old in place", async () => {
    const backend = echo({ greeting: "plain:" });
    const certPath = join(dir.path, "live.crt");
    const keyPath = join(dir.path, "live.key");
    await writeFile(certPath, api.cert);
    await writeFile(keyPath, api.key);
    const file = join(dir.path, "reload.toml");
    await writeFile(
      file,
      `[frontend]\nbind_on = "127.0.0.1:0"\ntls = { cert = "live.crt", key = "live.key" }\n` +
        `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
    );
    const lb = await Balancer.start(await loadConfig(file), { net, events: NO_EVENTS });
    cleanups.push(() => lb.stop({ graceMs: 0 }));
    const port = lb.addresses[0]!.port;
    assert.equal((await ask(port, "api.test", api.cert)).cn, "api.test");
    // A renewed certificate at the same paths: the next handshake serves it.
    await writeFile(certPath, www.cert);
    await writeFile(keyPath, www.key);
    const summary = await lb.reload(await loadConfig(file));
    assert.deepEqual(summary.failures, []);
    assert.deepEqual(summary.frontendsChanged, ["default"]);
    assert.equal(lb.addresses[0]!.port, port);
    assert.deepEqual(await ask(port, "www.test", www.cert), {
      cn: "www.test",
      answer: "plain:ping",
    });
    // A key that does not match is refused at load: the running certificate stays.
    await writeFile(keyPath, api.key);
    await assert.rejects(loadConfig(file), /frontend\.tls\.key does not match/);
    assert.equal((await ask(port, "www.test", www.cert)).cn, "www.test");
  });

  it("a frontend renamed by a reload serves the clients of its certificates", async () => {
    const backend = echo({ greeting: "plain:" });
    const port = await freePort();
    const config = (name: string) => `
      [[frontends]]
      name = "${name}"
      bind_on = "127.0.0.1:${port}"
      ${tlsTables("frontends", [api, www])}
      [[frontends.backend]]
      forward_to = "${backend.address}"
    `;
    const served: string[] = [];
    const lb = await start(config("before"), {
      ...NO_EVENTS,
      accepted: (session) => void served.push(session.frontend.name),
    });
    assert.equal((await ask(port, "www.test", www.cert)).answer, "plain:ping");
    const file = join(dir.path, "renamed.toml");
    await writeFile(file, config("after"));
    const summary = await lb.reload(await loadConfig(file));
    assert.deepEqual([summary.frontendsAdded, summary.frontendsRemoved], [["after"], ["before"]]);
    assert.equal((await ask(port, "www.test", www.cert)).answer, "plain:ping");
    assert.deepEqual(served, ["before", "after"]);
  });

  for (const certificates of [1, 2]) {
    it(`a denied client is closed before its TLS handshake (${certificates} certificate${certificates === 1 ? "" : "s"})`, async () => {
      const backend = echo({ greeting: "plain:" });
      const tls = tlsTables("frontend", [api, www].slice(0, certificates));
      const lb = await start(
        `[frontend]\nbind_on = "127.0.0.1:0"\ndeny = ["127.0.0.1"]\n${tls}` +
          `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
      );
      const client = tlsClient(lb.addresses[0]!.port, "api.test", api.cert);
      cleanups.push(() => client.socket.destroy());
      await assert.rejects(within(client.secure, 5000, "the handshake to fail"));
      assert.equal(backend.received, 0);
    });
  }

  it("a PROXY header before the TLS bytes gives the client's address to a terminating frontend", async () => {
    const backend = recordingBackend();
    cleanups.push(() => backend.close());
    const lb = await start(
      `[frontend]\nbind_on = "127.0.0.1:0"\naccept_proxy = true\ntrusted = ["127.0.0.1"]\n` +
        `tls = { cert = "${api.certPath}", key = "${api.keyPath}" }\n` +
        `[[frontend.backend]]\nforward_to = "${backend.address}"\nsend_proxy = "v1"\n`,
    );
    const raw = createConnection({ host: "127.0.0.1", port: lb.addresses[0]!.port });
    cleanups.push(() => raw.destroy());
    await new Promise((resolve) => raw.once("connect", resolve));
    raw.write(
      encodeProxyV2({ hostname: "203.0.113.9", port: 4321 }, { hostname: "192.0.2.1", port: 443 }),
    );
    const client = connectTls({ socket: raw, servername: "api.test", ca: api.cert });
    await within(
      new Promise((resolve, reject) => {
        client.once("secureConnect", resolve);
        client.once("error", reject);
      }),
      5000,
      "the handshake after the header",
    );
    client.end("hello");
    await eventually(() => backend.text(0).endsWith("hello"), "the plaintext at the backend");
    assert.equal(backend.text(0), "PROXY TCP4 203.0.113.9 192.0.2.1 4321 443\r\nhello");
  });

  it("a missing certificate file and a key that does not match are config errors", async () => {
    const file = join(dir.path, "bad.toml");
    await writeFile(
      file,
      `[frontend]\nbind_on = "127.0.0.1:0"\ntls = { cert = "missing.pem", key = "${api.keyPath}" }\n` +
        `[[frontend.backend]]\nforward_to = "127.0.0.1:1"\n`,
    );
    await assert.rejects(loadConfig(file), {
      message:
        `Cannot load config "${file}": frontend.tls.cert file not found: current value is "missing.pem"`,
    });
    await writeFile(
      file,
      `[frontend]\nbind_on = "127.0.0.1:0"\ntls = { cert = "${api.certPath}", key = "${www.keyPath}" }\n` +
        `[[frontend.backend]]\nforward_to = "127.0.0.1:1"\n`,
    );
    await assert.rejects(loadConfig(file), {
      message: new RegExp(`frontend\\.tls\\.key does not match the certificate in ${api.certPath}`),
    });
  });
});
