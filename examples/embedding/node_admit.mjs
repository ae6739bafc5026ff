/**
 * A Node program (plain JavaScript) that builds its config with
 * `defineConfig` and turns clients away with an `admit` hook while it is in
 * maintenance: `kill -USR2 PID` switches maintenance on and off.
 *
 *     BACKENDS=127.0.0.1:9001,127.0.0.1:9002 node examples/embedding/node_admit.mjs
 *
 * @module
 */
import { Balancer, defineConfig } from "mini-balancer";
import { net } from "mini-balancer/node";

const backends = (process.env.BACKENDS ?? "127.0.0.1:9001").split(",");

const config = defineConfig({
  frontends: [{
    name: "shop",
    bind_on: `127.0.0.1:${process.env.LB_PORT ?? 7071}`,
    connect_timeout: 2000, // milliseconds, or "2s" as in a file
    idle_timeout: "10m",
    backend: backends.map((forward_to, i) => ({ name: `shop-${i + 1}`, forward_to })),
  }],
});

let maintenance = false;
process.on("SIGUSR2", () => {
  maintenance = !maintenance;
  console.log(`maintenance ${maintenance ? "on" : "off"}`);
});

const balancer = await Balancer.start(config, {
  net,
  // After the allow/deny lists and rates; a string refuses, and is the reason logged.
  admit: () => (maintenance ? "maintenance" : true),
});
console.log(`balancing on 127.0.0.1:${balancer.addresses[0].port}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await balancer.stop({ graceMs: 1000 });
    process.exit(0);
  });
}
