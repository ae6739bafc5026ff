/**
 * The real program's admin listener: metrics, status and the dashboard, and
 * [admin] applied on reload with its log lines at the default verbosity.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  bytes,
  configText,
  connect,
  eventually,
  exchange,
  freePorts,
  net,
  programCommand,
  signalProgram,
  sleep,
  startProgram,
  tempDir,
  text,
} from "../_helpers/index.ts";
import { buildBefore, kinds, programBackends } from "./_setup.ts";

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    const backends = programBackends();

    buildBefore(kind);

    it("serves metrics, status and the dashboard on its admin listener", async () => {
      const program = await startProgram(
        kind,
        configText([backends[0]!.address]) +
          '\n[admin]\nbind_on = "127.0.0.1:0"\ntoken = "an-e2e-token-0123"\n',
      );
      try {
        await eventually(() => /admin listening/.test(program.stderr()), "the admin line");
        const admin = `http://${/admin listening address=(\S+)/.exec(program.stderr())![1]}`;
        for (let i = 0; i < 3; i++) await exchange(program.port, bytes("m"));
        const metrics = await (await fetch(`${admin}/metrics`)).text();
        assert.match(
          metrics,
          /^mini_balancer_connections_accepted_total\{frontend="default"\} 3$/m,
        );
        assert.match(
          metrics,
          new RegExp(
            `^mini_balancer_build_info\\{.*runtime="${kind === "executable" ? "bun" : kind}"`,
            "m",
          ),
        );
        const status = await (await fetch(`${admin}/api/status`)).json();
        assert.equal(status.frontends[0].backends[0].total, 3);
        const page = await fetch(`${admin}/`);
        assert.match(page.headers.get("content-type")!, /^text\/html/);
        assert.match(await page.text(), /<title>mini-balancer<\/title>/);
        const drain = `${admin}/api/frontends/default/backends/${
          encodeURIComponent(backends[0]!.address)
        }/drain`;
        assert.equal((await fetch(drain, { method: "POST" })).status, 401);
        const drained = await fetch(drain, {
          method: "POST",
          headers: { authorization: "Bearer an-e2e-token-0123" },
        });
        assert.equal(drained.status, 200);
        assert.equal(
          text((await exchange(program.port, bytes("n"))).data),
          "",
          "drained: no backend",
        );
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
      }
    });

    it("applies [admin] on reload and logs actions and each reload's outcome once at the default verbosity", async () => {
      const [frontPort = 0, firstPort = 0, secondPort = 0] = await freePorts(3);
      const busy = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (c) => c.close() });
      const dir = await tempDir();
      const file = join(dir.path, "lb.toml");
      const tokenFile = join(dir.path, "token");
      const [oldToken, newToken] = ["the-first-admin-token", "the-second-admin-token"];
      await writeFile(tokenFile, `${oldToken}\n`, { mode: 0o644 });
      const config = (front: number, admin: number) =>
        configText([backends[0]!.address]).replace("127.0.0.1:0", `127.0.0.1:${front}`) +
        `\n[admin]\nbind_on = "127.0.0.1:${admin}"\ntoken_file = "${tokenFile}"\n`;
      await writeFile(file, config(frontPort, firstPort));
      // No -v: what is asserted below must show at the default verbosity.
      const [command, ...rest] = programCommand(kind);
      const child = spawn(command!, [...rest, "-c", file], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr!.on("data", (chunk) => (stderr += chunk));
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      const count = (pattern: RegExp) => stderr.split("\n").filter((l) => pattern.test(l)).length;
      const answers = async (port: number) => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/api/status`)).status === 200;
        } catch {
          return false;
        }
      };
      const until = async (condition: () => Promise<boolean> | boolean, what: string) => {
        const deadline = Date.now() + 15_000;
        while (!await condition()) {
          if (Date.now() > deadline) assert.fail(`${what} did not happen:\n${stderr}`);
          await sleep(50);
        }
      };
      const reload = async (pattern: RegExp) => {
        const before = count(pattern);
        signalProgram(child, "SIGHUP");
        await until(() => count(pattern) > before, `the line ${pattern}`);
      };
      const drain = (port: number, token: string) =>
        fetch(
          `http://127.0.0.1:${port}/api/frontends/default/backends/${
            encodeURIComponent(backends[0]!.address)
          }/drain`,
          { method: "POST", headers: { authorization: `Bearer ${token}` } },
        );
      try {
        await until(() => answers(firstPort), "the admin listener");
        assert.equal(count(/WARN .*admin.token_file is readable by group or others/), 1, stderr);
        // A page rebound by DNS sends its own name as Host: refused.
        const raw = await connect(firstPort);
        raw.conn.write(bytes("GET /api/status HTTP/1.1\r\nHost: evil.example\r\n\r\n"));
        await eventually(
          () => /^HTTP\/1\.1 403/.test(text(raw.received())),
          "a 403 for evil.example",
        );
        raw.conn.close();
        assert.equal((await drain(firstPort, oldToken)).status, 200);
        await until(() => count(/admin action/) === 1, "the action's line");
        assert.match(
          stderr,
          /INFO mini_balancer::operator: admin action peer=127\.0\.0\.1:\d+ action=drain target=default\/127\.0\.0\.1:\d+ result=draining/,
        );
        // A new token file and address: bind the new one, drop the old, and the old token.
        await writeFile(tokenFile, `${newToken}\n`);
        await writeFile(file, config(frontPort, secondPort));
        await reload(/reloaded config/);
        assert.match(stderr, /INFO mini_balancer::operator: reloaded config file=\S+ via=SIGHUP/);
        assert.equal(await answers(secondPort), true);
        assert.equal((await drain(secondPort, oldToken)).status, 401);
        assert.equal((await drain(secondPort, newToken)).status, 200);
        await until(async () => !await answers(firstPort), "the old admin address to close");
        // Partial: the frontend cannot move onto a taken port; the rest applies.
        await writeFile(file, config(busy.address.port, secondPort));
        await reload(/reload applied except/);
        assert.match(
          stderr,
          new RegExp(
            `WARN mini_balancer::operator: reload applied except: cannot listen on 127\\.0\\.0\\.1:${busy.address.port} for frontend "default": address already in use`,
          ),
        );
        // Rejected: nothing changes.
        await writeFile(file, "[frontend]\nbind_on = 7070\n");
        await reload(/reload rejected/);
        assert.match(stderr, /ERROR mini_balancer::operator: reload rejected: Cannot load config/);
        await writeFile(file, config(frontPort, secondPort));
        const api = await fetch(`http://127.0.0.1:${secondPort}/api/reload`, {
          method: "POST",
          headers: { authorization: `Bearer ${newToken}` },
        });
        assert.equal(api.status, 200);
        await until(() => count(/reloaded config/) === 2, "the API reload's line");
        assert.match(stderr, /reloaded config file=\S+ via=api peer=127\.0\.0\.1:\d+/);
        // Each outcome once: two applied, one partial, one rejected.
        assert.deepEqual(
          [/reloaded config/, /reload applied except/, /reload rejected/, /WARN .*token_file/].map(
            count,
          ),
          [2, 1, 1, 1],
          stderr,
        );
        signalProgram(child, "SIGTERM");
        assert.equal(await exited, 0);
      } finally {
        if (child.exitCode === null && child.signalCode === null) signalProgram(child, "SIGKILL");
        await exited;
        busy.close();
        await dir.cleanup();
      }
    });
  });
}
