/**
 * mini-balancer inside your own program: a frontend on a free port in front
 * of one backend, stopped after ten seconds.
 *
 *     bun examples/embed.ts
 *     deno run --allow-net examples/embed.ts
 *
 * In a Bun-only program, import `bunNet` from src/runtime/bun/index.ts instead of
 * `currentNet()`; in a Deno one, `denoNet` from src/runtime/deno/index.ts.
 *
 * @module
 */
import { Balancer, configureLogging, parseConfig } from "../src/mod.ts";
import { currentNet } from "../src/runtime/current.ts";

configureLogging({ verbosity: 1 }); // info: one line per connection event
const config = parseConfig(`
  [frontend]
  bind_on = "127.0.0.1:0"
  connect_timeout = "2s"

  [[frontend.backend]]
  forward_to = "127.0.0.1:8080"
`);
const balancer = await Balancer.start(config, { net: await currentNet() });
console.log(`balancing on port ${balancer.addresses[0]!.port}`);
setTimeout(() => balancer.stop({ graceMs: 1000 }), 10_000);
