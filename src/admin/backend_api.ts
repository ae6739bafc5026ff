/**
 * The admin API's backend routes: add a backend to a frontend, change its
 * weight and max_connections, delete it.
 *
 * - `POST /api/frontends/{frontend}/backends` with a backend table as JSON:
 *   201 with its status; 400 with the config file's message; 409 for a name
 *   in use; 404 for no such frontend
 * - `PATCH /api/frontends/{frontend}/backends/{backend}` with
 *   `{"weight"?, "max_connections"?}`: 200 with its status
 * - `DELETE /api/frontends/{frontend}/backends/{backend}`: 204; it takes no
 *   new connection and goes once its connections have ended
 *
 * @module
 */
import type { BackendStatus, Balancer } from "../balancer/balancer.ts";
import { validateBackendChange } from "../config/backend_table.ts";
import { auditFields as sharedAuditFields, changeBackend } from "../balancer/frontend_api.ts";

/** The paths of the backend routes: a frontend's backends, or one of them. */
export const BACKENDS_PATH = /^\/api\/frontends\/([^/]+)\/backends(?:\/([^/]+))?$/;

/** The largest request body read: a backend table is a few hundred bytes. */
const MAX_BODY_BYTES = 64 * 1024;

/** What a backend route did, for the audit line and the answer. */
export interface BackendChangeResult {
  /** The HTTP status. */
  status: number;
  /** The JSON body; none for 204. */
  body?: unknown;
  /** The action (`add backend`, `patch backend`, `delete backend`). */
  action: string;
  /** `frontend/backend`. */
  target: string;
  /** What came of it: the state, or the error. */
  result: string;
  /** The values before and after, for a change. */
  before?: string;
  after?: string;
}

/**
 * The fields of an audit line for what a route did (the library's lines
 * have the same fields).
 *
 * @param done what it did
 * @returns the action, target, result, and before and after when known
 */
export function auditFields(done: BackendChangeResult): ReturnType<typeof sharedAuditFields> {
  return sharedAuditFields(done);
}

/**
 * The HTTP answer to what a route did: JSON, or an empty 204.
 *
 * @param done what it did
 */
export function answer(done: BackendChangeResult): Response {
  // For a supervisor, which logs the line of its workers' change.
  const audit = { [AUDIT_HEADER]: encodeURIComponent(JSON.stringify(auditFields(done))) };
  if (done.body === undefined) return new Response(null, { status: done.status, headers: audit });
  return new Response(JSON.stringify(done.body, null, 2), {
    status: done.status,
    headers: { "content-type": "application/json", ...audit },
  });
}

/** The header carrying a change's audit fields (URI-encoded JSON), for a supervisor's log line. */
export const AUDIT_HEADER = "x-mini-balancer-audit";

/** Reads a request's JSON body, bounded; undefined when it is not JSON. */
async function readJson(request: Request): Promise<{ value: unknown } | undefined> {
  const text = await request.text();
  if (text.length > MAX_BODY_BYTES) return undefined;
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

/** A backend's row of the status, as the API answers it. */
function statusOf(
  balancer: Balancer,
  frontend: string,
  backend: string,
): BackendStatus | undefined {
  return balancer.status().find((f) => f.name === frontend)?.backends.find((b) =>
    b.name === backend
  );
}

/**
 * Answers a backend route (the token already checked).
 *
 * @param request the request
 * @param match the path's match of {@linkcode BACKENDS_PATH}
 * @param balancer the balancer to change
 * @returns what was done
 */
export async function backendRoute(
  request: Request,
  match: RegExpExecArray,
  balancer: Balancer,
): Promise<BackendChangeResult> {
  const frontend = decodeURIComponent(match[1]!);
  const name = match[2] === undefined ? undefined : decodeURIComponent(match[2]);
  const method = request.method;
  const refused = (status: number, action: string, error: string, target = frontend) => ({
    status,
    body: { error },
    action,
    target,
    result: error,
  });
  if (name === undefined) {
    if (method !== "POST") return refused(405, method, "method not allowed");
    const body = await readJson(request);
    if (body === undefined) return refused(400, "add backend", "the body must be a JSON object");
    const added = changeBackend(balancer, frontend, { kind: "add", table: body.value });
    if (added.error !== undefined) return { ...added, body: { error: added.error } };
    const status = statusOf(balancer, frontend, added.backend!.config.name)!;
    return { ...added, body: { frontend, ...status } };
  }
  const target = `${frontend}/${name}`;
  if (method === "DELETE") {
    const removed = changeBackend(balancer, frontend, { kind: "remove", backend: name });
    if (removed.error !== undefined) return { ...removed, body: { error: removed.error } };
    return removed;
  }
  if (method !== "PATCH") return refused(405, method, "method not allowed", target);
  const body = await readJson(request);
  if (body === undefined) return refused(400, "patch backend", "the body must be a JSON object");
  let change;
  try {
    change = validateBackendChange(body.value);
  } catch (error) {
    return refused(400, "patch backend", (error as Error).message, target);
  }
  const patched = changeBackend(balancer, frontend, {
    kind: "patch",
    backend: name,
    patch: change,
  });
  if (patched.error !== undefined) return { ...patched, body: { error: patched.error } };
  const status = statusOf(balancer, frontend, name)!;
  const limit = patched.backend!.config.maxConnections ?? null;
  return { ...patched, body: { frontend, ...status, max_connections: limit } };
}
