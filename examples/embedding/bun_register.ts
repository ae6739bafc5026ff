/**
 * A Bun HTTP service that runs a balancer and registers its backends from
 * its own `POST /register` endpoint (JSON `{"name", "forward_to"}`);
 * `DELETE /register/NAME` takes one out (it drains first).
 *
 *     bun examples/embedding/bun_register.ts
 *     curl -X POST localhost:8070/register -d '{"name":"a","forward_to":"127.0.0.1:9001"}'
 *     nc localhost 7070
 *
 * Until a backend is registered, clients reach a backup that says so.
 *
 * @module
 */
import { BackendChangeError, Balancer, configureLogging, defineConfig } from "mini-balancer";
import { net } from "mini-balancer/bun";

// Warnings, and each backend change (who: library) as the admin API logs its own.
configureLogging({ verbosity: 0 });

const LB_PORT = Number(Bun.env.LB_PORT ?? 7070);
const REGISTRY_PORT = Number(Bun.env.REGISTRY_PORT ?? 8070);

// A frontend needs one backend: a backup, taken only while no other is up.
const nobody = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    open(socket) {
      socket.end("no backend is registered yet\n");
    },
    data() {},
  },
});

const balancer = await Balancer.start(
  defineConfig({
    frontends: [{
      name: "app",
      bind_on: `127.0.0.1:${LB_PORT}`,
      connect_timeout: 2000,
      backend: [{ name: "nobody", forward_to: `127.0.0.1:${nobody.port}`, backup: true }],
    }],
  }),
  { net },
);
const app = balancer.frontend("app");

/** Runs a change; a refused one answers with the admin API's status and message. */
function answer(change: () => unknown, status: number): Response {
  try {
    const value = change();
    return Response.json({ ok: true, ...(typeof value === "string" && { name: value }) }, {
      status,
    });
  } catch (error) {
    if (!(error instanceof BackendChangeError)) throw error;
    return Response.json({ error: error.message }, { status: error.status });
  }
}

const registry = Bun.serve({
  hostname: "127.0.0.1",
  port: REGISTRY_PORT,
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (request.method === "POST" && pathname === "/register") {
      const body = await request.json().catch(() => undefined);
      if (typeof body !== "object" || body === null) {
        return Response.json({ error: "the body must be a JSON object" }, { status: 400 });
      }
      const { name, forward_to } = body as { name?: unknown; forward_to?: unknown };
      return answer(() => app.addBackend({ name, forward_to }), 201);
    }
    if (request.method === "DELETE" && pathname.startsWith("/register/")) {
      const name = decodeURIComponent(pathname.slice("/register/".length));
      return answer(() => app.removeBackend(name), 200);
    }
    return Response.json({ error: "not found" }, { status: 404 });
  },
});

console.log(
  `balancing on 127.0.0.1:${balancer.addresses[0]!.port}, ` +
    `registering on http://127.0.0.1:${registry.port}/register`,
);

async function shutdown(): Promise<void> {
  await registry.stop();
  await balancer.stop({ graceMs: 1000 });
  nobody.stop(true);
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
