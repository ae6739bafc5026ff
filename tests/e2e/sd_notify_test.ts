/**
 * systemd's notify protocol, as a service manager hears it: a python3
 * receiver binds the Unix datagram socket of `NOTIFY_SOCKET` (Bun cannot
 * bind one), prints each datagram with its sender's pid (SO_PASSCRED) and
 * its own CLOCK_MONOTONIC at arrival, and the real program runs with it set.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import {
  bytes,
  echoServer,
  eventually,
  exchange,
  freePort,
  net,
  programCommand,
  type ProgramKind,
  signalProgram,
  sleep,
  tempDir,
  text,
  within,
} from "../_helpers/index.ts";
import { buildBefore, kinds } from "./_setup.ts";
import { notifyReceiver as receiver } from "../_helpers/notify.ts";

/** Deno's permissions for sd_notify: its variables, and the socket's path. */
function denoFlags(socket: string): string[] {
  return [
    "--unstable-net",
    `--allow-run=${process.execPath}`,
    "--allow-env=NOTIFY_SOCKET,WATCHDOG_USEC,WATCHDOG_PID",
    ...(socket.startsWith("@") ? [] : [`--allow-write=${socket}`]),
  ];
}

/** Starts the program on `config` with NOTIFY_SOCKET (and `env`) set. */
async function startNotified(
  kind: ProgramKind,
  dir: string,
  socket: string,
  config: string,
  env: Record<string, string> = {},
) {
  const file = join(dir, "mini-balancer.toml");
  await writeFile(file, config);
  const [command, ...rest] = programCommand(kind, denoFlags(socket));
  const child: ChildProcess = spawn(command!, [...rest, "-c", file, "-v"], {
    cwd: dir,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, NOTIFY_SOCKET: socket, ...env },
  });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  exited.then((code) => (exitCode = code));
  return {
    child,
    file,
    stderr: () => stderr,
    exited,
    running: () => exitCode === undefined,
    async kill() {
      if (exitCode === undefined) signalProgram(child, "SIGKILL");
      await exited;
    },
  };
}

/** Whether `port` accepts a connection now. */
function accepts(port: number): Promise<boolean> {
  return net.connect({ hostname: "127.0.0.1", port }).then((c) => (c.close(), true), () => false);
}

for (const kind of kinds) {
  describe(`sd_notify as ${kind}`, () => {
    buildBefore(kind);
    const backend = echoServer({ greeting: "n:" });
    after(() => backend.close());
    const config = (port: number, extra = "") =>
      `${extra}[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
      `[[frontend.backend]]\nforward_to = "${backend.address}"\n`;

    /** A temporary folder, a receiver and a program, all cleaned up after `body`. */
    async function withProgram(
      socketName: string | undefined,
      extra: string,
      env: Record<string, string>,
      body: (
        r: Awaited<ReturnType<typeof receiver>>,
        p: Awaited<ReturnType<typeof startNotified>>,
        port: number,
      ) => Promise<void>,
    ) {
      const dir = await tempDir();
      const socket = socketName ?? join(dir.path, "notify.sock");
      const r = await receiver(socket);
      const port = await freePort();
      const p = await startNotified(kind, dir.path, socket, config(port, extra), env);
      try {
        await body(r, p, port);
      } finally {
        await p.kill();
        await r.close();
        await dir.cleanup();
      }
    }

    if (kind === "node") {
      it("says once that the Node build cannot notify, and serves", async () => {
        await withProgram(undefined, "", {}, async (r, p, port) => {
          await eventually(() => /listening for connections/.test(p.stderr()), "listening");
          assert.ok(await accepts(port));
          await eventually(
            () => /WARN .*NOTIFY_SOCKET is set but this runtime cannot send to it/.test(p.stderr()),
            "the WARN line",
          );
          await sleep(300);
          assert.equal(p.stderr().split("NOTIFY_SOCKET is set").length - 1, 1);
          assert.deepEqual(r.got, [], "the Node build sent something");
        });
      });
      return;
    }

    it("sends READY=1 once it listens, RELOADING=1 and READY=1 around reloads, STOPPING=1", async () => {
      await withProgram(undefined, "", {}, async (r, p, port) => {
        const ready = await r.nth("READY=1", 1);
        // The port accepts as soon as READY=1 arrives.
        assert.ok(await accepts(port), "READY=1 came before the port accepts");
        assert.equal(ready.pid, p.child.pid);
        assert.match(ready.message, /^STATUS=1 frontend, 0 open connections, 1\/1 backends up$/m);

        // A reload: RELOADING=1 with the time it started, then READY=1.
        await writeFile(p.file, config(port, "# changed\n"));
        signalProgram(p.child, "SIGHUP");
        const reloading = await r.nth("RELOADING=1", 1);
        const usec = /^MONOTONIC_USEC=(\d+)$/m.exec(reloading.message)?.[1];
        if (kind === "deno") {
          // Deno reads /proc/uptime only with --allow-all: RELOADING=1 alone,
          // which systemd takes as the current reload's (docs/operations.md).
          assert.equal(usec, undefined);
        } else {
          // Not later than its arrival (+10 ms of /proc/uptime's rounding up),
          // not more than half a second earlier (SIGHUP, the reload, the send).
          const at = reloading.at;
          assert.ok(Number(usec) <= at + 20_000, `MONOTONIC_USEC ${usec} after ${at}`);
          assert.ok(Number(usec) >= at - 500_000, `MONOTONIC_USEC ${usec} long before ${at}`);
        }
        const reloaded = await r.nth("READY=1", 2);
        assert.ok(reloaded.ms >= reloading.ms);
        assert.match(reloaded.message, /^STATUS=1 frontend/m);

        // A broken file: refused, still READY=1 after, still serving.
        await writeFile(p.file, "[frontend\n");
        signalProgram(p.child, "SIGHUP");
        await r.nth("RELOADING=1", 2);
        await r.nth("READY=1", 3);
        await eventually(() => /reload rejected/.test(p.stderr()), "the rejected reload's line");
        assert.ok(await accepts(port), "stopped serving after a rejected reload");

        signalProgram(p.child, "SIGTERM");
        await r.nth("STOPPING=1", 1);
        assert.equal(await p.exited, 0);
        const order = r.got.map((d) => d.message.split("\n")[0]!);
        assert.deepEqual(
          order.filter((m) => !m.startsWith("STATUS=")),
          ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"],
        );
      });
    });

    it("sends WATCHDOG=1 every half of WATCHDOG_USEC", async () => {
      await withProgram(undefined, "", { WATCHDOG_USEC: "400000" }, async (r) => {
        await r.nth("READY=1", 1);
        const first = await r.nth("WATCHDOG=1", 1, 5_000);
        await r.nth("WATCHDOG=1", 6, 5_000);
        const pings = r.having("WATCHDOG=1").slice(0, 6);
        const gaps = pings.slice(1).map((d, i) => (d.at - pings[i]!.at) / 1000);
        for (const gap of gaps) {
          assert.ok(gap >= 150 && gap <= 350, `a watchdog gap of ${gap} ms (want ~200)`);
        }
        assert.ok(first.pid > 0);
      });
    });

    it("sends no WATCHDOG=1 when WATCHDOG_PID names another process", async () => {
      await withProgram(
        undefined,
        "",
        { WATCHDOG_USEC: "200000", WATCHDOG_PID: "1" },
        async (r) => {
          await r.nth("READY=1", 1);
          await sleep(400);
          assert.deepEqual(r.having("WATCHDOG=1"), []);
        },
      );
    });

    it("warns once and keeps serving when nobody receives on NOTIFY_SOCKET", async () => {
      const dir = await tempDir();
      const socket = join(dir.path, "nobody.sock");
      const port = await freePort();
      const p = await startNotified(kind, dir.path, socket, config(port), {
        WATCHDOG_USEC: "100000",
      });
      try {
        await eventually(() => /listening for connections/.test(p.stderr()), "listening");
        // READY=1 and about ten watchdog pings fail: one line for them all.
        await sleep(600);
        assert.equal(p.stderr().split("cannot notify systemd").length - 1, 1, p.stderr());
        assert.match(p.stderr(), /WARN .*cannot notify systemd socket=\S*nobody\.sock/);
        assert.ok(await accepts(port));
        signalProgram(p.child, "SIGTERM");
        assert.equal(await p.exited, 0);
      } finally {
        await p.kill();
        await dir.cleanup();
      }
    });

    it("keeps serving when systemd stops reading its socket", async () => {
      const dir = await tempDir();
      const socket = join(dir.path, "deaf.sock");
      // Binds and never reads: the socket's queue (net.unix.max_dgram_qlen,
      // 10 by default) fills after a few pings, and a send would then wait.
      const deaf = spawn("python3", [
        "-c",
        "import socket, sys, time\n" +
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])\n" +
        "print('bound', flush=True); time.sleep(60)",
        socket,
      ], { stdio: ["ignore", "pipe", "inherit"] });
      let bound = "";
      deaf.stdout!.on("data", (chunk) => (bound += chunk));
      const deafExited = new Promise((resolve) => deaf.on("close", resolve));
      const port = await freePort();
      let p: Awaited<ReturnType<typeof startNotified>> | undefined;
      try {
        await eventually(() => bound.includes("bound"), "the deaf receiver to bind");
        p = await startNotified(kind, dir.path, socket, config(port), { WATCHDOG_USEC: "20000" });
        await eventually(() => /listening for connections/.test(p!.stderr()), "listening");
        // A hundred pings at 10 ms, most of them into a full queue.
        await sleep(1_000);
        const reply = await within(
          exchange(port, bytes("ping")),
          3_000,
          "a reply through the balancer while the notify socket is full",
        );
        assert.equal(text(reply.data), "n:ping");
        await eventually(
          () => /WARN .*cannot notify systemd .*queue is full/.test(p!.stderr()),
          "the WARN line of a full queue",
        );
        assert.equal(p.stderr().split("cannot notify systemd").length - 1, 1);
        signalProgram(p.child, "SIGTERM");
        assert.equal(await within(p.exited, 10_000, "the balancer to stop"), 0);
      } finally {
        await p?.kill();
        deaf.kill("SIGKILL");
        await deafExited;
        await dir.cleanup();
      }
    });

    it("reaches an abstract @name socket", async () => {
      const name = `@mini-balancer-test-${process.pid}-${kind}-${Date.now()}`;
      await withProgram(name, "", {}, async (r, p, port) => {
        const ready = await r.nth("READY=1", 1);
        assert.equal(ready.pid, p.child.pid);
        assert.ok(await accepts(port));
      });
    });

    it("with workers = 2, READY=1 comes once, from the supervisor, once both listen", async () => {
      const adminPort = await freePort();
      const token = "sd-notify-test-token-0123456789";
      const admin = `[admin]\nbind_on = "127.0.0.1:${adminPort}"\ntoken = "${token}"\n`;
      await withProgram(undefined, `workers = 2\n${admin}`, {}, async (r, p, port) => {
        const ready = await r.nth("READY=1", 1, 20_000);
        assert.equal(ready.pid, p.child.pid, "READY=1 from a worker, not the supervisor");
        assert.ok(await accepts(port));
        await eventually(
          () => p.stderr().split("listening for connections").length > 2,
          "both workers' listening lines",
        );
        const workers = [...p.stderr().matchAll(/started worker worker=\d+ pid=(\d+)/g)]
          .map((m) => Number(m[1]));
        assert.equal(workers.length, 2);
        // Both workers listened before READY=1 left (the log's clock is the receiver's).
        const listened = [...p.stderr().matchAll(/^(\S+) .*listening for connections/gm)]
          .map((m) => Date.parse(m[1]!));
        assert.equal(listened.length, 2);
        for (const at of listened) {
          assert.ok(at <= ready.ms, `a worker listened ${at - ready.ms} ms after READY=1`);
        }

        // A reload goes through the workers: READY=1 again once they reloaded.
        signalProgram(p.child, "SIGHUP");
        await r.nth("RELOADING=1", 1);
        const reloaded = await r.nth("READY=1", 2);
        await eventually(
          () => p.stderr().split("reloaded config").length > 2,
          "both workers' reloaded lines",
        );
        for (const m of p.stderr().matchAll(/^(\S+) .*reloaded config/gm)) {
          const late = Date.parse(m[1]!) - reloaded.ms;
          assert.ok(late <= 0, `a worker reloaded ${late} ms after READY=1`);
        }
        // A reload through the API is told as well.
        const response = await fetch(`http://127.0.0.1:${adminPort}/api/reload`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(response.status, 200, await response.text());
        await r.nth("RELOADING=1", 2);
        await r.nth("READY=1", 3);
        signalProgram(p.child, "SIGTERM");
        await r.nth("STOPPING=1", 1);
        assert.equal(await p.exited, 0);
        for (const d of r.got) assert.equal(d.pid, p.child.pid, `${d.message} from a worker`);
        assert.equal(r.having("READY=1").length, 3);
      });
    });
  });
}
