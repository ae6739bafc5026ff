/**
 * The real program with `workers = N`: the supervisor and its workers
 * (not on the Node build, which refuses workers).
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { startDns } from "../_helpers/dns.ts";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import {
  bytes,
  closedPort,
  connect,
  echoServer,
  eventually,
  exchange,
  freePort,
  freePorts,
  net,
  recordingBackend,
  ROOT,
  runProgram,
  signalProgram,
  sleep,
  startProgram,
  tempDir,
  text,
  within,
} from "../_helpers/index.ts";
import { buildBefore, dnsSkip, kinds } from "./_setup.ts";

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    buildBefore(kind);

    describe("with workers", { skip: kind === "node" }, () => {
      /** Deno's workers need to start deno again, with SO_REUSEPORT. */
      const denoFlags = [`--allow-run=${process.execPath}`, "--unstable-net"];
      const backend = echoServer({ greeting: "w:" });
      after(() => backend.close());

      async function startWorkers(workers: number) {
        const port = await freePort();
        const program = await startProgram(
          kind,
          `workers = ${workers}\n[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
            `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
          [],
          denoFlags,
        );
        // Every worker listens before the test goes on.
        await eventually(
          () => program.stderr().split("listening for connections").length > workers,
          "every worker to listen",
        );
        const pids = () =>
          [...program.stderr().matchAll(/started worker worker=(\d+) pid=(\d+)/g)].map((m) => ({
            worker: Number(m[1]),
            pid: Number(m[2]),
          }));
        /** Which worker served the client whose local port is `port`, from the log. */
        const workerOf = (clientPort: number) =>
          Number(
            new RegExp(
              `peer_address=127\\.0\\.0\\.1:${clientPort}\\}: .*serving connection .*worker=(\\d)`,
            )
              .exec(program.stderr())?.[1],
          );
        return { program, port, pids, workerOf };
      }

      it("stops at start with one line when a worker's port is taken", async () => {
        const holder = net.listen({
          hostname: "127.0.0.1",
          port: 0,
          onConnection: (c) => c.close(),
        });
        const dir = await tempDir();
        try {
          const file = join(dir.path, "taken.toml");
          const port = holder.address.port;
          await writeFile(
            file,
            `workers = 2\n[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
              `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
          );
          const { code, stderr } = await runProgram(kind, ["-c", file], ROOT, denoFlags);
          assert.equal(code, 1);
          assert.equal(
            stderr.trim(),
            `mini-balancer: cannot listen on 127.0.0.1:${port} for frontend "default": address already in use`,
          );
        } finally {
          holder.close();
          await dir.cleanup();
        }
      });

      it("spreads connections over both workers, and stops them both on SIGTERM", async () => {
        const { program, port } = await startWorkers(2);
        try {
          for (let i = 0; i < 40; i++) {
            assert.equal(text((await exchange(port, bytes(`c${i}`))).data), `w:c${i}`);
          }
          await eventually(() => program.stderr().split("serving connection").length > 40, "logs");
          const served = [0, 1].map((w) =>
            program.stderr().split("\n").filter((line) =>
              line.includes("serving connection") && line.endsWith(`worker=${w}`)
            ).length
          );
          assert.ok(served[0]! > 0 && served[1]! > 0, `served per worker: ${served}`);
          // Changing the number of workers needs a restart: a reload refuses it.
          await writeFile(
            program.file,
            (await readFile(program.file, "utf8")).replace("workers = 2", "workers = 3"),
          );
          signalProgram(program.child, "SIGHUP");
          await eventually(
            () => /reload rejected: workers changed from 2 to 3/.test(program.stderr()),
            "the reload to be refused",
          );
          assert.equal(text((await exchange(port, bytes("still"))).data), "w:still");
          assert.equal(await program.stop("SIGTERM"), 0);
          assert.equal(
            program.stderr().split("\n").filter((l) => /INFO .*: stopped worker=/.test(l)).length,
            2,
          );
        } finally {
          await program.cleanup();
        }
      });

      it("replaces a worker killed with SIGKILL, losing only its own connections", async () => {
        const { program, port, pids, workerOf } = await startWorkers(2);
        try {
          const clients = await Promise.all(Array.from({ length: 12 }, () => connect(port)));
          for (const [i, client] of clients.entries()) client.conn.write(bytes(`s${i};`));
          await eventually(
            () => clients.every((client) => client.receivedLength() > 0),
            "every streaming client's first echo",
          );
          const owner = clients.map((client) => workerOf(client.conn.localAddress.port));
          const victim = pids().find((p) => p.worker === 1)!;
          process.kill(victim.pid, "SIGKILL");
          await eventually(
            () => pids().filter((p) => p.worker === 1).length === 2,
            "the killed worker to be replaced",
          );
          assert.match(program.stderr(), /worker exited, restarting it worker=1 .*signal=SIGKILL/);
          for (let i = 0; i < 10; i++) {
            assert.equal(text((await exchange(port, bytes(`n${i}`))).data), `w:n${i}`);
          }
          for (const [i, client] of clients.entries()) {
            if (owner[i] === 1) {
              await within(client.ended, 5000, `client ${i} of the killed worker to end`);
            } else {
              client.conn.write(bytes("more"));
              await eventually(
                () => text(client.received()).endsWith("more"),
                `client ${i} to go on`,
              );
            }
          }
          assert.ok(owner.includes(0) && owner.includes(1), `owners: ${owner}`);
          for (const client of clients) client.conn.close();
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
        }
      });

      it("stops every worker when the supervisor is killed (their standard input ends)", async () => {
        const { program, pids } = await startWorkers(2);
        try {
          assert.equal(pids().length, 2);
          const started = performance.now();
          signalProgram(program.child, "SIGKILL");
          // The workers write to the same standard error: it closes when both are gone.
          await within(program.exited, 5000, "every worker to stop");
          const lines = program.stderr().split("\n");
          assert.equal(lines.filter((l) => /the supervisor is gone: stopping/.test(l)).length, 2);
          assert.equal(lines.filter((l) => /INFO .*: stopped worker=/.test(l)).length, 2);
          const elapsed = performance.now() - started;
          assert.ok(elapsed > 0 && elapsed < 5000, `stopped in ${elapsed} ms`);
        } finally {
          // Workers left behind by a failure have no supervisor to stop them.
          for (const { pid } of pids()) {
            try {
              process.kill(pid, "SIGKILL");
            } catch { /* already gone */ }
          }
          await within(program.exited, 5000, "the program's standard error to close");
          await program.cleanup();
        }
      });

      it("answers one admin API for all workers: figures summed, a drain reaching each, logged once, [admin] reloaded", async () => {
        const other = echoServer({ greeting: "o:" });
        const [port = 0, adminPort = 0] = await freePorts(2);
        const token = "a-workers-token-0123";
        const program = await startProgram(
          kind,
          `workers = 2\n[admin]\nbind_on = "127.0.0.1:${adminPort}"\ntoken = "${token}"\n` +
            `[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
            `[[frontend.backend]]\nname = "one"\nforward_to = "${backend.address}"\n` +
            `[[frontend.backend]]\nname = "two"\nforward_to = "${other.address}"\n`,
          [],
          denoFlags,
        );
        const admin = `http://127.0.0.1:${adminPort}`;
        try {
          await eventually(
            () => program.stderr().split("listening for connections").length > 2,
            "both workers to listen",
          );
          for (let i = 0; i < 20; i++) await exchange(port, bytes(`m${i}`));
          await eventually(
            () => program.stderr().split("served connection").length > 20,
            "every connection to be logged as served",
          );
          const metrics = await (await fetch(`${admin}/metrics`)).text();
          assert.match(
            metrics,
            /^mini_balancer_connections_accepted_total\{frontend="default"\} 20$/m,
          );
          assert.match(
            metrics,
            /^mini_balancer_backend_up\{frontend="default",backend="one",state="up"\} 1$/m,
          );
          const status = await (await fetch(`${admin}/api/status`)).json();
          assert.equal(status.workers, 2);
          assert.equal(status.frontends[0].accepted, 20);
          // Each worker takes turns on its own: together they took all 20.
          const totals = status.frontends[0].backends.map((b: { total: number }) => b.total);
          assert.equal(totals.length, 2);
          assert.equal(totals[0] + totals[1], 20);
          const denied = await fetch(`${admin}/api/frontends/default/backends/one/drain`, {
            method: "POST",
          });
          assert.equal(denied.status, 401, "a change without the token");
          // The same routing as a process's listener: the dashboard, 404, 405.
          const page = await fetch(`${admin}/`);
          assert.equal(page.status, 200);
          assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
          await page.text();
          const unknown = await fetch(`${admin}/nope`);
          assert.equal(unknown.status, 404);
          assert.deepEqual(await unknown.json(), { error: "not found" });
          const put = await fetch(`${admin}/metrics`, { method: "PUT" });
          assert.equal(put.status, 405);
          assert.deepEqual(await put.json(), { error: "method not allowed" });
          const drained = await fetch(`${admin}/api/frontends/default/backends/one/drain`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}` },
          });
          assert.equal(drained.status, 200);
          const replies = [];
          for (let i = 0; i < 8; i++) replies.push(text((await exchange(port, bytes("d"))).data));
          assert.deepEqual(replies, Array(8).fill("o:d"), "every worker drained backend one");
          const reload = await fetch(`${admin}/api/reload`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}` },
          });
          assert.equal(reload.status, 200);
          assert.equal((await reload.json()).success, true);
          // The supervisor logs the action once; its workers' own listeners do not.
          assert.equal(program.stderr().split("action=drain target=default/one").length, 2);
          // Each worker logs its reload's outcome, naming who asked the supervisor.
          await eventually(
            () => program.stderr().split("via=api").length === 3,
            "both workers' reload lines",
          );
          const askers = [...program.stderr().matchAll(/reloaded config .*via=api peer=(\S+)/g)]
            .map((match) => match[1]);
          assert.equal(askers.length, 2);
          assert.equal(askers[0], askers[1], "one client asked both");
          // A reload moves the supervisor's listener and swaps its token.
          const newPort = await freePort();
          const newToken = "a-new-workers-token-0123";
          await writeFile(
            program.file,
            (await readFile(program.file, "utf8"))
              .replace(`127.0.0.1:${adminPort}`, `127.0.0.1:${newPort}`)
              .replace(token, newToken),
          );
          signalProgram(program.child, "SIGHUP");
          const moved = `http://127.0.0.1:${newPort}/api/frontends/default/backends/one/enable`;
          const enable = (bearer: string) =>
            fetch(moved, { method: "POST", headers: { authorization: `Bearer ${bearer}` } })
              .then((answer) => answer.status, () => 0);
          const deadline = Date.now() + 10_000;
          while (await enable(newToken) !== 200) {
            assert.ok(Date.now() < deadline, "the moved listener takes the new token");
            await sleep(50);
          }
          assert.equal(await enable(token), 401, "the old token stops working");
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
          other.close();
        }
      });

      it("probes once for every worker: a dead backend is taken out of each", async () => {
        const dead = `127.0.0.1:${closedPort()}`;
        const port = await freePort();
        const program = await startProgram(
          kind,
          `workers = 2\n[frontend]\nbind_on = "127.0.0.1:${port}"\nretries = 0\n` +
            `[frontend.health]\ninterval = "50ms"\nfall = 1\nrise = 1\n` +
            `[[frontend.backend]]\nname = "live"\nforward_to = "${backend.address}"\n` +
            `[[frontend.backend]]\nname = "dead"\nforward_to = "${dead}"\n`,
          [],
          denoFlags,
        );
        try {
          await eventually(
            () => program.stderr().split("listening for connections").length > 2,
            "both workers to listen",
          );
          await eventually(() => /backend is down/.test(program.stderr()), "the probe to fail");
          await sleep(100); // the change reaches the workers
          // Without retries, a worker that still took the dead backend would fail clients.
          for (let i = 0; i < 16; i++) {
            assert.equal(text((await exchange(port, bytes(`h${i}`))).data), `w:h${i}`);
          }
          const downs = program.stderr().split("\n").filter((line) =>
            line.includes("backend is down")
          );
          assert.equal(downs.length, 1, `one prober, one line:\n${downs.join("\n")}`);
          assert.doesNotMatch(downs[0]!, /worker=/, "the supervisor probes, not a worker");
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
        }
      });

      it("HTTP checks run in the supervisor: a flip moves every worker's new connections and close_sessions closes the old primary's", async () => {
        const apiPort = await freePort();
        const role = { a: true, b: false };
        const apis = (["a", "b"] as const).map((name, i) =>
          net.listen({
            hostname: `127.0.0.${i + 1}`,
            port: apiPort,
            onConnection(conn) {
              conn.setHandlers({
                data() {
                  conn.write(
                    bytes(role[name] ? "HTTP/1.1 200 OK\r\n\r\n" : "HTTP/1.1 503 No\r\n\r\n"),
                  );
                  conn.end();
                },
                end: () => conn.close(),
                drain() {},
                close() {},
              });
            },
          })
        );
        const a = echoServer({ greeting: "a:" });
        const b = echoServer({ hostname: "127.0.0.2", greeting: "b:" });
        const port = await freePort();
        const program = await startProgram(
          kind,
          `workers = 2\n[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
            `[frontend.health]\ninterval = "100ms"\ntimeout = "100ms"\nfall = 1\nrise = 1\n` +
            `http_path = "/primary"\nport = ${apiPort}\non_down = "close_sessions"\n` +
            `[[frontend.backend]]\nname = "a"\nforward_to = "${a.address}"\n` +
            `[[frontend.backend]]\nname = "b"\nforward_to = "127.0.0.2:${b.listener.address.port}"\n`,
          [],
          denoFlags,
        );
        try {
          await eventually(
            () => program.stderr().split("listening for connections").length > 2,
            "both workers to listen",
          );
          await eventually(
            () => /backend is down.*backend=b/.test(program.stderr()),
            "b to go down",
          );
          await sleep(100); // the change reaches the workers
          const greeting = async () => text((await exchange(port, bytes(""))).data);
          for (let i = 0; i < 8; i++) assert.equal(await greeting(), "a:");
          const held = await Promise.all([connect(port), connect(port), connect(port)]);
          await eventually(() => held.every((c) => c.receivedLength() === 2), "the greetings");
          role.a = false;
          role.b = true;
          for (const client of held) {
            await within(client.ended, 3000, "a held connection to be closed");
          }
          await eventually(() => /backend is up.*backend=b/.test(program.stderr()), "b to come up");
          await sleep(100);
          for (let i = 0; i < 8; i++) assert.equal(await greeting(), "b:");
          assert.match(program.stderr(), /closed \d+ connections? of backend a: it is down/);
          for (const client of held) client.conn.end();
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
          a.close();
          b.close();
          for (const api of apis) api.close();
        }
      });

      it(
        "with discovery, an address that appears is probed by the supervisor and served by each worker",
        {
          skip: dnsSkip,
        },
        async () => {
          const port = await freePort();
          const backendPort = await freePort();
          const first = recordingBackend({ hostname: "127.0.0.2", port: backendPort });
          const dns = await startDns({ hosts: { "web.test": ["127.0.0.2"] } });
          const program = await startProgram(
            kind,
            `workers = 2\nresolver = "${dns.address}"\n` +
              `[frontend]\nbind_on = "127.0.0.1:${port}"\nmin_ttl = "0s"\nmax_ttl = "100ms"\n` +
              `[frontend.health]\ninterval = "50ms"\nrise = 1\n` +
              `[[frontend.backend]]\nname = "web"\nforward_to = "web.test:${backendPort}"\n`,
            [],
            denoFlags,
          );
          const second = recordingBackend({ hostname: "127.0.0.3", port: backendPort });
          try {
            await eventually(
              () => program.stderr().split("listening for connections").length > 2,
              "both workers to listen",
            );
            await dns.setHosts({ "web.test": ["127.0.0.2", "127.0.0.3"] });
            // Up in the supervisor's prober, then told to both workers.
            await eventually(() => /backend is up .*web#127\.0\.0\.3/.test(program.stderr()), "up");
            await sleep(300); // each worker has resolved it and heard it is up
            const before = second.connections;
            for (let i = 0; i < 40; i++) {
              assert.equal(text((await exchange(port, bytes(`d${i}`))).data), `d${i}`);
            }
            const served = program.stderr().split("\n").filter((line) =>
              line.includes("127.0.0.3") && line.includes("opened client connection")
            );
            const workers = new Set(served.map((line) => /worker=(\d)/.exec(line)?.[1]));
            assert.ok(
              second.connections - before >= 10,
              `127.0.0.3 took ${second.connections - before}`,
            );
            assert.equal(workers.size, 2, "both workers send to the new address");
            assert.equal(await program.stop("SIGTERM"), 0);
          } finally {
            await program.cleanup();
            await dns.stop();
            first.close();
            second.close();
          }
        },
      );

      it("reloads on SIGHUP under load with no failed connection", async () => {
        const { program, port } = await startWorkers(2);
        try {
          let running = true;
          let done = 0;
          const failures: string[] = [];
          const load = Array.from({ length: 4 }, async (_, lane) => {
            for (let i = 0; running; i++) {
              const payload = `l${lane}-${i}`;
              const answer = text((await exchange(port, bytes(payload))).data);
              if (answer === `w:${payload}`) done++;
              else failures.push(`${payload} got ${JSON.stringify(answer)}`);
            }
          });
          for (let i = 0; i < 3; i++) {
            await sleep(150);
            signalProgram(program.child, "SIGHUP");
          }
          await eventually(
            () => program.stderr().split("reloaded config").length > 6,
            "both workers to reload three times",
          );
          await sleep(150);
          running = false;
          await Promise.all(load);
          assert.deepEqual(failures, []);
          assert.ok(done > 20, `${done} exchanges`);
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
        }
      });
    });
  });
}
