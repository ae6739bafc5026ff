/**
 * TLS under attack, with real handshakes: a local process pre-opening TLS
 * connections to a frontend's inner listeners cannot be served as someone
 * else; clients that never finish a handshake are closed within
 * header_timeout, without a backend connection or a max_connections slot;
 * a plain-text client at a TLS port is refused as not_tls.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import process from "node:process";
import { after, afterEach, before, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import type { Events } from "../../src/balancer/events.ts";
import { NO_EVENTS } from "../../src/balancer/events.ts";
import { loadConfig } from "../../src/config/load.ts";
import {
  type Certificate,
  eventually,
  makeCertificate,
  net,
  recordingBackend,
  refusals,
  sleep,
  tempDir,
  tlsClient,
  tlsTables,
  within,
} from "../_helpers/index.ts";

let dir: Awaited<ReturnType<typeof tempDir>>;
let api: Certificate;
let www: Certificate;
before(async () => {
  dir = await tempDir();
  [api, www] = await Promise.all([
    makeCertificate(dir.path, ["api.test"]),
    makeCertificate(dir.path, ["www.test"]),
  ]);
});
after(() => dir.cleanup());

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Starts a balancer from config text written to a file (so certificates are read). */
async function start(config: string, events: Events = NO_EVENTS): Promise<Balancer> {
  const file = join(dir.path, `lb-${Math.random().toString(36).slice(2)}.toml`);
  await writeFile(file, config);
  const lb = await Balancer.start(await loadConfig(file), { net, events });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return lb;
}

/** Opens a TCP connection that never sends a byte; resolves once connected, with when it closes. */
function silentClient(port: number) {
  const socket: Socket = createConnection({ host: "127.0.0.1", port });
  cleanups.push(() => socket.destroy());
  socket.on("error", () => {});
  socket.resume(); // reads what comes (a ServerHello), so that the close is seen
  const connected = new Promise<number>((resolve) =>
    socket.once("connect", () => resolve(performance.now()))
  );
  const closed = new Promise<number>((resolve) =>
    socket.once("close", () => resolve(performance.now()))
  );
  return { socket, connected, closed };
}

/** The attacking process's script. */
const ATTACKER = new URL("../_helpers/tls_attacker.py", import.meta.url).pathname;

describe("the routed TLS path pairs inner connections unforgeably", () => {
  it("a local process pre-opening TLS connections to the inner listener is never served, and every client is", async () => {
    const backend = recordingBackend();
    cleanups.push(() => backend.close());
    const lb = await start(
      `[frontend]\nbind_on = "127.0.0.1:0"\nallow = ["127.0.0.1"]\n${
        tlsTables("frontend", [api, www])
      }` +
        `[[frontend.backend]]\nforward_to = "${backend.address}"\nsend_proxy = "v1"\n`,
    );
    const port = lb.addresses[0]!.port;

    /** A client through the frontend; resolves with whether it got its own bytes back, behind its PROXY header. */
    const client = async (i: number): Promise<boolean> => {
      const c = tlsClient(port, "api.test", api.cert);
      try {
        await within(c.secure, 10_000, "a handshake");
        const local = c.socket.localPort;
        c.socket.end(`client-${i}`);
        await within(c.ended, 10_000, "the echo");
        return c.received() === `PROXY TCP4 127.0.0.1 127.0.0.1 ${local} ${port}\r\nclient-${i}`;
      } catch {
        return false;
      } finally {
        c.socket.destroy();
      }
    };

    // A first client shows the attacker which listener and ports the balancer uses.
    const warm = tlsClient(port, "api.test", api.cert);
    cleanups.push(() => warm.socket.destroy());
    await within(warm.secure, 5000, "the first handshake");
    const attacker = spawn(
      "python3",
      [
        ATTACKER,
        "flood",
        String(process.pid),
        `${port},${backend.address.split(":")[1]}`,
        "2500",
      ],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    cleanups.push(() => attacker.kill());
    let output = "";
    attacker.stdout!.on("data", (chunk) => (output += chunk));
    await eventually(() => output.includes("ready"), "the attacker's connections", 20_000);
    warm.socket.end("warm");
    await within(warm.ended, 5000, "the first echo");
    const handshakes = Number(/ready (\d+)/.exec(output)![1]);
    // The attacker's connections got their handshakes (the listeners answer anyone).
    assert.ok(handshakes >= 500, `only ${handshakes} attacker handshakes`);

    const results: boolean[] = [];
    for (let batch = 0; batch < 150; batch += 25) {
      const ids = Array.from({ length: 25 }, (_, j) => batch + j);
      results.push(...await Promise.all(ids.map(client)));
    }
    attacker.stdin!.end("done\n");
    await eventually(() => output.includes("answered"), "the attacker's count", 10_000);
    const answered = Number(/answered (\d+)/.exec(output)![1]);

    const failed = results.filter((ok) => !ok).length;
    const seen = backend.received();
    const strangers = seen.filter((text) => text.includes("STRANGER")).length;
    const foreign = seen.filter((text) => !text.startsWith("PROXY TCP4 127.0.0.1 ")).length;
    assert.deepEqual(
      { failed, strangers, foreign, answered, backendConnections: seen.length },
      { failed: 0, strangers: 0, foreign: 0, answered: 0, backendConnections: 151 },
    );
  });

  it("a connection to another inner listener from the source address of a pending client is not served", async () => {
    const backend = recordingBackend();
    cleanups.push(() => backend.close());
    const lb = await start(
      `[frontend]\nbind_on = "127.0.0.1:0"\nheader_timeout = "8s"\n${
        tlsTables("frontend", [api, www])
      }` +
        `[[frontend.backend]]\nforward_to = "${backend.address}"\nsend_proxy = "v1"\n`,
    );
    const port = lb.addresses[0]!.port;
    // A client that sends its ClientHello and no more: its inner connection
    // stays pending, its handshake unfinished, for header_timeout.
    const client = silentClient(port);
    await client.connected;
    client.socket.write(readFileSync(new URL("../testdata/client_hello_bun.bin", import.meta.url)));
    await sleep(100);
    const attacker = spawn(
      "python3",
      [ATTACKER, "steal", String(process.pid), `${port},${backend.address.split(":")[1]}`, "60000"],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    cleanups.push(() => attacker.kill());
    let output = "";
    attacker.stdout!.on("data", (chunk) => (output += chunk));
    await eventually(() => output.includes("answered"), "the attacker", 12_000);
    // The kernel gave the attacker the pending client's source port, towards the other listener.
    assert.match(output, /^stole \d+$/m);
    assert.match(output, /^answered 0$/m);
    assert.equal(backend.connections, 0, "nothing reached the backend");
  });
});

describe("header_timeout bounds the TLS handshake", () => {
  it("silent clients of a direct TLS frontend are closed in time, take no slot and no backend", async () => {
    const backend = recordingBackend();
    cleanups.push(() => backend.close());
    const lb = await start(
      `[frontend]\nbind_on = "127.0.0.1:0"\nmax_connections = 50\nheader_timeout = "500ms"\n` +
        `tls = { cert = "${api.certPath}", key = "${api.keyPath}" }\n` +
        `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
    );
    const port = lb.addresses[0]!.port;
    const silent = Array.from({ length: 70 }, () => silentClient(port));
    const opened = await Promise.all(silent.map((s) => s.connected));
    // A real client is served while the 70 silent ones are connected.
    const real = tlsClient(port, "api.test", api.cert);
    cleanups.push(() => real.socket.destroy());
    await within(real.secure, 2000, "the real client's handshake");
    real.socket.end("real");
    await within(real.ended, 2000, "the real client's echo");
    const servedAt = performance.now();
    assert.equal(real.received(), "real");
    const closedAt = await within(Promise.all(silent.map((s) => s.closed)), 5000, "silent closes");
    assert.ok(servedAt < Math.min(...closedAt), "served before any silent client was closed");
    const waited = closedAt.map((at, i) => at - opened[i]!);
    const [least, most] = [Math.min(...waited), Math.max(...waited)];
    assert.ok(least >= 480 && most <= 1250, `closed after ${least}..${most} ms, not 500..1250`);
    assert.equal(backend.connections, 1, "a backend connection for the real client only");
  });

  it("a client silent after its ClientHello on the routed path is closed by the inner listener in time", async () => {
    const backend = recordingBackend();
    cleanups.push(() => backend.close());
    const lb = await start(
      `[frontend]\nbind_on = "127.0.0.1:0"\nheader_timeout = "500ms"\n${
        tlsTables("frontend", [api, www])
      }` +
        `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
    );
    const hello = readFileSync(new URL("../testdata/client_hello_bun.bin", import.meta.url));
    const client = silentClient(lb.addresses[0]!.port);
    const opened = await client.connected;
    client.socket.write(hello);
    const waited = await within(client.closed, 5000, "the close") - opened;
    assert.ok(waited >= 480 && waited <= 1250, `closed after ${waited} ms, not 500..1250`);
    assert.equal(backend.connections, 0);
  });
});

describe("a plain-text client at a TLS port", () => {
  for (const certificates of [1, 2]) {
    it(`is refused as not_tls (${certificates} certificate${certificates === 1 ? "" : "s"})`, async () => {
      const backend = recordingBackend();
      cleanups.push(() => backend.close());
      const { events, seen } = refusals();
      const lb = await start(
        `[frontend]\nbind_on = "127.0.0.1:0"\n${
          tlsTables("frontend", [api, www].slice(0, certificates))
        }` +
          `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
        events,
      );
      const client = silentClient(lb.addresses[0]!.port);
      await client.connected;
      const local = client.socket.localPort;
      client.socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      await within(client.closed, 5000, "the close");
      await eventually(() => seen.length > 0, "the refusal");
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.why, "not_tls");
      assert.equal(seen[0]!.peer, `127.0.0.1:${local}`);
      assert.equal(backend.connections, 0);
    });
  }
});
