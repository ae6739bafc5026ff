import type { Endpoint } from "../runtime/types.ts";

/** One backend a frontend forwards to. */
export interface BackendConfig {
  /** The backend's address as written (`127.0.0.1:8080`), used in logs. */
  readonly name: string;
  /** Where connections are forwarded. */
  readonly forwardTo: Endpoint;
}

/** One listening address and the backends behind it. */
export interface FrontendConfig {
  /** The frontend's name, used in logs. @default "frontend" */
  readonly name: string;
  /** Where to listen. */
  readonly bindOn: Endpoint;
  /** The backends, in the order round-robin visits them. */
  readonly backends: readonly BackendConfig[];
  /** How long a backend may take to accept a connection, in milliseconds. @default 5000 */
  readonly connectTimeoutMs: number;
}

/** A validated configuration. */
export interface Config {
  /** The frontends; the original schema gives exactly one. */
  readonly frontends: readonly FrontendConfig[];
}

/** Default for {@linkcode FrontendConfig.connectTimeoutMs}. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
