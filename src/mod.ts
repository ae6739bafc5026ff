/**
 * mini-balancer as a library: load a config, start a balancer on a runtime's
 * sockets, subscribe to what happens, stop it.
 *
 * @example
 * ```ts
 * import { Balancer, parseConfig } from "./src/mod.ts";
 * import { bunNet } from "./src/runtime/bun/index.ts";
 *
 * const config = parseConfig(`
 * [frontend]
 * bind_on = "127.0.0.1:7070"
 * [[frontend.backend]]
 * forward_to = "127.0.0.1:8080"
 * `);
 * const balancer = await Balancer.start(config, { net: bunNet });
 * await balancer.stop();
 * ```
 *
 * @module
 */
export { Balancer, ListenError } from "./balancer/balancer.ts";
export type { BalancerOptions, BalancerStats, StopOptions } from "./balancer/balancer.ts";
export type {
  AdmitContext,
  AdmitHook,
  AdmitVerdict,
  HookBackend,
  HookPreamble,
  SelectContext,
  SelectHook,
} from "./balancer/hooks.ts";
export { BackendState } from "./balancer/upstream/backend.ts";
export {
  BackendChangeError,
  FrontendBackends,
  UnknownFrontendError,
} from "./balancer/frontend_api.ts";
export type { BackendObject } from "./balancer/frontend_api.ts";
export { NO_EVENTS } from "./balancer/events.ts";
export type {
  Events,
  FrontendInfo,
  Outcome,
  PipeEvent,
  Refusal,
  SessionInfo,
} from "./balancer/events.ts";
export { logEvents } from "./balancer/log_events.ts";
export { prepareUnixSocket } from "./balancer/listener/unix_socket.ts";
export { formatAddress, parseAddress } from "./address/address.ts";
export { ALGORITHMS } from "./config/config.ts";
export type {
  Algorithm,
  BackendConfig,
  Config,
  FrontendConfig,
  HealthConfig,
} from "./config/config.ts";
export { ConfigError } from "./config/config_error.ts";
export { loadConfig, parseConfig } from "./config/load.ts";
export { defineConfig } from "./config/define.ts";
export type { ConfigObject } from "./config/define.ts";
export { configureLogging } from "./log.ts";
export type { LogFormat, LoggingOptions } from "./log.ts";
export type {
  Conn,
  ConnHandlers,
  Endpoint,
  Listener,
  ListenOptions,
  Net,
  TlsCertificate,
  TlsOptions,
} from "./runtime/types.ts";
export { VERSION } from "./version.ts";
