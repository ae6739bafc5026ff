/**
 * Regression tests for `workers = N` (issue 18): the supervisor's restart
 * backoff doubles (100, 200, 400 ms for a worker that exits at once), a
 * reload the supervisor refuses reaches no worker (its validation is
 * awaited), and workers whose supervisor probes the backends run no probes
 * of their own. The first two run the supervisor in this process over real
 * child processes (`sh`); the last runs the program.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import process from "node:process";
import { describe, it } from "node:test";
import { spawnProcess } from "../../../src/runtime/spawn.ts";
import type { ChildProcessHandle } from "../../../src/runtime/types.ts";
import { supervise } from "../../../src/workers/supervisor.ts";
import {
  eventually,
  freePort,
  net,
  type ProgramKind,
  signalProgram,
  sleep,
  startProgram,
  within,
} from "../../_helpers/index.ts";

/** A real spawn that records when each child started and exited, and the signals it was sent. */
function recordingSpawn() {
  const children: {
    started: number;
    exited?: number;
    signals: string[];
    handle: ChildProcessHandle;
  }[] = [];
  const spawn = (command: readonly string[]): ChildProcessHandle => {
    const handle = spawnProcess(command);
    const record = { started: performance.now(), signals: [] as string[], handle };
    children.push(record);
    handle.exited.then(() => (record as { exited?: number }).exited = performance.now());
    return {
      pid: handle.pid,
      exited: handle.exited,
      send: (line) => handle.send(line),
      onLine: (line) => handle.onLine(line),
      kill(signal) {
        record.signals.push(signal);
        handle.kill(signal);
      },
    };
  };
  return { spawn, children };
}

describe(`supervisor regressions on ${net.runtime}`, () => {
  it("restarts a worker that exits at once after 100, 200, then 400 ms", async () => {
    const { spawn, children } = recordingSpawn();
    let stop = () => {};
    const done = supervise({
      workers: 1,
      command: ["sh", "-c", "exit 3"],
      args: [],
      spawn,
      validate: () => Promise.resolve(true),
      onShutdownSignal: (registered) => {
        stop = registered;
        return () => {};
      },
    });
    try {
      await eventually(() => children.length >= 4, "three restarts", 3_000);
    } finally {
      stop();
      await within(done, 3_000, "the supervisor to stop");
    }
    const delays = [0, 1, 2].map((i) =>
      Math.round(children[i + 1]!.started - children[i]!.exited!)
    );
    [100, 200, 400].forEach((want, i) => {
      assert.ok(
        delays[i]! >= want - 25 && delays[i]! <= want + 150,
        `restart ${i + 1} came ${delays[i]} ms after the exit, want ${want} ms (all: ${delays})`,
      );
    });
  });

  it("a reload whose validation fails reaches no worker; one that passes reaches each once", async () => {
    const { spawn, children } = recordingSpawn();
    let stop = () => {};
    let reload: (() => void) | undefined;
    let valid = false;
    let validations = 0;
    const done = supervise({
      workers: 2,
      command: ["sh", "-c", "exec sleep 30"],
      args: [],
      spawn,
      async validate() {
        await new Promise((resolve) => setTimeout(resolve, 20));
        validations++;
        return valid;
      },
      onShutdownSignal: (registered) => {
        stop = registered;
        return () => {};
      },
      onReloadSignal: (registered) => {
        reload = registered;
        return () => {};
      },
    });
    try {
      await eventually(() => children.length === 2, "two workers", 3_000);
      await eventually(() => reload !== undefined, "the reload handler", 3_000);
      reload!();
      await eventually(() => validations === 1, "the refused validation", 3_000);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(
        children.map((child) => child.signals),
        [[], []],
        "a reload refused by validation sends no worker SIGHUP",
      );
      valid = true;
      reload!();
      await eventually(() => validations === 2, "the second validation", 3_000);
      await eventually(
        () => children.every((child) => child.signals.length === 1),
        "each worker's SIGHUP",
        3_000,
      );
      assert.deepEqual(children.map((child) => child.signals), [["SIGHUP"], ["SIGHUP"]]);
    } finally {
      stop();
      await within(done, 3_000, "the supervisor to stop");
    }
  });
});

describe(`workers regressions: the program on ${net.runtime}`, () => {
  const kind: ProgramKind = net.runtime === "deno" ? "deno" : "bun";
  /** Deno's workers need to start deno again, with SO_REUSEPORT. */
  const denoFlags = [`--allow-run=${process.execPath}`, "--unstable-net"];

  it("probes a backend once for all workers, before and after a reload; a refused reload logs once", async () => {
    // A backend that counts connections (probes: no client connects here).
    let connections = 0;
    const backend = net.listen({
      hostname: "127.0.0.1",
      port: 0,
      onConnection(conn) {
        connections++;
        conn.setHandlers({ data() {}, end: () => conn.end(), drain() {}, close() {} });
      },
    });
    const config = `workers = 2\n[frontend]\nbind_on = "127.0.0.1:${await freePort()}"\n` +
      `[frontend.health]\ninterval = "100ms"\n` +
      `[[frontend.backend]]\nname = "a"\nforward_to = "127.0.0.1:${backend.address.port}"\n`;
    const program = await startProgram(kind, config, [], denoFlags);
    try {
      await eventually(
        () => program.stderr().split("listening for connections").length > 2,
        "both workers to listen",
      );
      /** Probe connections in one second: one prober makes about 10 at 100 ms. */
      const perSecond = async () => {
        const before = connections;
        await sleep(1_000);
        return connections - before;
      };
      const first = await perSecond();
      assert.ok(
        first >= 5 && first <= 16,
        `${first} probe connections in 1 s, want ~10 (one prober)`,
      );
      // A reload the workers apply: they still leave probing to the supervisor.
      await writeFile(
        program.file,
        config.replace('interval = "100ms"', 'interval = "100ms"\nrise = 1'),
      );
      signalProgram(program.child, "SIGHUP");
      await eventually(
        () => program.stderr().split("reloaded config").length > 2,
        "both workers to reload",
        5_000,
      );
      const second = await perSecond();
      assert.ok(
        second >= 5 && second <= 16,
        `${second} probe connections in 1 s after a reload, want ~10`,
      );
      // A refused reload: the supervisor says so once, and no worker hears of it.
      await writeFile(program.file, (await readFile(program.file, "utf8")) + "bogus = 1\n");
      signalProgram(program.child, "SIGHUP");
      await eventually(
        () => /reload rejected/.test(program.stderr()),
        "the reload to be refused",
        5_000,
      );
      await sleep(300);
      const rejected = program.stderr().split("\n").filter((line) =>
        line.includes("reload rejected")
      );
      assert.equal(rejected.length, 1, `one "reload rejected" line:\n${rejected.join("\n")}`);
      assert.equal(await within(program.stop("SIGTERM"), 10_000, "the program to stop"), 0);
    } finally {
      await program.cleanup();
      backend.close();
    }
  });
});
