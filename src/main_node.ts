/**
 * Entry for Node 20 and later, bundled to one JavaScript file first
 * (`npm run build:node`, then `node dist/mini-balancer.mjs`): Node 20 runs
 * no TypeScript.
 *
 * @module
 */
import process from "node:process";
import { main } from "./cli/main.ts";
import { nodeNet } from "./runtime/node/index.ts";
import { onReloadSignal, onShutdownSignal } from "./runtime/signals.ts";

process.exit(await main(process.argv.slice(2), { net: nodeNet, onShutdownSignal, onReloadSignal }));
