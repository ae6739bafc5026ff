/**
 * The admin listener of a supervisor (`workers = N`): one endpoint for the
 * whole balancer. Each worker serves its own admin API on a loopback port
 * with a token only the supervisor knows; this listener asks all of them
 * and answers as one: `/metrics` and `/api/status` summed over the workers,
 * a drain, disable or enable (or a backend added, patched or deleted)
 * passed to every worker, a reload validated
 * once and then applied by every worker.
 *
 * @module
 */
import type { Net } from "../runtime/types.ts";
import type { OverlayState } from "../balancer/upstream/runtime_backends.ts";
import { AUDIT_HEADER } from "../admin/backend_api.ts";
import { VERSION } from "../version.ts";
import {
  adminHandler,
  type AdminServer,
  type AdminSettings,
  json,
  type LastReload,
  logAction,
  PEER_HEADER,
  refusal,
  type ReloadResult,
  serveAdmin,
} from "../admin/server.ts";

/** A worker's own admin listener, as the supervisor reaches it. */
export interface WorkerAdmin {
  /** Its loopback port. */
  readonly port: number;
  /** The bearer token it takes. */
  readonly token: string;
}

/** What the supervisor's admin listener serves from. */
export interface WorkersAdminOptions extends AdminSettings {
  /** The runtime's sockets (its `serveHttp` and `fetch`). */
  net: Net;
  /** The workers' admin listeners now (a restarted worker has a new one). */
  workers(): WorkerAdmin[];
  /**
   * Validates the config file once (and applies its `[admin]`): the error
   * when it cannot be used. `peer` asked, for the log line.
   */
  validate(peer: string): Promise<string | undefined>;
  /** The last reload, for the status. */
  lastReload(): LastReload | null;
  /** Tells of a reload's outcome, the workers' answers merged; `peer` asked. */
  reloaded(result: ReloadResult, peer: string): void;
  /** The dashboard page served at `/`, if any. */
  dashboard?: string;
  /**
   * Told what the admin API changed, as a worker has it, after each change
   * (for `admin.state_file`, which only the supervisor writes).
   */
  saved?(state: OverlayState): Promise<void> | void;
}

/** Metrics whose workers' values are not added: the largest, or the smallest, stands. */
const LARGEST = new Set([
  "mini_balancer_backend_up",
  "mini_balancer_backend_state",
  // Each worker ramps and polls the same backends: one's weight, not their sum.
  "mini_balancer_backend_effective_weight",
  "mini_balancer_build_info",
  "mini_balancer_last_reload_timestamp_seconds",
  // Each worker resolves the same names: the addresses of one, not their sum.
  "mini_balancer_dns_addresses",
]);
const SMALLEST = new Set(["mini_balancer_last_reload_success", "process_start_time_seconds"]);

/**
 * Merges the workers' Prometheus texts into one: each series summed over
 * the workers (counters, histograms, connections, memory), except the
 * states and timestamps, where the largest or smallest value stands.
 *
 * @param texts each worker's `/metrics`
 * @returns one exposition, series in the order first seen
 */
export function mergeMetrics(texts: readonly string[]): string {
  const comments = new Set<string>();
  const lines: string[] = [];
  const values = new Map<string, number>();
  for (const text of texts) {
    for (const line of text.split("\n")) {
      if (line === "") continue;
      if (line.startsWith("#")) {
        if (!comments.has(line)) {
          comments.add(line);
          lines.push(line);
        }
        continue;
      }
      const space = line.lastIndexOf(" ");
      const series = line.slice(0, space);
      const value = Number(line.slice(space + 1));
      const before = values.get(series);
      if (before === undefined) {
        values.set(series, value);
        lines.push(series);
        continue;
      }
      const name = series.replace(/\{.*$/, "");
      values.set(
        series,
        LARGEST.has(name)
          ? Math.max(before, value)
          : SMALLEST.has(name)
          ? Math.min(before, value)
          : before + value,
      );
    }
  }
  return lines.map((line) => line.startsWith("#") ? line : `${line} ${values.get(line)}`)
    .join("\n") + "\n";
}

/** A frontend or backend in a worker's status: numbers are summed, the rest is the first's. */
type Row = Record<string, unknown> & { name: string };

/** Numbers of the config, the same in every worker: not summed. */
const SETTINGS = new Set(["weight", "effectiveWeight"]);

function sumRows(rows: Row[][], children?: string): Row[] {
  const merged = new Map<string, Row>();
  for (const list of rows) {
    for (const row of list) {
      const seen = merged.get(row.name);
      if (seen === undefined) {
        merged.set(row.name, { ...row });
        continue;
      }
      for (const [key, value] of Object.entries(row)) {
        if (typeof value === "number" && typeof seen[key] === "number" && !SETTINGS.has(key)) {
          seen[key] = (seen[key] as number) + value;
        }
      }
      if (children !== undefined) {
        seen[children] = sumRows(
          [seen[children] as Row[], row[children] as Row[]],
        );
      }
    }
  }
  return [...merged.values()];
}

/**
 * Merges the workers' `/api/status`: frontends and backends matched by
 * name, their counts summed (connections, bytes, accepted); states as the
 * first worker shows them.
 *
 * @param statuses each worker's status
 * @returns the frontends, summed
 */
export function mergeStatus(statuses: readonly { frontends: Row[] }[]): Row[] {
  return sumRows(statuses.map((status) => status.frontends), "backends");
}

/**
 * Starts the supervisor's admin listener.
 *
 * @param options what to serve and where
 * @returns the running server
 * @throws {Error} when the runtime has no HTTP server or client, or the address cannot be bound
 */
export function startWorkersAdmin(options: WorkersAdminOptions): AdminServer {
  const { net } = options;
  const fetchFrom = net.fetch;
  const serveHttp = net.serveHttp;
  if (serveHttp === undefined || fetchFrom === undefined) {
    throw new Error(`the admin listener of workers is not available on ${net.runtime}`);
  }
  const fetchServe: NonNullable<Net["serveHttp"]> = (serve) => serveHttp.call(net, serve);
  const started = performance.now();

  /** Asks every worker; a worker that does not answer is left out. */
  const ask = async (path: string, init: RequestInit = {}, peer?: string) => {
    const answers = await Promise.all(
      options.workers().map(async ({ port, token }) => {
        // Who asked the supervisor, for the line the worker logs.
        const asker: Record<string, string> = peer === undefined ? {} : { [PEER_HEADER]: peer };
        try {
          return await fetchFrom(`http://127.0.0.1:${port}${path}`, {
            ...init,
            headers: { authorization: `Bearer ${token}`, ...asker },
          });
        } catch {
          return undefined; // restarting: its next listener answers next time
        }
      }),
    );
    return answers.filter((answer): answer is Response => answer !== undefined);
  };

  /** Asks a worker what the API changed, for the state file. */
  const saveState = async () => {
    if (options.saved === undefined) return;
    const [first, ...others] = await ask("/api/state");
    for (const other of others) await other.body?.cancel();
    // Written before the change is answered: a restart right after keeps it.
    if (first?.ok === true) await options.saved(await first.json() as OverlayState);
    else await first?.body?.cancel();
  };

  const metrics = async () => {
    const answers = await ask("/metrics");
    const texts = await Promise.all(answers.map((answer) => answer.text()));
    return new Response(mergeMetrics(texts), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  };

  const status = async () => {
    const answers = await ask("/api/status");
    const statuses = await Promise.all(answers.map((answer) => answer.json()));
    return json({
      version: VERSION,
      runtime: net.runtime,
      uptime_s: Math.round((performance.now() - started) / 100) / 10,
      workers: statuses.length,
      last_reload: options.lastReload(),
      frontends: mergeStatus(statuses),
    });
  };

  const post = async (
    request: Request,
    pathname: string,
    peer: string,
    settings: AdminSettings,
  ): Promise<Response> => {
    const refused = refusal(request, settings.token);
    if (refused !== undefined) return refused;
    if (pathname === "/api/reload") {
      if (request.method !== "POST") return json({ error: "method not allowed" }, 405);
      const error = await options.validate(peer);
      if (error !== undefined) {
        const result: ReloadResult = { success: false, error };
        options.reloaded(result, peer);
        return json(result, 422);
      }
      const answers = await ask("/api/reload", { method: "POST" }, peer);
      const results = await Promise.all(answers.map((a) => a.json() as Promise<ReloadResult>));
      const failed = results.find((result) => !result.success);
      const result = failed ?? results[0] ?? { success: false, error: "no worker answered" };
      options.reloaded(result, peer);
      return json(result, result.success ? 200 : 422);
    }
    const payload = request.method === "DELETE" ? undefined : await request.text();
    const answers = await ask(pathname, { method: request.method, body: payload });
    const failed = answers.find((answer) => !answer.ok);
    const first = failed ?? answers[0];
    const body = first === undefined ? undefined : await first.text();
    if (first?.ok === true) await saveState();
    const action = /^\/api\/frontends\/([^/]+)\/backends\/([^/]+)\/([a-z]+)$/.exec(pathname);
    const audited = first?.headers.get(AUDIT_HEADER);
    if (audited !== null && audited !== undefined) {
      logAction({ peer, ...JSON.parse(decodeURIComponent(audited)) });
    } else if (action !== null) {
      const [, frontend, backend, verb] = action;
      const state = first?.ok === true
        ? (JSON.parse(body!) as { state?: string }).state
        : undefined;
      logAction({
        peer,
        action: verb!,
        target: `${decodeURIComponent(frontend!)}/${decodeURIComponent(backend!)}`,
        result: state ??
          (first === undefined
            ? "no worker answered"
            : (JSON.parse(body!) as { error?: string }).error ?? `status ${first.status}`),
      });
    }
    if (first === undefined) return json({ error: "no worker answered" }, 503);
    if (first.status === 204) return new Response(null, { status: 204 });
    return new Response(body, {
      status: first.status,
      headers: { "content-type": "application/json" },
    });
  };

  const handle = adminHandler({
    get: new Map([["/metrics", metrics], ["/api/status", status]]),
    dashboard: options.dashboard,
    post,
  });
  return serveAdmin((serve) => fetchServe(serve), options, handle);
}
