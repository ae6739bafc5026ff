/**
 * mini-balancer as a library: load a config, start a balancer on a runtime's
 * sockets, subscribe to what happens, stop it. This is the package's
 * runtime-free entry (`mini-balancer`); each runtime's sockets and a one-call
 * `start()` are in `mini-balancer/bun`, `mini-balancer/deno` and
 * `mini-balancer/node` (from a clone: `src/lib/<runtime>.ts`).
 *
 * @example
 * ```ts
 * import { Balancer, parseConfig } from "mini-balancer";
 * import { net } from "mini-balancer/bun"; // or mini-balancer/deno, mini-balancer/node
 *
 * const config = parseConfig(`
 * [frontend]
 * bind_on = "127.0.0.1:7070"
 * [[frontend.backend]]
 * forward_to = "127.0.0.1:8080"
 * `);
 * const balancer = await Balancer.start(config, { net });
 * await balancer.stop();
 * ```
 *
 * @module
 */
export { Balancer, ListenError } from "./balancer/balancer.ts";
export type { BalancerOptions, BalancerStats, StopOptions } from "./balancer/balancer.ts";
export type { BackendStatus, FrontendStatus } from "./balancer/balancer.ts";
export type { HealthState } from "./balancer/health_state.ts";
export type { ReloadSummary } from "./balancer/reload.ts";
export type { AdminState, AgentWords, Weights } from "./balancer/upstream/backend.ts";
export type {
  BackendPatch,
  FrontendOverlayState,
  Outcome as BackendChangeOutcome,
  OverlayState,
  RuntimeBackends,
} from "./balancer/upstream/runtime_backends.ts";
export type { LogSummaryOptions } from "./balancer/log_summary.ts";
export { DiscoveryError } from "./discovery/discovery.ts";
export type { Resolution } from "./discovery/discovery.ts";
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
export type { DropReason, FlowInfo, FlowOutcome } from "./balancer/events.ts";
export type { LogEventsOptions } from "./balancer/log_events.ts";
export { logEvents } from "./balancer/log_events.ts";
export { prepareUnixSocket } from "./balancer/listener/unix_socket.ts";
export { formatAddress, parseAddress } from "./address/address.ts";
export type { CidrSet } from "./address/cidr.ts";
export { ALGORITHMS, MATCH_PROTOCOLS } from "./config/config.ts";
export type {
  Algorithm,
  BackendConfig,
  Config,
  FrontendConfig,
  HealthConfig,
} from "./config/config.ts";
export type {
  AdminConfig,
  CertificateConfig,
  HttpCheckConfig,
  MatchProtocol,
  Rate,
  TlsConfig,
  Transport,
} from "./config/config.ts";
export type { StatusRange } from "./config/http_status.ts";
export { CertificateError } from "./config/tls.ts";
export { BackendTableError } from "./config/backend_table.ts";
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
export type {
  DatagramHandlers,
  DatagramOptions,
  DatagramSocket,
  Dialer,
  HttpServeOptions,
  HttpServer,
  TlsConnectOptions,
} from "./runtime/types.ts";
export { VERSION } from "./version.ts";
