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
import { main } from "../src/cli.ts";
import { currentNet } from "../src/runtime/current.ts";
import { onShutdownSignal } from "../src/runtime/signals.ts";
import { startEchoServer } from "./echo_server.ts";

const net = await currentNet();
const config = new URL("./mini-balancer.local.toml", import.meta.url).pathname;
const backends = [8080, 9090].map((port) => startEchoServer(net, { hostname: "127.0.0.1", port }));
console.error("demo: echo backends on 127.0.0.1:8080 and 127.0.0.1:9090");
console.error('demo: try  echo "first connection" | socat tcp:127.0.0.1:7070 -');

const code = await main(["-v", "-c", config], { net, onShutdownSignal });
for (const backend of backends) backend.close();
process.exit(code);
