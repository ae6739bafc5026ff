/**
 * mini-balancer on Bun: the Bun implementation of {@linkcode Net} and a
 * one-call {@linkcode start} that runs a balancer on it. The package exports
 * it as `mini-balancer/bun`; the runtime-free API (config, events, errors,
 * types) is `mini-balancer`.
 *
 * @example Proxy a port to one backend (`bun prog.ts`)
 * ```ts
 * import { parseConfig } from "mini-balancer";
 * import { start } from "mini-balancer/bun";
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
import { bunNet } from "../runtime/bun/index.ts";

/**
 * The Bun implementation of {@linkcode Net}: what
 * {@linkcode Balancer.start} takes as `net` on Bun.
 *
 * @example Start a balancer with the explicit call
 * ```ts
 * import { Balancer, parseConfig } from "mini-balancer";
 * import { net } from "mini-balancer/bun";
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
export const net: Net = bunNet;

/**
 * Options for {@linkcode start}: those of {@linkcode Balancer.start}, with
 * `net` optional.
 *
 * @example Warn when a connect to a backend fails
 * ```ts
 * import { parseConfig } from "mini-balancer";
 * import { start, type StartOptions } from "mini-balancer/bun";
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
   * @default the Bun implementation, {@linkcode net}
   */
  net?: Net;
};

/**
 * Starts a balancer for a config on Bun's sockets: every frontend bound, its
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
 * import { start } from "mini-balancer/bun";
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
  return Balancer.start(config, { ...options, net: options.net ?? bunNet });
}
