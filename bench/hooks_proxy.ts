/**
 * The proxy the hooks bench (bench/hooks.ts) measures: a balancer embedded
 * in a program, with no hook, a trivial `select` (returns undefined) or a
 * trivial `admit` (returns true). Prints `ready` once listening.
 *
 * Usage: bun bench/hooks_proxy.ts none|select|admit LISTEN_PORT BACKEND_PORT
 *
 * @module
 */
import process from "node:process";
import { Balancer, type BalancerOptions, NO_EVENTS, parseConfig } from "../src/mod.ts";
import { currentNet } from "../src/runtime/current.ts";

const [mode, listen, backend] = process.argv.slice(2);
const config = parseConfig(`
[frontend]
bind_on = "127.0.0.1:${listen}"
[[frontend.backend]]
name = "echo"
forward_to = "127.0.0.1:${backend}"
`);
const hooks: Partial<BalancerOptions> = mode === "select"
  ? { select: () => undefined }
  : mode === "admit"
  ? { admit: () => true }
  : {};
// No events: the bench measures the path, not the log.
await Balancer.start(config, { net: await currentNet(), events: NO_EVENTS, ...hooks });
console.log("ready");
