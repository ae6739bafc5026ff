/**
 * Watching the config file (`--watch`) on the runtime that runs the tests:
 * one call per burst of writes, editors' renames seen, other files ignored.
 */
import assert from "node:assert/strict";
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { watchFile } from "../../../src/config/watch.ts";
import { eventually, sleep, tempDir } from "../../_helpers/index.ts";

describe("watchFile", () => {
  it("calls once per burst of writes, sees a rename over the file, ignores other files", async () => {
    const dir = await tempDir();
    const file = join(dir.path, "lb.toml");
    await writeFile(file, "1");
    let changes = 0;
    const errors: Error[] = [];
    const stop = watchFile(file, () => changes++, (error) => errors.push(error), 50);
    try {
      await sleep(100); // let the watcher settle
      await writeFile(file, "2");
      await writeFile(file, "3");
      await eventually(() => changes === 1, "one call for two quick writes");
      await writeFile(join(dir.path, "other.toml"), "x");
      await writeFile(`${file}.new`, "4");
      await rename(`${file}.new`, file);
      await eventually(() => changes === 2, "a call for the rename over the file");
      await sleep(200);
      assert.equal(changes, 2, "nothing for other files");
    } finally {
      stop();
    }
    await writeFile(file, "5");
    await sleep(200);
    assert.equal(changes, 2, "nothing once stopped");
    assert.deepEqual(errors, []);
    await dir.cleanup();
  });
});
