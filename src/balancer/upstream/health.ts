/**
 * Health checks, like HAProxy's: keeps each backend's `up` flag true to its
 * health and reports every probe and every change through the events.
 *
 * @module
 */
import type { HealthConfig, HttpCheckConfig } from "../../config/config.ts";
import { formatHttpStatus, statusAccepted } from "../../config/http_status.ts";
import { encodeProxyLocal } from "../../protocol/proxy.ts";
import { VERSION } from "../../version.ts";
import { isLocalShortage, reasonOf } from "../../errors.ts";
import { isHostName } from "../../address/address.ts";
import type { Conn, Endpoint, Net } from "../../runtime/types.ts";
import type { BackendState } from "./backend.ts";
import type { Events, FrontendInfo } from "../events.ts";
import type { Pool } from "./pool.ts";
import { latin1Bytes, probeUdp } from "./health_udp.ts";

/** How much of a wrong answer a failure reason quotes. */
const QUOTED_BYTES = 40;

/**
 * Quotes the start of what a probe received, escaped, cut short.
 *
 * @param received the text received
 * @param max the most characters quoted
 * @returns a JSON string literal of at most `max` characters, "…" marking a cut
 */
export function quoteReceived(received: string, max: number = QUOTED_BYTES): string {
  const cut = received.length > max;
  return JSON.stringify(cut ? received.slice(0, max) : received) + (cut ? "…" : "");
}

/** How much of a status line a failure reason quotes: a reason phrase is rarely longer. */
const QUOTED_STATUS_LINE = 80;

/** The most bytes an HTTP probe reads looking for the end of the status line. */
export const MAX_STATUS_LINE_BYTES = 4096;

/**
 * The request an HTTP probe sends.
 *
 * @param http the check's settings
 * @param address the backend's address as written, the Host when `http_host` is not set
 */
export function httpRequest(http: HttpCheckConfig, address: string): Uint8Array {
  // A Unix socket's address is no host name.
  const host = http.host ?? (address.startsWith("unix:") ? "localhost" : address);
  return new TextEncoder().encode(
    `${http.method} ${http.path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n` +
      `User-Agent: mini-balancer/${VERSION}\r\n\r\n`,
  );
}

/** Collects an answer's first line, up to {@linkcode MAX_STATUS_LINE_BYTES}. */
export class StatusLineReader {
  #bytes: Uint8Array = new Uint8Array(0);
  /** Whether more than the bound arrived without a line end. */
  overflowed = false;

  /**
   * Takes the next chunk.
   *
   * @returns the status line without its line end, once it is complete
   */
  take(chunk: Uint8Array): string | undefined {
    const room = MAX_STATUS_LINE_BYTES - this.#bytes.length;
    this.#bytes = joinBytes(this.#bytes, chunk.subarray(0, Math.max(0, room)));
    const end = this.#bytes.indexOf(0x0a);
    if (end !== -1) return latin1(this.#bytes.subarray(0, end)).replace(/\r$/, "");
    if (this.#bytes.length >= MAX_STATUS_LINE_BYTES) this.overflowed = true;
    return undefined;
  }

  /** Why the probe failed when no status line came, `how` it ended. */
  failure(how: string): string {
    if (this.#bytes.length === 0) return `no HTTP answer (${how})`;
    return `no HTTP status line: received ${quoteReceived(latin1(this.#bytes))} (${how})`;
  }
}

/** The chunks, one after the other, in one array (one write, one segment). */
function joinBytes(...chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Bytes as latin1 text: every byte one character, nothing replaced or lost. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/**
 * Judges an HTTP probe's status line.
 *
 * @returns undefined when its code is one `http_status` accepts, else the reason, quoting it
 */
export function judgeStatusLine(line: string, http: HttpCheckConfig): string | undefined {
  const match = /^HTTP\/1\.[01] ([1-5][0-9][0-9])(?: |$)/.exec(line);
  const quoted = quoteReceived(line, QUOTED_STATUS_LINE);
  if (match === null) return `not an HTTP status line: ${quoted}`;
  if (statusAccepted(http.status, Number(match[1]))) return undefined;
  return `HTTP status ${match[1]} is not ${formatHttpStatus(http.status)}: ${quoted}`;
}

/**
 * The name a TLS probe sends as SNI (and verifies): the `http_host` without
 * its port when set, else the backend's host when it is a name.
 *
 * @param config the health settings
 * @param hostname the backend's host, a name or an IP address
 * @returns the name, or undefined for an IP address
 */
export function probeServerName(config: HealthConfig, hostname: string): string | undefined {
  const host = config.http?.host;
  if (host !== undefined) {
    const name = host.startsWith("[")
      ? host.slice(1, host.indexOf("]"))
      : host.replace(/:\d*$/, "");
    return isHostName(name) ? name : undefined;
  }
  return isHostName(hostname) ? hostname : undefined;
}

/** Options for {@linkcode HealthChecker}. */
export interface HealthOptions {
  /** The frontend's health settings. */
  config: HealthConfig;
  /** The sockets to probe with. */
  net: Net;
  /** The backends to watch; their state lives there. */
  pool: Pool;
  /** Where probes and changes are reported. */
  events: Events;
  /** The frontend, for the events. */
  frontend: FrontendInfo;
  /**
   * Told right after a backend is marked down (for `on_down`).
   *
   * @default nothing
   */
  down?: (backend: BackendState) => void;
}

/**
 * Keeps each backend's `up` flag true to its health: `fall` failures in a
 * row (probes, or real connects reported through the pool) take a backend
 * down, `rise` successful probes in a row bring it back. Probes are TCP
 * connects, optionally sending `send` and waiting for `expect`, or HTTP
 * requests judged by their status line (`http_path`); to `port` of the
 * backend's host when set, after a PROXY header for a `send_proxy` backend,
 * over TLS with `tls` (the handshake bounded by the probe's timeout).
 * With `udp`, probes are datagrams instead ({@linkcode probeUdp}: ICMP
 * port unreachable fails, where the runtime reports it).
 * With an HTTP check or a `port`, probe failures keep a streak of their own
 * that real connects do not end. With active
 * checks every backend is probed every `interval`; without, only a backend
 * that real connects took down is probed, until it is up again. Probes of
 * different backends are staggered over the interval.
 */
export class HealthChecker {
  readonly #config: HealthConfig;
  readonly #net: Net;
  readonly #pool: Pool;
  readonly #events: Events;
  readonly #frontend: FrontendInfo;
  readonly #down: ((backend: BackendState) => void) | undefined;
  readonly #timers = new Map<BackendState, ReturnType<typeof setTimeout>>();
  /** Ends each probe under way, connecting or connected (for stop). */
  readonly #probes = new Set<() => void>();
  #stopped = false;
  /**
   * Whether probes keep a failure streak of their own, which real connects
   * do not end: an HTTP check or one on another port asks something a
   * connect that worked does not answer (a Patroni replica accepts
   * connections all the same).
   */
  readonly #ownStreak: boolean;
  /** Probe failures in a row, by backend, when {@linkcode HealthChecker.#ownStreak}. */
  readonly #probeFailures = new Map<BackendState, number>();

  /**
   * @param options what to check and where to report
   * @throws {Error} when `tls` is set and the runtime cannot open TLS connections
   * @throws {Error} when `udp` is set and `send` has a character that is not one byte
   */
  constructor(options: HealthOptions) {
    if (options.config.tls === true && options.net.connectTls === undefined) {
      throw new Error(
        `health.tls = true: TLS health probes are not available on ${options.net.runtime}`,
      );
    }
    if (options.config.udp === true) {
      try {
        latin1Bytes(options.config.send ?? "");
      } catch (error) {
        throw new Error(`health.send: ${(error as Error).message}`);
      }
    }
    this.#config = options.config;
    this.#net = options.net;
    this.#pool = options.pool;
    this.#events = options.events;
    this.#frontend = options.frontend;
    this.#down = options.down;
    this.#ownStreak = this.#config.http !== undefined || this.#config.port !== undefined;
    this.#pool.onConnectFailed = (backend, reason) => this.#failed(backend, reason);
  }

  /** Starts active probes, if configured, spread evenly over one interval. */
  start(): void {
    if (!this.#config.active) return;
    const backends = this.#pool.backends;
    backends.forEach((backend, i) => {
      this.#schedule(backend, (this.#config.intervalMs * (i + 1)) / (backends.length + 1));
    });
  }

  /**
   * Backends that appeared (service discovery): probed at once, then at
   * every interval, and up once `rise` probes in a row have passed.
   *
   * @param backends the new backends, down until they pass
   */
  added(backends: readonly BackendState[]): void {
    if (!this.#config.active) return;
    for (const backend of backends) this.#schedule(backend, 0);
  }

  /** Stops every probe and timer. */
  stop(): void {
    this.#stopped = true;
    this.#pool.onConnectFailed = undefined;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const abort of this.#probes) abort();
    this.#probes.clear();
  }

  #schedule(backend: BackendState, delayMs: number): void {
    if (this.#stopped || this.#timers.has(backend)) return;
    // A little jitter so that probes of many balancers do not line up.
    const jitter = Math.random() * this.#config.intervalMs * 0.1;
    this.#timers.set(
      backend,
      setTimeout(() => {
        this.#timers.delete(backend);
        if (backend.removed) return;
        if (backend.admin === "disabled") {
          // Disabled by an operator: no probes until enabled again.
          return this.#schedule(backend, this.#config.intervalMs);
        }
        const started = performance.now();
        this.#probe(backend).then((failure) => {
          if (this.#stopped) return;
          if (failure !== null) {
            this.#events.probed(this.#frontend, backend, failure, performance.now() - started);
            if (failure === undefined) this.#succeeded(backend);
            else this.#failed(backend, failure, true);
          }
          if (this.#config.active || !backend.healthy) {
            this.#schedule(backend, this.#config.intervalMs);
          }
        });
      }, delayMs + jitter),
    );
  }

  /**
   * Probes a backend; resolves with the reason it failed, undefined when it
   * passed, or null when it could not be told (this host is out of file
   * descriptors: no fault of the backend's).
   */
  #probe(backend: BackendState): Promise<string | undefined | null> {
    const { timeoutMs, send, expect, http } = this.#config;
    const forwardTo = backend.config.forwardTo;
    const endpoint = this.#config.port === undefined || forwardTo.path !== undefined
      ? forwardTo
      : { hostname: forwardTo.hostname, port: this.#config.port };
    if (this.#config.udp === true) {
      const probe = probeUdp({ net: this.#net, endpoint, send, expect, timeoutMs });
      this.#probes.add(probe.abort);
      // Stopped while it began (a runtime calling back during the bind).
      if (this.#stopped) probe.abort();
      return probe.result.finally(() => this.#probes.delete(probe.abort));
    }
    return new Promise((resolve) => {
      let conn: Conn | undefined;
      let done = false;
      let received = "";
      const decoder = new TextDecoder();
      const status = http === undefined ? undefined : new StatusLineReader();
      const finish = (failure: string | undefined | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        handshake?.abort();
        this.#probes.delete(abort);
        conn?.reset();
        resolve(failure);
      };
      // Stopped: not the backend's fault, nothing to tell.
      const abort = () => finish(null);
      this.#probes.add(abort);
      // What went wrong when the expected answer never came.
      const noAnswer = (how: string) =>
        status !== undefined
          ? status.failure(how)
          : received === ""
          ? `${how} before sending ${JSON.stringify(expect)}`
          : `answer did not match ${JSON.stringify(expect)}: received ${
            quoteReceived(received)
          } (${how})`;
      // Abandons a TLS handshake under way when the probe ends first.
      const handshake = this.#config.tls === true ? new AbortController() : undefined;
      const timer = setTimeout(
        () =>
          finish(
            conn === undefined
              ? `health check timed out after ${timeoutMs}ms`
              : noAnswer(`timed out after ${timeoutMs}ms`),
          ),
        timeoutMs,
      );
      this.#open(backend, endpoint, handshake?.signal).then((opened) => {
        conn = opened;
        if (done) return opened.reset();
        opened.setHandlers({
          data(chunk) {
            if (status !== undefined) {
              const line = status.take(chunk);
              if (line !== undefined) finish(judgeStatusLine(line, http!));
              else if (status.overflowed) finish(status.failure("no end of line"));
              return;
            }
            received += decoder.decode(chunk, { stream: true });
            if (expect !== undefined && received.includes(expect)) finish(undefined);
          },
          end: () => finish(noAnswer("closed")),
          drain() {},
          close: () => finish(noAnswer("closed")),
        });
        const parts: Uint8Array[] = [];
        // A backend that requires a PROXY header rejects a probe without one.
        const sendProxy = backend.config.sendProxy;
        if (sendProxy !== undefined) parts.push(encodeProxyLocal(sendProxy));
        if (http !== undefined) parts.push(httpRequest(http, backend.config.address));
        else if (send !== undefined) parts.push(new TextEncoder().encode(send));
        if (parts.length > 0) opened.write(parts.length === 1 ? parts[0]! : joinBytes(...parts));
        if (expect === undefined && http === undefined) finish(undefined);
      }, (error) => finish(isLocalShortage(error) ? null : reasonOf(error)));
    });
  }

  /** Opens a probe's connection: plain, or TLS with `tls`. */
  #open(backend: BackendState, endpoint: Endpoint, signal: AbortSignal | undefined): Promise<Conn> {
    if (signal === undefined) return this.#net.connect(endpoint);
    if (endpoint.path !== undefined) {
      // Never plain text behind the user's back.
      return Promise.reject(new Error("TLS probes need a TCP backend, not a Unix socket"));
    }
    return this.#net.connectTls!(endpoint, {
      serverName: probeServerName(this.#config, backend.config.forwardTo.hostname),
      verify: this.#config.tlsVerify === true,
      signal,
    });
  }

  #succeeded(backend: BackendState): void {
    backend.failures = 0;
    this.#probeFailures.delete(backend);
    if (backend.healthy) return;
    backend.successes++;
    if (backend.successes < this.#config.rise) return;
    const passed = backend.successes;
    backend.successes = 0;
    backend.healthy = true;
    this.#events.backendUp(this.#frontend, backend, `${passed} health checks passed`);
  }

  #failed(backend: BackendState, reason: string, probe = false): void {
    backend.successes = 0;
    if (!backend.healthy) return;
    backend.failures++;
    let streak = backend.failures;
    if (probe && this.#ownStreak) {
      streak = (this.#probeFailures.get(backend) ?? 0) + 1;
      this.#probeFailures.set(backend, streak);
    }
    if (streak < this.#config.fall) return;
    backend.failures = 0;
    this.#probeFailures.delete(backend);
    backend.healthy = false;
    this.#events.backendDown(this.#frontend, backend, reason);
    this.#down?.(backend);
    // Without active checks, probe it until it is back.
    if (!this.#config.active) this.#schedule(backend, this.#config.intervalMs);
  }
}
