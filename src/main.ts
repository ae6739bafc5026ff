/**
 * Entry for Bun (`bun run src/main.ts`, and the compiled executable).
 *
 * @module
 */
import process from "node:process";
import { main } from "./cli/main.ts";
import { bunNet } from "./runtime/bun/index.ts";
import { onReloadSignal, onShutdownSignal } from "./runtime/signals.ts";
import { onControlLine, onParentGone } from "./runtime/bun/stdin.ts";
import { spawnProcess } from "./runtime/spawn.ts";

// The compiled executable runs its script from Bun's embedded file system:
// starting it again is starting the executable.
const script = process.argv[1];
const selfCommand = script === undefined || script.startsWith("/$bunfs/")
  ? [process.execPath]
  : [process.execPath, "run", script];

process.exit(
  await main(process.argv.slice(2), {
    net: bunNet,
    onShutdownSignal,
    onReloadSignal,
    onParentGone,
    onControlLine,
    selfCommand,
    spawn: spawnProcess,
  }),
);
