/**
 * The admin listener over real loopback HTTP, on the runtime that runs the
 * tests: Prometheus metrics, the status API, the token, drain, disable and
 * enable, and reload through the API.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import { Metrics } from "../../src/admin/metrics.ts";
import { hostAllowed, type ReloadResult, startAdmin } from "../../src/admin/server.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import { combineEvents, NO_EVENTS } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import { encodeProxyV1 } from "../../src/protocol/proxy.ts";
import { configureLogging, getLog } from "../../src/log.ts";
import {
  bytes,
  closedPort,
  concat,
  connect,
  echoServer,
  eventually,
  exchange,
  net,
  sleep,
  tempDir,
  text,
} from "../_helpers/index.ts";

const TOKEN = "a-token-of-some-length";
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function backend(greeting: string) {
  const server = echoServer({ greeting });
  cleanups.push(() => server.close());
  return server;
}

function configText(a: string, b: string, extra = ""): string {
  return `[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:0"\n${extra}\n` +
    `[[frontends.backend]]\nname = "app-1"\nforward_to = "${a}"\n` +
    `[[frontends.backend]]\nname = "app-2"\nforward_to = "${b}"\n`;
}

/** A balancer with metrics and its admin listener; `reload` applies `next()`. */
async function startWithAdmin(
  toml: string,
  options: { token?: string; next?: () => string; allowedHosts?: string[] } = {},
) {
  const metrics = new Metrics(net.runtime);
  const balancer = await Balancer.start(parseConfig(toml), {
    net,
    events: combineEvents(NO_EVENTS, metrics),
  });
  metrics.attach(balancer);
  cleanups.push(() => balancer.stop({ graceMs: 0 }));
  const admin = startAdmin({
    hostname: "127.0.0.1",
    port: 0,
    token: options.token,
    allowedHosts: options.allowedHosts,
    net,
    balancer,
    metrics,
    lastReload: () => null,
    async reload(): Promise<ReloadResult> {
      try {
        const summary = await balancer.reload(parseConfig(options.next!()));
        metrics.reloaded(true);
        return { success: true, summary };
      } catch (error) {
        metrics.reloaded(false);
        return { success: false, error: (error as Error).message };
      }
    },
  });
  cleanups.push(() => admin.close());
  const base = `http://127.0.0.1:${admin.address.port}`;
  const port = balancer.addresses[0]!.port;
  return { balancer, base, port, admin };
}

/**
 * Sends one HTTP/1.1 request over a raw socket, with the `Host` header
 * given (fetch will not send another than the URL's), and returns the
 * status code.
 */
async function statusWithHost(
  port: number,
  host: string,
  method = "GET",
  path = "/api/status",
): Promise<number> {
  const client = await connect(port);
  client.conn.write(
    bytes(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
  );
  await client.ended;
  const answer = text(client.received());
  client.conn.close();
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
}

function post(url: string, token?: string) {
  const headers: Record<string, string> = token === undefined
    ? {}
    : { authorization: `Bearer ${token}` };
  return fetch(url, { method: "POST", headers });
}

async function status(base: string) {
  return await (await fetch(`${base}/api/status`)).json();
}

describe(`admin listener on ${net.runtime}`, () => {
  it("counts connections, bytes and outcomes in Prometheus text", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const { base, port } = await startWithAdmin(configText(a.address, b.address));
    for (let i = 0; i < 4; i++) await exchange(port, bytes("hello"));
    const response = await fetch(`${base}/metrics`);
    assert.match(response.headers.get("content-type")!, /^text\/plain/);
    const body = await response.text();
    const value = (line: string) => Number(new RegExp(`^${line} (\\S+)$`, "m").exec(body)?.[1]);
    assert.equal(value('mini_balancer_connections_accepted_total\\{frontend="web"\\}'), 4);
    assert.equal(
      value('mini_balancer_connections_closed_total\\{frontend="web",outcome="served"\\}'),
      4,
    );
    assert.equal(
      value(
        'mini_balancer_bytes_total\\{frontend="web",backend="app-1",direction="from_client"\\}',
      ),
      10,
    );
    assert.equal(
      value(
        'mini_balancer_bytes_total\\{frontend="web",backend="app-2",direction="from_backend"\\}',
      ),
      14,
    );
    assert.equal(
      value('mini_balancer_backend_up\\{frontend="web",backend="app-1",state="up"\\}'),
      1,
    );
    assert.equal(value('mini_balancer_connection_duration_seconds_count\\{frontend="web"\\}'), 4);
    assert.equal(
      value('mini_balancer_connection_duration_seconds_bucket\\{le="\\+Inf",frontend="web"\\}') ||
        value('mini_balancer_connection_duration_seconds_bucket\\{frontend="web",le="\\+Inf"\\}'),
      4,
    );
    assert.ok(value('mini_balancer_connection_duration_seconds_sum\\{frontend="web"\\}') > 0);
    assert.equal(value('mini_balancer_build_info\\{version="[^"]+",runtime="[^"]+"\\}'), 1);
    assert.ok(value("process_resident_memory_bytes") > 1_000_000);
    // Deno asks for --allow-all to read /proc/self/fd: the figure is left out there.
    if (net.runtime === "bun") assert.ok(value("process_open_fds") > 3);
    else assert.doesNotMatch(body, /^process_open_fds /m);
  });

  it("counts clients turned away at the edge by reason", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const { base, port } = await startWithAdmin(
      configText(
        a.address,
        b.address,
        'accept_proxy = true\ntrusted = ["127.0.0.1"]\ndeny = ["192.0.2.0/24"]\n' +
          'connection_rate_per_client = "2/m"',
      ),
    );
    const from = (hostname: string) =>
      concat([
        encodeProxyV1({ hostname, port: 1 }, { hostname: "10.0.0.1", port: 2 }),
        bytes("hi"),
      ]);
    for (let i = 0; i < 3; i++) await exchange(port, from("198.51.100.1"));
    await exchange(port, from("192.0.2.1"));
    const body = await (await fetch(`${base}/metrics`)).text();
    const value = (line: string) => Number(new RegExp(`^${line} (\\S+)$`, "m").exec(body)?.[1]);
    assert.equal(
      value('mini_balancer_refusals_total\\{frontend="web",reason="rate_limited"\\}'),
      1,
    );
    assert.equal(value('mini_balancer_refusals_total\\{frontend="web",reason="denied"\\}'), 1);
    assert.equal(
      value('mini_balancer_connections_closed_total\\{frontend="web",outcome="served"\\}'),
      2,
    );
  });

  it("shows every frontend and backend with state and counts in /api/status", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const { base, port } = await startWithAdmin(configText(a.address, b.address));
    const held = await connect(port);
    await eventually(() => held.receivedLength() === 2, "the greeting");
    await exchange(port, bytes("xyz"));
    const [web] = (await status(base)).frontends;
    assert.equal(web.name, "web");
    assert.equal(web.algorithm, "round_robin");
    assert.equal(web.accepted, 2);
    assert.equal(web.active, 1);
    assert.deepEqual(
      web.backends.map((x: { name: string; state: string; active: number; total: number }) => [
        x.name,
        x.state,
        x.active,
        x.total,
      ]),
      [["app-1", "up", 1, 1], ["app-2", "up", 0, 1]],
    );
    held.conn.end();
    await held.closed;
  });

  it("answers 404 to an unknown page (and to `/` without a dashboard), 405 to other methods", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const { base } = await startWithAdmin(configText(a.address, b.address), { token: TOKEN });
    for (const path of ["/nope", "/", "/api/reload"]) {
      const answer = await fetch(`${base}${path}`);
      assert.equal(answer.status, 404, path);
      assert.deepEqual(await answer.json(), { error: "not found" });
    }
    const put = await fetch(`${base}/api/status`, { method: "PUT" });
    assert.equal(put.status, 405);
    assert.deepEqual(await put.json(), { error: "method not allowed" });
    assert.equal((await post(`${base}/api/nope`, TOKEN)).status, 404);
  });

  it("answers 403 to changes without a configured token, 401 to a wrong one", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const open = await startWithAdmin(configText(a.address, b.address));
    const action = "/api/frontends/web/backends/app-1/drain";
    assert.equal((await post(`${open.base}${action}`, TOKEN)).status, 403);
    const guarded = await startWithAdmin(configText(a.address, b.address), { token: TOKEN });
    assert.equal((await post(`${guarded.base}${action}`)).status, 401);
    assert.equal((await post(`${guarded.base}${action}`, `${TOKEN}x`)).status, 401);
    const [web] = (await status(guarded.base)).frontends;
    assert.equal(web.backends[0].state, "up", "a refused change changes nothing");
    assert.equal((await post(`${guarded.base}${action}`, TOKEN)).status, 200);
    assert.equal(
      (await post(`${guarded.base}/api/frontends/web/backends/nope/drain`, TOKEN)).status,
      404,
    );
  });

  it("drains a backend: new connections avoid it, its open one goes on, enable brings it back", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const { base, port } = await startWithAdmin(configText(a.address, b.address), {
      token: TOKEN,
    });
    const held = await connect(port);
    await eventually(() => held.receivedLength() === 2, "the greeting from app-1");
    const drained = await post(`${base}/api/frontends/web/backends/app-1/drain`, TOKEN);
    assert.deepEqual(await drained.json(), {
      frontend: "web",
      backend: "app-1",
      state: "draining",
    });
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(text((await exchange(port, bytes("x"))).data));
    assert.deepEqual(replies, ["b:x", "b:x", "b:x", "b:x"]);
    held.conn.write(bytes("still"));
    await eventually(() => text(held.received()) === "a:still", "the drained backend's echo");
    assert.equal((await status(base)).frontends[0].backends[0].state, "draining");
    await post(`${base}/api/frontends/web/backends/app-1/enable`, TOKEN);
    const after = new Set<string>();
    for (let i = 0; i < 4; i++) after.add(text((await exchange(port, bytes("y"))).data));
    assert.deepEqual([...after].sort(), ["a:y", "b:y"]);
    held.conn.end();
    await held.closed;
  });

  it("stops probing a disabled backend, and probes it again once enabled", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const { base } = await startWithAdmin(
      configText(a.address, b.address, '[frontends.health]\ninterval = "30ms"'),
      { token: TOKEN },
    );
    const probes = async () => {
      const body = await (await fetch(`${base}/metrics`)).text();
      const line =
        /^mini_balancer_health_check_duration_seconds_count\{frontend="web",backend="app-1"\} (\d+)$/m
          .exec(body);
      return Number(line?.[1] ?? 0);
    };
    let count = 0;
    for (let i = 0; i < 50 && (count = await probes()) === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(count > 0, "app-1 is probed");
    await post(`${base}/api/frontends/web/backends/app-1/disable`, TOKEN);
    await new Promise((r) => setTimeout(r, 100)); // a probe under way may finish
    const frozen = await probes();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await probes(), frozen, "no probe while disabled");
    assert.equal((await status(base)).frontends[0].backends[0].state, "disabled");
    await post(`${base}/api/frontends/web/backends/app-1/enable`, TOKEN);
    for (let i = 0; i < 50 && (await probes()) === frozen; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok((await probes()) > frozen, "probed again once enabled");
  });

  it("reloads through POST /api/reload and answers with what changed", async () => {
    const [a, b, c] = [backend("a:"), backend("b:"), backend("c:")];
    let next = configText(a.address, c.address);
    const { base } = await startWithAdmin(configText(a.address, b.address), {
      token: TOKEN,
      next: () => next,
    });
    const response = await post(`${base}/api/reload`, TOKEN);
    assert.equal(response.status, 200);
    const result = await response.json();
    assert.equal(result.success, true);
    assert.deepEqual(result.summary.backendsRemoved, []);
    assert.deepEqual(result.summary.frontendsChanged, ["web"]);
    next = "[frontend]\nbind_on = 1\n";
    const rejected = await post(`${base}/api/reload`, TOKEN);
    assert.equal(rejected.status, 422);
    assert.match((await rejected.json()).error, /bind_on must be a string/);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /^mini_balancer_last_reload_success 0$/m);
  });

  it("answers only a Host that is an IP address, localhost or an allowed name (DNS rebinding)", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const { admin } = await startWithAdmin(configText(a.address, b.address), {
      token: TOKEN,
      allowedHosts: ["lb.internal"],
    });
    const port = admin.address.port;
    for (const path of ["/api/status", "/metrics", "/"]) {
      assert.equal(await statusWithHost(port, "evil.example", "GET", path), 403, path);
      assert.equal(await statusWithHost(port, `evil.example:${port}`, "GET", path), 403, path);
    }
    assert.equal(await statusWithHost(port, "127.0.0.1.evil.example"), 403);
    assert.equal(await statusWithHost(port, "localhost.evil.example"), 403);
    assert.equal(
      await statusWithHost(port, "evil.example", "POST", "/api/reload"),
      403,
      "refused before the token is even looked at",
    );
    for (const host of [`127.0.0.1:${port}`, "127.0.0.1", "localhost", `localhost:${port}`]) {
      assert.equal(await statusWithHost(port, host), 200, host);
    }
    assert.equal(await statusWithHost(port, `[::1]:${port}`), 200);
    assert.equal(await statusWithHost(port, "lb.internal"), 200);
    assert.equal(await statusWithHost(port, `LB.Internal:${port}`, "GET", "/metrics"), 200);
  });

  it("tells which Host headers are local or allowed", () => {
    const allowed = ["lb.internal"];
    const yes = ["127.0.0.1", "10.1.2.3:9901", "[::1]", "[::1]:9901", "[2001:db8::1]:80"];
    yes.push("localhost", "LOCALHOST:1", "localhost.", "lb.internal", "lb.internal:9901");
    for (const host of yes) assert.equal(hostAllowed(host, allowed), true, host);
    const no = [null, "", "evil.example", "evil.example:9901", "256.1.1.1", "[::1", "[::1]x"];
    no.push("[evil]:80", "127.0.0.1:port", "localhost:", "lb.internal.evil", ":9901");
    for (const host of no) assert.equal(hostAllowed(host, allowed), false, String(host));
  });

  it("takes a new token and a new address from update, and keeps the old address when the new one is taken", async () => {
    const [a, b] = [backend("a:"), backend("b:")];
    const { admin } = await startWithAdmin(configText(a.address, b.address), { token: TOKEN });
    const action = (port: number, token: string, host = "127.0.0.1") =>
      post(`http://${host}:${port}/api/frontends/web/backends/app-1/enable`, token);
    const first = admin.address.port;
    const newToken = "a-new-token-for-the-admin";
    assert.equal(
      await admin.update({ hostname: "127.0.0.1", port: 0, token: newToken }),
      undefined,
    );
    assert.equal(admin.address.port, first, "the same address keeps its socket");
    assert.equal((await action(first, TOKEN)).status, 401, "the old token stops working");
    assert.equal((await action(first, newToken)).status, 200);
    // A move: the new address binds, the old one closes.
    const busy = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (c) => c.close() });
    cleanups.push(() => busy.close());
    const failure = await admin.update({
      hostname: "127.0.0.1",
      port: busy.address.port,
      token: TOKEN,
    });
    assert.equal(
      failure,
      `cannot listen on 127.0.0.1:${busy.address.port} for the admin listener: address already ` +
        `in use; it stays on 127.0.0.1:${first}`,
    );
    assert.equal((await action(first, TOKEN)).status, 200, "the token applies all the same");
    assert.equal(await admin.update({ hostname: "127.0.0.2", port: 0, token: TOKEN }), undefined);
    const moved = admin.address;
    assert.equal(moved.hostname, "127.0.0.2");
    assert.equal((await action(moved.port, TOKEN, "127.0.0.2")).status, 200);
    await sleep(400); // the old socket lives 200 ms on, for the answer in flight
    await assert.rejects(
      fetch(`http://127.0.0.1:${first}/api/status`),
      "the old address is closed",
    );
  });

  it("logs every action with the peer, the action, its target and the result at the default verbosity", async () => {
    const lines: string[] = [];
    configureLogging({ verbosity: 0, write: (line) => lines.push(line) });
    cleanups.push(() => resetSync());
    const [a, b] = [backend("a:"), backend("b:")];
    const { base } = await startWithAdmin(configText(a.address, b.address), { token: TOKEN });
    getLog("main").info("an INFO line that the default verbosity hides");
    assert.equal((await post(`${base}/api/frontends/web/backends/app-1/drain`, TOKEN)).status, 200);
    assert.equal(
      (await post(`${base}/api/frontends/web/backends/app-2/disable`, TOKEN)).status,
      200,
    );
    assert.equal(
      (await post(`${base}/api/frontends/web/backends/app-2/enable`, TOKEN)).status,
      200,
    );
    assert.equal((await post(`${base}/api/frontends/web/backends/nope/drain`, TOKEN)).status, 404);
    assert.equal(
      (await post(`${base}/api/frontends/web/backends/app-1/drain`, "wrong")).status,
      401,
    );
    const actions = lines.map((line) => line.replace(/^\S+ /, "").replace(/:\d+ /, ":PORT "));
    assert.deepEqual(actions, [
      " INFO mini_balancer::operator: admin action peer=127.0.0.1:PORT action=drain " +
      "target=web/app-1 result=draining\n",
      " INFO mini_balancer::operator: admin action peer=127.0.0.1:PORT action=disable " +
      "target=web/app-2 result=disabled\n",
      " INFO mini_balancer::operator: admin action peer=127.0.0.1:PORT action=enable " +
      "target=web/app-2 result=enabled\n",
      " INFO mini_balancer::operator: admin action peer=127.0.0.1:PORT action=drain " +
      'target=web/nope result="no such frontend or backend"\n',
    ]);
  });

  it("is scraped by a real Prometheus server, whose query returns the connection count", async (context) => {
    if (!existsSync("/usr/bin/prometheus")) {
      return context.skip("prometheus is not installed (apt-get install prometheus)");
    }
    const [a, b] = [backend("a:"), backend("b:")];
    const { base, port } = await startWithAdmin(configText(a.address, b.address));
    for (let i = 0; i < 7; i++) await exchange(port, bytes("x"));
    const dir = await tempDir();
    cleanups.push(() => dir.cleanup());
    const promPort = closedPort();
    await writeFile(
      join(dir.path, "prometheus.yml"),
      "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mini-balancer\n" +
        `    static_configs:\n      - targets: ["${new URL(base).host}"]\n`,
    );
    const prometheus = spawn("prometheus", [
      `--config.file=${join(dir.path, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir.path, "data")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ], { stdio: "ignore" });
    cleanups.push(() =>
      new Promise((resolve) => {
        prometheus.on("close", resolve);
        prometheus.kill("SIGTERM");
      })
    );
    const query = async () => {
      const url = `http://127.0.0.1:${promPort}/api/v1/query?query=` +
        encodeURIComponent('mini_balancer_connections_accepted_total{frontend="web"}');
      const body = await (await fetch(url)).json();
      return body.data?.result?.[0]?.value?.[1] as string | undefined;
    };
    let value: string | undefined;
    const deadline = Date.now() + 30_000;
    while (value === undefined && Date.now() < deadline) {
      value = await query().catch(() => undefined);
      if (value === undefined) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(value, "7", "Prometheus scraped the admin listener and counts 7 connections");
  });

  it("passes promtool check metrics", async (context) => {
    if (!existsSync("/usr/bin/promtool")) {
      return context.skip("promtool is not installed (apt-get install prometheus)");
    }
    const [a, b] = [backend("a:"), backend("b:")];
    const { base, port } = await startWithAdmin(
      configText(a.address, b.address, '[frontends.health]\ninterval = "50ms"'),
    );
    await exchange(port, bytes("x"));
    await new Promise((r) => setTimeout(r, 120));
    const dir = await tempDir();
    cleanups.push(() => dir.cleanup());
    const file = join(dir.path, "metrics.txt");
    await writeFile(file, await (await fetch(`${base}/metrics`)).text());
    const output = await new Promise<string>((resolve) => {
      execFile(
        "bash",
        ["-c", `promtool check metrics < ${file} 2>&1; echo "exit=$?"`],
        (_e, out) => resolve(out),
      );
    });
    assert.match(output, /exit=0/, output);
  });
});
