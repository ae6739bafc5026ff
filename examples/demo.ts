/**
 * The original walkthrough in one command (`npm run demo`): two echo
 * backends on 127.0.0.1:8080 and :9090 and mini-balancer on :7070 in front
 * of them, logging at -v so round-robin shows. Try, in another terminal:
 *
 *     echo "first connection" | socat tcp:127.0.0.1:7070 -
 *     echo "second connection" | socat tcp:127.0.0.1:7070 -
 *
 * Runs under Bun (`bun examples/demo.ts`) and Deno
 * (`deno run --allow-net --allow-read examples/demo.ts`). Ctrl-C stops it.
 *
 * @module
 */
import process from "node:process";
import { main } from "../src/cli/main.ts";
import { formatAddress } from "../src/address/address.ts";
import { reasonOf } from "../src/errors.ts";
import { currentNet } from "../src/runtime/current.ts";
import { onReloadSignal, onShutdownSignal } from "../src/runtime/signals.ts";
import type { Endpoint, Listener, Net } from "../src/runtime/types.ts";
import { startEchoServer } from "./echo_server.ts";

/** Where the demo's echo backends listen, as mini-balancer.local.toml expects. */
export const DEMO_BACKENDS: readonly Endpoint[] = [
  { hostname: "127.0.0.1", port: 8080 },
  { hostname: "127.0.0.1", port: 9090 },
];

/**
 * Starts one echo backend on each endpoint, or none: when one cannot
 * listen, those already started are closed again.
 *
 * @param net the runtime's sockets
 * @param endpoints where to listen
 * @returns the listeners, to close when the demo ends
 * @throws {Error} with a one-line message fit to print, e.g.
 * `demo: cannot listen on 127.0.0.1:8080: address already in use`
 */
export function startBackends(net: Net, endpoints: readonly Endpoint[]): Listener[] {
  const started: Listener[] = [];
  for (const endpoint of endpoints) {
    try {
      started.push(startEchoServer(net, endpoint));
    } catch (error) {
      for (const listener of started) listener.close();
      const address = formatAddress(endpoint);
      throw new Error(`demo: cannot listen on ${address}: ${reasonOf(error)}`, { cause: error });
    }
  }
  return started;
}

if (import.meta.main) {
  const net = await currentNet();
  const config = new URL("./mini-balancer.local.toml", import.meta.url).pathname;
  let backends: Listener[];
  try {
    backends = startBackends(net, DEMO_BACKENDS);
  } catch (error) {
    console.error((error as Error).message);
    process.exit(1);
  }
  console.error("demo: echo backends on 127.0.0.1:8080 and 127.0.0.1:9090");
  console.error('demo: try  echo "first connection" | socat tcp:127.0.0.1:7070 -');

  const code = await main(["-v", "-c", config], { net, onShutdownSignal, onReloadSignal });
  for (const backend of backends) backend.close();
  process.exit(code);
}
