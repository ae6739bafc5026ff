/**
 * A Deno program that routes TLS connections by their server name (SNI) to
 * a tenant's backend with a `select` hook, without terminating TLS: the
 * ClientHello is read, then the bytes go through untouched.
 *
 *     TENANT_A=127.0.0.1:9001 TENANT_B=127.0.0.1:9002 DEFAULT=127.0.0.1:9003 \
 *       deno run --allow-net --allow-env examples/embedding/deno_sni.ts
 *
 * @module
 */
import { Balancer, defineConfig } from "mini-balancer";
import { net } from "mini-balancer/deno";

const env = (name: string, fallback: string) => Deno.env.get(name) ?? fallback;

/** Which tenant's backend serves which server name. */
const TENANTS: Record<string, string> = { "a.test": "tenant-a", "b.test": "tenant-b" };

const config = defineConfig({
  frontends: [{
    name: "tls",
    bind_on: `127.0.0.1:${env("LB_PORT", "8443")}`,
    protocol: "tls", // read the ClientHello before a backend is chosen
    header_timeout: 5000, // milliseconds to send it
    backend: [
      { name: "tenant-a", forward_to: env("TENANT_A", "127.0.0.1:9001") },
      { name: "tenant-b", forward_to: env("TENANT_B", "127.0.0.1:9002") },
      { name: "default", forward_to: env("DEFAULT", "127.0.0.1:9003") },
    ],
  }],
});

const balancer = await Balancer.start(config, {
  net,
  // Synchronous, once per connection; an unknown name goes to "default".
  select: (ctx) => TENANTS[ctx.preamble.serverName ?? ""] ?? "default",
});
console.log(`routing by SNI on 127.0.0.1:${balancer.addresses[0]!.port}`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, async () => {
    await balancer.stop({ graceMs: 1000 });
    Deno.exit(0);
  });
}
