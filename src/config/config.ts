/**
 * The validated config as the rest of the program reads it: frontends,
 * their backends and health checks, in milliseconds and parsed addresses.
 * The file format, checks and defaults that produce it live in schema.ts.
 *
 * @module
 */
import type { Endpoint } from "../runtime/types.ts";
import type { CidrSet } from "../address/cidr.ts";
import { isHostName } from "../address/address.ts";
import type { StatusRange } from "./http_status.ts";

/**
 * One backend a frontend forwards to.
 *
 * @example
 * ```ts
 * import type { BackendConfig } from "mini-balancer";
 *
 * const backends: readonly BackendConfig[] = config.frontends[0]!.backends;
 * for (const { name, address, weight, maxConnections } of backends) {
 *   console.log(`${name} → ${address}, weight ${weight}, at most ${maxConnections ?? "∞"}`);
 * }
 * ```
 */
export interface BackendConfig {
  /**
   * The backend's name: its `name` key, else its address as written. It
   * places the backend on source_hash's ring, so naming backends keeps
   * clients where they are when an address changes.
   */
  readonly name: string;
  /** The address as written (`127.0.0.1:8080`), logged as target_address. */
  readonly address: string;
  /** Where connections are forwarded. */
  readonly forwardTo: Endpoint;
  /** Its share of connections for weighted algorithms, 1 to 256. @default 1 */
  readonly weight: number;
  /** Most connections open to it at once; a full backend is passed over. */
  readonly maxConnections?: number;
  /** Used only while every other (primary) backend is down. @default false */
  readonly backup?: boolean;
  /**
   * Sends a PROXY protocol header of this version before any client byte,
   * carrying the client's and the frontend's addresses; `undefined`: none.
   */
  readonly sendProxy?: "v1" | "v2";
  /**
   * How long it ramps from 1/20 of its weight to all of it after coming up,
   * in milliseconds; `undefined`: the frontend's `slowStartMs`.
   */
  readonly slowStartMs?: number;
}

/**
 * How a frontend checks its backends' health.
 *
 * @example
 * ```ts
 * import type { HealthConfig } from "mini-balancer";
 *
 * const health: HealthConfig = config.frontends[0]!.health;
 * if (health.active) {
 *   console.log(`probe every ${health.intervalMs} ms; down after ${health.fall} failures`);
 * }
 * ```
 */
export interface HealthConfig {
  /**
   * Whether every backend is probed all the time. When false, only backends
   * that passive checks marked down are probed, until they are up again.
   */
  readonly active: boolean;
  /** Time between probes of one backend, in milliseconds. @default 2000 */
  readonly intervalMs: number;
  /** How long a probe may take, in milliseconds. @default 1000 */
  readonly timeoutMs: number;
  /** Successful probes in a row that bring a down backend up. @default 2 */
  readonly rise: number;
  /** Failures in a row (probes or real connects) that take a backend down. @default 3 */
  readonly fall: number;
  /**
   * Probes are UDP datagrams to the backend's address (a UDP frontend
   * without `port`): `send` is the datagram (each character U+0000-U+00FF
   * one byte), and a reply holding `expect` counts as up.
   * @default false
   */
  readonly udp?: boolean;
  /** Text a probe sends once connected. */
  readonly send?: string;
  /** Text a probe must receive for the backend to count as healthy. */
  readonly expect?: string;
  /** Probes are HTTP/1.1 requests, up by their status code (`http_path`); none: TCP checks. */
  readonly http?: HttpCheckConfig;
  /** The port probes go to on each backend's host; none: the backend's own port. */
  readonly port?: number;
  /** Whether probes speak TLS to the probe port. @default false */
  readonly tls?: boolean;
  /** Whether the probe verifies the backend's certificate (with `tls`). @default false */
  readonly tlsVerify?: boolean;
  /**
   * What happens to a backend's open connections once it is marked down:
   * kept, or closed (FIN to the client, or RST with `when_all_down = "reset"`).
   * @default "keep"
   */
  readonly onDown?: "keep" | "close_sessions";
  /**
   * Another process probes for this one (a worker's supervisor) and tells
   * it each change: a backend that appears starts down until told it is up.
   */
  readonly remote?: boolean;
  /** The port of each backend's host where an agent tells its state (HAProxy's agent-check). */
  readonly agentPort?: number;
  /** Time between agent polls of one backend, in milliseconds. @default intervalMs */
  readonly agentIntervalMs?: number;
}

/**
 * An HTTP health check: the request each probe sends and the answers that count as up.
 *
 * @example
 * ```ts
 * import type { HttpCheckConfig } from "mini-balancer";
 *
 * const http: HttpCheckConfig | undefined = config.frontends[0]!.health.http;
 * if (http !== undefined) console.log(`${http.method} ${http.path}`);
 * ```
 */
export interface HttpCheckConfig {
  /** The request's path ("/healthz"). */
  readonly path: string;
  /** The request's method. @default "GET" */
  readonly method: string;
  /** The Host header; none: the backend's address as written. */
  readonly host?: string;
  /** The status codes that count as up. @default 200-399 */
  readonly status: readonly StatusRange[];
}

/**
 * The transports a frontend serves, by the name `bind_on`'s prefix gives them.
 *
 * @example
 * ```ts
 * import type { Transport } from "mini-balancer";
 *
 * const transport: Transport = config.frontends[0]!.transport; // "tcp" or "udp"
 * if (transport === "udp") console.log("datagrams, balanced per flow");
 * ```
 */
export type Transport = "tcp" | "udp";

/**
 * The protocols a frontend on a shared address can be chosen by (`protocol`).
 *
 * @example
 * ```ts
 * import { MATCH_PROTOCOLS } from "mini-balancer";
 *
 * console.log(`protocol = one of ${MATCH_PROTOCOLS.join(", ")}`); // tls, http, ssh, postgres
 * ```
 */
export const MATCH_PROTOCOLS = ["tls", "http", "ssh", "postgres"] as const;

/**
 * One of {@linkcode MATCH_PROTOCOLS}.
 *
 * @example
 * ```ts
 * import { MATCH_PROTOCOLS, type MatchProtocol } from "mini-balancer";
 *
 * function isMatchProtocol(text: string): text is MatchProtocol {
 *   return (MATCH_PROTOCOLS as readonly string[]).includes(text);
 * }
 * ```
 */
export type MatchProtocol = typeof MATCH_PROTOCOLS[number];

/**
 * One listening address and the backends behind it.
 *
 * @example
 * ```ts
 * import { type FrontendConfig, parseConfig } from "mini-balancer";
 *
 * const config = parseConfig(`
 * [frontend]
 * bind_on = "127.0.0.1:7070"
 * [[frontend.backend]]
 * forward_to = "127.0.0.1:8080"
 * `);
 * const frontend: FrontendConfig = config.frontends[0]!;
 * console.log(frontend.name, frontend.bindOn.port, frontend.algorithm);
 * ```
 */
export interface FrontendConfig {
  /** The frontend's name, used in logs. @default "default" (a `[frontend]` without `name`) */
  readonly name: string;
  /** Where to listen. */
  readonly bindOn: Endpoint;
  /**
   * What it serves: TCP connections, or UDP datagrams grouped in flows (one
   * per client address and port), from `bind_on = "udp:HOST:PORT"`.
   * @default "tcp"
   */
  readonly transport: Transport;
  /**
   * On a UDP frontend: a flow ends once its backend has sent this many
   * datagrams back (DNS: 1, as nginx's `proxy_responses`); `undefined`:
   * only idle_timeout and max_lifetime end it.
   */
  readonly responses: number | undefined;
  /** How backends are chosen. @default "round_robin" */
  readonly algorithm: Algorithm;
  /**
   * With `source_hash`: bounds each backend's open connections to this
   * factor times the average (weighted), passing a client on along the ring
   * from a backend at its bound; `undefined`: the plain ring.
   */
  readonly hashBalanceFactor?: number | undefined;
  /** The backends, in the order round-robin visits them. */
  readonly backends: readonly BackendConfig[];
  /** How long a backend may take to accept a connection, in milliseconds. @default 5000 */
  readonly connectTimeoutMs: number;
  /**
   * How long a connection may pass no bytes either way before both sides
   * are closed, in milliseconds; `undefined` waits forever, as the original.
   * On a UDP frontend, how long a flow may pass no datagram either way
   * before it ends; 30000 when the file gives none (a flow has no close).
   */
  readonly idleTimeoutMs: number | undefined;
  /** How long a connection may last at most, in milliseconds; `undefined`: no limit. */
  readonly maxLifetimeMs: number | undefined;
  /**
   * How often an open connection logs `connection in progress` (bytes each
   * way so far, and its age), in milliseconds; `undefined`: only its
   * opening and closing lines. TCP frontends only.
   */
  readonly logIntervalMs?: number | undefined;
  /**
   * How a client is turned away when no backend is up (or all are full):
   * "close" sends FIN, "reset" sends RST where the runtime can. @default "close"
   */
  readonly whenAllDown: "close" | "reset";
  /** How backends' health is checked. */
  readonly health: HealthConfig;
  /**
   * How long a backend that comes up (after being down, or added while
   * serving) ramps from 1/20 of its weight to all of it, in milliseconds;
   * a backend's own `slowStartMs` wins. `undefined`: no ramp.
   */
  readonly slowStartMs?: number;
  /** Most client connections served at once; `undefined`: no limit. */
  readonly maxConnections: number | undefined;
  /**
   * How long a connection past `maxConnections` waits for a free slot before
   * it is closed, in milliseconds. @default the connect timeout
   */
  readonly queueTimeoutMs: number;
  /** Most connections at once from one client IP address; `undefined`: no limit. */
  readonly maxConnectionsPerClient: number | undefined;
  /**
   * How many other backends a failed connect (refused, unreachable, timed
   * out) is retried on before the client is given up.
   * @default the number of backends minus one: each backend is tried once
   */
  readonly retries: number;
  /**
   * Whether a connection from a {@linkcode FrontendConfig.trusted} address
   * must start with a PROXY protocol header (v1 or v2, detected), whose
   * client address then stands for the connection's everywhere.
   * @default false
   */
  readonly acceptProxy: boolean;
  /** The addresses allowed to send a PROXY header; others are closed. */
  readonly trusted: CidrSet | undefined;
  /**
   * How long a client may take to send what is read before a backend is
   * chosen (a PROXY header, a TLS ClientHello), in milliseconds. @default 5000
   */
  readonly headerTimeoutMs: number;
  /**
   * The TLS server names this frontend takes on an address it shares with
   * others (`*.example.com` for any name under example.com); TLS passes
   * through untouched. `undefined`: every other name, and clients without SNI.
   */
  readonly sni: readonly string[] | undefined;
  /**
   * The protocol this frontend takes on a shared address, told by the
   * client's first bytes; set by the config or implied by `sni`/`alpn`
   * (tls) and `httpHost` (http). `undefined` with no `sni`, `alpn` or
   * `httpHost`: the fallback, which takes what no other frontend does.
   */
  readonly protocol: MatchProtocol | undefined;
  /** ALPN protocol names (`h2`, `http/1.1`): the frontend takes TLS clients offering one. */
  readonly alpn: readonly string[] | undefined;
  /** HTTP/1 `Host` names (`*.example.com` for any under it): the frontend takes requests for them. */
  readonly httpHost: readonly string[] | undefined;
  /**
   * On the fallback: how long a client may stay silent before it is given
   * to the fallback (protocols where the server speaks first), in
   * milliseconds; `undefined`: a silent client is closed at header_timeout.
   */
  readonly detectTimeoutMs: number | undefined;
  /** TLS termination: the certificates served; `undefined`: TCP as it comes. */
  readonly tls: TlsConfig | undefined;
  /** When set, only clients in these ranges are served. */
  readonly allow: CidrSet | undefined;
  /** Clients in these ranges are closed at once (deny wins over allow). */
  readonly deny: CidrSet | undefined;
  /** New connections one client address may open, as a token bucket; `undefined`: no limit. */
  readonly connectionRatePerClient: Rate | undefined;
  /** Bytes per second each connection may move in each direction; `undefined`: no limit. */
  readonly maxBytesPerSecond: number | undefined;
  /** Permissions of a Unix socket's file (`unix:` bind_on), e.g. 0o660. */
  readonly unixMode: number | undefined;
  /** `discover`: the SRV name whose records give backends, without `srv:`. */
  readonly discover?: string;
  /**
   * The DNS server to ask (`resolver`, the frontend's or the top-level
   * one); undefined: the system resolver, and resolv.conf's first server for SRV.
   */
  readonly resolver?: Endpoint;
  /** `min_ttl`: a name is asked again no sooner than this after an answer. */
  readonly minTtlMs: number;
  /** `max_ttl`: and no later than this. */
  readonly maxTtlMs: number;
}

/**
 * A rate: `count` events per `perMs` milliseconds.
 *
 * @example
 * ```ts
 * import type { Rate } from "mini-balancer";
 *
 * const rate: Rate | undefined = config.frontends[0]!.connectionRatePerClient;
 * if (rate !== undefined) console.log(`${rate.text}: ${rate.count} per ${rate.perMs} ms`);
 * ```
 */
export interface Rate {
  /** Events allowed per period, and the burst a client may spend at once. */
  readonly count: number;
  /** The period, in milliseconds (1000 for "/s", 60000 for "/m"). */
  readonly perMs: number;
  /** As written, for messages ("20/s"). */
  readonly text: string;
}

/**
 * The certificates a TLS-terminating frontend serves.
 *
 * @example
 * ```ts
 * import { loadConfig, type TlsConfig } from "mini-balancer";
 *
 * const config = await loadConfig("lb.toml"); // reads the PEM files
 * const tls: TlsConfig | undefined = config.frontends[0]!.tls;
 * console.log(tls?.certificates.length ?? 0, "certificates");
 * ```
 */
export interface TlsConfig {
  /** The first is served to clients whose server name no other lists, and to clients without SNI. */
  readonly certificates: readonly CertificateConfig[];
}

/**
 * One certificate and its key.
 *
 * @example
 * ```ts
 * import { type CertificateConfig, loadConfig } from "mini-balancer";
 *
 * const config = await loadConfig("lb.toml");
 * const certificates: readonly CertificateConfig[] = config.frontends[0]!.tls?.certificates ?? [];
 * for (const { certFile, names } of certificates) console.log(certFile, names.join(", "));
 * ```
 */
export interface CertificateConfig {
  /** The certificate file (PEM, the chain after the leaf), as written. */
  readonly certFile: string;
  /** The private key file (PEM), as written. */
  readonly keyFile: string;
  /**
   * The server names it is served for: its `names` key, else the DNS names
   * of the certificate (read when the files are).
   */
  readonly names: readonly string[];
  /** The certificate's PEM text; read by `loadConfig`, empty until then. */
  readonly cert: string;
  /** The key's PEM text; read by `loadConfig`, empty until then. */
  readonly key: string;
}

/**
 * A validated configuration.
 *
 * @example
 * ```ts
 * import { Balancer, type Config, loadConfig } from "mini-balancer";
 * import { net } from "mini-balancer/bun";
 *
 * const config: Config = await loadConfig("lb.toml");
 * console.log(config.frontends.map((frontend) => frontend.name));
 * const balancer = await Balancer.start(config, { net });
 * ```
 */
export interface Config {
  /** The frontends; the original schema gives exactly one. */
  readonly frontends: readonly FrontendConfig[];
  /** The admin listener, when the config has an `[admin]` table. */
  readonly admin?: AdminConfig;
  /**
   * Worker processes, each listening on every frontend with SO_REUSEPORT
   * under one supervisor; `"auto"` in the file is one per core. @default 1
   */
  readonly workers: number;
}

/**
 * The admin listener: metrics, status, the dashboard and the operator's API.
 *
 * @example
 * ```ts
 * import { type AdminConfig, loadConfig } from "mini-balancer";
 *
 * const admin: AdminConfig | undefined = (await loadConfig("lb.toml")).admin;
 * if (admin !== undefined) console.log(`admin API on port ${admin.bindOn.port}`);
 * ```
 */
export interface AdminConfig {
  /** Where it listens. @default 127.0.0.1:9901 */
  readonly bindOn: Endpoint;
  /**
   * The bearer token of the endpoints that change state; without one they
   * answer 403. `loadConfig` fills it from `tokenFile` when that is set.
   */
  readonly token?: string;
  /** A file holding that token (its first line), read at every load and reload. */
  readonly tokenFile?: string;
  /** The permission bits of `tokenFile` when it was read (0o640: group may read it). */
  readonly tokenFileMode?: number;
  /**
   * The names besides IP literals and `localhost` that requests may carry in
   * `Host`; any other is refused (DNS rebinding). @default []
   */
  readonly allowedHosts: readonly string[];
  /**
   * A JSON file keeping what the admin API changed (backends it added,
   * weights, drain/disable states) across restarts. @default none
   */
  readonly stateFile?: string;
}

/**
 * Every balancing algorithm, by the name the config uses.
 *
 * @example
 * ```ts
 * import { ALGORITHMS } from "mini-balancer";
 *
 * console.log(`algorithm = one of ${ALGORITHMS.join(", ")}`);
 * ```
 */
export const ALGORITHMS = [
  "round_robin",
  "weighted_round_robin",
  "least_connections",
  "random",
  "power_of_two",
  "source_hash",
  "first",
] as const;

/**
 * The name of a balancing algorithm.
 *
 * @example
 * ```ts
 * import type { Algorithm } from "mini-balancer";
 *
 * const algorithm: Algorithm = config.frontends[0]!.algorithm;
 * if (algorithm === "source_hash") console.log("a client keeps its backend");
 * ```
 */
export type Algorithm = typeof ALGORITHMS[number];

/**
 * Whether a frontend has anything to discover: an SRV name or a backend
 * that names a host. Asked by the summary, the frontend and the prober.
 *
 * @param config the frontend's config
 * @returns true when discovery must run for it
 */
export function discovers(config: FrontendConfig): boolean {
  return config.discover !== undefined || config.backends.some(isDiscovered);
}

/**
 * Whether a backend entry names a host, to be resolved.
 *
 * @param backend the backend entry
 * @returns true for a host name (not an IP literal, not a Unix socket)
 */
export function isDiscovered(backend: BackendConfig): boolean {
  const { forwardTo } = backend;
  return forwardTo.path === undefined && isHostName(forwardTo.hostname);
}
