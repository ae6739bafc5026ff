/**
 * Entry for Deno (`deno task start`).
 *
 * @module
 */
import { main } from "./cli/main.ts";
import { denoNet, denoSpawn, denoWorkersUnavailable } from "./runtime/deno/index.ts";
import {
  onControlLine,
  onParentGone,
  onReloadSignal,
  onShutdownSignal,
} from "./runtime/signals.ts";

// Workers run with the permissions the deno task gives: sockets, reading
// the config, and SO_REUSEPORT (unstable in Deno 2.9).
const selfCommand = [
  Deno.execPath(),
  "run",
  "--no-prompt",
  "--allow-net",
  "--allow-read",
  "--unstable-net",
  Deno.mainModule,
];

Deno.exit(
  await main(Deno.args, {
    net: denoNet,
    onShutdownSignal,
    onReloadSignal,
    onParentGone,
    onControlLine,
    selfCommand,
    spawn: denoSpawn,
    workersUnavailable: denoWorkersUnavailable,
    // Read only when granted (--allow-env=NOTIFY_SOCKET,…): never a prompt at start.
    environment: (name) =>
      Deno.permissions.querySync({ name: "env", variable: name }).state === "granted"
        ? Deno.env.get(name)
        : undefined,
  }),
);
