/**
 * mini-balancer on Node: the Node implementation of {@linkcode Net} and a
 * one-call {@linkcode start} that runs a balancer on it. The package exports
 * it as `mini-balancer/node`; the runtime-free API (config, events, errors,
 * types) is `mini-balancer`.
 *
 * @example Proxy a port to one backend (`node prog.mjs`)
 * ```ts
 * import { parseConfig } from "mini-balancer";
 * import { start } from "mini-balancer/node";
 *
 * const balancer = await start(parseConfig(`
 * [frontend]
 * bind_on = "127.0.0.1:7070"
 * [[frontend.backend]]
 * forward_to = "127.0.0.1:8080"
 * `));
 * await balancer.stop({ graceMs: 1000 });
 * ```
 *
 * @module
 */
import { Balancer, type BalancerOptions } from "../balancer/balancer.ts";
import type { Config } from "../config/config.ts";
import type { Net } from "../runtime/types.ts";
import { nodeNet } from "../runtime/node/index.ts";

/**
 * The Node implementation of {@linkcode Net}: what
 * {@linkcode Balancer.start} takes as `net` on Node.
 *
 * @example Start a balancer with the explicit call
 * ```ts
 * import { Balancer, parseConfig } from "mini-balancer";
 * import { net } from "mini-balancer/node";
 *
 * const config = parseConfig(`
 * [frontend]
 * bind_on = "127.0.0.1:0"
 * [[frontend.backend]]
 * forward_to = "127.0.0.1:8080"
 * `);
 * const balancer = await Balancer.start(config, { net });
 * await balancer.stop();
 * ```
 */
export const net: Net = nodeNet;

/**
 * Options for {@linkcode start}: those of {@linkcode Balancer.start}, with
 * `net` optional.
 *
 * @example Warn when a connect to a backend fails
 * ```ts
 * import { parseConfig } from "mini-balancer";
 * import { start, type StartOptions } from "mini-balancer/node";
 *
 * const options: StartOptions = {
 *   events: {
 *     connectFailed: (session, _backend, reason) => console.warn(session.peerAddress, reason),
 *   },
 * };
 * const balancer = await start(parseConfig(tomlText), options);
 * ```
 */
export type StartOptions = Omit<BalancerOptions, "net"> & {
  /**
   * The sockets to use.
   * @default the Node implementation, {@linkcode net}
   */
  net?: Net;
};

/**
 * Starts a balancer for a config on Node's sockets: every frontend bound, its
 * names resolved, its probes running.
 *
 * @param config The config, from `parseConfig`, `loadConfig` or built in code.
 * @param options Events, hooks and the rest of {@linkcode BalancerOptions}.
 * @returns The running balancer; call its `stop()` when done.
 * @throws {ListenError} When an address cannot be bound.
 * @throws {DiscoveryError} When no backend of a frontend can be resolved.
 *
 * @example Log each connection's outcome and stop after a minute
 * ```ts
 * import { parseConfig } from "mini-balancer";
 * import { start } from "mini-balancer/node";
 *
 * const balancer = await start(
 *   parseConfig(`
 * [frontend]
 * bind_on = "127.0.0.1:0"
 * [[frontend.backend]]
 * forward_to = "127.0.0.1:8080"
 * `),
 *   { events: { closed: (session) => console.log(session.peerAddress, session.outcome) } },
 * );
 * console.log("listening on", balancer.addresses[0]);
 * setTimeout(() => balancer.stop({ graceMs: 1000 }), 60_000);
 * ```
 */
export function start(config: Config, options: StartOptions = {}): Promise<Balancer> {
  return Balancer.start(config, { ...options, net: options.net ?? nodeNet });
}
