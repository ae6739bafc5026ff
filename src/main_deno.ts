/**
 * Entry for Deno (`deno task start`).
 *
 * @module
 */
import { main } from "./cli.ts";
import { denoNet } from "./runtime/deno.ts";
import { onReloadSignal, onShutdownSignal } from "./runtime/signals.ts";

Deno.exit(await main(Deno.args, { net: denoNet, onShutdownSignal, onReloadSignal }));
