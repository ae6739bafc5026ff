/**
 * The control channel between a supervisor and a worker: a real child
 * process's standard output, read line by line by the runtime's spawner,
 * carries the worker's report of the admin port it bound itself.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { describe, it } from "node:test";
import type { SpawnProcess } from "../../../src/runtime/types.ts";
import { readWorkerReport, workerReport } from "../../../src/workers/worker.ts";

/** The spawner the entry file of this runtime uses. */
async function runtimeSpawn(): Promise<SpawnProcess> {
  if ("Deno" in globalThis) return (await import("../../../src/runtime/deno/index.ts")).denoSpawn;
  return (await import("../../../src/runtime/spawn.ts")).spawnProcess;
}

describe("a worker's report to its supervisor", () => {
  it("reads the admin port from a report line, and nothing from any other line", () => {
    assert.equal(readWorkerReport(workerReport(41_234)), 41_234);
    for (const line of ["", "hello", "{}", '{"adminPort":"80"}', '{"adminPort":0}', "null"]) {
      assert.equal(readWorkerReport(line), undefined, line);
    }
    assert.equal(readWorkerReport('{"adminPort":70000}'), undefined);
  });

  it("reaches the supervisor line by line over the child's standard output, however it is cut", async () => {
    const spawn = await runtimeSpawn();
    // A report cut in two writes 50 ms apart, then a line that is no report.
    const script = `process.stdout.write('{"adminPo');` +
      `setTimeout(() => process.stdout.write('rt":4242}\\nplain line\\n'), 50);`;
    const command = "Deno" in globalThis
      ? [process.execPath, "eval", script]
      : [process.execPath, "-e", script];
    const child = spawn(command);
    const lines: string[] = [];
    child.onLine((line) => lines.push(line));
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exit = await Promise.race([
      child.exited,
      new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), 10_000))),
    ]).finally(() => clearTimeout(timer));
    if (exit === "late") child.kill("SIGKILL");
    assert.deepEqual(exit, { code: 0, signal: null });
    // The lines are read before the exit is told, or at once after it.
    const deadline = performance.now() + 1000;
    while (lines.length < 2 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(lines, ['{"adminPort":4242}', "plain line"]);
    assert.equal(readWorkerReport(lines[0]!), 4242);
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 40 && elapsed < 10_000, `${elapsed} ms`);
  });
});
