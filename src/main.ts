/**
 * Entry for Bun (`bun run src/main.ts`, and the compiled executable).
 *
 * @module
 */
import process from "node:process";
import { main } from "./cli.ts";
import { bunNet } from "./runtime/bun.ts";
import { onReloadSignal, onShutdownSignal } from "./runtime/signals.ts";

process.exit(await main(process.argv.slice(2), { net: bunNet, onShutdownSignal, onReloadSignal }));
