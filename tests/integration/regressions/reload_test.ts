/**
 * Regression tests for reload (issue 18): a retired frontend's grace period
 * is the one asked for, concurrent reloads run one after the other, and a
 * frontend whose new config cannot be used (a name that does not resolve)
 * stays as it was, serving, with the failure in the summary.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { connect as tcpConnect, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Balancer } from "../../../src/balancer/balancer.ts";
import { NO_EVENTS } from "../../../src/balancer/events.ts";
import { main } from "../../../src/cli/main.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { DNSMASQ, startDns } from "../../_helpers/dns.ts";
import {
  bytes,
  connect,
  echoServer,
  eventually,
  exchange,
  freePort,
  net,
  tempDir,
  text,
  within,
} from "../../_helpers/index.ts";

const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function backend(greeting: string) {
  const server = echoServer({ greeting });
  cleanups.push(() => server.close());
  return server;
}

function frontend(name: string, bind: string, forwardTo: string, extra = ""): string {
  return `[[frontends]]\nname = "${name}"\nbind_on = "${bind}"\n${extra}\n` +
    `[[frontends.backend]]\nname = "app"\nforward_to = "${forwardTo}"\n`;
}

async function start(toml: string): Promise<Balancer> {
  const balancer = await Balancer.start(parseConfig(toml), { net, events: NO_EVENTS });
  cleanups.push(() => balancer.stop({ graceMs: 0 }));
  return balancer;
}

describe(`reload regressions on ${net.runtime}`, () => {
  it("cuts an idle client of a frontend reloaded away after graceMs (100 ms), not later", async () => {
    const a = backend("a:");
    const keep = frontend("keep", "127.0.0.1:0", a.address);
    const balancer = await start(keep + frontend("gone", "127.0.0.1:0", a.address));
    const gone = balancer.status().find((f) => f.name === "gone")!;
    const port = Number(gone.address.split(":").at(-1));
    const client = await connect(port);
    await eventually(() => client.receivedLength() === 2, "the greeting", 2_000);
    const started = performance.now();
    const summary = await balancer.reload(parseConfig(keep), { graceMs: 100 });
    assert.deepEqual(summary.frontendsRemoved, ["gone"]);
    await within(client.ended, 1_000, "the idle client to be cut after graceMs: 100");
    client.conn.close();
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 75 && elapsed <= 500, `cut after ${elapsed.toFixed(0)} ms, want 100 ms`);
  });

  it("keeps a frontend serving when its new bind_on comes with a name that does not resolve", {
    skip: DNSMASQ === undefined ? "dnsmasq is not installed" : false,
  }, async () => {
    const dns = await startDns({ hosts: {} });
    cleanups.push(() => dns.stop());
    const a = backend("a:");
    const resolver = `resolver = "${dns.address}"\n`;
    const balancer = await start(resolver + frontend("web", "127.0.0.1:0", a.address));
    const port = balancer.addresses[0]!.port;
    const moved = await freePort();
    const summary = await balancer.reload(
      parseConfig(resolver + frontend("web", `127.0.0.1:${moved}`, "nope.test:8080")),
      { graceMs: 0 },
    );
    assert.match(summary.failures.join("\n"), /nope\.test did not resolve/, "the failure");
    assert.deepEqual(summary.frontendsChanged, [], "nothing changed");
    assert.equal(
      text((await within(exchange(port, bytes("x")), 2_000, "the old address to answer")).data),
      "a:x",
      "the old frontend still serves at its address",
    );
    assert.equal(balancer.status()[0]!.address, `127.0.0.1:${port}`);
  });

  it("runs two concurrent POST /api/reload one after the other: the second changes nothing", {
    skip: DNSMASQ === undefined ? "dnsmasq is not installed" : false,
  }, async () => {
    const a = backend("a:");
    // The new frontend's backend is a name: resolving it keeps a reload under way for a while.
    const dns = await startDns({ hosts: { "app.test": ["127.0.0.1"] } });
    cleanups.push(() => dns.stop());
    const appPort = a.address.split(":")[1];
    const dir = await tempDir();
    cleanups.push(() => dir.cleanup());
    const file = join(dir.path, "reload.toml");
    const [adminPort, fixed] = [await freePort(), await freePort()];
    const token = "a-token-of-some-length";
    const admin = `resolver = "${dns.address}"\n` +
      `[admin]\nbind_on = "127.0.0.1:${adminPort}"\ntoken = "${token}"\n`;
    await writeFile(file, admin + frontend("one", "127.0.0.1:0", a.address));
    let stop: () => void = () => {};
    const exited = main(["-c", file], {
      net,
      onShutdownSignal: (registered) => {
        stop = registered;
        return () => {};
      },
      stdout: () => {},
      stderr: () => {},
    });
    cleanups.push(async () => {
      stop();
      await within(exited, 5_000, "main to stop");
      resetSync();
    });
    const base = `http://127.0.0.1:${adminPort}`;
    let listening = false;
    for (const deadline = Date.now() + 5_000; !listening && Date.now() < deadline;) {
      listening = await fetch(`${base}/api/status`).then(async (response) => {
        await response.body?.cancel();
        return true;
      }, () => false);
      if (!listening) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(listening, "the admin listener to answer within 5 s");
    await writeFile(
      file,
      admin + frontend("one", "127.0.0.1:0", a.address) +
        frontend("two", `127.0.0.1:${fixed}`, `app.test:${appPort}`),
    );
    // Two connections first, then both requests in one tick: the reloads overlap unless queued.
    const sockets = await Promise.all([0, 1].map(() =>
      new Promise<Socket>((resolve, reject) => {
        const socket = tcpConnect({ host: "127.0.0.1", port: adminPort }, () => resolve(socket));
        socket.on("error", reject);
        cleanups.push(() => socket.destroy());
      })
    ));
    const answers = sockets.map((socket) =>
      new Promise<{ status: number; body: { summary: { frontendsAdded: string[] } } }>(
        (resolve) => {
          let raw = "";
          socket.setEncoding("utf8");
          socket.on("data", (chunk: string) => raw += chunk);
          socket.on("close", () => {
            const [head, body] = raw.split("\r\n\r\n");
            resolve({ status: Number(head!.split(" ")[1]), body: JSON.parse(body!) });
          });
        },
      )
    );
    for (const socket of sockets) {
      socket.write(
        `POST /api/reload HTTP/1.1\r\nhost: 127.0.0.1:${adminPort}\r\n` +
          `authorization: Bearer ${token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
      );
    }
    const both = await within(Promise.all(answers), 5_000, "both reloads");
    assert.deepEqual(both.map((reload) => reload.status), [200, 200]);
    // Whichever ran first added the frontend; the other ran after it.
    const [first, second] = both.sort((x, y) =>
      y.body.summary.frontendsAdded.length - x.body.summary.frontendsAdded.length
    );
    assert.deepEqual(first!.body.summary.frontendsAdded, ["two"], JSON.stringify(first!.body));
    assert.deepEqual(
      second!.body.summary,
      {
        frontendsAdded: [],
        frontendsRemoved: [],
        frontendsChanged: [],
        backendsAdded: [],
        backendsRemoved: [],
        failures: [],
      },
      "the second reload, run after the first, finds nothing to change",
    );
    assert.equal(text((await exchange(fixed, bytes("y"))).data), "a:y");
  });
});
