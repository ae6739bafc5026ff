/**
 * The PROXY protocol against a real peer: Debian's HAProxy in front of the
 * balancer (it sends the header, we read it) and behind it (we send the
 * header, it reads it), in versions 1 and 2. The balancer runs in process,
 * on the adapter of the runtime that runs the tests.
 *
 * Skips, saying why, when haproxy is missing and we are not root (root runs
 * `scripts/ensure-tools.sh haproxy` first, through `npm test`'s pretest); as
 * root a missing haproxy fails, naming it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { afterEach, describe, it } from "node:test";
import { Balancer } from "../../src/balancer/balancer.ts";
import { type Events, NO_EVENTS } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import {
  bytes,
  configText,
  connect,
  eventually,
  findCommand,
  freePorts,
  net,
  recordingBackend,
  refusals,
  sleep,
  tempDir,
  text,
  within,
} from "../_helpers/index.ts";

const HAPROXY = findCommand("haproxy");

function skipReason(): string | undefined {
  if (HAPROXY !== undefined || process.getuid?.() === 0) return undefined;
  return "haproxy is not installed: run 'sudo bash scripts/ensure-tools.sh haproxy'";
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What HAProxy's one frontend and its one server are. */
interface HaproxyRoute {
  /** Options after the frontend's `bind 127.0.0.1:port`, such as `accept-proxy`. */
  bind?: string;
  /** The server line after `server s1`: its address and options, such as `send-proxy`. */
  server: string;
}

/**
 * Runs `haproxy -db` on a TCP frontend with one server, and waits until it
 * accepts connections. Readiness is probed on a second frontend that
 * rejects every connection, so no probe ever reaches the server.
 *
 * @returns the frontend's port, and HAProxy's log so far
 */
async function startHaproxy(route: HaproxyRoute): Promise<{ port: number; log(): string }> {
  assert.ok(HAPROXY, "haproxy is not installed: run 'bash scripts/ensure-tools.sh haproxy'");
  const dir = await tempDir();
  cleanups.push(dir.cleanup);
  const [port, probe] = await freePorts(2) as [number, number];
  const file = join(dir.path, "haproxy.cfg");
  await writeFile(
    file,
    `global
  maxconn 256
defaults
  mode tcp
  log stdout format raw local0
  option tcplog
  retries 0
  timeout connect 5s
  timeout client 5s
  timeout server 5s
frontend ready
  bind 127.0.0.1:${probe}
  tcp-request connection reject
frontend front
  bind 127.0.0.1:${port} ${route.bind ?? ""}
  default_backend back
backend back
  server s1 ${route.server}
`,
  );
  const child = spawn(HAPROXY, ["-db", "-f", file], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (chunk) => (log += chunk));
  child.stderr!.on("data", (chunk) => (log += chunk));
  let exited = false;
  const closed = new Promise<void>((resolve) => {
    child.on("error", (error) => (log += `${error}\n`));
    child.on("close", () => {
      exited = true;
      resolve();
    });
  });
  cleanups.push(() => {
    if (!exited) child.kill("SIGKILL");
    return closed;
  });
  const deadline = Date.now() + 5_000;
  for (;;) {
    const up = await net.connect({ hostname: "127.0.0.1", port: probe }).then(
      (conn) => (conn.reset(), true),
      () => false,
    );
    if (up) return { port, log: () => log };
    if (exited || Date.now() > deadline) {
      assert.fail(`haproxy did not listen on 127.0.0.1:${probe} within 5 s:\n${log}`);
    }
    await sleep(20);
  }
}

async function startBalancer(config: string, events: Events = NO_EVENTS): Promise<number> {
  const lb = await Balancer.start(parseConfig(config), { net, events });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return lb.addresses[0]!.port;
}

function backend() {
  const b = recordingBackend();
  cleanups.push(() => b.close());
  return b;
}

/**
 * Connects to `port`, sends `data`, half-closes, and waits for the close.
 *
 * @returns the client's own port, and what it received
 */
async function talk(port: number, data: string) {
  const client = await connect(port);
  // Read before the close: Bun reports port 0 for a closed socket.
  const clientPort = client.conn.localAddress.port;
  await client.send(bytes(data));
  client.conn.end();
  await within(client.closed, 5_000, `the connection to 127.0.0.1:${port} to close`);
  return { clientPort, received: text(client.received()) };
}

const skip = skipReason();
// deno test prints a skipped suite as "ignored" without its reason.
if (skip) console.log(`haproxy_interop_test: skipped: ${skip}`);

describe("HAProxy as the PROXY protocol peer", { skip }, () => {
  for (const [version, option] of [["v1", "send-proxy"], ["v2", "send-proxy-v2"]] as const) {
    it(`HAProxy's ${option} in front gives us its client's address, which a send_proxy backend receives`, async () => {
      const b = backend();
      const ours = await startBalancer(
        configText(
          [b.address],
          'accept_proxy = true\ntrusted = ["127.0.0.1"]',
          'send_proxy = "v1"',
        ),
      );
      const haproxy = await startHaproxy({ server: `127.0.0.1:${ours} ${option}` });
      const { clientPort, received } = await talk(haproxy.port, "hello through two proxies");
      const line = `PROXY TCP4 127.0.0.1 127.0.0.1 ${clientPort} ${haproxy.port}\r\n`;
      assert.equal(b.connections, 1, `one backend connection; haproxy's log:\n${haproxy.log()}`);
      assert.equal(b.text(0), `${line}hello through two proxies`);
      assert.equal(received, `${line}hello through two proxies`, "the echo comes back");
    });

    it(`HAProxy behind us reads our send_proxy ${version} header as the real client's address`, async () => {
      const b = backend();
      const haproxy = await startHaproxy({
        bind: "accept-proxy",
        server: `${b.address} send-proxy`,
      });
      const ours = await startBalancer(
        configText([`127.0.0.1:${haproxy.port}`], "", `send_proxy = "${version}"`),
      );
      const { clientPort, received } = await talk(ours, "hello");
      const line = `PROXY TCP4 127.0.0.1 127.0.0.1 ${clientPort} ${ours}\r\n`;
      assert.equal(b.connections, 1, `one backend connection; haproxy's log:\n${haproxy.log()}`);
      assert.equal(b.text(0), `${line}hello`);
      assert.equal(received, `${line}hello`);
    });

    it(`HAProxy's ${option} from an address outside trusted is closed and reaches no backend`, async () => {
      const b = backend();
      const { seen, events } = refusals();
      const ours = await startBalancer(
        configText([b.address], 'accept_proxy = true\ntrusted = ["10.0.0.0/8"]'),
        events,
      );
      const haproxy = await startHaproxy({ server: `127.0.0.1:${ours} ${option}` });
      const { received } = await talk(haproxy.port, "secret");
      assert.equal(received, "");
      assert.equal(seen.length, 1, `haproxy's connection was refused; its log:\n${haproxy.log()}`);
      assert.equal(seen[0]!.why, "untrusted");
      // The socket's peer, HAProxy's outgoing address: the header was never read.
      assert.match(seen[0]!.peer, /^127\.0\.0\.1:\d+$/);
      assert.equal(b.connections, 0);
    });
  }

  for (const version of ["v1", "v2"] as const) {
    it(`HTTP checks of a send_proxy ${version} backend that is HAProxy with accept-proxy: up with the header on probes, down without`, async () => {
      // What HAProxy forwards the probes to: an HTTP endpoint answering 200.
      const health = net.listen({
        hostname: "127.0.0.1",
        port: 0,
        onConnection(conn) {
          conn.setHandlers({
            data() {
              conn.write(bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
              conn.end();
            },
            end: () => conn.close(),
            drain() {},
            close() {},
          });
        },
      });
      cleanups.push(() => health.close());
      const haproxy = await startHaproxy({
        bind: "accept-proxy",
        server: `127.0.0.1:${health.address.port}`,
      });
      const probes = (sendProxy: boolean) => {
        const failures: (string | undefined)[] = [];
        const events: Events = {
          ...NO_EVENTS,
          probed: (_f, _b, failure) => void failures.push(failure),
        };
        const config = configText(
          [`127.0.0.1:${haproxy.port}`],
          '[frontend.health]\ninterval = "50ms"\ntimeout = "500ms"\nfall = 1\nrise = 1\nhttp_path = "/healthz"',
          sendProxy ? `send_proxy = "${version}"` : "",
        );
        return { failures, started: startBalancer(config, events) };
      };
      const withHeader = probes(true);
      const without = probes(false);
      await Promise.all([withHeader.started, without.started]);
      await eventually(
        () => withHeader.failures.length >= 3 && without.failures.length >= 3,
        "three probes each",
      );
      assert.deepEqual(
        withHeader.failures.slice(0, 3),
        [undefined, undefined, undefined],
        `with the PROXY header every probe passes; haproxy's log:\n${haproxy.log()}`,
      );
      // HAProxy closes a connection whose first bytes are not a PROXY header.
      for (const failure of without.failures.slice(0, 3)) {
        assert.match(failure ?? "passed", /^no HTTP answer \(closed\)$/);
      }
    });
  }
});
