/**
 * Out of file descriptors (issue 17, item 3): the real program runs under
 * `ulimit -n 256` with an `[admin]` listener, and idle clients take every
 * descriptor. It must pause accepting (logging it once), use little CPU,
 * stay alive, not blame the backend for its own shortage, and serve again
 * by itself once the idle clients leave. Under `bun test`: Bun, the compiled
 * executable and the Node bundle; under `deno test`: Deno.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { describe, it } from "node:test";
import { AcceptPause, isOutOfDescriptors } from "../../src/runtime/_accept_pause.ts";
import { Balancer } from "../../src/balancer/balancer.ts";
import { NO_EVENTS } from "../../src/balancer/events.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Conn, Endpoint, Net } from "../../src/runtime/types.ts";
import {
  bytes,
  configText,
  connect,
  echoServer,
  eventually,
  freePorts,
  net,
  programCommand,
  type ProgramKind,
  ROOT,
  signalProgram,
  sleep,
  tempDir,
  text,
  within,
} from "../_helpers/index.ts";

const kinds: ProgramKind[] = net.runtime === "bun" ? ["bun", "executable", "node"] : ["deno"];

/** The descriptor limit the program runs under. */
const LIMIT = 256;

/** How the executable and the Node bundle are built (as tests/e2e/_setup.ts does, when stale). */
const BUILDS: Partial<Record<ProgramKind, { file: string; args: string[] }>> = {
  executable: { file: "dist/mini-balancer", args: ["--compile", "--minify", "src/main.ts"] },
  node: { file: "dist/mini-balancer.mjs", args: ["--target=node", "src/main_node.ts"] },
};

async function newestChange(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) return 0;
  if (!info.isDirectory()) return info.mtimeMs;
  const times = await Promise.all((await readdir(path)).map((e) => newestChange(join(path, e))));
  return Math.max(info.mtimeMs, ...times);
}

async function build(kind: ProgramKind): Promise<void> {
  const spec = BUILDS[kind];
  if (spec === undefined) return;
  const file = join(ROOT, spec.file);
  const built = (await stat(file).catch(() => undefined))?.mtimeMs ?? -1;
  if (built >= await newestChange(join(ROOT, "src"))) return;
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, ["build", ...spec.args, "--outfile", file], { cwd: ROOT }, (e) => {
      if (e) reject(new Error(`cannot build ${file}: ${e.message}`));
      else resolve();
    });
  });
}

/** utime + stime of a process, in clock ticks (1/100 s), read by a child (Deno asks --allow-all for /proc). */
function cpuTicks(pid: number): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile("cat", [`/proc/${pid}/stat`], (error, stdout) => {
      if (error) return reject(error);
      // The fields after the command name in parentheses: utime and stime are the 12th and 13th.
      const fields = stdout.slice(stdout.lastIndexOf(")") + 2).split(" ");
      resolve(Number(fields[11]) + Number(fields[12]));
    });
  });
}

/** Idle connections to a port: opened without waiting (a paused listener leaves them queued). */
class Crowd {
  readonly conns: Conn[] = [];
  #closed = false;
  constructor(to: number | Endpoint, count: number) {
    const endpoint = typeof to === "number" ? { hostname: "127.0.0.1", port: to } : to;
    for (let i = 0; i < count; i++) {
      net.connect(endpoint).then((conn) => {
        conn.setHandlers({ data() {}, end() {}, drain() {}, close() {} });
        if (this.#closed) conn.reset();
        else this.conns.push(conn);
      }, () => {});
    }
  }
  close(): void {
    this.#closed = true;
    for (const conn of this.conns) conn.reset();
  }
}

/** Starts the program under `ulimit -n LIMIT` and waits until all three listeners are up. */
async function startLimited(kind: ProgramKind, config: (dir: string) => string) {
  const dir = await tempDir();
  const file = join(dir.path, "mini-balancer.toml");
  await writeFile(file, config(dir.path));
  const command = programCommand(kind, [`--allow-write=${dir.path}`]);
  const child: ChildProcess = spawn(
    "bash",
    ["-c", `ulimit -n ${LIMIT} && exec "$@"`, "bash", ...command, "-c", file, "-v"],
    { cwd: dir.path, stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  exited.then((code) => (exitCode = code));
  const ready = () =>
    (stderr.match(/listening for connections/g) ?? []).length >= 3 &&
    /admin listening/.test(stderr);
  await eventually(() => ready() || exitCode !== undefined, "the balancer to listen", 20_000);
  if (exitCode !== undefined) throw new Error(`the balancer did not start:\n${stderr}`);
  return {
    dir: dir.path,
    pid: child.pid!,
    stderr: () => stderr,
    alive: () => exitCode === undefined,
    async cleanup() {
      if (exitCode === undefined) signalProgram(child, "SIGKILL");
      await exited;
      await dir.cleanup();
    },
  };
}

/** Sends a line through the frontend and resolves with what came back, or rejects. */
async function echoOnce(to: number | Endpoint): Promise<string> {
  const client = await connect(to);
  client.conn.write(bytes("still here\n"));
  client.conn.end();
  await client.closed;
  return text(client.received());
}

/** GET /api/status, or undefined when it does not answer within a second. */
async function status(port: number): Promise<{ frontends: unknown[] } | undefined> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 1000);
  try {
    const response = await fetch(`http://127.0.0.1:${port}/api/status`, {
      signal: controller.signal,
    });
    return response.ok ? await response.json() : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

describe("AcceptPause", () => {
  it("pauses 100 ms, doubling to 1 s while accepting fails, and starts again after an accept", () => {
    const pause = new AcceptPause(() => "127.0.0.1:1");
    assert.equal(pause.failing, false);
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => pause.pause()), [100, 200, 400, 800, 1000, 1000]);
    assert.equal(pause.failing, true);
    pause.accepted();
    assert.equal(pause.failing, false);
    assert.equal(pause.pause(), 100);
  });

  it("tells out of descriptors from other errors, as each runtime reports it", () => {
    const coded = (code: string) => Object.assign(new Error("x"), { code });
    assert.ok(isOutOfDescriptors(coded("EMFILE")));
    assert.ok(isOutOfDescriptors(coded("ENFILE")));
    assert.ok(isOutOfDescriptors(new Error("Http: Too many open files (os error 24)")));
    assert.ok(!isOutOfDescriptors(coded("ECONNREFUSED")));
    assert.ok(!isOutOfDescriptors("EMFILE"));
  });
});

describe("a backend connect out of file descriptors", () => {
  it("closes that client at once, tries no other backend, and takes no backend down", async () => {
    const backends = [echoServer(), echoServer()];
    let short = true;
    let attempts = 0;
    const emfile = () =>
      Object.assign(new Error("Too many open files"), { code: "EMFILE", errno: -24 });
    const shortNet: Net = {
      runtime: net.runtime,
      listen: (options) => net.listen(options),
      connect(endpoint) {
        if (short) attempts++;
        return short ? Promise.reject(emfile()) : net.connect(endpoint);
      },
    };
    let downs = 0;
    let failures = 0;
    const balancer = await Balancer.start(
      parseConfig(configText(backends.map((b) => b.address), "", "")),
      {
        net: shortNet,
        events: { ...NO_EVENTS, backendDown: () => downs++, connectFailed: () => failures++ },
      },
    );
    try {
      const port = balancer.addresses[0]!.port;
      for (let i = 0; i < 6; i++) {
        const client = await connect(port);
        await within(client.ended, 3_000, `client ${i} to be turned away`);
        client.conn.close();
        assert.equal(client.receivedLength(), 0);
      }
      assert.equal(failures, 6, "each client's connect was tried and failed");
      assert.equal(attempts, 6, "a client was retried on another backend");
      assert.equal(downs, 0, "a local shortage took a backend down");
      short = false;
      assert.equal(await within(echoOnce(port), 3_000, "a client served"), "still here\n");
    } finally {
      await balancer.stop({ graceMs: 0 });
      for (const backend of backends) backend.close();
    }
  });
});

const PAUSED_ONCE = /accept paused: out of file descriptors/;
const PAUSED = /accept paused: out of file descriptors.*address=(\S+)/g;

for (const kind of kinds) {
  describe(`out of file descriptors (${kind})`, () => {
    it("pauses accepting, stays alive and cool, blames no backend, and serves again", async () => {
      await build(kind);
      const backend = echoServer();
      const [plainPort, heldPort, adminPort] = await freePorts(3);
      // "held" keeps each client waiting for a PROXY header: one descriptor
      // each, no backend, so that accepting itself runs out.
      // "local" is a Unix socket frontend, paused and resumed alike.
      const program = await startLimited(
        kind,
        (dir) =>
          `[[frontends]]\nname = "plain"\nbind_on = "127.0.0.1:${plainPort}"\n` +
          `[[frontends.backend]]\nforward_to = "${backend.address}"\n\n` +
          `[[frontends]]\nname = "held"\nbind_on = "127.0.0.1:${heldPort}"\n` +
          `accept_proxy = true\ntrusted = ["127.0.0.1/32"]\nheader_timeout = "30s"\n` +
          `[[frontends.backend]]\nforward_to = "${backend.address}"\n\n` +
          `[[frontends]]\nname = "local"\nbind_on = "unix:${dir}/lb.sock"\n` +
          `[[frontends.backend]]\nforward_to = "${backend.address}"\n\n` +
          `[admin]\nbind_on = "127.0.0.1:${adminPort}"\n`,
      );
      const socket = { hostname: "", port: 0, path: join(program.dir, "lb.sock") };
      const crowds: Crowd[] = [];
      try {
        // Each proxied client costs two descriptors: a backend connect may
        // run out first, with EMFILE, which is not the backend's fault.
        crowds.push(new Crowd(plainPort!, 150));
        const tail = () => program.stderr().slice(-1500);
        await sleep(1000);
        // Then accepting runs out: these wait in the backlog (Node's libuv
        // accepts and closes a first wave itself; a second one finds it out).
        crowds.push(new Crowd(heldPort!, 200));
        await sleep(300);
        crowds.push(new Crowd(heldPort!, 100));
        crowds.push(new Crowd(socket, 20));
        const adminDuring = status(adminPort!); // queued too; Deno's admin died of it
        // Logged at once here; nothing at all before the fix.
        await eventually(() => PAUSED_ONCE.test(program.stderr()), "a pause", 3_000).catch(
          () => {},
        );
        await sleep(300);
        const linesBefore = [...program.stderr().matchAll(PAUSED)].length;
        // A dead process has no /proc entry: the alive check below says so.
        const before = await cpuTicks(program.pid).catch(() => NaN);
        const started = performance.now();
        await sleep(2000);
        assert.ok(program.alive(), `the balancer died; its log ends:\n${tail()}`);
        const ticks = (await cpuTicks(program.pid)) - before;
        const seconds = (performance.now() - started) / 1000;
        const share = ticks / 100 / seconds;
        if (process.env.EMFILE_REPORT) {
          console.log(`${kind}: ${Math.round(share * 100)} % of a core`);
        }
        assert.ok(
          share < 0.2,
          `it used ${Math.round(share * 100)} % of a core while out of descriptors`,
        );
        assert.match(
          program.stderr(),
          PAUSED_ONCE,
          `no pause was logged; the log ends:\n${tail()}`,
        );
        const linesAfter = [...program.stderr().matchAll(PAUSED)].length;
        assert.equal(linesAfter, linesBefore, "the pause was logged again within one episode");
        await adminDuring;

        for (const crowd of crowds) crowd.close();
        const released = performance.now();
        let answer = "";
        while (answer !== "still here\n" && performance.now() - released < 5_000) {
          answer = await echoOnce(plainPort!).catch(() => "");
          if (answer !== "still here\n") await sleep(50);
        }
        assert.equal(answer, "still here\n", "no client was served within 5 s of the release");
        assert.equal(
          await within(echoOnce(socket), 3_000, "the Unix socket frontend"),
          "still here\n",
        );
        const served = await status(adminPort!);
        assert.ok(served !== undefined, "/api/status did not answer after the release");
        assert.ok(program.alive(), "the balancer died after the release");

        const log = program.stderr();
        assert.doesNotMatch(log, /backend is down/, "a local shortage took the backend down");
        const perAddress = new Map<string, number>();
        for (const [, address] of log.matchAll(PAUSED)) {
          perAddress.set(address!, (perAddress.get(address!) ?? 0) + 1);
        }
        for (const address of [`127.0.0.1:${heldPort}`, socket.path]) {
          assert.ok(
            perAddress.has(address),
            `no pause logged for ${address}: ${[...perAddress.keys()]}`,
          );
        }
        // One episode: one line for each listener, however often it flapped.
        for (const [address, count] of perAddress) {
          assert.equal(count, 1, `${count} pause lines for ${address}`);
        }
        // Deno reads /proc/self/limits only with --allow-all: it cannot tell.
        const limit = kind === "deno" ? "unknown" : String(LIMIT);
        assert.match(log, new RegExp(`accept paused: out of file descriptors.*limit=${limit} `));
      } finally {
        for (const crowd of crowds) crowd.close();
        await program.cleanup();
        backend.close();
      }
    });
  });
}
