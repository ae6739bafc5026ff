/**
 * The program's hooks: `select`, which may name the backend for a new
 * connection or UDP flow before the frontend's algorithm chooses, and
 * `admit`, which may turn a new connection or flow away after the allow and
 * deny lists and the rates. Both are optional; a frontend without them pays
 * one `undefined` check per connection.
 *
 * A hook that throws (or an `admit` promise that rejects) is logged at WARN
 * once per error text, never once per connection: a stranger cannot make a
 * log line per packet. `select` then lets the algorithm choose; `admit`
 * fails closed (the connection is refused).
 *
 * @module
 */
import { formatAddress } from "../address/address.ts";
import { getLog } from "../log.ts";
import type { Endpoint } from "../runtime/types.ts";
import type { Arrival } from "./listener/preamble.ts";
import type { BackendState } from "./upstream/backend.ts";
import type { Pool } from "./upstream/pool.ts";

/**
 * A backend of the frontend, as a hook sees it (a snapshot taken for the call).
 *
 * @example
 * ```ts
 * import type { HookBackend, SelectHook } from "mini-balancer";
 *
 * const idlest = (backends: readonly HookBackend[]) =>
 *   backends.filter((b) => b.state === "up").sort((a, b) => a.active - b.active)[0];
 * const select: SelectHook = (ctx) => idlest(ctx.backends)?.name;
 * ```
 */
export interface HookBackend {
  /** Its name in the config (or the API's). */
  readonly name: string;
  /** Its address as written (`host:port`). */
  readonly address: string;
  /** Up, down (its health checks failed), draining or disabled. */
  readonly state: "up" | "down" | "draining" | "disabled";
  /** Its configured weight. */
  readonly weight: number;
  /** Connections (or flows) open to it now. */
  readonly active: number;
}

/**
 * What the preamble learnt of a connection; every field is undefined when it was not read.
 *
 * @example
 * ```ts
 * import type { HookPreamble, SelectHook } from "mini-balancer";
 *
 * const byServerName = ({ serverName }: HookPreamble) =>
 *   serverName?.endsWith(".eu.example.com") ? "eu" : undefined;
 * const select: SelectHook = (ctx) => byServerName(ctx.preamble); // undefined: the algorithm chooses
 * ```
 */
export interface HookPreamble {
  /** The TLS server name (SNI), lowercase. */
  readonly serverName: string | undefined;
  /** The ALPN protocol names the client offered, in its order. */
  readonly alpn: readonly string[] | undefined;
  /** The protocol its first bytes told (`tls`, `http`, `ssh`, `postgres`…). */
  readonly protocol: string | undefined;
  /** The client's address as the PROXY header gave it (`accept_proxy`). */
  readonly proxyClient: Endpoint | undefined;
}

/**
 * What `admit` is told of a new connection or UDP flow.
 *
 * @example
 * ```ts
 * import type { AdmitContext, AdmitHook } from "mini-balancer";
 *
 * const fromLoopback = (ctx: AdmitContext) => ctx.client.hostname === "127.0.0.1";
 * const admit: AdmitHook = (ctx) =>
 *   ctx.transport === "udp" || fromLoopback(ctx) ? true : `not local: ${ctx.client.hostname}`;
 * ```
 */
export interface AdmitContext {
  /** The frontend's name. */
  readonly frontend: string;
  /** The client's address and port (the PROXY header's, when one was read). */
  readonly client: Endpoint;
  /** What the preamble learnt; all undefined for UDP, or when nothing was read. */
  readonly preamble: HookPreamble;
  /** Whether it is a UDP flow (`"udp"`) or a TCP connection (`"tcp"`). */
  readonly transport: "tcp" | "udp";
}

/**
 * What `select` is told of a new connection or UDP flow.
 *
 * @example
 * ```ts
 * import type { SelectContext } from "mini-balancer";
 *
 * // Sticks each client port to a backend; undefined lets the algorithm choose.
 * function select(ctx: SelectContext): string | undefined {
 *   const up = ctx.backends.filter((backend) => backend.state === "up");
 *   return up[ctx.client.port % up.length]?.name;
 * }
 * const balancer = await Balancer.start(config, { net, select });
 * ```
 */
export interface SelectContext extends AdmitContext {
  /** The frontend's backends, in config order. */
  readonly backends: readonly HookBackend[];
}

/**
 * Chooses the backend for a new connection or UDP flow, synchronously: a
 * backend's name, or `undefined` to let the algorithm choose. A name that
 * is unknown, down, draining, disabled or full falls back to the algorithm
 * (a debug line says so). Retries after a failed connect use the algorithm.
 *
 * @example
 * ```ts
 * const select: SelectHook = (ctx) => ctx.client.port % 2 === 0 ? "b" : "a";
 * ```
 */
export type SelectHook = (ctx: SelectContext) => string | undefined;

/**
 * What `admit` answers: `true` admits; `false` refuses; a string refuses
 * and is the reason logged.
 *
 * @example
 * ```ts
 * import type { AdmitContext, AdmitVerdict } from "mini-balancer";
 *
 * async function admit(ctx: AdmitContext): Promise<AdmitVerdict> {
 *   const banned = await isBanned(ctx.client.hostname); // your own look-up
 *   return banned ? "banned client" : true; // a string refuses, and is logged
 * }
 * const balancer = await Balancer.start(config, { net, admit });
 * ```
 */
export type AdmitVerdict = boolean | string;

/**
 * Admits or refuses a new connection, after the allow and deny lists and
 * the rates and before `select`. A promise is bounded by the frontend's
 * `header_timeout` (a timeout refuses); the connection is not read while it
 * is pending. A refusal is counted as `refusals_total{reason="hook"}`.
 * Throwing or rejecting refuses (fail closed). For a UDP flow the answer
 * must be synchronous: a promise refuses the flow.
 *
 * @example
 * ```ts
 * const blocked = new Set([40000, 40001]);
 * const admit: AdmitHook = (ctx) => blocked.has(ctx.client.port) ? "port blocked" : true;
 * ```
 */
export type AdmitHook = (ctx: AdmitContext) => AdmitVerdict | Promise<AdmitVerdict>;

/** The hooks a balancer was started with. */
export interface Hooks {
  /** See {@linkcode SelectHook}. */
  readonly select?: SelectHook;
  /** See {@linkcode AdmitHook}. */
  readonly admit?: AdmitHook;
}

/** Error texts already logged, per hook: each is logged once. */
const logged = new Set<string>();
/** At most this many distinct texts are remembered; past it, none is logged any more. */
const MAX_LOGGED = 1000;

/** Logs a hook's error at WARN, once per hook and error text. */
function logOnce(hook: "select" | "admit", frontend: string, error: unknown): void {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const key = `${hook}\u0000${text}`;
  if (logged.has(key) || logged.size >= MAX_LOGGED) return;
  logged.add(key);
  const then = hook === "select" ? "the algorithm chooses" : "the connection is refused";
  getLog("hooks").warn(
    `${hook} hook failed (logged once per error text; ${then}): ${text}`,
    { frontend, hook, error: text },
  );
}

/** Forgets the error texts logged, for tests. */
export function forgetLoggedHookErrors(): void {
  logged.clear();
}

const NOTHING_READ: HookPreamble = {
  serverName: undefined,
  alpn: undefined,
  protocol: undefined,
  proxyClient: undefined,
};

/**
 * What the preamble learnt, for a hook.
 *
 * @param arrival the preamble, when one was read
 * @param proxied whether it read a PROXY header (`accept_proxy`)
 */
export function preambleOf(arrival: Arrival | undefined, proxied: boolean): HookPreamble {
  if (arrival === undefined) return NOTHING_READ;
  const facts = arrival.detected;
  return {
    serverName: arrival.serverName ?? facts?.serverName,
    alpn: facts?.alpn,
    protocol: facts?.protocol,
    proxyClient: proxied ? arrival.client : undefined,
  };
}

/** The backends of a pool, as a hook sees them. */
function backendsOf(pool: Pool): HookBackend[] {
  return pool.backends.map((backend) => ({
    name: backend.config.name,
    address: backend.config.address,
    state: backend.state,
    weight: backend.config.weight,
    active: backend.active,
  }));
}

/**
 * Runs `select` and returns the backend it names when that one can take a
 * connection (up and not full); undefined otherwise (the algorithm chooses).
 *
 * @param hook the program's hook
 * @param frontend the frontend's name
 * @param pool the frontend's backends
 * @param ctx the connection's facts, without the backends
 */
export function runSelect(
  hook: SelectHook,
  frontend: string,
  pool: Pool,
  ctx: Omit<SelectContext, "backends" | "frontend">,
): BackendState | undefined {
  let name: string | undefined;
  try {
    name = hook({ ...ctx, frontend, backends: backendsOf(pool) });
  } catch (error) {
    logOnce("select", frontend, error);
    return undefined;
  }
  if (name === undefined) return undefined;
  const found = pool.backends.find((backend) => backend.config.name === name);
  if (found !== undefined && found.up && !found.full) return found;
  const why = found === undefined
    ? "no such backend"
    : found.full
    ? "it is full"
    : `it is ${found.state}`;
  getLog("hooks").debug(`select hook named backend "${name}": ${why}; the algorithm chooses`, {
    frontend,
    client: formatAddress(ctx.client),
  });
  return undefined;
}

/** Why `admit` refused, or undefined when it admitted. */
export function refusalOf(verdict: unknown): string | undefined {
  if (verdict === true) return undefined;
  if (typeof verdict === "string") return verdict === "" ? "refused by the admit hook" : verdict;
  if (verdict === false) return "refused by the admit hook";
  return `the admit hook answered ${typeof verdict}, not true, false or a reason`;
}

/**
 * Runs `admit`: its answer now (a refusal's reason, or undefined to admit),
 * or a promise of it, bounded by `timeoutMs`.
 *
 * @param hook the program's hook
 * @param ctx the connection's facts
 * @param timeoutMs how long a promise may take (header_timeout)
 * @param sync whether only a synchronous answer is taken (UDP)
 * @param signal ends the wait at once (the frontend stopped): the answer is then a refusal
 */
export function runAdmit(
  hook: AdmitHook,
  ctx: AdmitContext,
  timeoutMs: number,
  sync = false,
  signal?: AbortSignal,
): string | undefined | Promise<string | undefined> {
  let verdict: AdmitVerdict | Promise<AdmitVerdict>;
  try {
    verdict = hook(ctx);
  } catch (error) {
    logOnce("admit", ctx.frontend, error);
    return "the admit hook threw";
  }
  if (typeof verdict !== "object" || verdict === null) return refusalOf(verdict);
  // A promise (or any thenable).
  const pending = Promise.resolve(verdict);
  if (sync) {
    pending.catch(() => {}); // nobody waits for it
    return "the admit hook returned a promise: UDP flows are admitted synchronously";
  }
  return new Promise((resolve) => {
    let settled = false;
    const settle = (reason: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", stopped);
      resolve(reason);
    };
    const stopped = () => settle("the frontend stopped while the admit hook was pending");
    const timer = setTimeout(
      () => settle(`the admit hook did not answer within header_timeout (${timeoutMs}ms)`),
      timeoutMs,
    );
    signal?.addEventListener("abort", stopped);
    pending.then(
      (answer) => settle(refusalOf(answer)),
      (error) => {
        if (!settled) logOnce("admit", ctx.frontend, error);
        settle("the admit hook rejected");
      },
    );
  });
}
