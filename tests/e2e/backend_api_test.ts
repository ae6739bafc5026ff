/**
 * The real program's backend API: with `workers = 2`, a backend added
 * through the supervisor's listener reaches every worker and is logged
 * once; `admin.state_file` keeps it, a patched weight and a drain across a
 * restart; a corrupt state file stops the start (and `check`) with one
 * line that names it.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import {
  bytes,
  echoServer,
  eventually,
  exchange,
  freePorts,
  runProgram,
  sleep,
  startProgram,
  tempDir,
  text,
} from "../_helpers/index.ts";
import { buildBefore, kinds } from "./_setup.ts";

const TOKEN = "a-backend-api-token-0123";

for (const kind of kinds) {
  describe(`the backend API of mini-balancer as ${kind}`, () => {
    buildBefore(kind);
    const denoFlags = [`--allow-run=${process.execPath}`, "--unstable-net"];
    const [a, c] = [echoServer({ greeting: "a:" }), echoServer({ greeting: "c:" })];
    after(() => {
      a.close();
      c.close();
    });

    const configText = (port: number, adminPort: number, stateFile: string, workers: number) =>
      `workers = ${workers}\n[admin]\nbind_on = "127.0.0.1:${adminPort}"\ntoken = "${TOKEN}"\n` +
      `state_file = "${stateFile}"\n` +
      `[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
      `[[frontend.backend]]\nname = "a"\nforward_to = "${a.address}"\n`;

    /** Waits until the supervisor reaches both workers' own listeners. */
    const bothWorkers = async (admin: string) => {
      const deadline = Date.now() + 10_000;
      while ((await (await fetch(`${admin}/api/status`)).json()).workers !== 2) {
        assert.ok(Date.now() < deadline, "the supervisor reaches both workers");
        await sleep(20);
      }
    };

    const call = (url: string, method: string, body?: unknown) =>
      fetch(url, {
        method,
        headers: { authorization: `Bearer ${TOKEN}` },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });

    it("reaches every worker, is logged once, and survives a restart with state_file", {
      skip: kind === "node",
    }, async () => {
      const dir = await tempDir();
      const stateFile = join(dir.path, "state.json");
      const [port = 0, adminPort = 0] = await freePorts(2);
      const config = configText(port, adminPort, stateFile, 2);
      const admin = `http://127.0.0.1:${adminPort}`;
      // Deno writes the state file only where it may (its folder, with the temporary file).
      const flags = [...denoFlags, `--allow-write=${dir.path}`];
      let program = await startProgram(kind, config, [], flags);
      try {
        await eventually(
          () => program.stderr().split("listening for connections").length > 2,
          "both workers to listen",
        );
        await bothWorkers(admin);
        const added = await call(`${admin}/api/frontends/default/backends`, "POST", {
          name: "c",
          forward_to: c.address,
        });
        assert.equal(added.status, 201);
        assert.equal((await added.json()).source, "api");
        const patched = await call(`${admin}/api/frontends/default/backends/a`, "PATCH", {
          weight: 3,
        });
        assert.equal(patched.status, 200);
        await patched.body?.cancel();
        // Every worker has c: whichever takes a connection, round robin
        // over a and c sends half of each worker's connections to c.
        const replies: string[] = [];
        for (let i = 0; i < 24; i++) replies.push(text((await exchange(port, bytes("x"))).data));
        const toC = replies.filter((reply) => reply === "c:x").length;
        assert.equal(toC + replies.filter((reply) => reply === "a:x").length, 24);
        assert.ok(toC >= 10 && toC <= 14, `${toC} of 24 connections reached c`);
        // The supervisor logs the change once, with before and after.
        assert.equal(program.stderr().split('action="add backend"').length, 2);
        assert.match(
          program.stderr(),
          /action="patch backend" target=default\/a result=patched before="weight=1 /,
        );
        const drained = await call(`${admin}/api/frontends/default/backends/c/drain`, "POST");
        assert.equal(drained.status, 200);
        await drained.body?.cancel();
        const kept = JSON.parse(await readFile(stateFile, "utf8"));
        assert.equal(kept.version, 1);
        assert.deepEqual(kept.frontends.default.states, { c: "draining" });
        assert.equal(await program.stop("SIGTERM"), 0);
        await program.cleanup();

        program = await startProgram(kind, config, [], flags);
        await eventually(
          () => program.stderr().split("listening for connections").length > 2,
          "both workers to listen again",
        );
        await bothWorkers(admin);
        const status = await (await fetch(`${admin}/api/status`)).json();
        assert.deepEqual(
          status.frontends[0].backends.map((b: Record<string, unknown>) => [
            b.name,
            b.source,
            b.state,
            b.weight,
          ]),
          [["a", "config", "up", 3], ["c", "api", "draining", 1]],
        );
        const removed = await call(`${admin}/api/frontends/default/backends/c`, "DELETE");
        assert.equal(removed.status, 204);
        await eventually(
          () => !readFileSync(stateFile, "utf8").includes(c.address),
          "the state file to forget c",
        );
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
        await dir.cleanup();
      }
    });

    it("has the supervisor's prober probe a backend added through the API", {
      skip: kind === "node",
    }, async () => {
      const dir = await tempDir();
      const [port = 0, adminPort = 0, closed = 0] = await freePorts(3);
      const config = configText(port, adminPort, join(dir.path, "state.json"), 2) +
        '[frontend.health]\ninterval = "200ms"\nfall = 1\n';
      const admin = `http://127.0.0.1:${adminPort}`;
      const program = await startProgram(kind, config, [], [
        ...denoFlags,
        `--allow-write=${dir.path}`,
      ]);
      try {
        await eventually(
          () => program.stderr().split("listening for connections").length > 2,
          "both workers to listen",
        );
        await bothWorkers(admin);
        const added = await call(`${admin}/api/frontends/default/backends`, "POST", {
          name: "dead",
          forward_to: `127.0.0.1:${closed}`,
        });
        assert.equal(added.status, 201);
        await added.body?.cancel();
        // Workers do not probe: only the supervisor's prober can find it down.
        const deadline = Date.now() + 5_000;
        let state = "";
        while (state !== "down") {
          assert.ok(Date.now() < deadline, `the added backend is still ${state}`);
          await sleep(50);
          const status = await (await fetch(`${admin}/api/status`)).json();
          state = status.frontends[0].backends.find((b: { name: string }) => b.name === "dead")
            .state;
        }
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
        await dir.cleanup();
      }
    });

    it("keeps an added backend and a drain across a restart of one process", async () => {
      const dir = await tempDir();
      const stateFile = join(dir.path, "state.json");
      const [port = 0, adminPort = 0] = await freePorts(2);
      const config = configText(port, adminPort, stateFile, 1);
      const admin = `http://127.0.0.1:${adminPort}`;
      const flags = [`--allow-write=${dir.path}`];
      const adminUp = () => eventually(() => /admin listening/.test(program.stderr()), "admin");
      let program = await startProgram(kind, config, [], flags);
      try {
        await adminUp();
        const added = await call(`${admin}/api/frontends/default/backends`, "POST", {
          name: "c",
          forward_to: c.address,
        });
        assert.equal(added.status, 201);
        await added.body?.cancel();
        (await call(`${admin}/api/frontends/default/backends/a/drain`, "POST")).body?.cancel();
        assert.match(
          program.stderr(),
          /admin action peer=127\.0\.0\.1:\d+ action="add backend" target=default\/c result=added/,
        );
        assert.equal(await program.stop("SIGTERM"), 0);
        await program.cleanup();
        program = await startProgram(kind, config, [], flags);
        await adminUp();
        const status = await (await fetch(`${admin}/api/status`)).json();
        assert.deepEqual(
          status.frontends[0].backends.map((b: Record<string, unknown>) => [b.name, b.state]),
          [["a", "draining"], ["c", "up"]],
        );
        const replies: string[] = [];
        for (let i = 0; i < 4; i++) replies.push(text((await exchange(port, bytes("y"))).data));
        assert.deepEqual(replies, Array(4).fill("c:y"), "the drained a gets none");
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
        await dir.cleanup();
      }
    });

    it("refuses a corrupt state file at start and in check, in one line naming it", async () => {
      const dir = await tempDir();
      const stateFile = join(dir.path, "state.json");
      const [port = 0, adminPort = 0] = await freePorts(2);
      const file = join(dir.path, "lb.toml");
      await writeFile(file, configText(port, adminPort, stateFile, 1));
      await writeFile(stateFile, '{"version": 1, "frontends": ');
      try {
        for (const args of [["-c", file], ["check", "-c", file]]) {
          const { code, stderr } = await runProgram(kind, args, dir.path, denoFlags);
          assert.equal(code, 1, stderr);
          const lines = stderr.trim().split("\n");
          assert.equal(lines.length, 1, stderr);
          assert.match(lines[0]!, new RegExp(`state file "${stateFile}": is not JSON`));
        }
      } finally {
        await dir.cleanup();
      }
    });
  });
}
