/**
 * The admin listener: a web-standard fetch handler served by the runtime's
 * own HTTP server (through {@linkcode Net.serveHttp}), so the core stays
 * runtime-free. Read-only endpoints answer anyone who can reach the
 * address (loopback by default); the ones that change state need the
 * bearer token, compared in constant time.
 *
 * - `GET /metrics`: Prometheus text exposition
 * - `GET /api/status`: every frontend and backend as JSON
 * - `POST /api/frontends/{frontend}/backends/{backend}/drain|disable|enable`
 * - `POST /api/reload`: what SIGHUP does, answered with the result
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { AdminState } from "../balancer/backend.ts";
import type { Balancer, ReloadSummary } from "../balancer/balancer.ts";
import type { HttpServer, Net } from "../runtime/types.ts";
import { VERSION } from "../version.ts";
import type { Metrics } from "./metrics.ts";

/** The outcome of a reload asked through the API. */
export interface ReloadResult {
  /** Whether the new config was applied (a rejected file changes nothing). */
  success: boolean;
  /** What changed, when applied. */
  summary?: ReloadSummary;
  /** Why the file was rejected. */
  error?: string;
}

/** What the admin listener serves from. */
export interface AdminOptions {
  /** Where to listen. */
  hostname: string;
  /** The port; 0 takes a free one. */
  port: number;
  /** The bearer token for the endpoints that change state; none: they answer 403. */
  token: string | undefined;
  /** The runtime's sockets (its `serveHttp`). */
  net: Net;
  /** The balancer to show and steer. */
  balancer: Balancer;
  /** The metrics subscriber feeding `/metrics` and the status tallies. */
  metrics: Metrics;
  /** Reloads the config file, as SIGHUP does. */
  reload(): Promise<ReloadResult>;
  /** The last reload, for the status. */
  lastReload(): LastReload | null;
  /** The dashboard page served at `/`, if any. */
  dashboard?: string;
}

/** The last reload, as `/api/status` shows it. */
export interface LastReload {
  success: boolean;
  at: string;
  summary: string;
}

const ACTIONS: Record<string, AdminState> = {
  drain: "draining",
  disable: "disabled",
  enable: "enabled",
};

const BACKEND_ACTION = /^\/api\/frontends\/([^/]+)\/backends\/([^/]+)\/(drain|disable|enable)$/;

/**
 * A JSON response, pretty-printed.
 *
 * @param body what to send
 * @param status the HTTP status
 */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** Compares a presented token with the expected one in constant time. */
function tokenMatches(presented: string, expected: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text).digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/**
 * Whether a request may change state: undefined when it carries the token,
 * else the refusal to send (403 without a configured token, 401 with a
 * wrong or missing one).
 *
 * @param request the request
 * @param token the configured token, if any
 */
export function refusal(request: Request, token: string | undefined): Response | undefined {
  if (token === undefined) {
    return json({ error: "no token is configured: set [admin] token to allow changes" }, 403);
  }
  const header = request.headers.get("authorization") ?? "";
  const presented = header.startsWith("Bearer ") ? header.slice(7) : "";
  if (!tokenMatches(presented, token)) {
    return json({ error: "a valid bearer token is required" }, 401);
  }
  return undefined;
}

/**
 * Starts the admin listener.
 *
 * @param options what to serve and where
 * @returns the running server
 * @throws {Error} when the runtime has no HTTP server, or the address cannot be bound
 */
export function startAdmin(options: AdminOptions): HttpServer {
  const { net, balancer, metrics } = options;
  if (net.serveHttp === undefined) {
    throw new Error(`the admin listener is not available on ${net.runtime}`);
  }
  const started = performance.now();

  const status = () => ({
    version: VERSION,
    runtime: net.runtime,
    uptime_s: Math.round((performance.now() - started) / 100) / 10,
    last_reload: options.lastReload(),
    frontends: balancer.status().map((frontend) => {
      const tally = metrics.frontendTally(frontend.name);
      return {
        ...frontend,
        accepted: tally.accepted,
        bytes_from_client: tally.bytesFromClient,
        bytes_from_backend: tally.bytesFromBackend,
        backends: frontend.backends.map((backend) => {
          const b = metrics.backendTally(frontend.name, backend.name);
          return {
            ...backend,
            total: b.total,
            bytes_from_client: b.bytesFromClient,
            bytes_from_backend: b.bytesFromBackend,
            last_check: b.lastCheck,
          };
        }),
      };
    }),
  });

  const refuse = (request: Request) => refusal(request, options.token);

  const handle = async (request: Request): Promise<Response> => {
    const { pathname } = new URL(request.url);
    if (request.method === "GET") {
      if (pathname === "/metrics") {
        return new Response(await metrics.registry.metrics(), {
          headers: { "content-type": metrics.registry.contentType },
        });
      }
      if (pathname === "/api/status") return json(status());
      if (pathname === "/" && options.dashboard !== undefined) {
        return new Response(options.dashboard, {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      }
      return json({ error: "not found" }, 404);
    }
    if (request.method !== "POST") return json({ error: "method not allowed" }, 405);
    const action = BACKEND_ACTION.exec(pathname);
    if (action === null && pathname !== "/api/reload") return json({ error: "not found" }, 404);
    const refusal = refuse(request);
    if (refusal !== undefined) return refusal;
    if (action === null) {
      const result = await options.reload();
      return json(result, result.success ? 200 : 422);
    }
    const [, frontend, backend, verb] = action;
    const name = (part: string) => decodeURIComponent(part);
    if (!balancer.setBackendState(name(frontend!), name(backend!), ACTIONS[verb!]!)) {
      return json({ error: "no such frontend or backend" }, 404);
    }
    return json({ frontend: name(frontend!), backend: name(backend!), state: ACTIONS[verb!] });
  };

  const server = net.serveHttp({
    hostname: options.hostname,
    port: options.port,
    fetch: (request) =>
      handle(request).catch((error) => json({ error: (error as Error).message }, 500)),
  });
  return server;
}
