/**
 * The admin listener: a web-standard fetch handler served by the runtime's
 * own HTTP server (through {@linkcode Net.serveHttp}), so the core stays
 * runtime-free. Read-only endpoints answer anyone who can reach the
 * address (loopback by default) and names it by an IP address, `localhost`
 * or a name of `admin.allowed_hosts` in `Host` (so that a page of another
 * site, rebound by DNS to this address, reads nothing); the ones that change
 * state need the bearer token too, compared in constant time. Every change
 * is logged, with who asked, under the operator category that is shown at
 * the default verbosity.
 *
 * - `GET /metrics`: Prometheus text exposition
 * - `GET /api/status`: every frontend and backend as JSON (`/api/state`: what the API changed)
 * - `POST /api/frontends/{frontend}/backends/{backend}/drain|disable|enable`
 * - `POST …/backends`, `PATCH|DELETE …/backends/{backend}`: see backend_api.ts
 * - `POST /api/reload`: what SIGHUP does, answered with the result
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { AdminState } from "../balancer/upstream/backend.ts";
import { type Balancer, ListenError, type ReloadSummary } from "../balancer/balancer.ts";
import { formatAddress } from "../address/address.ts";
import { getLog, OPERATOR_CATEGORY } from "../log.ts";
import { scanIpv4, scanIpv6, VALID } from "../address/ip.ts";
import type { Endpoint, HttpServer, Net } from "../runtime/types.ts";
import { VERSION } from "../version.ts";
import { isUdp } from "./metric_definitions.ts";
import { answer, auditFields, backendRoute, BACKENDS_PATH } from "./backend_api.ts";
import { changeBackend } from "../balancer/frontend_api.ts";
import { writeStateFile } from "./state_file.ts";
import type { FlowTally, Metrics } from "./metrics.ts";

/** The outcome of a reload asked through the API. */
export interface ReloadResult {
  /** Whether the new config was applied (a rejected file changes nothing). */
  success: boolean;
  /** What changed, when applied. */
  summary?: ReloadSummary;
  /** Why the file was rejected. */
  error?: string;
}

/** What a reload may change in an admin listener: its address, token and hosts. */
export interface AdminSettings {
  /** Where to listen. */
  readonly hostname: string;
  /** The port; 0 takes a free one. */
  readonly port: number;
  /** The bearer token for the endpoints that change state; none: they answer 403. */
  readonly token: string | undefined;
  /** Names besides IP literals and `localhost` that `Host` may carry. @default [] */
  readonly allowedHosts?: readonly string[];
}

/** A running admin listener. */
export interface AdminServer extends HttpServer {
  /**
   * Applies reloaded settings: the token and hosts at once; a new address
   * is bound first, and the old one closed only once it is.
   *
   * @param settings the new settings
   * @returns why the address could not move (the old one serves on, with
   * the new token), or undefined
   */
  update(settings: AdminSettings): Promise<string | undefined>;
}

/** What the admin listener serves from. */
export interface AdminOptions extends AdminSettings {
  /** The runtime's sockets (its `serveHttp`). */
  net: Net;
  /** The balancer to show and steer. */
  balancer: Balancer;
  /** The metrics subscriber feeding `/metrics` and the status tallies. */
  metrics: Metrics;
  /**
   * Reloads the config file, as SIGHUP does; `peer` is who asked, for the
   * outcome's log line.
   */
  reload(peer: string): Promise<ReloadResult>;
  /**
   * Logs each change with who asked. A worker's own listener, which only
   * its supervisor reaches, leaves that to the supervisor. @default true
   */
  audit?: boolean;
  /** The last reload, for the status. */
  lastReload(): LastReload | null;
  /** The dashboard page served at `/`, if any. */
  dashboard?: string;
  /** `admin.state_file`: written at each change, if set (never by a worker). */
  stateFile?: string;
}

/**
 * The header in which a supervisor tells its worker's listener who asked
 * it; a worker's listener takes it only with its token, which only the
 * supervisor holds, and only when it does not audit (a worker's).
 */
export const PEER_HEADER = "x-mini-balancer-peer";

/** What `/api/status` adds for a UDP frontend or backend: flows opened and datagrams each way. */
function flowFields(flows: FlowTally | undefined) {
  return {
    flows_total: flows?.opened ?? 0,
    datagrams_from_client: flows?.datagramsFromClient ?? 0,
    datagrams_from_backend: flows?.datagramsFromBackend ?? 0,
  };
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
 * Whether a request's `Host` names this listener the way a local client
 * does: an IP literal (`127.0.0.1`, `[::1]`), `localhost`, or one of
 * `allowed`, each with an optional port. A name from elsewhere is what a
 * DNS-rebinding page sends: refused, like a missing `Host`.
 *
 * @param host the `Host` header, if any
 * @param allowed the names of `admin.allowed_hosts`, lowercase
 * @returns true when the request may be answered
 */
export function hostAllowed(host: string | null, allowed: readonly string[]): boolean {
  if (host === null) return false;
  const text = host.toLowerCase();
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    const rest = text.slice(end + 1);
    return end > 0 && (rest === "" || /^:\d{1,5}$/.test(rest)) &&
      scanIpv6(text, undefined, 1, end) === VALID;
  }
  const colon = text.indexOf(":");
  if (colon >= 0 && !/^\d{1,5}$/.test(text.slice(colon + 1))) return false;
  const name = colon < 0 ? text : text.slice(0, colon);
  if (scanIpv4(name) >= 0) return true;
  const bare = name.endsWith(".") ? name.slice(0, -1) : name;
  return bare === "localhost" || (bare !== "" && allowed.includes(bare));
}

/** The answer to a request whose `Host` is not this listener's. */
function misdirected(): Response {
  return json({
    error: "Host must be an IP address, localhost or a name of admin.allowed_hosts",
  }, 403);
}

/**
 * Serves an admin handler: refuses a foreign `Host` before it, and lets a
 * reload change the token, the hosts and the address (bind the new one,
 * then close the old). Both admin listeners, a process's and a supervisor's,
 * are served through it.
 *
 * @param serveHttp the runtime's HTTP server (`Net.serveHttp`)
 * @param settings where to listen, the token and the hosts
 * @param handle answers a request; `peer` is the client's address, `settings` the current ones
 * @returns the running listener
 * @throws {Error} when the address cannot be bound
 */
export function serveAdmin(
  serveHttp: NonNullable<Net["serveHttp"]>,
  settings: AdminSettings,
  handle: (request: Request, peer: string, settings: AdminSettings) => Promise<Response>,
): AdminServer {
  let current = settings;
  const fetch = (request: Request, peer: Endpoint): Promise<Response> | Response => {
    if (!hostAllowed(request.headers.get("host"), current.allowedHosts ?? [])) return misdirected();
    return handle(request, formatAddress(peer), current)
      .catch((error) => json({ error: (error as Error).message }, 500));
  };
  const bind = (at: AdminSettings) => serveHttp({ hostname: at.hostname, port: at.port, fetch });
  let server = bind(settings);
  /** The address as configured: port 0 is asked for once, not at each reload. */
  let asked: Endpoint = { hostname: settings.hostname, port: settings.port };
  const retiring = new Set<Promise<void>>();
  return {
    get address() {
      return server.address;
    },
    async close() {
      await Promise.all([server.close(), ...retiring]);
    },
    update(next) {
      if (next.hostname === asked.hostname && next.port === asked.port) {
        current = next;
        return Promise.resolve(undefined);
      }
      let fresh: HttpServer;
      try {
        fresh = bind(next);
      } catch (error) {
        current = { ...next, hostname: asked.hostname, port: asked.port };
        const wanted = formatAddress({ hostname: next.hostname, port: next.port });
        const failure = new ListenError(wanted, "admin", error, "the admin listener");
        return Promise.resolve(
          `${failure.message}; it stays on ${formatAddress(server.address)}`,
        );
      }
      const old = server;
      server = fresh;
      asked = { hostname: next.hostname, port: next.port };
      current = next;
      // The request that asked for this reload is answered on the old
      // socket: close it once that answer has had time to go out.
      const closing = new Promise<void>((done) => setTimeout(done, RETIRE_MS))
        .then(() => old.close());
      retiring.add(closing);
      closing.finally(() => retiring.delete(closing));
      return Promise.resolve(undefined);
    },
  };
}

/** An admin listener's routes, for {@linkcode adminHandler}. */
export interface AdminRoutes {
  /** The GET pages by path (the dashboard at `/` aside). */
  readonly get: ReadonlyMap<string, () => Promise<Response> | Response>;
  /** The dashboard page served at `/`, if any. */
  readonly dashboard?: string;
  /**
   * Answers a POST, PATCH or DELETE (the listener's own checks: its paths,
   * its methods, its token).
   *
   * @param pathname the request's path
   * @param peer the client's address
   * @param settings the listener's current settings (its token)
   */
  post(
    request: Request,
    pathname: string,
    peer: string,
    settings: AdminSettings,
  ): Promise<Response>;
}

/**
 * The routing both admin listeners share, a process's and a supervisor's:
 * a GET page by its path, the dashboard at `/`, 404 for any other GET, 405
 * for a method other than GET and POST, the POSTs to `routes.post` (and a
 * throw 500, in {@linkcode serveAdmin}).
 *
 * @returns the handler for {@linkcode serveAdmin}
 */
export function adminHandler(
  routes: AdminRoutes,
): (request: Request, peer: string, settings: AdminSettings) => Promise<Response> {
  return async (request, peer, settings) => {
    const { pathname } = new URL(request.url);
    if (request.method === "GET") {
      const page = routes.get.get(pathname);
      if (page !== undefined) return await page();
      if (pathname === "/" && routes.dashboard !== undefined) {
        return new Response(routes.dashboard, {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      }
      return json({ error: "not found" }, 404);
    }
    const changes = ["POST", "PATCH", "DELETE"];
    if (!changes.includes(request.method)) return json({ error: "method not allowed" }, 405);
    return await routes.post(request, pathname, peer, settings);
  };
}

/** How long a moved admin listener's old socket lives on, for the answer in flight. */
const RETIRE_MS = 200;

/**
 * Logs an operator's action at the default verbosity: who asked, what, on
 * what, and what came of it.
 *
 * @param fields the peer's address, the action, its target and the result
 * (and the values before and after, for a change)
 */
export function logAction(
  fields: {
    peer: string;
    action: string;
    target: string;
    result: string;
    before?: string;
    after?: string;
  },
): void {
  getLog(OPERATOR_CATEGORY).info("admin action", fields);
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
export function startAdmin(options: AdminOptions): AdminServer {
  const { net, balancer, metrics, audit = true } = options;
  if (net.serveHttp === undefined) {
    throw new Error(`the admin listener is not available on ${net.runtime}`);
  }
  const started = performance.now();
  const saveState = () =>
    options.stateFile !== undefined &&
    writeStateFile(options.stateFile, balancer.backends.snapshot());

  const status = () => ({
    version: VERSION,
    runtime: net.runtime,
    uptime_s: Math.round((performance.now() - started) / 100) / 10,
    last_reload: options.lastReload(),
    frontends: balancer.status().map((frontend) => {
      const tally = metrics.frontendTally(frontend.name);
      const udp = isUdp(frontend);
      const flows = udp ? metrics.flowTally(frontend.name) : undefined;
      return {
        ...frontend,
        accepted: tally.accepted,
        bytes_from_client: tally.bytesFromClient + (flows?.bytesFromClient ?? 0),
        bytes_from_backend: tally.bytesFromBackend + (flows?.bytesFromBackend ?? 0),
        ...(udp ? flowFields(flows) : {}),
        backends: frontend.backends.map((backend) => {
          const b = metrics.backendTally(frontend.name, backend.name);
          const flows = udp ? metrics.flowTally(frontend.name, backend.name) : undefined;
          return {
            ...backend,
            total: b.total,
            bytes_from_client: b.bytesFromClient + (flows?.bytesFromClient ?? 0),
            bytes_from_backend: b.bytesFromBackend + (flows?.bytesFromBackend ?? 0),
            ...(udp ? flowFields(flows) : {}),
            last_check: b.lastCheck,
          };
        }),
      };
    }),
  });

  const post = async (
    request: Request,
    pathname: string,
    peer: string,
    settings: AdminSettings,
  ): Promise<Response> => {
    const backends = BACKENDS_PATH.exec(pathname);
    const action = BACKEND_ACTION.exec(pathname);
    if (action === null && backends === null && pathname !== "/api/reload") {
      return json({ error: "not found" }, 404);
    }
    if (backends === null && request.method !== "POST") {
      return json({ error: "method not allowed" }, 405);
    }
    const refused = refusal(request, settings.token);
    if (refused !== undefined) return refused;
    if (backends !== null) {
      const done = await backendRoute(request, backends, balancer);
      if (audit) logAction({ peer, ...auditFields(done) });
      if (done.status < 300) saveState();
      return answer(done);
    }
    if (action === null) {
      // The reload logs its own outcome, with the peer: on a worker's
      // listener, the one its supervisor (the only holder of the token) names.
      const asker = audit ? peer : request.headers.get(PEER_HEADER) ?? peer;
      const result = await options.reload(asker);
      return json(result, result.success ? 200 : 422);
    }
    const [, frontend, backend, verb] = action;
    const name = (part: string) => decodeURIComponent(part);
    const done = changeBackend(balancer, name(frontend!), {
      kind: "state",
      backend: name(backend!),
      verb: verb as "drain" | "disable" | "enable",
    });
    if (audit) logAction({ peer, ...auditFields(done) });
    if (done.error !== undefined) return json({ error: done.error }, done.status);
    saveState();
    return json({ frontend: name(frontend!), backend: name(backend!), state: ACTIONS[verb!] });
  };

  const handle = adminHandler({
    get: new Map<string, () => Promise<Response> | Response>([
      [
        "/metrics",
        async () =>
          new Response(await metrics.registry.metrics(), {
            headers: { "content-type": metrics.registry.contentType },
          }),
      ],
      ["/api/status", () => json(status())],
      ["/api/state", () => json(balancer.backends.snapshot())],
    ]),
    dashboard: options.dashboard,
    post,
  });
  const server = serveAdmin((serve) => net.serveHttp!(serve), options, handle);
  // A program's changes (balancer.frontend(name)) are kept as the API's are.
  const unsubscribe = balancer.backends.subscribe(saveState);
  return {
    get address() {
      return server.address;
    },
    close: () => {
      unsubscribe();
      return server.close();
    },
    update: (next) => server.update(next),
  };
}
