/**
 * A stand-in for the balancer's admin listener, for the dashboard's browser
 * test until the real one lands: serves {@linkcode DASHBOARD_HTML} at `/`, a
 * `GET /api/status` whose counters grow with time, and the backend actions
 * behind a bearer token, recording every request. Built on `node:http`, which
 * both runtimes implement.
 *
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { DASHBOARD_HTML } from "../src/admin/dashboard.ts";

/** The token the fake accepts. */
export const FAKE_TOKEN = "secret";

/** One backend action the fake received. */
export interface ActionCall {
  /** The raw request path, still URL-encoded. */
  path: string;
  /** The `Authorization` header, or `""`. */
  authorization: string;
  /** The status the fake answered. */
  status: number;
}

/** A running fake admin listener. */
export interface FakeAdmin {
  /** Base URL, e.g. `http://127.0.0.1:40123/`. */
  url: string;
  /** Every `POST` under `/api/frontends/`, in order. */
  calls: ActionCall[];
  /** How many times `GET /api/status` was served. */
  statusRequests: () => number;
  /** Stops listening. */
  close: () => Promise<void>;
}

interface FakeBackend {
  name: string;
  address: string;
  state: string;
  weight: number;
  backup: boolean;
  active: number;
  share: number;
}

const STATE_AFTER: Record<string, string> = {
  drain: "draining",
  disable: "disabled",
  enable: "up",
};

/**
 * Starts the fake on a free loopback port. Actions change the backend's state
 * as the real listener will (drain → draining, disable → disabled,
 * enable → up), so the page can be seen to follow.
 */
export async function startFakeAdmin(): Promise<FakeAdmin> {
  const started = performance.now();
  const backends: FakeBackend[] = [
    {
      name: "app-1",
      address: "127.0.0.1:8080",
      state: "up",
      weight: 2,
      backup: false,
      active: 3,
      share: 0.5,
    },
    {
      name: "app-2",
      address: "127.0.0.1:8081",
      state: "up",
      weight: 1,
      backup: false,
      active: 1,
      share: 0.3,
    },
    {
      name: "app-3",
      address: "127.0.0.1:8082",
      state: "down",
      weight: 1,
      backup: true,
      active: 0,
      share: 0.2,
    },
  ];
  const calls: ActionCall[] = [];
  let statusRequests = 0;

  function status() {
    const t = (performance.now() - started) / 1000;
    // Always increasing (the slope stays above 40/s) but not linear, so the charts move.
    const accepted = Math.floor(120 + 60 * t + 20 * Math.sin(t));
    const fromClient = Math.floor(4_000 + 90_000 * t + 30_000 * Math.sin(t / 2));
    const fromBackend = Math.floor(20_000 + 700_000 * t + 200_000 * Math.sin(t / 3));
    return {
      version: "0.1.0",
      runtime: "bun",
      uptime_s: 3600 + t,
      last_reload: { success: true, at: new Date().toISOString(), summary: "no change" },
      frontends: [{
        name: "default",
        address: "127.0.0.1:7070",
        algorithm: "round_robin",
        active: backends.reduce((sum, b) => sum + b.active, 0),
        queued: 0,
        accepted,
        bytes_from_client: fromClient,
        bytes_from_backend: fromBackend,
        backends: backends.map(({ share, ...b }) => ({
          ...b,
          total: Math.floor(accepted * share),
          bytes_from_client: Math.floor(fromClient * share),
          bytes_from_backend: Math.floor(fromBackend * share),
          last_check: b.state === "down"
            ? { ok: false, reason: "connection refused", duration_ms: 0.4 }
            : { ok: true, reason: null, duration_ms: 1.2 },
        })),
      }],
    };
  }

  function handle(request: IncomingMessage, response: ServerResponse) {
    const path = request.url ?? "/";
    const send = (code: number, type: string, body: string) => {
      response.writeHead(code, { "content-type": type, "cache-control": "no-store" });
      response.end(body);
    };
    if (request.method === "GET" && path === "/") {
      return send(200, "text/html; charset=utf-8", DASHBOARD_HTML);
    }
    if (request.method === "GET" && path === "/api/status") {
      statusRequests++;
      return send(200, "application/json", JSON.stringify(status()));
    }
    const action = /^\/api\/frontends\/([^/]+)\/backends\/([^/]+)\/(drain|disable|enable)$/
      .exec(path);
    if (request.method === "POST" && action) {
      const authorization = request.headers.authorization ?? "";
      const backend = backends.find((b) => b.name === decodeURIComponent(action[2]!));
      const code = authorization !== `Bearer ${FAKE_TOKEN}`
        ? 401
        : decodeURIComponent(action[1]!) !== "default" || !backend
        ? 404
        : 200;
      calls.push({ path, authorization, status: code });
      if (code === 200) backend!.state = STATE_AFTER[action[3]!]!;
      return send(code, "application/json", JSON.stringify({ ok: code === 200 }));
    }
    send(404, "text/plain", "not found");
  }

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    calls,
    statusRequests: () => statusRequests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
