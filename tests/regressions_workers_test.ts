/**
 * Regression tests for `workers = N` (issue 18): the supervisor's restart
 * backoff doubles (100, 200, 400 ms for a worker that exits at once), a
 * reload the supervisor refuses reaches no worker (its validation is
 * awaited), and workers whose supervisor probes the backends run no probes
 * of their own. The first two run the supervisor in this process over real
 * child processes (`sh`); the last runs the program.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { spawnProcess } from "../src/runtime/spawn.ts";
import type { ChildProcessHandle } from "../src/runtime/types.ts";
import { supervise } from "../src/supervisor.ts";
import { eventually, net, within } from "./_helpers.ts";

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
